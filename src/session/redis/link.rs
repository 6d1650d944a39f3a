//! The connection every command goes through ([`Redis`]): one `ConnectionManager` to a
//! server or to the Sentinel master, or one Cluster connection; made on first use or by
//! the health check ([`Redis::tend`]), subscribed to the channel of ended sessions, and
//! replaced when the crate would not recover it by itself.
//!
//! Trusts redis-rs to reconnect a dropped connection (one attempt each time, see
//! `client.rs`), to subscribe again after a reconnect, and to follow Cluster redirections.
//! Does itself:
//! - every call bounded by `redis_timeout_ms`, whatever it waits for;
//! - pacing: after an attempt to reach Redis failed (refused, TLS, credentials), calls
//!   fail at once for [`QUIET`] instead of each trying again; the health check still tries
//!   every half second, so service returns within about that of Redis answering;
//! - a connection whose set-up Redis refused (a wrong password after a restart, for
//!   instance), or that stopped answering PING, is dropped and made anew;
//! - Sentinel: after a connection error, a late answer or `READONLY`, the sentinels are
//!   asked again (at most every [`ASK_EVERY`]) and, when they name another master, a
//!   connection to it replaces the old one;
//! - the last reason Redis could not be reached, for `/readyz` and the 503s.

use super::{client, sentinel};
use crate::config::{RedisSettings, RedisTopology};
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, ProtocolVersion, PushInfo, RedisError, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How long calls fail at once after an attempt to reach Redis failed.
const QUIET: Duration = Duration::from_millis(250);
/// The least time between two questions to the sentinels.
const ASK_EVERY: Duration = Duration::from_millis(100);

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Redis answered with an error, or the connection failed.
    #[error("{0}")]
    Redis(#[from] RedisError),
    #[error("no answer within {0} ms")]
    TimedOut(u128),
    /// No connection, and the last attempt to make one failed (its reason:
    /// [`Redis::refusal`]).
    #[error("no connection")]
    NotConnected,
}

/// The shared connection to Redis; clones share it.
#[derive(Clone)]
pub struct Redis(Arc<Inner>);

struct Inner {
    settings: RedisSettings,
    target: Target,
    channel: String,
    push: UnboundedSender<PushInfo>,
    live: Mutex<Option<Live>>,
    /// One attempt to connect, or question to the sentinels, at a time.
    connecting: Arc<tokio::sync::Mutex<()>>,
    quiet_until: Mutex<Option<Instant>>,
    asked_at: Mutex<Option<Instant>>,
    refused: Mutex<Option<String>>,
    made: AtomicU64,
    warned: AtomicBool,
}

enum Target {
    Server(redis::Client),
    Sentinel {
        master: String,
        sentinels: Vec<(String, u16)>,
    },
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection in use.
#[derive(Clone)]
struct Live {
    conn: Conn,
    /// The Sentinel master it goes to.
    at: Option<(String, u16)>,
    subscribed: Arc<AtomicBool>,
    /// Tells connections apart (the n-th made).
    id: u64,
}

impl Conn {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self.clone() {
            Conn::Server(mut m) => cmd.query_async(&mut m).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }
}

impl Redis {
    /// The connection for `s` (not made yet), and where the messages of `channel` arrive.
    pub fn new(
        s: &RedisSettings,
        channel: String,
    ) -> Result<(Redis, UnboundedReceiver<PushInfo>), String> {
        if s.tls {
            client::use_ring();
        }
        let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
        let target = match &s.topology {
            RedisTopology::Standalone { host, port, db } => Target::Server(client::node(
                s,
                host,
                *port,
                i64::from(*db),
                true,
                ProtocolVersion::RESP3,
            )?),
            RedisTopology::Sentinel { master, sentinels } => {
                // Checks the TLS settings now, not at the first failover.
                if let Some((h, p)) = sentinels.first() {
                    client::node(s, h, *p, 0, false, ProtocolVersion::RESP2)?;
                }
                Target::Sentinel {
                    master: master.clone(),
                    sentinels: sentinels.clone(),
                }
            }
            RedisTopology::Cluster { nodes } => {
                Target::Cluster(client::cluster(s, nodes, push.clone())?)
            }
        };
        let inner = Inner {
            settings: s.clone(),
            target,
            channel,
            push,
            live: Mutex::new(None),
            connecting: Arc::new(tokio::sync::Mutex::new(())),
            quiet_until: Mutex::new(None),
            asked_at: Mutex::new(None),
            refused: Mutex::new(None),
            made: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        };
        Ok((Redis(Arc::new(inner)), pushes))
    }

    /// Runs `cmd`, bounded by `redis_timeout_ms`.
    pub async fn call<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CallError> {
        let started = crate::metrics::Timer::start();
        let answer = self.call_bounded(cmd).await;
        use crate::metrics::RedisResult as R;
        let result = match &answer {
            Ok(_) => R::Ok,
            Err(CallError::Redis(_)) => R::Error,
            Err(CallError::TimedOut(_)) => R::Timeout,
            Err(CallError::NotConnected) => R::NotConnected,
        };
        crate::metrics::redis_command(result, started);
        answer
    }

    async fn call_bounded<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CallError> {
        let limit = self.0.settings.timeout;
        let mut used = None;
        let answer = tokio::time::timeout(limit, async {
            let live = self.connected(false).await?;
            used = Some(live.clone());
            live.conn.query::<T>(cmd).await.map_err(CallError::Redis)
        })
        .await;
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(CallError::Redis(e))) => {
                self.failed(used.as_ref(), &e);
                Err(CallError::Redis(e))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                if let Some(live) = &used {
                    self.lost(live);
                }
                Err(CallError::TimedOut(limit.as_millis()))
            }
        }
    }

    /// The health check, every half second: connects if need be, subscribes if that has
    /// not held yet, and PINGs. `Err` names why Redis does not answer.
    pub async fn tend(&self) -> Result<(), String> {
        let limit = self.0.settings.timeout;
        let live = match self.connected(true).await {
            Ok(live) => live,
            Err(e) => return Err(self.refusal().unwrap_or_else(|| e.to_string())),
        };
        if let Err(e) = self.subscribe(&live).await {
            // Meanwhile the cache's second and the WebSocket sweep (`ended_among`) still
            // end sessions ended elsewhere.
            if !self.0.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "could not subscribe to session ends yet; retrying");
            }
        }
        match tokio::time::timeout(limit, live.conn.query::<Value>(&redis::cmd("PING"))).await {
            Ok(Ok(_)) => {
                set(&self.0.refused, None);
                Ok(())
            }
            Ok(Err(e)) => {
                self.failed(Some(&live), &e);
                Err(e.to_string())
            }
            Err(_) => {
                self.lost(&live);
                if !matches!(live.conn, Conn::Cluster(_)) {
                    // A connection that does not answer PING may be half-open: a new one
                    // finds out.
                    self.forget(&live);
                }
                Err(format!("no answer to PING within {} ms", limit.as_millis()))
            }
        }
    }

    /// The last reason Redis could not be reached, until a PING is answered.
    pub fn refusal(&self) -> Option<String> {
        self.0.refused.lock().ok().and_then(|r| r.clone())
    }

    fn current(&self) -> Option<Live> {
        self.0.live.lock().ok().and_then(|l| l.clone())
    }

    fn quiet(&self) -> bool {
        self.0
            .quiet_until
            .lock()
            .ok()
            .and_then(|q| *q)
            .is_some_and(|until| Instant::now() < until)
    }

    /// The connection in use, made now if there is none (one attempt at a time). Outside
    /// the health check (`tending`), not while [`QUIET`].
    async fn connected(&self, tending: bool) -> Result<Live, CallError> {
        if !tending && self.quiet() {
            if let Some(live) = self.current() {
                self.lost(&live);
            }
            return Err(CallError::NotConnected);
        }
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _one = self.0.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        if !tending && self.quiet() {
            return Err(CallError::NotConnected);
        }
        match self.establish(None).await {
            Ok(live) => Ok(live),
            Err(cause) => {
                self.refused(cause);
                Err(CallError::NotConnected)
            }
        }
    }

    /// Makes a connection (to the Sentinel master at `at` when given), subscribes it and
    /// puts it in use. The caller holds `connecting`.
    async fn establish(&self, at: Option<(String, u16)>) -> Result<Live, String> {
        let s = &self.0.settings;
        let limit = client::connect_timeout(s);
        let config = || client::manager_config(s, self.0.push.clone());
        let (conn, at) = match &self.0.target {
            Target::Server(c) => {
                let m = bounded(limit, c.get_connection_manager_with_config(config())).await?;
                (Conn::Server(m), None)
            }
            Target::Sentinel { master, sentinels } => {
                let (host, port) = match at {
                    Some(at) => at,
                    None => self.ask(master, sentinels).await?,
                };
                let c = client::node(s, &host, port, 0, true, ProtocolVersion::RESP3)?;
                let mut m = bounded(limit, c.get_connection_manager_with_config(config()))
                    .await
                    .map_err(|e| format!("the master `{master}` at {host}:{port}: {e}"))?;
                sentinel::check_master(&mut m, limit)
                    .await
                    .map_err(|e| format!("{host}:{port}, named master `{master}`: {e}"))?;
                (Conn::Server(m), Some((host, port)))
            }
            Target::Cluster(c) => {
                let conn = bounded(limit, c.get_async_connection()).await?;
                (Conn::Cluster(conn), None)
            }
        };
        let live = Live {
            conn,
            at,
            subscribed: Arc::new(AtomicBool::new(false)),
            id: self.0.made.fetch_add(1, Ordering::Relaxed),
        };
        if let Err(e) = self.subscribe(&live).await {
            tracing::debug!(error = %e, "subscribing to session ends failed; the health check retries");
        }
        if let Ok(mut l) = self.0.live.lock() {
            *l = Some(live.clone());
        }
        set(&self.0.quiet_until, None);
        set(&self.0.refused, None);
        Ok(live)
    }

    async fn ask(
        &self,
        master: &str,
        sentinels: &[(String, u16)],
    ) -> Result<(String, u16), String> {
        set(&self.0.asked_at, Some(Instant::now()));
        sentinel::ask(&self.0.settings, master, sentinels).await
    }

    /// SUBSCRIBE once per connection; the crate renews it after a reconnect.
    async fn subscribe(&self, live: &Live) -> Result<(), String> {
        if live.subscribed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let limit = client::connect_timeout(&self.0.settings);
        let channel = self.0.channel.as_str();
        let done = match live.conn.clone() {
            Conn::Server(mut m) => tokio::time::timeout(limit, m.subscribe(channel)).await,
            Conn::Cluster(mut c) => tokio::time::timeout(limit, c.subscribe(channel)).await,
        };
        match done {
            Ok(Ok(())) => {
                live.subscribed.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        }
    }

    /// After `e` on `live` (when a connection was used).
    fn failed(&self, live: Option<&Live>, e: &RedisError) {
        if client::unreachable(e) {
            self.refused(e.to_string());
        }
        let Some(live) = live else {
            return;
        };
        if client::setup_failed(e) {
            self.forget(live);
        }
        let moved = matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown);
        if e.is_io_error() || client::setup_failed(e) || moved {
            self.lost(live);
        }
    }

    /// After `live` failed, did not answer, or said it is not (or no longer) a master: a
    /// Sentinel master may have moved.
    fn lost(&self, live: &Live) {
        if matches!(self.0.target, Target::Sentinel { .. }) {
            self.follow(live.id);
        }
    }

    /// Asks the sentinels (in the background, one question at a time, at most every
    /// [`ASK_EVERY`]) and moves to the master they name if it is not the one in use.
    fn follow(&self, seen: u64) {
        let recently = self
            .0
            .asked_at
            .lock()
            .ok()
            .and_then(|a| *a)
            .is_some_and(|at| at.elapsed() < ASK_EVERY);
        if recently {
            return;
        }
        let Ok(one) = Arc::clone(&self.0.connecting).try_lock_owned() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _one = one;
            let Target::Sentinel { master, sentinels } = &me.0.target else {
                return;
            };
            // Failures here are noted, not paced: the connection in use may still work.
            let named = match me.ask(master, sentinels).await {
                Ok(named) => named,
                Err(cause) => return set(&me.0.refused, Some(cause)),
            };
            let current = me.current();
            if current.as_ref().is_some_and(|l| l.id != seen) {
                return; // replaced meanwhile
            }
            if current.as_ref().and_then(|l| l.at.as_ref()) == Some(&named) {
                return; // the same master: its connection reconnects by itself
            }
            let (host, port) = named.clone();
            match me.establish(Some(named)).await {
                Ok(_) => {
                    tracing::info!(master = %master, at = %format!("{host}:{port}"), "following the Sentinel master")
                }
                Err(cause) => set(&me.0.refused, Some(cause)),
            }
        });
    }

    /// Stops using `live` (if still in use): the next call makes a new connection.
    fn forget(&self, live: &Live) {
        if let Ok(mut l) = self.0.live.lock() {
            if l.as_ref().is_some_and(|c| c.id == live.id) {
                *l = None;
            }
        }
    }

    /// Records why Redis could not be reached, and keeps calls from trying again for
    /// [`QUIET`].
    fn refused(&self, cause: String) {
        set(&self.0.refused, Some(cause));
        set(&self.0.quiet_until, Some(Instant::now() + QUIET));
    }
}

fn set<T>(m: &Mutex<T>, value: T) {
    if let Ok(mut v) = m.lock() {
        *v = value;
    }
}

/// `f`, or an error after `limit`.
async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no connection within {} ms", limit.as_millis())),
    }
}
