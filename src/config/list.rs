//! The one rule for list settings, the same wherever a list comes from: a TOML string or
//! array, a `GATEHOUSE_*` variable, a flag, or a rule in the forward-auth URL's query.
//!
//! - A list written as one string is split on commas only; each item is trimmed and
//!   empty items are dropped.
//! - A TOML array is taken item by item (each trimmed, empty ones dropped), never split.
//! - Whitespace never separates items. Where an item can hold spaces (a group called
//!   `Domain Admins`, a file path, a claim's value) it stays inside the item; in every
//!   other list an item with whitespace is refused, and the message shows the list
//!   written with commas, so `openid email profile` can never quietly become one scope,
//!   nor `Domain Admins` two groups (`Domain` and `Admins`).
//!
//! Trusts nothing: the text may come from a request's query. Secret items are never shown.

use super::keys;
use std::fmt;

/// Where whitespace may appear inside one item of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spaces {
    /// Nowhere: an item with whitespace is refused.
    Refused,
    /// Anywhere inside the item.
    Allowed,
    /// Only in the value of a `name=value` item, and never before another `name=`.
    InValue,
}

/// The list keys whose items may hold whitespace, and why; every other list key (scopes,
/// acr_values, algorithms, upgrade protocols, CIDRs, header names, cookie secrets,
/// emails, domains, audiences, issuer=audience pairs, skip routes, whose items never
/// hold a space: a request path with one is never canonical) refuses it.
const SPACED: &[(&str, Spaces)] = &[
    // Entra ID and Active Directory group names: `Domain Admins`, `Platform Team`.
    ("allowed_groups", Spaces::Allowed),
    ("assertion_groups", Spaces::Allowed),
    // A claim name is any JSON string.
    ("groups_claim", Spaces::Allowed),
    // File paths.
    ("provider_ca_file", Spaces::Allowed),
    ("upstream_ca_file", Spaces::Allowed),
    // `realm_access.roles=Headlamp Admins`.
    ("required_claims", Spaces::InValue),
    // `prompt=select_account consent` (OIDC Core §3.1.2.1: space-separated values).
    ("extra_auth_params", Spaces::InValue),
];

/// Where whitespace may appear in the items of `key`.
pub fn spaces(key: &str) -> Spaces {
    SPACED
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(Spaces::Refused, |(_, s)| *s)
}

/// How a list was written.
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    /// One string: a variable, a flag, a TOML string, a query parameter's value.
    Text(&'a str),
    /// A TOML array.
    Items(&'a [String]),
}

/// Splits one string into items: on commas only, each trimmed, empty ones dropped.
pub fn split(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Items with whitespace in a list whose items may hold none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spaced {
    /// The offending items, as written.
    items: Vec<String>,
    /// The whole list with whitespace taken as a separator: what was probably meant.
    meant: Vec<String>,
    array: bool,
    secret: bool,
}

impl Spaced {
    /// The list as probably meant, so later checks look at likely items instead of
    /// repeating this problem in other words.
    pub fn meant(&self) -> &[String] {
        &self.meant
    }
}

impl fmt::Display for Spaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            let how = if self.array {
                "make each secret its own array element"
            } else {
                "separate secrets with commas"
            };
            return write!(
                f,
                "an item contains spaces (not shown: it is a secret); {how}"
            );
        }
        let shown: Vec<String> = self.items.iter().map(|i| format!("{i:?}")).collect();
        let verb = if self.items.len() == 1 {
            "contains"
        } else {
            "contain"
        };
        write!(f, "{} {verb} spaces; ", shown.join(", "))?;
        if self.array {
            write!(
                f,
                "make each item its own array element: {}",
                quoted(&self.meant)
            )
        } else {
            write!(f, "separate items with commas: {}", self.meant.join(","))
        }
    }
}

/// `["a", "b c"]`: items quoted, so a space inside one is plain to see.
pub fn quoted(items: &[String]) -> String {
    let shown: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", shown.join(", "))
}

/// Reads the list `key` as written, under the one rule above.
pub fn parse(key: &str, written: Written<'_>) -> Result<Vec<String>, Spaced> {
    let (items, array) = match written {
        Written::Text(text) => (split(text), false),
        Written::Items(items) => (
            items
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>(),
            true,
        ),
    };
    let rule = spaces(key);
    let bad: Vec<String> = items.iter().filter(|i| !fits(rule, i)).cloned().collect();
    if bad.is_empty() {
        return Ok(items);
    }
    let meant = items.iter().flat_map(|i| separate(rule, i)).collect();
    Err(Spaced {
        items: bad,
        meant,
        array,
        secret: keys::find(key).is_some_and(|k| k.is_secret()),
    })
}

/// Whether one item keeps to `rule`.
fn fits(rule: Spaces, item: &str) -> bool {
    match rule {
        Spaces::Allowed => true,
        Spaces::Refused => !item.contains(char::is_whitespace),
        Spaces::InValue => separate(rule, item).len() == 1,
    }
}

/// One item cut where whitespace probably meant "next item". `InValue`: a word holding
/// `=` starts a new `name=value` pair, other words stay in the value before them; so a
/// name with a space (`tenant id=acme`) or two pairs (`tenant=acme role=admin`) give two.
fn separate(rule: Spaces, item: &str) -> Vec<String> {
    match rule {
        Spaces::Allowed => vec![item.to_string()],
        Spaces::Refused => item.split_whitespace().map(str::to_string).collect(),
        Spaces::InValue => {
            let Some((name, value)) = item.split_once('=') else {
                return item.split_whitespace().map(str::to_string).collect();
            };
            // The name's words before its last are items of their own (`tenant id=acme`);
            // whitespace around the first `=` separates nothing (`tenant = acme`).
            let mut names: Vec<&str> = name.split_whitespace().collect();
            let last = names.pop().unwrap_or("");
            let mut pairs: Vec<String> = names.into_iter().map(str::to_string).collect();
            let first_pair = format!("{last}={}", value.trim_start());
            for word in first_pair.split_whitespace() {
                match pairs.last_mut() {
                    // A word without `=` belongs to the value before it.
                    Some(pair) if !word.contains('=') && pair.contains('=') => {
                        pair.push(' ');
                        pair.push_str(word);
                    }
                    _ => pairs.push(word.to_string()),
                }
            }
            pairs
        }
    }
}

/// A list setting as read, for `gatehouse check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedList {
    pub key: &'static str,
    /// The items; `None` for a secret, of which only the count is shown.
    pub items: Option<Vec<String>>,
    pub count: usize,
    /// Where the list came from (`env GATEHOUSE_SCOPES`); `None`: the built-in default.
    pub from: Option<String>,
}

impl fmt::Display for ParsedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.items {
            Some(items) => write!(f, "{}: {}", self.key, quoted(items))?,
            None => write!(f, "{}: {} item(s), not shown", self.key, self.count)?,
        }
        match &self.from {
            Some(from) => write!(f, " (from {from})"),
            None => write!(f, " (default)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: &str, s: &str) -> Result<Vec<String>, Spaced> {
        parse(key, Written::Text(s))
    }

    fn items(key: &str, l: &[&str]) -> Result<Vec<String>, Spaced> {
        let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
        parse(key, Written::Items(&l))
    }

    #[test]
    fn a_string_splits_on_commas_only_and_an_array_never_splits() {
        assert_eq!(split(" a, b c ,,\td\t, "), vec!["a", "b c", "d"]);
        assert_eq!(
            text("allowed_groups", "Domain Admins").unwrap(),
            vec!["Domain Admins"]
        );
        assert_eq!(
            text("allowed_groups", " Platform Team , ops,").unwrap(),
            vec!["Platform Team", "ops"]
        );
        assert_eq!(
            items("allowed_groups", &[" Domain Admins ", "", "a,b"]).unwrap(),
            vec!["Domain Admins", "a,b"]
        );
        assert_eq!(text("scopes", "").unwrap(), Vec::<String>::new());
        assert_eq!(
            text("provider_ca_file", "/etc/my certs/ca.pem").unwrap(),
            vec!["/etc/my certs/ca.pem"]
        );
        assert_eq!(
            text("groups_claim", "Group Names,realm_access.roles").unwrap(),
            vec!["Group Names", "realm_access.roles"]
        );
    }

    #[test]
    fn spaces_in_other_lists_are_refused_with_the_comma_form() {
        let e = text("scopes", "openid email profile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"openid email profile\" contains spaces; separate items with commas: openid,email,profile"
        );
        assert_eq!(e.meant(), ["openid", "email", "profile"]);
        let e = text("allowed_emails", "a@x.org b@y.org, c@z.org\td@z.org").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"a@x.org b@y.org\", \"c@z.org\\td@z.org\" contain spaces; separate items with commas: a@x.org,b@y.org,c@z.org,d@z.org"
        );
        let e = items("scopes", &["openid", "email profile"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"email profile\" contains spaces; make each item its own array element: [\"openid\", \"email\", \"profile\"]"
        );
        for key in [
            "acr_values",
            "allowed_algs",
            "allowed_upgrades",
            "trusted_proxies",
            "header_groups",
            "strip_headers",
            "allowed_email_domains",
            "allowed_redirect_domains",
            "trusted_audiences",
            "bearer_audiences",
            "bearer_issuers",
            "skip_auth_routes",
        ] {
            assert!(text(key, "a b").is_err(), "{key}");
            assert!(text(key, "a,b").is_ok(), "{key}");
        }
    }

    #[test]
    fn a_secret_with_spaces_is_refused_without_showing_it() {
        let e = text("cookie_secret", "s3cr3t-one s3cr3t-two").unwrap_err();
        let said = e.to_string();
        assert!(!said.contains("s3cr3t"), "{said}");
        assert!(said.contains("separate secrets with commas"), "{said}");
        assert_eq!(e.meant().len(), 2);
    }

    #[test]
    fn name_value_lists_allow_spaces_in_the_value_only() {
        assert_eq!(
            text(
                "extra_auth_params",
                "prompt=select_account consent, access_type=offline"
            )
            .unwrap(),
            vec!["prompt=select_account consent", "access_type=offline"]
        );
        assert_eq!(
            text("required_claims", "tenant = acme,roles=Headlamp Admins").unwrap(),
            vec!["tenant = acme", "roles=Headlamp Admins"]
        );
        let e = text("required_claims", "tenant=acme role=admin").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"tenant=acme role=admin\" contains spaces; separate items with commas: tenant=acme,role=admin"
        );
        let e = text(
            "extra_auth_params",
            "access_type=offline prompt=select_account consent",
        )
        .unwrap_err();
        assert_eq!(
            e.meant(),
            ["access_type=offline", "prompt=select_account consent"]
        );
        let e = text("required_claims", "tenant id=acme").unwrap_err();
        assert_eq!(e.meant(), ["tenant", "id=acme"]);
    }

    #[test]
    fn every_list_key_has_a_decision_and_the_spaced_ones_are_lists() {
        for (k, _) in SPACED {
            assert_eq!(keys::find(k).map(|k| k.kind), Some(keys::Kind::List), "{k}");
        }
        assert_eq!(spaces("allowed_groups"), Spaces::Allowed);
        assert_eq!(spaces("scopes"), Spaces::Refused);
    }

    #[test]
    fn a_parsed_list_shows_its_items_quoted_and_hides_secrets() {
        let shown = ParsedList {
            key: "allowed_groups",
            items: Some(vec!["Domain Admins".into(), "ops".into()]),
            count: 2,
            from: Some("env GATEHOUSE_ALLOWED_GROUPS".into()),
        };
        assert_eq!(
            shown.to_string(),
            "allowed_groups: [\"Domain Admins\", \"ops\"] (from env GATEHOUSE_ALLOWED_GROUPS)"
        );
        let secret = ParsedList {
            key: "cookie_secret",
            items: None,
            count: 2,
            from: None,
        };
        assert_eq!(
            secret.to_string(),
            "cookie_secret: 2 item(s), not shown (default)"
        );
    }
}
