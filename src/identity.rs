//! Claims -> [`Identity`]: who the user is, by the configured mapping rules.
//!
//! Trusts its input: the claims come from an ID token that `oidc::verify` already checked,
//! and from a userinfo answer for the same `sub`, read apart from it (`sources.rs`: the
//! ID token's own claims always win, by any path).

mod sources;

pub use sources::Sources;

use crate::config::ClaimMapping;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The verified identity that gatehouse hands to the upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub sub: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The provider's `email_verified` for this email, when it sent one: the ID token's,
    /// or userinfo's for an address userinfo supplied or repeated ([`Sources::flag`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// A boolean claim, also when a provider sends it as the string "true" or "false".
pub fn claim_bool(claims: &Value, name: &str) -> Option<bool> {
    as_bool(claims.get(name)?)
}

/// A boolean, also as the string "true" or "false".
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Follows a dotted path (`realm_access.roles`) into the claims of one source.
pub fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    // A claim whose own name contains dots wins over the path reading.
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Why a claim value cannot be an identity header: refused, never trimmed or dropped,
/// so what the upstream sees is exactly what the provider vouched for.
fn unusable(v: &str) -> Option<&'static str> {
    if v.trim() != v {
        Some("it has leading or trailing whitespace")
    } else if v.chars().any(|c| c.is_control()) {
        Some("it contains control characters")
    } else {
        None
    }
}

/// Why verified claims make no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the ID token has no `sub` claim")]
    NoSubject,
    /// Entra ID with more than 200 groups: `_claim_names.groups` points elsewhere.
    #[error("the provider left the groups out of the token because the user is in too many of them (groups overage: `_claim_names` names `groups` instead of listing them), so gatehouse cannot tell which groups the user is in")]
    GroupsOverage,
    /// A claim the configuration reads is not sent: gatehouse's settings and what the
    /// provider sends disagree (neither the user's fault nor the upstream's).
    #[error("{0}")]
    MissingClaim(Box<MissingClaim>),
    #[error("the `{claim}` claim cannot be passed on: {why}")]
    Unusable { claim: String, why: &'static str },
    #[error("the user would be the email {email}, which the provider has not verified (email_verified {state}); map the user from another claim (user_claim, e.g. preferred_username or sub) or have the provider verify emails{}", if *.state == "is missing" { "; a provider that never sends email_verified (Vault, tsidp) needs require_email_verified = false" } else { "" })]
    UnverifiedEmailAsUser { email: String, state: &'static str },
}

/// A claim that gatehouse's configuration needs and the provider did not send, with the
/// names (never the values) of the claims it did send and the setting that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingClaim {
    /// The claim (or dotted path) that was looked for.
    pub claim: String,
    /// The setting that names it, e.g. `user_claim`.
    pub setting: &'static str,
    /// The ID token's claim names, sorted.
    pub token_claims: Vec<String>,
    /// Userinfo's claim names, sorted, when userinfo was read.
    pub userinfo_claims: Option<Vec<String>>,
}

impl MissingClaim {
    /// The claim `claim`, named by `setting`, missing from `sources`.
    pub fn new(claim: &str, setting: &'static str, sources: &Sources<'_>) -> MissingClaim {
        let (mut token_claims, mut userinfo_claims) = sources.names();
        token_claims.sort();
        if let Some(u) = userinfo_claims.as_mut() {
            u.sort();
        }
        MissingClaim {
            claim: claim.to_string(),
            setting,
            token_claims,
            userinfo_claims,
        }
    }

    /// The claim names that were sent, source by source, for a message.
    pub fn carried(&self) -> String {
        let list = |n: &[String]| {
            if n.is_empty() {
                "no claims".to_string()
            } else {
                n.join(", ")
            }
        };
        match &self.userinfo_claims {
            Some(u) => format!(
                "the ID token carries {}; userinfo carries {}",
                list(&self.token_claims),
                list(u)
            ),
            None => format!(
                "the ID token carries {} (userinfo was not read)",
                list(&self.token_claims)
            ),
        }
    }
}

impl std::fmt::Display for MissingClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gatehouse's configuration does not match what the identity provider sends: {} = \"{}\", but the provider sent no `{}` claim ({})",
            self.setting,
            self.claim,
            self.claim,
            self.carried()
        )?;
        if self.setting == "user_claim" {
            write!(f, "; gatehouse does not fall back to `sub`, since an email and a subject id must never share one namespace")?;
        }
        Ok(())
    }
}

/// One group path's values: a list, or one string that is one group (never split).
fn groups_at(claims: &Sources<'_>, path: &str) -> Vec<String> {
    match claims.at(path) {
        Some(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// True when a groups claim was moved out of the token (Entra ID overage: OIDC Core
/// §5.6.2 aggregated/distributed claims). Userinfo never stands in for groups the ID
/// token says are held elsewhere.
fn groups_overage(claims: &Sources<'_>, rules: &ClaimMapping) -> bool {
    rules.groups.iter().any(|p| claims.held_elsewhere(p))
}

/// A text claim, refused when its value cannot be passed on as it is.
fn text_claim(claims: &Sources<'_>, path: &str) -> Result<Option<String>, IdentityError> {
    let Some(v) = claims.at(path).and_then(as_text) else {
        return Ok(None);
    };
    match unusable(&v) {
        Some(why) => Err(IdentityError::Unusable {
            claim: path.to_string(),
            why,
        }),
        None => Ok(Some(v)),
    }
}

/// Maps the verified claims of one token to an identity: [`map_sources`] without userinfo.
pub fn map_claims(claims: &Value, rules: &ClaimMapping) -> Result<Identity, IdentityError> {
    map_sources(&Sources::signed(claims), rules)
}

/// Maps verified claims to an identity: `sub` from the ID token, every mapped path from
/// the source that answers it ([`Sources`]). An email the provider has not vouched for
/// (`email_verified` false; or absent, unless `require_email_verified` is off for a
/// provider that never sends the claim; or sent by one source for another source's
/// address) is never passed on, and cannot be the user.
pub fn map_sources(claims: &Sources<'_>, rules: &ClaimMapping) -> Result<Identity, IdentityError> {
    let sub = claims
        .id_token()
        .get("sub")
        .and_then(as_text)
        .ok_or(IdentityError::NoSubject)?;
    if groups_overage(claims, rules) {
        return Err(IdentityError::GroupsOverage);
    }
    let email_verified = claims
        .flag(&rules.email, "email_verified")
        .and_then(as_bool);
    let vouched = email_verified.unwrap_or(!rules.require_email_verified);
    let raw_email = text_claim(claims, &rules.email)?;
    let email = raw_email.clone().filter(|_| vouched);
    let user = text_claim(claims, &rules.user)?.ok_or_else(|| {
        IdentityError::MissingClaim(Box::new(MissingClaim::new(
            &rules.user,
            "user_claim",
            claims,
        )))
    })?;
    // An unverified email is never the user: by the email claim itself, or by another
    // claim carrying the same address (Keycloak's "email as username" makes
    // `preferred_username` the email, which a user may set without verifying it).
    let same_address = raw_email
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(&user));
    if !vouched && (rules.user == rules.email || (same_address && email_verified == Some(false))) {
        return Err(IdentityError::UnverifiedEmailAsUser {
            email: user,
            state: if email_verified == Some(false) {
                "is false"
            } else {
                "is missing"
            },
        });
    }
    let preferred_username = text_claim(claims, &rules.preferred_username)?;
    let mut groups: Vec<String> = Vec::new();
    for path in &rules.groups {
        for g in groups_at(claims, path) {
            let g = if rules.groups_trim_slash {
                g.strip_prefix('/').map(str::to_string).unwrap_or(g)
            } else {
                g
            };
            let why = unusable(&g).or(g.contains(',').then_some("a group name contains a comma, which would split it in two in the comma-joined group headers")).or(g.is_empty().then_some("a group name is empty"));
            if let Some(why) = why {
                return Err(IdentityError::Unusable {
                    claim: path.clone(),
                    why,
                });
            }
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(Identity {
        sub,
        user,
        email,
        groups,
        preferred_username,
        email_verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(user: &str, groups: &str) -> ClaimMapping {
        ClaimMapping {
            user: user.into(),
            email: "email".into(),
            groups: groups.split(',').map(str::to_string).collect(),
            groups_trim_slash: false,
            preferred_username: "preferred_username".into(),
            require_email_verified: true,
        }
    }

    #[test]
    fn keycloak_realm_roles_by_path() {
        let c = json!({"sub": "1", "email": "a@x", "email_verified": true, "realm_access": {"roles": ["admin", "dev"]}});
        let id = map_claims(&c, &rules("email", "realm_access.roles")).unwrap();
        assert_eq!(id.user, "a@x");
        assert_eq!(id.groups, vec!["admin", "dev"]);
    }

    #[test]
    fn no_fallback_to_sub_and_a_string_groups_claim_is_one_group() {
        let c = json!({"sub": "42", "groups": "a b"});
        let Err(IdentityError::MissingClaim(m)) = map_claims(&c, &rules("email", "groups")) else {
            panic!("a missing user claim is a configuration mismatch");
        };
        assert_eq!((m.claim.as_str(), m.setting), ("email", "user_claim"));
        assert_eq!(m.token_claims, vec!["groups", "sub"], "names, never values");
        assert!(!m.to_string().contains("a b"), "{m}");
        let id = map_claims(&c, &rules("sub", "groups")).unwrap();
        assert_eq!(id.user, "42");
        assert_eq!(id.groups, vec!["a b"], "one group, never split");
    }

    #[test]
    fn unverified_emails_are_never_passed_on() {
        let r = rules("preferred_username", "groups");
        for c in [
            json!({"sub": "1", "email": "a@x", "email_verified": false, "preferred_username": "a"}),
            json!({"sub": "1", "email": "a@x", "email_verified": "false", "preferred_username": "a"}),
            json!({"sub": "1", "email": "a@x", "preferred_username": "a"}),
        ] {
            let id = map_claims(&c, &r).unwrap();
            assert_eq!(id.email, None, "{c}");
        }
        // The email as the user: refused, naming why.
        let c = json!({"sub": "1", "email": "a@x", "email_verified": false});
        assert!(matches!(
            map_claims(&c, &rules("email", "groups")),
            Err(IdentityError::UnverifiedEmailAsUser { .. })
        ));
        // A provider that never sends the claim (tsidp, Vault) can be trusted by setting.
        let mut relaxed = rules("email", "groups");
        relaxed.require_email_verified = false;
        let c = json!({"sub": "1", "email": "a@x"});
        assert_eq!(
            map_claims(&c, &relaxed).unwrap().email.as_deref(),
            Some("a@x")
        );
        let c = json!({"sub": "1", "email": "a@x", "email_verified": false});
        assert!(map_claims(&c, &relaxed).is_err(), "false is never trusted");
    }

    #[test]
    fn values_that_cannot_be_passed_on_as_they_are_are_refused() {
        let r = rules("preferred_username", "groups");
        for c in [
            json!({"sub": "1", "preferred_username": "evil\r\nX-Forwarded-User: root"}),
            json!({"sub": "1", "preferred_username": " padded"}),
            json!({"sub": "1", "preferred_username": "a", "groups": ["ok", "a,b"]}),
            json!({"sub": "1", "preferred_username": "a", "groups": ["ok", " admins"]}),
            json!({"sub": "1", "preferred_username": "a", "groups": ["bad\n"]}),
            json!({"sub": "1", "preferred_username": "a", "email": "a@x\u{7}", "email_verified": true}),
        ] {
            assert!(
                matches!(map_claims(&c, &r), Err(IdentityError::Unusable { .. })),
                "{c}"
            );
        }
        assert_eq!(
            map_claims(&json!({"email": "x"}), &r),
            Err(IdentityError::NoSubject)
        );
    }
}

#[cfg(test)]
mod provider_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keycloak_roles_and_group_paths_merge() {
        let c = json!({"sub": "1", "groups": ["/admins", "/team/dev"],
            "realm_access": {"roles": ["offline_access", "admins"]},
            "resource_access": {"headlamp": {"roles": ["viewer"]}}});
        let mut r = ClaimMapping {
            user: "sub".into(),
            email: "email".into(),
            groups: vec![
                "groups".into(),
                "realm_access.roles".into(),
                "resource_access.headlamp.roles".into(),
            ],
            groups_trim_slash: false,
            preferred_username: "preferred_username".into(),
            require_email_verified: true,
        };
        let id = map_claims(&c, &r).unwrap();
        assert_eq!(
            id.groups,
            vec!["/admins", "/team/dev", "offline_access", "admins", "viewer"]
        );
        r.groups_trim_slash = true;
        let id = map_claims(&c, &r).unwrap();
        assert_eq!(
            id.groups,
            vec!["admins", "team/dev", "offline_access", "viewer"]
        );
    }

    #[test]
    fn entra_groups_overage_is_an_error_not_an_empty_list() {
        let c = json!({"sub": "1", "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}});
        let r = ClaimMapping {
            user: "sub".into(),
            email: "email".into(),
            groups: vec!["groups".into()],
            groups_trim_slash: false,
            preferred_username: "preferred_username".into(),
            require_email_verified: true,
        };
        assert_eq!(map_claims(&c, &r), Err(IdentityError::GroupsOverage));
        let ok = json!({"sub": "1", "groups": ["g1"], "_claim_names": {"other": "s"}});
        assert_eq!(map_claims(&ok, &r).unwrap().groups, vec!["g1"]);
    }
}
