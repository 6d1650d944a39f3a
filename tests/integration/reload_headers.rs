//! A reload that changes what goes upstream reaches sessions already in use: with
//! `pass_authorization` turned off, the next request of a signed-in user carries no
//! `Authorization`. On the redis store each worker keeps the sessions it opened (and
//! their header values) across the reload.

use crate::reload::{base, free_port, serve, sign_in, write};
use crate::support::idp::{TestIdp, CLIENT_SECRET};
use crate::support::redis::RedisServer;
use crate::support::upstream::{seen, Upstream};
use crate::support::COOKIE_SECRET;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_pass_authorization_off_stops_the_token_for_sessions_in_use_cookie_store() {
    pass_authorization_off(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_pass_authorization_off_stops_the_token_for_sessions_in_use_redis_store() {
    if crate::support::redis::skip_unless_available() {
        return;
    }
    let redis = RedisServer::start();
    pass_authorization_off(Some(&redis)).await;
}

async fn pass_authorization_off(store: Option<&RedisServer>) {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let store_lines = match store {
        Some(r) => format!("session_store = \"redis\"\nredis_url = \"{}\"\n", r.url()),
        None => String::new(),
    };
    let common = format!(
        "{}client_secret = \"{CLIENT_SECRET}\"\ncookie_secret = \"{COOKIE_SECRET}\"\n{store_lines}",
        base(&idp, &upstream, port)
    );
    let gh = serve(
        &format!("{common}pass_authorization = \"id_token\"\n"),
        port,
        &[],
    )
    .await;
    let alice = sign_in(&idp, &gh.url, "alice").await;
    let url = format!("{}/api", gh.url);
    // Served a few times, so the worker that answers keeps the session's values.
    for _ in 0..4 {
        let echo = alice.get(&url).await.json();
        let bearer = seen(&echo, "authorization");
        assert!(
            bearer.len() == 1 && bearer[0].starts_with("Bearer ey"),
            "{echo}"
        );
    }
    write(
        &gh.config(),
        &format!("{common}pass_authorization = \"none\"\n"),
    );
    gh.hangup();
    gh.logged("configuration reloaded", 1).await;
    for _ in 0..8 {
        let resp = alice.get(&url).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        let echo = resp.json();
        assert!(
            seen(&echo, "authorization").is_empty(),
            "the token still went upstream: {echo}"
        );
        assert_eq!(seen(&echo, "x-forwarded-user"), ["alice@example.test"]);
    }
}
