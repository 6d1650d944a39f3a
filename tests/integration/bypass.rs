//! The critical bypass of issue 14, as a class: a client's idea of the original request
//! must never get an unauthenticated request to the app. Real nginx (the README's
//! configuration), nginx written as ingress-nginx's template writes it (with and without
//! the README's ConfigMap), Caddy, Traefik and Envoy stand in front of gatehouse, with
//! `skip_auth_routes = GET=/public/**, /favicon.ico`, and gatehouse both with
//! `forward_auth_client = auto` and with the ingress named. Every combination of a
//! protected target (bytes >= 0x80, control bytes, dot segments, a query naming a public
//! path), a Host (bad ports, unparsable), a client's own `X-Original-URI`,
//! `X-Original-URL`, `X-Forwarded-Uri`, `X-Forwarded-Method` (single, all, duplicated,
//! `_` spellings, with bytes >= 0x80) and a method is sent raw; the app behind the
//! ingress is a canary that counts what reaches it. It must count nothing, while a plain
//! `GET /public/x` reaches it through every ingress (so the skip route is live).
//! The Envoy form is also attacked directly (the path below `/oauth2/auth`).

use crate::support::idp::TestIdp;
use crate::support::ingress::{free_port, skip_unless_ingress, Ingress, Kind, Wiring};
use crate::support::{config, raw_http_status, start_on, Gatehouse};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that answers 200 and remembers every request line that reached it.
struct Canary {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canary {
    async fn start() -> Canary {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(line).into_owned());
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nAPP",
                        )
                        .await;
                });
            }
        });
        Canary { addr, seen, task }
    }

    fn hits(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Sends `request` raw to `port`; returns the status code (0 when the peer closed
/// without one).
async fn raw(port: u16, request: &[u8]) -> u16 {
    raw_http_status(([127, 0, 0, 1], port).into(), request).await
}

/// Whether the app would serve `request_line` as one of the skip routes
/// (`GET=/public/**`, `/favicon.ico`), read the simplest way: a plain path of letters,
/// digits and `-._~/` with no dot segments.
fn public(request_line: &str) -> bool {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && !path.contains("//");
    plain
        && (path == "/favicon.ico"
            || (matches!(method, "GET" | "HEAD") && path.starts_with("/public/")))
}

const TARGETS: &[&[u8]] = &[
    b"/admin",
    b"/admin?\xff",
    b"/admin\xff/x",
    b"/admin?q=\x01",
    b"/admin?x=%ff&y=\xfe\xfd",
    b"/admin/%2e%2e/public/x",
    b"/public/../admin",
    b"/public/%2e%2e/admin",
    b"/admin?/public/x",
    b"/favicon.ico/../admin",
];

const HOSTS: &[&[u8]] = &[
    b"app.example.com",
    b"app.example.com:99999",
    b"app.example.com:abc",
    b"[::1",
];

/// Header sets a client adds, each naming a public path or method.
fn spoofs() -> Vec<Vec<(&'static str, &'static [u8])>> {
    let single: [(&str, &[u8]); 7] = [
        ("X-Original-URI", b"/public/x"),
        ("X-Original-URL", b"http://app.example.com/public/x"),
        ("X-Forwarded-Uri", b"/public/x"),
        ("X-Forwarded-Method", b"GET"),
        ("X_Original_URI", b"/public/x"),
        ("X-Original-URI", b"/public/x?\xff"),
        ("X-Original-Method", b"GET"),
    ];
    let mut sets: Vec<Vec<(&str, &[u8])>> = single.iter().map(|h| vec![*h]).collect();
    sets.push(single[..4].to_vec());
    sets.push(vec![
        ("X-Forwarded-Uri", b"/public/x"),
        ("X-Forwarded-Uri", b"/public/x"),
        ("X-Original-URI", b"/public/x"),
        ("X-Original-URI", b"/public/x"),
    ]);
    sets.push(vec![
        ("X-Original-URL", b"http://app.example.com:99999/public/x"),
        ("X-Forwarded-Uri", b"/public/x"),
        ("X-Forwarded-Method", b"GET"),
        ("X-Forwarded-Host", b"app.example.com"),
    ]);
    sets
}

fn request(method: &str, target: &[u8], host: &[u8], spoof: &[(&str, &[u8])]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    r.extend_from_slice(host);
    r.extend_from_slice(b"\r\n");
    for (k, v) in spoof {
        r.extend_from_slice(k.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v);
        r.extend_from_slice(b"\r\n");
    }
    if method != "GET" {
        r.extend_from_slice(b"Content-Length: 0\r\n");
    }
    r.extend_from_slice(b"Accept: text/html\r\nConnection: close\r\n\r\n");
    r
}

struct Stack {
    ingress: Ingress,
    _gh: Gatehouse,
    canary: Canary,
    _idp: TestIdp,
}

async fn stack(kind: Kind, client: &'static str, configmap: bool) -> Stack {
    let idp = TestIdp::start().await;
    let canary = Canary::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gh_addr = listener.local_addr().unwrap();
    let cfg = config(
        "",
        &idp.issuer,
        &[
            ("trusted_proxies", "127.0.0.1"),
            ("skip_auth_routes", "GET=/public/**,/favicon.ico"),
            ("auth_listen", "127.0.0.1:0"),
            ("forward_auth_client", client),
        ],
    );
    let gh = start_on(listener, cfg).await;
    let wiring = Wiring {
        listen_port: free_port(),
        gatehouse: gh_addr,
        gatehouse_auth: gh.auth_addr.unwrap(),
        upstream: canary.addr,
        configmap,
        naive: false,
    };
    let ingress = tokio::task::spawn_blocking(move || Ingress::start(kind, &wiring))
        .await
        .unwrap();
    Stack {
        ingress,
        _gh: gh,
        canary,
        _idp: idp,
    }
}

async fn attack(kind: Kind, client: &'static str, configmap: bool) {
    if skip_unless_ingress(kind) {
        return;
    }
    let s = stack(kind, client, configmap).await;
    let port: u16 = s.ingress.url.rsplit(':').next().unwrap().parse().unwrap();
    let name = format!(
        "{} (forward_auth_client = {client}, configmap {configmap})",
        kind.name()
    );
    // The skip route is live through this ingress: a plain public request reaches the app
    // (but never in Envoy's form under `auto`, where a fixed trailing-slash auth URL would
    // look the same: only a named `envoy` makes that form decide a skip).
    let live = !(kind == Kind::Envoy && client == "auto");
    let ok = raw(port, &request("GET", b"/public/x", b"app.example.com", &[])).await;
    if live {
        assert_eq!(ok, 200, "{name}: GET /public/x\n{}", s.ingress.log());
    } else {
        assert!(matches!(ok, 302 | 401), "{name}: GET /public/x got {ok}");
    }
    assert_eq!(s.canary.hits().len(), usize::from(live), "{name}");
    let denied = raw(port, &request("GET", b"/admin", b"app.example.com", &[])).await;
    assert!(
        matches!(denied, 302 | 401),
        "{name}: GET /admin got {denied}"
    );
    let mut sent = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for spoof in spoofs() {
        for target in TARGETS {
            for host in HOSTS {
                for method in ["GET", "POST"] {
                    let code = raw(port, &request(method, target, host, &spoof)).await;
                    *statuses.entry(code).or_insert(0) += 1;
                    sent += 1;
                }
            }
        }
        // POST to a GET-only public route with a client's method header saying GET.
        let code = raw(
            port,
            &request("POST", b"/public/x", b"app.example.com", &spoof),
        )
        .await;
        *statuses.entry(code).or_insert(0) += 1;
        sent += 1;
    }
    // What reached the app, as the app reads it: anything but a public route is a bypass.
    // (Traefik resolves `/admin/%2e%2e/public/x` to `/public/x` for both the check and
    // the app: that is the public route, consistently.)
    let hits = s.canary.hits();
    let bypasses: Vec<&String> = hits.iter().filter(|line| !public(line)).collect();
    assert!(
        bypasses.is_empty(),
        "{name}: {} of {sent} unauthenticated requests reached the app: {bypasses:?}",
        bypasses.len()
    );
    eprintln!(
        "{name}: {sent} attacks, none reached the app off the public routes ({} on them); statuses {statuses:?}",
        hits.len().saturating_sub(1)
    );
}

#[tokio::test]
async fn nginx_as_the_readme_configures_it() {
    attack(Kind::Nginx, "auto", false).await;
    attack(Kind::Nginx, "nginx", false).await;
}

#[tokio::test]
async fn ingress_nginx_template_without_the_configmap() {
    attack(Kind::IngressNginx, "auto", false).await;
    attack(Kind::IngressNginx, "ingress-nginx", false).await;
}

#[tokio::test]
async fn ingress_nginx_template_with_the_configmap() {
    attack(Kind::IngressNginx, "auto", true).await;
    attack(Kind::IngressNginx, "ingress-nginx", true).await;
}

#[tokio::test]
async fn caddy_forward_auth() {
    attack(Kind::Caddy, "auto", false).await;
    attack(Kind::Caddy, "caddy", false).await;
}

#[tokio::test]
async fn traefik_forward_auth() {
    attack(Kind::Traefik, "auto", false).await;
    attack(Kind::Traefik, "traefik", false).await;
}

#[tokio::test]
async fn envoy_ext_authz() {
    attack(Kind::Envoy, "auto", false).await;
    attack(Kind::Envoy, "envoy", false).await;
}

/// The Envoy form sent straight to gatehouse from a trusted address: the path below
/// `/oauth2/auth` is compared with every header, never replaced by one.
#[tokio::test]
async fn the_envoy_form_is_compared_never_replaced() {
    for client in ["auto", "envoy", "nginx"] {
        let idp = TestIdp::start().await;
        let gh = crate::support::start(config(
            "",
            &idp.issuer,
            &[
                ("trusted_proxies", "127.0.0.1"),
                ("skip_auth_routes", "GET=/public/**"),
                ("forward_auth_client", client),
            ],
        ))
        .await;
        let port = gh.addr.port();
        let public = raw(port, &request("GET", b"/oauth2/auth/public/x", b"gh", &[])).await;
        // Only a named Envoy lets its form decide a skip route.
        let want = if client == "envoy" { 200 } else { 401 };
        assert_eq!(public, want, "{client}: the Envoy form of a public path");
        for spoof in spoofs() {
            for target in TARGETS {
                let mut path = b"/oauth2/auth".to_vec();
                path.extend_from_slice(target);
                for method in ["GET", "POST"] {
                    let code = raw(port, &request(method, &path, b"gh", &spoof)).await;
                    assert_ne!(
                        code,
                        200,
                        "{client}: {method} {} with {spoof:?}",
                        String::from_utf8_lossy(&path)
                    );
                }
            }
        }
    }
}
