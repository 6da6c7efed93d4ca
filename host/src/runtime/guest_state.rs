//! What each guest store holds: a locked-down WASI context, its resource
//! table, the memory limiter (`guest_memory.rs`), the captured stderr, and
//! the `wasi:http` hooks that admit the guest's outbound requests
//! ([`crate::outbound`]).

use std::time::{Duration, Instant};

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::guest_log::LogBudget;
use super::guest_memory::{HostMemory, MemoryLimiter};
use super::guest_output::GuestOutput;
use crate::outbound::{GuestHttp, HttpGrant};

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
    http_ctx: WasiHttpCtx,
    /// What the current call may send over HTTP.
    http: GuestHttp,
}

impl GuestState {
    /// A sandbox with no filesystem, network, environment, arguments or
    /// stdin; stdout is discarded, the end of each call's stderr kept, and
    /// its lines logged under `log_budget`.
    pub fn new(max_memory_bytes: usize, host_memory: Arc<HostMemory>, log_budget: Arc<LogBudget>) -> Self {
        Self {
            wasi: None,
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(max_memory_bytes, host_memory),
            stderr: GuestOutput::new(log_budget),
            deadline: Instant::now(),
            http_ctx: WasiHttpCtx::new(),
            http: GuestHttp::default(),
        }
    }

    /// Prepares for the next call on this instance, which may take up to
    /// `time_limit` and make HTTP requests as `http` grants (none: no
    /// request at all).
    pub fn start_call(&mut self, time_limit: Duration, http: Option<Arc<HttpGrant>>) {
        self.memory.start_call();
        self.deadline = Instant::now() + time_limit;
        self.stderr.start_call();
        self.http.start_call(http, self.deadline);
    }

    /// Ends the current call: its last line of stderr goes to the log, and
    /// it may send nothing more.
    pub fn finish_call(&mut self) {
        self.stderr.finish_call();
        self.http.finish_call();
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

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http_ctx, table: &mut self.table, hooks: &mut self.http }
    }
}
