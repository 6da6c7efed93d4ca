//! Where the host's logs go and how they look: to stderr, as plain text —
//! coloured only when stderr is a terminal, so a file or a pipe gets no
//! escape codes — or as one JSON object per line. `RUST_LOG` picks what is
//! logged (default `info`).
//!
//! Every invocation runs in a span named `invocation` with its `service`,
//! `entity`, `command`, `version` and `outcome`, so whatever is logged while
//! it runs names what it was running.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the spans it is in.
    Json,
}

/// Installs the process's log subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}
