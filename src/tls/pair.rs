//! Reads `tls_cert_file` and `tls_key_file` into one certificate and key that belong
//! together: a PEM chain (leaf first, then any intermediates) and one PEM private key
//! (PKCS#8, PKCS#1 RSA or SEC1 EC: RSA, ECDSA P-256/P-384 or Ed25519), parsed with
//! rustls' own PEM reader and `ring` (the one crypto stack in the tree). The key must be
//! the leaf's: the public key inside it is compared with the leaf's SubjectPublicKeyInfo
//! byte for byte (RFC 5280 §4.1.2.7), so a cert-manager rotation caught between writing
//! the certificate and the key is refused rather than served.
//!
//! Trusts nothing in the files: every problem is reported (both files' problems at once),
//! never a panic. The key's bytes are never logged or shown.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why a certificate and key cannot be served; each names the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("tls_cert_file {file}: cannot be read: {reason}")]
    CertUnreadable { file: String, reason: String },
    #[error("tls_cert_file {file}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----, the leaf first, then intermediates)")]
    NoCertificate { file: String },
    #[error("tls_cert_file {file}: the PEM is damaged ({reason}); a file caught half written?")]
    CertDamaged { file: String, reason: String },
    #[error(
        "tls_cert_file {file}: the leaf certificate is not a valid X.509 certificate: {reason}"
    )]
    CertInvalid { file: String, reason: String },
    #[error("tls_key_file {file}: cannot be read: {reason}")]
    KeyUnreadable { file: String, reason: String },
    #[error("tls_key_file {file}: no PEM private key in it (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoKey { file: String },
    #[error("tls_key_file {file}: the private key cannot be used ({reason}): RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 are supported")]
    KeyUnusable { file: String, reason: String },
    #[error("tls_key_file {key} is not the key of the certificate in tls_cert_file {cert}: their public keys differ (a rotation caught half way, or the wrong pair)")]
    Mismatch { cert: String, key: String },
}

/// The certificate chain of `cert_file`, or why not.
fn read_chain(cert_file: &Path) -> Result<Vec<CertificateDer<'static>>, PairError> {
    let file = cert_file.display().to_string();
    let bytes = std::fs::read(cert_file).map_err(|e| PairError::CertUnreadable {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(cert) => chain.push(cert),
            Err(e) => {
                return Err(PairError::CertDamaged {
                    file,
                    reason: e.to_string(),
                })
            }
        }
    }
    if chain.is_empty() {
        return Err(PairError::NoCertificate { file });
    }
    Ok(chain)
}

/// The private key of `key_file`, or why not.
fn read_key(key_file: &Path) -> Result<PrivateKeyDer<'static>, PairError> {
    let file = key_file.display().to_string();
    let bytes = std::fs::read(key_file).map_err(|e| PairError::KeyUnreadable {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PairError::NoKey { file: file.clone() },
        // The reason never quotes the file's bytes: pki-types' messages name the
        // section markers only.
        other => PairError::KeyUnusable {
            file: file.clone(),
            reason: other.to_string(),
        },
    })
}

/// Reads both files and checks that they belong together. Every problem found is
/// returned (an unreadable certificate does not hide a broken key).
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, Vec<PairError>> {
    let chain = read_chain(cert_file);
    let key = read_key(key_file).and_then(|der| {
        any_supported_type(&der).map_err(|e| PairError::KeyUnusable {
            file: key_file.display().to_string(),
            reason: e.to_string(),
        })
    });
    let (chain, key) = match (chain, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err([c.err(), k.err()].into_iter().flatten().collect()),
    };
    let pair = CertifiedKey::new(chain, key);
    match pair.keys_match() {
        Ok(()) => Ok(Arc::new(pair)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(vec![PairError::Mismatch {
                cert: cert_file.display().to_string(),
                key: key_file.display().to_string(),
            }])
        }
        Err(e) => Err(vec![PairError::CertInvalid {
            file: cert_file.display().to_string(),
            reason: e.to_string(),
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gatehouse.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gatehouse-pair-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn ecdsa_ed25519_and_rsa_pairs_load() {
        let d = dir("kinds");
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let (cert, key) = pair(alg);
            let (c, k) = files(&d, &cert, &key);
            assert!(load(&c, &k).is_ok(), "{alg:?}");
        }
        // RSA: rcgen with ring cannot generate one; a fixed test key is in the fixtures.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fixtures");
        let (c, k) = (fixtures.join("tls-rsa.crt"), fixtures.join("tls-rsa.key"));
        assert!(load(&c, &k).is_ok());
    }

    #[test]
    fn every_problem_is_named_and_a_mismatch_is_refused() {
        let d = dir("bad");
        let (cert, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (c, k) = files(&d, &cert, &other_key);
        let errs = load(&c, &k).unwrap_err();
        assert!(matches!(errs[..], [PairError::Mismatch { .. }]), "{errs:?}");

        // Both files broken: both named. A half-written certificate is damaged.
        let half = &cert[..cert.len() / 2];
        let (c, k) = files(&d, half, "not a key\n");
        let errs = load(&c, &k).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(matches!(errs[0], PairError::CertDamaged { .. }), "{errs:?}");
        assert!(matches!(errs[1], PairError::NoKey { .. }), "{errs:?}");

        // A key in the certificate file, a certificate in the key file; missing files.
        let (c, k) = files(&d, &key, &cert);
        let errs = load(&c, &k).unwrap_err();
        assert!(
            matches!(errs[0], PairError::NoCertificate { .. }),
            "{errs:?}"
        );
        assert!(matches!(errs[1], PairError::NoKey { .. }), "{errs:?}");
        let errs = load(&d.join("nope.crt"), &d.join("nope.key")).unwrap_err();
        assert!(
            matches!(errs[0], PairError::CertUnreadable { .. }),
            "{errs:?}"
        );
        assert!(
            matches!(errs[1], PairError::KeyUnreadable { .. }),
            "{errs:?}"
        );
        // The key's bytes never appear in a message.
        let (c, k) = files(&d, &cert, &key[..key.len() - 40]);
        for e in load(&c, &k).unwrap_err() {
            assert!(!e.to_string().contains(&key[40..80]), "{e}");
        }
    }
}
