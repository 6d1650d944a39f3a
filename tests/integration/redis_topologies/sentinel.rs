//! A Sentinel set (one master, one replica, three Sentinels) under two replicas of
//! gatehouse: the master dies mid-traffic and no session is lost.

use super::{
    api_get, blocking, session_keys, sign_in, traffic, until_answered, until_ok, CACHE_FOR,
};
use crate::support::idp::TestIdp;
use crate::support::redis::{self, Conn, Reply, SentinelSet};
use crate::support::upstream::Upstream;
use crate::support::{config, start};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_traffic_loses_no_session() {
    if redis::skip_unless_available() {
        return;
    }
    let mut set = blocking(SentinelSet::start);
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let addrs = set.sentinel_addrs().join(",");
    let settings = [
        ("session_store", "redis"),
        ("redis_sentinel_master", set.master_name()),
        ("redis_sentinel_addrs", addrs.as_str()),
    ];
    // Two replicas sharing the Sentinel set, as a Deployment with two pods would.
    let a = start(config(&up.url, &idp.issuer, &settings)).await;
    let b = start(config(&up.url, &idp.issuer, &settings)).await;
    let replicas = vec![a.url.clone(), b.url.clone()];

    let mut users = Vec::new();
    for i in 0..4 {
        let sub = format!("user{i}");
        let gh = &replicas[i % 2];
        let browser = sign_in(&idp, gh, &sub).await;
        users.push((sub, browser));
    }
    let old = blocking(|| set.current_master_port());
    blocking(|| {
        // WAIT counts only this connection's writes: one write after gatehouse's, on the
        // same replication stream, acknowledged by the replica, means theirs arrived too.
        let mut c = Conn::open(old, None).unwrap();
        assert_eq!(
            c.cmd(&["SET", "test:marker", "1"]).unwrap(),
            Reply::Status("OK".into())
        );
        assert_eq!(c.cmd(&["WAIT", "1", "2000"]).unwrap(), Reply::Int(1));
    });
    let before = blocking(|| session_keys(set.server(old)));
    assert_eq!(
        before.len(),
        users.len(),
        "one entry per session: {before:?}"
    );
    let users = Arc::new(users);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let loop_task = traffic(
        Arc::clone(&users),
        replicas.clone(),
        Arc::clone(&stop),
        Arc::clone(&outcomes),
    );
    // Traffic flows before the master dies.
    until_answered(&outcomes, 4 * users.len()).await;
    let killed_at = Instant::now();
    let (set, new) = tokio::task::spawn_blocking(move || {
        let killed = set.kill_master();
        assert_eq!(killed, old);
        let new = set.wait_for_failover(old, Duration::from_secs(15));
        (set, new)
    })
    .await
    .unwrap();
    let failed_over_at = Instant::now();
    assert_ne!(new, old);
    // Sentinel declares the master down after a second (down-after-milliseconds), so by
    // now no replica serves any session from its cache: each 200 below was read from
    // the new master.
    assert!(killed_at.elapsed() > CACHE_FOR);

    for (i, (user, browser)) in users.iter().enumerate() {
        let gh = &replicas[i % 2];
        until_ok(browser, &format!("{gh}/after/{user}"), user).await;
        let other = &replicas[(i + 1) % 2];
        until_ok(browser, &format!("{other}/after/{user}"), user).await;
    }
    stop.store(true, Ordering::SeqCst);
    loop_task.await.unwrap();
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());

    let during = outcomes
        .iter()
        .filter(|o| o.sent >= killed_at && o.sent < failed_over_at)
        .count();
    assert!(during > 0, "the traffic ran through the failover");
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| {
            !(o.status == 200
                || o.status == 503
                    && serde_json::from_str::<serde_json::Value>(&o.body)
                        .is_ok_and(|j| j["message"].as_str().unwrap_or("").contains("Redis")))
        })
        .map(|o| format!("{} {} {}", o.user, o.status, o.body))
        .collect();
    assert!(
        bad.is_empty(),
        "during the failover only 200 or a 503 naming Redis, never 500, 401 or a login: {bad:#?}\n{}",
        set.logs()
    );
    eprintln!(
        "{} requests, {} during the failover ({:?}), {} answered 503",
        outcomes.len(),
        during,
        failed_over_at - killed_at,
        outcomes.iter().filter(|o| o.status == 503).count()
    );

    // Every session is on the new master; a new sign-in lands there too.
    let after = blocking(|| session_keys(set.server(new)));
    assert_eq!(after, before, "no session lost in the failover");
    let late = sign_in(&idp, &a.url, "late").await;
    let r = api_get(&late, &format!("{}/late", b.url)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let now = blocking(|| session_keys(set.server(new)));
    assert_eq!(now.len(), before.len() + 1, "{now:?}");
}
