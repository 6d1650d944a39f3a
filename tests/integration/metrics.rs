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
