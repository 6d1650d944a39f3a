//! Prometheus metrics end to end: the metrics listener serves `GET /metrics` only and the
//! public and forward-auth ports never do; the real Prometheus server scrapes a real
//! gatehouse and sees what the traffic did (a sign-in, proxied requests, a WebSocket, a
//! denial, a refused bearer token); `promtool check metrics` finds nothing to lint in the
//! exposition; the example scrape config and alert rules pass `promtool` (and the rules'
//! own unit tests).

use crate::flow::world;
use crate::proxy::websocket;
use crate::support::idp::Mint;
use crate::support::prometheus::{promtool, skip_unless_available, Prometheus};
use crate::support::redis::free_port;
use crate::support::upstream::Upstream;
use crate::support::{idp::TestIdp, with_bearer, Browser, RealGatehouse};
use serde_json::json;

const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.text().await.unwrap())
}

/// The metrics listener answers `GET /metrics` with the exposition and nothing else;
/// `/metrics` on `listen` is an ordinary path (through the auth step to the upstream),
/// and on `auth_listen` it is refused like any path but forward auth.
#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_nowhere_else() {
    let w = world(&[
        ("metrics_listen", "127.0.0.1:0"),
        ("auth_listen", "127.0.0.1:0"),
    ])
    .await;
    let metrics = w.gh.metrics_url.clone().unwrap();
    let (status, ct, body) = get(&format!("{metrics}/metrics")).await;
    assert_eq!((status, ct.as_str()), (200, EXPOSITION), "{body}");
    assert!(
        body.contains("# TYPE gatehouse_http_requests_total counter"),
        "{body}"
    );
    let head = reqwest::Client::new()
        .head(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = reqwest::Client::new()
            .request(method.clone(), format!("{metrics}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
    }
    for path in [
        "/",
        "/metrics/",
        "/metrics/x",
        "/healthz",
        "/oauth2/auth",
        "/Metrics",
    ] {
        let (status, _, body) = get(&format!("{metrics}{path}")).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("gatehouse_"), "{path}: {body}");
    }

    // The public port: a path like any other. Signed out: sent to sign in.
    let (status, _, body) = get(&format!("{}/metrics", w.gh.url)).await;
    assert_eq!(status, 302, "{body}");
    assert!(!body.contains("# TYPE"));
    // Signed in: the upstream's answer for /metrics, never gatehouse's exposition.
    let b = Browser::new();
    crate::flow::login(&w, &b, "/").await;
    let r = b.get(&format!("{}/metrics", w.gh.url)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["path"], "/metrics", "{r:?}");
    assert!(!r.body.contains("# TYPE"));
    // The forward-auth port: not one of its paths.
    let (status, _, body) = get(&format!("{}/metrics", w.gh.auth_url.clone().unwrap())).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("# TYPE"), "{body}");

    // Forward auth is counted apart, and a rule from the auth URL is named as such.
    let r = b
        .get(&format!("{}/oauth2/auth?allowed_groups=ops", w.gh.url))
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = b.get(&format!("{}/oauth2/auth", w.gh.url)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let text = scrape(&w).await;
    for (series, want) in [
        (
            "gatehouse_http_requests_total{mode=\"forward_auth\",code=\"403\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"forward_auth\",code=\"200\"}",
            1.0,
        ),
        (
            "gatehouse_denials_total{rule=\"allowed_groups\",source=\"auth_url\"}",
            1.0,
        ),
        (
            "gatehouse_denials_total{rule=\"allowed_groups\",source=\"config\"}",
            0.0,
        ),
        // The sign-in's callback, and the proxied /metrics (200) and the first, signed-out one (302).
        (
            "gatehouse_http_requests_total{mode=\"endpoint\",code=\"302\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"302\"}",
            2.0,
        ),
        ("gatehouse_logins_total{result=\"ok\"}", 1.0),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series}\n{text}");
    }
}

/// A bearer token for the test IdP's client, with `groups`.
fn bearer(idp: &TestIdp, groups: &[&str]) -> String {
    let now = gatehouse::util::now_secs() as i64;
    let claims = json!({"iss": idp.issuer, "sub": "ci-bot", "aud": crate::support::idp::CLIENT_ID,
        "exp": now + 300, "iat": now, "email": "ci@example.test", "email_verified": true,
        "groups": groups});
    idp.state.keys.sign(&Mint::default(), &claims)
}

/// The real Prometheus scrapes a real gatehouse every second and its queries see what
/// the traffic did; the exposition passes `promtool check metrics` without a finding.
#[tokio::test]
async fn prometheus_scrapes_what_the_traffic_did() {
    if skip_unless_available() {
        return;
    }
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let metrics_port = free_port();
    let metrics_at = format!("127.0.0.1:{metrics_port}");
    let gh = RealGatehouse::start(
        free_port(),
        &up.url,
        &idp.issuer,
        &[
            "--metrics-listen",
            &metrics_at,
            "--allowed-groups",
            "admins",
            "--bearer-tokens",
            "true",
        ],
    )
    .await;
    let prom = Prometheus::start(&metrics_at).await;

    // A sign-in (the first request is sent to sign in, the last lands on the app), then
    // five more proxied requests.
    let alice = Browser::new();
    let (r, _) = alice.follow(&format!("{}/", gh.url)).await;
    assert_eq!(r.status, 200, "{r:?}");
    for i in 0..5 {
        let r = alice.get(&format!("{}/page/{i}", gh.url)).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A WebSocket, open while Prometheus looks.
    let (_, _, mut ws) = websocket(&gh.url, "/ws", &alice.cookie_header())
        .await
        .expect("websocket");
    // A bearer token whose user allowed_groups refuses, and one whose signature is bad.
    let guest = bearer(&idp, &["guests"]);
    assert_eq!(
        with_bearer(&format!("{}/api", gh.url), &guest).await.status,
        403
    );
    let mut forged = bearer(&idp, &["admins"]);
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert_eq!(
        with_bearer(&format!("{}/api", gh.url), &forged)
            .await
            .status,
        401
    );

    for (expr, want) in [
        ("up{job=\"gatehouse\"}", 1.0),
        ("gatehouse_logins_total{result=\"ok\"}", 1.0),
        ("sum(gatehouse_logins_total)", 1.0),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"200\"}",
            6.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"302\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"101\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"403\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"401\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"endpoint\",code=\"302\"}",
            1.0,
        ),
        (
            "gatehouse_http_request_duration_seconds_count{mode=\"proxy\"}",
            10.0,
        ),
        // The upstream saw the six pages and the WebSocket's upgrade, nothing refused.
        ("gatehouse_upstream_duration_seconds_count", 7.0),
        ("sum(gatehouse_upstream_errors_total)", 0.0),
        (
            "gatehouse_denials_total{rule=\"allowed_groups\",source=\"config\"}",
            1.0,
        ),
        ("sum(gatehouse_denials_total)", 1.0),
        ("gatehouse_bearer_tokens_total{result=\"accepted\"}", 1.0),
        (
            "gatehouse_bearer_tokens_total{result=\"bad_signature\"}",
            1.0,
        ),
        (
            "sum(gatehouse_bearer_tokens_total{result!=\"accepted\"})",
            1.0,
        ),
        (
            "gatehouse_provider_requests_total{endpoint=\"token\",result=\"ok\"}",
            1.0,
        ),
        (
            "gatehouse_provider_request_duration_seconds_count{endpoint=\"token\"}",
            1.0,
        ),
        (
            "count(gatehouse_provider_requests_total{endpoint=\"jwks\",result=\"ok\"} > 0)",
            1.0,
        ),
        ("gatehouse_open_websockets", 1.0),
        ("gatehouse_session_store_up{store=\"cookie\"}", 1.0),
        ("gatehouse_config_last_reload_successful", 1.0),
        ("count(process_resident_memory_bytes > 1e6)", 1.0),
        ("count(time() - process_start_time_seconds < 600)", 1.0),
    ] {
        prom.wait_for(expr, want).await;
    }
    let version = format!(
        "count(gatehouse_build_info{{version=\"{}\"}})",
        env!("CARGO_PKG_VERSION")
    );
    prom.wait_for(&version, 1.0).await;

    // The WebSocket closes: the gauge follows.
    ws.close(None).await.unwrap();
    drop(ws);
    prom.wait_for("gatehouse_open_websockets", 0.0).await;

    // promtool's linter on the exposition after that traffic: valid, nothing to say.
    let (status, ct, text) = get(&format!("http://{metrics_at}/metrics")).await;
    assert_eq!((status, ct.as_str()), (200, EXPOSITION));
    let (code, out, err) = promtool(&["check", "metrics"], Some(&text));
    assert_eq!(code, Some(0), "promtool check metrics:\n{out}\n{err}");
    assert!(
        out.trim().is_empty() && err.trim().is_empty(),
        "lint findings:\n{out}\n{err}"
    );
    drop(gh);
}

/// examples/prometheus: the scrape config and the alert rules pass promtool, and the
/// rules' unit tests (alerts firing on the series gatehouse exposes) pass.
#[test]
fn the_example_prometheus_files_pass_promtool() {
    if skip_unless_available() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    let path = |f: &str| dir.join(f).display().to_string();
    for args in [
        vec!["check", "config", &path("prometheus.yml")],
        vec!["check", "rules", &path("alerts.yml")],
        vec!["test", "rules", &path("alerts_test.yml")],
    ] {
        let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        let (code, out, err) = promtool(&args, None);
        assert_eq!(code, Some(0), "promtool {args:?}:\n{out}\n{err}");
        assert!(
            !out.contains("WARNING") && !err.contains("WARNING"),
            "{out}\n{err}"
        );
    }
}

/// The exposition of an in-process gatehouse's metrics listener.
async fn scrape(w: &crate::flow::World) -> String {
    let (status, ct, text) = get(&format!("{}/metrics", w.gh.metrics_url.clone().unwrap())).await;
    assert_eq!((status, ct.as_str()), (200, EXPOSITION));
    text
}

/// The value of one series, written exactly as `series` (`name{labels}`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// Polls the exposition until `series` has `want` (at most 10 s).
async fn eventually(w: &crate::flow::World, series: &str, want: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(w).await;
        if value(&text, series) == Some(want) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series}: wanted {want}, have {:?}",
            value(&text, series)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Refreshes by result: the one that ran, those that shared it, and the provider
/// refusing the refresh token (which ends the session).
#[tokio::test]
async fn refreshes_are_counted_by_result() {
    let w = world(&[
        ("metrics_listen", "127.0.0.1:0"),
        ("refresh_before_secs", "1000"),
    ])
    .await;
    let b = Browser::new();
    // The tokens live 300 s, within refresh_before: the landing request refreshes.
    assert_eq!(crate::flow::login(&w, &b, "/").await.status, 200);
    let text = scrape(&w).await;
    assert_eq!(
        value(&text, "gatehouse_refreshes_total{result=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gatehouse_refreshes_total{result=\"joined\"}"),
        Some(0.0)
    );
    // Six requests with the same cookie: one refresh, five share its result.
    let cookie = b.cookie_header();
    let client = reqwest::Client::new();
    let sent = (0..6).map(|_| {
        client
            .get(format!("{}/p", w.gh.url))
            .header("cookie", &cookie)
            .send()
    });
    let mut fresh = None;
    for r in futures_util::future::join_all(sent).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        fresh = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("_gatehouse="));
    }
    let fresh = fresh.expect("the refreshed session's cookie");
    let text = scrape(&w).await;
    assert_eq!(
        value(&text, "gatehouse_refreshes_total{result=\"ok\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gatehouse_refreshes_total{result=\"joined\"}"),
        Some(5.0),
        "{text}"
    );
    // The provider refuses the refreshed session's (rotated) refresh token: counted as
    // such, and the session ends.
    w.idp
        .state
        .refresh_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = client
        .get(format!("{}/p", w.gh.url))
        .header("cookie", &fresh)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = scrape(&w).await;
    assert_eq!(
        value(&text, "gatehouse_refreshes_total{result=\"invalid_grant\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_session_ends_total{cause=\"refresh_refused\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_provider_requests_total{endpoint=\"token\",result=\"client_error\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

/// An upstream that refuses connections, then one that never answers: counted by kind,
/// beside the 502 and the 504 the client got; the sign-in itself succeeded.
#[tokio::test]
async fn upstream_failures_are_counted_by_kind() {
    let idp = TestIdp::start().await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    drop(held);
    let gh = crate::support::start(crate::support::config(
        &format!("http://{addr}"),
        &idp.issuer,
        &[
            ("metrics_listen", "127.0.0.1:0"),
            ("upstream_timeout_secs", "1"),
        ],
    ))
    .await;
    let up = Upstream::start().await; // unused by gatehouse: the World wants one
    let w = crate::flow::World { idp, up, gh };
    let b = Browser::new();
    let landed = crate::flow::login(&w, &b, "/").await;
    assert_eq!(landed.status, 502, "{landed:?}");
    // Now something accepts on that port and never answers.
    let silent = tokio::net::TcpListener::bind(addr).await.unwrap();
    let keep = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            if let Ok((s, _)) = silent.accept().await {
                open.push(s);
            }
        }
    });
    let r = b.get(&format!("{}/slow", w.gh.url)).await;
    assert_eq!(r.status, 504, "{r:?}");
    keep.abort();
    let text = scrape(&w).await;
    for (series, want) in [
        ("gatehouse_logins_total{result=\"ok\"}", 1.0),
        ("gatehouse_upstream_errors_total{kind=\"connect\"}", 1.0),
        ("gatehouse_upstream_errors_total{kind=\"timeout\"}", 1.0),
        ("gatehouse_upstream_errors_total{kind=\"closed\"}", 0.0),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"502\"}",
            1.0,
        ),
        (
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"504\"}",
            1.0,
        ),
        ("gatehouse_upstream_duration_seconds_count", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series}\n{text}");
    }
}

/// Redis going away shows where an operator alerts: the store's gauge drops to 0,
/// commands and store operations fail (counted), and the gauge comes back with Redis.
#[tokio::test]
async fn redis_trouble_shows_in_the_store_gauge_and_the_command_counts() {
    use crate::support::redis::{skip_unless_available as skip_without_redis, RedisServer};
    if skip_without_redis() {
        return;
    }
    let mut redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let url = redis.url();
    let w = world(&[
        ("metrics_listen", "127.0.0.1:0"),
        ("session_store", "redis"),
        ("redis_url", &url),
    ])
    .await;
    let alice = Browser::new();
    assert_eq!(crate::flow::login(&w, &alice, "/").await.status, 200);
    let text = eventually(&w, "gatehouse_session_store_up{store=\"redis\"}", 1.0).await;
    assert!(
        value(&text, "gatehouse_redis_commands_total{result=\"ok\"}").unwrap() >= 1.0,
        "{text}"
    );
    assert!(value(&text, "gatehouse_redis_command_duration_seconds_count").unwrap() >= 1.0);
    assert!(
        value(
            &text,
            "gatehouse_session_store_operations_total{op=\"save\",result=\"ok\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_session_store_operations_total{op=\"load\",result=\"error\"}"
        ),
        Some(0.0)
    );

    redis.kill();
    eventually(&w, "gatehouse_session_store_up{store=\"redis\"}", 0.0).await;
    // Requests until the per-thread cache's second is over: then Redis is asked, and
    // fails; never a login.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = alice
            .send(
                reqwest::Method::GET,
                &format!("{}/p", w.gh.url),
                &[("accept", "application/json")],
            )
            .await;
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(std::time::Instant::now() < deadline, "still 200 after 5 s");
    }
    let text = scrape(&w).await;
    let failed: f64 = ["error", "timeout", "not_connected"]
        .iter()
        .filter_map(|r| {
            value(
                &text,
                &format!("gatehouse_redis_commands_total{{result=\"{r}\"}}"),
            )
        })
        .sum();
    assert!(failed >= 1.0, "{text}");
    assert!(
        value(
            &text,
            "gatehouse_session_store_operations_total{op=\"load\",result=\"error\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_http_requests_total{mode=\"proxy\",code=\"503\"}"
        ),
        Some(1.0),
        "{text}"
    );

    redis.restart();
    eventually(&w, "gatehouse_session_store_up{store=\"redis\"}", 1.0).await;
}
