//! TLS and HTTP/2 on `listen`, against the real binary: a private test CA made at test
//! time (rcgen), gatehouse serving its certificate, and clients that trust only that CA:
//! reqwest (sign-in), curl (`--http2`, `--http1.1`), a rustls client that reads the
//! served leaf, and a hand-written HTTP/2 client for bytes no library sends
//! (`abuse.rs`); and headless Chromium pinned to the test key (`browser.rs`). The tests: `serving.rs` (h2 and HTTP/1.1 with the identity, the
//! redirect listener, a handshake that never completes), `rotation.rs` (certificate
//! files replaced on disk), `abuse.rs` (rapid reset, CONTINUATION flood, an oversized
//! header list, `:authority` against `Host`).

mod abuse;
mod browser;
mod rotation;
mod serving;

use crate::support::idp::{self, TestIdp};
use crate::support::upstream::Upstream;
use crate::support::{Browser, TempDir, COOKIE_SECRET};
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A private CA for one test.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    pub pem: String,
}

/// A leaf certificate the CA issued: its PEM, its key's PEM and its DER (to compare with
/// what a handshake served).
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// The key's SubjectPublicKeyInfo, DER (what a browser pins).
    pub spki: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gatehouse test CA");
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        TestCa { key, cert, pem }
    }

    /// A leaf for 127.0.0.1 and localhost with `serial`, valid until 1 January of the
    /// year 2030 + `serial` (what `gatehouse_tls_certificate_expiry_timestamp_seconds`
    /// shows).
    pub fn leaf(&self, serial: u64) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params.serial_number = Some(serial.into());
        params.not_after = rcgen::date_time_ymd(2030 + serial as i32, 1, 1);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("gatehouse leaf {serial}"),
        );
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            spki: key.public_key_der(),
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls client configuration trusting only this CA, offering `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A TLS connection to `port` trusting `ca`, offering `alpn`.
pub async fn connect(ca: &TestCa, port: u16, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client(alpn));
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The leaf certificate a TLS connection was served.
pub fn served_leaf(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The real binary serving https on `port`, its certificate files in a directory laid
/// out like a mounted Kubernetes Secret (`tls.crt -> ..data/tls.crt`, `..data` a
/// symlink to the current version's directory).
pub struct Served {
    child: std::process::Child,
    pub url: String,
    pub port: u16,
    pub dir: TempDir,
    versions: u32,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts gatehouse with TLS from `leaf`, the test IdP and the echo upstream, and
    /// the TOML lines `extra` gives for its port; waits until `/readyz` answers over https.
    pub async fn start(
        ca: &TestCa,
        leaf: &Leaf,
        idp: &TestIdp,
        up: &Upstream,
        extra: &dyn Fn(u16) -> String,
    ) -> Served {
        let dir = TempDir::new("tls");
        let port = crate::support::redis::free_port();
        install_version(dir.path(), 1, &leaf.cert_pem, &leaf.key_pem);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
        }
        let config = dir.path().join("gatehouse.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nupstream = \"{}\"\nissuer_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n{extra}\n",
                up.url,
                idp.issuer,
                idp::CLIENT_ID,
                idp::CLIENT_SECRET,
                extra = extra(port),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("gatehouse.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env("GATEHOUSE_WORKERS", "2")
            .env("GATEHOUSE_LOG_LEVEL", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let served = Served {
            child,
            url: format!("https://127.0.0.1:{port}"),
            port,
            dir,
            versions: 1,
        };
        served.wait_ready(ca).await;
        served
    }

    async fn wait_ready(&self, ca: &TestCa) {
        let client = Browser::trusting(ca.pem.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = tokio::time::timeout(
                Duration::from_secs(2),
                client.try_get(&format!("{}/readyz", self.url)),
            )
            .await
            {
                if r == Some(200) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "never ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gatehouse.log")).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `times` times.
    pub async fn logged(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times {
                return log;
            }
            assert!(Instant::now() < deadline, "never logged {needle:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes a new version of the Secret and swaps `..data` to it in one rename, as
    /// the kubelet does.
    pub fn install(&mut self, cert: &str, key: &str) {
        self.versions += 1;
        install_version(self.dir.path(), self.versions, cert, key);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Writes version `n` of the Secret into `dir` and points `..data` at it in one rename.
fn install_version(dir: &Path, n: u32, cert: &str, key: &str) {
    let version = format!("..v{n}");
    let vdir = dir.join(&version);
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::write(vdir.join("tls.crt"), cert).unwrap();
    std::fs::write(vdir.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

/// The resident memory of process `pid` in KiB (`VmRSS` in /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The CPU time process `pid` has used so far (user and system, /proc/<pid>/stat).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks = fields[11] + fields[12];
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Signs `sub` in over TLS with a browser trusting `ca`; returns it with its cookies.
pub async fn sign_in(ca: &TestCa, idp: &TestIdp, gh: &str, sub: &str) -> Browser {
    *idp.state.next_sub.lock().unwrap() = sub.to_string();
    let b = Browser::trusting(ca.pem.as_bytes());
    let (resp, visited) = b.follow(&format!("{gh}/app")).await;
    assert_eq!(resp.status, 200, "{sub} signs in: {resp:?}\n{visited:?}");
    b
}

/// Writes `text` into `dir/name`; returns the path.
pub fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
