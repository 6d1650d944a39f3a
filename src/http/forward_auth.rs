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

/// Every non-empty value of the named headers, each line separately.
fn values<'a>(h: &'a HeaderMap, names: &[&str]) -> Vec<&'a str> {
    names
        .iter()
        .flat_map(|n| h.get_all(*n).iter())
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The one value every source agrees on. `Err` when two differ: a client's own copy next
/// to the one the proxy set (nginx passes client headers into its auth subrequest), so
/// nothing about the original request is believed.
fn agreed(candidates: Vec<String>) -> Result<Option<String>, ()> {
    match candidates.split_first() {
        None => Ok(None),
        Some((first, rest)) if rest.iter().all(|c| c == first) => Ok(Some(first.clone())),
        Some(_) => Err(()),
    }
}

impl Original {
    /// Reads the original request. `suffix` is Envoy's path below `/oauth2/auth` with its
    /// query (`None` for the bare endpoint); `proto`/`host` are what `Forwarded` believed.
    /// From a trusted proxy, every header naming the path (`X-Forwarded-Uri`,
    /// `X-Original-URI`, the path of `X-Original-URL`, each line of each) must agree, and
    /// so must the method headers; if any two differ the original request is unknown:
    /// no route is skipped and the post-login target falls back to `/`.
    pub fn read(
        h: &HeaderMap,
        trusted: bool,
        own_method: &Method,
        suffix: Option<String>,
        proto: &str,
        host: Option<&str>,
    ) -> Original {
        let mut o = Original {
            method: Some(own_method.clone()),
            uri: suffix,
            url: None,
        };
        if !trusted {
            return o;
        }
        let full: Vec<url::Url> = values(h, &["x-original-url"])
            .into_iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .collect();
        let mut paths: Vec<String> = values(h, &["x-forwarded-uri", "x-original-uri"])
            .into_iter()
            .map(str::to_string)
            .collect();
        paths.extend(full.iter().map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }));
        let methods = values(h, &["x-forwarded-method", "x-original-method"])
            .into_iter()
            .map(str::to_ascii_uppercase)
            .collect();
        let (Ok(uri), Ok(method)) = (agreed(paths), agreed(methods)) else {
            tracing::info!("forward-auth: the headers describing the original request disagree (a client's copy next to the proxy's?); treating the request as unknown");
            return Original {
                method: Some(own_method.clone()),
                uri: None,
                url: None,
            };
        };
        if let Some(m) = method.and_then(|m| Method::from_bytes(m.as_bytes()).ok()) {
            o.method = Some(m);
        }
        if let Some(uri) = uri.filter(|u| u.starts_with('/')) {
            o.url = match (full.first(), host) {
                (Some(u), _) => Some(u.to_string()),
                (None, Some(host)) => Some(format!("{proto}://{host}{uri}")),
                (None, None) => None,
            };
            o.uri = Some(uri);
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
            return refusal(&st, &ctx, refused, target, redirect).await;
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
    fn a_client_copy_next_to_the_proxys_makes_the_original_unknown() {
        // ingress-nginx sets X-Original-URL and passes the client's X-Forwarded-Uri on.
        let h = map(&[
            ("x-original-url", "https://app.example.com/admin"),
            ("x-forwarded-uri", "/public/x"),
        ]);
        let o = Original::read(&h, true, &Method::GET, None, "https", Some("app"));
        assert_eq!((o.uri, o.url), (None, None));
        let mut h = map(&[("x-forwarded-uri", "/admin")]);
        h.append("x-forwarded-uri", HeaderValue::from_static("/public/x"));
        let o = Original::read(&h, true, &Method::GET, None, "https", Some("app"));
        assert_eq!(o.uri, None);
        let h = map(&[
            ("x-forwarded-uri", "/hook"),
            ("x-forwarded-method", "GET"),
            ("x-original-method", "POST"),
        ]);
        let o = Original::read(&h, true, &Method::GET, None, "https", Some("app"));
        assert_eq!(o.uri, None, "disagreeing methods: nothing is believed");
        let h = map(&[("x-forwarded-uri", "/a?b"), ("x-original-uri", "/a?b")]);
        let o = Original::read(&h, true, &Method::GET, None, "https", Some("app"));
        assert_eq!(o.uri.as_deref(), Some("/a?b"), "agreeing sources are fine");
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
