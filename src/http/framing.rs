//! Refuses requests whose framing two HTTP parsers could read differently (request
//! smuggling, RFC 9112 §6.3): both `Content-Length` and `Transfer-Encoding`, several
//! `Content-Length` values, or more than one `Host`. Such a request gets 400 and never
//! reaches a handler, let alone the upstream. So does a request target that is not a
//! path (`?query`, `*` but for OPTIONS, CONNECT's `host:port`): the upstream would get it
//! as written while gatehouse matched another path. hyper drops a `Content-Length` that comes
//! with `Transfer-Encoding` before the request reaches us, so `wire.rs` watches the heads
//! on the connection and says which ones had both. (Obsolete line folding and a space
//! before the colon are refused by the HTTP parser itself; the tests hold both.)

use super::AppError;
use axum::http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method};
use axum::response::Response;

const BOTH: &str = "it has both Content-Length and Transfer-Encoding";

const TARGET: &str = "its request target is not a path starting with / (nor * for OPTIONS)";

/// Whether the request target reaches the upstream as a path: its path and query start
/// with `/` (origin form, or the path of an absolute-form target, which the proxy keeps
/// alone), or it is `*` for OPTIONS. The HTTP parsers (hyper's HTTP/1.1, h2's `:path`)
/// also take `?query`, `#fragment`, `*` for any method and CONNECT's `host:port`; such a
/// target would be sent upstream as written (`GET ?a HTTP/1.1`) while gatehouse matched
/// the path `/` (or none) against its routes: two readings of one request.
pub fn target_is_a_path<B>(req: &axum::http::Request<B>) -> bool {
    match req.uri().path_and_query().map(|p| p.as_str()) {
        Some(t) => t.starts_with('/') || (t == "*" && req.method() == Method::OPTIONS),
        None => false,
    }
}

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
    } else if !target_is_a_path(req) {
        TARGET
    } else {
        ambiguity(req.headers())?
    };
    let id = crate::util::request_id();
    let api = super::is_api_request(req.method(), req.headers());
    let trace_id = crate::trace::Trace::read(req.headers()).trace_id();
    Some(AppError::AmbiguousFraming(why).respond(&id, trace_id, api))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: axum::http::Uri) -> axum::http::Request<()> {
        let mut r = axum::http::Request::new(());
        *r.method_mut() = method;
        *r.uri_mut() = uri;
        r
    }

    fn path_only(p: &str) -> axum::http::Uri {
        let mut parts = axum::http::uri::Parts::default();
        parts.path_and_query = Some(p.parse().unwrap());
        axum::http::Uri::from_parts(parts).unwrap()
    }

    #[test]
    fn only_a_path_target_is_accepted() {
        for (m, t) in [
            (Method::GET, "/"),
            (Method::GET, "//a/b?c=d"),
            (Method::POST, "http://app.example.com/x?y"),
            (Method::OPTIONS, "*"),
        ] {
            assert!(refusal(&req(m, t.parse().unwrap()), false).is_none(), "{t}");
        }
        let refused = [
            (Method::GET, path_only("?x=1")),
            (Method::GET, path_only("*")),
            (Method::DELETE, path_only("*")),
            (Method::GET, "http://app.example.com?x".parse().unwrap()),
            (Method::CONNECT, "other.example:443".parse().unwrap()),
        ];
        for (m, uri) in refused {
            let r = refusal(&req(m.clone(), uri.clone()), false);
            assert_eq!(r.map(|r| r.status().as_u16()), Some(400), "{m} {uri}");
        }
    }
}
