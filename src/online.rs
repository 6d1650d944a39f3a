//! `gatehouse check --online`: asks the live provider what `serve` would meet, and says in
//! plain words what is wrong and how to fix it: the issuer (byte for byte), reachability
//! and TLS, signing algorithms the Kubernetes API server cannot accept, scopes the provider
//! does not list, refresh tokens that will not come, the callback URL, the clock, and
//! whether the provider does back-channel logout (with the URI to register). Then it prints the API server settings that make it accept the token Headlamp
//! forwards. Every finding is a line; any `error:` makes the exit status non-zero.
//!
//! Trusts nothing it fetches: it only reads and reports.

use crate::config::{Config, PassAuthorization};
use crate::oidc::discovery::{self, discovery_url, Metadata};
use serde_json::Value;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Warning(String),
    Error(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Ok(m) => write!(f, "ok: {m}"),
            Finding::Warning(m) => write!(f, "warning: {m}"),
            Finding::Error(m) => write!(f, "error: {m}"),
        }
    }
}

/// Algorithms the Kubernetes API server verifies (RS/ES/PS; never EdDSA or HS*).
const APISERVER_ALGS: [&str; 8] = [
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384",
];

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs every check; the findings in order.
pub async fn check(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let http = crate::oidc::http_client_with(&cfg.provider_ca, cfg.provider_timeouts);
    let url = discovery_url(&cfg.issuer_url);
    let resp = match http.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            out.push(Finding::Error(format!(
                "cannot reach {url}: {}; check issuer_url, DNS and the network path from here",
                crate::oidc::describe(&e)
            )));
            return out;
        }
    };
    if let Some(reason) = crate::oidc::redirected(&url, &resp) {
        out.push(Finding::Error(reason));
        return out;
    }
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(httpdate_secs);
    let status = resp.status();
    let raw: Value = match resp.json().await {
        Ok(v) if status.is_success() => v,
        _ => {
            out.push(Finding::Error(format!(
                "{url} answered HTTP {} without provider metadata; is issuer_url right?",
                status.as_u16()
            )));
            return out;
        }
    };
    let meta: Metadata = match serde_json::from_value(raw.clone()) {
        Ok(m) => m,
        Err(e) => {
            out.push(Finding::Error(format!(
                "{url} is not valid provider metadata: {e}"
            )));
            return out;
        }
    };
    match discovery::check(&cfg.issuer_url, meta.clone()) {
        Ok(_) => out.push(Finding::Ok(format!(
            "discovery at {url}: issuer `{}` matches byte for byte",
            meta.issuer
        ))),
        Err(e) => out.push(Finding::Error(e.to_string())),
    }
    if let Some(provider_now) = date {
        let skew = provider_now.abs_diff(crate::util::now_secs());
        if skew > cfg.clock_skew.as_secs() {
            out.push(Finding::Error(format!("this machine's clock and the provider's differ by {skew} s, more than clock_skew_secs ({}); fix the clocks (NTP)", cfg.clock_skew.as_secs())));
        } else {
            out.push(Finding::Ok(format!(
                "clock within {skew} s of the provider's"
            )));
        }
    }
    check_keys(&http, &meta, &raw, &mut out).await;
    check_scopes(cfg, &raw, &mut out);
    check_callback(cfg, &mut out);
    check_backchannel(cfg, &raw, &mut out);
    out
}

async fn check_keys(http: &reqwest::Client, meta: &Metadata, raw: &Value, out: &mut Vec<Finding>) {
    let jwks: Value = match http.get(&meta.jwks_uri).send().await {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        Ok(r) => {
            out.push(Finding::Error(format!(
                "the JWKS at {} answered HTTP {}",
                meta.jwks_uri,
                r.status().as_u16()
            )));
            return;
        }
        Err(e) => {
            out.push(Finding::Error(format!(
                "cannot fetch the JWKS at {}: {}",
                meta.jwks_uri,
                crate::oidc::describe(&e)
            )));
            return;
        }
    };
    let usable = crate::oidc::jwks::parse_jwks(&jwks).len();
    if usable == 0 {
        out.push(Finding::Error(format!("the JWKS at {} holds no key gatehouse can verify with (only symmetric or unknown keys?); configure an RS256 or ES256 signing key at the provider", meta.jwks_uri)));
    } else {
        out.push(Finding::Ok(format!(
            "{usable} usable signing key(s) at {}",
            meta.jwks_uri
        )));
    }
    let algs = strings(raw.get("id_token_signing_alg_values_supported"));
    let api_ok: Vec<&String> = algs
        .iter()
        .filter(|a| APISERVER_ALGS.contains(&a.as_str()))
        .collect();
    if !algs.is_empty() && api_ok.is_empty() {
        out.push(Finding::Warning(format!("the provider signs ID tokens with {} only; the Kubernetes API server accepts RS*, ES* and PS* only, so it will reject the token Headlamp forwards (Vault: use an RS256 key)", algs.join(", "))));
    }
    let okp = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().any(|k| k.get("kty") == Some(&Value::from("OKP"))))
        .unwrap_or(false);
    if okp {
        out.push(Finding::Warning("the JWKS holds EdDSA (OKP) keys: if ID tokens are signed with them, the Kubernetes API server cannot verify them".into()));
    }
}

fn check_scopes(cfg: &Config, raw: &Value, out: &mut Vec<Finding>) {
    let supported = strings(raw.get("scopes_supported"));
    if !supported.is_empty() {
        let missing: Vec<&String> = cfg
            .scopes
            .iter()
            .filter(|s| !supported.contains(s))
            .collect();
        if missing.is_empty() {
            out.push(Finding::Ok(
                "every configured scope is listed by the provider".into(),
            ));
        } else {
            out.push(Finding::Warning(format!("the provider does not list the scope(s) {}; some providers refuse unknown scopes with invalid_scope", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))));
        }
    }
    let grants = strings(raw.get("grant_types_supported"));
    let wants_offline = matches!(cfg.provider, "dex" | "authentik" | "entra");
    if wants_offline && !cfg.scopes.iter().any(|s| s == "offline_access") {
        out.push(Finding::Warning(format!("the {} provider issues refresh tokens only for the offline_access scope, which scopes lacks: users will sign in again whenever the ID token expires", cfg.provider)));
    } else if !grants.is_empty() && !grants.iter().any(|g| g == "refresh_token") {
        out.push(Finding::Warning("the provider does not list the refresh_token grant: users will sign in again whenever the ID token expires".into()));
    }
}

fn check_callback(cfg: &Config, out: &mut Vec<Finding>) {
    match &cfg.redirect_url {
        Some(u) if u.scheme() == "http" && cfg.cookie.secure => out.push(Finding::Error(format!("redirect_url {u} is plain http while cookies are Secure: the browser drops them and every sign-in fails; use https or cookie_secure = false on loopback"))),
        Some(u) if u.path() != "/oauth2/callback" => out.push(Finding::Error(format!("redirect_url {u} must end in /oauth2/callback, where gatehouse receives the code"))),
        Some(u) => out.push(Finding::Ok(format!("callback {u}: register exactly this URL at the provider"))),
        None => out.push(Finding::Warning("redirect_url is not set: the callback is derived from each request, so browsers must reach gatehouse with the scheme and host the provider has registered (behind a TLS proxy, list it in trusted_proxies)".into())),
    }
    if cfg
        .header_sets()
        .any(|h| h.authorization == PassAuthorization::AccessToken)
    {
        out.push(Finding::Warning("pass_authorization = access_token: the Kubernetes API server must accept that access token (its issuer and audience), not the ID token".into()));
    }
}

/// Back-Channel Logout 1.0 §2.1: whether the provider says it sends logout tokens (and
/// with `sid`), and the `backchannel_logout_uri` to register for gatehouse.
fn check_backchannel(cfg: &Config, raw: &Value, out: &mut Vec<Finding>) {
    let path = crate::http::backchannel::PATH;
    let register = match &cfg.redirect_url {
        Some(u) => format!(
            "register {}{path} as the client's backchannel_logout_uri",
            u.origin().ascii_serialization()
        ),
        None => format!("register gatehouse's public URL followed by {path} (https://<gatehouse host>{path}) as the client's backchannel_logout_uri; with redirect_url set, the exact URI is printed here"),
    };
    let flag = |k: &str| raw.get(k).and_then(Value::as_bool) == Some(true);
    if flag("backchannel_logout_supported") {
        let sid = if flag("backchannel_logout_session_supported") {
            "with the provider's session id (backchannel_logout_session_supported): a sign-out at the provider ends that sign-in's sessions here (ask for it with backchannel_logout_session_required)"
        } else {
            "without session ids (backchannel_logout_session_supported is not true): a logout token ends every session of that user here"
        };
        out.push(Finding::Ok(format!(
            "the provider supports back-channel logout (backchannel_logout_supported), {sid}; {register}"
        )));
    } else {
        out.push(Finding::Warning(format!(
            "the provider does not advertise back-channel logout (backchannel_logout_supported): signing out at the provider leaves sessions here alive until they expire or the user signs out at gatehouse; if it supports it all the same, {register}"
        )));
    }
}

/// Seconds since the epoch of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_secs(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == mon)? as u64 + 1;
    let (d, y): (u64, u64) = (day.parse().ok()?, year.parse().ok()?);
    let t: Vec<u64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [hh, mm, ss] = t.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The Kubernetes API server settings that accept the ID token gatehouse forwards.
pub fn apiserver_settings(cfg: &Config) -> String {
    let user = &cfg.claims.user;
    let groups = cfg.claims.groups.first().cloned().unwrap_or_default();
    let nested = groups.contains('.');
    let mut s = String::new();
    s.push_str("Kubernetes API server settings for the token Headlamp forwards:\n");
    s.push_str(&format!("  --oidc-issuer-url={}\n", cfg.issuer_url));
    s.push_str(&format!("  --oidc-client-id={}\n", cfg.client_id));
    s.push_str(&format!("  --oidc-username-claim={user}\n"));
    s.push_str("  --oidc-username-prefix=oidc:\n");
    if !nested && !groups.is_empty() {
        s.push_str(&format!("  --oidc-groups-claim={groups}\n"));
        s.push_str("  --oidc-groups-prefix=oidc:\n");
    }
    s.push_str("or, with structured authentication (--authentication-config=FILE):\n");
    s.push_str(
        "  apiVersion: apiserver.config.k8s.io/v1\n  kind: AuthenticationConfiguration\n  jwt:\n",
    );
    s.push_str(&format!(
        "    - issuer:\n        url: {}\n        audiences:\n          - {}\n",
        cfg.issuer_url, cfg.client_id
    ));
    s.push_str(&format!(
        "      claimMappings:\n        username:\n          claim: {user}\n          prefix: \"oidc:\"\n"
    ));
    if !groups.is_empty() {
        if nested {
            s.push_str(&format!(
                "        groups:\n          expression: 'claims.{groups}'\n"
            ));
        } else {
            s.push_str(&format!(
                "        groups:\n          claim: {groups}\n          prefix: \"oidc:\"\n"
            ));
        }
    }
    s.push_str("(the issuer byte for byte, trailing slash included; RBAC subjects are then oidc:<user> and oidc:<group>)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            httpdate_secs("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(httpdate_secs("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(httpdate_secs("yesterday"), None);
    }
}
