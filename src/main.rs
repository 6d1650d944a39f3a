//! gatehouse binary: set up the allocator, parse the command line, run, exit with its code.

/// mimalloc instead of glibc malloc: measured with bench/run.sh (see bench/README.md),
/// allocation was ~14% of gatehouse's CPU per proxied request under glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (its position in `mi_option_e`), and its default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_DEFAULT: std::os::raw::c_long = 1000;

/// Free memory goes back to the system at once rather than after mimalloc's default
/// second. A delayed purge only runs when the allocator is next used, so an idle
/// gatehouse kept what its last burst freed: 1,000 WebSockets closed left 19.8 MiB
/// where 9.5 MiB was idle; with this, 10.6 MiB (bench/ws.sh).
fn return_freed_memory_promptly() {
    // SAFETY: both calls only read or write an entry of mimalloc's option table; they
    // run first thing in `main`, before any other thread exists. The default is checked
    // first, so a mimalloc whose option numbering differs is left alone.
    #[allow(unsafe_code)]
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }
}

fn main() -> std::process::ExitCode {
    return_freed_memory_promptly();
    gatehouse::cli::main()
}
