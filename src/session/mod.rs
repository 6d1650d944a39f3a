//! Sessions: what a logged-in browser carries, and the store that keeps it.
//!
//! [`SessionStore`] is the one interface the request path uses (async, so a server-side
//! store such as Redis can sit behind it later); today it keeps the whole session in the
//! AEAD-sealed, chunked cookie (`codec.rs`, `chunks.rs`). The login in progress (state,
//! nonce, PKCE verifier, return target) is kept in a short-lived sealed cookie of its own,
//! one per login so that two tabs logging in at once do not clobber each other.

mod cache;
pub mod chunks;
pub mod codec;

use crate::config::CookieSettings;
use crate::identity::Identity;
use axum::http::HeaderValue;
pub use chunks::{CookieRewrite, RequestCookies};
use codec::CookieCodec;
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// Header values built from this session, once (not stored in the cookie).
    #[serde(skip)]
    pub values: std::sync::OnceLock<crate::headers::IdentityValues>,
    /// The ID token's claims, decoded on first use (rules that read claims need them).
    #[serde(skip)]
    pub claims: std::sync::OnceLock<serde_json::Value>,
}

impl Session {
    /// The identity header values for this session, built on first use.
    pub fn values(&self, names: &crate::config::HeaderNames) -> &crate::headers::IdentityValues {
        self.values.get_or_init(|| {
            crate::headers::IdentityValues::new(
                names,
                &self.identity,
                &self.id_token,
                self.access_token.as_deref(),
            )
        })
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
}

/// Keeps sessions and logins in progress.
pub struct SessionStore {
    codec: CookieCodec,
    settings: CookieSettings,
    /// The session cookie's name: `__Host-<cookie_name>` when cookies are Secure and
    /// host-only (the browser then refuses it from a subdomain or over http), else as set.
    session_name: String,
    /// Login-state cookies' name stem: `__Secure-<cookie_name>` when Secure. They are
    /// scoped to the callback path, so `__Host-` (which demands `Path=/`) cannot apply.
    login_name: String,
    /// Distinguishes stores (and so keys) in the per-thread cache of opened sessions.
    id: u64,
}

/// Sealed sessions beyond this many bytes trip common 8 KB header limits in front proxies.
pub const HEADER_LIMIT_WARNING: usize = 7 * 1024;

impl SessionStore {
    pub fn new(settings: CookieSettings) -> SessionStore {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let prefix = match (settings.secure, &settings.domain) {
            (true, None) => "__Host-",
            (true, Some(_)) => "__Secure-",
            (false, _) => "",
        };
        let login_prefix = if settings.secure { "__Secure-" } else { "" };
        SessionStore {
            codec: CookieCodec::new(&settings.keys),
            session_name: format!("{prefix}{}", settings.name),
            login_name: format!("{login_prefix}{}", settings.name),
            settings,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.session_name
    }

    fn login_purpose(&self) -> String {
        format!("{}_login", self.login_name)
    }

    fn login_cookie_name(&self, state: &str) -> String {
        let tag: String = state
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("{}_login_{tag}", self.login_name)
    }

    /// Reads the session, if the request carries one that opens. Bad input is `None`.
    pub async fn load(&self, cookies: &RequestCookies<'_>) -> Option<Arc<Session>> {
        let sealed = chunks::join(cookies, &self.session_name)?;
        if let Some(hit) = cache::get(self.id, &sealed) {
            return Some(hit);
        }
        let plain = self.codec.open(&self.session_name, &sealed)?;
        let session = Arc::new(serde_json::from_slice::<Session>(&plain).ok()?);
        cache::put(self.id, &sealed, &session);
        Some(session)
    }

    /// `Set-Cookie` values that store `session`, clearing chunks it no longer uses.
    pub async fn save(
        &self,
        session: &Session,
        cookies: &RequestCookies<'_>,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let plain = serde_json::to_vec(session).map_err(|_| SessionError::Seal)?;
        let sealed = self
            .codec
            .seal(&self.session_name, &plain)
            .map_err(|_| SessionError::Seal)?;
        if sealed.len() > HEADER_LIMIT_WARNING {
            tracing::warn!(
                bytes = sealed.len(),
                "the session cookie is large: proxies in front of gatehouse with 8 KB header limits (nginx's default) may refuse requests; request fewer claims or scopes"
            );
        }
        let max = chunks::CHUNK_LEN * chunks::MAX_CHUNKS;
        let parts = chunks::split(&self.session_name, &sealed).ok_or(SessionError::TooLarge {
            bytes: sealed.len(),
            max,
        })?;
        let max_age = cookie::time::Duration::seconds(
            i64::try_from(self.settings.session_lifetime.as_secs()).unwrap_or(i64::MAX),
        );
        let mut out: Vec<HeaderValue> = parts
            .iter()
            .filter_map(|(n, v)| self.cookie(n.clone(), v.clone(), Some(max_age)))
            .collect();
        for old in cookies.names() {
            if chunks::is_session_cookie(&self.session_name, old)
                && !parts.iter().any(|(n, _)| n == old)
            {
                out.extend(self.removal(old));
            }
        }
        Ok(out)
    }

    /// `Set-Cookie` values that remove every session cookie the request carried.
    pub fn clear(&self, cookies: &RequestCookies<'_>) -> Vec<HeaderValue> {
        cookies
            .names()
            .filter(|n| chunks::is_session_cookie(&self.session_name, n))
            .filter_map(|n| self.removal(n))
            .collect()
    }

    /// Seals a login in progress; returns its `Set-Cookie`.
    pub fn start_login(&self, login: &LoginState) -> Result<HeaderValue, SessionError> {
        let plain = serde_json::to_vec(login).map_err(|_| SessionError::Seal)?;
        let sealed = self
            .codec
            .seal(&self.login_purpose(), &plain)
            .map_err(|_| SessionError::Seal)?;
        let max_age = cookie::time::Duration::seconds(
            i64::try_from(self.settings.login_timeout.as_secs()).unwrap_or(600),
        );
        self.login_cookie(self.login_cookie_name(&login.state), sealed, max_age)
            .ok_or(SessionError::Seal)
    }

    /// Finds the login for `state`: the sealed cookie must open and carry that exact state.
    /// Also returns the `Set-Cookie` that removes it.
    pub fn finish_login(
        &self,
        cookies: &RequestCookies<'_>,
        state: &str,
    ) -> (Option<LoginState>, Option<HeaderValue>) {
        let name = self.login_cookie_name(state);
        let Some(sealed) = cookies.get(&name) else {
            return (None, None);
        };
        let login = self
            .codec
            .open(&self.login_purpose(), sealed)
            .and_then(|p| serde_json::from_slice::<LoginState>(&p).ok())
            .filter(|l| l.state == state);
        let removal = self.login_cookie(name, String::new(), cookie::time::Duration::ZERO);
        (login, removal)
    }

    /// True when the request carries any login-in-progress cookie (to tell "cookies are
    /// blocked" from "the login was started elsewhere" in error pages).
    pub fn has_login_cookie(&self, cookies: &RequestCookies<'_>) -> bool {
        let prefix = format!("{}_login_", self.login_name);
        cookies.names().any(|n| n.starts_with(&prefix))
    }

    /// True for any cookie gatehouse owns (removed before requests go upstream), with or
    /// without a `__Host-`/`__Secure-` prefix.
    pub fn owns_cookie(&self, name: &str) -> bool {
        let bare = name
            .strip_prefix("__Host-")
            .or_else(|| name.strip_prefix("__Secure-"))
            .unwrap_or(name);
        bare.strip_prefix(self.settings.name.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
    }

    /// A login-state cookie: scoped to the callback path (never sent on app requests, so
    /// logins in progress cannot grow every request's cookie header), and small.
    fn login_cookie(
        &self,
        name: String,
        value: String,
        max_age: cookie::time::Duration,
    ) -> Option<HeaderValue> {
        let mut c = Cookie::build((name, value))
            .path(self.settings.login_path.clone())
            .http_only(true)
            .secure(self.settings.secure)
            .same_site(SameSite::Lax)
            .max_age(max_age);
        if let Some(d) = &self.settings.domain {
            c = c.domain(d.clone());
        }
        HeaderValue::from_str(&c.build().to_string()).ok()
    }

    fn cookie(
        &self,
        name: String,
        value: String,
        max_age: Option<cookie::time::Duration>,
    ) -> Option<HeaderValue> {
        let mut c = Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.settings.secure)
            .same_site(SameSite::Lax);
        if let Some(age) = max_age {
            c = c.max_age(age);
        }
        if let Some(d) = &self.settings.domain {
            c = c.domain(d.clone());
        }
        HeaderValue::from_str(&c.build().to_string()).ok()
    }

    fn removal(&self, name: &str) -> Option<HeaderValue> {
        self.cookie(
            name.to_string(),
            String::new(),
            Some(cookie::time::Duration::ZERO),
        )
    }
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
            login_timeout: Duration::from_secs(600),
        })
    }

    fn session(token_len: usize) -> Session {
        Session {
            id: "sid".into(),
            identity: Identity {
                sub: "u1".into(),
                user: "alice".into(),
                ..Identity::default()
            },
            id_token: "t".repeat(token_len),
            refresh_token: Some("r".into()),
            access_token: None,
            expires_at: 10,
            created_at: 1,
            values: Default::default(),
            claims: Default::default(),
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
        assert_eq!(back.id_token.len(), 9000);
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

    #[test]
    fn debug_hides_tokens() {
        let dbg = format!("{:?}", session(5));
        assert!(!dbg.contains("ttttt"), "{dbg}");
    }
}
