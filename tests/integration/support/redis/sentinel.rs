//! A Sentinel set on loopback: one master, one replica and three Sentinels (quorum 2)
//! watching master [`MASTER_NAME`], tuned to fail over within a few seconds
//! (`down-after-milliseconds 1000`, `failover-timeout 2000`). `start` returns once the
//! replica is in sync and every Sentinel knows the replica and the two other Sentinels,
//! so a failover can start at once. Sentinels rewrite their configuration file, which
//! lives in their own temp directory.

use super::{info_field, wait_until, Mode, RedisServer};
use std::time::Duration;

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "gatehouse";

/// How long setting the set up may take (Sentinels find each other through hello
/// messages sent every 2 s).
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct SentinelSet {
    /// The two data servers; which one is master changes with failovers.
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    pub fn start() -> SentinelSet {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with_config(&format!("replicaof 127.0.0.1 {}\n", master.port));
        wait_until("replica in sync", SETUP_TIMEOUT, || {
            let info = replica.try_cmd(&["INFO", "replication"]);
            let info = info.map_err(|e| e.to_string())?;
            match info_field(&info, "master_link_status").as_deref() {
                Some("up") => Ok(()),
                other => Err(format!("master_link_status {other:?}")),
            }
        });
        let sentinels = (0..3)
            .map(|_| {
                let conf = sentinel_conf(master.port);
                RedisServer::launch(Mode::Sentinel, None, move |_| conf.clone())
            })
            .collect();
        let set = SentinelSet {
            servers: vec![master, replica],
            sentinels,
        };
        for s in &set.sentinels {
            wait_until("sentinels see each other", SETUP_TIMEOUT, || {
                let others = s.try_cmd(&["SENTINEL", "SENTINELS", MASTER_NAME]);
                let replicas = s.try_cmd(&["SENTINEL", "REPLICAS", MASTER_NAME]);
                let (others, replicas) = (
                    others.map_err(|e| e.to_string())?,
                    replicas.map_err(|e| e.to_string())?,
                );
                if others.items().len() == 2 && replicas.items().len() == 1 {
                    Ok(())
                } else {
                    Err(format!("sentinels {others:?}, replicas {replicas:?}"))
                }
            });
        }
        set
    }

    /// `127.0.0.1:PORT` of each Sentinel.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The master's port as the first Sentinel that answers reports it.
    pub fn current_master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(reported_master)
            .expect("no Sentinel answers get-master-addr-by-name")
    }

    /// The data server on `port` (master or replica).
    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|s| s.port == port)
            .unwrap_or_else(|| panic!("no data server on port {port}"))
    }

    /// The data server on `port`, to kill or restart it.
    pub fn server_mut(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .unwrap_or_else(|| panic!("no data server on port {port}"))
    }

    /// Kills the current master's process; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.current_master_port();
        self.server_mut(port).kill();
        port
    }

    /// Polls the Sentinels until every one reports the same master, other than
    /// `old_port`, and that server answers `ROLE` as master; returns its port. (The
    /// Sentinel that led the failover knows first; the others learn from its hello
    /// messages within about 2 s, and a client may ask any of them.)
    pub fn wait_for_failover(&self, old_port: u16, timeout: Duration) -> u16 {
        wait_until("Sentinel failover", timeout, || {
            let reported: Vec<Option<u16>> = self.sentinels.iter().map(reported_master).collect();
            match reported.as_slice() {
                [Some(p), rest @ ..]
                    if *p != old_port
                        && rest.iter().all(|r| *r == Some(*p))
                        && self.server(*p).role().as_deref() == Some("master") =>
                {
                    Ok(*p)
                }
                _ => Err(format!("sentinels report {reported:?}")),
            }
        })
    }

    /// What each Sentinel logged so far (for a failing test's message).
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .chain(&self.servers)
            .map(|s| format!("--- port {}\n{}", s.port, s.log()))
            .collect()
    }
}

/// The master port a Sentinel reports, if it answers.
fn reported_master(sentinel: &RedisServer) -> Option<u16> {
    let reply = sentinel
        .try_cmd(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME])
        .ok()?;
    match reply.items() {
        [_, port] => port.text()?.parse().ok(),
        _ => None,
    }
}

/// The Sentinel directives (after the common `port`/`bind`/`dir` lines).
fn sentinel_conf(master_port: u16) -> String {
    format!(
        "sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 2000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
}
