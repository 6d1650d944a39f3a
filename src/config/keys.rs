//! The configuration contract: every key gatehouse understands, with its TOML name, its
//! environment variable (`GATEHOUSE_<UPPER_SNAKE>`) and its flag (`--kebab-case`).
//!
//! Scripts and docs rely on these names; add keys, never rename them.

/// What kind of value a key takes; used to read TOML values and to document the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One string.
    Str,
    /// A list: a TOML array, or one string separated by commas (never by spaces; see
    /// `list.rs` for the rule and for which lists' items may hold spaces).
    List,
    /// `true` / `false`.
    Bool,
    /// A whole number of seconds.
    Secs,
    /// A whole number (bytes, connections).
    Count,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

impl Key {
    /// `issuer_url` -> `GATEHOUSE_ISSUER_URL`.
    pub fn env_name(&self) -> String {
        format!("GATEHOUSE_{}", self.name.to_ascii_uppercase())
    }

    /// `issuer_url` -> `issuer-url` (used as `--issuer-url`).
    pub fn flag_name(&self) -> String {
        self.name.replace('_', "-")
    }

    /// Whether the value is a secret that must never be printed.
    pub fn is_secret(&self) -> bool {
        matches!(
            self.name,
            "client_secret" | "cookie_secret" | "redis_password"
        )
    }
}

const fn key(name: &'static str, kind: Kind, help: &'static str) -> Key {
    Key { name, kind, help }
}

/// Every key, in the order the example configuration documents them.
pub const KEYS: &[Key] = &[
    key(
        "listen",
        Kind::Str,
        "address to serve on (default 127.0.0.1:4180)",
    ),
    key(
        "upstream",
        Kind::Str,
        "the upstream URL, e.g. http://127.0.0.1:4466",
    ),
    key(
        "provider",
        Kind::Str,
        "oidc (default) | tsidp | vault | authentik | entra | keycloak | dex | google: defaults and checks for that provider",
    ),
    key(
        "tenant_id",
        Kind::Str,
        "Entra ID tenant (directory) id; with provider = entra it builds issuer_url",
    ),
    key(
        "issuer_url",
        Kind::Str,
        "OIDC issuer, compared byte for byte with the token's iss",
    ),
    key("client_id", Kind::Str, "OIDC client id"),
    key("client_secret", Kind::Str, "OIDC client secret"),
    key(
        "client_secret_file",
        Kind::Str,
        "file holding the OIDC client secret",
    ),
    key(
        "client_auth_method",
        Kind::Str,
        "client_secret_basic (default) | client_secret_post | none",
    ),
    key(
        "redirect_url",
        Kind::Str,
        "callback URL (default: derived from the request)",
    ),
    key(
        "scopes",
        Kind::List,
        "scopes to request, comma-separated (default: openid,email,profile)",
    ),
    key(
        "cookie_secret",
        Kind::List,
        "cookie secret(s): the first seals, all open",
    ),
    key(
        "cookie_secret_file",
        Kind::Str,
        "file with one cookie secret per line",
    ),
    key(
        "cookie_name",
        Kind::Str,
        "session cookie name (default _gatehouse)",
    ),
    key(
        "cookie_secure",
        Kind::Bool,
        "mark cookies Secure (default true)",
    ),
    key(
        "session_lifetime_secs",
        Kind::Secs,
        "longest a session lives, refreshes included (default 604800)",
    ),
    key(
        "login_timeout_secs",
        Kind::Secs,
        "how long a login may take (default 600)",
    ),
    key(
        "session_idle_timeout_secs",
        Kind::Secs,
        "end a session unused for this long (default 0: only session_lifetime_secs ends it)",
    ),
    key(
        "session_store",
        Kind::Str,
        "cookie (default: the session sealed in the cookie) | redis (Redis or Valkey; the cookie carries a ticket only)",
    ),
    key(
        "redis_url",
        Kind::Str,
        "one Redis server: redis://host:6379/0, or rediss:// for TLS (no credentials in it)",
    ),
    key(
        "redis_sentinel_master",
        Kind::Str,
        "Sentinel: the name of the master the sentinels watch",
    ),
    key(
        "redis_sentinel_addrs",
        Kind::List,
        "Sentinel: the sentinels, host:port separated by commas",
    ),
    key(
        "redis_cluster_nodes",
        Kind::List,
        "Cluster: seed nodes, host:port separated by commas (the rest are discovered)",
    ),
    key(
        "redis_tls",
        Kind::Bool,
        "TLS to Sentinel or Cluster nodes (a standalone server: use rediss://)",
    ),
    key(
        "redis_ca_file",
        Kind::Str,
        "PEM file of CA certificates trusted for TLS to Redis, besides the system's",
    ),
    key("redis_username", Kind::Str, "Redis ACL user name"),
    key(
        "redis_password",
        Kind::Str,
        "Redis password: from the environment (GATEHOUSE_REDIS_PASSWORD) or the file, never a flag",
    ),
    key(
        "redis_password_file",
        Kind::Str,
        "file holding the Redis password",
    ),
    key(
        "redis_key_prefix",
        Kind::Str,
        "prefix of every key gatehouse writes (default gatehouse:)",
    ),
    key(
        "redis_timeout_ms",
        Kind::Count,
        "longest one Redis call may take, in milliseconds (default 1000)",
    ),
    key(
        "user_claim",
        Kind::Str,
        "claim for the user header (default email; a token without it is refused, never mapped to sub)",
    ),
    key(
        "email_claim",
        Kind::Str,
        "claim for the email header (default email)",
    ),
    key(
        "groups_claim",
        Kind::List,
        "claim paths for groups, merged: groups, realm_access.roles, resource_access.{client_id}.roles",
    ),
    key(
        "require_email_verified",
        Kind::Bool,
        "pass an email on only when the provider says email_verified: true (default true; tsidp and vault presets: false)",
    ),
    key(
        "groups_trim_leading_slash",
        Kind::Bool,
        "turn group paths like /admins into admins (Keycloak group mapper with full paths)",
    ),
    key(
        "extra_auth_params",
        Kind::List,
        "extra key=value parameters for the authorization request, e.g. access_type=offline",
    ),
    key(
        "hosted_domain",
        Kind::Str,
        "Google Workspace domain: sent as hd and required in the token's hd claim",
    ),
    key(
        "preferred_username_claim",
        Kind::Str,
        "claim for the preferred-username header",
    ),
    key(
        "header_user",
        Kind::Str,
        "user header name (default X-Forwarded-User)",
    ),
    key(
        "header_email",
        Kind::Str,
        "email header name (default X-Forwarded-Email)",
    ),
    key(
        "header_groups",
        Kind::List,
        "group header names (default X-Forwarded-Group,X-Forwarded-Groups)",
    ),
    key(
        "header_preferred_username",
        Kind::Str,
        "preferred-username header (default X-Forwarded-Preferred-Username)",
    ),
    key(
        "header_id_token",
        Kind::Str,
        "ID token header (default X-Forwarded-Id-Token; empty disables)",
    ),
    key(
        "pass_authorization",
        Kind::Str,
        "none (default) | id_token | access_token",
    ),
    key(
        "strip_headers",
        Kind::List,
        "more request headers to remove from clients",
    ),
    key(
        "allowed_upgrades",
        Kind::List,
        "protocols a client may switch to through gatehouse (default websocket; never h2c unless listed)",
    ),
    key(
        "strip_client_authorization",
        Kind::Bool,
        "remove the client's own Authorization header even with pass_authorization = none (default false)",
    ),
    key(
        "trusted_proxies",
        Kind::List,
        "CIDRs whose X-Forwarded-* headers are believed (default none)",
    ),
    key(
        "assertion_signing_key_file",
        Kind::Str,
        "PEM file of gatehouse's private signing key(s) for the identity assertion; setting it turns the assertion on. Several blocks: the first signs, all are published (default none: off)",
    ),
    key(
        "assertion_header",
        Kind::Str,
        "header carrying the signed identity assertion (default X-Gatehouse-Assertion; client copies are always removed)",
    ),
    key(
        "assertion_lifetime_secs",
        Kind::Secs,
        "how long an identity assertion is valid (default 300)",
    ),
    key(
        "assertion_issuer",
        Kind::Str,
        "the assertion's iss: gatehouse's public URL (default: redirect_url's origin)",
    ),
    key(
        "assertion_audience",
        Kind::Str,
        "the assertion's aud (default: the host the request was for, without its port)",
    ),
    key(
        "assertion_groups",
        Kind::List,
        "only these groups go into the assertion's groups claim (default: all of the user's)",
    ),
    key(
        "clock_skew_secs",
        Kind::Secs,
        "allowed clock skew for nbf and auth_time; none applies to exp (default 30)",
    ),
    key("allowed_algs", Kind::List, "accepted ID token algorithms"),
    key(
        "upstream_ca_file",
        Kind::List,
        "PEM file(s) of CA certificates to trust for an https upstream, besides the public roots",
    ),
    key(
        "upstream_client_cert_file",
        Kind::Str,
        "PEM certificate chain gatehouse presents to an https upstream that asks for one (mutual TLS)",
    ),
    key(
        "upstream_client_key_file",
        Kind::Str,
        "PEM private key of upstream_client_cert_file",
    ),
    key(
        "provider_ca_file",
        Kind::List,
        "PEM file(s) of CA certificates to trust for the provider, besides the public roots",
    ),
    key(
        "access_token_audience",
        Kind::Str,
        "verify the access token for this audience and forward it instead of the ID token (AKS: 6dae42f8-4368-4678-94ff-3960e28e3630)",
    ),
    key(
        "access_token_issuer",
        Kind::Str,
        "issuer of the forwarded access token (default issuer_url; AKS: https://sts.windows.net/<tenant>/)",
    ),
    key(
        "userinfo",
        Kind::Str,
        "auto (default: when the ID token lacks a mapped claim) | true | false: read claims the ID token lacks from the userinfo endpoint",
    ),
    key(
        "max_age",
        Kind::Secs,
        "ask the provider to re-authenticate users whose sign-in is older, and check auth_time (default none)",
    ),
    key(
        "acr_values",
        Kind::List,
        "authentication context classes to request; the token's acr must be one of them",
    ),
    key(
        "trusted_audiences",
        Kind::List,
        "audiences besides client_id an ID token may carry (default none: such tokens are refused)",
    ),
    key(
        "refresh_before_secs",
        Kind::Secs,
        "refresh the ID token this long before expiry (default 60)",
    ),
    key(
        "header_read_timeout_secs",
        Kind::Secs,
        "a client must send a request's headers within this time (default 10; slow-loris guard)",
    ),
    key(
        "idle_timeout_secs",
        Kind::Secs,
        "a client that sends nothing for this long while gatehouse reads from it (a request body) is cut (default 60)",
    ),
    key(
        "max_header_bytes",
        Kind::Count,
        "largest request header block accepted, in bytes (default 65536, at least 8192)",
    ),
    key(
        "max_connections",
        Kind::Count,
        "most client connections open at once; the excess gets a quick 503 (default 4096)",
    ),
    key(
        "shutdown_grace_secs",
        Kind::Secs,
        "on SIGTERM, how long in-flight requests may take before the process exits (default 10)",
    ),
    key(
        "upstream_timeout_secs",
        Kind::Secs,
        "time allowed for the upstream's response headers (default 30)",
    ),
    key(
        "upstream_connect_timeout_secs",
        Kind::Secs,
        "time allowed to connect to the upstream (default 5)",
    ),
    key(
        "provider_timeout_secs",
        Kind::Secs,
        "time allowed for each call to the identity provider, start to finish (default 10)",
    ),
    key(
        "provider_connect_timeout_secs",
        Kind::Secs,
        "time allowed to connect to the identity provider (default 5)",
    ),
    key(
        "post_logout_redirect_url",
        Kind::Str,
        "where the IdP sends the user after logout",
    ),
    key(
        "forward_auth_redirect",
        Kind::Bool,
        "/oauth2/auth answers browsers with a 302 to the provider instead of 401 (default false)",
    ),
    key(
        "forward_auth_client",
        Kind::Str,
        "the ingress that calls /oauth2/auth: auto, nginx, ingress-nginx, traefik, caddy, envoy (default auto)",
    ),
    key(
        "auth_listen",
        Kind::Str,
        "internal forward-auth listener, e.g. 0.0.0.0:4181: its answers alone carry the ID token (default none)",
    ),
    key(
        "metrics_listen",
        Kind::Str,
        "Prometheus metrics listener, e.g. 0.0.0.0:9090: serves GET /metrics only, never on listen or auth_listen (default none: off)",
    ),
    key(
        "tls_cert_file",
        Kind::Str,
        "PEM certificate chain (leaf first) to serve https on listen, with tls_key_file; reloaded when the file changes (default none: plain http)",
    ),
    key(
        "tls_key_file",
        Kind::Str,
        "PEM private key (RSA, ECDSA or Ed25519) of tls_cert_file's certificate",
    ),
    key(
        "http_redirect_listen",
        Kind::Str,
        "plain-http listener, e.g. 0.0.0.0:80, that answers GET and HEAD with a 308 to https (needs TLS; default none)",
    ),
    key(
        "cookie_domain",
        Kind::Str,
        "Domain attribute for gatehouse's cookies, e.g. .example.com (default: host only)",
    ),
    key(
        "allowed_redirect_domains",
        Kind::List,
        "other hosts a post-login target may point at: app.example.com, .example.com, host:8443",
    ),
    key(
        "allowed_groups",
        Kind::List,
        "only users in at least one of these groups may enter (comma-separated; a name may hold spaces: Domain Admins)",
    ),
    key(
        "allowed_emails",
        Kind::List,
        "only these email addresses may enter (with allowed_email_domains: either)",
    ),
    key(
        "allowed_emails_file",
        Kind::Str,
        "file with one allowed email per line, re-read when it changes",
    ),
    key(
        "allowed_email_domains",
        Kind::List,
        "only emails in these domains may enter (.example.com: subdomains too)",
    ),
    key(
        "required_claims",
        Kind::List,
        "claim=value pairs the ID token must hold (dotted paths for nested claims)",
    ),
    key(
        "skip_auth_routes",
        Kind::List,
        "routes that need no login: [METHOD=]PATH, * within a segment, trailing /** below",
    ),
    key(
        "bearer_tokens",
        Kind::Bool,
        "accept Authorization: Bearer <JWT> from API clients, verified like an ID token (default false)",
    ),
    key(
        "bearer_audiences",
        Kind::List,
        "more audiences accepted in bearer tokens from issuer_url (besides client_id)",
    ),
    key(
        "bearer_issuers",
        Kind::List,
        "more issuer=audience pairs whose bearer tokens are accepted",
    ),
    key("log_format", Kind::Str, "text (default) | json"),
    key(
        "log_level",
        Kind::Str,
        "error | warn | info (default) | debug | trace",
    ),
    key(
        "audit_log",
        Kind::Str,
        "where audit events go, as JSON lines whatever log_level says: stderr (default, in the log stream) | stdout | off | a file path (appended)",
    ),
    key(
        "watch_config",
        Kind::Bool,
        "reload when the config file or a secret file changes on disk, as on SIGHUP (Kubernetes ConfigMap and Secret updates; default false)",
    ),
];

/// Looks a key up by its TOML name.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let k = find("issuer_url").unwrap();
        assert_eq!(k.env_name(), "GATEHOUSE_ISSUER_URL");
        assert_eq!(k.flag_name(), "issuer-url");
        assert!(find("cookie_secret").unwrap().is_secret());
    }
}
