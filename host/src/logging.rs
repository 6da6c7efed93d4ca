//! Where the host's logs go and how they look: to stderr, as plain text —
//! coloured only when stderr is a terminal, so a file or a pipe gets no
//! escape codes — or as one JSON object per line. `RUST_LOG` picks what is
//! logged (default `info`).
//!
//! Every invocation runs in a span named `invocation` with its `service`,
//! `entity`, `command`, `cause`, `version`, `outcome` and its place in its
//! trace (`trace_id`, `span_id`), so whatever is logged while it runs names
//! what it was running. Its parts' spans (`guest_call`, `commit`) are for
//! traces, and left out of the log lines. With `--otlp-endpoint`, the same spans are also
//! exported (see `telemetry`), whatever `RUST_LOG` says.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::{self, ExportGuard};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the spans it is in.
    Json,
}

/// The spans of an invocation's parts, exported but not logged.
const INNER_SPANS: [&str; 2] = ["guest_call", "commit"];

/// Installs the process's log subscriber, and when `otlp_endpoint` is set
/// the exporter of its spans, which flushes when the guard is dropped.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Option<ExportGuard>> {
    // The spans inside an invocation are for traces: a line logged in one
    // shows the invocation's span, as before they existed.
    let inner_spans = filter_fn(|meta| !(meta.is_span() && INNER_SPANS.contains(&meta.name())));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")).and(inner_spans);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed(),
    };
    let (export, guard) = match otlp_endpoint {
        Some(endpoint) => {
            let (layer, guard) = telemetry::otlp(endpoint)?;
            // The host's spans and the lines logged in them, at info.
            let spans = Targets::new().with_target("wasmstate", LevelFilter::INFO);
            (Some(layer.with_filter(spans)), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(logs).with(export).init();
    Ok(guard)
}
