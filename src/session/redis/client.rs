//! The Redis client, built from the settings: `fred`, chosen over `redis` (redis-rs) for
//! what a session store in front of every request needs without code of our own:
//! - Sentinel: the client asks the sentinels for the master and follows a failover by
//!   itself; redis-rs's async Sentinel client hands back a connection and leaves
//!   re-resolving after a failover to the application.
//! - Cluster: `MOVED` followed and slots refreshed in the client (both have this). fred
//!   10.1 does not follow `ASK` (a slot being moved): `ask.rs` does.
//! - Reconnects with a policy, commands queued across a reconnect and bounded by one
//!   command timeout; pub/sub that resubscribes after a reconnect (`SubscriberClient`).
//! - rustls (ring) for `rediss://`, with our own CA roots.
//! - Automatic pipelining of concurrent commands on one connection, which is what the
//!   per-request GET of a cache miss needs at 256 connections.
//!
//! The measurements behind this choice: /work/notes/redis-client.md (throughput, failover,
//! restart and resubscription, per crate), summarised in README.md's session store section.

use crate::config::{RedisSettings, RedisTopology};
use fred::prelude::*;
use fred::types::config::{ReconnectPolicy, Server, ServerConfig, TlsConfig, TlsConnector};
use std::time::Duration;

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

/// The fred configuration for `s`: every command bounded by `s.timeout`, reconnecting for
/// ever (100 ms doubling to 1 s between attempts), not failing when Redis is down at
/// start-up (requests get 503 until it answers).
pub fn builder(s: &RedisSettings) -> Result<Builder, String> {
    let server = match &s.topology {
        RedisTopology::Standalone { host, port, .. } => ServerConfig::Centralized {
            server: Server::new(host.clone(), *port),
        },
        RedisTopology::Sentinel { master, sentinels } => ServerConfig::Sentinel {
            hosts: sentinels
                .iter()
                .map(|(h, p)| Server::new(h.clone(), *p))
                .collect(),
            service_name: master.clone(),
            username: s.username.clone(),
            password: s.password.as_ref().map(|p| p.expose().to_string()),
        },
        RedisTopology::Cluster { nodes } => ServerConfig::new_clustered(nodes.clone()),
    };
    let database = match &s.topology {
        RedisTopology::Standalone { db, .. } if *db > 0 => Some(*db),
        _ => None,
    };
    let tls = if s.tls { Some(tls(s)?) } else { None };
    let config = Config {
        fail_fast: false,
        username: s.username.clone(),
        password: s.password.as_ref().map(|p| p.expose().to_string()),
        server,
        database,
        tls,
        ..Config::default()
    };
    let timeout = s.timeout;
    let mut b = Builder::from_config(config);
    b.with_performance_config(|p| {
        p.default_command_timeout = timeout;
    })
    .with_connection_config(|c| {
        c.connection_timeout = timeout.max(Duration::from_millis(500));
        c.internal_command_timeout = timeout.max(Duration::from_millis(500));
        c.max_command_attempts = 2;
        // One redirection, fewer than the write attempts: a command fred cannot take
        // through an `ASK` fails instead of ending the client (`ask.rs`).
        c.max_redirections = 1;
        c.tcp = TcpConfig {
            nodelay: Some(true),
            ..Default::default()
        };
    })
    .set_policy(ReconnectPolicy::new_exponential(0, 100, 1000, 2));
    Ok(b)
}

/// rustls with the system's roots and `redis_ca_file`'s.
fn tls(s: &RedisSettings) -> Result<TlsConfig, String> {
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::pki_types::CertificateDer;
    use fred::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &s.ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("redis_ca_file: {e}"))?;
            roots.add(cert).map_err(|e| format!("redis_ca_file: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(fred::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(config).into())
}
