//! `CookieCodec`: seals and opens cookie payloads with AES-256-GCM (ring).
//!
//! Format: `base64url(nonce[12] || ciphertext || tag[16])`, with the cookie's base name as
//! associated data so a value sealed for one cookie cannot be replayed as another. Several
//! keys may be configured: the first seals, all open (rotation without logging anyone out).
//! Trusts nothing in the input: any byte string either opens or yields `None`.

use crate::config::CookieKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Largest sealed value `open` will even try to decode (bounds work per request).
pub const MAX_SEALED_LEN: usize = 64 * 1024;

/// Seals and opens cookie values.
pub struct CookieCodec {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

/// Sealing failed: only when the OS random source is broken.
#[derive(Debug, thiserror::Error)]
#[error("could not seal the cookie (no randomness or no key)")]
pub struct SealError;

impl CookieCodec {
    /// Builds a codec; the first key seals.
    pub fn new(keys: &[CookieKey]) -> CookieCodec {
        let keys = keys
            .iter()
            .filter_map(|k| {
                UnboundKey::new(&AES_256_GCM, &k.0)
                    .ok()
                    .map(LessSafeKey::new)
            })
            .collect();
        CookieCodec {
            keys,
            rng: SystemRandom::new(),
        }
    }

    /// Encrypts and authenticates `plain` for the cookie named `purpose`.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError)?;
        let mut buf = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(purpose.as_bytes()),
            &mut buf,
        )
        .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value sealed by any configured key; `None` for anything else.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(sealed.as_bytes()).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (last, others) = self.keys.split_last()?;
        // Earlier keys work on a copy (a failed open scrambles the buffer); the last one,
        // usually the only one, opens in place.
        for key in others {
            let mut copy = raw.clone();
            if let Some(len) = open_with(key, purpose, &mut copy) {
                copy.truncate(NONCE_LEN + len);
                return Some(copy.split_off(NONCE_LEN));
            }
        }
        let len = open_with(last, purpose, &mut raw)?;
        raw.truncate(NONCE_LEN + len);
        Some(raw.split_off(NONCE_LEN))
    }
}

/// Opens `nonce || ciphertext || tag` in place; returns the plaintext length, which then
/// sits right after the nonce.
fn open_with(key: &LessSafeKey, purpose: &str, raw: &mut [u8]) -> Option<usize> {
    let (nonce, body) = raw.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    key.open_in_place(nonce, Aad::from(purpose.as_bytes()), body)
        .ok()
        .map(|p| p.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A distinct, random-looking key per name.
    fn key(s: &str) -> CookieKey {
        use base64::Engine;
        let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        CookieKey::derive(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref()))
            .unwrap()
    }

    #[test]
    fn rotation_first_seals_all_open() {
        let old = CookieCodec::new(&[key("a")]);
        let rotated = CookieCodec::new(&[key("b"), key("a")]);
        let by_old = old.seal("_gatehouse", b"hello").unwrap();
        assert_eq!(rotated.open("_gatehouse", &by_old).unwrap(), b"hello");
        let by_new = rotated.seal("_gatehouse", b"hi").unwrap();
        assert!(
            old.open("_gatehouse", &by_new).is_none(),
            "the old key alone must not open new cookies"
        );
    }

    #[test]
    fn a_value_for_one_cookie_does_not_open_as_another() {
        let c = CookieCodec::new(&[key("a")]);
        let v = c.seal("_gatehouse", b"x").unwrap();
        assert!(c.open("_gatehouse_login", &v).is_none());
    }

    #[test]
    fn tampering_is_detected() {
        let c = CookieCodec::new(&[key("a")]);
        let v = c.seal("n", b"payload").unwrap();
        let mut bytes = v.into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(c.open("n", &String::from_utf8(bytes).unwrap()).is_none());
    }

    proptest! {
        #[test]
        fn seal_then_open_is_identity(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let c = CookieCodec::new(&[key("p")]);
            let sealed = c.seal("n", &data).unwrap();
            prop_assert_eq!(c.open("n", &sealed).unwrap(), data);
        }

        #[test]
        fn open_never_panics_on_garbage(s in ".{0,300}") {
            let c = CookieCodec::new(&[key("p")]);
            let _ = c.open("n", &s);
        }
    }
}
