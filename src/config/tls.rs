//! `tls_cert_file`, `tls_key_file` and `http_redirect_listen`: TLS on `listen` and the
//! plain-http listener that sends browsers to it.
//!
//! Both files or neither; both are read and checked at start-up (`tls::pair::load`:
//! a PEM chain, a usable key, the key of the leaf), so a bad pair stops gatehouse with
//! every problem listed instead of failing each handshake. `http_redirect_listen` needs
//! TLS (it redirects to it) and a port of its own. All three are fixed while running
//! (`config/reload.rs`); the certificate files reload by themselves (`tls/mod.rs`).

use super::reader::Reader;
use crate::tls::TlsFiles;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What the TLS keys configure.
pub(super) struct TlsSettings {
    pub tls: Option<TlsFiles>,
    pub http_redirect_listen: Option<SocketAddr>,
}

/// Reads and checks the TLS keys; `taken`: the other listeners, each with its key name,
/// which `http_redirect_listen` must not share a port with.
pub(super) fn read(r: &mut Reader<'_>, taken: &[(&str, SocketAddr)]) -> TlsSettings {
    let cert = r.str_opt("tls_cert_file").filter(|s| !s.is_empty());
    let key = r.str_opt("tls_key_file").filter(|s| !s.is_empty());
    let tls = match (cert, key) {
        (None, None) => None,
        (Some(_), None) => {
            r.problems.push("tls_cert_file is set but tls_key_file is not: set both (the certificate chain and its private key, PEM) or neither".into());
            None
        }
        (None, Some(_)) => {
            r.problems.push("tls_key_file is set but tls_cert_file is not: set both (the certificate chain and its private key, PEM) or neither".into());
            None
        }
        (Some(cert), Some(key)) => {
            let (cert_file, key_file) = (PathBuf::from(cert), PathBuf::from(key));
            match crate::tls::pair::load(&cert_file, &key_file) {
                Ok(initial) => Some(TlsFiles {
                    cert_file,
                    key_file,
                    initial,
                }),
                Err(problems) => {
                    r.problems
                        .extend(problems.into_iter().map(|p| p.to_string()));
                    None
                }
            }
        }
    };
    let http_redirect_listen = read_redirect_listen(r, taken, tls.is_some());
    TlsSettings {
        tls,
        http_redirect_listen,
    }
}

fn read_redirect_listen(
    r: &mut Reader<'_>,
    taken: &[(&str, SocketAddr)],
    tls: bool,
) -> Option<SocketAddr> {
    const KEY: &str = "http_redirect_listen";
    let text = r.str_opt(KEY).filter(|s| !s.is_empty())?;
    let Ok(addr) = text.parse::<SocketAddr>() else {
        let entry = r.raw.get(KEY);
        r.problem(
            entry,
            KEY,
            format!("`{text}` is not an address like 0.0.0.0:80 (an IP address and a port)"),
        );
        return None;
    };
    if !tls && !r.problems.iter().any(|p| p.starts_with("tls_")) {
        r.problems.push(format!("http_redirect_listen: {addr} redirects to https, but TLS is off: set tls_cert_file and tls_key_file too, or remove http_redirect_listen"));
    }
    for (name, other) in taken {
        let clash = addr.port() != 0
            && addr.port() == other.port()
            && (addr.ip() == other.ip()
                || addr.ip().is_unspecified()
                || other.ip().is_unspecified());
        if clash {
            r.problems.push(format!("http_redirect_listen: {addr} is the port of `{name}` ({other}): the redirect listener must be a port of its own"));
        }
    }
    Some(addr)
}

#[cfg(test)]
mod tests {
    use crate::config::sources::RawConfig;
    use crate::config::Config;
    use std::collections::HashMap;

    fn with(extra: &[(&str, String)]) -> Result<Config, Vec<String>> {
        let mut map: HashMap<String, String> = [
            ("GATEHOUSE_UPSTREAM", "http://127.0.0.1:4466"),
            ("GATEHOUSE_ISSUER_URL", "https://sso.example.com"),
            ("GATEHOUSE_CLIENT_ID", "c"),
            ("GATEHOUSE_CLIENT_SECRET", "s"),
            (
                "GATEHOUSE_COOKIE_SECRET",
                "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            ),
            ("GATEHOUSE_LISTEN", "0.0.0.0:8443"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            map.insert(format!("GATEHOUSE_{}", k.to_ascii_uppercase()), v.clone());
        }
        Config::from_raw(&RawConfig::from_env(&map)).map_err(|e| e.problems)
    }

    /// Both files or neither; the pair is read and checked at start-up, every problem
    /// listed with the configuration's others; the redirect listener needs TLS and a
    /// port of its own.
    #[test]
    fn tls_files_are_both_or_neither_and_checked_at_start_up() {
        let dir = std::env::temp_dir().join(format!("gatehouse-cfg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gatehouse.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let path = |n: &str, text: &str| {
            let p = dir.join(n);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (c, k, o) = (
            path("c.pem", &cert.pem()),
            path("k.pem", &key.serialize_pem()),
            path("o.pem", &other.serialize_pem()),
        );
        assert!(with(&[]).unwrap().tls.is_none(), "off by default");
        let cfg = with(&[
            ("tls_cert_file", c.clone()),
            ("tls_key_file", k.clone()),
            ("http_redirect_listen", "0.0.0.0:8080".into()),
        ])
        .unwrap();
        assert_eq!(cfg.tls.unwrap().cert_file.display().to_string(), c);
        assert_eq!(
            cfg.http_redirect_listen,
            Some("0.0.0.0:8080".parse().unwrap())
        );

        let problems = |extra: &[(&str, String)]| with(extra).unwrap_err().join("\n");
        let p = problems(&[("tls_cert_file", c.clone())]);
        assert!(p.contains("tls_key_file is not: set both"), "{p}");
        let p = problems(&[("tls_key_file", k.clone()), ("client_id", String::new())]);
        assert!(p.contains("tls_cert_file is not: set both"), "{p}");
        assert!(p.contains("client_id"), "the others are listed too: {p}");
        let p = problems(&[("tls_cert_file", c.clone()), ("tls_key_file", o)]);
        assert!(p.contains("is not the key of the certificate"), "{p}");
        let p = problems(&[("http_redirect_listen", "0.0.0.0:8080".into())]);
        assert!(p.contains("TLS is off"), "{p}");
        for clash in ["127.0.0.1:8443", "0.0.0.0:8443"] {
            let p = problems(&[
                ("tls_cert_file", c.clone()),
                ("tls_key_file", k.clone()),
                ("http_redirect_listen", clash.into()),
            ]);
            assert!(p.contains("is the port of `listen`"), "{p}");
        }
    }
}
