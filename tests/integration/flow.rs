//! The login flow in process: redirects, callback errors, refresh, sign-out, sessions.

use crate::support::idp::{Mint, TestIdp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, start_unready, Browser, Gatehouse};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub struct World {
    pub idp: TestIdp,
    pub up: Upstream,
    pub gh: Gatehouse,
}

pub async fn world(extra: &[(&'static str, &str)]) -> World {
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let gh = start(config(&up.url, &idp.issuer, extra)).await;
    World { idp, up, gh }
}

/// A world with a browser already logged in.
pub async fn logged_in(extra: &[(&'static str, &str)]) -> (World, Browser) {
    let w = world(extra).await;
    let b = Browser::new();
    login(&w, &b, "/").await;
    (w, b)
}

/// Logs `b` in by visiting `path`; returns the final response (the upstream's echo).
pub async fn login(w: &World, b: &Browser, path: &str) -> crate::support::Resp {
    let (resp, _) = b.follow(&format!("{}{path}", w.gh.url)).await;
    resp
}

#[tokio::test]
async fn browser_login_lands_on_the_requested_page_with_verified_headers() {
    let w = world(&[]).await;
    let b = Browser::new();
    let (resp, visited) = b
        .follow(&format!("{}/headlamp/c/main/pods?ns=a", w.gh.url))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        visited[1].starts_with(&format!("{}/authorize", w.idp.issuer)),
        "{visited:?}"
    );
    let echo = resp.json();
    assert_eq!(echo["path"], "/headlamp/c/main/pods?ns=a");
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-email"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
    assert_eq!(seen(&echo, "x-forwarded-groups"), vec!["admins,dev"]);
    assert_eq!(seen(&echo, "x-forwarded-preferred-username"), vec!["alice"]);
    let token = &seen(&echo, "x-forwarded-id-token")[0];
    assert_eq!(
        token.split('.').count(),
        3,
        "raw JWT, no Bearer prefix: {token}"
    );
    assert!(
        seen(&echo, "authorization").is_empty(),
        "no Authorization unless configured"
    );
    let uris = w.idp.state.token_redirect_uris.lock().unwrap().clone();
    assert_eq!(
        uris,
        vec![format!("{}/oauth2/callback", w.gh.url)],
        "redirect_uri derived from the request"
    );
}

#[tokio::test]
async fn pass_authorization_sends_the_id_token_as_bearer() {
    let w = world(&[
        ("pass_authorization", "id_token"),
        ("header_user", "X-Auth-User"),
        ("user_claim", "preferred_username"),
    ])
    .await;
    let b = Browser::new();
    let echo = login(&w, &b, "/").await.json();
    let token = &seen(&echo, "x-forwarded-id-token")[0];
    assert_eq!(
        seen(&echo, "authorization"),
        vec![format!("Bearer {token}")]
    );
    assert_eq!(seen(&echo, "x-auth-user"), vec!["alice"]);
    assert!(seen(&echo, "x-forwarded-user").is_empty());
}

#[tokio::test]
async fn api_clients_get_401_json_instead_of_a_redirect() {
    let w = world(&[]).await;
    let b = Browser::new();
    let cases: [(reqwest::Method, &[(&str, &str)]); 6] = [
        (reqwest::Method::GET, &[("accept", "application/json")]),
        // A page script's fetch() with the default `Accept: */*`.
        (
            reqwest::Method::GET,
            &[("accept", "*/*"), ("sec-fetch-mode", "cors")],
        ),
        (reqwest::Method::GET, &[("sec-fetch-mode", "same-origin")]),
        (
            reqwest::Method::GET,
            &[("x-requested-with", "XMLHttpRequest")],
        ),
        (reqwest::Method::POST, &[]),
        (
            reqwest::Method::GET,
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
        ),
    ];
    for (method, headers) in cases {
        let r = b
            .send(
                method.clone(),
                &format!("{}/api/v1/pods", w.gh.url),
                headers,
            )
            .await;
        assert_eq!(r.status, 401, "{method} {headers:?}: {r:?}");
        assert!(r.headers.contains_key("www-authenticate"));
        let j = r.json();
        assert_eq!(j["error"], "unauthenticated");
        assert_eq!(
            j["login_url"], "/oauth2/start?rd=%2Fapi%2Fv1%2Fpods",
            "the login URL comes back here"
        );
        assert_eq!(
            j["request_id"].as_str(),
            r.headers.get("x-request-id").and_then(|v| v.to_str().ok())
        );
    }
    let html = b.get(&format!("{}/api/v1/pods", w.gh.url)).await;
    assert_eq!(html.status, 302, "a browser GET is redirected");
    let nav = b
        .send(
            reqwest::Method::GET,
            &format!("{}/api/v1/pods", w.gh.url),
            &[("sec-fetch-mode", "navigate"), ("accept", "*/*")],
        )
        .await;
    assert_eq!(nav.status, 302, "a navigation is redirected");
}

#[tokio::test]
async fn open_redirect_targets_are_replaced_by_root() {
    let w = world(&[]).await;
    for rd in [
        "/\\evil.com",
        "/\\t/evil.com",
        "/ /evil.com",
        "/%09/evil.com",
        "/./\\evil.com",
        "/./../../\\evil.com",
        "//evil.com",
        "https:evil.com",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://evil.com/",
        "http://127.0.0.1.evil.com/",
    ] {
        let b = Browser::new();
        let url = format!("{}/oauth2/start?rd={}", w.gh.url, urlencode(rd));
        let (resp, visited) = b.follow(&url).await;
        assert_eq!(resp.status, 200, "{rd}: {resp:?}");
        assert_eq!(
            resp.json()["path"],
            "/",
            "rd {rd:?} must land on /; visited {visited:?}"
        );
    }
    let b = Browser::new();
    let (resp, _) = b
        .follow(&format!(
            "{}/oauth2/start?rd={}",
            w.gh.url,
            urlencode("/ok/page?x=1")
        ))
        .await;
    assert_eq!(resp.json()["path"], "/ok/page?x=1");
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn provider_denial_is_explained_with_a_request_id() {
    let w = world(&[]).await;
    *w.idp.state.deny.lock().unwrap() = Some("access_denied".into());
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.body.contains("access_denied") && resp.body.contains("not assigned"),
        "{}",
        resp.body
    );
    let id = resp
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(resp.body.contains(&id), "the page shows the request id");
    assert!(
        b.jar.lock().unwrap().keys().all(|k| !k.contains("_login_")),
        "the login cookie is cleared"
    );
}

#[tokio::test]
async fn callback_without_the_login_cookie_blames_cookies_or_time() {
    let w = world(&[]).await;
    let b = Browser::new();
    let start = b.get(&format!("{}/x", w.gh.url)).await;
    let authorize = start.location().unwrap();
    let idp = Browser::new(); // a browser that never got the login cookie
    let callback = idp.get(&authorize).await.location().unwrap();
    let r = idp.get(&callback).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("cookies") && r.body.contains("10 minutes"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn secure_cookies_over_plain_http_are_named_as_the_likely_cause() {
    let w = world(&[("cookie_secure", "true")]).await;
    let b = Browser::new();
    let start = b.get(&format!("{}/x", w.gh.url)).await;
    assert!(
        start.set_cookies().iter().all(|c| c.contains("Secure")),
        "{:?}",
        start.set_cookies()
    );
    // A real browser drops Secure cookies set over http: the callback arrives without one.
    let callback = Browser::new()
        .get(&start.location().unwrap())
        .await
        .location()
        .unwrap();
    let r = Browser::new().get(&callback).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("cookie_secure") && r.body.contains("trusted_proxies"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_state_that_does_not_match_is_refused() {
    let w = world(&[]).await;
    let b = Browser::new();
    let authorize = b.get(&format!("{}/x", w.gh.url)).await.location().unwrap();
    let callback = b.get(&authorize).await.location().unwrap();
    let forged = regex_replace_state(&callback, "forgedstate123456789");
    let r = b.get(&forged).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("state mismatch"), "{}", r.body);
    let missing = b
        .get(&format!("{}/oauth2/callback?code=abc", w.gh.url))
        .await;
    assert_eq!(missing.status, 400);
}

fn regex_replace_state(url: &str, state: &str) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                state.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

#[tokio::test]
async fn userinfo_and_sign_out_with_rp_initiated_logout() {
    let (w, b) = logged_in(&[("post_logout_redirect_url", "http://127.0.0.1:1/bye")]).await;
    let info = b.get(&format!("{}/oauth2/userinfo", w.gh.url)).await.json();
    assert_eq!(info["user"], "alice@example.test");
    assert_eq!(info["groups"], serde_json::json!(["admins", "dev"]));
    // GET only asks; the button posts.
    let page = b.get(&format!("{}/oauth2/sign_out", w.gh.url)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("<form method=\"post\" action=\"/oauth2/sign_out\">"),
        "{}",
        page.body
    );
    assert!(b.cookie("_gatehouse").is_some(), "a GET signs nobody out");
    // Another site cannot post it.
    let sign_out = format!("{}/oauth2/sign_out", w.gh.url);
    for cross in [
        [("origin", "https://evil.example")],
        [("sec-fetch-site", "cross-site")],
        [("sec-fetch-site", "same-site")],
    ] {
        let r = b.send(reqwest::Method::POST, &sign_out, &cross).await;
        assert_eq!(r.status, 403, "{cross:?}");
        assert!(r.body.contains("another site"), "{}", r.body);
    }
    assert!(b.cookie("_gatehouse").is_some(), "still signed in");
    let origin = w.gh.url.clone();
    let out = b
        .send(reqwest::Method::POST, &sign_out, &[("origin", &origin)])
        .await;
    assert_eq!(out.status, 302);
    assert_eq!(
        w.idp.state.revoked.lock().unwrap().len(),
        1,
        "the refresh token was revoked at the provider (RFC 7009)"
    );
    let loc = out.location().unwrap();
    assert!(
        loc.starts_with(&format!("{}/logout?", w.idp.issuer)),
        "{loc}"
    );
    assert!(
        loc.contains("id_token_hint=")
            && loc.contains("client_id=")
            && loc.contains("post_logout_redirect_uri="),
        "{loc}"
    );
    assert!(b.cookie("_gatehouse").is_none(), "session cookie cleared");
    let after = b
        .send(
            reqwest::Method::GET,
            &format!("{}/oauth2/userinfo", w.gh.url),
            &[],
        )
        .await;
    assert_eq!(after.status, 401);
}

#[tokio::test]
async fn refresh_happens_once_for_concurrent_requests_and_keeps_the_identity() {
    let w = world(&[("refresh_before_secs", "1000")]).await;
    let b = Browser::new();
    let echo = login(&w, &b, "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    let before = w.idp.refreshes();
    assert!(
        before >= 1,
        "the landing request already refreshed (token within refresh_before)"
    );
    let cookie = b.cookie_header();
    let client = reqwest::Client::new();
    let reqs = (0..6).map(|_| {
        client
            .get(format!("{}/p", w.gh.url))
            .header("cookie", cookie.clone())
            .header("accept", "application/json")
            .send()
    });
    let results = futures_util::future::join_all(reqs).await;
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("_gatehouse=")),
            "each gets the refreshed cookie"
        );
    }
    assert_eq!(
        w.idp.refreshes(),
        before + 1,
        "six concurrent requests, one refresh"
    );
}

#[tokio::test]
async fn a_failed_refresh_means_logging_in_again_never_a_stale_identity() {
    let (w, b) = logged_in(&[("refresh_before_secs", "1000")]).await;
    w.idp.state.refresh_fails.store(true, Ordering::SeqCst);
    let r = b.get(&format!("{}/p", w.gh.url)).await;
    assert_eq!(r.status, 302);
    assert!(
        r.location().unwrap().starts_with(&w.idp.issuer),
        "back to the IdP"
    );
    assert!(
        b.cookie("_gatehouse").is_none(),
        "the stale session is cleared"
    );
}

#[tokio::test]
async fn a_refreshed_token_for_another_subject_or_issuer_is_refused() {
    for change in ["sub", "iss", "aud"] {
        let w = world(&[("refresh_before_secs", "1000")]).await;
        let b = Browser::new();
        login(&w, &b, "/").await;
        match change {
            "sub" => *w.idp.state.next_sub.lock().unwrap() = "mallory".into(),
            "iss" => w.idp.tweak(|c| c["iss"] = "https://other.example".into()),
            _ => w.idp.tweak(|c| c["aud"] = "someone-else".into()),
        }
        let r = b
            .send(
                reqwest::Method::GET,
                &format!("{}/p", w.gh.url),
                &[("accept", "application/json")],
            )
            .await;
        assert_eq!(r.status, 401, "changed {change}: {r:?}");
    }
}

/// An ID token already past its `exp` at the callback refuses the sign-in, saying so,
/// even within `clock_skew_secs` (no leeway on `exp`: the session would be over before it
/// starts). One that expires later, without a refresh token, ends the session then: the
/// session is never served past its own end, and the next request signs in again.
#[tokio::test]
async fn an_expired_token_without_refresh_token_requires_login() {
    let w = world(&[("clock_skew_secs", "60")]).await;
    w.idp.set_mint(Mint {
        ttl: -20,
        refresh_token: false,
        ..Mint::default()
    });
    let b = Browser::new();
    let authorize = b.get(&format!("{}/", w.gh.url)).await.location().unwrap();
    let callback = b.get(&authorize).await.location().unwrap();
    let landed = b.get(&callback).await;
    assert_eq!(landed.status, 502, "{landed:?}");
    assert!(landed.body.contains("token expired 2"), "{}", landed.body);
    assert!(b.cookie("_gatehouse").is_none(), "no session from it");
    w.idp.set_mint(Mint {
        ttl: 2,
        refresh_token: false,
        ..Mint::default()
    });
    assert_eq!(login(&w, &b, "/").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let next = b.get(&format!("{}/", w.gh.url)).await;
    assert_eq!(next.status, 302, "{next:?}");
    assert!(next.location().unwrap().starts_with(&w.idp.issuer));
}

#[tokio::test]
async fn big_sessions_are_chunked_and_never_reach_the_upstream() {
    let w = world(&[]).await;
    // Random text: sessions are compressed, and a repeated character would shrink to nothing.
    let padding = gatehouse::util::random_token(4500);
    w.idp.tweak(move |c| c["padding"] = padding.clone().into());
    let b = Browser::new();
    let echo = login(&w, &b, "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert!(
        b.cookie("_gatehouse_0").is_some() && b.cookie("_gatehouse_1").is_some(),
        "{:?}",
        b.jar.lock().unwrap().keys()
    );
    assert!(
        seen(&echo, "cookie")
            .iter()
            .all(|c| !c.contains("_gatehouse")),
        "{:?}",
        seen(&echo, "cookie")
    );
}

/// A random Entra-style object id (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`): groups of
/// these do not compress away.
pub fn object_id() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[tokio::test]
async fn a_200_group_session_fits_three_cookies_and_forwards_the_token_as_signed() {
    let w = world(&[]).await;
    let groups: Vec<String> = (0..200).map(|_| object_id()).collect();
    let minted = groups.clone();
    w.idp.tweak(move |c| c["groups"] = minted.clone().into());
    let b = Browser::new();
    let echo = login(&w, &b, "/").await.json();
    let names: Vec<String> = b.jar.lock().unwrap().keys().cloned().collect();
    let chunks = names
        .iter()
        .filter(|n| n.starts_with("_gatehouse_"))
        .count();
    // Uncompressed, this session took 7 cookies (about 25 KB).
    assert!((2..=3).contains(&chunks), "{names:?}");
    // Read back from the cookies on a later request, the ID token still verifies with
    // the provider's key: byte for byte what the provider signed.
    let echo2 = b.get(&format!("{}/later", w.gh.url)).await.json();
    let key: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(w.idp.state.keys.rsa1_jwk.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&key).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[crate::support::idp::CLIENT_ID]);
    v.set_issuer(&[w.idp.issuer.as_str()]);
    for e in [&echo, &echo2] {
        let token = seen(e, "x-forwarded-id-token");
        assert_eq!(token.len(), 1, "{e}");
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token[0], &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["groups"], serde_json::json!(groups));
        assert_eq!(seen(e, "x-forwarded-groups"), vec![groups.join(",")]);
    }
}

#[tokio::test]
async fn a_session_too_big_for_cookies_is_explained() {
    let w = world(&[]).await;
    let padding = gatehouse::util::random_token(30_000);
    w.idp.tweak(move |c| c["padding"] = padding.clone().into());
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.body.contains("too large to keep in cookies"),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn rotated_cookie_secrets_keep_users_logged_in() {
    let (w, b) = logged_in(&[]).await;
    let new_secret = gatehouse::config::secret::generate();
    let both = format!("{new_secret},{}", crate::support::COOKIE_SECRET);
    let rotated = start(config(
        &w.up.url,
        &w.idp.issuer,
        &[("cookie_secret", &both)],
    ))
    .await;
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{}/after-rotation", rotated.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        seen(&r.json(), "x-forwarded-user"),
        vec!["alice@example.test"]
    );
    let other = start(config(
        &w.up.url,
        &w.idp.issuer,
        &[("cookie_secret", &new_secret)],
    ))
    .await;
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{}/x", other.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(
        r.status, 401,
        "a key that never sealed the cookie cannot open it"
    );
}

#[tokio::test]
async fn not_ready_until_the_provider_answers() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let up = Upstream::start().await;
    let gh = start_unready(config(&up.url, &issuer, &[])).await;
    let b = Browser::new();
    assert_eq!(b.get(&format!("{}/healthz", gh.url)).await.status, 200);
    assert_eq!(b.get(&format!("{}/readyz", gh.url)).await.status, 503);
    let r = b.get(&format!("{}/app", gh.url)).await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("still contacting the identity provider"),
        "{}",
        r.body
    );
}

/// A client that gives up mid-refresh does not cancel the refresh: the next request with
/// the same old cookie reuses its result instead of spending the refresh token again.
#[tokio::test]
async fn a_refresh_survives_the_client_that_started_it() {
    let (w, b) = logged_in(&[("refresh_before_secs", "100000")]).await;
    w.idp
        .state
        .refresh_delay_ms
        .store(400, std::sync::atomic::Ordering::SeqCst);
    let before = w.idp.refreshes();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(format!("{}/x", w.gh.url))
        .header("cookie", b.cookie_header())
        .header("accept", "application/json")
        .send()
        .await;
    assert!(gave_up.is_err(), "the client disconnected mid-refresh");
    // The same old cookie again, after the refresh finished on its own.
    for _ in 0..100 {
        if w.idp.refreshes() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{}/y", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        w.idp.refreshes(),
        before + 1,
        "the refresh token was spent once, by the refresh the first client started"
    );
}

/// A crafted callback link cannot put the "provider's" words on gatehouse's page: the
/// error is shown only once the state matches this browser's login.
#[tokio::test]
async fn provider_errors_are_shown_only_for_this_browsers_login() {
    let w = world(&[]).await;
    let b = Browser::new();
    let crafted = format!(
        "{}/oauth2/callback?state=forged&error=access_denied&error_description=Call+0800-SCAM+now",
        w.gh.url
    );
    let r = b.get(&crafted).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(!r.body.contains("SCAM"), "{}", r.body);
    let no_state = b
        .get(&format!(
            "{}/oauth2/callback?error=access_denied&error_description=SCAM",
            w.gh.url
        ))
        .await;
    assert_eq!(no_state.status, 400);
    assert!(!no_state.body.contains("SCAM"));
}

/// Secure host-only cookies carry the `__Host-` prefix (browsers then refuse them from a
/// subdomain or plain http); login-state cookies are scoped to the callback path.
#[tokio::test]
async fn secure_cookies_are_host_prefixed_and_login_state_stays_on_the_callback_path() {
    let w = world(&[("cookie_secure", "true")]).await;
    let b = Browser::new();
    let first = b.get(&format!("{}/app", w.gh.url)).await;
    let login = first
        .set_cookies()
        .into_iter()
        .find(|c| c.contains("_login_"))
        .unwrap();
    assert!(login.starts_with("__Secure-_gatehouse_login_"), "{login}");
    assert!(
        login.contains("Path=/oauth2/callback") && login.contains("Secure"),
        "{login}"
    );
    let at_idp = b.get(&first.location().unwrap()).await;
    let callback = b.get(&at_idp.location().unwrap()).await;
    let cookies = callback.set_cookies();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-_gatehouse="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(
        session.contains("Path=/") && session.contains("Secure") && !session.contains("Domain"),
        "{session}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Secure-_gatehouse_login_")
                && c.contains("Path=/oauth2/callback")
                && c.contains("Max-Age=0")),
        "the login cookie is cleared on its own path: {cookies:?}"
    );
    // The prefixed session works, and never reaches the upstream.
    let echo = b
        .send(
            reqwest::Method::GET,
            &format!("{}/app", w.gh.url),
            &[("accept", "application/json")],
        )
        .await
        .json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert!(
        !seen(&echo, "cookie").join(";").contains("gatehouse"),
        "{echo}"
    );
}
