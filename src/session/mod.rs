//! Sessions: what a signed-in browser holds, and the store that keeps it.
//!
//! [`SessionStore`] is the one interface the auth step and the HTTP layer use, with two
//! stores chosen once at start-up: the cookie store (the whole session AEAD-sealed and
//! chunked into the cookie: `sealed.rs`, `codec.rs`, `chunks.rs`, plus this replica's
//! revocation list, `revoked.rs`) and the redis store (the cookie carries a ticket,
//! `ticket.rs`; the session is sealed in Redis under a key only the ticket opens:
//! `redis/`). Logins in progress are always cookies (`jar.rs`).

mod cache;
pub mod chunks;
pub mod codec;
pub mod compress;
mod jar;
pub mod redis;
mod revoked;
mod sealed;
mod ticket;

use crate::config::{CookieSettings, StoreSettings};
use crate::identity::Identity;
use crate::metrics::{store_op, EndCause, StoreOp};
use axum::http::HeaderValue;
pub use chunks::{CookieRewrite, RequestCookies};
pub use jar::{CookieJar, HEADER_LIMIT_WARNING};
use revoked::Revocations;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
pub use ticket::Ticket;

/// A logged-in session.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Random id; refreshes are coordinated per id.
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "u")]
    pub identity: Identity,
    #[serde(rename = "t")]
    pub id_token: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Kept only when it is forwarded upstream.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When the first token forwarded upstream expires (Unix seconds): the ID token, the
    /// verified access token or `expires_in`, whichever is earliest (`auth::tokens`).
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// When the user logged in (Unix seconds); bounds the session's lifetime.
    #[serde(rename = "c")]
    pub created_at: u64,
    /// The provider's session id (the ID token's `sid`), for back-channel logout.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// When the session was last used, to the minute or so (Unix seconds; 0: not
    /// recorded); `session_idle_timeout_secs` ends a session unused for longer.
    #[serde(rename = "l", default)]
    pub seen: u64,
    /// The redis store's ticket this session was opened with (never stored).
    #[serde(skip)]
    pub ticket: Option<Ticket>,
    /// Header values built from this session, once (not stored in the cookie).
    #[serde(skip)]
    pub values: std::sync::OnceLock<crate::headers::IdentityValues>,
    /// The ID token's claims, decoded on first use (rules that read claims need them).
    #[serde(skip)]
    pub claims: std::sync::OnceLock<serde_json::Value>,
}

impl Session {
    /// The identity header values for `names`: built on first use and kept with the
    /// session; built for this request alone when the kept ones were chosen for another
    /// token setting (a route's own `pass_authorization`, or one a reload changed).
    pub fn values(
        &self,
        names: &crate::config::HeaderNames,
    ) -> std::borrow::Cow<'_, crate::headers::IdentityValues> {
        let build = || {
            crate::headers::IdentityValues::new(
                names,
                &self.identity,
                &self.id_token,
                self.access_token.as_deref(),
            )
        };
        let kept = self.values.get_or_init(build);
        match kept.fits(names) {
            true => std::borrow::Cow::Borrowed(kept),
            false => std::borrow::Cow::Owned(build()),
        }
    }
}

impl Session {
    /// The ID token's claims. The token was verified before this session was sealed, and
    /// the seal authenticates it since, so its payload is read without checking again.
    pub fn claims(&self) -> &serde_json::Value {
        self.claims.get_or_init(|| {
            crate::oidc::verify::payload(&self.id_token).unwrap_or(serde_json::Value::Null)
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.identity.user)
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A login in progress, between `/oauth2/start` and `/oauth2/callback`.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub pkce_verifier: String,
    /// Where to go afterwards (already validated).
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "c")]
    pub created_at: u64,
}

/// Why a session could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session is {bytes} bytes once sealed, more than {max} bytes of cookies")]
    TooLarge { bytes: usize, max: usize },
    #[error("the session could not be sealed")]
    Seal,
    #[error("the session store is unavailable: {0}")]
    Unavailable(#[from] Unavailable),
    #[error("the session was ended meanwhile")]
    Ended,
}

/// What ended: sessions by id (sign-out, sign-out everywhere, a refresh the provider
/// refused), or whatever matches a back-channel logout: the sessions that began at or
/// before `before` with the provider's `sid`, or, with only `sub`, of that user. A session
/// begun later is a new sign-in (a provider may keep its `sid` when it signed the user out
/// of this client only) and lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Sessions(Vec<String>),
    Matching {
        sid: Option<String>,
        sub: Option<String>,
        before: u64,
    },
}

impl Ended {
    /// Whether `session` (its id, provider session id, subject and start) is among these.
    pub fn covers(&self, id: &str, sid: Option<&str>, sub: &str, created_at: u64) -> bool {
        match self {
            Ended::Sessions(ids) => ids.iter().any(|i| i == id),
            Ended::Matching {
                sid: Some(s),
                before,
                ..
            } => sid == Some(s.as_str()) && created_at <= *before,
            Ended::Matching {
                sid: None,
                sub: Some(u),
                before,
            } => sub == u && created_at <= *before,
            Ended::Matching { .. } => false,
        }
    }
}

/// Which store keeps the sessions.
enum Backend {
    /// Sealed in the cookie (`sealed.rs`), with this replica's revocation list.
    Cookie(Revocations),
    /// In Redis or Valkey; the cookie carries a ticket (`redis/`).
    Redis(redis::RedisStore),
}

/// A session for unit tests: alice (`sub` u1), ID token `t`, no refresh or access token,
/// expiring at 10; change what a test needs with `Session { .., ..Session::sample() }`.
#[cfg(test)]
impl Session {
    pub(crate) fn sample() -> Session {
        Session {
            id: "sid".into(),
            identity: Identity {
                sub: "u1".into(),
                user: "alice".into(),
                ..Identity::default()
            },
            id_token: "t".into(),
            refresh_token: None,
            access_token: None,
            expires_at: 10,
            created_at: 1,
            sid: None,
            seen: 0,
            ticket: None,
            values: Default::default(),
            claims: Default::default(),
        }
    }
}

/// Keeps sessions and logins in progress: the one interface the auth step and the HTTP
/// layer use, whichever store was chosen at start-up.
pub struct SessionStore {
    jar: CookieJar,
    /// Shared with the copies a configuration reload makes (`reconfigured`).
    backend: Arc<Backend>,
    /// Every session end this replica hears of (its own, and with Redis the other
    /// replicas'), for the HTTP layer to close the WebSockets those sessions opened.
    ended: tokio::sync::broadcast::Sender<Ended>,
}

/// A store that cannot answer: sessions cannot be read or written now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

impl SessionStore {
    /// The cookie store.
    pub fn new(settings: CookieSettings) -> SessionStore {
        SessionStore::with_backend(settings, Backend::Cookie(Revocations::default()))
    }

    /// The store `cfg` asks for. The redis client connects in the background; until it
    /// does, requests that need a session are answered 503 (`Unavailable`).
    pub fn for_config(cfg: &crate::config::Config) -> Result<SessionStore, String> {
        let backend = match &cfg.session_store {
            StoreSettings::Cookie => Backend::Cookie(Revocations::default()),
            StoreSettings::Redis(r) => Backend::Redis(redis::RedisStore::new(r, cfg)?),
        };
        Ok(SessionStore::with_backend(cfg.cookie.clone(), backend))
    }

    fn with_backend(settings: CookieSettings, backend: Backend) -> SessionStore {
        let (ended, _) = tokio::sync::broadcast::channel(256);
        // Redis answers once its health check says so (`redis/mod.rs`).
        let cookie = matches!(backend, Backend::Cookie(_));
        crate::metrics::session_store_up(if cookie { "cookie" } else { "redis" }, cookie);
        SessionStore {
            jar: CookieJar::new(settings),
            backend: Arc::new(backend),
            ended,
        }
    }

    /// The store with `cfg`'s cookie settings (name, keys, lifetimes), keeping this one's
    /// sessions: the same Redis connections, revocation list and ended-session channel. A
    /// rotated cookie secret seals with the new key and still opens with the old ones. The
    /// store kind is fixed while running (`config/reload.rs`).
    pub fn reconfigured(&self, cfg: &crate::config::Config) -> SessionStore {
        if let Backend::Redis(r) = &*self.backend {
            r.reseal(cfg);
        }
        SessionStore {
            jar: CookieJar::new(cfg.cookie.clone()),
            backend: Arc::clone(&self.backend),
            ended: self.ended.clone(),
        }
    }

    /// Starts what the store runs in the background (Redis: connecting, health checks, the
    /// subscription to other replicas' session ends). Call once, on a long-lived runtime.
    pub fn start(&self) {
        if let Backend::Redis(r) = &*self.backend {
            r.start(self.ended.clone());
        }
    }

    /// Session ends, as they are heard of.
    pub fn subscribe_ended(&self) -> tokio::sync::broadcast::Receiver<Ended> {
        self.ended.subscribe()
    }

    /// `Some(cause)` while the store cannot be reached (for `/readyz`).
    pub fn down(&self) -> Option<String> {
        match &*self.backend {
            Backend::Cookie(_) => None,
            Backend::Redis(r) => r.down(),
        }
    }

    /// A short name for pages and logs: `cookie` or `redis`.
    pub fn kind(&self) -> &'static str {
        match &*self.backend {
            Backend::Cookie(_) => "cookie",
            Backend::Redis(_) => "redis",
        }
    }

    /// Whether sessions live server-side, shared by every replica.
    pub fn shared(&self) -> bool {
        matches!(*self.backend, Backend::Redis(_))
    }

    pub fn cookie_name(&self) -> &str {
        self.jar.cookie_name()
    }

    /// The request's session, if it carries one that opens and was not ended.
    ///
    /// The redis store's calls below Redis are boxed (here and in `redis/mod.rs`): a
    /// redis-rs call's future is kilobytes, and inline it would make the future of every
    /// request, the cookie store's included, that much bigger to move (measured: 47 061
    /// instructions a request with the cookie store, 35 524 boxed; bench/instructions.sh).
    pub async fn load(
        &self,
        cookies: &RequestCookies<'_>,
    ) -> Result<Option<Arc<Session>>, Unavailable> {
        let loaded = match &*self.backend {
            Backend::Cookie(revoked) => {
                Ok(sealed::load(&self.jar, cookies).filter(|s| !revoked.ended(s)))
            }
            Backend::Redis(r) => r.load(&self.jar, cookies).await,
        };
        store_op(StoreOp::Load, loaded)
    }

    /// Stores `session`; returns the `Set-Cookie` values the response must carry (none
    /// with Redis when the request already holds this session's ticket).
    pub async fn save(
        &self,
        session: &Session,
        cookies: &RequestCookies<'_>,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let saved = match &*self.backend {
            Backend::Cookie(_) => sealed::save(&self.jar, session, cookies),
            Backend::Redis(r) => Box::pin(r.save(&self.jar, session, cookies)).await,
        };
        store_op(StoreOp::Save, saved)
    }

    /// What a refreshed session needs in the response. The redis store wrote it while
    /// holding the refresh lock (`refresh_turn`), so nothing is left to do.
    pub async fn after_refresh(
        &self,
        session: &Session,
        cookies: &RequestCookies<'_>,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        match &*self.backend {
            Backend::Cookie(_) => sealed::save(&self.jar, session, cookies),
            Backend::Redis(_) => Ok(Vec::new()),
        }
    }

    /// Waits for this replica's turn to refresh `old` (Redis: one refresh per session
    /// across every replica). See [`RefreshTurn`].
    pub async fn refresh_turn(&self, old: &Session) -> Result<RefreshTurn, Unavailable> {
        let turn = match &*self.backend {
            Backend::Cookie(_) => Ok(RefreshTurn::Mine(None)),
            Backend::Redis(r) => Box::pin(r.refresh_turn(old)).await,
        };
        store_op(StoreOp::RefreshTurn, turn)
    }

    /// Records the outcome of a refresh made in this replica's turn (Redis: writes the
    /// new session, or ends the session when the provider refused its refresh token, then
    /// frees the lock).
    pub async fn finish_refresh(
        &self,
        lease: Option<redis::Lease>,
        old: &Session,
        fresh: Option<&Session>,
        refused: bool,
    ) -> Result<(), Unavailable> {
        if refused {
            crate::metrics::session_ended(EndCause::RefreshRefused);
        }
        let finished = match (&*self.backend, lease) {
            (Backend::Redis(r), Some(lease)) => {
                Box::pin(r.finish_refresh(lease, fresh, refused, old)).await
            }
            _ => Ok(()),
        };
        store_op(StoreOp::FinishRefresh, finished)
    }

    /// Ends one session everywhere the store reaches; returns the `Set-Cookie` values that
    /// clear the request's session cookies.
    pub async fn end(
        &self,
        session: &Session,
        cookies: &RequestCookies<'_>,
    ) -> Result<Vec<HeaderValue>, Unavailable> {
        crate::metrics::session_ended(EndCause::SignOut);
        self.end_all(
            Ended::Sessions(vec![session.id.clone()]),
            session_end(&self.jar, session),
        )
        .await?;
        Ok(self.clear(cookies))
    }

    /// Ends every session of `session`'s user (sign out everywhere); returns how many.
    pub async fn end_user(&self, session: &Session) -> Result<usize, Unavailable> {
        crate::metrics::session_ended(EndCause::SignOutEverywhere);
        let ended = match &*self.backend {
            Backend::Cookie(_) => Ended::Matching {
                sid: None,
                sub: Some(session.identity.sub.clone()),
                before: crate::util::now_secs(),
            },
            Backend::Redis(r) => Ended::Sessions(store_op(
                StoreOp::Lookup,
                r.sessions_of_user(&session.identity.sub).await,
            )?),
        };
        let n = match &ended {
            Ended::Sessions(ids) => ids.len(),
            Ended::Matching { .. } => 1,
        };
        let until =
            crate::util::now_secs().saturating_add(self.jar.settings.session_lifetime.as_secs());
        self.end_all(ended, until).await?;
        Ok(n)
    }

    /// Ends what a back-channel logout names; returns how many sessions (Redis) or 0
    /// (cookie store: remembered in this replica's revocation list, count unknown).
    pub async fn end_matching(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        before: u64,
    ) -> Result<usize, Unavailable> {
        crate::metrics::session_ended(EndCause::Backchannel);
        let until =
            crate::util::now_secs().saturating_add(self.jar.settings.session_lifetime.as_secs());
        let matching = Ended::Matching {
            sid: sid.map(str::to_string),
            sub: sub.map(str::to_string),
            before,
        };
        match &*self.backend {
            Backend::Cookie(_) => {
                self.end_all(matching, until).await?;
                Ok(0)
            }
            Backend::Redis(r) => {
                let ids = store_op(StoreOp::Lookup, r.sessions_matching(sid, sub, before).await)?;
                let n = ids.len();
                self.end_all(Ended::Sessions(ids), until).await?;
                Ok(n)
            }
        }
    }

    /// The sessions among `ids` that ended elsewhere (Redis: no longer stored), so the
    /// WebSockets they opened close even if the message about them was missed. The
    /// cookie store knows of no end it was not told about: none.
    pub async fn ended_among(&self, ids: &[String]) -> Result<Vec<String>, Unavailable> {
        match &*self.backend {
            Backend::Cookie(_) => Ok(Vec::new()),
            Backend::Redis(r) => store_op(StoreOp::Lookup, r.ended_among(ids).await),
        }
    }

    /// True the first time `key` (an issuer's logout token `jti`) is seen before `until`
    /// (Unix seconds); false for a replay.
    pub async fn first_use(&self, key: &str, until: u64) -> Result<bool, Unavailable> {
        match &*self.backend {
            Backend::Cookie(revoked) => Ok(revoked.first_use(key, until)),
            Backend::Redis(r) => store_op(StoreOp::Lookup, r.first_use(key, until).await),
        }
    }

    async fn end_all(&self, ended: Ended, until: u64) -> Result<(), Unavailable> {
        match &*self.backend {
            Backend::Cookie(revoked) => {
                revoked.add(&ended, until);
                let _ = self.ended.send(ended);
            }
            // Other replicas (and this one) hear of it through the subscription; this
            // replica's own listeners are told at once as well.
            Backend::Redis(r) => {
                if let Ended::Sessions(ids) = &ended {
                    store_op(StoreOp::End, r.end(ids).await)?;
                }
                let _ = self.ended.send(ended);
            }
        }
        Ok(())
    }

    /// `Set-Cookie` values that remove every session cookie the request carried.
    pub fn clear(&self, cookies: &RequestCookies<'_>) -> Vec<HeaderValue> {
        self.jar.clear(cookies)
    }

    /// Seals a login in progress; returns its `Set-Cookie`.
    pub fn start_login(&self, login: &LoginState) -> Result<HeaderValue, SessionError> {
        self.jar.start_login(login)
    }

    /// Finds the login for `state` (and the `Set-Cookie` that removes its cookie).
    pub fn finish_login(
        &self,
        cookies: &RequestCookies<'_>,
        state: &str,
    ) -> (Option<LoginState>, Option<HeaderValue>) {
        self.jar.finish_login(cookies, state)
    }

    /// True when the request carries any login-in-progress cookie.
    pub fn has_login_cookie(&self, cookies: &RequestCookies<'_>) -> bool {
        self.jar.has_login_cookie(cookies)
    }

    /// True for any cookie gatehouse owns (removed before requests go upstream).
    pub fn owns_cookie(&self, name: &str) -> bool {
        self.jar.owns_cookie(name)
    }
}

/// When a session could end at the latest: entries about it are kept until then.
fn session_end(jar: &CookieJar, s: &Session) -> u64 {
    s.created_at
        .saturating_add(jar.settings.session_lifetime.as_secs())
        .max(s.expires_at)
}

/// Whose turn it is to refresh a session.
pub enum RefreshTurn {
    /// This replica's: call the provider, then [`SessionStore::finish_refresh`] with the
    /// lease (Redis) so the others see the result.
    Mine(Option<redis::Lease>),
    /// Another replica refreshed it meanwhile: here is the result.
    Done(Box<Session>),
    /// The session was ended meanwhile (signed out, or its refresh was refused).
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CookieKey;
    use std::time::Duration;

    fn store() -> SessionStore {
        SessionStore::new(CookieSettings {
            name: "_gh".into(),
            secure: true,
            domain: None,
            login_path: "/oauth2/callback".into(),
            keys: vec![CookieKey::derive(&crate::config::secret::generate()).unwrap()],
            session_lifetime: Duration::from_secs(3600),
            idle_timeout: None,
            login_timeout: Duration::from_secs(600),
        })
    }

    /// A session whose ID token is `token_len` random base64url characters: sessions are
    /// compressed before sealing, so a repeated character would shrink to nothing.
    fn session(token_len: usize) -> Session {
        let mut id_token = crate::util::random_token(token_len);
        id_token.truncate(token_len);
        Session {
            id_token,
            refresh_token: Some("r".into()),
            ..Session::sample()
        }
    }

    fn as_request_header(set_cookies: &[HeaderValue]) -> String {
        set_cookies
            .iter()
            .map(|h| h.to_str().unwrap().split(';').next().unwrap().to_string())
            .filter(|p| !p.ends_with('='))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[tokio::test]
    async fn big_sessions_round_trip_in_chunks_and_shrinking_clears_old_chunks() {
        let s = store();
        let none = RequestCookies::default();
        let set = s.save(&session(9000), &none).await.unwrap();
        assert!(set.len() >= 3, "expected chunks, got {}", set.len());
        for h in &set {
            let v = h.to_str().unwrap();
            assert!(
                v.len() < 4096
                    && v.contains("HttpOnly")
                    && v.contains("Secure")
                    && v.contains("SameSite=Lax"),
                "{v}"
            );
        }
        let header = as_request_header(&set);
        let cookies = RequestCookies::parse([header.as_str()]);
        let back = s.load(&cookies).await.unwrap();
        assert_eq!(back.unwrap().id_token.len(), 9000);
        // A smaller session replaces the chunks with one cookie and expires the rest.
        let set2 = s.save(&session(10), &cookies).await.unwrap();
        let removed = set2
            .iter()
            .filter(|h| h.to_str().unwrap().contains("Max-Age=0"))
            .count();
        assert!(removed >= 3, "{set2:?}");
    }

    #[tokio::test]
    async fn a_session_too_big_for_cookies_is_an_error_not_a_truncation() {
        let err = store()
            .save(&session(40_000), &RequestCookies::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::TooLarge { .. }));
    }

    #[test]
    fn login_cookie_only_opens_for_its_state() {
        let s = store();
        let login = LoginState {
            state: "abcDEF123456xyz".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/".into(),
            created_at: 1,
        };
        let set = s.start_login(&login).unwrap();
        let header = as_request_header(&[set]);
        let cookies = RequestCookies::parse([header.as_str()]);
        assert!(s.finish_login(&cookies, "abcDEF123456xyz").0.is_some());
        assert!(s.finish_login(&cookies, "abcDEF123456other").0.is_none());
        assert!(s.has_login_cookie(&cookies));
    }

    /// A back-channel logout ends the sessions with that provider session (or user) that
    /// began by the logout; a later sign-in that kept the provider's `sid` (a provider
    /// that signed the user out of this client only) is a new session and lives on.
    #[tokio::test]
    async fn a_back_channel_logout_ends_sessions_begun_by_it_not_later_ones() {
        let s = store();
        let saved = |sid: &str, sub: &str, created_at: u64| {
            let mut x = session(10);
            x.id = format!("{sid}-{created_at}");
            x.sid = Some(sid.into());
            x.identity.sub = sub.into();
            x.created_at = created_at;
            x
        };
        let cookies_of = |sess: &Session| {
            let set = sealed::save(&s.jar, sess, &RequestCookies::default()).unwrap();
            as_request_header(&set)
        };
        let before = cookies_of(&saved("s1", "u1", 100));
        let later = cookies_of(&saved("s1", "u1", 200));
        let other = cookies_of(&saved("s2", "u2", 100));
        let open = |h: &str| {
            let h = h.to_string();
            let s = &s;
            async move {
                s.load(&RequestCookies::parse([h.as_str()]))
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        s.end_matching(Some("s1"), Some("u1"), 150).await.unwrap();
        assert!(!open(&before).await, "begun before the logout: ended");
        assert!(
            open(&later).await,
            "a later sign-in with the same sid lives"
        );
        assert!(open(&other).await);
        let by_sub = cookies_of(&saved("s3", "u2", 120));
        s.end_matching(None, Some("u2"), 110).await.unwrap();
        assert!(!open(&other).await, "u2's session begun at 100 ended");
        assert!(open(&by_sub).await, "u2's session begun at 120 lives");
        let ended = Ended::Matching {
            sid: Some("s1".into()),
            sub: None,
            before: 150,
        };
        assert!(ended.covers("x", Some("s1"), "u1", 150));
        assert!(!ended.covers("x", Some("s1"), "u1", 151));
        assert!(!ended.covers("x", Some("s2"), "u1", 100));
    }

    #[test]
    fn debug_hides_tokens() {
        let s = session(40);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&s.id_token), "{dbg}");
    }
}
