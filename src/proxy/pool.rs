//! One worker's connections to the upstream: HTTP/1.1 keep-alive connections kept in a
//! plain list, checked out by the first one ready. Each worker has its own pool on its
//! own thread (`http/workers.rs`), so a request never waits on another thread's pool;
//! this replaces hyper-util's general client, whose pool bookkeeping (a shared map keyed
//! by scheme and host, hashed on every request) cost about a tenth of a proxied request.
//!
//! A connection goes back to the list as soon as its response head arrives; it is only
//! handed out again once hyper says it is ready (its last response body finished). A
//! request that a closing connection never sent is retried once on a new connection.
//!
//! GETs and HEADs with no body and no upgrade go through gatehouse's own client
//! (`h1.rs`), with its own list of connections, at about half the cost per request.

use super::h1::{self, Conn, Failed, H1Error, Kept};
use crate::headers::Additions;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Most connections kept (busy or idle).
const MAX_KEPT: usize = 256;
/// Largest read buffer of an upstream connection. hyper's default lets it grow to ~400
/// KiB while a large body streams through, and keeps it: 256 connections streaming log
/// files held over 200 MiB (bench/run.sh). A response head must fit in it.
const READ_BUF_MAX: usize = h1::READ_MAX;
/// An idle connection older than this is closed rather than used.
const IDLE_FOR: Duration = Duration::from_secs(90);

/// Why a request could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: refused, unreachable, or past the connect timeout.
    Connect(String),
    /// The TLS handshake with an https upstream failed: why (a certificate problem, in
    /// words).
    Tls(String),
    /// The connection failed while sending or before the response head arrived.
    Send(hyper::Error),
    /// The same, on a connection of gatehouse's own client.
    Exchange(H1Error),
}

/// The kept connections of one worker.
pub struct Pool {
    /// `host:port` to connect to.
    authority: String,
    /// An https upstream's TLS client and the name its certificate must carry; every
    /// request then goes through hyper's client (gatehouse's own reads the socket
    /// directly, `h1.rs`).
    tls: Option<(super::tls::UpstreamTls, String)>,
    connect_timeout: Duration,
    kept: Mutex<Vec<(Instant, SendRequest<Body>)>>,
    /// Connections of the bodyless-request client (`h1.rs`).
    plain: Arc<Kept>,
}

impl Pool {
    pub fn new(
        authority: String,
        connect_timeout: Duration,
        tls: Option<(super::tls::UpstreamTls, String)>,
    ) -> Pool {
        Pool {
            authority,
            tls,
            connect_timeout,
            kept: Mutex::new(Vec::new()),
            plain: Arc::default(),
        }
    }

    /// Sends a GET or HEAD with no body on gatehouse's own client. A kept connection that
    /// the upstream had closed gets nothing back: the request goes once more, on a new one.
    pub async fn send_plain(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        add: &Additions,
    ) -> Result<Response<Body>, SendError> {
        let (conn, reused) = match self.plain.take() {
            Some(c) => (c, true),
            None => (Conn::new(self.open().await?), false),
        };
        let resp = match h1::exchange(conn, method, target, headers, add, &self.plain).await {
            Ok(resp) => resp,
            Err(Failed {
                nothing_received: true,
                ..
            }) if reused => {
                let conn = Conn::new(self.open().await?);
                h1::exchange(conn, method, target, headers, add, &self.plain)
                    .await
                    .map_err(|f| SendError::Exchange(f.error))?
            }
            Err(f) => return Err(SendError::Exchange(f.error)),
        };
        Ok(resp.map(Body::new))
    }

    /// Sends `req` (origin-form URI) on a kept connection or a new one; returns the
    /// response and, unless the connection was upgraded away, keeps it for later.
    pub async fn send(&self, req: Request) -> Result<hyper::Response<Incoming>, SendError> {
        let (mut sender, reused) = match self.ready_one() {
            Some(s) => (s, true),
            None => (self.connect().await?, false),
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // Never sent (the kept connection was closing): once more, on a new one.
                Some(req) if reused => {
                    sender = self.connect().await?;
                    sender.send_request(req).await.map_err(SendError::Send)?
                }
                _ => return Err(SendError::Send(e.into_error())),
            },
        };
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            self.keep(sender);
        }
        Ok(resp)
    }

    /// Takes the most recently used connection that is ready; drops closed and stale ones.
    fn ready_one(&self) -> Option<SendRequest<Body>> {
        let mut kept = self.kept.lock().ok()?;
        let stale = |at: &Instant, s: &SendRequest<Body>| s.is_ready() && at.elapsed() > IDLE_FOR;
        kept.retain(|(at, s)| !s.is_closed() && !stale(at, s));
        let i = kept.iter().rposition(|(_, s)| s.is_ready())?;
        Some(kept.swap_remove(i).1)
    }

    fn keep(&self, sender: SendRequest<Body>) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= MAX_KEPT {
                kept.remove(0);
            }
            kept.push((Instant::now(), sender));
        }
    }

    /// Whether GETs and HEADs may take gatehouse's own client (plain http only).
    pub fn plain_allowed(&self) -> bool {
        self.tls.is_none()
    }

    /// Opens a connection (within the connect timeout; TLS to an https upstream, its
    /// handshake within the same time) and starts driving it.
    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = self.open().await?;
        match &self.tls {
            None => drive(stream).await,
            Some((tls, host)) => {
                let handshake = tls.connect(host, stream);
                match tokio::time::timeout(self.connect_timeout, handshake).await {
                    Err(_) => Err(SendError::Tls(format!(
                        "TLS handshake not done within {} s",
                        self.connect_timeout.as_secs()
                    ))),
                    Ok(Err(why)) => Err(SendError::Tls(why)),
                    Ok(Ok(stream)) => drive(stream).await,
                }
            }
        }
    }

    /// Opens a TCP connection to the upstream, within the connect timeout.
    async fn open(&self) -> Result<TcpStream, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
                .await
            {
                Err(_) => {
                    return Err(SendError::Connect(format!(
                        "no connection within {} s",
                        self.connect_timeout.as_secs()
                    )))
                }
                Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Starts hyper's client on `stream` (plain or TLS): the connection is driven by a task
/// of its own, upgrades included.
async fn drive<S>(stream: S) -> Result<SendRequest<Body>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(READ_BUF_MAX)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
