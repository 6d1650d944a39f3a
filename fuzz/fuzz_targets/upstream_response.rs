//! An upstream's HTTP/1.1 response as gatehouse's own client reads it
//! (`proxy::response::read_head`, `Framing::take`/`at_eof`, `proxy::chunked`).
//!
//! Input: a knob byte (bit 0: a HEAD request; bit 1: chunk extensions; bit 2: a
//! trailer), a count byte and that many 2-byte cut points (where the bytes are cut into
//! reads; they also size the chunks below), then the bytes the upstream sends, which
//! are also the body of a well-formed chunked response.
//!
//! Asserts:
//! - nothing panics, and the same bytes read in any pieces give the same outcome (head,
//!   body, where it ended, error or not) as read whole;
//! - the head passed on agrees with the framing chosen: a length-delimited body comes
//!   with no `Transfer-Encoding` and every `Content-Length` value equal to its length; a
//!   chunked one with no `Content-Length`; no body only for HEAD, 204, 304 or a length of
//!   0; a connection is reusable only when nothing said `close` and the body is not
//!   delimited by the close; a complete length-delimited body is exactly that long;
//! - a well-formed chunked response (any body, chunk sizes, extensions, trailers)
//!   decodes to exactly its body, reusable, leaving what followed it unread.
#![no_main]

use bytes::BytesMut;
use gatehouse::proxy::chunked::Step;
use gatehouse::proxy::response::{read_head, Framing, H1Error};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Input<'a> {
    head_request: bool,
    cuts: Vec<u16>,
    raw: &'a [u8],
    extensions: bool,
    trailer: bool,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Option<Input<'a>> {
        let (&knobs, rest) = data.split_first()?;
        let (&count, rest) = rest.split_first()?;
        let count = usize::from(count % 8);
        let cut_bytes = rest.get(..count * 2)?;
        Some(Input {
            head_request: knobs & 1 != 0,
            extensions: knobs & 2 != 0,
            trailer: knobs & 4 != 0,
            cuts: cut_bytes
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
            raw: &rest[count * 2..],
        })
    }
}

/// How reading a response ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The head was refused (error kind).
    BadHead(&'static str),
    /// The input ended inside the head.
    Partial,
    Read {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        reusable: bool,
        body: Vec<u8>,
        end: End,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The framing said the body ended; this many bytes followed it.
    Done(usize),
    /// The input ended where the framing allows it (delimited by the close).
    Closed,
    /// The body was refused or cut (error kind).
    Failed(&'static str),
}

fn kind(e: &H1Error) -> &'static str {
    match e {
        H1Error::Io(_) => "io",
        H1Error::ClosedBeforeHead => "closed before head",
        H1Error::Truncated => "truncated",
        H1Error::BadHead(_) => "bad head",
        H1Error::HeadTooLarge => "head too large",
        H1Error::Chunk(_) => "chunk",
    }
}

/// Checks what the framing promises against the head that is passed on.
fn check_answer(
    status: StatusCode,
    headers: &http::HeaderMap,
    framing: &Framing,
    reusable: bool,
    head_request: bool,
) {
    assert!(!status.is_informational(), "an interim answer was final");
    let lengths: Vec<&[u8]> = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let closes = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
    if reusable {
        assert!(!closes, "reusable despite Connection: close");
    }
    match framing {
        Framing::Length(n) => {
            assert!(!headers.contains_key(TRANSFER_ENCODING));
            assert!(!lengths.is_empty());
            for l in &lengths {
                assert_eq!(std::str::from_utf8(l).ok().and_then(|s| s.parse::<u64>().ok()), Some(*n));
            }
        }
        Framing::Chunked(_) => {
            assert!(!headers.contains_key(CONTENT_LENGTH), "Content-Length kept beside chunked");
            assert!(headers.contains_key(TRANSFER_ENCODING));
        }
        Framing::Empty => {
            let zero = !lengths.is_empty()
                && lengths
                    .iter()
                    .all(|l| std::str::from_utf8(l).ok().and_then(|s| s.parse::<u64>().ok()) == Some(0));
            assert!(
                head_request
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED
                    || zero,
                "no body for {status} without a reason"
            );
        }
        Framing::UntilClose => assert!(!reusable, "a close-delimited body on a reused connection"),
    }
}

/// Reads `wire` in the pieces `cuts` makes.
fn read(wire: &[u8], cuts: &[u16], head_request: bool) -> Outcome {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) % (wire.len() + 1))
        .collect();
    points.sort_unstable();
    points.push(wire.len());
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut interim = 0;
    // The answer, and the length it promised (for a length-delimited body).
    let mut answer = None;
    let mut body = Vec::new();
    for end in points {
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        if answer.is_none() {
            match read_head(&mut buf, head_request, &mut interim) {
                Err(e) => return Outcome::BadHead(kind(&e)),
                Ok(None) => continue,
                Ok(Some(a)) => {
                    check_answer(a.status, &a.headers, &a.framing, a.reusable, head_request);
                    let promised = match a.framing {
                        Framing::Length(n) => Some(n),
                        _ => None,
                    };
                    answer = Some((a, promised));
                }
            }
        }
        let Some((a, promised)) = answer.as_mut() else {
            continue;
        };
        loop {
            match a.framing.take(&mut buf) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "an empty data piece");
                    body.extend_from_slice(&d);
                }
                Ok(Step::NeedMore) => break,
                Ok(Step::Done) => {
                    if let Some(n) = promised {
                        assert_eq!(body.len() as u64, *n, "a length body of the wrong length");
                    }
                    return finish(a, body, End::Done(buf.len() + wire.len() - fed));
                }
                Err(e) => return finish(a, body, End::Failed(kind(&e))),
            }
        }
    }
    match answer {
        None => Outcome::Partial,
        Some((a, _)) => {
            let end = match a.framing.at_eof() {
                Ok(()) => End::Closed,
                Err(e) => End::Failed(kind(&e)),
            };
            finish(&a, body, end)
        }
    }
}

fn finish(a: &gatehouse::proxy::response::Answer, body: Vec<u8>, end: End) -> Outcome {
    let mut headers: Vec<(String, Vec<u8>)> = a
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    Outcome::Read {
        status: a.status.as_u16(),
        headers,
        reusable: a.reusable,
        body,
        end,
    }
}

/// A well-formed chunked response carrying `input.raw`, followed by `NEXT`.
fn chunked_response(input: &Input) -> Vec<u8> {
    let mut wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let mut rest = input.raw;
    let mut sizes = input.cuts.iter().cycle();
    while !rest.is_empty() {
        let size = sizes
            .next()
            .map_or(rest.len(), |s| usize::from(*s % 512).max(1))
            .min(rest.len());
        wire.extend_from_slice(format!("{size:x}").as_bytes());
        if input.extensions {
            wire.extend_from_slice(b" ; name=\"v;1\"");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&rest[..size]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[size..];
    }
    wire.extend_from_slice(b"0\r\n");
    if input.trailer {
        wire.extend_from_slice(b"x-checksum: abc\r\n");
    }
    wire.extend_from_slice(b"\r\nNEXT");
    wire
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::new(data) else {
        return;
    };
    let whole = read(input.raw, &[], input.head_request);
    let pieces = read(input.raw, &input.cuts, input.head_request);
    assert_eq!(whole, pieces, "reading in pieces changed the outcome");

    let wire = chunked_response(&input);
    for cuts in [&[][..], &input.cuts[..]] {
        match read(&wire, cuts, false) {
            Outcome::Read {
                status: 200,
                reusable: true,
                body,
                end: End::Done(4),
                ..
            } => assert_eq!(body, input.raw),
            other => panic!("a well-formed chunked response read as {other:?}"),
        }
    }
});
