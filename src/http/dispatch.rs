//! What a request on a client connection gets, whichever protocol carried it (HTTP/1.1
//! plain or over TLS, HTTP/2): the framing refusal made before it, the internal
//! listener's limits, then the router's own routes, the escaped bare forward-auth
//! endpoint, or the gate; each answer counted for the metrics.

use super::workers::Peer;
use super::AppState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use std::sync::Arc;
use tower::ServiceExt;

/// Answers one request: the framing refusal (`refused`) or the request's route. `h2`:
/// the client speaks HTTP/2, where a connection is never closed for one stream's unread
/// body (HTTP/1.1 must, and says so with `Connection: close`). `started`: when the
/// request reached gatehouse, for its metrics.
pub(super) fn respond(
    base: &Arc<AppState>,
    peer: Peer,
    internal: bool,
    mut req: hyper::Request<Incoming>,
    mut refused: Option<axum::response::Response>,
    h2: bool,
    started: crate::metrics::Timer,
) -> impl std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>>
       + Send
       + 'static {
    req.extensions_mut().insert(ConnectInfo(peer));
    if internal {
        req.extensions_mut().insert(super::AuthListener);
        if refused.is_none() && !super::internal_route(req.uri().path()) {
            refused = Some(super::AppError::AuthListenerOnly.respond(
                &crate::util::request_id(),
                crate::trace::Trace::read(req.headers()).trace_id(),
                super::is_api_request(req.method(), req.headers()),
            ));
        }
    }
    let has_body = !h2 && !hyper::body::Body::is_end_stream(req.body());
    let req = req.map(Body::new);
    // This request's configuration: the latest reload's (`live.rs`).
    let (state, router) = super::live::current(base);
    async move {
        let route = Route::of(req.uri().path());
        let mut resp = match (refused, route) {
            (Some(resp), _) => resp,
            (None, Route::Router(_)) => router.oneshot(req).await?,
            // The bare endpoint with its `?` escaped by the ingress: refused there,
            // never proxied to the app.
            (None, Route::BareAuth) => {
                super::forward_auth::auth(axum::extract::State(state), req).await
            }
            (None, Route::Gate) => super::gate::gate(axum::extract::State(state), req).await,
        };
        route.record(&resp, started);
        // gatehouse answered without passing the body on, so it was never read and
        // hyper will close the connection: say so, or the client's next request
        // on it is lost.
        if has_body
            && resp
                .extensions()
                .get::<crate::proxy::BodyForwarded>()
                .is_none()
        {
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        Ok::<_, std::convert::Infallible>(resp)
    }
}

/// Where a request goes: the router's own routes (with the metrics' mode, and whether it
/// is the sign-in callback), the escaped bare forward-auth endpoint, or the gate.
#[derive(Clone, Copy)]
enum Route {
    Router(Option<crate::metrics::Mode>),
    BareAuth,
    Gate,
}

impl Route {
    fn of(path: &str) -> Route {
        use crate::metrics::Mode;
        if super::routed(path) {
            if path == super::forward_auth::AUTH_PATH || path.starts_with("/oauth2/auth/") {
                Route::Router(Some(Mode::ForwardAuth))
            } else if path == "/oauth2/callback" {
                // `None`: the callback, an endpoint whose outcome is also a sign-in's.
                Route::Router(None)
            } else {
                Route::Router(Some(Mode::Endpoint))
            }
        } else if super::forward_auth::escaped_bare(path) {
            Route::BareAuth
        } else {
            Route::Gate
        }
    }

    /// Counts the answered request (and, for the callback, the sign-in's outcome: the
    /// failure's code, which `AppError::respond` left on the response, or success).
    fn record(self, resp: &axum::response::Response, started: crate::metrics::Timer) {
        use crate::metrics::{request, Mode};
        let status = resp.status().as_u16();
        match self {
            Route::Gate => request(Mode::Proxy, status, started),
            Route::BareAuth => request(Mode::ForwardAuth, status, started),
            Route::Router(Some(mode)) => request(mode, status, started),
            Route::Router(None) => {
                request(Mode::Endpoint, status, started);
                let failure = resp.extensions().get::<super::errors::Failure>();
                crate::metrics::login(failure.map(|f| f.0));
            }
        }
    }
}
