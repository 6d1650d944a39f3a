//! The one place that decides what a token must satisfy to become a session, whatever
//! way it arrives: the ID token of a browser sign-in, a refreshed ID token, the ID token a
//! refresh without a new one keeps, or an `Authorization: Bearer` token (from `issuer_url`
//! or a `bearer_issuers` issuer). [`Provider::verify_token`] builds every check from the
//! provider's settings and the token's [`TokenUse`], so the sign-in and the bearer path
//! cannot drift apart: a check added for one is a check for the other unless the use
//! rules it out here, with the reason beside it.
//!
//! What a token from any of these paths must satisfy, and where it is checked:
//!
//! | check | where | sign-in | refresh | bearer |
//! |---|---|---|---|---|
//! | signature, `alg` from `allowed_algs` (never `none`/HS*), `kid` | `verify.rs` | yes | yes | yes |
//! | exact `iss`, `sub`, `aud` (+ `trusted_audiences`, `azp`), `exp` (no leeway), `nbf` with skew, `iat` | `verify.rs` | yes | yes | yes |
//! | `auth_time` within `max_age`, `acr` among `acr_values` ([`AuthnPolicy`]) | here | yes | yes, also on the kept ID token | yes, `bearer_issuers` too |
//! | not typed `at+jwt` | `verify.rs` | yes | yes | no: see [`TokenUse::Bearer`] |
//! | `nonce` | `verify.rs` | yes | no (OIDC Core 12.2) | no: see [`TokenUse::Bearer`] |
//! | `at_hash` against the access token issued with it | `verify.rs` | when present | when present | no: see [`TokenUse::Bearer`] |
//! | groups overage, `email_verified`, user claim, unusable values | `identity.rs` `map_claims` | yes | yes | yes |
//! | access rules (`allowed_*`, `required_claims`, Google's `hd` from `hosted_domain`) | `authz.rs` `check_all` | yes | yes | yes (403, as for a browser) |
//! | `state`, PKCE, login timeout, the callback's `iss` (RFC 9207) | `http/login.rs` | yes | no | no: they bind a browser's round trip to the provider, which neither makes |
//! | userinfo read beside the token (never in place of its claims), its `sub` equal to the token's | `auth/tokens.rs`, `identity/sources.rs` | when asked | when asked | no: gatehouse holds no access token from that sign-in to ask with; missing claims refuse the token instead |
//! | the forwarded access token (`access_token_audience`) | [`TokenUse::ForwardedAccessToken`] | yes | yes | no: the bearer token is what is forwarded |
//!
//! Fail closed: `max_age` and `acr_values` describe how the *user* must have
//! authenticated, so they bind every token that stands for a user, including those of
//! `bearer_issuers`; a token that cannot show `auth_time` or `acr` is refused.

use super::verify::{self, Expected, TokenError};
use super::{Loaded, Provider};
use serde_json::Value;

/// How the user must have authenticated: `max_age` (seconds) and `acr_values`, as
/// requested at sign-in (OIDC Core §3.1.2.1) and required in every token that stands
/// for the user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthnPolicy {
    pub max_age: Option<u64>,
    pub acr_values: Vec<String>,
}

impl AuthnPolicy {
    /// No requirement (the forwarded access token: see [`TokenUse::ForwardedAccessToken`]).
    pub const NONE: AuthnPolicy = AuthnPolicy {
        max_age: None,
        acr_values: Vec::new(),
    };

    /// `auth_time` no older than `max_age` (plus `skew`), `acr` one of `acr_values`.
    pub fn check(&self, claims: &Value, now: u64, skew: u64) -> Result<(), TokenError> {
        if let Some(max_age) = self.max_age {
            if claims.get("auth_time").is_none() {
                return Err(TokenError::NoAuthTime);
            }
            let auth_time = verify::seconds(claims, "auth_time").ok_or(TokenError::Malformed)?;
            let age = now.saturating_sub(auth_time);
            if age > max_age.saturating_add(skew) {
                return Err(TokenError::AuthTooOld(age));
            }
        }
        if !self.acr_values.is_empty() {
            let acr = claims.get("acr").and_then(Value::as_str);
            if !acr.is_some_and(|acr| self.acr_values.iter().any(|a| a == acr)) {
                return Err(TokenError::Acr {
                    found: acr.map_or_else(
                        || "missing".to_string(),
                        |a| format!("`{}`", a.chars().take(100).collect::<String>()),
                    ),
                    wanted: self.acr_values.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// What a token is verified for; decides the checks that depend on how it came.
#[derive(Debug, Clone, Copy)]
pub enum TokenUse<'a> {
    /// The ID token of the authorization-code flow: bound to this login by `nonce`, and
    /// to the access token issued with it by `at_hash`.
    SignIn {
        nonce: &'a str,
        access_token: Option<&'a str>,
    },
    /// An ID token from a refresh: no `nonce` (OIDC Core §12.2), `at_hash` as above.
    Refresh { access_token: Option<&'a str> },
    /// An `Authorization: Bearer` token for one of `accepted` audiences. The same
    /// authentication policy as a sign-in applies; three ID-token checks cannot:
    /// - `nonce`: it binds an ID token to the login a browser started here, and a
    ///   bearer token comes from a login gatehouse never saw;
    /// - `at_hash`: it binds an ID token to the access token issued in the same
    ///   response, and a bearer token arrives alone;
    /// - `typ: at+jwt`: API clients (kubectl, CI) legitimately present access tokens
    ///   (`bearer_audiences`), so a typed access token is not refused for its type.
    Bearer { accepted: &'a [String] },
    /// The access token forwarded with `access_token_audience` (AKS): checked as a token
    /// to hand on (signature, issuer, that audience, expiry), not as an identity. The
    /// authentication policy is not applied to it: the user's authentication is shown by
    /// the ID token of the same response, which is checked against it, and Entra's
    /// access tokens carry no `auth_time`.
    ForwardedAccessToken,
}

impl Provider {
    /// Verifies `token` for `use_` with every check this provider's settings ask for.
    /// The only way a token becomes claims: sign-in, refresh and bearer tokens all come
    /// through here.
    pub async fn verify_token(
        &self,
        l: &Loaded,
        token: &str,
        use_: TokenUse<'_>,
    ) -> Result<Value, TokenError> {
        let c = &self.client;
        let (nonce, access_token, id_token, policy) = match use_ {
            TokenUse::SignIn {
                nonce,
                access_token,
            } => (Some(nonce), access_token, true, &c.policy),
            TokenUse::Refresh { access_token } => (None, access_token, true, &c.policy),
            TokenUse::Bearer { .. } => (None, None, false, &c.policy),
            TokenUse::ForwardedAccessToken => (None, None, false, &AuthnPolicy::NONE),
        };
        // Bearer tokens may name any audience accepted from this issuer: the one checked
        // is picked from the token's own `aud` (read unverified), then checked for real,
        // with the others trusted beside it.
        let accepted = match use_ {
            TokenUse::Bearer { accepted } => accepted,
            TokenUse::ForwardedAccessToken => std::slice::from_ref(&c.client_id),
            TokenUse::SignIn { .. } | TokenUse::Refresh { .. } => &[],
        };
        let mut audience = c.client_id.as_str();
        let mut trusted = std::borrow::Cow::Borrowed(c.trusted_audiences.as_slice());
        if !accepted.is_empty() {
            let unverified = verify::payload(token).ok_or(TokenError::Malformed)?;
            if let Some(a) = accepted
                .iter()
                .find(|a| verify::audiences(&unverified).contains(&a.as_str()))
            {
                audience = a;
            }
            let mut all = accepted.to_vec();
            all.extend(c.trusted_audiences.iter().cloned());
            trusted = std::borrow::Cow::Owned(all);
        }
        let want = Expected {
            issuer: &c.issuer,
            issuer_aliases: &c.issuer_aliases,
            client_id: audience,
            nonce,
            now: crate::util::now_secs(),
            skew: c.skew,
            algs: &c.algs,
            trusted_audiences: &trusted,
            access_token,
            id_token,
            policy,
        };
        verify::verify(token, &want, &l.jwks).await
    }

    /// The authentication policy checked again on claims verified earlier: the ID token
    /// a refresh without a new one keeps must still meet `max_age` and `acr_values`, as a
    /// refreshed ID token would have to.
    pub fn recheck_authentication(&self, claims: &Value) -> Result<(), TokenError> {
        self.client
            .policy
            .check(claims, crate::util::now_secs(), self.client.skew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_age_needs_a_recent_auth_time_and_acr_one_of_the_values() {
        let p = AuthnPolicy {
            max_age: Some(300),
            acr_values: vec!["phr".into(), "phrh".into()],
        };
        let ok = json!({"auth_time": 900, "acr": "phrh"});
        assert_eq!(p.check(&ok, 1000, 30), Ok(()));
        assert_eq!(
            p.check(&json!({"acr": "phr"}), 1000, 30),
            Err(TokenError::NoAuthTime)
        );
        assert_eq!(
            p.check(&json!({"auth_time": 600, "acr": "phr"}), 1000, 30),
            Err(TokenError::AuthTooOld(400))
        );
        assert_eq!(
            p.check(&json!({"auth_time": 680, "acr": "phr"}), 1000, 30),
            Ok(()),
            "within skew"
        );
        assert_eq!(
            p.check(&json!({"auth_time": "soon", "acr": "phr"}), 1000, 30),
            Err(TokenError::Malformed)
        );
        for (acr, found) in [
            (json!("pwd"), "`pwd`"),
            (json!(null), "missing"),
            (json!(2), "missing"),
        ] {
            let claims = json!({"auth_time": 900, "acr": acr});
            assert_eq!(
                p.check(&claims, 1000, 30),
                Err(TokenError::Acr {
                    found: found.into(),
                    wanted: "phr, phrh".into()
                }),
                "{claims}"
            );
        }
        assert_eq!(AuthnPolicy::NONE.check(&json!({}), 1000, 30), Ok(()));
    }
}
