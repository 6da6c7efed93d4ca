//! Spans exported over OTLP/HTTP (`--otlp-endpoint`), with the
//! `opentelemetry` crates.
//!
//! Every invocation runs in a `tracing` span named `invocation`, whose
//! children are its `guest_call`s and its `commit`; the invocations that
//! follow it (forwards, side effects, outbox and event deliveries) are its
//! children in the trace, each with the [`TraceContext`] the invocation
//! path gave it. When an endpoint is set, [`OtlpLayer`] turns the spans of
//! sampled traces into OpenTelemetry spans with those very ids — so the
//! `traceparent` a reply names is the span a collector receives — and a
//! batch processor sends them to `ENDPOINT/v1/traces` as protobuf.
//!
//! A request whose `traceparent` says "not sampled" is not exported; a new
//! trace is sampled whenever spans are exported at all.
//!
//! [`TraceContext`]: crate::trace_context::TraceContext

mod otlp_layer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};

pub use otlp_layer::OtlpLayer;

/// Whether spans are exported, so new traces are sampled.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// How long finished spans wait to be sent together.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the last spans may take to leave when the host stops.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a trace this host starts is sampled: true when spans are
/// exported.
pub fn sampled_by_default() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter's batch processor; flushes what it holds when dropped.
pub struct ExportGuard {
    processor: std::sync::Arc<BatchSpanProcessor>,
}

impl Drop for ExportGuard {
    fn drop(&mut self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(error) = self.processor.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            eprintln!("the last spans were not exported: {error}");
        }
    }
}

/// The layer exporting spans to the OTLP/HTTP collector at `endpoint` (its
/// base URL, e.g. `http://localhost:4318`), and the guard that flushes it.
pub fn otlp(endpoint: &str) -> anyhow::Result<(OtlpLayer, ExportGuard)> {
    let base = endpoint.trim_end_matches('/');
    let url: reqwest::Url = base.parse().with_context(|| format!("--otlp-endpoint {endpoint:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "--otlp-endpoint must be an http:// or https:// URL, not {endpoint:?}"
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("setting up the OTLP exporter")?;
    let config = BatchConfigBuilder::default().with_scheduled_delay(BATCH_DELAY).build();
    let mut processor = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
    processor.set_resource(&Resource::builder().with_service_name("wasmstate").build());
    let processor = std::sync::Arc::new(processor);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((OtlpLayer::new(processor.clone()), ExportGuard { processor }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_endpoint_must_be_an_http_url() {
        for bad in ["not a url", "ftp://collector:4318", "localhost:4318"] {
            let error = super::otlp(bad).err().unwrap_or_else(|| panic!("{bad:?} was taken"));
            assert!(error.to_string().contains("--otlp-endpoint"), "{error}");
        }
        assert!(!super::sampled_by_default(), "a refused endpoint exports nothing");
    }
}
