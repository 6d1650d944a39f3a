//! Logout tokens: OpenID Connect Back-Channel Logout 1.0 (incorporating errata set 1),
//! the token of §2.4 checked as §2.6 requires before a back-channel logout ends anything.
//!
//! Trusts nothing in the token. The signature goes through the ID token path's own
//! machinery (`verify.rs`: the provider's JWKS with its rate-limited refetch,
//! `allowed_algs`, never `none` or HS*), and `iss` and `aud` are checked as in ID tokens
//! (the preset's issuer aliases, `trusted_audiences`, `azp`). Then what makes this JWT a
//! logout token and nothing else (§2.6, §4.1 cross-JWT confusion):
//!
//! | check | refusal |
//! |---|---|
//! | header `typ`, when present, is `logout+jwt` (RFC 8725 §3.11 explicit typing; case-insensitive, `application/` optional, RFC 7515 §4.1.9) or the generic `JWT` | [`LogoutTokenError::Typ`] |
//! | `iat` present, at most `clock_skew_secs` ahead; `nbf`, when present, likewise | `Missing("iat")`, `IssuedInFuture`, `NotYetValid` |
//! | `exp` present (REQUIRED since errata set 1) and not past, without leeway as for ID tokens | `Missing("exp")`, `Expired` |
//! | `jti` present (the caller refuses a replay for the token's lifetime) | `Missing("jti")` |
//! | `events` a JSON object whose member `http://schemas.openid.net/event/backchannel-logout` is a JSON object | `Events` |
//! | no `nonce`, so an ID token never passes as a logout token | `Nonce` |
//! | `sid`, `sub` or both, each a non-empty string | `NoSubject`, `Invalid` |
//!
//! Why `typ: JWT` is let through: it is RFC 7519's generic type and what providers sent
//! before explicit typing (Keycloak before it adopted `logout+jwt`); a token so typed must
//! still carry the logout event and no `nonce`, which no ID or access token does. Any other
//! explicit type (`at+jwt`, `secevent+jwt`, ...) names another kind of token: refused.
//!
//! Error messages never contain the token. Claim values are shown only once the signature
//! verified (the issuer or audience that differs, as on the ID token path), clipped.

use super::jwks::{JwksCache, KeyError};
use super::verify::{self, TokenError};
use super::{Loaded, Provider};
use jsonwebtoken::Algorithm;
use serde_json::Value;

/// The member of `events` that makes a JWT a logout token (§2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token must say: the provider's settings and the time.
pub struct Expected<'a> {
    pub issuer: &'a str,
    /// Other spellings of `issuer` accepted in `iss` (the preset's), as for ID tokens.
    pub issuer_aliases: &'a [String],
    pub client_id: &'a str,
    /// Audiences besides `client_id` that may appear in `aud`.
    pub trusted_audiences: &'a [String],
    pub algs: &'a [Algorithm],
    pub now: u64,
    pub skew: u64,
}

/// A verified logout token: which sessions to end, and how long its `jti` is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The provider's session id: that session ends.
    pub sid: Option<String>,
    /// The user: without `sid`, every session of theirs that began by `iat` ends.
    pub sub: Option<String>,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// Why a logout token was refused; safe to answer to the caller and to log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("the logout token is not a well-formed signed JWT")]
    Malformed,
    #[error("the logout token is unsigned (alg \"none\"), which is never accepted")]
    AlgNone,
    #[error("the logout token is signed with {0}, which is not in allowed_algs (HS* never)")]
    AlgNotAllowed(String),
    #[error(transparent)]
    Key(KeyError),
    #[error("the logout token's signature does not verify with the provider's key")]
    BadSignature,
    #[error("the JWT is typed `{0}`, not as a logout token (`logout+jwt`)")]
    Typ(String),
    #[error("the logout token has no `{0}` claim, which Back-Channel Logout 1.0 §2.4 requires")]
    Missing(&'static str),
    #[error("the logout token's `{0}` claim is not {1}")]
    Invalid(&'static str, &'static str),
    #[error("the logout token's issuer is `{found}` but gatehouse expects `{expected}`{hint}")]
    Issuer {
        expected: String,
        found: String,
        hint: &'static str,
    },
    #[error("the logout token is for another client (aud {found}); gatehouse's client_id is `{expected}`")]
    Audience { expected: String, found: String },
    #[error("the logout token's aud also names `{0}`, which gatehouse does not trust (trusted_audiences)")]
    UntrustedAudience(String),
    #[error("the logout token has several audiences and its authorized party (azp) `{0}` is not this client")]
    AuthorizedParty(String),
    #[error("the logout token was issued {0} seconds in the future, more than clock_skew_secs allows; check the clocks")]
    IssuedInFuture(u64),
    #[error(
        "the logout token is not valid yet (nbf is {0} seconds in the future); check the clocks"
    )]
    NotYetValid(u64),
    #[error("the logout token expired {0} seconds ago")]
    Expired(u64),
    #[error("the logout token's `events` claim is not a JSON object whose member `{BACKCHANNEL_EVENT}` is a JSON object")]
    Events,
    #[error("the logout token carries a `nonce` claim, which a logout token never does (it may be an ID token)")]
    Nonce,
    #[error("the logout token names neither a session (`sid`) nor a user (`sub`)")]
    NoSubject,
}

impl LogoutTokenError {
    /// True when the provider's keys could not be fetched: not the token's fault, so the
    /// provider should send it again later (503, not 400).
    pub fn is_transient(&self) -> bool {
        matches!(self, LogoutTokenError::Key(KeyError::Fetch(_)))
    }
}

/// At most `n` characters of a value taken from a token, without control characters.
fn clip(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(n).collect()
}

impl From<TokenError> for LogoutTokenError {
    fn from(e: TokenError) -> Self {
        use LogoutTokenError as L;
        match e {
            TokenError::AlgNone => L::AlgNone,
            TokenError::AlgNotAllowed(a) => L::AlgNotAllowed(clip(&a, 20)),
            TokenError::Key(k) => L::Key(k),
            TokenError::BadSignature => L::BadSignature,
            TokenError::Missing(name) => L::Missing(name),
            TokenError::Issuer {
                expected,
                found,
                hint,
            } => L::Issuer {
                expected,
                found: clip(&found, 200),
                hint,
            },
            TokenError::Audience { expected, found } => L::Audience {
                expected,
                found: clip(&found, 200),
            },
            TokenError::UntrustedAudience(a) => L::UntrustedAudience(clip(&a, 200)),
            TokenError::AuthorizedParty(a) => L::AuthorizedParty(clip(&a, 200)),
            TokenError::Expired(s) => L::Expired(s),
            TokenError::NotYetValid(s) => L::NotYetValid(s),
            // The checks used here produce none of the others (they are ID-token checks).
            TokenError::Malformed
            | TokenError::NoAuthTime
            | TokenError::AccessTokenAsIdToken(_)
            | TokenError::AtHash
            | TokenError::AuthTooOld(_)
            | TokenError::Acr { .. }
            | TokenError::Nonce
            | TokenError::Changed(_) => L::Malformed,
        }
    }
}

/// A NumericDate claim the token must carry.
fn date(claims: &Value, name: &'static str) -> Result<u64, LogoutTokenError> {
    match claims.get(name) {
        None => Err(LogoutTokenError::Missing(name)),
        Some(_) => verify::seconds(claims, name).ok_or(LogoutTokenError::Invalid(
            name,
            "a number of seconds (NumericDate)",
        )),
    }
}

/// A string claim the token may carry; present, it must be a non-empty string.
fn text(claims: &Value, name: &'static str) -> Result<Option<String>, LogoutTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(LogoutTokenError::Invalid(name, "a non-empty string")),
    }
}

/// Verifies a logout token's signature and claims (§2.6); returns what it ends.
pub async fn verify(
    token: &str,
    want: &Expected<'_>,
    jwks: &JwksCache,
) -> Result<LogoutToken, LogoutTokenError> {
    let (alg_name, kid, typ) = verify::header(token)?;
    let (claims, _alg) =
        verify::signed_claims(token, &alg_name, kid.as_deref(), want.algs, jwks).await?;
    if let Some(typ) = typ {
        if !verify::media_type_is(&typ, "logout+jwt") && !verify::media_type_is(&typ, "jwt") {
            return Err(LogoutTokenError::Typ(clip(&typ, 40)));
        }
    }
    check_claims(&claims, want)
}

/// The claim checks of §2.6 on a token whose signature verified.
pub fn check_claims(claims: &Value, want: &Expected<'_>) -> Result<LogoutToken, LogoutTokenError> {
    verify::check_issuer(claims, want.issuer, want.issuer_aliases)?;
    verify::check_audience(claims, want.client_id, want.trusted_audiences)?;
    // What makes it a logout token, before the rest: an ID token posted here is told so.
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(BACKCHANNEL_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(match claims.get("events") {
            None => LogoutTokenError::Missing("events"),
            Some(_) => LogoutTokenError::Events,
        });
    }
    if claims.get("nonce").is_some() {
        return Err(LogoutTokenError::Nonce);
    }
    let iat = date(claims, "iat")?;
    if iat > want.now.saturating_add(want.skew) {
        return Err(LogoutTokenError::IssuedInFuture(iat - want.now));
    }
    if claims.get("nbf").is_some() {
        let nbf = date(claims, "nbf")?;
        if nbf > want.now.saturating_add(want.skew) {
            return Err(LogoutTokenError::NotYetValid(nbf - want.now));
        }
    }
    // No leeway on `exp`, as for ID tokens (`verify.rs`); providers give logout tokens
    // about two minutes (§4 recommends at most that).
    let exp = date(claims, "exp")?;
    if want.now >= exp {
        return Err(LogoutTokenError::Expired(want.now - exp));
    }
    let jti = text(claims, "jti")?.ok_or(LogoutTokenError::Missing("jti"))?;
    let sid = text(claims, "sid")?;
    let sub = text(claims, "sub")?;
    if sid.is_none() && sub.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    Ok(LogoutToken {
        sid,
        sub,
        iat,
        exp,
        jti,
    })
}

impl Provider {
    /// Verifies a logout token from this provider with its keys and settings.
    pub async fn verify_logout_token(
        &self,
        l: &Loaded,
        token: &str,
    ) -> Result<LogoutToken, LogoutTokenError> {
        let c = &self.client;
        let want = Expected {
            issuer: &c.issuer,
            issuer_aliases: &c.issuer_aliases,
            client_id: &c.client_id,
            trusted_audiences: &c.trusted_audiences,
            algs: &c.algs,
            now: crate::util::now_secs(),
            skew: c.skew,
        };
        verify(token, &want, &l.jwks).await
    }
}

#[cfg(test)]
#[path = "logout_token_tests.rs"]
mod tests;
