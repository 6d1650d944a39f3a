//! Sealed cookie values (`CookieCodec::seal` / `open`, AES-256-GCM with the cookie name as
//! associated data), with fixed keys.
//!
//! Asserts:
//! - `open` of arbitrary text never panics and never accepts it (with one key, and with
//!   a rotated pair of keys): only a value sealed with a configured key opens. These
//!   codecs' keys never seal anything here: values sealed in this process reach
//!   libFuzzer's comparison dictionary (every `==` on them is traced) and come back as
//!   inputs, so with a sealing key this check would fail on genuine values;
//! - `seal` then `open` with the same purpose gives the plaintext back, also through a
//!   codec that lists the sealing key second (rotation); the value is cookie-safe
//!   base64url of nonce + ciphertext + tag; it does not open under another purpose or
//!   with another key; two seals of the same plaintext differ (fresh nonce);
//! - a sealed value edited in any way (bytes set, inserted, removed, truncated,
//!   appended) either fails to open or decodes to the very same sealed bytes;
//! - the plaintext is packed (`compress.rs`) so that it unpacks to itself and grows by one
//!   byte at most; unpacking any bytes (any marker, any deflate stream) never panics and
//!   never gives more than `MAX_PLAIN_LEN` bytes.
#![no_main]

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::config::CookieKey;
use gatehouse::session::codec::{CookieCodec, MAX_SEALED_LEN};
use gatehouse::session::compress;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Test-only keys, random once and fixed here.
const SECRET_A: &str = "hKf6ELeUA5NTuS0tqPGrHe-kipfaTLjm1IPhBWmdvRc";
const SECRET_B: &str = "zv_Dl4acSNsi3CsrXUaKzpaUAxGi26sIrcKSb1vz-5g";
/// Keys that only ever open (see the module docs).
const SECRET_C: &str = "_lX2ShZjVvJ1nP4iu29oBL99IX-3s94Hxzok3TriQ54";
const SECRET_D: &str = "q2vBfT-MstcCtdAE9T0Bp0YBkA2DNqtf9ARGX6umY7c";

/// Names gatehouse seals under (the cookie names), and an empty one.
const PURPOSES: &[&str] = &[
    "_gatehouse",
    "__Host-_gatehouse",
    "__Secure-_gatehouse_login",
    "",
];

struct Codecs {
    /// Key A only.
    a: CookieCodec,
    /// Key B only.
    b: CookieCodec,
    /// B seals, B and A open.
    rotated: CookieCodec,
    /// Key C only: never seals.
    open_only: CookieCodec,
    /// Keys D and C: never seal.
    open_only_rotated: CookieCodec,
}

fn codecs() -> &'static Codecs {
    static C: OnceLock<Codecs> = OnceLock::new();
    C.get_or_init(|| {
        let a = CookieKey::derive(SECRET_A).expect("test key A");
        let b = CookieKey::derive(SECRET_B).expect("test key B");
        let c = CookieKey::derive(SECRET_C).expect("test key C");
        let d = CookieKey::derive(SECRET_D).expect("test key D");
        Codecs {
            open_only: CookieCodec::new(std::slice::from_ref(&c)),
            open_only_rotated: CookieCodec::new(&[d, c]),
            a: CookieCodec::new(std::slice::from_ref(&a)),
            b: CookieCodec::new(std::slice::from_ref(&b)),
            rotated: CookieCodec::new(&[b, a]),
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set(u16, u8),
    Insert(u16, u8),
    Remove(u16),
    Truncate(u16),
    Append(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Arbitrary text as a cookie value.
    Garbage { purpose: u8, text: String },
    /// Seal then open.
    RoundTrip { purpose: String, plain: Vec<u8> },
    /// Bytes as an opened value's plaintext, before unpacking.
    Unpack { bytes: Vec<u8> },
    /// Seal, edit, open.
    Tamper {
        purpose: u8,
        plain: Vec<u8>,
        edits: Vec<Edit>,
    },
}

fn purpose(i: u8) -> &'static str {
    PURPOSES[usize::from(i) % PURPOSES.len()]
}

fn seal(codec: &CookieCodec, purpose: &str, plain: &[u8]) -> String {
    codec
        .seal(purpose, plain)
        .expect("sealing fails only without OS randomness")
}

fn check_round_trip(purpose: &str, plain: &[u8]) {
    let c = codecs();
    let sealed = seal(&c.a, purpose, plain);
    // The plaintext is packed first: deflated only when that is smaller, else as it is
    // (one marker byte more when it starts with a marker byte).
    let packed = compress::pack(plain);
    assert!(
        packed.len() <= plain.len() + 1,
        "packing grew the plaintext"
    );
    assert_eq!(compress::unpack(packed.clone()).as_deref(), Some(plain));
    let raw_len = 12 + packed.len() + 16;
    assert_eq!(
        sealed.len(),
        (raw_len * 4).div_ceil(3),
        "base64url, no padding"
    );
    assert!(
        sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not cookie-safe: {sealed:?}"
    );
    if sealed.len() > MAX_SEALED_LEN {
        assert!(c.a.open(purpose, &sealed).is_none());
        return;
    }
    assert_eq!(c.a.open(purpose, &sealed).as_deref(), Some(plain));
    assert_eq!(
        c.rotated.open(purpose, &sealed).as_deref(),
        Some(plain),
        "an older key must still open"
    );
    assert!(
        c.b.open(purpose, &sealed).is_none(),
        "opened with another key"
    );
    let other = format!("{purpose}x");
    assert!(
        c.a.open(&other, &sealed).is_none(),
        "opened under another cookie's name"
    );
    assert_ne!(seal(&c.a, purpose, plain), sealed, "nonce reused");

    let by_new = seal(&c.rotated, purpose, plain);
    assert_eq!(c.rotated.open(purpose, &by_new).as_deref(), Some(plain));
    assert_eq!(c.b.open(purpose, &by_new).as_deref(), Some(plain));
    assert!(
        c.a.open(purpose, &by_new).is_none(),
        "the old key alone opened a value sealed by the new one"
    );
}

fn apply(value: &str, edits: &[Edit]) -> String {
    let mut bytes = value.as_bytes().to_vec();
    for e in edits {
        match e {
            Edit::Set(i, b) if !bytes.is_empty() => {
                let i = usize::from(*i) % bytes.len();
                bytes[i] = *b;
            }
            Edit::Insert(i, b) => {
                let i = usize::from(*i) % (bytes.len() + 1);
                bytes.insert(i, *b);
            }
            Edit::Remove(i) if !bytes.is_empty() => {
                let i = usize::from(*i) % bytes.len();
                bytes.remove(i);
            }
            Edit::Truncate(n) => bytes.truncate(usize::from(*n)),
            Edit::Append(s) => bytes.extend_from_slice(s.as_bytes()),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fuzz_target!(|op: Op| {
    let c = codecs();
    match op {
        Op::Garbage { purpose: p, text } => {
            // Nothing was ever sealed with these keys: nothing the fuzzer makes opens.
            for purpose in [purpose(p), text.as_str()] {
                assert!(
                    c.open_only.open(purpose, &text).is_none(),
                    "forged: {text:?}"
                );
                assert!(
                    c.open_only_rotated.open(purpose, &text).is_none(),
                    "forged: {text:?}"
                );
            }
            // With the sealing keys it may meet a genuine value (see above); it then
            // opens to what was sealed under that purpose, which this cannot know.
            let _ = c.a.open(purpose(p), &text);
            let _ = c.rotated.open(purpose(p), &text);
        }
        Op::Unpack { bytes } => {
            // What an authenticated value could hold, were a key ever to seal it: any
            // marker, any deflate stream, any span table. Never a panic, never past the bound.
            for packed in [bytes.clone(), [&[0x01][..], &bytes].concat()] {
                if let Some(plain) = compress::unpack(packed) {
                    assert!(plain.len() <= compress::MAX_PLAIN_LEN);
                }
            }
        }
        Op::RoundTrip { purpose, plain } => {
            check_round_trip(&purpose, &plain);
            for p in PURPOSES {
                check_round_trip(p, &plain);
            }
        }
        Op::Tamper {
            purpose: p,
            plain,
            edits,
        } => {
            let purpose = purpose(p);
            let sealed = seal(&c.a, purpose, &plain);
            let edited = apply(&sealed, &edits);
            for codec in [&c.a, &c.rotated] {
                if let Some(opened) = codec.open(purpose, &edited) {
                    assert_eq!(opened, plain);
                    assert_eq!(
                        URL_SAFE_NO_PAD.decode(&edited).ok(),
                        URL_SAFE_NO_PAD.decode(&sealed).ok(),
                        "an edited value opened: {sealed:?} -> {edited:?}"
                    );
                }
            }
        }
    }
});
