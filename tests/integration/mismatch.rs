//! Sign-ins that fail because gatehouse's configuration asks for a claim the provider does
//! not send: the page (HTML) and the JSON name the mismatch as one, name the claim and the
//! setting, and list the claims that were sent, by name only, never their values.

use crate::flow::world;
use serde_json::json;

/// Follows a sign-in to its callback and returns the callback's answer (JSON when `json`).
async fn callback(w: &crate::flow::World, json: bool) -> crate::support::Resp {
    let b = crate::support::Browser::new();
    let authorize = b.get(&format!("{}/", w.gh.url)).await.location().unwrap();
    let callback = b.get(&authorize).await.location().unwrap();
    let accept: &[(&str, &str)] = if json {
        &[("accept", "application/json")]
    } else {
        &[]
    };
    let r = b.send(reqwest::Method::GET, &callback, accept).await;
    assert!(b.cookie("_gatehouse").is_none(), "no session from it");
    r
}

/// The default `user_claim = email` against a provider that sends no `email` (Vault with
/// scope `openid`): a configuration mismatch, not "something behind gatehouse failed".
#[tokio::test]
async fn a_missing_user_claim_is_named_as_a_configuration_mismatch() {
    let w = world(&[]).await;
    w.idp.tweak(|c| {
        let m = c.as_object_mut().unwrap();
        m.remove("email");
        m.remove("email_verified");
        m.insert("secret_note".into(), json!("do-not-show-this-value"));
    });
    let page = callback(&w, false).await;
    assert_eq!(page.status, 502, "{page:?}");
    let body = &page.body;
    assert!(
        body.contains("configuration does not match the identity provider"),
        "{body}"
    );
    assert!(
        !body.contains("Something behind gatehouse failed"),
        "{body}"
    );
    assert!(body.contains("user_claim"), "the setting to change: {body}");
    assert!(body.contains("no `email` claim"), "the claim: {body}");
    for name in ["sub", "preferred_username", "groups", "secret_note"] {
        assert!(body.contains(name), "names {name} as sent: {body}");
    }
    assert!(
        !body.contains("do-not-show-this-value") && !body.contains("admins"),
        "names only, never values: {body}"
    );
    assert!(
        body.contains("scopes"),
        "says which setting adds a claim: {body}"
    );

    let r = callback(&w, true).await;
    assert_eq!(r.status, 502, "{r:?}");
    let j = r.json();
    assert_eq!(j["error"], "claim_mismatch", "{j}");
    assert_eq!(j["claim"], "email", "{j}");
    assert_eq!(j["setting"], "user_claim", "{j}");
    let names = j["token_claims"].as_array().unwrap();
    assert!(
        names.contains(&json!("secret_note")) && names.contains(&json!("sub")),
        "{j}"
    );
    assert!(!names.contains(&json!("email")), "{j}");
    assert!(!r.body.contains("do-not-show-this-value"), "{j}");
}

/// Another mapped user claim, with userinfo read: the page lists what each source sent.
#[tokio::test]
async fn the_mismatch_lists_userinfo_claims_when_userinfo_was_read() {
    let w = world(&[("user_claim", "upn"), ("userinfo", "true")]).await;
    *w.idp.state.userinfo.lock().unwrap() =
        Some(json!({"sub": "alice", "nickname": "al", "locale": "en"}));
    let r = callback(&w, true).await;
    assert_eq!(r.status, 502, "{r:?}");
    let j = r.json();
    assert_eq!(j["error"], "claim_mismatch", "{j}");
    assert_eq!(
        (&j["claim"], &j["setting"]),
        (&json!("upn"), &json!("user_claim"))
    );
    assert_eq!(
        j["userinfo_claims"],
        json!(["locale", "nickname", "sub"]),
        "{j}"
    );
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("userinfo carries locale, nickname, sub"),
        "{message}"
    );
    assert!(!message.contains("\"al\""), "{message}");

    let page = callback(&w, false).await;
    assert_eq!(page.status, 502);
    assert!(
        page.body.contains("user_claim = &quot;upn&quot;")
            || page.body.contains("user_claim = \"upn\""),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("Sign in again"),
        "signing in again meets the same mismatch: {}",
        page.body
    );
}

/// `allowed_groups` against a token that carries no groups claim at all: the refusal says
/// the provider sent none where `groups_claim` looks and lists what the token did carry,
/// rather than only "not in the group".
#[tokio::test]
async fn a_groups_rule_against_a_token_without_groups_names_the_mismatch() {
    let w = world(&[("allowed_groups", "admins")]).await;
    w.idp.tweak(|c| {
        let m = c.as_object_mut().unwrap();
        m.remove("groups");
        m.insert("roles".into(), json!(["admins-role-value"]));
    });
    let b = crate::support::Browser::new();
    let (page, _) = b.follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 403, "{page:?}");
    let body = &page.body;
    assert!(body.contains("no groups at all"), "{body}");
    assert!(
        body.contains("groups_claim") && body.contains("scopes"),
        "{body}"
    );
    assert!(
        body.contains("roles") && body.contains("preferred_username"),
        "{body}"
    );
    assert!(!body.contains("admins-role-value"), "names only: {body}");
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{}/", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let j = r.json();
    assert_eq!(j["error"], "denied_by_rule", "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("no groups at all") && message.contains("carries the claims"),
        "{message}"
    );
}

/// An email rule against a provider that sends no email (`user_claim = sub`): the refusal
/// names the settings that bring an email, and the claims the token carried.
#[tokio::test]
async fn an_email_rule_against_a_token_without_email_names_the_mismatch() {
    let w = world(&[
        ("user_claim", "sub"),
        ("allowed_email_domains", "example.test"),
    ])
    .await;
    w.idp.tweak(|c| {
        let m = c.as_object_mut().unwrap();
        m.remove("email");
        m.remove("email_verified");
    });
    let (page, _) = crate::support::Browser::new()
        .follow(&format!("{}/", w.gh.url))
        .await;
    assert_eq!(page.status, 403, "{page:?}");
    let body = &page.body;
    assert!(
        body.contains("email_claim") && body.contains("`email` scope"),
        "{body}"
    );
    assert!(body.contains("require_email_verified"), "{body}");
    assert!(
        body.contains("carries the claims aud, exp, groups"),
        "{body}"
    );
}

/// The rest of the class: a token for another issuer or audience than configured, and an
/// email as the user from a provider that never sends `email_verified`, are titled as a
/// mismatch; any other failed sign-in as one between gatehouse and the provider. None is
/// "something behind gatehouse failed", which reads as the application.
#[tokio::test]
async fn other_sign_in_failures_never_blame_the_application() {
    type Tweak = fn(&mut serde_json::Value);
    let cases: [(&str, Tweak, &str); 4] = [
        (
            "iss",
            |c| c["iss"] = json!("https://other.example"),
            "configuration does not match",
        ),
        (
            "aud",
            |c| c["aud"] = json!("someone-else"),
            "configuration does not match",
        ),
        (
            "email_verified",
            |c| {
                c.as_object_mut().unwrap().remove("email_verified");
            },
            "configuration does not match",
        ),
        (
            "exp",
            |c| c["exp"] = json!(1_000_000),
            "failed between gatehouse and the identity provider",
        ),
    ];
    for (what, tweak, title) in cases {
        let w = world(&[]).await;
        w.idp.tweak(tweak);
        let page = callback(&w, false).await;
        assert_eq!(page.status, 502, "{what}: {page:?}");
        assert!(page.body.contains(title), "{what}: {}", page.body);
        assert!(
            !page.body.contains("Something behind gatehouse failed"),
            "{what}: {}",
            page.body
        );
        if what == "email_verified" {
            assert!(
                page.body.contains("require_email_verified = false"),
                "{}",
                page.body
            );
        }
    }
}
