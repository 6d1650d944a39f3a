//! Secrets that never show up in logs or `Debug` output, and the cookie keys derived from
//! the configured cookie secrets (HKDF-SHA256, RFC 5869).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use std::fmt;

/// A secret string (client secret). `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A 256-bit AEAD key derived from one cookie secret.
#[derive(Clone)]
pub struct CookieKey(pub(crate) [u8; 32]);

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(<redacted>)")
    }
}

/// Least entropy a cookie secret must carry, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

impl CookieKey {
    /// Derives a key from a secret: base64 (either alphabet, padding optional) that decodes
    /// to at least 32 bytes. Plain passphrases are refused: a long placeholder such as
    /// "REPLACE-ME-..." must never become a working key.
    pub fn derive(secret: &str) -> Result<CookieKey, String> {
        let secret = secret.trim();
        let material = URL_SAFE_NO_PAD
            .decode(secret.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(secret))
            .ok()
            .unwrap_or_default();
        if material.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a cookie secret must be base64 of at least {MIN_SECRET_BYTES} random bytes (this one gives {}). \
                 Generate one with `gatehouse secret` (or `openssl rand -base64 32`)",
                material.len()
            ));
        }
        if let Some(why) = weak(&material) {
            return Err(format!(
                "a cookie secret must be random, and this one {why}. Generate one with `gatehouse secret` (or `openssl rand -base64 32`)"
            ));
        }
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"gatehouse cookie key");
        let prk = salt.extract(&material);
        let mut out = [0u8; 32];
        prk.expand(&[b"aead v1"], ring::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .map_err(|_| "could not derive the cookie key".to_string())?;
        Ok(CookieKey(out))
    }
}

/// Why decoded secret material is not random enough: too few distinct bytes (a repeated
/// character), or a short pattern repeated (a repeated word). 32 random bytes have about
/// 30 distinct values and no period.
fn weak(material: &[u8]) -> Option<String> {
    let distinct = material
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < 16 {
        return Some(format!(
            "decodes to only {distinct} distinct byte values (a repeated character or word?)"
        ));
    }
    let n = material.len();
    (1..=n / 2)
        .find(|&p| (p..n).all(|i| material[i] == material[i - p]))
        .map(|p| format!("repeats a {p}-byte pattern"))
}

/// A fresh random secret, base64url without padding (what `gatehouse secret` prints).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom only fails when the OS has no randomness at all.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_with_advice() {
        let e = CookieKey::derive("tooshort").unwrap_err();
        assert!(e.contains("gatehouse secret"), "{e}");
        assert!(CookieKey::derive("REPLACE-with-output-of-gatehouse-secret").is_err());
        assert!(CookieKey::derive("this is a long passphrase, not base64 at all!!").is_err());
    }

    #[test]
    fn long_but_not_random_secrets_are_refused() {
        use base64::Engine;
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        for (bad, why) in [
            ("A".repeat(44), "distinct"),
            (b64(&[7u8; 32]), "distinct"),
            (b64(b"secretsecretsecretsecretsecretsecret"), "distinct"),
            (
                b64(b"0123456789abcdefghijklmnopqrstuv0123456789abcdefghijklmnopqrstuv"),
                "pattern",
            ),
            ("c2VjcmV0".repeat(6), "distinct"),
        ] {
            let e = CookieKey::derive(&bad).unwrap_err();
            assert!(
                e.contains(why) && e.contains("gatehouse secret"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn generated_secrets_are_accepted_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(CookieKey::derive(&a).is_ok());
        assert_ne!(
            CookieKey::derive(&a).unwrap().0,
            CookieKey::derive(&b).unwrap().0
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
