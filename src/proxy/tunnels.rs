//! The open upgraded connections (WebSockets) of one gatehouse, with the session each was
//! opened by, so that a session's end (sign-out here or on another replica, sign-out
//! everywhere, a back-channel logout) closes the ones that session opened, shutting
//! down closes every one with a close frame instead of dropping it, and a configuration
//! reload closes those the new rules would not let through ([`Tunnels::recheck`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why gatehouse ends an upgraded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its session expired or was signed out: WebSocket close code 4001.
    SessionEnded,
    /// gatehouse is shutting down: close code 1001 (going away).
    ShuttingDown,
    /// A configuration reload's rules no longer let it through: close code 4003.
    Revoked,
}

/// One connection's stop signal.
#[derive(Default)]
struct Stop {
    notify: Notify,
    /// 0: not asked; 1 + `Why as u8` once asked.
    why: AtomicU8,
}

impl Stop {
    fn ask(&self, why: Why) {
        let code = match why {
            Why::SessionEnded => 1,
            Why::ShuttingDown => 2,
            Why::Revoked => 3,
        };
        // The first reason wins.
        let _ = self
            .why
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.notify.notify_one();
    }
}

/// The session behind a connection: what a session end may name it by.
#[derive(Debug, Clone)]
pub struct Owner {
    pub id: String,
    pub sid: Option<String>,
    pub sub: String,
    pub created_at: u64,
    /// Kept in a shared store (Redis), where its end can be looked up; a bearer token's
    /// or a cookie session is not.
    pub stored: bool,
}

/// What let a connection through, to ask the rules again after a reload.
#[derive(Clone)]
pub enum Admitted {
    /// A verified identity (a session or a bearer token) the rules allowed, and the
    /// `[[routes]]` entry whose rules it passed, if any.
    Identity(Arc<crate::session::Session>, Option<Routed>),
    /// A `skip_auth_routes` route, with no identity: the method and path it matched.
    Public {
        method: axum::http::Method,
        path: String,
        route: Option<Routed>,
    },
}

/// The request that opened a connection under `[[routes]]`: matched again against the
/// reloaded route table, it must reach a route to the same upstream, whose rules apply.
#[derive(Clone, Debug)]
pub struct Routed {
    /// The host the request was matched with (`headers::forwarded`).
    pub host: String,
    /// The request's path, as sent.
    pub path: String,
    pub upstream: url::Url,
}

impl Admitted {
    /// The route the connection was opened under, if any.
    pub fn route(&self) -> Option<&Routed> {
        match self {
            Admitted::Identity(_, route) | Admitted::Public { route, .. } => route.as_ref(),
        }
    }
}

/// An open connection: the session that opened it, what admitted it, its stop signal.
type Open = (Option<Owner>, Option<Admitted>, Arc<Stop>);

/// Every open upgraded connection, shared by all workers.
#[derive(Default)]
pub struct Tunnels {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

impl Tunnels {
    /// Records a new upgraded connection, opened by the session `session` (its id), if any.
    pub fn register(self: &Arc<Self>, session: Option<Owner>) -> Registration {
        self.register_admitted(session, None)
    }

    /// [`Tunnels::register`], with what admitted the connection (for [`Tunnels::recheck`]).
    pub fn register_admitted(
        self: &Arc<Self>,
        session: Option<Owner>,
        admitted: Option<Admitted>,
    ) -> Registration {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(Stop::default());
        if let Ok(mut open) = self.open.lock() {
            open.insert(key, (session, admitted, Arc::clone(&stop)));
        }
        crate::metrics::websocket_opened();
        Registration {
            tunnels: Arc::clone(self),
            key,
            stop,
        }
    }

    /// Asks every connection opened by session `id` to close; returns how many.
    pub fn end_session(&self, id: &str) -> usize {
        self.ask(|o| o.is_some_and(|o| o.id == id), Why::SessionEnded)
    }

    /// Asks every connection opened by a session among `ended` to close; returns how many.
    pub fn end_matching(&self, ended: &crate::session::Ended) -> usize {
        self.ask(
            |o| o.is_some_and(|o| ended.covers(&o.id, o.sid.as_deref(), &o.sub, o.created_at)),
            Why::SessionEnded,
        )
    }

    /// Asks every connection to close (shutdown); returns how many.
    pub fn close_all(&self) -> usize {
        self.ask(|_| true, Why::ShuttingDown)
    }

    /// Asks every connection that `allowed` no longer lets through to close (a reload's
    /// new rules); returns what admitted each one closed.
    pub fn recheck(&self, allowed: impl Fn(&Admitted) -> bool) -> Vec<Admitted> {
        let Ok(open) = self.open.lock() else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        for (_, admitted, stop) in open.values() {
            if let Some(a) = admitted.as_ref().filter(|a| !allowed(a)) {
                stop.ask(Why::Revoked);
                closed.push(a.clone());
            }
        }
        closed
    }

    /// The distinct ids of the stored sessions behind open connections.
    pub fn session_ids(&self) -> Vec<String> {
        let Ok(open) = self.open.lock() else {
            return Vec::new();
        };
        let mut ids: Vec<String> = open
            .values()
            .filter_map(|(o, _, _)| o.as_ref().filter(|o| o.stored).map(|o| o.id.clone()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// How many upgraded connections are open.
    pub fn count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    fn ask(&self, matches: impl Fn(Option<&Owner>) -> bool, why: Why) -> usize {
        let Ok(open) = self.open.lock() else {
            return 0;
        };
        let mut asked = 0;
        for (session, _, stop) in open.values() {
            if matches(session.as_ref()) {
                stop.ask(why);
                asked += 1;
            }
        }
        asked
    }
}

/// An open connection's place in [`Tunnels`]; leaving it (drop) removes the connection.
pub struct Registration {
    tunnels: Arc<Tunnels>,
    key: u64,
    stop: Arc<Stop>,
}

impl Registration {
    /// Resolves when gatehouse asks this connection to close, with the reason.
    pub async fn asked(&self) -> Why {
        loop {
            match self.stop.why.load(Ordering::Acquire) {
                1 => return Why::SessionEnded,
                2 => return Why::ShuttingDown,
                3 => return Why::Revoked,
                _ => self.stop.notify.notified().await,
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.tunnels.open.lock() {
            open.remove(&self.key);
        }
        crate::metrics::websocket_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: &str) -> Option<Owner> {
        Some(Owner {
            id: id.into(),
            sid: Some(format!("sid-{id}")),
            sub: format!("sub-{id}"),
            created_at: 100,
            stored: true,
        })
    }

    #[tokio::test]
    async fn a_back_channel_logout_closes_the_connections_of_the_sessions_it_names() {
        use crate::session::Ended;
        let t = Arc::new(Tunnels::default());
        let a = t.register(owner("a"));
        let b = t.register(owner("b"));
        // Only sessions that began by the logout end, by `sid` as by `sub`: a later
        // sign-in that kept the provider's `sid` is another session.
        let later_sign_in = Ended::Matching {
            sid: Some("sid-a".into()),
            sub: None,
            before: 99,
        };
        assert_eq!(t.end_matching(&later_sign_in), 0);
        let by_sid = Ended::Matching {
            sid: Some("sid-a".into()),
            sub: None,
            before: 100,
        };
        assert_eq!(t.end_matching(&by_sid), 1);
        assert_eq!(a.asked().await, Why::SessionEnded);
        let too_early = Ended::Matching {
            sid: None,
            sub: Some("sub-b".into()),
            before: 99,
        };
        assert_eq!(t.end_matching(&too_early), 0);
        let by_sub = Ended::Matching {
            sid: None,
            sub: Some("sub-b".into()),
            before: 100,
        };
        assert_eq!(t.end_matching(&by_sub), 1);
        assert_eq!(b.asked().await, Why::SessionEnded);
    }

    #[tokio::test]
    async fn sign_out_closes_only_that_sessions_connections() {
        let t = Arc::new(Tunnels::default());
        let a1 = t.register(owner("a"));
        let a2 = t.register(owner("a"));
        let b = t.register(owner("b"));
        let bearer = t.register(None);
        assert_eq!(t.count(), 4);
        assert_eq!(t.end_session("a"), 2);
        assert_eq!(a1.asked().await, Why::SessionEnded);
        assert_eq!(a2.asked().await, Why::SessionEnded);
        let not_yet = tokio::time::timeout(std::time::Duration::from_millis(20), b.asked()).await;
        assert!(not_yet.is_err(), "b was not signed out");
        assert_eq!(t.close_all(), 4);
        assert_eq!(b.asked().await, Why::ShuttingDown);
        assert_eq!(bearer.asked().await, Why::ShuttingDown);
        // The first reason stays.
        assert_eq!(a1.asked().await, Why::SessionEnded);
        drop((a1, a2, b, bearer));
        assert_eq!(t.count(), 0);
    }

    #[tokio::test]
    async fn a_recheck_closes_only_what_the_new_rules_refuse() {
        let t = Arc::new(Tunnels::default());
        let public = |path: &str| Admitted::Public {
            method: axum::http::Method::GET,
            path: path.into(),
            route: None,
        };
        let kept = t.register_admitted(None, Some(public("/kept")));
        let refused = t.register_admitted(None, Some(public("/gone")));
        let unknown = t.register(owner("a"));
        let closed = t.recheck(|a| matches!(a, Admitted::Public { path, .. } if path == "/kept"));
        assert_eq!(closed.len(), 1);
        assert_eq!(refused.asked().await, Why::Revoked);
        for r in [&kept, &unknown] {
            let open = tokio::time::timeout(std::time::Duration::from_millis(20), r.asked()).await;
            assert!(open.is_err(), "left open");
        }
    }
}
