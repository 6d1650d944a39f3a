//! Turns a layered [`RawConfig`] into a typed [`Config`], collecting every problem before
//! returning so a user fixes them all in one pass.

use super::access::read_access;
use super::provider_settings::read_provider;
use super::reader::{is_loopback, read_file, valid_domain, Reader};
use super::secret::CookieKey;
use super::sources::RawConfig;
use super::*;
use std::net::IpAddr;

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
        lists: Vec::new(),
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
        if !u.username().is_empty() || u.password().is_some() {
            // Never sent upstream, and an error page would show the URL to every user.
            let entry = raw.get("upstream");
            r.problem(entry, "upstream", "must not carry a user name or password: gatehouse never sends them, and error pages name the upstream; give the app its credentials another way");
        }
        if u.path() != "/" || u.query().is_some() {
            let entry = raw.get("upstream");
            r.problem(entry, "upstream", "must not have a path or query: gatehouse forwards the request path unchanged (keep Headlamp's -base-url prefix in the request instead)");
        }
    }

    let routes = super::routes::read(&mut r, upstream.as_ref());
    // upstream_ca_file and the client certificate serve every https upstream.
    let tls_for = upstream.as_ref().or_else(|| {
        let mut ups = routes.upstreams();
        ups.find(|u| u.scheme() == "https")
    });
    let upstream_tls = super::upstream_tls::read(&mut r, tls_for);
    // Auth-only mode: no upstream and no routes.
    let auth_only = upstream.is_none() && routes.is_empty();

    let issuer_url = r.required(
        "issuer_url",
        "it is the `issuer` in your provider's /.well-known/openid-configuration",
    );
    if !issuer_url.is_empty() {
        match Url::parse(&issuer_url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => warnings.push(format!(
                "issuer {} uses plain http: accepted only because it is on loopback (development and tests)",
                super::reader::without_credentials(&issuer_url)
            )),
            Ok(u) if u.scheme() == "http" => {
                let entry = raw.get("issuer_url");
                r.problem(entry, "issuer_url", "must be https:// (plain http is accepted only on loopback addresses)")
            }
            _ => {
                let entry = raw.get("issuer_url");
                let shown = super::reader::without_credentials(&issuer_url);
                r.problem(entry, "issuer_url", format!("`{shown}` is not an https URL"))
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
        login_path: redirect_url
            .as_ref()
            .map(|u| u.path().to_string())
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/oauth2/callback".into()),
        keys,
        session_lifetime: r.secs("session_lifetime_secs", 7 * 24 * 3600),
        idle_timeout: Some(r.secs("session_idle_timeout_secs", 0)).filter(|d| !d.is_zero()),
        login_timeout: r.secs("login_timeout_secs", 600),
    };

    // The vault and keycloak presets map the user from another claim than they once did
    // (`sub`, `preferred_username`; before: `email`): the user header changes on upgrade.
    if let Some(super::sources::Entry {
        origin: super::sources::Origin::Preset(p),
        value: super::sources::RawValue::Str(claim),
    }) = raw
        .get("user_claim")
        .filter(|_| matches!(preset.name, "vault" | "keycloak"))
    {
        warnings.push(format!(
            "the {p} preset maps the user (X-Forwarded-User) from `{claim}`; releases before December 2026 used `email`. Set user_claim explicitly to choose, and check that the app and the API server's RBAC expect this name"
        ));
    }
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
        require_email_verified: r.bool("require_email_verified", true),
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
    let mut provider = read_provider(&mut r, &issuer_url, access_audience.clone());
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
    let (assertion_header, assertion) =
        super::assertion::read_assertion(&mut r, redirect_url.as_ref(), &mut warnings);
    let fallback = HeaderName::from_static("x-forwarded-user");
    let mut headers = HeaderNames {
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
        strip_client_authorization: r.bool("strip_client_authorization", false),
        strip: strip
            .iter()
            .filter_map(|h| r.header("strip_headers", h))
            .collect(),
        assertion: assertion_header,
        folded: Default::default(),
    };
    super::header_check::check(&mut r, &headers);
    let routes = super::route_settings::finish(
        &mut r,
        routes,
        &mut headers,
        assertion.as_ref(),
        &mut warnings,
    );
    if upstream.is_some()
        && assertion
            .as_ref()
            .is_some_and(|a| a.policy.audience.is_none())
    {
        warnings.push("the identity assertion's audience (aud) is the request's Host, which the client chooses: with one upstream, set assertion_audience to the name the app checks".into());
    }

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

    if trusted_proxies.is_empty() && routes.routes().iter().any(|x| x.upstream.is_none()) {
        warnings.push("a [[routes]] entry without upstream is for forward auth, but trusted_proxies is empty: gatehouse cannot learn the original request's host from the ingress, so every check for it is refused (403 no_route_for_check); list the ingress in trusted_proxies".into());
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

    let post_logout_redirect_url = match r
        .str_opt("post_logout_redirect_url")
        .filter(|s| !s.is_empty())
    {
        Some(s) => r.url("post_logout_redirect_url", &s),
        None => None,
    };
    let access = read_access(&mut r);
    let mut rules = access.rules;
    if let Some(hd) = r.str_opt("hosted_domain").filter(|s| !s.is_empty()) {
        // Google: show only that domain's accounts, and require it in the token.
        provider.extra_auth_params.push(("hd".into(), hd.clone()));
        rules.claims.push(("hd".into(), hd));
    }
    if rules.is_empty() {
        warnings.push("no access rules are set (allowed_groups, allowed_emails, allowed_email_domains, required_claims): every user who can sign in at the provider is allowed".into());
    }
    if auth_only {
        warnings.push("no upstream is set: gatehouse runs in auth-only mode and serves only /oauth2/* (including the forward-auth endpoint /oauth2/auth), /healthz and /readyz".into());
    }
    if listen.port() != 0 && access.auth_listen == Some(listen) {
        r.problems.push(format!("auth_listen: {listen} is also `listen`: the forward-auth listener must be a port of its own that the ingress calls and no public route reaches"));
    }
    let metrics_listen = read_metrics_listen(&mut r, listen, access.auth_listen);
    let taken: Vec<(&str, SocketAddr)> = [
        ("listen", Some(listen)),
        ("auth_listen", access.auth_listen),
        ("metrics_listen", metrics_listen),
    ]
    .into_iter()
    .filter_map(|(name, a)| a.map(|a| (name, a)))
    .collect();
    let tls = super::tls::read(&mut r, &taken);
    // Forward auth answers for the top-level set in auth-only mode, and for a route
    // without upstream with its own set.
    let forwards_token =
        |h: &HeaderNames| h.id_token.is_some() || h.authorization != PassAuthorization::None;
    let checked_sets_forward = (auth_only && forwards_token(&headers))
        || routes
            .routes()
            .iter()
            .filter(|x| x.upstream.is_none())
            .any(|x| forwards_token(x.own.headers.as_ref().unwrap_or(&headers)));
    if access.auth_listen.is_none() && checked_sets_forward {
        warnings.push("auth_listen is not set: /oauth2/auth on the public listener answers without the ID token and Authorization (a page script could read them there), so the app gets no token; set auth_listen (e.g. 0.0.0.0:4181) and point the ingress's auth URL at that port".into());
    }
    if access.forward_auth_client == ForwardAuthClient::Auto
        && !access.skip_auth_routes.is_empty()
        && (auth_only || !trusted_proxies.is_empty())
    {
        warnings.push("forward_auth_client is auto: if an ingress calls /oauth2/auth, name it (nginx, ingress-nginx, traefik, caddy or envoy) so that only the headers it sets describe the original request (a header the ingress does not set can come from the client); with auto, skip_auth_routes never apply to a check below /oauth2/auth (Envoy's form)".into());
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
    let watch_config = r.bool("watch_config", false);
    let log_level = r.str_or("log_level", "info");
    if !matches!(
        log_level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        r.problems.push(format!(
            "log_level: `{log_level}` is not one of error, warn, info, debug, trace"
        ));
    }

    let audit_log = super::audit_log::read(&mut r);

    let clock_skew = r.secs("clock_skew_secs", 30);
    let refresh_before = r.secs("refresh_before_secs", 60);
    let upstream_timeout = r.secs("upstream_timeout_secs", 30);
    let max_header_bytes = r.count("max_header_bytes", 65_536);
    if max_header_bytes < 8192 {
        r.problems.push(format!(
            "max_header_bytes: {max_header_bytes} is below 8192, too small for a session cookie"
        ));
    }
    let limits = ServerLimits {
        header_read_timeout: r
            .secs("header_read_timeout_secs", 10)
            .max(Duration::from_secs(1)),
        idle_timeout: r.secs("idle_timeout_secs", 60).max(Duration::from_secs(1)),
        max_header_bytes: usize::try_from(max_header_bytes.max(8192)).unwrap_or(65_536),
        max_connections: usize::try_from(r.count("max_connections", 4096).max(1)).unwrap_or(4096),
        shutdown_grace: r.secs("shutdown_grace_secs", 10),
    };
    let upstream_connect_timeout = r.secs("upstream_connect_timeout_secs", 5);
    let provider_timeouts = ProviderTimeouts {
        connect: r
            .secs("provider_connect_timeout_secs", 5)
            .max(Duration::from_secs(1)),
        total: r
            .secs("provider_timeout_secs", 10)
            .max(Duration::from_secs(1)),
    };

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

    let session_store = super::store::read_store(&mut r);
    if preset.rotates_refresh_tokens && matches!(session_store, super::StoreSettings::Cookie) {
        warnings.push(format!(
            "{} rotates refresh tokens and refuses a used one: with the cookie store (the default), run one replica or sticky sessions; behind a Service with several replicas, two replicas refreshing the same session at once spend the token twice and sign the user out. Set session_store = \"redis\" to share sessions and refreshes between replicas",
            preset.name
        ));
    }
    let allowed_upgrades = r
        .list("allowed_upgrades", &["websocket"])
        .into_iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    let mut lists = std::mem::take(&mut r.lists);
    lists.sort_by_key(|l| keys::KEYS.iter().position(|k| k.name == l.key));
    match r.problems.is_empty() {
        true => Ok(Config {
            provider: preset.name,
            preset_defaults,
            listen,
            session_store,
            upstream_tls,
            upstream,
            routes,
            issuer_aliases: preset.issuer_aliases(&issuer_url),
            issuer_url,
            client_id,
            client_secret: client_secret.map(Secret::new),
            client_auth,
            redirect_url,
            scopes,
            extra_auth_params: provider.extra_auth_params,
            cookie,
            claims,
            headers,
            trusted_proxies,
            allowed_upgrades,
            clock_skew,
            allowed_algs,
            trusted_audiences: provider.trusted_audiences,
            userinfo: provider.userinfo,
            max_age: provider.max_age,
            acr_values: provider.acr_values,
            access_token: provider.access_token,
            provider_ca: provider.provider_ca,
            refresh_before,
            upstream_timeout,
            limits,
            upstream_connect_timeout,
            provider_timeouts,
            post_logout_redirect_url,
            forward_auth_redirect: access.forward_auth_redirect,
            forward_auth_client: access.forward_auth_client,
            auth_listen: access.auth_listen,
            metrics_listen,
            tls: tls.tls,
            http_redirect_listen: tls.http_redirect_listen,
            allowed_redirect_domains: access.allowed_redirect_domains,
            rules,
            skip_auth_routes: access.skip_auth_routes,
            bearer: access.bearer,
            assertion,
            log_format,
            log_level,
            audit_log,
            watch_config,
            warnings,
            lists,
        }),
        false => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

/// `metrics_listen`: an address, and a port of its own (neither `listen` nor
/// `auth_listen`, where the exposition would be public or reachable by the ingress).
fn read_metrics_listen(
    r: &mut Reader<'_>,
    listen: SocketAddr,
    auth_listen: Option<SocketAddr>,
) -> Option<SocketAddr> {
    let text = r.str_opt("metrics_listen").filter(|s| !s.is_empty())?;
    let Ok(addr) = text.parse::<SocketAddr>() else {
        let entry = r.raw.get("metrics_listen");
        r.problem(
            entry,
            "metrics_listen",
            format!("`{text}` is not an address like 0.0.0.0:9090 (an IP address and a port)"),
        );
        return None;
    };
    // The same port on the same address, or on every address (0.0.0.0, ::) and one.
    let clash = |other: SocketAddr| {
        addr.port() != 0
            && addr.port() == other.port()
            && (addr.ip() == other.ip()
                || addr.ip().is_unspecified()
                || other.ip().is_unspecified())
    };
    if clash(listen) {
        r.problems.push(format!("metrics_listen: {addr} is the port of `listen` ({listen}): the metrics listener must be a port of its own, off every public route"));
    }
    if auth_listen.is_some_and(clash) {
        r.problems.push(format!("metrics_listen: {addr} is the port of `auth_listen`: the metrics listener must be a port of its own, not the one the ingress calls"));
    }
    Some(addr)
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

    const SECRET: &str = "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk";

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

    /// `metrics_listen`: off by default; an address of its own; a clash with `listen` or
    /// `auth_listen` (the same port on the same address or on every address) and a
    /// malformed value are problems, listed together with the configuration's others.
    #[test]
    fn metrics_listen_is_an_address_of_its_own() {
        let base = [
            ("GATEHOUSE_UPSTREAM", "http://127.0.0.1:4466"),
            ("GATEHOUSE_ISSUER_URL", "https://sso.example.com"),
            ("GATEHOUSE_CLIENT_ID", "c"),
            ("GATEHOUSE_CLIENT_SECRET", "s"),
            ("GATEHOUSE_COOKIE_SECRET", SECRET),
            ("GATEHOUSE_LISTEN", "0.0.0.0:4180"),
            ("GATEHOUSE_AUTH_LISTEN", "127.0.0.1:4181"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            Config::from_raw(&env(&v))
        };
        assert_eq!(with(&[]).unwrap().metrics_listen, None, "off by default");
        let cfg = with(&[("GATEHOUSE_METRICS_LISTEN", "127.0.0.1:9090")]).unwrap();
        assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9090".parse().unwrap()));
        for (value, needle) in [
            ("127.0.0.1:4180", "is the port of `listen`"),
            ("0.0.0.0:4180", "is the port of `listen`"),
            ("127.0.0.1:4181", "is the port of `auth_listen`"),
            ("[::]:4181", "is the port of `auth_listen`"),
            ("localhost:9090", "is not an address"),
            ("9090", "is not an address"),
        ] {
            let v: &'static str = value;
            let err =
                with(&[("GATEHOUSE_METRICS_LISTEN", v), ("GATEHOUSE_CLIENT_ID", "")]).unwrap_err();
            let all = err.problems.join("\n");
            assert!(all.contains(needle), "{value}: {all}");
            assert!(all.contains("client_id"), "every problem is listed: {all}");
        }
        // Another port on the same address is fine; so is port 0 (tests).
        assert!(with(&[("GATEHOUSE_METRICS_LISTEN", "0.0.0.0:9090")]).is_ok());
        assert!(with(&[("GATEHOUSE_METRICS_LISTEN", "127.0.0.1:0")]).is_ok());
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
