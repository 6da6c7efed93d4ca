//! Where the host's logs go and how they look: to stderr, as plain text —
//! coloured only when stderr is a terminal, so a file or a pipe gets no
//! escape codes — or as one JSON object per line. `RUST_LOG` picks what is
//! logged (default `info`).
//!
//! Every invocation runs in a span named `invocation` with its `service`,
//! `entity`, `command`, `cause`, `version`, `outcome` and its place in its
//! trace (`trace_id`, `span_id`), so whatever is logged while it runs names
//! what it was running. Its parts' spans (`guest_call`, `commit`) are at
//! `debug`. With `--otlp-endpoint`, the same spans are also
//! exported (see `telemetry`), whatever `RUST_LOG` says.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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

/// Installs the process's log subscriber, and when `otlp_endpoint` is set
/// the exporter of its spans, which flushes when the guard is dropped.
///
/// The spans of an invocation's parts (`guest_call`, `commit`) are at
/// `debug`: logs show them only when asked, and without an exporter they
/// cost nothing. The exporter takes the host's spans down to `debug` and
/// its log lines down to `info`, whatever `RUST_LOG` says.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Option<ExportGuard>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(endpoint) = otlp_endpoint else {
        // One filter for all: what it turns off costs nothing.
        tracing_subscriber::registry().with(filter).with(log_lines(format)).init();
        return Ok(None);
    };
    let logs = log_lines(format);
    let (layer, guard) = telemetry::otlp(endpoint)?;
    let exported = filter_fn(|meta| {
        let level = *meta.level();
        meta.target().starts_with("wasmstate") && (level <= Level::INFO || (meta.is_span() && level <= Level::DEBUG))
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(layer.with_filter(exported)).init();
    Ok(Some(guard))
}

/// The layer writing log lines to stderr in `format`.
fn log_lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).boxed(),
    }
}
