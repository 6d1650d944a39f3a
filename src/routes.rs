//! `skip_auth_routes`: the routes that need no login (health checks, static assets).
//!
//! The classic bypass is a path that gatehouse and the upstream read differently:
//! `/public/..%2fadmin`, `/public%2f../admin`, `/public;x/../admin`, `//public`,
//! `/public/%2e%2e/admin`, or a rule matched against the query (`/admin?x=/public`) or
//! against a client's own `X-Forwarded-Uri`. So a rule is matched only against a path in
//! canonical form: percent-escapes of unreserved characters (RFC 3986 §2.3) are decoded,
//! and any other escape (`%2F`, `%23`, `%5C`, `%3B`, `%25`...), a backslash, `;`, an empty
//! segment, a dot segment (raw or encoded), or any control or non-ASCII byte makes the path
//! "not canonical", and a non-canonical path never matches: it must authenticate. Case is
//! compared exactly; a rule never widens by folding case.
//!
//! Patterns: `[METHOD=]PATH`. `*` matches within one segment; a trailing `/**` matches the
//! segment's whole subtree (`/static/**` matches `/static/a/b.js`, not `/static`).
//! `GET` also allows `HEAD`.
//!
//! Cost. This runs before authentication, on a path of up to `max_header_bytes` that
//! anyone may send, so its time must not depend on how the path plays against the `*`s.
//! Each pattern segment is compiled once into its literal pieces; a segment matches when it
//! starts with the first piece, ends with the last, and holds the others in order, each
//! found at its leftmost place (never backtracking: an earlier place never loses). Pieces
//! are found with `memchr::memmem`, linear in the text searched plus the piece. So one rule
//! costs O(|path| + |rule|) whatever its stars, a request O(|path| × rules + Σ|rule|), and
//! `canonical_path` is one pass over the path; no allocation grows with the number of
//! segments (only the canonical copy of the path itself).

use axum::http::Method;
use memchr::memmem;

/// One route that needs no login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRoute {
    method: Option<Method>,
    segments: Vec<SegmentPattern>,
    subtree: bool,
    shown: String,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed raw in a canonical path besides unreserved ones and `/`.
fn plain_extra(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

/// The canonical form of a request path (no query), or `None` when it is ambiguous.
pub fn canonical_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let decoded = u8::from_str_radix(hex, 16).ok()?;
            if !unreserved(decoded) {
                return None;
            }
            out.push(char::from(decoded));
            i += 3;
            continue;
        }
        if !(unreserved(b) || b == b'/' || plain_extra(b)) {
            return None;
        }
        out.push(char::from(b));
        i += 1;
    }
    // Segments after the leading `/`: no empty ones (except a final trailing slash), no
    // dot segments. The decoded form is checked, so `%2e%2e` counts as `..`.
    let mut segs = out.get(1..).unwrap_or("").split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        if (seg.is_empty() && !last) || seg == "." || seg == ".." {
            return None;
        }
    }
    Some(out)
}

/// One segment of a pattern, compiled: plain text, or the literal pieces around its `*`s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SegmentPattern {
    Exact(String),
    /// `head*middle[0]*...*tail`: the segment starts with `head`, ends with `tail`, and
    /// holds each `middle` piece in order between them, without overlaps.
    Stars {
        head: String,
        middle: Vec<String>,
        tail: String,
    },
}

impl SegmentPattern {
    fn compile(segment: &str) -> SegmentPattern {
        let Some((head, rest)) = segment.split_once('*') else {
            return SegmentPattern::Exact(segment.to_string());
        };
        let (middle, tail) = match rest.rsplit_once('*') {
            Some((middle, tail)) => (middle.split('*').map(str::to_string).collect(), tail),
            None => (Vec::new(), rest),
        };
        SegmentPattern::Stars {
            head: head.to_string(),
            middle,
            tail: tail.to_string(),
        }
    }

    /// Whether one path segment matches: O(|text| + |pattern|), see the module header.
    fn matches(&self, text: &str) -> bool {
        match self {
            SegmentPattern::Exact(s) => s == text,
            SegmentPattern::Stars { head, middle, tail } => {
                // Head and tail are fixed; stripping both first keeps them from overlapping.
                let Some(inner) = text
                    .strip_prefix(head.as_str())
                    .and_then(|t| t.strip_suffix(tail.as_str()))
                else {
                    return false;
                };
                // Each piece at its leftmost place: what is left for the next piece is then
                // as long as it can be, so no other choice could succeed where this fails.
                let mut rest = inner.as_bytes();
                for piece in middle {
                    let Some(at) = memmem::find(rest, piece.as_bytes()) else {
                        return false;
                    };
                    rest = rest.get(at + piece.len()..).unwrap_or_default();
                }
                true
            }
        }
    }
}

impl SkipRoute {
    /// Parses `[METHOD=]PATH`.
    pub fn parse(spec: &str) -> Result<SkipRoute, String> {
        let spec = spec.trim();
        let (method, path) = match spec.split_once('=') {
            Some((m, p)) if !m.starts_with('/') => {
                let m = m.trim().to_ascii_uppercase();
                let method = if m == "*" {
                    None
                } else {
                    Some(
                        Method::from_bytes(m.as_bytes())
                            .map_err(|_| format!("`{m}` is not an HTTP method"))?,
                    )
                };
                (method, p.trim())
            }
            _ => (None, spec),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "`{spec}`: the path must start with / (write [METHOD=]/path)"
            ));
        }
        if path.contains(['?', '#']) {
            return Err(format!(
                "`{spec}`: rules match the path only, never a query or fragment"
            ));
        }
        let (body, subtree) = match path.strip_suffix("/**") {
            Some(b) => (b, true),
            None => (path, false),
        };
        // The pattern itself must be canonical (with `*` allowed), or it could never match.
        if body.contains("**") || canonical_path(if body.is_empty() { "/" } else { body }).is_none()
        {
            return Err(format!(
                "`{spec}`: not a plain path (no //, dot segments, %-escapes, ; or \\; `**` only as a final /**)"
            ));
        }
        let segments = if body.is_empty() {
            Vec::new()
        } else {
            body[1..].split('/').map(SegmentPattern::compile).collect()
        };
        Ok(SkipRoute {
            method,
            segments,
            subtree,
            shown: spec.to_string(),
        })
    }

    fn method_matches(&self, m: &Method) -> bool {
        match &self.method {
            None => true,
            Some(want) => want == m || (*want == Method::GET && *m == Method::HEAD),
        }
    }

    /// Matches a path already in canonical form, walking its segments once (no list).
    fn path_matches(&self, canonical: &str) -> bool {
        let mut segs = canonical.get(1..).unwrap_or("").split('/');
        for pattern in &self.segments {
            match segs.next() {
                Some(seg) if pattern.matches(seg) => {}
                _ => return false,
            }
        }
        // A subtree rule needs at least one segment below its own; a plain rule none.
        segs.next().is_some() == self.subtree
    }
}

impl std::fmt::Display for SkipRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The rule that lets `method raw_path` through without login, if any. `raw_path` is the
/// request target's path (a query is cut off here, never matched).
pub fn skip_rule<'a>(
    routes: &'a [SkipRoute],
    method: &Method,
    raw_path: &str,
) -> Option<&'a SkipRoute> {
    if routes.is_empty() {
        return None;
    }
    let path = raw_path.split('?').next().unwrap_or("");
    let canonical = canonical_path(path)?;
    routes
        .iter()
        .find(|r| r.method_matches(method) && r.path_matches(&canonical))
}

#[cfg(test)]
mod matching_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(specs: &[&str]) -> Vec<SkipRoute> {
        specs.iter().map(|s| SkipRoute::parse(s).unwrap()).collect()
    }

    fn skips(r: &[SkipRoute], m: &str, p: &str) -> bool {
        skip_rule(r, &Method::from_bytes(m.as_bytes()).unwrap(), p).is_some()
    }

    #[test]
    fn ordinary_rules_match() {
        let r = routes(&[
            "GET=/healthz",
            "/static/**",
            "GET=/assets/*.js",
            "POST=/hook",
        ]);
        assert!(skips(&r, "GET", "/healthz"));
        assert!(skips(&r, "HEAD", "/healthz"));
        assert!(!skips(&r, "POST", "/healthz"));
        assert!(skips(&r, "GET", "/static/a/b.css"));
        assert!(skips(&r, "DELETE", "/static/x"));
        assert!(!skips(&r, "GET", "/static"));
        assert!(skips(&r, "GET", "/assets/app.js"));
        assert!(!skips(&r, "GET", "/assets/sub/app.js"));
        assert!(!skips(&r, "GET", "/assets/app.json"));
        assert!(skips(&r, "POST", "/hook"));
        assert!(!skips(&r, "GET", "/hook"));
        // Unreserved escapes are just another spelling of the same path.
        assert!(skips(&r, "GET", "/%68ealthz"));
        // The query is never matched, and never hides the path.
        assert!(skips(&r, "GET", "/healthz?x=1"));
        assert!(!skips(&r, "GET", "/admin?/healthz"));
        assert!(!skips(&r, "GET", "/admin?x=/static/a"));
    }

    #[test]
    fn ambiguous_paths_never_skip_authentication() {
        let r = routes(&["/public/**", "/healthz"]);
        for bad in [
            "/public/..%2fadmin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/../admin",
            "/public/./x",
            "/public%2fx",
            "/public%2Fx",
            "/public/x%23",
            "/public/x#frag",
            "/public;x/y",
            "/public/x;jsessionid=1",
            "//public/x",
            "/public//x",
            "/public\\x",
            "/public/%5cx",
            "/public/%00",
            "/public/%252e%252e/admin",
            "/public/\u{e9}",
            "/healthz%3F",
            "/PUBLIC/x",
            "/Healthz",
            "public/x",
            "",
        ] {
            assert!(!skips(&r, "GET", bad), "skipped auth for {bad:?}");
        }
        assert!(skips(&r, "GET", "/public/a-b_c~d.e"));
    }

    #[test]
    fn bad_patterns_are_refused_at_start_up() {
        for bad in [
            "healthz",
            "GET=healthz",
            "/a/../b",
            "//x",
            "/x?y",
            "/x#y",
            "/a/**/b",
            "/%2f",
            "NOT A METHOD=/x",
        ] {
            assert!(SkipRoute::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(SkipRoute::parse("*=/x").is_ok());
        assert!(SkipRoute::parse("/**").is_ok());
    }

    #[test]
    fn root_subtree_matches_everything_canonical() {
        let r = routes(&["/**"]);
        assert!(skips(&r, "GET", "/"));
        assert!(skips(&r, "GET", "/a/b"));
        assert!(!skips(&r, "GET", "/a/../b"));
    }
}
