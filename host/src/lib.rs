//! wasmstate: a host for stateful serverless functions written as WebAssembly
//! components.
//!
//! A user uploads an entity compiled to a component; the host runs each
//! command on wasmtime, hands the entity its latest snapshot and the events
//! after it through the `wasmstate:entity` WIT interfaces, and commits the
//! events the entity emits to an embedded redb journal before it replies.
//!
//! # Layout
//!
//! - [`cli`]: the `wasmstate` command line (`serve`, `deploy`, `invoke`, ...);
//!   [`client`] is its HTTP client.
//! - [`server`]: opens the data directory and serves the API; [`config`]
//!   holds its settings.
//! - [`http`]: the HTTP API (axum): one file per resource, one error type.
//! - [`services`]: deployed services and their versions.
//! - [`entities`]: running commands: one mailbox and task per active entity
//!   (single writer), cached state, passivation, stateless actions, side
//!   effects and forwards.
//! - [`outbox`]: delivers asynchronous side effects from the durable outbox.
//! - [`subscriptions`]: delivers a service's events to subscribed actions.
//! - [`runtime`]: the wasmtime engine, component validation, the guest call.
//! - [`journal`]: the redb tables and the group-committing writer.
//! - [`names`]: validation of service names and entity ids.
//! - [`metrics`]: Prometheus metrics.

pub mod cli;
pub mod client;
pub mod config;
pub mod entities;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod names;
pub mod outbox;
pub mod runtime;
pub mod server;
pub mod services;
pub mod subscriptions;
