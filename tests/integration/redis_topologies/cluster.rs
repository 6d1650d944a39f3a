//! A three-master Cluster: sessions land on every master, and a session whose slot moves
//! while its user works keeps answering 200 (ASK while the slot migrates, MOVED after).

use super::{api_get, blocking, session_keys, sign_in, traffic, Outcome};
use crate::support::idp::{Mint, TestIdp};
use crate::support::redis::{self, Cluster, Reply};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, Browser};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key a sign-in added, given the keys before and after it.
fn added(before: &[String], after: &[String]) -> String {
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(new.len(), 1, "one new session entry: {new:?}");
    new[0].clone()
}

/// Every session entry in the cluster, by master port.
fn cluster_sessions(cluster: &Cluster) -> Vec<(u16, Vec<String>)> {
    cluster
        .node_ports()
        .into_iter()
        .map(|p| (p, session_keys(cluster.node(p))))
        .collect()
}

fn all_keys(by_node: &[(u16, Vec<String>)]) -> Vec<String> {
    let mut v: Vec<String> = by_node.iter().flat_map(|(_, k)| k.clone()).collect();
    v.sort();
    v
}

/// Polls until the test IdP has answered `n` more refreshes than `from` (15 s at most),
/// each of them a round of Redis calls in the session's slot (lock, read, write, free).
async fn until_refreshed(
    idp: &TestIdp,
    from: usize,
    n: usize,
    phase: &str,
    out: &Mutex<Vec<Outcome>>,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    while idp.refreshes() < from + n {
        assert!(
            Instant::now() < deadline,
            "{phase}: {} refreshes in 15 s, expected {n}; the last answer: {:?}",
            idp.refreshes() - from,
            out.lock()
                .unwrap()
                .last()
                .map(|o| format!("{} {}", o.status, o.body))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    idp.refreshes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_sessions_over_every_master_and_follows_a_moving_slot() {
    if redis::skip_unless_available() {
        return;
    }
    let cluster = blocking(Cluster::start);
    let idp = TestIdp::start().await;
    // Tokens live 20 s and are refreshed 60 s ahead: every request that reads the
    // session from Redis refreshes it, so the traffic below takes the refresh lock,
    // reads and rewrites the entry in the slot that moves.
    idp.set_mint(Mint {
        ttl: 20,
        ..Mint::default()
    });
    let up = Upstream::start().await;
    let seeds = cluster.seed_nodes().join(",");
    let gh = start(config(
        &up.url,
        &idp.issuer,
        &[
            ("session_store", "redis"),
            ("redis_cluster_nodes", seeds.as_str()),
            ("refresh_before_secs", "60"),
        ],
    ))
    .await;

    // Sign users in until every master holds sessions (24 at least).
    let mut users: Vec<(String, Browser, String)> = Vec::new();
    let mut by_node = blocking(|| cluster_sessions(&cluster));
    while users.len() < 24 || by_node.iter().any(|(_, keys)| keys.is_empty()) {
        assert!(
            users.len() < 60,
            "sessions never reached every master: {by_node:?}"
        );
        let sub = format!("user{}", users.len());
        let b = sign_in(&idp, &gh.url, &sub).await;
        let now = blocking(|| cluster_sessions(&cluster));
        let key = added(&all_keys(&by_node), &all_keys(&now));
        users.push((sub, b, key));
        by_node = now;
    }
    for (port, keys) in &by_node {
        assert!(!keys.is_empty(), "master {port} holds no session");
        for k in keys {
            assert_eq!(blocking(|| cluster.master_port_for_key(k)), *port);
        }
    }

    // The first user's slot moves to another master while the user works.
    let (user, b, key) = users.remove(0);
    let slot = blocking(|| cluster.slot_for_key(&key));
    let from = blocking(|| cluster.master_port_for_key(&key));
    let to = *cluster.node_ports().iter().find(|p| **p != from).unwrap();
    // The test IdP mints refreshed tokens for `next_sub`, which must stay the user's.
    *idp.state.next_sub.lock().unwrap() = user.clone();
    let mover = Arc::new(vec![(user.clone(), b)]);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let loop_task = traffic(
        Arc::clone(&mover),
        vec![gh.url.clone()],
        Arc::clone(&stop),
        Arc::clone(&outcomes),
    );
    let n = until_refreshed(&idp, idp.refreshes(), 2, "before the move", &outcomes).await;
    // Step 1: the slot is migrating, the entry still on its old master; new keys (the
    // refresh lock) are created on the new one (ASK).
    blocking(|| cluster.start_slot_migration(slot, to));
    let n = until_refreshed(&idp, n, 3, "slot migrating", &outcomes).await;
    // Step 2: the entry itself moves; the old master answers ASK for it.
    blocking(|| {
        let reply =
            cluster
                .node(from)
                .cmd(&["MIGRATE", "127.0.0.1", &to.to_string(), &key, "0", "5000"]);
        assert_eq!(reply, Reply::Status("OK".into()), "MIGRATE {key}");
        assert_eq!(
            cluster.node(from).cmd(&["GET", &key]),
            Reply::Error(format!("ASK {slot} 127.0.0.1:{to}")),
            "the old master sends clients on for the entry"
        );
    });
    let n = until_refreshed(&idp, n, 3, "entry migrated (ASK)", &outcomes).await;
    // Step 3: the new master owns the slot; the old one answers MOVED.
    blocking(|| cluster.finish_slot_migration(slot, to));
    until_refreshed(&idp, n, 3, "slot moved (MOVED)", &outcomes).await;
    stop.store(true, Ordering::SeqCst);
    loop_task.await.unwrap();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != 200)
        .map(|o| format!("{} {}", o.status, o.body))
        .collect();
    assert!(
        bad.is_empty(),
        "every answer 200 while the slot moved ({} requests): {bad:#?}",
        outcomes.len()
    );
    assert_eq!(blocking(|| cluster.master_port_for_key(&key)), to);
    let on_new = blocking(|| session_keys(cluster.node(to)));
    assert!(on_new.contains(&key), "{key} is on {to}: {on_new:?}");

    // Every user still works, the mover included.
    let everyone = mover.iter().map(|(s, b)| (s, b));
    for (sub, b) in everyone.chain(users.iter().map(|(s, b, _)| (s, b))) {
        *idp.state.next_sub.lock().unwrap() = sub.clone();
        let r = api_get(b, &format!("{}/finally/{sub}", gh.url)).await;
        assert_eq!(r.status, 200, "{sub}: {} {}", r.status, r.body);
        assert_eq!(
            seen(&r.json(), "x-forwarded-user"),
            vec![format!("{sub}@example.test")]
        );
    }
}
