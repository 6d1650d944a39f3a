//! The identity assertion on the wire: the JWKS endpoint that publishes gatehouse's
//! public keys (`/.well-known/gatehouse/jwks.json`, on `listen` and `auth_listen`, never
//! proxied), and [`attach`], which sets the assertion on a proxied request or a
//! forward-auth answer. Signing and caching are `crate::assertion`'s; client copies of
//! the header were removed before (`headers::strip_identity`) or refused (forward auth).

use super::{AppError, AppState, Ctx};
use crate::config::Config;
use crate::headers::SetHeader;
use crate::session::Session;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How long caches may keep the key set: an app that meets an unknown `kid` fetches it
/// again (the verification recipe in the README), and a rotation publishes the new key
/// this long before it signs.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// `GET /.well-known/gatehouse/jwks.json`: the public keys (first signs), or 404 JSON
/// saying the assertion is off.
pub async fn jwks(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let Some(a) = &st.cfg.assertion else {
        let ctx = Ctx::new(&st.cfg, req.method(), req.headers(), super::peer_of(&req));
        return AppError::AssertionOff.respond(&ctx.request_id, ctx.trace.trace_id(), true);
    };
    let mut resp = a.keys.jwks().to_string().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECS}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// Logged once: an assertion was left out because its audience is unknown.
static NO_AUDIENCE: AtomicBool = AtomicBool::new(false);

/// Sets the assertion for `session` on `out` when the assertion is on. `host` is the
/// host the request was for as gatehouse believes it (the proxied request's, or the
/// original request's in forward auth), the audience unless `assertion_audience` is set;
/// with neither, no assertion is set (the app then refuses the request) and gatehouse
/// says why once.
pub fn attach(out: &mut impl SetHeader, cfg: &Config, session: &Session, host: Option<&str>) {
    let Some(a) = &cfg.assertion else { return };
    let policy = &a.policy;
    let Some(audience) = policy.audience_for(host) else {
        if !NO_AUDIENCE.swap(true, Ordering::Relaxed) {
            tracing::warn!("identity assertion left out: the host the request was for is unknown (forward auth without trusted_proxies or forward_auth_client, or no Host header) and assertion_audience is not set");
        }
        return;
    };
    if let Some(v) = a.for_session(session, policy, &audience, crate::util::now_secs()) {
        out.set(cfg.headers.assertion.clone(), v);
    }
}

/// [`attach`] for a forward-auth answer: the audience is the host of the original
/// request's URL (known only from a trusted ingress), parsed only when it is needed.
pub fn attach_for_original(
    out: &mut impl SetHeader,
    cfg: &Config,
    session: &Session,
    original_url: Option<&str>,
) {
    let Some(a) = &cfg.assertion else { return };
    let host = original_url
        .filter(|_| a.policy.audience.is_none())
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    attach(out, cfg, session, host.as_deref());
}
