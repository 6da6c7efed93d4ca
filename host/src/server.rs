//! `wasmstate serve`: opens the journal, loads the deployed services and
//! serves the HTTP API until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::http::{AppParts, AppState, BodyLimits, ConnectionLimits, RequestOrigins, Tokens, app};
use crate::invoke::{Invoker, InvokerConfig};
use crate::journal::{Journal, PgJournal, RedbJournal, VersionMeta};
use crate::leases::LeaseKeeper;
use crate::metrics::Metrics;
use crate::outbound::{HttpPolicy, TlsRoots};
use crate::runtime::{CompileBudget, CompiledCache, GuestLimits, Runtime};
use crate::services::{DeployRequest, Services};
use crate::subscriptions::Subscriptions;
use crate::{journal, outbox};

/// An opened host, ready to serve: its application state, and what
/// opening it found and did.
pub struct Opened {
    /// What every handler reaches; [`app`] serves it.
    pub state: AppState,
    /// What opening the journal found: new, current, or migrated.
    pub journal: journal::SchemaStatus,
    /// The services loaded from the journal, newest versions.
    pub loaded: Vec<VersionMeta>,
    /// The versions the `--deploy` flags deployed (those already the newest
    /// version of their service are not deployed again).
    pub deployed: Vec<VersionMeta>,
}

/// The journal's file name inside the data directory.
pub const JOURNAL_FILE: &str = "journal.redb";
/// The compiled-code cache's directory inside the data directory.
pub const COMPILED_DIR: &str = "compiled";
/// The file in the data directory that names this host as a replica of
/// CRDT entities.
pub const REPLICA_FILE: &str = "replica-id";

/// Runs the server until a shutdown signal. In-flight commands finish first.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    if !config.listen.ip().is_loopback() && config.admin_token.is_none() && !config.insecure {
        anyhow::bail!(
            "refusing to listen on {} without --admin-token: anyone reaching it could deploy code. \
             Set an admin token, or pass --insecure to accept that.",
            config.listen
        );
    }
    if config.journal.is_some() && config.cluster_token.is_none() && !config.insecure {
        anyhow::bail!(
            "a PostgreSQL journal is shared by hosts, which send each other commands: set --cluster-token \
             (better, WASMSTATE_CLUSTER_TOKEN) to the same secret on every host, or pass --insecure to run \
             without (every host then runs what it receives)"
        );
    }
    let (stop, shutdown) = watch::channel(false);
    let opened = open(&config, shutdown).await?;
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    opened.state.cluster.listening_on(addr);
    if let journal::SchemaStatus::Migrated { from, to } = opened.journal {
        println!("migrated the journal from schema version {from} to {to}");
    }
    for (verb, versions) in [("loaded", &opened.loaded), ("deployed", &opened.deployed)] {
        for meta in versions {
            println!("{verb} {} ({}, version {})", meta.service, meta.kind, meta.version);
        }
    }
    let state = opened.state;
    // Tests and scripts read this line to find the port.
    println!("wasmstate listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    let limits = ConnectionLimits {
        max_connections: crate::http::connection_budget(config.max_connections as usize),
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes,
    };
    let (metrics, journal, cluster) = (state.metrics.clone(), state.journal.clone(), state.cluster.clone());
    let healthy = Arc::new(move || journal.is_healthy());
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    crate::http::serve(listener, app(state), limits, metrics, healthy, shutdown).await;
    // The other hosts take over this one's leases and entities at once.
    let _ = tokio::task::spawn_blocking(move || cluster.leave()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the data directory, builds the application state and starts the
/// background workers (outbox, subscriptions, idempotency sweeper).
/// `shutdown` turns true when the server stops, ending live event streams.
pub async fn open(config: &ServeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    if let Some(url) = &config.journal {
        let metrics = Arc::new(Metrics::default());
        let journal = connect_postgres(url, metrics.clone()).await?;
        return open_on(config, Arc::new(journal), metrics, shutdown).await;
    }
    let (path, cache_size) = (config.data_dir.join(JOURNAL_FILE), config.journal_cache);
    open_with_storage(config, move || redb::Builder::new().set_cache_size(cache_size).create(&path), shutdown).await
}

/// Connects to the PostgreSQL journal at `url`, off the async threads (it blocks).
async fn connect_postgres(url: &str, metrics: Arc<Metrics>) -> anyhow::Result<PgJournal> {
    let url = url.to_string();
    let journal = tokio::task::spawn_blocking(move || PgJournal::connect(&url, metrics)).await?;
    journal.context("cannot open the journal on PostgreSQL")
}

/// A journal several hosts in this process open, as hosts on one
/// PostgreSQL database do: each host caches its own entities, so one's
/// writes make the other's cached state stale. For tests of several hosts.
#[cfg(feature = "fault-injection")]
#[derive(Clone)]
pub struct SharedJournal(Arc<dyn Journal>);

#[cfg(feature = "fault-injection")]
impl SharedJournal {
    /// Connects to the PostgreSQL journal at `url`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(connect_postgres(url, Arc::new(Metrics::default())).await?)))
    }
}

/// Opens one more host on `journal`, with `config`'s limits and data dir
/// (for its compiled-code cache).
#[cfg(feature = "fault-injection")]
pub async fn open_on_shared(
    config: &ServeConfig,
    journal: &SharedJournal,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&config.data_dir)?;
    open_on(config, journal.0.clone(), Arc::new(Metrics::default()), shutdown).await
}

/// How uploaded components compile: in the worker `config` names (the
/// `wasmstate` binary itself, when it serves), within its budget.
fn compile_budget(config: &ServeConfig) -> CompileBudget {
    match &config.compile_worker {
        Some(worker) => CompileBudget {
            worker: Some(worker.clone()),
            max_time: config.max_compile_time,
            max_memory: config.max_compile_memory,
        },
        None => CompileBudget::in_process(),
    }
}

/// The error of a journal file that cannot be read: what to do about it.
fn damaged(path: &std::path::Path, detail: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the journal {} is damaged ({detail}). Restore it from a backup, or move it aside and start again \
         (on an empty journal, or with another --data-dir); wasmstate does not start on a damaged journal",
        path.display()
    )
}

/// Like [`open`], on the journal database `open_db` opens — for example
/// one on an injected storage backend. It is called again to reopen the
/// database after the storage failed. The compiled-code cache still lives
/// in the data directory.
pub async fn open_with_storage(
    config: &ServeConfig,
    open_db: impl Fn() -> Result<redb::Database, redb::DatabaseError> + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Opened> {
    let journal_path = config.data_dir.join(JOURNAL_FILE);
    let db = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&open_db)) {
        Ok(Ok(db)) => db,
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => {
            return Err(damaged(&journal_path, &detail));
        }
        Ok(Err(error)) => {
            return Err(error).with_context(|| format!("cannot open the journal {}", journal_path.display()));
        }
        Err(panic) => return Err(damaged(&journal_path, &journal::panic_message(&*panic))),
    };
    let metrics = Arc::new(Metrics::default());
    let reopen: journal::Reopen = Box::new(open_db);
    let journal = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RedbJournal::with_reopen(db, reopen, metrics.clone())
    })) {
        Ok(journal) => Arc::new(journal.context("cannot open the journal")?) as Arc<dyn Journal>,
        Err(panic) => return Err(damaged(&journal_path, &journal::panic_message(&*panic))),
    };
    open_on(config, journal, metrics, shutdown).await
}

/// Builds the host on an opened journal.
async fn open_on(
    config: &ServeConfig,
    journal: Arc<dyn Journal>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Opened> {
    if let journal::SchemaStatus::Migrated { from, to } = journal.schema_status() {
        tracing::info!(from, to, "migrated the journal");
    }
    journal.set_outbox_quota(config.max_outbox_per_service);
    let runtime = Arc::new(Runtime::new(
        GuestLimits {
            invocation_timeout: config.invocation_timeout,
            max_memory_bytes: config.max_guest_memory,
            max_total_memory_bytes: config
                .max_total_guest_memory
                .unwrap_or_else(crate::runtime::HostMemory::default_max),
        },
        compile_budget(config),
    )?);
    let host_memory = runtime.host_memory().clone();
    metrics.watch_guest_memory(move || host_memory.used());
    let cache_key = journal.compiled_cache_key().context("cannot read the compiled-code cache's key")?;
    let cache = CompiledCache::new(&config.data_dir.join(COMPILED_DIR), runtime.engine(), cache_key)?;
    let tls = TlsRoots::new(config.http_ca_file.as_deref())?;
    let services = {
        let (runtime, journal, metrics) = (runtime.clone(), journal.clone(), metrics.clone());
        let http = HttpPolicy { limits: config.outbound(), max: config.allow_http_max.clone(), tls: tls.clone() };
        Arc::new(tokio::task::spawn_blocking(move || Services::load(runtime, journal, cache, metrics, http)).await??)
    };
    let loaded = services.running();
    let mut deployed = Vec::new();
    for deploy in &config.deploys {
        let bytes = std::fs::read(&deploy.path).with_context(|| format!("cannot read {}", deploy.path.display()))?;
        let request = DeployRequest {
            allow_http: deploy.allow_http.clone(),
            ..DeployRequest::new(deploy.service.clone(), bytes, deploy.subscriptions.clone())
        };
        let meta =
            services.deploy_if_changed(request).await.with_context(|| format!("cannot deploy {}", deploy.service))?;
        deployed.extend(meta);
    }
    let invoker = Invoker::new(
        services.clone(),
        journal.clone(),
        runtime.clone(),
        metrics.clone(),
        InvokerConfig {
            snapshot_every: config.snapshot_every,
            passivate_after: config.passivate_after,
            mailbox_capacity: config.mailbox_capacity as usize,
            max_active_entities: config.max_active_entities as usize,
            max_in_flight: config.max_in_flight as usize,
            max_events_per_command: config.max_events_per_command as usize,
            max_reply_bytes: config.max_reply_bytes,
            max_state_bytes: config.max_state_bytes,
            max_event_bytes_per_command: config.max_event_bytes_per_command,
            snapshot_every_bytes: config.snapshot_every_bytes,
            // The rest of a guest's memory is for decoding what it was handed.
            max_loadable_bytes: config.max_guest_memory / 2,
            max_cached_state_bytes: config.max_cached_state_bytes,
            idempotency_ttl: config.idempotency_ttl,
        },
        replica_id(&config.data_dir)?,
    );
    if journal.has_other_writers() {
        crate::services::spawn_pickup(services.clone(), shutdown.clone());
    }
    let cluster = crate::cluster::Membership::new(config.advertise_url.clone(), journal.clone(), config.host_timeout);
    if journal.has_other_writers() {
        crate::cluster::spawn_heartbeat(cluster.clone(), shutdown.clone());
    }
    // Work done once for all the hosts on the journal, under a lease.
    let leases =
        LeaseKeeper::new(journal.clone(), cluster.clone(), metrics.clone(), config.host_timeout, shutdown.clone());
    let delivering = outbox::Delivering {
        invoker: invoker.clone(),
        services: services.clone(),
        outbound: config.outbound(),
        tls,
        max_attempts: config.outbox_max_attempts,
    };
    outbox::spawn(leases.clone(), delivering, journal.clone(), metrics.clone());
    crate::timers::spawn(leases.clone(), invoker.clone(), journal.clone(), metrics.clone());
    spawn_idempotency_sweeper(leases.clone(), journal.clone());
    crate::compaction::spawn(leases.clone(), journal.clone(), services.clone(), metrics.clone(), config.compact_every);
    let subscriptions = Subscriptions::start(
        leases,
        invoker.clone(),
        journal.clone(),
        services.clone(),
        metrics.clone(),
        config.subscription_max_attempts,
    );
    let limits = BodyLimits { invoke: config.max_body_bytes, deploy: config.max_deploy_bytes };
    let tokens = Tokens {
        admin: config.admin_token.clone(),
        invoke: config.invoke_token.clone(),
        read: config.read_token.clone(),
    };
    let origins = RequestOrigins::new(config.listen, &config.allowed_hosts, &config.cors_origins);
    let journal_opened = journal.schema_status();
    let forwarder = match &config.cluster_token {
        Some(token) if journal.has_other_writers() => {
            // As long as the owner may take: its guest's time, and a margin.
            let timeout = config.invocation_timeout * 2 + std::time::Duration::from_secs(5);
            Some(crate::http::forward::Forwarder::new(token.clone(), cluster.id().to_string(), timeout)?)
        }
        _ => None,
    };
    let state = AppState::new(AppParts {
        services,
        invoker,
        journal,
        metrics,
        limits,
        tokens,
        origins,
        subscriptions,
        shutdown,
        require_verify: config.require_verify,
        cluster,
        forwarder,
    });
    Ok(Opened { state, journal: journal_opened, loaded, deployed })
}

/// How often expired idempotency records are deleted.
const IDEMPOTENCY_SWEEP: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes expired idempotency records every [`IDEMPOTENCY_SWEEP`], on
/// one host of the journal at a time.
fn spawn_idempotency_sweeper(leases: LeaseKeeper, journal: Arc<dyn Journal>) {
    let sweep = move |_| {
        let journal = journal.clone();
        async move {
            loop {
                tokio::time::sleep(IDEMPOTENCY_SWEEP).await;
                let j = journal.clone();
                match tokio::task::spawn_blocking(move || j.sweep_idempotency(journal::now_ms())).await {
                    Ok(Ok(removed)) if removed > 0 => tracing::debug!(removed, "expired idempotency records deleted"),
                    Ok(Err(error)) => tracing::warn!(%error, "cannot delete expired idempotency records"),
                    _ => {}
                }
            }
        }
    };
    tokio::spawn(leases.run("idempotency-sweep".into(), sweep));
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// This host's name as a replica of CRDT entities: made once and kept in
/// the data directory, so a host that restarts goes on as the same
/// replica (a new name each start would grow every entity it writes by one
/// replica a start). Two hosts that share a data directory are one
/// replica: their writes to it stay in order (each expects its row's
/// revision), they only conflict.
fn replica_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join(REPLICA_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            anyhow::ensure!(
                !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{} does not hold a replica id (1 to 64 letters, digits and dashes)",
                path.display()
            );
            Ok(id.to_string())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("{:016x}", journal::host_tag());
            std::fs::write(&path, format!("{id}\n")).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
