//! Cookie header parsing (`RequestCookies::parse`) and chunked session cookies
//! (`chunks::split` / `chunks::join` / `chunks::is_session_cookie`).
//!
//! Input: a few knob bytes, then text whose lines are `Cookie` header values.
//!
//! Asserts:
//! - parsing never panics, keeps at most 256 pairs, and every pair is a clean
//!   `name=value` (no `;` in either, no `=` or outer whitespace in the name);
//! - `join` reads only cookies that `is_session_cookie` accepts: dropping every other
//!   cookie from the headers leaves the joined value unchanged;
//! - `is_session_cookie(name, c)` holds exactly for `name` and `name_0`..`name_7`;
//! - a value of cookie-safe characters split with `split`, sent back among unrelated
//!   cookies (in one or two `Cookie` headers), joins to the same value; `split` refuses
//!   exactly the values that need more than `MAX_CHUNKS` chunks, and no chunk is longer
//!   than `CHUNK_LEN`.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::session::chunks::{self, RequestCookies, CHUNK_LEN, MAX_CHUNKS};
use libfuzzer_sys::fuzz_target;

/// Most pairs `RequestCookies::parse` keeps (private there: `MAX_PAIRS`).
const MAX_PAIRS: usize = 256;

/// Cookie names as configured (`[A-Za-z0-9_-]+`) and as gatehouse prefixes them.
const NAMES: &[&str] = &[
    "_gatehouse",
    "__Host-_gatehouse",
    "__Secure-_gatehouse",
    "s",
    "s_0",
    "a-b",
];

/// RFC 6265 cookie-octet: what a cookie value may hold unquoted.
fn cookie_octets() -> Vec<u8> {
    (0x21u8..=0x7e)
        .filter(|b| !matches!(b, b'"' | b',' | b';' | b'\\'))
        .collect()
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which cookie name: `NAMES`, or (high bit) one of the parsed names.
    name: u8,
    /// Length of the round-trip value.
    value_len: u16,
    /// Mixes the round-trip value's characters.
    value_seed: u8,
    /// Where the round-trip header is cut in two `Cookie` headers.
    cut: u8,
    /// `Cookie` header values, one per line.
    text: String,
}

fn is_chunk_name_oracle(name: &str, candidate: &str) -> bool {
    candidate == name || (0..MAX_CHUNKS).any(|i| candidate == format!("{name}_{i}"))
}

fn check_pairs(c: &RequestCookies<'_>) -> usize {
    let mut n = 0;
    for name in c.names() {
        n += 1;
        assert!(!name.contains(';') && !name.contains('='), "{name:?}");
        assert_eq!(name.trim(), name, "name kept outer whitespace");
        let v = c.get(name).expect("a listed name has a value");
        assert!(!v.contains(';'), "{v:?}");
    }
    assert!(n <= MAX_PAIRS, "{n} pairs kept");
    n
}

fuzz_target!(|input: Input| {
    let headers: Vec<&str> = input.text.split('\n').collect();
    let cookies = RequestCookies::parse(headers.iter().copied());
    let pairs = check_pairs(&cookies);

    let parsed_names: Vec<&str> = cookies.names().filter(|n| !n.is_empty()).collect();
    let name: &str = if input.name & 0x80 != 0 && !parsed_names.is_empty() {
        parsed_names[usize::from(input.name & 0x7f) % parsed_names.len()]
    } else {
        NAMES[usize::from(input.name) % NAMES.len()]
    };

    // is_session_cookie is exactly name and name_0..name_{MAX_CHUNKS-1}.
    for candidate in cookies.names().chain(NAMES.iter().copied()).chain([
        format!("{name}_{MAX_CHUNKS}").as_str(),
        format!("{name}_00").as_str(),
        format!("{name}_+1").as_str(),
    ]) {
        assert_eq!(
            chunks::is_session_cookie(name, candidate),
            is_chunk_name_oracle(name, candidate),
            "is_session_cookie({name:?}, {candidate:?})"
        );
    }

    // join reads only session cookies: drop every other cookie and nothing changes.
    let joined = chunks::join(&cookies, name);
    if let Some(v) = &joined {
        assert!(v.len() <= input.text.len());
    }
    if pairs < MAX_PAIRS {
        let filtered: Vec<String> = headers
            .iter()
            .map(|h| {
                h.split(';')
                    .filter(|part| {
                        part.trim()
                            .split_once('=')
                            .is_some_and(|(n, _)| chunks::is_session_cookie(name, n.trim()))
                    })
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .collect();
        let only_ours = RequestCookies::parse(filtered.iter().map(String::as_str));
        assert_eq!(
            chunks::join(&only_ours, name),
            joined,
            "join read a cookie that is_session_cookie does not name"
        );
    }

    // Round trip: split, send back among unrelated cookies, join.
    let alphabet = cookie_octets();
    let len = usize::from(input.value_len) % (CHUNK_LEN * MAX_CHUNKS + 2 * CHUNK_LEN);
    let mix = input.text.as_bytes();
    let value: String = (0..len)
        .map(|i| {
            let m = if mix.is_empty() {
                0
            } else {
                usize::from(mix[i % mix.len()])
            };
            char::from(alphabet[(i * 31 + usize::from(input.value_seed) + m) % alphabet.len()])
        })
        .collect();
    let parts = chunks::split(name, &value);
    let needed = if len <= CHUNK_LEN {
        1
    } else {
        len.div_ceil(CHUNK_LEN)
    };
    assert_eq!(
        parts.is_some(),
        needed <= MAX_CHUNKS,
        "split of {len} bytes"
    );
    let Some(parts) = parts else { return };
    assert_eq!(parts.len(), needed);
    assert_eq!(
        parts.iter().map(|(_, v)| v.as_str()).collect::<String>(),
        value
    );
    for (n, v) in &parts {
        assert!(v.len() <= CHUNK_LEN);
        assert!(chunks::is_session_cookie(name, n), "{n:?}");
    }
    // Unrelated cookies from the input (at most 200, so the pair limit never cuts ours).
    let mut all: Vec<String> = Vec::new();
    for n in cookies.names().take(200) {
        if !chunks::is_session_cookie(name, n) && !n.is_empty() {
            all.push(format!("{n}={}", cookies.get(n).unwrap_or_default()));
        }
    }
    let foreign = all.len();
    all.extend(parts.iter().map(|(n, v)| format!("{n}={v}")));
    // Interleave: ours after the first half of the foreign ones, in two headers.
    all.rotate_left(foreign / 2);
    let cut = usize::from(input.cut) % (all.len() + 1);
    let (a, b) = all.split_at(cut);
    let first = a.join("; ");
    let second = b.join("; ");
    let back = RequestCookies::parse([first.as_str(), second.as_str()]);
    assert_eq!(
        chunks::join(&back, name).as_deref(),
        Some(value.as_str()),
        "split then join changed the value (name {name:?}, {len} bytes)"
    );
});
