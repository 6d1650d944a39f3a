//! Findings of the adversarial review of issue 14's forward-auth changes, kept as
//! regression tests: each one got through at 05b4f4e (a fixed auth URL with a trailing
//! slash taken for Envoy's form, nginx's escaped `?`, near-miss and swallowed rule keys,
//! a backtracking skip-route matcher) and must not again.

use crate::support::idp::TestIdp;
use crate::support::ingress::{free_port, plain_nginx_conf, skip_unless_ingress, Ingress, Kind};
use crate::support::upstream::Upstream;
use crate::support::{config, raw_http, raw_status, start, Gatehouse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` raw to `addr`; returns the whole answer as text (lossy).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    String::from_utf8_lossy(&raw_http(addr, request).await).into_owned()
}

fn status(answer: &str) -> u16 {
    raw_status(answer.as_bytes())
}

async fn gatehouse(extra: &[(&'static str, &str)]) -> (TestIdp, Gatehouse) {
    let idp = TestIdp::start().await;
    let gh = start(config("", &idp.issuer, extra)).await;
    (idp, gh)
}

/// Finding 1. With `forward_auth_client = auto` (the default) the path below
/// `/oauth2/auth` is believed from anyone, as Envoy's. But nginx, Traefik and Caddy call a
/// fixed URL: configured with a trailing slash (`/oauth2/auth/?allowed_groups=admins`,
/// the very form of issue 14 item 3), every request they ask about looks like `GET /`,
/// and a skip route for the landing page lets all of them through without login.
#[tokio::test]
async fn auto_never_takes_a_fixed_path_below_the_endpoint_for_the_original_request() {
    // No trusted_proxies (so no startup warning about `auto` either).
    let (_idp, gh) = gatehouse(&[("skip_auth_routes", "GET=/")]).await;
    // What Traefik (`address: http://gatehouse/oauth2/auth/?allowed_groups=admins`) sends
    // for a client's `POST /admin`: its method is always GET, the original in headers.
    let traefik = b"GET /oauth2/auth/?allowed_groups=admins HTTP/1.1\r\nHost: gh\r\n\
        X-Forwarded-Method: POST\r\nX-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /admin/delete-everything\r\n\
        Connection: close\r\n\r\n";
    let answer = raw(gh.addr, traefik).await;
    assert_ne!(
        status(&answer),
        200,
        "POST /admin/delete-everything was allowed without login as the skip route GET=/:\n{answer}"
    );
}

/// Finding 1, the same with the ingress trusted but setting no header of its own (an
/// nginx location `proxy_pass http://gatehouse/oauth2/auth/;`, `auto`).
#[tokio::test]
async fn auto_never_takes_a_fixed_path_below_the_endpoint_from_a_trusted_ingress_either() {
    let (_idp, gh) = gatehouse(&[
        ("skip_auth_routes", "GET=/"),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    let nginx = b"GET /oauth2/auth/ HTTP/1.1\r\nHost: gh\r\nConnection: close\r\n\r\n";
    let answer = raw(gh.addr, nginx).await;
    assert_ne!(
        status(&answer),
        200,
        "a fixed auth URL below /oauth2/auth decided the original request:\n{answer}"
    );
}

/// Finding 1 end to end: real Caddy `forward_auth` with `uri /oauth2/auth/` in front of
/// gatehouse (auto, no trusted_proxies, `skip_auth_routes = GET=/`): an anonymous
/// `DELETE /admin/x` reaches the app.
#[tokio::test]
async fn real_caddy_with_a_trailing_slash_lets_no_anonymous_request_through() {
    if skip_unless_ingress(Kind::Caddy) {
        return;
    }
    let up = Upstream::start().await;
    let (_idp, gh) = gatehouse(&[("skip_auth_routes", "GET=/")]).await;
    let port = free_port();
    let (gh_addr, up_addr) = (gh.addr, up.addr);
    let caddy = tokio::task::spawn_blocking(move || {
        Ingress::start_with(Kind::Caddy, port, |dir| {
            format!(
                "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {data}\n}}\n\
                 http://:{port} {{\n\tbind 127.0.0.1\n\
                 \thandle /ingress-ready {{\n\t\trespond \"ready\" 200\n\t}}\n\
                 \thandle {{\n\
                 \tforward_auth {gh_addr} {{\n\t\turi /oauth2/auth/?allowed_groups=admins\n\
                 \t\tcopy_headers X-Forwarded-User\n\t}}\n\
                 \treverse_proxy {up_addr}\n\t}}\n}}\n",
                data = dir.join("data").display(),
            )
        })
    })
    .await
    .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answer = raw(
        addr,
        b"DELETE /admin/x HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !answer.contains("\"path\""),
        "an anonymous DELETE /admin/x reached the app through Caddy:\n{answer}\n{}",
        caddy.log()
    );
}

/// Finding 2. nginx escapes `?` in an `auth_request` URI when the location proxies it
/// without a URI of its own (`auth_request /oauth2/auth/?allowed_groups=ops;` with
/// `location /oauth2/ { proxy_pass http://gatehouse; }` sends
/// `GET /oauth2/auth/%3Fallowed_groups=ops`): the rule travels in the path below the
/// endpoint, where gatehouse never looks, so a signed-in user outside `ops` gets in.
#[tokio::test]
async fn nginxs_escaped_auth_request_query_is_refused_not_dropped() {
    if skip_unless_ingress(Kind::Nginx) {
        return;
    }
    let (w, b) = crate::flow::logged_in(&[
        ("auth_listen", "127.0.0.1:0"),
        ("forward_auth_client", "nginx"),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    let port = free_port();
    let (gh_auth, up) = (w.gh.auth_addr.unwrap(), w.up.addr);
    let nginx = tokio::task::spawn_blocking(move || {
        Ingress::start_with(Kind::Nginx, port, |_| {
            let locations = format!(
                r#"location /oauth2/auth {{
            internal;
            proxy_pass http://{gh_auth};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Uri $request_uri;
            proxy_set_header X-Forwarded-Method $request_method;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
        location /ops/ {{
            auth_request /oauth2/auth/?allowed_groups=ops;
            proxy_pass http://{up};
        }}
"#
            );
            plain_nginx_conf(port, &locations, "")
        })
    })
    .await
    .unwrap();
    // alice is in admins and dev, not ops: the check must refuse her.
    let direct = b
        .get(&format!(
            "{}/oauth2/auth/?allowed_groups=ops",
            w.gh.auth_url.as_ref().unwrap()
        ))
        .await;
    assert_eq!(
        direct.status, 403,
        "the rule, sent as written, refuses alice"
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let req = format!(
        "GET /ops/secret HTTP/1.1\r\nHost: app\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        b.cookie_header()
    );
    let answer = raw(addr, req.as_bytes()).await;
    assert!(
        !answer.contains("\"path\""),
        "alice (not in ops) reached /ops/secret through nginx: the rule was dropped\n{answer}\n{}",
        nginx.log()
    );
}

/// Finding 3. Below `/oauth2/auth` only exactly spelled rule keys count; the bare form
/// refuses every other key ("a typo must never quietly widen access"), the form below
/// silently drops `Allowed_Groups`, `allowed-groups`, `allowed_group`, `allowed_groups[]`
/// written in the auth URL (`/oauth2/auth/?...`, the form of issue 14 item 3).
#[tokio::test]
async fn a_misspelled_rule_key_below_the_endpoint_is_refused() {
    let (w, b) = crate::flow::logged_in(&[("auth_listen", "127.0.0.1:0")]).await;
    let auth = w.gh.auth_url.clone().unwrap();
    let mut dropped = Vec::new();
    for key in [
        "Allowed_Groups",
        "allowed-groups",
        "allowed_group",
        "allowed_groups[]",
        "ALLOWED_GROUPS",
        "allowed_groups%20",
    ] {
        let bare = b.get(&format!("{auth}/oauth2/auth?{key}=ops")).await;
        assert_eq!(bare.status, 400, "the bare form refuses {key}");
        let below = b.get(&format!("{auth}/oauth2/auth/?{key}=ops")).await;
        if below.status == 200 {
            dropped.push(key);
        }
    }
    assert!(
        dropped.is_empty(),
        "below /oauth2/auth these rule keys were dropped and alice (not in ops) got 200: {dropped:?}"
    );
}

/// Finding 4 (not from issue 14's change, found on the way; it holds in the sidecar too).
/// `*` in a skip route is matched by backtracking: with two or three `*` in one segment
/// (`/assets/*-*-*.js`), an anonymous client's path of dashes costs O(n^k) before any
/// login, on the worker thread that serves every other connection of that worker.
#[tokio::test]
async fn a_skip_route_with_several_stars_in_a_segment_answers_at_once() {
    let (_idp, gh) = gatehouse(&[
        ("skip_auth_routes", "GET=/assets/*-*-*.js"),
        ("trusted_proxies", "127.0.0.1"),
        ("forward_auth_client", "nginx"),
    ])
    .await;
    let uri = format!("/assets/{}", "-".repeat(3000));
    let req = format!(
        "GET /oauth2/auth HTTP/1.1\r\nHost: gh\r\nX-Forwarded-Uri: {uri}\r\n\
         X-Forwarded-Method: GET\r\nConnection: close\r\n\r\n"
    );
    let t = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(gh.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    let answered =
        tokio::time::timeout(std::time::Duration::from_secs(3), s.read_exact(&mut buf)).await;
    assert!(
        answered.is_ok(),
        "one anonymous request of 3 kB kept a worker busy for more than {:?}",
        t.elapsed()
    );
}

/// Finding 2, the bare form: `auth_request /oauth2/auth?allowed_groups=ops;` proxied
/// without a URI arrives as `GET /oauth2/auth%3Fallowed_groups=ops`, which is not a
/// gatehouse route: where gatehouse also proxies an app (`upstream` set, the check on
/// the main listener), the signed-in user's check is proxied to the app, and an app
/// answering 200 for unknown paths (any single-page app) lets alice past the ops rule.
#[tokio::test]
async fn an_escaped_query_on_the_bare_endpoint_is_never_proxied_to_the_app() {
    let (w, b) = crate::flow::logged_in(&[]).await;
    let check = b
        .get(&format!("{}/oauth2/auth%3Fallowed_groups=ops", w.gh.url))
        .await;
    assert_ne!(
        check.status, 200,
        "the check with its rule escaped was answered 200 (by the app): {check:?}"
    );
}

/// Finding 5. `redirect`'s value is never checked, so a rule that ends up inside it is
/// dropped without a word: `?redirect=true%26allowed_groups%3Dops` (a templating layer
/// that escapes the whole query) or `?redirect=true;allowed_groups=ops` answer alice
/// (not in ops) 200, where every other unreadable query is refused with 400.
#[tokio::test]
async fn a_rule_swallowed_by_the_redirect_value_is_refused() {
    let (w, b) = crate::flow::logged_in(&[("auth_listen", "127.0.0.1:0")]).await;
    let auth = w.gh.auth_url.clone().unwrap();
    let plain = b
        .get(&format!(
            "{auth}/oauth2/auth?redirect=true&allowed_groups=ops"
        ))
        .await;
    assert_eq!(plain.status, 403, "the rule as written refuses alice");
    let mut dropped = Vec::new();
    for query in [
        "redirect=true%26allowed_groups%3Dops",
        "redirect=true;allowed_groups=ops",
        "redirect=allowed_groups=ops",
    ] {
        for form in ["/oauth2/auth?", "/oauth2/auth/?"] {
            let r = b.get(&format!("{auth}{form}{query}")).await;
            if r.status == 200 {
                dropped.push(format!("{form}{query}"));
            }
        }
    }
    assert!(
        dropped.is_empty(),
        "alice (not in ops) got 200 where the auth URL names allowed_groups=ops: {dropped:?}"
    );
}
