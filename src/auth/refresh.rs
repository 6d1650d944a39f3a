//! Refreshes (RFC 6749 §6), one at a time per session, with the result kept briefly so
//! that requests still carrying the old cookie reuse it instead of spending a single-use
//! refresh token twice (tsidp, Dex rotation). A refreshed ID token must keep the subject
//! (OIDC Core 12.2) and meet the same checks as at sign-in (`oidc/policy.rs`).
//!
//! Within a replica, concurrent requests share one refresh (below). Across replicas the
//! session store decides whose turn it is (`SessionStore::refresh_turn`: with Redis, a
//! lock with a renewed lease; the others reuse the stored result), so a single-use refresh
//! token is spent once whichever replicas the requests land on. The cookie store has no
//! shared state: several replicas then need sticky sessions.

use super::tokens::{complete_claims, keep_identity, session_from_tokens};
use crate::config::Config;
use crate::oidc::verify::same_subject;
use crate::oidc::{FlowError, Loaded, Provider};
use crate::session::{RefreshTurn, Session, SessionStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a refresh result is kept for late requests with the old cookie.
const KEEP_RESULT: Duration = Duration::from_secs(60);
/// How long a failure the provider may recover from (down, 5xx) is kept before the next
/// request tries again.
const KEEP_TRANSIENT: Duration = Duration::from_secs(2);

/// Why a refresh failed; `transient`: the provider was down or failed on its side, so it
/// has not said no; `serve_until`: the old session may still be used before then (the
/// provider is down: until the session expires; it sent no ID token to replace the
/// forwarded one: until that one expires, if sooner).
#[derive(Debug, Clone)]
pub struct RefreshFailure {
    pub message: String,
    /// `FlowError::code`, and the provider's own error code: for the audit event.
    pub code: &'static str,
    pub provider_error: Option<String>,
    pub transient: bool,
    pub serve_until: Option<u64>,
    /// `old` holding the refresh token the provider rotated to, when it answered with
    /// one but the refresh failed without ending the session (no new ID token for the
    /// forwarded one, a check that could not be made): what is served, and stored,
    /// instead of the presented session, so the spent token is never presented again.
    pub renewed: Option<Box<Session>>,
}

impl RefreshFailure {
    fn new(e: &FlowError, old: &Session, renewed: Option<Session>) -> RefreshFailure {
        let serve_until = match e {
            _ if e.is_transient() => Some(old.expires_at),
            FlowError::IdTokenNotRenewed { expires_at } => Some(old.expires_at.min(*expires_at)),
            _ => None,
        };
        RefreshFailure {
            message: e.to_string(),
            code: e.code(),
            provider_error: e.provider_error().map(str::to_string),
            transient: e.is_transient(),
            serve_until,
            renewed: renewed.filter(|_| serve_until.is_some()).map(Box::new),
        }
    }

    fn closed(
        code: &'static str,
        message: String,
        transient: bool,
        serve_until: Option<u64>,
    ) -> RefreshFailure {
        RefreshFailure {
            message,
            code,
            provider_error: None,
            transient,
            serve_until,
            renewed: None,
        }
    }
}

/// A refresh that failed, and the refresh token the provider rotated to before it did
/// (its answer came, then something about it failed), if any.
struct Failed {
    error: FlowError,
    rotated: Option<String>,
}

impl From<FlowError> for Failed {
    fn from(error: FlowError) -> Failed {
        Failed {
            error,
            rotated: None,
        }
    }
}

impl std::fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Shared = Arc<OnceCell<Result<Session, RefreshFailure>>>;
type Slots = Mutex<HashMap<String, (Instant, Shared)>>;

/// One refresh at a time per session.
#[derive(Default, Clone)]
pub struct Refresher {
    inflight: Arc<Slots>,
}

/// The slot of `s`'s refresh: keyed by the session and its refresh token itself
/// (digested), so a rotated token means a new refresh.
fn slot_key(s: &Session) -> String {
    let rt = s.refresh_token.as_deref().unwrap_or("");
    let digest = ring::digest::digest(&ring::digest::SHA256, rt.as_bytes());
    let tag: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}:{tag}", s.id)
}

fn slot_for(slots: &Slots, key: String) -> Shared {
    let Ok(mut map) = slots.lock() else {
        return Arc::new(OnceCell::new());
    };
    map.retain(|_, (at, done)| match done.get() {
        Some(Err(e)) if e.transient => at.elapsed() < KEEP_TRANSIENT,
        _ => at.elapsed() < KEEP_RESULT,
    });
    Arc::clone(
        &map.entry(key)
            .or_insert_with(|| (Instant::now(), Arc::new(OnceCell::new())))
            .1,
    )
}

impl Refresher {
    /// Refreshes `old`; concurrent callers for the same session share one result. The
    /// refresh runs in a task of its own, so it completes (and its result is kept) even
    /// if the request that started it goes away: a client that disconnects mid-refresh
    /// cannot make the next request spend the same refresh token again.
    pub async fn refresh(
        &self,
        cfg: &Arc<Config>,
        provider: &Arc<Provider>,
        store: &Arc<SessionStore>,
        old: &Session,
    ) -> Result<Session, RefreshFailure> {
        let slot = slot_for(&self.inflight, slot_key(old));
        let (cfg, provider, store, old, slots) = (
            Arc::clone(cfg),
            Arc::clone(provider),
            Arc::clone(store),
            old.clone(),
            Arc::clone(&self.inflight),
        );
        let task = tokio::spawn(async move {
            let mut ran = false;
            let result = slot
                .get_or_init(|| async {
                    ran = true;
                    let result = in_turn(&cfg, &provider, &store, &old).await;
                    // A failure that handed the session a rotated refresh token is kept for
                    // that token too: requests that present it meet the same failure instead
                    // of asking the provider again.
                    if let Err(RefreshFailure {
                        renewed: Some(r), ..
                    }) = &result
                    {
                        let _ = slot_for(&slots, slot_key(r)).set(result.clone());
                    }
                    result
                })
                .await
                .clone();
            if !ran {
                crate::metrics::refresh(crate::metrics::Refresh::Joined);
            }
            result
        });
        task.await.unwrap_or_else(|e| {
            Err(RefreshFailure::closed(
                "internal_error",
                format!("the refresh task failed: {e}"),
                false,
                None,
            ))
        })
    }
}

/// Refreshes `old` in this replica's turn: another replica's result is reused, and this
/// one's is stored before the turn passes on.
async fn in_turn(
    cfg: &Config,
    provider: &Provider,
    store: &SessionStore,
    old: &Session,
) -> Result<Session, RefreshFailure> {
    let lease = match store.refresh_turn(old).await {
        Ok(RefreshTurn::Mine(lease)) => lease,
        Ok(RefreshTurn::Done(mut fresh)) => {
            crate::metrics::refresh(crate::metrics::Refresh::Reused);
            tracing::debug!("another replica refreshed the session; using its result");
            fresh.ticket = old.ticket.clone();
            return Ok(*fresh);
        }
        Ok(RefreshTurn::Ended) => {
            crate::metrics::refresh(crate::metrics::Refresh::SessionEnded);
            return Err(RefreshFailure::closed(
                "session_ended",
                "the session was ended (signed out, or its refresh was refused on another replica)"
                    .into(),
                false,
                None,
            ));
        }
        // The store is down: the session serves until it expires, like a provider outage.
        Err(e) => {
            crate::metrics::refresh(crate::metrics::Refresh::StoreUnavailable);
            return Err(RefreshFailure::closed(
                "session_store_unavailable",
                e.to_string(),
                true,
                Some(old.expires_at),
            ));
        }
    };
    let (result, rotated) = match refresh_once(cfg, provider, old).await {
        Ok(mut s) => {
            s.ticket = old.ticket.clone();
            (Ok(s), None)
        }
        Err(f) => (Err(f.error), f.rotated),
    };
    let refused = matches!(&result, Err(e) if !e.is_transient() && !matches!(e, FlowError::IdTokenNotRenewed { .. }));
    // The provider rotated the refresh token, yet the refresh failed without ending the
    // session: the session keeps the new token, stored like a refresh's result, so no
    // replica presents the spent one again.
    let renewed = rotated.filter(|_| !refused).map(|rt| {
        let mut s = old.clone();
        s.refresh_token = Some(rt);
        s
    });
    let to_store = result.as_ref().ok().or(renewed.as_ref());
    if let Err(e) = store.finish_refresh(lease, old, to_store, refused).await {
        tracing::warn!(error = %e, "could not store the refreshed session");
        if to_store.is_some() {
            crate::metrics::refresh(crate::metrics::Refresh::StoreFailed);
            // Not stored: other replicas would spend the old refresh token again, which
            // the provider has rotated. Fail closed: this request signs in again.
            return Err(RefreshFailure::closed(
                "session_store_unavailable",
                format!("the refreshed session could not be stored: {e}"),
                false,
                None,
            ));
        }
    }
    crate::metrics::refresh(match &result {
        Ok(_) => crate::metrics::Refresh::Ok,
        Err(e) => crate::metrics::refresh_failure(e),
    });
    result.map_err(|e| RefreshFailure::new(&e, old, renewed))
}

/// Calls the provider with `old`'s refresh token and builds the refreshed session. A
/// failure after the provider answered names the refresh token it rotated to.
async fn refresh_once(cfg: &Config, provider: &Provider, old: &Session) -> Result<Session, Failed> {
    let loaded: Arc<Loaded> = provider
        .loaded()
        .ok_or_else(|| FlowError::Unreachable("the provider is not loaded".into()))?;
    let refresh_token = old
        .refresh_token
        .as_deref()
        .ok_or(FlowError::NoRefreshToken)?;
    let mut tokens = provider.refresh(&loaded, refresh_token).await?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = old.refresh_token.clone();
    }
    let rotated = tokens
        .refresh_token
        .clone()
        .filter(|t| old.refresh_token.as_ref() != Some(t));
    from_tokens(cfg, provider, &loaded, old, tokens)
        .await
        .map_err(|error| Failed { error, rotated })
}

/// The refreshed session from the provider's answer.
async fn from_tokens(
    cfg: &Config,
    provider: &Provider,
    loaded: &Loaded,
    old: &Session,
    mut tokens: crate::oidc::TokenSet,
) -> Result<Session, FlowError> {
    let Some(id_token) = tokens.id_token.take() else {
        // The kept ID token must still meet max_age/acr_values, as a new one would.
        provider.recheck_authentication(old.claims())?;
        let access_exp = provider
            .check_access_token(tokens.access_token.as_deref())
            .await?;
        return keep_identity(cfg, old, tokens, access_exp);
    };
    let claims = provider
        .verify(loaded, &id_token, None, tokens.access_token.as_deref())
        .await?;
    same_subject(&old.identity.sub, &claims)?;
    let claims = complete_claims(
        cfg,
        provider,
        loaded,
        claims,
        tokens.access_token.as_deref(),
    )
    .await?;
    let access_exp = provider
        .check_access_token(tokens.access_token.as_deref())
        .await?;
    let session = session_from_tokens(
        cfg,
        tokens,
        id_token,
        &claims,
        old.id.clone(),
        old.created_at,
        access_exp,
    )?;
    tracing::info!(user = %session.identity.user, "refreshed the session's tokens");
    Ok(session)
}
