//! `CookieCodec`: seals and opens cookie payloads with AES-256-GCM (ring).
//!
//! Format: `base64url(nonce[12] || ciphertext || tag[16])`, with the cookie's base name as
//! associated data so a value sealed for one cookie cannot be replayed as another. Several
//! keys may be configured: the first seals, all open (rotation without logging anyone out).
//! What is encrypted is the plaintext as `compress.rs` packs it: deflated when that is
//! smaller, marked by a first byte that no JSON text starts with, so values sealed before
//! compression existed still open.
//! Trusts nothing in the input: any byte string either opens or yields `None`.

use crate::config::CookieKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::compress;

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

    /// Compresses (when that helps), encrypts and authenticates `plain` for the cookie
    /// named `purpose`.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<String, SealError> {
        self.seal_packed(purpose, compress::pack(plain))
    }

    /// Encrypts and authenticates bytes already packed.
    fn seal_packed(&self, purpose: &str, mut buf: Vec<u8>) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError)?;
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

    /// Opens a value sealed by any configured key and unpacks it; `None` for anything else
    /// (including a plaintext that would unpack to more than
    /// [`compress::MAX_PLAIN_LEN`] bytes).
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        compress::unpack(self.open_packed(purpose, sealed)?)
    }

    /// Decrypts a value sealed by any configured key, without unpacking it.
    fn open_packed(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
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

    /// Sealed by gatehouse before compression existed (commit 2ea4b8c), with `key("golden")`.
    const OLD_FORMAT: &str = "VF-X969po0wGTwysnSH6aMfebMXwajV5r3mMTycDzYiyHIwwxlVmME8h2fKMlRBSQFlRUtRBa8Hvvv_UuQpsWGxp1GYq-6n_6W-2-QXg__utqbVuxOVPxNimc7cruP3cyWO9CWrATStY990YsYSt9_4tUiz1B01lG6pude9ZDI1Nf_XL_WhtxHLX2_Umyg7nRnCueQHO2GMr27bztGyWgvwNH0mC_q2w8OURhIezHcW6-_T-59vYZDez920iv3MHz8NjUyi4krus6HGuWAzuY2zE_4-GWtwj48OgeXDc6xyywnL9mZ77fbEPNhHgpo8uUe4BqI3WfvU4KrpKcl_a-lOqiNoSlQ";
    const OLD_PLAIN: &[u8] = br#"{"i":"Xq3vTzK9aB1cD2eF","u":{"sub":"CgVhbGljZRIFbG9jYWw","user":"alice@example.com","groups":["admins","developers","ops"]},"t":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln","r":"ChlyZWZyZXNoLXRva2Vu","e":1760086400,"c":1760000000}"#;

    #[test]
    fn values_sealed_before_compression_still_open() {
        let c = CookieCodec::new(&[key("golden")]);
        assert_eq!(
            c.open("__Host-_gatehouse", OLD_FORMAT).as_deref(),
            Some(OLD_PLAIN)
        );
        // A big old session too: its JSON sealed as it is, the way gatehouse used to.
        let (_, plain) = compress::fixtures::entra(200);
        let old = c.seal_packed("n", plain.clone()).unwrap();
        assert_eq!(c.open("n", &old), Some(plain));
    }

    #[test]
    fn a_200_group_session_seals_to_a_third_of_the_bytes() {
        let c = CookieCodec::new(&[key("p")]);
        let chunks = |v: &str| v.len().div_ceil(crate::session::chunks::CHUNK_LEN);
        for (groups, most_percent) in [(200, 35), (800, 35)] {
            let (session, plain) = compress::fixtures::entra(groups);
            let before = c.seal_packed("n", plain.clone()).unwrap();
            let after = c.seal("n", &plain).unwrap();
            // Measured: 27,994 -> 8,970 bytes (32%), 8 cookies -> 3 at 200 groups.
            assert!(
                after.len() * 100 <= before.len() * most_percent,
                "{groups} groups: {} -> {} bytes",
                before.len(),
                after.len()
            );
            let opened = c.open("n", &after).unwrap();
            assert_eq!(opened, plain);
            let back: crate::session::Session = serde_json::from_slice(&opened).unwrap();
            assert_eq!(back.id_token, session.id_token, "forwarded byte for byte");
            if groups == 200 {
                assert_eq!((chunks(&before), chunks(&after)), (8, 3));
            }
        }
        let (_, plain) = compress::fixtures::dex();
        let (before, after) = (
            c.seal_packed("n", plain.clone()).unwrap(),
            c.seal("n", &plain).unwrap(),
        );
        // Measured: 1,570 -> 992 bytes (63%).
        assert!(
            after.len() * 100 <= before.len() * 70,
            "{} -> {}",
            before.len(),
            after.len()
        );
        assert_eq!(c.open("n", &after), Some(plain));
    }

    #[test]
    fn a_compressed_value_with_any_byte_changed_never_opens() {
        let c = CookieCodec::new(&[key("a")]);
        let (_, plain) = compress::fixtures::entra(30);
        let sealed = c.seal("n", &plain).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let ct = &raw[NONCE_LEN..raw.len() - AES_256_GCM.tag_len()];
        assert_eq!(ct.len(), compress::pack(&plain).len(), "sealed compressed");
        assert!(ct.len() * 2 < plain.len());
        for i in 0..raw.len() {
            for flip in [0x01, 0x80] {
                let mut bad = raw.clone();
                bad[i] ^= flip;
                assert_eq!(c.open("n", &URL_SAFE_NO_PAD.encode(&bad)), None, "byte {i}");
            }
        }
        let truncated = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        assert_eq!(c.open("n", &truncated), None);
    }

    #[test]
    fn a_value_inflating_past_the_bound_does_not_open() {
        let c = CookieCodec::new(&[key("a")]);
        let mut bomb = vec![0x01];
        // No spans, then 4 MB of zeros: 4 KB deflated.
        let mut framed = vec![0u8];
        framed.resize(4 << 20, 0);
        bomb.extend(miniz_oxide::deflate::compress_to_vec(&framed, 9));
        let sealed = c.seal_packed("n", bomb).unwrap();
        assert!(sealed.len() < MAX_SEALED_LEN);
        assert_eq!(c.open("n", &sealed), None);
    }

    proptest! {
        #[test]
        fn compressible_plaintexts_round_trip(
            first in 0u8..=255,
            unit in proptest::collection::vec(any::<u8>(), 1..40),
            times in 1usize..200,
        ) {
            let c = CookieCodec::new(&[key("p")]);
            let mut data = vec![first];
            data.extend(unit.repeat(times));
            let sealed = c.seal("n", &data).unwrap();
            prop_assert_eq!(c.open("n", &sealed).unwrap(), data);
        }

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

        #[test]
        fn opening_any_authenticated_plaintext_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            // What a forged-but-authenticated value would hold: any marker, any stream.
            let c = CookieCodec::new(&[key("p")]);
            for packed in [bytes.clone(), [&[0x01][..], &bytes].concat()] {
                let sealed = c.seal_packed("n", packed).unwrap();
                let _ = c.open("n", &sealed);
            }
        }
    }
}
