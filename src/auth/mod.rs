//! The auth step, shared by every way of acting on a request: skip routes, then a bearer
//! token or the session cookie (refreshed when due), then the access rules (`authz.rs`).
//! The sidecar proxies on [`Decision::Allow`]; the forward-auth endpoint answers with the
//! same decision, so the two can never disagree.
//!
//! Beside it: `tokens.rs` builds sessions from token responses (login and refresh share
//! that code; a session never outlives a token it forwards: [`session_expiry`]), and
//! `refresh.rs` coordinates refreshes.

mod context;
mod refresh;
mod tokens;

pub use context::AuthContext;
pub use refresh::{RefreshFailure, Refresher};
pub use tokens::{
    complete_claims, session_expiry, session_from_tokens, Expiries, Forwards, UserClaims,
};

use crate::audit::{self, Scope};
use crate::authz::{check_all, Denial, Policy};
use crate::bearer::bearer_of;
use crate::routes::skip_rule;
use crate::session::chunks::RequestCookies;
use crate::session::Session;
use crate::util::now_secs;
use axum::http::{HeaderMap, HeaderValue, Method};
use std::sync::Arc;

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
    /// The session store (Redis) cannot answer: 503 naming it and the cause, never a
    /// login (the session may well be fine).
    StoreDown { cause: String },
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
    /// Per-request rules (a route's own, or the forward-auth URL's query), ANDed with the
    /// configured ones.
    pub extra: &'a [&'a Policy],
    /// The route's own `skip_auth_routes`, asked after the top-level ones (which apply
    /// whatever the route); empty without routes.
    pub skip: &'a [crate::routes::SkipRoute],
    /// The request as audit events name it: the decisions made here (a rule's denial, a
    /// refused bearer token, a failed refresh, an idle session) are audited here, once,
    /// whichever mode asked.
    pub audit: &'a Scope<'a>,
}

/// The auth step, shared by the sidecar, `/oauth2/userinfo` and `/oauth2/auth`:
/// skip routes -> bearer token or session -> refresh -> identity -> rules.
pub async fn authenticate(st: &AuthContext, req: &AuthRequest<'_>) -> Decision {
    let cfg = &st.cfg;
    if let Some(path) = req.path {
        let skipped = skip_rule(&cfg.skip_auth_routes, req.method, path)
            .or_else(|| skip_rule(req.skip, req.method, path));
        if let Some(rule) = skipped {
            return Decision::Public {
                rule: rule.to_string(),
            };
        }
    }
    if let (Some(verifier), Some(token)) = (&st.bearer, bearer_of(req.headers)) {
        let verified = verifier.verify(cfg, &st.provider, token).await;
        crate::metrics::bearer(verified.as_ref().err());
        return match verified {
            Ok(session) => with_rules(st, req, Arc::new(session), Vec::new()),
            Err(e) => {
                audit::bearer_refused(req.audit, &e);
                Decision::BadToken {
                    reason: e.to_string(),
                }
            }
        };
    }
    match load_session(st, req.cookies, req.audit).await {
        Ok((session, set_cookies)) => with_rules(st, req, session, set_cookies),
        Err(login) => login,
    }
}

/// Whether the configured rules still let `admitted` through: a connection that stays
/// open (a WebSocket), asked again after a configuration reload. A skip route is asked
/// again of the route list; an identity, of the rules (`allowed_*`, `required_claims`).
/// One opened under a `[[routes]]` entry is matched again against the route table: it
/// must still reach a route to the same upstream, and an identity must pass that route's
/// rules too. One opened under the single `upstream` is closed when routes replace it.
pub fn still_admitted(st: &AuthContext, admitted: &crate::proxy::tunnels::Admitted) -> bool {
    use crate::proxy::tunnels::Admitted;
    let (extra, own_skip) = match admitted.route() {
        // Opened under the single `upstream`, and the configuration has routes now: no
        // top-level upstream is left (routes refuse one), and it was never matched
        // against the table, whose route for its host may refuse it.
        None if !st.cfg.routes.is_empty() => return false,
        None => (None, &[][..]),
        Some(r) => {
            let table = &st.cfg.routes;
            match table.lookup(Some(&r.host), &r.path) {
                Some(i) => match table.routes().get(i) {
                    Some(n) if n.upstream.as_ref() == Some(&r.upstream) => (
                        st.route_policies.get(i).and_then(Option::as_ref),
                        n.own.skip_auth_routes.as_slice(),
                    ),
                    _ => return false,
                },
                None => return false,
            }
        }
    };
    match admitted {
        Admitted::Identity(session, _) => {
            let extra = extra.as_slice();
            (st.policy.is_empty() && extra.is_empty())
                || check_all(&st.policy, extra, &session.identity, session.claims()).is_ok()
        }
        Admitted::Public { method, path, .. } => {
            skip_rule(&st.cfg.skip_auth_routes, method, path).is_some()
                || skip_rule(own_skip, method, path).is_some()
        }
    }
}

/// Applies the configured and per-request rules to a verified identity.
fn with_rules(
    st: &AuthContext,
    req: &AuthRequest<'_>,
    session: Arc<Session>,
    set_cookies: Vec<HeaderValue>,
) -> Decision {
    if st.policy.is_empty() && req.extra.is_empty() {
        return Decision::Allow {
            session,
            set_cookies,
        };
    }
    let needs_claims = st.policy.needs_claims() || req.extra.iter().any(|p| p.needs_claims());
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
        Err(denial) => {
            // The denial names the token's claims (names only) when no identity was found
            // for a rule, which is most often a configuration mismatch: decoded only here,
            // on the refusal path, when the rules did not need them.
            let denial = if needs_claims {
                denial
            } else {
                check_all(&st.policy, req.extra, &session.identity, session.claims())
                    .err()
                    .unwrap_or(denial)
            };
            audit::denied(req.audit, &session, &denial);
            crate::metrics::denial(&denial);
            Decision::Deny {
                session,
                denial,
                set_cookies,
            }
        }
    }
}

/// The presented session, served only before its own end. Every arm of [`load_session`]
/// that serves the session it was given goes through here: a kept refresh failure's
/// `serve_until` comes from the session that ran the refresh, which may be a newer
/// cookie of the same session (same id and refresh token) than this one.
fn serve_presented(session: Arc<Session>, now: u64) -> Option<(Arc<Session>, Vec<HeaderValue>)> {
    (now < session.expires_at).then(|| (session, Vec::new()))
}

/// After a refresh that failed without ending the session: the presented session or,
/// when the provider rotated the refresh token all the same, the session holding the new
/// one (the redis store has stored it; the cookie store hands it back in the cookie), so
/// the spent token is never presented again. Served only before its own end.
async fn serve_after_failure(
    st: &AuthContext,
    cookies: &RequestCookies<'_>,
    presented: Arc<Session>,
    failure: RefreshFailure,
    now: u64,
) -> Option<(Arc<Session>, Vec<HeaderValue>)> {
    let Some(renewed) = failure.renewed.filter(|r| now < r.expires_at) else {
        return serve_presented(presented, now);
    };
    match st.sessions.after_refresh(&renewed, cookies).await {
        Ok(set_cookies) => Some((Arc::new(*renewed), set_cookies)),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand back the session with its rotated refresh token");
            serve_presented(presented, now)
        }
    }
}

/// The session cookie -> a valid session, refreshed when due; `Err` is the login decision
/// (or the store being down). Never a session past its `expires_at` (the first of its
/// forwarded tokens to expire), its lifetime, or its idle timeout.
async fn load_session(
    st: &AuthContext,
    cookies: &RequestCookies<'_>,
    audit: &Scope<'_>,
) -> Result<(Arc<Session>, Vec<HeaderValue>), Decision> {
    let (cfg, store) = (&st.cfg, &st.sessions);
    let login = |reason| Decision::Login {
        reason,
        clear: store.clear(cookies),
    };
    let session = match store.load(cookies).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(login(LoginReason::NoSession)),
        Err(e) => return Err(Decision::StoreDown { cause: e.0 }),
    };
    let now = now_secs();
    let expired = || login(LoginReason::Expired);
    if now
        >= session
            .created_at
            .saturating_add(cfg.cookie.session_lifetime.as_secs())
    {
        return Err(expired());
    }
    if let Some(idle) = cfg.cookie.idle_timeout {
        if now >= last_use(&session).saturating_add(idle.as_secs()) {
            tracing::info!(user = %session.identity.user, "the session was idle for longer than session_idle_timeout_secs");
            audit::session_ended_idle(audit, &session, idle.as_secs());
            return Err(expired());
        }
    }
    let (session, set_cookies) = refreshed(st, cookies, session, now, audit).await?;
    Ok(touched(st, cookies, session, set_cookies).await)
}

/// When a session was last used (its start, before use was recorded).
fn last_use(s: &Session) -> u64 {
    s.seen.max(s.created_at)
}

/// With an idle timeout, records that the session is in use, at most every quarter of
/// the timeout (a minute at most), so an active session never idles out. A failure to
/// record it is logged; the request goes on.
async fn touched(
    st: &AuthContext,
    cookies: &RequestCookies<'_>,
    session: Arc<Session>,
    mut set_cookies: Vec<HeaderValue>,
) -> (Arc<Session>, Vec<HeaderValue>) {
    let Some(idle) = st.cfg.cookie.idle_timeout else {
        return (session, set_cookies);
    };
    let now = now_secs();
    let every = (idle.as_secs() / 4).clamp(1, 60);
    if now < last_use(&session).saturating_add(every) {
        return (session, set_cookies);
    }
    let mut used = (*session).clone();
    used.seen = now;
    match st.sessions.save(&used, cookies).await {
        Ok(c) => {
            // The touch re-seals the same session: its cookies replace any set before.
            if !c.is_empty() {
                set_cookies = c;
            }
            (Arc::new(used), set_cookies)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record that the session is in use");
            (session, set_cookies)
        }
    }
}

/// The session, refreshed when due.
async fn refreshed(
    st: &AuthContext,
    cookies: &RequestCookies<'_>,
    session: Arc<Session>,
    now: u64,
    audit: &Scope<'_>,
) -> Result<(Arc<Session>, Vec<HeaderValue>), Decision> {
    let (cfg, store) = (&st.cfg, &st.sessions);
    let login = |reason| Decision::Login {
        reason,
        clear: store.clear(cookies),
    };
    let expired = || login(LoginReason::Expired);
    if now.saturating_add(cfg.refresh_before.as_secs()) < session.expires_at {
        return serve_presented(session, now).ok_or_else(expired);
    }
    if session.refresh_token.is_none() || st.provider.down_recently() {
        // Nothing to refresh with, or the provider just failed: the tokens serve until
        // they expire (a later request tries the refresh again).
        return serve_presented(session, now).ok_or_else(expired);
    }
    match st
        .refresher
        .refresh(cfg, &st.provider, &st.sessions, &session)
        .await
    {
        // A result kept for late requests with the superseded cookie (up to a minute)
        // may itself have expired by now: it is never passed on.
        Ok(fresh) if fresh.expires_at <= now_secs() => Err(expired()),
        Ok(fresh) => match store.after_refresh(&fresh, cookies).await {
            Ok(set_cookies) => Ok((Arc::new(fresh), set_cookies)),
            Err(e) => {
                tracing::warn!(error = %e, "could not store the refreshed session; asking the user to log in again");
                audit::refresh_failed(audit, &session, "session_store_unavailable", None);
                Err(login(LoginReason::RefreshFailed))
            }
        },
        // The provider is down: its tokens are still good until they expire, so the user
        // keeps working; a later request tries the refresh again.
        Err(e) if e.transient && e.serve_until.is_some_and(|t| now < t) => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed (provider unavailable); the session is used until it expires");
            serve_after_failure(st, cookies, session, e, now)
                .await
                .ok_or_else(expired)
        }
        // No new ID token to replace the forwarded one: the session serves until that one
        // expires (the failure is kept a minute, so the provider is not asked again on
        // every request), then the user signs in.
        Err(e) if e.serve_until.is_some_and(|t| now < t) => {
            tracing::info!(user = %session.identity.user, reason = %e, "session not extended; it ends when its forwarded ID token expires");
            serve_after_failure(st, cookies, session, e, now)
                .await
                .ok_or_else(expired)
        }
        Err(e) => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed; the user must log in again");
            audit::refresh_failed(audit, &session, e.code, e.provider_error.as_deref());
            Err(login(LoginReason::RefreshFailed))
        }
    }
}
