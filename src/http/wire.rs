//! Watches the request heads on a client connection as they arrive, to see what hyper's
//! parser hides from the service: a head with both `Content-Length` and
//! `Transfer-Encoding`. hyper handles such a request safely (the chunked framing wins,
//! the length is dropped, the connection closes after the answer), but the request never
//! shows the length to gatehouse, and a request that two parsers can frame differently
//! is a smuggling attempt that deserves its 400 (`framing.rs`).
//!
//! The scanner follows the message framing (length, chunked, heads) so it always knows
//! where the next head starts, and records the index of each ambiguous head in a
//! [`WireLog`] the connection's service reads. A head that arrives in one read is read
//! in place (memchr jumps from line to line); only one split across reads is copied.
//! Where it cannot follow (an upgrade, a length it cannot parse, a head over the
//! size limit), it stops watching: hyper's own handling (above) is the fallback.
//!
//! The wrapper also enforces `idle_timeout`: a client that sends nothing for that long
//! while the connection is being read (a request body trickling in, slowly enough to
//! hold a connection and an upstream one forever) gets its connection closed. Only a
//! body is timed: between requests hyper's header-read timeout applies, and a response
//! streaming out to a quiet client, or a WebSocket, is left alone. One timer per
//! connection, re-armed only when it fires: a read only notes the time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the scanner found on one connection, read by its service.
#[derive(Default)]
pub struct WireLog {
    any: AtomicBool,
    ambiguous: Mutex<Vec<u64>>,
}

impl WireLog {
    /// Whether the `index`-th request head (from 0) on the connection had both a
    /// `Content-Length` and a `Transfer-Encoding`.
    pub fn is_ambiguous(&self, index: u64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.ambiguous
            .lock()
            .map(|list| list.contains(&index))
            .unwrap_or(true)
    }

    fn record(&self, index: u64) {
        if let Ok(mut list) = self.ambiguous.lock() {
            list.push(index);
        }
        self.any.store(true, Ordering::Release);
    }
}

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head (its bytes so far are in `line`).
    Head,
    /// Inside a `Content-Length` body: bytes left.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Inside a chunk: bytes left, then its CRLF.
    ChunkData(u64),
    /// After a chunk's data: the line end.
    ChunkEnd,
    /// Reading trailer lines after the last chunk, up to an empty line.
    Trailers,
    /// Not watching any more (see the module header).
    Off,
}

/// The framing scanner for one connection.
pub struct Scanner {
    state: State,

    /// The head (or chunk-size / trailer line) read so far.
    line: Vec<u8>,
    /// Heads seen so far: the index of the next one.
    heads: u64,
    max_head: usize,
    log: Arc<WireLog>,
}

/// What a complete head says about the body after it.
struct Head {
    length: Option<Option<u64>>,
    chunked: Option<bool>,
    upgrade: bool,
}

impl Scanner {
    pub fn new(max_head: usize, log: Arc<WireLog>) -> Scanner {
        Scanner {
            state: State::Head,
            line: Vec::new(),
            heads: 0,
            max_head,
            log,
        }
    }

    /// Inside a request body (by length or chunks).
    pub fn in_body(&self) -> bool {
        matches!(
            self.state,
            State::Body(_)
                | State::ChunkSize
                | State::ChunkData(_)
                | State::ChunkEnd
                | State::Trailers
        )
    }

    /// Feeds the next bytes read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return,
                State::Body(left) | State::ChunkData(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    let left = left - take;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                State::ChunkEnd => {
                    // The CRLF after a chunk's data; line() ends at its LF.
                    bytes = self.line_from(bytes);
                }
                State::Head if self.line.is_empty() => {
                    // Empty lines before a request line are skipped, as hyper does.
                    let skip = bytes
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    bytes = &bytes[skip..];
                    if bytes.is_empty() {
                        return;
                    }
                    // The usual case: the whole head is in this read.
                    match head_end(bytes, 0) {
                        Some(end) if end <= self.max_head => {
                            self.state = self.after_head(&bytes[..end]);
                            bytes = &bytes[end..];
                        }
                        Some(_) => self.state = State::Off,
                        None => bytes = self.line_from(bytes),
                    }
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    bytes = self.line_from(bytes);
                }
            }
        }
    }

    /// Takes bytes into `line` up to the end of what the state reads (one line, or a
    /// whole head), acts on it when complete, and returns the rest.
    fn line_from<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let mut i = 0;
        while i < bytes.len() {
            let Some(at) = memchr::memchr(b'\n', &bytes[i..]) else {
                self.take(&bytes[i..]);
                return &[];
            };
            let end = i + at + 1;
            self.take(&bytes[i..end]);
            i = end;
            if self.state == State::Off {
                return &[];
            }
            if self.state != State::Head || ends_with_empty_line(&self.line) {
                let done = std::mem::take(&mut self.line);
                self.complete(&done);
                self.line = done;
                self.line.clear();
                return &bytes[i..];
            }
        }
        &[]
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() > self.max_head {
            self.state = State::Off;
            self.line = Vec::new();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// Acts on a complete head or line.
    fn complete(&mut self, text: &[u8]) {
        self.state = match self.state {
            State::Head => self.after_head(text),
            State::ChunkEnd => match trim_line_end(text) {
                b"" => State::ChunkSize,
                _ => State::Off,
            },
            State::ChunkSize => match chunk_size(text) {
                Some(0) => State::Trailers,
                Some(n) => State::ChunkData(n),
                None => State::Off,
            },
            State::Trailers => match trim_line_end(text) {
                b"" => State::Head,
                _ => State::Trailers,
            },
            other => other,
        };
    }

    fn after_head(&mut self, text: &[u8]) -> State {
        let index = self.heads;
        self.heads += 1;
        let head = read_head(text);
        if head.length.is_some() && head.chunked.is_some() {
            self.log.record(index);
            // hyper closes the connection after answering this one.
            return State::Off;
        }
        if head.upgrade {
            return State::Off;
        }
        match (head.length, head.chunked) {
            (_, Some(true)) => State::ChunkSize,
            (_, Some(false)) => State::Off,
            (Some(Some(0)), None) | (None, None) => State::Head,
            (Some(Some(n)), None) => State::Body(n),
            (Some(None), None) => State::Off,
        }
    }
}

/// Where the head in `buf` ends (just past its empty line), looking from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', &buf[from..])
        .map(|i| from + i + 1)
        .find_map(|after| match buf.get(after..) {
            Some([b'\n', ..]) => Some(after + 1),
            Some([b'\r', b'\n', ..]) => Some(after + 2),
            _ => None,
        })
}

fn ends_with_empty_line(head: &[u8]) -> bool {
    head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n")
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A chunk-size line: hex digits, then optional extensions after `;`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = trim_line_end(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = &line[digits..];
    if !rest.is_empty() && !matches!(rest[0], b';' | b' ' | b'\t') {
        return None;
    }
    let hex = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

/// The framing fields of a head: `length` is `Some(None)` for a length that does not
/// parse; `chunked` says whether the last transfer coding is chunked.
fn read_head(text: &[u8]) -> Head {
    let mut head = Head {
        length: None,
        chunked: None,
        upgrade: false,
    };
    head.upgrade = text.starts_with(b"CONNECT ");
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text) {
        let line = trim_line_end(&text[start..end]);
        start = end + 1;
        // Only three names matter; most lines are dismissed by their first byte.
        if !matches!(line.first().map(|b| b | 0x20), Some(b'c' | b't' | b'u')) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok());
            head.length = Some(match head.length {
                Some(Some(prev)) if Some(prev) != parsed => None,
                Some(None) => None,
                _ => parsed,
            });
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            head.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            head.upgrade = true;
        }
    }
    head
}

/// A client connection whose reads go through a [`Scanner`] on their way to hyper.
pub struct Watched<S> {
    inner: S,
    scanner: Scanner,
    idle: Duration,
    /// When the client last sent something.
    last: Instant,
    /// Fires at or after `last + idle`; re-armed when it fires early.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, max_head: usize, idle: Duration) -> (Watched<S>, Arc<WireLog>) {
        let log = Arc::new(WireLog::default());
        let scanner = Scanner::new(max_head, Arc::clone(&log));
        let watched = Watched {
            inner,
            scanner,
            idle,
            last: Instant::now(),
            timer: None,
        };
        (watched, log)
    }

    /// With nothing to read: `Ready` once the client has been silent for `idle` in the
    /// middle of a request body. Between requests (and while a response streams out)
    /// hyper's header-read timeout is the bound; a tunnel has none.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.scanner.in_body() {
            return Poll::Pending;
        }
        // Checked: an idle time no clock can reach never fires, and never panics.
        let Some(due) = self.last.checked_add(self.idle) else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            // The client spoke since it was set: wait for the rest of its time.
            timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) => {
                this.scanner.feed(&buf.filled()[before..]);
                this.last = Instant::now();
            }
            Poll::Pending if this.poll_idle(cx).is_ready() => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing within idle_timeout",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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

    /// Feeds `stream` in pieces of `step` bytes; returns the ambiguous head indices.
    fn scan(stream: &[u8], step: usize) -> (Vec<u64>, State) {
        let log = Arc::new(WireLog::default());
        let mut s = Scanner::new(16 * 1024, Arc::clone(&log));
        for piece in stream.chunks(step) {
            s.feed(piece);
        }
        let found = log.ambiguous.lock().map(|l| l.clone()).unwrap_or_default();
        (found, s.state)
    }

    fn every_split(stream: &[u8]) -> Vec<(Vec<u64>, State)> {
        (1..=stream.len()).map(|step| scan(stream, step)).collect()
    }

    #[test]
    fn finds_both_framings_in_either_order_and_any_case() {
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            "POST / HTTP/1.1\nHost: a\nCONTENT-LENGTH:4\nTransfer-Encoding: gzip, chunked\n\n",
        ] {
            for (found, _) in every_split(head.as_bytes()) {
                assert_eq!(found, vec![0], "{head:?}");
            }
        }
    }

    #[test]
    fn follows_lengths_chunks_and_pipelined_heads() {
        let stream = concat!(
            "\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 46\r\n\r\n",
            // a body that looks like a smuggled head is a body
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-En",
            "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
            "POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(stream.matches("Transfer-En").count(), 3);
        for (found, state) in every_split(stream.as_bytes()) {
            assert_eq!(found, vec![3]);
            assert_eq!(state, State::Off);
        }
    }

    #[test]
    fn plain_traffic_is_never_flagged() {
        let stream = concat!(
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "3\r\nabc\r\n0\r\n\r\n",
            "PUT /v HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz",
        );
        for (found, state) in every_split(stream.as_bytes()) {
            assert!(found.is_empty());
            assert_eq!(state, State::Head);
        }
    }

    #[test]
    fn stops_watching_where_it_cannot_follow() {
        for stream in [
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert_eq!(
                scan(stream.as_bytes(), 7),
                (vec![], State::Off),
                "{stream:?}"
            );
        }
        let log = Arc::new(WireLog::default());
        let mut s = Scanner::new(64, log);
        s.feed(&[b'a'; 65]);
        assert_eq!(s.state, State::Off);
    }
}
