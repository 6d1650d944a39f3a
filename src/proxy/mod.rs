//! The reverse proxy: streams request and response bodies (nothing is buffered), passes
//! `Upgrade` requests (WebSocket) through, enforces connect and response-header timeouts,
//! and maps upstream failures to 502/504.
//!
//! Trusts its input: `http::gate` already sanitised the headers.

pub mod tunnels;
mod upgrade;

pub use upgrade::Tether;

use crate::config::Config;
use crate::http::AppError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::uri::{Authority, Scheme};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tunnels::Tunnels;

/// Forwards requests to the one upstream.
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Option<Authority>,
    shown: String,
    timeout: Duration,
}

impl Proxy {
    pub fn new(cfg: &Config) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.upstream_connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        // Auth-only mode has no upstream: `http::gate` answers 404 before reaching here.
        let authority = cfg.upstream.as_ref().and_then(|u| {
            let host = u.host_str().unwrap_or("127.0.0.1");
            let authority = match u.port_or_known_default() {
                Some(p) if host.contains(':') => format!("[{host}]:{p}"),
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            };
            authority.parse().ok()
        });
        Proxy {
            client,
            scheme: Scheme::HTTP,
            authority,
            shown: cfg
                .upstream
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_string())
                .unwrap_or_else(|| "(none: auth-only mode)".into()),
            timeout: cfg.upstream_timeout,
        }
    }

    fn target(&self, uri: &Uri) -> Result<Uri, AppError> {
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = self.authority.clone();
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| axum::http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts)
            .map_err(|e| AppError::Internal(format!("cannot build the upstream URI: {e}")))
    }

    /// Sends `req` upstream and returns its response, streaming.
    /// `tether`: for an upgrade, what ties the connection to its session (`tunnels` keeps
    /// every open one, for sign-out and shutdown).
    pub async fn forward(
        &self,
        mut req: Request,
        tether: Option<(Arc<Tunnels>, Tether)>,
    ) -> Result<Response, AppError> {
        *req.uri_mut() = self.target(req.uri())?;
        let client_upgrade = tether.map(|t| (hyper::upgrade::on(&mut req), t));
        let sent = tokio::time::timeout(self.timeout, self.client.request(req)).await;
        let mut resp = match sent {
            Err(_) => {
                return Err(AppError::UpstreamTimeout {
                    upstream: self.shown.clone(),
                    secs: self.timeout.as_secs(),
                })
            }
            Ok(Err(e)) => {
                let reason = if e.is_connect() {
                    "connection failed or timed out".to_string()
                } else {
                    error_chain(&e)
                };
                return Err(AppError::UpstreamDown {
                    upstream: self.shown.clone(),
                    reason,
                });
            }
            Ok(Ok(resp)) => resp,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some((client_side, (tunnels, tether))) = client_upgrade {
                let upstream_side = hyper::upgrade::on(&mut resp);
                upgrade::splice(client_side, upstream_side, tunnels, tether);
                return Ok(resp.map(|_| Body::empty()));
            }
        }
        crate::headers::remove_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(Body::new))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
