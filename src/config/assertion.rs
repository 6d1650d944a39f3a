//! The identity assertion's settings (`assertion_*`): read, checked, and its signing keys
//! loaded from `assertion_signing_key_file` (read again on every reload, so putting a new
//! key first and reloading rotates without a restart). Every problem of the key file is
//! listed with the others.
//!
//! `iss` is gatehouse's public URL: `assertion_issuer`, else `redirect_url`'s origin
//! (the address registered at the provider, the same for every app behind gatehouse).
//! Never the request's own scheme and host: an app pins `iss`, so it must be one value
//! that no client's `Host` header picks. With neither set, the assertion is refused at
//! start-up.

use super::reader::{read_file, Reader};
use crate::assertion::keys::KeySet;
use crate::assertion::{AssertionPolicy, AssertionSettings};
use axum::http::HeaderName;
use std::time::Duration;
use url::Url;

/// The default header; client copies of it are always removed.
pub const DEFAULT_HEADER: &str = "X-Gatehouse-Assertion";

/// Shortest lifetime accepted: an assertion must outlive its trip to the app.
const MIN_LIFETIME: u64 = 10;

/// The assertion header's name (always: it is stripped even when the assertion is off)
/// and the settings, `Some` when `assertion_signing_key_file` is set and valid.
pub(super) fn read_assertion(
    r: &mut Reader<'_>,
    redirect_url: Option<&Url>,
    warnings: &mut Vec<String>,
) -> (HeaderName, Option<AssertionSettings>) {
    let header_text = r.str_or("assertion_header", DEFAULT_HEADER);
    let header = r
        .header("assertion_header", &header_text)
        .unwrap_or(HeaderName::from_static("x-gatehouse-assertion"));
    let lifetime = r.secs("assertion_lifetime_secs", 300);
    if lifetime.as_secs() < MIN_LIFETIME {
        let entry = r.raw.get("assertion_lifetime_secs");
        r.problem(
            entry,
            "assertion_lifetime_secs",
            format!("{} is too short: at least {MIN_LIFETIME} seconds, so an assertion outlives its trip to the app", lifetime.as_secs()),
        );
    }
    let audience = r.str_opt("assertion_audience").filter(|s| !s.is_empty());
    let groups = r
        .raw
        .get("assertion_groups")
        .is_some()
        .then(|| r.list("assertion_groups", &[]));
    let issuer = match r.str_opt("assertion_issuer").filter(|s| !s.is_empty()) {
        Some(s) => r
            .url("assertion_issuer", &s)
            .map(|_| s.trim_end_matches('/').to_string()),
        None => redirect_url.map(|u| u.origin().ascii_serialization()),
    };
    let Some(path) = r
        .str_opt("assertion_signing_key_file")
        .filter(|s| !s.is_empty())
    else {
        let set: Vec<&str> = [
            "assertion_audience",
            "assertion_groups",
            "assertion_issuer",
            "assertion_lifetime_secs",
        ]
        .into_iter()
        .filter(|k| r.raw.get(k).is_some())
        .collect();
        if !set.is_empty() {
            warnings.push(format!(
                "{} set but assertion_signing_key_file is not: no identity assertion is sent",
                set.join(", ")
            ));
        }
        return (header, None);
    };
    let keys = read_file(r, "assertion_signing_key_file", &path).and_then(|text| {
        KeySet::from_pem(&text)
            .map_err(|problems| {
                let entry = r.raw.get("assertion_signing_key_file");
                for p in problems {
                    r.problem(entry, "assertion_signing_key_file", format!("{path}: {p}"));
                }
            })
            .ok()
    });
    let Some(issuer) = issuer else {
        r.problems.push("assertion_signing_key_file is set, but the assertion's issuer (iss) is unknown: set assertion_issuer to gatehouse's public URL (e.g. https://auth.example.com), or redirect_url, whose origin it then is".into());
        return (header, None);
    };
    let policy = AssertionPolicy::new(audience, groups);
    let settings = keys.map(|keys| {
        AssertionSettings::new(
            keys,
            issuer,
            lifetime.max(Duration::from_secs(MIN_LIFETIME)),
            policy,
        )
    });
    (header, settings)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RawConfig};

    fn testdata(name: &str) -> String {
        format!(
            "{}/src/assertion/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn build(extra: &[(&'static str, &str)]) -> Result<Config, String> {
        let mut raw = RawConfig::default();
        for (k, v) in [
            ("upstream", "http://127.0.0.1:9"),
            ("issuer_url", "https://sso.example.com"),
            ("client_id", "c"),
            ("client_secret", "s"),
            (
                "cookie_secret",
                "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            ),
        ]
        .iter()
        .chain(extra)
        {
            raw.set(k, v);
        }
        Config::from_raw(&raw).map_err(|e| e.problems.join("\n"))
    }

    #[test]
    fn off_by_default_and_its_header_is_always_named() {
        let cfg = build(&[]).unwrap();
        assert!(cfg.assertion.is_none());
        assert_eq!(cfg.headers.assertion, "x-gatehouse-assertion");
        assert!(cfg
            .headers
            .folded()
            .contains(&"x-gatehouse-assertion".to_string()));
        let cfg = build(&[("assertion_header", "X-App-Identity")]).unwrap();
        assert_eq!(cfg.headers.assertion, "x-app-identity");
        // Settings that do nothing without a key are pointed out.
        let cfg = build(&[("assertion_audience", "app")]).unwrap();
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.contains("assertion_audience set but assertion_signing_key_file is not")),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn the_issuer_is_assertion_issuer_else_redirect_urls_origin_else_refused() {
        let key = testdata("p256.pem");
        let on = [("assertion_signing_key_file", key.as_str())];
        let cfg = build(&[
            on[0],
            (
                "redirect_url",
                "https://auth.example.com:8443/oauth2/callback",
            ),
        ])
        .unwrap();
        let warned = |c: &Config| {
            c.warnings
                .iter()
                .any(|w| w.contains("set assertion_audience"))
        };
        assert!(
            warned(&cfg),
            "one upstream, the client's Host: {:?}",
            cfg.warnings
        );
        let a = cfg.assertion.unwrap();
        assert_eq!(a.issuer, "https://auth.example.com:8443");
        assert_eq!(a.lifetime.as_secs(), 300);
        assert!(a.policy.audience.is_none() && a.policy.groups.is_none());
        let cfg = build(&[
            on[0],
            ("redirect_url", "https://auth.example.com/oauth2/callback"),
            ("assertion_issuer", "https://gatehouse.example.com/"),
            ("assertion_audience", "headlamp"),
            ("assertion_groups", "Domain Admins,ops"),
            ("assertion_lifetime_secs", "120"),
        ])
        .unwrap();
        assert!(!warned(&cfg), "{:?}", cfg.warnings);
        let a = cfg.assertion.unwrap();
        assert_eq!(a.issuer, "https://gatehouse.example.com");
        assert_eq!(a.lifetime.as_secs(), 120);
        assert_eq!(a.policy.audience.as_deref(), Some("headlamp"));
        assert_eq!(
            a.policy.groups,
            Some(vec!["Domain Admins".to_string(), "ops".to_string()])
        );
        let err = build(&on).unwrap_err();
        assert!(err.contains("set assertion_issuer"), "{err}");
    }

    #[test]
    fn every_problem_is_listed_with_the_others() {
        let bad = std::env::temp_dir().join(format!("gh-assertion-keys-{}", std::process::id()));
        let text = [
            std::fs::read_to_string(testdata("rsa1024.pem")).unwrap(),
            std::fs::read_to_string(testdata("cert.pem")).unwrap(),
        ]
        .concat();
        std::fs::write(&bad, text).unwrap();
        let bad_s = bad.display().to_string();
        let err = build(&[
            ("assertion_signing_key_file", &bad_s),
            ("assertion_issuer", "auth.example.com"),
            ("assertion_lifetime_secs", "5"),
            ("assertion_header", "X-Forwarded-User"),
            ("client_id", ""),
        ])
        .unwrap_err();
        for needle in [
            "key #1 (PRIVATE KEY): is a weak RSA key",
            "key #2 (CERTIFICATE): is a certificate, not a private key",
            "assertion_issuer (from",
            "assertion_lifetime_secs (from",
            "at least 10 seconds",
            "`x-forwarded-user` is also header_user",
            "client_id is required",
        ] {
            assert!(err.contains(needle), "{needle:?} not in:\n{err}");
        }
        let _ = std::fs::remove_file(&bad);
        let err = build(&[
            ("assertion_signing_key_file", "/nonexistent/keys.pem"),
            ("assertion_header", "Host"),
            ("assertion_lifetime_secs", "86401"),
        ])
        .unwrap_err();
        for needle in [
            "cannot read /nonexistent/keys.pem",
            "`host` is a header HTTP or gatehouse itself sets",
            "at most 86400 (one day)",
        ] {
            assert!(err.contains(needle), "{needle:?} not in:\n{err}");
        }
    }
}
