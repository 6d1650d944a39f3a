//! The plaintext inside a sealed cookie: deflated when that makes it smaller.
//!
//! [`pack`] gives the bytes `CookieCodec::seal` encrypts, [`unpack`] turns opened bytes back
//! into the plaintext. The first byte tells the forms apart:
//! - `0x01`: raw DEFLATE (RFC 1951) of a span table and a body (below);
//! - `0x00`: the plaintext follows as it is (used only when it begins with `0x00..=0x08`);
//! - `0x02..=0x08`: kept for formats to come; such a value does not open;
//! - anything else: the plaintext itself. Cookies sealed before compression existed hold
//!   JSON, which starts with `{`, so they open as they did.
//!
//! **Token payloads are stored decoded.** An ID token is base64url, which hides from any
//! compressor that its payload repeats the session's groups verbatim. A base64url run of at
//! least [`MIN_SPAN_CHARS`] between two dots (a JWT's payload) is therefore replaced by the
//! bytes it encodes, but only when encoding those bytes gives back the very same run, so the
//! token forwarded upstream is byte for byte the one the provider signed. The deflated
//! stream holds `varint(n)`, `n` pairs `varint(literal bytes before the span)`,
//! `varint(decoded length)`, then the body: literals and decoded spans in order.
//!
//! **Why deflate, through `miniz_oxide`.** Measured (a scratch program, release build, on a
//! busy shared 2-core machine, so times are rough) on `fixtures::entra(200)`: the JSON of a
//! session for an Entra ID user in 200 groups with random object ids (the RS256 ID token
//! carries them, the identity repeats them, a 1 KB refresh token), 20,967 bytes; and on
//! `fixtures::dex()`, 3 groups, 1,149 bytes. Sealed bytes include the marker, nonce, tag
//! and base64url; cookies are 3,800-byte chunks (at most 8).
//!
//! | token payload decoded          | 200 groups sealed | cookies | compress   | decompress | most groups in 8 cookies | 3 groups sealed |
//! |--------------------------------|------:|---:|-----------:|-------:|------:|------:|
//! | nothing (before)               | 27,994 | 8 | -         | -      |   219 | 1,570 |
//! | miniz_oxide deflate 6 (chosen) |  8,970 | 3 | 0.3-0.4 ms | 34 µs |   823 |   992 |
//! | miniz_oxide deflate 1          | 11,434 | 4 | 90 µs      | 45 µs  |   462 | 1,015 |
//! | zstd 3 (C library)             |  8,631 | 3 | 70 µs      | 21 µs  |   990 | 1,031 |
//! | zstd 19 (C library)            |  8,231 | 3 | 1.2-1.8 ms | 23 µs  | 1,064 | 1,030 |
//! | brotli q5 (pure Rust)          |  8,212 | 3 | 0.4-0.7 ms | 43 µs  |   975 | 1,014 |
//! | brotli q11 (pure Rust)         |  7,559 | 2 | 14-45 ms   | 68 µs  | 1,093 |   947 |
//! | lz4_flex (pure Rust)           | 13,266 | 4 | 16 µs      | 3 µs   |   547 | 1,280 |
//! | **token left as base64url**    |        |   |            |        |       |       |
//! | miniz_oxide deflate 6          | 17,455 | 5 | 0.8 ms     | 70 µs  |       | 1,186 |
//! | zstd 19 (C library)            | 16,918 | 5 | 3.4 ms     | 51 µs  |       | 1,216 |
//! | brotli q11 (pure Rust)         | 15,184 | 4 | 30-45 ms   | 130 µs |       | 1,172 |
//!
//! Decoding the payload halves the result whatever the compressor. Past that the
//! compressors are within 10% of each other, except brotli's slowest level, which saves one
//! cookie at 40 to 100 times the sealing time and brings in about 280,000 lines of Rust. No
//! choice makes a 200-group session fit nginx's default buffers; the Redis store does that.
//! `miniz_oxide` is the deflate behind `flate2` (which, like the `deflate` crate, gives the
//! same sizes): pure Rust under `#![forbid(unsafe_code)]`, one small dependency (`adler2`),
//! and a one-shot inflate with an output bound. Level 9 saves 6 bytes at 25% more time.
//! zstd needs its C library; `lz4_flex` compresses too little (and wants Rust 1.81, newer
//! than ours); the `deflate` crate is in maintenance mode.
//!
//! Trusts nothing it unpacks (values are authenticated before this runs, but a bound costs
//! nothing): output beyond [`MAX_PLAIN_LEN`] or a malformed table is `None`, never a panic.
//!
//! Length as an oracle (CRIME/BREACH): compressing secrets beside attacker-chosen text lets
//! the ciphertext's length leak them over many adaptive tries against a fixed secret. A
//! session holds one user's own claims and tokens, re-sealed only at login and refresh;
//! a login cookie's one chosen part (the return target) sits beside state, nonce and
//! verifier that are fresh for every seal, and login cookies are mostly shorter than
//! [`MIN_PACK_LEN`] and so never compressed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::ops::RangeInclusive;

/// Marks a plaintext kept as it is (one whose first byte would read as a marker).
const STORED: u8 = 0x00;
/// Marks a deflated plaintext.
const DEFLATED: u8 = 0x01;
/// First bytes that are markers, never plaintext (no JSON text starts with one; a JSON
/// text may start with a tab, 0x09).
const MARKERS: RangeInclusive<u8> = 0x00..=0x08;

/// Largest plaintext [`unpack`] gives back; anything longer is refused.
pub const MAX_PLAIN_LEN: usize = 256 * 1024;
/// Plaintexts shorter than this are not worth deflating: a login cookie is ~200 bytes of
/// mostly random tokens, which deflate cannot shrink.
pub const MIN_PACK_LEN: usize = 512;
/// Shortest base64url run between two dots stored decoded: a JWT payload, not a claim or a
/// dotted name.
pub const MIN_SPAN_CHARS: usize = 64;
/// miniz_oxide's default level: 6 bytes from level 9 on a 200-group session, 25% faster.
const LEVEL: u8 = 6;

/// The bytes to seal for `plain`: deflated when that is smaller, else `plain` itself
/// (behind a [`STORED`] marker only if it begins with a marker byte).
pub fn pack(plain: &[u8]) -> Vec<u8> {
    if (MIN_PACK_LEN..=MAX_PLAIN_LEN).contains(&plain.len()) {
        let mut packed = vec![DEFLATED];
        packed.extend(miniz_oxide::deflate::compress_to_vec(&expand(plain), LEVEL));
        if packed.len() < plain.len() {
            // Sealing is rare (login, refresh), so check the way back once: a value that
            // would not open to `plain` is never sealed.
            if unpack(packed.clone()).as_deref() == Some(plain) {
                return packed;
            }
            debug_assert!(false, "packed plaintext did not unpack to itself");
        }
    }
    match plain.first() {
        Some(b) if MARKERS.contains(b) => {
            let mut stored = Vec::with_capacity(plain.len() + 1);
            stored.push(STORED);
            stored.extend_from_slice(plain);
            stored
        }
        _ => plain.to_vec(),
    }
}

/// The plaintext `packed` (an opened value) stands for; `None` for an unknown marker, a
/// malformed stream, or more than [`MAX_PLAIN_LEN`] bytes.
pub fn unpack(mut packed: Vec<u8>) -> Option<Vec<u8>> {
    match packed.first() {
        Some(&STORED) => {
            packed.remove(0);
            Some(packed)
        }
        Some(&DEFLATED) => inflate(&packed[1..]),
        Some(b) if MARKERS.contains(b) => None,
        _ => Some(packed),
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The span table and body for `plain` (see the module docs).
fn expand(plain: &[u8]) -> Vec<u8> {
    let mut table = Vec::new();
    let mut body = Vec::with_capacity(plain.len());
    let mut spans = 0u64;
    let (mut i, mut literal_from) = (0, 0);
    while i < plain.len() {
        if !is_base64url(plain[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < plain.len() && is_base64url(plain[i]) {
            i += 1;
        }
        let run = &plain[start..i];
        let dotted = start > 0 && plain[start - 1] == b'.' && plain.get(i) == Some(&b'.');
        if !dotted || run.len() < MIN_SPAN_CHARS {
            continue;
        }
        let Ok(decoded) = URL_SAFE_NO_PAD.decode(run) else {
            continue;
        };
        if URL_SAFE_NO_PAD.encode(&decoded).as_bytes() != run {
            continue;
        }
        put_varint(&mut table, (start - literal_from) as u64);
        put_varint(&mut table, decoded.len() as u64);
        body.extend_from_slice(&plain[literal_from..start]);
        body.extend_from_slice(&decoded);
        literal_from = i;
        spans += 1;
    }
    body.extend_from_slice(&plain[literal_from..]);
    let mut out = Vec::with_capacity(table.len() + body.len() + 10);
    put_varint(&mut out, spans);
    out.extend_from_slice(&table);
    out.extend_from_slice(&body);
    out
}

/// Room for the span table beyond the plaintext bound: a span shrinks the body by at least
/// 16 bytes and takes at most 6 in the table, so only the count can add (2 bytes).
const TABLE_SLACK: usize = 16;

/// Inflates (bounded) and re-encodes the spans: the inverse of `expand` after deflate.
fn inflate(deflated: &[u8]) -> Option<Vec<u8>> {
    let framed =
        miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_PLAIN_LEN + TABLE_SLACK)
            .ok()?;
    let mut input = framed.as_slice();
    let spans = take_varint(&mut input)?;
    let mut table = Vec::new();
    for _ in 0..spans {
        // Each entry takes at least two bytes, so a forged count ends here, unallocated.
        let gap = usize::try_from(take_varint(&mut input)?).ok()?;
        let len = usize::try_from(take_varint(&mut input)?).ok()?;
        table.push((gap, len));
    }
    let mut body = input;
    let mut out = Vec::with_capacity(framed.len());
    for (gap, len) in table {
        let (literal, rest) = body.split_at_checked(gap)?;
        let (decoded, rest) = rest.split_at_checked(len)?;
        body = rest;
        let encoded_len = base64::encoded_len(len, false)?;
        let end = out.len().checked_add(gap)?.checked_add(encoded_len)?;
        if end > MAX_PLAIN_LEN {
            return None;
        }
        out.extend_from_slice(literal);
        let at = out.len();
        out.resize(end, 0);
        URL_SAFE_NO_PAD.encode_slice(decoded, &mut out[at..]).ok()?;
    }
    if out.len() + body.len() > MAX_PLAIN_LEN {
        return None;
    }
    out.extend_from_slice(body);
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(((v & 0x7f) as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A LEB128 number of at most 10 bytes, taken off the front of `input`.
fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

/// Realistic session plaintexts: `serde_json::to_vec(&Session)` as gatehouse seals it.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::identity::Identity;
    use crate::session::Session;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    /// A seeded generator (SplitMix64): random-looking, the same on every run.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
        }
        pub(crate) fn b64(&mut self, n: usize) -> String {
            URL_SAFE_NO_PAD.encode(self.bytes(n))
        }
        /// An Entra object id.
        fn uuid(&mut self) -> String {
            let h: String = self.bytes(16).iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
    }

    /// `header.payload.signature`, RS256-sized (256-byte signature).
    fn jwt(header: serde_json::Value, payload: serde_json::Value, rng: &mut Rng) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            rng.b64(256)
        )
    }

    /// The session id, then the refresh token: `refresh` makes it from `rng`.
    fn session(
        identity: Identity,
        id_token: String,
        refresh: impl FnOnce(&mut Rng) -> String,
        rng: &mut Rng,
    ) -> Session {
        Session {
            id: rng.b64(12),
            identity,
            id_token,
            refresh_token: Some(refresh(rng)),
            access_token: None,
            expires_at: 1_760_003_600,
            created_at: 1_760_000_000,
            sid: None,
            seen: 0,
            ticket: None,
            values: Default::default(),
            claims: Default::default(),
        }
    }

    /// An Entra ID user in `groups` groups: the ID token carries them (random object ids),
    /// the identity repeats them, and the refresh token is ~1 KB of opaque random text.
    pub(crate) fn entra(groups: usize) -> (Session, Vec<u8>) {
        let mut r = Rng(16 + groups as u64);
        let ids: Vec<String> = (0..groups).map(|_| r.uuid()).collect();
        let (tid, sub, user) = (r.uuid(), r.b64(32), "alice.example@contoso.com");
        let payload = json!({
            "aud": r.uuid(),
            "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "iat": 1_760_000_000u64, "nbf": 1_760_000_000u64, "exp": 1_760_003_600u64,
            "aio": r.b64(90), "email": user, "groups": ids, "name": "Alice Example",
            "nonce": r.b64(24), "oid": r.uuid(), "preferred_username": user,
            "rh": format!("1.{}.", r.b64(60)), "sid": r.uuid(), "sub": sub, "tid": tid,
            "uti": r.b64(16), "ver": "2.0",
        });
        let token = jwt(
            json!({"typ": "JWT", "alg": "RS256", "kid": r.b64(20)}),
            payload,
            &mut r,
        );
        let identity = Identity {
            sub,
            user: user.into(),
            email: Some(user.into()),
            groups: ids,
            preferred_username: Some(user.into()),
            email_verified: None,
        };
        let s = session(identity, token, |r| format!("1.{}", r.b64(766)), &mut r);
        let plain = serde_json::to_vec(&s).unwrap_or_default();
        (s, plain)
    }

    /// A Dex user in three groups, with Dex's short refresh token.
    pub(crate) fn dex() -> (Session, Vec<u8>) {
        let mut r = Rng(3);
        let groups = vec!["admins".to_string(), "developers".into(), "ops".into()];
        let (sub, user) = ("CgVhbGljZRIFbG9jYWw".to_string(), "alice@example.com");
        let payload = json!({
            "iss": "https://dex.example.com", "sub": sub, "aud": "gatehouse",
            "exp": 1_760_086_400u64, "iat": 1_760_000_000u64, "nonce": r.b64(24),
            "at_hash": r.b64(16), "c_hash": r.b64(16), "email": user,
            "email_verified": true, "groups": groups, "name": "Alice",
        });
        let kid: String = r.bytes(20).iter().map(|b| format!("{b:02x}")).collect();
        let token = jwt(json!({"alg": "RS256", "kid": kid}), payload, &mut r);
        let identity = Identity {
            sub,
            user: user.into(),
            email: Some(user.into()),
            groups,
            preferred_username: None,
            email_verified: Some(true),
        };
        let s = session(identity, token, |r| format!("Chl{}", r.b64(44)), &mut r);
        let plain = serde_json::to_vec(&s).unwrap_or_default();
        (s, plain)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{dex, entra, Rng};
    use super::*;
    use proptest::prelude::*;

    fn deflated(framed: &[u8]) -> Vec<u8> {
        let mut v = vec![DEFLATED];
        v.extend(miniz_oxide::deflate::compress_to_vec(framed, 6));
        v
    }

    #[test]
    fn sessions_pack_smaller_and_unpack_to_the_same_bytes() {
        for (plain, most_percent) in [(entra(200).1, 35), (entra(20).1, 60), (dex().1, 70)] {
            let packed = pack(&plain);
            assert_eq!(packed[0], DEFLATED);
            assert!(
                packed.len() * 100 <= plain.len() * most_percent,
                "{} -> {} bytes",
                plain.len(),
                packed.len()
            );
            assert_eq!(unpack(packed).as_deref(), Some(plain.as_slice()));
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    #[test]
    fn the_token_payload_is_stored_decoded_so_the_groups_repeat() {
        let (session, plain) = entra(200);
        let payload = session.id_token.split('.').nth(1).unwrap();
        let framed = expand(&plain);
        let groups = serde_json::to_string(&session.identity.groups).unwrap();
        assert_eq!(contains(&plain, groups.as_bytes()), 1);
        assert_eq!(
            contains(&framed, groups.as_bytes()),
            2,
            "the groups, verbatim, in the token's payload and in the identity"
        );
        assert_eq!(contains(&framed, payload.as_bytes()), 0);
    }

    #[test]
    fn tokens_come_back_byte_for_byte_whatever_their_encoding() {
        let mut r = Rng(5);
        // 100 bytes: 134 characters, the last one with 4 spare bits (zero when canonical,
        // so it is one of A, Q, g, w; never B).
        let canonical = r.b64(100);
        let mut spare_bits_set = canonical.clone();
        spare_bits_set.replace_range(133.., "B");
        let cases = [
            (canonical.clone(), true),
            (spare_bits_set, false),
            (canonical[..133].to_string(), false), // 133 characters: no base64 length
            (format!("{canonical}=="), false),     // padded
            (format!("{}+/{}", &canonical[..70], &canonical[70..]), false), // base64, not url
        ];
        for (payload, stored_decoded) in cases {
            let plain = format!(
                r#"{{"i":"x","t":"eyJhbGciOiJSUzI1NiJ9.{payload}.{}","r":"{}"}}"#,
                r.b64(256),
                r.b64(300)
            );
            let framed = expand(plain.as_bytes());
            assert_eq!(
                contains(&framed, payload.as_bytes()) == 0,
                stored_decoded,
                "{payload}"
            );
            let packed = pack(plain.as_bytes());
            assert_eq!(packed[0], DEFLATED);
            assert_eq!(unpack(packed).as_deref(), Some(plain.as_bytes()));
        }
    }

    #[test]
    fn short_or_incompressible_plaintexts_are_kept_as_they_are() {
        let login = br#"{"s":"abcDEF123456xyzabcDEF123456xyzab","n":"n","v":"v","r":"/","c":1}"#;
        assert_eq!(pack(login), login);
        let random = Rng(9).bytes(4000);
        let mut text = vec![b'{'];
        text.extend(Rng(10).b64(3000).bytes());
        for plain in [random, text] {
            let packed = pack(&plain);
            assert!(packed.len() <= plain.len() + 1);
            assert_eq!(unpack(packed).as_deref(), Some(plain.as_slice()));
        }
    }

    #[test]
    fn a_plaintext_starting_with_a_marker_byte_is_escaped() {
        for first in 0u8..=8 {
            let plain = [first, b'x', b'y'];
            let packed = pack(&plain);
            assert_eq!(packed, [STORED, first, b'x', b'y']);
            assert_eq!(unpack(packed).as_deref(), Some(&plain[..]));
        }
        assert_eq!(pack(b"").as_slice(), b"");
        assert_eq!(unpack(Vec::new()), Some(Vec::new()));
    }

    #[test]
    fn old_json_plaintexts_unpack_as_they_are_and_reserved_markers_do_not() {
        let json = br#"{"i":"x","t":"a.b.c"}"#.to_vec();
        assert_eq!(unpack(json.clone()), Some(json));
        assert_eq!(
            unpack(b" \t\n{}".to_vec()).as_deref(),
            Some(&b" \t\n{}"[..])
        );
        for marker in 2u8..=8 {
            assert_eq!(unpack(vec![marker, b'{', b'}']), None);
        }
    }

    #[test]
    fn output_is_bounded() {
        // Exactly the bound opens; one byte more does not, nor does a stream past it.
        let mut framed = vec![0u8];
        framed.resize(1 + MAX_PLAIN_LEN, b'a');
        assert_eq!(
            unpack(deflated(&framed)).map(|p| p.len()),
            Some(MAX_PLAIN_LEN)
        );
        framed.push(b'a');
        assert_eq!(unpack(deflated(&framed)), None);
        framed.resize(64 * MAX_PLAIN_LEN, b'a');
        assert_eq!(unpack(deflated(&framed)), None);
        // The largest plaintext packs and comes back.
        let mut largest = vec![b'{'; MAX_PLAIN_LEN];
        largest[1000..1200].copy_from_slice(&[b'.'; 200]);
        assert_eq!(unpack(pack(&largest)), Some(largest));
        // A span whose re-encoding passes the bound, from a stream well under it.
        let len = MAX_PLAIN_LEN * 3 / 4 + 3;
        let mut framed = Vec::new();
        for v in [1u64, 0, len as u64] {
            put_varint(&mut framed, v);
        }
        framed.resize(framed.len() + len, 0);
        assert_eq!(unpack(deflated(&framed)), None);
        // A plaintext past the bound is sealed uncompressed, never as a value that cannot
        // open.
        let big = vec![b'{'; MAX_PLAIN_LEN + 1];
        assert_eq!(pack(&big), big);
    }

    #[test]
    fn malformed_span_tables_are_refused() {
        let cases: [&[u8]; 6] = [
            &[],              // no count
            &[0x80],          // a count cut short
            &[1, 5],          // a pair cut short
            &[1, 0, 4, b'x'], // a span longer than the body
            &[1, 9, 0, b'x'], // literals longer than the body
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // 11 bytes
        ];
        for framed in cases {
            assert_eq!(unpack(deflated(framed)), None, "{framed:?}");
        }
        assert_eq!(unpack(vec![DEFLATED]), None);
        assert_eq!(unpack(vec![DEFLATED, 0xff, 0x00]), None);
    }

    /// Text that looks like sessions: JSON punctuation, dots, base64url runs of every
    /// length (canonical or not), and bytes that are none of these.
    fn session_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b".".to_vec()),
            Just(b"\",\"".to_vec()),
            "[A-Za-z0-9_-]{0,200}".prop_map(String::into_bytes),
            (0usize..400, any::<u64>()).prop_map(|(n, seed)| Rng(seed).b64(n).into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn pack_then_unpack_is_identity(plain in session_like()) {
            prop_assert_eq!(unpack(pack(&plain)), Some(plain));
        }

        #[test]
        fn unpack_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = unpack(bytes.clone());
            let mut framed = bytes;
            framed.insert(0, DEFLATED);
            let _ = unpack(framed.clone());
            // Valid deflate around arbitrary tables and bodies.
            let _ = unpack(deflated(&framed[1..]));
        }
    }
}
