#!/usr/bin/env python3
"""bench/tls_idle.py: holds COUNT idle TLS connections open to a loopback server, for
bench/tls.sh's memory per idle connection.

    tls_idle.py HOST PORT COUNT ALPN CAFILE

Opens COUNT connections one after another, each with a complete TLS handshake (the
server's certificate checked against CAFILE, for the IP address HOST), and sends no
request. ALPN `none` offers no protocol (the server speaks HTTP/1.1, as to wrk); `h2`
offers h2 only, and each connection then sends the HTTP/2 client preface and an empty
SETTINGS frame and acknowledges the server's SETTINGS, as a browser's idle HTTP/2
connection has. Prints `OPEN <n>` when all are open, then waits for SIGUSR1 (or
SIGTERM), prints `ALIVE <n>`, the connections the server has not closed meanwhile, and
closes them all. Contacts 127.0.0.1 / ::1 only.
"""

import resource
import signal
import socket
import ssl
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # empty SETTINGS, stream 0
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def server_settings_seen(sock):
    """Reads frames until the server's own SETTINGS (not an ACK) has arrived."""
    buf = b""
    while True:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            kind, flags = buf[3], buf[4]
            if len(buf) < 9 + length:
                break
            buf = buf[9 + length:]
            if kind == 4 and not flags & 1:
                return
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection before its SETTINGS")
        buf += data


def open_one(ctx, host, port, alpn):
    raw = socket.create_connection((host, port), timeout=30)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    chosen = sock.selected_alpn_protocol()
    if alpn == "h2":
        if chosen != "h2":
            raise RuntimeError(f"the server chose ALPN {chosen!r}, not h2")
        sock.sendall(PREFACE + SETTINGS)
        server_settings_seen(sock)
        sock.sendall(SETTINGS_ACK)
    elif chosen not in (None, "http/1.1"):
        raise RuntimeError(f"the server chose ALPN {chosen!r} without being offered it")
    return sock


def still_open(sock):
    """True unless the server has closed the connection (data waiting counts as open)."""
    sock.setblocking(False)
    try:
        return bool(sock.recv(65536))
    except ssl.SSLWantReadError:
        return True
    except (ssl.SSLError, OSError):
        return False


def main():
    host, port, count, alpn, cafile = sys.argv[1:6]
    if host not in ("127.0.0.1", "::1"):
        sys.exit(f"refusing to contact {host!r}: loopback only")
    port, count = int(port), int(count)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count + 64, hard), hard))
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn != "none":
        ctx.set_alpn_protocols([alpn])
    conns = [open_one(ctx, host, port, alpn) for _ in range(count)]
    print(f"OPEN {len(conns)}", flush=True)
    signal.sigwait({signal.SIGUSR1, signal.SIGTERM})
    print(f"ALIVE {sum(1 for s in conns if still_open(s))}", flush=True)
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
