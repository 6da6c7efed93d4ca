//! What each guest store holds: a locked-down WASI context, its resource
//! table, the memory limiter and the captured stderr.

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::guest_output::GuestOutput;

/// The per-invocation state of one guest store.
pub struct GuestState {
    /// Made at the guest's first WASI call: most calls make none, and
    /// making one costs about a tenth of an instantiation.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    stderr: GuestOutput,
    /// When the current call must have finished.
    deadline: Instant,
}

impl GuestState {
    /// A sandbox with no filesystem, network, environment, arguments or
    /// stdin; stdout is discarded, and the end of each call's stderr kept.
    pub fn new(max_memory_bytes: usize) -> Self {
        Self {
            wasi: None,
            table: ResourceTable::new(),
            memory: MemoryLimiter { max_bytes: max_memory_bytes, exceeded: false },
            stderr: GuestOutput::default(),
            deadline: Instant::now(),
        }
    }

    /// Prepares for the next call on this instance, which may take up to
    /// `time_limit`.
    pub fn start_call(&mut self, time_limit: Duration) {
        self.memory.exceeded = false;
        self.deadline = Instant::now() + time_limit;
        self.stderr.start_call();
    }

    /// Whether the current call has run past its time limit.
    pub fn past_deadline(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// What the guest wrote to stderr during the current call (its end, if
    /// it wrote a lot), lossily decoded and trimmed.
    pub fn stderr(&self) -> String {
        self.stderr.current_call()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let stderr = &self.stderr;
        let ctx = self
            .wasi
            .get_or_insert_with(|| WasiCtx::builder().stderr(stderr.clone()).allow_ip_name_lookup(false).build());
        WasiCtxView { ctx, table: &mut self.table }
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
