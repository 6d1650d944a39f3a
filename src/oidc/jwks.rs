//! `JwksCache`: the provider's signing keys (RFC 7517), cached.
//!
//! Keys of a type gatehouse cannot use (symmetric `oct`, encryption keys, unknown curves,
//! malformed entries) are ignored; the others still work. A token whose `kid` is unknown
//! triggers at most one refetch per [`REFETCH_INTERVAL`], so a flood of forged `kid`s cannot
//! turn gatehouse into a load generator against the provider. Reads never hold a lock
//! across an await.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Least time between two fetches caused by unknown key ids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// The kind of key a JWS algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

fn needed(alg: Algorithm) -> Option<KeyKind> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(KeyKind::Rsa),
        ES256 => Some(KeyKind::P256),
        ES384 => Some(KeyKind::P384),
        EdDSA => Some(KeyKind::Ed25519),
        HS256 | HS384 | HS512 => None,
    }
}

/// One usable verification key.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    kind: KeyKind,
    pub key: DecodingKey,
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("the token's key id `{0}` is not in the provider's JWKS (even after refetching it)")]
    UnknownKid(String),
    #[error(
        "the token names no key id and the provider publishes {0} usable keys for its algorithm"
    )]
    Ambiguous(usize),
    #[error("the provider publishes no key usable with {0:?}")]
    NoKey(Algorithm),
    #[error("could not fetch the provider's JWKS: {0}")]
    Fetch(String),
}

/// Parses a JWKS document, keeping only keys gatehouse can verify with.
pub fn parse_jwks(doc: &serde_json::Value) -> Vec<VerifyKey> {
    let Some(keys) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|raw| serde_json::from_value::<Jwk>(raw.clone()).ok())
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
            )
        })
        .filter_map(|jwk| {
            let kind = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyKind::Rsa,
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => KeyKind::P256,
                    EllipticCurve::P384 => KeyKind::P384,
                    _ => return None,
                },
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    KeyKind::Ed25519
                }
                // Symmetric keys are never used: an HS* token must not verify against them.
                _ => return None,
            };
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(VerifyKey {
                kid: jwk.common.key_id.clone(),
                kind,
                key,
            })
        })
        .collect()
}

/// Picks the key for a token's `kid` and `alg` from a key list.
fn pick(keys: &[VerifyKey], kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, KeyError> {
    let kind = needed(alg).ok_or(KeyError::NoKey(alg))?;
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid) && k.kind == kind)
            .map(|k| k.key.clone())
            .ok_or_else(|| KeyError::UnknownKid(kid.to_string())),
        None => {
            let fits: Vec<&VerifyKey> = keys.iter().filter(|k| k.kind == kind).collect();
            match fits.as_slice() {
                [one] => Ok(one.key.clone()),
                [] => Err(KeyError::NoKey(alg)),
                many => Err(KeyError::Ambiguous(many.len())),
            }
        }
    }
}

/// The cached key set of one provider.
pub struct JwksCache {
    uri: String,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    last_fetch: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new(uri: String, http: reqwest::Client) -> JwksCache {
        JwksCache {
            uri,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A cache that holds the usable keys of `doc` and never fetches (unit tests).
    #[cfg(test)]
    pub(crate) fn holding(doc: &serde_json::Value) -> JwksCache {
        let cache = JwksCache::new(String::new(), reqwest::Client::new());
        if let Ok(mut slot) = cache.keys.write() {
            *slot = Arc::new(parse_jwks(doc));
        }
        if let Ok(mut last) = cache.last_fetch.lock() {
            *last = Some(Instant::now());
        }
        cache
    }

    fn snapshot(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.read().map(|k| Arc::clone(&k)).unwrap_or_default()
    }

    /// Number of usable keys cached.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches the key set now.
    pub async fn refresh(&self) -> Result<usize, KeyError> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        let sent = self.http.get(&self.uri).send();
        let resp = crate::metrics::provider_call(crate::metrics::Endpoint::Jwks, sent)
            .await
            .map_err(|e| KeyError::Fetch(super::describe(&e)))?;
        if let Some(reason) = super::redirected(&self.uri, &resp) {
            return Err(KeyError::Fetch(reason));
        }
        if !resp.status().is_success() {
            return Err(KeyError::Fetch(format!(
                "{} answered HTTP {}",
                self.uri,
                resp.status().as_u16()
            )));
        }
        let doc: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| KeyError::Fetch(e.to_string()))?;
        let keys = parse_jwks(&doc);
        let n = keys.len();
        tracing::info!(keys = n, uri = %self.uri, "loaded the provider's signing keys");
        if let Ok(mut slot) = self.keys.write() {
            *slot = Arc::new(keys);
        }
        Ok(n)
    }

    /// Claims the right to an on-demand refetch: at most one per [`REFETCH_INTERVAL`].
    /// (The start-up load does not count, so a key rotated just after start still works.)
    fn may_refetch(&self) -> bool {
        let Ok(mut last) = self.last_fetch.lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The key for a token; refetches once (rate-limited) when the `kid` is unknown.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        match pick(&self.snapshot(), kid, alg) {
            Err(KeyError::UnknownKid(_) | KeyError::NoKey(_)) if self.may_refetch() => {
                tracing::info!(
                    kid = kid.unwrap_or("-"),
                    "unknown signing key: refetching the JWKS"
                );
                self.refresh().await?;
                pick(&self.snapshot(), kid, alg)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_key(kid: &str) -> serde_json::Value {
        // A valid P-256 public point (the generator).
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
               "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
               "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"})
    }

    #[test]
    fn unusable_keys_are_ignored_and_the_rest_work() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "weird", "kid": "w"},
            ec_key("good"),
        ]});
        let keys = parse_jwks(&doc);
        assert_eq!(keys.len(), 1);
        assert!(pick(&keys, Some("good"), Algorithm::ES256).is_ok());
        assert_eq!(
            pick(&keys, Some("hmac"), Algorithm::ES256).err(),
            Some(KeyError::UnknownKid("hmac".into()))
        );
        assert!(matches!(
            pick(&keys, Some("good"), Algorithm::HS256),
            Err(KeyError::NoKey(_))
        ));
    }

    #[test]
    fn no_kid_with_several_keys_is_ambiguous() {
        let keys = parse_jwks(&json!({"keys": [ec_key("a"), ec_key("b")]}));
        assert_eq!(
            pick(&keys, None, Algorithm::ES256).err(),
            Some(KeyError::Ambiguous(2))
        );
        let one = parse_jwks(&json!({"keys": [ec_key("a")]}));
        assert!(pick(&one, None, Algorithm::ES256).is_ok());
    }
}
