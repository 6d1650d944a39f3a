//! The bad-token suite (CONTRACTS §4, OIDC Core §3.1.3.7): each case logs in through the
//! in-process IdP minting one bad token and checks that no session results and that the
//! page says what was wrong.

use crate::flow::{login, world, World};
use crate::support::idp::{Mint, Signer};
use crate::support::upstream::seen;
use crate::support::{expires_at, with_bearer};
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

/// `at` is `want` seconds from now, give or take the test's own running time.
fn about(at: u64, want: i64) -> bool {
    let now = gatehouse::util::now_secs() as i64;
    (at as i64 - (now + want)).abs() <= 3
}

/// OIDC Core 12.2: a refresh response without an ID token keeps the session's identity.
/// When no token is forwarded, the session lives on by `expires_in` (here a string),
/// past the kept ID token's own expiry: nothing expired reaches the upstream.
#[tokio::test]
async fn string_expires_in_and_refreshes_without_an_id_token_keep_the_session() {
    let w = world(&[("refresh_before_secs", "100000"), ("header_id_token", "")]).await;
    w.idp.set_mint(Mint {
        body_tweak: std::sync::Arc::new(|b, refresh| {
            b["expires_in"] = json!("300");
            if refresh {
                b["expires_in"] = json!("3600");
                b.as_object_mut().unwrap().remove("id_token");
            }
        }),
        ..Mint::default()
    });
    let b = Browser::new();
    let first = login(&w, &b, "/").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(seen(&first.json(), "x-forwarded-id-token").is_empty());
    // refresh_before exceeds the lifetime: this request refreshes, and the response
    // holds no ID token (OIDC Core 12.2).
    let again = b.get(&format!("{}/again", w.gh.url)).await;
    assert_eq!(again.status, 200, "{again:?}");
    let echo = again.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert!(w.idp.refreshes() >= 1);
    assert!(
        again
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("_gatehouse=")),
        "the refreshed session is stored"
    );
    let at = expires_at(&w.gh.url, &b).await;
    assert!(about(at, 3600), "extended by expires_in: {at}");
}

/// The ID token is forwarded (`X-Forwarded-Id-Token`, the default) and a refresh brings
/// no new one: the session is not extended past the forwarded token's `exp`, the provider
/// is not asked again on every request meanwhile, and once the token has expired the user
/// signs in: the upstream is never handed it expired.
#[tokio::test]
async fn a_session_never_outlives_the_id_token_it_forwards() {
    let w = world(&[("refresh_before_secs", "2")]).await;
    w.idp.set_mint(Mint {
        ttl: 3,
        body_tweak: std::sync::Arc::new(|b, refresh| {
            if refresh {
                b["expires_in"] = json!(3600);
                b.as_object_mut().unwrap().remove("id_token");
            }
        }),
        ..Mint::default()
    });
    let b = Browser::new();
    let first = login(&w, &b, "/").await;
    assert_eq!(first.status, 200, "{first:?}");
    let token = seen(&first.json(), "x-forwarded-id-token")[0].clone();
    let exp = crate::interop::decode(&token)["exp"].as_u64().unwrap();
    assert_eq!(expires_at(&w.gh.url, &b).await, exp);
    // Due for refresh: the provider answers without an ID token.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let again = b
        .send(
            reqwest::Method::GET,
            &format!("{}/again", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        seen(&again.json(), "x-forwarded-id-token"),
        vec![token.clone()]
    );
    assert_eq!(w.idp.refreshes(), 1);
    assert_eq!(
        expires_at(&w.gh.url, &b).await,
        exp,
        "not extended past the forwarded ID token's exp"
    );
    assert_eq!(w.idp.refreshes(), 1, "not asked again on every request");
    // Past the token's exp: sign in again, the expired token never goes upstream.
    while gatehouse::util::now_secs() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let late = b
        .send(
            reqwest::Method::GET,
            &format!("{}/late", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(late.status, 401, "{late:?}");
}

/// `pass_authorization = "access_token"` forwards the access token, whose lifetime the
/// token response gives as `expires_in`: a session that forwards it ends with it, even
/// when the ID token lives longer.
#[tokio::test]
async fn a_forwarded_access_token_bounds_the_session_by_expires_in() {
    let w = world(&[
        ("pass_authorization", "access_token"),
        ("header_id_token", ""),
    ])
    .await;
    w.idp.set_mint(Mint {
        ttl: 600,
        body_tweak: std::sync::Arc::new(|b, _| b["expires_in"] = json!(100)),
        ..Mint::default()
    });
    let b = Browser::new();
    let echo = login(&w, &b, "/").await.json();
    assert!(seen(&echo, "authorization")[0].starts_with("Bearer at-"));
    let at = expires_at(&w.gh.url, &b).await;
    assert!(
        about(at, 100),
        "bounded by expires_in, not the ID token: {at}"
    );
    // Nothing forwarded expires early: the ID token bounds the session alone.
    let w = world(&[("header_id_token", "")]).await;
    w.idp.set_mint(Mint {
        ttl: 600,
        body_tweak: std::sync::Arc::new(|b, _| b["expires_in"] = json!(100)),
        ..Mint::default()
    });
    let b = Browser::new();
    login(&w, &b, "/").await;
    let at = expires_at(&w.gh.url, &b).await;
    assert!(about(at, 600), "the ID token's exp: {at}");
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

/// A token from `w`'s IdP as an API client would send it: the defaults of a bearer token
/// for `client_id`, with `over` on top (`null` removes a claim).
fn bearer_token(w: &World, mint: &Mint, over: Value) -> String {
    let now = gatehouse::util::now_secs() as i64;
    let mut claims = json!({"iss": w.idp.issuer, "sub": "ci-bot", "aud": crate::support::idp::CLIENT_ID,
        "exp": now + 300, "iat": now, "email": "ci@example.test", "email_verified": true,
        "groups": ["ci"]});
    for (k, v) in over.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    w.idp.state.keys.sign(mint, &claims)
}

/// A bearer token refused with 401 `invalid_token` on the sidecar and the forward-auth
/// endpoint, the description naming `why`, the token never echoed, nothing proxied.
async fn bearer_refused(w: &World, token: &str, why: &str) {
    for path in ["/api/x", "/oauth2/auth", "/oauth2/userinfo"] {
        let r = with_bearer(&format!("{}{path}", w.gh.url), token).await;
        assert_eq!(r.status, 401, "{why} on {path}: {r:?}");
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer ")
                && challenge.contains("error=\"invalid_token\"")
                && challenge.contains("error_description=\"")
                && challenge.contains(why),
            "{why} on {path}: {challenge}"
        );
        assert!(r.body.contains(why), "{why} on {path}: {}", r.body);
        assert!(!r.body.contains(token) && !challenge.contains(token));
        assert!(
            seen_nothing(&r),
            "{path}: a refused token reached the upstream"
        );
    }
}

/// True unless the response is the echo upstream's.
fn seen_nothing(r: &Resp) -> bool {
    serde_json::from_str::<Value>(&r.body).map_or(true, |v| v.get("headers").is_none())
}

/// The same provider's token for the same user must meet the same authentication
/// policy as a browser sign-in: `acr_values` and `max_age` bind bearer tokens too.
#[tokio::test]
async fn bearer_tokens_meet_the_authentication_policy_of_a_sign_in() {
    let w = world(&[
        ("bearer_tokens", "true"),
        ("acr_values", "phr"),
        ("max_age", "60"),
    ])
    .await;
    // A browser sign-in without acr and auth_time is refused...
    refused(&w, 502, "no `auth_time` claim").await;
    let now = gatehouse::util::now_secs() as i64;
    let plain = Mint::default();
    // ... and so is the same provider's token for the same user, whatever is missing.
    for (over, why) in [
        (json!({}), "no `auth_time` claim"),
        (json!({"auth_time": now}), "(acr) is missing"),
        (json!({"auth_time": now, "acr": "pwd"}), "(acr) is `pwd`"),
        (json!({"auth_time": now, "acr": "phrh"}), "(acr) is `phrh`"),
        (
            json!({"acr": "phr"}),
            "no `auth_time` claim, which max_age requires",
        ),
        (
            json!({"acr": "phr", "auth_time": now - 3600}),
            "longer ago than max_age",
        ),
        (
            json!({"acr": "phr", "auth_time": "yesterday"}),
            "not a well-formed JWT",
        ),
    ] {
        bearer_refused(&w, &bearer_token(&w, &plain, over), why).await;
    }
    // A compliant token passes; so does a compliant access token (typ at+jwt): API
    // clients present those, and only an ID token may not be one.
    let good = json!({"acr": "phr", "auth_time": now - 10});
    for mint in [
        plain.clone(),
        Mint {
            typ: Some("at+jwt".into()),
            ..Mint::default()
        },
    ] {
        let r = with_bearer(
            &format!("{}/api/x", w.gh.url),
            &bearer_token(&w, &mint, good.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(seen(&r.json(), "x-forwarded-user"), vec!["ci@example.test"]);
    }
    // The one-request session ends with the token it forwards.
    let token = bearer_token(&w, &plain, good);
    let exp = crate::interop::decode(&token)["exp"].as_u64().unwrap();
    let r = with_bearer(&format!("{}/oauth2/userinfo", w.gh.url), &token).await;
    assert_eq!(r.json()["expires_at"].as_u64(), Some(exp), "{r:?}");
}

/// What the sign-in refuses in the identity (groups overage, an unverified email as the
/// user, a claim that cannot be passed on) is refused in a bearer token too.
#[tokio::test]
async fn bearer_tokens_meet_the_identity_checks_of_a_sign_in() {
    let w = world(&[("bearer_tokens", "true")]).await;
    let plain = Mint::default();
    for (over, why) in [
        (
            json!({"groups": null, "_claim_names": {"groups": "src1"},
                "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}}),
            "groups overage",
        ),
        (json!({"email_verified": false}), "has not verified"),
        (json!({"email_verified": null}), "has not verified"),
        (
            json!({"email": " ci@example.test"}),
            "leading or trailing whitespace",
        ),
        (json!({"email": null}), "no `email` claim"),
    ] {
        bearer_refused(&w, &bearer_token(&w, &plain, over), why).await;
    }
}

/// Tokens from `bearer_issuers` stand for users as much as the main issuer's: they meet
/// `acr_values` and `max_age` too (fail closed).
#[tokio::test]
async fn extra_bearer_issuers_meet_the_authentication_policy_too() {
    let other = crate::support::idp::TestIdp::start().await;
    let pair = format!("{}=ci-pipeline", other.issuer);
    let w = world(&[
        ("bearer_tokens", "true"),
        ("bearer_issuers", &pair),
        ("acr_values", "phr"),
        ("max_age", "60"),
    ])
    .await;
    let client = reqwest::Client::new();
    for _ in 0..500 {
        let r: Value = client
            .get(format!("{}/readyz", w.gh.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["bearer_issuers"][0]["ready"] == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let now = gatehouse::util::now_secs() as i64;
    let sign = |over: Value| {
        let mut claims = json!({"iss": other.issuer, "sub": "pipeline-7", "aud": "ci-pipeline",
            "exp": now + 300, "iat": now, "email": "ci@example.test", "email_verified": true});
        for (k, v) in over.as_object().unwrap() {
            claims[k] = v.clone();
        }
        other.state.keys.sign(&Mint::default(), &claims)
    };
    for (over, why) in [
        (json!({"auth_time": now}), "(acr) is missing"),
        (json!({"acr": "phr"}), "no `auth_time` claim"),
        (
            json!({"acr": "phr", "auth_time": now - 3600}),
            "longer ago than max_age",
        ),
    ] {
        bearer_refused(&w, &sign(over), why).await;
    }
    let ok = with_bearer(
        &format!("{}/oauth2/auth", w.gh.url),
        &sign(json!({"acr": "phr", "auth_time": now})),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// Google with `hosted_domain`: a bearer token from another Workspace domain, or from
/// none, is refused as the browser sign-in is (403 naming the rule: the token is valid,
/// the user may not enter).
#[tokio::test]
async fn bearer_tokens_from_another_google_workspace_are_refused() {
    let w = world(&[
        ("provider", "google"),
        ("hosted_domain", "example.com"),
        ("bearer_tokens", "true"),
    ])
    .await;
    let plain = Mint::default();
    for over in [
        json!({"hd": "evil.com"}),
        json!({}),
        json!({"hd": "example.com.evil.com"}),
    ] {
        let token = bearer_token(&w, &plain, over.clone());
        for path in ["/api/x", "/oauth2/auth"] {
            let r = with_bearer(&format!("{}{path}", w.gh.url), &token).await;
            assert_eq!(r.status, 403, "{over} on {path}: {r:?}");
            assert!(r.body.contains("hd=example.com"), "{}", r.body);
            assert!(seen_nothing(&r));
        }
    }
    w.idp.tweak(|c| c["hd"] = json!("evil.com"));
    let (page, _) = attempt(&w).await;
    assert_eq!(page.status, 403, "the browser sign-in alike: {page:?}");
    let r = with_bearer(
        &format!("{}/api/x", w.gh.url),
        &bearer_token(&w, &plain, json!({"hd": "example.com"})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// A refresh that sends no new ID token keeps the sign-in's (not forwarded here, so the
/// session is extended): that one must still meet `max_age`, as a refreshed ID token
/// would have to, or the user signs in again.
#[tokio::test]
async fn a_kept_id_token_must_still_meet_max_age() {
    let w = world(&[
        ("max_age", "1"),
        ("clock_skew_secs", "0"),
        ("refresh_before_secs", "100000"),
        ("header_id_token", ""),
    ])
    .await;
    let now = gatehouse::util::now_secs() as i64;
    w.idp.set_mint(Mint {
        tweak: std::sync::Arc::new(move |c| c["auth_time"] = json!(now)),
        body_tweak: std::sync::Arc::new(|b, refresh| {
            if refresh {
                b.as_object_mut().unwrap().remove("id_token");
            }
        }),
        ..Mint::default()
    });
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{}/again", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401, "authenticated over max_age ago: {r:?}");
    assert!(w.idp.refreshes() >= 1);
}

/// Waits until `/readyz` reports every `bearer_issuers` issuer's keys loaded.
async fn bearer_issuers_ready(w: &World) {
    let client = reqwest::Client::new();
    for _ in 0..500 {
        let r: Value = client
            .get(format!("{}/readyz", w.gh.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let all = r["bearer_issuers"].as_array().cloned().unwrap_or_default();
        if all.iter().all(|i| i["ready"] == json!(true)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the bearer issuers' keys never loaded");
}

/// No leeway on `exp`, whichever way a token comes: past its `exp` on gatehouse's clock,
/// however little and well within `clock_skew_secs`, a token is refused as a bearer token
/// (from `issuer_url` or a `bearer_issuers` issuer, `exp` a float too) and as the ID
/// token of a sign-in, so it is never forwarded expired. `nbf` keeps its leeway.
#[tokio::test]
async fn a_token_past_its_exp_is_refused_whatever_the_clock_skew() {
    let other = crate::support::idp::TestIdp::start().await;
    let pair = format!("{}=ci-pipeline", other.issuer);
    let w = world(&[
        ("bearer_tokens", "true"),
        ("bearer_issuers", &pair),
        ("clock_skew_secs", "300"),
    ])
    .await;
    bearer_issuers_ready(&w).await;
    let now = gatehouse::util::now_secs() as i64;
    let plain = Mint::default();
    for exp in [json!(now - 5), json!(now), json!(now as f64 - 0.5)] {
        let token = bearer_token(&w, &plain, json!({ "exp": exp }));
        bearer_refused(&w, &token, "expired").await;
    }
    let theirs = other.state.keys.sign(
        &plain,
        &json!({"iss": other.issuer, "sub": "pipeline-7", "aud": "ci-pipeline",
            "exp": now - 5, "iat": now - 300, "email": "ci@example.test", "email_verified": true}),
    );
    bearer_refused(&w, &theirs, "expired").await;
    let early = bearer_token(&w, &plain, json!({"nbf": now + 60}));
    let r = with_bearer(&format!("{}/api/x", w.gh.url), &early).await;
    assert_eq!(r.status, 200, "nbf within clock_skew_secs: {r:?}");
    // The ID token of a sign-in, expired 5 s ago: refused at the callback, saying so.
    w.idp.set_mint(Mint {
        ttl: -5,
        ..Mint::default()
    });
    refused(&w, 502, "expired").await;
}

/// The forwarded access token (AKS) past its `exp`, within `clock_skew_secs`: the sign-in
/// is refused naming it, instead of a session that forwards it expired.
#[tokio::test]
async fn an_expired_access_token_to_forward_refuses_the_sign_in() {
    const AKS: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
    let v1 = crate::support::idp::TestIdp::start().await;
    let w = world(&[
        ("access_token_audience", AKS),
        ("access_token_issuer", &v1.issuer),
        ("clock_skew_secs", "300"),
    ])
    .await;
    let (st, iss) = (std::sync::Arc::clone(&v1.state), v1.issuer.clone());
    w.idp.set_mint(Mint {
        body_tweak: std::sync::Arc::new(move |b, _| {
            let t = gatehouse::util::now_secs() as i64;
            b["access_token"] = json!(st.keys.sign(
                &Mint::default(),
                &json!({"iss": iss, "sub": "alice", "aud": AKS, "exp": t - 5, "iat": t - 300}),
            ));
        }),
        ..Mint::default()
    });
    refused(
        &w,
        502,
        "access token to forward was refused: the token expired",
    )
    .await;
}

/// Every date claim is read one way (`verify::seconds`): the forwarded access token's
/// `exp` sent as a JSON float bounds the session at a refresh without a new ID token, as
/// at sign-in.
#[tokio::test]
async fn a_float_exp_on_a_refreshed_access_token_bounds_the_session() {
    const AKS: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
    let v1 = crate::support::idp::TestIdp::start().await;
    let w = world(&[
        ("access_token_audience", AKS),
        ("access_token_issuer", &v1.issuer),
        ("refresh_before_secs", "100000"),
    ])
    .await;
    let (st, iss) = (std::sync::Arc::clone(&v1.state), v1.issuer.clone());
    w.idp.set_mint(Mint {
        ttl: 3600,
        body_tweak: std::sync::Arc::new(move |b, refresh| {
            let t = gatehouse::util::now_secs() as i64;
            let exp = if refresh {
                b.as_object_mut().unwrap().remove("id_token");
                json!((t + 120) as f64 + 0.5)
            } else {
                json!(t + 3000)
            };
            b["access_token"] = json!(st.keys.sign(
                &Mint::default(),
                &json!({"iss": iss, "sub": "alice", "aud": AKS, "exp": exp, "iat": t}),
            ));
            b["expires_in"] = json!(3600);
        }),
        ..Mint::default()
    });
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    assert!(
        w.idp.refreshes() >= 1,
        "refresh_before asks for one at once"
    );
    let at = expires_at(&w.gh.url, &b).await;
    assert!(
        about(at, 120),
        "the refreshed access token expires in 120 s, the session in {} s",
        at as i64 - gatehouse::util::now_secs() as i64
    );
}
