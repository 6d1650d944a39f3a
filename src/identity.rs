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

/// Maps verified claims to an identity. `None` when there is no `sub`.
pub fn map_claims(claims: &Value, rules: &ClaimMapping) -> Option<Identity> {
    let sub = claims.get("sub").and_then(as_text)?;
    let clean = |s: Option<String>| s.filter(|s| !s.chars().any(|c| c.is_control()));
    let user =
        clean(claim_at(claims, &rules.user).and_then(as_text)).unwrap_or_else(|| sub.clone());
    let email = clean(claim_at(claims, &rules.email).and_then(as_text));
    let preferred_username = clean(claim_at(claims, &rules.preferred_username).and_then(as_text));
    let groups = match claim_at(claims, &rules.groups) {
        Some(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
        Some(Value::String(s)) => s.split(',').map(|g| g.trim().to_string()).collect(),
        _ => Vec::new(),
    };
    let groups = groups
        .into_iter()
        .filter(|g: &String| usable_in_header(g))
        .collect();
    Some(Identity {
        sub,
        user,
        email,
        groups,
        preferred_username,
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
            groups: groups.into(),
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
        assert!(map_claims(&json!({"email": "x"}), &rules("email", "groups")).is_none());
        let c = json!({"sub": "1", "email": "evil\r\nX-Forwarded-User: root", "groups": ["ok", "a,b", "bad\n"]});
        let id = map_claims(&c, &rules("preferred_username", "groups")).unwrap();
        assert_eq!(id.email, None);
        assert_eq!(id.groups, vec!["ok"]);
    }
}
