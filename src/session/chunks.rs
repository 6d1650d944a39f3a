//! Cookie chunking: a sealed session longer than one cookie can hold is split into
//! `<name>_0`, `<name>_1`, ... each under the browser's 4 KB limit, and joined again.
//!
//! Reading is bounded: at most [`MAX_CHUNKS`] names are looked up, whatever the client
//! sends (`<name>_99999999` is never even considered), so no allocation is sized by input.

/// Largest value put in one cookie; name and attributes fit in the remaining ~300 bytes.
pub const CHUNK_LEN: usize = 3800;
/// Most chunks written or read.
pub const MAX_CHUNKS: usize = 8;

/// The cookies of a request, parsed once. Only `name=value` pairs; later duplicates of a
/// name are ignored (the first wins, as browsers send the most specific first).
#[derive(Debug, Default)]
pub struct RequestCookies<'a> {
    /// `(name, value, the whole trimmed part)`.
    pairs: Vec<(&'a str, &'a str, &'a str)>,
    /// Every part was a pair, and none was left out: `pairs` can rebuild the header.
    exact: bool,
}

/// Most cookie pairs looked at in one request.
const MAX_PAIRS: usize = 256;

/// What forwarding the request's `Cookie` header without gatehouse's own cookies takes.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieRewrite {
    /// None of ours is there: forward the header as it is.
    Keep,
    /// Only ours: drop the header.
    Drop,
    /// Send this instead.
    Replace(String),
    /// The header has parts that are not pairs, or too many: read it again in full.
    Reread,
}

impl<'a> RequestCookies<'a> {
    /// Parses every `Cookie` header value given.
    pub fn parse<I: IntoIterator<Item = &'a str>>(headers: I) -> RequestCookies<'a> {
        RequestCookies::parse_bytes(headers.into_iter().map(str::as_bytes))
    }

    /// Parses `Cookie` header values as they came (bytes). A part that is not UTF-8 (a
    /// Latin-1 value, say) is left out, and it makes the parse inexact, so the forwarded
    /// header is read again in full (`without`) rather than passed on whole.
    pub fn parse_bytes<I: IntoIterator<Item = &'a [u8]>>(headers: I) -> RequestCookies<'a> {
        let mut pairs = Vec::new();
        let mut exact = true;
        for header in headers {
            // memchr's vector search: a session cookie makes this header kilobytes long.
            let mut start = 0;
            let ends = memchr::memchr_iter(b';', header).chain([header.len()]);
            for end in ends {
                let raw = &header[start..end];
                start = end + 1;
                if pairs.len() >= MAX_PAIRS {
                    exact = false;
                    break;
                }
                let Ok(part) = std::str::from_utf8(raw) else {
                    exact = false;
                    continue;
                };
                let part = part.trim();
                match part.split_once('=') {
                    Some((n, v)) => pairs.push((n.trim(), v.trim().trim_matches('"'), part)),
                    None => exact &= part.is_empty(),
                }
            }
        }
        RequestCookies { pairs, exact }
    }

    /// The `Cookie` header to forward without the cookies `owns` claims.
    pub fn without(&self, owns: impl Fn(&str) -> bool) -> CookieRewrite {
        if !self.pairs.iter().any(|(n, _, _)| owns(n)) {
            return if self.exact {
                CookieRewrite::Keep
            } else {
                CookieRewrite::Reread
            };
        }
        if !self.exact {
            return CookieRewrite::Reread;
        }
        let mut kept = String::new();
        for (_, _, part) in self.pairs.iter().filter(|(n, _, _)| !owns(n)) {
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(part);
        }
        if kept.is_empty() {
            CookieRewrite::Drop
        } else {
            CookieRewrite::Replace(kept)
        }
    }

    /// The first value of a cookie name.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, _)| *v)
    }

    /// Every cookie name present, for clearing.
    pub fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.pairs.iter().map(|(n, _, _)| *n)
    }
}

/// Name of chunk `i` of cookie `name`.
pub fn chunk_name(name: &str, i: usize) -> String {
    format!("{name}_{i}")
}

/// Splits a value into `(cookie name, value)` pairs. `None` when it needs more than
/// [`MAX_CHUNKS`] cookies.
pub fn split(name: &str, value: &str) -> Option<Vec<(String, String)>> {
    if value.len() <= CHUNK_LEN {
        return Some(vec![(name.to_string(), value.to_string())]);
    }
    // Values are base64url (ASCII), so byte slicing never splits a character.
    let parts: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK_LEN)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    if parts.len() > MAX_CHUNKS {
        return None;
    }
    Some(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (chunk_name(name, i), p.to_string()))
            .collect(),
    )
}

/// Joins a value from the request: the plain cookie if present, else chunks from `_0`
/// until the first missing one, never more than [`MAX_CHUNKS`].
pub fn join<'a>(cookies: &RequestCookies<'a>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(v) = cookies.get(name) {
        return Some(std::borrow::Cow::Borrowed(v));
    }
    let mut out = String::new();
    for i in 0..MAX_CHUNKS {
        match cookies.get(&chunk_name(name, i)) {
            Some(v) => out.push_str(v),
            None => break,
        }
    }
    (!out.is_empty()).then_some(std::borrow::Cow::Owned(out))
}

/// True for `name` itself and `name_0` .. `name_{MAX_CHUNKS-1}`: exactly the cookies
/// `join` may read, so clearing them answers with a bounded number of `Set-Cookie`s.
pub fn is_session_cookie(name: &str, candidate: &str) -> bool {
    candidate == name
        || (0..MAX_CHUNKS).any(|i| {
            candidate
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('_'))
                == Some(i.to_string().as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_of(parts: &[(String, String)]) -> String {
        parts
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn small_values_use_one_cookie_big_ones_chunk_under_4k() {
        assert_eq!(
            split("s", "abc").unwrap(),
            vec![("s".to_string(), "abc".to_string())]
        );
        let big = "x".repeat(CHUNK_LEN * 2 + 10);
        let parts = split("s", &big).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|(n, v)| n.len() + v.len() < 4000));
        assert!(split("s", &"x".repeat(CHUNK_LEN * MAX_CHUNKS + 1)).is_none());
    }

    #[test]
    fn huge_chunk_indexes_from_the_client_are_never_read() {
        let h = "s_0=aa; s_99999999=bb; s_1=cc";
        let c = RequestCookies::parse([h]);
        assert_eq!(join(&c, "s").unwrap(), "aacc");
        let gap = RequestCookies::parse(["s_0=aa; s_2=zz"]);
        assert_eq!(
            join(&gap, "s").unwrap(),
            "aa",
            "stops at the first missing chunk"
        );
    }

    /// What the upstream gets: the one-parse rewrite equals reading the header again.
    fn both_ways(header: impl AsRef<[u8]>) -> (Option<String>, Option<String>) {
        use axum::http::{header::COOKIE, HeaderMap, HeaderValue};
        let header = header.as_ref();
        let owns = |n: &str| n == "_gh" || n.starts_with("_gh_");
        let mut fast = HeaderMap::new();
        let mut full = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(header) {
            fast.insert(COOKIE, v.clone());
            full.insert(COOKIE, v);
        }
        let rewrite = RequestCookies::parse_bytes([header]).without(owns);
        crate::headers::rewrite_cookies(&mut fast, rewrite, owns);
        crate::headers::remove_own_cookies(&mut full, owns);
        let text = |h: &HeaderMap| {
            h.get(COOKIE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        (text(&fast), text(&full))
    }

    /// A cookie that is not UTF-8 (Latin-1) neither hides gatehouse's cookie from the
    /// removal (it would go upstream) nor makes the session unreadable.
    #[test]
    fn a_cookie_that_is_not_utf8_changes_nothing_else() {
        let header = b"a=caf\xe9; _gh=s; b=2";
        let c = RequestCookies::parse_bytes([&header[..]]);
        assert_eq!(c.get("_gh"), Some("s"));
        let (fast, full) = both_ways(header);
        assert_eq!(fast.as_deref(), Some("a=caf\u{fffd}; b=2"));
        assert_eq!(fast, full);
    }

    #[test]
    fn the_forwarded_cookie_header_keeps_every_cookie_but_ours() {
        for (header, want) in [
            ("_gh=s", None),
            ("a=1; _gh=s; b=\"2\"", Some("a=1; b=\"2\"")),
            ("a=1;b=2", Some("a=1;b=2")),
            ("_gh_0=x; _gh_1=y", None),
            ("flag; _gh=s; a=1", Some("flag; a=1")),
            (" ; a=1 ;; _gh=s ", Some("a=1")),
        ] {
            let (fast, full) = both_ways(header);
            assert_eq!(fast.as_deref(), want, "{header}");
            assert_eq!(fast, full, "{header}");
        }
        let many: String = (0..300).map(|i| format!("c{i}=v; ")).collect::<String>() + "_gh=s";
        let (fast, full) = both_ways(&many);
        assert_eq!(fast, full);
        assert_eq!(fast.map(|c| c.matches('=').count()), Some(300));
    }

    proptest! {
        #[test]
        fn rewriting_cookies_matches_a_full_reread(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z]{1,3}=[a-z0-9\"~]{0,4}",
                    "_gh(_[0-9])?=[a-z]{1,4}",
                    "[a-z]{1,3}",
                    " *",
                ],
                0..8,
            ),
            sep in prop_oneof![Just(";"), Just("; "), Just(" ;")],
        ) {
            let header = parts.join(sep).replace('~', "\u{e9}").into_bytes();
            // `~` stands for a byte that is not UTF-8 on its own.
            let header: Vec<u8> = header
                .into_iter()
                .flat_map(|b| if b == 0xc3 { None } else { Some(b) })
                .collect();
            let (fast, full) = both_ways(&header);
            prop_assert_eq!(fast, full, "{:?}", String::from_utf8_lossy(&header));
        }
    }

    #[test]
    fn cookie_count_is_bounded() {
        let many: String = (0..10_000).map(|i| format!("c{i}=v; ")).collect();
        let c = RequestCookies::parse([many.as_str()]);
        assert!(c.names().count() <= MAX_PAIRS);
    }

    #[test]
    fn session_cookie_names() {
        assert!(is_session_cookie("_g", "_g"));
        assert!(is_session_cookie("_g", "_g_3"));
        assert!(!is_session_cookie("_g", "_g_login_ab"));
        assert!(!is_session_cookie("_g", "_gx"));
        assert!(
            !is_session_cookie("_g", "_g_99999999"),
            "never more than MAX_CHUNKS names"
        );
    }

    proptest! {
        #[test]
        fn chunk_then_join_is_identity(v in "[A-Za-z0-9_-]{1,30000}") {
            let parts = split("s", &v).unwrap();
            let header = header_of(&parts);
            let c = RequestCookies::parse([header.as_str()]);
            prop_assert_eq!(join(&c, "s").unwrap(), v);
        }
    }
}
