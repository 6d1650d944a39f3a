//! Small shared helpers: randomness and time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use std::time::{SystemTime, UNIX_EPOCH};

/// `bytes` random bytes, base64url without padding. Empty only if the OS has no randomness.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if SystemRandom::new().fill(&mut buf).is_err() {
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short request id for logs and error pages: a random per-process prefix and a
/// counter, so the hot path makes no system call for it. Unique, not secret.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = SystemRandom::new().fill(&mut b);
        u32::from_le_bytes(b)
    });
    format!(
        "{prefix:08x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Percent-encodes a value for a URL query string.
pub fn query_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
