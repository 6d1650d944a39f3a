//! Review of issue 16 (the session store interface and its two stores, back-channel
//! logout): each test shows one finding and fails without its fix. The store-level tests
//! drive `SessionStore` directly, as two replicas would, against a real `redis-server`.

use crate::flow::{login, world};
use crate::support::idp::Mint;
use crate::support::redis::{skip_unless_available, RedisServer};
use crate::support::upstream::seen;
use crate::support::{config, start, Browser};
use gatehouse::config::Config;
use gatehouse::identity::Identity;
use gatehouse::session::{RefreshTurn, RequestCookies, Session, SessionStore};
use std::time::{Duration, Instant};

fn redis_config(redis: &RedisServer, extra: &[(&'static str, &str)]) -> Config {
    let url = redis.url();
    let mut pairs = vec![("session_store", "redis"), ("redis_url", url.as_str())];
    pairs.extend_from_slice(extra);
    config("http://127.0.0.1:9", "http://127.0.0.1:9", &pairs)
}

/// A replica's session store, connected.
async fn replica(cfg: &Config) -> SessionStore {
    let store = SessionStore::for_config(cfg).unwrap();
    store.start();
    let began = Instant::now();
    while let Some(why) = store.down() {
        assert!(began.elapsed() < Duration::from_secs(10), "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
}

fn session(id: &str, refresh_token: &str, id_token: &str) -> Session {
    let now = gatehouse::util::now_secs();
    Session {
        id: id.into(),
        identity: Identity {
            sub: "alice".into(),
            user: "alice@example.test".into(),
            ..Identity::default()
        },
        id_token: id_token.into(),
        refresh_token: Some(refresh_token.into()),
        access_token: None,
        expires_at: now + 30,
        created_at: now - 600,
        sid: None,
        seen: now - 600,
        ticket: None,
        values: Default::default(),
        claims: Default::default(),
    }
}

/// The `Cookie` header a browser sends back for these `Set-Cookie` values.
fn cookie_header(set: &[axum::http::HeaderValue]) -> String {
    set.iter()
        .map(|h| h.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|p| !p.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Finding 1. An idle-timeout touch (`auth::touched` -> `SessionStore::save`) writes back
/// the whole session the replica *read*, with only `seen` changed. When another replica
/// refreshed the session meanwhile (the toucher served a copy from its one-second cache,
/// or its clock is a little behind, or its write was slow), the touch puts the spent
/// refresh token back in Redis over the rotated one: the next refresh spends it a second
/// time (the provider revokes the grant), and a replica holding the refreshed session
/// gets the old, expiring one back as "done".
#[tokio::test]
async fn review16_a_touch_never_writes_back_tokens_a_refresh_replaced() {
    if skip_unless_available() {
        return;
    }
    let redis = RedisServer::start();
    let cfg = redis_config(&redis, &[("session_idle_timeout_secs", "600")]);
    let (a, b, reader) = (
        replica(&cfg).await,
        replica(&cfg).await,
        replica(&cfg).await,
    );
    let none = RequestCookies::default();
    let header = cookie_header(&a.save(&session("s1", "rt-1", "id-1"), &none).await.unwrap());
    let cookies = RequestCookies::parse([header.as_str()]);
    // Replica A reads the session (R1), as a request that will touch it does.
    let on_a = a
        .load(&cookies)
        .await
        .unwrap()
        .expect("A opens the session");
    // Replica B refreshes it: R1 is spent at the provider, R2 stored.
    let on_b = b
        .load(&cookies)
        .await
        .unwrap()
        .expect("B opens the session");
    let RefreshTurn::Mine(lease) = b.refresh_turn(&on_b).await.unwrap() else {
        panic!("B's turn to refresh");
    };
    let mut fresh = session("s1", "rt-2", "id-2");
    fresh.expires_at += 300;
    fresh.created_at = on_b.created_at;
    b.finish_refresh(lease, &on_b, Some(&fresh), false)
        .await
        .unwrap();
    // A's touch of what it read lands afterwards.
    let mut used = (*on_a).clone();
    used.seen = gatehouse::util::now_secs();
    let _ = a.save(&used, &cookies).await;
    let stored = reader.load(&cookies).await.unwrap().expect("still stored");
    assert_eq!(
        stored.refresh_token.as_deref(),
        Some("rt-2"),
        "the touch wrote the spent refresh token back over the rotated one"
    );
    assert_eq!(stored.id_token, "id-2");
    // So the next refresh, from a replica that read R1, is not told it was done: it would
    // spend R1 again.
    match b.refresh_turn(&on_b).await.unwrap() {
        RefreshTurn::Done(s) => assert_eq!(s.refresh_token.as_deref(), Some("rt-2")),
        RefreshTurn::Mine(_) => panic!("R1 would be spent a second time"),
        RefreshTurn::Ended => panic!("ended"),
    }
}

/// An API-style request (JSON, so no redirect) with `b`'s cookies.
async fn api(b: &Browser, url: &str) -> crate::support::Resp {
    b.send(reqwest::Method::GET, url, &[("accept", "application/json")])
        .await
}

/// Finding 2. A refresh can rotate the refresh token at the provider and still fail
/// without ending the session: the provider sent no new ID token while the forwarded one
/// is due (`IdTokenNotRenewed`, served until it expires), or a check after the token call
/// could not be made (`check_access_token` before the access token issuer's keys are
/// loaded: transient). The rotated token was dropped: Redis kept the spent one, so the
/// next replica to find the session due took the lock, saw "its" token still stored, and
/// spent it a second time: the double spend the store exists to prevent (a provider with
/// reuse detection revokes the grant). The cookie store's browser kept the spent token
/// too, so the next refresh (on another replica, or on this one once the failure is no
/// longer kept) spent it again.
async fn a_refresh_that_keeps_the_session_spends_each_token_once(store: &[(&'static str, &str)]) {
    let mut settings = vec![("refresh_before_secs", "100")];
    settings.extend_from_slice(store);
    let w = world(&settings).await;
    let b_replica = start(config(&w.up.url, &w.idp.issuer, &settings)).await;
    // Rotation; refreshes answer without an ID token (OIDC Core 12.2). The forwarded ID
    // token (the default X-Forwarded-Id-Token) lives 60 s, less than refresh_before: due.
    w.idp.set_mint(Mint {
        ttl: 60,
        body_tweak: std::sync::Arc::new(|b, refresh| {
            if refresh {
                b["expires_in"] = serde_json::json!(3600);
                b.as_object_mut().unwrap().remove("id_token");
            }
        }),
        ..Mint::default()
    });
    let alice = Browser::new();
    let landed = login(&w, &alice, "/").await;
    assert_eq!(landed.status, 200, "{landed:?}");
    let on_a = api(&alice, &format!("{}/a", w.gh.url)).await;
    assert_eq!(
        on_a.status, 200,
        "served until the ID token expires: {on_a:?}"
    );
    assert_eq!(
        seen(&on_a.json(), "x-forwarded-user"),
        vec!["alice@example.test"]
    );
    let on_b = api(&alice, &format!("{}/b", b_replica.url)).await;
    assert_eq!(on_b.status, 200, "{on_b:?}");
    let presented = w.idp.state.refresh_tokens_presented.lock().unwrap().clone();
    assert_eq!(
        presented.len(),
        2,
        "each replica refreshed once: {presented:?}"
    );
    assert_ne!(
        presented[0], presented[1],
        "a refresh token was spent twice: {presented:?}"
    );
}

#[tokio::test]
async fn review16_a_refresh_that_keeps_the_session_leaves_no_spent_token_for_another_replica() {
    if skip_unless_available() {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    a_refresh_that_keeps_the_session_spends_each_token_once(&[
        ("session_store", "redis"),
        ("redis_url", url.as_str()),
    ])
    .await;
}

#[tokio::test]
async fn review16_a_refresh_that_keeps_the_session_hands_back_the_rotated_token_in_the_cookie() {
    a_refresh_that_keeps_the_session_spends_each_token_once(&[]).await;
}

/// Finding 4. A URL setting with credentials that does not parse (a port out of range, a
/// stray character) was echoed whole in the start-up error: the Redis password (or the
/// upstream's) went to the terminal and the log collector, where `redis_url` with
/// credentials is refused precisely so that it never shows in logs.
#[test]
fn review16_a_url_that_does_not_parse_is_never_echoed_with_its_credentials() {
    for (key, value, secret) in [
        (
            "redis_url",
            "redis://gh:redis-password-7@127.0.0.1:99999",
            "redis-password-7",
        ),
        (
            "redis_url",
            "rediss://:redis-password-8@cache.internal:6379 /0",
            "redis-password-8",
        ),
        (
            "upstream",
            "http://app:upstream-password-9@127.0.0.1:99999",
            "upstream-password-9",
        ),
        (
            "issuer_url",
            "https://op:issuer-password-1@sso.example.test:99999",
            "issuer-password-1",
        ),
        (
            "access_token_issuer",
            "https://at:issuer-password-2@sts.example.test:99999/",
            "issuer-password-2",
        ),
    ] {
        let mut raw = gatehouse::config::RawConfig::default();
        for (k, v) in [
            ("upstream", "http://127.0.0.1:9"),
            ("issuer_url", "https://sso.example.test"),
            ("client_id", "c"),
            ("client_secret", "s"),
            ("cookie_secret", crate::support::COOKIE_SECRET),
            ("session_store", "redis"),
            ("redis_url", "redis://127.0.0.1:6379"),
            ("access_token_audience", "api://gatehouse"),
            (key, value),
        ] {
            raw.set(k, v);
        }
        let problems = match Config::from_raw(&raw) {
            Ok(_) => panic!("{key} = {value} was accepted"),
            Err(e) => e.problems.join("\n"),
        };
        assert!(problems.contains(key), "{problems}");
        assert!(!problems.contains(secret), "{key}: {problems}");
    }
}

/// Finding 5. The cookie store keeps a back-channel logout as "sessions with this `sid`
/// (or of this `sub`) begun by `iat + clock_skew_secs`", and checks it on every request.
/// `iat + skew` lies in the future when the logout arrives: a user who signs in again
/// right away (a new provider session for a logout by `sub`, or the same `sid` from a
/// provider that keeps it) gets a session that is already "ended", so the next request
/// sends the browser to the provider, which signs it straight back in: a redirect loop
/// (ERR_TOO_MANY_REDIRECTS) until the clock passes `iat + skew` (30 s by default, more
/// with a provider clock running ahead). A sign-in after the logout must live on.
#[tokio::test]
async fn review16_signing_in_again_right_after_a_back_channel_logout_is_no_login_loop() {
    let w = world(&[]).await;
    for (sid, logout_sid, logout_sub) in [
        // A logout by sub; the new sign-in is a new provider session.
        (Some("s-new"), None, Some("alice")),
        // A logout by sid from a provider that keeps the sid for the next sign-in.
        (None, Some("op-alice"), None),
    ] {
        *w.idp.state.next_sub.lock().unwrap() = "alice".into();
        *w.idp.state.next_sid.lock().unwrap() = None;
        let before = Browser::new();
        assert_eq!(login(&w, &before, "/").await.status, 200);
        let token = w.idp.state.keys.sign(
            &Mint {
                typ: Some("logout+jwt".into()),
                ..Mint::default()
            },
            &crate::backchannel::logout_claims(&w.idp.issuer, logout_sid, logout_sub),
        );
        let r = crate::backchannel::post_logout(&w.gh.url, &token).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(api(&before, &format!("{}/me", w.gh.url)).await.status, 401);
        // Alice signs in again at once (in the next second: sessions are dated to the
        // second, and one begun in the very second the logout arrived counts as before it).
        let arrived = gatehouse::util::now_secs();
        while gatehouse::util::now_secs() == arrived {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *w.idp.state.next_sid.lock().unwrap() = sid.map(str::to_string);
        let again = Browser::new();
        let (landed, visited) = again.follow(&format!("{}/app", w.gh.url)).await;
        assert_eq!(
            landed.status, 200,
            "signing in again after the logout ({logout_sid:?}, {logout_sub:?}) loops: \
             {visited:#?}"
        );
        assert_eq!(
            api(&again, &format!("{}/me", w.gh.url)).await.status,
            200,
            "the new session lives on"
        );
    }
}

/// Finding 6. `refresh_turn` takes the session's refresh lock, then reads the session; when
/// that read fails (Redis timing out, failing over, or answering an error) the lease was
/// dropped without being freed: every replica's refresh of that session then waited out
/// the 5 s lease (requests held that long) although nobody was refreshing.
#[tokio::test]
async fn review16_a_failed_read_after_taking_the_refresh_lock_frees_it() {
    if skip_unless_available() {
        return;
    }
    let redis = RedisServer::start();
    let cfg = redis_config(&redis, &[]);
    let a = replica(&cfg).await;
    let header = cookie_header(
        &a.save(&session("s9", "rt-1", "id-1"), &RequestCookies::default())
            .await
            .unwrap(),
    );
    let cookies = RequestCookies::parse([header.as_str()]);
    let on_a = a.load(&cookies).await.unwrap().expect("opens");
    // The entry cannot be read now (here: a value of another type, so GET errs).
    redis.cmd(&["DEL", "gatehouse:{s9}:s"]);
    redis.cmd(&["HSET", "gatehouse:{s9}:s", "f", "v"]);
    assert!(a.refresh_turn(&on_a).await.is_err(), "the read failed");
    let held = redis.cmd(&["EXISTS", "gatehouse:{s9}:lock"]);
    assert_eq!(
        held.int(),
        Some(0),
        "the refresh lock outlived the failed turn"
    );
}
