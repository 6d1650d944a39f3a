//! gatehouse binary: set up the allocator, parse the command line, run, exit with its code.

/// mimalloc instead of glibc malloc: measured with bench/run.sh (see bench/README.md),
/// allocation was ~14% of gatehouse's CPU per proxied request under glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse::memory::return_freed_memory_promptly();
    gatehouse::cli::main()
}
