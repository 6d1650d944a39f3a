//! A lean HTTP/1.1 client for what most proxied traffic is: a GET or HEAD with no body
//! and no upgrade (a dashboard's page loads and API lists). It writes the request head
//! straight from the sanitised header map, reads the response in the request's own task
//! (no connection task, no channel between them), and streams the body from the
//! connection's read buffer without copying. Everything else (bodies, upgrades) goes
//! through hyper's client (`pool.rs`).
//!
//! What it reads is parsed strictly, by `response.rs`. A connection goes back to the
//! pool only when its body ended exactly where the framing said, with nothing after it,
//! and neither side asked to close.

use super::chunked::Step;
pub use super::response::H1Error;
use super::response::{read_head, Framing};
use crate::headers::Additions;
use axum::http::{HeaderMap, Method, Response};
use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// First read size; doubled while reads fill it, up to [`READ_MAX`].
const READ_MIN: usize = 8 * 1024;
/// Largest read.
pub const READ_MAX: usize = 64 * 1024;
/// Most connections kept.
const MAX_KEPT: usize = 256;
/// An idle connection older than this is closed rather than used.
const IDLE_FOR: Duration = Duration::from_secs(90);

/// An exchange that failed, and whether any byte of a response had arrived (if not, the
/// request may be sent again on a new connection: GET and HEAD are safe to repeat).
#[derive(Debug)]
pub struct Failed {
    pub error: H1Error,
    pub nothing_received: bool,
}

/// One connection to the upstream and what has been read from it.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// The request head being written (kept: no allocation per request).
    out: Vec<u8>,
    next_read: usize,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
            next_read: READ_MIN,
        }
    }

    /// Reads what is there into `buf`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.next_read / 2 {
            self.buf.reserve(self.next_read);
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            let spare = self.buf.capacity() - self.buf.len();
            match self.stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Ok(n) => {
                    // A read that filled the room asks for a bigger one next time.
                    if n == spare && self.next_read < READ_MAX {
                        self.next_read *= 2;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// The connections a worker keeps for this client.
#[derive(Default)]
pub struct Kept(Mutex<Vec<(Instant, Conn)>>);

impl Kept {
    /// The most recently used connection that has not idled too long and has nothing to
    /// read: an idle connection that the upstream closed, or wrote to unasked (a stray
    /// `408`), is dropped, so no answer is taken for another request's. The check costs
    /// no system call unless the reactor saw the socket become readable.
    pub fn take(&self) -> Option<Conn> {
        let mut kept = self.0.lock().ok()?;
        while let Some((at, conn)) = kept.pop() {
            let quiet = matches!(conn.stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if quiet && at.elapsed() < IDLE_FOR {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        // A connection that streamed a large body gives its buffer back.
        if conn.buf.capacity() > 2 * READ_MIN {
            conn.buf = BytesMut::new();
            conn.next_read = READ_MIN;
        }
        if conn.out.capacity() > 2 * READ_MIN {
            conn.out = Vec::new();
        }
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() >= MAX_KEPT {
                kept.remove(0);
            }
            kept.push((Instant::now(), conn));
        }
    }
}

/// Writes `method target HTTP/1.1`, the client's `headers`, then gatehouse's `add`
/// (all already valid: `http` checks names and values, so no CR or LF can be in them)
/// into `out`.
fn write_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    add: &Additions,
) {
    let fields = || headers.iter().chain(add.iter());
    let size: usize = fields().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    out.clear();
    out.reserve(size + target.len() + 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in fields() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends a bodyless request on `conn` and reads the response head; the body streams
/// from the returned [`UpstreamBody`], which gives the connection back to `kept` when
/// it may carry another request.
pub async fn exchange(
    mut conn: Conn,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    add: &Additions,
    kept: &Arc<Kept>,
) -> Result<Response<UpstreamBody>, Failed> {
    let nothing = |error| Failed {
        error,
        nothing_received: true,
    };
    let mut out = std::mem::take(&mut conn.out);
    write_head(&mut out, method, target, headers, add);
    let written = conn.stream.write_all(&out).await;
    conn.out = out;
    written.map_err(|e| nothing(e.into()))?;
    let mut received = false;
    let mut interim = 0;
    loop {
        if !conn.buf.is_empty() {
            received = true;
            match read_head(&mut conn.buf, method == Method::HEAD, &mut interim) {
                Err(error) => {
                    return Err(Failed {
                        error,
                        nothing_received: false,
                    })
                }
                Ok(None) => {}
                Ok(Some(answer)) => {
                    let mut resp = Response::new(UpstreamBody::new(
                        conn,
                        answer.framing,
                        answer.reusable.then(|| Arc::clone(kept)),
                    ));
                    *resp.status_mut() = answer.status;
                    *resp.headers_mut() = answer.headers;
                    return Ok(resp);
                }
            }
        }
        match conn.fill().await {
            Ok(0) if received => {
                return Err(Failed {
                    error: H1Error::ClosedBeforeHead,
                    nothing_received: false,
                })
            }
            Ok(0) => return Err(nothing(H1Error::ClosedBeforeHead)),
            Ok(_) => {}
            Err(e) => {
                return Err(Failed {
                    error: e.into(),
                    nothing_received: !received,
                })
            }
        }
    }
}

/// A response body read from an upstream connection.
pub struct UpstreamBody {
    /// `None` once the body ended (the connection went back to the pool or was closed).
    conn: Option<Conn>,
    framing: Framing,
    /// Where the connection goes when the body ended cleanly; `None`: close it.
    kept: Option<Arc<Kept>>,
    /// An error held back one turn (see [`UpstreamBody::fail`]).
    failed: Option<H1Error>,
}

impl UpstreamBody {
    fn new(conn: Conn, framing: Framing, kept: Option<Arc<Kept>>) -> UpstreamBody {
        let mut body = UpstreamBody {
            conn: Some(conn),
            framing,
            kept,
            failed: None,
        };
        // Nothing to read: hyper will not poll a body that says it has ended.
        if body.framing.is_done() {
            body.finish();
        }
        body
    }

    /// The body ended where its framing said: the connection may carry another request,
    /// unless the upstream sent something after it.
    fn finish(&mut self) {
        if let (Some(conn), Some(kept)) = (self.conn.take(), self.kept.take()) {
            if conn.buf.is_empty() {
                kept.put(conn);
            }
        }
    }

    /// Ends the body with `e`, one turn later: hyper drops the client connection on a
    /// body error without flushing what it holds, so it first gets a `Pending` (and an
    /// immediate wake-up) in which it writes out the head and the data already given.
    /// The client then sees the status and a body cut short, not a connection closed
    /// with no answer.
    fn fail(
        &mut self,
        e: H1Error,
        cx: &Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.conn = None;
        self.failed = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(this.failed.take().map(Err));
            };
            match this.framing.take(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    // The last bytes of a length-delimited body: give the connection back
                    // now, as hyper will not poll a body that says it has ended.
                    if this.framing.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(e) => return this.fail(e, cx),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => match this.framing.at_eof() {
                    Ok(()) => {
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Err(e) => return this.fail(e, cx),
                },
                Ok(_) => {}
                Err(e) => return this.fail(e.into(), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.framing) {
            (None, _) if self.failed.is_none() => SizeHint::with_exact(0),
            (_, Framing::Empty) => SizeHint::with_exact(0),
            (_, Framing::Length(left)) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}
