//! The redis store: sessions in Redis or Valkey, shared by every replica.
//!
//! Keys (all under `redis_key_prefix`; a session's own keys share a Cluster slot through
//! the `{id}` hash tag):
//! - `{id}:s`: the session, sealed under its ticket (`ticket.rs`), expiring with it;
//! - `{id}:lock`: the refresh lock (`lock.rs`);
//! - `u:<mac>` / `p:<mac>`: the ids (`id:created_at`) of a user's sessions, and of a
//!   provider session (`sid`), for sign-out everywhere and back-channel logout; the user
//!   and `sid` are keyed-hashed, so a dump does not list who signs in;
//! - `j:<digest>`: logout token `jti`s seen, until the token expires;
//! - channel `ended`: ids of sessions ended anywhere, so every replica drops what it
//!   cached and closes the WebSockets those sessions opened.
//!
//! Each replica caches an opened session for [`CACHE_FOR`] at most, so a session ended
//! anywhere stops working everywhere within that time even when a message is lost. Every
//! call is bounded by `redis_timeout_ms`; when Redis cannot answer, requests that need a
//! session get 503 naming Redis and the cause ([`Unavailable`]), never a login loop.

mod client;
mod link;
mod lock;
mod sentinel;

pub use client::describe;
pub use lock::Lease;

use super::jar::CookieJar;
use super::ticket::Ticket;
use super::{cache, Ended, RefreshTurn, RequestCookies, Session, SessionError, Unavailable};
use crate::config::{Config, CookieKey, RedisSettings};
use crate::util::now_secs;
use axum::http::HeaderValue;
use link::{CallError, Redis};
use redis::{PushInfo, PushKind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a replica serves a session from its cache without asking Redis again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// How often a waiting replica looks whether the lock holder's refresh has landed.
const POLL: Duration = Duration::from_millis(25);

/// Replaces an entry only if it still holds exactly the bytes read (a touch).
const SWAP: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'PXAT', ARGV[3]) return 1 else return 0 end";

/// Whether two copies of a session hold the same tokens (a refresh replaces them).
fn same_tokens(a: &Session, b: &Session) -> bool {
    a.id_token == b.id_token
        && a.refresh_token == b.refresh_token
        && a.access_token == b.access_token
        && a.expires_at == b.expires_at
}

/// What seals entries and bounds their life; a configuration reload replaces it (a
/// rotated cookie secret: the new key seals, every listed key still opens).
struct Sealing {
    /// The first seals entries and keys the indexes; all open.
    keys: Vec<CookieKey>,
    lifetime: Duration,
}

impl Sealing {
    fn of(cfg: &Config) -> Sealing {
        Sealing {
            keys: cfg.cookie.keys.clone(),
            lifetime: cfg.cookie.session_lifetime,
        }
    }
}

/// The redis store.
pub struct RedisStore {
    redis: Redis,
    /// Messages of the channel of ended sessions, until `start` takes them.
    pushes: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<PushInfo>>>,
    /// The cookie keys and the session lifetime, replaced by a configuration reload.
    sealing: std::sync::RwLock<Arc<Sealing>>,
    prefix: String,
    /// Where Redis is, in words (never credentials).
    place: String,
    /// The longest a replica waits for another's refresh before giving up on it.
    wait_for_refresh: Duration,
    /// `Some(cause)` while Redis does not answer.
    down: Arc<Mutex<Option<String>>>,
}

impl RedisStore {
    pub fn new(r: &RedisSettings, cfg: &Config) -> Result<RedisStore, String> {
        let (redis, pushes) = Redis::new(r, format!("{}ended", r.key_prefix))?;
        let place = client::describe(r);
        Ok(RedisStore {
            redis,
            pushes: Mutex::new(Some(pushes)),
            sealing: std::sync::RwLock::new(Arc::new(Sealing::of(cfg))),
            prefix: r.key_prefix.clone(),
            wait_for_refresh: cfg.provider_timeouts.total + lock::LEASE + Duration::from_secs(2),
            down: Arc::new(Mutex::new(Some(format!(
                "gatehouse has not reached Redis ({place}) yet"
            )))),
            place,
        })
    }

    /// Takes `cfg`'s cookie keys and session lifetime (a configuration reload).
    pub fn reseal(&self, cfg: &Config) {
        let fresh = Arc::new(Sealing::of(cfg));
        match self.sealing.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// The keys and lifetime now (a copy of the pointer: no lock is held after).
    fn sealing(&self) -> Arc<Sealing> {
        match self.sealing.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Connects, keeps the health flag current, and listens for other replicas' ends.
    pub fn start(&self, ended: tokio::sync::broadcast::Sender<Ended>) {
        let (redis, down, place) = (
            self.redis.clone(),
            Arc::clone(&self.down),
            self.place.clone(),
        );
        tokio::spawn(async move {
            loop {
                // Also what reconnects, resubscribes and follows a Sentinel failover when
                // no request comes (`link.rs`).
                let now = redis.tend().await.err().map(|e| {
                    format!(
                        "Redis ({place}) does not answer: {}",
                        with_refusal(e, &redis)
                    )
                });
                crate::metrics::session_store_up("redis", now.is_none());
                if let Ok(mut d) = down.lock() {
                    // Every new cause is logged: a wrong password at start-up is one.
                    if *d != now {
                        match &now {
                            Some(cause) => {
                                tracing::error!(cause = %cause, "the session store is down: requests that need a session get 503 until it answers")
                            }
                            None => tracing::info!(place = %place, "the session store answers"),
                        }
                    }
                    *d = now;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let pushes = self.pushes.lock().ok().and_then(|mut p| p.take());
        let Some(mut pushes) = pushes else {
            return;
        };
        let channel = self.channel();
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                let Some(text) = message(&push, &channel) else {
                    continue;
                };
                cache::forget_all();
                let ids = text.split(',').map(str::to_string).collect();
                let _ = ended.send(Ended::Sessions(ids));
            }
        });
    }

    pub fn down(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    fn unavailable(&self, e: &CallError) -> Unavailable {
        let cause = format!(
            "Redis ({}) did not answer: {}",
            self.place,
            with_refusal(e.to_string(), &self.redis)
        );
        if let Ok(mut d) = self.down.lock() {
            d.get_or_insert_with(|| cause.clone());
        }
        Unavailable(cause)
    }

    fn entry_key(&self, id: &str) -> String {
        format!("{}{{{id}}}:s", self.prefix)
    }

    fn lock_key(&self, id: &str) -> String {
        format!("{}{{{id}}}:lock", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}ended", self.prefix)
    }

    /// `u:<mac>` / `p:<mac>` for a user or provider session, with cookie key `key`.
    fn index_key(&self, kind: &str, value: &str, key: &CookieKey) -> String {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0);
        let tag = ring::hmac::sign(&k, format!("{kind}\0{value}").as_bytes());
        let hex: String = tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}{kind}:{hex}", self.prefix)
    }

    /// The request's session: its ticket opens, its entry exists and opens.
    pub async fn load(
        &self,
        jar: &CookieJar,
        cookies: &RequestCookies<'_>,
    ) -> Result<Option<Arc<Session>>, Unavailable> {
        let Some(value) = cookies.get(jar.cookie_name()) else {
            return Ok(None);
        };
        if let Some(hit) = cache::get(jar.id, value, Some(CACHE_FOR)) {
            return Ok(Some(hit));
        }
        let Some(ticket) = Ticket::open(jar, value) else {
            return Ok(None);
        };
        let generation = cache::generation();
        let Some(session) = Box::pin(self.fetch(&ticket)).await? else {
            return Ok(None);
        };
        let session = Arc::new(session);
        cache::put(jar.id, value, &session, generation);
        Ok(Some(session))
    }

    /// The session `ticket` opens, read from Redis now.
    async fn fetch(&self, ticket: &Ticket) -> Result<Option<Session>, Unavailable> {
        let key = self.entry_key(&ticket.id);
        let raw: Option<Vec<u8>> = self
            .redis
            .call(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| self.unavailable(&e))?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let Some(plain) = ticket.open_entry(&self.sealing().keys, &key, &raw) else {
            return Ok(None);
        };
        let Ok(mut session) = serde_json::from_slice::<Session>(&plain) else {
            return Ok(None);
        };
        session.ticket = Some(ticket.clone());
        Ok(Some(session))
    }

    /// When an entry for `s` must be gone (Unix milliseconds).
    fn end_ms(&self, s: &Session) -> i64 {
        let end = s
            .created_at
            .saturating_add(self.sealing().lifetime.as_secs());
        i64::try_from(end.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Writes `session`. A session the request's ticket already names is updated only if
    /// it is still stored with the same tokens ([`RedisStore::touch`]: an ended session is
    /// never brought back, a refreshed one never gets its spent tokens back); a new one
    /// gets a new ticket, its index entries, and the cookie.
    pub async fn save(
        &self,
        jar: &CookieJar,
        session: &Session,
        cookies: &RequestCookies<'_>,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let held = cookies
            .get(jar.cookie_name())
            .and_then(|v| Ticket::open(jar, v))
            .filter(|t| t.id == session.id);
        let (ticket, new) =
            match held.or_else(|| session.ticket.clone().filter(|t| t.id == session.id)) {
                Some(t) => (t, false),
                None => (Ticket::new(&session.id).ok_or(SessionError::Seal)?, true),
            };
        let written = if new {
            self.write(&ticket, session, false).await?;
            true
        } else {
            self.touch(&ticket, session).await?
        };
        if let Some(value) = cookies.get(jar.cookie_name()).filter(|_| !new && written) {
            // This thread serves the session as written from now on.
            let mut kept = session.clone();
            kept.ticket = Some(ticket.clone());
            cache::put(jar.id, value, &Arc::new(kept), cache::generation());
        }
        if !new {
            // The request may carry this ticket already, or (a refresh by another
            // replica) only the cookie store's leftovers: send it when it is not there.
            return Ok(
                if cookies
                    .get(jar.cookie_name())
                    .and_then(|v| Ticket::open(jar, v))
                    .is_some_and(|t| t.id == session.id)
                {
                    Vec::new()
                } else {
                    self.cookie(jar, &ticket, cookies)?
                },
            );
        }
        self.index(session).await.map_err(SessionError::from)?;
        self.cookie(jar, &ticket, cookies)
    }

    /// The ticket's cookie, and removals of any chunked cookie-store session left over.
    fn cookie(
        &self,
        jar: &CookieJar,
        ticket: &Ticket,
        cookies: &RequestCookies<'_>,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let value = ticket.seal(jar).ok_or(SessionError::Seal)?;
        let name = jar.cookie_name().to_string();
        let mut out: Vec<HeaderValue> = jar
            .session_cookie(name.clone(), value)
            .into_iter()
            .collect();
        for old in cookies.names() {
            if old != name && super::chunks::is_session_cookie(&name, old) {
                out.extend(jar.removal(old));
            }
        }
        Ok(out)
    }

    /// Updates a stored session with what this replica knows of it (when it was last
    /// used), only while the entry holds the same tokens as `session`: the caller read it
    /// earlier (from its one-second cache, say), and another replica may have refreshed
    /// it since; writing the read copy back would put a spent refresh token over the
    /// rotated one. A compare-and-set on the sealed bytes just read, so no refresh slips
    /// in between. `Ok(false)`: the tokens changed, the newer entry is left as it is.
    async fn touch(&self, ticket: &Ticket, session: &Session) -> Result<bool, SessionError> {
        let key = self.entry_key(&session.id);
        let raw: Option<Vec<u8>> = self
            .redis
            .call(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| self.unavailable(&e))?;
        let current = raw.as_ref().and_then(|raw| {
            let plain = ticket.open_entry(&self.sealing().keys, &key, raw)?;
            serde_json::from_slice::<Session>(&plain).ok()
        });
        let (Some(raw), Some(current)) = (raw, current) else {
            return Err(SessionError::Ended);
        };
        if !same_tokens(&current, session) {
            return Ok(false);
        }
        let mut touched = session.clone();
        touched.seen = touched.seen.max(current.seen);
        let plain = serde_json::to_vec(&touched).map_err(|_| SessionError::Seal)?;
        let sealed = ticket
            .seal_entry(&self.sealing().keys, &key, &plain)
            .ok_or(SessionError::Seal)?;
        let mut swap = redis::cmd("EVAL");
        swap.arg(SWAP)
            .arg(1)
            .arg(&key)
            .arg(raw)
            .arg(sealed)
            .arg(self.end_ms(session));
        let swapped: i64 = self
            .redis
            .call(&swap)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(swapped == 1)
    }

    async fn write(
        &self,
        ticket: &Ticket,
        session: &Session,
        update: bool,
    ) -> Result<(), SessionError> {
        let key = self.entry_key(&session.id);
        let plain = serde_json::to_vec(session).map_err(|_| SessionError::Seal)?;
        let sealed = ticket
            .seal_entry(&self.sealing().keys, &key, &plain)
            .ok_or(SessionError::Seal)?;
        let end = self.end_ms(session);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(sealed.as_slice()).arg("PXAT").arg(end);
        if update {
            set.arg("XX");
        }
        let written: Option<String> = self
            .redis
            .call(&set)
            .await
            .map_err(|e| self.unavailable(&e))?;
        if update && written.is_none() {
            return Err(SessionError::Ended);
        }
        Ok(())
    }

    /// Records a new session under its user and provider session.
    async fn index(&self, s: &Session) -> Result<(), Unavailable> {
        let sealing = self.sealing();
        let Some(first) = sealing.keys.first() else {
            return Ok(());
        };
        let member = format!("{}:{}", s.id, s.created_at);
        let ttl = i64::try_from(sealing.lifetime.as_secs()).unwrap_or(i64::MAX);
        let mut sets = vec![self.index_key("u", &s.identity.sub, first)];
        if let Some(sid) = &s.sid {
            sets.push(self.index_key("p", sid, first));
        }
        for set in sets {
            let _: i64 = self
                .redis
                .call(redis::cmd("SADD").arg(&set).arg(&member))
                .await
                .map_err(|e| self.unavailable(&e))?;
            let _: i64 = self
                .redis
                .call(redis::cmd("EXPIRE").arg(&set).arg(ttl))
                .await
                .map_err(|e| self.unavailable(&e))?;
        }
        Ok(())
    }

    /// The ids in the index sets of `kind`/`value` (under every cookie key), with their
    /// start times.
    async fn indexed(&self, kind: &str, value: &str) -> Result<Vec<(String, u64)>, Unavailable> {
        let mut out = Vec::new();
        let sealing = self.sealing();
        for k in &sealing.keys {
            let set = self.index_key(kind, value, k);
            let members: Vec<String> = self
                .redis
                .call(redis::cmd("SMEMBERS").arg(&set))
                .await
                .map_err(|e| self.unavailable(&e))?;
            for m in members {
                if let Some((id, at)) = m.rsplit_once(':') {
                    out.push((id.to_string(), at.parse().unwrap_or(0)));
                }
            }
        }
        Ok(out)
    }

    /// Every session id of user `sub`.
    pub async fn sessions_of_user(&self, sub: &str) -> Result<Vec<String>, Unavailable> {
        Ok(self
            .indexed("u", sub)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The sessions a back-channel logout names, begun at or before `before`: those of
    /// provider session `sid`; or, with only `sub`, that user's.
    pub async fn sessions_matching(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        before: u64,
    ) -> Result<Vec<String>, Unavailable> {
        match (sid, sub) {
            (Some(sid), _) => Ok(self
                .indexed("p", sid)
                .await?
                .into_iter()
                .filter(|(_, at)| *at <= before)
                .map(|(id, _)| id)
                .collect()),
            (None, Some(sub)) => Ok(self
                .indexed("u", sub)
                .await?
                .into_iter()
                .filter(|(_, at)| *at <= before)
                .map(|(id, _)| id)
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Deletes sessions and tells every replica.
    pub async fn end(&self, ids: &[String]) -> Result<(), Unavailable> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.entry_key(id)).collect();
        // One DEL per key: in a Cluster the keys live in different slots.
        for k in &keys {
            let _: i64 = self
                .redis
                .call(redis::cmd("DEL").arg(k))
                .await
                .map_err(|e| self.unavailable(&e))?;
        }
        cache::forget_all();
        let _: i64 = self
            .redis
            .call(redis::cmd("PUBLISH").arg(self.channel()).arg(ids.join(",")))
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(())
    }

    /// The ids among `ids` whose sessions are no longer stored (ended, or expired).
    pub async fn ended_among(&self, ids: &[String]) -> Result<Vec<String>, Unavailable> {
        let mut gone = Vec::new();
        // One EXISTS per key: in a Cluster the keys live in different slots.
        for id in ids {
            let n: i64 = self
                .redis
                .call(redis::cmd("EXISTS").arg(self.entry_key(id)))
                .await
                .map_err(|e| self.unavailable(&e))?;
            if n == 0 {
                gone.push(id.clone());
            }
        }
        Ok(gone)
    }

    /// True the first time `key` is recorded before `until`.
    pub async fn first_use(&self, key: &str, until: u64) -> Result<bool, Unavailable> {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let hex: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let k = format!("{}j:{hex}", self.prefix);
        let until_ms =
            i64::try_from(until.max(now_secs() + 1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let set: Option<String> = self
            .redis
            .call(
                redis::cmd("SET")
                    .arg(&k)
                    .arg("1")
                    .arg("PXAT")
                    .arg(until_ms)
                    .arg("NX"),
            )
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(set.is_some())
    }

    /// Waits for this replica's turn to refresh `old`: takes the session's refresh lock,
    /// or waits for the holder's result. `Done` when the stored session no longer holds
    /// `old`'s refresh token (another replica refreshed it); `Ended` when it is gone.
    pub async fn refresh_turn(&self, old: &Session) -> Result<RefreshTurn, Unavailable> {
        let Some(ticket) = old.ticket.clone() else {
            return Ok(RefreshTurn::Mine(None));
        };
        let started = Instant::now();
        loop {
            let lease = Lease::try_take(&self.redis, self.lock_key(&old.id))
                .await
                .map_err(|e| self.unavailable(&e))?;
            // Read after taking the lock: a holder writes before it releases. A lock
            // taken for a read that failed is freed, not left to run out.
            let current = match self.fetch(&ticket).await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(lease) = lease {
                        lease.release().await;
                    }
                    return Err(e);
                }
            };
            let state = match current {
                None => Some(RefreshTurn::Ended),
                Some(s) if s.refresh_token != old.refresh_token => {
                    Some(RefreshTurn::Done(Box::new(s)))
                }
                Some(_) => None,
            };
            match (lease, state) {
                (Some(lease), None) => return Ok(RefreshTurn::Mine(Some(lease))),
                (Some(lease), Some(state)) => {
                    lease.release().await;
                    return Ok(state);
                }
                (None, Some(state)) => return Ok(state),
                (None, None) => {}
            }
            if started.elapsed() > self.wait_for_refresh {
                return Err(Unavailable(format!(
                    "another gatehouse replica has held this session's refresh lock for {} s",
                    started.elapsed().as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends a refresh: writes the new session (or, when the provider refused the refresh
    /// token, deletes the session, which is over), then frees the lock.
    pub async fn finish_refresh(
        &self,
        lease: Lease,
        fresh: Option<&Session>,
        refused: bool,
        old: &Session,
    ) -> Result<(), Unavailable> {
        let result = match (fresh, &old.ticket) {
            (Some(s), Some(t)) => match self.write(t, s, true).await {
                Ok(()) | Err(SessionError::Ended) => Ok(()),
                Err(SessionError::Unavailable(u)) => Err(u),
                Err(_) => Ok(()),
            },
            (None, _) if refused => self.end(std::slice::from_ref(&old.id)).await,
            _ => Ok(()),
        };
        lease.release().await;
        result
    }
}

/// `text`, and ` (connecting, it said: <error>)` when a connection attempt failed since the
/// last answered PING and `text` does not say so already.
fn with_refusal(text: String, redis: &Redis) -> String {
    match redis.refusal() {
        Some(r) if !text.contains(&r) => format!("{text} (connecting, it said: {r})"),
        _ => text,
    }
}

/// The text of a message on `channel`, from a RESP3 push.
fn message(push: &PushInfo, channel: &str) -> Option<String> {
    if push.kind != PushKind::Message {
        return None;
    }
    let [from, payload] = push.data.as_slice() else {
        return None;
    };
    let from: String = redis::from_redis_value(from).ok()?;
    if from != channel {
        return None;
    }
    redis::from_redis_value(payload).ok()
}
