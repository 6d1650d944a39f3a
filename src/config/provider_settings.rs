//! Reading how gatehouse talks to the provider beyond the basics: extra authorization
//! parameters, trusted audiences, `max_age`/`acr_values`, userinfo, the forwarded access
//! token, and private CA roots. Every problem is remembered in the [`Reader`].

use super::reader::{is_loopback, Reader};
use super::{AccessTokenForward, UserinfoMode};
use std::time::Duration;
use url::Url;

/// The provider-protocol settings.
pub(super) struct ProviderSettings {
    pub(super) extra_auth_params: Vec<(String, String)>,
    pub(super) trusted_audiences: Vec<String>,
    pub(super) access_token: Option<AccessTokenForward>,
    pub(super) max_age: Option<Duration>,
    pub(super) acr_values: Vec<String>,
    pub(super) provider_ca: Vec<reqwest::Certificate>,
    pub(super) userinfo: UserinfoMode,
}

pub(super) fn read_provider(
    r: &mut Reader<'_>,
    issuer_url: &str,
    access_audience: Option<String>,
) -> ProviderSettings {
    let mut extra_auth_params = Vec::new();
    for pair in r.list("extra_auth_params", &[]) {
        const OURS: [&str; 10] = [
            "max_age",
            "acr_values",
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
        ];
        match pair.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some((k, v)) if !k.is_empty() && !OURS.contains(&k) => {
                extra_auth_params.push((k.to_string(), v.to_string()))
            }
            _ => {
                let entry = r.raw.get("extra_auth_params");
                r.problem(
                    entry,
                    "extra_auth_params",
                    format!("`{pair}` is not key=value, or sets a parameter gatehouse sets itself"),
                );
            }
        }
    }
    let trusted_audiences = r.list("trusted_audiences", &[]);
    let access_token = access_audience.map(|audience| {
        let issuer = r
            .str_opt("access_token_issuer")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| issuer_url.to_string());
        let ok = Url::parse(&issuer)
            .is_ok_and(|u| u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)));
        if !ok {
            let entry = r.raw.get("access_token_issuer");
            r.problem(
                entry,
                "access_token_issuer",
                format!(
                    "`{}` is not an https URL",
                    super::reader::without_credentials(&issuer)
                ),
            );
        }
        AccessTokenForward { issuer, audience }
    });
    if access_token.is_none() && r.raw.get("access_token_issuer").is_some() {
        r.problems.push("access_token_issuer is set but access_token_audience is not: set both to forward a verified access token".into());
    }
    let max_age = r.raw.get("max_age").is_some().then(|| r.secs("max_age", 0));
    let acr_values = r.list("acr_values", &[]);
    let mut provider_ca = Vec::new();
    for path in r.list("provider_ca_file", &[]) {
        let entry = r.raw.get("provider_ca_file");
        match std::fs::read(&path) {
            Err(e) => r.problem(
                entry,
                "provider_ca_file",
                format!("cannot read {path}: {e}"),
            ),
            Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => provider_ca.extend(certs),
                _ => r.problem(
                    entry,
                    "provider_ca_file",
                    format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                ),
            },
        }
    }
    let userinfo = match r.str_or("userinfo", "auto").to_ascii_lowercase().as_str() {
        "auto" | "" => UserinfoMode::Auto,
        "true" | "always" | "yes" | "on" | "1" => UserinfoMode::Always,
        "false" | "never" | "no" | "off" | "0" => UserinfoMode::Never,
        other => {
            let other = other.to_string();
            let entry = r.raw.get("userinfo");
            r.problem(
                entry,
                "userinfo",
                format!("`{other}` is not auto, true or false"),
            );
            UserinfoMode::Auto
        }
    };
    ProviderSettings {
        extra_auth_params,
        trusted_audiences,
        access_token,
        max_age,
        acr_values,
        provider_ca,
        userinfo,
    }
}
