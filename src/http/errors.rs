//! Every way a request can fail, and the one place that turns a failure into a response:
//! an HTML page for browsers or JSON for API clients, each with the request id that also
//! appears in the log line. Client mistakes are 4xx, provider trouble 502/504, our own
//! bugs 500 (which nothing here should produce).

use super::pages;
use crate::identity::IdentityError;
use crate::oidc::discovery::DiscoveryError;
use crate::oidc::verify::TokenError;
use crate::oidc::FlowError;
use crate::proxy::failure::UpstreamFailure;
use crate::session::SessionError;
use crate::trace::TraceId;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// On a response gatehouse answered with an error: the error's code (metrics read it).
#[derive(Debug, Clone, Copy)]
pub struct Failure(pub &'static str);

/// A failure with a message meant for the person in front of the browser.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the identity provider refused the sign-in: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ProviderDenied {
        error: String,
        description: Option<String>,
    },
    #[error("this sign-in cannot be matched to your browser: the login cookie is missing. Either the login took longer than {minutes} minutes, or this browser blocks cookies for this site")]
    LoginCookieMissing { minutes: u64 },
    #[error("this sign-in cannot be matched to your browser: the login cookie is missing, and gatehouse marks its cookies Secure while this request arrived over plain http, so the browser may have dropped them (or the login took longer than {minutes} minutes)")]
    SecureCookieOverHttp { minutes: u64 },
    #[error("this sign-in does not match the one your browser started (state mismatch): it was probably started in another tab or replayed")]
    StateMismatch,
    #[error("the login took longer than {minutes} minutes")]
    LoginExpired { minutes: u64 },
    #[error("the callback is missing the `{0}` parameter")]
    MissingParam(&'static str),
    #[error("the callback came from issuer `{found}` but gatehouse expects `{expected}` (RFC 9207); this can be a mix-up attack")]
    IssuerParam { expected: String, found: String },
    #[error("{0}")]
    Flow(#[from] FlowError),
    #[error("the identity provider's tokens are too large to keep in cookies ({bytes} bytes sealed, limit {max}); ask the provider for fewer claims (for Entra ID, groups overage) or fewer scopes")]
    SessionTooLarge { bytes: usize, max: usize },
    #[error("gatehouse is still contacting the identity provider: {0}")]
    NotReady(String),
    #[error(
        "the identity provider {issuer} is not answering, so nobody can sign in right now: {cause}"
    )]
    ProviderUnavailable { issuer: String, cause: String },
    #[error("gatehouse cannot reach its session store, so it cannot tell who you are right now: {cause}")]
    SessionStoreDown { cause: String },
    #[error("you are not signed in")]
    Unauthenticated { login_url: String },
    #[error("the bearer token was refused: {reason}")]
    InvalidBearer { reason: String },
    #[error("{user} is signed in but may not enter: {denial}")]
    Denied { user: String, denial: String },
    #[error("the forward-auth URL is misconfigured: {0}")]
    BadAuthQuery(String),
    #[error("the request carries its own `{header}` header, a copy of gatehouse's identity header `{ours}`: the ingress would pass it to the app. {fix}")]
    ClientIdentityHeader {
        header: String,
        ours: String,
        fix: &'static str,
    },
    #[error("this is gatehouse's forward-auth listener (auth_listen): it serves /oauth2/auth, /healthz and /readyz only")]
    AuthListenerOnly,
    #[error("gatehouse signs no identity assertion here, so it publishes no keys: the assertion is off (assertion_signing_key_file is not set)")]
    AssertionOff,
    #[error("the request was refused because {0}, which lets two HTTP parsers disagree about where it ends (request smuggling)")]
    AmbiguousFraming(&'static str),
    #[error("another site asked to sign you out; gatehouse only signs out from its own pages")]
    CrossSiteSignOut,
    #[error("gatehouse runs in auth-only mode (no upstream is configured), so it serves nothing at this path")]
    NoUpstream,
    /// `[[routes]]` are set and none is for this host and path: says nothing of which
    /// hosts and apps exist.
    #[error("there is no application at this address")]
    NoRoute,
    /// A forward-auth check with `[[routes]]` set that no route covers: refused (403),
    /// never decided by the top-level rules alone.
    #[error("gatehouse cannot tell which application this check is for: {why}")]
    NoRouteForCheck { why: &'static str },
    #[error("the upstream {upstream} {failure}")]
    UpstreamFailed {
        upstream: String,
        failure: UpstreamFailure,
    },
    #[error("the upstream {upstream} refused the request as too large (431 Request Header Fields Too Large) once gatehouse had added its headers: {}; {total} bytes in all, besides the browser's own headers (cookies among them)", shown_sizes(.sent))]
    IdentityHeadersTooLarge {
        upstream: String,
        /// The names and sizes in bytes (name, value and separators) of the headers
        /// gatehouse added, never their values.
        sent: Vec<(String, usize)>,
        total: usize,
    },
    #[error("the upstream {upstream} did not answer within {secs} seconds")]
    UpstreamTimeout { upstream: String, secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// `x-forwarded-user 31 bytes, x-forwarded-groups 5210 bytes`.
fn shown_sizes(sent: &[(String, usize)]) -> String {
    let parts: Vec<String> = sent
        .iter()
        .map(|(name, bytes)| format!("{name} {bytes} bytes"))
        .collect();
    parts.join(", ")
}

impl From<SessionError> for AppError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::TooLarge { bytes, max } => AppError::SessionTooLarge { bytes, max },
            SessionError::Seal => AppError::Internal(e.to_string()),
            SessionError::Unavailable(u) => AppError::SessionStoreDown { cause: u.0 },
            // A session ended between reading and writing it: sign in again.
            SessionError::Ended => AppError::Unauthenticated {
                login_url: "/oauth2/start".into(),
            },
        }
    }
}

impl From<DiscoveryError> for AppError {
    fn from(e: DiscoveryError) -> Self {
        AppError::NotReady(e.to_string())
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::ProviderDenied { .. } => StatusCode::FORBIDDEN,
            AppError::LoginCookieMissing { .. }
            | AppError::SecureCookieOverHttp { .. }
            | AppError::StateMismatch
            | AppError::LoginExpired { .. }
            | AppError::MissingParam(_)
            | AppError::IssuerParam { .. } => StatusCode::BAD_REQUEST,
            // A configuration mismatch: gatehouse asks for a claim the provider does not
            // send. Not the client's fault (4xx), and not a bug in gatehouse (500 means
            // one here): the gateway got an answer from the provider that its settings
            // cannot use, so 502, under a title of its own that blames neither the user
            // nor the application behind gatehouse.
            AppError::Flow(FlowError::Identity(IdentityError::MissingClaim(_))) => {
                StatusCode::BAD_GATEWAY
            }
            AppError::Flow(FlowError::Token(TokenError::Nonce)) => StatusCode::BAD_REQUEST,
            AppError::Flow(FlowError::Token(TokenError::Acr { .. })) => StatusCode::FORBIDDEN,
            AppError::Flow(FlowError::Refused { error, .. }) if error == "invalid_grant" => {
                StatusCode::BAD_REQUEST
            }
            AppError::Flow(_)
            | AppError::SessionTooLarge { .. }
            | AppError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            // The browser's request was fine; the upstream refused what gatehouse made of
            // it (the identity headers it added): a gateway's failure, 502, under a title
            // that says so rather than the 431 that would blame the browser.
            AppError::IdentityHeadersTooLarge { .. } => StatusCode::BAD_GATEWAY,
            AppError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            AppError::NotReady(_)
            | AppError::ProviderUnavailable { .. }
            | AppError::SessionStoreDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Unauthenticated { .. } | AppError::InvalidBearer { .. } => {
                StatusCode::UNAUTHORIZED
            }
            AppError::Denied { .. } | AppError::CrossSiteSignOut => StatusCode::FORBIDDEN,
            AppError::BadAuthQuery(_)
            | AppError::AmbiguousFraming(_)
            | AppError::ClientIdentityHeader { .. } => StatusCode::BAD_REQUEST,
            AppError::NoRouteForCheck { .. } => StatusCode::FORBIDDEN,
            AppError::NoUpstream
            | AppError::NoRoute
            | AppError::AuthListenerOnly
            | AppError::AssertionOff => StatusCode::NOT_FOUND,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code for JSON clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::ProviderDenied { .. } => "provider_denied",
            AppError::LoginCookieMissing { .. } => "login_cookie_missing",
            AppError::SecureCookieOverHttp { .. } => "secure_cookie_over_http",
            AppError::StateMismatch => "state_mismatch",
            AppError::LoginExpired { .. } => "login_expired",
            AppError::MissingParam(_) => "missing_parameter",
            AppError::IssuerParam { .. } => "issuer_mismatch",
            AppError::Flow(e) => e.code(),
            AppError::SessionTooLarge { .. } => "session_too_large",
            AppError::NotReady(_) => "not_ready",
            AppError::ProviderUnavailable { .. } => "provider_unavailable",
            AppError::SessionStoreDown { .. } => "session_store_unavailable",
            AppError::Unauthenticated { .. } => "unauthenticated",
            AppError::InvalidBearer { .. } => "invalid_token",
            AppError::Denied { .. } => "denied_by_rule",
            AppError::CrossSiteSignOut => "cross_site_sign_out",
            AppError::BadAuthQuery(_) => "bad_auth_query",
            AppError::ClientIdentityHeader { .. } => "client_identity_header",
            AppError::AuthListenerOnly => "auth_listener_only",
            AppError::AssertionOff => "assertion_off",
            AppError::AmbiguousFraming(_) => "ambiguous_framing",
            AppError::NoUpstream => "no_upstream",
            AppError::NoRoute => "no_route",
            AppError::NoRouteForCheck { .. } => "no_route_for_check",
            AppError::UpstreamFailed { failure, .. } => failure.code(),
            AppError::IdentityHeadersTooLarge { .. } => "identity_headers_too_large",
            AppError::UpstreamTimeout { .. } => "upstream_timeout",
            AppError::Internal(_) => "internal_error",
        }
    }

    /// What the user (or operator) should do next.
    pub fn advice(&self) -> &'static str {
        match self {
            AppError::ProviderDenied { .. } => "If you expected access, ask an administrator to assign you to this application at the identity provider, then sign in again.",
            AppError::LoginCookieMissing { .. } | AppError::LoginExpired { .. } => "Allow cookies for this site and start again; complete the sign-in within the time limit.",
            AppError::SecureCookieOverHttp { .. } => "Serve gatehouse over https. If a TLS proxy sits in front, list it in trusted_proxies so its X-Forwarded-Proto is believed; for a plain-http loopback setup set cookie_secure = false.",
            AppError::StateMismatch | AppError::MissingParam(_) => "Start the sign-in again from the application's address, in a single tab.",
            AppError::IssuerParam { .. } => "Check that issuer_url names the provider this client is registered with.",
            AppError::Flow(FlowError::Token(TokenError::Issuer { .. })) => "Set issuer_url to exactly the issuer the provider puts in its tokens (byte for byte, including any trailing slash).",
            AppError::Flow(FlowError::Token(TokenError::Audience { .. })) => "Set client_id to the client the provider issues tokens for, or fix the client's audience at the provider.",
            AppError::Flow(FlowError::Token(TokenError::Nonce)) => "Start the sign-in again.",
            AppError::Flow(FlowError::Token(TokenError::Acr { .. })) => "Sign in again with the required method (for example with a second factor); an administrator can check acr_values against what the provider offers.",
            AppError::Flow(FlowError::Identity(IdentityError::MissingClaim(m))) => match m.setting {
                "user_claim" => "An administrator should set user_claim to a claim this provider sends (see the list above: `sub` always; often `preferred_username`), or make the provider send this one: request the scope that adds it (scopes, e.g. `email` for the email claim) or pick the provider preset that matches the provider (provider).",
                _ => "An administrator should point the setting named above at a claim this provider sends (see the list above), or make the provider send it: request the scope that adds it (scopes) or pick the provider preset that matches the provider (provider).",
            },
            AppError::Flow(FlowError::Identity(IdentityError::GroupsOverage)) => "An administrator should make the provider send fewer groups: in Entra ID, set the app registration's groupMembershipClaims to ApplicationGroup and assign the groups that matter to the application (or use app roles).",
            AppError::Flow(FlowError::Token(TokenError::AlgNotAllowed(alg))) if alg.starts_with("HS") => "The provider signs ID tokens with a shared secret (HS*), which neither gatehouse nor the Kubernetes API server can verify. In Authentik, choose a signing key (certificate) for the application's provider; elsewhere, configure an RS256 or ES256 signing key.",
            AppError::Flow(FlowError::Refused { error, .. }) if error == "invalid_grant" => "The sign-in code expired or was already used: start the sign-in again.",
            AppError::Flow(FlowError::Refused { error, .. }) if error == "invalid_client" => "The provider rejected gatehouse's client credentials: check client_id, client_secret and client_auth_method.",
            AppError::Flow(_) => "This is a problem between gatehouse and the identity provider: an administrator should check gatehouse's log for this request id.",
            AppError::SessionTooLarge { .. } => "An administrator should reduce the claims or scopes requested.",
            AppError::SessionStoreDown { .. } => "Reload in a few seconds: your session is kept and works again as soon as the store answers. If it lasts, an administrator should check Redis (gatehouse's /readyz and log name the cause).",
            AppError::ProviderUnavailable { .. } => "Try again in a minute. People already signed in keep working until their sessions expire. If it lasts, an administrator should check that the provider is up and reachable from gatehouse (see gatehouse's log for this request id).",
            AppError::NotReady(_) => "Wait a moment and reload; if it persists, an administrator should check issuer_url and the provider's reachability.",
            AppError::Unauthenticated { .. } => "Sign in at the login URL, then retry.",
            AppError::InvalidBearer { .. } => "Send a current token from the accepted issuer, issued for this audience, or drop the Authorization header and sign in.",
            AppError::Denied { .. } => "If you should have access, ask an administrator to add you to an allowed group or address. If you signed in with the wrong account, sign out and sign in with another.",
            AppError::AmbiguousFraming(_) => "Send the request with one Content-Length or chunked Transfer-Encoding, and one Host header.",
            AppError::CrossSiteSignOut => "To sign out, use the sign-out page of this site (/oauth2/sign_out).",
            AppError::BadAuthQuery(_) => "An administrator should fix the query of the forward-auth URL in the ingress configuration.",
            AppError::ClientIdentityHeader { .. } => "Send the request without identity headers of your own; gatehouse sets them after you sign in. An administrator should make the ingress remove client copies of these headers, as the message says.",
            AppError::AssertionOff => "An administrator turns the signed identity assertion on with assertion_signing_key_file (a PEM private key, e.g. from `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`); until then an app cannot verify one and must not expect it.",
            AppError::AuthListenerOnly => "Route users to gatehouse's main listener (listen); only the ingress's forward-auth calls go to auth_listen.",
            AppError::NoRoute => "Check the address you opened. An administrator can list the applications gatehouse serves with `gatehouse check`.",
            AppError::NoRouteForCheck { .. } => "An administrator should add a [[routes]] entry for this host (a host that only forward auth checks needs no upstream in it), and make the ingress known to gatehouse (trusted_proxies, forward_auth_client) so the original host and path reach it.",
            AppError::NoUpstream => "Point your ingress's forward-auth at /oauth2/auth, or set upstream to proxy requests through gatehouse.",
            AppError::IdentityHeadersTooLarge { .. } => "An administrator should make gatehouse send less or let the application take more: fewer groups (groups_claim naming a narrower claim, fewer scopes, or only the groups assigned to this application at the provider; header_groups names every header that carries them), no forwarded ID token (header_id_token = \"\"), or a larger header limit at the application (Go servers such as Headlamp take 1 MB by default, MaxHeaderBytes; nginx takes 8 KB per header line by default, large_client_header_buffers).",
            AppError::UpstreamFailed { failure: UpstreamFailure::Malformed(_), .. } => "The application behind gatehouse answered something that is not HTTP/1.1 gatehouse can pass on: an administrator should check that upstream points at the application's plain-HTTP port (not a TLS, HTTP/2-only or other port) and read the application's log.",
            AppError::UpstreamFailed { failure: UpstreamFailure::Tls(_), .. } => "gatehouse could not set up TLS with the application behind it (the reason is above): an administrator should make upstream name the host its certificate was issued for, and put the CA that signed it in upstream_ca_file (or the client certificate it asks for in upstream_client_cert_file and upstream_client_key_file).",
            AppError::UpstreamFailed { failure: UpstreamFailure::Closed | UpstreamFailure::Broken(_), .. } => "The application behind gatehouse dropped the request without answering: it may have crashed or refused it. Retry shortly; an administrator should read the application's log for this request.",
            AppError::UpstreamFailed { .. } | AppError::UpstreamTimeout { .. } => "The application behind gatehouse is down or slow: retry shortly, or ask an administrator to check it.",
            AppError::Internal(_) => "This is a bug in gatehouse: please report it with the request id.",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            AppError::ProviderUnavailable { .. } => return "The sign-in service is not answering",
            AppError::SessionStoreDown { .. } => return "gatehouse cannot reach its session store",
            // What the provider sent and what gatehouse is set to expect disagree.
            AppError::Flow(
                FlowError::Identity(IdentityError::MissingClaim(_))
                | FlowError::Token(TokenError::Issuer { .. } | TokenError::Audience { .. }),
            ) => return "gatehouse's configuration does not match the identity provider",
            AppError::Flow(FlowError::Identity(IdentityError::UnverifiedEmailAsUser {
                state: "is missing",
                ..
            })) => return "gatehouse's configuration does not match the identity provider",
            // The rest of a failed sign-in is between gatehouse and the provider: never
            // "something behind gatehouse", which reads as the application.
            AppError::Flow(_) if self.status() == StatusCode::BAD_GATEWAY => {
                return "The sign-in failed between gatehouse and the identity provider"
            }
            AppError::IdentityHeadersTooLarge { .. } => {
                return "The application refused gatehouse's identity headers as too large"
            }
            AppError::ClientIdentityHeader { .. } => return "Request refused",
            _ => {}
        }
        match self.status().as_u16() {
            400 => "Sign-in could not be completed",
            401 => "Sign-in required",
            403 => "Access denied",
            404 => "Not found",
            502 | 504 => "Something behind gatehouse failed",
            503 => "Not ready yet",
            _ => "Unexpected error",
        }
    }

    /// Renders the error; logs it with the request id and the trace id.
    pub fn respond(&self, request_id: &str, trace_id: TraceId, json: bool) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(request_id, %trace_id, status = status.as_u16(), code = self.code(), error = %self, "request failed");
        } else {
            tracing::info!(request_id, %trace_id, status = status.as_u16(), code = self.code(), error = %self, "request refused");
        }
        let login_url = match self {
            AppError::Unauthenticated { login_url } => Some(login_url.as_str()),
            _ => None,
        };
        let mut resp = if json {
            let mut body = serde_json::json!({
                "error": self.code(),
                "message": self.to_string(),
                "advice": self.advice(),
                "request_id": request_id,
                "login_url": login_url,
            });
            if let AppError::Flow(FlowError::Identity(IdentityError::MissingClaim(m))) = self {
                // Names only: a claim's value never reaches the page.
                body["claim"] = m.claim.as_str().into();
                body["setting"] = m.setting.into();
                body["token_claims"] = m.token_claims.clone().into();
                body["userinfo_claims"] = m.userinfo_claims.clone().into();
            }
            if let AppError::IdentityHeadersTooLarge { sent, total, .. } = self {
                // Names and sizes only: the values are the user's identity and tokens.
                body["headers"] = sent
                    .iter()
                    .map(|(name, bytes)| serde_json::json!({"name": name, "bytes": bytes}))
                    .collect();
                body["total_bytes"] = (*total).into();
            }
            (status, axum::Json(body)).into_response()
        } else {
            let retry = match self {
                AppError::ProviderUnavailable { .. } => Some(("Try again", "/oauth2/start")),
                AppError::SessionStoreDown { .. } => None,
                AppError::UpstreamFailed { .. }
                | AppError::IdentityHeadersTooLarge { .. }
                | AppError::UpstreamTimeout { .. }
                | AppError::NotReady(_)
                | AppError::BadAuthQuery(_)
                | AppError::AmbiguousFraming(_)
                | AppError::ClientIdentityHeader { .. }
                | AppError::AuthListenerOnly
                | AppError::AssertionOff
                | AppError::NoUpstream
                | AppError::NoRoute
                | AppError::NoRouteForCheck { .. } => None,
                // Signing in again would meet the same mismatch until the settings change.
                AppError::Flow(FlowError::Identity(IdentityError::MissingClaim(_))) => None,
                // Signing in again would land on the same refusal: offer another account.
                AppError::Denied { .. } | AppError::CrossSiteSignOut => {
                    Some(("Sign out", "/oauth2/sign_out"))
                }
                _ => Some(("Sign in again", login_url.unwrap_or("/oauth2/start"))),
            };
            (
                status,
                pages::error_page(
                    self.title(),
                    &self.to_string(),
                    self.advice(),
                    request_id,
                    retry,
                ),
            )
                .into_response()
        };
        if let AppError::InvalidBearer { reason } = self {
            // RFC 6750 §3: the token itself is the problem, and the description says why.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, crate::bearer::challenge(reason));
        } else if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Cookie realm=\"gatehouse\", login=\"/oauth2/start\""),
            );
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp.extensions_mut().insert(Failure(self.code()));
        resp
    }
}
