//! OpenID Connect Back-Channel Logout at `/oauth2/backchannel_logout`, in process against
//! the test IdP (which puts `sid` = `op-<user>` in its ID tokens unless told otherwise):
//! logout by `sid` and by `sub`, replays, every bad-token class (400, nobody signed
//! out), the request's own refusals, WebSockets closed (4001), and with the redis store
//! two real gatehouse processes (a logout at one ends the session at both) and a store
//! that is down (503, so the provider sends it again); `check --online`; and the real
//! oidc-provider posting its logout token when the user signs out there.

use crate::flow::{login, world, World};
use crate::proxy::websocket;
use crate::support::idp::{Mint, Signer, TestIdp, CLIENT_ID};
use crate::support::peers::{op_form_login, skip_unless_available, NodeOp};
use crate::support::redis;
use crate::support::upstream::{seen, Upstream};
use crate::support::{check_online, config, start_on, Browser, RealGatehouse, Resp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The claims of a valid logout token from `idp` naming `sid` and/or `sub`.
pub fn logout_claims(issuer: &str, sid: Option<&str>, sub: Option<&str>) -> Value {
    let now = gatehouse::util::now_secs();
    let mut c = json!({
        "iss": issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
        "jti": gatehouse::util::random_token(8), "events": {EVENT: {}},
    });
    if let Some(s) = sid {
        c["sid"] = json!(s);
    }
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    c
}

fn typed() -> Mint {
    Mint {
        typ: Some("logout+jwt".into()),
        ..Mint::default()
    }
}

fn sign(idp: &TestIdp, claims: &Value) -> String {
    idp.state.keys.sign(&typed(), claims)
}

/// Posts `token` as the provider would (a form, no cookies).
pub async fn post_logout(gh: &str, token: &str) -> Resp {
    Browser::new()
        .post_form(
            &format!("{gh}/oauth2/backchannel_logout"),
            &[("logout_token", token)],
        )
        .await
}

/// Signs `user` in with provider session `sid` (`None`: the IdP's default, `op-<user>`).
async fn sign_in(w: &World, user: &str, sid: Option<&str>) -> Browser {
    *w.idp.state.next_sub.lock().unwrap() = user.into();
    *w.idp.state.next_sid.lock().unwrap() = sid.map(str::to_string);
    let b = Browser::new();
    let r = login(w, &b, "/").await;
    assert_eq!(r.status, 200, "{user} signs in: {r:?}");
    b
}

/// What an API client gets at `base`/me: 200 with the upstream's echo, or 401.
async fn me(base: &str, b: &Browser) -> Resp {
    b.send(
        reqwest::Method::GET,
        &format!("{base}/me"),
        &[("accept", "application/json")],
    )
    .await
}

async fn assert_signed_in(base: &str, b: &Browser, user: &str) {
    let r = me(base, b).await;
    assert_eq!(r.status, 200, "{user} still signed in: {r:?}");
    assert_eq!(
        seen(&r.json(), "x-forwarded-user"),
        vec![format!("{user}@example.test")]
    );
}

fn assert_accepted(r: &Resp) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store", "{r:?}");
}

fn assert_refused(r: &Resp, needle: &str) {
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store", "{r:?}");
    let j = r.json();
    assert_eq!(j["error"], "invalid_request", "{j}");
    let why = j["error_description"].as_str().unwrap();
    assert!(why.contains(needle), "{needle:?} in {why:?}");
}

#[tokio::test]
async fn a_logout_token_for_a_sid_ends_that_session_and_no_other() {
    let w = world(&[]).await;
    let alice = sign_in(&w, "alice", None).await;
    let bob = sign_in(&w, "bob", None).await;
    // Alice's other sign-in, in another provider session: a sid names one sign-in.
    let alice_elsewhere = sign_in(&w, "alice", Some("op-alice-laptop")).await;

    let token = sign(
        &w.idp,
        &logout_claims(&w.idp.issuer, Some("op-alice"), Some("alice")),
    );
    let r = post_logout(&w.gh.url, &token).await;
    assert_accepted(&r);
    assert!(r.body.is_empty(), "{r:?}");

    let r = me(&w.gh.url, &alice).await;
    assert_eq!(r.status, 401, "alice must sign in again: {r:?}");
    let page = alice.get(&format!("{}/app", w.gh.url)).await;
    assert_eq!(page.status, 302, "a browser is sent to sign in: {page:?}");
    assert_signed_in(&w.gh.url, &bob, "bob").await;
    assert_signed_in(&w.gh.url, &alice_elsewhere, "alice").await;
}

#[tokio::test]
async fn a_logout_token_with_only_sub_ends_every_session_of_that_user() {
    let w = world(&[]).await;
    let phone = sign_in(&w, "alice", Some("s-phone")).await;
    let laptop = sign_in(&w, "alice", Some("s-laptop")).await;
    let bob = sign_in(&w, "bob", None).await;

    let token = sign(&w.idp, &logout_claims(&w.idp.issuer, None, Some("alice")));
    assert_accepted(&post_logout(&w.gh.url, &token).await);
    for b in [&phone, &laptop] {
        assert_eq!(me(&w.gh.url, b).await.status, 401);
    }
    assert_signed_in(&w.gh.url, &bob, "bob").await;
    // A logout by sid alone (no sub) works too.
    let token = sign(&w.idp, &logout_claims(&w.idp.issuer, Some("op-bob"), None));
    assert_accepted(&post_logout(&w.gh.url, &token).await);
    assert_eq!(me(&w.gh.url, &bob).await.status, 401);
}

#[tokio::test]
async fn a_replayed_logout_token_is_refused() {
    let w = world(&[]).await;
    let _alice = sign_in(&w, "alice", None).await;
    let token = sign(
        &w.idp,
        &logout_claims(&w.idp.issuer, Some("op-alice"), None),
    );
    assert_accepted(&post_logout(&w.gh.url, &token).await);
    assert_refused(&post_logout(&w.gh.url, &token).await, "already used");
    // The same jti in another token (re-signed): still the same logout, refused.
    let mut again = payload(&token);
    again["sid"] = json!("op-bob");
    assert_refused(
        &post_logout(&w.gh.url, &sign(&w.idp, &again)).await,
        "already used",
    );
}

fn payload(token: &str) -> Value {
    crate::interop::decode(token)
}

#[tokio::test]
async fn every_bad_logout_token_is_refused_and_signs_nobody_out() {
    let w = world(&[]).await;
    let alice = sign_in(&w, "alice", None).await;
    let iss = w.idp.issuer.clone();
    let good = || logout_claims(&iss, Some("op-alice"), Some("alice"));
    let now = gatehouse::util::now_secs();
    let with = |k: &str, v: Value| {
        let mut c = good();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let signed_by = |signer: Signer, c: &Value| {
        let mint = Mint { signer, ..typed() };
        w.idp.state.keys.sign(&mint, c)
    };
    let typed_as = |typ: &str, c: &Value| {
        let mint = Mint {
            typ: Some(typ.into()),
            ..Mint::default()
        };
        w.idp.state.keys.sign(&mint, c)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", signed_by(Signer::None, &good()), "unsigned"),
        (
            "HS256 keyed with the public key",
            signed_by(Signer::Hs256WithPublicKey, &good()),
            "HS256",
        ),
        (
            "forged signature",
            signed_by(Signer::Rsa2, &good()),
            "signature",
        ),
        (
            "ES256 forged",
            signed_by(Signer::EcOther, &good()),
            "signature",
        ),
        (
            "typed as an access token",
            typed_as("at+jwt", &good()),
            "at+jwt",
        ),
        (
            "typed as another event",
            typed_as("secevent+jwt", &good()),
            "secevent+jwt",
        ),
        (
            "another issuer",
            sign(&w.idp, &with("iss", json!("https://elsewhere"))),
            "issuer",
        ),
        ("no issuer", sign(&w.idp, &without("iss")), "`iss`"),
        (
            "another audience",
            sign(&w.idp, &with("aud", json!("other-app"))),
            "another client",
        ),
        ("no audience", sign(&w.idp, &without("aud")), "`aud`"),
        ("no iat", sign(&w.idp, &without("iat")), "`iat`"),
        (
            "iat in the future",
            sign(&w.idp, &with("iat", json!(now + 600))),
            "future",
        ),
        ("no exp", sign(&w.idp, &without("exp")), "`exp`"),
        (
            "expired",
            sign(&w.idp, &with("exp", json!(now - 1))),
            "expired",
        ),
        ("no jti", sign(&w.idp, &without("jti")), "`jti`"),
        ("no events", sign(&w.idp, &without("events")), "`events`"),
        (
            "events a list",
            sign(&w.idp, &with("events", json!([EVENT]))),
            "events",
        ),
        (
            "another event",
            sign(&w.idp, &with("events", json!({"urn:other": {}}))),
            "events",
        ),
        (
            "event not an object",
            sign(&w.idp, &with("events", json!({EVENT: "yes"}))),
            "events",
        ),
        ("a nonce", sign(&w.idp, &with("nonce", json!("n"))), "nonce"),
        (
            "neither sid nor sub",
            {
                let mut c = without("sid");
                c.as_object_mut().unwrap().remove("sub");
                sign(&w.idp, &c)
            },
            "neither",
        ),
        (
            "sid not a string",
            sign(&w.idp, &with("sid", json!(7))),
            "`sid`",
        ),
        ("not a JWT", "not-a-jwt".into(), "well-formed"),
    ];
    for (what, token, needle) in &cases {
        let r = post_logout(&w.gh.url, token).await;
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_refused(&r, needle);
        assert!(
            !r.body.contains(token.as_str()),
            "{what}: the token is echoed"
        );
    }
    // Alice's own ID token is no logout token (no events, a nonce).
    let id_token = seen(&me(&w.gh.url, &alice).await.json(), "x-forwarded-id-token")[0].clone();
    assert_refused(&post_logout(&w.gh.url, &id_token).await, "events");
    assert_signed_in(&w.gh.url, &alice, "alice").await;
}

#[tokio::test]
async fn malformed_requests_are_refused_with_json() {
    let w = world(&[]).await;
    let url = format!("{}/oauth2/backchannel_logout", w.gh.url);
    let client = reqwest::Client::new();
    let token = sign(
        &w.idp,
        &logout_claims(&w.idp.issuer, Some("op-alice"), None),
    );

    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({"logout_token": token}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close"),
        "the body was left unread: the client is told the connection ends"
    );
    assert!(r.text().await.unwrap().contains("x-www-form-urlencoded"));
    for (body, needle) in [
        ("other=1".to_string(), "no logout_token"),
        ("logout_token=".to_string(), "no logout_token"),
        (
            format!("logout_token={token}&logout_token={token}"),
            "more than once",
        ),
    ] {
        let r = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let j: Value = r.json().await.unwrap();
        assert_eq!(j["error"], "invalid_request");
        assert!(
            j["error_description"].as_str().unwrap().contains(needle),
            "{j}"
        );
    }
    // Too large, declared or streamed: 413 before anything is parsed.
    let big = format!("logout_token={}", "a".repeat(20_000));
    let r = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let mut chunked = b"POST /oauth2/backchannel_logout HTTP/1.1\r\nHost: gh\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for c in big.as_bytes().chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = crate::support::raw_http(w.gh.addr, &chunked).await;
    assert_eq!(
        crate::support::raw_status(&answer),
        413,
        "streamed, no length declared"
    );
    // A charset parameter is fine.
    let r = client
        .post(&url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(format!("logout_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("connection").is_none(),
        "the body was read whole: the connection stays usable"
    );
}

#[tokio::test]
async fn a_back_channel_logout_closes_that_sessions_websockets_only() {
    let w = world(&[]).await;
    let alice = sign_in(&w, "alice", None).await;
    let bob = sign_in(&w, "bob", None).await;
    let (_, _, mut theirs) = websocket(&w.gh.url, "/ws", &alice.cookie_header())
        .await
        .expect("alice's websocket");
    let (_, _, mut other) = websocket(&w.gh.url, "/ws", &bob.cookie_header())
        .await
        .expect("bob's websocket");
    let token = sign(
        &w.idp,
        &logout_claims(&w.idp.issuer, Some("op-alice"), None),
    );
    assert_accepted(&post_logout(&w.gh.url, &token).await);
    let next = tokio::time::timeout(Duration::from_secs(5), theirs.next())
        .await
        .expect("closed at the logout, not at expiry");
    match next {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    other.send(Message::text("still here")).await.unwrap();
    match other.next().await {
        Some(Ok(Message::Text(t))) => assert!(t.as_str().contains("still here"), "{t}"),
        got => panic!("bob's websocket was closed too: {got:?}"),
    }
}

/// Polls `f` until it is true (5 s at most).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// With the redis store, a logout token posted to one replica ends the session on every
/// replica (two real gatehouse processes) and closes its WebSocket there; when Redis is
/// down, nothing can be ended, and the provider is told to try again (503, not 200).
#[tokio::test]
async fn with_redis_a_logout_at_one_replica_ends_the_session_at_every_replica() {
    if redis::skip_unless_available() {
        return;
    }
    let mut server = tokio::task::spawn_blocking(redis::RedisServer::start)
        .await
        .unwrap();
    let url = server.url();
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let flags = ["--session-store", "redis", "--redis-url", &url];
    let port = redis::free_port;
    let one = RealGatehouse::start(port(), &up.url, &idp.issuer, &flags).await;
    let two = RealGatehouse::start(port(), &up.url, &idp.issuer, &flags).await;

    let sign_in_at = |gh: &RealGatehouse, user: &str| {
        *idp.state.next_sub.lock().unwrap() = user.into();
        let url = format!("{}/", gh.url);
        async move {
            let b = Browser::new();
            let (r, _) = b.follow(&url).await;
            assert_eq!(r.status, 200, "{r:?}");
            b
        }
    };
    let alice = sign_in_at(&one, "alice").await;
    let bob = sign_in_at(&one, "bob").await;
    assert_signed_in(&two.url, &alice, "alice").await;
    let (_, _, mut ws) = websocket(&one.url, "/ws", &alice.cookie_header())
        .await
        .expect("alice's websocket at replica one");

    let token = sign(
        &idp,
        &logout_claims(&idp.issuer, Some("op-alice"), Some("alice")),
    );
    assert_accepted(&post_logout(&two.url, &token).await);
    let a = &alice;
    for gh in [&one, &two] {
        eventually(
            "alice's session ends at every replica",
            move || async move { me(&gh.url, a).await.status == 401 },
        )
        .await;
        assert_signed_in(&gh.url, &bob, "bob").await;
    }
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("closed at the logout on the other replica");
    match next {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // The replay reaches the other replica's record too.
    assert_refused(&post_logout(&one.url, &token).await, "already used");

    server.kill();
    let token = sign(&idp, &logout_claims(&idp.issuer, Some("op-bob"), None));
    let r = post_logout(&one.url, &token).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], "temporarily_unavailable", "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
}

/// `check --online` says whether the provider does back-channel logout and which URI to
/// register: from redirect_url's origin when it is set, else how to build it.
#[tokio::test]
async fn check_online_names_back_channel_support_and_the_uri_to_register() {
    let idp = TestIdp::start().await;
    let callback = ["--redirect-url", "https://gh.example:8443/oauth2/callback"];
    let (code, said) = check_online(&idp.issuer, &callback).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("ok: the provider supports back-channel logout")
            && said.contains("with the provider's session id")
            && said.contains(
                "register https://gh.example:8443/oauth2/backchannel_logout as the client's backchannel_logout_uri"
            ),
        "{said}"
    );
    let (_, said) = check_online(&idp.issuer, &[]).await;
    assert!(
        said.contains("gatehouse's public URL followed by /oauth2/backchannel_logout"),
        "{said}"
    );
    idp.state
        .backchannel_logout
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (code, said) = check_online(&idp.issuer, &callback).await;
    assert_eq!(code, Some(0), "a warning only: {said}");
    assert!(
        said.contains("warning: the provider does not advertise back-channel logout")
            && said.contains("https://gh.example:8443/oauth2/backchannel_logout"),
        "{said}"
    );
}

/// The certified oidc-provider with back-channel logout, gatehouse's URI registered:
/// the user signs out at the provider (not at gatehouse), the provider posts its logout
/// token, and gatehouse ends that user's session; another user keeps theirs.
#[tokio::test]
async fn the_real_provider_ends_a_session_by_back_channel_when_the_user_signs_out_there() {
    if skip_unless_available(false) {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let uri = format!("{base}/oauth2/backchannel_logout");
    let op = NodeOp::for_gatehouse_at(&base, &["--backchannel-logout-uri", &uri]).await;
    let up = Upstream::start().await;
    let cfg = config(
        &up.url,
        &op.issuer,
        &[("scopes", "openid,email,profile,groups")],
    );
    let gh = start_on(listener, cfg).await;

    let (code, said) = check_online(
        &op.issuer,
        &[
            "--redirect-url",
            &format!("{base}/oauth2/callback"),
            "--cookie-secure",
            "false",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("ok: the provider supports back-channel logout")
            && said.contains(&format!("register {uri} as")),
        "{said}"
    );

    let alice = Browser::new();
    let landed = op_form_login(
        &alice,
        &format!("{}/app", gh.url),
        "alice",
        "admins",
        String::new,
    )
    .await;
    assert_eq!(landed.status, 200, "{landed:?}");
    let id_token = seen(&landed.json(), "x-forwarded-id-token")[0].clone();
    assert!(
        crate::interop::decode(&id_token)["sid"].is_string(),
        "the provider names its session in the ID token"
    );
    let bob = Browser::new();
    let landed = op_form_login(&bob, &format!("{}/app", gh.url), "bob", "dev", String::new).await;
    assert_eq!(landed.status, 200, "{landed:?}");

    // Alice signs out at the provider itself: its confirmation page, then the form.
    let page = alice.get(&format!("{}/session/end", op.issuer)).await;
    assert_eq!(page.status, 200, "{page:?}");
    let xsrf = page
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf in the logout page: {}", page.body))
        .to_string();
    let confirmed = alice
        .post_form(
            &format!("{}/session/end/confirm", op.issuer),
            &[("xsrf", &xsrf), ("logout", "yes")],
        )
        .await;
    assert!((300..400).contains(&confirmed.status), "{confirmed:?}");

    let a = &alice;
    let gh_url = gh.url.clone();
    eventually(
        "the provider's logout token ends alice's session",
        move || {
            let gh_url = gh_url.clone();
            async move { me(&gh_url, a).await.status == 401 }
        },
    )
    .await;
    assert_signed_in(&gh.url, &bob, "bob").await;
}
