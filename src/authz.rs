//! Who may enter: the access rules checked after the identity is known, the same for the
//! sidecar and the forward-auth endpoint.
//!
//! Rules: `allowed_emails` (list and/or a file re-read when it changes) or
//! `allowed_email_domains` (the email must match either), `allowed_groups` (at least one in
//! common) and `required_claims` (every one). Rule kinds are ANDed; per-request rules from
//! the forward-auth URL's query are a second [`Policy`] ANDed with the configured one, so
//! they narrow and can never widen.
//!
//! Trusts the identity (from a verified token) but not its shape: an email with more than
//! one `@`, or one the provider marked `email_verified: false`, never passes an email rule;
//! comparisons fold ASCII case only, so Unicode look-alikes (the Kelvin sign `K`) never
//! fold into an allowed address.

use crate::config::emails_file::EmailsFile;
use crate::config::{list, AccessRules};
use crate::identity::{claim_at, Identity};
use crate::redirect::host_allowed;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Where a rule came from, for the denial message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSource {
    Config,
    Query,
}

/// Why a signed-in user was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule's setting name, e.g. `allowed_groups`.
    pub rule: &'static str,
    pub source: RuleSource,
    /// What the rule asked for and what the identity had, for the page and the log.
    pub detail: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match self.source {
            RuleSource::Config => "gatehouse's configuration",
            RuleSource::Query => "this route's auth URL",
        };
        write!(f, "the rule {} (from {from}) {}", self.rule, self.detail)
    }
}

/// How often a changed `allowed_emails_file` is noticed, at most.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// What tells a changed file from an unchanged one without reading it.
type Fingerprint = Option<(SystemTime, u64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// An email list kept in a file. Requests only read the current list (a lock held for a
/// lookup, never for I/O); a thread of its own looks at the file every
/// [`FILE_CHECK_EVERY`] and swaps in a new list when the file changed and reads well. So
/// a slow mount, or a FIFO nobody writes to, holds up that thread alone, never a request.
#[derive(Debug)]
struct EmailFile {
    path: PathBuf,
    emails: RwLock<Arc<HashSet<String>>>,
}

fn lower_set(emails: &[String]) -> HashSet<String> {
    emails.iter().map(|e| e.to_ascii_lowercase()).collect()
}

impl EmailFile {
    /// The list as read at start-up, and the thread that keeps it current; the thread
    /// ends once the policy is gone.
    fn watch(file: &EmailsFile) -> Arc<EmailFile> {
        let watched = Arc::new(EmailFile {
            path: file.path.clone(),
            emails: RwLock::new(Arc::new(lower_set(&file.emails))),
        });
        let weak = Arc::downgrade(&watched);
        // Unknown at first: the first look reads the file again, so a change between
        // the start-up read and now is not missed.
        let mut seen: Fingerprint = None;
        let spawned = std::thread::Builder::new()
            .name("gatehouse-emails-file".into())
            .spawn(move || loop {
                std::thread::sleep(FILE_CHECK_EVERY);
                let Some(file) = weak.upgrade() else { return };
                file.reload(&mut seen);
            });
        if let Err(e) = spawned {
            tracing::warn!(file = %file.path.display(), error = %e, "cannot watch allowed_emails_file; its changes are not noticed until a restart");
        }
        watched
    }

    /// Whether `lower` (an address in lower case) is listed now.
    fn contains(&self, lower: &str) -> bool {
        let emails = match self.emails.read() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        emails.contains(lower)
    }

    /// Re-reads the file if it changed since `seen`. A file that cannot be read, or has a
    /// line that is not one address, keeps the last good list (and the log says why)
    /// rather than letting everyone in or out; it is read again once it changes.
    fn reload(&self, seen: &mut Fingerprint) {
        let now = fingerprint(&self.path);
        if now.is_some() && now == *seen {
            return;
        }
        let file = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                if now != *seen {
                    tracing::warn!(%file, error = %e, "cannot re-read allowed_emails_file; keeping the previous list");
                }
                *seen = now;
                return;
            }
        };
        *seen = now;
        let emails = match crate::config::emails_file::parse(&text) {
            Ok(emails) => lower_set(&emails),
            Err(bad) => {
                let why = bad.join("; ");
                tracing::warn!(%file, problems = %why, "allowed_emails_file changed and has lines that are not one address each; keeping the previous list until it is fixed");
                return;
            }
        };
        let mut current = match self.emails.write() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        if **current != emails {
            tracing::info!(%file, emails = emails.len(), "re-read allowed_emails_file");
            *current = Arc::new(emails);
        }
    }
}

/// One set of rules. Empty rule kinds allow everyone.
#[derive(Debug)]
pub struct Policy {
    source: RuleSource,
    groups: Vec<String>,
    emails: HashSet<String>,
    email_file: Option<Arc<EmailFile>>,
    domains: Vec<String>,
    claims: Vec<(String, String)>,
}

/// A claim value as text, for comparisons and messages.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn claim_holds(claims: &Value, path: &str, want: &str) -> bool {
    match claim_at(claims, path) {
        Some(Value::Array(items)) => items.iter().filter_map(text_of).any(|v| v == want),
        Some(v) => text_of(v).is_some_and(|v| v == want),
        None => false,
    }
}

/// The domain of an address with exactly one `@`, lower-cased (ASCII only).
fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    Some(domain.to_ascii_lowercase())
}

fn shown(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The names (never the values) of the token's claims, for a denial that may come from a
/// configuration mismatch; nothing when the claims were not read.
fn carried(claims: &Value) -> String {
    match claims.as_object() {
        Some(m) if !m.is_empty() => {
            let mut names: Vec<&str> = m.keys().map(String::as_str).collect();
            names.sort_unstable();
            format!("; the ID token carries the claims {}", names.join(", "))
        }
        _ => String::new(),
    }
}

impl Policy {
    /// The configured rules, with `allowed_emails_file` as configuration read it, then
    /// kept current by a thread of its own.
    pub fn from_config(rules: &AccessRules) -> Result<Policy, String> {
        let email_file = rules.emails_file.as_ref().map(EmailFile::watch);
        Ok(Policy {
            source: RuleSource::Config,
            groups: rules.groups.clone(),
            emails: rules
                .emails
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect(),
            email_file,
            domains: rules
                .email_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            claims: rules.claims.clone(),
        })
    }

    /// Per-request rules from the forward-auth URL's query (`allowed_groups`,
    /// `allowed_emails`, `allowed_email_domains`, comma-separated or repeated), read under
    /// the same list rule as the settings (`config::list`): `allowed_groups=Domain%20Admins`
    /// is one group, and an email or domain list with spaces is refused with its fix.
    /// `None` when the query holds none. An unknown parameter or an empty rule is an error,
    /// not ignored: a typo must never quietly widen access.
    pub fn from_query(query: &str) -> Result<Option<Policy>, String> {
        let mut p = Policy {
            source: RuleSource::Query,
            groups: Vec::new(),
            emails: HashSet::new(),
            email_file: None,
            domains: Vec::new(),
            claims: Vec::new(),
        };
        let mut any = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "redirect" => continue,
                "allowed_groups" | "allowed_emails" | "allowed_email_domains" => {}
                other => {
                    return Err(format!(
                        "unknown parameter `{other}` (gatehouse knows allowed_groups, allowed_emails, allowed_email_domains and redirect)"
                    ))
                }
            }
            let items =
                list::parse(&k, list::Written::Text(&v)).map_err(|e| format!("`{k}`: {e}"))?;
            if items.is_empty() {
                return Err(format!("`{k}` is empty: list at least one value"));
            }
            any = true;
            let lower = items.iter().map(|s| s.to_ascii_lowercase());
            match k.as_ref() {
                "allowed_groups" => p.groups.extend(items),
                "allowed_emails" => p.emails.extend(lower),
                _ => p.domains.extend(lower),
            }
        }
        Ok(any.then_some(p))
    }

    /// True when no rule is set (every signed-in user passes).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.emails.is_empty()
            && self.email_file.is_none()
            && self.domains.is_empty()
            && self.claims.is_empty()
    }

    /// Whether the policy needs the token's claims (so callers decode them only then).
    pub fn needs_claims(&self) -> bool {
        !self.claims.is_empty() || self.has_email_rule()
    }

    fn has_email_rule(&self) -> bool {
        !self.emails.is_empty() || self.email_file.is_some() || !self.domains.is_empty()
    }

    fn deny(&self, rule: &'static str, detail: String) -> Result<(), Denial> {
        Err(Denial {
            rule,
            source: self.source,
            detail,
        })
    }

    /// Checks `id` (whose verified claims are `claims`) against every rule.
    pub fn check(&self, id: &Identity, claims: &Value) -> Result<(), Denial> {
        if self.has_email_rule() {
            self.check_email(id, claims)?;
        }
        if !self.groups.is_empty() && id.groups.is_empty() {
            // No groups at all is most often a configuration mismatch, not a user outside
            // every group: the provider sends no claim where groups_claim looks.
            return self.deny(
                "allowed_groups",
                format!(
                    "requires one of the groups {}, and {} has no groups at all: the provider sent no groups where groups_claim looks (or an empty list){}. If it sends none, this is a mismatch between gatehouse's configuration and the provider: set groups_claim to the claim that holds the groups, request the scope that adds them (scopes, e.g. `groups`), or use the provider preset that matches the provider",
                    self.groups.join(", "),
                    id.user,
                    carried(claims)
                ),
            );
        }
        if !self.groups.is_empty() && !id.groups.iter().any(|g| self.groups.contains(g)) {
            return self.deny(
                "allowed_groups",
                format!(
                    "requires one of the groups {}; {} is in {}",
                    self.groups.join(", "),
                    id.user,
                    shown(&id.groups)
                ),
            );
        }
        for (path, want) in &self.claims {
            if !claim_holds(claims, path, want) {
                let found = claim_at(claims, path)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| format!("no such claim{}", carried(claims)));
                return self.deny(
                    "required_claims",
                    format!(
                        "requires {path}={want}; {}'s token has {path}: {found}",
                        id.user
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_email(&self, id: &Identity, claims: &Value) -> Result<(), Denial> {
        let rule = if self.domains.is_empty() {
            "allowed_emails"
        } else if self.emails.is_empty() && self.email_file.is_none() {
            "allowed_email_domains"
        } else {
            "allowed_emails / allowed_email_domains"
        };
        let Some(email) = id.email.as_deref() else {
            let detail = if id.email_verified == Some(false) {
                format!("needs an email the provider has verified, and {}'s email is marked email_verified: false (the provider must vouch for its emails: in Authentik, return email_verified: true from the email scope mapping for sources you trust)", id.user)
            } else {
                format!(
                    "needs a verified email address, and {} has none: the provider sent no email where email_claim looks, or did not vouch for it (no email_verified){}. This is a mismatch between gatehouse's configuration and the provider: request the `email` scope (scopes), set email_claim to the claim that holds the address, or, for a provider that never sends email_verified, set require_email_verified = false",
                    id.user,
                    carried(claims)
                )
            };
            return self.deny(rule, detail);
        };
        let unverified = id.email_verified == Some(false)
            || crate::identity::claim_bool(claims, "email_verified") == Some(false);
        if unverified {
            return self.deny(
                rule,
                format!("needs an email the provider has verified, and {email} is marked email_verified: false (the provider must vouch for its emails: in Authentik, return email_verified: true from the email scope mapping for sources you trust)"),
            );
        }
        let Some(domain) = email_domain(email) else {
            return self.deny(
                rule,
                format!("needs a plain address with one @, and `{email}` is not one"),
            );
        };
        let lower = email.to_ascii_lowercase();
        let listed = self.emails.contains(&lower)
            || self.email_file.as_ref().is_some_and(|f| f.contains(&lower));
        let domains: Vec<&str> = self.domains.iter().map(String::as_str).collect();
        if listed || host_allowed(&domain, &domains) {
            return Ok(());
        }
        let what = if self.domains.is_empty() {
            "lists the allowed addresses".to_string()
        } else {
            format!("allows the domains {}", self.domains.join(", "))
        };
        self.deny(rule, format!("{what}, and {email} is not allowed"))
    }
}

/// The configured policy and the request's own (a route's rules, the forward-auth URL's
/// query): every one must pass.
pub fn check_all(
    configured: &Policy,
    extra: &[&Policy],
    id: &Identity,
    claims: &Value,
) -> Result<(), Denial> {
    configured.check(id, claims)?;
    extra.iter().try_for_each(|p| p.check(id, claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(groups: &[&str], emails: &[&str], domains: &[&str]) -> AccessRules {
        AccessRules {
            groups: groups.iter().map(|s| s.to_string()).collect(),
            emails: emails.iter().map(|s| s.to_string()).collect(),
            emails_file: None,
            email_domains: domains.iter().map(|s| s.to_string()).collect(),
            claims: Vec::new(),
        }
    }

    fn who(email: &str, groups: &[&str]) -> Identity {
        Identity {
            sub: "s".into(),
            user: email.into(),
            email: Some(email.into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn email_domains_match_the_part_after_the_only_at() {
        let p = Policy::from_config(&rules(&[], &[], &["company.com"])).unwrap();
        let c = json!({});
        assert!(p.check(&who("a@company.com", &[]), &c).is_ok());
        assert!(p.check(&who("A@COMPANY.COM", &[]), &c).is_ok());
        for bad in [
            "attacker@evil.com@company.com",
            "attacker@company.com@evil.com",
            "a@evil.com",
            "a@sub.company.com",
            "a@company.com.evil.com",
            "a@evilcompany.com",
            "a@company.com.",
            "a@\u{212A}ompany.com",
            "company.com",
            "@company.com",
        ] {
            assert!(p.check(&who(bad, &[]), &c).is_err(), "accepted {bad:?}");
        }
        let sub = Policy::from_config(&rules(&[], &[], &[".company.com"])).unwrap();
        assert!(sub.check(&who("a@eu.company.com", &[]), &c).is_ok());
        assert!(sub.check(&who("a@eucompany.com", &[]), &c).is_err());
    }

    #[test]
    fn unverified_or_missing_email_never_passes_an_email_rule() {
        let p = Policy::from_config(&rules(&[], &["a@x.org"], &[])).unwrap();
        let denial = p
            .check(&who("a@x.org", &[]), &json!({"email_verified": false}))
            .unwrap_err();
        assert!(denial.to_string().contains("email_verified"), "{denial}");
        let mut none = who("a@x.org", &[]);
        none.email = None;
        assert!(p.check(&none, &json!({})).is_err());
        assert!(p
            .check(&who("a@x.org", &[]), &json!({"email_verified": true}))
            .is_ok());
    }

    #[test]
    fn groups_need_one_in_common_and_the_denial_names_both_sides() {
        let p = Policy::from_config(&rules(&["admins", "ops"], &[], &[])).unwrap();
        assert!(p.check(&who("a@x", &["dev", "ops"]), &json!({})).is_ok());
        let d = p.check(&who("a@x", &["dev"]), &json!({})).unwrap_err();
        assert_eq!(d.rule, "allowed_groups");
        let text = d.to_string();
        assert!(
            text.contains("admins, ops") && text.contains("a@x is in dev"),
            "{text}"
        );
        assert!(p.check(&who("a@x", &["Admins"]), &json!({})).is_err());
        // No groups at all: named as a likely mismatch, with the setting and the names.
        let d = p
            .check(&who("a@x", &[]), &json!({"sub": "1", "roles": ["x"]}))
            .unwrap_err()
            .to_string();
        assert!(
            d.contains("no groups at all")
                && d.contains("groups_claim")
                && d.contains("carries the claims roles, sub")
                && !d.contains("\"x\""),
            "{d}"
        );
    }

    #[test]
    fn required_claims_follow_dotted_paths_and_lists() {
        let mut r = rules(&[], &[], &[]);
        r.claims = vec![
            ("realm_access.roles".into(), "admin".into()),
            ("tenant".into(), "acme".into()),
        ];
        let p = Policy::from_config(&r).unwrap();
        let ok = json!({"realm_access": {"roles": ["user", "admin"]}, "tenant": "acme"});
        assert!(p.check(&who("a@x", &[]), &ok).is_ok());
        let bad = json!({"realm_access": {"roles": ["user"]}, "tenant": "acme"});
        let d = p.check(&who("a@x", &[]), &bad).unwrap_err();
        assert!(d.to_string().contains("realm_access.roles=admin"), "{d}");
        assert!(p.check(&who("a@x", &[]), &json!({})).is_err());
        // A claim the token does not carry at all: the denial lists what it does carry.
        let d = p
            .check(&who("a@x", &[]), &json!({"sub": "1", "tenant": "acme"}))
            .unwrap_err()
            .to_string();
        assert!(
            d.contains("no such claim; the ID token carries the claims sub, tenant"),
            "{d}"
        );
    }

    #[test]
    fn query_rules_narrow_and_never_widen() {
        let configured = Policy::from_config(&rules(&["dev"], &[], &[])).unwrap();
        let q = Policy::from_query("allowed_groups=ops&redirect=true")
            .unwrap()
            .unwrap();
        let c = json!({});
        assert!(check_all(&configured, &[&q], &who("a@x", &["dev", "ops"]), &c).is_ok());
        // In the query's group but not the configured one: still refused.
        let d = check_all(&configured, &[&q], &who("a@x", &["ops"]), &c).unwrap_err();
        assert_eq!(d.source, RuleSource::Config);
        let d = check_all(&configured, &[&q], &who("a@x", &["dev"]), &c).unwrap_err();
        assert_eq!(d.source, RuleSource::Query);
        assert!(Policy::from_query("redirect=true").unwrap().is_none());
        assert!(Policy::from_query("allowed_group=ops").is_err());
        assert!(Policy::from_query("allowed_groups=").is_err());
        let both = Policy::from_query("allowed_emails=b@y.org&allowed_email_domains=x.org")
            .unwrap()
            .unwrap();
        assert!(both.check(&who("a@x.org", &[]), &c).is_ok());
        assert!(both.check(&who("b@y.org", &[]), &c).is_ok());
        assert!(both.check(&who("c@y.org", &[]), &c).is_err());
    }

    /// A policy whose `allowed_emails_file` is `path`, read as configuration reads it.
    fn with_file(path: &std::path::Path) -> Policy {
        let text = std::fs::read_to_string(path).unwrap();
        let mut r = rules(&[], &[], &[]);
        r.emails_file = Some(EmailsFile {
            path: path.to_path_buf(),
            emails: crate::config::emails_file::parse(&text).unwrap(),
        });
        Policy::from_config(&r).unwrap()
    }

    #[test]
    fn the_email_file_is_re_read_when_it_changes_and_a_bad_one_keeps_the_last_list() {
        let dir = std::env::temp_dir().join(format!("gh-authz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("emails.txt");
        std::fs::write(&path, "# team\nalice@x.org\n").unwrap();
        let p = with_file(&path);
        let file = p.email_file.as_ref().unwrap();
        let c = json!({});
        let allowed = |e: &str| p.check(&who(e, &[]), &c).is_ok();
        assert!(allowed("alice@x.org") && allowed("ALICE@x.org"));
        assert!(!allowed("bob@x.org"));
        // The watcher's step, run here: a fresh fingerprint reads the file.
        let mut seen = None;
        std::fs::write(&path, "Bob@X.org\n").unwrap();
        file.reload(&mut seen);
        assert!(allowed("bob@x.org") && !allowed("alice@x.org"));
        // A line that is not one address: the last good list stays.
        std::fs::write(&path, "carol@x.org, dave@x.org\n").unwrap();
        let mut seen = None;
        file.reload(&mut seen);
        assert!(allowed("bob@x.org"));
        assert!(!allowed("carol@x.org") && !allowed("carol@x.org, dave@x.org"));
        // Gone: the last good list stays too.
        std::fs::remove_file(&path).unwrap();
        file.reload(&mut seen);
        assert!(allowed("bob@x.org"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn query_lists_follow_the_settings_rule() {
        let c = json!({});
        for q in [
            "allowed_groups=Domain%20Admins",
            "allowed_groups=Domain+Admins",
            "allowed_groups=Domain Admins",
            "allowed_groups=ops,%20Domain%20Admins%20,",
        ] {
            let p = Policy::from_query(q).unwrap().unwrap();
            assert!(p.check(&who("a@x", &["Domain Admins"]), &c).is_ok(), "{q}");
            for other in ["Domain", "Admins", "DomainAdmins"] {
                assert!(p.check(&who("a@x", &[other]), &c).is_err(), "{q}: {other}");
            }
        }
        let e = Policy::from_query("allowed_emails=a@x.org%20b@y.org").unwrap_err();
        assert_eq!(
            e,
            "`allowed_emails`: \"a@x.org b@y.org\" contains spaces; separate items with commas: a@x.org,b@y.org"
        );
        let e = Policy::from_query("allowed_email_domains=x.org+y.org").unwrap_err();
        assert!(e.contains("separate items with commas: x.org,y.org"), "{e}");
    }
}
