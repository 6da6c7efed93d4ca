//! What each guest store holds: a locked-down WASI context, its resource
//! table, the memory limiter and the captured stderr.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much of a guest's stderr (e.g. a panic message) is kept for the error reply.
const STDERR_CAPACITY: usize = 4096;

/// The per-invocation state of one guest store.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    stderr: MemoryOutputPipe,
    /// When the current call must have finished.
    deadline: Instant,
}

impl GuestState {
    /// A sandbox with no filesystem, network, environment, arguments or
    /// stdin; stdout is discarded, stderr kept in a small buffer.
    pub fn new(max_memory_bytes: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).allow_ip_name_lookup(false).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter { max_bytes: max_memory_bytes, exceeded: false },
            stderr,
            deadline: Instant::now(),
        }
    }

    /// Prepares for the next call on this instance, which may take up to
    /// `time_limit`; answers where stderr stands, for
    /// [`stderr_since`](Self::stderr_since).
    pub fn start_call(&mut self, time_limit: Duration) -> usize {
        self.memory.exceeded = false;
        self.deadline = Instant::now() + time_limit;
        self.stderr.contents().len()
    }

    /// Whether the current call has run past its time limit.
    pub fn past_deadline(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// What the guest wrote to stderr since `start`, lossily decoded and trimmed.
    pub fn stderr_since(&self, start: usize) -> String {
        let contents = self.stderr.contents();
        String::from_utf8_lossy(contents.get(start..).unwrap_or_default()).trim().to_string()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps each linear memory and remembers whether the guest hit the cap.
pub struct MemoryLimiter {
    max_bytes: usize,
    /// Set when the guest asked for more memory than allowed.
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes;
        if !allowed {
            self.exceeded = true;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
