//! `/oauth2/auth` (and any path below it): the verdict for Traefik ForwardAuth, nginx
//! `auth_request`, Caddy `forward_auth` and Envoy ext_authz. It runs the very same auth
//! step as the sidecar (`auth::authenticate`), then answers instead of proxying:
//!
//! - 200 (never 202: Envoy accepts only 200) with the identity in response headers
//!   (`headers::write_auth_response`) and a refreshed session's `Set-Cookie`;
//! - 401 with `WWW-Authenticate`, or a 302 to the provider for a browser navigation when
//!   the auth URL says `redirect=true` or `forward_auth_redirect` is on;
//! - 403 when a rule refuses the signed-in user.
//!
//! What it believes about the original request (CONTRACTS.md §2): `X-Forwarded-Method`,
//! `-Proto`, `-Host`, `-Uri`, `X-Original-URI`, `X-Original-URL` and `X-Original-Method`
//! only from `trusted_proxies`; from anyone else they are ignored. Envoy's original path
//! arrives as the path below `/oauth2/auth` (with the original query): that is the request
//! being checked, so its query is never read as rules. Rules in the query of the bare
//! `/oauth2/auth` narrow the configured ones (`authz::Policy::from_query`).

use super::answer::{add_cookies, refusal};
use super::login::{cookies_of, safe_target};
use super::{is_api_request, peer_of, AppError, AppState, Ctx};
use crate::auth::{authenticate, AuthRequest, Decision};
use crate::authz::Policy;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The endpoint's path; Envoy appends the original path to it.
pub const AUTH_PATH: &str = "/oauth2/auth";

/// What gatehouse believes about the request being checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Original {
    pub method: Option<Method>,
    /// Path and query, e.g. `/c/main?x=1`.
    pub uri: Option<String>,
    /// The full URL, when the peer says where the user was (the post-login target).
    pub url: Option<String>,
}

fn text<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Original {
    /// Reads the original request. `suffix` is Envoy's path below `/oauth2/auth` with its
    /// query (`None` for the bare endpoint); `proto`/`host` are what `Forwarded` believed.
    pub fn read(
        h: &HeaderMap,
        trusted: bool,
        own_method: &Method,
        suffix: Option<String>,
        proto: &str,
        host: Option<&str>,
    ) -> Original {
        let mut o = Original::default();
        if trusted {
            o.method = text(h, "x-forwarded-method")
                .or_else(|| text(h, "x-original-method"))
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
            let full = text(h, "x-original-url").and_then(|u| url::Url::parse(u).ok());
            o.uri = text(h, "x-forwarded-uri")
                .or_else(|| text(h, "x-original-uri"))
                .filter(|u| u.starts_with('/'))
                .map(str::to_string)
                .or_else(|| {
                    full.as_ref().map(|u| match u.query() {
                        Some(q) => format!("{}?{q}", u.path()),
                        None => u.path().to_string(),
                    })
                });
            o.url = match (&full, &o.uri, host) {
                (Some(u), _, _) if matches!(u.scheme(), "http" | "https") => Some(u.to_string()),
                (_, Some(uri), Some(host)) => Some(format!("{proto}://{host}{uri}")),
                _ => None,
            };
        }
        if o.uri.is_none() {
            o.uri = suffix;
        }
        if o.method.is_none() {
            o.method = Some(own_method.clone());
        }
        o
    }
}

/// True for `redirect=true` (or `1`) in the auth URL's query.
fn wants_redirect(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "redirect" && (v == "true" || v == "1"))
}

pub async fn auth(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let mut ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let below = path
        .strip_prefix(AUTH_PATH)
        .filter(|rest| rest.starts_with('/'));
    // Rules and `redirect` come only from the bare endpoint's query: below it, the query
    // is the original request's (Envoy), which a client controls.
    let (suffix, extra, redirect_param) = match below {
        Some(rest) => {
            let uri = if query.is_empty() {
                rest.to_string()
            } else {
                format!("{rest}?{query}")
            };
            (Some(uri), None, false)
        }
        None => match Policy::from_query(query) {
            Ok(extra) => (None, extra, wants_redirect(query)),
            Err(e) => return ctx.fail(AppError::BadAuthQuery(e)),
        },
    };
    let original = Original::read(
        req.headers(),
        ctx.forwarded.trusted,
        req.method(),
        suffix,
        &ctx.forwarded.proto,
        ctx.forwarded.host.as_deref(),
    );
    let method = original.method.clone().unwrap_or(Method::GET);
    ctx.api = is_api_request(&method, req.headers());

    let cookies = cookies_of(req.headers());
    let ar = AuthRequest {
        cookies: &cookies,
        headers: req.headers(),
        method: &method,
        path: original.uri.as_deref(),
        extra: extra.as_ref(),
    };
    let decision = authenticate(&st, &ar).await;
    let mut resp = StatusCode::OK.into_response();
    match decision {
        Decision::Allow {
            session,
            set_cookies,
        } => {
            crate::headers::write_auth_response(
                resp.headers_mut(),
                &st.cfg.headers,
                session.values(&st.cfg.headers),
            );
            add_cookies(&mut resp, set_cookies);
        }
        Decision::Public { rule } => {
            tracing::debug!(request_id = %ctx.request_id, %rule, "skip_auth_routes: allowed without login");
        }
        refused => {
            let rd = original.url.as_deref().or(original.uri.as_deref());
            let target = safe_target(&st.cfg, &ctx, rd);
            let redirect = redirect_param || st.cfg.forward_auth_redirect;
            return refusal(&st, &ctx, refused, target, redirect);
        }
    }
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_original_request_is_believed_only_from_trusted_proxies() {
        let h = map(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/public/x?y=1"),
        ]);
        let trusted = Original::read(
            &h,
            true,
            &Method::GET,
            None,
            "https",
            Some("app.example.com"),
        );
        assert_eq!(trusted.method, Some(Method::DELETE));
        assert_eq!(trusted.uri.as_deref(), Some("/public/x?y=1"));
        assert_eq!(
            trusted.url.as_deref(),
            Some("https://app.example.com/public/x?y=1")
        );
        let untrusted = Original::read(&h, false, &Method::GET, None, "http", Some("evil"));
        assert_eq!(
            untrusted,
            Original {
                method: Some(Method::GET),
                uri: None,
                url: None
            }
        );
        // Envoy: the path below /oauth2/auth, whoever sends it (it is the request checked).
        let envoy = Original::read(
            &h,
            false,
            &Method::POST,
            Some("/a?b=1".into()),
            "http",
            None,
        );
        assert_eq!(envoy.uri.as_deref(), Some("/a?b=1"));
        assert_eq!(envoy.method, Some(Method::POST));
    }

    #[test]
    fn ingress_nginx_style_original_url() {
        let h = map(&[("x-original-url", "https://app.example.com/c/main?ns=a")]);
        let o = Original::read(&h, true, &Method::GET, None, "http", Some("auth"));
        assert_eq!(o.uri.as_deref(), Some("/c/main?ns=a"));
        assert_eq!(
            o.url.as_deref(),
            Some("https://app.example.com/c/main?ns=a")
        );
        let h = map(&[
            ("x-original-uri", "/x"),
            ("x-original-url", "javascript:alert(1)"),
        ]);
        let o = Original::read(&h, true, &Method::GET, None, "https", Some("app"));
        assert_eq!(o.url.as_deref(), Some("https://app/x"));
    }

    #[test]
    fn redirect_flag() {
        assert!(wants_redirect("redirect=true&allowed_groups=a"));
        assert!(wants_redirect("redirect=1"));
        assert!(!wants_redirect("redirect=false"));
        assert!(!wants_redirect(""));
    }
}
