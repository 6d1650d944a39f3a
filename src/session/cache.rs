//! A per-thread cache of opened sessions, so a browser's every request does not pay for
//! base64, AES-GCM, inflating and JSON again. Workers are single-threaded runtimes
//! (`http/workers.rs`), so a thread-local map needs no lock.
//!
//! Safe by construction: the key is the exact sealed cookie value (which authenticates
//! itself), compared in full; validity (expiry, lifetime) is still checked on every
//! request by the auth step; and the map is bounded, cleared when full.
//!
//! The redis store caches what a ticket opened for a moment only (`max_age`), so a
//! session ended on another replica stops working here within that moment even when no
//! message about it arrives; a message that does arrive ([`forget_all`]) ends every
//! cached entry at once.

use super::Session;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most sessions kept per thread (each a few KB).
const MAX_ENTRIES: usize = 1024;
/// The last characters of a sealed value: the random GCM tag, a good hash key.
const TAG_CHARS: usize = 22;

type Key = (u64, [u8; TAG_CHARS]);
/// The exact sealed value, what it opened to, when, and the generation it belongs to.
type Entry = (Box<str>, Arc<Session>, Instant, u64);

/// Bumped whenever a session ends anywhere: entries of an older generation are stale.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every cached session, on every thread, stale (a session ended somewhere).
pub fn forget_all() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The key's tag is random (a GCM tag), so hashing it is just folding its bytes.
type Map = HashMap<Key, Entry, BuildHasherDefault<crate::util::FoldHasher>>;

thread_local! {
    static OPENED: RefCell<Map> = RefCell::new(Map::default());
}

fn key(store: u64, sealed: &str) -> Option<Key> {
    sealed
        .as_bytes()
        .last_chunk::<TAG_CHARS>()
        .map(|tag| (store, *tag))
}

/// The session opened earlier from exactly `sealed` by store `store`, no older than
/// `max_age` when given.
pub fn get(store: u64, sealed: &str, max_age: Option<Duration>) -> Option<Arc<Session>> {
    let key = key(store, sealed)?;
    let generation = GENERATION.load(Ordering::Acquire);
    let found = OPENED.with(|m| {
        m.borrow()
            .get(&key)
            .filter(|(s, _, at, g)| {
                &**s == sealed && *g == generation && max_age.map_or(true, |max| at.elapsed() < max)
            })
            .map(|(_, session, _, _)| Arc::clone(session))
    });
    crate::metrics::session_cache(found.is_some());
    found
}

/// The current generation: read it before fetching what [`put`] will remember, so a
/// session that ends meanwhile is never remembered as current.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Remembers that `sealed` opens to `session`, as of `generation`.
pub fn put(store: u64, sealed: &str, session: &Arc<Session>, generation: u64) {
    let Some(key) = key(store, sealed) else {
        return;
    };
    OPENED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(
            key,
            (
                sealed.into(),
                Arc::clone(session),
                Instant::now(),
                generation,
            ),
        );
    });
}
