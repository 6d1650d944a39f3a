#!/usr/bin/env python3
"""bench/oidc_standin.py: a minimal OpenID Connect provider for bench/run.sh's Apache
target (mod_auth_openidc). BENCHMARK ONLY: anyone signs in as anyone, on loopback.

Why it exists: `gatehouse demo`'s embedded dev IdP knows exactly one client, whose
secret is random and never printed, so a second relying party (mod_auth_openidc) cannot
redeem a code there without a change to src/devidp (see bench/README.md, "Apache +
mod_auth_openidc"). This stand-in speaks the same flow as the dev IdP, so the bench's
curl login is the same for both:

  GET  /authorize?...      the login form (client_id, redirect_uri exact match,
                           response_type=code and PKCE S256 are required)
  POST /authorize?...      form fields `username`, `groups` -> 302 to the registered
                           redirect URI with code, state and iss
  POST /token              authorization_code (PKCE verified; client_secret_basic or
                           client_secret_post)
  GET  /.well-known/openid-configuration, /jwks (empty: ID tokens are HS256)

The ID token has the dev IdP's claims (sub, email, email_verified, preferred_username,
name, groups, nonce) and is signed HS256 with the client secret, which OIDC allows and
mod_auth_openidc verifies with its OIDCClientSecret. The IdP is only used during the
login, never while the load runs: mod_auth_openidc then keeps the session itself.

Usage: oidc_standin.py --client-id ID --client-secret SECRET --redirect-uri URI
       [--listen 127.0.0.1:0] [--token-ttl 3600]
Prints "issuer: http://127.0.0.1:PORT" once it listens. Python 3 standard library only.
"""

import argparse
import base64
import hashlib
import hmac
import html
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_hs256(claims: dict, key: str) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    sig = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(sig)}"


class Provider:
    def __init__(self, issuer, client_id, client_secret, redirect_uri, ttl):
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.ttl = ttl
        self.codes = {}
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "oidc-standin"
    protocol_version = "HTTP/1.1"
    idp: Provider = None  # set in main()

    def log_message(self, fmt, *args):  # quiet: one line per request to stderr
        sys.stderr.write("oidc-standin: " + (fmt % args) + "\n")

    # ---- answers ----
    def send(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj).encode())

    def oauth_error(self, status, error, desc):
        self.send_json(status, {"error": error, "error_description": desc})

    def bad_request(self, msg):
        self.send(400, f"<h1>Bad authorization request</h1><p>{html.escape(msg)}</p>".encode(),
                  "text/html; charset=utf-8")

    # ---- routing ----
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/.well-known/openid-configuration":
            i = self.idp.issuer
            self.send_json(200, {
                "issuer": i,
                "authorization_endpoint": f"{i}/authorize",
                "token_endpoint": f"{i}/token",
                "jwks_uri": f"{i}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            })
        elif url.path == "/jwks":
            self.send_json(200, {"keys": []})
        elif url.path == "/authorize":
            q = dict(urllib.parse.parse_qsl(url.query))
            err = self.check_authorize(q)
            if err:
                return self.bad_request(err)
            self.send(200, (
                "<h1>Benchmark stand-in IdP</h1><form method=\"post\">"
                "<input name=\"username\" value=\"dev\"><input name=\"groups\" value=\"\">"
                "<button type=\"submit\">Sign in</button></form>").encode(), "text/html; charset=utf-8")
        else:
            self.send(404, b"not found\n", "text/plain")

    def read_form(self):
        n = int(self.headers.get("Content-Length") or 0)
        return dict(urllib.parse.parse_qsl(self.rfile.read(n).decode("utf-8", "replace")))

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/authorize":
            return self.authorize_submit(dict(urllib.parse.parse_qsl(url.query)), self.read_form())
        if url.path == "/token":
            return self.token(self.read_form())
        self.send(404, b"not found\n", "text/plain")

    # ---- the flow ----
    def check_authorize(self, q):
        if q.get("client_id") != self.idp.client_id:
            return "unknown client_id"
        if q.get("redirect_uri") != self.idp.redirect_uri:
            return "redirect_uri is not the registered one"
        if q.get("response_type") != "code":
            return "only response_type=code is supported"
        if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            return "PKCE with S256 is required"
        return None

    def authorize_submit(self, q, form):
        err = self.check_authorize(q)
        if err:
            return self.bad_request(err)
        username = form.get("username", "").strip()
        if not username:
            return self.bad_request("a username is required")
        groups = [g.strip() for g in form.get("groups", "").split(",") if g.strip()]
        code = secrets.token_urlsafe(24)
        with self.idp.lock:
            self.idp.codes[code] = {
                "username": username, "groups": groups, "nonce": q.get("nonce"),
                "challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                "issued": time.time(),
            }
        sep = "&" if "?" in self.idp.redirect_uri else "?"
        target = self.idp.redirect_uri + sep + urllib.parse.urlencode(
            {"code": code, "state": q.get("state", ""), "iss": self.idp.issuer})
        self.send(302, b"", "text/plain", [("Location", target)])

    def client_ok(self, form):
        cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                i, _, s = base64.b64decode(auth[6:]).decode().partition(":")
                cid, secret = urllib.parse.unquote_plus(i), urllib.parse.unquote_plus(s)
            except ValueError:
                return False
        return cid == self.idp.client_id and hmac.compare_digest(secret, self.idp.client_secret)

    def token(self, form):
        if not self.client_ok(form):
            return self.oauth_error(401, "invalid_client", "unknown client or wrong secret")
        if form.get("grant_type") != "authorization_code":
            return self.oauth_error(400, "unsupported_grant_type", "use authorization_code")
        with self.idp.lock:
            g = self.idp.codes.pop(form.get("code", ""), None)
        if g is None or time.time() - g["issued"] > 60:
            return self.oauth_error(400, "invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != g["redirect_uri"]:
            return self.oauth_error(400, "invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        if b64url(hashlib.sha256(verifier.encode()).digest()) != g["challenge"]:
            return self.oauth_error(400, "invalid_grant", "PKCE verification failed")
        now = int(time.time())
        user = g["username"]
        claims = {
            "iss": self.idp.issuer, "sub": user, "aud": self.idp.client_id, "iat": now,
            "exp": now + self.idp.ttl, "email": f"{user}@example.test", "email_verified": True,
            "preferred_username": user, "name": user, "groups": g["groups"],
        }
        if g["nonce"]:
            claims["nonce"] = g["nonce"]
        self.send_json(200, {
            "access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
            "expires_in": self.idp.ttl, "id_token": sign_hs256(claims, self.idp.client_secret),
        })


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--redirect-uri", required=True)
    ap.add_argument("--token-ttl", type=int, default=3600)
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]", "::1"):
        sys.exit("oidc-standin: listens on loopback only")
    srv = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    srv.daemon_threads = True
    issuer = f"http://{host}:{srv.server_address[1]}"
    Handler.idp = Provider(issuer, a.client_id, a.client_secret, a.redirect_uri, a.token_ttl)
    print(f"issuer: {issuer}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
