//! The configuration requests are served with, and how a reload reaches every worker.
//!
//! [`Live`] holds the current configuration and auth context, and a generation number a
//! reload bumps. Each worker thread keeps its own copy of the state and router it serves
//! with ([`current`]); per request it compares one atomic number with its copy's, and
//! only after a reload builds a new state: the new configuration and context, the same
//! open WebSockets, and its upstream connections unless the upstream changed. A request
//! in flight finishes with the state it began with; connections, WebSockets and sessions
//! are never dropped by a reload.

use super::{app, AppState};
use crate::auth::AuthContext;
use crate::config::Config;
use crate::proxy::Proxy;
use axum::Router;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The configuration and auth context new requests get.
pub struct Live {
    generation: AtomicU64,
    current: Mutex<Generation>,
}

/// One configuration, as applied.
#[derive(Clone)]
struct Generation {
    number: u64,
    cfg: Arc<Config>,
    auth: Arc<AuthContext>,
}

impl Live {
    pub fn new(cfg: Arc<Config>, auth: Arc<AuthContext>) -> Live {
        Live {
            generation: AtomicU64::new(0),
            current: Mutex::new(Generation {
                number: 0,
                cfg,
                auth,
            }),
        }
    }

    fn now(&self) -> Generation {
        match self.current.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The configuration new requests are served with.
    pub fn config(&self) -> Arc<Config> {
        self.now().cfg
    }

    /// The auth context new requests are decided with.
    pub fn auth(&self) -> Arc<AuthContext> {
        self.now().auth
    }

    /// Applies `cfg`, a reloaded configuration whose fixed settings are the running ones
    /// (`config::reload`): a new auth context built from the current one, then every
    /// worker picks it up at its next request. `Err` names what cannot be built (the
    /// running configuration stays).
    pub fn apply(&self, cfg: Config) -> Result<(), String> {
        let mut current = match self.current.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let cfg = Arc::new(cfg);
        let auth = Arc::new(current.auth.reconfigured(Arc::clone(&cfg))?);
        let number = current.number + 1;
        *current = Generation { number, cfg, auth };
        self.generation.store(number, Ordering::Release);
        Ok(())
    }
}

/// A worker's state and router, and the generation they were built for.
struct Serving {
    number: u64,
    state: Arc<AppState>,
    router: Router,
}

thread_local! {
    /// This worker thread's [`Serving`] (each worker runs on a thread of its own).
    static SERVING: RefCell<Option<Serving>> = const { RefCell::new(None) };
}

/// The state and router for this worker's next request: `base` (the worker's start-up
/// state) until a reload, then the reloaded configuration's.
pub(super) fn current(base: &Arc<AppState>) -> (Arc<AppState>, Router) {
    let live = &base.live;
    let number = live.generation.load(Ordering::Acquire);
    SERVING.with(|serving| {
        let mut serving = serving.borrow_mut();
        match &*serving {
            Some(s) if s.number == number => (Arc::clone(&s.state), s.router.clone()),
            previous => {
                let gen = live.now();
                let last = previous.as_ref().map_or(base, |s| &s.state);
                let same = same_upstream(&last.cfg, &gen.cfg);
                let state = Arc::new(AppState {
                    proxy: if same {
                        Arc::clone(&last.proxy)
                    } else {
                        Arc::new(Proxy::new(&gen.cfg))
                    },
                    routes: if same {
                        Arc::clone(&last.routes)
                    } else {
                        Proxy::for_routes(&gen.cfg)
                    },
                    cfg: gen.cfg,
                    auth: gen.auth,
                    tunnels: Arc::clone(&base.tunnels),
                    live: Arc::clone(&base.live),
                });
                let router = app(Arc::clone(&state));
                *serving = Some(Serving {
                    number: gen.number,
                    state: Arc::clone(&state),
                    router: router.clone(),
                });
                (state, router)
            }
        }
    })
}

/// Whether `a` and `b` send requests to the same upstream (and the same route upstreams,
/// in the same order) the same way (the worker's upstream connections can be kept). An https upstream's connections are made anew:
/// the reload read its CA and client certificate files again.
fn same_upstream(a: &Config, b: &Config) -> bool {
    let ups = |c: &Config| -> Vec<Option<url::Url>> {
        c.routes
            .routes()
            .iter()
            .map(|r| r.upstream.clone())
            .collect()
    };
    a.upstream == b.upstream
        && ups(a) == ups(b)
        && a.upstream_tls.is_none()
        && b.upstream_tls.is_none()
        && a.upstream_timeout == b.upstream_timeout
        && a.upstream_connect_timeout == b.upstream_connect_timeout
}
