//! The auth step, shared by every way of acting on a request: skip routes, then a bearer
//! token or the session cookie (refreshed when due), then the access rules (`authz.rs`).
//! The sidecar proxies on [`Decision::Allow`]; the forward-auth endpoint answers with the
//! same decision, so the two can never disagree.
//!
//! Also builds sessions from token responses (login and refresh share that code; the
//! session never outlives a token it forwards: [`session_expiry`]), and coordinates
//! refreshes: one at a time per session, with the result kept briefly so that
//! requests still carrying the old cookie reuse it instead of spending a single-use
//! refresh token twice (tsidp, Dex rotation).

use crate::authz::{check_all, Denial, Policy};
use crate::bearer::bearer_of;
use crate::config::{Config, PassAuthorization, UserinfoMode};
use crate::http::AppState;
use crate::identity::map_claims;
use crate::oidc::verify::{same_subject, seconds, TokenError};
use crate::oidc::{FlowError, Loaded, Provider, TokenSet};
use crate::routes::skip_rule;
use crate::session::chunks::RequestCookies;
use crate::session::Session;
use crate::util::now_secs;
use axum::http::{HeaderMap, HeaderValue, Method};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Why a request has to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReason {
    NoSession,
    Expired,
    RefreshFailed,
}

/// The outcome of the auth step.
pub enum Decision {
    /// A verified identity that the rules allow; `set_cookies` carries a refreshed
    /// session, if any.
    Allow {
        session: Arc<Session>,
        set_cookies: Vec<HeaderValue>,
    },
    /// A `skip_auth_routes` route: no login, and no identity.
    Public { rule: String },
    /// No usable session; `clear` removes stale session cookies.
    Login {
        reason: LoginReason,
        clear: Vec<HeaderValue>,
    },
    /// Signed in, but a rule refuses this identity.
    Deny {
        session: Arc<Session>,
        denial: Denial,
        set_cookies: Vec<HeaderValue>,
    },
    /// An `Authorization: Bearer` token that does not verify: 401, never a redirect.
    BadToken { reason: String },
}

/// What the auth step looks at in a request.
pub struct AuthRequest<'a> {
    pub cookies: &'a RequestCookies<'a>,
    pub headers: &'a HeaderMap,
    /// The original request's method and path (with or without query) for
    /// `skip_auth_routes`; `None` when gatehouse does not know it (a forward-auth call
    /// from an untrusted peer), so no route is skipped.
    pub method: &'a Method,
    pub path: Option<&'a str>,
    /// Per-request rules (the forward-auth URL's query), ANDed with the configured ones.
    pub extra: Option<&'a Policy>,
}

/// Which of a session's tokens the upstream is handed (`X-Forwarded-Id-Token`,
/// `Authorization: Bearer`), and so must never receive expired.
#[derive(Debug, Clone, Copy)]
pub struct Forwards {
    pub id_token: bool,
    pub access_token: bool,
}

impl Forwards {
    pub fn of(cfg: &Config) -> Forwards {
        let h = &cfg.headers;
        // With access_token_audience the token header carries the access token.
        let header = h.id_token.is_some();
        Forwards {
            id_token: (header && !h.token_is_access_token)
                || h.authorization == PassAuthorization::IdToken,
            access_token: (header && h.token_is_access_token)
                || h.authorization == PassAuthorization::AccessToken,
        }
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

/// Builds a session from a token response whose ID token was verified into `claims`.
pub fn session_from_tokens(
    cfg: &Config,
    tokens: TokenSet,
    id_token: String,
    claims: &serde_json::Value,
    id: String,
    created_at: u64,
    access_exp: Option<u64>,
) -> Result<Session, FlowError> {
    let identity = map_claims(claims, &cfg.claims).map_err(|e| match e {
        crate::identity::IdentityError::NoSubject => FlowError::Token(TokenError::Missing("sub")),
        other => FlowError::Identity(other),
    })?;
    // A forwarded access token that expires first (its verified `exp`, or `expires_in`)
    // bounds the session: the upstream must never be handed an expired token.
    let id_exp = seconds(claims, "exp").unwrap_or(0);
    let known = Expiries {
        id_token: Some(id_exp),
        access_token: access_exp,
        expires_in: lifetime_end(&tokens, now_secs()),
    };
    let expires_at = session_expiry(Forwards::of(cfg), known, true).unwrap_or(id_exp);
    let keep_access =
        cfg.headers.authorization == PassAuthorization::AccessToken || cfg.access_token.is_some();
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
        values: Default::default(),
        claims: Default::default(),
    })
}

/// How long a refresh result is kept for late requests with the old cookie.
const KEEP_RESULT: Duration = Duration::from_secs(60);
/// How long a failure the provider may recover from (down, 5xx) is kept before the next
/// request tries again.
const KEEP_TRANSIENT: Duration = Duration::from_secs(2);

/// Why a refresh failed; `transient`: the provider was down or failed on its side, so it
/// has not said no; `serve_until`: the old session may still be used before then (the
/// provider is down: until the session expires; it sent no ID token to replace the
/// forwarded one: until that one expires, if sooner).
#[derive(Debug, Clone)]
pub struct RefreshFailure {
    pub message: String,
    pub transient: bool,
    pub serve_until: Option<u64>,
}

impl RefreshFailure {
    fn new(e: &FlowError, old: &Session) -> RefreshFailure {
        let serve_until = match e {
            _ if e.is_transient() => Some(old.expires_at),
            FlowError::IdTokenNotRenewed { expires_at } => Some(old.expires_at.min(*expires_at)),
            _ => None,
        };
        RefreshFailure {
            message: e.to_string(),
            transient: e.is_transient(),
            serve_until,
        }
    }
}

impl std::fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Shared = Arc<OnceCell<Result<Session, RefreshFailure>>>;

/// One refresh at a time per session.
#[derive(Default)]
pub struct Refresher {
    inflight: Mutex<HashMap<String, (Instant, Shared)>>,
}

impl Refresher {
    fn slot(&self, key: String) -> Shared {
        let Ok(mut map) = self.inflight.lock() else {
            return Arc::new(OnceCell::new());
        };
        map.retain(|_, (at, done)| match done.get() {
            Some(Err(e)) if e.transient => at.elapsed() < KEEP_TRANSIENT,
            _ => at.elapsed() < KEEP_RESULT,
        });
        Arc::clone(
            &map.entry(key)
                .or_insert_with(|| (Instant::now(), Arc::new(OnceCell::new())))
                .1,
        )
    }

    /// Refreshes `old`; concurrent callers for the same session share one result. The
    /// refresh runs in a task of its own, so it completes (and its result is kept) even
    /// if the request that started it goes away: a client that disconnects mid-refresh
    /// cannot make the next request spend the same refresh token again.
    pub async fn refresh(
        &self,
        cfg: &Arc<Config>,
        provider: &Arc<Provider>,
        old: &Session,
    ) -> Result<Session, RefreshFailure> {
        // Keyed by the refresh token itself (digested): a rotated token means a new refresh.
        let rt = old.refresh_token.as_deref().unwrap_or("");
        let digest = ring::digest::digest(&ring::digest::SHA256, rt.as_bytes());
        let tag: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let slot = self.slot(format!("{}:{tag}", old.id));
        let (cfg, provider, old) = (Arc::clone(cfg), Arc::clone(provider), old.clone());
        let task = tokio::spawn(async move {
            slot.get_or_init(|| async {
                refresh_once(&cfg, &provider, &old)
                    .await
                    .map_err(|e| RefreshFailure::new(&e, &old))
            })
            .await
            .clone()
        });
        task.await.unwrap_or_else(|e| {
            Err(RefreshFailure {
                message: format!("the refresh task failed: {e}"),
                transient: false,
                serve_until: None,
            })
        })
    }
}

async fn refresh_once(
    cfg: &Config,
    provider: &Provider,
    old: &Session,
) -> Result<Session, FlowError> {
    let loaded: Arc<Loaded> = provider
        .loaded()
        .ok_or_else(|| FlowError::Unreachable("the provider is not loaded".into()))?;
    let refresh_token = old
        .refresh_token
        .as_deref()
        .ok_or(FlowError::NoRefreshToken)?;
    let mut tokens = provider.refresh(&loaded, refresh_token).await?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = old.refresh_token.clone();
    }
    let Some(id_token) = tokens.id_token.take() else {
        // The kept ID token must still meet max_age/acr_values, as a new one would.
        provider.recheck_authentication(old.claims())?;
        let access_exp = provider
            .check_access_token(tokens.access_token.as_deref())
            .await?;
        return keep_identity(cfg, old, tokens, access_exp);
    };
    let claims = provider
        .verify(&loaded, &id_token, None, tokens.access_token.as_deref())
        .await?;
    same_subject(&old.identity.sub, &claims)?;
    let claims = complete_claims(
        cfg,
        provider,
        &loaded,
        claims,
        tokens.access_token.as_deref(),
    )
    .await?;
    let access_exp = provider
        .check_access_token(tokens.access_token.as_deref())
        .await?;
    let session = session_from_tokens(
        cfg,
        tokens,
        id_token,
        &claims,
        old.id.clone(),
        old.created_at,
        access_exp,
    )?;
    tracing::info!(user = %session.identity.user, "refreshed the session's tokens");
    Ok(session)
}

/// True when the ID token lacks a claim the identity mapping reads.
fn lacks_mapped_claims(claims: &serde_json::Value, m: &crate::config::ClaimMapping) -> bool {
    let has = |p: &str| crate::identity::claim_at(claims, p).is_some();
    !has(&m.user) || !has(&m.email) || !m.groups.iter().any(|g| has(g))
}

/// Merges userinfo claims (OIDC Core §5.3) into verified ID token claims, when
/// `userinfo` asks for it: the userinfo `sub` must equal the ID token's, and ID token
/// claims win over userinfo ones. With `userinfo = auto` a failing endpoint is logged
/// and the ID token's claims are used alone; with `true` it fails the sign-in.
pub async fn complete_claims(
    cfg: &Config,
    provider: &Provider,
    loaded: &Loaded,
    mut claims: serde_json::Value,
    access_token: Option<&str>,
) -> Result<serde_json::Value, FlowError> {
    let wanted = match cfg.userinfo {
        UserinfoMode::Never => false,
        UserinfoMode::Always => true,
        UserinfoMode::Auto => lacks_mapped_claims(&claims, &cfg.claims),
    };
    let (true, Some(at)) = (wanted, access_token) else {
        return Ok(claims);
    };
    let info = match provider.userinfo(loaded, at).await {
        None => return Ok(claims),
        Some(Ok(info)) => info,
        Some(Err(e)) if cfg.userinfo == UserinfoMode::Auto => {
            tracing::warn!(error = %e, "userinfo failed; using the ID token's claims alone");
            return Ok(claims);
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
    if let (Some(target), serde_json::Value::Object(extra)) = (claims.as_object_mut(), info) {
        for (k, v) in extra {
            target.entry(k).or_insert(v);
        }
    }
    Ok(claims)
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
fn keep_identity(
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
    if cfg.headers.authorization == PassAuthorization::AccessToken || cfg.access_token.is_some() {
        s.access_token = tokens.access_token;
    }
    // The access token's lifetime bounds the extension even when it is not forwarded:
    // it is all the refresh says about how long the identity holds.
    s.expires_at = session_expiry(fw, known, false).map_or(lifetime, |e| e.min(lifetime));
    s.values = Default::default();
    tracing::info!(user = %s.identity.user, "refreshed the session's tokens; the provider sent no new ID token, so the one from sign-in is kept (OIDC Core 12.2)");
    Ok(s)
}

/// The auth step, shared by the sidecar, `/oauth2/userinfo` and `/oauth2/auth`:
/// skip routes -> bearer token or session -> refresh -> identity -> rules.
pub async fn authenticate(st: &AppState, req: &AuthRequest<'_>) -> Decision {
    let cfg = &st.cfg;
    if let Some(path) = req.path {
        if let Some(rule) = skip_rule(&cfg.skip_auth_routes, req.method, path) {
            return Decision::Public {
                rule: rule.to_string(),
            };
        }
    }
    if let (Some(verifier), Some(token)) = (&st.bearer, bearer_of(req.headers)) {
        return match verifier.verify(cfg, &st.provider, token).await {
            Ok(session) => with_rules(st, req, Arc::new(session), Vec::new()),
            Err(e) => Decision::BadToken {
                reason: e.to_string(),
            },
        };
    }
    match load_session(st, req.cookies).await {
        Ok((session, set_cookies)) => with_rules(st, req, session, set_cookies),
        Err(login) => login,
    }
}

/// Applies the configured and per-request rules to a verified identity.
fn with_rules(
    st: &AppState,
    req: &AuthRequest<'_>,
    session: Arc<Session>,
    set_cookies: Vec<HeaderValue>,
) -> Decision {
    if st.policy.is_empty() && req.extra.is_none() {
        return Decision::Allow {
            session,
            set_cookies,
        };
    }
    let needs_claims = st.policy.needs_claims() || req.extra.is_some_and(|p| p.needs_claims());
    let claims = if needs_claims {
        session.claims()
    } else {
        &serde_json::Value::Null
    };
    match check_all(&st.policy, req.extra, &session.identity, claims) {
        Ok(()) => Decision::Allow {
            session,
            set_cookies,
        },
        Err(denial) => Decision::Deny {
            session,
            denial,
            set_cookies,
        },
    }
}

/// The session cookie -> a valid session, refreshed when due; `Err` is the login decision.
async fn load_session(
    st: &AppState,
    cookies: &RequestCookies<'_>,
) -> Result<(Arc<Session>, Vec<HeaderValue>), Decision> {
    let (cfg, store) = (&st.cfg, &st.sessions);
    let login = |reason| Decision::Login {
        reason,
        clear: store.clear(cookies),
    };
    let Some(session) = store.load(cookies).await else {
        return Err(login(LoginReason::NoSession));
    };
    let now = now_secs();
    if now
        >= session
            .created_at
            .saturating_add(cfg.cookie.session_lifetime.as_secs())
    {
        return Err(login(LoginReason::Expired));
    }
    if now.saturating_add(cfg.refresh_before.as_secs()) < session.expires_at {
        return Ok((session, Vec::new()));
    }
    if session.refresh_token.is_none() || st.provider.down_recently() {
        // Nothing to refresh with, or the provider just failed: the tokens serve until
        // they expire (a later request tries the refresh again).
        if now < session.expires_at {
            return Ok((session, Vec::new()));
        }
        return Err(login(LoginReason::Expired));
    }
    match st.refresher.refresh(cfg, &st.provider, &session).await {
        // A result kept for late requests with the superseded cookie (up to a minute)
        // may itself have expired by now: it is never passed on.
        Ok(fresh) if fresh.expires_at <= now_secs() => Err(login(LoginReason::Expired)),
        Ok(fresh) => match store.save(&fresh, cookies).await {
            Ok(set_cookies) => Ok((Arc::new(fresh), set_cookies)),
            Err(e) => {
                tracing::warn!(error = %e, "could not store the refreshed session; asking the user to log in again");
                Err(login(LoginReason::RefreshFailed))
            }
        },
        // The provider is down: its tokens are still good until they expire, so the user
        // keeps working; a later request tries the refresh again.
        Err(e) if e.transient && e.serve_until.is_some_and(|t| now < t) => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed (provider unavailable); the session is used until it expires");
            Ok((session, Vec::new()))
        }
        // No new ID token to replace the forwarded one: the session serves until that one
        // expires (the failure is kept a minute, so the provider is not asked again on
        // every request), then the user signs in.
        Err(e) if e.serve_until.is_some_and(|t| now < t) => {
            tracing::info!(user = %session.identity.user, reason = %e, "session not extended; it ends when its forwarded ID token expires");
            Ok((session, Vec::new()))
        }
        Err(e) => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed; the user must log in again");
            Err(login(LoginReason::RefreshFailed))
        }
    }
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
