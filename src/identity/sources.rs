//! Where a mapped claim is read from: the signed ID token, or the provider's userinfo
//! answer (OIDC Core §5.3), kept apart and never merged into one object.
//!
//! The ID token's own claims always win, by any path a mapping names: a path belongs
//! to the ID token when the token has a claim that any reading of the path starts at
//! (the literal name, `realm_access.roles`, or a dotted prefix of it, `realm_access`),
//! or names one in `_claim_names` (OIDC Core §5.6.2: its value is held elsewhere).
//! Userinfo answers only a path the ID token has nothing on. So a userinfo key spelled
//! like a dotted path can never be read in place of the token's nested claim.
//!
//! A claim that vouches for another (`email_verified` for `email`, `phone_number_verified`
//! for `phone_number`, OIDC Core §5.1) counts only for the value of the source that sent
//! it ([`Sources::flag`]).
//!
//! Trusts its inputs: the ID token was verified, and userinfo's `sub` equals its `sub`
//! (`auth/tokens.rs`).

use super::claim_at;
use serde_json::Value;

/// Flags and the claim each vouches for (OIDC Core §5.1).
const VOUCHES: [(&str, &str); 2] = [
    ("email_verified", "email"),
    ("phone_number_verified", "phone_number"),
];

/// The claims of one sign-in (or refresh with a new ID token), by source.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    id_token: &'a Value,
    userinfo: Option<&'a Value>,
}

/// True when `claims` has a claim that a reading of `path` starts at: the literal name,
/// or a name followed by `.` at the start of `path`.
fn starts(claims: &Value, path: &str) -> bool {
    let Some(map) = claims.as_object() else {
        return false;
    };
    map.contains_key(path)
        || path
            .match_indices('.')
            .any(|(i, _)| map.contains_key(&path[..i]))
}

/// True when `claims` says anything about `path`: a claim it starts at, or a name in
/// `_claim_names` (the value held elsewhere, OIDC Core §5.6.2).
fn speaks_for(claims: &Value, path: &str) -> bool {
    starts(claims, path) || claims.get("_claim_names").is_some_and(|n| starts(n, path))
}

impl<'a> Sources<'a> {
    /// The ID token's claims, with userinfo's when it was asked.
    pub fn new(id_token: &'a Value, userinfo: Option<&'a Value>) -> Sources<'a> {
        Sources { id_token, userinfo }
    }

    /// The signed token's claims alone (a bearer token, or no userinfo).
    pub fn signed(id_token: &'a Value) -> Sources<'a> {
        Sources::new(id_token, None)
    }

    /// The ID token's claims, which hold `sub` and every time claim.
    pub fn id_token(&self) -> &'a Value {
        self.id_token
    }

    /// The source that answers `path`: the ID token whenever it says anything about it,
    /// userinfo only otherwise.
    fn source_of(&self, path: &str) -> Option<&'a Value> {
        if speaks_for(self.id_token, path) {
            return Some(self.id_token);
        }
        self.userinfo.filter(|u| speaks_for(u, path))
    }

    /// The value at `path` (a claim or a dotted path), from the source that answers it. A
    /// flag that vouches for another claim is read as [`Sources::flag`] reads it.
    pub fn at(&self, path: &str) -> Option<&'a Value> {
        if let Some((flag, subject)) = VOUCHES.iter().find(|(f, _)| *f == path) {
            return self.flag(subject, flag);
        }
        claim_at(self.source_of(path)?, path)
    }

    /// `flag` (`email_verified`) as it vouches for the value at `subject` (the mapped
    /// email): the flag of the source that supplies that value, and never another's.
    /// When the ID token supplies it, the token's own flag; without one, userinfo's only
    /// when userinfo names the very same value. When userinfo supplies it, userinfo's
    /// flag: the ID token's vouches for the token's value, not for this one.
    pub fn flag(&self, subject: &str, flag: &str) -> Option<&'a Value> {
        match self.source_of(subject) {
            None => self.id_token.get(flag),
            Some(src) if std::ptr::eq(src, self.id_token) => {
                self.id_token.get(flag).or_else(|| {
                    let signed = claim_at(self.id_token, subject)?;
                    let info = self.userinfo?;
                    (claim_at(info, subject) == Some(signed))
                        .then(|| info.get(flag))
                        .flatten()
                })
            }
            Some(info) => info.get(flag),
        }
    }

    /// The names (never the values) of the claims each source carried: the ID token's,
    /// and userinfo's when it was read. For pages that name a configuration mismatch.
    pub fn names(&self) -> (Vec<String>, Option<Vec<String>>) {
        let names = |v: &Value| -> Vec<String> {
            v.as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        (names(self.id_token), self.userinfo.map(names))
    }

    /// True when the value at `path` was moved out of its source (`_claim_names` names it,
    /// and the source holds no value there: Entra ID's groups overage).
    pub fn held_elsewhere(&self, path: &str) -> bool {
        self.source_of(path).is_some_and(|src| {
            src.get("_claim_names").is_some_and(|n| starts(n, path))
                && claim_at(src, path).is_none()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn userinfo_never_answers_a_path_the_id_token_speaks_for() {
        let id = json!({"sub": "1", "realm_access": {"roles": ["viewer"]}, "a.b": {"c": 1},
            "team": {"lead": "bob"}, "_claim_names": {"groups": "src1"}});
        let info = json!({"sub": "1", "realm_access.roles": ["admin"], "a.b.c": 2,
            "team.name": "root", "groups": ["admin"], "nickname": "al", "x.y": "dotted"});
        let s = Sources::new(&id, Some(&info));
        assert_eq!(s.at("realm_access.roles"), Some(&json!(["viewer"])));
        // The ID token's `realm_access` says which roles there are; a userinfo key
        // spelled as the path never adds one.
        let no_roles = json!({"sub": "1", "realm_access": {}});
        let s2 = Sources::new(&no_roles, Some(&info));
        assert_eq!(s2.at("realm_access.roles"), None);
        // A literal dotted name in the token owns every path below it.
        assert_eq!(s.at("a.b.c"), None);
        assert_eq!(s.at("team.name"), None, "`team` is the token's");
        // Named in `_claim_names`: the token says where the value is; userinfo's is not it.
        assert_eq!(s.at("groups"), None);
        assert!(s.held_elsewhere("groups"));
        // What the token has nothing on, userinfo fills in (dotted names too).
        assert_eq!(s.at("nickname"), Some(&json!("al")));
        assert_eq!(s.at("x.y"), Some(&json!("dotted")));
        assert_eq!(Sources::signed(&id).at("nickname"), None);
    }

    #[test]
    fn a_flag_vouches_only_for_its_own_sources_value() {
        let pair = |id: Value, info: Value| {
            let s = Sources::new(&id, Some(&info));
            (
                s.flag("email", "email_verified").cloned(),
                s.at("email_verified").cloned(),
                s.at("phone_number_verified").cloned(),
            )
        };
        // The token's address, userinfo's flag for another one: nothing vouches.
        let (e, e2, _) = pair(
            json!({"email": "ceo@corp"}),
            json!({"email": "al@gmail", "email_verified": true}),
        );
        assert_eq!((e, e2), (None, None));
        // ...for the same address, userinfo's flag counts.
        let (e, _, _) = pair(
            json!({"email": "al@corp"}),
            json!({"email": "al@corp", "email_verified": "true"}),
        );
        assert_eq!(e, Some(json!("true")));
        // The token's own flag wins over userinfo's.
        let (e, _, _) = pair(
            json!({"email": "al@corp", "email_verified": false}),
            json!({"email": "al@corp", "email_verified": true}),
        );
        assert_eq!(e, Some(json!(false)));
        // Userinfo's address: the token's flag never vouches for it.
        let (e, _, _) = pair(json!({"email_verified": true}), json!({"email": "al@corp"}));
        assert_eq!(e, None);
        let (e, _, _) = pair(
            json!({"email_verified": true}),
            json!({"email": "al@corp", "email_verified": false}),
        );
        assert_eq!(e, Some(json!(false)));
        // Phone numbers alike.
        let (_, _, p) = pair(
            json!({"phone_number": "+1 555 0100"}),
            json!({"phone_number": "+1 555 0199", "phone_number_verified": true}),
        );
        assert_eq!(p, None);
        let (_, _, p) = pair(
            json!({"phone_number_verified": true}),
            json!({"phone_number": "+1 555 0199"}),
        );
        assert_eq!(p, None);
        // A mapped email at another claim (`upn`) pairs with the flag the same way.
        let id = json!({"upn": "ceo@corp"});
        let info = json!({"upn": "al@gmail", "email_verified": true});
        assert_eq!(
            Sources::new(&id, Some(&info)).flag("upn", "email_verified"),
            None
        );
    }
}
