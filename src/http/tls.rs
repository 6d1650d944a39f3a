//! TLS connections on `listen` (`tls_cert_file`): the handshake on the worker, then
//! HTTP/1.1 (`workers::serve_h1`, the same code as plain http, over the TLS stream) or
//! HTTP/2 when the client chose `h2` in ALPN (RFC 9113).
//!
//! The handshake is bounded by `header_read_timeout`, like a request head: a client
//! that never finishes it loses its connection slot then. HTTP/2 gets the limits HTTP/1.1
//! has, in its own terms:
//! - `max_header_bytes` is SETTINGS_MAX_HEADER_LIST_SIZE; a larger header block (also one
//!   spread over CONTINUATION frames without END_HEADERS) ends the connection, and the
//!   h2 crate bounds how many CONTINUATION frames it buffers by the same size.
//! - at most [`MAX_STREAMS`] streams at once per connection; streams the client resets
//!   before gatehouse took them (rapid reset, CVE-2023-44487) and streams gatehouse had to
//!   reset for the client's errors are counted, and past [`MAX_RESETS`] the connection
//!   gets GOAWAY (ENHANCE_YOUR_CALM).
//! - a connection on which nothing moves either way for `idle_timeout` is asked to go
//!   (GOAWAY; streams in flight finish); one still silent `idle_timeout` later is
//!   dropped. On shutdown every stream gets `shutdown_grace`.
//! - a connection with no request in flight gets `header_read_timeout` from its last
//!   request's end (or its handshake) to start the next, as a kept-alive HTTP/1.1
//!   connection does, whatever frames it sends meanwhile: PINGs or a trickled header
//!   block never hold a connection slot longer (GOAWAY, then the silence rule above).
//! - no extended CONNECT (RFC 8441): WebSockets use HTTP/1.1, which ALPN still offers.
//!
//! HTTP/2 requests carry their host in `:authority`; gatehouse reads `Host` everywhere,
//! so [`h2_request`] writes `:authority` into `Host` when the client sent none, and
//! refuses a request whose `Host` names another host than its `:authority` (RFC 9113
//! §8.3.1): two answers to "which host?" would let a client steer host-based decisions
//! (the callback URL, `X-Forwarded-Host`) away from where the request went. Cookie
//! crumbs (RFC 9113 §8.2.3) are joined into one `Cookie` before anything reads them, as
//! HTTP/1.1 to the upstream requires.

use super::workers::{Conn, Slot};
use axum::http::header::{COOKIE, HOST};
use axum::http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// Streams open at once on one HTTP/2 connection (RFC 9113 §6.5.2 advises at least 100).
pub const MAX_STREAMS: u32 = 100;
/// Streams reset before gatehouse took them, and streams gatehouse reset for the client's
/// protocol errors, allowed at once on one connection before it gets GOAWAY.
pub const MAX_RESETS: usize = 32;

/// The acceptor for `listen`: the certificate from the files, reloaded when they change.
pub(super) fn acceptor(files: &crate::tls::TlsFiles) -> io::Result<TlsAcceptor> {
    let certs = crate::tls::Certificates::new(Arc::clone(&files.initial));
    let config = crate::tls::server_config(Arc::clone(&certs)).map_err(io::Error::other)?;
    certs.watch(files);
    Ok(TlsAcceptor::from(config))
}

/// Serves one TLS connection: the handshake (within `header_read_timeout`), then
/// HTTP/2 or HTTP/1.1 as ALPN chose.
pub(super) async fn serve(acceptor: TlsAcceptor, stream: TcpStream, mut conn: Conn, slot: Slot) {
    let limits = conn.limits;
    let mut stop = conn.stop.clone();
    let handshake = tokio::select! {
        done = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)) => done,
        _ = stop.changed() => return,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer.addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer.addr, "TLS handshake not finished within header_read_timeout; connection closed");
            return;
        }
    };
    conn.peer.tls = true;
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_h2(stream, conn, slot).await;
    } else {
        super::workers::serve_h1(stream, conn, slot).await;
    }
}

/// Serves one HTTP/2 connection with the limits of the module header.
async fn serve_h2<S>(stream: S, conn: Conn, slot: Slot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = conn.limits;
    let mut stop = conn.stop.clone();
    let (stream, heard) = Heard::new(stream);
    let streams = Arc::new(InFlight::new());
    let counted = Arc::clone(&streams);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = counted.begin();
        let started = crate::metrics::Timer::start();
        let refused = match h2_request(&mut req) {
            Ok(()) => super::framing::refusal(&req, false),
            Err(why) => Some(super::AppError::AmbiguousFraming(why).respond(
                &crate::util::request_id(),
                crate::trace::Trace::read(req.headers()).trace_id(),
                super::is_api_request(req.method(), req.headers()),
            )),
        };
        let answer = super::dispatch::respond(
            &conn.base,
            conn.peer,
            conn.internal,
            req,
            refused,
            true,
            started,
        );
        async move {
            let _in_flight = in_flight;
            answer.await
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_STREAMS)
        .max_pending_accept_reset_streams(MAX_RESETS)
        .max_local_error_reset_streams(MAX_RESETS)
        // One stream's unread response may hold this much; the default is 400 KiB.
        .max_send_buf_size(64 * 1024);
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    let _slot = slot;
    tokio::pin!(served);
    // Set when the connection was asked to go for its silence (GOAWAY).
    let mut closing: Option<Instant> = None;
    loop {
        let last = heard.last();
        let quiet_until = closing
            .map_or(last, |c| c.max(last))
            .checked_add(limits.idle_timeout);
        // With no request in flight: the next must start within header_read_timeout.
        let next_by = streams
            .idle_since()
            .and_then(|since| since.checked_add(limits.header_read_timeout));
        // Asked to go and with no request in flight: it is dropped `idle_timeout` after
        // the GOAWAY even if it keeps sending frames (it never answered the PING that
        // ends a graceful close).
        let drop_at = closing
            .filter(|_| streams.idle_since().is_some())
            .and_then(|c| c.checked_add(limits.idle_timeout));
        tokio::select! {
            _ = served.as_mut() => return,
            _ = streams.ended.notified() => {}
            _ = sleep_until(drop_at), if drop_at.is_some() => {
                if streams.idle_since().is_some() {
                    return;
                }
            }
            _ = sleep_until(next_by), if closing.is_none() => {
                let now = Instant::now();
                let due = streams
                    .idle_since()
                    .and_then(|since| since.checked_add(limits.header_read_timeout));
                if due.is_some_and(|t| t <= now) {
                    // GOAWAY: no new request on this connection; the client opens another.
                    served.as_mut().graceful_shutdown();
                    closing = Some(now);
                }
            }
            _ = stop.changed(), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.shutdown_grace, served).await;
                return;
            }
            _ = sleep_until(quiet_until) => {
                let now = Instant::now();
                if quiet_until.is_some_and(|t| t <= now) && heard.last() <= last {
                    if closing.is_some() {
                        // Silent since the GOAWAY too (it never acknowledged its PING):
                        // the connection is dropped.
                        return;
                    }
                    // GOAWAY; streams in flight finish, then the connection ends.
                    served.as_mut().graceful_shutdown();
                    closing = Some(now);
                }
            }
        }
    }
}

/// The requests in flight on one HTTP/2 connection, and since when it has had none.
struct InFlight {
    opened: Instant,
    active: std::sync::atomic::AtomicUsize,
    /// Milliseconds after `opened` when the last request ended.
    idle_from: AtomicU64,
    /// Wakes the connection's loop when a request ends, to count from then.
    ended: tokio::sync::Notify,
}

/// One request in flight; its end is recorded when dropped (answered, or cancelled).
struct Request(Arc<InFlight>);

impl Drop for Request {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_from.store(ms, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_one();
    }
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            opened: Instant::now(),
            active: std::sync::atomic::AtomicUsize::new(0),
            idle_from: AtomicU64::new(0),
            ended: tokio::sync::Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> Request {
        self.active.fetch_add(1, Ordering::AcqRel);
        Request(Arc::clone(self))
    }

    /// When the connection last had no request in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_from.load(Ordering::Relaxed);
        self.opened
            .checked_add(std::time::Duration::from_millis(ms))
    }
}

/// Sleeps until `at`; never, for a time no clock can reach.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Makes an HTTP/2 request read like one over HTTP/1.1 for the rest of gatehouse (the
/// module header says why); `Err`: why it is refused.
pub(super) fn h2_request<B>(req: &mut hyper::Request<B>) -> Result<(), &'static str> {
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if authority.as_deref().is_some_and(|a| a.contains('@')) {
        // RFC 9113 §8.3.1: no userinfo in :authority; it would ride into Host.
        return Err("its :authority carries user info");
    }
    let headers = req.headers_mut();
    match (authority, headers.get(HOST)) {
        (Some(a), Some(host)) if !host.as_bytes().eq_ignore_ascii_case(a.as_bytes()) => {
            return Err("its Host header names another host than its :authority");
        }
        (Some(a), None) => {
            let value = HeaderValue::from_str(&a).map_err(|_| "its :authority is not readable")?;
            headers.insert(HOST, value);
        }
        _ => {}
    }
    let mut crumbs = headers.get_all(COOKIE).iter();
    if let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) {
        let mut joined = first.as_bytes().to_vec();
        for crumb in headers.get_all(COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(crumb.as_bytes());
        }
        let value = HeaderValue::from_bytes(&joined).map_err(|_| "its cookies are not readable")?;
        headers.insert(COOKIE, value);
    }
    Ok(())
}

/// A stream that notes when bytes last went either way (HTTP/2's idle bound: a response
/// streaming out to a quiet client is activity, as over HTTP/1.1).
struct Heard<S> {
    inner: S,
    last: Arc<LastHeard>,
}

/// When bytes last went either way: milliseconds since `since`.
struct LastHeard {
    since: Instant,
    millis: AtomicU64,
}

impl LastHeard {
    fn last(&self) -> Instant {
        self.since + std::time::Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }

    fn now(&self) {
        let since = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(since, Ordering::Relaxed);
    }
}

impl<S> Heard<S> {
    fn new(inner: S) -> (Heard<S>, Arc<LastHeard>) {
        let last = Arc::new(LastHeard {
            since: Instant::now(),
            millis: AtomicU64::new(0),
        });
        (
            Heard {
                inner,
                last: Arc::clone(&last),
            },
            last,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.last.now();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                this.last.now();
            }
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                this.last.now();
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2(uri: &str, headers: &[(&str, &str)]) -> hyper::Request<()> {
        let mut b = hyper::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn authority_becomes_host_and_a_disagreeing_host_is_refused() {
        let mut r = h2("https://app.example.com/x", &[]);
        assert_eq!(h2_request(&mut r), Ok(()));
        assert_eq!(r.headers()[HOST], "app.example.com");
        let mut r = h2(
            "https://app.example.com:8443/x",
            &[("host", "APP.example.com:8443")],
        );
        assert_eq!(h2_request(&mut r), Ok(()));
        for host in ["evil.example", "app.example.com:1", "app.example.com."] {
            let mut r = h2("https://app.example.com/x", &[("host", host)]);
            assert!(h2_request(&mut r).is_err(), "{host}");
        }
        let mut r = h2("https://evil.example@app.example.com/x", &[]);
        assert!(h2_request(&mut r).is_err());
        assert!(r.headers().get(HOST).is_none());
        // No :authority (a client may send Host alone): Host stays as sent.
        let mut r = h2("/x", &[("host", "app.example.com")]);
        assert_eq!(h2_request(&mut r), Ok(()));
        assert_eq!(r.headers()[HOST], "app.example.com");
    }

    #[test]
    fn cookie_crumbs_are_joined_into_one_field() {
        let mut r = h2(
            "https://a/",
            &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")],
        );
        assert_eq!(h2_request(&mut r), Ok(()));
        let all: Vec<_> = r.headers().get_all(COOKIE).iter().collect();
        assert_eq!(all, vec!["a=1; b=2; c=3"]);
        let mut r = h2("https://a/", &[("cookie", "a=1")]);
        assert_eq!(h2_request(&mut r), Ok(()));
        assert_eq!(r.headers()[COOKIE], "a=1");
    }
}
