//! wasmstate: a host for stateful serverless functions written as WebAssembly
//! components.
//!
//! A user uploads an entity compiled to a component; the host runs each
//! command on wasmtime, hands the entity its state through the
//! `wasmstate:entity` WIT interfaces, and commits what the entity emits to
//! its journal — an embedded redb file, or a PostgreSQL database — before
//! it replies.
//!
//! The crate's public API is what it takes to embed the host: [`serve`], or
//! [`open`] and then [`app`] on a listener of one's own, configured by
//! [`ServeConfig`]; and [`Cli`], the `wasmstate` command line.
//!
//! # Layout
//!
//! - `cli`: the `wasmstate` command line (`serve`, `deploy`, `invoke`, ...);
//!   `client` is its HTTP client, `logging` sets up its logs.
//! - `server`: opens the data directory and serves the API; `config` holds
//!   its settings.
//! - `http`: the HTTP API (axum): one file per resource, one error type,
//!   and the OpenAPI document made from them (`http::openapi`); `console`
//!   is the web console it serves at `/`.
//! - `domain`: the host's own types — calls, replies, effects, kinds of
//!   service, idempotency keys — which every module speaks.
//! - `services`: deployed services and their versions; `verify` checks a
//!   new version against the stored entities before it takes traffic.
//! - `invoke`: the one path every invocation takes — HTTP requests,
//!   forwards, side effects, outbox and event deliveries — with one mailbox
//!   and task per active entity (single writer), cached state, passivation
//!   and stateless actions.
//! - `outbox`: delivers asynchronous side effects (commands and webhooks)
//!   from the durable outbox; `timers` fires durable timers when they come
//!   due.
//! - `outbound`: HTTP requests to the outside world, guests' own and
//!   webhooks, checked against each service's allow-list.
//! - `leases`: work done by one host at a time however many share the
//!   journal (the outbox, each subscription, sweeps), under leases with
//!   epochs; `cluster` is the hosts themselves.
//! - `subscriptions`: delivers a service's events to subscribed actions.
//! - `compaction`: drops the history services no longer keep
//!   (`retain=snapshots:K`).
//! - `runtime`: the wasmtime engine, component validation, the guest call;
//!   the only module that sees the WIT-generated types.
//! - `journal`: the `Journal` traits the host sees and
//!   the two journals behind them, redb (embedded, the default) and
//!   PostgreSQL, each with its schema version and group-committing writer.
//! - `finish_on_drop`: how work outlives a caller that goes away.
//! - `names`: validation of service names and entity ids.
//! - `metrics`: Prometheus metrics; `trace_context` is where an invocation
//!   sits in a distributed trace (W3C `traceparent`), and `telemetry`
//!   exports the spans over OTLP.

mod cli;
mod client;
mod cluster;
mod compaction;
mod config;
mod console;
mod domain;
mod finish_on_drop;
mod http;
mod invoke;
mod journal;
mod leases;
mod logging;
mod metrics;
mod names;
mod outbound;
mod outbox;
mod runtime;
mod server;
mod services;
mod subscriptions;
mod telemetry;
mod timers;
mod trace_context;
mod verify;

pub use cli::Cli;
pub use config::ServeConfig;
pub use http::{AppState, app};
#[cfg(feature = "fault-injection")]
pub use journal::FailingStorage;
pub use server::{Opened, open, open_with_storage, serve};
#[cfg(feature = "fault-injection")]
pub use server::{SharedJournal, open_on_shared};

/// The journal seam, for the contract tests every journal passes (the
/// `journal_contract` suite of `wasmstate-tests`). Not a stable API; built
/// only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod journal_hooks {
    pub use crate::domain::{AsyncEffect, Call, CronSchedule, FollowUp, IdempotencyKey, MissedFirings, Webhook};
    pub use crate::journal::{
        Commit, CommitStatus, DeadLetter, EntityWrite, IdempotencyRecord, Journal, JournalError, Lease, PgJournal,
        RedbJournal, Timer, TimerChange, TimerGuard,
    };
    pub use crate::metrics::Metrics;
}

/// What `make bench` measures inside the host, through the library: the
/// journal, the runtime and their types. Not a stable API; built only with
/// the `bench-hooks` feature.
#[cfg(feature = "bench-hooks")]
#[doc(hidden)]
pub mod bench_hooks {
    pub use crate::domain::{Call, CommandMeta, Event, StateChange};
    pub use crate::journal::{Commit, EntityStore, EntityWrite, Journal, RedbJournal, StoredSnapshot};
    pub use crate::metrics::Metrics;
    pub use crate::runtime::{CompileBudget, CompiledService, GuestLimits, HostMemory, Runtime, Snapshot};
    pub use crate::server::JOURNAL_FILE;
}
