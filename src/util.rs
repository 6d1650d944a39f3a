//! Small shared helpers: randomness and time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use std::time::{SystemTime, UNIX_EPOCH};

/// A hasher that folds bytes with a multiply, for maps keyed by values that are already
/// random (a GCM tag, a hash): SipHash showed up in the per-request instruction count
/// for no benefit there. Not for maps a client could fill with colliding keys.
#[derive(Default)]
pub struct FoldHasher(u64);

impl std::hash::Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

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
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // By hand rather than `format!`: this runs for every request.
    let word = (u64::from(prefix) << 32) | (n & 0xffff_ffff);
    let mut id = String::with_capacity(16);
    for shift in (0..16).rev() {
        id.push(char::from(
            b"0123456789abcdef"[((word >> (shift * 4)) & 0xf) as usize],
        ));
    }
    id
}

/// An IP address as text; IPv4 by hand (the formatter costs more than the request
/// needs, and this runs for every proxied request).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip_text(&mut s, ip);
    s
}

/// [`ip_text`] appended to `out`, without a string of its own (the `X-Forwarded-For`
/// chain is written address by address into one).
pub fn push_ip_text(out: &mut String, ip: std::net::IpAddr) {
    let std::net::IpAddr::V4(v4) = ip else {
        use std::fmt::Write;
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// Percent-encodes a value for a URL query string.
pub fn query_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_the_standard_formatting() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.200",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in [0u32, 1, 0x0a0b0c0d, u32::MAX, 0x64_63_09_0a] {
            let ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(n));
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(a[..8], b[..8], "one prefix per process");
    }
}
