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
    /// Each `[[routes]]` entry's own rules, in the route table's order (ANDed with
    /// `policy`); `None` for a route without rules of its own.
    pub route_policies: Vec<Option<Policy>>,
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
            route_policies: route_policies(&cfg)?,
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
            route_policies: route_policies(&cfg)?,
            bearer: BearerVerifier::reconfigured(self.bearer.as_ref(), &cfg),
            cfg,
        })
    }
}

/// The rules of each route, in the route table's order; `None` where a route has none.
fn route_policies(cfg: &Config) -> Result<Vec<Option<Policy>>, String> {
    cfg.routes
        .routes()
        .iter()
        .map(|r| match r.rules.is_empty() {
            true => Ok(None),
            false => Policy::from_config(&r.rules).map(Some),
        })
        .collect()
}
