//! ID token validation, OIDC Core §3.1.3.7 (and §12.2 for refreshed tokens).
//!
//! Trusts nothing in the token. Order: parse the JOSE header, refuse `none` and any
//! algorithm outside the allow-list (HS* never: gatehouse has only public keys), find the
//! key, check the signature, then each claim with an error that names what differed.

use super::jwks::{JwksCache, KeyError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

/// What a valid token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// Required for tokens from the code flow; `None` for refreshed tokens.
    pub nonce: Option<&'a str>,
    pub now: u64,
    pub skew: u64,
    pub algs: &'a [Algorithm],
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
    #[error("the ID token has no `{0}` claim")]
    Missing(&'static str),
    #[error("the token's issuer is `{found}` but gatehouse expects `{expected}`{hint}")]
    Issuer {
        expected: String,
        found: String,
        hint: &'static str,
    },
    #[error("the token was issued for another client (aud {found}); gatehouse's client_id is `{expected}`")]
    Audience { expected: String, found: String },
    #[error(
        "the token has several audiences and its authorized party (azp) `{0}` is not this client"
    )]
    AuthorizedParty(String),
    #[error("the ID token expired {0} seconds ago")]
    Expired(u64),
    #[error("the ID token is not valid yet (nbf is {0} seconds in the future); check the clocks")]
    NotYetValid(u64),
    #[error("the ID token's nonce does not match this login")]
    Nonce,
    #[error("the refreshed ID token is for a different {0} than the session's")]
    Changed(&'static str),
}

/// The JOSE header's `alg` and `kid`, read without trusting anything.
fn header(token: &str) -> Result<(String, Option<String>), TokenError> {
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
    Ok((alg, kid))
}

/// The payload of a JWS compact token, decoded WITHOUT verifying anything: only for
/// tokens verified earlier, or to pick which issuer's keys to verify with.
pub fn payload(token: &str) -> Option<Value> {
    let p = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

fn num(claims: &Value, name: &'static str) -> Result<u64, TokenError> {
    match claims.get(name) {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or(TokenError::Malformed),
        None => Err(TokenError::Missing(name)),
    }
}

/// Checks the claims of a token whose signature was verified.
pub fn check_claims(claims: &Value, want: &Expected<'_>) -> Result<(), TokenError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::Missing("iss"))?;
    if iss != want.issuer {
        let hint = if iss.trim_end_matches('/') == want.issuer.trim_end_matches('/') {
            " (only a trailing slash differs)"
        } else {
            ""
        };
        return Err(TokenError::Issuer {
            expected: want.issuer.into(),
            found: iss.into(),
            hint,
        });
    }
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::Missing("sub"))?;
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Missing("aud")),
    };
    if !auds.contains(&want.client_id) {
        return Err(TokenError::Audience {
            expected: want.client_id.into(),
            found: auds.join(", "),
        });
    }
    if auds.len() > 1 {
        if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
            if azp != want.client_id {
                return Err(TokenError::AuthorizedParty(azp.into()));
            }
        }
    }
    let exp = num(claims, "exp")?;
    if want.now > exp.saturating_add(want.skew) {
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
    Ok(())
}

/// Verifies a token's signature and claims; returns its claims.
pub async fn verify(
    token: &str,
    want: &Expected<'_>,
    jwks: &JwksCache,
) -> Result<Value, TokenError> {
    let (alg_name, kid) = header(token)?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| TokenError::AlgNotAllowed(alg_name.clone()))?;
    if !want.algs.contains(&alg)
        || matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    {
        return Err(TokenError::AlgNotAllowed(alg_name));
    }
    let key = jwks.key_for(kid.as_deref(), alg).await?;
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
    check_claims(&data.claims, want)?;
    Ok(data.claims)
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

    fn want(nonce: Option<&'static str>) -> Expected<'static> {
        Expected {
            issuer: "https://idp",
            client_id: "app",
            nonce,
            now: 1000,
            skew: 30,
            algs: &[Algorithm::RS256],
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
        assert_eq!(
            check_claims(&with(good(), "exp", json!(980)), &want(None)),
            Ok(()),
            "within skew"
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
            Err(TokenError::AuthorizedParty("x".into()))
        );
    }

    #[test]
    fn header_parsing_refuses_junk() {
        assert_eq!(header("a.b"), Err(TokenError::Malformed));
        assert_eq!(header("!!.b.c"), Err(TokenError::Malformed));
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(header(&format!("{h}.e30.")).unwrap().0, "none");
    }
}
