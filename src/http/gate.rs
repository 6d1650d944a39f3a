//! Everything that is not a gatehouse endpoint: run the auth step, then either refuse
//! (`answer.rs`: browsers are sent to the provider, API clients get 401 JSON, a refused
//! identity gets 403) or sanitise the headers, inject the verified identity and proxy to
//! the upstream. A `skip_auth_routes` route is proxied with no identity at all. With
//! `[[routes]]` the host and path pick the app (its upstream and its own rules, ANDed
//! with the configured ones) first; a request for no app is a 404.
//!
//! Ordering matters: forwarding metadata is read (trusted proxies only) before the strip,
//! and the strip runs before injection (also on skipped routes). What gatehouse sets
//! (forwarding, identity, request id, `traceparent`: `trace.rs`) is kept apart as
//! `Additions`, which the proxy writes after the client's remaining headers.

use super::answer::{add_cookies, refusal};
use super::login::{cookies_of, safe_target};
use super::{peer_of, AppError, AppState, Ctx};
use crate::audit::Mode;
use crate::auth::{authenticate, AuthRequest, Decision};
use crate::gateway::Applied;
use crate::headers::{self, SetHeader};
use crate::session::Session;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use std::sync::Arc;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A 431 body longer than this is the upstream's own explanation, passed on as it is;
/// an empty or short one (Go's net/http sends its status line as text, without a length)
/// tells the user nothing, so gatehouse's page replaces it.
const OWN_EXPLANATION: u64 = 1024;

/// True when the upstream declared a body long enough to be a page of its own.
fn explains_itself(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > OWN_EXPLANATION)
}

/// The upstream refused the headers gatehouse sent it (431): names and sizes of what
/// gatehouse added, rebuilt from the session only on this path (nothing is kept per
/// request for it), never the values.
fn headers_too_large(
    st: &AppState,
    ctx: &Ctx,
    session: &Session,
    route: Option<usize>,
    upstream: Option<&url::Url>,
) -> AppError {
    let mut add = headers::Additions::default();
    ctx.forwarded.apply(&mut add);
    identity(&mut add, st, ctx, session, Applied::of(&st.cfg, route));
    // As on the wire: `name: value\r\n`.
    let sent: Vec<(String, usize)> = add
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), n.as_str().len() + v.len() + 4))
        .collect();
    let total = sent.iter().map(|(_, b)| b).sum();
    AppError::IdentityHeadersTooLarge {
        upstream: upstream
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .unwrap_or_default(),
        sent,
        total,
    }
}

/// Sets the verified identity for the app: its header set's values (cached in the
/// session for the top-level set) and the signed assertion (when on).
fn identity(
    add: &mut headers::Additions,
    st: &AppState,
    ctx: &Ctx,
    session: &Session,
    applied: Applied<'_>,
) {
    let names = applied.headers;
    headers::inject(add, names, &session.values(names));
    if let Some(policy) = applied.assertion {
        let host = ctx.forwarded.host.as_deref();
        super::assertion::attach(add, &st.cfg, policy, session, host);
    }
}

pub async fn gate(State(st): State<Arc<AppState>>, mut req: Request) -> Response {
    let ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    // `[[routes]]`: the app for this host and path, or 404. Without routes (the one
    // `upstream`) no lookup is made.
    let route = if st.cfg.routes.is_empty() {
        None
    } else {
        let host = ctx.forwarded.host.as_deref();
        match st.cfg.routes.lookup(host, req.uri().path()) {
            Some(i) => Some(i),
            None => return ctx.fail(AppError::NoRoute),
        }
    };
    let (proxy, upstream) = match route {
        // Built from the same table: a route always has its proxy. A route for forward
        // auth only (no upstream) is no app here.
        Some(i) => match (st.routes.get(i), st.cfg.routes.routes().get(i)) {
            (Some(p), Some(r)) if r.upstream.is_some() => (p, r.upstream.as_ref()),
            _ => return ctx.fail(AppError::NoRoute),
        },
        None if st.cfg.upstream.is_some() => (&*st.proxy, st.cfg.upstream.as_ref()),
        None => return ctx.fail(AppError::NoUpstream),
    };
    // The route's own rules, ANDed with the configured ones, and its own settings.
    let extra = route.and_then(|i| st.auth.route_policies.get(i)?.as_ref());
    let extra = extra.as_slice();
    let applied = Applied::of(&st.cfg, route);
    let (decision, cookie_rewrite) = {
        let cookies = cookies_of(req.headers());
        let audit = ctx.audit_at(Mode::Proxy, req.uri().path());
        let ar = AuthRequest {
            cookies: &cookies,
            headers: req.headers(),
            method: req.method(),
            path: Some(req.uri().path()),
            extra,
            skip: applied.skip_auth_routes,
            audit: &audit,
        };
        let decision = authenticate(&st.auth, &ar).await;
        // What the upstream gets of the Cookie header, from the same parse.
        (
            decision,
            cookies.without(|n| st.auth.sessions.owns_cookie(n)),
        )
    };
    let (session, set_cookies) = match decision {
        Decision::Allow {
            session,
            set_cookies,
        } => (Some(session), set_cookies),
        Decision::Public { rule } => {
            tracing::debug!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), %rule, "skip_auth_routes: no login needed");
            (None, Vec::new())
        }
        refused => {
            let target = safe_target(
                &st.cfg,
                &ctx,
                req.uri().path_and_query().map(|p| p.as_str()),
            );
            return refusal(&st, &ctx, refused, target, true).await;
        }
    };

    let asked = headers::wants_upgrade(req.headers());
    let upgrade = asked && headers::upgrade_allowed(req.headers(), &st.cfg.allowed_upgrades);
    if asked && !upgrade {
        // Forwarded as a plain request: the hop-by-hop removal drops `Upgrade`.
        tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), "refused a protocol upgrade not in allowed_upgrades");
    }
    let authenticated = session.is_some();
    // An upgraded connection (WebSocket) closes when the session behind it ends.
    let tether = upgrade.then(|| {
        let tether = crate::proxy::Tether {
            session: session.as_ref().map(|s| crate::proxy::tunnels::Owner {
                id: s.id.clone(),
                sid: s.sid.clone(),
                sub: s.identity.sub.clone(),
                created_at: s.created_at,
                stored: s.ticket.is_some(),
            }),
            ends_at: session.as_ref().map(|s| {
                s.expires_at.min(
                    s.created_at
                        .saturating_add(st.cfg.cookie.session_lifetime.as_secs()),
                )
            }),
            // Asked again after a reload: the new rules may no longer let it through.
            admitted: Some({
                // Matched again, with its route's rules, after a reload.
                let route = route.and_then(|i| {
                    Some(crate::proxy::tunnels::Routed {
                        host: ctx.forwarded.host.clone()?,
                        path: req.uri().path().to_string(),
                        upstream: st.cfg.routes.routes().get(i)?.upstream.clone()?,
                    })
                });
                match &session {
                    Some(s) => crate::proxy::tunnels::Admitted::Identity(Arc::clone(s), route),
                    None => crate::proxy::tunnels::Admitted::Public {
                        method: req.method().clone(),
                        path: req.uri().path().to_string(),
                        route,
                    },
                }
            }),
            websocket: headers::is_websocket(req.headers()),
        };
        (Arc::clone(&st.tunnels), tether)
    });
    let h = req.headers_mut();
    headers::remove_hop_by_hop(h, upgrade);
    headers::strip_identity(h, applied.headers);
    if session.is_none() {
        // A skip route let it through, maybe for some methods only: the upstream runs the
        // method that was checked.
        headers::strip_method_override(h);
    }
    headers::rewrite_cookies(h, cookie_rewrite, |n| st.auth.sessions.owns_cookie(n));
    // What gatehouse sets goes beside the client's headers, not into their map.
    let mut add = headers::Additions::default();
    ctx.forwarded.apply(&mut add);
    if let Some(session) = &session {
        identity(&mut add, &st, &ctx, session, applied);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        if h.contains_key(&X_REQUEST_ID) {
            h.remove(&X_REQUEST_ID);
        }
        add.set(X_REQUEST_ID, v);
    }
    if let Some(v) = ctx.trace.propagate(h) {
        add.set(crate::trace::TRACEPARENT, v);
    }

    let mut resp = match proxy.forward(req, add, tether).await {
        Ok(resp) => resp,
        Err(e) => return ctx.fail(e),
    };
    if let (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Some(session)) = (resp.status(), &session)
    {
        if !explains_itself(&resp) {
            let mut resp = ctx.fail(headers_too_large(&st, &ctx, session, route, upstream));
            add_cookies(&mut resp, set_cookies);
            return resp;
        }
    }
    headers::shield_from_shared_caches(resp.headers_mut(), authenticated, !set_cookies.is_empty());
    add_cookies(&mut resp, set_cookies);
    resp
}
