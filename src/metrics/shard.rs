//! The per-thread shards every recording goes to, and their sum at scrape time.
//!
//! Each thread that records gets a shard of its own the first time it records: a fixed
//! array of `AtomicU64` slots, one per series (`layout.rs` says which is which), written
//! only by that thread. A recording is a thread-local read, a relaxed load and a relaxed
//! store to a cache line no other thread writes: no lock prefix, no contention, no
//! allocation. The scrape reads every shard with relaxed loads and adds them up; a value
//! it reads may be a recording behind, never torn (64-bit atomics) and never smaller than
//! one read before (each slot only grows, with one writer).
//!
//! Shards are never freed: a thread that ends gives its shard back to a pool, and the next
//! new thread takes it over and keeps adding to it, so what the old thread counted stays
//! counted and the number of shards is bounded by the most threads ever alive at once
//! (tokio's blocking pool comes and goes). The pool's mutex orders the old thread's last
//! stores before the new thread's first load, so one writer at a time holds.

use super::layout::SLOTS;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One thread's counters, on cache lines of their own.
#[repr(align(128))]
pub(super) struct Shard {
    slots: [AtomicU64; SLOTS],
}

impl Shard {
    fn new() -> Shard {
        Shard {
            slots: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    /// Adds `n` to slot `i`. Only the owning thread writes a shard, so a load and a store
    /// need no read-modify-write. An index out of range is a bug in `layout.rs`: ignored,
    /// never a panic on a request path.
    #[inline]
    pub(super) fn add(&self, i: usize, n: u64) {
        if let Some(slot) = self.slots.get(i) {
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }
}

/// Every shard ever made, for the scrape; and those whose thread ended, for reuse.
struct Registry {
    all: Vec<&'static Shard>,
    free: Vec<&'static Shard>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    all: Vec::new(),
    free: Vec::new(),
});

/// Gives the shard back to the pool when its thread ends.
struct Lease(&'static Shard);

impl Drop for Lease {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(None));
        if let Ok(mut r) = REGISTRY.lock() {
            r.free.push(self.0);
        }
    }
}

thread_local! {
    /// This thread's shard, once it has recorded (a const thread-local: no lazy-init
    /// check and no destructor, so reading it costs one TLS-relative load).
    static CURRENT: Cell<Option<&'static Shard>> = const { Cell::new(None) };
    /// Returns the shard to the pool at thread exit.
    static LEASE: RefCell<Option<Lease>> = const { RefCell::new(None) };
}

/// This thread's shard, claimed on its first recording.
#[inline]
pub(super) fn with(f: impl FnOnce(&Shard)) {
    if !super::on() {
        return;
    }
    match CURRENT.with(Cell::get) {
        Some(s) => f(s),
        None => {
            if let Some(s) = claim() {
                f(s)
            }
        }
    }
}

/// Takes a shard from the pool, or makes one; `None` only if the registry's lock was
/// poisoned (the recording is dropped rather than panicking).
#[cold]
fn claim() -> Option<&'static Shard> {
    let shard = {
        let mut r = REGISTRY.lock().ok()?;
        match r.free.pop() {
            Some(s) => s,
            None => {
                let s: &'static Shard = Box::leak(Box::new(Shard::new()));
                r.all.push(s);
                s
            }
        }
    };
    CURRENT.with(|c| c.set(Some(shard)));
    // A thread already tearing down its thread-locals keeps the shard for good: it stays
    // counted in the sum, it just never returns to the pool (rare, and bounded).
    let _ = LEASE.try_with(|l| *l.borrow_mut() = Some(Lease(shard)));
    Some(shard)
}

/// Every slot summed over all shards.
pub(super) fn sum() -> Vec<u64> {
    let mut total = vec![0u64; SLOTS];
    let shards: Vec<&'static Shard> = match REGISTRY.lock() {
        Ok(r) => r.all.clone(),
        Err(_) => return total,
    };
    for s in shards {
        for (t, slot) in total.iter_mut().zip(s.slots.iter()) {
            *t = t.wrapping_add(slot.load(Ordering::Relaxed));
        }
    }
    total
}

/// How many shards exist (tests: bounded by the threads alive at once).
#[cfg(test)]
pub(super) fn count() -> usize {
    REGISTRY.lock().map(|r| r.all.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts recorded on many threads, each into its own shard, add up exactly, and the
    /// shards of ended threads are reused instead of piling up.
    #[test]
    fn shards_of_many_threads_sum_exactly_and_are_reused() {
        // A slot no other test records into.
        let slot = super::super::layout::TEST_SLOT;
        super::super::enable();
        let before = sum()[slot];
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        with(|s| s.add(slot, 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sum()[slot] - before, 80_000);
        let shards = count();
        for _ in 0..20 {
            std::thread::spawn(move || with(|s| s.add(slot, 2)))
                .join()
                .unwrap();
        }
        assert_eq!(sum()[slot] - before, 80_040, "ended threads' counts stay");
        assert!(
            count() <= shards + 1,
            "one thread at a time reuses a pooled shard: {} shards after, {shards} before",
            count()
        );
    }
}
