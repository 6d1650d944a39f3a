//! Reading where sessions live: `session_store = cookie` (the default: the whole session
//! sealed in the cookie, nothing to run) or `redis` (Redis or Valkey, standalone, Sentinel
//! or Cluster; the cookie then carries a ticket only). Credentials come from a file or the
//! environment, never from a flag (`ps` shows flags to every user of the machine).

use super::reader::{read_file, Reader};
use super::sources::Origin;
use super::Secret;
use std::time::Duration;

/// Where sessions are kept.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// Sealed in the cookie; a per-replica revocation list ends sessions.
    Cookie,
    Redis(RedisSettings),
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server: `host:port` and the database number.
    Standalone { host: String, port: u16, db: u8 },
    /// A Sentinel set: the master's name and the sentinels' `host:port`.
    Sentinel {
        master: String,
        sentinels: Vec<(String, u16)>,
    },
    /// A Cluster: seed nodes' `host:port` (the rest are discovered).
    Cluster { nodes: Vec<(String, u16)> },
}

/// The redis store's settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// TLS to Redis (`rediss://`, or `redis_tls = true` for Sentinel and Cluster).
    pub tls: bool,
    /// The CA certificates (PEM) trusted for TLS to Redis, instead of the Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Every key gatehouse writes starts with this.
    pub key_prefix: String,
    /// The longest any one Redis call may take.
    pub timeout: Duration,
}

pub(super) fn read_store(r: &mut Reader<'_>) -> StoreSettings {
    let kind = r.str_or("session_store", "cookie");
    match kind.trim().to_ascii_lowercase().as_str() {
        "cookie" => {
            // Read so that its bound applies wherever it is set.
            let _ = r.count("redis_timeout_ms", 1000);
            for key in WHERE_KEYS {
                if r.str_opt(key).is_some_and(|v| !v.is_empty()) {
                    let entry = r.raw.get(key);
                    r.problem(entry, key, "is set but session_store is `cookie`: set session_store = \"redis\" to keep sessions in Redis, or remove it");
                }
            }
            StoreSettings::Cookie
        }
        "redis" | "valkey" => read_redis(r).map_or(StoreSettings::Cookie, StoreSettings::Redis),
        _ => {
            let entry = r.raw.get("session_store");
            r.problem(
                entry,
                "session_store",
                format!("`{kind}` is not one of cookie, redis"),
            );
            StoreSettings::Cookie
        }
    }
}

/// The settings that say where Redis is: set with the cookie store, they are a mistake
/// (most likely a forgotten `session_store = "redis"`).
const WHERE_KEYS: [&str; 3] = ["redis_url", "redis_sentinel_master", "redis_cluster_nodes"];

fn read_redis(r: &mut Reader<'_>) -> Option<RedisSettings> {
    let url = r.str_opt("redis_url").filter(|s| !s.is_empty());
    let master = r.str_opt("redis_sentinel_master").filter(|s| !s.is_empty());
    let sentinels = r.list("redis_sentinel_addrs", &[]);
    let cluster = r.list("redis_cluster_nodes", &[]);
    let chosen = [url.is_some(), master.is_some(), !cluster.is_empty()]
        .iter()
        .filter(|b| **b)
        .count();
    let mut tls = r.bool("redis_tls", false);
    let topology = match (url, master) {
        _ if chosen > 1 => {
            r.problems.push("session_store = redis: set exactly one of redis_url (one server), redis_sentinel_master with redis_sentinel_addrs (Sentinel), or redis_cluster_nodes (Cluster)".into());
            None
        }
        (Some(u), _) => standalone(r, &u, &mut tls),
        (None, Some(m)) => {
            if sentinels.is_empty() {
                r.problems.push("redis_sentinel_master is set but redis_sentinel_addrs is empty: list the sentinels as host:port, separated by commas".into());
            }
            let sentinels = addrs(r, "redis_sentinel_addrs", &sentinels);
            Some(RedisTopology::Sentinel {
                master: m,
                sentinels,
            })
        }
        (None, None) if !cluster.is_empty() => Some(RedisTopology::Cluster {
            nodes: addrs(r, "redis_cluster_nodes", &cluster),
        }),
        (None, None) => {
            r.problems.push("session_store = redis needs where Redis is: redis_url (redis://host:6379 or rediss:// for TLS), or redis_sentinel_master and redis_sentinel_addrs, or redis_cluster_nodes".into());
            None
        }
    };
    if chosen == 0 && !sentinels.is_empty() {
        r.problems
            .push("redis_sentinel_addrs is set without redis_sentinel_master: name the master the sentinels watch".into());
    }
    let ca_pem = r
        .str_opt("redis_ca_file")
        .filter(|s| !s.is_empty())
        .and_then(|path| {
            let text = read_file(r, "redis_ca_file", &path)?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                let entry = r.raw.get("redis_ca_file");
                r.problem(
                    entry,
                    "redis_ca_file",
                    format!("{path} holds no PEM certificate"),
                );
                return None;
            }
            Some(text.into_bytes())
        });
    if ca_pem.is_some() && !tls {
        r.problems.push("redis_ca_file is set but the connection to Redis is not TLS: use a rediss:// URL (or redis_tls = true for Sentinel and Cluster)".into());
    }
    let username = r.str_opt("redis_username").filter(|s| !s.is_empty());
    let password = password(r);
    let key_prefix = r.str_or("redis_key_prefix", "gatehouse:");
    if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) || key_prefix.len() > 64 {
        let entry = r.raw.get("redis_key_prefix");
        r.problem(entry, "redis_key_prefix", format!("`{key_prefix}` must be 1 to 64 characters without spaces or braces (braces are Cluster hash tags)"));
    }
    let timeout = Duration::from_millis(r.count("redis_timeout_ms", 1000).max(10));
    Some(RedisSettings {
        topology: topology?,
        tls,
        ca_pem,
        username,
        password,
        key_prefix,
        timeout,
    })
}

/// `redis://host:port/db` or `rediss://...`, without credentials.
fn standalone(r: &mut Reader<'_>, u: &str, tls: &mut bool) -> Option<RedisTopology> {
    let entry = r.raw.get("redis_url");
    let Ok(url) = url::Url::parse(u) else {
        r.problem(
            entry,
            "redis_url",
            format!(
                "`{}` is not a URL like redis://127.0.0.1:6379",
                super::reader::without_credentials(u)
            ),
        );
        return None;
    };
    match url.scheme() {
        "redis" => {}
        "rediss" => *tls = true,
        other => {
            r.problem(
                entry,
                "redis_url",
                format!("the scheme `{other}` is not redis:// or rediss:// (TLS)"),
            );
            return None;
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        r.problem(entry, "redis_url", "must not carry a user name or password (it would show in logs and, as a flag, in `ps`): use redis_username and redis_password_file or GATEHOUSE_REDIS_PASSWORD");
        return None;
    }
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        p => match p.parse::<u8>() {
            Ok(n) if n < 16 => n,
            _ => {
                r.problem(
                    entry,
                    "redis_url",
                    format!("the database `{p}` is not a number from 0 to 15"),
                );
                return None;
            }
        },
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        r.problem(entry, "redis_url", "has no host");
        return None;
    };
    Some(RedisTopology::Standalone {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: url.port().unwrap_or(6379),
        db,
    })
}

/// `host:port` items.
fn addrs(r: &mut Reader<'_>, key: &str, items: &[String]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for item in items {
        let parsed = item
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse::<u16>().ok()?,
                ))
            })
            .filter(|(h, p)| !h.is_empty() && *p > 0);
        match parsed {
            Some((h, p)) => out.push((h.to_string(), p)),
            None => {
                let entry = r.raw.get(key);
                r.problem(entry, key, format!("`{item}` is not host:port"));
            }
        }
    }
    out
}

/// The password: from `redis_password_file`, or `redis_password` set in the file or the
/// environment; a flag is refused.
fn password(r: &mut Reader<'_>) -> Option<Secret> {
    let inline = r.raw.get("redis_password").cloned();
    let from_flag = inline
        .as_ref()
        .is_some_and(|e| matches!(e.origin, Origin::Flag(_)));
    if from_flag {
        r.problems.push("redis_password was given as a flag, which every user of the machine can read in `ps`: use redis_password_file or the environment variable GATEHOUSE_REDIS_PASSWORD".into());
        return None;
    }
    let inline = r.str_opt("redis_password").filter(|s| !s.is_empty());
    let file = r.str_opt("redis_password_file").filter(|s| !s.is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => {
            r.problems
                .push("redis_password and redis_password_file are both set: keep one".into());
            None
        }
        (Some(p), None) => Some(Secret::new(p)),
        (None, Some(path)) => {
            let text = read_file(r, "redis_password_file", &path)?;
            let p = text.trim_end_matches(['\n', '\r']).to_string();
            if p.is_empty() {
                let entry = r.raw.get("redis_password_file");
                r.problem(entry, "redis_password_file", format!("{path} is empty"));
                return None;
            }
            Some(Secret::new(p))
        }
        (None, None) => None,
    }
}
