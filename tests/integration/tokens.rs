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
async fn several_audiences_need_trusted_audiences_and_our_azp() {
    let two = |azp: &'static str| {
        move |c: &mut Value| {
            c["aud"] = json!([crate::support::idp::CLIENT_ID, "other"]);
            c["azp"] = json!(azp);
        }
    };
    // OIDC Core 3.1.3.7 step 3: an audience nobody listed is refused, and named.
    with_tweak(two(crate::support::idp::CLIENT_ID), 502, "`other`").await;
    let w = world(&[("trusted_audiences", "other")]).await;
    w.idp.tweak(two("other"));
    refused(&w, 502, "authorized party").await;
    w.idp.tweak(two(crate::support::idp::CLIENT_ID));
    let (resp, _) = attempt(&w).await;
    assert_eq!(
        resp.status, 200,
        "trusted extra audience with our azp: {resp:?}"
    );
}

#[tokio::test]
async fn an_access_token_is_never_an_id_token() {
    for typ in ["at+jwt", "application/at+JWT"] {
        with_mint(
            Mint {
                typ: Some(typ.into()),
                ..Mint::default()
            },
            502,
            "is an access token",
        )
        .await;
    }
}

#[tokio::test]
async fn at_hash_is_checked_when_present() {
    let w = world(&[]).await;
    w.idp.set_mint(Mint {
        at_hash: true,
        ..Mint::default()
    });
    let (resp, _) = attempt(&w).await;
    assert_eq!(resp.status, 200, "the right at_hash passes: {resp:?}");
    w.idp.set_mint(Mint {
        at_hash: true,
        tweak: std::sync::Arc::new(|c| c["at_hash"] = json!("AAAAAAAAAAAAAAAAAAAAAA")),
        ..Mint::default()
    });
    refused(&w, 502, "at_hash").await;
}

#[tokio::test]
async fn string_expires_in_and_refreshes_without_an_id_token_keep_the_session() {
    let w = world(&[("refresh_before_secs", "100000")]).await;
    w.idp.set_mint(Mint {
        body_tweak: std::sync::Arc::new(|b, refresh| {
            b["expires_in"] = json!("300");
            if refresh {
                b.as_object_mut().unwrap().remove("id_token");
            }
        }),
        ..Mint::default()
    });
    let b = Browser::new();
    let first = login(&w, &b, "/").await;
    assert_eq!(first.status, 200, "{first:?}");
    let token = seen(&first.json(), "x-forwarded-id-token")[0].clone();
    // refresh_before exceeds the lifetime: this request refreshes, and the response
    // holds no ID token (OIDC Core 12.2).
    let again = b.get(&format!("{}/again", w.gh.url)).await;
    assert_eq!(again.status, 200, "{again:?}");
    let echo = again.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(
        seen(&echo, "x-forwarded-id-token"),
        vec![token],
        "the sign-in ID token is kept"
    );
    assert!(w.idp.refreshes() >= 1);
    assert!(
        again
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("_gatehouse=")),
        "the refreshed session is stored"
    );
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

/// A refresh result is kept a minute for late requests that still carry the superseded
/// cookie, but never past its own expiry: no expired ID token reaches the upstream.
#[tokio::test]
async fn a_kept_refresh_result_is_never_used_past_its_expiry() {
    let w = world(&[("refresh_before_secs", "1")]).await;
    w.idp.set_mint(Mint {
        ttl: 2,
        ..Mint::default()
    });
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    let old = b.cookie_header();
    let replay = || async {
        Browser::new()
            .send(
                reqwest::Method::GET,
                &format!("{}/me", w.gh.url),
                &[("cookie", old.as_str()), ("accept", "application/json")],
            )
            .await
    };
    // Due for refresh after a second: the old cookie refreshes.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let refreshed = replay().await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    assert_eq!(w.idp.refreshes(), 1);
    // Once that refresh's own token has expired, the old cookie gets nothing from it.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = replay().await;
    if late.status == 200 {
        let token = &seen(&late.json(), "x-forwarded-id-token")[0];
        let claims = crate::interop::decode(token);
        let exp = claims["exp"].as_u64().unwrap_or(0);
        assert!(
            exp > gatehouse::util::now_secs(),
            "an expired ID token went upstream: exp {exp}"
        );
    } else {
        assert_eq!(late.status, 401, "{late:?}");
    }
}
