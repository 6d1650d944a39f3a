//! Configuration: TOML text -> `RawConfig` (`RawConfig::from_toml`), optionally layered
//! over a valid base and under environment variables, -> `Config::from_raw` (every
//! check in `config/validate.rs`, presets, access rules, provider settings).
//!
//! Input: a mode byte, then text: TOML, optionally followed by a line `%%` and
//! `key=value` lines read as `GATEHOUSE_<KEY>` environment variables. Values of the
//! `*_file` keys are redirected to files this target writes (or to a missing path), so
//! the fuzzer never makes it read `/dev/zero` or the like.
//!
//! Asserts, besides never panicking:
//! - a refused configuration lists at least one problem;
//! - an accepted one holds what validation promises: issuer, client id and at least one
//!   cookie key; `openid` among the scopes; no HS* algorithm; a cookie name of letters,
//!   digits, `_` and `-`; a client secret unless the client is public; an http upstream
//!   without path or query; an https issuer, or http on loopback; `clock_skew_secs` at
//!   most 300; `max_header_bytes` at least 8192;
//! - the client and cookie secrets appear in no problem, warning or `Debug` output.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::config::keys::KEYS;
use gatehouse::config::sources::{Entry, RawValue};
use gatehouse::config::{ClientAuth, Config, RawConfig};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A configuration that passes validation, laid under the input in one mode.
const BASE: &str = r#"
issuer_url = "https://sso.example.com/realms/main"
client_id = "gatehouse"
client_secret = "base-client-secret-value"
cookie_secret = "hKf6ELeUA5NTuS0tqPGrHe-kipfaTLjm1IPhBWmdvRc"
upstream = "http://127.0.0.1:4466"
"#;

/// The secrets in `BASE`.
const BASE_SECRETS: &[&str] = &[
    "base-client-secret-value",
    "hKf6ELeUA5NTuS0tqPGrHe-kipfaTLjm1IPhBWmdvRc",
];

const FILE_KEYS: &[&str] = &[
    "client_secret_file",
    "cookie_secret_file",
    "allowed_emails_file",
    "provider_ca_file",
];

#[derive(Arbitrary, Debug)]
struct Input {
    /// bit 0: lay the input over `BASE`; bit 1: read the `%%` part as environment.
    mode: u8,
    text: String,
}

/// Files the `*_file` keys may point at: (name in the input, path).
fn files() -> &'static Vec<(&'static str, PathBuf)> {
    static F: OnceLock<Vec<(&'static str, PathBuf)>> = OnceLock::new();
    F.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-fuzz-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut out = Vec::new();
        for (name, body) in [
            ("secret", "file-client-secret\n"),
            (
                "cookie",
                "# keys\nzv_Dl4acSNsi3CsrXUaKzpaUAxGi26sIrcKSb1vz-5g\n\nshort\n",
            ),
            ("emails", "a@example.com\n# comment\nb@example.com\n"),
            (
                "pem",
                "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            ),
            ("empty", ""),
        ] {
            let p = dir.join(name);
            if std::fs::write(&p, body).is_ok() {
                out.push((name, p));
            }
        }
        out.push(("missing", dir.join("missing")));
        out
    })
}

/// The prepared file an input path names (by the first prepared name it contains),
/// else the missing one.
fn redirect(path: &str) -> String {
    let f = files();
    f.iter()
        .find(|(name, _)| path.contains(name))
        .or(f.last())
        .map(|(_, p)| p.display().to_string())
        .unwrap_or_default()
}

fn sandbox_files(raw: &mut RawConfig) {
    for key in FILE_KEYS {
        let Some(entry) = raw.get(key).cloned() else {
            continue;
        };
        let value = match entry.value {
            RawValue::Str(s) => RawValue::Str(if s.trim().is_empty() { s } else { redirect(&s) }),
            RawValue::List(l) => RawValue::List(l.iter().map(|s| redirect(s)).collect()),
            other => other,
        };
        raw.insert(
            key,
            Entry {
                value,
                origin: entry.origin,
            },
        );
    }
}

/// Every value in the layered configuration, as text.
fn all_values(raw: &RawConfig) -> Vec<(&'static str, String)> {
    KEYS.iter()
        .filter_map(|k| {
            raw.get(k.name).map(|e| {
                let v = match &e.value {
                    RawValue::Str(s) => s.clone(),
                    RawValue::List(l) => l.join("\n"),
                    RawValue::Bool(b) => b.to_string(),
                    RawValue::Int(i) => i.to_string(),
                };
                (k.name, v)
            })
        })
        .collect()
}

fn check_ok(cfg: &Config) {
    assert!(!cfg.issuer_url.is_empty());
    assert!(!cfg.client_id.is_empty());
    assert!(!cfg.cookie.keys.is_empty());
    assert!(cfg.scopes.iter().any(|s| s == "openid"));
    assert!(
        cfg.allowed_algs
            .iter()
            .all(|a| !format!("{a:?}").starts_with("HS")),
        "{:?}",
        cfg.allowed_algs
    );
    assert!(
        !cfg.cookie.name.is_empty()
            && cfg
                .cookie
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "cookie name {:?}",
        cfg.cookie.name
    );
    if cfg.client_auth != ClientAuth::None {
        assert!(cfg.client_secret.is_some());
    }
    if let Some(u) = &cfg.upstream {
        assert_eq!(u.scheme(), "http");
        assert!(u.path() == "/" && u.query().is_none(), "upstream {u}");
    }
    let issuer = url::Url::parse(&cfg.issuer_url).expect("issuer is a URL");
    assert!(
        issuer.scheme() == "https"
            || (issuer.scheme() == "http"
                && match issuer.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    None => false,
                }),
        "issuer {}",
        cfg.issuer_url
    );
    assert!(cfg.clock_skew.as_secs() <= 300);
    assert!(cfg.limits.max_header_bytes >= 8192);
    assert!(cfg.limits.max_connections >= 1);
}

fuzz_target!(|input: Input| {
    let (toml_text, env_text) = match input.text.split_once("\n%%\n") {
        Some((t, e)) => (t, Some(e)),
        None => (input.text.as_str(), None),
    };
    let file = match RawConfig::from_toml(toml_text, "fuzz.toml") {
        Ok(raw) => raw,
        Err(problems) => {
            assert!(!problems.is_empty());
            return;
        }
    };
    let mut raw = if input.mode & 1 != 0 {
        RawConfig::from_toml(BASE, "base.toml")
            .unwrap_or_else(|p| panic!("base config: {p:?}"))
            .overlay(file)
    } else {
        file
    };
    if let (true, Some(env_text)) = (input.mode & 2 != 0, env_text) {
        let env: HashMap<String, String> = env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    format!("GATEHOUSE_{}", k.trim().to_ascii_uppercase()),
                    v.to_string(),
                )
            })
            .collect();
        raw = raw.overlay(RawConfig::from_env(&env));
    }
    sandbox_files(&mut raw);

    let values = all_values(&raw);
    let secrets: Vec<&str> = values
        .iter()
        .filter(|(k, _)| matches!(*k, "client_secret" | "cookie_secret"))
        .flat_map(|(_, v)| v.split('\n'))
        .map(str::trim)
        // Secrets no message could hold by chance: the base ones, or ones with a
        // character no message uses; and that no other key's value or name repeats.
        .filter(|s| BASE_SECRETS.contains(s) || (s.len() >= 8 && s.contains(['~', '^'])))
        .filter(|s| {
            !values
                .iter()
                .any(|(k, v)| !matches!(*k, "client_secret" | "cookie_secret") && v.contains(s))
                && !KEYS.iter().any(|k| k.name.contains(s))
        })
        .collect();

    let shown = match Config::from_raw(&raw) {
        Ok(cfg) => {
            check_ok(&cfg);
            format!("{cfg:?}\n{}", cfg.warnings.join("\n"))
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            e.to_string()
        }
    };
    for s in secrets {
        assert!(!shown.contains(s), "secret {s:?} shown in:\n{shown}");
    }
});
