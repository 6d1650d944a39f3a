//! Claims -> [`Identity`]: who the user is, by the configured mapping rules.
//!
//! Trusts its input: the claims come from an ID token that `oidc::verify` already checked.

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
    /// The provider's `email_verified` (from the ID token or userinfo), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// A boolean claim, also when a provider sends it as the string "true" or "false".
pub fn claim_bool(claims: &Value, name: &str) -> Option<bool> {
    match claims.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Follows a dotted path (`realm_access.roles`) into the claims.
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

/// Header values may not contain control characters; such group names are dropped and
/// commas would split one group into two, so they are dropped too.
fn usable_in_header(s: &str) -> bool {
    !s.is_empty() && !s.contains(',') && !s.chars().any(|c| c.is_control())
}

/// Why verified claims make no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the ID token has no `sub` claim")]
    NoSubject,
    /// Entra ID with more than 200 groups: `_claim_names.groups` points elsewhere.
    #[error("the provider left the groups out of the token because the user is in too many of them (groups overage: `_claim_names` names `groups` instead of listing them), so gatehouse cannot tell which groups the user is in")]
    GroupsOverage,
}

/// One group path's values: a list, or one string that is one group (never split).
fn groups_at(claims: &Value, path: &str) -> Vec<String> {
    match claim_at(claims, path) {
        Some(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
        Some(Value::String(s)) => s.split(',').map(|g| g.trim().to_string()).collect(),
        _ => Vec::new(),
    }
}

/// True when a groups claim was moved out of the token (Entra ID overage: OIDC Core
/// §5.6.2 aggregated/distributed claims).
fn groups_overage(claims: &Value, rules: &ClaimMapping) -> bool {
    let Some(names) = claims.get("_claim_names") else {
        return false;
    };
    rules
        .groups
        .iter()
        .any(|p| names.get(p).is_some() && claim_at(claims, p).is_none())
}

/// Maps verified claims to an identity.
pub fn map_claims(claims: &Value, rules: &ClaimMapping) -> Result<Identity, IdentityError> {
    let sub = claims
        .get("sub")
        .and_then(as_text)
        .ok_or(IdentityError::NoSubject)?;
    if groups_overage(claims, rules) {
        return Err(IdentityError::GroupsOverage);
    }
    let clean = |s: Option<String>| s.filter(|s| !s.chars().any(|c| c.is_control()));
    let user =
        clean(claim_at(claims, &rules.user).and_then(as_text)).unwrap_or_else(|| sub.clone());
    let email = clean(claim_at(claims, &rules.email).and_then(as_text));
    let preferred_username = clean(claim_at(claims, &rules.preferred_username).and_then(as_text));
    let mut groups: Vec<String> = Vec::new();
    for path in &rules.groups {
        for g in groups_at(claims, path) {
            let g = if rules.groups_trim_slash {
                g.strip_prefix('/').map(str::to_string).unwrap_or(g)
            } else {
                g
            };
            if usable_in_header(&g) && !groups.contains(&g) {
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
        email_verified: claim_bool(claims, "email_verified"),
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
        }
    }

    #[test]
    fn keycloak_realm_roles_by_path() {
        let c = json!({"sub": "1", "email": "a@x", "realm_access": {"roles": ["admin", "dev"]}});
        let id = map_claims(&c, &rules("email", "realm_access.roles")).unwrap();
        assert_eq!(id.user, "a@x");
        assert_eq!(id.groups, vec!["admin", "dev"]);
    }

    #[test]
    fn user_falls_back_to_sub_and_string_groups_split() {
        let c = json!({"sub": "42", "groups": "a, b"});
        let id = map_claims(&c, &rules("email", "groups")).unwrap();
        assert_eq!(id.user, "42");
        assert_eq!(id.groups, vec!["a", "b"]);
    }

    #[test]
    fn no_sub_no_identity_and_header_breaking_values_are_dropped() {
        assert_eq!(
            map_claims(&json!({"email": "x"}), &rules("email", "groups")),
            Err(IdentityError::NoSubject)
        );
        let c = json!({"sub": "1", "email": "evil\r\nX-Forwarded-User: root", "groups": ["ok", "a,b", "bad\n"]});
        let id = map_claims(&c, &rules("preferred_username", "groups")).unwrap();
        assert_eq!(id.email, None);
        assert_eq!(id.groups, vec!["ok"]);
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
        };
        assert_eq!(map_claims(&c, &r), Err(IdentityError::GroupsOverage));
        let ok = json!({"sub": "1", "groups": ["g1"], "_claim_names": {"other": "s"}});
        assert_eq!(map_claims(&ok, &r).unwrap().groups, vec!["g1"]);
    }
}
