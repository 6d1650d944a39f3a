//! The development IdP's signing key: a fresh ECDSA P-256 key per process (ES256), its
//! public JWK, and token signing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// A signing key and its public JWK.
pub struct SigningKey {
    encoding: EncodingKey,
    pub kid: String,
    pub jwk: serde_json::Value,
}

impl SigningKey {
    /// Generates a new key. Fails only without OS randomness.
    pub fn generate() -> Result<SigningKey, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| e.to_string())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| e.to_string())?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err("unexpected public key encoding".into());
        }
        let kid = crate::util::random_token(6);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok(SigningKey {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            kid,
            jwk,
        })
    }

    /// Signs claims as an ES256 JWT.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }
}
