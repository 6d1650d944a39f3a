//! Gatehouse's cookies: the session cookie's name (`__Host-` or `__Secure-` prefixed when
//! Secure), the attributes every cookie gets, and the login-in-progress cookies (state,
//! nonce, PKCE verifier, return target), one short-lived sealed cookie per login so that
//! two tabs signing in at once do not clobber each other. Whatever the session store, these
//! are cookies.

use super::codec::CookieCodec;
use super::{chunks, LoginState, RequestCookies, SessionError};
use crate::config::CookieSettings;
use axum::http::HeaderValue;
use cookie::{Cookie, SameSite};
use std::sync::atomic::{AtomicU64, Ordering};

/// Gatehouse's cookies: their names and attributes, the login-in-progress cookies, and
/// the codec that seals them.
pub struct CookieJar {
    pub(super) codec: CookieCodec,
    pub(super) settings: CookieSettings,
    /// The session cookie's name: `__Host-<cookie_name>` when cookies are Secure and
    /// host-only (the browser then refuses it from a subdomain or over http), else as set.
    session_name: String,
    /// Login-state cookies' name stem: `__Secure-<cookie_name>` when Secure. They are
    /// scoped to the callback path, so `__Host-` (which demands `Path=/`) cannot apply.
    login_name: String,
    /// Distinguishes stores (and so keys) in the per-thread cache of opened sessions.
    pub(super) id: u64,
}

/// Sealed sessions beyond this many bytes trip common 8 KB header limits in front proxies.
pub const HEADER_LIMIT_WARNING: usize = 7 * 1024;

impl CookieJar {
    pub fn new(settings: CookieSettings) -> CookieJar {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let prefix = match (settings.secure, &settings.domain) {
            (true, None) => "__Host-",
            (true, Some(_)) => "__Secure-",
            (false, _) => "",
        };
        let login_prefix = if settings.secure { "__Secure-" } else { "" };
        CookieJar {
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

    /// `Set-Cookie` values that remove every session cookie the request carried.
    pub fn clear(&self, cookies: &RequestCookies<'_>) -> Vec<HeaderValue> {
        cookies
            .names()
            .filter(|n| chunks::is_session_cookie(&self.session_name, n))
            .filter_map(|n| self.removal(n))
            .collect()
    }

    /// A session cookie (or chunk) that lives as long as a session may.
    pub(super) fn session_cookie(&self, name: String, value: String) -> Option<HeaderValue> {
        let max_age = cookie::time::Duration::seconds(
            i64::try_from(self.settings.session_lifetime.as_secs()).unwrap_or(i64::MAX),
        );
        self.cookie(name, value, Some(max_age))
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

    pub(super) fn cookie(
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

    pub(super) fn removal(&self, name: &str) -> Option<HeaderValue> {
        self.cookie(
            name.to_string(),
            String::new(),
            Some(cookie::time::Duration::ZERO),
        )
    }
}
