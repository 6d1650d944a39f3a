//! Why an exchange with the upstream failed, told apart for the page: no connection at all
//! (refused, unreachable, or none within the connect timeout), a connection closed or
//! broken off before an answer, or an answer that is not HTTP/1.1 gatehouse can pass on
//! (and which part of it). A timeout waiting for the answer is `AppError::UpstreamTimeout`.
//!
//! Trusts nothing: the text comes from gatehouse's own parsers and the OS, never from
//! the upstream's bytes (a parser's message names the rule broken, not the input).

use super::pool::SendError;
use super::response::{H1Error, MAX_HEAD};

/// What went wrong with the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be opened.
    Unreachable(String),
    /// The TLS handshake failed (an https upstream): why, in words.
    Tls(String),
    /// The connection closed before any answer.
    Closed,
    /// The connection broke off (reset, or another I/O error) before an answer.
    Broken(String),
    /// The answer is not valid HTTP/1.1: what was wrong with it.
    Malformed(String),
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFailure::Unreachable(why) => {
                write!(f, "is not accepting connections: {why}")
            }
            UpstreamFailure::Tls(why) => write!(f, "could not be reached over TLS: {why}"),
            UpstreamFailure::Closed => {
                write!(f, "accepted the connection but closed it without answering")
            }
            UpstreamFailure::Broken(why) => {
                write!(f, "broke off the connection before answering: {why}")
            }
            UpstreamFailure::Malformed(what) => write!(
                f,
                "answered, but not with HTTP/1.1 that gatehouse can pass on: {what}"
            ),
        }
    }
}

impl UpstreamFailure {
    /// Classifies a failed send.
    pub fn of(e: &SendError) -> UpstreamFailure {
        match e {
            SendError::Connect(why) => UpstreamFailure::Unreachable(why.clone()),
            SendError::Tls(why) => UpstreamFailure::Tls(why.clone()),
            SendError::Exchange(e) => UpstreamFailure::of_h1(e),
            SendError::Send(e) => UpstreamFailure::of_hyper(e),
        }
    }

    fn of_h1(e: &H1Error) -> UpstreamFailure {
        match e {
            H1Error::ClosedBeforeHead => UpstreamFailure::Closed,
            H1Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                UpstreamFailure::Closed
            }
            H1Error::Io(io) => UpstreamFailure::Broken(io.to_string()),
            H1Error::Truncated => {
                UpstreamFailure::Malformed("the response ended before its body did".into())
            }
            H1Error::BadHead(what) if what == "Content-Length" => UpstreamFailure::Malformed(
                "bad framing: an invalid or conflicting Content-Length".into(),
            ),
            H1Error::BadHead(what) => {
                UpstreamFailure::Malformed(format!("a bad response head ({what})"))
            }
            H1Error::HeadTooLarge => UpstreamFailure::Malformed(format!(
                "a response head too large (over {MAX_HEAD} bytes)"
            )),
            H1Error::Chunk(c) => {
                UpstreamFailure::Malformed(format!("bad framing: an invalid chunked body ({c})"))
            }
        }
    }

    fn of_hyper(e: &hyper::Error) -> UpstreamFailure {
        if e.is_incomplete_message() {
            UpstreamFailure::Closed
        } else if e.is_parse_too_large() {
            UpstreamFailure::Malformed("a response head too large".into())
        } else if e.is_parse() || e.is_parse_status() {
            let why = chain(e);
            let framing = ["content-length", "transfer-encoding"]
                .iter()
                .any(|h| why.to_ascii_lowercase().contains(h));
            UpstreamFailure::Malformed(if framing {
                format!("bad framing: {why}")
            } else {
                format!("a bad response head ({why})")
            })
        } else {
            UpstreamFailure::Broken(chain(e))
        }
    }

    /// A stable code for JSON clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamFailure::Unreachable(_) => "upstream_unavailable",
            UpstreamFailure::Tls(_) => "upstream_tls_failed",
            UpstreamFailure::Closed | UpstreamFailure::Broken(_) => "upstream_closed",
            UpstreamFailure::Malformed(_) => "upstream_bad_response",
        }
    }
}

/// An error and its sources, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_says_which_kind_it_is() {
        let refused = UpstreamFailure::of(&SendError::Connect("Connection refused".into()));
        assert!(refused.to_string().contains("not accepting connections"));
        let closed = UpstreamFailure::of(&SendError::Exchange(H1Error::ClosedBeforeHead));
        assert!(closed.to_string().contains("closed it without answering"));
        let big = UpstreamFailure::of(&SendError::Exchange(H1Error::HeadTooLarge));
        assert!(big.to_string().contains("too large"), "{big}");
        let framing = UpstreamFailure::of(&SendError::Exchange(H1Error::BadHead(
            "Content-Length".into(),
        )));
        assert!(framing.to_string().contains("bad framing"), "{framing}");
        for f in [&closed, &big, &framing] {
            assert!(!f.to_string().contains("not accepting"), "{f}");
        }
        assert_eq!(big.code(), "upstream_bad_response");
        assert_eq!(closed.code(), "upstream_closed");
    }
}
