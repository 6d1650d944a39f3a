//! The allocator's two knobs that gatehouse turns, through mimalloc's C API: the only
//! `unsafe` code in the crate. Freed memory goes back to the system within 100 ms, and a worker
//! that has just seen many connections end hands back what its thread heap still holds.
//! Each was measured with bench/ws.sh (1,000 WebSockets opened, then closed).

/// mimalloc v3's `mi_option_purge_delay` (its position in `mi_option_e`), and its default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_DEFAULT: std::os::raw::c_long = 1000;

/// How long (ms) freed memory waits before it goes back to the system.
///
/// mimalloc's default is a second. A delayed purge only runs when the allocator is
/// next used, so an idle gatehouse kept what its last burst freed: 1,000 WebSockets
/// closed left 19.8 MiB where 9.5 MiB was idle. At 0 every page that empties is
/// handed back at once. That costs a `madvise` and then page faults when the page is
/// used again: 0.25-0.29 minor faults per proxied request at 256 connections, against
/// 0.03 at 100 ms, and a few per cent of requests per second. At 100 ms the purges
/// ride on the traffic that frees the memory, and the worker's tidy-up after a wave
/// of closed connections (`collect_this_thread`) hands back the rest: the 1,000
/// WebSockets closed leave 10.6 MiB against 10.0 idle, 10 s later.
const PURGE_DELAY_MS: std::os::raw::c_long = 100;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`] (an explicit `MIMALLOC_PURGE_DELAY`
/// in the environment wins). Call first thing in `main`.
pub fn return_freed_memory_promptly() {
    // SAFETY: both calls only read or write an entry of mimalloc's option table; they
    // run first thing in `main`, before any other thread exists. The default is checked
    // first, so a mimalloc whose option numbering differs is left alone.
    #[allow(unsafe_code)]
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

/// Hands the calling thread's free pages back to the system, including those in pages
/// that a wave of connections left only partly used. Without it, 1,000 WebSockets
/// closed left RSS 12 % above idle for good; with it (`http/workers.rs` calls it after
/// such a wave), 4 %. It walks the thread's heap: call it now and then, not per request.
pub fn collect_this_thread() {
    // SAFETY: `mi_collect` has no preconditions: it only tidies the calling thread's
    // heap (and, when gatehouse is not using mimalloc, an unused one).
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
