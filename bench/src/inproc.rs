//! In-process measurements through the `wasmstate` library: the guest call
//! and instantiation (4c), and the ceilings of the headline scenario:
//! storage (6a), HTTP (6b) and Wasm (6c).

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;
use wasmstate::bench_hooks::{
    Call, CommandMeta, Commit, CompileBudget, CompiledService, EntityStore, EntityWrite, GuestLimits, Metrics,
    RedbJournal, Runtime, Snapshot, StateChange, StoredSnapshot,
};

use crate::load::{self, Load};
use crate::report::{Report, Row, Samples, Timing, fmt_dur};
use crate::servers::{CARTS, CONNECTIONS, Guests};

/// The host's default guest limits (`wasmstate serve` without flags).
const LIMITS: GuestLimits = GuestLimits {
    invocation_timeout: Duration::from_secs(5),
    max_memory_bytes: 64 << 20,
    max_total_memory_bytes: usize::MAX,
};

/// A cart event as the cart guest emits it, and a cart state with five lines.
const CART_EVENT: &[u8] = br#"{"type":"ItemAdded","item":{"productId":"P00000001","name":"Product 1","quantity":1}}"#;

fn cart_state() -> Vec<u8> {
    let items: Vec<String> =
        (0..5).map(|p| format!(r#"{{"productId":"P{p:08}","name":"Product {p}","quantity":{}}}"#, 100 + p)).collect();
    format!(r#"{{"items":[{}]}}"#, items.join(",")).into_bytes()
}

/// The host's runtime with both example entities compiled.
pub struct Guest {
    /// The runtime, configured as `wasmstate serve` configures it.
    pub runtime: Arc<Runtime>,
    /// The compiled cart.
    pub cart: CompiledService,
    /// The compiled counter.
    pub counter: CompiledService,
}

impl Guest {
    /// Builds the runtime and compiles both guests, timing the compilations.
    pub fn new(guests: &Guests, report: &mut Report) -> anyhow::Result<Self> {
        let runtime = Arc::new(Runtime::new(LIMITS, CompileBudget::in_process())?);
        let mut compile_cart = Samples::default();
        let mut cart = None;
        for _ in 0..3 {
            let start = Instant::now();
            let (_, entity) = runtime.compile(&guests.cart)?;
            compile_cart.push(start.elapsed());
            cart = Some(entity);
        }
        report.timings.push(Timing::new("4c", "Runtime::compile of the cart component", compile_cart));
        let (_, counter) = runtime.compile(&guests.counter)?;
        Ok(Self { runtime, cart: cart.expect("compiled"), counter })
    }

    /// The cart's AddItem on a five-line snapshot (on `cart`, the cart
    /// itself or the cart without idle instances): what a headline call does.
    pub async fn add_item(&self, cart: &CompiledService) -> anyhow::Result<()> {
        let snapshot = Snapshot::new(1000, 1, cart_state());
        let command = Call {
            service: "cart".into(),
            entity: "cart-0001".into(),
            command: "AddItem".into(),
            payload: br#"{"productId":"P00000002","name":"Product 2","quantity":1}"#.to_vec(),
        };
        let effects = self
            .runtime
            .handle_event_sourced(cart, Some(&snapshot), Vec::new(), command, CommandMeta::now(1, None))
            .await?;
        let one_event =
            effects.is_ok_and(|e| matches!(&e.state, StateChange::Events { events, .. } if events.len() == 1));
        anyhow::ensure!(one_event, "AddItem did not emit one event");
        Ok(())
    }
}

fn get() -> Call {
    Call { service: "counter".into(), entity: "c".into(), command: "Get".into(), payload: b"{}".to_vec() }
}

/// Times `f` `n` times after `n / 10` unmeasured calls.
async fn time_n(n: usize, mut f: impl AsyncFnMut() -> anyhow::Result<()>) -> anyhow::Result<Samples> {
    for _ in 0..n / 10 {
        f().await?;
    }
    let mut samples = Samples::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f().await?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

/// 4c: the guest call through `Runtime::handle_event_sourced` on a warm
/// instance and on a new one, instantiation and the drop of a new instance
/// through the host's runtime (one thread, then every core at once), and a
/// `spawn_blocking` round trip.
pub async fn guest_call(guest: &Guest, report: &mut Report) -> anyhow::Result<()> {
    const N: usize = 2_000;
    let (runtime, counter) = (&guest.runtime, &guest.counter);
    let get_counter = async |counter: &CompiledService| {
        let reply = runtime.handle_event_sourced(counter, None, Vec::new(), get(), CommandMeta::now(0, None)).await?;
        anyhow::ensure!(reply.is_ok(), "Get failed");
        Ok(())
    };
    let samples = time_n(N, async || get_counter(counter).await).await?;
    report.timings.push(Timing::new("4c", "handle_event_sourced, counter Get (warm instance)", samples));
    let samples = time_n(N, async || guest.add_item(&guest.cart).await).await?;
    report.timings.push(Timing::new("4c", "handle_event_sourced, cart AddItem on a 5-line snapshot", samples));

    instantiation(guest, report).await?;
    let cold_counter = counter.without_idle_instances();
    let samples = time_n(N, async || get_counter(&cold_counter).await).await?;
    let mut timing = Timing::new("4c", "the counter Get on a new instance (instantiate, call, drop)", samples);
    timing.note = "what a call pays when its version has no idle instance".into();
    report.timings.push(timing);
    let cold_cart = guest.cart.without_idle_instances();
    let samples = time_n(N, async || guest.add_item(&cold_cart).await).await?;
    report.timings.push(Timing::new("4c", "the cart AddItem on a new instance (instantiate, call, drop)", samples));

    let mut samples = Samples::with_capacity(N);
    for _ in 0..N {
        let start = Instant::now();
        tokio::task::spawn_blocking(|| 1u32).await?;
        samples.push(start.elapsed());
    }
    report.timings.push(Timing::new("4c", "tokio spawn_blocking round trip (empty closure)", samples));
    Ok(())
}

/// 4c: instantiation of the counter and the drop of the new instance, timed
/// apart in one loop on one thread, then both together on every core.
async fn instantiation(guest: &Guest, report: &mut Report) -> anyhow::Result<()> {
    const N: usize = 40_000;
    let (runtime, counter) = (&guest.runtime, &guest.counter);
    for _ in 0..N / 10 {
        runtime.new_instance(counter).await?;
    }
    let [mut instantiate, mut drop_instance, mut both] = [(); 3].map(|()| Samples::with_capacity(N));
    for _ in 0..N {
        let start = Instant::now();
        let instance = runtime.new_instance(counter).await?;
        let instantiated = start.elapsed();
        drop(instance);
        let dropped = start.elapsed();
        instantiate.push(instantiated);
        drop_instance.push(dropped - instantiated);
        both.push(dropped);
    }
    let mut timing = Timing::new("4c", INSTANTIATE, instantiate);
    timing.note = "instantiate: Store::new and InstancePre::instantiate_async through Runtime::new_instance, \
                   on the host's pooling allocator; the instance is ready to call"
        .into();
    report.timings.push(timing);
    report.timings.push(Timing::new("4c", "drop of a new counter instance (store, pool slots)", drop_instance));
    report.timings.push(Timing::new("4c", "instantiate + drop of the counter, one thread", both));

    let cycle = async || runtime.new_instance(counter).await.map(drop).map_err(anyhow::Error::from);
    let EveryCore { samples, threads, elapsed } = on_every_core(Duration::from_secs(1), cycle)?;
    let rate = samples.len() as f64 / elapsed.as_secs_f64();
    let mut timing = Timing::new("4c", &format!("instantiate + drop on {threads} threads at once"), samples);
    timing.note = format!("{rate:.0} instantiations/s in all");
    report.timings.push(timing);
    Ok(())
}

/// The name of the instantiation timing, which the instantiate target reads.
pub const INSTANTIATE: &str = "instantiate the counter (new store, ready to call)";

/// What [`on_every_core`] measured.
struct EveryCore {
    /// Every call's latency.
    samples: Samples,
    /// How many threads called.
    threads: usize,
    /// From the start until the last thread finished.
    elapsed: Duration,
}

/// Runs `f` in a loop on one thread per core at once for `duration`, each
/// thread with its own single-threaded async runtime.
fn on_every_core(duration: Duration, f: impl AsyncFn() -> anyhow::Result<()> + Sync) -> anyhow::Result<EveryCore> {
    let threads = cores();
    let start = Instant::now();
    let deadline = start + duration;
    let per_thread: Vec<anyhow::Result<Samples>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(async {
                        let mut samples = Samples::with_capacity(1 << 16);
                        while Instant::now() < deadline {
                            let sent = Instant::now();
                            f().await?;
                            samples.push(sent.elapsed());
                        }
                        Ok(samples)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))).collect()
    });
    let elapsed = start.elapsed();
    let mut samples = Samples::default();
    for thread in per_thread {
        samples.merge(thread?);
    }
    Ok(EveryCore { samples, threads, elapsed })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// 6a: the storage bound of the headline: 64 tasks committing one cart event
/// per call through the journal's group commit, across 1,000 entities (and
/// a snapshot every 100 events of an entity, as the host does), with no Wasm
/// and no HTTP. Then, for reference, a single writer doing one durable redb
/// transaction per insert, and a plain write+fdatasync loop.
pub async fn storage_ceiling(report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics = Arc::new(Metrics::default());
    let journal = Arc::new(RedbJournal::open(&dir.path().join("journal.redb"), metrics.clone())?);
    let service: Arc<str> = "cart".into();
    let state = cart_state();
    let writer = load::threads(std::process::id(), "journal-writer");
    let (cpu_before, writer_before) = (load::own_cpu_time(), writer());
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|task| {
            let (journal, service, state) = (journal.clone(), service.clone(), state.clone());
            tokio::spawn(async move {
                // This task owns entities task, task + 64, ...: no two tasks race on one.
                let mut entities: Vec<(Arc<str>, u64)> =
                    (task..CARTS).step_by(CONNECTIONS).map(|e| (format!("cart-{e:04}").into(), 0)).collect();
                let mut samples = Samples::with_capacity(1 << 14);
                let (mut i, owned) = (0, entities.len());
                while Instant::now() < deadline {
                    let (entity, last) = &mut entities[i % owned];
                    i += 1;
                    let seq = *last + 1;
                    let commit = Commit {
                        service: service.clone(),
                        entity: entity.clone(),
                        version: 1,
                        hops: 0,
                        write: EntityWrite::Events {
                            expected_last_seq: *last,
                            events: vec![CART_EVENT.to_vec()],
                            snapshot: (seq % 100 == 0).then(|| StoredSnapshot {
                                seq,
                                version: 1,
                                state: state.clone(),
                            }),
                        },
                        outbox: Vec::new(),
                        idempotency: None,
                        timers: Vec::new(),
                        fires: None,
                        trace: None,
                    };
                    let sent = Instant::now();
                    let status = journal.commit(commit).await?;
                    samples.push(sent.elapsed());
                    anyhow::ensure!(status.is_durable(), "the journal refused a commit: {status:?}");
                    *last = seq;
                }
                anyhow::Ok((samples, Instant::now()))
            })
        })
        .collect();
    let mut samples = Samples::default();
    let mut finished = start;
    for task in tasks {
        let (s, done) = task.await??;
        samples.merge(s);
        finished = finished.max(done);
    }
    let cpu = load::own_cpu_time().saturating_sub(cpu_before);
    let writer_cpu = writer().saturating_sub(writer_before);
    let commits = metric(&metrics.render(), "wasmstate_journal_commits_total");
    let mut row = Row::new("6a", "storage: Journal::commit, 64 tasks, 1,000 ents", &mut samples, finished - start);
    row.server_cpu = Some(cpu.as_secs_f64() / (finished - start).as_secs_f64());
    row.note = format!(
        "{commits} group commits = {:.1} appends per durable transaction, {:.0} commits/s; \
         journal-writer thread {:.2} cores = {} CPU per append, {} per commit",
        row.count as f64 / commits.max(1) as f64,
        commits as f64 / (finished - start).as_secs_f64(),
        writer_cpu.as_secs_f64() / (finished - start).as_secs_f64(),
        fmt_dur(writer_cpu / row.count.max(1) as u32),
        fmt_dur(writer_cpu / commits.max(1) as u32),
    );
    report.ceilings.push(row);
    drop(journal);

    let raw_duration = duration.min(Duration::from_secs(3));
    let references: [(&str, &str, RawWriter); 2] = [
        ("raw.redb", "raw redb: 1 durable txn per insert, 1 writer", raw_redb),
        ("raw.bin", "raw disk: pwrite 128 B + fdatasync, 1 writer", raw_fdatasync),
    ];
    for (file, name, writer) in references {
        let path = dir.path().join(file);
        let cpu_before = load::own_cpu_time();
        let mut samples = tokio::task::spawn_blocking(move || writer(&path, raw_duration)).await??;
        let mut row = Row::new("6a", name, &mut samples, raw_duration);
        row.server_cpu =
            Some(load::own_cpu_time().saturating_sub(cpu_before).as_secs_f64() / raw_duration.as_secs_f64());
        row.reference = true;
        report.ceilings.push(row);
    }
    Ok(())
}

/// A reference writer of 6a: durable writes to the file at a path for a while.
type RawWriter = fn(&std::path::Path, Duration) -> anyhow::Result<Samples>;

/// A counter's value in a Prometheus text rendering (0 if absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

fn raw_redb(path: &std::path::Path, duration: Duration) -> anyhow::Result<Samples> {
    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raw");
    let db = redb::Database::create(path)?;
    let mut samples = Samples::default();
    let deadline = Instant::now() + duration;
    let mut key = 0u64;
    while Instant::now() < deadline {
        let start = Instant::now();
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.open_table(TABLE)?.insert(key, CART_EVENT)?;
        txn.commit()?;
        samples.push(start.elapsed());
        key += 1;
    }
    Ok(samples)
}

fn raw_fdatasync(path: &std::path::Path, duration: Duration) -> anyhow::Result<Samples> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(&vec![0u8; 1 << 20])?;
    file.sync_all()?;
    let mut samples = Samples::default();
    let deadline = Instant::now() + duration;
    let mut block = 0u64;
    while Instant::now() < deadline {
        let start = Instant::now();
        file.write_all_at(&[7u8; 128], (block % 256) * 4096)?;
        file.sync_data()?;
        samples.push(start.elapsed());
        block += 1;
    }
    Ok(samples)
}

/// 6b: the HTTP bound: an axum server (the host's HTTP stack) on its own
/// runtime in this process that answers 200 `{}` to every POST of the
/// invocation route, under the same load as the headline.
pub async fn http_ceiling(report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    use axum::routing::post;
    const THREADS: &str = "ceiling-http";
    let workers = cores();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(THREADS)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addr_tx.send(listener.local_addr()?)?;
            let app = axum::Router::new().route(
                "/v1/services/{service}/entities/{id}/{command}",
                post(|_: axum::extract::Path<(String, String, String)>, _: Bytes| async {
                    ([(hyper::header::CONTENT_TYPE, "application/json")], "{}")
                }),
            );
            axum::serve(listener, app).with_graceful_shutdown(async { drop(stop_rx.await) }).await?;
            anyhow::Ok(())
        })
    });
    let addr = addr_rx.recv()?;
    let uris: Arc<Vec<Uri>> = Arc::new(
        (0..CARTS)
            .map(|c| format!("/v1/services/cart/entities/cart-{c:04}/AddItem").parse())
            .collect::<Result<_, _>>()?,
    );
    let body = Bytes::from_static(br#"{"productId":"P00000001","name":"Product 1","quantity":1}"#);
    let next: load::NextRequest = Arc::new(move |n| (uris[n as usize % CARTS].clone(), body.clone()));
    let probes = [load::threads(std::process::id(), THREADS), load::process_but(THREADS)];
    let runs = [
        (CONNECTIONS, duration, "HTTP: axum answering 200 {}, 64 conns", false),
        (1, duration.min(Duration::from_secs(2)), "HTTP: the same, 1 conn (sequential)", true),
    ];
    for (connections, duration, name, reference) in runs {
        let load = Load { connections, warmup: Duration::from_millis(500), duration, requests: None };
        let mut result = load::run(addr, load, next.clone(), &probes).await?;
        let mut row = Row::new("6b", name, &mut result.latencies, result.elapsed);
        row.errors = result.errors;
        row.server_cpu = result.cpu.first().copied();
        row.load_cpu = result.cpu.get(1).copied();
        row.reference = reference;
        if let Some(error) = result.first_error {
            row.note = format!("first error: {error}");
        }
        report.ceilings.push(row);
    }
    let _ = stop_tx.send(());
    server.join().map_err(|_| anyhow::anyhow!("the HTTP ceiling server panicked"))??;
    Ok(())
}

/// 6c: the Wasm bound: every core calling `handle_event_sourced` (cart AddItem on
/// a warm snapshot) in a loop, with no HTTP and no journal.
pub fn wasm_ceiling(guest: &Guest, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let cpu_before = load::own_cpu_time();
    let EveryCore { mut samples, threads, elapsed } =
        on_every_core(duration, async || guest.add_item(&guest.cart).await)?;
    let cpu = load::own_cpu_time().saturating_sub(cpu_before);
    let label = format!("Wasm: handle_event_sourced AddItem, {threads} threads");
    let mut row = Row::new("6c", &label, &mut samples, elapsed);
    row.server_cpu = Some(cpu.as_secs_f64() / elapsed.as_secs_f64());
    report.ceilings.push(row);
    Ok(())
}
