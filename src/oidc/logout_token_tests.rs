//! One test per refusal class of `logout_token.rs`, with tokens signed by keys made here
//! (ES256, as the development IdP signs) and verified through a key cache that holds them.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

const NOW: u64 = 1_000_000;

/// A fresh P-256 key and its public JWK under `kid`.
fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

struct Idp {
    key: EncodingKey,
    /// Another key, unpublished, whose tokens claim the published key's id.
    forger: EncodingKey,
    jwk: Value,
    jwks: JwksCache,
}

impl Idp {
    fn new() -> Idp {
        let (key, jwk) = ec_key("k1");
        let (forger, _) = ec_key("k1");
        let jwks = JwksCache::holding(&json!({"keys": [jwk.clone()]}));
        Idp {
            key,
            forger,
            jwk,
            jwks,
        }
    }

    fn sign_with(&self, key: &EncodingKey, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        header.typ = typ.map(str::to_string);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.key, Some("logout+jwt"), claims)
    }
}

static ALGS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

fn want() -> Expected<'static> {
    Expected {
        issuer: "https://idp",
        issuer_aliases: &[],
        client_id: "app",
        trusted_audiences: &[],
        algs: &ALGS,
        now: NOW,
        skew: 30,
    }
}

fn good() -> Value {
    json!({
        "iss": "https://idp", "aud": "app", "sub": "u1", "sid": "s1",
        "iat": NOW - 5, "exp": NOW + 115, "jti": "j1",
        "events": {BACKCHANNEL_EVENT: {}},
    })
}

fn with(mut v: Value, k: &str, val: Value) -> Value {
    v[k] = val;
    v
}

fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

/// Claims checked as if the signature had verified.
fn claims(v: &Value) -> Result<LogoutToken, LogoutTokenError> {
    check_claims(v, &want())
}

#[tokio::test]
async fn a_signed_logout_token_names_what_to_end() {
    let idp = Idp::new();
    let t = verify(&idp.sign(&good()), &want(), &idp.jwks)
        .await
        .unwrap();
    assert_eq!(
        t,
        LogoutToken {
            sid: Some("s1".into()),
            sub: Some("u1".into()),
            iat: NOW - 5,
            exp: NOW + 115,
            jti: "j1".into(),
        }
    );
    let by_sid = claims(&without(good(), "sub")).unwrap();
    assert_eq!((by_sid.sid.as_deref(), by_sid.sub), (Some("s1"), None));
    let by_sub = claims(&without(good(), "sid")).unwrap();
    assert_eq!((by_sub.sid, by_sub.sub.as_deref()), (None, Some("u1")));
    // Extra claims are ignored (§2.4), an event value with members too.
    let extra = with(
        with(
            good(),
            "events",
            json!({BACKCHANNEL_EVENT: {"x": 1}, "other": 2}),
        ),
        "custom",
        json!(true),
    );
    assert!(claims(&extra).is_ok());
}

#[tokio::test]
async fn typ_is_logout_jwt_or_generic_jwt_in_any_spelling_else_refused() {
    let idp = Idp::new();
    for typ in [
        None,
        Some("logout+jwt"),
        Some("LOGOUT+JWT"),
        Some("application/logout+jwt"),
        Some("Application/Logout+JWT"),
        Some("JWT"),
    ] {
        let token = idp.sign_with(&idp.key, typ, &good());
        assert!(
            verify(&token, &want(), &idp.jwks).await.is_ok(),
            "typ {typ:?}"
        );
    }
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "secevent+jwt",
        "logout+jwt+x",
        "text/logout+jwt",
        "",
    ] {
        let token = idp.sign_with(&idp.key, Some(typ), &good());
        assert_eq!(
            verify(&token, &want(), &idp.jwks).await,
            Err(LogoutTokenError::Typ(typ.into())),
            "typ {typ:?}"
        );
    }
}

#[tokio::test]
async fn unsigned_forged_and_symmetric_tokens_are_refused() {
    let idp = Idp::new();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            enc(&json!({"alg": alg, "typ": "logout+jwt"})),
            enc(&good())
        );
        assert_eq!(
            verify(&unsigned, &want(), &idp.jwks).await,
            Err(LogoutTokenError::AlgNone)
        );
    }
    let forged = idp.sign_with(&idp.forger, Some("logout+jwt"), &good());
    assert_eq!(
        verify(&forged, &want(), &idp.jwks).await,
        Err(LogoutTokenError::BadSignature)
    );
    // HS256 keyed with the published key: refused even when allowed_algs lists HS256.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let secret = serde_json::to_vec(&idp.jwk).unwrap();
    let hs = jsonwebtoken::encode(&h, &good(), &EncodingKey::from_secret(&secret)).unwrap();
    let hs_allowed = [Algorithm::HS256, Algorithm::ES256];
    let lax = Expected {
        algs: &hs_allowed,
        ..want()
    };
    assert_eq!(
        verify(&hs, &lax, &idp.jwks).await,
        Err(LogoutTokenError::AlgNotAllowed("HS256".into()))
    );
    // A real signature with an algorithm outside allowed_algs.
    let rs_only = [Algorithm::RS256];
    let strict = Expected {
        algs: &rs_only,
        ..want()
    };
    assert_eq!(
        verify(&idp.sign(&good()), &strict, &idp.jwks).await,
        Err(LogoutTokenError::AlgNotAllowed("ES256".into()))
    );
    let mut other_kid = Header::new(Algorithm::ES256);
    other_kid.kid = Some("k9".into());
    let unknown = jsonwebtoken::encode(&other_kid, &good(), &idp.key).unwrap();
    assert_eq!(
        verify(&unknown, &want(), &idp.jwks).await,
        Err(LogoutTokenError::Key(KeyError::UnknownKid("k9".into())))
    );
    for junk in ["", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30.e30"] {
        assert_eq!(
            verify(junk, &want(), &idp.jwks).await,
            Err(LogoutTokenError::Malformed),
            "{junk:?}"
        );
    }
}

#[test]
fn issuer_and_audience_are_checked_as_in_id_tokens() {
    let e = claims(&with(good(), "iss", json!("https://idp/"))).unwrap_err();
    assert!(
        e.to_string().contains("only a trailing slash differs"),
        "{e}"
    );
    assert_eq!(
        claims(&without(good(), "iss")),
        Err(LogoutTokenError::Missing("iss"))
    );
    let aliases = ["accounts.idp".to_string()];
    let aliased = Expected {
        issuer_aliases: &aliases,
        ..want()
    };
    let by_alias = with(good(), "iss", json!("accounts.idp"));
    assert!(check_claims(&by_alias, &aliased).is_ok());
    assert!(matches!(
        claims(&by_alias),
        Err(LogoutTokenError::Issuer { .. })
    ));
    assert_eq!(
        claims(&without(good(), "aud")),
        Err(LogoutTokenError::Missing("aud"))
    );
    assert!(matches!(
        claims(&with(good(), "aud", json!("other"))),
        Err(LogoutTokenError::Audience { .. })
    ));
    assert!(claims(&with(good(), "aud", json!(["app"]))).is_ok());
    assert_eq!(
        claims(&with(good(), "aud", json!(["app", "x"]))),
        Err(LogoutTokenError::UntrustedAudience("x".into()))
    );
}

#[test]
fn iat_exp_and_nbf_bound_the_token_in_time() {
    assert_eq!(
        claims(&without(good(), "iat")),
        Err(LogoutTokenError::Missing("iat"))
    );
    assert!(
        claims(&with(good(), "iat", json!(NOW + 30))).is_ok(),
        "skew"
    );
    assert_eq!(
        claims(&with(good(), "iat", json!(NOW + 31))),
        Err(LogoutTokenError::IssuedInFuture(31))
    );
    assert!(matches!(
        claims(&with(good(), "iat", json!("yesterday"))),
        Err(LogoutTokenError::Invalid("iat", _))
    ));
    assert_eq!(
        claims(&without(good(), "exp")),
        Err(LogoutTokenError::Missing("exp")),
        "exp is REQUIRED (errata set 1)"
    );
    assert_eq!(
        claims(&with(good(), "exp", json!(NOW))),
        Err(LogoutTokenError::Expired(0)),
        "no leeway on exp"
    );
    assert_eq!(
        claims(&with(good(), "exp", json!(NOW - 60))),
        Err(LogoutTokenError::Expired(60))
    );
    assert!(claims(&with(good(), "nbf", json!(NOW + 10))).is_ok());
    assert_eq!(
        claims(&with(good(), "nbf", json!(NOW + 100))),
        Err(LogoutTokenError::NotYetValid(100))
    );
}

#[test]
fn jti_events_nonce_and_subject_make_it_a_logout_token() {
    for (v, e) in [
        (without(good(), "jti"), LogoutTokenError::Missing("jti")),
        (
            with(good(), "jti", json!("")),
            LogoutTokenError::Invalid("jti", "a non-empty string"),
        ),
        (
            with(good(), "jti", json!(7)),
            LogoutTokenError::Invalid("jti", "a non-empty string"),
        ),
        (
            without(good(), "events"),
            LogoutTokenError::Missing("events"),
        ),
        (
            with(good(), "events", json!([BACKCHANNEL_EVENT])),
            LogoutTokenError::Events,
        ),
        (
            with(
                good(),
                "events",
                json!({"http://schemas.openid.net/event/other": {}}),
            ),
            LogoutTokenError::Events,
        ),
        (
            with(good(), "events", json!({BACKCHANNEL_EVENT: true})),
            LogoutTokenError::Events,
        ),
        (
            with(good(), "events", json!({BACKCHANNEL_EVENT: []})),
            LogoutTokenError::Events,
        ),
        (with(good(), "nonce", json!("n")), LogoutTokenError::Nonce),
        (with(good(), "nonce", json!(null)), LogoutTokenError::Nonce),
        (
            without(without(good(), "sid"), "sub"),
            LogoutTokenError::NoSubject,
        ),
        (
            with(good(), "sid", json!("")),
            LogoutTokenError::Invalid("sid", "a non-empty string"),
        ),
        (
            with(without(good(), "sid"), "sub", json!(42)),
            LogoutTokenError::Invalid("sub", "a non-empty string"),
        ),
    ] {
        assert_eq!(claims(&v), Err(e), "{v}");
    }
}

#[tokio::test]
async fn refusals_never_echo_the_token() {
    let idp = Idp::new();
    let cases = [
        with(good(), "iss", json!("https://elsewhere")),
        with(good(), "aud", json!("other")),
        with(good(), "nonce", json!("n")),
        without(good(), "exp"),
    ];
    for c in cases {
        let token = idp.sign(&c);
        let e = verify(&token, &want(), &idp.jwks).await.unwrap_err();
        let shown = e.to_string();
        for part in token.split('.') {
            assert!(!shown.contains(part), "{shown}");
        }
    }
    assert!(!LogoutTokenError::BadSignature.is_transient());
    assert!(LogoutTokenError::Key(KeyError::Fetch("down".into())).is_transient());
}
