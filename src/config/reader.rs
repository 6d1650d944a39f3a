//! [`Reader`]: typed values read out of the layered raw configuration, with every
//! problem remembered (named with where the value came from) instead of stopping at the
//! first; and the small validators the configuration readers share.

use super::keys;
use super::list::{self, ParsedList, Written};
use super::sources::{Entry, RawConfig, RawValue};
use axum::http::HeaderName;
use std::time::Duration;
use url::Url;

/// Reads typed values out of the raw layers and remembers what went wrong.
pub(super) struct Reader<'a> {
    pub(super) raw: &'a RawConfig,
    pub(super) problems: Vec<String>,
    /// Every list read so far, as parsed (for `check`).
    pub(super) lists: Vec<ParsedList>,
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

    /// The list `key` under the one rule of `list.rs` (commas only; whitespace refused
    /// where an item may hold none), remembered for `check`.
    pub(super) fn list(&mut self, key: &'static str, default: &[&str]) -> Vec<String> {
        let entry = self.raw.get(key);
        let written = match entry.map(|e| &e.value) {
            Some(RawValue::List(l)) => Some(Written::Items(l)),
            Some(RawValue::Str(s)) => Some(Written::Text(s)),
            _ => None,
        };
        let items = match written.map(|w| list::parse(key, w)) {
            Some(Ok(items)) => items,
            Some(Err(spaced)) => {
                let meant = spaced.meant().to_vec();
                self.problem(entry, key, spaced);
                meant
            }
            None => default.iter().map(|s| s.to_string()).collect(),
        };
        let secret = keys::find(key).is_some_and(|k| k.is_secret());
        self.lists.retain(|l| l.key != key);
        self.lists.push(ParsedList {
            key,
            items: (!secret).then(|| items.clone()),
            count: items.len(),
            from: entry.map(|e| e.origin.to_string()),
        });
        items
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

    /// A whole number of seconds (`30` or `30s`), at most its bound (`bounds.rs`).
    pub(super) fn secs(&mut self, key: &str, default: u64) -> Duration {
        let entry = self.raw.get(key);
        let n = match entry.map(|e| &e.value) {
            None => return Duration::from_secs(default),
            Some(RawValue::Int(i)) => u64::try_from(*i).ok(),
            Some(RawValue::Str(s)) => s.trim().trim_end_matches('s').parse::<u64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) => match super::bounds::exceeded(key, n) {
                None => Duration::from_secs(n),
                Some(why) => {
                    self.problem(entry, key, why);
                    Duration::from_secs(default)
                }
            },
            None => {
                self.problem(entry, key, "should be a whole number of seconds");
                Duration::from_secs(default)
            }
        }
    }

    /// A whole number (bytes, connections), at most its bound (`bounds.rs`).
    pub(super) fn count(&mut self, key: &str, default: u64) -> u64 {
        let entry = self.raw.get(key);
        let n = match entry.map(|e| &e.value) {
            None => return default,
            Some(RawValue::Int(i)) => u64::try_from(*i).ok(),
            Some(RawValue::Str(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) => match super::bounds::exceeded(key, n) {
                None => n,
                Some(why) => {
                    self.problem(entry, key, why);
                    default
                }
            },
            None => {
                self.problem(entry, key, "should be a whole number");
                default
            }
        }
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
                let shown = without_credentials(value);
                self.problem(entry, key, format!("`{shown}` is not an http(s) URL"));
                None
            }
        }
    }
}

/// A URL setting as a message may show it: whatever could be a user name and password
/// (between the scheme and the last `@`) replaced by `***`, whether or not it parses.
pub(crate) fn without_credentials(value: &str) -> String {
    let start = value.find("://").map_or(0, |i| i + 3);
    match value.rfind('@') {
        Some(at) if at >= start => format!("{}***{}", &value[..start], &value[at..]),
        _ => value.to_string(),
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

#[cfg(test)]
mod tests {
    use super::super::sources::RawConfig;
    use super::super::Config;
    use std::collections::HashMap;

    const BASE: &str = "issuer_url = \"https://sso.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\ncookie_secret = \"DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk\"\n";

    fn from_toml(extra: &str) -> RawConfig {
        RawConfig::from_toml(&format!("{BASE}{extra}"), "g.toml").unwrap()
    }

    fn groups(raw: &RawConfig) -> Vec<String> {
        match Config::from_raw(raw) {
            Ok(cfg) => cfg.rules.groups,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_source_splits_a_list_on_commas_only() {
        let env: HashMap<String, String> = [(
            "GATEHOUSE_ALLOWED_GROUPS".to_string(),
            "Platform Team".to_string(),
        )]
        .into();
        let raw = from_toml("").overlay(RawConfig::from_env(&env));
        assert_eq!(groups(&raw), ["Platform Team"]);
        assert_eq!(
            groups(&from_toml("allowed_groups = \"Domain Admins\"\n")),
            ["Domain Admins"]
        );
        assert_eq!(
            groups(&from_toml(
                "allowed_groups = [\" Domain Admins \", \"ops, dev\", \"\"]\n"
            )),
            ["Domain Admins", "ops, dev"]
        );
        let flags = RawConfig::from_pairs(&[("allowed_groups", "Platform Team, ops".to_string())]);
        assert_eq!(
            groups(&from_toml("").overlay(flags)),
            ["Platform Team", "ops"]
        );
        let cfg = Config::from_raw(&from_toml(
            "required_claims = \"roles=Headlamp Admins, tenant = acme\"\nextra_auth_params = [\"prompt=select_account consent\"]\n",
        ))
        .unwrap();
        assert_eq!(
            cfg.rules.claims,
            [
                ("roles".to_string(), "Headlamp Admins".to_string()),
                ("tenant".to_string(), "acme".to_string())
            ]
        );
        assert_eq!(
            cfg.extra_auth_params,
            [("prompt".to_string(), "select_account consent".to_string())]
        );
    }

    #[test]
    fn spaces_where_items_hold_none_are_refused_with_every_other_problem() {
        let env: HashMap<String, String> = [
            ("GATEHOUSE_ACR_VALUES".to_string(), "mfa phr".to_string()),
            ("GATEHOUSE_LISTEN".to_string(), "nowhere".to_string()),
        ]
        .into();
        let raw = from_toml(
            "scopes = \"openid email profile\"\nallowed_email_domains = [\"x.org y.org\"]\ntrusted_proxies = \"10.0.0.0/8 192.168.0.0/16\"\nrequired_claims = \"tenant=acme role=admin\"\n",
        )
        .overlay(RawConfig::from_env(&env));
        let problems = Config::from_raw(&raw).unwrap_err().problems;
        let all = problems.join("\n");
        for needle in [
            "scopes (from g.toml): \"openid email profile\" contains spaces; separate items with commas: openid,email,profile",
            "allowed_email_domains (from g.toml): \"x.org y.org\" contains spaces; make each item its own array element: [\"x.org\", \"y.org\"]",
            "trusted_proxies (from g.toml): \"10.0.0.0/8 192.168.0.0/16\" contains spaces; separate items with commas: 10.0.0.0/8,192.168.0.0/16",
            "required_claims (from g.toml): \"tenant=acme role=admin\" contains spaces; separate items with commas: tenant=acme,role=admin",
            "acr_values (from env GATEHOUSE_ACR_VALUES): \"mfa phr\" contains spaces; separate items with commas: mfa,phr",
            "listen (from env GATEHOUSE_LISTEN): `nowhere` is not an address",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
        // Each mistake is said once, not again by the checks that follow.
        assert_eq!(problems.len(), 6, "{all}");
    }

    #[test]
    fn check_gets_every_list_as_read_and_never_a_secret() {
        let cfg =
            Config::from_raw(&from_toml("allowed_groups = \"Domain Admins, ops\"\n")).unwrap();
        let shown: Vec<String> = cfg.lists.iter().map(|l| l.to_string()).collect();
        assert!(
            shown.contains(
                &"allowed_groups: [\"Domain Admins\", \"ops\"] (from g.toml)".to_string()
            ),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"scopes: [\"openid\", \"email\", \"profile\"] (default)".to_string()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"cookie_secret: 1 item(s), not shown (from g.toml)".to_string()),
            "{shown:?}"
        );
        assert!(
            !format!("{cfg:?}").contains("DbhHMlgj"),
            "secrets stay out of Debug"
        );
    }
}
