//! Sessions ended before their time on this replica: by sign-out (the session's id) and
//! by back-channel logout (the sessions with the provider's `sid`, or of a `sub`, that
//! began before the logout). The cookie store's only way to end a session it cannot reach; each
//! entry is kept as long as a session it matches could still live, then dropped. Each kind
//! holds [`MAX_ENTRIES`] at most: a new entry is always kept, displacing the one closest to
//! expiring by itself, so a full list (someone signing in and out very many times) never
//! drops the sign-out or logout that just happened.
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
pub struct Revocations {
    any: AtomicBool,
    lists: Mutex<Lists>,
    /// Most entries of each kind ([`MAX_ENTRIES`]).
    max: usize,
}

impl Default for Revocations {
    fn default() -> Revocations {
        Revocations::with_max(MAX_ENTRIES)
    }
}

/// Makes room in `map` for `key`: drops what expired, then, while still full, the entry
/// that expires soonest (`until_of`). A new revocation is always kept: the one it
/// displaces is the closest to ending by itself.
fn make_room<V>(
    map: &mut HashMap<String, V>,
    key: &str,
    max: usize,
    now: u64,
    until_of: impl Fn(&V) -> u64,
) {
    if map.contains_key(key) {
        return;
    }
    if map.len() >= max {
        map.retain(|_, v| until_of(v) > now);
    }
    while map.len() >= max.max(1) {
        let Some(soonest) = map
            .iter()
            .min_by_key(|(_, v)| until_of(v))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        map.remove(&soonest);
    }
}

impl Revocations {
    fn with_max(max: usize) -> Revocations {
        Revocations {
            any: AtomicBool::new(false),
            lists: Mutex::new(Lists::default()),
            max,
        }
    }

    /// Remembers `ended` until `until` (Unix seconds).
    pub fn add(&self, ended: &Ended, until: u64) {
        let Ok(mut l) = self.lists.lock() else {
            return;
        };
        let now = now_secs();
        match ended {
            Ended::Sessions(ids) => {
                for id in ids {
                    make_room(&mut l.ids, id, self.max, now, |u| *u);
                    let e = l.ids.entry(id.clone()).or_insert(until);
                    *e = (*e).max(until);
                }
            }
            Ended::Matching { sid, sub, before } => {
                let (map, key) = match (sid, sub) {
                    (Some(sid), _) => (&mut l.sids, sid),
                    (None, Some(sub)) => (&mut l.subs, sub),
                    (None, None) => return,
                };
                make_room(map, key, self.max, now, |(_, u)| *u);
                let e = map.entry(key.clone()).or_insert((0, until));
                *e = (e.0.max(*before), e.1.max(until));
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
        if l.jtis.len() >= self.max {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn session(id: &str, sid: &str, sub: &str) -> Session {
        Session {
            id: id.into(),
            identity: Identity {
                sub: sub.into(),
                ..Identity::default()
            },
            id_token: String::new(),
            refresh_token: None,
            access_token: None,
            expires_at: now_secs() + 600,
            created_at: now_secs() - 10,
            sid: Some(sid.into()),
            seen: 0,
            ticket: None,
            values: Default::default(),
            claims: Default::default(),
        }
    }

    /// A full list (someone signed in and out 100,000 times within a session lifetime)
    /// dropped every later sign-out on the floor: the signed-out cookie kept working on
    /// this replica, and the caller was told it had ended.
    #[test]
    fn a_sign_out_is_kept_when_the_list_is_full() {
        let r = Revocations::default();
        let until = now_secs() + 3600;
        let filler: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("filler-{i}")).collect();
        r.add(&Ended::Sessions(filler), until);
        let victim = session("victim", "op-victim", "victim");
        r.add(&Ended::Sessions(vec![victim.id.clone()]), until + 1);
        assert!(r.ended(&victim), "the signed-out session still opens");
    }

    /// The same for back-channel logouts (by `sid`, by `sub`) and sign-out everywhere:
    /// the newest is kept, the one closest to expiring by itself makes room.
    #[test]
    fn every_kind_keeps_the_newest_and_drops_the_soonest_to_expire() {
        let r = Revocations::with_max(3);
        let t = now_secs() + 1000;
        for i in 0..3u64 {
            r.add(&Ended::Sessions(vec![format!("id-{i}")]), t + i);
            r.add(
                &Ended::Matching {
                    sid: Some(format!("sid-{i}")),
                    sub: None,
                    before: now_secs(),
                },
                t + i,
            );
            r.add(
                &Ended::Matching {
                    sid: None,
                    sub: Some(format!("sub-{i}")),
                    before: now_secs(),
                },
                t + i,
            );
        }
        r.add(&Ended::Sessions(vec!["id-new".into()]), t + 10);
        r.add(
            &Ended::Matching {
                sid: Some("sid-new".into()),
                sub: None,
                before: now_secs(),
            },
            t + 10,
        );
        r.add(
            &Ended::Matching {
                sid: None,
                sub: Some("sub-new".into()),
                before: now_secs(),
            },
            t + 10,
        );
        assert!(r.ended(&session("id-new", "-", "-")));
        assert!(r.ended(&session("-", "sid-new", "-")));
        assert!(r.ended(&session("-", "-", "sub-new")));
        // The soonest to expire made room; the others are still there.
        assert!(!r.ended(&session("id-0", "-", "-")));
        assert!(!r.ended(&session("-", "sid-0", "-")));
        assert!(!r.ended(&session("-", "-", "sub-0")));
        for i in 1..3 {
            assert!(r.ended(&session(&format!("id-{i}"), "-", "-")));
            assert!(r.ended(&session("-", &format!("sid-{i}"), "-")));
            assert!(r.ended(&session("-", "-", &format!("sub-{i}"))));
        }
        // Updating an entry already kept displaces nothing.
        r.add(&Ended::Sessions(vec!["id-new".into()]), t + 20);
        assert!(r.ended(&session("id-1", "-", "-")));
    }
}
