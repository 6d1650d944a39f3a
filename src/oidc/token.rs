//! Token endpoint requests (RFC 6749 §4.1.3 and §6) with client authentication
//! (OIDC Core §9), and the PKCE challenge (RFC 7636 §4.2).

use super::{describe, verify::TokenError, Client};
use crate::config::ClientAuth;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use std::fmt;

/// The tokens a token endpoint returned.
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds; some providers send it as a string (`"3600"`).
    #[serde(default, deserialize_with = "lenient_secs")]
    pub expires_in: Option<i64>,
}

/// `expires_in` as a number or a numeric string; anything else is treated as absent
/// rather than failing a token response whose code is already spent.
fn lenient_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("has_id_token", &self.id_token.is_some())
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// What went wrong talking to the provider after the redirect.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("the provider's token endpoint refused the request: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("could not reach the provider's token endpoint: {0}")]
    Unreachable(String),
    #[error("the provider's token endpoint returned something that is not a token response: {0}")]
    Invalid(String),
    #[error("the provider's token response to the sign-in holds no ID token (is `openid` among the scopes?)")]
    NoIdToken,
    #[error("the session holds no refresh token")]
    NoRefreshToken,
    #[error(transparent)]
    Token(TokenError),
    #[error(transparent)]
    Identity(crate::identity::IdentityError),
    #[error("the access token to forward was refused: {0}")]
    AccessToken(TokenError),
    #[error("the provider's refresh answer holds no new ID token, and the ID token gatehouse forwards (header_id_token, or pass_authorization = id_token) expires at {expires_at} (Unix time): the session cannot outlive it, so the user signs in again then")]
    IdTokenNotRenewed { expires_at: u64 },
    #[error("the provider's userinfo endpoint failed: {0}")]
    Userinfo(String),
    #[error("the userinfo endpoint answered for subject `{userinfo}` but the ID token is for `{id_token}`; the sign-in is refused (OIDC Core 5.3.2)")]
    UserinfoSubject { id_token: String, userinfo: String },
}

impl FlowError {
    /// A stable code for pages, JSON answers and audit events (`AppError::code` uses it
    /// for a failed sign-in, `audit::refresh_failed` for a failed refresh).
    pub fn code(&self) -> &'static str {
        use crate::identity::IdentityError as I;
        match self {
            FlowError::Token(TokenError::Issuer { .. }) => "issuer_mismatch",
            FlowError::Token(TokenError::Audience { .. }) => "audience_mismatch",
            FlowError::Token(_) => "invalid_id_token",
            FlowError::Identity(I::GroupsOverage) => "groups_overage",
            FlowError::Identity(I::MissingClaim(_)) => "claim_mismatch",
            FlowError::Identity(_) => "invalid_id_token",
            _ => "token_endpoint_error",
        }
    }

    /// The provider's own error code (RFC 6749 §5.2), when it sent one.
    pub fn provider_error(&self) -> Option<&str> {
        match self {
            FlowError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The provider could not be reached or failed on its side (5xx): trying again later
    /// may work, and the provider has not said no.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FlowError::Unreachable(_)
                | FlowError::Refused {
                    status: 500..=599,
                    ..
                }
        )
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// `application/x-www-form-urlencoded` encoding of one value for Basic auth (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A POST to a provider endpoint with the client's authentication (OIDC Core §9): Basic
/// credentials, or `client_id` (and `client_secret`) added to `fields`.
fn authenticated_post<'a>(
    http: &reqwest::Client,
    endpoint: &str,
    client: &'a Client,
    fields: &mut Vec<(&'a str, &'a str)>,
) -> reqwest::RequestBuilder {
    let req = http.post(endpoint);
    let secret = client.secret.as_ref().map(|s| s.expose()).unwrap_or("");
    match client.auth {
        ClientAuth::Basic => {
            return req.basic_auth(form_encode(&client.client_id), Some(form_encode(secret)));
        }
        ClientAuth::Post => {
            fields.push(("client_id", &client.client_id));
            fields.push(("client_secret", secret));
        }
        ClientAuth::None => fields.push(("client_id", &client.client_id)),
    }
    req
}

/// Revokes a refresh token (RFC 7009 §2.1) with the client's authentication. The
/// provider answers 200 whether or not it knew the token.
pub async fn revoke(
    http: &reqwest::Client,
    endpoint: &str,
    client: &Client,
    refresh_token: &str,
) -> Result<(), String> {
    let mut fields: Vec<(&str, &str)> = vec![
        ("token", refresh_token),
        ("token_type_hint", "refresh_token"),
    ];
    let req = authenticated_post(http, endpoint, client, &mut fields);
    let sent = req.form(&fields).send();
    let resp = crate::metrics::provider_call(crate::metrics::Endpoint::Revocation, sent)
        .await
        .map_err(|e| describe(&e))?;
    if let Some(reason) = super::redirected(endpoint, &resp) {
        return Err(reason);
    }
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "{endpoint} answered HTTP {}",
            resp.status().as_u16()
        ))
    }
}

/// POSTs a grant to the token endpoint.
pub async fn request(
    http: &reqwest::Client,
    endpoint: &str,
    client: &Client,
    form: &[(&str, &str)],
) -> Result<TokenSet, FlowError> {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let req = authenticated_post(http, endpoint, client, &mut fields)
        .header("accept", "application/json");
    let sent = req.form(&fields).send();
    let resp = crate::metrics::provider_call(crate::metrics::Endpoint::Token, sent)
        .await
        .map_err(|e| FlowError::Unreachable(describe(&e)))?;
    if let Some(reason) = super::redirected(endpoint, &resp) {
        return Err(FlowError::Unreachable(reason));
    }
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| FlowError::Unreachable(describe(&e)))?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => FlowError::Refused {
                status: status.as_u16(),
                error: e.error,
                description: e.error_description,
            },
            Err(_) => FlowError::Refused {
                status: status.as_u16(),
                error: format!("HTTP {}", status.as_u16()),
                description: None,
            },
        });
    }
    serde_json::from_slice(&body).map_err(|e| FlowError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn expires_in_may_be_a_string() {
        for (body, want) in [
            (r#"{"id_token":"x","expires_in":3600}"#, Some(3600)),
            (r#"{"id_token":"x","expires_in":"3600"}"#, Some(3600)),
            (r#"{"id_token":"x","expires_in":"soon"}"#, None),
            (r#"{"id_token":"x"}"#, None),
        ] {
            let t: TokenSet = serde_json::from_str(body).unwrap();
            assert_eq!(t.expires_in, want, "{body}");
        }
    }

    #[test]
    fn token_set_debug_hides_tokens() {
        let t = TokenSet {
            access_token: Some("sekrit".into()),
            id_token: None,
            refresh_token: Some("sekrit".into()),
            expires_in: None,
        };
        assert!(!format!("{t:?}").contains("sekrit"));
    }
}
