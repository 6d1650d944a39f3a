//! The HTTP surface: application state, the router (the one place routes and layers are
//! assembled), and serving.
//!
//! Routes: `/oauth2/{start,callback,sign_out,userinfo}` (login flow), `/oauth2/auth`
//! (forward-auth verdict, `forward_auth.rs`), `/oauth2/backchannel_logout` (the provider's
//! logout tokens, `backchannel.rs`), `/healthz`, `/readyz`, the identity assertion's keys
//! (`/.well-known/gatehouse/jwks.json`, `assertion.rs`), and everything else through the
//! auth step to the upstream (`gate.rs`; 404 in auth-only mode).

mod answer;
pub mod assertion;
pub mod backchannel;
mod dispatch;
mod errors;
pub mod forward_auth;
pub(crate) mod framing;
mod gate;
pub mod live;
mod login;
#[doc(hidden)]
pub mod original;
pub mod pages;
pub mod redirect_listener;
mod tls;
pub mod wire;
mod workers;

pub use errors::AppError;

use crate::audit::{Mode, Route, Scope};
use crate::auth::AuthContext;
use crate::config::Config;
use crate::headers::Forwarded;
use crate::proxy::tunnels::Tunnels;
use crate::proxy::Proxy;
use crate::trace::Trace;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a request handler needs, shared: the auth step's context, and what only
/// the HTTP layer uses (the upstream client, open upgraded connections). One
/// configuration's worth: a reload gives each worker a new one (`live.rs`).
pub struct AppState {
    pub cfg: Arc<Config>,
    /// The auth step's context (provider, rules, sessions, refresher, bearer tokens).
    pub auth: Arc<AuthContext>,
    /// Per worker thread: its upstream connections live on that thread's runtime.
    pub proxy: Arc<Proxy>,
    /// Per worker thread: one proxy per `[[routes]]` entry, in the route table's order
    /// (empty without routes).
    pub routes: Arc<[Proxy]>,
    /// Open upgraded connections (all workers), closed on sign-out and shutdown.
    pub tunnels: Arc<Tunnels>,
    /// The configuration new requests get; a reload replaces it.
    pub live: Arc<live::Live>,
}

impl AppState {
    pub fn new(cfg: Config) -> Result<Arc<AppState>, AppError> {
        let cfg = Arc::new(cfg);
        let auth = Arc::new(AuthContext::new(Arc::clone(&cfg)).map_err(AppError::Internal)?);
        Ok(Arc::new(AppState {
            live: Arc::new(live::Live::new(Arc::clone(&cfg), Arc::clone(&auth))),
            auth,
            proxy: Arc::new(Proxy::new(&cfg)),
            routes: Proxy::for_routes(&cfg),
            tunnels: Arc::default(),
            cfg,
        }))
    }

    /// The state for one worker thread: everything shared but the upstream client.
    pub(crate) fn for_worker(&self) -> Arc<AppState> {
        Arc::new(AppState {
            cfg: Arc::clone(&self.cfg),
            auth: Arc::clone(&self.auth),
            proxy: Arc::new(Proxy::new(&self.cfg)),
            routes: Proxy::for_routes(&self.cfg),
            tunnels: Arc::clone(&self.tunnels),
            live: Arc::clone(&self.live),
        })
    }
}

/// Marks a request that arrived on the internal forward-auth listener (`auth_listen`):
/// the only answers that carry the ID token and `Authorization`.
#[derive(Clone, Copy, Debug)]
pub struct AuthListener;

/// Per-request facts every handler uses.
pub struct Ctx {
    pub request_id: String,
    /// The W3C trace context: continued to the upstream, logged beside the request id.
    pub trace: Trace,
    pub forwarded: Forwarded,
    /// An API-style client: gets 401 JSON instead of a redirect.
    pub api: bool,
}

impl Ctx {
    pub fn new(
        cfg: &Config,
        method: &Method,
        headers: &HeaderMap,
        peer: Option<workers::Peer>,
    ) -> Ctx {
        let (addr, tls) = match peer {
            Some(p) => (p.addr, p.tls),
            None => (SocketAddr::from(([0, 0, 0, 0], 0)), false),
        };
        Ctx {
            request_id: crate::util::request_id(),
            trace: Trace::read(headers),
            forwarded: Forwarded::read_on(headers, addr, &cfg.trusted_proxies, tls),
            api: is_api_request(method, headers),
        }
    }

    /// The callback URL: configured, or derived from the request.
    pub fn redirect_uri(&self, cfg: &Config) -> String {
        match &cfg.redirect_url {
            Some(u) => u.to_string(),
            None => format!(
                "{}://{}/oauth2/callback",
                self.forwarded.proto,
                self.forwarded.host.as_deref().unwrap_or("localhost")
            ),
        }
    }

    /// The request as audit events name it (`audit.rs`).
    pub fn audit<'a>(&'a self, mode: Mode, route: Route<'a>) -> Scope<'a> {
        Scope {
            request_id: &self.request_id,
            trace_id: self.trace.trace_id(),
            client: self.forwarded.client,
            route,
            mode,
        }
    }

    /// [`Ctx::audit`] for a request to `path` on the host it names.
    pub fn audit_at<'a>(&'a self, mode: Mode, path: &'a str) -> Scope<'a> {
        self.audit(mode, Route::HostPath(self.forwarded.host.as_deref(), path))
    }

    pub fn fail(&self, e: AppError) -> Response {
        e.respond(&self.request_id, self.trace.trace_id(), self.api)
    }
}

/// The peer (address, and whether the connection is TLS), when the server recorded it.
pub fn peer_of(req: &axum::extract::Request) -> Option<workers::Peer> {
    req.extensions()
        .get::<ConnectInfo<workers::Peer>>()
        .map(|c| c.0)
}

/// API clients get 401 JSON rather than a login redirect: JSON `Accept`,
/// `X-Requested-With`, protocol upgrades, a `Sec-Fetch-Mode` other than `navigate`
/// (a browser's fetch or XHR), and any method but GET/HEAD.
pub fn is_api_request(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return true;
    }
    // One pass over the fields present rather than a hashed lookup per name: this runs
    // for every request. The first `Accept` and `Sec-Fetch-Mode` count, as `get` would.
    let (mut accept, mut mode, mut upgrade, mut connection_upgrade) = (None, None, false, false);
    for (name, value) in headers {
        if name == header::ACCEPT {
            accept.get_or_insert(value);
        } else if name == header::UPGRADE {
            upgrade = true;
        } else if name == header::CONNECTION {
            connection_upgrade |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if name.as_str() == "x-requested-with" {
            return true;
        } else if name.as_str() == "sec-fetch-mode" {
            mode.get_or_insert(value);
        }
    }
    if upgrade && connection_upgrade {
        return true;
    }
    // Fetch metadata: browsers mark script requests (fetch, XHR) with a mode other than
    // `navigate`; a redirect to the provider would only end in a CORS error there.
    if let Some(mode) = mode.and_then(|v| v.to_str().ok()) {
        if !mode.eq_ignore_ascii_case("navigate") {
            return true;
        }
    }
    let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the provider is loaded. Extra bearer issuers are reported but do not hold
/// readiness back: sign-in works without them.
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let bearer: Vec<serde_json::Value> = st
        .auth
        .bearer
        .as_ref()
        .map(|b| b.status())
        .unwrap_or_default()
        .into_iter()
        .map(|(issuer, ready)| serde_json::json!({"issuer": issuer, "ready": ready}))
        .collect();
    if let Some(cause) = st.auth.sessions.down() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"ready": false, "reason": cause, "session_store": st.auth.sessions.kind()}))).into_response();
    }
    if let Some(issuer) = st.auth.provider.access_token_issuer_pending() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"ready": false, "reason": format!("the keys of the access token issuer {issuer} are not loaded yet; see the log")}))).into_response();
    }
    match st.auth.provider.loaded() {
        Some(l) => Json(serde_json::json!({"ready": true, "issuer": l.meta.issuer, "keys": l.jwks.len(), "bearer_issuers": bearer})).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"ready": false, "reason": "discovery and keys not loaded yet; see the log"}))).into_response(),
    }
}

/// Builds the whole application.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth2/start", get(login::start))
        .route("/oauth2/callback", get(login::callback))
        .route(
            "/oauth2/sign_out",
            get(login::sign_out_page).post(login::sign_out),
        )
        .route("/oauth2/userinfo", get(login::userinfo))
        // The provider's logout tokens; any method, so that others get a JSON 405.
        .route(backchannel::PATH, any(backchannel::logout))
        // The forward-auth verdict, any method; Envoy appends the original path.
        .route(forward_auth::AUTH_PATH, any(forward_auth::auth))
        .route("/oauth2/auth/", any(forward_auth::auth))
        .route("/oauth2/auth/{*original}", any(forward_auth::auth))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // gatehouse's public keys for the identity assertion (404 JSON when it is off).
        .route(crate::assertion::JWKS_PATH, get(assertion::jwks))
        // Everything else goes through the auth step to the upstream.
        .fallback(gate::gate)
        .with_state(state)
}

/// Whether `path` is one of the router's own routes. Every other request goes straight
/// to the gate (`workers.rs`): the router's fallback would send it there anyway, after
/// matching, and its layers cost about 2,000 instructions per proxied request.
pub(crate) fn routed(path: &str) -> bool {
    matches!(
        path,
        "/oauth2/start"
            | "/oauth2/callback"
            | "/oauth2/sign_out"
            | "/oauth2/userinfo"
            | backchannel::PATH
            | forward_auth::AUTH_PATH
            | "/healthz"
            | "/readyz"
            | crate::assertion::JWKS_PATH
    ) || path.starts_with("/oauth2/auth/")
}

/// Whether `path` is served on the internal forward-auth listener (`auth_listen`).
pub(crate) fn internal_route(path: &str) -> bool {
    matches!(
        path,
        forward_auth::AUTH_PATH | "/healthz" | "/readyz" | crate::assertion::JWKS_PATH
    ) || path.starts_with("/oauth2/auth/")
        || forward_auth::escaped_bare(path)
}

/// Serves the app on `listener` until `shutdown` completes; starts provider loading.
/// See `workers.rs` for the threading model.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_auth(state, listener, None, shutdown).await
}

/// [`serve`], plus the internal forward-auth listener (`auth_listen`) when given: it
/// serves `/oauth2/auth`, `/healthz` and `/readyz` only, and its forward-auth answers
/// alone carry the ID token and `Authorization`.
pub async fn serve_with_auth(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    auth: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.auth.provider.spawn_loader();
    state.auth.sessions.start();
    // Session ends heard of (here, or with Redis on any replica) close the WebSockets
    // those sessions opened on this replica.
    let mut ended = state.auth.sessions.subscribe_ended();
    let tunnels = Arc::clone(&state.tunnels);
    tokio::spawn(async move {
        loop {
            match ended.recv().await {
                Ok(e) => {
                    let closed = tunnels.end_matching(&e);
                    if closed > 0 {
                        tracing::info!(
                            websockets_closed = closed,
                            "closed the WebSockets of ended sessions"
                        );
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
    if state.auth.sessions.shared() {
        // A message about an end can be missed (a replica reconnecting as it was sent):
        // once a second, the sessions behind open WebSockets are looked up, and those
        // no longer stored are closed. A store that cannot answer closes nothing.
        // The store itself, not the context: a reload replaces the context, the store's
        // sessions carry on.
        let (sessions, tunnels) = (Arc::clone(&state.auth.sessions), Arc::clone(&state.tunnels));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let ids = tunnels.session_ids();
                if ids.is_empty() {
                    continue;
                }
                if let Ok(gone) = sessions.ended_among(&ids).await {
                    if !gone.is_empty() {
                        let closed = tunnels.end_matching(&crate::session::Ended::Sessions(gone));
                        tracing::info!(
                            websockets_closed = closed,
                            "closed the WebSockets of sessions ended elsewhere"
                        );
                    }
                }
            }
        });
    }
    if let Some(b) = &state.auth.bearer {
        b.spawn_loaders();
    }
    workers::run(state, listener, auth, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::http::{HeaderName, HeaderValue};

    fn api(method: Method, pairs: &[(&str, &str)]) -> bool {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        is_api_request(&method, &h)
    }

    #[test]
    fn api_clients_are_told_apart_from_browser_navigations() {
        use Method as M;
        let page = "text/html,application/xhtml+xml,*/*;q=0.8";
        assert!(!api(M::GET, &[("accept", page)]));
        assert!(!api(M::GET, &[]), "curl's */* is a navigation");
        assert!(!api(M::HEAD, &[("accept", "*/*")]));
        assert!(api(M::POST, &[("accept", page)]));
        assert!(api(M::GET, &[("accept", "application/json")]));
        assert!(!api(M::GET, &[("accept", "application/json, text/html")]));
        assert!(
            api(
                M::GET,
                &[("accept", "application/json"), ("accept", "text/html")]
            ),
            "the first Accept counts"
        );
        assert!(api(
            M::GET,
            &[("accept", page), ("x-requested-with", "XMLHttpRequest")]
        ));
        assert!(api(M::GET, &[("accept", page), ("sec-fetch-mode", "cors")]));
        assert!(!api(
            M::GET,
            &[("accept", page), ("sec-fetch-mode", "Navigate")]
        ));
        assert!(api(
            M::GET,
            &[
                ("upgrade", "websocket"),
                ("connection", "keep-alive, Upgrade")
            ]
        ));
        assert!(
            !api(M::GET, &[("upgrade", "websocket")]),
            "Upgrade without Connection: upgrade"
        );
        assert!(!api(M::GET, &[("connection", "upgrade")]));
    }
}
