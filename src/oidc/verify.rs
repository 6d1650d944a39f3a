//! ID token validation, OIDC Core §3.1.3.7 (and §12.2 for refreshed tokens).
//!
//! Trusts nothing in the token. Order: parse the JOSE header, refuse `none` and any
//! algorithm outside the allow-list (HS* never: gatehouse has only public keys), find the
//! key, check the signature, then each claim with an error that names what differed.

use super::jwks::{JwksCache, KeyError};
use super::policy::AuthnPolicy;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

/// What a valid token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    /// Other spellings of `issuer` accepted in `iss`, from the provider preset (google's
    /// `accounts.google.com`); empty otherwise, and then `iss` must be `issuer` exactly.
    pub issuer_aliases: &'a [String],
    pub client_id: &'a str,
    /// Required for tokens from the code flow; `None` for refreshed tokens.
    pub nonce: Option<&'a str>,
    pub now: u64,
    pub skew: u64,
    pub algs: &'a [Algorithm],
    /// Audiences besides `client_id` that may appear in `aud` (OIDC Core §3.1.3.7 step 3).
    pub trusted_audiences: &'a [String],
    /// The access token issued with this ID token, to check `at_hash` (§3.1.3.8) when the
    /// token carries one.
    pub access_token: Option<&'a str>,
    /// Verifying an ID token: a JWT typed as an access token (`typ: at+jwt`, RFC 9068) is
    /// refused. Bearer tokens from API clients may be access tokens.
    pub id_token: bool,
    /// How the user must have authenticated (`max_age`, `acr_values`): see `policy.rs`.
    pub policy: &'a AuthnPolicy,
}

/// Why a token was refused. Messages are safe to show: they never contain the token.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the ID token is not a well-formed JWT")]
    Malformed,
    #[error("the ID token is unsigned (alg \"none\"), which is never accepted")]
    AlgNone,
    #[error("the ID token is signed with {0}, which is not in allowed_algs")]
    AlgNotAllowed(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the ID token's signature does not verify with the provider's key")]
    BadSignature,
    #[error("the token has no `{0}` claim")]
    Missing(&'static str),
    #[error("the token has no `auth_time` claim, which max_age requires: the provider must say when the user authenticated")]
    NoAuthTime,
    #[error("the token's issuer is `{found}` but gatehouse expects `{expected}`{hint}")]
    Issuer {
        expected: String,
        found: String,
        hint: &'static str,
    },
    #[error("the token was issued for another client (aud {found}); gatehouse's client_id is `{expected}`")]
    Audience { expected: String, found: String },
    #[error("the token's aud also names `{0}`, which gatehouse does not trust; list it in trusted_audiences if that is intended (OIDC Core 3.1.3.7)")]
    UntrustedAudience(String),
    #[error("the JWT is an access token (typ `{0}`), not an ID token")]
    AccessTokenAsIdToken(String),
    #[error("the ID token's at_hash does not match the access token issued with it")]
    AtHash,
    #[error(
        "the user authenticated {0} seconds ago, longer ago than max_age allows; sign in again"
    )]
    AuthTooOld(u64),
    #[error(
        "the token's authentication context (acr) is {found}, not one of the required {wanted}"
    )]
    Acr { found: String, wanted: String },
    #[error(
        "the token has several audiences and its authorized party (azp) `{0}` is not this client"
    )]
    AuthorizedParty(String),
    #[error("the token expired {0} seconds ago (no leeway applies to `exp`)")]
    Expired(u64),
    #[error("the ID token is not valid yet (nbf is {0} seconds in the future); check the clocks")]
    NotYetValid(u64),
    #[error("the ID token's nonce does not match this login")]
    Nonce,
    #[error("the refreshed ID token is for a different {0} than the session's")]
    Changed(&'static str),
}

/// The JOSE header's `alg`, `kid` and `typ`, read without trusting anything.
pub(crate) fn header(token: &str) -> Result<(String, Option<String>, Option<String>), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    let alg = v
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed)?
        .to_string();
    let kid = v.get("kid").and_then(Value::as_str).map(str::to_string);
    let typ = v.get("typ").and_then(Value::as_str).map(str::to_string);
    Ok((alg, kid, typ))
}

/// The payload of a JWS compact token, decoded WITHOUT verifying anything: only for
/// tokens verified earlier, or to pick which issuer's keys to verify with.
pub fn payload(token: &str) -> Option<Value> {
    let p = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

/// A date claim (`exp`, `iat`, `nbf`, `auth_time`: a NumericDate, RFC 7519 §2) as whole
/// seconds, also when the provider sends a float (the fraction is dropped); `None` when
/// absent, negative or not a JSON number (a string is not a NumericDate). The one reader
/// of date claims, so no path drops a form another accepts.
pub fn seconds(claims: &Value, name: &str) -> Option<u64> {
    let v = claims.get(name)?;
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// A date claim the token must carry: [`seconds`], or why not.
pub(crate) fn num(claims: &Value, name: &'static str) -> Result<u64, TokenError> {
    match claims.get(name) {
        Some(_) => seconds(claims, name).ok_or(TokenError::Malformed),
        None => Err(TokenError::Missing(name)),
    }
}

/// Checks the claims of a token whose signature was verified.
pub fn check_claims(claims: &Value, want: &Expected<'_>) -> Result<(), TokenError> {
    check_issuer(claims, want.issuer, want.issuer_aliases)?;
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::Missing("sub"))?;
    check_audience(claims, want.client_id, want.trusted_audiences)?;
    // No leeway on `exp` (RFC 7519 §4.1.4: not accepted on or after it): a session
    // never outlives a token it forwards, so an expired token could only be forwarded
    // expired (the Kubernetes API server allows no leeway either) or make a session that
    // is over before it starts. `clock_skew_secs` is for `nbf` and `auth_time`, which a
    // provider's clock running ahead would otherwise put in the future.
    let exp = num(claims, "exp")?;
    if want.now >= exp {
        return Err(TokenError::Expired(want.now - exp));
    }
    num(claims, "iat")?;
    if claims.get("nbf").is_some() {
        let nbf = num(claims, "nbf")?;
        if nbf > want.now.saturating_add(want.skew) {
            return Err(TokenError::NotYetValid(nbf - want.now));
        }
    }
    if let Some(nonce) = want.nonce {
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(TokenError::Nonce);
        }
    }
    want.policy.check(claims, want.now, want.skew)
}

/// `iss` is `issuer` exactly, or one of the preset's `aliases`.
pub(crate) fn check_issuer(
    claims: &Value,
    issuer: &str,
    aliases: &[String],
) -> Result<(), TokenError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::Missing("iss"))?;
    if iss != issuer && !aliases.iter().any(|a| a == iss) {
        let hint = if iss.trim_end_matches('/') == issuer.trim_end_matches('/') {
            " (only a trailing slash differs)"
        } else {
            ""
        };
        return Err(TokenError::Issuer {
            expected: issuer.into(),
            found: iss.into(),
            hint,
        });
    }
    Ok(())
}

/// `aud` names `client_id`, any other audience is in `trusted`, and with several the
/// authorized party (`azp`), when present, is this client (OIDC Core §3.1.3.7 steps 3-5).
pub(crate) fn check_audience(
    claims: &Value,
    client_id: &str,
    trusted: &[String],
) -> Result<(), TokenError> {
    if !matches!(claims.get("aud"), Some(Value::String(_) | Value::Array(_))) {
        return Err(TokenError::Missing("aud"));
    }
    let auds = audiences(claims);
    if !auds.contains(&client_id) {
        return Err(TokenError::Audience {
            expected: client_id.into(),
            found: auds.join(", "),
        });
    }
    if let Some(other) = auds
        .iter()
        .find(|a| **a != client_id && !trusted.iter().any(|t| t == *a))
    {
        return Err(TokenError::UntrustedAudience((*other).to_string()));
    }
    if auds.len() > 1 {
        if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
            if azp != client_id {
                return Err(TokenError::AuthorizedParty(azp.into()));
            }
        }
    }
    Ok(())
}

/// The token's `aud`, a string or a list of strings (others are skipped).
pub fn audiences(claims: &Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Verifies a token's signature and claims; returns its claims.
pub async fn verify(
    token: &str,
    want: &Expected<'_>,
    jwks: &JwksCache,
) -> Result<Value, TokenError> {
    let (alg_name, kid, typ) = header(token)?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if let Some(typ) = typ.filter(|_| want.id_token) {
        if media_type_is(&typ, "at+jwt") {
            return Err(TokenError::AccessTokenAsIdToken(typ));
        }
    }
    let (claims, alg) = signed_claims(token, &alg_name, kid.as_deref(), want.algs, jwks).await?;
    check_claims(&claims, want)?;
    if let (Some(at), Some(claimed)) = (
        want.access_token,
        claims.get("at_hash").and_then(Value::as_str),
    ) {
        if at_hash(alg, at).as_deref() != Some(claimed) {
            return Err(TokenError::AtHash);
        }
    }
    Ok(claims)
}

/// Whether a JOSE `typ` names the media type `application/<short>`: compared without
/// regard to case, with the `application/` prefix optional (RFC 7515 §4.1.9).
pub(crate) fn media_type_is(typ: &str, short: &str) -> bool {
    let t = typ.to_ascii_lowercase();
    t.strip_prefix("application/").unwrap_or(&t) == short
}

/// The claims of a token whose signature verifies with the provider's key for its `kid`
/// and `alg` (read from the header by the caller): `none`, algorithms outside `algs`
/// and HS* are refused before any key is looked up. Checks no claim.
pub(crate) async fn signed_claims(
    token: &str,
    alg_name: &str,
    kid: Option<&str>,
    algs: &[Algorithm],
    jwks: &JwksCache,
) -> Result<(Value, Algorithm), TokenError> {
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| TokenError::AlgNotAllowed(alg_name.to_string()))?;
    if !algs.contains(&alg) || matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    {
        return Err(TokenError::AlgNotAllowed(alg_name.to_string()));
    }
    let key = jwks.key_for(kid, alg).await?;
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
    Ok((data.claims, alg))
}

/// OIDC Core §3.1.3.6: base64url of the left half of the access token's hash, with the
/// hash of the JWS algorithm (SHA-512 for EdDSA with Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> Option<String> {
    use ring::digest::{digest, SHA256, SHA384, SHA512};
    let hash = match alg {
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::HS256 => &SHA256,
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 | Algorithm::HS384 => &SHA384,
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 | Algorithm::EdDSA => &SHA512,
    };
    let d = digest(hash, access_token.as_bytes());
    let bytes = d.as_ref();
    Some(URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2]))
}

/// OIDC Core §12.2: a refreshed ID token must keep `iss`, `sub` and `aud`.
pub fn same_subject(old_sub: &str, new: &Value) -> Result<(), TokenError> {
    if new.get("sub").and_then(Value::as_str) != Some(old_sub) {
        return Err(TokenError::Changed("subject (sub)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static NO_POLICY: AuthnPolicy = AuthnPolicy::NONE;

    fn want(nonce: Option<&'static str>) -> Expected<'static> {
        Expected {
            issuer: "https://idp",
            issuer_aliases: &[],
            client_id: "app",
            nonce,
            now: 1000,
            skew: 30,
            algs: &[Algorithm::RS256],
            trusted_audiences: &[],
            access_token: None,
            id_token: true,
            policy: &NO_POLICY,
        }
    }

    fn good() -> Value {
        json!({"iss": "https://idp", "sub": "u", "aud": "app", "exp": 2000, "iat": 900, "nonce": "n"})
    }

    fn with(mut v: Value, k: &str, val: Value) -> Value {
        v[k] = val;
        v
    }

    fn without(mut v: Value, k: &str) -> Value {
        v.as_object_mut().unwrap().remove(k);
        v
    }

    #[test]
    fn claim_checks_name_what_differs() {
        assert_eq!(check_claims(&good(), &want(Some("n"))), Ok(()));
        let e = check_claims(&with(good(), "iss", json!("https://idp/")), &want(None)).unwrap_err();
        assert!(
            e.to_string().contains("only a trailing slash differs"),
            "{e}"
        );
        assert!(
            e.to_string().contains("`https://idp/`") && e.to_string().contains("`https://idp`")
        );
        assert!(matches!(
            check_claims(&with(good(), "aud", json!("other")), &want(None)),
            Err(TokenError::Audience { .. })
        ));
        assert_eq!(
            check_claims(&without(good(), "aud"), &want(None)),
            Err(TokenError::Missing("aud"))
        );
        assert_eq!(
            check_claims(&without(good(), "sub"), &want(None)),
            Err(TokenError::Missing("sub"))
        );
        assert_eq!(
            check_claims(&without(good(), "iat"), &want(None)),
            Err(TokenError::Missing("iat"))
        );
        assert_eq!(
            check_claims(&with(good(), "exp", json!(900)), &want(None)),
            Err(TokenError::Expired(100))
        );
        for exp in [json!(980), json!(999.9), json!(1000)] {
            assert!(
                matches!(
                    check_claims(&with(good(), "exp", exp.clone()), &want(None)),
                    Err(TokenError::Expired(_))
                ),
                "exp {exp} is past (or now): no leeway"
            );
        }
        assert_eq!(
            check_claims(&with(good(), "exp", json!(1000.5)), &want(None)),
            Err(TokenError::Expired(0)),
            "a float exp is read in whole seconds, as everywhere"
        );
        assert_eq!(
            check_claims(&with(good(), "exp", json!(1001)), &want(None)),
            Ok(())
        );
        assert_eq!(
            check_claims(&with(good(), "exp", json!("2000")), &want(None)),
            Err(TokenError::Malformed),
            "a string is not a NumericDate, on any path"
        );
        assert_eq!(
            check_claims(&with(good(), "nbf", json!(1020)), &want(None)),
            Ok(()),
            "nbf within skew"
        );
        assert_eq!(
            check_claims(&with(good(), "iat", json!(900.7)), &want(None)),
            Ok(())
        );
        assert_eq!(
            check_claims(&with(good(), "nbf", json!(1100)), &want(None)),
            Err(TokenError::NotYetValid(100))
        );
        assert_eq!(
            check_claims(&good(), &want(Some("other"))),
            Err(TokenError::Nonce)
        );
        let multi = with(with(good(), "aud", json!(["app", "x"])), "azp", json!("x"));
        assert_eq!(
            check_claims(&multi, &want(None)),
            Err(TokenError::UntrustedAudience("x".into()))
        );
        let trusted = ["x".to_string()];
        let trusting = Expected {
            trusted_audiences: &trusted,
            ..want(None)
        };
        assert_eq!(
            check_claims(&multi, &trusting),
            Err(TokenError::AuthorizedParty("x".into())),
            "a trusted extra audience still needs azp to be this client"
        );
        let azp_ok = with(multi.clone(), "azp", json!("app"));
        assert_eq!(check_claims(&azp_ok, &trusting), Ok(()));
    }

    #[test]
    fn issuer_spellings_are_accepted_only_when_listed() {
        let bare = with(good(), "iss", json!("idp"));
        let e = check_claims(&bare, &want(None)).unwrap_err();
        assert!(matches!(e, TokenError::Issuer { .. }), "{e:?}");
        let aliases = ["idp".to_string()];
        let listing = Expected {
            issuer_aliases: &aliases,
            ..want(None)
        };
        assert_eq!(check_claims(&bare, &listing), Ok(()));
        assert_eq!(check_claims(&good(), &listing), Ok(()));
        let other = with(good(), "iss", json!("idp.evil"));
        assert!(check_claims(&other, &listing).is_err());
    }

    #[test]
    fn max_age_and_acr_are_checked_when_asked_for() {
        let policy = AuthnPolicy {
            max_age: Some(300),
            acr_values: vec!["phr".to_string()],
        };
        let strict = Expected {
            policy: &policy,
            ..want(None)
        };
        let fresh = with(with(good(), "auth_time", json!(900)), "acr", json!("phr"));
        assert_eq!(check_claims(&fresh, &strict), Ok(()));
        assert_eq!(
            check_claims(&with(fresh.clone(), "auth_time", json!(100)), &strict),
            Err(TokenError::AuthTooOld(900))
        );
        assert_eq!(
            check_claims(&without(fresh.clone(), "auth_time"), &strict),
            Err(TokenError::NoAuthTime)
        );
        assert!(matches!(
            check_claims(&with(fresh, "acr", json!("0")), &strict),
            Err(TokenError::Acr { .. })
        ));
    }

    #[test]
    fn header_parsing_refuses_junk() {
        assert_eq!(header("a.b"), Err(TokenError::Malformed));
        assert_eq!(header("!!.b.c"), Err(TokenError::Malformed));
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(header(&format!("{h}.e30.")).unwrap().0, "none");
    }

    #[test]
    fn at_hash_matches_the_spec_example() {
        // OIDC Core §A.3 (RS256): access token and its at_hash.
        assert_eq!(
            at_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            )
            .as_deref(),
            Some("77QmUPtjPfzWtF2AnpK9RQ")
        );
    }
}
