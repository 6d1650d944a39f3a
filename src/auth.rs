//! The auth step, shared by every way of acting on a request: load the session, refresh it
//! when due, and decide. The sidecar proxies on [`Decision::Allow`]; a forward-auth
//! endpoint would answer with the same decision, so the two can never disagree.
//!
//! Also builds sessions from token responses (login and refresh share that code), and
//! coordinates refreshes: one at a time per session, with the result kept briefly so that
//! requests still carrying the old cookie reuse it instead of spending a single-use
//! refresh token twice (tsidp, Dex rotation).

use crate::config::{Config, PassAuthorization};
use crate::identity::map_claims;
use crate::oidc::verify::{same_subject, TokenError};
use crate::oidc::{FlowError, Loaded, Provider, TokenSet};
use crate::session::chunks::RequestCookies;
use crate::session::{Session, SessionStore};
use crate::util::now_secs;
use axum::http::HeaderValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Why a request has to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReason {
    NoSession,
    Expired,
    RefreshFailed,
}

/// The outcome of the auth step.
pub enum Decision {
    /// A verified identity; `set_cookies` carries a refreshed session, if any.
    Allow {
        session: Arc<Session>,
        set_cookies: Vec<HeaderValue>,
    },
    /// No usable session; `clear` removes stale session cookies.
    Login {
        reason: LoginReason,
        clear: Vec<HeaderValue>,
    },
}

/// Builds a session from a token response whose ID token was verified into `claims`.
pub fn session_from_tokens(
    cfg: &Config,
    tokens: TokenSet,
    id_token: String,
    claims: &serde_json::Value,
    id: String,
    created_at: u64,
) -> Result<Session, FlowError> {
    let identity =
        map_claims(claims, &cfg.claims).ok_or(FlowError::Token(TokenError::Missing("sub")))?;
    let expires_at = claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
    let access_token = match cfg.headers.authorization {
        PassAuthorization::AccessToken => tokens.access_token,
        _ => None,
    };
    Ok(Session {
        id,
        identity,
        id_token,
        refresh_token: tokens.refresh_token,
        access_token,
        expires_at,
        created_at,
        values: Default::default(),
    })
}

/// How long a refresh result is kept for late requests with the old cookie.
const KEEP_RESULT: Duration = Duration::from_secs(60);

type Shared = Arc<OnceCell<Result<Session, String>>>;

/// One refresh at a time per session.
#[derive(Default)]
pub struct Refresher {
    inflight: Mutex<HashMap<String, (Instant, Shared)>>,
}

impl Refresher {
    fn slot(&self, key: String) -> Shared {
        let Ok(mut map) = self.inflight.lock() else {
            return Arc::new(OnceCell::new());
        };
        map.retain(|_, (at, _)| at.elapsed() < KEEP_RESULT);
        Arc::clone(
            &map.entry(key)
                .or_insert_with(|| (Instant::now(), Arc::new(OnceCell::new())))
                .1,
        )
    }

    /// Refreshes `old`; concurrent callers for the same session share one result.
    pub async fn refresh(
        &self,
        cfg: &Config,
        provider: &Provider,
        old: &Session,
    ) -> Result<Session, String> {
        // Keyed by the refresh token itself (digested): a rotated token means a new refresh.
        let rt = old.refresh_token.as_deref().unwrap_or("");
        let digest = ring::digest::digest(&ring::digest::SHA256, rt.as_bytes());
        let tag: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let slot = self.slot(format!("{}:{tag}", old.id));
        slot.get_or_init(|| async {
            refresh_once(cfg, provider, old)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .clone()
    }
}

async fn refresh_once(
    cfg: &Config,
    provider: &Provider,
    old: &Session,
) -> Result<Session, FlowError> {
    let loaded: Arc<Loaded> = provider
        .loaded()
        .ok_or_else(|| FlowError::Unreachable("the provider is not loaded".into()))?;
    let refresh_token = old.refresh_token.as_deref().ok_or(FlowError::NoIdToken)?;
    let mut tokens = provider.refresh(&loaded, refresh_token).await?;
    let id_token = tokens.id_token.take().ok_or(FlowError::NoIdToken)?;
    let claims = provider.verify(&loaded, &id_token, None).await?;
    same_subject(&old.identity.sub, &claims)?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = old.refresh_token.clone();
    }
    let session = session_from_tokens(
        cfg,
        tokens,
        id_token,
        &claims,
        old.id.clone(),
        old.created_at,
    )?;
    tracing::info!(user = %session.identity.user, "refreshed the session's tokens");
    Ok(session)
}

/// The auth step.
pub async fn authenticate(
    cfg: &Config,
    provider: &Provider,
    store: &SessionStore,
    refresher: &Refresher,
    cookies: &RequestCookies<'_>,
) -> Decision {
    let Some(session) = store.load(cookies).await else {
        let clear = store.clear(cookies);
        return Decision::Login {
            reason: LoginReason::NoSession,
            clear,
        };
    };
    let now = now_secs();
    if now
        >= session
            .created_at
            .saturating_add(cfg.cookie.session_lifetime.as_secs())
    {
        return Decision::Login {
            reason: LoginReason::Expired,
            clear: store.clear(cookies),
        };
    }
    if now.saturating_add(cfg.refresh_before.as_secs()) < session.expires_at {
        return Decision::Allow {
            session,
            set_cookies: Vec::new(),
        };
    }
    if session.refresh_token.is_none() {
        if now < session.expires_at {
            return Decision::Allow {
                session,
                set_cookies: Vec::new(),
            };
        }
        return Decision::Login {
            reason: LoginReason::Expired,
            clear: store.clear(cookies),
        };
    }
    match refresher.refresh(cfg, provider, &session).await {
        Ok(fresh) => match store.save(&fresh, cookies).await {
            Ok(set_cookies) => Decision::Allow {
                session: Arc::new(fresh),
                set_cookies,
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not store the refreshed session; asking the user to log in again");
                Decision::Login {
                    reason: LoginReason::RefreshFailed,
                    clear: store.clear(cookies),
                }
            }
        },
        Err(e) => {
            tracing::warn!(user = %session.identity.user, error = %e, "token refresh failed; the user must log in again");
            Decision::Login {
                reason: LoginReason::RefreshFailed,
                clear: store.clear(cookies),
            }
        }
    }
}
