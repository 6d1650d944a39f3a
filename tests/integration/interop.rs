//! Interop against real programs: a certified OpenID Provider (`oidc-provider`, run by
//! node) and headless Chromium doing the login. Skipped loudly on a developer machine
//! without them; a CI run fails instead.

use crate::proxy::check_websocket;
use crate::support::peers::{browser_login, op_form_login, skip_unless_available, NodeOp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start_on, Browser};
use reqwest::Method;

struct Setup {
    _op: NodeOp,
    issuer: String,
    _up: Upstream,
    gh: crate::support::Gatehouse,
}

async fn setup(extra: &[(&'static str, &str)]) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let op = NodeOp::for_gatehouse_at(&base, &[]).await;
    let up = Upstream::start().await;
    let mut all = vec![
        ("scopes", "openid,email,profile,groups"),
        ("post_logout_redirect_url", ""),
    ];
    all.extend_from_slice(extra);
    let issuer = op.issuer.clone();
    let mut cfg = config(&up.url, &issuer, &all);
    cfg.post_logout_redirect_url = Some(format!("{base}/bye").parse().unwrap());
    let gh = start_on(listener, cfg).await;
    Setup {
        _op: op,
        issuer,
        _up: up,
        gh,
    }
}

/// Logs in through the OP's login form without a browser.
async fn form_login(
    s: &Setup,
    b: &Browser,
    path: &str,
    user: &str,
    groups: &str,
) -> crate::support::Resp {
    let start = format!("{}{path}", s.gh.url);
    op_form_login(b, &start, user, groups, String::new).await
}

#[tokio::test]
async fn real_provider_login_refresh_websocket_spoofing_and_logout() {
    if skip_unless_available(false) {
        return;
    }
    let s = setup(&[("refresh_before_secs", "100000")]).await;
    let b = Browser::new();
    let landed = form_login(&s, &b, "/headlamp/c/main?x=1", "alice", "admins,dev").await;
    assert_eq!(landed.status, 200, "{landed:?}");
    let echo = landed.json();
    assert_eq!(
        echo["path"], "/headlamp/c/main?x=1",
        "back on the page first asked for"
    );
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
    let token = seen(&echo, "x-forwarded-id-token")[0].clone();
    let claims = gatehouse::identity::claim_at(&decode(&token), "iss")
        .cloned()
        .unwrap();
    assert_eq!(
        claims,
        serde_json::json!(s.issuer),
        "a real token from the real provider"
    );

    // Spoofed headers on a real session.
    let spoofed = b
        .send(
            Method::GET,
            &format!("{}/me", s.gh.url),
            &[
                ("X_Forwarded_User", "root"),
                ("X-Forwarded-Group", "system:masters"),
                ("Remote-User", "root"),
                ("accept", "application/json"),
            ],
        )
        .await;
    let echo = spoofed.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
    assert!(seen(&echo, "x_forwarded_user").is_empty() && seen(&echo, "remote-user").is_empty());

    // Refresh against the real token endpoint (refresh_before is larger than the TTL).
    assert!(
        spoofed
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("_gatehouse=")),
        "the session was refreshed: {:?}",
        spoofed.set_cookies()
    );

    check_websocket(&s.gh.url, &b.cookie_header(), "alice@example.test").await;

    // Sign out: RP-initiated logout at the real provider.
    let out = b
        .send(
            Method::POST,
            &format!("{}/oauth2/sign_out", s.gh.url),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, 302);
    let loc = out.location().unwrap();
    assert!(
        loc.starts_with(&format!("{}/session/end", s.issuer)) && loc.contains("id_token_hint="),
        "{loc}"
    );
    let api = b
        .send(
            Method::GET,
            &format!("{}/me", s.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, 401);
}

pub fn decode(token: &str) -> serde_json::Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn real_provider_login_in_headless_chromium() {
    if skip_unless_available(true) {
        return;
    }
    let s = setup(&[]).await;
    let url = format!("{}/headlamp/c/main", s.gh.url);
    let origin = s.gh.url.clone();
    let verdict =
        tokio::task::spawn_blocking(move || browser_login(&url, "carol", "ops,dev", &origin))
            .await
            .unwrap();
    assert!(
        verdict.get("error").is_none(),
        "browser login failed: {verdict}"
    );
    let final_url = verdict["final_url"].as_str().unwrap();
    assert_eq!(final_url, format!("{}/headlamp/c/main", s.gh.url));
    let body = verdict["body_text"].as_str().unwrap();
    assert!(
        body.contains("carol@example.test") && body.contains("ops,dev"),
        "{body}"
    );
}

/// The real provider stops mid-test: the signed-in user keeps working (the refresh that
/// falls due fails and is skipped while the tokens are valid), a new sign-in gets a 503
/// naming the provider and the cause, and once the provider is back (new keys, no memory
/// of earlier grants) sign-in works again without restarting gatehouse.
#[tokio::test]
async fn real_provider_down_then_back() {
    if skip_unless_available(false) {
        return;
    }
    let mut s = setup(&[("refresh_before_secs", "100000")]).await;
    let alice = Browser::new();
    let landed = form_login(&s, &alice, "/before", "alice", "admins").await;
    assert_eq!(landed.status, 200, "{landed:?}");

    s._op.stop();
    for _ in 0..3 {
        let r = alice.get(&format!("{}/during", s.gh.url)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            seen(&r.json(), "x-forwarded-user"),
            vec!["alice@example.test"]
        );
    }
    let bob = Browser::new();
    let r = bob.get(&format!("{}/during", s.gh.url)).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains(&s.issuer), "names the provider: {}", r.body);
    // The cause: the refresh just found the connection gone, or a connect failed.
    assert!(
        ["could not connect", "connection closed"]
            .iter()
            .any(|c| r.body.contains(c)),
        "names the cause: {}",
        r.body
    );
    let start = bob.get(&format!("{}/oauth2/start", s.gh.url)).await;
    assert_eq!(start.status, 503);
    assert!(start.headers.contains_key("retry-after"), "{start:?}");

    s._op.restart().await;
    // Within a second or two gatehouse notices (a "down" answer is kept briefly).
    let mut back = false;
    for _ in 0..50 {
        let r = bob.get(&format!("{}/oauth2/start", s.gh.url)).await;
        if r.status == 302 {
            back = true;
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "sign-in is offered again once the provider is back");
    let landed = form_login(&s, &bob, "/after", "bob", "dev").await;
    assert_eq!(landed.status, 200, "{landed:?}");
    assert_eq!(
        seen(&landed.json(), "x-forwarded-user"),
        vec!["bob@example.test"]
    );
}
