#!/usr/bin/env python3
"""bench/soak.py: the traffic driver and the report of bench/soak.sh.

Python standard library only. Two sub-commands:

  soak.py drive  --gatehouse http://127.0.0.1:PORT --duration SECONDS --summary FILE ...
      Runs the mixed traffic against `gatehouse demo` until the duration is over, all at
      once, each kind in its own thread(s):
        logins     the full login flow (gatehouse -> dev IdP form POST -> callback) with a
                   fresh cookie jar each time, then one request with the new session
        requests   authenticated GET/POST with long-lived sessions (a cookie jar per
                   session, updated from Set-Cookie, so token refreshes are followed)
        websockets short ones (a few echoed messages, then a clean close) and long ones
                   (open until gatehouse closes them with code 4001 when the session's
                   token expires; then they reconnect)
        slow       slow-loris connections: a partial request head, a few bytes every
                   SLOW_INTERVAL seconds, until gatehouse cuts them; replaced at once
      Every answer is counted by kind and status; the counters go to --summary as JSON.
      Progress lines go to stderr every 30 s.

  soak.py report --summary FILE --samples CSV --facts FILE
      Reads the driver's summary, soak.sh's samples and facts, prints the report and
      exits 0 when the run was flat and clean, 1 when not.

Only loopback http:// URLs are ever contacted; URLs that come back in redirects are
checked before use.
"""

import argparse
import base64
import collections
import csv
import hashlib
import http.client
import json
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
import urllib.parse

SESSION_COOKIE = "_gatehouse"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def log(msg):
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ counters --


class Stats:
    """Thread-safe counters, value observations (count/min/max/sum), and the times of
    502 answers and network errors (the report checks them against the upstream's
    outage windows)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = collections.Counter()
        self.obs = {}
        self.times_502 = []
        self.times_net = []

    def inc(self, key, n=1):
        with self.lock:
            self.count[key] += n

    def observe(self, key, value):
        with self.lock:
            o = self.obs.setdefault(key, [0, 0.0, value, value])
            o[0] += 1
            o[1] += value
            o[2] = min(o[2], value)
            o[3] = max(o[3], value)

    def got_502(self):
        with self.lock:
            self.times_502.append(time.time())

    def keepalive_closed(self, after, error):
        """A reused connection turned out closed; `after`: its last method and status."""
        with self.lock:
            self.count[f"req.keepalive_closed_after.{after}"] += 1
            self.count[f"req.keepalive_closed_error.{error}"] += 1
            self.times_net.append((time.time(), f"req.keepalive_closed_after.{after}"))

    def net_error(self, key, e):
        """A network error (reset, broken pipe, ...): counted under `key` and timed."""
        with self.lock:
            self.count[f"{key}.{type(e).__name__}"] += 1
            self.times_net.append((time.time(), f"{key}.{type(e).__name__}"))

    def snapshot(self):
        with self.lock:
            return {
                "counters": dict(sorted(self.count.items())),
                "observations": {
                    k: {"count": c, "mean": s / c if c else 0, "min": lo, "max": hi}
                    for k, (c, s, lo, hi) in sorted(self.obs.items())
                },
                "times_502": list(self.times_502),
                "times_net": list(self.times_net),
            }


# ------------------------------------------------------------------ cookies --


def is_session_cookie(name):
    """The session cookie or one of its chunks: _gatehouse, _gatehouse_0, ..."""
    if name == SESSION_COOKIE:
        return True
    rest = name[len(SESSION_COOKIE) + 1:] if name.startswith(SESSION_COOKIE + "_") else ""
    return rest.isdigit()


class Jar:
    """A cookie jar for one host: name -> (value, path). Enough for gatehouse's cookies."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cookies = {}

    def absorb(self, set_cookies):
        """Applies Set-Cookie headers; returns True when a session cookie was (re)set."""
        session_set = False
        with self.lock:
            for sc in set_cookies:
                parts = [p.strip() for p in sc.split(";")]
                name, _, value = parts[0].partition("=")
                attrs = {}
                for p in parts[1:]:
                    k, _, v = p.partition("=")
                    attrs[k.strip().lower()] = v.strip()
                path = attrs.get("path") or "/"
                max_age = attrs.get("max-age")
                if max_age is not None and max_age.lstrip("-").isdigit() and int(max_age) <= 0:
                    self.cookies.pop(name, None)
                    continue
                self.cookies[name] = (value, path)
                if is_session_cookie(name) and value:
                    session_set = True
        return session_set

    def header(self, path):
        with self.lock:
            return "; ".join(
                f"{n}={v}" for n, (v, p) in sorted(self.cookies.items()) if path.startswith(p)
            )

    def has_session(self):
        with self.lock:
            return any(is_session_cookie(n) and v for n, (v, _) in self.cookies.items())


# ------------------------------------------------------------------ HTTP --


def loopback_url(url, what):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname not in LOOPBACK_HOSTS:
        raise RuntimeError(f"{what} is not a loopback http URL, refusing it: {url!r}")
    return u


def path_of(u):
    return u.path + (("?" + u.query) if u.query else "")


def do(conn, method, path, headers, body=None):
    """One request on a keep-alive connection: (status, headers, body)."""
    h = {k: v for k, v in headers.items() if v}
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp.headers, data


class Target:
    def __init__(self, url, timeout):
        u = loopback_url(url, "gatehouse URL")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


NET_ERRORS = (OSError, http.client.HTTPException)


def login(t, stats, user, group, kind):
    """The full browser login flow with a fresh jar; returns the jar, or None.

    kind: the counter prefix ("login" for the login workers, "relogin" for the first
    login of a session/websocket worker). Step failures are counted by step and status.
    """
    jar = Jar()
    gh = t.conn()
    idp = None
    start_path = f"/soak/after-login/{random.randrange(1 << 30)}"
    try:
        # 1. an unauthenticated browser navigation: 302 to the IdP's authorize URL
        st, h, _ = do(gh, "GET", start_path, {"Accept": "text/html"})
        jar.absorb(h.get_all("Set-Cookie") or [])
        if st != 302 or not h.get("Location"):
            stats.inc(f"{kind}.fail.step1_status_{st}")
            return None
        auth = loopback_url(h["Location"], "authorize URL")
        # 2. the dev IdP's form, posted to the authorize URL: redirect to the callback
        idp = http.client.HTTPConnection(auth.hostname, auth.port, timeout=t.timeout)
        form = urllib.parse.urlencode({"username": user, "groups": group})
        st, h, _ = do(idp, "POST", path_of(auth), {
            "Content-Type": "application/x-www-form-urlencoded"}, form)
        if st not in (302, 303) or not h.get("Location"):
            stats.inc(f"{kind}.fail.step2_status_{st}")
            return None
        cb = loopback_url(h["Location"], "callback URL")
        # 3. the callback on gatehouse: the session cookie, and a redirect to start_path
        st, h, _ = do(gh, "GET", path_of(cb), {"Accept": "text/html",
                                                "Cookie": jar.header(cb.path)})
        jar.absorb(h.get_all("Set-Cookie") or [])
        if st != 302 or not jar.has_session():
            stats.inc(f"{kind}.fail.step3_status_{st}")
            return None
        if h.get("Location") != start_path:
            stats.inc(f"{kind}.fail.step3_wrong_target")
        # 4. the session works: the upstream sees the user
        st, h, body = do(gh, "GET", start_path, {"Accept": "application/json",
                                                  "Cookie": jar.header(start_path)})
        jar.absorb(h.get_all("Set-Cookie") or [])
        if st == 200:
            if json.loads(body).get("user") != f"{user}@example.test":
                stats.inc(f"{kind}.fail.wrong_user")
                return None
            stats.inc(f"{kind}.ok")
        elif st == 502:  # the upstream is being restarted: logged in, not verified
            stats.got_502()
            stats.inc(f"{kind}.ok_unverified_502")
        else:
            stats.inc(f"{kind}.fail.step4_status_{st}")
            return None
        return jar
    except NET_ERRORS as e:
        stats.net_error(f"{kind}.net_error", e)
        return None
    finally:
        gh.close()
        if idp:
            idp.close()


# ------------------------------------------------------------------ workers --


class Pace:
    """Paces a loop at `rate` per second, with a little jitter."""

    def __init__(self, rate):
        self.period = 1.0 / rate if rate > 0 else 0
        self.next = time.monotonic() + random.uniform(0, self.period)

    def wait(self, stop):
        self.next += self.period * random.uniform(0.8, 1.2)
        delay = self.next - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            self.next = time.monotonic()  # fell behind: do not burst


def login_worker(a, t, stats, stop, idx):
    pace = Pace(a.login_rate / a.login_threads)
    n = 0
    while not stop.is_set():
        pace.wait(stop)
        if stop.is_set():
            break
        n += 1
        stats.inc("login.attempts")
        login(t, stats, f"soak-login-{idx}-{n}", "soakers", "login")


class SharedSession:
    """A session used by several request threads at once, like browser tabs."""

    def __init__(self, user):
        self.user = user
        self.lock = threading.Lock()
        self.jar = None
        self.generation = 0

    def ensure(self, t, stats, stop, seen_generation=None):
        """A jar with a session; logs in again if generation `seen_generation` is lost."""
        with self.lock:
            while not stop.is_set() and (self.jar is None or self.generation == seen_generation):
                jar = login(t, stats, self.user, "soakers", "relogin")
                if jar:
                    self.jar, self.generation = jar, self.generation + 1
                else:
                    stop.wait(0.5)
            return self.jar, self.generation


def request_worker(a, t, stats, stop, sess):
    jar, gen = sess.ensure(t, stats, stop)
    conn = t.conn()
    pace = Pace(a.req_rate)
    want_user = f"{sess.user}@example.test"
    last = None  # (method, status) of the connection's last exchange; None: a new connection
    n = 0
    while not stop.is_set():
        pace.wait(stop)
        if stop.is_set():
            break
        n += 1
        path = f"/app/item/{n}?q={random.randrange(1000)}"
        headers = {"Accept": "application/json", "Cookie": jar.header(path)}
        method, body = "GET", None
        if n % 5 == 0:
            method, body = "POST", os.urandom(random.randrange(64, 4096)).hex().encode()
            headers["Content-Type"] = "application/octet-stream"
        try:
            try:
                st, h, data = do(conn, method, path, headers, body)
            except http.client.IncompleteRead:
                raise  # a truncated answer (the upstream died mid-body), not a closed connection
            except NET_ERRORS as e:
                conn.close()
                conn = t.conn()
                if last is None:
                    raise
                # A reused keep-alive connection the server had closed after its last
                # answer: send the request again on a new connection, as browsers do, and
                # note what the old connection's last exchange was and how it failed.
                stats.keepalive_closed(f"{last[0]}_{last[1]}", type(e).__name__)
                last = None
                st, h, data = do(conn, method, path, headers, body)
        except NET_ERRORS as e:
            stats.net_error(f"req.net_error.{method}", e)
            conn.close()
            conn = t.conn()
            last = None
            continue
        last = (method, st)
        stats.inc("req.total")
        stats.inc(f"req.status.{st}")
        if jar.absorb(h.get_all("Set-Cookie") or []):
            stats.inc("req.refreshed_cookie")
        if st == 200:
            try:
                got = json.loads(data)
            except ValueError:
                stats.inc("req.bad_body")
                continue
            if got.get("user") != want_user:
                stats.inc("req.wrong_user")
            exp = got.get("id_token_exp")
            if exp is None:
                stats.inc("req.no_id_token")
            elif exp < time.time() - 1:
                stats.inc("req.expired_id_token")
            if method == "POST" and got.get("received") != len(body):
                stats.inc("req.post_body_mismatch")
        elif st == 502:
            stats.got_502()
        elif st in (401, 302):
            stats.inc("req.session_lost")
            jar, gen = sess.ensure(t, stats, stop, gen)
        if h.get("Connection", "").lower() == "close":
            conn.close()
            conn = t.conn()
            last = None
    conn.close()


class WsEnded(Exception):
    def __init__(self, how, code=None):
        super().__init__(how)
        self.how, self.code = how, code


class WebSocket:
    """A minimal RFC 6455 client over a plain socket (masked frames, no fragmentation)."""

    def __init__(self, sock, rest):
        self.sock, self.buf = sock, bytearray(rest)

    @staticmethod
    def open(t, jar, path, stats):
        """Returns (status, ws-or-None). Set-Cookie on the answer goes into the jar."""
        key = base64.b64encode(os.urandom(16)).decode()
        sock = socket.create_connection((t.host, t.port), timeout=t.timeout)
        try:
            cookie = jar.header(path)
            req = (f"GET {path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   "Accept: application/json\r\n"
                   + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n")
            sock.sendall(req.encode())
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                buf += chunk
                if len(buf) > 1 << 20:
                    raise ConnectionError("handshake answer too long")
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs = collections.defaultdict(list)
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()].append(v.strip())
            if jar.absorb(hdrs.get("set-cookie", [])):
                stats.inc("ws.refreshed_cookie")
            if status != 101:
                sock.close()
                return status, None
            want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            if hdrs.get("sec-websocket-accept", [""])[0] != want:
                sock.close()
                return -1, None
            return 101, WebSocket(sock, rest)
        except BaseException:
            sock.close()
            raise

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise WsEnded("timeout")
            except OSError:
                raise WsEnded("dropped")
            if not chunk:
                raise WsEnded("dropped")
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next frame; a close frame raises WsEnded('closed', code)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80 or b0 & 0x70:  # server frames are never masked; no extensions
            raise WsEnded("protocol_error")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            (n,) = struct.unpack("!H", self.buf[2:4])
            off = 4
        elif n == 127:
            self._need(10)
            (n,) = struct.unpack("!Q", self.buf[2:10])
            off = 10
        self._need(off + n)
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        opcode = b0 & 0x0F
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise WsEnded("closed", code)
        return opcode, payload

    def close(self, code=1000):
        """Client-initiated close; True when the server answered with a close frame."""
        try:
            self.send(0x8, struct.pack("!H", code))
            self.sock.settimeout(3)
            while True:
                self.recv()
        except WsEnded as e:
            return e.how == "closed"
        except OSError:
            return False
        finally:
            self.sock.close()


def ws_echo(ws, stats, kind, n):
    """Sends one message and checks its echo. Raises WsEnded when the socket ends."""
    if random.random() < 0.5:
        opcode, payload = 0x1, f"{kind}-{n}-{'x' * random.randrange(0, 2000)}".encode()
    else:
        opcode, payload = 0x2, os.urandom(random.randrange(1, 8000))
    try:
        ws.send(opcode, payload)
    except OSError:
        raise WsEnded("dropped")
    got = ws.recv()
    stats.inc(f"{kind}.messages")
    if got != (opcode, payload):
        stats.inc(f"{kind}.echo_mismatch")


def ws_ended(stats, kind, e, age):
    """Counts how a WebSocket ended when the server side ended it."""
    if e.how == "closed":
        stats.inc(f"{kind}.closed_by_server_{e.code}")
        if e.code == 4001:
            stats.observe(f"{kind}.age_at_4001_s", age)
    elif e.how == "dropped":  # no close frame: the upstream was killed (timed, to check that)
        stats.inc(f"{kind}.dropped")
        with stats.lock:
            stats.times_net.append((time.time(), f"{kind}.dropped"))
    else:
        stats.inc(f"{kind}.{e.how}")  # timeout, protocol_error


def ws_worker(a, t, stats, stop, idx, long_lived):
    kind = "ws_long" if long_lived else "ws_short"
    sess = SharedSession(f"soak-{kind}-{idx}")
    jar, gen = sess.ensure(t, stats, stop)
    n = 0
    while not stop.is_set():
        path = f"/ws/{kind}/{idx}"
        try:
            status, ws = WebSocket.open(t, jar, path, stats)
        except NET_ERRORS as e:
            stats.net_error(f"{kind}.handshake_net_error", e)
            stop.wait(0.5)
            continue
        stats.inc(f"{kind}.handshake_status.{status}")
        if status == 502:
            stats.got_502()
            stop.wait(0.5)
            continue
        if status in (401, 302):
            stats.inc(f"{kind}.session_lost")
            jar, gen = sess.ensure(t, stats, stop, gen)
            continue
        if ws is None:
            stop.wait(0.5)
            continue
        stats.inc(f"{kind}.opened")
        opened = time.monotonic()
        try:
            if long_lived:
                # open until gatehouse ends it (4001 at the token's expiry) or the run ends
                while not stop.is_set():
                    n += 1
                    ws_echo(ws, stats, kind, n)
                    age = time.monotonic() - opened
                    if age > a.token_ttl + 15 and not getattr(ws, "overdue", False):
                        ws.overdue = True
                        stats.inc(f"{kind}.open_past_token_ttl")
                    stop.wait(random.uniform(0.5, 1.5))
            else:
                for _ in range(random.randint(3, 6)):
                    n += 1
                    ws_echo(ws, stats, kind, n)
        except WsEnded as e:
            ws.sock.close()
            ws_ended(stats, kind, e, time.monotonic() - opened)
            continue
        if ws.close(1000):
            stats.inc(f"{kind}.closed_clean")
        else:
            stats.inc(f"{kind}.close_unanswered")
        if not long_lived:
            stop.wait(random.uniform(0.1, 0.4))


def slow_worker(a, t, stats, stop):
    """Keeps a.slow slow-loris connections open; counts how and when gatehouse cuts them."""
    sel = selectors.DefaultSelector()
    conns = {}  # sock -> dict(born, next_send, sent, answered)

    def cut(sock, how):
        c = conns.pop(sock)
        sel.unregister(sock)
        sock.close()
        life = time.monotonic() - c["born"]
        stats.inc(f"slow.cut.{how}")
        stats.observe("slow.lifetime_s", life)
        if c["answered"]:
            stats.inc(f"slow.answered.{c['answered']}")

    while not stop.is_set():
        while len(conns) < a.slow:
            try:
                s = socket.create_connection((t.host, t.port), timeout=5)
                s.sendall(f"GET /slow/{random.randrange(1 << 20)} HTTP/1.1\r\nHost: {t.host}\r\n".encode())
                s.setblocking(False)
            except OSError as e:
                stats.inc(f"slow.connect_error.{type(e).__name__}")
                stop.wait(0.5)
                break
            now = time.monotonic()
            conns[s] = {"born": now, "next_send": now + a.slow_interval, "answered": None}
            sel.register(s, selectors.EVENT_READ)
            stats.inc("slow.opened")
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                cut(s, "reset")
                continue
            if not data:
                cut(s, "closed")
            elif conns[s]["answered"] is None:
                first = data.split(b"\r\n", 1)[0].decode("latin-1")
                conns[s]["answered"] = (first.split() + ["?", "?"])[1]
        now = time.monotonic()
        for s, c in list(conns.items()):
            if now - c["born"] > a.slow_give_up:
                stats.inc("slow.not_cut_in_time")
                stats.observe("slow.lifetime_s", now - c["born"])
                conns.pop(s)
                sel.unregister(s)
                s.close()
            elif now >= c["next_send"]:
                c["next_send"] = now + a.slow_interval
                try:
                    s.send(f"X-Slow-{random.randrange(100)}: {random.randrange(10)}\r\n".encode())
                    stats.inc("slow.bytes_trickled")
                except BlockingIOError:
                    pass
                except OSError:
                    cut(s, "reset")
    for s in list(conns):
        stats.inc("slow.open_at_end")
        sel.unregister(s)
        s.close()


# ------------------------------------------------------------------ drive --


def drive(a):
    t = Target(a.gatehouse, a.timeout)
    stats = Stats()
    stop = threading.Event()
    threads = []

    def spawn(name, fn, *args):
        th = threading.Thread(target=fn, args=(a, t, stats, stop, *args), name=name, daemon=True)
        th.start()
        threads.append(th)

    # one login first: if that fails there is no point in starting anything else
    if not login(t, stats, "soak-probe", "soakers", "probe"):
        log(f"the first login failed: {stats.snapshot()['counters']}")
        return 1
    for i in range(a.login_threads):
        spawn(f"login-{i}", login_worker, i)
    for i in range(a.sessions):
        sess = SharedSession(f"soak-session-{i}")
        for j in range(a.session_threads):
            spawn(f"req-{i}-{j}", request_worker, sess)
    for i in range(a.ws_short):
        spawn(f"ws-short-{i}", ws_worker, i, False)
    for i in range(a.ws_long):
        spawn(f"ws-long-{i}", ws_worker, i, True)
    if a.slow:
        spawn("slow", slow_worker)
    started = time.monotonic()
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write(f"{time.time():.3f}\n")
    log(f"traffic running: {len(threads)} threads for {a.duration:.0f}s")

    deadline = started + a.duration
    next_progress = started + 30
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= next_progress:
            next_progress += 30
            c = stats.snapshot()["counters"]
            log(f"t={time.monotonic() - started:4.0f}s logins={c.get('login.ok', 0)} "
                f"requests={c.get('req.total', 0)} (502: {c.get('req.status.502', 0)}) "
                f"ws={c.get('ws_short.opened', 0) + c.get('ws_long.opened', 0)} "
                f"4001={c.get('ws_long.closed_by_server_4001', 0) + c.get('ws_short.closed_by_server_4001', 0)} "
                f"slow-cut={c.get('slow.cut.closed', 0) + c.get('slow.cut.reset', 0)}")
    stop.set()
    hung = []
    end_by = time.monotonic() + a.timeout + 5
    for th in threads:
        th.join(max(0.0, end_by - time.monotonic()))
        if th.is_alive():
            hung.append(th.name)
    out = stats.snapshot()
    out["hung_threads"] = hung
    out["duration_s"] = time.monotonic() - started
    out["settings"] = {k: v for k, v in vars(a).items() if k != "func"}
    with open(a.summary, "w") as f:
        json.dump(out, f, indent=1)
    if hung:
        log(f"threads still blocked {a.timeout + 5:.0f}s after the stop: {', '.join(hung)}")
    log("traffic stopped")
    return 0


# ------------------------------------------------------------------ report --


def read_facts(path):
    facts = {}
    with open(path) as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                facts[k] = v
    return facts


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def report(a):
    with open(a.summary) as f:
        s = json.load(f)
    facts = read_facts(a.facts)
    c = collections.Counter(s["counters"])
    obs = s["observations"]
    with open(a.samples) as f:
        rows = [r for r in csv.DictReader(f)]
    for r in rows:
        for k in ("t_s", "rss_kib", "hwm_kib", "fds", "threads", "client_conns",
                  "upstream_conns", "idp_conns"):
            r[k] = int(float(r[k]))

    def sample(phase):
        return next((r for r in rows if r["phase"] == phase), None)

    idle, start, end = sample("idle"), sample("start"), sample("end")
    problems, notes = [], []
    if not (start and end):
        print("soak: no start/end sample; the run did not get that far")
        return 1
    running = [r for r in rows if r["phase"] in ("start", "run", "end")]
    max_rss = max(r["rss_kib"] for r in rows)
    max_fds = max(r["fds"] for r in rows)
    fd_slack, rss_pct, rss_slack = a.fd_slack, a.rss_pct, a.rss_slack_kib
    fd_limit = start["fds"] + fd_slack
    rss_limit = start["rss_kib"] * (1 + rss_pct / 100) + rss_slack
    fds_flat = end["fds"] <= fd_limit
    rss_flat = end["rss_kib"] <= rss_limit

    # RSS trend over the traffic after the warm-up (least squares, KiB per minute)
    pts = [(r["t_s"], r["rss_kib"]) for r in rows if r["phase"] in ("start", "run")]
    slope = None
    if len(pts) >= 3:
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        den = sum((x - mx) ** 2 for x, _ in pts)
        if den:
            slope = 60 * sum((x - mx) * (y - my) for x, y in pts) / den

    # 502s inside an upstream outage (+ grace) are expected; others are not
    windows = []
    if facts.get("outages"):
        for w in facts["outages"].split(","):
            lo, _, hi = w.partition("-")
            windows.append((float(lo), float(hi) + a.outage_grace))

    def in_outage(ts):
        return any(lo <= ts <= hi for lo, hi in windows)

    in_win = sum(1 for ts in s["times_502"] if in_outage(ts))
    out_win = len(s["times_502"]) - in_win
    ka_prefix = "req.keepalive_closed_after."
    net_in = collections.Counter(k for ts, k in s["times_net"]
                                 if in_outage(ts) and not k.startswith(ka_prefix))
    net_out = collections.Counter(k for ts, k in s["times_net"]
                                  if not in_outage(ts) and not k.startswith(ka_prefix))
    # Keep-alive connections gatehouse closed after an answer, without `Connection: close`.
    # Known: after answering a request with a body it did not read (a POST answered 502 while
    # the upstream is down); any other case is not expected.
    ka = {k[len(ka_prefix):]: v for k, v in c.items() if k.startswith(ka_prefix)}
    ka_known = {k: v for k, v in ka.items() if k.startswith("POST_") and not k.startswith("POST_2")}
    ka_other = {k: v for k, v in ka.items() if k not in ka_known}

    print()
    print(f"gatehouse soak: {s['duration_s']:.0f}s of mixed traffic "
          f"(warm-up {facts.get('warmup', '?')}s, samples every {facts.get('sample_every', '?')}s, "
          f"token TTL {facts.get('token_ttl', '?')}s), pid {facts.get('pid', '?')}")
    print("-" * 79)
    print(f"{'':22}{'idle':>12}{'start':>12}{'end':>12}{'max':>12}")
    print(f"{'RSS (VmRSS)':22}{mib(idle['rss_kib']) if idle else '-':>12}{mib(start['rss_kib']):>12}"
          f"{mib(end['rss_kib']):>12}{mib(max_rss):>12}")
    print(f"{'open files (fd/)':22}{idle['fds'] if idle else '-':>12}{start['fds']:>12}"
          f"{end['fds']:>12}{max_fds:>12}")
    for key, label in (("client_conns", "client connections"), ("upstream_conns", "upstream connections"),
                       ("idp_conns", "dev IdP sockets")):
        print(f"{label:22}{idle[key] if idle else '-':>12}{start[key]:>12}"
              f"{end[key]:>12}{max(r[key] for r in rows):>12}")
    print(f"{'threads':22}{idle['threads'] if idle else '-':>12}{start['threads']:>12}"
          f"{end['threads']:>12}{max(r['threads'] for r in rows):>12}")
    print(f"peak RSS (VmHWM) {mib(end['hwm_kib'])}; RSS trend during the traffic after warm-up: "
          + (f"{slope:+.0f} KiB/min" if slope is not None else "n/a"))
    try:
        issued = int(facts.get("log_logins", "")) + int(facts.get("log_refreshes", ""))
        print(f"dev IdP token grants: {issued} (logins + refreshes; the demo's IdP drops each "
              "token once it expires)")
    except ValueError:
        pass
    print(f"samples: {len(rows)} ({len(running)} after warm-up) in {facts.get('samples_file', a.samples)}")
    for phase in ("idle", "end"):
        if facts.get(f"fd_kinds_{phase}"):
            print(f"open files at {phase}: {facts[f'fd_kinds_{phase}']}")
    print("-" * 79)

    # traffic totals
    req_status = {k.split(".")[-1]: v for k, v in c.items() if k.startswith("req.status.")}
    logins_ok = c["login.ok"] + c["login.ok_unverified_502"]
    login_fail = {k[len("login.fail."):]: v for k, v in c.items() if k.startswith("login.fail.")}
    login_net = {k[len("login.net_error."):]: v for k, v in c.items() if k.startswith("login.net_error.")}
    print(f"logins            {c['login.attempts']} attempted, {c['login.ok']} ok and verified, "
          f"{c['login.ok_unverified_502']} ok (check request got 502), "
          f"{sum(login_fail.values())} failed {dict(login_fail) if login_fail else ''}".rstrip()
          + (f", network errors {login_net}" if login_net else ""))
    relog = {k: v for k, v in c.items() if k.startswith("relogin.") or k.startswith("probe.")}
    print(f"worker logins     {relog}")
    print(f"requests          {c['req.total']} answered, by status: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(req_status.items())))
    net = {k[len("req.net_error."):]: v for k, v in c.items() if k.startswith("req.net_error.")}
    print(f"{'':18}network errors: {net or 0}; session lost (401/302): {c['req.session_lost']}; "
          f"wrong user: {c['req.wrong_user']}; POST body mismatch: {c['req.post_body_mismatch']}; "
          f"expired ID token forwarded: {c['req.expired_id_token']}")
    print(f"refreshes         {c['req.refreshed_cookie']} request answers and {c['ws.refreshed_cookie']} "
          f"WebSocket handshakes carried a new session cookie; gatehouse logged "
          f"{facts.get('log_refreshes', '?')} refreshes")
    for kind, label in (("ws_short", "websockets short"), ("ws_long", "websockets long")):
        hs = {k.split(".")[-1]: v for k, v in c.items() if k.startswith(f"{kind}.handshake_status.")}
        closed_by = {k.split("_")[-1]: v for k, v in c.items() if k.startswith(f"{kind}.closed_by_server_")}
        print(f"{label:18}{c[f'{kind}.opened']} opened, {c[f'{kind}.closed_clean']} closed cleanly by us, "
              f"{c.get(f'{kind}.closed_by_server_4001', 0)} closed 4001 by gatehouse, "
              f"{c[f'{kind}.dropped']} dropped (upstream restart); {c[f'{kind}.messages']} echoes, "
              f"{c[f'{kind}.echo_mismatch']} mismatched")
        extra = {k: v for k, v in (("handshakes", hs), ("other server closes",
                                                        {k: v for k, v in closed_by.items() if k != "4001"}),
                                   ("timeouts", c[f"{kind}.timeout"]), ("protocol errors", c[f"{kind}.protocol_error"]),
                                   ("close unanswered", c[f"{kind}.close_unanswered"]),
                                   ("session lost", c[f"{kind}.session_lost"])) if v}
        if extra:
            print(f"{'':18}{extra}")
    if "ws_long.age_at_4001_s" in obs:
        o = obs["ws_long.age_at_4001_s"]
        print(f"{'':18}long WebSocket age at 4001: min {o['min']:.1f}s, mean {o['mean']:.1f}s, "
              f"max {o['max']:.1f}s; open past token TTL+15s: {c['ws_long.open_past_token_ttl']}")
    print(f"upstream restarts {facts.get('restarts', '?')} (outage each ~{facts.get('outage_s', '?')}s); "
          f"502s: {len(s['times_502'])} total, {in_win} inside an outage (+{a.outage_grace:.0f}s), "
          f"{out_win} outside")
    if net_in or net_out:
        print(f"{'':18}network errors inside an outage: {dict(net_in) or 0}; outside: {dict(net_out) or 0}")
    if ka:
        print(f"{'':18}keep-alive connections found closed by gatehouse (no `Connection: close`) and "
              f"retried, by the last exchange on them: {ka}")
    lt = obs.get("slow.lifetime_s")
    answered = {k.split(".")[-1]: v for k, v in c.items() if k.startswith("slow.answered.")}
    print(f"slow clients      {c['slow.opened']} opened, {c['slow.cut.closed'] + c['slow.cut.reset']} cut by "
          f"gatehouse ({c['slow.cut.closed']} closed, {c['slow.cut.reset']} reset"
          + (f"; answered first: {answered}" if answered else "") + ")"
          + (f", lifetime {lt['min']:.1f}-{lt['max']:.1f}s (mean {lt['mean']:.1f}s)" if lt else "")
          + f"; not cut within {a.slow_give_up:.0f}s: {c['slow.not_cut_in_time']}")
    print(f"gatehouse log     {facts.get('log_lines', '?')} lines: {facts.get('log_warn', '?')} WARN, "
          f"{facts.get('log_error', '?')} ERROR, {facts.get('log_panic', '?')} panics")
    if facts.get("log_warn_kinds"):
        for line in facts["log_warn_kinds"].split("|"):
            print(f"{'':18}{line}")
    print("-" * 79)

    # checks
    print(f"open files: end {end['fds']} <= start {start['fds']} + {fd_slack} = {fd_limit}: "
          + ("flat" if fds_flat else "NOT FLAT"))
    print(f"RSS: end {mib(end['rss_kib'])} <= start {mib(start['rss_kib'])} x {1 + rss_pct / 100:.2f} "
          f"+ {mib(rss_slack)} = {mib(rss_limit)}: " + ("flat" if rss_flat else "NOT FLAT"))
    if not fds_flat:
        problems.append(f"open files grew: {start['fds']} -> {end['fds']}")
    if not rss_flat:
        problems.append(f"RSS grew: {mib(start['rss_kib'])} -> {mib(end['rss_kib'])}")
    unexpected = {k: v for k, v in req_status.items() if k not in ("200", "502")}
    if unexpected:
        problems.append(f"unexpected request statuses: {unexpected}")
    for kind in ("ws_short", "ws_long"):
        bad = {k.split(".")[-1]: v for k, v in c.items()
               if k.startswith(f"{kind}.handshake_status.") and k.split(".")[-1] not in ("101", "502")}
        if bad:
            problems.append(f"{kind}: unexpected handshake statuses {bad}")
        other = {k: v for k, v in c.items() if k.startswith(f"{kind}.closed_by_server_")
                 and not k.endswith("_4001")}
        for what in ("echo_mismatch", "timeout", "protocol_error"):
            if c[f"{kind}.{what}"]:
                problems.append(f"{kind}: {c[f'{kind}.{what}']} x {what}")
        if other:
            problems.append(f"{kind}: unexpected server close codes {other}")
    if login_fail:
        problems.append(f"failed logins: {login_fail}")
    worker_fail = {k: v for k, v in relog.items() if ".fail." in k}
    if worker_fail:
        problems.append(f"failed worker logins: {worker_fail}")
    for k in ("req.wrong_user", "req.post_body_mismatch", "req.bad_body", "req.session_lost",
              "req.no_id_token", "req.expired_id_token",
              "slow.not_cut_in_time", "ws_long.open_past_token_ttl"):
        if c[k]:
            problems.append(f"{k}: {c[k]}")
    if net_out:
        problems.append(f"network errors outside the upstream's outages: {dict(net_out)}")
    if out_win:
        problems.append(f"{out_win} x 502 outside an upstream outage window (+{a.outage_grace:.0f}s)")
    if ka_other:
        problems.append(f"keep-alive connections closed without notice after: {ka_other}")
    if ka_known:
        notes.append(f"{sum(ka_known.values())} keep-alive connections were closed by gatehouse right after "
                     "it answered a POST without reading the body (502 while the upstream was down), "
                     "with no `Connection: close` in the answer; the next request on them failed and "
                     "was retried on a new connection (known; see bench/README.md, Soak run)")
    if s.get("hung_threads"):
        problems.append(f"driver threads hung after the stop: {s['hung_threads']}")
    if facts.get("alive_at_end") != "1":
        problems.append("gatehouse was not alive / /healthz did not answer 200 at the end")
    if facts.get("log_panic", "0") != "0" or facts.get("log_error", "0") != "0":
        problems.append(f"gatehouse logged {facts.get('log_error')} ERROR lines and {facts.get('log_panic')} panics")
    # sanity: the traffic was real
    need = {
        "successful logins": c["login.ok"],
        "authenticated 200 answers": int(req_status.get("200", 0)),
        "refreshed session cookies": c["req.refreshed_cookie"],
        "WebSocket echoes": c["ws_short.messages"] + c["ws_long.messages"],
        "WebSockets closed with 4001": c["ws_long.closed_by_server_4001"],
        "slow clients cut": c["slow.cut.closed"] + c["slow.cut.reset"],
    }
    if s["duration_s"] >= 60:
        need["upstream restarts"] = int(facts.get("restarts", 0) or 0)
    if s["duration_s"] < a.token_ttl + 20:
        need.pop("WebSockets closed with 4001")
    for what, n in need.items():
        if not n:
            problems.append(f"no {what}: the traffic was not what it should be")
    for n in notes:
        print(f"note: {n}")
    if problems:
        print("verdict: FAIL")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("verdict: PASS (open files and RSS flat, no unexpected answers)")
    return 0


# ------------------------------------------------------------------ main --


def main():
    ap = argparse.ArgumentParser(description="bench/soak.sh traffic driver and report")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drive")
    d.add_argument("--gatehouse", required=True)
    d.add_argument("--duration", type=float, required=True)
    d.add_argument("--summary", required=True)
    d.add_argument("--ready-file")
    d.add_argument("--timeout", type=float, default=15)
    d.add_argument("--token-ttl", type=float, default=30)
    d.add_argument("--login-rate", type=float, default=3)
    d.add_argument("--login-threads", type=int, default=2)
    d.add_argument("--sessions", type=int, default=4)
    d.add_argument("--session-threads", type=int, default=2)
    d.add_argument("--req-rate", type=float, default=10)
    d.add_argument("--ws-short", type=int, default=4)
    d.add_argument("--ws-long", type=int, default=4)
    d.add_argument("--slow", type=int, default=40)
    d.add_argument("--slow-interval", type=float, default=2)
    d.add_argument("--slow-give-up", type=float, default=30)
    r = sub.add_parser("report")
    r.add_argument("--summary", required=True)
    r.add_argument("--samples", required=True)
    r.add_argument("--facts", required=True)
    r.add_argument("--fd-slack", type=int, default=5)
    r.add_argument("--rss-pct", type=float, default=10)
    r.add_argument("--rss-slack-kib", type=int, default=2048)
    r.add_argument("--outage-grace", type=float, default=2)
    r.add_argument("--slow-give-up", type=float, default=30)
    r.add_argument("--token-ttl", type=float, default=30)
    a = ap.parse_args()
    sys.exit(drive(a) if a.cmd == "drive" else report(a))


if __name__ == "__main__":
    main()
