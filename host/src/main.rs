//! The `wasmstate` binary: the server and its command-line client.

use std::cell::Cell;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mimalloc::MiMalloc;
use wasmstate::Cli;

/// mimalloc: faster than glibc's malloc under the host's many small
/// allocations, and it can give freed memory back to the system (see
/// [`return_freed_memory`]), so the host's memory falls back after a burst of
/// active entities passivates.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// The least time between two returns of freed memory by one worker thread.
const RETURN_MEMORY_EVERY: Duration = Duration::from_secs(1);

/// Runs the command line; a failure is printed as one line on stderr
/// (its causes after colons), never as a backtrace, and exits with 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Guests run on the async workers; the blocking pool only reads the
    // journal (cold entities, event pages), so a few threads are plenty.
    // Idle ones leave soon, taking their allocator caches with them.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .thread_keep_alive(Duration::from_secs(2))
        .on_thread_park(return_freed_memory)
        .build()?
        .block_on(cli.run())
}

/// Called by a worker thread about to go idle: at most every
/// [`RETURN_MEMORY_EVERY`], gives the memory freed on this thread (and the
/// process's purgeable free memory) back to the system. mimalloc frees
/// lazily, from threads that allocate; without this, the pages freed when
/// thousands of entities passivate would stay resident in the workers'
/// heaps for as long as the server is quiet.
fn return_freed_memory() {
    thread_local! {
        static LAST_RETURN: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if LAST_RETURN.get().is_some_and(|last| now - last < RETURN_MEMORY_EVERY) {
        return;
    }
    LAST_RETURN.set(Some(now));
    // SAFETY: mi_collect has no preconditions; it works on the calling
    // thread's heap and the process's arenas.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
