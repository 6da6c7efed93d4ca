//! The `wasmstate` command line: `serve`, and client commands that talk to a
//! running server over HTTP. `deploy.rs` holds deploys and rollbacks, which
//! verify new versions against the stored entities; `journal.rs` works on
//! a journal directly.

mod deploy;
mod journal;
mod scaffold;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// server's admin token to deploy, roll back and delete; its invoke or
    /// read token for the rest, when it has them.
    #[arg(long, global = true, env = "WASMSTATE_TOKEN", hide_env_values = true)]
    token: Option<String>,

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
        /// For an action: the services whose events it subscribes to.
        #[arg(long, value_delimiter = ',')]
        subscribe: Vec<String>,
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
        crate::logging::init(self.log_format);
        let client = Client::new(&self.url, self.token);
        let body = match self.command {
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
            CliCommand::Deploy { service, component, verify, subscribe } => {
                deploy::deploy(&client, &service, &component, &verify, &subscribe).await?
            }
            CliCommand::Rollback { service, to, verify } => deploy::rollback(&client, &service, to, &verify).await?,
            CliCommand::Invoke { service, entity, command, payload, dry_run, at } => {
                let mut path =
                    format!("/v1/services/{}/entities/{}/{}", segment(&service), segment(&entity), segment(&command));
                if dry_run {
                    path.push_str("?dry_run=true");
                }
                if let Some(at) = at {
                    path.push_str(&format!("&at={at}"));
                }
                client.post(&path, payload.unwrap_or_default().into_bytes()).await?
            }
            CliCommand::State { service, entity, at } => {
                let at = at.map(|at| format!("?at={at}")).unwrap_or_default();
                client
                    .get(&format!("/v1/services/{}/entities/{}/state{at}", segment(&service), segment(&entity)))
                    .await?
            }
            CliCommand::Fork { service, entity, to, at } => {
                let at = at.map(|at| format!("&at={at}")).unwrap_or_default();
                let path = format!(
                    "/v1/services/{}/entities/{}/fork?to={}{at}",
                    segment(&service),
                    segment(&entity),
                    segment(&to)
                );
                client.post(&path, Vec::new()).await?
            }
            CliCommand::Events { service, entity, from } => {
                client
                    .get(&format!(
                        "/v1/services/{}/entities/{}/events?from={from}",
                        segment(&service),
                        segment(&entity)
                    ))
                    .await?
            }
            CliCommand::Services { service: None } => client.get("/v1/services").await?,
            CliCommand::Services { service: Some(service) } => {
                client.get(&format!("/v1/services/{}", segment(&service))).await?
            }
            CliCommand::Delete { service } => client.delete(&format!("/v1/services/{}", segment(&service))).await?,
        };
        println!("{body}");
        Ok(())
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
