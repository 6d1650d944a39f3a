//! W3C Trace Context (Recommendation, Level 1): the `traceparent` a request arrived with,
//! continued to the upstream, or a fresh one when it had none that is valid. Nothing here
//! records spans; the trace id goes into gatehouse's own log lines and audit events, beside
//! the request id, so one search finds a request in gatehouse's log and in the upstream's
//! traces.
//!
//! Gatehouse *forwards* a valid trace context (Level 1 §3, whose opening paragraphs call
//! propagating both headers unchanged, so that the trace is not broken, forwarding a
//! trace), and does not *participate* (§4.3, where a participant sets a parent-id of its
//! own before passing the header on): a parent-id of gatehouse's would name a span
//! that no tracing backend ever receives, so the upstream's span would hang off a parent
//! that does not exist, while the caller's real span would lose its child. The upstream
//! sees the caller's own `traceparent` and `tracestate`, and gatehouse logs the trace id.
//!
//! Anything else starts a new trace, and then `tracestate` is deleted (§4.3: an invalid
//! `traceparent` is replaced by a new one and the `tracestate` dropped; §3.3: a vendor
//! that failed to parse `traceparent` MUST NOT parse `tracestate`): no header, several
//! header lines, version `ff`, a version-00 value that is not exactly 55 characters,
//! anything but lowercase hex in a field, an all-zero trace-id or parent-id. A higher
//! version is read as §3.2.4 says (its first 55 characters, then the end or a dash) and
//! passed on rewritten as version 00 with only the sampled flag kept.
//!
//! A fresh trace has the sampled flag set: §3.2.2.5.1 makes it mean "the caller may have
//! recorded trace data", and gatehouse records the trace id with what it logs about the
//! request; a 0 would make the upstream's parent-based sampler (OpenTelemetry's default)
//! drop every trace that started at gatehouse, which is worse than no header at all.
//!
//! Cost per request: one header lookup and a 55-byte scan; the ids of a fresh trace come
//! from `fastrand` (a per-thread wyrand, already in the tree through redis's backoff), and
//! the only allocation is the 55-byte header value, and none when the client's header
//! goes on unchanged.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The length of a version-00 `traceparent` (§3.2.2).
const LEN: usize = 55;
const SAMPLED: u8 = 0x01;

/// The 16-byte trace-id; `Display` writes 32 lowercase hex digits without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 32];
        hex_into(&self.0, &mut out);
        // Hex digits only: always UTF-8.
        f.write_str(std::str::from_utf8(&out).unwrap_or_default())
    }
}

/// One `traceparent`: what the upstream is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// How the request's trace context reached gatehouse.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// One valid version-00 header: it goes on exactly as it came, `tracestate` too.
    AsSent,
    /// A valid header of a higher version: continued as version 00 (§3.2.4), with
    /// `tracestate`.
    Continued,
    /// None, or none valid: a fresh trace; any `tracestate` is dropped.
    Fresh,
}

/// The request's trace context.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Trace {
    pub parent: TraceParent,
    pub origin: Origin,
    /// What the client sent, seen in [`Trace::read`]'s one pass over the header names,
    /// so that [`Trace::propagate`] looks nothing up again (the usual request has
    /// neither header, and a lookup by name hashes it).
    sent: Sent,
}

/// Which trace headers the client sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Sent {
    traceparent: bool,
    tracestate: bool,
}

impl Trace {
    /// Reads the request's `traceparent`; starts a fresh trace when there is no valid one.
    pub fn read(headers: &HeaderMap) -> Trace {
        // One pass over the names present: no hashing of either name.
        let (mut first, mut lines, mut sent) = (None, 0usize, Sent::default());
        for (name, value) in headers {
            if name == TRACEPARENT {
                first.get_or_insert(value);
                lines += 1;
                sent.traceparent = true;
            } else if name == TRACESTATE {
                sent.tracestate = true;
            }
        }
        // None, or several lines (which one would the caller mean?): a fresh trace.
        let parsed = first
            .filter(|_| lines == 1)
            .and_then(|v| parse(v.as_bytes()));
        match parsed {
            Some((parent, version)) => Trace {
                parent,
                origin: if version == 0 {
                    Origin::AsSent
                } else {
                    Origin::Continued
                },
                sent,
            },
            None => Trace {
                sent,
                ..Trace::fresh()
            },
        }
    }

    /// A new trace: random non-zero ids, sampled (see the module header).
    pub fn fresh() -> Trace {
        let mut trace_id = 0u128;
        while trace_id == 0 {
            trace_id = fastrand::u128(..);
        }
        let mut parent_id = 0u64;
        while parent_id == 0 {
            parent_id = fastrand::u64(..);
        }
        Trace {
            parent: TraceParent {
                trace_id: TraceId(trace_id.to_be_bytes()),
                parent_id: parent_id.to_be_bytes(),
                flags: SAMPLED,
            },
            origin: Origin::Fresh,
            sent: Sent::default(),
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.parent.trace_id
    }

    /// Makes the request's headers carry this trace context to the upstream: the
    /// client's header as it came, or gatehouse's (returned, to be set beside the
    /// client's remaining headers) after removing every client copy, and with a fresh
    /// trace every `tracestate` too.
    pub fn propagate(&self, headers: &mut HeaderMap) -> Option<HeaderValue> {
        match self.origin {
            Origin::AsSent => return None,
            Origin::Continued => {}
            Origin::Fresh => {
                if self.sent.tracestate {
                    headers.remove(&TRACESTATE);
                }
            }
        }
        if self.sent.traceparent {
            headers.remove(&TRACEPARENT);
        }
        HeaderValue::from_bytes(&self.parent.encode()).ok()
    }
}

impl TraceParent {
    /// `00-<trace-id>-<parent-id>-<flags>`, 55 bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [b'-'; LEN];
        out[0] = b'0';
        out[1] = b'0';
        hex_into(&self.trace_id.0, &mut out[3..35]);
        hex_into(&self.parent_id, &mut out[36..52]);
        hex_into(&[self.flags], &mut out[53..55]);
        out
    }
}

/// A `traceparent` value and its version, or `None` when it is not a valid one
/// (§3.2.2, §3.2.4). Never panics, whatever the bytes.
pub fn parse(v: &[u8]) -> Option<(TraceParent, u8)> {
    if v.len() < LEN || v[2] != b'-' {
        return None;
    }
    let version = hex_byte(v[0], v[1])?;
    if version == 0xff || (version == 0 && v.len() != LEN) {
        return None;
    }
    // A higher version may add fields, each after a dash (§3.2.4).
    if v.len() > LEN && v[LEN] != b'-' {
        return None;
    }
    if v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    hex_from(&v[3..35], &mut trace_id)?;
    hex_from(&v[36..52], &mut parent_id)?;
    let flags = hex_byte(v[53], v[54])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    // Of a version gatehouse does not know, only the sampled flag is understood, and
    // flags it does not understand are sent as zero (§3.2.2.5.2, §3.2.4).
    let flags = if version == 0 { flags } else { flags & SAMPLED };
    Some((
        TraceParent {
            trace_id: TraceId(trace_id),
            parent_id,
            flags,
        },
        version,
    ))
}

/// A lowercase hex digit's value (§3.2.2: `HEXDIGLC`; uppercase is invalid).
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(nibble(hi)? << 4 | nibble(lo)?)
}

/// Decodes `src` (twice `out`'s length) into `out`.
fn hex_from(src: &[u8], out: &mut [u8]) -> Option<()> {
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

/// Writes `bytes` as lowercase hex into `out` (twice their length).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
