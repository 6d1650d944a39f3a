//! [`Reader`]: typed values read out of the layered raw configuration, with every
//! problem remembered (named with where the value came from) instead of stopping at the
//! first; and the small validators the configuration readers share.

use super::sources::{Entry, RawConfig, RawValue};
use axum::http::HeaderName;
use std::time::Duration;
use url::Url;

/// Reads typed values out of the raw layers and remembers what went wrong.
pub(super) struct Reader<'a> {
    pub(super) raw: &'a RawConfig,
    pub(super) problems: Vec<String>,
}

impl Reader<'_> {
    pub(super) fn problem(
        &mut self,
        entry: Option<&Entry>,
        key: &str,
        msg: impl std::fmt::Display,
    ) {
        match entry {
            Some(e) => self
                .problems
                .push(format!("{key} (from {}): {msg}", e.origin)),
            None => self.problems.push(format!("{key}: {msg}")),
        }
    }

    pub(super) fn str_opt(&mut self, key: &str) -> Option<String> {
        match self.raw.get(key).map(|e| &e.value) {
            Some(RawValue::Str(s)) => Some(s.trim().to_string()),
            Some(RawValue::List(l)) => Some(l.join(",")),
            Some(RawValue::Bool(b)) => Some(b.to_string()),
            Some(RawValue::Int(i)) => Some(i.to_string()),
            None => None,
        }
    }

    pub(super) fn str_or(&mut self, key: &str, default: &str) -> String {
        self.str_opt(key).unwrap_or_else(|| default.to_string())
    }

    pub(super) fn required(&mut self, key: &str, hint: &str) -> String {
        match self.str_opt(key).filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => {
                let env = format!("GATEHOUSE_{}", key.to_ascii_uppercase());
                let flag = key.replace('_', "-");
                self.problems.push(format!(
                    "{key} is required (set `{key}` in the file, {env}, or --{flag}); {hint}"
                ));
                String::new()
            }
        }
    }

    pub(super) fn list(&mut self, key: &str, default: &[&str]) -> Vec<String> {
        match self.raw.get(key).map(|e| &e.value) {
            Some(RawValue::List(l)) => l
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Some(RawValue::Str(s)) => s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => default.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(super) fn bool(&mut self, key: &str, default: bool) -> bool {
        let entry = self.raw.get(key);
        match entry.map(|e| &e.value) {
            None => default,
            Some(RawValue::Bool(b)) => *b,
            Some(RawValue::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                other => {
                    let other = other.to_string();
                    self.problem(entry, key, format!("`{other}` is not true or false"));
                    default
                }
            },
            Some(_) => default,
        }
    }

    pub(super) fn secs(&mut self, key: &str, default: u64) -> Duration {
        let entry = self.raw.get(key);
        let n = match entry.map(|e| &e.value) {
            None => return Duration::from_secs(default),
            Some(RawValue::Int(i)) => u64::try_from(*i).ok(),
            Some(RawValue::Str(s)) => s.trim().trim_end_matches('s').parse::<u64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) => Duration::from_secs(n),
            None => {
                self.problem(entry, key, "should be a whole number of seconds");
                Duration::from_secs(default)
            }
        }
    }

    /// A whole number (bytes, connections).
    pub(super) fn count(&mut self, key: &str, default: u64) -> u64 {
        let entry = self.raw.get(key);
        let n = match entry.map(|e| &e.value) {
            None => return default,
            Some(RawValue::Int(i)) => u64::try_from(*i).ok(),
            Some(RawValue::Str(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        n.unwrap_or_else(|| {
            self.problem(entry, key, "should be a whole number");
            default
        })
    }

    pub(super) fn header(&mut self, key: &str, value: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(value.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                let entry = self.raw.get(key);
                self.problem(entry, key, format!("`{value}` is not a valid header name"));
                None
            }
        }
    }

    pub(super) fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                let entry = self.raw.get(key);
                self.problem(entry, key, format!("`{value}` is not an http(s) URL"));
                None
            }
        }
    }
}

/// True when the URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub(super) fn read_file(r: &mut Reader<'_>, key: &str, path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            let entry = r.raw.get(key);
            r.problem(entry, key, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// A DNS name: labels of letters, digits and `-`, at least two of them.
pub(super) fn valid_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    !d.is_empty()
        && d.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && (labels.len() >= 2 || d.eq_ignore_ascii_case("localhost"))
}
