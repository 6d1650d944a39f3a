//! Bearer tokens from programmatic clients (kubectl plugins, curl, CI): with
//! `bearer_tokens = true`, `Authorization: Bearer <JWT>` meets the same policy as a
//! browser sign-in, through the same functions: `Provider::verify_token` (signature with
//! the issuer's keys, exact `iss`, `aud`, `exp` with no leeway (the token is forwarded,
//! never expired), `nbf`, `iat`, `sub`; `alg` from the allow-list, never `none` or HS*;
//! `auth_time` within `max_age` and `acr` among
//! `acr_values`, for `bearer_issuers` too), then `map_claims` (groups overage,
//! `email_verified`, the user claim), then the access rules (`auth/mod.rs`). What cannot
//! apply to a bearer token (`nonce`, `at_hash`, refusing `typ: at+jwt`) is listed, with
//! why, in `oidc/policy.rs`. It becomes a session for this one request. No redirects and
//! no refresh: a bad token is a 401 (RFC 6750 §3).
//!
//! Trusts nothing in the token: its unverified `iss` only picks which issuer's keys to try,
//! and the verification then checks that same issuer byte for byte.

use crate::auth::{session_expiry, Expiries, Forwards};
use crate::config::{Config, PassAuthorization};
use crate::identity::map_claims;
use crate::oidc::{Provider, TokenUse};
use crate::session::Session;
use crate::util::now_secs;
use axum::http::{header, HeaderMap, HeaderValue};
use std::sync::Arc;

/// The issuers whose bearer tokens are accepted, with their audiences.
pub struct BearerVerifier {
    /// Audiences accepted from the main issuer: `client_id` and `bearer_audiences`.
    main_audiences: Vec<String>,
    /// Other issuers, each with its own discovery and keys.
    others: Vec<Arc<Provider>>,
}

/// Why a bearer token was refused (safe to show: never contains the token).
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("the bearer token is not a JWT")]
    NotJwt,
    #[error("the bearer token's issuer `{0}` is not one gatehouse accepts (issuer_url or bearer_issuers)")]
    UnknownIssuer(String),
    #[error("the keys of issuer `{0}` are not loaded yet")]
    NotReady(String),
    #[error("{0}")]
    Invalid(#[from] crate::oidc::verify::TokenError),
    #[error("the token holds no usable identity: {0}")]
    NoIdentity(crate::identity::IdentityError),
}

impl BearerError {
    /// A stable code for the audit event (`audit::bearer_refused`).
    pub fn code(&self) -> &'static str {
        use crate::oidc::verify::TokenError as T;
        match self {
            BearerError::NotJwt => "not_a_jwt",
            BearerError::UnknownIssuer(_) => "unknown_issuer",
            BearerError::NotReady(_) => "issuer_keys_not_loaded",
            BearerError::Invalid(T::Expired(_)) => "expired",
            BearerError::Invalid(T::NotYetValid(_)) => "not_yet_valid",
            BearerError::Invalid(T::BadSignature) => "bad_signature",
            BearerError::Invalid(T::AlgNone | T::AlgNotAllowed(_)) => "algorithm_not_allowed",
            BearerError::Invalid(T::Key(_)) => "unknown_key",
            BearerError::Invalid(T::Issuer { .. }) => "issuer_mismatch",
            BearerError::Invalid(T::Audience { .. } | T::UntrustedAudience(_)) => {
                "audience_mismatch"
            }
            BearerError::Invalid(T::Missing(_)) => "missing_claim",
            BearerError::Invalid(_) => "invalid_token",
            BearerError::NoIdentity(_) => "no_identity",
        }
    }
}

/// The token of an `Authorization: Bearer` header, if the request has one.
pub fn bearer_of(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `WWW-Authenticate` for a refused bearer token (RFC 6750 §3): `invalid_token` with an
/// `error_description` naming what failed (never the token: `reason` is a
/// [`BearerError`]'s text). Characters RFC 6750 §3 does not allow there become `'` (a
/// double quote), `/` (a backslash) or `?` (anything outside printable ASCII).
pub fn challenge(reason: &str) -> HeaderValue {
    const PLAIN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";
    let mut v = String::with_capacity(PLAIN.len() + reason.len().min(300) + 22);
    v.push_str(PLAIN);
    v.push_str(", error_description=\"");
    for c in reason.chars().take(300) {
        v.push(match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        });
    }
    v.push('"');
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(PLAIN))
}

impl BearerVerifier {
    /// `None` unless `bearer_tokens = true`.
    pub fn new(cfg: &Config) -> Option<BearerVerifier> {
        let b = cfg.bearer.as_ref()?;
        let mut main_audiences = vec![cfg.client_id.clone()];
        main_audiences.extend(b.audiences.iter().cloned());
        Some(BearerVerifier {
            main_audiences,
            others: b
                .issuers
                .iter()
                .map(|(iss, aud)| Arc::new(Provider::for_bearer_issuer(cfg, iss, aud)))
                .collect(),
        })
    }

    /// The verifier for `cfg` after a configuration reload: an extra issuer this one
    /// already has keeps its discovery and keys; a new one starts loading now.
    pub fn reconfigured(old: Option<&BearerVerifier>, cfg: &Config) -> Option<BearerVerifier> {
        let mut fresh = BearerVerifier::new(cfg)?;
        for p in &mut fresh.others {
            let known =
                old.and_then(|o| o.others.iter().find(|q| q.client.issuer == p.client.issuer));
            match (known, Arc::get_mut(p)) {
                (Some(known), Some(p)) => p.share_state_of(known),
                _ => p.spawn_loader(),
            }
        }
        Some(fresh)
    }

    /// Each extra issuer and whether its keys are loaded (for `/readyz`).
    pub fn status(&self) -> Vec<(String, bool)> {
        self.others
            .iter()
            .map(|p| (p.client.issuer.clone(), p.loaded().is_some()))
            .collect()
    }

    /// Starts discovery for the extra issuers.
    pub fn spawn_loaders(&self) {
        for p in &self.others {
            p.spawn_loader();
        }
    }

    /// Verifies `token` and turns it into a one-request session.
    pub async fn verify(
        &self,
        cfg: &Config,
        main: &Provider,
        token: &str,
    ) -> Result<Session, BearerError> {
        let unverified = crate::oidc::verify::payload(token).ok_or(BearerError::NotJwt)?;
        let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        // The main issuer in any spelling its preset accepts (google's scheme-less one),
        // as the ID token check does.
        let main_issuer =
            iss == main.client.issuer || main.client.issuer_aliases.iter().any(|a| a == iss);
        let claims = if main_issuer {
            let loaded = main
                .loaded()
                .ok_or_else(|| BearerError::NotReady(iss.to_string()))?;
            let accepted = TokenUse::Bearer {
                accepted: &self.main_audiences,
            };
            main.verify_token(&loaded, token, accepted).await?
        } else {
            let other = self
                .others
                .iter()
                .find(|p| p.client.issuer == iss)
                .ok_or_else(|| BearerError::UnknownIssuer(iss.chars().take(200).collect()))?;
            let loaded = other
                .loaded()
                .ok_or_else(|| BearerError::NotReady(iss.to_string()))?;
            let accepted = TokenUse::Bearer {
                accepted: std::slice::from_ref(&other.client.client_id),
            };
            other.verify_token(&loaded, token, accepted).await?
        };
        let identity = map_claims(&claims, &cfg.claims).map_err(BearerError::NoIdentity)?;
        // The token is all this session forwards, as ID token and access token alike: the
        // session ends with it (the same rule as every other path, `auth::session_expiry`).
        let exp = crate::oidc::verify::seconds(&claims, "exp");
        let known = Expiries {
            id_token: exp,
            access_token: exp,
            expires_in: None,
        };
        let expires_at = session_expiry(Forwards::of(cfg), known, true).unwrap_or(0);
        // Never forwarded expired, whatever the leeway elsewhere: `verify` allows none on
        // `exp`, and this session ends with the token, as a cookie's ends in `load_session`.
        let now = now_secs();
        if expires_at <= now {
            return Err(BearerError::Invalid(
                crate::oidc::verify::TokenError::Expired(now - expires_at),
            ));
        }
        let access_token = (cfg
            .header_sets()
            .any(|h| h.authorization == PassAuthorization::AccessToken))
        .then(|| token.to_string());
        let session = Session {
            id: format!("bearer:{}", identity.sub),
            identity,
            id_token: token.to_string(),
            refresh_token: None,
            access_token,
            expires_at,
            created_at: now,
            sid: None,
            seen: now,
            ticket: None,
            values: Default::default(),
            claims: Default::default(),
        };
        let _ = session.claims.set(claims);
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_names_the_failure_in_characters_rfc6750_allows() {
        let v = challenge("the token's acr is `x\"y\\z`\r\né");
        assert_eq!(
            v.to_str().unwrap(),
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"the token's acr is `x'y/z`???\""
        );
        let long = challenge(&"a".repeat(1000));
        assert!(long.len() < 400, "{}", long.len());
    }
}
