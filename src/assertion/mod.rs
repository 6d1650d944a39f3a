//! The signed identity assertion: a short-lived JWT gatehouse signs with its own key
//! (`keys.rs`) and sends upstream in one header (`X-Gatehouse-Assertion` unless
//! configured), so an app can verify who the user is against
//! `/.well-known/gatehouse/jwks.json` instead of trusting the network.
//!
//! Claims: `iss` (gatehouse's public URL), `aud` (the app: the configured audience, or
//! the host the request was for), `sub`, `user`, `email`, `preferred_username`, `groups`
//! (only those the policy lets through), `iat`, `nbf`, `exp`, `jti`. A token is signed
//! once per session, audience and policy, kept per worker thread (`cache.rs`), and
//! signed again when less than a third of its life is left or the session's tokens
//! changed (a refresh). `exp` never outlives the session's tokens.
//!
//! What one app (today: the one upstream; later each route) asks of the assertion is an
//! [`AssertionPolicy`]; what holds for all of gatehouse is [`AssertionSettings`].

mod cache;
pub mod keys;

use crate::session::Session;
use axum::http::HeaderValue;
use keys::KeySet;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The JWKS path, on the main listener and on `auth_listen`.
pub const JWKS_PATH: &str = "/.well-known/gatehouse/jwks.json";

/// Gives every built settings and policy value an id of its own: a cached assertion
/// belongs to the exact ones it was signed under, so a reload (new keys, issuer,
/// lifetime, filter) signs anew.
static IDS: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    IDS.fetch_add(1, Ordering::Relaxed)
}

/// What one app asks of its assertion: today the one upstream's, later a route's.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    /// `aud`; `None`: the host the request was for.
    pub audience: Option<String>,
    /// Only these groups go into `groups` (compared exactly); `None`: all of them.
    pub groups: Option<Vec<String>>,
    id: u64,
}

impl AssertionPolicy {
    pub fn new(audience: Option<String>, groups: Option<Vec<String>>) -> AssertionPolicy {
        AssertionPolicy {
            audience,
            groups,
            id: next_id(),
        }
    }

    /// The audience for a request to `host` (as gatehouse believes it): the configured
    /// one, else the host in lower case without its port. `None` when neither is known.
    pub fn audience_for<'a>(&'a self, host: Option<&'a str>) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(a) = &self.audience {
            return Some(a.as_str().into());
        }
        let host = host_without_port(host?.trim());
        (!host.is_empty()).then(|| {
            if host.bytes().any(|b| b.is_ascii_uppercase()) {
                host.to_ascii_lowercase().into()
            } else {
                host.into()
            }
        })
    }

    fn filter<'a>(&self, groups: &'a [String]) -> Vec<&'a str> {
        groups
            .iter()
            .filter(|g| self.groups.as_ref().map_or(true, |keep| keep.contains(g)))
            .map(String::as_str)
            .collect()
    }
}

/// `app.example.com:8443` -> `app.example.com`; `[::1]:80` -> `[::1]`.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

/// The assertion settings all of gatehouse shares.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    /// First signs, all are published.
    pub keys: Arc<KeySet>,
    /// `iss`: `assertion_issuer`, else `redirect_url`'s origin.
    pub issuer: String,
    pub lifetime: Duration,
    /// The one upstream's policy (routes will carry their own).
    pub policy: AssertionPolicy,
    id: u64,
}

impl AssertionSettings {
    pub fn new(
        keys: KeySet,
        issuer: String,
        lifetime: Duration,
        policy: AssertionPolicy,
    ) -> AssertionSettings {
        AssertionSettings {
            keys: Arc::new(keys),
            issuer,
            lifetime,
            policy,
            id: next_id(),
        }
    }

    /// What `check` says of the assertion: never a key, only what is public.
    pub fn describe(&self) -> String {
        let aud = self
            .policy
            .audience
            .as_deref()
            .map_or_else(|| "the request's host".to_string(), |a| format!("`{a}`"));
        let groups = self
            .policy
            .groups
            .as_ref()
            .map_or_else(|| "all".to_string(), |g| format!("only {g:?}"));
        let signer = self
            .keys
            .signer()
            .map(|k| format!("{} key {}", k.alg, k.kid))
            .unwrap_or_default();
        format!(
            "on: iss `{}`, aud {aud}, lifetime {} s, groups {groups}; signs with the {signer}, publishes {} key(s) at {JWKS_PATH}",
            self.issuer,
            self.lifetime.as_secs(),
            self.keys.keys().len()
        )
    }

    /// The assertion for `session` under `policy` to `audience`, from this thread's
    /// cache or freshly signed. `None` when the session has ended (`now` past it) or
    /// signing failed (logged, never with the token).
    pub fn for_session(
        &self,
        session: &Session,
        policy: &AssertionPolicy,
        audience: &str,
        now: u64,
    ) -> Option<HeaderValue> {
        let key = cache::Key {
            under: (self.id, policy.id),
            session: &session.id,
            token: &session.id_token,
            expires_at: session.expires_at,
            audience,
        };
        if let Some(v) = cache::get(&key, now) {
            return Some(v);
        }
        let signed = self.sign(session, policy, audience, now)?;
        let value = signed.value.clone();
        cache::put(&key, signed);
        Some(value)
    }

    fn sign(
        &self,
        session: &Session,
        policy: &AssertionPolicy,
        audience: &str,
        now: u64,
    ) -> Option<Signed> {
        let key = self.keys.signer()?;
        // Never beyond the session: its tokens' expiry (a refresh makes a new session,
        // and a new assertion) and its longest life.
        let exp = now
            .saturating_add(self.lifetime.as_secs())
            .min(session.expires_at);
        if exp <= now {
            return None;
        }
        let id = &session.identity;
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: &id.sub,
            user: &id.user,
            email: id.email.as_deref(),
            preferred_username: id.preferred_username.as_deref(),
            groups: policy.filter(&id.groups),
            iat: now,
            nbf: now,
            exp,
            jti: crate::util::random_token(16),
        };
        let token = serde_json::to_vec(&claims)
            .map_err(|e| e.to_string())
            .and_then(|payload| key.sign(&payload).map_err(|e| e.to_string()));
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(kid = %key.kid, error = %e, "the identity assertion could not be signed; the request goes on without it");
                return None;
            }
        };
        let value = HeaderValue::from_str(&token).ok()?;
        Some(Signed {
            value,
            renew_at: exp - (exp - now) / 3,
        })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    groups: Vec<&'a str>,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

/// A signed assertion and when to sign again (a third of its life left).
#[derive(Clone, Debug)]
struct Signed {
    value: HeaderValue,
    renew_at: u64,
}

#[cfg(test)]
mod tests;
