//! The subscription to ended sessions (how a sign-out on one replica reaches the others
//! at once) on every topology, and after what breaks a connection: every replica is
//! subscribed again after Redis restarts, and on the new master after a Sentinel
//! failover, with no request to drive it. Counted the way Redis sees it (`PUBSUB NUMSUB`).

use super::blocking;
use crate::support::idp::TestIdp;
use crate::support::redis::{self, Cluster, RedisServer, SentinelSet};
use crate::support::upstream::Upstream;
use crate::support::{config, start, Gatehouse};
use std::time::{Duration, Instant};

const CHANNEL: &str = "gatehouse:ended";

/// Subscribers of the channel of ended sessions on `node`.
fn subscribers(node: &RedisServer) -> i64 {
    match node.try_cmd(&["PUBSUB", "NUMSUB", CHANNEL]) {
        Ok(reply) => reply.items().get(1).and_then(|n| n.int()).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Polls `count` until it is `n` (`within` at most); how long that took.
async fn until_subscribed(
    count: impl Fn() -> i64,
    n: i64,
    within: Duration,
    when: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = blocking(&count);
        if now == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{when}: {now} subscribers after {within:?}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two gatehouse replicas on the redis store with `settings`.
async fn two_replicas(
    idp: &TestIdp,
    up: &Upstream,
    settings: &[(&'static str, &str)],
) -> (Gatehouse, Gatehouse) {
    let a = start(config(&up.url, &idp.issuer, settings)).await;
    let b = start(config(&up.url, &idp.issuer, settings)).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_listens_for_ended_sessions_again_after_redis_restarts() {
    if redis::skip_unless_available() {
        return;
    }
    let mut server = blocking(RedisServer::start);
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let url = server.url();
    let _replicas = two_replicas(
        &idp,
        &up,
        &[("session_store", "redis"), ("redis_url", url.as_str())],
    )
    .await;
    let count = || subscribers(&server);
    until_subscribed(count, 2, Duration::from_secs(5), "at start").await;

    for round in 0..2 {
        blocking(|| server.restart());
        let count = || subscribers(&server);
        // The health check tries every half second: well within two.
        let took = until_subscribed(count, 2, Duration::from_secs(2), "after a restart").await;
        eprintln!("restart {round}: both replicas subscribed again after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_every_replica_listens_on_the_new_master() {
    if redis::skip_unless_available() {
        return;
    }
    let mut set = blocking(SentinelSet::start);
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let addrs = set.sentinel_addrs().join(",");
    let _replicas = two_replicas(
        &idp,
        &up,
        &[
            ("session_store", "redis"),
            ("redis_sentinel_master", set.master_name()),
            ("redis_sentinel_addrs", addrs.as_str()),
        ],
    )
    .await;
    let old = blocking(|| set.current_master_port());
    let count = || subscribers(set.server(old));
    until_subscribed(count, 2, Duration::from_secs(5), "on the first master").await;

    // No request is sent: the health check alone finds the new master.
    let (set, new) = tokio::task::spawn_blocking(move || {
        assert_eq!(set.kill_master(), old);
        let new = set.wait_for_failover(old, Duration::from_secs(15));
        (set, new)
    })
    .await
    .unwrap();
    let count = || subscribers(set.server(new));
    let took = until_subscribed(count, 2, Duration::from_secs(5), "on the new master").await;
    eprintln!("both replicas subscribed on the new master {took:?} after the failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_each_replica_listens_for_ended_sessions_once() {
    if redis::skip_unless_available() {
        return;
    }
    let cluster = blocking(Cluster::start);
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let seeds = cluster.seed_nodes().join(",");
    let _replicas = two_replicas(
        &idp,
        &up,
        &[
            ("session_store", "redis"),
            ("redis_cluster_nodes", seeds.as_str()),
        ],
    )
    .await;
    // A Cluster delivers a message published on any node to subscribers on every node.
    let count = || {
        cluster
            .node_ports()
            .into_iter()
            .map(|p| subscribers(cluster.node(p)))
            .sum()
    };
    until_subscribed(count, 2, Duration::from_secs(5), "in the cluster").await;
}
