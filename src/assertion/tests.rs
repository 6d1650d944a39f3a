//! The assertion's keys, claims and cache, checked with a second JWT implementation
//! (jsonwebtoken's verifier, fed the published JWK); the integration tests verify with
//! node's `jose` against the served JWKS.

use super::keys::{thumbprint, KeySet};
use super::*;
use crate::identity::Identity;
use serde_json::{json, Value};

fn key(name: &str) -> String {
    let path = format!(
        "{}/src/assertion/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn settings(pem: &str, policy: AssertionPolicy) -> AssertionSettings {
    AssertionSettings::new(
        KeySet::from_pem(pem).unwrap(),
        "https://auth.example.com".into(),
        Duration::from_secs(300),
        policy,
    )
}

fn session(expires_at: u64) -> Session {
    Session {
        identity: Identity {
            sub: "u1".into(),
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["admins".into(), "Domain Admins".into(), "dev".into()],
            preferred_username: Some("ali".into()),
            email_verified: Some(true),
        },
        expires_at,
        ..Session::sample()
    }
}

/// Verifies `token` with jsonwebtoken against the JWK `s` publishes for its `kid`.
fn verify(s: &AssertionSettings, token: &str, audience: &str) -> (Value, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwks: Value = serde_json::from_str(s.keys.jwks()).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("the kid is published");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[audience]);
    v.set_issuer(&["https://auth.example.com"]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .unwrap_or_else(|e| panic!("{token}: {e}"));
    let raw_header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            raw_header,
        )
        .unwrap(),
    )
    .unwrap();
    (header, data.claims)
}

fn sign(s: &AssertionSettings, session: &Session, audience: &str, now: u64) -> String {
    s.for_session(session, &s.policy, audience, u64::MAX, now)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_supported_key_type_signs_what_its_published_jwk_verifies() {
    let now = crate::util::now_secs();
    for (file, alg, kty) in [
        ("p256.pem", "ES256", "EC"),
        ("p256-sec1.pem", "ES256", "EC"),
        ("p384.pem", "ES384", "EC"),
        ("rsa2048-pkcs1.pem", "RS256", "RSA"),
        ("ed25519.pem", "EdDSA", "OKP"),
    ] {
        let s = settings(&key(file), AssertionPolicy::new(None, None));
        let signer = s.keys.signer().unwrap();
        let token = sign(&s, &session(now + 3600), "app.example.com", now);
        let (header, claims) = verify(&s, &token, "app.example.com");
        assert_eq!(
            header,
            json!({"alg": alg, "kid": signer.kid, "typ": "JWT"}),
            "{file}"
        );
        assert_eq!(claims["sub"], "u1", "{file}");
        let jwk = &serde_json::from_str::<Value>(s.keys.jwks()).unwrap()["keys"][0];
        assert_eq!(
            (
                jwk["kty"].as_str(),
                jwk["alg"].as_str(),
                jwk["use"].as_str()
            ),
            (Some(kty), Some(alg), Some("sig")),
            "{file}"
        );
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk.get(private).is_none(), "{file}: {private} published");
        }
        assert!(
            !format!("{s:?}").contains(&key(file)[40..80]),
            "Debug shows no key"
        );
    }
}

#[test]
fn the_kid_is_the_rfc_7638_thumbprint() {
    // RFC 7638 §3.1's example key and thumbprint.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let jwk = json!({"e": "AQAB", "kty": "RSA", "n": n});
    assert_eq!(
        thumbprint(&jwk),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // The same key in another file form (PKCS#8, SEC1) has the same kid.
    let a = KeySet::from_pem(&key("p256.pem")).unwrap();
    let sec1 = KeySet::from_pem(&key("p256-as-sec1.pem")).unwrap();
    assert_eq!(a.signer().unwrap().kid, sec1.signer().unwrap().kid);
    assert_eq!(a.signer().unwrap().kid.len(), 43);
}

#[test]
fn every_bad_key_is_refused_with_its_reason_and_all_are_listed() {
    for (text, needle) in [
        (key("p521.pem"), "the curve P-521 is not supported"),
        (key("secp256k1.pem"), "the curve secp256k1 is not supported"),
        (key("rsa1024.pem"), "weak RSA key: at least 2048 bits"),
        (key("p256-encrypted.pem"), "is encrypted"),
        (key("cert.pem"), "is a certificate, not a private key"),
        (key("p256-public.pem"), "is a public key, not a private key"),
        ("just some text\n".to_string(), "holds no private key"),
        (String::new(), "holds no private key"),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(),
            "key #1 (PRIVATE KEY): the key type or curve is not supported",
        ),
    ] {
        let problems = KeySet::from_pem(&text).unwrap_err().join("\n");
        assert!(problems.contains(needle), "{needle:?} not in {problems}");
    }
    // Every block is checked; each problem names its block; a repeated key is one.
    let mixed = [
        key("p256.pem"),
        key("rsa1024.pem"),
        key("p521.pem"),
        key("p256.pem"),
    ]
    .concat();
    let problems = KeySet::from_pem(&mixed).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("key #2 (PRIVATE KEY): is a weak RSA key"));
    assert!(problems[1].starts_with("key #3 (PRIVATE KEY): the curve P-521"));
    assert_eq!(problems[2], "key #4 is the same key as #1");
}

#[test]
fn the_first_key_signs_and_all_are_published_in_file_order() {
    let (old, new) = (key("p256.pem"), key("p256-second.pem"));
    let old_kid = KeySet::from_pem(&old)
        .unwrap()
        .signer()
        .unwrap()
        .kid
        .clone();
    let new_kid = KeySet::from_pem(&new)
        .unwrap()
        .signer()
        .unwrap()
        .kid
        .clone();
    assert_ne!(old_kid, new_kid);
    let s = settings(&[new, old].concat(), AssertionPolicy::new(None, None));
    let now = crate::util::now_secs();
    let token = sign(&s, &session(now + 3600), "app", now);
    let (header, _) = verify(&s, &token, "app");
    assert_eq!(header["kid"], new_kid.as_str());
    let jwks: Value = serde_json::from_str(s.keys.jwks()).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
}

#[test]
fn the_claims_say_who_for_whom_and_until_when() {
    let now = crate::util::now_secs();
    let s = settings(&key("p256.pem"), AssertionPolicy::new(None, None));
    let (_, c) = verify(
        &s,
        &sign(&s, &session(now + 3600), "app.example.com", now),
        "app.example.com",
    );
    assert_eq!(c["iss"], "https://auth.example.com");
    assert_eq!(c["aud"], "app.example.com");
    assert_eq!(c["sub"], "u1");
    assert_eq!(c["user"], "alice");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["preferred_username"], "ali");
    assert_eq!(c["groups"], json!(["admins", "Domain Admins", "dev"]));
    assert_eq!(c["iat"], now);
    assert_eq!(c["nbf"], now);
    assert_eq!(c["exp"], now + 300);
    assert_eq!(c["jti"].as_str().unwrap().len(), 22);
    // A session without email or groups: no email claim, an empty groups list.
    let mut bare = session(now + 3600);
    bare.identity.email = None;
    bare.identity.groups.clear();
    let (_, c) = verify(&s, &sign(&s, &bare, "app", now), "app");
    assert!(c.get("email").is_none());
    assert_eq!(c["groups"], json!([]));
    // Never beyond the session's tokens; none at all for a session already over.
    let (_, c) = verify(&s, &sign(&s, &session(now + 60), "app", now), "app");
    assert_eq!(c["exp"], now + 60);
    assert!(s
        .for_session(&session(now), &s.policy, "app", u64::MAX, now)
        .is_none());
    // Nor beyond the end the caller knows (lifetime, idle timeout).
    let token = s
        .for_session(&session(now + 3600), &s.policy, "ends", now + 40, now)
        .unwrap();
    let (_, c) = verify(&s, token.to_str().unwrap(), "ends");
    assert_eq!(c["exp"], now + 40);
    assert!(s
        .for_session(&session(now + 3600), &s.policy, "ended", now, now)
        .is_none());
}

#[test]
fn the_groups_filter_lets_through_only_the_listed_groups() {
    let now = crate::util::now_secs();
    let policy = AssertionPolicy::new(
        Some("headlamp".into()),
        Some(vec!["Domain Admins".into(), "ops".into(), "ADMINS".into()]),
    );
    let s = settings(&key("p256.pem"), policy);
    let (_, c) = verify(
        &s,
        &sign(&s, &session(now + 3600), "headlamp", now),
        "headlamp",
    );
    assert_eq!(c["groups"], json!(["Domain Admins"]), "exact names only");
    let empty = settings(&key("p256.pem"), AssertionPolicy::new(None, Some(vec![])));
    let (_, c) = verify(&empty, &sign(&empty, &session(now + 3600), "a", now), "a");
    assert_eq!(c["groups"], json!([]));
}

#[test]
fn the_audience_is_the_configured_one_else_the_host_without_its_port() {
    let host = AssertionPolicy::new(None, None);
    for (given, want) in [
        (Some("App.Example.COM:8443"), Some("app.example.com")),
        (Some("app.example.com"), Some("app.example.com")),
        (Some("[::1]:4180"), Some("[::1]")),
        (Some("127.0.0.1:80"), Some("127.0.0.1")),
        (Some(" "), None),
        (Some(":80"), None),
        (None, None),
    ] {
        assert_eq!(host.audience_for(given).as_deref(), want, "{given:?}");
    }
    let fixed = AssertionPolicy::new(Some("https://headlamp.example.com".into()), None);
    assert_eq!(
        fixed.audience_for(Some("evil.example")).as_deref(),
        Some("https://headlamp.example.com")
    );
    assert_eq!(
        fixed.audience_for(None).as_deref(),
        Some("https://headlamp.example.com")
    );
}

#[test]
fn an_assertion_is_signed_once_and_again_only_when_a_third_of_its_life_is_left() {
    let now = crate::util::now_secs();
    let s = settings(&key("p256.pem"), AssertionPolicy::new(None, None));
    let live = session(now + 3600);
    let first = sign(&s, &live, "app", now);
    assert_eq!(sign(&s, &live, "app", now + 1), first, "cached");
    // Up to 200 s of its 300 s, the same token; from then on a new one.
    assert_eq!(sign(&s, &live, "app", now + 199), first);
    let renewed = sign(&s, &live, "app", now + 200);
    assert_ne!(renewed, first);
    assert_eq!(sign(&s, &live, "app", now + 201), renewed);
    // Another audience is another token; both stay cached.
    let other = sign(&s, &live, "other", now + 201);
    assert_ne!(other, renewed);
    assert_eq!(sign(&s, &live, "app", now + 202), renewed);
    assert_eq!(sign(&s, &live, "other", now + 202), other);
    // The same session opened again (the redis store reopens it each second) finds it.
    let reopened = live.clone();
    assert_eq!(sign(&s, &reopened, "app", now + 202), renewed);
    // A refreshed session (new tokens) signs anew; so does another session.
    let mut refreshed = live.clone();
    refreshed.id_token = "header.payload.a-new-signature".into();
    assert_ne!(sign(&s, &refreshed, "app", now + 202), renewed);
    let mut longer = live.clone();
    longer.expires_at += 600;
    assert_ne!(
        sign(&s, &longer, "app", now + 202),
        renewed,
        "a refresh without a new ID token"
    );
    let mut other_session = live.clone();
    other_session.id = "another".into();
    assert_ne!(sign(&s, &other_session, "app", now + 202), renewed);
    // Reloaded settings (new keys, issuer, lifetime or filter) sign anew.
    let reloaded = settings(&key("p256.pem"), AssertionPolicy::new(None, None));
    assert_ne!(sign(&reloaded, &live, "app", now + 202), renewed);
    // A short session's assertion ends with it, and is renewed within its last third.
    let short = session(now + 30);
    let a = sign(&s, &short, "app", now);
    assert_eq!(sign(&s, &short, "app", now + 19), a);
    assert_ne!(sign(&s, &short, "app", now + 20), a);
}

#[test]
fn a_thread_keeps_a_bounded_number_of_assertions() {
    let now = crate::util::now_secs();
    let s = settings(&key("ed25519.pem"), AssertionPolicy::new(None, None));
    for i in 0..5000 {
        let mut live = session(now + 3600);
        live.id = format!("s{i}");
        sign(&s, &live, &format!("app{i}"), now);
    }
    assert!(cache::len() <= 4096, "{}", cache::len());
    assert!(cache::len() > 0);
    assert!(cache::budgets() <= 4096, "{}", cache::budgets());
}

/// How many of `n` requests of `session`, each to a new audience, get an assertion.
fn served(s: &AssertionSettings, session: &Session, tag: &str, n: usize, now: u64) -> usize {
    (0..n)
        .filter(|i| {
            s.for_session(
                session,
                &s.policy,
                &format!("{tag}{i}.example"),
                u64::MAX,
                now,
            )
            .is_some()
        })
        .count()
}

#[test]
fn a_session_cannot_make_every_request_a_signature() {
    let now = crate::util::now_secs();
    let max = cache::MAX_SIGNATURES as usize;
    let s = settings(&key("p256.pem"), AssertionPolicy::new(None, None));
    let live = session(now + 3600);
    let first = sign(&s, &live, "app.example.com", now);
    // A new Host on every request: only the budget is signed, the rest go without.
    assert_eq!(served(&s, &live, "h", 500, now), max - 1);
    assert_eq!(served(&s, &live, "k", 500, now + 100), 0);
    // What was signed before is still served from the cache, at no cost.
    assert_eq!(sign(&s, &live, "app.example.com", now + 100), first);
    // A new bearer token (same session id, new token) on every request: the same bound.
    let bearer = |i: usize| {
        let mut b = session(now + 3600);
        b.id = "bearer:u1".into();
        b.id_token = format!("h.p.sig{i:040}");
        b
    };
    let tokens = (0..500)
        .filter(|i| {
            s.for_session(&bearer(*i), &s.policy, "app", u64::MAX, now)
                .is_some()
        })
        .count();
    assert_eq!(tokens, max);
    // Another session is not held back by this one.
    let mut other = session(now + 3600);
    other.id = "another".into();
    assert_eq!(served(&s, &other, "o", 3, now), 3);
    // Once the period (two thirds of the lifetime) is over, the budget is whole again.
    assert_eq!(served(&s, &live, "later", 500, now + 200), max);
}
