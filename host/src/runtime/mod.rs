//! The Wasm runtime: one wasmtime [`Engine`], the linker with the minimal WASI
//! the host grants, compilation and validation of uploaded components, and
//! the call of a guest's `handle`.
//!
//! Instances come from wasmtime's pooling allocator. A call takes an idle
//! instance of the version (or instantiates one from its pre-instantiated
//! component), bounds it in time (epoch interruption) and memory, and gives
//! it back for the next call unless it trapped (idle instances are bounded
//! per version and in all, see [`idle_pool`]). Guests keep no state
//! between calls — the host hands them their state every time — so reusing
//! an instance only saves the cost of making one.
//!
//! The linker grants WASI without files, network sockets or environment,
//! and `wasi:http/outgoing-handler`, whose requests each call's grant
//! admits or refuses (a service's allow-list, see [`crate::outbound`]).
//!
//! Calls are futures that run on the async worker threads: a guest yields
//! to other tasks at every epoch tick until its time limit passes, so a slow
//! or looping guest shares a thread instead of blocking one, and a quick
//! call costs no hand-off to another thread.

mod bindings;
mod compile_worker;
mod compiled_cache;
mod guest_call;
mod guest_log;
mod guest_memory;
mod guest_output;
mod guest_state;
mod idle_pool;
mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Instance, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig, Store,
    Trap, UpdateDeadline,
};

pub use bindings::{Snapshot, WitVersion};
pub use compile_worker::{CompileBudget, run_worker};
pub use compiled_cache::CompiledCache;
pub use guest_call::CompiledService;
use guest_call::WarmInstance;
pub use guest_memory::HostMemory;
use guest_state::GuestState;
use idle_pool::IdleBudget;
pub use replay::{FailedAt, ReplayFailure, Replayed};
use tracing::Instrument;

use crate::domain::ServiceKind;
use crate::outbound::HttpGrant;

/// How often the engine's epoch advances: the granularity of the time limit,
/// and how long a guest runs before it yields to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How many instances may exist at once across all services; more calls at
/// once are refused as overloaded.
const MAX_INSTANCES: u32 = 1000;

/// How many instances may wait idle across all versions: half the slots,
/// so idle instances never keep a version without one from running.
const MAX_IDLE_INSTANCES: usize = MAX_INSTANCES as usize / 2;

/// The most linear memory an instance may hold and still be kept idle
/// for the next call.
const MAX_IDLE_INSTANCE_MEMORY: usize = 8 << 20;

/// How many dropped instances' memories are reset in one go.
const DECOMMIT_BATCH: usize = 64;
/// How much of a dropped instance's linear memory is reset by writing
/// rather than by returning the pages to the system: only the pages the
/// instance wrote, found by `PAGEMAP_SCAN`, so a larger figure costs
/// nothing for an instance that wrote little.
const MEMORY_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// The same for a dropped instance's tables and async stack.
const KEEP_RESIDENT_BYTES: usize = 16 << 10;

/// Limits applied to every invocation.
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    /// Wall-clock time one call of the guest may take.
    pub invocation_timeout: Duration,
    /// The most bytes of linear memory one instance may have.
    pub max_memory_bytes: usize,
    /// The most bytes of linear memory all instances may have together.
    pub max_total_memory_bytes: usize,
}

/// Why an uploaded component was refused.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The bytes are not WebAssembly at all.
    #[error("the upload is not a WebAssembly binary (it does not start with \\0asm)")]
    NotWasm,
    /// A core module instead of a component.
    #[error(
        "the upload is a core WebAssembly module, not a component; build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The component could not be decoded or compiled.
    #[error("the component is invalid: {0}")]
    Invalid(String),
    /// The component exports none of the interfaces the host can run.
    #[error("the component exports none of {expected} (it exports: {found})")]
    MissingExport {
        /// The interfaces the host looked for.
        expected: String,
        /// What the component does export.
        found: String,
    },
    /// The component exports more than one kind's interface.
    #[error("the component exports more than one kind of service ({0}); export exactly one")]
    AmbiguousKind(String),
    /// Compiling the component took more time or memory than allowed.
    #[error("the component could not be compiled within its budget ({0}); it is refused")]
    CompileBudget(String),
    /// The component imports something the host does not provide.
    #[error("the component imports what the host does not provide: {0}")]
    UnsatisfiedImport(String),
}

/// Why a guest call did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest trapped (a panic, an out-of-bounds access, ...).
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// The guest asked for more linear memory than allowed.
    #[error("the guest exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The guest ran past the invocation time limit.
    #[error("the guest ran longer than the invocation time limit of {0:?}")]
    Timeout(Duration),
    /// The guests together hold all the linear memory the host allows;
    /// the call may succeed later.
    #[error("the guests together hold all the memory the host allows them ({0} bytes)")]
    HostMemoryFull(usize),
    /// Every instance slot is in use; the call may succeed later.
    #[error("all {MAX_INSTANCES} instance slots are in use")]
    Busy,
}

/// An instance made by [`Runtime::new_instance`]; dropping it frees its
/// store and gives its memory, tables and stack back to the pool.
#[cfg(feature = "bench-hooks")]
pub struct NewInstance {
    _instance: WarmInstance,
}

/// The shared Wasm engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: GuestLimits,
    idle_budget: Arc<IdleBudget>,
    host_memory: Arc<HostMemory>,
    compiling: CompileBudget,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    /// Components compile under `compiling`'s budget.
    pub fn new(limits: GuestLimits, compiling: CompileBudget) -> anyhow::Result<Self> {
        let mut config = compiler_config();
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_INSTANCES)
            .total_core_instances(MAX_INSTANCES * 8)
            .total_memories(MAX_INSTANCES * 2)
            .total_tables(MAX_INSTANCES * 8)
            .total_stacks(MAX_INSTANCES)
            .max_memory_size(limits.max_memory_bytes)
            // A dropped instance's memory is reset with one madvise per
            // batch of instances instead of one each (and the first pages
            // of its memory, tables and async stack by memset, so the next
            // instance does not fault them back in): instantiation drops
            // from about 15 µs to about 7 µs.
            .decommit_batch_size(DECOMMIT_BATCH)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES)
            .async_stack_keep_resident(KEEP_RESIDENT_BYTES)
            // Linux 6.7 and later report which pages an instance wrote
            // (older kernels fall back to memset and madvise): only those
            // are reset, and the untouched rest of the memory needs no
            // madvise. A call on a new instance (instantiate, first call,
            // drop) drops from 35 to 19 µs for the counter and from 43 to
            // 27 µs for the cart.
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Outbound HTTP, which each call's grant admits (outbound/).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        start_epoch_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(Self {
            engine,
            linker,
            limits,
            idle_budget: IdleBudget::new(MAX_IDLE_INSTANCES),
            host_memory: HostMemory::new(limits.max_total_memory_bytes),
            compiling,
            ticker_stop,
        })
    }

    /// The linear memory the guests hold together.
    pub fn host_memory(&self) -> &Arc<HostMemory> {
        &self.host_memory
    }

    /// The engine, for the compiled-code cache.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and validates uploaded component bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, CompiledService), ComponentError> {
        check_header(bytes)?;
        let component = match &self.compiling.worker {
            Some(_) => {
                let code = compile_worker::compile(&self.compiling, bytes)?;
                // SAFETY: `code` is what our own worker binary's
                // `Engine::precompile_component` just made of `bytes`, with
                // the settings of `compiler_config`; wasmtime checks that
                // it suits this engine.
                unsafe { Component::deserialize(&self.engine, &code) }
                    .map_err(|e| ComponentError::Invalid(format!("the compiled component cannot be loaded: {e:#}")))?
            }
            None => Component::new(&self.engine, bytes).map_err(|e| ComponentError::Invalid(format!("{e:#}")))?,
        };
        let service = self.prepare(&component)?;
        Ok((component, service))
    }

    /// Checks a compiled component's exports and imports and pre-instantiates it.
    /// A component exports one kind's interface, of any WIT version the host
    /// runs (of two versions of the same kind, the newest is used).
    pub fn prepare(&self, component: &Component) -> Result<CompiledService, ComponentError> {
        let ty = component.component_type();
        let exported = |kind| {
            WitVersion::NEWEST_FIRST
                .into_iter()
                .find(|version| {
                    bindings::interface(*version, kind).is_some_and(|name| ty.get_export(&self.engine, name).is_some())
                })
                .map(|version| (kind, version))
        };
        let kinds: Vec<(ServiceKind, WitVersion)> = ServiceKind::ALL.into_iter().filter_map(exported).collect();
        let (kind, version) = match kinds.as_slice() {
            [one] => *one,
            [] => {
                let expected: Vec<String> = ServiceKind::ALL
                    .into_iter()
                    .flat_map(|k| WitVersion::NEWEST_FIRST.into_iter().filter_map(move |v| bindings::interface(v, k)))
                    .map(|name| format!("`{name}`"))
                    .collect();
                let found: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
                let found = if found.is_empty() { "nothing".to_string() } else { found.join(", ") };
                return Err(ComponentError::MissingExport { expected: expected.join(", "), found });
            }
            many => {
                let names: Vec<&str> = many.iter().filter_map(|(k, v)| bindings::interface(*v, *k)).collect();
                return Err(ComponentError::AmbiguousKind(names.join(", ")));
            }
        };
        let pre =
            self.linker.instantiate_pre(component).map_err(|e| ComponentError::UnsatisfiedImport(format!("{e:#}")))?;
        CompiledService::new(pre, kind, version, self.idle_budget.clone()).map_err(|e| {
            let interface = bindings::interface(version, kind).unwrap_or("its");
            ComponentError::Invalid(format!("the {interface} interface has the wrong shape: {e:#}"))
        })
    }

    /// Runs `call` on an instance of `service` bounded in memory and time:
    /// an idle one if the version has one, else a new one. The instance goes
    /// back to the version's idle pool unless the call trapped.
    async fn call<R>(
        &self,
        service: &CompiledService,
        call: impl AsyncFnOnce(&mut Store<GuestState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, GuestError> {
        self.call_guest(service, call).instrument(tracing::debug_span!("guest_call")).await
    }

    /// [`Runtime::call`], in its span.
    async fn call_guest<R>(
        &self,
        service: &CompiledService,
        call: impl AsyncFnOnce(&mut Store<GuestState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, GuestError> {
        let mut warm = match service.take_idle() {
            Some(warm) => warm,
            None => self.instantiate(service).await?,
        };
        self.start_call(&mut warm.store, service.http_grant());
        let called = tokio::time::timeout(self.wall_clock_limit(), call(&mut warm.store, &warm.instance)).await;
        warm.store.data_mut().finish_call();
        match called {
            Ok(Ok(result)) => {
                // An instance that grew large is not kept: its memory is
                // worth more to the other guests than its reuse.
                if warm.store.data().memory.held() <= MAX_IDLE_INSTANCE_MEMORY {
                    service.give_back(warm);
                }
                Ok(result)
            }
            Ok(Err(error)) => Err(self.classify(&warm.store, error)),
            Err(_) => Err(GuestError::Timeout(self.limits.invocation_timeout)),
        }
    }

    /// How long a call (or an instantiation) may take in all. The epoch
    /// stops a guest that runs too long, but not one that waits in the host
    /// (a sleep, a poll), which runs no Wasm: one tick after the time limit,
    /// such a call is dropped, with its store.
    fn wall_clock_limit(&self) -> Duration {
        self.limits.invocation_timeout + EPOCH_TICK
    }

    /// A new instance of `service` in a new store, never called: what a call
    /// pays before the guest runs when the version has no idle instance.
    /// For measurements.
    #[cfg(feature = "bench-hooks")]
    pub async fn new_instance(&self, service: &CompiledService) -> Result<NewInstance, GuestError> {
        self.instantiate(service).await.map(|instance| NewInstance { _instance: instance })
    }

    /// A new instance of `service` in a new store. At every epoch tick of a
    /// call the guest yields to other tasks, until the call's time limit
    /// passes; then it traps (or, if it waits in the host, is dropped).
    async fn instantiate(&self, service: &CompiledService) -> Result<WarmInstance, GuestError> {
        let state =
            GuestState::new(self.limits.max_memory_bytes, self.host_memory.clone(), service.log_budget().clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_callback(|store| {
            Ok(if store.data().past_deadline() { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        self.start_call(&mut store, None);
        let instantiated =
            tokio::time::timeout(self.wall_clock_limit(), service.pre().instantiate_async(&mut store)).await;
        match instantiated {
            Ok(Ok(instance)) => Ok(WarmInstance { store, instance }),
            Ok(Err(error)) if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() => Err(GuestError::Busy),
            Ok(Err(error)) => Err(self.classify(&store, error)),
            Err(_) => Err(GuestError::Timeout(self.limits.invocation_timeout)),
        }
    }

    /// Starts the time limit of the next call into `store` (or of its
    /// instantiation): the epoch callback runs at the next tick and yields
    /// or interrupts from then on. The call may make HTTP requests as
    /// `http` grants.
    fn start_call(&self, store: &mut Store<GuestState>, http: Option<Arc<HttpGrant>>) {
        store.set_epoch_deadline(1);
        store.data_mut().start_call(self.limits.invocation_timeout, http)
    }

    fn classify(&self, store: &Store<GuestState>, error: wasmtime::Error) -> GuestError {
        if store.data().memory.exceeded {
            return GuestError::MemoryLimit(self.limits.max_memory_bytes);
        }
        if store.data().memory.host_full {
            return GuestError::HostMemoryFull(self.limits.max_total_memory_bytes);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => GuestError::Timeout(self.limits.invocation_timeout),
            Some(trap) => {
                let stderr = store.data().stderr();
                if stderr.is_empty() {
                    GuestError::Trap(trap.to_string())
                } else {
                    GuestError::Trap(format!("{trap}: {stderr}"))
                }
            }
            None => GuestError::Trap(format!("{error:#}")),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn start_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
    })?;
    Ok(())
}

/// The engine settings code is compiled for, in the host and in the
/// compile worker alike (only the host adds its instance allocator).
fn compiler_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// Tells a component from a core module or from bytes that are not Wasm.
fn check_header(bytes: &[u8]) -> Result<(), ComponentError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(ComponentError::NotWasm);
    }
    if bytes[4..8] == CORE_VERSION {
        return Err(ComponentError::CoreModule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_modules_from_components() {
        assert!(matches!(check_header(b"hello world"), Err(ComponentError::NotWasm)));
        assert!(matches!(check_header(b"\0asm"), Err(ComponentError::NotWasm)));
        assert!(matches!(check_header(b"\0asm\x01\0\0\0"), Err(ComponentError::CoreModule)));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    fn runtime() -> Runtime {
        let limits = GuestLimits {
            invocation_timeout: Duration::from_secs(1),
            max_memory_bytes: 1 << 20,
            max_total_memory_bytes: 1 << 30,
        };
        Runtime::new(limits, CompileBudget::in_process()).unwrap()
    }

    #[test]
    fn empty_component_is_refused_naming_the_interfaces() {
        let rt = runtime();
        let err = rt.compile(&wat_component()).err().expect("must be refused");
        let text = err.to_string();
        for kind in ServiceKind::ALL {
            for interface in
                WitVersion::NEWEST_FIRST.into_iter().filter_map(|version| bindings::interface(version, kind))
            {
                assert!(text.contains(interface), "{text}");
            }
        }
    }

    /// The smallest valid component: just the preamble, no sections.
    fn wat_component() -> Vec<u8> {
        b"\0asm\x0d\0\x01\0".to_vec()
    }
}
