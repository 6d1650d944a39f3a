//! The TLS settings of an https `upstream`: `upstream_ca_file` (CA certificates trusted
//! besides the public roots) and, for an upstream that asks for mutual TLS,
//! `upstream_client_cert_file` with `upstream_client_key_file`. Every file is read and
//! parsed here, at start-up (and at a reload), so each problem is listed with the others.

use super::reader::Reader;
use crate::proxy::tls::UpstreamTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;

const KEYS: [&str; 3] = [
    "upstream_ca_file",
    "upstream_client_cert_file",
    "upstream_client_key_file",
];

/// The TLS client for `upstream` when it is https (`None` for http); a setting that
/// cannot apply (TLS files with an http upstream, a certificate without its key) is a
/// problem.
pub(super) fn read(r: &mut Reader<'_>, upstream: Option<&Url>) -> Option<UpstreamTls> {
    let https = upstream.is_some_and(|u| u.scheme() == "https");
    if !https {
        for key in KEYS {
            if r.raw.get(key).is_some() {
                let entry = r.raw.get(key);
                r.problem(entry, key, "applies only to an https upstream".to_string());
            }
        }
        return None;
    }
    let mut roots = Vec::new();
    for path in r.list("upstream_ca_file", &[]) {
        if let Some(certs) = certificates(r, "upstream_ca_file", &path) {
            roots.extend(certs);
        }
    }
    let cert = r
        .str_opt("upstream_client_cert_file")
        .filter(|s| !s.is_empty());
    let key = r
        .str_opt("upstream_client_key_file")
        .filter(|s| !s.is_empty());
    let client = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain = certificates(r, "upstream_client_cert_file", &cert);
            let key = private_key(r, &key);
            chain.zip(key)
        }
        (Some(_), None) | (None, Some(_)) => {
            r.problems.push("upstream_client_cert_file and upstream_client_key_file go together: set both (mutual TLS to the upstream) or neither".into());
            None
        }
    };
    match UpstreamTls::new(roots, client) {
        Ok(tls) => Some(tls),
        Err(e) => {
            r.problems.push(format!("upstream TLS: {e}"));
            None
        }
    }
}

/// The PEM certificates in `path`; `None` (and a problem) when there are none.
fn certificates(r: &mut Reader<'_>, key: &str, path: &str) -> Option<Vec<CertificateDer<'static>>> {
    let entry = r.raw.get(key);
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => {
            r.problem(entry, key, format!("cannot read {path}: {e}"));
            return None;
        }
    };
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Some(certs),
        _ => {
            r.problem(
                entry,
                key,
                format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            );
            None
        }
    }
}

/// The private key in `upstream_client_key_file` (PKCS#8, PKCS#1 or SEC1 PEM).
fn private_key(r: &mut Reader<'_>, path: &str) -> Option<PrivateKeyDer<'static>> {
    let entry = r.raw.get("upstream_client_key_file");
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => {
            r.problem(
                entry,
                "upstream_client_key_file",
                format!("cannot read {path}: {e}"),
            );
            return None;
        }
    };
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => Some(k),
        Err(_) => {
            r.problem(
                entry,
                "upstream_client_key_file",
                format!("{path} holds no unencrypted PEM private key"),
            );
            None
        }
    }
}
