//! The Redis harness (`support/redis.rs`) checked on its own, so a session-store test
//! that fails points at the store and not at the set-up: a standalone server that loses
//! its data when restarted, a password-protected one, a Sentinel failover that promotes
//! the replica, and a three-master Cluster that spreads keys and moves a slot.

use crate::support::redis::{self, Cluster, Conn, RedisServer, Reply, SentinelSet};
use std::time::{Duration, Instant};

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

fn ok() -> Reply {
    Reply::Status("OK".into())
}

#[test]
fn redis_harness_standalone_restart_loses_data_and_comes_back() {
    if redis::skip_unless_available() {
        return;
    }
    let mut server = RedisServer::start();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port));
    assert_ne!(server.port, 6379);
    assert_eq!(server.cmd(&["SET", "session:1", "alice"]), ok());
    assert_eq!(server.cmd(&["GET", "session:1"]), bulk("alice"));
    assert_eq!(server.role().as_deref(), Some("master"));

    let port = server.port;
    server.kill();
    assert!(!server.is_running());
    assert!(
        server.try_cmd(&["PING"]).is_err(),
        "a killed server answers no more"
    );

    server.restart();
    assert_eq!(server.port, port, "restarted on the same port");
    assert_eq!(
        server.cmd(&["GET", "session:1"]),
        Reply::Nil,
        "restarted without persistence: the session is gone"
    );
    assert_eq!(server.cmd(&["SET", "session:2", "bob"]), ok());
    assert_eq!(server.cmd(&["GET", "session:2"]), bulk("bob"));
}

#[test]
fn redis_harness_password_and_acl_user_refuse_anonymous_commands() {
    if redis::skip_unless_available() {
        return;
    }
    for (user, pass) in [("default", "s3cret-default"), ("gatehouse", "s3cret-acl")] {
        let server = RedisServer::start_with_auth(user, pass);
        let anonymous = redis::query(server.port, &["GET", "k"]).unwrap();
        assert!(
            matches!(&anonymous, Reply::Error(e) if e.starts_with("NOAUTH")),
            "{user}: anonymous GET answered {anonymous:?}"
        );
        assert!(
            Conn::open(server.port, Some((user, "wrong"))).is_err(),
            "{user}: a wrong password is refused"
        );
        assert_eq!(server.cmd(&["SET", "k", "v"]), ok(), "{user}");
        assert_eq!(
            server.url_with_auth(),
            format!("redis://{user}:{pass}@127.0.0.1:{}", server.port)
        );
    }
}

#[test]
fn redis_harness_sentinel_failover_promotes_the_replica() {
    if redis::skip_unless_available() {
        return;
    }
    let mut set = SentinelSet::start();
    assert_eq!(set.master_name(), "gatehouse");
    let addrs = set.sentinel_addrs();
    assert_eq!(addrs.len(), 3);
    assert!(addrs.iter().all(|a| a.starts_with("127.0.0.1:")));

    let old = set.current_master_port();
    let master = set.server(old);
    assert_eq!(master.cmd(&["SET", "session:1", "alice"]), ok());
    // Replicated before the master dies, so the promoted replica must have it.
    assert_eq!(master.cmd(&["WAIT", "1", "5000"]), Reply::Int(1));

    let started = Instant::now();
    assert_eq!(set.kill_master(), old);
    let new = set.wait_for_failover(old, Duration::from_secs(15));
    eprintln!("failover took {:?}", started.elapsed());
    assert_ne!(new, old);
    assert_eq!(set.current_master_port(), new);
    let promoted = set.server(new);
    assert_eq!(promoted.role().as_deref(), Some("master"));
    assert_eq!(promoted.cmd(&["GET", "session:1"]), bulk("alice"));
    assert_eq!(promoted.cmd(&["SET", "session:2", "bob"]), ok());
    assert_eq!(promoted.cmd(&["GET", "session:2"]), bulk("bob"));
}

#[test]
fn redis_harness_cluster_spreads_keys_over_three_masters_and_moves_a_slot() {
    if redis::skip_unless_available() {
        return;
    }
    let cluster = Cluster::start();
    let ports = cluster.node_ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(cluster.seed_nodes().len(), 3);
    for &port in &ports {
        let node = cluster.node(port);
        let info = node.cmd(&["CLUSTER", "INFO"]);
        assert_eq!(
            redis::info_field(&info, "cluster_state").as_deref(),
            Some("ok")
        );
        assert_eq!(node.role().as_deref(), Some("master"), "port {port}");
    }

    // 60 keys land on all three masters, each readable on its master only.
    let mut used = std::collections::BTreeSet::new();
    for i in 0..60 {
        let key = format!("session:{i}");
        let owner = cluster.master_port_for_key(&key);
        assert_eq!(cluster.node(owner).cmd(&["SET", &key, "v"]), ok());
        let elsewhere = ports.iter().find(|p| **p != owner).unwrap();
        let moved = cluster.node(*elsewhere).cmd(&["GET", &key]);
        assert!(
            matches!(&moved, Reply::Error(e) if e.starts_with("MOVED")),
            "{moved:?}"
        );
        used.insert(owner);
    }
    assert_eq!(used.len(), 3, "keys reach every master");

    // A slot moved in two steps: ASK during the migration, MOVED after it.
    let key = "session:0";
    let slot = cluster.slot_for_key(key);
    let from = cluster.master_port_for_key(key);
    let to = *ports.iter().find(|p| **p != from).unwrap();
    cluster.start_slot_migration(slot, to);
    assert_eq!(
        cluster.node(from).cmd(&["GET", key]),
        bulk("v"),
        "a key not migrated yet is still served by its owner"
    );
    // Same hash tag, same slot, not on the old owner: it asks the client to try `to`.
    let absent = format!("{{{key}}}:absent");
    assert_eq!(cluster.slot_for_key(&absent), slot);
    assert_eq!(
        cluster.node(from).cmd(&["GET", &absent]),
        Reply::Error(format!("ASK {slot} 127.0.0.1:{to}"))
    );
    cluster.finish_slot_migration(slot, to);
    assert_eq!(cluster.master_port_for_key(key), to);
    assert_eq!(cluster.node(to).cmd(&["GET", key]), bulk("v"));
    let moved = cluster.node(from).cmd(&["GET", key]);
    assert_eq!(
        moved,
        Reply::Error(format!("MOVED {slot} 127.0.0.1:{to}")),
        "the old owner sends clients on"
    );
}
