//! Where a Sentinel set's master is: the sentinels are asked in turn (`SENTINEL
//! get-master-addr-by-name`, Redis Sentinel documentation, "Sentinel API"), the first
//! answer wins, and the server named must say it is the master (`ROLE`) before gatehouse
//! uses it: right after a failover a sentinel may still name the old master, and a
//! restarted old master comes back as a replica.
//!
//! A sentinel usually has no password of its own: each is asked without credentials first,
//! and with the ACL user and password when it answers `NOAUTH`. Every step is bounded by
//! the connection timeout; `link.rs` decides when to ask (at start, after a connection
//! error or a `READONLY` answer).

use super::client;
use crate::config::RedisSettings;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, RedisError, Value};
use std::time::Duration;

/// The master's `host:port` as the sentinels name it.
pub async fn ask(
    s: &RedisSettings,
    name: &str,
    sentinels: &[(String, u16)],
) -> Result<(String, u16), String> {
    let limit = client::connect_timeout(s);
    let mut causes = Vec::new();
    for (host, port) in sentinels {
        let answer = tokio::time::timeout(limit, ask_one(s, host, *port, name)).await;
        match answer {
            Ok(Ok(Some(addr))) => return Ok(addr),
            Ok(Ok(None)) => causes.push(format!("{host}:{port} does not know it")),
            Ok(Err(e)) => causes.push(format!("{host}:{port}: {e}")),
            Err(_) => causes.push(format!(
                "{host}:{port} did not answer within {} ms",
                limit.as_millis()
            )),
        }
    }
    Err(format!(
        "no sentinel named the master `{name}` ({})",
        causes.join("; ")
    ))
}

async fn ask_one(
    s: &RedisSettings,
    host: &str,
    port: u16,
    name: &str,
) -> Result<Option<(String, u16)>, String> {
    let has_credentials = s.username.is_some() || s.password.is_some();
    let mut credentials = false;
    loop {
        let mut conn = open(s, host, port, credentials).await?;
        let answer: Result<Option<(String, u16)>, RedisError> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query_async(&mut conn)
            .await;
        match answer {
            Err(e) if e.code() == Some("NOAUTH") && has_credentials && !credentials => {
                credentials = true;
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

async fn open(
    s: &RedisSettings,
    host: &str,
    port: u16,
    credentials: bool,
) -> Result<MultiplexedConnection, String> {
    let c = client::node(s, host, port, 0, credentials, ProtocolVersion::RESP2)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(client::connect_timeout(s))
        .set_response_timeout(client::connect_timeout(s));
    c.get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())
}

/// `Ok` when the server behind `conn` says it is a master (`ROLE`).
pub async fn check_master<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    timeout: Duration,
) -> Result<(), String> {
    let role = tokio::time::timeout(timeout, redis::cmd("ROLE").query_async::<Value>(conn))
        .await
        .map_err(|_| format!("no answer to ROLE within {} ms", timeout.as_millis()))?
        .map_err(|e| e.to_string())?;
    let first = match &role {
        Value::Array(items) => items.first(),
        _ => None,
    };
    match first.map(redis::from_redis_value::<String>) {
        Some(Ok(r)) if r == "master" => Ok(()),
        Some(Ok(r)) => Err(format!("it is a {r}, not the master")),
        _ => Err(format!("ROLE answered {role:?}")),
    }
}
