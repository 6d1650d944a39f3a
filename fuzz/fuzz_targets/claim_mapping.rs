//! Claims -> identity (`identity::map_claims`), and the identity headers built from it.
//!
//! Input: knob bytes choosing the claim mapping, then a JSON text (the verified claims).
//!
//! Asserts, besides never panicking:
//! - an accepted user, email, preferred username and every group is non-empty, has no
//!   leading or trailing whitespace and no control character, and is a valid header
//!   value; no group contains a comma, groups are unique, and the comma-joined groups
//!   are a valid header value;
//! - the injected headers carry exactly those values (nothing dropped or altered);
//! - `sub` is the token's `sub` claim, never empty;
//! - an email is passed on only when the provider vouched for it (`email_verified` true,
//!   or absent with `require_email_verified` off; `false` never), and an unvouched email
//!   is never the user.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::config::{ClaimMapping, HeaderNames, PassAuthorization};
use gatehouse::headers::{self, IdentityValues};
use gatehouse::identity::map_claims;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Claim paths a configuration may name.
const PATHS: &[&str] = &[
    "email",
    "sub",
    "preferred_username",
    "name",
    "upn",
    "groups",
    "realm_access.roles",
    "resource_access.app.roles",
    "a.b",
    "",
];

/// Group paths, chosen by a bit mask.
const GROUP_PATHS: &[&str] = &[
    "groups",
    "realm_access.roles",
    "resource_access.app.roles",
    "roles",
    "email",
];

#[derive(Arbitrary, Debug)]
struct Input {
    user: u8,
    email: u8,
    preferred: u8,
    groups: u8,
    /// bit 0: groups_trim_leading_slash; bit 1: require_email_verified off.
    flags: u8,
    json: String,
}

fn pick(i: u8) -> String {
    PATHS[usize::from(i) % PATHS.len()].to_string()
}

fn check_value(what: &str, v: &str) {
    assert!(!v.is_empty(), "{what} is empty");
    assert_eq!(v.trim(), v, "{what} {v:?} has outer whitespace");
    assert!(
        !v.chars().any(char::is_control),
        "{what} {v:?} has a control character"
    );
    assert!(
        HeaderValue::from_str(v).is_ok(),
        "{what} {v:?} is no header value"
    );
}

/// What `email_verified` says: Some(true/false), or None when absent or not a boolean.
fn verified(claims: &Value) -> Option<bool> {
    match claims.get("email_verified")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn names() -> HeaderNames {
    let n = |s: &str| HeaderName::from_bytes(s.as_bytes()).expect("header name");
    HeaderNames {
        user: n("x-forwarded-user"),
        email: n("x-forwarded-email"),
        groups: vec![n("x-forwarded-groups")],
        preferred_username: n("x-forwarded-preferred-username"),
        id_token: None,
        authorization: PassAuthorization::None,
        token_is_access_token: false,
        strip_client_authorization: false,
        strip: Vec::new(),
        folded: Default::default(),
    }
}

fuzz_target!(|input: Input| {
    let Ok(claims) = serde_json::from_str::<Value>(&input.json) else {
        return;
    };
    let rules = ClaimMapping {
        user: pick(input.user),
        email: pick(input.email),
        groups: GROUP_PATHS
            .iter()
            .enumerate()
            .filter(|(i, _)| input.groups & (1 << i) != 0)
            .map(|(_, p)| p.to_string())
            .collect(),
        groups_trim_slash: input.flags & 1 != 0,
        require_email_verified: input.flags & 2 == 0,
        preferred_username: pick(input.preferred),
    };
    let Ok(id) = map_claims(&claims, &rules) else {
        return;
    };

    assert!(!id.sub.is_empty());
    match claims.get("sub") {
        Some(Value::String(s)) => assert_eq!(&id.sub, s),
        Some(Value::Number(n)) => assert_eq!(id.sub, n.to_string()),
        other => panic!("sub {:?} from claim {other:?}", id.sub),
    }

    check_value("user", &id.user);
    if let Some(e) = &id.email {
        check_value("email", e);
    }
    if let Some(p) = &id.preferred_username {
        check_value("preferred_username", p);
    }
    for (i, g) in id.groups.iter().enumerate() {
        check_value("group", g);
        assert!(!g.contains(','), "group {g:?} has a comma");
        assert!(!id.groups[..i].contains(g), "group {g:?} twice");
    }

    let vouched = verified(&claims).unwrap_or(!rules.require_email_verified);
    if id.email.is_some() {
        assert!(vouched, "unvouched email passed on: {claims}");
        assert_ne!(verified(&claims), Some(false));
    }
    if rules.user == rules.email {
        assert!(vouched, "an unvouched email became the user: {claims}");
    }

    // The headers carry exactly these values.
    let names = names();
    let mut h = HeaderMap::new();
    headers::inject(
        &mut h,
        &names,
        &IdentityValues::new(&names, &id, "tok", None),
    );
    let got = |n: &HeaderName| h.get(n).map(|v| v.as_bytes().to_vec());
    assert_eq!(got(&names.user), Some(id.user.clone().into_bytes()));
    assert_eq!(got(&names.email), id.email.clone().map(String::into_bytes));
    assert_eq!(
        got(&names.preferred_username),
        id.preferred_username.clone().map(String::into_bytes)
    );
    let joined = (!id.groups.is_empty()).then(|| id.groups.join(",").into_bytes());
    assert_eq!(got(&names.groups[0]), joined);
    if let Some(j) = &joined {
        assert_eq!(
            j.split(|&b| b == b',').count(),
            id.groups.len(),
            "the joined groups split differently"
        );
    }
});
