//! Sessions from token responses: a sign-in and a refresh with a new ID token build one
//! ([`session_from_tokens`]); a refresh without one keeps the identity ([`keep_identity`],
//! OIDC Core 12.2); userinfo completes the claims when asked to, kept apart from the ID
//! token's ([`UserClaims`]). Every path, bearer tokens included, ends the session by one
//! rule ([`session_expiry`]): never later than a token the upstream is handed.
//!
//! Trusts its inputs: the claims come from tokens `oidc::Provider::verify_token` checked,
//! from the provider's userinfo endpoint for the same `sub`, or from a sealed session
//! that held such a token.

use crate::config::{Config, PassAuthorization, UserinfoMode};
use crate::identity::{map_sources, Sources};
use crate::oidc::verify::{seconds, TokenError};
use crate::oidc::{FlowError, Loaded, Provider, TokenSet};
use crate::session::Session;
use crate::util::now_secs;

/// Which of a session's tokens the upstream is handed (`X-Forwarded-Id-Token`,
/// `Authorization: Bearer`), and so must never receive expired.
#[derive(Debug, Clone, Copy)]
pub struct Forwards {
    pub id_token: bool,
    pub access_token: bool,
}

impl Forwards {
    /// What any app of `cfg` is handed: the top-level header set's tokens, and those of
    /// every route's own set (one session serves every route).
    pub fn of(cfg: &Config) -> Forwards {
        let mut fw = Forwards {
            id_token: false,
            access_token: false,
        };
        for h in cfg.header_sets() {
            // With access_token_audience the token header carries the access token.
            let header = h.id_token.is_some();
            fw.id_token |= (header && !h.token_is_access_token)
                || h.authorization == PassAuthorization::IdToken;
            fw.access_token |= (header && h.token_is_access_token)
                || h.authorization == PassAuthorization::AccessToken;
        }
        fw
    }
}

/// What is known about when a session's tokens expire (Unix seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Expiries {
    /// The `exp` of the session's ID token: a new one, or the one a refresh without a new
    /// one keeps.
    pub id_token: Option<u64>,
    /// The verified `exp` of the access token (`access_token_audience`).
    pub access_token: Option<u64>,
    /// `now + expires_in` of the token response: the access token's lifetime.
    pub expires_in: Option<u64>,
}

/// When a session must end: the earliest expiry, among what is known, of every token it
/// forwards, so the upstream is never handed an expired token. `id_token_bounds`: the
/// ID token bounds the session even when it is not forwarded (it is the session's proof
/// of identity at sign-in and when a refresh brings a new one; a refresh without one keeps
/// the identity, OIDC Core 12.2, and is bounded by `expires_in` instead). One function
/// for every path that builds or extends a session: sign-in, refresh with and without an
/// ID token, bearer tokens. `None` when nothing is known.
pub fn session_expiry(fw: Forwards, e: Expiries, id_token_bounds: bool) -> Option<u64> {
    let id = e.id_token.filter(|_| fw.id_token || id_token_bounds);
    let access = [e.access_token, e.expires_in]
        .into_iter()
        .flatten()
        .filter(|_| fw.access_token);
    id.into_iter().chain(access).min()
}

/// `now + expires_in`, when the response says (a positive number of seconds).
fn lifetime_end(tokens: &TokenSet, now: u64) -> Option<u64> {
    tokens
        .expires_in
        .filter(|s| *s > 0)
        .map(|s| now.saturating_add(s.unsigned_abs()))
}

/// What a sign-in (or a refresh with a new ID token) knows about the user: the verified
/// ID token's claims, and the userinfo answer when it was asked, never merged (the ID
/// token's own claims always win, by any path: `identity::Sources`).
#[derive(Debug, Clone)]
pub struct UserClaims {
    pub id_token: serde_json::Value,
    pub userinfo: Option<serde_json::Value>,
}

impl UserClaims {
    /// The claims for the identity mapping.
    pub fn sources(&self) -> Sources<'_> {
        Sources::new(&self.id_token, self.userinfo.as_ref())
    }
}

/// Builds a session from a token response whose ID token was verified into `claims`.
pub fn session_from_tokens(
    cfg: &Config,
    tokens: TokenSet,
    id_token: String,
    claims: &UserClaims,
    id: String,
    created_at: u64,
    access_exp: Option<u64>,
) -> Result<Session, FlowError> {
    let identity = map_sources(&claims.sources(), &cfg.claims).map_err(|e| match e {
        crate::identity::IdentityError::NoSubject => FlowError::Token(TokenError::Missing("sub")),
        other => FlowError::Identity(other),
    })?;
    // A forwarded access token that expires first (its verified `exp`, or `expires_in`)
    // bounds the session: the upstream must never be handed an expired token.
    let id_exp = seconds(&claims.id_token, "exp").unwrap_or(0);
    let known = Expiries {
        id_token: Some(id_exp),
        access_token: access_exp,
        expires_in: lifetime_end(&tokens, now_secs()),
    };
    let expires_at = session_expiry(Forwards::of(cfg), known, true).unwrap_or(id_exp);
    let keep_access = cfg
        .header_sets()
        .any(|h| h.authorization == PassAuthorization::AccessToken)
        || cfg.access_token.is_some();
    let access_token = if keep_access {
        tokens.access_token
    } else {
        None
    };
    Ok(Session {
        id,
        identity,
        id_token,
        refresh_token: tokens.refresh_token,
        access_token,
        expires_at,
        created_at,
        sid: claims
            .id_token
            .get("sid")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        seen: now_secs(),
        ticket: None,
        values: Default::default(),
        claims: Default::default(),
    })
}

/// True when the ID token lacks a claim the identity mapping reads.
fn lacks_mapped_claims(claims: &serde_json::Value, m: &crate::config::ClaimMapping) -> bool {
    let has = |p: &str| crate::identity::claim_at(claims, p).is_some();
    !has(&m.user) || !has(&m.email) || !m.groups.iter().any(|g| has(g))
}

/// Fetches userinfo claims (OIDC Core §5.3) beside verified ID token claims, when
/// `userinfo` asks for it: the userinfo `sub` must equal the ID token's. They are kept
/// apart: the mapping reads userinfo only where the ID token says nothing, and a
/// verification flag only for its own source's address (`identity::Sources`). With
/// `userinfo = auto` a failing endpoint is logged and the ID token's claims are used
/// alone; with `true` it fails the sign-in.
pub async fn complete_claims(
    cfg: &Config,
    provider: &Provider,
    loaded: &Loaded,
    claims: serde_json::Value,
    access_token: Option<&str>,
) -> Result<UserClaims, FlowError> {
    let alone = |id_token| UserClaims {
        id_token,
        userinfo: None,
    };
    let wanted = match cfg.userinfo {
        UserinfoMode::Never => false,
        UserinfoMode::Always => true,
        UserinfoMode::Auto => lacks_mapped_claims(&claims, &cfg.claims),
    };
    let (true, Some(at)) = (wanted, access_token) else {
        return Ok(alone(claims));
    };
    let info = match provider.userinfo(loaded, at).await {
        None => return Ok(alone(claims)),
        Some(Ok(info)) => info,
        Some(Err(e)) if cfg.userinfo == UserinfoMode::Auto => {
            tracing::warn!(error = %e, "userinfo failed; using the ID token's claims alone");
            return Ok(alone(claims));
        }
        Some(Err(e)) => return Err(e),
    };
    let id_sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
    let info_sub = info.get("sub").and_then(|v| v.as_str()).unwrap_or("");
    if id_sub != info_sub {
        return Err(FlowError::UserinfoSubject {
            id_token: id_sub.chars().take(100).collect(),
            userinfo: info_sub.chars().take(100).collect(),
        });
    }
    Ok(UserClaims {
        id_token: claims,
        userinfo: Some(info),
    })
}

/// OIDC Core §12.2 lets a refresh response omit the ID token: the session keeps its
/// identity and ID token, and lives as long as the new access token (`expires_in`), never
/// longer than a forwarded token: the verified access token's `exp`, and the kept ID
/// token's `exp` when that is what the upstream is handed ([`session_expiry`]). Without
/// `expires_in` either, there is nothing to extend the session by, and the user signs in.
///
/// When the kept ID token is forwarded and is itself due (it expires within
/// `refresh_before`), nothing came to replace it: the refresh fails with
/// [`FlowError::IdTokenNotRenewed`], the session serves until it expires, then the user
/// signs in (fail closed: the upstream is never handed an expired ID token, and the
/// provider is not asked again on every request meanwhile).
pub(super) fn keep_identity(
    cfg: &Config,
    old: &Session,
    tokens: TokenSet,
    access_exp: Option<u64>,
) -> Result<Session, FlowError> {
    let now = now_secs();
    let lifetime = lifetime_end(&tokens, now).ok_or(FlowError::Invalid(
        "the refresh response has neither an ID token nor expires_in".into(),
    ))?;
    let fw = Forwards::of(cfg);
    let kept_exp = seconds(old.claims(), "exp").unwrap_or(0);
    if fw.id_token && kept_exp <= now.saturating_add(cfg.refresh_before.as_secs()) {
        return Err(FlowError::IdTokenNotRenewed {
            expires_at: kept_exp,
        });
    }
    let known = Expiries {
        id_token: Some(kept_exp),
        access_token: access_exp,
        expires_in: Some(lifetime),
    };
    let mut s = old.clone();
    s.refresh_token = tokens.refresh_token;
    if cfg
        .header_sets()
        .any(|h| h.authorization == PassAuthorization::AccessToken)
        || cfg.access_token.is_some()
    {
        s.access_token = tokens.access_token;
    }
    // The access token's lifetime bounds the extension even when it is not forwarded:
    // it is all the refresh says about how long the identity holds.
    s.expires_at = session_expiry(fw, known, false).map_or(lifetime, |e| e.min(lifetime));
    s.values = Default::default();
    tracing::info!(user = %s.identity.user, "refreshed the session's tokens; the provider sent no new ID token, so the one from sign-in is kept (OIDC Core 12.2)");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_with_the_first_forwarded_token_to_expire() {
        let all = Expiries {
            id_token: Some(300),
            access_token: Some(200),
            expires_in: Some(100),
        };
        let fw = |id_token, access_token| Forwards {
            id_token,
            access_token,
        };
        // Sign-in and refresh with an ID token: the ID token bounds it in any case.
        assert_eq!(session_expiry(fw(true, true), all, true), Some(100));
        assert_eq!(session_expiry(fw(false, true), all, true), Some(100));
        assert_eq!(session_expiry(fw(true, false), all, true), Some(300));
        assert_eq!(session_expiry(fw(false, false), all, true), Some(300));
        let late_lifetime = Expiries {
            expires_in: Some(900),
            ..all
        };
        assert_eq!(
            session_expiry(fw(false, true), late_lifetime, true),
            Some(200)
        );
        // Only what is known counts: an opaque access token has expires_in alone.
        let opaque = Expiries {
            access_token: None,
            ..all
        };
        assert_eq!(session_expiry(fw(false, true), opaque, true), Some(100));
        // A refresh without an ID token: the kept one bounds it only when forwarded.
        let kept = Expiries {
            id_token: Some(50),
            ..late_lifetime
        };
        assert_eq!(session_expiry(fw(true, true), kept, false), Some(50));
        assert_eq!(session_expiry(fw(false, true), kept, false), Some(200));
        assert_eq!(session_expiry(fw(false, false), kept, false), None);
    }
}
