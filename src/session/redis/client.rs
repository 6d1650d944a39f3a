//! The Redis client, built from the settings: `redis` (redis-rs 0.32), chosen over `fred`
//! 10.1 on measurements (/work/notes/redis-client.md; redis-server 7.0 on a shared
//! machine, so absolute numbers are noisy):
//! - Cluster: redis-rs follows `MOVED` and `ASK` itself (0 errors on one key per slot,
//!   and during a slot migration). fred 10.1 failed every `ASK`-redirected command while
//!   a slot migrated and, with its default attempts, then stopped answering on every
//!   slot: a routine reshard became an outage, and we carried a workaround (`ask.rs`,
//!   gone with fred).
//! - Load: at 256 concurrent tasks on one client, p99 of a 3 KB GET 6-11 ms against
//!   fred's 20-24 ms; less client CPU per GET (7-9 ms per 1000 against 9-11).
//! - Cost: +15 crates in Cargo.lock against fred's +35; 93 s of CPU added to a warm debug
//!   build against 356 s (137 s against 233 s from clean).
//!
//! What redis-rs leaves to us (here, in `link.rs` and in `sentinel.rs`):
//! - Sentinel: a `ConnectionManager` stays bound to the master it was given (measured:
//!   still failing 15 s after a failover). We ask the sentinels for the master, check its
//!   `ROLE`, and after a connection error or `READONLY` ask again and swap the connection.
//!   fred followed a failover with no code of ours.
//! - Reconnect pacing: the manager's backoff starts at 1 s whatever `set_max_delay` says
//!   (and its default grows to 60 s: 8 s after a restart it had not reconnected), so it
//!   makes one attempt per reconnect here; the next call or the half-second health check
//!   makes the next, and after a refused attempt calls fail at once for a quarter of a
//!   second rather than each opening a connection.
//! - Bounds: every call is wrapped in `redis_timeout_ms`; redis-rs bounds connecting and
//!   each answer, but a call waiting for a reconnect would wait for all of it.
//! - A connection whose set-up Redis refused is never retried by the manager: replaced.
//!
//! Pub/sub runs on the same connection (RESP3 push: Redis 6 or later, or Valkey), and the
//! crate subscribes again after each reconnect; a new connection subscribes in `link.rs`.
//! TLS is rustls (ring) with the Mozilla roots or, with `redis_ca_file`, that file's
//! certificates instead: redis-rs 0.32 takes root certificates (`TlsCertificates`), not a
//! rustls config, so the two cannot be combined.

use crate::config::{RedisSettings, RedisTopology};
use redis::aio::ConnectionManagerConfig;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::io::tcp::TcpSettings;
use redis::{
    ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion, PushInfo, RedisConnectionInfo,
    RedisError, TlsCertificates,
};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Where Redis is, in words, for pages and logs (never credentials).
pub fn describe(s: &RedisSettings) -> String {
    let scheme = if s.tls { "rediss" } else { "redis" };
    match &s.topology {
        RedisTopology::Standalone { host, port, db } => format!("{scheme}://{host}:{port}/{db}"),
        RedisTopology::Sentinel { master, sentinels } => format!(
            "the Sentinel master `{master}` ({})",
            sentinels
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RedisTopology::Cluster { nodes } => format!(
            "the Redis Cluster at {}",
            nodes
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The longest one connection attempt may take: `redis_timeout_ms`, but never under half a
/// second, so that a TLS handshake fits even with a very short call timeout.
pub fn connect_timeout(s: &RedisSettings) -> Duration {
    s.timeout.max(Duration::from_millis(500))
}

/// A client for one server at `host:port`: TLS as the settings say (the Mozilla roots, or
/// `redis_ca_file`'s certificates instead), the ACL credentials when `credentials`.
pub fn node(
    s: &RedisSettings,
    host: &str,
    port: u16,
    db: i64,
    credentials: bool,
    protocol: ProtocolVersion,
) -> Result<redis::Client, String> {
    let info = info(s, host, port, db, credentials, protocol);
    match &s.ca_pem {
        Some(pem) => redis::Client::build_with_tls(info, certificates(pem))
            .map_err(|e| format!("redis_ca_file: {e}")),
        None => redis::Client::open(info).map_err(|e| e.to_string()),
    }
}

fn info(
    s: &RedisSettings,
    host: &str,
    port: u16,
    db: i64,
    credentials: bool,
    protocol: ProtocolVersion,
) -> ConnectionInfo {
    let addr = if s.tls {
        ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    };
    ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db,
            username: s.username.clone().filter(|_| credentials),
            password: s
                .password
                .as_ref()
                .filter(|_| credentials)
                .map(|p| p.expose().to_string()),
            protocol,
        },
    }
}

fn certificates(pem: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }
}

/// redis-rs builds its rustls configs with the process's default crypto provider: make it
/// ring (the one reqwest uses), whatever other crates enable.
pub fn use_ring() {
    // Err: a provider is installed already, which is all this needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// The `ConnectionManager` settings: answers and connecting bounded, one attempt per
/// reconnect (the header says why), messages of the subscription sent to `push` and the
/// subscription renewed after a reconnect.
pub fn manager_config(
    s: &RedisSettings,
    push: UnboundedSender<PushInfo>,
) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(connect_timeout(s))
        .set_response_timeout(s.timeout)
        .set_tcp_settings(tcp())
        .set_push_sender(push)
        .set_automatic_resubscription()
}

/// The Cluster client for the seed `nodes`.
pub fn cluster(
    s: &RedisSettings,
    nodes: &[(String, u16)],
    push: UnboundedSender<PushInfo>,
) -> Result<ClusterClient, String> {
    let seeds: Vec<ConnectionInfo> = nodes
        .iter()
        .map(|(h, p)| info(s, h, *p, 0, true, ProtocolVersion::RESP3))
        .collect();
    let mut b = ClusterClientBuilder::new(seeds)
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(push)
        .connection_timeout(connect_timeout(s))
        .response_timeout(s.timeout)
        .tcp_settings(tcp());
    if let Some(pem) = &s.ca_pem {
        b = b.certs(certificates(pem));
    }
    b.build().map_err(|e| match s.ca_pem {
        Some(_) => format!("redis_ca_file: {e}"),
        None => e.to_string(),
    })
}

/// Whether `e` says a connection could not be set up (credentials refused, no RESP3, the
/// database refused): the `ConnectionManager` does not try again after such an error, so
/// the connection is replaced.
pub fn setup_failed(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::RESP3NotSupported
    ) || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
        || e.to_string().contains("refused to switch database")
}

/// Whether `e` came from reaching Redis rather than from a command (refused, TLS,
/// credentials), as opposed to a connection that dropped or an answer that was late.
pub fn unreachable(e: &RedisError) -> bool {
    setup_failed(e) || (e.is_io_error() && !e.is_timeout() && !e.is_connection_dropped())
}
