//! The `wasmstate` command line: `serve`, and client commands that talk to a
//! running server over HTTP and show its replies as tables (`--json`: as
//! they came).
//!
//! # Layout
//!
//! - `deploy`: deploys and rollbacks, which verify new versions against the
//!   stored entities;
//! - `dev`: the inner loop, build and deploy on every change;
//! - `follow`: an entity's live events;
//! - `metrics_summary`: `wasmstate metrics`;
//! - `show`, `table`: replies as tables for people;
//! - `journal`: work on a journal directly;
//! - `scaffold`: `wasmstate new`.

mod deploy;
mod dev;
mod follow;
mod journal;
mod metrics_summary;
mod scaffold;
mod show;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::client::Client;
use crate::config::ServeConfig;
use crate::logging::LogFormat;

/// wasmstate: a host for stateful serverless functions written as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmstate", version, about)]
pub struct Cli {
    /// The server the client commands talk to.
    #[arg(long, global = true, env = "WASMSTATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,

    /// The token the client commands send (`Authorization: Bearer`): the
    /// server's invoke or read token, or its admin token, which opens
    /// every route.
    #[arg(long, global = true, env = "WASMSTATE_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// The token deploy, rollback and delete send instead of --token: the
    /// server's admin token, where the two differ.
    #[arg(long, global = true, env = "WASMSTATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Print the server's JSON replies as they came, for scripts, instead
    /// of tables.
    #[arg(long, global = true)]
    json: bool,

    /// How log lines are written to stderr: plain text, or one JSON object per line.
    #[arg(long, global = true, env = "WASMSTATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Run the server.
    Serve(Box<ServeConfig>),
    /// Deploy a component as the next version of a service. When the
    /// service has stored entities, the new version is first checked
    /// against them (see --no-verify).
    Deploy {
        /// The service name.
        service: String,
        /// The component (.wasm) to upload.
        component: PathBuf,
        #[command(flatten)]
        verify: deploy::VerifyArgs,
        #[command(flatten)]
        options: deploy::DeployArgs,
    },
    /// Make an earlier version of a service the newest again, as a new
    /// version running its code.
    Rollback {
        /// The service name.
        service: String,
        /// The version to roll back to (default: the one before the newest).
        #[arg(long)]
        to: Option<u32>,
        #[command(flatten)]
        verify: deploy::VerifyArgs,
    },
    /// Send a command to an entity and print its reply.
    Invoke {
        /// The service name.
        service: String,
        /// The entity id.
        entity: String,
        /// The command name, e.g. AddItem.
        command: String,
        /// The JSON payload (empty when omitted).
        payload: Option<String>,
        /// Print what the command would do, committing and sending nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: run it on the state right after event N.
        #[arg(long, requires = "dry_run")]
        at: Option<u64>,
        /// Run it later, as a durable timer: after this long (30s, 15m,
        /// 1h 30m). Prints the timer once it is durable.
        #[arg(long, conflicts_with = "dry_run")]
        delay: Option<String>,
    },
    /// Print an entity's state, now or right after event N.
    State {
        /// The service name.
        service: String,
        /// The entity id.
        entity: String,
        /// The event right after which to read the state.
        #[arg(long)]
        at: Option<u64>,
    },
    /// Copy events 1 to N of an entity's log into a new entity.
    Fork {
        /// The service name.
        service: String,
        /// The entity to copy.
        entity: String,
        /// The new entity's id.
        #[arg(long)]
        to: String,
        /// The last event to copy (default: the last).
        #[arg(long)]
        at: Option<u64>,
    },
    /// Print an entity's committed events.
    Events {
        /// The service name.
        service: String,
        /// The entity id.
        entity: String,
        /// The first seq to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Print an entity's events as they are committed, from seq N (by
    /// default only the new ones), until interrupted.
    Follow {
        /// The service name.
        service: String,
        /// The entity id.
        entity: String,
        /// The first seq to print (default: the one after the last).
        #[arg(long)]
        from: Option<u64>,
    },
    /// List the hosts of the server's cluster and the leases they hold.
    Cluster,
    /// Summarise the server's metrics: each service's invocations by
    /// outcome with their p50 and p99 latency, the journal and the outbox.
    Metrics,
    /// Compiles a component read from stdin to stdout: how `serve` compiles
    /// within a budget.
    #[command(hide = true)]
    CompileWorker {
        /// The most memory the compilation may take, in bytes.
        #[arg(long)]
        max_memory: usize,
    },
    /// Work on a journal directly, with no server running on it.
    #[command(subcommand)]
    Journal(journal::JournalCommand),
    /// List deployed services, or describe one.
    Services {
        /// The service to describe.
        service: Option<String>,
    },
    /// Delete a service: every version of it stops serving; its entities'
    /// data stays, and it may be deployed again.
    Delete {
        /// The service name.
        service: String,
    },
    /// Build a service crate, deploy it (starting a local server when none
    /// answers at --url), and again on every change to its files.
    Dev(dev::DevArgs),
    /// Start a new service crate: a working service of the kind asked for,
    /// its unit tests, a README, and the SDK beside it.
    New {
        /// The crate's and the service's name, e.g. my-cart.
        name: String,
        /// The kind of service.
        #[arg(long, value_enum, default_value = "event-sourced")]
        kind: scaffold::Kind,
        /// Where to write it (default: ./NAME); it must not hold files.
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

impl Cli {
    /// Runs the parsed command, logging to stderr.
    pub async fn run(self) -> anyhow::Result<()> {
        let otlp_endpoint = match &self.command {
            CliCommand::Serve(config) => config.otlp_endpoint.clone(),
            _ => None,
        };
        let _exporting = crate::logging::init(self.log_format, otlp_endpoint.as_deref())?;
        let client = Client::new(&self.url, self.token, self.admin_token);
        let entity_path =
            |service: &str, entity: &str| format!("/v1/services/{}/entities/{}", segment(service), segment(entity));
        let reply = match self.command {
            CliCommand::Serve(mut config) => {
                config.compile_worker = std::env::current_exe().ok();
                return crate::server::serve(*config).await;
            }
            CliCommand::CompileWorker { max_memory } => crate::runtime::run_worker(max_memory),
            CliCommand::Journal(command) => return journal::run(command).await,
            CliCommand::New { name, kind, path } => {
                let dir = scaffold::new_crate(&name, kind, path.as_deref())?;
                println!("created {} in {}", name, dir.display());
                println!("  cd {} && cargo test && cargo build --release --target wasm32-wasip2", dir.display());
                return Ok(());
            }
            CliCommand::Dev(args) => return dev::dev(&self.url, &client, args).await,
            CliCommand::Deploy { service, component, verify, options } => {
                Reply::Json(deploy::deploy(&client.admin(), &service, &component, &verify, &options).await?)
            }
            CliCommand::Rollback { service, to, verify } => {
                Reply::Json(deploy::rollback(&client.admin(), &service, to, &verify).await?)
            }
            CliCommand::Invoke { service, entity, command, payload, dry_run, at, delay } => {
                let mut path = format!("{}/{}", entity_path(&service, &entity), segment(&command));
                if dry_run {
                    path.push_str("?dry_run=true");
                }
                if let Some(delay) = delay {
                    path.push_str(&format!("?delay={}", segment(&delay)));
                }
                if let Some(at) = at {
                    path.push_str(&format!("&at={at}"));
                }
                Reply::Json(client.post(&path, payload.unwrap_or_default().into_bytes()).await?)
            }
            CliCommand::State { service, entity, at } => {
                let at = at.map(|at| format!("?at={at}")).unwrap_or_default();
                let body = client.get(&format!("{}/state{at}", entity_path(&service, &entity))).await?;
                Reply::Shown(body, Box::new(show::state))
            }
            CliCommand::Fork { service, entity, to, at } => {
                let at = at.map(|at| format!("&at={at}")).unwrap_or_default();
                let path = format!("{}/fork?to={}{at}", entity_path(&service, &entity), segment(&to));
                Reply::Json(client.post(&path, Vec::new()).await?)
            }
            CliCommand::Events { service, entity, from } => {
                let body = client.get(&format!("{}/events?from={from}", entity_path(&service, &entity))).await?;
                Reply::Shown(body, Box::new(show::events))
            }
            CliCommand::Follow { service, entity, from } => {
                let from = match from {
                    Some(from) => from,
                    None => {
                        let position = client.get(&entity_path(&service, &entity)).await?;
                        let position: Value = serde_json::from_str(&position)?;
                        position["last_seq"].as_u64().unwrap_or(0) + 1
                    }
                };
                let path = format!("{}/events?follow=true&from={from}", entity_path(&service, &entity));
                return follow::follow(&client, &path, self.json).await;
            }
            CliCommand::Services { service: None } => {
                Reply::Shown(client.get("/v1/services").await?, Box::new(show::services))
            }
            CliCommand::Services { service: Some(service) } => {
                Reply::Shown(client.get(&format!("/v1/services/{}", segment(&service))).await?, Box::new(show::service))
            }
            CliCommand::Cluster => {
                let now = crate::journal::now_ms();
                Reply::Shown(client.get("/v1/cluster").await?, Box::new(move |cluster| show::cluster(cluster, now)))
            }
            CliCommand::Metrics => {
                let text = client.get("/metrics").await?;
                if self.json {
                    print!("{text}");
                } else {
                    print!("{}", metrics_summary::summary(&text));
                }
                return Ok(());
            }
            CliCommand::Delete { service } => {
                Reply::Json(client.admin().delete(&format!("/v1/services/{}", segment(&service))).await?)
            }
        };
        reply.print(self.json);
        Ok(())
    }
}

/// What a client command got back, and how to show it.
enum Reply {
    /// A JSON reply, indented for people.
    Json(String),
    /// A JSON reply people see through a view (a table, say).
    Shown(String, Box<dyn Fn(&Value) -> String>),
}

impl Reply {
    /// Prints the reply: as it came with `json` (or when it is not JSON),
    /// else for people.
    fn print(self, json: bool) {
        let (body, view) = match self {
            Reply::Json(body) => (body, None),
            Reply::Shown(body, view) => (body, Some(view)),
        };
        let parsed = serde_json::from_str::<Value>(&body);
        match (json, parsed, view) {
            (false, Ok(value), Some(view)) => print!("{}", view(&value)),
            (false, Ok(value), None) => print!("{}", show::state(&value)),
            _ if body.is_empty() => {}
            _ => println!("{}", body.trim_end()),
        }
    }
}

/// Percent-encodes one URL path segment (or query value).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("foo"), "foo");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
