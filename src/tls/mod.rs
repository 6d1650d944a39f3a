//! TLS on `listen`: the rustls server configuration and the certificate it serves.
//!
//! rustls' safe defaults: TLS 1.3 and 1.2 only, its default cipher suites and key
//! exchange groups, the `ring` provider (the crypto stack already in the tree through
//! reqwest and redis; no second one). ALPN offers `h2` then `http/1.1` (RFC 7301): a
//! client that names neither, or offers no ALPN at all, speaks HTTP/1.1.
//!
//! The certificate is reloaded by itself ([`Certificates::watch`]): a thread of its own
//! reads `tls_cert_file` and `tls_key_file` about once a second and compares their
//! contents (not their times: a Kubernetes Secret update swaps a symlink), so a
//! cert-manager rotation is served to new connections within seconds, without a restart;
//! open connections keep the certificate they were handshaken with. A new pair that
//! does not load (unreadable, half written, a key that is not the certificate's) is
//! refused with the reason logged, and the running pair stays.
//!
//! Trusts: the two files, only once [`pair::load`] has checked they belong together.

pub mod expiry;
pub mod pair;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the certificate files are read for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The ALPN protocols offered, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the certificate comes from (`tls_cert_file`, `tls_key_file`), and the pair read
/// at start-up (validation read and checked it already).
#[derive(Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub initial: Arc<CertifiedKey>,
}

/// The paths only: never the certificate's bytes, nor anything of the key.
impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The pair served to new handshakes; swapped whole when the files change.
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn new(initial: Arc<CertifiedKey>) -> Arc<Certificates> {
        crate::metrics::tls_certificate_expiry(not_after(&initial));
        Arc::new(Certificates {
            current: RwLock::new(initial),
        })
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole pair: a swap is one assignment.
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    fn swap(&self, new: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut c) => *c = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Reads `files` again when their contents change (see the module header). A change
    /// is acted on once the files read the same twice in a row, so a pair caught half
    /// written is not reported as broken; what then fails to load is logged and ignored.
    pub fn watch(self: &Arc<Self>, files: &TlsFiles) {
        let me = Arc::clone(self);
        let (cert, key) = (files.cert_file.clone(), files.key_file.clone());
        let spawned = std::thread::Builder::new()
            .name("gatehouse-tls-watch".into())
            .spawn(move || {
                let read = || (std::fs::read(&cert).ok(), std::fs::read(&key).ok());
                let mut applied = read();
                let mut last = applied.clone();
                loop {
                    std::thread::sleep(WATCH_EVERY);
                    let now = read();
                    if now == last && now != applied {
                        applied = now.clone();
                        me.reload(&cert, &key);
                    }
                    last = now;
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the certificate watch; a new certificate needs a restart");
        }
    }

    /// Loads the pair again; swaps it in when it loads, logs why not otherwise.
    fn reload(&self, cert: &std::path::Path, key: &std::path::Path) {
        match pair::load(cert, key) {
            Ok(new) => {
                let expires = not_after(&new);
                self.swap(new);
                crate::metrics::tls_certificate_expiry(expires);
                let now = crate::util::now_secs();
                let shown = expires.map_or("unknown".into(), |t| expiry::describe(t, now));
                tracing::info!(tls_cert_file = %cert.display(), expires = %shown, "TLS certificate reloaded: new connections get the new one, open ones keep theirs");
                warn_if_expiring(cert, expires, now);
            }
            Err(problems) => {
                let why: Vec<String> = problems.iter().map(ToString::to_string).collect();
                tracing::error!(
                    tls_cert_file = %cert.display(),
                    "TLS certificate reload refused, the running certificate stays; {} problem(s): {}",
                    why.len(),
                    why.join(" | ")
                );
            }
        }
    }
}

/// When the leaf certificate of `key` expires (Unix seconds), if it can be read.
pub fn not_after(key: &CertifiedKey) -> Option<u64> {
    key.cert.first().and_then(|c| expiry::not_after(c.as_ref()))
}

/// Logs a warning when the certificate has expired or expires within
/// [`expiry::WARN_BEFORE_SECS`]: rotation (cert-manager) has stalled.
pub fn warn_if_expiring(cert: &std::path::Path, not_after: Option<u64>, now: u64) {
    if let Some(t) = not_after.filter(|t| *t < now.saturating_add(expiry::WARN_BEFORE_SECS)) {
        tracing::warn!(tls_cert_file = %cert.display(), expires = %expiry::describe(t, now), "the TLS certificate expires soon or has expired: browsers will refuse it; check its renewal (cert-manager's Certificate status)");
    }
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certificates")
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server configuration for `listen`, serving `certs`.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}
