//! A lean HTTP/1.1 client for what most proxied traffic is: a GET or HEAD with no body
//! and no upgrade (a dashboard's page loads and API lists). It writes the request head
//! straight from the sanitised header map, reads the response in the request's own task
//! (no connection task, no channel between them), and streams the body from the
//! connection's read buffer without copying. Everything else (bodies, upgrades) goes
//! through hyper's client (`pool.rs`).
//!
//! Strict on what it reads: the head is parsed by httparse (hyper's parser) within a size
//! limit; the body's length follows RFC 9112 §6.3 (no body for HEAD, 1xx, 204 and 304;
//! `Transfer-Encoding` over `Content-Length`; a `Content-Length` must be one number); a
//! connection goes back to the pool only when its body ended exactly where the framing
//! said, with nothing after it, and neither side asked to close.

use super::chunked::{ChunkError, Chunked, Step};
use crate::headers::Additions;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most response header fields (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// First read size; doubled while reads fill it, up to [`READ_MAX`].
const READ_MIN: usize = 8 * 1024;
/// Largest read, and the largest response head.
pub const READ_MAX: usize = 64 * 1024;
/// Most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// Most connections kept.
const MAX_KEPT: usize = 256;
/// An idle connection older than this is closed rather than used.
const IDLE_FOR: Duration = Duration::from_secs(90);

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before the response head")]
    ClosedBeforeHead,
    #[error("connection closed before the end of the response body")]
    Truncated,
    #[error("invalid response head: {0}")]
    BadHead(String),
    #[error("response head larger than {READ_MAX} bytes")]
    HeadTooLarge,
    #[error("invalid chunked body: {0}")]
    Chunk(#[from] ChunkError),
}

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
            match parse_head(&conn.buf) {
                Err(error) => {
                    return Err(Failed {
                        error,
                        nothing_received: false,
                    })
                }
                Ok(None) if conn.buf.len() >= READ_MAX => {
                    return Err(Failed {
                        error: H1Error::HeadTooLarge,
                        nothing_received: false,
                    })
                }
                Ok(None) => {}
                Ok(Some((len, _))) if len > READ_MAX => {
                    return Err(Failed {
                        error: H1Error::HeadTooLarge,
                        nothing_received: false,
                    })
                }
                Ok(Some((len, head))) => {
                    conn.buf.advance(len);
                    if head.status.is_informational() {
                        interim += 1;
                        if head.status == StatusCode::SWITCHING_PROTOCOLS || interim > MAX_INTERIM {
                            return Err(Failed {
                                error: H1Error::BadHead(format!("unexpected {}", head.status)),
                                nothing_received: false,
                            });
                        }
                        continue;
                    }
                    let mut headers = head.headers;
                    let (framing, reusable) = framing(
                        head.status,
                        method == Method::HEAD,
                        head.version,
                        &mut headers,
                    )
                    .map_err(|error| Failed {
                        error,
                        nothing_received: false,
                    })?;
                    let mut resp = Response::new(UpstreamBody::new(
                        conn,
                        framing,
                        reusable.then(|| Arc::clone(kept)),
                    ));
                    *resp.status_mut() = head.status;
                    *resp.headers_mut() = headers;
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

struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

/// A complete response head at the front of `buf` and its length, `None` if partial.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(H1Error::BadHead(e.to_string())),
    };
    let bad = |what: &str| H1Error::BadHead(what.to_string());
    let status = r
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| bad("status code"))?;
    let version = match r.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Room for what gatehouse may add (Vary, Cache-Control, Set-Cookie): no growth.
    let mut headers = HeaderMap::with_capacity(r.headers.len() + 4);
    for f in r.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| bad("field name"))?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| bad("field value"))?;
        headers.append(name, value);
    }
    Ok(Some((
        len,
        Head {
            status,
            version,
            headers,
        },
    )))
}

/// How the body is delimited.
#[derive(Debug)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// RFC 9112 §6.3, and whether the connection may carry another request afterwards.
/// One pass over the (few) fields of the response head.
fn framing(
    status: StatusCode,
    head_request: bool,
    version: Version,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), H1Error> {
    let mut close = version != Version::HTTP_11;
    // `Some(last coding is chunked)` once a Transfer-Encoding is seen.
    let mut chunked: Option<bool> = None;
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut bad_length = false;
    for (name, value) in headers.iter() {
        if name == CONNECTION {
            close |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name == TRANSFER_ENCODING {
            if let Some(last) = tokens(value).next_back() {
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else {
                chunked.get_or_insert(false);
            }
        } else if name == CONTENT_LENGTH {
            has_length = true;
            for t in tokens(value) {
                let n = (t.iter().all(u8::is_ascii_digit) && t.len() <= 19)
                    .then(|| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
                    .flatten();
                match (n, length) {
                    (Some(n), Some(l)) if n != l => bad_length = true,
                    (Some(n), _) => length = Some(n),
                    (None, _) => bad_length = true,
                }
            }
        }
    }
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Empty, !close));
    }
    if let Some(chunked) = chunked {
        // With a Content-Length too, the message was framed two ways: never reuse, and
        // do not pass the length on (RFC 9112 §6.3: Transfer-Encoding overrides it).
        if has_length {
            headers.remove(CONTENT_LENGTH);
        }
        return Ok(if chunked {
            (Framing::Chunked(Chunked::default()), !close && !has_length)
        } else {
            (Framing::UntilClose, false)
        });
    }
    if bad_length || (has_length && length.is_none()) {
        return Err(H1Error::BadHead("Content-Length".into()));
    }
    Ok(match length {
        Some(0) => (Framing::Empty, !close),
        Some(n) => (Framing::Length(n), !close),
        None => (Framing::UntilClose, false),
    })
}

/// The comma-separated elements of a field value, trimmed, empty ones skipped.
fn tokens(v: &HeaderValue) -> impl DoubleEndedIterator<Item = &[u8]> {
    v.as_bytes()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
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
        if matches!(body.framing, Framing::Empty) {
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
            match &mut this.framing {
                Framing::Empty => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) if !conn.buf.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    let data = conn.buf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(dec) => match dec.step(&mut conn.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => {}
                    Err(e) => return this.fail(e.into(), cx),
                },
                Framing::UntilClose if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Length(_) | Framing::UntilClose => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.framing, Framing::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(H1Error::Truncated, cx),
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
