//! The bad-token suite (CONTRACTS §4, OIDC Core §3.1.3.7): each case logs in through the
//! in-process IdP minting one bad token and checks that no session results and that the
//! page says what was wrong.

use crate::flow::{login, world, World};
use crate::support::idp::{Mint, Signer};
use crate::support::upstream::seen;
use crate::support::{Browser, Resp};
use serde_json::{json, Value};

async fn attempt(w: &World) -> (Resp, Browser) {
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("{}/", w.gh.url)).await;
    (resp, b)
}

async fn refused(w: &World, status: u16, needle: &str) {
    let (resp, b) = attempt(w).await;
    assert_eq!(
        resp.status, status,
        "expected {status} mentioning {needle:?}, got {resp:?}"
    );
    assert!(
        resp.body.contains(needle),
        "page should mention {needle:?}: {}",
        resp.body
    );
    assert!(
        b.cookie("_gatehouse").is_none() && b.cookie("_gatehouse_0").is_none(),
        "no session after a refused token"
    );
}

async fn with_tweak(f: impl Fn(&mut Value) + Send + Sync + 'static, status: u16, needle: &str) {
    let w = world(&[]).await;
    w.idp.tweak(f);
    refused(&w, status, needle).await;
}

async fn with_mint(mint: Mint, status: u16, needle: &str) {
    let w = world(&[]).await;
    w.idp.set_mint(mint);
    refused(&w, status, needle).await;
}

#[tokio::test]
async fn wrong_issuer_shows_both() {
    let w = world(&[]).await;
    w.idp.tweak(|c| c["iss"] = json!("https://evil.example"));
    refused(&w, 502, "https://evil.example").await;
    let (resp, _) = attempt(&w).await;
    assert!(
        resp.body.contains(&w.idp.issuer),
        "the expected issuer is shown too"
    );
}

#[tokio::test]
async fn issuer_with_an_extra_trailing_slash_is_named() {
    let w = world(&[]).await;
    let slash = format!("{}/", w.idp.issuer);
    w.idp.tweak(move |c| c["iss"] = json!(slash.clone()));
    refused(&w, 502, "only a trailing slash differs").await;
}

#[tokio::test]
async fn token_for_another_client() {
    with_tweak(
        |c| c["aud"] = json!("another-app"),
        502,
        "issued for another client",
    )
    .await;
}

#[tokio::test]
async fn several_audiences_with_a_foreign_azp() {
    with_tweak(
        |c| {
            c["aud"] = json!([crate::support::idp::CLIENT_ID, "other"]);
            c["azp"] = json!("other");
        },
        502,
        "authorized party",
    )
    .await;
}

#[tokio::test]
async fn missing_required_claims() {
    for claim in ["aud", "sub", "iat", "exp", "iss"] {
        let name = claim.to_string();
        with_tweak(
            move |c| {
                c.as_object_mut().unwrap().remove(&name);
            },
            502,
            &format!("no `{claim}` claim"),
        )
        .await;
    }
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens() {
    let now = gatehouse::util::now_secs() as i64;
    with_tweak(move |c| c["exp"] = json!(now - 600), 502, "expired").await;
    with_tweak(move |c| c["nbf"] = json!(now + 600), 502, "not valid yet").await;
}

#[tokio::test]
async fn bad_signatures_rs256_and_es256() {
    with_mint(
        Mint {
            signer: Signer::Rsa2,
            ..Mint::default()
        },
        502,
        "signature does not verify",
    )
    .await;
    with_mint(
        Mint {
            signer: Signer::EcOther,
            ..Mint::default()
        },
        502,
        "signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn es256_tokens_with_the_published_key_work() {
    let w = world(&[]).await;
    w.idp.set_mint(Mint {
        signer: Signer::Ec,
        ..Mint::default()
    });
    let echo = login(&w, &Browser::new(), "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
}

#[tokio::test]
async fn alg_none_is_never_accepted() {
    with_mint(
        Mint {
            signer: Signer::None,
            ..Mint::default()
        },
        502,
        "unsigned",
    )
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    with_mint(
        Mint {
            signer: Signer::Hs256WithPublicKey,
            ..Mint::default()
        },
        502,
        "HS256",
    )
    .await;
}

#[tokio::test]
async fn wrong_nonce_is_a_client_error() {
    with_tweak(|c| c["nonce"] = json!("replayed"), 400, "nonce").await;
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_once_then_is_rate_limited() {
    let w = world(&[]).await;
    assert_eq!(w.idp.jwks_fetches(), 1, "loaded once at start-up");
    // A key rotated in after start-up: the refetch finds it and the login works.
    let rsa2 = w.idp.state.keys.rsa2_jwk.clone();
    let rsa1 = w.idp.state.keys.rsa1_jwk.clone();
    w.idp.set_jwks(vec![rsa1, rsa2]);
    w.idp.set_mint(Mint {
        signer: Signer::Rsa2,
        kid: Some(Some("k2".into())),
        ..Mint::default()
    });
    let echo = login(&w, &Browser::new(), "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(w.idp.jwks_fetches(), 2);
    // A forged kid right after: no second fetch within the interval, and the login fails.
    w.idp.set_mint(Mint {
        signer: Signer::Rsa1,
        kid: Some(Some("forged".into())),
        ..Mint::default()
    });
    refused(&w, 502, "not in the provider").await;
    refused(&w, 502, "not in the provider").await;
    assert_eq!(
        w.idp.jwks_fetches(),
        2,
        "unknown kids must not hammer the provider"
    );
}

/// A world whose IdP publishes `keys(idp)` from the start.
async fn world_with_jwks(keys: impl Fn(&crate::support::idp::Keys) -> Vec<Value>) -> World {
    let idp = crate::support::idp::TestIdp::start().await;
    idp.set_jwks(keys(&idp.state.keys));
    let up = crate::support::upstream::Upstream::start().await;
    let gh = crate::support::start(crate::support::config(&up.url, &idp.issuer, &[])).await;
    World { idp, up, gh }
}

#[tokio::test]
async fn no_kid_with_several_keys_is_refused_with_one_key_it_works() {
    let w = world_with_jwks(|k| vec![k.rsa1_jwk.clone(), k.rsa2_jwk.clone()]).await;
    w.idp.set_mint(Mint {
        kid: Some(None),
        ..Mint::default()
    });
    refused(&w, 502, "names no key id").await;
    let w1 = world_with_jwks(|k| vec![k.rsa1_jwk.clone()]).await;
    w1.idp.set_mint(Mint {
        kid: Some(None),
        ..Mint::default()
    });
    let echo = login(&w1, &Browser::new(), "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
}

#[tokio::test]
async fn unusable_keys_in_the_jwks_are_ignored() {
    let w = world_with_jwks(|k| {
        vec![
            json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0", "kid": "k1"}),
            json!({"kty": "EC", "crv": "P-521", "kid": "p", "x": "AA", "y": "AA"}),
            json!({"kty": "unknown", "kid": "u"}),
            json!({"kty": "RSA", "kid": "broken"}),
            k.rsa1_jwk.clone(),
        ]
    })
    .await;
    let echo = login(&w, &Browser::new(), "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
}
