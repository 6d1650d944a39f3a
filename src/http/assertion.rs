//! The identity assertion on the wire: the JWKS endpoint that publishes gatehouse's
//! public keys (`/.well-known/gatehouse/jwks.json`, on `listen` and `auth_listen`, never
//! proxied), and [`attach`], which sets the assertion on a proxied request or a
//! forward-auth answer. Signing and caching are `crate::assertion`'s; client copies of
//! the header were removed before (`headers::strip_identity`) or refused (forward auth).

use super::{AppError, AppState, Ctx};
use crate::assertion::AssertionPolicy;
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

/// Sets the assertion for `session` on `out` when the assertion is on, with `policy`
/// (the top-level one, or the route's own). `host` is the host the request was for as
/// gatehouse believes it (the proxied request's, or the original request's in forward
/// auth), the audience unless the policy names one; with neither, no assertion is set
/// (the app then refuses the request) and gatehouse says why once.
pub fn attach(
    out: &mut impl SetHeader,
    cfg: &Config,
    policy: &AssertionPolicy,
    session: &Session,
    host: Option<&str>,
) {
    let Some(a) = &cfg.assertion else { return };
    let Some(audience) = policy.audience_for(host) else {
        if !NO_AUDIENCE.swap(true, Ordering::Relaxed) {
            tracing::warn!("identity assertion left out: the host the request was for is unknown (forward auth without trusted_proxies or forward_auth_client, or no Host header) and assertion_audience is not set");
        }
        return;
    };
    let now = crate::util::now_secs();
    if let Some(v) = a.for_session(session, policy, &audience, session_end(cfg, session), now) {
        out.set(cfg.headers.assertion.clone(), v);
    }
}

/// When `session` ends at the latest, as `auth::load_session` decides: its tokens
/// expire, `session_lifetime_secs` after its login, or `session_idle_timeout_secs` after
/// its last recorded use. An assertion must not outlive it.
fn session_end(cfg: &Config, session: &Session) -> u64 {
    let end = session.expires_at.min(
        session
            .created_at
            .saturating_add(cfg.cookie.session_lifetime.as_secs()),
    );
    match cfg.cookie.idle_timeout {
        Some(idle) => end.min(
            session
                .seen
                .max(session.created_at)
                .saturating_add(idle.as_secs()),
        ),
        None => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use axum::http::HeaderMap;
    use base64::Engine;

    fn config(extra: &[(&'static str, &str)]) -> Config {
        let key = format!(
            "{}/src/assertion/testdata/p256.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut raw = RawConfig::default();
        let base: [(&'static str, &str); 8] = [
            ("upstream", "http://127.0.0.1:9"),
            ("issuer_url", "https://sso.example.com"),
            ("client_id", "c"),
            ("client_secret", "s"),
            (
                "cookie_secret",
                "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            ),
            ("assertion_signing_key_file", key.as_str()),
            ("assertion_issuer", "https://auth.example.com"),
            ("assertion_audience", "app"),
        ];
        for (k, v) in base.iter().chain(extra) {
            raw.set(k, v);
        }
        Config::from_raw(&raw).unwrap_or_else(|e| panic!("{}", e.problems.join("\n")))
    }

    fn session(id: &str, created_at: u64, seen: u64, expires_at: u64) -> Session {
        Session {
            id: id.into(),
            id_token: format!("h.p.{id}"),
            expires_at,
            created_at,
            seen,
            ..Session::sample()
        }
    }

    /// The `exp` of the assertion `attach` sets, `None` when it sets none.
    fn exp(cfg: &Config, s: &Session) -> Option<u64> {
        let mut out = HeaderMap::new();
        let policy = &cfg.assertion.as_ref()?.policy;
        attach(&mut out, cfg, policy, s, Some("app.example.com"));
        let token = out.get("x-gatehouse-assertion")?.to_str().ok()?.to_string();
        let payload = token.split('.').nth(1)?;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()?,
        )
        .ok()?;
        claims["exp"].as_u64()
    }

    #[test]
    fn the_assertion_never_outlives_the_session() {
        let now = crate::util::now_secs();
        let cfg = config(&[("session_lifetime_secs", "3600")]);
        // Tokens valid for hours, but the session's lifetime ends in 100 s.
        let old = session("old", now - 3500, now - 10, now + 7200);
        let e = exp(&cfg, &old).expect("signed");
        assert!(e <= now - 3500 + 3600, "exp {e} is past the session's end");
        // A young session keeps the full lifetime; its tokens still bound it.
        let young = session("young", now - 10, now - 10, now + 7200);
        let e = exp(&cfg, &young).expect("signed");
        assert!(e >= now + 299 && e <= now + 301, "{e}");
        let short = session("short", now - 10, now - 10, now + 50);
        assert_eq!(exp(&cfg, &short), Some(now + 50));
        // Unused for nearly the idle timeout: the assertion ends when the session would.
        let cfg = config(&[("session_idle_timeout_secs", "600")]);
        let idle = session("idle", now - 1000, now - 560, now + 7200);
        let e = exp(&cfg, &idle).expect("signed");
        assert!(e <= now - 560 + 600, "exp {e} is past the idle end");
        let fresh = session("fresh", now - 1000, 0, now + 7200);
        assert_eq!(exp(&cfg, &fresh), None, "idle since its login: over");
    }
}
