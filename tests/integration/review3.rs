//! Third adversarial review, of issue 15 (provider presets, error pages, CLI), kept as
//! reproductions: each `review3_` test asserts what a user or operator is promised and
//! FAILS on main at 741567d; the `review3_held_` tests pin what held.

use crate::flow::{login, world};
use crate::support::idp::{Mint, CLIENT_ID};
use crate::support::upstream::seen;
use crate::support::{with_bearer, Browser};
use serde_json::{json, Value};

fn now() -> i64 {
    gatehouse::util::now_secs() as i64
}

/// Finding 1. gatehouse never makes an unverified email the user (README, `identity.rs`),
/// and the keycloak preset now maps the user from `preferred_username` instead. In a realm
/// with "Email as username" the username IS the email, chosen at self-registration or
/// changed in the account console without verification, so the guard is gone: a user who
/// claims `boss@corp.example` (email_verified: false) arrives upstream as that user.
#[tokio::test]
async fn review3_an_unverified_email_cannot_become_the_user_through_preferred_username() {
    // The keycloak preset's user_claim (the test IdP's issuer has no /realms/ path).
    // Keycloak lowercases usernames, not emails: the second case differs only in case.
    for email in ["boss@corp.example", "Boss@Corp.Example"] {
        let w = world(&[("user_claim", "preferred_username")]).await;
        w.idp.tweak(move |c| {
            c["preferred_username"] = json!("boss@corp.example");
            c["email"] = json!(email);
            c["email_verified"] = json!(false);
        });
        let r = login(&w, &Browser::new(), "/").await;
        let users = serde_json::from_str::<Value>(&r.body)
            .ok()
            .map(|echo| seen(&echo, "x-forwarded-user"))
            .unwrap_or_default();
        assert!(
            users.is_empty(),
            "the unverified address {email} became X-Forwarded-User (status {}): {users:?}",
            r.status
        );
        assert_ne!(r.status, 200, "{r:?}");
    }
}

/// Finding 1, the same through a bearer token (same mapping, same hole).
#[tokio::test]
async fn review3_an_unverified_email_as_username_bearer_token_is_refused() {
    let w = world(&[
        ("user_claim", "preferred_username"),
        ("bearer_tokens", "true"),
    ])
    .await;
    let t = now();
    let claims = json!({"iss": w.idp.issuer, "sub": "u-1", "aud": CLIENT_ID, "exp": t + 300,
        "iat": t, "preferred_username": "boss@corp.example", "email": "boss@corp.example",
        "email_verified": false});
    let token = w.idp.state.keys.sign(&Mint::default(), &claims);
    let r = with_bearer(&format!("{}/api/x", w.gh.url), &token).await;
    assert_ne!(r.status, 200, "{r:?}");
}

/// What held around finding 1: a verified address as the username still signs in, and a
/// plain username next to an unverified email is the user (the email is not passed on).
#[tokio::test]
async fn review3_held_a_plain_username_next_to_an_unverified_email_is_the_user() {
    let w = world(&[("user_claim", "preferred_username")]).await;
    w.idp.tweak(|c| {
        c["preferred_username"] = json!("kate");
        c["email"] = json!("kate@corp.example");
        c["email_verified"] = json!(false);
    });
    let r = login(&w, &Browser::new(), "/").await;
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["kate"]);
    assert!(seen(&echo, "x-forwarded-email").is_empty(), "{echo}");
}

/// Finding 2. The pre-parse that refuses an option in value position prints the whole
/// next argument, value included: `--cookie-secret --client-secret=VALUE` writes the
/// client secret to stderr (a Pod's log, a CI log), where clap alone would have named
/// only the option.
#[test]
fn review3_a_forgotten_value_never_prints_the_next_options_secret() {
    for (missing, next) in [
        ("--cookie-secret", "--client-secret=hunter2-very-secret"),
        ("--upstream", "--cookie-secret=hunter2-very-secret"),
        ("--client-id", "--client-secret=hunter2-very-secret"),
    ] {
        let Err(e) = gatehouse::cli::parse_args(["gatehouse", "serve", missing, next]) else {
            panic!("{missing} {next} was accepted");
        };
        let text = e.render().to_string();
        assert!(text.contains(missing), "names the option: {text}");
        assert!(
            !text.contains("hunter2-very-secret"),
            "the secret is printed: {text}"
        );
    }
}

/// Finding 3 (fail-closed, functional). The google preset accepts `iss:
/// accounts.google.com` at sign-in, but a bearer token carrying the same `iss` is routed
/// by a byte-for-byte comparison with `issuer_url` and refused as from an unknown issuer:
/// the same token is valid in a browser and "unknown" as a bearer token.
#[tokio::test]
async fn review3_the_google_issuer_alias_holds_for_bearer_tokens_too() {
    let w = world(&[("provider", "google"), ("bearer_tokens", "true")]).await;
    let bare = w
        .idp
        .issuer
        .strip_prefix("http://")
        .unwrap_or(&w.idp.issuer)
        .to_string();
    let t = now();
    let claims = json!({"iss": bare, "sub": "g-1", "aud": CLIENT_ID, "exp": t + 300,
        "iat": t, "email": "g@example.test", "email_verified": true});
    let token = w.idp.state.keys.sign(&Mint::default(), &claims);
    let r = with_bearer(&format!("{}/api/x", w.gh.url), &token).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// What held: the alias is exact. `accounts.google.com`-like spellings (another host
/// with the alias as prefix, a trailing slash, another scheme or port) are refused at
/// sign-in, and presets other than google accept no alias.
#[tokio::test]
async fn review3_held_the_issuer_alias_is_one_exact_spelling() {
    let w = world(&[("provider", "google")]).await;
    let bare = w.idp.issuer.strip_prefix("http://").unwrap().to_string();
    for bad in [
        format!("{bare}.evil"),
        format!("{bare}/"),
        format!("https://{bare}"),
        format!("{bare}:443"),
        format!("//{bare}"),
        format!(" {bare}"),
        format!("http:{bare}"),
    ] {
        let b2 = bad.clone();
        w.idp.tweak(move |c| c["iss"] = json!(b2));
        let r = login(&w, &Browser::new(), "/").await;
        assert_ne!(r.status, 200, "iss {bad} was accepted: {r:?}");
    }
    let b3 = bare.clone();
    w.idp.tweak(move |c| c["iss"] = json!(b3));
    let r = login(&w, &Browser::new(), "/").await;
    assert_eq!(r.status, 200, "the alias itself: {r:?}");

    let o = world(&[]).await;
    let bare = o.idp.issuer.strip_prefix("http://").unwrap().to_string();
    o.idp.tweak(move |c| c["iss"] = json!(bare));
    let r = login(&o, &Browser::new(), "/").await;
    assert_ne!(r.status, 200, "no alias outside google: {r:?}");
}

/// What held: claim names come from the provider, and the claim_mismatch page escapes
/// them (HTML) and never shows values.
#[tokio::test]
async fn review3_held_claim_names_on_the_mismatch_page_are_escaped() {
    let w = world(&[("user_claim", "upn")]).await;
    w.idp.tweak(|c| {
        c["<img src=x onerror=alert(1)>"] = json!("value-never-shown");
    });
    let b = Browser::new();
    let r = login(&w, &b, "/").await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(!r.body.contains("<img src=x"), "{}", r.body);
    assert!(r.body.contains("&lt;img src=x"), "{}", r.body);
    assert!(!r.body.contains("value-never-shown"), "{}", r.body);
}

/// Finding 5. An upstream URL with credentials (`http://user:password@host`) is accepted,
/// and every 502/504/431 page shows the configured URL as it is, to any user: the
/// password reaches every browser that meets an upstream failure.
#[tokio::test]
async fn review3_upstream_credentials_never_reach_an_error_page() {
    // Refused at start-up (never sent upstream, and error pages name the upstream), and
    // the refusal does not print the password either.
    let mut raw = gatehouse::config::RawConfig::default();
    for (k, v) in [
        ("upstream", "http://gh-user:upstream-password-9@127.0.0.1:9"),
        ("issuer_url", "https://sso.example.test"),
        ("client_id", "c"),
        ("client_secret", "s"),
        (
            "cookie_secret",
            "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
        ),
    ] {
        raw.set(k, v);
    }
    let problems = match gatehouse::config::Config::from_raw(&raw) {
        Ok(_) => panic!("an upstream with credentials was accepted"),
        Err(e) => e.problems.join("\n"),
    };
    assert!(
        problems.contains("must not carry a user name or password"),
        "{problems}"
    );
    assert!(!problems.contains("upstream-password-9"), "{problems}");
}

/// Finding 6 (upgrade hazard). Before issue 15 a `provider = "keycloak"` deployment without
/// `user_claim` sent its users upstream as their (verified) email; now the same file sends
/// their Keycloak username. Every upstream that keys accounts, ACLs or audit by the user
/// header meets new users, and a username can equal a name the upstream already knew for
/// someone else. Nothing at start-up or in `check` says the user header changed: a
/// configuration that relies on the preset's user_claim should be warned once.
#[test]
fn review3_the_keycloak_presets_new_user_claim_is_announced() {
    let mut raw = gatehouse::config::RawConfig::default();
    for (k, v) in [
        ("provider", "keycloak"),
        ("issuer_url", "https://kc.example.test/realms/main"),
        ("client_id", "headlamp"),
        ("client_secret", "s"),
        ("upstream", "http://127.0.0.1:9"),
        (
            "cookie_secret",
            "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
        ),
    ] {
        raw.set(k, v);
    }
    let cfg = gatehouse::config::Config::from_raw(&raw).unwrap();
    assert_eq!(cfg.claims.user, "preferred_username");
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("user_claim") && w.contains("preferred_username")),
        "no warning that the user header is now the username: {:?}",
        cfg.warnings
    );
}
