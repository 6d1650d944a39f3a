//! Post-login targets (`redirect::validate_return_to`, `redirect::validate_target`).
//!
//! Input: a byte choosing the request's own host, a byte choosing the
//! `allowed_redirect_domains` entries, then the target text (`rd`).
//!
//! What `redirect.rs` promises: a target is accepted only as a plain same-site path, or
//! as an absolute http(s) URL on an allowed host; anything odd (backslashes, whitespace or
//! control characters, raw or percent-encoded, `//` at the start, dot segments, other
//! schemes) is refused. Asserts, for every accepted target:
//! - a path target starts with one `/` (never `//`, `/\`), holds no backslash, whitespace
//!   or control character, and a browser (WHATWG URL parsing, the `url` crate) resolves it
//!   to the same origin;
//! - its path, percent-decoded up to three times (as `redirect.rs` decodes), still has no
//!   such character, no `//` at the start and no `.`/`..` segment (before any `?`/`#`
//!   the decoding produced, as `redirect.rs` reads it);
//! - a path target passes `validate_return_to` again unchanged (the absolute form on our
//!   own host is reduced to a path that is itself acceptable);
//! - an absolute target is http(s), without user info or fragment, on a host and port an
//!   `allowed_redirect_domains` entry covers (checked by an independent matcher), with
//!   the same path rules;
//! - `validate_target` gives the same answer as `validate_return_to` when the latter
//!   accepts, and when no other host is allowed.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::redirect::{validate_return_to, validate_target};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use url::Url;

/// The request's own host (where the callback lands), as `safe_target` derives it.
const OWN: &[&str] = &[
    "app.example.com",
    "auth.example.com",
    "App.Example.COM",
    "localhost",
    "127.0.0.1",
    "",
];

/// `allowed_redirect_domains` settings that pass configuration checks.
const OTHERS: &[&[&str]] = &[
    &[],
    &[".example.com"],
    &["admin.example.org:8443", ".example.com"],
    &["example.net"],
    &["localhost:8080", "other.test"],
];

/// Where the browser is when it follows the redirect.
const BASE: &str = "https://gatehouse.invalid/oauth2/callback?code=x";

#[derive(Arbitrary, Debug)]
struct Input {
    own: u8,
    others: u8,
    raw: String,
}

fn forbidden(c: char) -> bool {
    c.is_control() || c.is_whitespace() || c == '\\'
}

/// The path rules, on the raw path and on up to three rounds of percent-decoding.
fn check_path(path: &str, what: &str) {
    let mut cur = path.to_string();
    for round in 0..=3 {
        assert!(
            !cur.chars().any(forbidden),
            "{what}: path {path:?} holds a forbidden character after {round} decoding(s): {cur:?}"
        );
        if round == 0 {
            // Only the raw form decides where a browser goes: one leading slash.
            assert!(
                cur.starts_with('/') && !cur.starts_with("//"),
                "{what}: path {path:?}"
            );
        }
        assert!(
            !cur.starts_with("//"),
            "{what}: path {path:?} starts with // after {round} decoding(s): {cur:?}"
        );
        // Like `redirect.rs`, a `?` or `#` that decoding produced ends the part checked
        // for dot segments.
        let segments = cur.split(['?', '#']).next().unwrap_or("");
        assert!(
            !segments.split('/').any(|s| s == "." || s == ".."),
            "{what}: path {path:?} has a dot segment after {round} decoding(s): {cur:?}"
        );
        let next = percent_decode_str(&cur).decode_utf8_lossy().into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
}

fn path_part(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or("")
}

/// A same-site path target.
fn check_relative(t: &str, own: &str, what: &str) {
    assert!(
        t.starts_with('/') && !t.starts_with("//") && !t.starts_with("/\\"),
        "{what}: {t:?}"
    );
    assert!(!t.chars().any(forbidden), "{what}: {t:?}");
    let base = Url::parse(BASE).expect("base URL");
    let resolved = base
        .join(t)
        .unwrap_or_else(|e| panic!("{what}: {t:?} does not resolve: {e}"));
    assert_eq!(
        (
            resolved.scheme(),
            resolved.host_str(),
            resolved.port(),
            resolved.username(),
            resolved.password()
        ),
        ("https", Some("gatehouse.invalid"), None, "", None),
        "{what}: {t:?} leaves the site (resolves to {resolved})"
    );
    check_path(path_part(t), what);
    assert_eq!(
        validate_return_to(t, &[own]).as_deref(),
        Some(t),
        "{what}: accepted target {t:?} is refused when given again"
    );
}

/// Independent reading of `allowed_redirect_domains`: `host`, `.domain` (the domain and
/// whole labels below it), each optionally `:port` (no port: only the default port).
fn covered(host: &str, port: Option<u16>, entries: &[&str]) -> bool {
    entries.iter().any(|e| {
        let (name, want) = match e.rsplit_once(':') {
            Some((n, p)) => (n, p.parse::<u16>().ok()),
            None => (*e, None),
        };
        if want != port {
            return false;
        }
        let name = name.to_ascii_lowercase();
        match name.strip_prefix('.') {
            Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
            None => host == name,
        }
    })
}

fn check_absolute(t: &str, entries: &[&str]) {
    assert!(!t.chars().any(forbidden), "absolute target {t:?}");
    let u = Url::parse(t).unwrap_or_else(|e| panic!("accepted {t:?} is no URL: {e}"));
    assert!(matches!(u.scheme(), "http" | "https"), "{t:?}");
    assert!(
        u.username().is_empty() && u.password().is_none(),
        "user info in {t:?}"
    );
    assert!(u.fragment().is_none(), "fragment kept in {t:?}");
    let host = u.host_str().unwrap_or_else(|| panic!("no host in {t:?}"));
    assert!(
        covered(&host.to_ascii_lowercase(), u.port(), entries),
        "{t:?}: host {host:?} port {:?} is not allowed by {entries:?}",
        u.port()
    );
    check_path(u.path(), "absolute target");
}

fuzz_target!(|input: Input| {
    let own = OWN[usize::from(input.own) % OWN.len()];
    let entries = OTHERS[usize::from(input.others) % OTHERS.len()];
    let others: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    let raw = input.raw.as_str();

    let returned = validate_return_to(raw, &[own]);
    if let Some(t) = &returned {
        check_relative(t, own, "validate_return_to");
    }
    let target = validate_target(raw, own, &others);
    if returned.is_some() || others.is_empty() {
        assert_eq!(target, returned, "validate_target disagrees on {raw:?}");
    }
    match target.as_deref() {
        Some(t) if t.starts_with('/') => check_relative(t, own, "validate_target"),
        Some(t) => check_absolute(t, entries),
        None => {}
    }
});
