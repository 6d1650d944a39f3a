//! A Redis Cluster on loopback: three masters, no replicas, created with
//! `redis-cli --cluster create` and ready once every node says `cluster_state:ok` and
//! knows the other two. Each node picks its own bus port (`cluster-port`), so ephemeral
//! ports above 55535 work. Helpers tell which master holds a key, and move a slot from
//! one master to another in the two steps Redis uses, so a test can see `ASK` (during
//! the migration) and `MOVED` (after it).

use super::{cli_binary, free_port, info_field, wait_until, Mode, RedisServer, Reply};
use std::process::Command;
use std::time::Duration;

/// How long creating the cluster and agreeing on a slot move may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::launch(Mode::Server, None, |dir| {
                    format!(
                        "cluster-enabled yes\ncluster-config-file {}\ncluster-port {}\n\
                         cluster-node-timeout 2000\n",
                        dir.join("nodes.conf").display(),
                        free_port()
                    )
                })
            })
            .collect();
        let out = Command::new(cli_binary())
            .args(["--cluster", "create"])
            .args(nodes.iter().map(RedisServer::addr))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", cli_binary().display()));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes };
        for node in &cluster.nodes {
            wait_until("cluster_state:ok", SETUP_TIMEOUT, || {
                let info = node
                    .try_cmd(&["CLUSTER", "INFO"])
                    .map_err(|e| e.to_string())?;
                let state = info_field(&info, "cluster_state");
                let known = info_field(&info, "cluster_known_nodes");
                match (state.as_deref(), known.as_deref()) {
                    (Some("ok"), Some("3")) => Ok(()),
                    _ => Err(format!("port {}: {state:?}, {known:?} nodes", node.port)),
                }
            });
        }
        cluster
    }

    /// `127.0.0.1:PORT` of every node, for a client's seed list.
    pub fn seed_nodes(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The node on `port`, to kill or restart it.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot_for_key(&self, key: &str) -> u16 {
        let reply = self.nodes[0].cmd(&["CLUSTER", "KEYSLOT", key]);
        let slot = reply
            .int()
            .unwrap_or_else(|| panic!("KEYSLOT {key}: {reply:?}"));
        u16::try_from(slot).expect("a slot is below 16384")
    }

    /// The port of the master that serves `slot`, as the first node sees it.
    pub fn master_port_for_slot(&self, slot: u16) -> u16 {
        slot_owner(&self.nodes[0], slot)
            .unwrap_or_else(|| panic!("no node serves slot {slot} (CLUSTER SLOTS)"))
    }

    /// The port of the master that serves `key` (CLUSTER KEYSLOT, then CLUSTER SLOTS).
    pub fn master_port_for_key(&self, key: &str) -> u16 {
        self.master_port_for_slot(self.slot_for_key(key))
    }

    /// `CLUSTER MYID` of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        let reply = self.node(port).cmd(&["CLUSTER", "MYID"]);
        reply
            .text()
            .unwrap_or_else(|| panic!("MYID on {port}: {reply:?}"))
    }

    /// Step one of moving `slot` to the master on `to`: `to` imports it, its owner
    /// migrates it. Keys stay where they are; the owner answers `ASK` for keys it does
    /// not hold (a new key, or one already migrated).
    pub fn start_slot_migration(&self, slot: u16, to: u16) {
        let from = self.master_port_for_slot(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let s = slot.to_string();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        expect_ok(
            self.node(to)
                .cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
        );
        expect_ok(
            self.node(from)
                .cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
        );
    }

    /// Step two: moves the slot's remaining keys to `to` (`MIGRATE`) and gives `to` the
    /// slot on every node; returns once every node says so. Clients are then `MOVED`.
    pub fn finish_slot_migration(&self, slot: u16, to: u16) {
        let from = self.master_port_for_slot(slot);
        let s = slot.to_string();
        loop {
            let keys = self
                .node(from)
                .cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<String> = keys.items().iter().filter_map(Reply::text).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let reply = self.node(from).cmd(&args);
            assert!(!reply.is_error(), "MIGRATE slot {slot}: {reply:?}");
        }
        let to_id = self.node_id(to);
        // The importing node first, then the old owner, then the rest (Redis's order).
        let mut order = vec![to, from];
        order.extend(
            self.node_ports()
                .into_iter()
                .filter(|p| *p != to && *p != from),
        );
        for port in order {
            expect_ok(
                self.node(port)
                    .cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]),
            );
        }
        for node in &self.nodes {
            wait_until(
                "every node agrees on the slot move",
                SETUP_TIMEOUT,
                || match slot_owner(node, slot) {
                    Some(p) if p == to => Ok(()),
                    other => Err(format!(
                        "port {} says slot {slot} is on {other:?}",
                        node.port
                    )),
                },
            );
        }
    }

    /// Moves `slot` (and its keys) to the master on `to`.
    pub fn move_slot(&self, slot: u16, to: u16) {
        self.start_slot_migration(slot, to);
        self.finish_slot_migration(slot, to);
    }
}

/// The port of the master serving `slot` according to `node`'s `CLUSTER SLOTS`.
fn slot_owner(node: &RedisServer, slot: u16) -> Option<u16> {
    let slots = node.try_cmd(&["CLUSTER", "SLOTS"]).ok()?;
    slots.items().iter().find_map(|range| match range.items() {
        [start, end, master, ..] => {
            let (start, end) = (start.int()?, end.int()?);
            if (start..=end).contains(&i64::from(slot)) {
                u16::try_from(master.items().get(1)?.int()?).ok()
            } else {
                None
            }
        }
        _ => None,
    })
}

fn expect_ok(reply: Reply) {
    assert_eq!(reply, Reply::Status("OK".into()), "expected OK");
}
