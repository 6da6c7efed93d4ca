//! The `wasmstate` binary: the server and its command-line client.

use clap::Parser;
use mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system over time, so the host's
/// memory falls back after a burst of active entities passivates (glibc's
/// malloc keeps most of it in per-thread arenas), and it is faster under
/// the host's many small allocations.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    // Guest calls run on the blocking pool. They are CPU-bound, so a few
    // dozen threads are plenty; idle ones leave soon, taking their
    // allocator caches with them.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()?
        .block_on(wasmstate::cli::Cli::parse().run())
}
