//! Everything that is not a gatehouse endpoint: run the auth step, then either send the
//! user to log in (browsers: 302 to the provider; API clients: 401 JSON) or sanitise the
//! headers, inject the verified identity and proxy to the upstream.
//!
//! Ordering matters: forwarding metadata is read (trusted proxies only) before the strip,
//! the strip runs before injection, and our cookies are removed last.

use super::login::{begin_login, cookies_of, safe_target};
use super::{peer_of, AppError, AppState, Ctx};
use crate::auth::{authenticate, Decision};
use crate::headers;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::Response;
use std::sync::Arc;

pub async fn gate(State(st): State<Arc<AppState>>, mut req: Request) -> Response {
    let ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    let decision = {
        let cookies = cookies_of(req.headers());
        authenticate(&st.cfg, &st.provider, &st.sessions, &st.refresher, &cookies).await
    };
    let (session, set_cookies) = match decision {
        Decision::Allow {
            session,
            set_cookies,
        } => (session, set_cookies),
        Decision::Login { reason, clear } => {
            tracing::debug!(request_id = %ctx.request_id, ?reason, path = req.uri().path(), "login required");
            let target = safe_target(&ctx, req.uri().path_and_query().map(|p| p.as_str()));
            if ctx.api {
                let login_url = format!("/oauth2/start?rd={}", crate::util::query_escape(&target));
                let mut resp = ctx.fail(AppError::Unauthenticated { login_url });
                for c in clear {
                    resp.headers_mut().append(header::SET_COOKIE, c);
                }
                return resp;
            }
            return begin_login(&st, &ctx, target, clear);
        }
    };

    let upgrade = headers::wants_upgrade(req.headers());
    let h = req.headers_mut();
    headers::remove_hop_by_hop(h, upgrade);
    headers::strip_identity(h, &st.cfg.headers);
    ctx.forwarded.apply(h);
    headers::inject(h, &st.cfg.headers, session.values(&st.cfg.headers));
    headers::remove_own_cookies(h, |n| st.sessions.owns_cookie(n));
    if let Ok(v) = axum::http::HeaderValue::from_str(&ctx.request_id) {
        h.insert("x-request-id", v);
    }

    let mut resp = match st.proxy.forward(req, upgrade).await {
        Ok(resp) => resp,
        Err(e) => return ctx.fail(e),
    };
    for c in set_cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}
