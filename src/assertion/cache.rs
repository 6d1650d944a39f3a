//! A per-thread cache of signed assertions, so a request whose assertion was signed
//! before costs a lookup. Workers are single-threaded runtimes (`http/workers.rs`), so
//! a thread-local map needs no lock.
//!
//! An entry is one session's assertion under one settings and policy value for one
//! audience. The session is named by its id, the end of its token (the signature of the
//! ID token, or of a bearer token: random, and different after every refresh) and when
//! its tokens expire (a refresh that keeps the ID token changes that), so
//! a session opened again (the redis store reopens each second; the cookie store's
//! per-thread cache may drop it) finds its assertion, while new tokens sign anew. Every
//! field is compared in full; the hash only finds the slot. Bounded: cleared when full.
//!
//! Signing costs far more than the rest of a request (an RSA key: milliseconds), and a
//! client picks two parts of the key: the audience (its `Host`, unless
//! `assertion_audience` is set) and, as a bearer-token client, the token. So each
//! session has a budget per thread ([`spend`]): at most [`MAX_SIGNATURES`] signatures
//! per renewal period, many more than its audiences, a refresh and a reload need.

use super::Signed;
use axum::http::HeaderValue;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Most assertions kept per thread (each a few hundred bytes).
const MAX_ENTRIES: usize = 4096;
/// How much of the token's end names it: a signature's last bytes.
const TAIL: usize = 32;
/// Most signatures one session costs a thread per renewal period (two thirds of the
/// assertion's lifetime, when a cached assertion is signed again).
pub(super) const MAX_SIGNATURES: u32 = 32;

/// What an assertion was signed for.
pub(super) struct Key<'a> {
    /// (settings id, policy id).
    pub(super) under: (u64, u64),
    pub(super) session: &'a str,
    pub(super) token: &'a str,
    /// When the session's tokens expire: changes with every refresh, also one that
    /// brings no new ID token.
    pub(super) expires_at: u64,
    pub(super) audience: &'a str,
}

impl Key<'_> {
    fn tail(&self) -> &[u8] {
        let t = self.token.as_bytes();
        &t[t.len().saturating_sub(TAIL)..]
    }

    fn hash(&self) -> u64 {
        let mut h = crate::util::FoldHasher::default();
        h.write_u64(self.under.0);
        h.write_u64(self.under.1);
        h.write_u64(self.expires_at);
        for part in [
            self.session.as_bytes(),
            self.tail(),
            self.audience.as_bytes(),
        ] {
            h.write(part);
            h.write_u64(part.len() as u64);
        }
        h.finish()
    }
}

struct Entry {
    under: (u64, u64),
    expires_at: u64,
    session: Box<str>,
    tail: Box<[u8]>,
    audience: Box<str>,
    signed: Signed,
}

impl Entry {
    fn is(&self, k: &Key<'_>) -> bool {
        self.under == k.under
            && self.expires_at == k.expires_at
            && *self.session == *k.session
            && *self.tail == *k.tail()
            && *self.audience == *k.audience
    }
}

type Map = HashMap<u64, Entry, BuildHasherDefault<crate::util::FoldHasher>>;

/// A session's signatures in the current period.
struct Budget {
    since: u64,
    spent: u32,
}

thread_local! {
    static SIGNED: RefCell<Map> = RefCell::new(Map::default());
    static SPENT: RefCell<HashMap<Box<str>, Budget>> = RefCell::new(HashMap::new());
}

/// Whether `session` may cost this thread a signature now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Spend {
    Yes,
    /// The budget of this period was spent just now (say so once).
    Exhausted,
    /// Still spent.
    No,
}

/// Counts a signature against `session`'s budget for the `period` (seconds) that began
/// with its first signature.
pub(super) fn spend(session: &str, now: u64, period: u64) -> Spend {
    SPENT.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(b) = m.get_mut(session) {
            if now >= b.since.saturating_add(period) {
                *b = Budget {
                    since: now,
                    spent: 0,
                };
            }
            return match b.spent {
                n if n < MAX_SIGNATURES => {
                    b.spent += 1;
                    Spend::Yes
                }
                n if n == MAX_SIGNATURES => {
                    b.spent += 1;
                    Spend::Exhausted
                }
                _ => Spend::No,
            };
        }
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, b| now < b.since.saturating_add(period));
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(
            session.into(),
            Budget {
                since: now,
                spent: 1,
            },
        );
        Spend::Yes
    })
}

/// The assertion signed earlier for `k`, while less than two thirds of its life passed.
pub(super) fn get(k: &Key<'_>, now: u64) -> Option<HeaderValue> {
    SIGNED.with(|m| {
        m.borrow()
            .get(&k.hash())
            .filter(|e| e.is(k) && now < e.signed.renew_at)
            .map(|e| e.signed.value.clone())
    })
}

pub(super) fn put(k: &Key<'_>, signed: Signed) {
    SIGNED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(
            k.hash(),
            Entry {
                under: k.under,
                expires_at: k.expires_at,
                session: k.session.into(),
                tail: k.tail().into(),
                audience: k.audience.into(),
                signed,
            },
        );
    });
}

/// How many assertions this thread keeps (tests).
#[cfg(test)]
pub(super) fn len() -> usize {
    SIGNED.with(|m| m.borrow().len())
}

/// How many sessions' budgets this thread keeps (tests).
#[cfg(test)]
pub(super) fn budgets() -> usize {
    SPENT.with(|m| m.borrow().len())
}
