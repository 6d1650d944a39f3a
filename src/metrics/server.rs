//! The metrics listener (`metrics_listen`): `GET /metrics` and nothing else (404 for
//! other paths, 405 for other methods). A port of its own, so the exposition is never
//! reachable through `listen` or `auth_listen`, whatever routes an ingress publishes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The text exposition format's media type (version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics() -> Response {
    let mut resp = super::render().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "gatehouse's metrics listener serves GET /metrics only\n",
    )
}

/// The metrics app: `/metrics`, 404 elsewhere.
pub fn app() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
}

/// Serves the metrics app on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    super::enable();
    axum::serve(listener, app()).await
}
