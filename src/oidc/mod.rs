//! The OpenID Provider as gatehouse sees it: discovery, keys, the authorization-code flow
//! with PKCE (RFC 7636), token exchange and refresh (RFC 6749 §4.1, §6), ID token
//! verification (OIDC Core §3.1.3.7), and logout tokens (Back-Channel Logout 1.0,
//! `logout_token.rs`).
//!
//! [`Provider`] is loaded in the background at start-up and retried until it works;
//! `/readyz` reports ready once discovery and keys are in.
//!
//! Why this client is our own and not the `openidconnect` crate (measured against a real
//! provider): that crate converts every standard claim to a strict type before checking
//! anything, so a provider sending `email_verified: "true"` fails the code exchange after
//! the code is spent; it has no clock skew, `nbf`, `azp` or key-refetch handling; it turns
//! token-endpoint failures into "failed to parse server response"; and it adds about 80
//! crates. Here claims stay JSON until the checks that need them (`verify.rs`,
//! `identity.rs`), string booleans and numbers are tolerated where providers send them,
//! and each provider quirk has a test (`tests/integration/{tokens,providers}.rs`).

pub mod discovery;
pub mod health;
pub mod jwks;
pub mod logout_token;
pub mod policy;
pub mod token;
pub mod verify;

use crate::config::{ClientAuth, Config, Secret};
use discovery::{DiscoveryError, Metadata};
use jsonwebtoken::Algorithm;
use jwks::{JwksCache, KeyError};
pub use policy::{AuthnPolicy, TokenUse};
use std::sync::{Arc, RwLock};
use std::time::Duration;
pub use token::{FlowError, TokenSet};
use verify::TokenError;

/// For a 3xx answer from a provider endpoint: "`url` redirects to `location`" (redirects
/// are never followed: a provider endpoint has no business sending gatehouse elsewhere).
pub fn redirected(url: &str, resp: &reqwest::Response) -> Option<String> {
    if !resp.status().is_redirection() {
        return None;
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(no Location)");
    Some(format!(
        "{url} answered HTTP {} redirecting to {}; gatehouse does not follow redirects from the provider: configure the final URL",
        resp.status().as_u16(),
        location.chars().take(200).collect::<String>()
    ))
}

/// A short description of an HTTP client error for operators (never contains secrets).
pub fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        e.to_string()
    };
    if let Some(host) = e.url().and_then(|u| u.host_str()) {
        msg = format!("{host}: {msg}");
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    let lower = msg.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        msg.push_str(" (if the provider's certificate comes from a private CA, put that CA in provider_ca_file)");
    }
    msg
}

/// Why the provider is not usable yet.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("the provider's JWKS ({0}) holds no key gatehouse can verify signatures with")]
    NoUsableKeys(String),
}

/// Discovery metadata and keys, once loaded.
pub struct Loaded {
    pub meta: Metadata,
    pub jwks: JwksCache,
}

/// Client settings the flow needs.
pub struct Client {
    pub issuer: String,
    /// Other spellings of `issuer` accepted in `iss` (the provider preset's).
    pub issuer_aliases: Vec<String>,
    pub client_id: String,
    pub secret: Option<Secret>,
    pub auth: ClientAuth,
    pub scopes: String,
    pub algs: Vec<Algorithm>,
    pub skew: u64,
    /// Audiences besides `client_id` an ID token may carry.
    pub trusted_audiences: Vec<String>,
    /// Extra authorization request parameters (provider presets, `hosted_domain`).
    pub extra_auth_params: Vec<(String, String)>,
    /// Requested at sign-in, and required of every token that stands for the user
    /// (`policy.rs`): `max_age` (seconds) and `acr_values`.
    pub policy: AuthnPolicy,
}

/// The configured OpenID Provider.
pub struct Provider {
    pub client: Client,
    http: reqwest::Client,
    /// Shared with the copies a configuration reload makes (`reconfigured`): the loader
    /// started at start-up keeps filling it.
    loaded: Arc<RwLock<Option<Arc<Loaded>>>>,
    /// Whether it answers now (checked before a login is sent there).
    health: Arc<health::Health>,
    /// Verifies the access token forwarded instead of the ID token
    /// (`access_token_audience`), with that issuer's own discovery and keys.
    access_token_verifier: Option<Arc<Provider>>,
}

/// Builds the HTTP client used to talk to the provider: the public Web PKI roots plus
/// `provider_ca_file`'s, never anything that turns verification off.
pub fn http_client_with(
    extra_roots: &[reqwest::Certificate],
    timeouts: crate::config::ProviderTimeouts,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder();
    for c in extra_roots {
        b = b.add_root_certificate(c.clone());
    }
    b.user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        // SSRF guard: a provider endpoint that redirects is reported, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .build()
        .unwrap_or_default()
}

/// The provider HTTP client with the public Web PKI roots only.
pub fn http_client() -> reqwest::Client {
    http_client_with(&[], crate::config::ProviderTimeouts::default())
}

impl Provider {
    pub fn new(cfg: &Config) -> Provider {
        let mut p = Provider::plain(cfg);
        p.access_token_verifier = cfg
            .access_token
            .as_ref()
            .map(|a| Arc::new(Provider::for_bearer_issuer(cfg, &a.issuer, &a.audience)));
        p
    }

    /// The configured provider, without an access-token verifier of its own.
    fn plain(cfg: &Config) -> Provider {
        Provider {
            client: Client {
                issuer: cfg.issuer_url.clone(),
                issuer_aliases: cfg.issuer_aliases.clone(),
                client_id: cfg.client_id.clone(),
                secret: cfg.client_secret.clone(),
                auth: cfg.client_auth,
                scopes: cfg.scopes.join(" "),
                algs: cfg.allowed_algs.clone(),
                skew: cfg.clock_skew.as_secs(),
                trusted_audiences: cfg.trusted_audiences.clone(),
                extra_auth_params: cfg.extra_auth_params.clone(),
                policy: AuthnPolicy {
                    max_age: cfg.max_age.map(|d| d.as_secs()),
                    acr_values: cfg.acr_values.clone(),
                },
            },
            http: http_client_with(&cfg.provider_ca, cfg.provider_timeouts),
            loaded: Arc::default(),
            health: Arc::default(),
            access_token_verifier: None,
        }
    }

    /// The provider with `cfg`'s client settings (client id and secret, scopes, accepted
    /// algorithms and audiences, ...), sharing this one's discovery, keys, health and HTTP
    /// client: a configuration reload keeps the issuer, its CA and timeouts, and the
    /// access-token issuer (`config/reload.rs`), so nothing needs loading again.
    pub fn reconfigured(&self, cfg: &Config) -> Provider {
        let mut p = Provider::plain(cfg);
        p.share_state_of(self);
        p.access_token_verifier = self.access_token_verifier.clone();
        p
    }

    /// Takes `old`'s discovery, keys, health and HTTP client (same issuer).
    pub(crate) fn share_state_of(&mut self, old: &Provider) {
        self.loaded = Arc::clone(&old.loaded);
        self.health = Arc::clone(&old.health);
        self.http = old.http.clone();
    }

    /// The forwarded access token's issuer, when it is configured but its keys are not
    /// loaded yet (sign-in cannot complete until they are).
    pub fn access_token_issuer_pending(&self) -> Option<&str> {
        self.access_token_verifier
            .as_ref()
            .filter(|v| v.loaded().is_none())
            .map(|v| v.client.issuer.as_str())
    }

    /// With `access_token_audience`: verifies the access token that will be forwarded
    /// (signature, issuer, that audience, expiry) and returns its expiry, which bounds the
    /// session (`auth::session_expiry`). `Ok(None)` when no access token is forwarded.
    pub async fn check_access_token(
        &self,
        access_token: Option<&str>,
    ) -> Result<Option<u64>, FlowError> {
        let Some(v) = &self.access_token_verifier else {
            return Ok(None);
        };
        let at = access_token.ok_or_else(|| {
            FlowError::Invalid("the token response holds no access token to forward".into())
        })?;
        let loaded = v.loaded().ok_or_else(|| {
            FlowError::Unreachable(format!(
                "the keys of the access token's issuer {} are not loaded yet",
                v.client.issuer
            ))
        })?;
        let claims = v
            .verify_token(&loaded, at, TokenUse::ForwardedAccessToken)
            .await
            .map_err(FlowError::AccessToken)?;
        // The verified `exp`, read as every other date claim is (a float too).
        Ok(verify::seconds(&claims, "exp"))
    }

    /// Another issuer whose tokens are verified for `audience`: bearer tokens from
    /// `bearer_issuers`, and the access token forwarded with `access_token_audience`. No
    /// client secret; never used for a login. It keeps the authentication policy
    /// (`max_age`, `acr_values`): a bearer token from another issuer stands for a user
    /// as much as one from `issuer_url` (`policy.rs`).
    pub fn for_bearer_issuer(cfg: &Config, issuer: &str, audience: &str) -> Provider {
        let mut p = Provider::plain(cfg);
        p.client.issuer = issuer.to_string();
        p.client.issuer_aliases.clear();
        p.client.client_id = audience.to_string();
        p.client.secret = None;
        p
    }

    /// Discovery and keys, if loaded.
    pub fn loaded(&self) -> Option<Arc<Loaded>> {
        self.loaded.read().ok().and_then(|l| l.clone())
    }

    /// Runs discovery and fetches the keys.
    pub async fn load(&self) -> Result<Arc<Loaded>, ProviderError> {
        let meta = discovery::discover(&self.http, &self.client.issuer).await?;
        let jwks = JwksCache::new(meta.jwks_uri.clone(), self.http.clone());
        if jwks.refresh().await? == 0 {
            return Err(ProviderError::NoUsableKeys(meta.jwks_uri));
        }
        let loaded = Arc::new(Loaded { meta, jwks });
        if let Ok(mut slot) = self.loaded.write() {
            *slot = Some(Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// Loads in the background, retrying with backoff until it works (and the access
    /// token's issuer, when one is forwarded).
    pub fn spawn_loader(self: &Arc<Self>) {
        if let Some(v) = &self.access_token_verifier {
            v.spawn_loader();
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(250);
            loop {
                match me.load().await {
                    Ok(l) => {
                        tracing::info!(issuer = %l.meta.issuer, "identity provider ready");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "identity provider not ready")
                    }
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        });
    }

    /// `Ok` when the provider answers (checked at most every few seconds), else why not.
    pub async fn reachable(&self) -> Result<(), String> {
        let url = discovery::discovery_url(&self.client.issuer);
        self.health.check(&self.http, &url).await
    }

    /// Whether a call to the provider failed within the last few seconds.
    pub fn down_recently(&self) -> bool {
        self.health.down_recently()
    }

    /// Notes a token-endpoint call that failed on the provider's side (down, 5xx).
    fn note(&self, result: Result<TokenSet, FlowError>) -> Result<TokenSet, FlowError> {
        if let Err(e) = &result {
            if e.is_transient() {
                self.health.mark_down(&e.to_string());
            }
        }
        result
    }

    /// The authorization request URL (OIDC Core §3.1.2.1) with PKCE S256.
    pub fn authorize_url(
        &self,
        l: &Loaded,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> String {
        let challenge = token::pkce_challenge(verifier);
        let mut url = match url::Url::parse(&l.meta.authorization_endpoint) {
            Ok(u) => u,
            Err(_) => return l.meta.authorization_endpoint.clone(),
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.client.scopes)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(max_age) = self.client.policy.max_age {
            url.query_pairs_mut()
                .append_pair("max_age", &max_age.to_string());
        }
        if !self.client.policy.acr_values.is_empty() {
            url.query_pairs_mut()
                .append_pair("acr_values", &self.client.policy.acr_values.join(" "));
        }
        if !self.client.extra_auth_params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.client.extra_auth_params {
                q.append_pair(k, v);
            }
        }
        url.into()
    }

    /// Exchanges an authorization code.
    pub async fn exchange(
        &self,
        l: &Loaded,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenSet, FlowError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        self.note(token::request(&self.http, &l.meta.token_endpoint, &self.client, &form).await)
    }

    /// Uses a refresh token.
    pub async fn refresh(&self, l: &Loaded, refresh_token: &str) -> Result<TokenSet, FlowError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.note(token::request(&self.http, &l.meta.token_endpoint, &self.client, &form).await)
    }

    /// Claims from the userinfo endpoint (OIDC Core §5.3), read as plain JSON with the
    /// access token. `None` when the provider lists no userinfo endpoint.
    pub async fn userinfo(
        &self,
        l: &Loaded,
        access_token: &str,
    ) -> Option<Result<serde_json::Value, FlowError>> {
        let url = l.meta.userinfo_endpoint.as_deref()?;
        Some(self.fetch_userinfo(url, access_token).await)
    }

    async fn fetch_userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<serde_json::Value, FlowError> {
        let sent = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send();
        let resp = crate::metrics::provider_call(crate::metrics::Endpoint::Userinfo, sent)
            .await
            .map_err(|e| FlowError::Userinfo(describe(&e)))?;
        if let Some(reason) = redirected(url, &resp) {
            return Err(FlowError::Userinfo(reason));
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(FlowError::Userinfo(format!(
                "{url} answered HTTP {}",
                status.as_u16()
            )));
        }
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| FlowError::Userinfo(format!("{url} did not answer JSON: {e}")))?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(FlowError::Userinfo(format!(
                "{url} did not answer a JSON object"
            )))
        }
    }

    /// Verifies an ID token from the code flow (with its login's `nonce`) or from a
    /// refresh (`None`); `access_token` is the one issued with it, for the `at_hash`
    /// check. See [`Provider::verify_token`].
    pub async fn verify(
        &self,
        l: &Loaded,
        id_token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<serde_json::Value, TokenError> {
        let use_ = match nonce {
            Some(nonce) => TokenUse::SignIn {
                nonce,
                access_token,
            },
            None => TokenUse::Refresh { access_token },
        };
        self.verify_token(l, id_token, use_).await
    }

    /// Revokes a refresh token at the provider's revocation endpoint, if it has one
    /// (RFC 7009). `None` when it does not.
    pub async fn revoke(&self, l: &Loaded, refresh_token: &str) -> Option<Result<(), String>> {
        let endpoint = l.meta.revocation_endpoint.as_deref()?;
        Some(token::revoke(&self.http, endpoint, &self.client, refresh_token).await)
    }

    /// RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0 §2), if supported.
    pub fn end_session_url(
        &self,
        l: &Loaded,
        id_token_hint: Option<&str>,
        post_logout: Option<&str>,
    ) -> Option<String> {
        let mut url = url::Url::parse(l.meta.end_session_endpoint.as_deref()?).ok()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client.client_id);
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            if let Some(p) = post_logout {
                q.append_pair("post_logout_redirect_uri", p);
            }
        }
        Some(url.into())
    }
}

impl From<TokenError> for FlowError {
    fn from(e: TokenError) -> Self {
        FlowError::Token(e)
    }
}
