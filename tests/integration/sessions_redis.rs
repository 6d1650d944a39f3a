//! The redis session store against a real `redis-server`: sessions shared by replicas
//! (in-process and real gatehouse processes), a ticket cookie whatever the tokens' size,
//! refreshes that spend each rotated refresh token once at the real oidc-provider, sign-out
//! that ends a session on every replica within a second (WebSockets included), and Redis
//! going away and coming back.

use crate::flow::{login, world};
use crate::proxy::websocket;
use crate::support::idp::TestIdp;
use crate::support::peers::{op_form_login, skip_unless_available, NodeOp};
use crate::support::redis::{free_port, skip_unless_available as skip_without_redis, RedisServer};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, start_unready, Browser, RealGatehouse};
use futures_util::StreamExt;
use reqwest::Method;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn redis_settings(redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("session_store", "redis".to_string()),
        ("redis_url", redis.url()),
    ]
}

fn as_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// An API-style request (JSON, so no redirect) with `b`'s cookies.
async fn api(b: &Browser, url: &str) -> crate::support::Resp {
    b.send(Method::GET, url, &[("accept", "application/json")])
        .await
}

/// The session cookie: `_gatehouse=<ticket>`.
fn session_cookie(b: &Browser) -> String {
    b.cookie("_gatehouse").expect("a session cookie")
}

#[tokio::test]
async fn replicas_share_one_session_through_a_small_ticket_and_sign_out_ends_it_everywhere() {
    if skip_without_redis() {
        return;
    }
    let redis = RedisServer::start();
    let settings = redis_settings(&redis);
    let w = world(&as_pairs(&settings)).await;
    let b_replica = start(config(&w.up.url, &w.idp.issuer, &as_pairs(&settings))).await;
    let alice = Browser::new();
    let landed = login(&w, &alice, "/").await;
    assert_eq!(landed.status, 200, "{landed:?}");
    // The cookie is a ticket: no token in it, and small whatever the tokens' size.
    let ticket = session_cookie(&alice);
    assert!(ticket.len() < 200, "{} bytes", ticket.len());
    let jar: Vec<String> = alice.jar.lock().unwrap().keys().cloned().collect();
    assert!(
        jar.iter().filter(|n| n.starts_with("_gatehouse")).count() == 1,
        "one session cookie, no chunks: {jar:?}"
    );
    // Redis holds the session sealed: no token, no user name in any value.
    let keys = redis.cmd(&["KEYS", "gatehouse:*"]);
    let names: Vec<String> = keys.items().iter().filter_map(|k| k.text()).collect();
    let entry = names
        .iter()
        .find(|k| k.ends_with(":s"))
        .unwrap_or_else(|| panic!("no session entry in {names:?}"));
    let stored = redis.cmd(&["GET", entry]).text().unwrap_or_default();
    assert!(
        !stored.contains("alice") && !stored.contains("eyJ"),
        "the stored session is sealed"
    );
    assert!(
        names.iter().all(|k| !k.contains("alice")),
        "index keys name no user: {names:?}"
    );
    // The other replica serves the same session, with the verified identity.
    let on_b = api(&alice, &format!("{}/who", b_replica.url)).await;
    assert_eq!(on_b.status, 200, "{on_b:?}");
    assert_eq!(
        seen(&on_b.json(), "x-forwarded-user"),
        vec!["alice@example.test"]
    );

    // A WebSocket opened through B closes (4001) when the session ends on A.
    let (_, _, mut ws) = websocket(&b_replica.url, "/ws", &alice.cookie_header())
        .await
        .expect("websocket through replica B");
    let bob = Browser::new();
    login(&w, &bob, "/").await;
    let out = alice
        .send(
            Method::POST,
            &format!("{}/oauth2/sign_out", w.gh.url),
            &[("origin", w.gh.url.as_str())],
        )
        .await;
    assert!(out.status == 302 || out.status == 200, "{out:?}");
    let signed_out = Instant::now();
    // The browser dropped its cookie; a stolen copy of it must stop working too.
    let stolen = Browser::new();
    stolen
        .jar
        .lock()
        .unwrap()
        .insert("_gatehouse".into(), ticket.clone());
    loop {
        let r = api(&stolen, &format!("{}/who", b_replica.url)).await;
        if r.status == 401 {
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            signed_out.elapsed() < Duration::from_secs(1),
            "replica B still served the signed-out session after {:?}",
            signed_out.elapsed()
        );
    }
    let ended_within = signed_out.elapsed();
    assert!(ended_within < Duration::from_secs(1), "{ended_within:?}");
    // Closed by the message about the end, or at the latest by B's once-a-second sweep;
    // 5 s leaves room for a machine running the whole suite on two cores.
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the websocket on B closed within 5 s of the sign-out on A");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close frame with 4001, got {other:?}"),
    }
    assert_eq!(api(&stolen, &format!("{}/who", w.gh.url)).await.status, 401);
    // Another user's session is untouched.
    assert_eq!(
        api(&bob, &format!("{}/who", b_replica.url)).await.status,
        200
    );
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_that_user_only() {
    if skip_without_redis() {
        return;
    }
    let redis = RedisServer::start();
    let settings = redis_settings(&redis);
    let w = world(&as_pairs(&settings)).await;
    let b_replica = start(config(&w.up.url, &w.idp.issuer, &as_pairs(&settings))).await;
    // Alice on a laptop and a phone; Bob elsewhere.
    let (laptop, phone, bob) = (Browser::new(), Browser::new(), Browser::new());
    for b in [&laptop, &phone] {
        assert_eq!(login(&w, b, "/").await.status, 200);
    }
    assert_ne!(session_cookie(&laptop), session_cookie(&phone));
    w.idp.tweak(|c| {
        c["sub"] = "bob".into();
        c["email"] = "bob@example.test".into();
    });
    assert_eq!(login(&w, &bob, "/").await.status, 200);
    let out = laptop
        .send(
            Method::POST,
            &format!("{}/oauth2/sign_out?everywhere=1", w.gh.url),
            &[("origin", w.gh.url.as_str())],
        )
        .await;
    assert!(out.status == 302 || out.status == 200, "{out:?}");
    let r = api(&phone, &format!("{}/who", b_replica.url)).await;
    assert_eq!(r.status, 401, "the phone's session ended too: {r:?}");
    assert_eq!(api(&phone, &format!("{}/who", w.gh.url)).await.status, 401);
    let r = api(&bob, &format!("{}/who", b_replica.url)).await;
    assert_eq!(r.status, 200, "another user's session stays: {r:?}");
    assert_eq!(
        seen(&r.json(), "x-forwarded-user"),
        vec!["bob@example.test"]
    );
}

#[tokio::test]
async fn redis_going_away_is_a_503_naming_it_then_service_returns_by_itself() {
    if skip_without_redis() {
        return;
    }
    let mut redis = RedisServer::start();
    let settings = redis_settings(&redis);
    let w = world(&as_pairs(&settings)).await;
    let alice = Browser::new();
    assert_eq!(login(&w, &alice, "/").await.status, 200);
    let url = format!("{}/who", w.gh.url);
    redis.kill();
    // Within a moment every request that needs a session is a 503 naming Redis: never a
    // login (the session is fine) and never a 500.
    let down = Instant::now();
    let r = loop {
        let r = api(&alice, &url).await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            down.elapsed() < Duration::from_secs(3),
            "still 200 after 3 s"
        );
    };
    let body = r.json();
    assert_eq!(body["error"], "session_store_unavailable", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("Redis"),
        "{body}"
    );
    assert!(r.headers.get("retry-after").is_some());
    // A browser gets the page, not a login redirect.
    let page = alice.get(&url).await;
    assert_eq!(page.status, 503, "{page:?}");
    assert!(page.body.contains("Redis"), "{}", page.body);
    let ready = Browser::new().get(&format!("{}/readyz", w.gh.url)).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("Redis"), "{}", ready.body);
    // A new sign-in cannot be stored: 503 at the callback, not a 500 or a loop.
    let newcomer = Browser::new();
    let (at_callback, _) = newcomer.follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(at_callback.status, 503, "{at_callback:?}");

    // Redis comes back empty (no persistence): gatehouse reconnects by itself, is ready
    // again, and the user signs in again; nothing worse.
    redis.restart();
    let back = Instant::now();
    loop {
        let r = Browser::new().get(&format!("{}/readyz", w.gh.url)).await;
        if r.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "not ready 10 s after Redis came back: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = api(&alice, &url).await;
    assert_eq!(r.status, 401, "the session was in the lost dataset: {r:?}");
    let again = login(&w, &alice, "/").await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(api(&alice, &url).await.status, 200);
}

/// Redis not there when gatehouse starts: not ready, and `/readyz` and the 503s say the
/// connection was refused; once Redis runs, gatehouse is ready within a second or so,
/// without a restart, and signs users in.
#[tokio::test]
async fn redis_absent_at_start_up_is_named_as_refused_and_service_begins_when_it_runs() {
    if skip_without_redis() {
        return;
    }
    let mut redis = RedisServer::start();
    redis.kill();
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let settings = redis_settings(&redis);
    let gh = start_unready(config(&up.url, &idp.issuer, &as_pairs(&settings))).await;
    let readyz = format!("{}/readyz", gh.url);
    let asked = Instant::now();
    let reason = loop {
        let r = Browser::new().get(&readyz).await;
        assert_eq!(r.status, 503, "{r:?}");
        let reason = r.json()["reason"].as_str().unwrap_or("").to_string();
        if reason.contains("refused") {
            break reason;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "/readyz never said the connection was refused: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reason.contains("Redis"), "{reason}");
    // A sign-in cannot be kept: 503 at the callback, naming Redis and the refusal.
    let (at_callback, _) = Browser::new().follow(&format!("{}/", gh.url)).await;
    assert_eq!(at_callback.status, 503, "{at_callback:?}");
    assert!(
        at_callback.body.contains("Redis") && at_callback.body.contains("refused"),
        "{}",
        at_callback.body
    );

    redis.restart();
    let started = Instant::now();
    loop {
        let r = Browser::new().get(&readyz).await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not ready 2 s after Redis started: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("ready {:?} after Redis started", started.elapsed());
    let w = crate::flow::World { idp, up, gh };
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    assert_eq!(api(&b, &format!("{}/who", w.gh.url)).await.status, 200);
}

/// The provider's counters (op.mjs `/test/stats`).
async fn op_stats(op: &NodeOp) -> serde_json::Value {
    Browser::new()
        .get(&format!("{}/test/stats", op.issuer))
        .await
        .json()
}

/// Three real gatehouse processes on one Redis in front of the real oidc-provider, which
/// rotates refresh tokens and revokes the whole grant when a used one comes back.
struct Replicas {
    op: NodeOp,
    _up: Upstream,
    _redis: RedisServer,
    urls: Vec<String>,
    _procs: Vec<RealGatehouse>,
}

async fn replicas(n: usize, op_quirks: &[&str], extra: &[&str]) -> Replicas {
    let redis = RedisServer::start();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let base = format!("http://127.0.0.1:{}", ports[0]);
    let op = NodeOp::for_gatehouse_at(&base, op_quirks).await;
    let up = Upstream::start().await;
    let callback = format!("{base}/oauth2/callback");
    let redis_url = redis.url();
    let mut args = vec![
        "--session-store",
        "redis",
        "--redis-url",
        &redis_url,
        "--redirect-url",
        &callback,
        "--scopes",
        "openid,email,profile,groups",
    ];
    args.extend_from_slice(extra);
    let mut procs = Vec::new();
    for p in &ports {
        procs.push(RealGatehouse::start(*p, &up.url, &op.issuer, &args).await);
    }
    Replicas {
        urls: procs.iter().map(|p| p.url.clone()).collect(),
        op,
        _up: up,
        _redis: redis,
        _procs: procs,
    }
}

/// Alice signs in at the real provider through the first replica.
async fn alice_signed_in(r: &Replicas) -> Browser {
    let b = Browser::new();
    let start = format!("{}/", r.urls[0]);
    let landed = op_form_login(&b, &start, "alice", "admins", String::new).await;
    assert_eq!(landed.status, 200, "{landed:?}");
    b
}

#[tokio::test]
async fn concurrent_requests_across_replicas_at_refresh_spend_each_refresh_token_once() {
    if skip_unless_available(false) || skip_without_redis() {
        return;
    }
    // Every request finds the session due for a refresh (refresh_before is longer than the
    // token's life): the most contention there can be.
    let r = replicas(3, &[], &["--refresh-before-secs", "100000"]).await;
    let b = alice_signed_in(&r).await;
    let before = op_stats(&r.op).await;
    for round in 0..4 {
        let mut calls = Vec::new();
        for i in 0..12 {
            let url = format!("{}/round/{round}/{i}", r.urls[i % 3]);
            let cookie = b.cookie_header();
            calls.push(tokio::spawn(async move {
                let c = Browser::new();
                c.send(
                    Method::GET,
                    &url,
                    &[("accept", "application/json"), ("cookie", &cookie)],
                )
                .await
            }));
        }
        for (i, c) in calls.into_iter().enumerate() {
            let resp = c.await.unwrap();
            assert_eq!(resp.status, 200, "round {round}, request {i}: {resp:?}");
            assert_eq!(
                seen(&resp.json(), "x-forwarded-user"),
                vec!["alice@example.test"]
            );
        }
    }
    let after = op_stats(&r.op).await;
    assert_eq!(after["grant_errors"], before["grant_errors"], "{after}");
    assert_eq!(
        after["grants_revoked"], 0,
        "the grant was never revoked: {after}"
    );
    let refreshes = after["refreshes"].as_u64().unwrap() - before["refreshes"].as_u64().unwrap();
    // Requests that arrive with a session another request just refreshed reuse that
    // result (kept per replica, and read from Redis across them): fewer refreshes than
    // rounds is right. What matters: every answer was 200 and no token came back twice.
    assert!(refreshes >= 1, "the session was refreshed: {after}");
    // The stored refresh token is the live one: one more refresh works.
    let last = b
        .send(
            Method::GET,
            &format!("{}/last", r.urls[1]),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(op_stats(&r.op).await["grants_revoked"], 0);
}

#[tokio::test]
async fn a_token_call_slower_than_the_lock_lease_still_spends_the_token_once() {
    if skip_unless_available(false) || skip_without_redis() {
        return;
    }
    // The provider rotates the token, then holds its answer 7 s: longer than the 5 s
    // lease, so only a renewed lease keeps the other replica from spending the old token.
    let r = replicas(
        2,
        &["--slow-refresh-ms", "7000"],
        &[
            "--provider-timeout-secs",
            "20",
            "--refresh-before-secs",
            "100000",
        ],
    )
    .await;
    // The landing request already refreshes (slowly): the session is due at once.
    let b = alice_signed_in(&r).await;
    let before = op_stats(&r.op).await;
    let cookie = b.cookie_header();
    let call = |url: String| {
        let cookie = cookie.clone();
        tokio::spawn(async move {
            Browser::new()
                .send(
                    Method::GET,
                    &url,
                    &[("accept", "application/json"), ("cookie", &cookie)],
                )
                .await
        })
    };
    // Replica A takes the lock and calls the slow provider ...
    let first = call(format!("{}/slow/a", r.urls[0]));
    let lock_seen = Instant::now();
    loop {
        let locks = r._redis.cmd(&["KEYS", "gatehouse:*:lock"]);
        if !locks.items().is_empty() {
            break;
        }
        assert!(
            lock_seen.elapsed() < Duration::from_secs(5),
            "replica A never took the refresh lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and replica B's requests, arriving while it runs, wait for its result: past the
    // lease's first 5 s, which only renewal makes safe.
    let others: Vec<_> = (0..3)
        .map(|i| call(format!("{}/slow/b{i}", r.urls[1])))
        .collect();
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    for o in others {
        let o = o.await.unwrap();
        assert_eq!(o.status, 200, "{o:?}");
    }
    let after = op_stats(&r.op).await;
    assert_eq!(
        after["refreshes"].as_u64().unwrap() - before["refreshes"].as_u64().unwrap(),
        1,
        "one refresh for all four requests: {after}"
    );
    assert_eq!(after["grant_errors"], before["grant_errors"], "{after}");
    assert_eq!(after["grants_revoked"], 0, "{after}");
}

/// `session_idle_timeout_secs` ends a session nobody uses, in both stores, while one in
/// use lives on: its use is recorded (the cookie store re-seals the cookie, the redis
/// store rewrites the entry).
#[tokio::test]
async fn an_idle_session_ends_and_one_in_use_lives_on_in_both_stores() {
    if skip_without_redis() {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    for store in ["cookie", "redis"] {
        // Three seconds: a replica's view of the last use may lag by its cache's second
        // plus the second between recorded uses.
        let mut extra = vec![("session_idle_timeout_secs", "3"), ("session_store", store)];
        if store == "redis" {
            extra.push(("redis_url", url.as_str()));
        }
        let w = world(&extra).await;
        let (busy, idle) = (Browser::new(), Browser::new());
        assert_eq!(login(&w, &busy, "/").await.status, 200);
        assert_eq!(login(&w, &idle, "/").await.status, 200);
        let who = format!("{}/who", w.gh.url);
        // Busy: a request every 600 ms for 5 s, well past the idle timeout.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            let r = api(&busy, &who).await;
            assert_eq!(r.status, 200, "{store}: a session in use idled out: {r:?}");
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let r = api(&idle, &who).await;
        assert_eq!(r.status, 401, "{store}: an idle session lived on: {r:?}");
    }
}

/// `rediss://` to a Redis whose certificate a private CA signed: works with
/// `redis_ca_file`; without it, nothing is turned off: /readyz and requests say 503,
/// naming Redis and the certificate problem.
#[tokio::test]
async fn rediss_with_a_private_ca_needs_redis_ca_file() {
    if skip_without_redis() {
        return;
    }
    let (ca, cert, key) = crate::presets::private_ca();
    let tls_port = free_port();
    let _redis = RedisServer::start_with_config(&format!(
        "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
        cert.display(),
        key.display(),
        ca.display()
    ));
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca_file = ca.display().to_string();
    let w = world(&[
        ("session_store", "redis"),
        ("redis_url", &url),
        ("redis_ca_file", &ca_file),
    ])
    .await;
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    assert_eq!(api(&b, &format!("{}/who", w.gh.url)).await.status, 200);

    let untrusting = crate::support::start_unready(config(
        &w.up.url,
        &w.idp.issuer,
        &[("session_store", "redis"), ("redis_url", &url)],
    ))
    .await;
    let asked = Instant::now();
    let ready = loop {
        let r = Browser::new()
            .get(&format!("{}/readyz", untrusting.url))
            .await;
        if r.status == 503 && r.body.contains("Redis") && !r.body.contains("not reached") {
            break r;
        }
        assert!(asked.elapsed() < Duration::from_secs(10), "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        ready.body.to_ascii_lowercase().contains("certificate"),
        "names the certificate problem: {}",
        ready.body
    );
    let r = api(&b, &format!("{}/who", untrusting.url)).await;
    assert_eq!(r.status, 503, "{r:?}");
}
