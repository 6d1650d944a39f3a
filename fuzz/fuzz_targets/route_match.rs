//! Skip-route matching (`routes::SkipRoute::parse`, `routes::skip_rule`), which runs before
//! authentication on whatever path a client sends.
//!
//! Goal: for any rule and any path, the matcher gives a simple reference's answer, and its
//! time does not depend on how the path plays against the rule's `*`s.
//!
//! Input: a method byte, a shape byte, then text: the rule (`[METHOD=]PATH`, as written in
//! `skip_auth_routes`) up to the first newline, the request path after it.
//!
//! Asserts, for every rule that parses:
//! - the answer for the path is the reference's: the method fits (none or `*`: any; `GET`
//!   also `HEAD`), the path (cut at `?`) is canonical (`canonical_path`), and the rule's
//!   path, read as one string in which `*` is any run of bytes without `/` and a final
//!   `/**` is `/` followed by anything, matches the whole canonical path (an automaton
//!   that follows every place in the rule at once: O(path × rule), no backtracking);
//! - the same for the path made about 64 KB long (its last segment repeated within
//!   itself, or the whole path repeated), the shape that made a backtracking matcher take
//!   seconds; and that long path is answered within 50 ms (the fastest of three tries, so
//!   a busy machine does not fail it; the matcher's bound is linear in the path).
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::routes::{canonical_path, skip_rule, SkipRoute};
use http::Method;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const METHODS: &[&str] = &["GET", "HEAD", "POST", "DELETE", "OPTIONS", "PROPFIND"];

/// How long the long path is made.
const LONG: usize = 64 * 1024;
/// What answering it may take.
const LIMIT: Duration = Duration::from_millis(50);
/// Rules longer than this are compared on the long path only by time (the reference
/// costs path × rule).
const LONG_REFERENCE_MAX_RULE: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    shape: u8,
    text: String,
}

/// One step of the reference automaton.
#[derive(Clone, Copy, PartialEq)]
enum Token {
    Byte(u8),
    /// Any run of bytes; `slash`: `/` included.
    Run {
        slash: bool,
    },
}

/// The rule's method (`None`: any) and its path as tokens, read from the rule text
/// independently of `SkipRoute::parse`.
fn read_rule(spec: &str) -> (Option<String>, Vec<Token>) {
    let spec = spec.trim();
    let (method, path) = match spec.split_once('=') {
        Some((m, p)) if !m.starts_with('/') => {
            let m = m.trim().to_ascii_uppercase();
            ((m != "*").then_some(m), p.trim())
        }
        _ => (None, spec),
    };
    let (body, subtree) = match path.strip_suffix("/**") {
        Some(b) => (b, true),
        None => (path, false),
    };
    let mut tokens: Vec<Token> = body
        .bytes()
        .map(|b| match b {
            b'*' => Token::Run { slash: false },
            b => Token::Byte(b),
        })
        .collect();
    if subtree {
        tokens.push(Token::Byte(b'/'));
        tokens.push(Token::Run { slash: true });
    }
    (method, tokens)
}

/// Marks, after place `j` is reached, the places after the runs that follow it (a run
/// may be empty).
fn close(tokens: &[Token], set: &mut [bool]) {
    for j in 0..tokens.len() {
        if set[j] && matches!(tokens[j], Token::Run { .. }) {
            set[j + 1] = true;
        }
    }
}

/// Whether `tokens` match all of `text`: the set of places in the rule reachable after
/// each byte.
fn automaton(tokens: &[Token], text: &[u8]) -> bool {
    let mut now = vec![false; tokens.len() + 1];
    let mut next = now.clone();
    now[0] = true;
    close(tokens, &mut now);
    for &c in text {
        next.iter_mut().for_each(|x| *x = false);
        for (j, t) in tokens.iter().enumerate() {
            if !now[j] {
                continue;
            }
            match *t {
                Token::Run { slash } if slash || c != b'/' => next[j] = true,
                Token::Byte(b) if b == c => next[j + 1] = true,
                _ => {}
            }
        }
        close(tokens, &mut next);
        std::mem::swap(&mut now, &mut next);
        if !now.contains(&true) {
            return false;
        }
    }
    now[tokens.len()]
}

fn reference(want: &Option<String>, tokens: &[Token], method: &str, raw: &str) -> bool {
    let method_fits = match want {
        None => true,
        Some(w) => w == method || (w == "GET" && method == "HEAD"),
    };
    let path = raw.split('?').next().unwrap_or("");
    method_fits && canonical_path(path).is_some_and(|c| automaton(tokens, c.as_bytes()))
}

/// The path made about [`LONG`] bytes long.
fn lengthen(raw: &str, shape: u8) -> String {
    let (head, tail) = match raw.rfind('/') {
        Some(at) if shape & 1 == 0 => raw.split_at(at + 1),
        _ => ("", raw),
    };
    if tail.is_empty() {
        return raw.to_string();
    }
    format!("{head}{}", tail.repeat(LONG / tail.len()))
}

fuzz_target!(|input: Input| {
    let (spec, raw) = input.text.split_once('\n').unwrap_or((&input.text, "/"));
    let Ok(rule) = SkipRoute::parse(spec) else {
        return;
    };
    let routes = [rule];
    let name = METHODS[usize::from(input.method) % METHODS.len()];
    let method = Method::from_bytes(name.as_bytes()).expect("a valid method");
    let (want, tokens) = read_rule(spec);

    let ours = skip_rule(&routes, &method, raw).is_some();
    assert_eq!(
        ours,
        reference(&want, &tokens, name, raw),
        "rule {spec:?}, {name} {raw:?}"
    );

    let long = lengthen(raw, input.shape);
    let mut fastest = Duration::MAX;
    let mut answer = false;
    for _ in 0..3 {
        let started = Instant::now();
        answer = skip_rule(&routes, &method, &long).is_some();
        fastest = fastest.min(started.elapsed());
        if fastest < LIMIT {
            break;
        }
    }
    assert!(
        fastest < LIMIT,
        "rule {spec:?}: {} bytes took {fastest:?}",
        long.len()
    );
    if tokens.len() <= LONG_REFERENCE_MAX_RULE {
        assert_eq!(
            answer,
            reference(&want, &tokens, name, &long),
            "rule {spec:?}, {name} and the {}-byte path made from {raw:?}",
            long.len()
        );
    }
});
