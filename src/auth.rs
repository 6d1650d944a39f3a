//! The auth step, shared by every way of acting on a request: skip routes, then a bearer
//! token or the session cookie (refreshed when due), then the access rules (`authz.rs`).
//! The sidecar proxies on [`Decision::Allow`]; the forward-auth endpoint answers with the
//! same decision, so the two can never disagree.
//!
//! Also builds sessions from token responses (login and refresh share that code), and
//! coordinates refreshes: one at a time per session, with the result kept briefly so that
//! requests still carrying the old cookie reuse it instead of spending a single-use
//! refresh token twice (tsidp, Dex rotation).

use crate::authz::{check_all, Denial, Policy};
use crate::bearer::bearer_of;
use crate::config::{Config, PassAuthorization, UserinfoMode};
use crate::http::AppState;
use crate::identity::map_claims;
use crate::oidc::verify::{same_subject, TokenError};
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
    // A forwarded access token that expires first bounds the session: the upstream must
    // never be handed an expired token.
    let id_exp = claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
    let expires_at = access_exp.map_or(id_exp, |a| a.min(id_exp));
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
/// has not said no (the session may be used until it expires).
#[derive(Debug, Clone)]
pub struct RefreshFailure {
    pub message: String,
    pub transient: bool,
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
                    .map_err(|e| RefreshFailure {
                        message: e.to_string(),
                        transient: e.is_transient(),
                    })
            })
            .await
            .clone()
        });
        task.await.unwrap_or_else(|e| {
            Err(RefreshFailure {
                message: format!("the refresh task failed: {e}"),
                transient: false,
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
        provider
            .check_access_token(tokens.access_token.as_deref())
            .await?;
        return keep_identity(cfg, old, tokens);
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
/// identity and ID token, and lives as long as the new access token (`expires_in`). Without
/// `expires_in` either, there is nothing to extend the session by, and the user signs in.
fn keep_identity(cfg: &Config, old: &Session, tokens: TokenSet) -> Result<Session, FlowError> {
    let secs = tokens
        .expires_in
        .filter(|s| *s > 0)
        .ok_or(FlowError::Invalid(
            "the refresh response has neither an ID token nor expires_in".into(),
        ))?;
    let mut s = old.clone();
    s.refresh_token = tokens.refresh_token;
    if cfg.headers.authorization == PassAuthorization::AccessToken || cfg.access_token.is_some() {
        s.access_token = tokens.access_token;
    }
    s.expires_at = now_secs().saturating_add(secs.unsigned_abs());
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
        Err(e) if e.transient && now < session.expires_at => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed (provider unavailable); the session is used until it expires");
            Ok((session, Vec::new()))
        }
        Err(e) => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed; the user must log in again");
            Err(login(LoginReason::RefreshFailed))
        }
    }
}
