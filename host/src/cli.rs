//! The `wasmstate` command line: `serve`, and client commands that talk to a
//! running server over HTTP.

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
    /// Deploy a component as the next version of a service.
    Deploy {
        /// The service name.
        service: String,
        /// The component (.wasm) to upload.
        component: PathBuf,
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
    /// List deployed services, or describe one.
    Services {
        /// The service to describe.
        service: Option<String>,
    },
}

impl Cli {
    /// Runs the parsed command, logging to stderr.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::logging::init(self.log_format);
        let client = Client::new(&self.url);
        let body = match self.command {
            CliCommand::Serve(mut config) => {
                config.compile_worker = std::env::current_exe().ok();
                return crate::server::serve(*config).await;
            }
            CliCommand::CompileWorker { max_memory } => crate::runtime::run_worker(max_memory),
            CliCommand::Deploy { service, component } => {
                let bytes = std::fs::read(&component)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", component.display()))?;
                client.put(&format!("/v1/services/{}", segment(&service)), bytes).await?
            }
            CliCommand::Invoke { service, entity, command, payload } => {
                let path =
                    format!("/v1/services/{}/entities/{}/{}", segment(&service), segment(&entity), segment(&command));
                client.post(&path, payload.unwrap_or_default().into_bytes()).await?
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
        };
        println!("{body}");
        Ok(())
    }
}

/// Percent-encodes one URL path segment.
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
