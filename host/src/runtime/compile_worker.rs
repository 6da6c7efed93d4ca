//! Compiling an uploaded component under a budget of time and memory: in a
//! child process (`wasmstate compile-worker`), so a component made to be
//! costly to compile — huge functions, say — is refused with a clear error
//! instead of holding the host's memory and a core for a minute. The worker
//! precompiles with the host's engine settings and hands the machine code
//! back on stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ComponentError, compiler_config};

/// How a component is compiled.
#[derive(Debug, Clone)]
pub struct CompileBudget {
    /// The binary whose `compile-worker` command compiles; `None` compiles
    /// in this process, with no budget (for embedders and measurements).
    pub worker: Option<PathBuf>,
    /// The longest a compilation may take.
    pub max_time: Duration,
    /// The most memory a compilation may use.
    pub max_memory: usize,
}

impl CompileBudget {
    /// Compilation in this process, unbounded.
    pub fn in_process() -> Self {
        Self { worker: None, max_time: Duration::MAX, max_memory: usize::MAX }
    }
}

/// How often the host looks whether the worker is done.
const POLL: Duration = Duration::from_millis(5);

/// The worker's exit code for a component that is not valid.
const INVALID: i32 = 2;

/// The worker's exit code when it failed within its memory budget.
const OUT_OF_BUDGET: i32 = 3;

/// Compiles `bytes` in a worker process within `budget`; answers the
/// precompiled machine code.
pub(super) fn compile(budget: &CompileBudget, bytes: &[u8]) -> Result<Vec<u8>, ComponentError> {
    let worker = budget.worker.as_ref().expect("a worker to compile in");
    let mut child = Command::new(worker)
        .arg("compile-worker")
        .arg("--max-memory")
        .arg(budget.max_memory.to_string())
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ComponentError::Invalid(format!("cannot start the compiler: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = bytes.to_vec();
    let feeding = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reading = std::thread::spawn(move || {
        let mut code = Vec::new();
        stdout.read_to_end(&mut code).map(|_| code)
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let complaining = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > budget.max_time => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ComponentError::CompileBudget(format!("it took longer than {:?}", budget.max_time)));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(ComponentError::Invalid(format!("cannot wait for the compiler: {e}"))),
        }
    };
    let _ = feeding.join();
    let code = reading.join().ok().and_then(Result::ok).unwrap_or_default();
    let said = complaining.join().unwrap_or_default();
    match status.code() {
        Some(0) => Ok(code),
        Some(INVALID) => Err(ComponentError::Invalid(said.trim().to_string())),
        _ => Err(ComponentError::CompileBudget(format!("it needed more than {} bytes of memory", budget.max_memory))),
    }
}

/// `wasmstate compile-worker`: reads a component from stdin, compiles it
/// with at most `max_memory` bytes of memory, and writes the precompiled
/// code to stdout. Exits with [`INVALID`] for a component that does not
/// compile, printing why.
pub fn run_worker(max_memory: usize) -> ! {
    // Past the budget, anything may fail, a thread that cannot start
    // included: stop at once, rather than unwind into code that waits for
    // threads that never started (which hung the worker until the host's
    // time budget killed it).
    std::panic::set_hook(Box::new(|_| {
        const MESSAGE: &[u8] = b"the compilation failed within its budget\n";
        // SAFETY: write(2) reads the static message; _exit ends the
        // process without running anything else, which is the point.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::_exit(OUT_OF_BUDGET)
        }
    }));
    let limit = libc::rlimit { rlim_cur: max_memory as libc::rlim_t, rlim_max: max_memory as libc::rlim_t };
    // SAFETY: setrlimit reads the struct we own; lowering our own limit.
    unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) };
    let mut bytes = Vec::new();
    if std::io::stdin().read_to_end(&mut bytes).is_err() {
        std::process::exit(1);
    }
    let compiled = wasmtime::Engine::new(&compiler_config()).and_then(|engine| engine.precompile_component(&bytes));
    match compiled {
        Ok(code) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(&code).and_then(|()| stdout.flush()).is_err() {
                std::process::exit(1);
            }
            std::process::exit(0)
        }
        Err(error) => {
            eprintln!("{error:#}");
            std::process::exit(INVALID)
        }
    }
}
