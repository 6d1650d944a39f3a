//! Reading an upstream's HTTP/1.1 response, as pure functions over the bytes read so far
//! (`h1.rs` does the reading): the head, parsed by httparse (hyper's parser) within a
//! size limit with interim (1xx) answers skipped, and how the body is delimited (RFC
//! 9112 §6.3: no body for HEAD, 1xx, 204 and 304; `Transfer-Encoding` over
//! `Content-Length`, which is then dropped; a `Content-Length` must be one number), then
//! the body itself, taken off the buffer without copying. A fuzz target
//! (`fuzz/fuzz_targets/upstream_response.rs`) drives these.

use super::chunked::{ChunkError, Chunked, Step};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use bytes::{Buf, BytesMut};

/// Most response header fields (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Largest response head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;

/// Why a response cannot be read.
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
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid chunked body: {0}")]
    Chunk(#[from] ChunkError),
}

/// A final response head, and what its body will be.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request once the body has ended cleanly.
    pub reusable: bool,
}

/// Takes the final response head off the front of `buf` (skipping interim answers,
/// counted in `interim` across calls); `None` until it is whole.
pub fn read_head(
    buf: &mut BytesMut,
    head_request: bool,
    interim: &mut usize,
) -> Result<Option<Answer>, H1Error> {
    loop {
        let (len, head) = match parse_head(buf)? {
            None if buf.len() >= MAX_HEAD => return Err(H1Error::HeadTooLarge),
            None => return Ok(None),
            Some((len, _)) if len > MAX_HEAD => return Err(H1Error::HeadTooLarge),
            Some(parsed) => parsed,
        };
        buf.advance(len);
        if head.status.is_informational() {
            *interim += 1;
            if head.status == StatusCode::SWITCHING_PROTOCOLS || *interim > MAX_INTERIM {
                return Err(H1Error::BadHead(format!("unexpected {}", head.status)));
            }
            continue;
        }
        let mut headers = head.headers;
        let (framing, reusable) = framing(head.status, head_request, head.version, &mut headers)?;
        return Ok(Some(Answer {
            status: head.status,
            headers,
            framing,
            reusable,
        }));
    }
}

/// A response head as parsed.
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
pub enum Framing {
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
            // Every element must be a number (hyper's rule): an empty one (`, 5`) too
            // is refused, as a sign of a length someone tampered with.
            for t in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
            {
                let n = (!t.is_empty() && t.iter().all(u8::is_ascii_digit) && t.len() <= 19)
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

impl Framing {
    /// Takes the next piece of the body off the front of `buf`.
    pub fn take(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        match self {
            Framing::Empty | Framing::Length(0) => Ok(Step::Done),
            Framing::Chunked(dec) => Ok(dec.step(buf)?),
            _ if buf.is_empty() => Ok(Step::NeedMore),
            Framing::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Framing::UntilClose => Ok(Step::Data(buf.split().freeze())),
        }
    }

    /// Nothing of the body is left to read (a chunked body knows only at its last chunk).
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Empty | Framing::Length(0))
    }

    /// The connection ended while the body wanted more: the end of the body only when
    /// it is delimited by the close.
    pub fn at_eof(&self) -> Result<(), H1Error> {
        match self {
            Framing::UntilClose => Ok(()),
            _ => Err(H1Error::Truncated),
        }
    }
}
