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
    pairs: Vec<(&'a str, &'a str)>,
}

/// Most cookie pairs looked at in one request.
const MAX_PAIRS: usize = 256;

impl<'a> RequestCookies<'a> {
    /// Parses every `Cookie` header value given.
    pub fn parse<I: IntoIterator<Item = &'a str>>(headers: I) -> RequestCookies<'a> {
        let mut pairs = Vec::new();
        for header in headers {
            for part in header.split(';') {
                if pairs.len() >= MAX_PAIRS {
                    break;
                }
                if let Some((n, v)) = part.trim().split_once('=') {
                    pairs.push((n.trim(), v.trim().trim_matches('"')));
                }
            }
        }
        RequestCookies { pairs }
    }

    /// The first value of a cookie name.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Every cookie name present, for clearing.
    pub fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.pairs.iter().map(|(n, _)| *n)
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
