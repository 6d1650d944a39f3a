//! https upstreams: the TLS client side of an upstream connection. rustls (ring) with
//! the Mozilla roots (webpki-roots, as for the provider) plus `upstream_ca_file`'s
//! certificates, SNI and certificate name from the upstream URL's host, and optionally a
//! client certificate (`upstream_client_cert_file` / `upstream_client_key_file`) for an
//! upstream that asks for mutual TLS. Certificate checks are never turned off.
//!
//! Built once at start-up from files read by `config/validate.rs`, which lists every
//! problem with them; a handshake that fails is told apart from a refused connection
//! (`failure.rs`), so the 502 page names the certificate problem.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The TLS settings of an https upstream, as configured (cheap to clone: shared).
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<rustls::ClientConfig>,
    /// How many certificates `upstream_ca_file` added (for `check`).
    pub extra_roots: usize,
    /// Whether a client certificate is presented.
    pub client_certificate: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("extra_roots", &self.extra_roots)
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// The client configuration: the public roots and `extra_roots`, and the client
    /// certificate chain and key when given. `Err` says what is wrong, in words.
    pub fn new(
        extra_roots: Vec<CertificateDer<'static>>,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<UpstreamTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let added = extra_roots.len();
        for (i, c) in extra_roots.into_iter().enumerate() {
            roots.add(c).map_err(|e| {
                format!("certificate #{} is not a usable CA certificate: {e}", i + 1)
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let client_certificate = client.is_some();
        let mut config = match client {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not go together: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        // The upstream speaks HTTP/1.1 (`proxy/`): say so, so it never picks h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            config: Arc::new(config),
            extra_roots: added,
            client_certificate,
        })
    }

    /// Starts TLS on `tcp` to `host` (the name checked in the certificate, and sent as
    /// SNI unless it is an IP address). `Err` names the problem, for the 502 page.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|_| format!("`{host}` is not a name a certificate can be checked against"))?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
            .map_err(|e| describe(&e))
    }
}

/// A failed handshake, in words an operator can act on.
fn describe(e: &std::io::Error) -> String {
    let inner = e
        .get_ref()
        .map(|i| i.to_string())
        .unwrap_or_else(|| e.to_string());
    let lower = inner.to_ascii_lowercase();
    if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        format!("TLS handshake failed: the upstream's certificate is signed by a CA gatehouse does not trust ({inner}); put that CA in upstream_ca_file")
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        format!("TLS handshake failed: the upstream's certificate is not valid for the host in `upstream` ({inner}); use the name the certificate was issued for")
    } else if lower.contains("expired") {
        format!("TLS handshake failed: the upstream's certificate has expired ({inner})")
    } else if lower.contains("certificate required") || lower.contains("certificaterequired") {
        format!("TLS handshake failed: the upstream asks for a client certificate ({inner}); set upstream_client_cert_file and upstream_client_key_file")
    } else {
        format!("TLS handshake failed: {inner}")
    }
}
