//! gatehouse's own signing keys for the identity assertion, read from PEM: which key
//! types it takes, the `kid` of each (the RFC 7638 JWK thumbprint of its public half),
//! JWS signing (RFC 7515 compact form), and the public JWK Set it publishes.
//!
//! Taken: P-256 (ES256, the default choice), P-384 (ES384), RSA of at least 2048 bits
//! (RS256) and Ed25519 (EdDSA), as PKCS#8 (`BEGIN PRIVATE KEY`), SEC1 (`BEGIN EC PRIVATE
//! KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`). Several blocks in one file are several keys:
//! the first signs, all are published (rotation). Trusts nothing in the file: every
//! block is parsed by ring, and each refusal says what the block was and what to do.
//! Private halves never reach `Debug` output or the log.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use std::fmt;

/// One private key and what is published of it.
pub struct SigningKey {
    pair: Pair,
    /// The JWS `alg`: `ES256`, `ES384`, `RS256` or `EdDSA`.
    pub alg: &'static str,
    /// The RFC 7638 thumbprint of the public key, base64url.
    pub kid: String,
    /// The public JWK, with `kid`, `alg` and `use`.
    pub jwk: Value,
    /// `{"alg":..,"kid":..,"typ":"JWT"}`, base64url: the same for every token.
    pub(super) header: String,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why a signature could not be made (ring refused; not expected with a parsed key).
#[derive(Debug, thiserror::Error)]
#[error("the assertion could not be signed with key {kid}")]
pub struct SignError {
    pub kid: String,
}

impl SigningKey {
    /// The JWS compact serialisation of `payload` (JSON) under this key.
    pub fn sign(&self, payload: &[u8]) -> Result<String, SignError> {
        let mut out = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        out.push_str(&self.header);
        out.push('.');
        B64.encode_string(payload, &mut out);
        let rng = SystemRandom::new();
        let err = || SignError {
            kid: self.kid.clone(),
        };
        let sig = match &self.pair {
            Pair::Ec(k) => k
                .sign(&rng, out.as_bytes())
                .map_err(|_| err())?
                .as_ref()
                .to_vec(),
            Pair::Ed(k) => k.sign(out.as_bytes()).as_ref().to_vec(),
            Pair::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig)
                    .map_err(|_| err())?;
                sig
            }
        };
        out.push('.');
        B64.encode_string(sig, &mut out);
        Ok(out)
    }
}

/// The keys of `assertion_signing_key_file`, in file order: the first signs.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// The public JWK Set, serialised once.
    jwks: String,
}

impl KeySet {
    /// Reads every PEM block of `text`; `Err` lists every problem, each naming its block.
    pub fn from_pem(text: &str) -> Result<KeySet, Vec<String>> {
        let blocks = pem::parse_many(text).map_err(|e| {
            vec![format!("is not a PEM file ({e}); it must hold private keys as -----BEGIN PRIVATE KEY----- blocks")]
        })?;
        let (mut keys, mut problems) = (Vec::new(), Vec::new());
        let mut n = 0;
        for block in &blocks {
            // `openssl ecparam -genkey` writes the curve's parameters first: not a key.
            if block.tag() == "EC PARAMETERS" {
                continue;
            }
            n += 1;
            match read_block(block.tag(), block.contents()) {
                Ok(k) => match keys.iter().position(|o: &SigningKey| o.kid == k.kid) {
                    Some(i) => problems.push(format!("key #{n} is the same key as #{}", i + 1)),
                    None => keys.push(k),
                },
                Err(why) => problems.push(format!("key #{n} ({}): {why}", block.tag())),
            }
        }
        if n == 0 {
            problems.push("holds no private key (-----BEGIN PRIVATE KEY-----); create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let jwks = json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() }).to_string();
        Ok(KeySet { keys, jwks })
    }

    /// The key that signs: the first in the file.
    pub fn signer(&self) -> Option<&SigningKey> {
        self.keys.first()
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The public JWK Set (`{"keys":[...]}`), as served.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }
}

// DER object identifiers (their encoded bytes, tag and length included).
const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// Curves named in refusals.
const OTHER_CURVES: &[(&[u8], &str)] = &[
    (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
    (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
    (&[0x06, 0x03, 0x2b, 0x65, 0x71], "Ed448"),
    (
        &[0x06, 0x03, 0x2b, 0x65, 0x6e],
        "X25519 (a key-agreement key)",
    ),
];

/// Whether `oid` appears among the first bytes of `der`, where the algorithm identifier
/// of a PKCS#8 key or the parameters of a SEC1 key sit (never deep in key material).
fn names(der: &[u8], oid: &[u8]) -> bool {
    der.get(..der.len().min(64))
        .is_some_and(|head| head.windows(oid.len()).any(|w| w == oid))
}

const UNSUPPORTED: &str = "use P-256 (ES256), P-384, RSA of 2048 bits or more, or Ed25519";

fn read_block(tag: &str, der: &[u8]) -> Result<SigningKey, String> {
    match tag {
        "PRIVATE KEY" => read_pkcs8(der),
        "EC PRIVATE KEY" => {
            let (curve, alg) = if names(der, OID_P256) {
                (OID_P256, "ES256")
            } else if names(der, OID_P384) {
                (OID_P384, "ES384")
            } else {
                return Err(unsupported_curve(der));
            };
            read_ec(&sec1_to_pkcs8(der, curve), alg)
        }
        "RSA PRIVATE KEY" => {
            RsaKeyPair::from_der(der).map_err(rsa_refused).and_then(rsa_key)
        }
        "ENCRYPTED PRIVATE KEY" => Err("is encrypted; gatehouse needs it unencrypted (`openssl pkcs8 -in key.pem -out plain.pem`) and the file readable by gatehouse alone".into()),
        "CERTIFICATE" | "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(format!(
            "is a {}, not a private key: the file must hold gatehouse's private signing key(s); the public half is published at /.well-known/gatehouse/jwks.json",
            tag.to_ascii_lowercase()
        )),
        other => Err(format!("`{other}` is not a private key block")),
    }
}

fn unsupported_curve(der: &[u8]) -> String {
    match OTHER_CURVES.iter().find(|(oid, _)| names(der, oid)) {
        Some((_, name)) => format!("the curve {name} is not supported: {UNSUPPORTED}"),
        None => format!("the key type or curve is not supported: {UNSUPPORTED}"),
    }
}

fn read_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
    if names(der, OID_EC) {
        if names(der, OID_P256) {
            return read_ec(der, "ES256");
        }
        if names(der, OID_P384) {
            return read_ec(der, "ES384");
        }
        return Err(unsupported_curve(der));
    }
    if names(der, OID_RSA) {
        return RsaKeyPair::from_pkcs8(der)
            .map_err(rsa_refused)
            .and_then(rsa_key);
    }
    if names(der, OID_ED25519) {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| format!("is not a usable Ed25519 key ({e})"))?;
        let x = B64.encode(pair.public_key().as_ref());
        let public = json!({"crv": "Ed25519", "kty": "OKP", "x": x});
        return Ok(finish(Pair::Ed(pair), "EdDSA", public));
    }
    Err(unsupported_curve(der))
}

fn read_ec(pkcs8: &[u8], alg: &'static str) -> Result<SigningKey, String> {
    let (curve, signing, crv, half) = match alg {
        "ES384" => (
            "P-384",
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
            48,
        ),
        _ => (
            "P-256",
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
            32,
        ),
    };
    let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8, &SystemRandom::new())
        .map_err(|e| format!("is not a usable {curve} key ({e}); ring needs the public key inside it, as openssl writes it"))?;
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let (x, y) = match point.get(1..).map(|xy| xy.split_at(half.min(xy.len()))) {
        Some((x, y)) if x.len() == half && y.len() == half => (B64.encode(x), B64.encode(y)),
        _ => return Err(format!("is not a usable {curve} key (odd public point)")),
    };
    let public = json!({"crv": crv, "kty": "EC", "x": x, "y": y});
    Ok(finish(Pair::Ec(pair), alg, public))
}

fn rsa_refused(e: ring::error::KeyRejected) -> String {
    match e.to_string().as_str() {
        "TooSmall" => "is a weak RSA key: at least 2048 bits are needed".into(),
        "TooLarge" => "is an RSA key larger than 8192 bits".into(),
        other => format!("is not a usable RSA key ({other})"),
    }
}

fn rsa_key(pair: RsaKeyPair) -> Result<SigningKey, String> {
    let parts: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    let public = json!({"e": B64.encode(&parts.e), "kty": "RSA", "n": B64.encode(&parts.n)});
    Ok(finish(Pair::Rsa(pair), "RS256", public))
}

/// `public` holds exactly the RFC 7638 required members (`serde_json` keeps keys
/// sorted, as the thumbprint needs); the published JWK adds `kid`, `alg` and `use`.
fn finish(pair: Pair, alg: &'static str, public: Value) -> SigningKey {
    let kid = thumbprint(&public);
    let mut jwk = public;
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), kid.clone().into());
        m.insert("alg".into(), alg.into());
        m.insert("use".into(), "sig".into());
    }
    let header = B64.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
    SigningKey {
        pair,
        alg,
        kid,
        jwk,
        header,
    }
}

/// The RFC 7638 JWK thumbprint: SHA-256 of the required members, keys sorted, no
/// whitespace (what `serde_json` writes for an object of strings), base64url.
pub(super) fn thumbprint(required: &Value) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, required.to_string().as_bytes());
    B64.encode(digest.as_ref())
}

/// Wraps a SEC1 `ECPrivateKey` as PKCS#8 (RFC 5208): `SEQUENCE { 0, SEQUENCE {
/// id-ecPublicKey, curve }, OCTET STRING { sec1 } }`, the one form ring reads.
fn sec1_to_pkcs8(sec1: &[u8], curve: &[u8]) -> Vec<u8> {
    let mut alg_id = OID_EC.to_vec();
    alg_id.extend_from_slice(curve);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(tlv(0x30, &alg_id));
    body.extend(tlv(0x04, sec1));
    tlv(0x30, &body)
}

/// One DER element: tag, definite length, value.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let n = value.len();
    let mut out = vec![tag];
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}
