//! The redis store on the topologies production runs, with real Redis from the harness
//! (`support/redis.rs`): a Sentinel failover mid-traffic loses no session; a
//! three-master Cluster spreads sessions over every master and keeps serving a session
//! whose slot moves while it is in use (ASK, then MOVED); a user in 200 groups signs in
//! through nginx with its default buffers (and, as the control, with the cookie store
//! the callback's cookies are too big for them); an ACL user's password comes from a
//! file or the environment, a wrong one is a 503 naming Redis and its refusal, and one
//! given as a flag is refused at start-up; every replica stays subscribed to ended
//! sessions across a restart and a failover (`pubsub.rs`).
//!
//! Harness calls block, so every test runs on the multi-thread runtime and makes them
//! through [`blocking`]: gatehouse's Redis client runs on this runtime too, and must
//! keep running while the harness waits for a failover or moves a slot.

mod auth;
mod cluster;
mod nginx;
mod pubsub;
mod sentinel;

use crate::support::idp::TestIdp;
use crate::support::redis::{RedisServer, Reply};
use crate::support::upstream::seen;
use crate::support::{Browser, Resp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a replica may serve a session from its cache (`session::redis::CACHE_FOR`).
const CACHE_FOR: Duration = gatehouse::session::redis::CACHE_FOR;

/// Runs blocking harness code without stalling the runtime's other worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Signs `sub` in at gatehouse `gh` (the test IdP logs in whoever `next_sub` names).
async fn sign_in(idp: &TestIdp, gh: &str, sub: &str) -> Browser {
    *idp.state.next_sub.lock().unwrap() = sub.to_string();
    let b = Browser::new();
    let (resp, visited) = b.follow(&format!("{gh}/home/{sub}")).await;
    assert_eq!(resp.status, 200, "{sub} signs in: {resp:?}\n{visited:?}");
    assert_eq!(
        seen(&resp.json(), "x-forwarded-user"),
        vec![format!("{sub}@example.test")]
    );
    b
}

/// One request as an API client would send it (a login would be a 401, not a redirect).
async fn api_get(b: &Browser, url: &str) -> Resp {
    b.send(reqwest::Method::GET, url, &[("accept", "application/json")])
        .await
}

/// The session entries (`gatehouse:{<id>}:s`) a node holds.
fn session_keys(node: &RedisServer) -> Vec<String> {
    let reply = node.cmd(&["KEYS", "gatehouse:{*}:s"]);
    let mut keys: Vec<String> = reply.items().iter().filter_map(Reply::text).collect();
    keys.sort();
    keys
}

/// Whether `r` is gatehouse's "session store down" answer naming Redis.
fn names_redis(r: &Resp) -> bool {
    r.status == 503
        && r.headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("json"))
        && r.json()["error"] == "session_store_unavailable"
        && r.json()["message"].as_str().unwrap_or("").contains("Redis")
}

/// What a request of the traffic loop got, and when it was sent.
struct Outcome {
    sent: Instant,
    user: String,
    status: u16,
    body: String,
}

/// Users sending requests one after another each, round-robin over `replicas`, until
/// `stop` is set (30 s at most).
fn traffic(
    users: Arc<Vec<(String, Browser)>>,
    replicas: Vec<String>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Outcome>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut loops = Vec::new();
        for i in 0..users.len() {
            let (users, replicas, stop, out) = (
                Arc::clone(&users),
                replicas.clone(),
                Arc::clone(&stop),
                Arc::clone(&out),
            );
            loops.push(tokio::spawn(async move {
                let (user, b) = &users[i];
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let gh = &replicas[(i + n) % replicas.len()];
                    let sent = Instant::now();
                    let r = api_get(b, &format!("{gh}/work/{user}/{n}")).await;
                    out.lock().unwrap().push(Outcome {
                        sent,
                        user: user.clone(),
                        status: r.status,
                        body: r.body,
                    });
                    n += 1;
                }
            }));
        }
        for l in loops {
            l.await.unwrap();
        }
    })
}

/// Polls until `b` gets 200 as `user` from `url` (10 s at most).
async fn until_ok(b: &Browser, url: &str, user: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api_get(b, url).await;
        if r.status == 200 {
            assert_eq!(
                seen(&r.json(), "x-forwarded-user"),
                vec![format!("{user}@example.test")]
            );
            return r;
        }
        assert!(
            r.status == 503 && names_redis(&r),
            "{user}: only 200 or a 503 naming Redis, got {} {}",
            r.status,
            r.body
        );
        assert!(
            Instant::now() < deadline,
            "{user} did not get 200 again within 10 s: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the traffic loop has recorded `n` answers (10 s at most).
async fn until_answered(out: &Mutex<Vec<Outcome>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "the traffic loop got no answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
