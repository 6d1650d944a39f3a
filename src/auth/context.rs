//! The auth step's own context: the provider, the access rules, the session store, the
//! refresher and the bearer-token verifier. The HTTP layer holds one and calls the auth
//! step with it; nothing here knows about HTTP state (listeners, proxies, tunnels).
//!
//! A configuration reload builds a new context from the old one (`reconfigured`): new
//! rules and client settings, the same sessions, provider keys and refreshes in flight.

use super::Refresher;
use crate::authz::Policy;
use crate::bearer::BearerVerifier;
use crate::config::Config;
use crate::oidc::Provider;
use crate::session::SessionStore;
use std::sync::Arc;

/// What the auth step decides with, built at start-up (and again at each configuration
/// reload) and shared by every worker.
pub struct AuthContext {
    pub cfg: Arc<Config>,
    pub provider: Arc<Provider>,
    /// The configured access rules.
    pub policy: Policy,
    pub sessions: Arc<SessionStore>,
    pub refresher: Refresher,
    /// `Some` when bearer tokens are accepted.
    pub bearer: Option<BearerVerifier>,
}

impl AuthContext {
    /// Builds the context for `cfg`; `Err` names a rule that cannot be compiled.
    pub fn new(cfg: Arc<Config>) -> Result<AuthContext, String> {
        let policy = Policy::from_config(&cfg.rules)?;
        Ok(AuthContext {
            provider: Arc::new(Provider::new(&cfg)),
            sessions: Arc::new(SessionStore::for_config(&cfg)?),
            refresher: Refresher::default(),
            policy,
            bearer: BearerVerifier::new(&cfg),
            cfg,
        })
    }

    /// The context for `cfg`, a reloaded configuration whose fixed settings are this
    /// one's (`config::reload::keep_fixed`): the rules, client settings, cookie settings
    /// and bearer issuers are `cfg`'s; the sessions, the provider's discovery and keys and
    /// the refreshes in flight carry on. `Err` names a rule that cannot be compiled.
    pub fn reconfigured(&self, cfg: Arc<Config>) -> Result<AuthContext, String> {
        let policy = Policy::from_config(&cfg.rules)?;
        Ok(AuthContext {
            provider: Arc::new(self.provider.reconfigured(&cfg)),
            sessions: Arc::new(self.sessions.reconfigured(&cfg)),
            refresher: self.refresher.clone(),
            policy,
            bearer: BearerVerifier::reconfigured(self.bearer.as_ref(), &cfg),
            cfg,
        })
    }
}
