//! Typed configuration. Sources are layered defaults < file < env < flags (`sources.rs`),
//! then checked all at once (`validate.rs`): start-up refuses a bad configuration and lists
//! every problem, in words a user understands.

mod access;
mod assertion;
pub mod audit_log;
mod bounds;
pub mod emails_file;
mod header_check;
pub mod keys;
pub mod list;
pub mod presets;
mod provider_settings;
mod reader;
pub mod reload;
mod route_settings;
mod routes;
pub mod secret;
pub mod sources;
pub mod store;
mod tls;
mod upstream_tls;
mod validate;

pub(crate) use reader::is_loopback;
pub use secret::{CookieKey, Secret};
pub use sources::{Environment, ProcessEnv, RawConfig};
pub use store::{RedisSettings, RedisTopology, StoreSettings};

use axum::http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;

/// How gatehouse authenticates to the token endpoint (OIDC Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
    None,
}

/// Which token, if any, goes upstream as `Authorization: Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassAuthorization {
    None,
    IdToken,
    AccessToken,
}

/// Which ingress calls `/oauth2/auth`: decides which headers describe the original
/// request (`http/original.rs`). Named, gatehouse reads only the headers that ingress sets
/// itself and ignores every other spelling a client may have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAuthClient {
    /// Every header that could describe the original request must agree.
    Auto,
    /// `X-Forwarded-Uri`, `-Method`, `-Host`, `-Proto` (set in the auth location).
    Nginx,
    /// `X-Original-URL` and `X-Original-Method`.
    IngressNginx,
    /// `X-Forwarded-Uri`, `-Method`, `-Host`, `-Proto`.
    Traefik,
    /// `X-Forwarded-Uri`, `-Method`, `-Host`, `-Proto`.
    Caddy,
    /// The path below `/oauth2/auth` and the call's own method.
    Envoy,
}

impl ForwardAuthClient {
    pub const NAMES: [&'static str; 6] = [
        "auto",
        "nginx",
        "ingress-nginx",
        "traefik",
        "caddy",
        "envoy",
    ];

    pub fn parse(s: &str) -> Option<ForwardAuthClient> {
        Some(
            match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "auto" => ForwardAuthClient::Auto,
                "nginx" => ForwardAuthClient::Nginx,
                "ingress-nginx" => ForwardAuthClient::IngressNginx,
                "traefik" => ForwardAuthClient::Traefik,
                "caddy" => ForwardAuthClient::Caddy,
                "envoy" => ForwardAuthClient::Envoy,
                _ => return None,
            },
        )
    }
}

/// When claims are fetched from the userinfo endpoint (OIDC Core §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoMode {
    /// Only when the ID token lacks a claim the mapping reads (user, email, groups).
    Auto,
    Always,
    Never,
}

/// The access token forwarded in place of the ID token, and what it must be.
#[derive(Debug, Clone)]
pub struct AccessTokenForward {
    pub issuer: String,
    pub audience: String,
}

/// Which claims feed the identity.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    pub user: String,
    pub email: String,
    /// Dotted paths (`realm_access.roles`), merged in order, duplicates dropped.
    pub groups: Vec<String>,
    /// `/admins` -> `admins`.
    pub groups_trim_slash: bool,
    /// An email is passed on only with `email_verified: true` (off: also when the claim
    /// is absent, for providers that never send it; `false` is never trusted).
    pub require_email_verified: bool,
    pub preferred_username: String,
}

/// Names of the headers gatehouse injects.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    pub user: HeaderName,
    pub email: HeaderName,
    pub groups: Vec<HeaderName>,
    pub preferred_username: HeaderName,
    pub id_token: Option<HeaderName>,
    pub authorization: PassAuthorization,
    /// The token header carries the (verified) access token instead of the ID token.
    pub token_is_access_token: bool,
    /// Remove the client's `Authorization` even when none is injected.
    pub strip_client_authorization: bool,
    /// Extra client headers to remove.
    pub strip: Vec<HeaderName>,
    /// The identity assertion's header (`assertion_header`): set only by gatehouse, and
    /// every client copy removed, whether the assertion is on or off.
    pub assertion: HeaderName,
    /// Every configured name, folded as `headers::normalise` does (case, `_` and any
    /// other separator for `-`): computed once, used on every request.
    pub folded: std::sync::OnceLock<Vec<String>>,
}

impl HeaderNames {
    /// Every configured (injected or extra) name, normalised like client names are.
    pub fn folded(&self) -> &[String] {
        self.folded.get_or_init(|| {
            [&self.user, &self.email, &self.preferred_username]
                .into_iter()
                .chain(self.groups.iter())
                .chain(self.id_token.iter())
                .chain(self.strip.iter())
                .chain(std::iter::once(&self.assertion))
                .map(|h| crate::headers::normalise(h.as_str()))
                .collect()
        })
    }
}

/// Who may enter (`authz.rs` turns these into a policy).
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    /// `allowed_emails_file`, as read at start-up (`authz.rs` re-reads it on change).
    pub emails_file: Option<emails_file::EmailsFile>,
    pub email_domains: Vec<String>,
    /// (dotted claim path, required value).
    pub claims: Vec<(String, String)>,
}

impl AccessRules {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.emails.is_empty()
            && self.emails_file.is_none()
            && self.email_domains.is_empty()
            && self.claims.is_empty()
    }
}

/// Bearer tokens from API clients (`bearer_tokens = true`).
#[derive(Debug, Clone, Default)]
pub struct BearerSettings {
    /// Audiences accepted from `issuer_url` besides `client_id`.
    pub audiences: Vec<String>,
    /// Other (issuer, audience) pairs, each discovered on its own.
    pub issuers: Vec<(String, String)>,
}

/// Session cookie settings.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    /// `Domain` attribute, e.g. `.example.com`; `None`: host-only cookies.
    pub domain: Option<String>,
    /// `Path` of login-state cookies: the callback's path.
    pub login_path: String,
    /// First seals, all open.
    pub keys: Vec<CookieKey>,
    pub session_lifetime: Duration,
    /// A session unused this long ends (`None`: only `session_lifetime` ends it).
    pub idle_timeout: Option<Duration>,
    pub login_timeout: Duration,
}

/// How much a client may hold of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    /// Silence allowed from a client while its connection is being read (a slow body).
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// Time limits on calls to the identity provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderTimeouts {
    pub connect: Duration,
    /// The whole call, from connecting to the last byte of the answer.
    pub total: Duration,
}

impl Default for ProviderTimeouts {
    fn default() -> Self {
        ProviderTimeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(10),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where audit events go (`audit_log`; `telemetry.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLog {
    /// Beside the log, on standard error (the default).
    Stderr,
    Stdout,
    Off,
    /// Appended to this file, which start-up opens (or refuses to start).
    File(std::path::PathBuf),
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The provider preset (`oidc` when none was chosen).
    pub provider: &'static str,
    /// The defaults the preset laid under the configuration (for `check`).
    pub preset_defaults: Vec<(&'static str, String)>,
    pub listen: SocketAddr,
    /// Where sessions live (`session_store`).
    pub session_store: StoreSettings,
    /// `None`: auth-only mode (only `/oauth2/*`, `/healthz`, `/readyz` are served).
    pub upstream: Option<Url>,
    /// `[[routes]]`, most specific first; empty: the one `upstream` (or auth-only mode).
    pub routes: crate::gateway::RouteTable,
    /// The TLS client of an https `upstream` or route upstream (`None`: all http).
    pub upstream_tls: Option<crate::proxy::tls::UpstreamTls>,
    /// Exactly as configured: compared byte for byte with `iss`.
    pub issuer_url: String,
    /// Other spellings of `issuer_url` the provider preset accepts in `iss` (google:
    /// without the scheme); empty for every other preset.
    pub issuer_aliases: Vec<String>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub redirect_url: Option<Url>,
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (`access_type=offline`, `hd=...`).
    pub extra_auth_params: Vec<(String, String)>,
    pub cookie: CookieSettings,
    pub claims: ClaimMapping,
    pub headers: HeaderNames,
    pub trusted_proxies: Vec<IpNet>,
    /// `Upgrade` protocols tunnelled (lower case); anything else is refused.
    pub allowed_upgrades: Vec<String>,
    pub clock_skew: Duration,
    pub allowed_algs: Vec<Algorithm>,
    /// Audiences besides `client_id` an ID token may carry (OIDC Core §3.1.3.7 step 3).
    pub trusted_audiences: Vec<String>,
    pub userinfo: UserinfoMode,
    /// `max_age` requested, and `auth_time` checked against it.
    pub max_age: Option<Duration>,
    /// `acr_values` requested, and `acr` checked against them.
    pub acr_values: Vec<String>,
    /// `access_token_audience`: the access token is verified and forwarded instead of
    /// the ID token (the AKS case).
    pub access_token: Option<AccessTokenForward>,
    /// Extra trusted roots for every call to the provider (`provider_ca_file`).
    pub provider_ca: Vec<reqwest::Certificate>,
    pub refresh_before: Duration,
    pub upstream_timeout: Duration,
    /// Client-side limits of the listener (`http/workers.rs`).
    pub limits: ServerLimits,
    pub upstream_connect_timeout: Duration,
    /// Bounds on every call to the provider (a provider that hangs never holds a request).
    pub provider_timeouts: ProviderTimeouts,
    pub post_logout_redirect_url: Option<Url>,
    /// `/oauth2/auth` answers browser navigations with a 302 to the provider.
    pub forward_auth_redirect: bool,
    /// Which ingress asks `/oauth2/auth` (what describes the original request).
    pub forward_auth_client: ForwardAuthClient,
    /// The internal forward-auth listener: the only place whose answers carry the ID
    /// token and `Authorization` (never route it publicly).
    pub auth_listen: Option<SocketAddr>,
    /// The Prometheus metrics listener (`metrics/server.rs`): `GET /metrics` only, a port
    /// of its own.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on `listen` (`tls_cert_file`, `tls_key_file`), with the pair read at start-up;
    /// `None`: plain http.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The plain-http listener that redirects to https (`http/redirect_listener.rs`).
    pub http_redirect_listen: Option<SocketAddr>,
    /// Other hosts a post-login target may point at (`redirect::redirect_domain_allowed`).
    pub allowed_redirect_domains: Vec<String>,
    pub rules: AccessRules,
    pub skip_auth_routes: Vec<crate::routes::SkipRoute>,
    /// `Some` when `bearer_tokens = true`.
    pub bearer: Option<BearerSettings>,
    /// The signed identity assertion; `None`: off (`assertion_signing_key_file` unset).
    pub assertion: Option<crate::assertion::AssertionSettings>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub audit_log: AuditLog,
    /// Reload when the config file or a secret file changes (`config/reload.rs`).
    pub watch_config: bool,
    /// Warnings to log once logging is up (e.g. plain-HTTP loopback issuer).
    pub warnings: Vec<String>,
    /// Every list setting as parsed, in the order of `keys::KEYS` (for `check`).
    pub lists: Vec<list::ParsedList>,
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has {} problem(s):\n{}", .problems.len(), .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// The top-level identity header set, then each route's own.
    pub fn header_sets(&self) -> impl Iterator<Item = &HeaderNames> {
        std::iter::once(&self.headers).chain(
            self.routes
                .routes()
                .iter()
                .filter_map(|r| r.own.headers.as_ref()),
        )
    }

    /// Types and checks a layered raw configuration.
    pub fn from_raw(raw: &RawConfig) -> Result<Config, ConfigError> {
        validate::build(raw)
    }

    /// Loads file (optional) < env < flags and validates the result. Unknown keys and
    /// mistyped values in the file are reported together with everything validation finds.
    pub fn load(
        file: Option<&std::path::Path>,
        env: &dyn Environment,
        flags: RawConfig,
    ) -> Result<Config, ConfigError> {
        let (raw, mut problems) = Config::layer(file, env, flags)?;
        match Config::from_raw(&raw) {
            Ok(cfg) if problems.is_empty() => Ok(cfg),
            Ok(_) => Err(ConfigError { problems }),
            Err(e) => {
                problems.extend(e.problems);
                Err(ConfigError { problems })
            }
        }
    }

    /// Layers the sources without validating; also returns the file's own problems
    /// (unknown keys, mistyped values). A file that cannot be read or is not TOML is an
    /// `Err` alone: what validation would say without it would only mislead.
    pub fn layer(
        file: Option<&std::path::Path>,
        env: &dyn Environment,
        flags: RawConfig,
    ) -> Result<(RawConfig, Vec<String>), ConfigError> {
        let (base, problems) = match file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    problems: vec![format!("cannot read config file {shown}: {e}")],
                })?;
                RawConfig::from_toml_with_problems(&text, &shown)
                    .map_err(|problems| ConfigError { problems })?
            }
            None => (RawConfig::default(), Vec::new()),
        };
        Ok((
            base.overlay(RawConfig::from_env(env)).overlay(flags),
            problems,
        ))
    }
}
