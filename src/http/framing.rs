//! Refuses requests whose framing two HTTP parsers could read differently (request
//! smuggling, RFC 9112 §6.3): both `Content-Length` and `Transfer-Encoding`, several
//! `Content-Length` values, or more than one `Host`. Such a request gets 400 and never
//! reaches a handler, let alone the upstream. hyper drops a `Content-Length` that comes
//! with `Transfer-Encoding` before the request reaches us, so `wire.rs` watches the heads
//! on the connection and says which ones had both. (Obsolete line folding and a space
//! before the colon are refused by the HTTP parser itself; the tests hold both.)

use super::AppError;
use axum::http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use axum::http::HeaderMap;
use axum::response::Response;

const BOTH: &str = "it has both Content-Length and Transfer-Encoding";

/// What makes the framing ambiguous, if anything.
pub fn ambiguity(h: &HeaderMap) -> Option<&'static str> {
    // One pass over the fields present: this runs for every request.
    let (mut te, mut cl, mut host) = (false, 0, 0);
    for name in h.keys() {
        if name == TRANSFER_ENCODING {
            te = true;
        } else if name == CONTENT_LENGTH {
            cl = h.get_all(CONTENT_LENGTH).iter().count();
        } else if name == HOST {
            host = h.get_all(HOST).iter().count();
        }
    }
    if te && cl > 0 {
        return Some(BOTH);
    }
    if cl > 1 {
        return Some("it has more than one Content-Length");
    }
    if host > 1 {
        return Some("it has more than one Host");
    }
    None
}

/// The 400 for an ambiguous request, if it is one. Called for every request before the
/// router (`workers.rs`): a plain function, no middleware layer on the hot path.
/// `both_on_wire`: the wire scanner (`wire.rs`) saw both framings in this request's head,
/// though hyper kept only the chunked one.
pub fn refusal<B>(req: &axum::http::Request<B>, both_on_wire: bool) -> Option<Response> {
    let why = if both_on_wire {
        BOTH
    } else {
        ambiguity(req.headers())?
    };
    let id = crate::util::request_id();
    let api = super::is_api_request(req.method(), req.headers());
    let trace_id = crate::trace::Trace::read(req.headers()).trace_id();
    Some(AppError::AmbiguousFraming(why).respond(&id, trace_id, api))
}
