#!/usr/bin/env python3
"""bench/soak_upstream.py: the upstream behind gatehouse in bench/soak.sh.

Python standard library only. Serves, on one loopback port:

  GET /healthz                  200 "ok" (readiness probe for soak.sh)
  GET <any> + Upgrade: websocket
                                a WebSocket (RFC 6455) that echoes every text and binary
                                message, answers pings and returns the client's close frame
  GET/POST/HEAD <any other>     200 JSON: the path and the identity headers gatehouse
                                injected (x-forwarded-user, -email, -groups, and the `exp`
                                of x-forwarded-id-token), so the traffic driver can check
                                which session a request rode on and that its token was
                                current

HTTP/1.1 with keep-alive (gatehouse pools its upstream connections), one thread per
connection. soak.sh kills and restarts it on the same port during the run.

Usage: soak_upstream.py --listen 127.0.0.1:PORT
"""

import argparse
import base64
import hashlib
import json
import signal
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_WS_PAYLOAD = 1 << 20


class WsClosed(Exception):
    """The peer went away mid-frame."""


def read_exact(rfile, n):
    data = rfile.read(n)
    if data is None or len(data) < n:
        raise WsClosed()
    return data


def read_frame(rfile):
    """One frame from the client: (fin, opcode, payload). Client frames are masked."""
    b0, b1 = read_exact(rfile, 2)
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    masked, length = bool(b1 & 0x80), b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", read_exact(rfile, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read_exact(rfile, 8))
    if length > MAX_WS_PAYLOAD:
        raise WsClosed()
    mask = read_exact(rfile, 4) if masked else None
    payload = read_exact(rfile, length) if length else b""
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return fin, opcode, payload


def frame(opcode, payload, fin=True):
    """One unmasked frame, server to client."""
    n, b0 = len(payload), (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def id_token_exp(token):
    """The `exp` claim of the ID token gatehouse forwards (read, not verified), or None."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "soak-upstream"

    def log_message(self, fmt, *args):  # quiet: thousands of requests a minute
        pass

    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _identity(self):
        h = self.headers
        return {
            "path": self.path,
            "user": h.get("x-forwarded-user"),
            "email": h.get("x-forwarded-email"),
            "groups": h.get("x-forwarded-groups"),
            "id_token_exp": id_token_exp(h.get("x-forwarded-id-token")),
        }

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if (self.headers.get("Upgrade") or "").lower() == "websocket":
            self._websocket()
            return
        self._json(self._identity())

    def do_HEAD(self):
        self._json(self._identity())

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = self._identity()
        out["received"] = len(body)
        self._json(out)

    def _websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or self.headers.get("Sec-WebSocket-Version") != "13":
            self.close_connection = True
            self._json({"error": "bad websocket handshake"}, 400)
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            while True:
                fin, opcode, payload = read_frame(self.rfile)
                if opcode in (0x0, 0x1, 0x2):  # continuation, text, binary: echo frame by frame
                    self.wfile.write(frame(opcode, payload, fin))
                elif opcode == 0x9:  # ping
                    self.wfile.write(frame(0xA, payload))
                elif opcode == 0x8:  # close: send it back, then end
                    self.wfile.write(frame(0x8, payload[:2]))
                    self.wfile.flush()
                    return
                self.wfile.flush()
        except (WsClosed, OSError, ValueError):
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # Peers (gatehouse's pool) reset connections when this process is restarted or
        # a WebSocket is cut; nothing to report.
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT (loopback)")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("soak_upstream: loopback only")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = Server((host, int(port)), Handler)
    srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print(f"soak-upstream listening on http://{host}:{port}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
