#!/usr/bin/env python3
"""bench/tls_resume.py: does a loopback TLS server resume sessions? For bench/tls.sh,
which says so next to its figure of new connections with wrk (wrk offers the session of
a connection's previous connection when it opens the next).

    tls_resume.py HOST PORT CAFILE

Opens a connection (the certificate checked against CAFILE), asks GET /healthz with
`Connection: close` and reads to the end (a TLS 1.3 server sends its session tickets
after the handshake), then opens a second connection offering that session. Prints
`resumed` or `full handshake` and the protocol. Contacts 127.0.0.1 / ::1 only.
"""

import socket
import ssl
import sys


def fetch(ctx, host, port, session=None):
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host, session=session) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
            return sock.session, sock.session_reused, sock.version()


def main():
    host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if host not in ("127.0.0.1", "::1"):
        sys.exit(f"refusing to contact {host!r}: loopback only")
    ctx = ssl.create_default_context(cafile=cafile)
    session, _, _ = fetch(ctx, host, port)
    _, reused, version = fetch(ctx, host, port, session)
    print(f"{'resumed' if reused else 'full handshake'} ({version})")


if __name__ == "__main__":
    main()
