//! The redis store's ticket: what the session cookie carries instead of the session. A
//! random session id (the Redis key) and a random 32-byte secret that never reaches Redis,
//! sealed together with the cookie key so a forged or altered ticket is refused before any
//! Redis call. The session is sealed in Redis (AES-256-GCM) under a key derived (HKDF-SHA256)
//! from the ticket's secret and the cookie key, with the Redis key as associated data: a
//! Redis dump reveals no token and cannot open or mint a session, and an entry cannot be
//! moved to another key.
//!
//! The sealed ticket is about 120 bytes whatever the tokens' size.

use super::jar::CookieJar;
use crate::config::CookieKey;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

const SECRET_LEN: usize = 32;
/// Labels the derived key's purpose (HKDF `info`), and the ticket's seal.
const ENTRY_INFO: &[u8] = b"gatehouse redis session entry v1";

/// A session's ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The session's id: the Redis key's suffix.
    pub id: String,
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// A new ticket for session `id`, with a fresh secret.
    pub fn new(id: &str) -> Option<Ticket> {
        let mut secret = [0u8; SECRET_LEN];
        SystemRandom::new().fill(&mut secret).ok()?;
        Some(Ticket {
            id: id.to_string(),
            secret,
        })
    }

    fn purpose(jar: &CookieJar) -> String {
        format!("{}#ticket", jar.cookie_name())
    }

    /// The cookie value.
    pub fn seal(&self, jar: &CookieJar) -> Option<String> {
        let mut plain = Vec::with_capacity(SECRET_LEN + self.id.len());
        plain.extend_from_slice(&self.secret);
        plain.extend_from_slice(self.id.as_bytes());
        jar.codec.seal(&Ticket::purpose(jar), &plain).ok()
    }

    /// The ticket in a cookie value; `None` for anything gatehouse did not seal as one
    /// (a cookie-store session included).
    pub fn open(jar: &CookieJar, value: &str) -> Option<Ticket> {
        // A ticket is short: anything long is not one, and is not worth decrypting.
        if value.len() > 512 {
            return None;
        }
        let plain = jar.codec.open(&Ticket::purpose(jar), value)?;
        if plain.len() <= SECRET_LEN || plain.len() > SECRET_LEN + 128 {
            return None;
        }
        let (secret, id) = plain.split_at(SECRET_LEN);
        let id = std::str::from_utf8(id).ok()?.to_string();
        Some(Ticket {
            id,
            secret: secret.try_into().ok()?,
        })
    }

    /// The key that seals this session's entry, derived with cookie key `key`.
    fn entry_key(&self, key: &CookieKey) -> Option<LessSafeKey> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &key.0);
        let prk = salt.extract(&self.secret);
        let okm = prk.expand(&[ENTRY_INFO], &AES_256_GCM).ok()?;
        let mut bytes = [0u8; 32];
        okm.fill(&mut bytes).ok()?;
        Some(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &bytes).ok()?,
        ))
    }

    /// Seals `plain` for the Redis key `redis_key`, with the first cookie key.
    pub fn seal_entry(&self, keys: &[CookieKey], redis_key: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.entry_key(keys.first()?)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let (n, body) = out.split_at_mut(NONCE_LEN);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::try_assume_unique_for_key(n).ok()?,
                Aad::from(redis_key.as_bytes()),
                body,
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// Opens an entry sealed by [`Ticket::seal_entry`] with any of the cookie keys.
    pub fn open_entry(
        &self,
        keys: &[CookieKey],
        redis_key: &str,
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        for k in keys {
            let key = self.entry_key(k)?;
            let mut buf = sealed.to_vec();
            let (n, body) = buf.split_at_mut(NONCE_LEN);
            let Ok(nonce) = Nonce::try_assume_unique_for_key(n) else {
                return None;
            };
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(redis_key.as_bytes()), body) {
                return Some(plain.to_vec());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CookieSettings;
    use std::time::Duration;

    fn jar(secret: &str) -> CookieJar {
        CookieJar::new(CookieSettings {
            name: "_gh".into(),
            secure: true,
            domain: None,
            login_path: "/oauth2/callback".into(),
            keys: vec![CookieKey::derive(secret).unwrap()],
            session_lifetime: Duration::from_secs(3600),
            idle_timeout: None,
            login_timeout: Duration::from_secs(600),
        })
    }

    const A: &str = "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk";
    const B: &str = "x9hHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk";

    #[test]
    fn a_ticket_is_small_and_opens_only_under_its_cookie_key() {
        let (a, b) = (jar(A), jar(B));
        let t = Ticket::new("3q2-7wE_session-id-AbCdEf").unwrap();
        let sealed = t.seal(&a).unwrap();
        assert!(sealed.len() < 140, "{}", sealed.len());
        assert_eq!(Ticket::open(&a, &sealed).unwrap(), t);
        assert!(Ticket::open(&b, &sealed).is_none());
        // A cookie-store session value under the same name is not a ticket.
        let other = a.codec.seal(a.cookie_name(), b"{}").unwrap();
        assert!(Ticket::open(&a, &other).is_none());
    }

    #[test]
    fn an_entry_opens_only_with_its_ticket_its_key_name_and_the_cookie_key() {
        let keys = vec![CookieKey::derive(A).unwrap()];
        let t = Ticket::new("s1").unwrap();
        let sealed = t.seal_entry(&keys, "gatehouse:{s1}:s", b"tokens").unwrap();
        assert_eq!(
            t.open_entry(&keys, "gatehouse:{s1}:s", &sealed).unwrap(),
            b"tokens"
        );
        // Another ticket for the same id (a forged cookie) cannot open it.
        let forged = Ticket::new("s1").unwrap();
        assert!(forged
            .open_entry(&keys, "gatehouse:{s1}:s", &sealed)
            .is_none());
        // Moved to another key, it does not open.
        assert!(t.open_entry(&keys, "gatehouse:{s2}:s", &sealed).is_none());
        // Without the cookie key (another deployment's secret), it does not open.
        let other = vec![CookieKey::derive(B).unwrap()];
        assert!(t.open_entry(&other, "gatehouse:{s1}:s", &sealed).is_none());
        // Rotation: a new first key still opens entries sealed with the old one.
        let rotated = vec![CookieKey::derive(B).unwrap(), CookieKey::derive(A).unwrap()];
        assert!(t
            .open_entry(&rotated, "gatehouse:{s1}:s", &sealed)
            .is_some());
        // The plaintext is nowhere in the entry.
        assert!(!sealed.windows(6).any(|w| w == b"tokens"));
    }
}
