//! `allowed_emails_file`: one email address per line, read at start-up (where a bad line
//! refuses the configuration) and again whenever the file changes (`authz.rs`, where a
//! bad file keeps the last good list). One reading serves both, so the file means the
//! same thing at start-up, in `check` and after a change.
//!
//! The format is one address per line, not a list per line: a line holding `,` or any
//! whitespace between characters is refused with its line number, never taken whole as an
//! address nobody has (`alice@x, bob@x`) nor cut at a `#` (`al#ice@x` is an address).
//! Only a line whose first non-blank character is `#` is a comment; blank lines are
//! skipped; a UTF-8 byte order mark and CRLF line ends are read as a plain file.
//! An address has exactly one `@` with something on both sides, and no whitespace, no
//! control character and no comma.
//!
//! Trusts nothing: the file may be edited by hand while gatehouse runs.

use std::path::PathBuf;

/// The file and the addresses it held when last read well, as written (compared ASCII
/// case-insensitively by `authz.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailsFile {
    pub path: PathBuf,
    pub emails: Vec<String>,
}

/// How many bad lines one reading reports; the rest are counted.
const SHOWN: usize = 10;

/// True for a plain address: exactly one `@`, something on both sides, and no whitespace,
/// control character or comma anywhere. The rule for `allowed_emails` items too.
pub fn is_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !e
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        }
        None => false,
    }
}

/// Why `line` (trimmed, neither blank nor a comment) is no single address.
fn fault(line: &str) -> &'static str {
    let spaced = line.chars().any(|c| c.is_whitespace() || c.is_control());
    if spaced && line.contains('#') {
        "holds text after the address; a comment is a line of its own, starting with #"
    } else if line.contains(',') || line.matches('@').count() > 1 || spaced {
        "holds more than one address, or spaces; write one address per line"
    } else {
        "is not an email address (one @ with something on both sides)"
    }
}

/// The addresses in `text`, or every bad line (`line N: "…" …`, at most `SHOWN` of them
/// and a count of the rest).
pub fn parse(text: &str) -> Result<Vec<String>, Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut emails = Vec::new();
    let mut bad = Vec::new();
    let mut more = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if is_email(line) {
            emails.push(line.to_string());
        } else if bad.len() < SHOWN {
            bad.push(format!("line {}: {line:?} {}", i + 1, fault(line)));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        bad.push(format!("and {more} more bad line(s)"));
    }
    if bad.is_empty() {
        Ok(emails)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_per_line_with_comments_on_lines_of_their_own() {
        let text =
            "\u{feff}# team\r\nalice@x.org\r\n\r\n   # ops, on call\n\tBob@Y.org  \nal#ice@x.org\n";
        assert_eq!(
            parse(text).unwrap(),
            vec!["alice@x.org", "Bob@Y.org", "al#ice@x.org"]
        );
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("# nobody yet\n").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_line_that_is_not_one_address_is_refused_with_its_number() {
        for (text, want) in [
            (
                "alice@x.org\nalice@x.org, bob@x.org\n",
                "line 2: \"alice@x.org, bob@x.org\" holds more than one address, or spaces; write one address per line",
            ),
            (
                "alice@x.org bob@x.org",
                "line 1: \"alice@x.org bob@x.org\" holds more than one address, or spaces",
            ),
            ("alice@x.org,bob@x.org", "line 1: \"alice@x.org,bob@x.org\" holds more than one address"),
            ("alice@x.org;bob@x.org", "line 1: \"alice@x.org;bob@x.org\" holds more than one address"),
            ("a\u{a0}lice@x.org", "holds more than one address, or spaces"),
            ("alice@x.org\u{7}", "holds more than one address, or spaces"),
            (
                "\n\nalice@x.org # the boss",
                "line 3: \"alice@x.org # the boss\" holds text after the address; a comment is a line of its own, starting with #",
            ),
            ("alice", "line 1: \"alice\" is not an email address"),
            ("@x.org", "is not an email address"),
            ("alice@", "is not an email address"),
            ("attacker@evil.com@x.org", "holds more than one address"),
        ] {
            let bad = parse(text).unwrap_err();
            assert!(bad[0].contains(want), "{text:?}: {bad:?}");
        }
    }

    #[test]
    fn every_bad_line_is_named_up_to_a_limit() {
        let text = (0..25).map(|i| format!("bad{i}\n")).collect::<String>();
        let bad = parse(&format!("ok@x.org\n{text}")).unwrap_err();
        assert_eq!(bad.len(), SHOWN + 1);
        assert!(bad[0].starts_with("line 2: \"bad0\""), "{bad:?}");
        assert_eq!(bad[SHOWN], "and 15 more bad line(s)");
    }
}
