#!/usr/bin/env python3
"""bench/ws_echo.py: the WebSocket side of bench/ws.sh, Python 3 standard library only.

  ws_echo.py server --listen 127.0.0.1:0
      A WebSocket echo upstream: answers the upgrade (RFC 6455), echoes every text or
      binary frame back unmasked, answers ping with pong and close with close. A plain
      GET (no upgrade) gets 200 and a one-line JSON with the X-Forwarded-User it received,
      so the caller can check that an identity reaches it. Prints "listening: PORT".

  ws_echo.py client --url ws://127.0.0.1:PORT/path [--cookie 'name=value'] ...
      Opens --count WebSockets (at most --handshakes at a time), then every connection
      sends a small text message every --interval-min..--interval-max seconds (its own
      random interval and start offset, so the sends are staggered) and waits for the
      echo. Round trips are recorded while all connections are open, for --hold seconds.
      It then reads --pid's VmRSS and open files (the proxy's, if given), closes every
      connection with a close handshake, and samples the same again for --after-close
      seconds. Prints progress to stderr and one "WS_RESULT {json}" line to stdout.

Only loopback URLs are accepted. Frames are small and never fragmented.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import struct
import sys
import time
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def log(msg):
    print(f"[ws_echo] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ framing --

def xor_mask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if masked:
        mask = os.urandom(4)
        return head + mask + xor_mask(payload, mask)
    return head + payload


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    opcode, n = b0 & 0x0F, b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b1 & 0x80 else None
    data = await reader.readexactly(n) if n else b""
    return opcode, (xor_mask(data, mask) if mask else data)


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


async def read_head(reader, limit=65536):
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > limit:
        raise ValueError("head too large")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


# ------------------------------------------------------------------- server --

async def serve_conn(reader, writer):
    try:
        start, h = await read_head(reader)
        if h.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in h:
            body = json.dumps({"echo": "ws", "x-forwarded-user": h.get("x-forwarded-user", "")}).encode() + b"\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            return
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept_key(h['sec-websocket-key'])}\r\n\r\n").encode())
        await writer.drain()
        while True:
            op, data = await read_frame(reader)
            if op in (OP_TEXT, OP_BINARY):
                writer.write(encode_frame(op, data, masked=False))
            elif op == OP_PING:
                writer.write(encode_frame(OP_PONG, data, masked=False))
            elif op == OP_CLOSE:
                writer.write(encode_frame(OP_CLOSE, data[:2], masked=False))
                await writer.drain()
                return
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def run_server(listen):
    host, _, port = listen.rpartition(":")
    srv = await asyncio.start_server(serve_conn, host, int(port), backlog=4096)
    print(f"listening: {srv.sockets[0].getsockname()[1]}", flush=True)
    async with srv:
        await srv.serve_forever()


# ------------------------------------------------------------------- client --

def proc_sample(pid):
    """(VmRSS KiB, open files) of pid, or (None, None)."""
    if not pid:
        return None, None
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None, None


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


class Conn:
    def __init__(self, idx):
        self.idx = idx
        self.reader = self.writer = None
        self.closed_early = False
        self.mismatch = 0


class Client:
    def __init__(self, a):
        self.a = a
        u = urllib.parse.urlsplit(a.url)
        if u.scheme != "ws" or u.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"refusing a non-loopback ws:// URL: {a.url}")
        self.host, self.port = u.hostname, u.port or 80
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.measuring = False
        self.stop = asyncio.Event()
        self.rtts = []
        self.sent = 0
        self.echoed = 0

    async def open_one(self, c, sem):
        async with sem:
            r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
            key = base64.b64encode(os.urandom(16)).decode()
            req = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
            if self.a.cookie:
                req += f"Cookie: {self.a.cookie}\r\n"
            w.write((req + "\r\n").encode())
            await w.drain()
            status, h = await asyncio.wait_for(read_head(r), 10)
            if " 101 " not in status + " ":
                w.close()
                raise ConnectionError(f"upgrade refused: {status}")
            if h.get("sec-websocket-accept") != accept_key(key):
                w.close()
                raise ConnectionError("bad Sec-WebSocket-Accept")
            c.reader, c.writer = r, w

    async def chatter(self, c):
        """Send a message every interval (staggered start), wait for its echo."""
        interval = random.uniform(self.a.interval_min, self.a.interval_max)
        try:
            await asyncio.wait_for(self.stop.wait(), random.uniform(0, interval))
        except asyncio.TimeoutError:
            pass
        seq = 0
        while not self.stop.is_set():
            seq += 1
            payload = f"{c.idx}:{seq}:".encode().ljust(self.a.size, b"x")
            t0 = time.perf_counter()
            c.writer.write(encode_frame(OP_TEXT, payload, masked=True))
            await c.writer.drain()
            self.sent += 1
            while True:
                op, data = await read_frame(c.reader)
                if op == OP_PING:
                    c.writer.write(encode_frame(OP_PONG, data, masked=True))
                    continue
                if op == OP_CLOSE:
                    raise ConnectionError(f"closed by the server: {data[:2].hex()}")
                break
            rtt = time.perf_counter() - t0
            self.echoed += 1
            if data != payload:
                c.mismatch += 1
            if self.measuring:
                self.rtts.append(rtt)
            try:
                await asyncio.wait_for(self.stop.wait(), max(0.0, interval - rtt))
            except asyncio.TimeoutError:
                pass

    async def close_one(self, c):
        try:
            c.writer.write(encode_frame(OP_CLOSE, struct.pack("!H", 1000), masked=True))
            await c.writer.drain()
            while True:  # drain any late echo until the server's close frame
                op, _ = await asyncio.wait_for(read_frame(c.reader), 5)
                if op == OP_CLOSE:
                    return True
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False
        finally:
            c.writer.close()

    async def run(self):
        a = self.a
        res = {"label": a.label, "count": a.count}
        res["rss_before_kib"], res["fds_before"] = proc_sample(a.pid)
        conns = [Conn(i) for i in range(a.count)]
        sem = asyncio.Semaphore(a.handshakes)
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(self.open_one(c, sem) for c in conns), return_exceptions=True)
        res["open_secs"] = round(time.perf_counter() - t0, 2)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        res["open_failed"] = len(failures)
        if failures:
            log(f"{a.label}: {len(failures)} of {a.count} upgrades failed, first: {failures[0]!r}")
        live = [c for c in conns if c.writer is not None]
        res["opened"] = len(live)
        log(f"{a.label}: {len(live)} WebSockets open in {res['open_secs']} s")

        async def guarded(c):
            try:
                await self.chatter(c)
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
                c.closed_early = True
                if not getattr(self, "_logged", False):
                    self._logged = True
                    log(f"{a.label}: a connection ended early: {e!r}")

        tasks = [asyncio.create_task(guarded(c)) for c in live]
        await asyncio.sleep(a.interval_max + 0.5)  # every connection has sent at least once
        self.measuring = True
        log(f"{a.label}: echoing, measuring round trips for {a.hold} s")
        await asyncio.sleep(a.hold)
        self.measuring = False
        res["rss_open_kib"], res["fds_open"] = proc_sample(a.pid)
        self.stop.set()
        await asyncio.gather(*tasks)
        still = [c for c in live if not c.closed_early]
        res["closed_early"] = len(live) - len(still)
        res["mismatched"] = sum(c.mismatch for c in live)
        oks = await asyncio.gather(*(self.close_one(c) for c in still))
        res["clean_closes"] = sum(1 for ok in oks if ok)
        res["sent"], res["echoed"] = self.sent, self.echoed
        r = sorted(self.rtts)
        res["samples"] = len(r)
        for p in (50, 90, 99):
            v = pct(r, p)
            res[f"p{p}_ms"] = round(v * 1000, 3) if v is not None else None
        res["max_ms"] = round(r[-1] * 1000, 3) if r else None
        log(f"{a.label}: closed; {len(r)} round trips measured")
        samples = []
        if a.pid and a.after_close > 0:
            t_close = time.perf_counter()
            marks = sorted({m for m in (1, 10, 30, a.after_close) if m <= a.after_close})
            for m in marks:
                await asyncio.sleep(max(0.0, t_close + m - time.perf_counter()))
                rss, fds = proc_sample(a.pid)
                samples.append({"secs": m, "rss_kib": rss, "fds": fds})
                log(f"{a.label}: {m:g} s after closing: RSS {rss} KiB, {fds} open files")
        res["after_close"] = samples
        print("WS_RESULT " + json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser(description="WebSocket echo server and load client for bench/ws.sh")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--listen", default="127.0.0.1:0")
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--cookie", default="")
    c.add_argument("--label", default="run")
    c.add_argument("--count", type=int, default=1000)
    c.add_argument("--handshakes", type=int, default=64, help="upgrades in flight at once")
    c.add_argument("--hold", type=float, default=20.0)
    c.add_argument("--interval-min", type=float, default=1.0)
    c.add_argument("--interval-max", type=float, default=2.0)
    c.add_argument("--size", type=int, default=32, help="message size in bytes")
    c.add_argument("--pid", type=int, default=0, help="process whose RSS and open files to sample")
    c.add_argument("--after-close", type=float, default=0.0)
    a = ap.parse_args()
    if a.cmd == "server":
        host = a.listen.rpartition(":")[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            raise SystemExit("the echo server listens on loopback only")
        asyncio.run(run_server(a.listen))
    else:
        asyncio.run(Client(a).run())


if __name__ == "__main__":
    main()
