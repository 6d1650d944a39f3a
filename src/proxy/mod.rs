//! The reverse proxy: streams request and response bodies (nothing is buffered), passes
//! `Upgrade` requests (WebSocket) through, enforces connect and response-header timeouts,
//! and maps upstream failures to 502/504.
//!
//! Trusts its input: `http::gate` already sanitised the headers.

pub mod chunked;
pub mod failure;
mod h1;
mod pool;
pub mod response;
pub mod tls;
pub mod tunnels;
mod upgrade;

pub use upgrade::Tether;

use crate::config::Config;
use crate::headers::Additions;
use crate::http::AppError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::HOST;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::Response;
use pool::{Pool, SendError};
use std::sync::Arc;
use std::time::Duration;
use tunnels::Tunnels;

/// Marks a response whose request body went to the upstream (`http/workers.rs` closes
/// the connection after any other answer to a request with a body).
#[derive(Clone, Copy, Debug)]
pub struct BodyForwarded;

/// Forwards requests to the one upstream.
pub struct Proxy {
    /// `None` in auth-only mode (no upstream): `http::gate` answers 404 before here.
    pool: Option<Pool>,
    /// The upstream's `host:port`, sent as `Host` when the client sent none.
    host: Option<HeaderValue>,
    shown: String,
    timeout: Duration,
}

impl Proxy {
    /// The proxy to the one `upstream` (none in auth-only mode or with routes).
    pub fn new(cfg: &Config) -> Proxy {
        Proxy::to(cfg, cfg.upstream.as_ref())
    }

    /// One proxy per `[[routes]]` entry, in the route table's order (empty without
    /// routes).
    pub fn for_routes(cfg: &Config) -> Arc<[Proxy]> {
        cfg.routes
            .routes()
            .iter()
            .map(|r| Proxy::to(cfg, r.upstream.as_ref()))
            .collect()
    }

    /// The proxy to `upstream`, with `cfg`'s timeouts and upstream TLS settings.
    fn to(cfg: &Config, upstream: Option<&url::Url>) -> Proxy {
        let authority = upstream.map(|u| {
            let host = u.host_str().unwrap_or("127.0.0.1");
            match u.port_or_known_default() {
                Some(p) if host.contains(':') && !host.starts_with('[') => format!("[{host}]:{p}"),
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            }
        });
        Proxy {
            host: authority
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok()),
            pool: authority.map(|a| {
                // An https upstream: TLS to it, its certificate checked for its host.
                let tls = cfg
                    .upstream_tls
                    .as_ref()
                    .zip(upstream.filter(|u| u.scheme() == "https"))
                    .map(|(t, u)| (t.clone(), u.host_str().unwrap_or_default().to_string()));
                Pool::new(a, cfg.upstream_connect_timeout, tls)
            }),
            shown: upstream
                .map(|u| u.as_str().trim_end_matches('/').to_string())
                .unwrap_or_else(|| "(none: auth-only mode)".into()),
            timeout: cfg.upstream_timeout,
        }
    }

    /// Sends `req`, with the headers gatehouse adds (`add`), upstream and returns its
    /// response, streaming.
    /// `tether`: for an upgrade, what ties the connection to its session (`tunnels` keeps
    /// every open one, for sign-out and shutdown).
    pub async fn forward(
        &self,
        mut req: Request,
        add: Additions,
        tether: Option<(Arc<Tunnels>, Tether)>,
    ) -> Result<Response, AppError> {
        let Some(pool) = &self.pool else {
            return Err(AppError::NoUpstream);
        };
        // Origin form: the connection already goes to the upstream.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let path = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(path);
        }
        *req.version_mut() = Version::HTTP_11;
        if let (false, Some(host)) = (req.headers().contains_key(HOST), &self.host) {
            req.headers_mut().insert(HOST, host.clone());
        }
        let has_body = !hyper::body::Body::is_end_stream(req.body());
        let plain = !has_body
            && tether.is_none()
            && pool.plain_allowed()
            && (req.method() == Method::GET || req.method() == Method::HEAD);
        if plain {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let started = crate::metrics::Timer::start();
            let sent = tokio::time::timeout(
                self.timeout,
                pool.send_plain(req.method(), target, req.headers(), &add),
            )
            .await;
            let mut resp = self.answered(sent, started)?;
            crate::headers::remove_hop_by_hop(resp.headers_mut(), false);
            return Ok(resp);
        }
        add.apply_to(req.headers_mut());
        let client_upgrade = tether.map(|t| (hyper::upgrade::on(&mut req), t));
        let started = crate::metrics::Timer::start();
        let sent = tokio::time::timeout(self.timeout, pool.send(req)).await;
        let mut resp = self.answered(sent, started)?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some((client_side, (tunnels, tether))) = client_upgrade {
                let upstream_side = hyper::upgrade::on(&mut resp);
                upgrade::splice(client_side, upstream_side, tunnels, tether);
                return Ok(resp.map(|_| Body::empty()));
            }
        }
        crate::headers::remove_hop_by_hop(resp.headers_mut(), false);
        if has_body {
            resp.extensions_mut().insert(BodyForwarded);
        }
        Ok(resp.map(Body::new))
    }

    /// The response, or the 502/504 for an upstream that failed or kept quiet; counted
    /// (`started`: when sending began).
    fn answered<B>(
        &self,
        sent: Result<Result<Response<B>, SendError>, tokio::time::error::Elapsed>,
        started: crate::metrics::Timer,
    ) -> Result<Response<B>, AppError> {
        use crate::metrics::UpstreamError as Kind;
        use failure::UpstreamFailure as F;
        match sent {
            Err(_) => {
                crate::metrics::upstream_failed(Kind::Timeout);
                Err(AppError::UpstreamTimeout {
                    upstream: self.shown.clone(),
                    secs: self.timeout.as_secs(),
                })
            }
            Ok(Err(e)) => {
                let failure = F::of(&e);
                crate::metrics::upstream_failed(match failure {
                    F::Unreachable(_) | F::Tls(_) => Kind::Connect,
                    F::Closed | F::Broken(_) => Kind::Closed,
                    F::Malformed(_) => Kind::BadResponse,
                });
                Err(AppError::UpstreamFailed {
                    upstream: self.shown.clone(),
                    failure,
                })
            }
            Ok(Ok(resp)) => {
                crate::metrics::upstream_answered(started);
                Ok(resp)
            }
        }
    }
}
