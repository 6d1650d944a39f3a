//! Turns a layered [`RawConfig`] into a typed [`Config`], collecting every problem before
//! returning so a user fixes them all in one pass.

use super::secret::CookieKey;
use super::sources::{Entry, RawConfig, RawValue};
use super::*;
use std::net::IpAddr;

/// Reads typed values out of the raw layers and remembers what went wrong.
struct Reader<'a> {
    raw: &'a RawConfig,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn problem(&mut self, entry: Option<&Entry>, key: &str, msg: impl std::fmt::Display) {
        match entry {
            Some(e) => self
                .problems
                .push(format!("{key} (from {}): {msg}", e.origin)),
            None => self.problems.push(format!("{key}: {msg}")),
        }
    }

    fn str_opt(&mut self, key: &str) -> Option<String> {
        match self.raw.get(key).map(|e| &e.value) {
            Some(RawValue::Str(s)) => Some(s.trim().to_string()),
            Some(RawValue::List(l)) => Some(l.join(",")),
            Some(RawValue::Bool(b)) => Some(b.to_string()),
            Some(RawValue::Int(i)) => Some(i.to_string()),
            None => None,
        }
    }

    fn str_or(&mut self, key: &str, default: &str) -> String {
        self.str_opt(key).unwrap_or_else(|| default.to_string())
    }

    fn required(&mut self, key: &str, hint: &str) -> String {
        match self.str_opt(key).filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => {
                let env = format!("GATEHOUSE_{}", key.to_ascii_uppercase());
                let flag = key.replace('_', "-");
                self.problems.push(format!(
                    "{key} is required (set `{key}` in the file, {env}, or --{flag}); {hint}"
                ));
                String::new()
            }
        }
    }

    fn list(&mut self, key: &str, default: &[&str]) -> Vec<String> {
        match self.raw.get(key).map(|e| &e.value) {
            Some(RawValue::List(l)) => l
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Some(RawValue::Str(s)) => s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => default.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        let entry = self.raw.get(key);
        match entry.map(|e| &e.value) {
            None => default,
            Some(RawValue::Bool(b)) => *b,
            Some(RawValue::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                other => {
                    let other = other.to_string();
                    self.problem(entry, key, format!("`{other}` is not true or false"));
                    default
                }
            },
            Some(_) => default,
        }
    }

    fn secs(&mut self, key: &str, default: u64) -> Duration {
        let entry = self.raw.get(key);
        let n = match entry.map(|e| &e.value) {
            None => return Duration::from_secs(default),
            Some(RawValue::Int(i)) => u64::try_from(*i).ok(),
            Some(RawValue::Str(s)) => s.trim().trim_end_matches('s').parse::<u64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) => Duration::from_secs(n),
            None => {
                self.problem(entry, key, "should be a whole number of seconds");
                Duration::from_secs(default)
            }
        }
    }

    fn header(&mut self, key: &str, value: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(value.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                let entry = self.raw.get(key);
                self.problem(entry, key, format!("`{value}` is not a valid header name"));
                None
            }
        }
    }

    fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                let entry = self.raw.get(key);
                self.problem(entry, key, format!("`{value}` is not an http(s) URL"));
                None
            }
        }
    }
}

/// True when the URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn read_file(r: &mut Reader<'_>, key: &str, path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            let entry = r.raw.get(key);
            r.problem(entry, key, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// A DNS name: labels of letters, digits and `-`, at least two of them.
fn valid_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    !d.is_empty()
        && d.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && (labels.len() >= 2 || d.eq_ignore_ascii_case("localhost"))
}

/// The access rules; a missing or unreadable emails file is a start-up problem.
fn read_rules(r: &mut Reader<'_>) -> AccessRules {
    let mut rules = AccessRules {
        groups: r.list("allowed_groups", &[]),
        emails: r.list("allowed_emails", &[]),
        emails_file: None,
        email_domains: r.list("allowed_email_domains", &[]),
        claims: Vec::new(),
    };
    for e in &rules.emails {
        if e.matches('@').count() != 1 || e.starts_with('@') || e.ends_with('@') {
            let entry = r.raw.get("allowed_emails");
            r.problem(
                entry,
                "allowed_emails",
                format!("`{e}` is not an email address"),
            );
        }
    }
    for d in &rules.email_domains {
        let bare = d.strip_prefix('.').unwrap_or(d);
        if d.contains('@') || !valid_domain(bare) {
            let entry = r.raw.get("allowed_email_domains");
            r.problem(entry, "allowed_email_domains", format!("`{d}` is not a domain (write company.com, or .company.com to include subdomains)"));
        }
    }
    if let Some(path) = r.str_opt("allowed_emails_file").filter(|s| !s.is_empty()) {
        if read_file(r, "allowed_emails_file", &path).is_some() {
            rules.emails_file = Some(path.into());
        }
    }
    for c in r.list("required_claims", &[]) {
        match c.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => rules
                .claims
                .push((k.trim().to_string(), v.trim().to_string())),
            _ => {
                let entry = r.raw.get("required_claims");
                r.problem(
                    entry,
                    "required_claims",
                    format!("`{c}` is not claim=value (e.g. realm_access.roles=admin)"),
                );
            }
        }
    }
    rules
}

pub(super) fn build(user_raw: &RawConfig) -> Result<Config, ConfigError> {
    // A provider preset lays its defaults under the user's values (presets.rs).
    let (preset, preset_problem) = match super::presets::select(user_raw) {
        Ok(p) => (p, None),
        Err(e) => (&super::presets::PRESETS[0], Some(e)),
    };
    let preset_defaults = preset.defaults_for(user_raw);
    let layered = preset.apply(user_raw);
    let raw = &layered;
    let mut r = Reader {
        raw,
        problems: preset_problem.into_iter().collect(),
    };
    let mut warnings = Vec::new();

    let listen_s = r.str_or("listen", "127.0.0.1:4180");
    let listen = listen_s.parse::<SocketAddr>().unwrap_or_else(|_| {
        let entry = raw.get("listen");
        r.problem(
            entry,
            "listen",
            format!("`{listen_s}` is not an address like 127.0.0.1:4180"),
        );
        SocketAddr::from(([127, 0, 0, 1], 4180))
    });

    // Optional: without an upstream gatehouse is an auth service only (forward-auth).
    let upstream_s = r.str_or("upstream", "");
    let upstream = if upstream_s.is_empty() {
        None
    } else {
        r.url("upstream", &upstream_s)
    };
    if let Some(u) = &upstream {
        if u.scheme() == "https" {
            let entry = raw.get("upstream");
            r.problem(entry, "upstream", "https upstreams are not supported yet: reach the upstream over plain http on loopback or the pod network (as a sidecar does)");
        }
        if u.path() != "/" || u.query().is_some() {
            let entry = raw.get("upstream");
            r.problem(entry, "upstream", "must not have a path or query: gatehouse forwards the request path unchanged (keep Headlamp's -base-url prefix in the request instead)");
        }
    }

    let issuer_url = r.required(
        "issuer_url",
        "it is the `issuer` in your provider's /.well-known/openid-configuration",
    );
    if !issuer_url.is_empty() {
        match Url::parse(&issuer_url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => warnings.push(format!(
                "issuer {issuer_url} uses plain http: accepted only because it is on loopback (development and tests)"
            )),
            Ok(u) if u.scheme() == "http" => {
                let entry = raw.get("issuer_url");
                r.problem(entry, "issuer_url", "must be https:// (plain http is accepted only on loopback addresses)")
            }
            _ => {
                let entry = raw.get("issuer_url");
                r.problem(entry, "issuer_url", format!("`{issuer_url}` is not an https URL"))
            }
        }
    }

    let client_id = r.required(
        "client_id",
        "it is the client (application) id registered at your provider",
    );
    let mut client_secret = r.str_opt("client_secret").filter(|s| !s.is_empty());
    if let Some(path) = r.str_opt("client_secret_file").filter(|s| !s.is_empty()) {
        if client_secret.is_some() {
            r.problems
                .push("client_secret and client_secret_file are both set: keep one".into());
        }
        client_secret =
            read_file(&mut r, "client_secret_file", &path).map(|s| s.trim().to_string());
    }
    let client_auth = match r.str_opt("client_auth_method").as_deref() {
        None | Some("") => {
            if client_secret.is_some() {
                ClientAuth::Basic
            } else {
                ClientAuth::None
            }
        }
        Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some("none") => ClientAuth::None,
        Some(other) => {
            let other = other.to_string();
            let entry = raw.get("client_auth_method");
            r.problem(
                entry,
                "client_auth_method",
                format!("`{other}` is not one of client_secret_basic, client_secret_post, none"),
            );
            ClientAuth::None
        }
    };
    if client_auth != ClientAuth::None && client_secret.is_none() {
        r.problems.push("client_secret (or client_secret_file) is required unless client_auth_method = \"none\" (a public client with PKCE only)".into());
    }

    let redirect_url = match r.str_opt("redirect_url").filter(|s| !s.is_empty()) {
        Some(s) => r.url("redirect_url", &s),
        None => None,
    };
    let scopes = r.list("scopes", &["openid", "email", "profile"]);
    if !scopes.iter().any(|s| s == "openid") {
        r.problems.push(
            "scopes must include `openid`: without it the provider returns no ID token".into(),
        );
    }
    let preset_problems = preset.check(raw, &scopes, &issuer_url);
    r.problems.extend(preset_problems);
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
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() && !OURS.contains(&k) => {
                extra_auth_params.push((k.to_string(), v.to_string()))
            }
            _ => {
                let entry = raw.get("extra_auth_params");
                r.problem(
                    entry,
                    "extra_auth_params",
                    format!("`{pair}` is not key=value, or sets a parameter gatehouse sets itself"),
                );
            }
        }
    }

    // Cookie secrets: every problem at once, and how to fix it.
    let mut secrets = r.list("cookie_secret", &[]);
    if let Some(path) = r.str_opt("cookie_secret_file").filter(|s| !s.is_empty()) {
        if let Some(text) = read_file(&mut r, "cookie_secret_file", &path) {
            secrets.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
    }
    let mut keys = Vec::new();
    if secrets.is_empty() {
        r.problems.push("cookie_secret is required: generate one with `gatehouse secret` and set GATEHOUSE_COOKIE_SECRET (or cookie_secret / cookie_secret_file)".into());
    }
    for (i, s) in secrets.iter().enumerate() {
        match CookieKey::derive(s) {
            Ok(k) => keys.push(k),
            Err(e) => r.problems.push(format!("cookie_secret #{}: {e}", i + 1)),
        }
    }
    let cookie_name = r.str_or("cookie_name", "_gatehouse");
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        r.problems.push(format!(
            "cookie_name `{cookie_name}` may use only letters, digits, `_` and `-`"
        ));
    }
    let cookie_domain = r.str_opt("cookie_domain").filter(|s| !s.is_empty());
    if let Some(d) = &cookie_domain {
        if !valid_domain(d.strip_prefix('.').unwrap_or(d)) {
            let entry = raw.get("cookie_domain");
            r.problem(
                entry,
                "cookie_domain",
                format!("`{d}` is not a domain name like .example.com"),
            );
        }
    }
    let cookie = CookieSettings {
        name: cookie_name,
        secure: r.bool("cookie_secure", true),
        domain: cookie_domain,
        keys,
        session_lifetime: r.secs("session_lifetime_secs", 7 * 24 * 3600),
        login_timeout: r.secs("login_timeout_secs", 600),
    };

    let client_id_for_paths = client_id.clone();
    let claims = ClaimMapping {
        user: r.str_or("user_claim", "email"),
        email: r.str_or("email_claim", "email"),
        groups: r
            .list("groups_claim", &["groups"])
            .into_iter()
            .map(|p| p.replace("{client_id}", &client_id_for_paths))
            .collect(),
        groups_trim_slash: r.bool("groups_trim_leading_slash", false),
        preferred_username: r.str_or("preferred_username_claim", "preferred_username"),
    };

    let h_user = r.str_or("header_user", "X-Forwarded-User");
    let h_email = r.str_or("header_email", "X-Forwarded-Email");
    let h_pref = r.str_or(
        "header_preferred_username",
        "X-Forwarded-Preferred-Username",
    );
    let h_id = r.str_or("header_id_token", "X-Forwarded-Id-Token");
    let h_groups = r.list(
        "header_groups",
        &["X-Forwarded-Group", "X-Forwarded-Groups"],
    );
    let strip = r.list("strip_headers", &[]);
    let access_audience = r.str_opt("access_token_audience").filter(|s| !s.is_empty());
    let pass_default = if access_audience.is_some() {
        "access_token"
    } else {
        "none"
    };
    let authorization = match r.str_or("pass_authorization", pass_default).as_str() {
        "none" | "" => PassAuthorization::None,
        "id_token" => PassAuthorization::IdToken,
        "access_token" => PassAuthorization::AccessToken,
        other => {
            let other = other.to_string();
            let entry = raw.get("pass_authorization");
            r.problem(
                entry,
                "pass_authorization",
                format!("`{other}` is not one of none, id_token, access_token"),
            );
            PassAuthorization::None
        }
    };
    let fallback = HeaderName::from_static("x-forwarded-user");
    let headers = HeaderNames {
        user: r.header("header_user", &h_user).unwrap_or(fallback.clone()),
        email: r
            .header("header_email", &h_email)
            .unwrap_or(fallback.clone()),
        groups: h_groups
            .iter()
            .filter_map(|h| r.header("header_groups", h))
            .collect(),
        preferred_username: r
            .header("header_preferred_username", &h_pref)
            .unwrap_or(fallback),
        id_token: if h_id.is_empty() {
            None
        } else {
            r.header("header_id_token", &h_id)
        },
        authorization,
        token_is_access_token: access_audience.is_some(),
        strip: strip
            .iter()
            .filter_map(|h| r.header("strip_headers", h))
            .collect(),
        folded: Default::default(),
    };

    let mut trusted_proxies = Vec::new();
    for p in r.list("trusted_proxies", &[]) {
        let parsed = p
            .parse::<IpNet>()
            .or_else(|_| p.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(n) => trusted_proxies.push(n),
            Err(_) => {
                let entry = raw.get("trusted_proxies");
                r.problem(
                    entry,
                    "trusted_proxies",
                    format!("`{p}` is not an address or CIDR like 10.0.0.0/8"),
                )
            }
        }
    }

    let mut allowed_algs = Vec::new();
    let default_algs = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    for a in r.list("allowed_algs", &default_algs) {
        match a.parse::<Algorithm>() {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => r.problems.push(format!(
                "allowed_algs: {a} is not supported: gatehouse verifies ID tokens with the provider's public keys only (configure an asymmetric signing key at the provider)"
            )),
            Ok(alg) => allowed_algs.push(alg),
            Err(_) => r.problems.push(format!("allowed_algs: `{a}` is not a JWS algorithm gatehouse knows (`none` is never accepted)")),
        }
    }

    let trusted_audiences = r.list("trusted_audiences", &[]);
    let access_token = access_audience.map(|audience| {
        let issuer = r
            .str_opt("access_token_issuer")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| issuer_url.clone());
        let ok = Url::parse(&issuer)
            .is_ok_and(|u| u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)));
        if !ok {
            let entry = raw.get("access_token_issuer");
            r.problem(
                entry,
                "access_token_issuer",
                format!("`{issuer}` is not an https URL"),
            );
        }
        AccessTokenForward { issuer, audience }
    });
    if access_token.is_none() && raw.get("access_token_issuer").is_some() {
        r.problems.push("access_token_issuer is set but access_token_audience is not: set both to forward a verified access token".into());
    }
    let max_age = raw.get("max_age").is_some().then(|| r.secs("max_age", 0));
    let acr_values = r.list("acr_values", &[]);
    let mut provider_ca = Vec::new();
    for path in r.list("provider_ca_file", &[]) {
        let entry = raw.get("provider_ca_file");
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
            let entry = raw.get("userinfo");
            r.problem(
                entry,
                "userinfo",
                format!("`{other}` is not auto, true or false"),
            );
            UserinfoMode::Auto
        }
    };

    let post_logout_redirect_url = match r
        .str_opt("post_logout_redirect_url")
        .filter(|s| !s.is_empty())
    {
        Some(s) => r.url("post_logout_redirect_url", &s),
        None => None,
    };
    let forward_auth_redirect = r.bool("forward_auth_redirect", false);
    let allowed_redirect_domains = r.list("allowed_redirect_domains", &[]);
    for d in &allowed_redirect_domains {
        let (host, port) = match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d.as_str(), None),
        };
        let host_ok = valid_domain(host.strip_prefix('.').unwrap_or(host));
        let port_ok = port.map_or(true, |p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !host_ok || !port_ok {
            let entry = raw.get("allowed_redirect_domains");
            r.problem(
                entry,
                "allowed_redirect_domains",
                format!(
                    "`{d}` is not a host, .domain or host:port (no scheme, no path, no wildcard)"
                ),
            );
        }
    }
    let mut rules = read_rules(&mut r);
    if let Some(hd) = r.str_opt("hosted_domain").filter(|s| !s.is_empty()) {
        // Google: show only that domain's accounts, and require it in the token.
        extra_auth_params.push(("hd".into(), hd.clone()));
        rules.claims.push(("hd".into(), hd));
    }
    let mut skip_auth_routes = Vec::new();
    for spec in r.list("skip_auth_routes", &[]) {
        match crate::routes::SkipRoute::parse(&spec) {
            Ok(route) => skip_auth_routes.push(route),
            Err(e) => {
                let entry = raw.get("skip_auth_routes");
                r.problem(entry, "skip_auth_routes", e);
            }
        }
    }
    let bearer = if r.bool("bearer_tokens", false) {
        let audiences = r.list("bearer_audiences", &[]);
        let mut issuers = Vec::new();
        for pair in r.list("bearer_issuers", &[]) {
            match pair.split_once('=') {
                Some((iss, aud))
                    if Url::parse(iss).is_ok_and(|u| {
                        u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u))
                    }) && !aud.is_empty() =>
                {
                    issuers.push((iss.to_string(), aud.to_string()))
                }
                _ => {
                    let entry = raw.get("bearer_issuers");
                    r.problem(
                        entry,
                        "bearer_issuers",
                        format!("`{pair}` is not issuer=audience with an https issuer"),
                    );
                }
            }
        }
        Some(BearerSettings { audiences, issuers })
    } else {
        for key in ["bearer_audiences", "bearer_issuers"] {
            if raw.get(key).is_some() {
                r.problems.push(format!("{key} is set but bearer_tokens is not true: set bearer_tokens = true to accept bearer tokens"));
            }
        }
        None
    };
    if rules.is_empty() {
        warnings.push("no access rules are set (allowed_groups, allowed_emails, allowed_email_domains, required_claims): every user who can sign in at the provider is allowed".into());
    }
    if upstream.is_none() {
        warnings.push("no upstream is set: gatehouse runs in auth-only mode and serves only /oauth2/* (including the forward-auth endpoint /oauth2/auth), /healthz and /readyz".into());
    }

    let log_format = match r.str_or("log_format", "text").as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            r.problems
                .push(format!("log_format: `{other}` is not text or json"));
            LogFormat::Text
        }
    };
    let log_level = r.str_or("log_level", "info");
    if !matches!(
        log_level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        r.problems.push(format!(
            "log_level: `{log_level}` is not one of error, warn, info, debug, trace"
        ));
    }

    let clock_skew = r.secs("clock_skew_secs", 30);
    let refresh_before = r.secs("refresh_before_secs", 60);
    let upstream_timeout = r.secs("upstream_timeout_secs", 30);
    let upstream_connect_timeout = r.secs("upstream_connect_timeout_secs", 5);
    if clock_skew > Duration::from_secs(300) {
        r.problems.push(
            "clock_skew_secs above 300 would accept long-expired tokens; fix the clocks instead"
                .into(),
        );
    }

    if let Some(u) = redirect_url
        .as_ref()
        .filter(|u| cookie.secure && u.scheme() == "http")
    {
        if u.host_str() != Some("localhost") {
            warnings.push(format!(
                "redirect_url {u} is plain http but cookie_secure is true: browsers drop Secure cookies on http sites, so logins would fail; serve over https or set cookie_secure = false"
            ));
        }
    }

    match r.problems.is_empty() {
        true => Ok(Config {
            provider: preset.name,
            preset_defaults,
            listen,
            upstream,
            issuer_url,
            client_id,
            client_secret: client_secret.map(Secret::new),
            client_auth,
            redirect_url,
            scopes,
            extra_auth_params,
            cookie,
            claims,
            headers,
            trusted_proxies,
            clock_skew,
            allowed_algs,
            trusted_audiences,
            userinfo,
            max_age,
            acr_values,
            access_token,
            provider_ca,
            refresh_before,
            upstream_timeout,
            upstream_connect_timeout,
            post_logout_redirect_url,
            forward_auth_redirect,
            allowed_redirect_domains,
            rules,
            skip_auth_routes,
            bearer,
            log_format,
            log_level,
            warnings,
        }),
        false => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> RawConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RawConfig::from_env(&map)
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn an_empty_configuration_lists_every_missing_piece() {
        let err = Config::from_raw(&RawConfig::default()).unwrap_err();
        let all = err.problems.join("\n");
        for needle in [
            "issuer_url is required",
            "client_id is required",
            "gatehouse secret",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
    }

    #[test]
    fn http_issuer_is_loopback_only() {
        let base = [
            ("GATEHOUSE_UPSTREAM", "http://127.0.0.1:4466"),
            ("GATEHOUSE_CLIENT_ID", "c"),
            ("GATEHOUSE_CLIENT_SECRET", "s"),
            ("GATEHOUSE_COOKIE_SECRET", SECRET),
        ];
        let mut ok = base.to_vec();
        ok.push(("GATEHOUSE_ISSUER_URL", "http://127.0.0.1:5556/dex"));
        let cfg = Config::from_raw(&env(&ok)).unwrap();
        assert_eq!(
            cfg.warnings
                .iter()
                .filter(|w| w.contains("plain http"))
                .count(),
            1,
            "{:?}",
            cfg.warnings
        );
        let mut bad = base.to_vec();
        bad.push(("GATEHOUSE_ISSUER_URL", "http://sso.example.com"));
        let err = Config::from_raw(&env(&bad)).unwrap_err();
        assert!(err.problems[0].contains("only on loopback"), "{err}");
    }

    #[test]
    fn auth_only_mode_and_open_access_are_announced() {
        let cfg = Config::from_raw(&env(&[
            ("GATEHOUSE_ISSUER_URL", "https://sso.example.com"),
            ("GATEHOUSE_CLIENT_ID", "c"),
            ("GATEHOUSE_CLIENT_SECRET", "s"),
            ("GATEHOUSE_COOKIE_SECRET", SECRET),
        ]))
        .unwrap();
        assert!(cfg.upstream.is_none());
        let all = cfg.warnings.join("\n");
        assert!(all.contains("auth-only mode"), "{all}");
        assert!(all.contains("every user who can sign in"), "{all}");
    }

    #[test]
    fn forward_auth_and_rule_settings_are_checked() {
        let not_pem = std::env::temp_dir().join(format!("gh-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "no certificate here\n").unwrap();
        let not_pem_s = not_pem.display().to_string();
        let err = Config::from_raw(&env(&[
            (
                "GATEHOUSE_ALLOWED_REDIRECT_DOMAINS",
                "https://x.com,.example.com,a.b:99999,*.c.com",
            ),
            ("GATEHOUSE_COOKIE_DOMAIN", "example.com/x"),
            ("GATEHOUSE_REQUIRED_CLAIMS", "tenant"),
            ("GATEHOUSE_ALLOWED_EMAILS", "a@b@c"),
            ("GATEHOUSE_ALLOWED_EMAILS_FILE", "/nonexistent/emails.txt"),
            ("GATEHOUSE_BEARER_AUDIENCES", "kubectl"),
            ("GATEHOUSE_FORWARD_AUTH_REDIRECT", "maybe"),
            ("GATEHOUSE_PROVIDER_CA_FILE", &not_pem_s),
        ]))
        .unwrap_err();
        let all = err.problems.join("\n");
        for needle in [
            "`https://x.com` is not a host",
            "`a.b:99999` is not a host",
            "`*.c.com` is not a host",
            "cookie_domain (from env GATEHOUSE_COOKIE_DOMAIN)",
            "`tenant` is not claim=value",
            "`a@b@c` is not an email",
            "cannot read /nonexistent/emails.txt",
            "bearer_tokens is not true",
            "`maybe` is not true or false",
            "holds no PEM certificate",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
        assert!(!all.contains("`.example.com`"), "{all}");
    }

    #[test]
    fn hs_algorithms_and_bad_headers_are_refused() {
        let cfg = env(&[
            ("GATEHOUSE_ALLOWED_ALGS", "RS256,HS256,none"),
            ("GATEHOUSE_HEADER_USER", "bad header"),
        ]);
        let err = Config::from_raw(&cfg).unwrap_err().to_string();
        assert!(err.contains("HS256 is not supported"), "{err}");
        assert!(err.contains("`none` is never accepted"), "{err}");
        assert!(err.contains("GATEHOUSE_HEADER_USER"), "{err}");
    }
}
