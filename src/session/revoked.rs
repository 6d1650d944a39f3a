//! Sessions ended before their time on this replica: by sign-out (the session's id) and
//! by back-channel logout (the sessions with the provider's `sid`, or of a `sub`, that
//! began before the logout). The cookie store's only way to end a session it cannot reach; each
//! entry is kept as long as a session it matches could still live, then dropped.
//!
//! Checked on every request with a session, so the empty case is one atomic load.

use super::{Ended, Session};
use crate::util::now_secs;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Most entries of each kind; beyond it the soonest-expiring are dropped first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
struct Lists {
    /// Session id -> kept until.
    ids: HashMap<String, u64>,
    /// Provider session id -> (sessions that began at or before this time end, kept until).
    sids: HashMap<String, (u64, u64)>,
    /// Subject -> (sessions that began at or before this time end, kept until).
    subs: HashMap<String, (u64, u64)>,
    /// Logout tokens seen (issuer and `jti`) -> kept until.
    jtis: HashMap<String, u64>,
}

/// The revocation list.
#[derive(Default)]
pub struct Revocations {
    any: AtomicBool,
    lists: Mutex<Lists>,
}

impl Revocations {
    /// Remembers `ended` until `until` (Unix seconds).
    pub fn add(&self, ended: &Ended, until: u64) {
        let Ok(mut l) = self.lists.lock() else {
            return;
        };
        let now = now_secs();
        let prune = |m: &mut HashMap<String, u64>| {
            m.retain(|_, u| *u > now);
            m.len() < MAX_ENTRIES
        };
        match ended {
            Ended::Sessions(ids) => {
                if prune(&mut l.ids) {
                    for id in ids {
                        l.ids.insert(id.clone(), until);
                    }
                }
            }
            Ended::Matching { sid, sub, before } => {
                let (map, key) = match (sid, sub) {
                    (Some(sid), _) => (&mut l.sids, sid),
                    (None, Some(sub)) => (&mut l.subs, sub),
                    (None, None) => return,
                };
                map.retain(|_, (_, u)| *u > now);
                if map.len() < MAX_ENTRIES {
                    let e = map.entry(key.clone()).or_insert((0, until));
                    *e = (e.0.max(*before), e.1.max(until));
                }
            }
        }
        self.any.store(true, Ordering::Release);
    }

    /// True the first time `key` is seen before `until`; false for a replay (and when
    /// the list is full: fail closed).
    pub fn first_use(&self, key: &str, until: u64) -> bool {
        let Ok(mut l) = self.lists.lock() else {
            return false;
        };
        let now = now_secs();
        if l.jtis.get(key).is_some_and(|u| *u > now) {
            return false;
        }
        l.jtis.retain(|_, u| *u > now);
        if l.jtis.len() >= MAX_ENTRIES {
            return false;
        }
        l.jtis.insert(key.to_string(), until);
        true
    }

    /// Whether `session` was ended here.
    pub fn ended(&self, session: &Session) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let Ok(l) = self.lists.lock() else {
            // A poisoned lock: fail closed.
            return true;
        };
        let now = now_secs();
        let live = |u: Option<&u64>| u.is_some_and(|u| *u > now);
        let begun_before = |e: Option<&(u64, u64)>| {
            e.is_some_and(|(before, until)| *until > now && session.created_at <= *before)
        };
        live(l.ids.get(&session.id))
            || session
                .sid
                .as_ref()
                .is_some_and(|s| begun_before(l.sids.get(s)))
            || begun_before(l.subs.get(&session.identity.sub))
    }
}
