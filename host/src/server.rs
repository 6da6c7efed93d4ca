//! `wasmstate serve`: opens the journal, loads the deployed services and
//! serves the HTTP API until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::entities::{Entities, EntityConfig};
use crate::http::{AppState, BodyLimits, Tokens, app};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::runtime::{CompiledCache, GuestLimits, Runtime};
use crate::services::Services;

/// The journal's file name inside the data directory.
pub const JOURNAL_FILE: &str = "journal.redb";
/// The compiled-code cache's directory inside the data directory.
pub const COMPILED_DIR: &str = "compiled";

/// Runs the server until a shutdown signal. In-flight commands finish first.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    if !config.listen.ip().is_loopback() && config.admin_token.is_none() && !config.insecure {
        anyhow::bail!(
            "refusing to listen on {} without --admin-token: anyone reaching it could deploy code. \
             Set an admin token, or pass --insecure to accept that.",
            config.listen
        );
    }
    let state = open(&config).await?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    for service in state.services.list() {
        println!("deployed {} ({}, version {})", service.service, service.kind, service.version);
    }
    // Tests and scripts read this line to find the port.
    println!("wasmstate listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the data directory and builds the application state.
pub async fn open(config: &ServeConfig) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let metrics = Arc::new(Metrics::default());
    let journal_path = config.data_dir.join(JOURNAL_FILE);
    let journal = Arc::new(
        Journal::open(&journal_path, metrics.clone())
            .with_context(|| format!("cannot open the journal {}", journal_path.display()))?,
    );
    let runtime = Arc::new(Runtime::new(GuestLimits {
        invocation_timeout: config.invocation_timeout,
        max_memory_bytes: config.max_guest_memory,
    })?);
    let cache = CompiledCache::new(&config.data_dir.join(COMPILED_DIR), runtime.engine())?;
    let services = {
        let (runtime, journal, metrics) = (runtime.clone(), journal.clone(), metrics.clone());
        Arc::new(tokio::task::spawn_blocking(move || Services::load(runtime, journal, cache, metrics)).await??)
    };
    for (name, path) in &config.deploys {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        services.deploy_if_changed(name, bytes).await.with_context(|| format!("cannot deploy {name}"))?;
    }
    let entities = Entities::new(
        services.clone(),
        journal.clone(),
        runtime,
        metrics.clone(),
        EntityConfig {
            snapshot_every: config.snapshot_every,
            passivate_after: config.passivate_after,
            mailbox_capacity: config.mailbox_capacity as usize,
            max_in_flight: config.max_in_flight as usize,
            max_events_per_command: config.max_events_per_command as usize,
            max_reply_bytes: config.max_reply_bytes,
        },
    );
    let limits = BodyLimits { invoke: config.max_body_bytes, deploy: config.max_deploy_bytes };
    let tokens = Tokens { admin: config.admin_token.clone(), invoke: config.invoke_token.clone() };
    Ok(AppState { services, entities, journal, metrics, limits, tokens })
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
