//! OpenID Provider metadata (OpenID Connect Discovery 1.0 §4), fetched from
//! `<issuer>/.well-known/openid-configuration` and checked against the configured issuer.

use serde::Deserialize;

/// The parts of the provider metadata gatehouse uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// Why discovery failed, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("could not reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}; is issuer_url right? (for Keycloak it ends in /realms/<realm>, for Vault in /v1/identity/oidc/provider/<name>)")]
    Status { url: String, status: u16 },
    #[error("{url} did not return valid provider metadata: {reason}")]
    Invalid { url: String, reason: String },
    #[error("the provider says its issuer is `{found}` but issuer_url is `{configured}`{hint}; they must match byte for byte (OIDC Discovery §4.3)")]
    IssuerMismatch {
        configured: String,
        found: String,
        hint: &'static str,
    },
    #[error("{0}")]
    Redirected(String),
    #[error("the provider does not support PKCE with S256 (code_challenge_methods_supported = {0:?}); gatehouse always uses it")]
    NoPkce(Vec<String>),
}

/// The discovery document's URL for an issuer.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks the metadata.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, DiscoveryError> {
    let url = discovery_url(issuer);
    let resp =
        crate::metrics::provider_call(crate::metrics::Endpoint::Discovery, http.get(&url).send())
            .await
            .map_err(|e| DiscoveryError::Unreachable {
                url: url.clone(),
                reason: crate::oidc::describe(&e),
            })?;
    if let Some(reason) = crate::oidc::redirected(&url, &resp) {
        return Err(DiscoveryError::Redirected(reason));
    }
    let status = resp.status();
    if !status.is_success() {
        return Err(DiscoveryError::Status {
            url,
            status: status.as_u16(),
        });
    }
    let meta: Metadata = resp.json().await.map_err(|e| DiscoveryError::Invalid {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    check(issuer, meta)
}

/// Checks fetched metadata against the configuration.
pub fn check(issuer: &str, meta: Metadata) -> Result<Metadata, DiscoveryError> {
    if meta.issuer != issuer {
        let hint = if meta.issuer.trim_end_matches('/') == issuer.trim_end_matches('/') {
            " (only a trailing slash differs)"
        } else {
            ""
        };
        return Err(DiscoveryError::IssuerMismatch {
            configured: issuer.to_string(),
            found: meta.issuer,
            hint,
        });
    }
    // Entra ID omits the field although PKCE works: only a list without S256 is a refusal.
    if let Some(methods) = &meta.code_challenge_methods_supported {
        if !methods.is_empty() && !methods.iter().any(|m| m == "S256") {
            return Err(DiscoveryError::NoPkce(methods.clone()));
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(issuer: &str) -> Metadata {
        Metadata {
            issuer: issuer.into(),
            authorization_endpoint: "a".into(),
            token_endpoint: "t".into(),
            jwks_uri: "j".into(),
            userinfo_endpoint: None,
            end_session_endpoint: None,
            revocation_endpoint: None,
            code_challenge_methods_supported: None,
        }
    }

    #[test]
    fn trailing_slash_difference_is_named() {
        let e = check(
            "https://auth.example.com/application/o/app",
            meta("https://auth.example.com/application/o/app/"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("only a trailing slash differs"), "{msg}");
        assert!(
            msg.contains("https://auth.example.com/application/o/app/"),
            "{msg}"
        );
    }

    #[test]
    fn missing_pkce_list_is_fine_a_list_without_s256_is_not() {
        assert!(check("i", meta("i")).is_ok());
        let mut m = meta("i");
        m.code_challenge_methods_supported = Some(vec!["plain".into()]);
        assert!(matches!(check("i", m), Err(DiscoveryError::NoPkce(_))));
    }
}
