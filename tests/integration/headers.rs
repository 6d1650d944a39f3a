//! Identity-header smuggling and friends (CONTRACTS §4), checked at the upstream: what a
//! client sends never survives, whatever its spelling.

use crate::flow::{logged_in, world};
use crate::support::upstream::seen;
use crate::support::Browser;
use reqwest::Method;

const SPOOFS: &[(&str, &str)] = &[
    ("X-Forwarded-User", "root"),
    ("x-forwarded-user", "root-again"),
    ("X_Forwarded_User", "root-underscore"),
    ("X_FORWARDED_EMAIL", "root@evil.com"),
    ("X-Forwarded-Group", "system:masters"),
    ("X-Forwarded-Groups", "system:masters"),
    ("X-Forwarded-Preferred-Username", "root"),
    (
        "X-Forwarded-Id-Token",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",
    ),
    ("X-Forwarded-Access-Token", "forged"),
    ("X-Auth-Request-User", "root"),
    ("X-Auth-Request-Email", "root@evil.com"),
    ("Remote-User", "root"),
    ("X-Remote-User", "root"),
    ("X-WebAuth-User", "root"),
    ("X-Forwarded-Uri", "/healthz"),
    ("X-Original-URI", "/healthz"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
    ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
    ("X-Real-IP", "6.6.6.6"),
    ("X-Client-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("CF-Connecting-IP", "6.6.6.6"),
    ("X-Cluster-Client-IP", "6.6.6.6"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Server", "evil"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("Impersonate-User", "system:admin"),
    ("Impersonate-Group", "system:masters"),
    ("Impersonate-Uid", "0"),
    ("Impersonate-Extra-Scopes", "all"),
    ("impersonate_user", "system:admin"),
];

fn spoofed_request<'a>(extra: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h: Vec<(&str, &str)> = SPOOFS.to_vec();
    h.extend_from_slice(extra);
    h
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let (w, b) = logged_in(&[]).await;
    b.jar.lock().unwrap().insert("theme".into(), "dark".into());
    let headers = spoofed_request(&[
        ("Connection", "X-Hop"),
        ("X-Hop", "secret"),
        ("accept", "application/json"),
    ]);
    let r = b
        .send(
            Method::GET,
            &format!("{}/clusters/main/me", w.gh.url),
            &headers,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(
        seen(&echo, "x-forwarded-user"),
        vec!["alice@example.test"],
        "exactly one, ours"
    );
    assert_eq!(seen(&echo, "x-forwarded-email"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
    assert_eq!(seen(&echo, "x-forwarded-groups"), vec!["admins,dev"]);
    assert_eq!(seen(&echo, "x-forwarded-preferred-username"), vec!["alice"]);
    assert!(!seen(&echo, "x-forwarded-id-token")[0].starts_with("eyJhbGciOiJub25l"));
    for gone in [
        "x_forwarded_user",
        "x_forwarded_email",
        "x-forwarded-access-token",
        "x-auth-request-user",
        "x-auth-request-email",
        "remote-user",
        "x-remote-user",
        "x-webauth-user",
        "x-forwarded-uri",
        "x-original-uri",
        "x-hop",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "x-forwarded-port",
        "x-forwarded-server",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
        "impersonate-user",
        "impersonate-group",
        "impersonate-uid",
        "impersonate-extra-scopes",
        "impersonate_user",
    ] {
        assert!(
            seen(&echo, gone).is_empty(),
            "{gone} reached the upstream: {echo}"
        );
    }
    assert_eq!(
        seen(&echo, "x-forwarded-for"),
        vec!["127.0.0.1"],
        "untrusted client: only the peer"
    );
    assert_eq!(seen(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(seen(&echo, "x-forwarded-host")[0], w.gh.addr.to_string());
    assert_eq!(
        seen(&echo, "x-real-ip"),
        vec!["127.0.0.1"],
        "ours, not the client's"
    );
    assert_eq!(seen(&echo, "forwarded"), vec!["for=127.0.0.1;proto=http"]);
    let cookies = seen(&echo, "cookie").join("; ");
    assert!(
        cookies.contains("theme=dark") && !cookies.contains("_gatehouse"),
        "{cookies}"
    );
}

#[tokio::test]
async fn spoofed_headers_without_a_session_get_nothing() {
    let w = world(&[]).await;
    let b = Browser::new();
    let r = b
        .send(
            Method::GET,
            &format!("{}/clusters/main/me", w.gh.url),
            &spoofed_request(&[("accept", "application/json")]),
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn forwarded_headers_are_believed_from_trusted_proxies() {
    let (w, b) = logged_in(&[("trusted_proxies", "127.0.0.1/32")]).await;
    let r = b
        .send(
            Method::GET,
            &format!("{}/x", w.gh.url),
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Proto", "https"),
                ("X-Real-IP", "7.7.7.7"),
                ("Impersonate-User", "system:admin"),
                ("accept", "application/json"),
            ],
        )
        .await;
    let echo = r.json();
    assert_eq!(seen(&echo, "x-forwarded-for"), vec!["6.6.6.6, 127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(
        seen(&echo, "x-real-ip"),
        vec!["6.6.6.6"],
        "the first address of the trusted chain, set by gatehouse"
    );
    assert!(
        seen(&echo, "impersonate-user").is_empty(),
        "impersonation never passes, even from a trusted proxy"
    );
}

/// Behind a load balancer that appends to `X-Forwarded-For`, a client's own copy of the
/// header stands left of the address the load balancer saw: the upstream is told that
/// address, never the one the client chose, in every header it may read the client
/// from. `X-Forwarded-For` starts at that address (an upstream reading its leftmost
/// entry, as Express with `trust proxy` and `split(',')[0]` do, believes the same
/// client), followed by the trusted hops and the peer.
#[tokio::test]
async fn the_upstream_is_told_the_address_the_trusted_proxy_saw_not_the_clients_claim() {
    let (w, b) = logged_in(&[("trusted_proxies", "127.0.0.1/32, 10.0.0.0/8")]).await;
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (
            &["6.6.6.6, 203.0.113.9"],
            "203.0.113.9",
            "for=203.0.113.9",
            "203.0.113.9, 127.0.0.1",
        ),
        // Two header lines, then an inner trusted proxy.
        (
            &["10.1.1.1, 6.6.6.6", "203.0.113.9, 10.0.0.7"],
            "203.0.113.9",
            "for=203.0.113.9",
            "203.0.113.9, 10.0.0.7, 127.0.0.1",
        ),
        // A load balancer writing the port, and IPv6: written as read, without the port.
        (
            &["6.6.6.6, [2001:db8::9]:51234"],
            "2001:db8::9",
            "for=\"[2001:db8::9]\"",
            "2001:db8::9, 127.0.0.1",
        ),
        // Garbage stops the walk: the last trusted hop, never a value left of it.
        (
            &["6.6.6.6, unknown, 10.0.0.7"],
            "10.0.0.7",
            "for=10.0.0.7",
            "10.0.0.7, 127.0.0.1",
        ),
        (&["6.6.6.6,"], "127.0.0.1", "for=127.0.0.1", "127.0.0.1"),
        // Every address trusted: the whole chain, the leftmost being the client.
        (
            &["10.0.0.3, 10.0.0.2"],
            "10.0.0.3",
            "for=10.0.0.3",
            "10.0.0.3, 10.0.0.2, 127.0.0.1",
        ),
    ];
    for (lines, real_ip, forwarded, chain) in cases {
        let mut headers: Vec<(&str, &str)> =
            lines.iter().map(|l| ("X-Forwarded-For", *l)).collect();
        headers.push(("accept", "application/json"));
        let r = b
            .send(Method::GET, &format!("{}/x", w.gh.url), &headers)
            .await;
        let echo = r.json();
        assert_eq!(seen(&echo, "x-real-ip"), vec![*real_ip], "{lines:?}");
        assert_eq!(
            seen(&echo, "forwarded"),
            vec![format!("{forwarded};proto=http")],
            "{lines:?}"
        );
        assert_eq!(
            seen(&echo, "x-forwarded-for"),
            vec![*chain],
            "{lines:?}: only the vouched part of the chain, then the peer"
        );
    }
}

#[tokio::test]
async fn no_path_query_fragment_or_user_agent_skips_authentication() {
    let w = world(&[]).await;
    let b = Browser::new();
    for path in [
        "/app?/healthz",
        "/app%23/healthz",
        "/healthz/../app",
        "/healthz/x",
        "/readyz/x",
        "/oauth2/startx",
        "/oauth2/../app",
    ] {
        let r = b
            .send(
                Method::GET,
                &format!("{}{path}", w.gh.url),
                &[
                    ("accept", "application/json"),
                    ("user-agent", "kube-probe/1.31"),
                ],
            )
            .await;
        assert_eq!(r.status, 401, "{path} must require a session: {r:?}");
    }
}

#[tokio::test]
async fn forged_cookie_chunks_are_bounded_and_harmless() {
    let w = world(&[]).await;
    let mut cookie = String::from("_gatehouse_99999999=x; _gatehouse_0=AAAA");
    for i in 1..300 {
        cookie.push_str(&format!("; _gatehouse_{i}=AAAAAAAA"));
    }
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/x", w.gh.url))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let cleared = r.headers().get_all("set-cookie").iter().count();
    assert!(
        cleared <= gatehouse::session::chunks::MAX_CHUNKS + 1,
        "{cleared} Set-Cookie headers for forged chunks"
    );
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let (w, b) = logged_in(&[]).await;
    // h2c would let the client talk HTTP/2 to the upstream past every check: the request
    // is forwarded as a plain one, and nothing switches protocols.
    let r = b
        .send(
            Method::GET,
            &format!("{}/h2c", w.gh.url),
            &[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "no 101: {r:?}");
    let echo = r.json();
    assert!(
        seen(&echo, "upgrade").is_empty() && seen(&echo, "http2-settings").is_empty(),
        "{echo}"
    );
    // A WebSocket still switches (proxy.rs covers the whole exchange).
    let cookie = b.cookie_header();
    crate::proxy::check_websocket(&w.gh.url, &cookie, "alice@example.test").await;
}

#[tokio::test]
async fn shared_caches_never_get_a_users_page_or_session() {
    let (w, b) = logged_in(&[]).await;
    let r = b
        .send(
            Method::GET,
            &format!("{}/cacheable", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200);
    let cc = r.headers.get("cache-control").unwrap().to_str().unwrap();
    assert_eq!(cc, "private, max-age=60", "never left public");
    let vary: Vec<&str> = r
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        vary.iter().any(|v| v.eq_ignore_ascii_case("cookie")),
        "{vary:?}"
    );
    // A response that refreshes the session is never stored by a cache.
    let (w, b) = logged_in(&[("refresh_before_secs", "100000")]).await;
    let r = b
        .send(
            Method::GET,
            &format!("{}/cacheable", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert!(r.set_cookies().iter().any(|c| c.starts_with("_gatehouse=")));
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
}

#[tokio::test]
async fn strip_client_authorization_removes_the_apps_own_token() {
    let (w, b) = logged_in(&[("strip_client_authorization", "true")]).await;
    let echo = b
        .send(
            Method::GET,
            &format!("{}/x", w.gh.url),
            &[
                ("authorization", "Bearer mine"),
                ("accept", "application/json"),
            ],
        )
        .await
        .json();
    assert!(seen(&echo, "authorization").is_empty());
}

/// Sends raw bytes to gatehouse and returns the status line and what the upstream saw
/// (if the request reached it).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Request smuggling needs two parsers to disagree about where a request ends: ambiguous
/// framing is refused with 400 and never forwarded.
#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let (w, b) = logged_in(&[]).await;
    let cookie = b.cookie_header();
    let host = w.gh.addr.to_string();
    let cases = [
        ("two different CLs", format!("POST /smuggle HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde")),
        ("obsolete line folding", format!("GET /smuggle HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n")),
        ("space before the colon", format!("GET /smuggle HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nX-Spaced : a\r\nConnection: close\r\n\r\n")),
        ("duplicate Host", format!("GET /smuggle HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n")),
    ];
    for (what, req) in cases {
        let resp = raw(w.gh.addr, &req).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "{what}: {}",
            resp.lines().next().unwrap_or("(no answer)")
        );
        assert!(
            !resp.contains("\"path\":\"/smuggle\""),
            "{what} reached the upstream: {resp}"
        );
    }
    // Both Content-Length and Transfer-Encoding, in either order and any case, as the
    // first request on a connection or after others (keep-alive), after a chunked body
    // or a body that itself looks like a head: 400, and the upstream never sees it.
    let smuggled = |first: &str, te: &str, cl: &str| {
        format!("{first}POST /smuggle HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\n{te}\r\n{cl}\r\nConnection: close\r\n\r\n0\r\n\r\n")
    };
    let keep = |path: &str, body: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\n{body}")
    };
    let decoy = "GET /smuggle HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let firsts = [
        String::new(),
        keep("/first", "Content-Length: 2\r\n\r\nab"),
        keep(
            "/first",
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        keep(
            "/first",
            &format!("Content-Length: {}\r\n\r\n{decoy}", decoy.len()),
        ),
    ];
    for first in &firsts {
        for (te, cl) in [
            ("Transfer-Encoding: chunked", "Content-Length: 4"),
            ("transfer-encoding: gzip, chunked", "content-length: 0"),
        ] {
            for (a, b) in [(te, cl), (cl, te)] {
                let resp = raw(w.gh.addr, &smuggled(first, a, b)).await;
                let answers: Vec<&str> = resp
                    .match_indices("HTTP/1.1 ")
                    .map(|(i, _)| &resp[i..(i + 12).min(resp.len())])
                    .collect();
                let last = answers.last().copied().unwrap_or("(no answer)");
                assert!(
                    last.starts_with("HTTP/1.1 400"),
                    "{a} + {b} after {first:?}: {answers:?}"
                );
                assert!(resp.contains("ambiguous_framing"), "{resp}");
                assert!(
                    !resp.contains("\"path\":\"/smuggle\""),
                    "reached the upstream: {resp}"
                );
                assert_eq!(answers.len(), 1 + usize::from(!first.is_empty()), "{resp}");
            }
        }
    }
    // A plain request on the same path works.
    let ok = raw(
        w.gh.addr,
        &format!("GET /smuggle HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// A request whose body gatehouse does not pass on (refused before the upstream) gets
/// `Connection: close`, since the unread body ends the connection: a keep-alive client
/// must not send its next request into it. A body that went upstream keeps the connection.
#[tokio::test]
async fn an_unread_body_closes_the_connection_and_says_so() {
    let (w, b) = logged_in(&[]).await;
    let host = w.gh.addr.to_string();
    let refused = raw(
        w.gh.addr,
        &format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Length: 3\r\n\r\nabc"),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{refused}"
    );
    // With a session the body reaches the upstream, and the connection serves a second
    // request.
    let cookie = b.cookie_header();
    let two = raw(
        w.gh.addr,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\nContent-Length: 3\r\n\r\nabc\
             GET /second HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(two.matches("HTTP/1.1 200").count(), 2, "{two}");
    assert!(two.contains("\"path\":\"/second\""), "{two}");
}

/// The method-override headers frameworks honour, in the spellings stacks fold together.
const OVERRIDES: &[(&str, &str)] = &[
    ("X-HTTP-Method-Override", "DELETE"),
    ("x_http_method_override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X.Method.Override", "PUT"),
];

/// A skip route that allows some methods only (`POST=/hook`) lets a request through
/// without a login; an upstream honouring `X-HTTP-Method-Override` (Express's
/// method-override, Symfony, Laravel) would run it as a DELETE no route allowed. So a
/// request a skip route let through reaches the upstream without any method override,
/// in any spelling, while a signed-in user's request keeps them (apps whose clients send
/// only GET and POST rely on them, and gatehouse decides nothing by a user's method).
#[tokio::test]
async fn a_skip_route_never_passes_a_method_override() {
    let (w, b) = logged_in(&[("skip_auth_routes", "POST=/hook, GET=/public/**")]).await;
    let names = |echo: &serde_json::Value| -> Vec<String> {
        echo["headers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains("method"))
            .cloned()
            .collect()
    };
    for (method, path) in [(Method::POST, "/hook"), (Method::GET, "/public/x")] {
        let mut headers = OVERRIDES.to_vec();
        headers.push(("accept", "application/json"));
        let r = Browser::new()
            .send(method.clone(), &format!("{}{path}", w.gh.url), &headers)
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
        let echo = r.json();
        assert_eq!(echo["method"], method.as_str());
        assert!(
            names(&echo).is_empty(),
            "{method} {path} reached the upstream with {:?}",
            names(&echo)
        );
    }
    // Signed in, the same headers go on.
    let mut headers = OVERRIDES.to_vec();
    headers.push(("accept", "application/json"));
    let r = b
        .send(Method::POST, &format!("{}/api/items/7", w.gh.url), &headers)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(seen(&echo, "x-http-method-override"), vec!["DELETE"]);
    assert_eq!(names(&echo).len(), OVERRIDES.len(), "{:?}", names(&echo));
}
