//! A `tracing` layer that records the host's spans of sampled traces and
//! hands each, once closed, to an OpenTelemetry span processor.
//!
//! An `invocation` span carries its own ids as fields (`trace_id`,
//! `span_id`, `parent_span_id`, `sampled`: see `invoke`); a span inside
//! one (a `guest_call`, a `commit`) gets a new span id under its nearest
//! recorded ancestor. Spans outside any invocation are not exported. Log
//! events inside a recorded span become its span events.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::trace_context::{TraceContext, parse_hex};

/// The most log events one exported span keeps.
const MAX_EVENTS: usize = 64;

/// Exports the spans of sampled traces to a span processor.
pub struct OtlpLayer {
    processor: Arc<BatchSpanProcessor>,
    scope: InstrumentationScope,
}

impl OtlpLayer {
    /// A layer handing finished spans to `processor`.
    pub(super) fn new(processor: Arc<BatchSpanProcessor>) -> Self {
        let scope = InstrumentationScope::builder("wasmstate").with_version(env!("CARGO_PKG_VERSION")).build();
        Self { processor, scope }
    }
}

/// A span being recorded, kept in its `tracing` span's extensions.
struct Recording {
    name: &'static str,
    start: SystemTime,
    trace: TraceContext,
    /// Whether its parent lives in another process (a request's caller).
    remote_parent: bool,
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
    dropped_events: u32,
    /// Why the span failed, when it did (an invocation's outcome).
    error: Option<String>,
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let (trace, remote_parent) = match fields.own_trace() {
            // An invocation names its place itself.
            Some(trace) => (trace, fields.cause.as_deref() == Some("request") && trace.parent_span_id.is_some()),
            // Anything else is a child of the nearest recorded ancestor.
            None => {
                let Some(parent) =
                    span.scope().skip(1).find_map(|s| s.extensions().get::<Recording>().map(|r| r.trace))
                else {
                    return;
                };
                (parent.child(), false)
            }
        };
        if !trace.sampled {
            return;
        }
        let recording = Recording {
            name: attrs.metadata().name(),
            start: SystemTime::now(),
            trace,
            remote_parent,
            attributes: fields.attributes,
            events: Vec::new(),
            dropped_events: 0,
            error: None,
        };
        span.extensions_mut().insert(recording);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(recording) = extensions.get_mut::<Recording>() else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(outcome) = fields.outcome.as_deref()
            && outcome != "ok"
        {
            recording.error = Some(outcome.to_string());
        }
        recording.attributes.extend(fields.attributes);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else { return };
        let mut extensions = span.extensions_mut();
        let Some(recording) = extensions.get_mut::<Recording>() else { return };
        if recording.events.len() >= MAX_EVENTS {
            recording.dropped_events += 1;
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let name = fields.message.take().unwrap_or_else(|| event.metadata().name().to_string());
        let mut attributes = fields.attributes;
        attributes.push(KeyValue::new("level", event.metadata().level().as_str()));
        attributes.push(KeyValue::new("target", event.metadata().target().to_string()));
        recording.events.push(opentelemetry::trace::Event::new(name, SystemTime::now(), attributes, 0));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(recording) = span.extensions_mut().remove::<Recording>() else { return };
        self.processor.on_end(self.span_data(recording));
    }
}

impl OtlpLayer {
    /// The OpenTelemetry span a finished recording makes.
    fn span_data(&self, recording: Recording) -> SpanData {
        let Recording { name, start, trace, remote_parent, attributes, events, dropped_events, error } = recording;
        let text =
            |key: &str| attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned());
        // An invocation is named for what it ran, as a trace viewer lists it.
        let name: Cow<'static, str> = match (name, text("service"), text("command")) {
            ("invocation", Some(service), Some(command)) => format!("{service}/{command}").into(),
            _ => name.into(),
        };
        let kind = if remote_parent || (name != "guest_call" && text("cause").as_deref() == Some("request")) {
            SpanKind::Server
        } else {
            SpanKind::Internal
        };
        // Non-exhaustive, with public fields.
        let mut span_events = SpanEvents::default();
        (span_events.events, span_events.dropped_count) = (events, dropped_events);
        let status = match error {
            Some(outcome) => Status::error(outcome),
            None => Status::Unset,
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(trace.trace_id),
                SpanId::from_bytes(trace.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: trace.parent_span_id.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: remote_parent,
            span_kind: kind,
            name,
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

/// The fields of a span or event: its own trace ids, the ones read as
/// more than attributes, and the rest as attributes.
#[derive(Default)]
struct Fields {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
    sampled: Option<bool>,
    cause: Option<String>,
    outcome: Option<String>,
    message: Option<String>,
    attributes: Vec<KeyValue>,
}

impl Fields {
    /// The trace context an invocation span names, if it names one.
    fn own_trace(&self) -> Option<TraceContext> {
        Some(TraceContext {
            trace_id: parse_hex(self.trace_id.as_deref()?)?,
            span_id: parse_hex(self.span_id.as_deref()?)?,
            parent_span_id: self.parent_span_id.as_deref().and_then(parse_hex),
            sampled: self.sampled.unwrap_or(false),
        })
    }

    fn text(&mut self, field: &Field, value: String) {
        match field.name() {
            "trace_id" => self.trace_id = Some(value),
            "span_id" => self.span_id = Some(value),
            "parent_span_id" => self.parent_span_id = Some(value),
            "message" => self.message = Some(value),
            name => {
                if name == "cause" {
                    self.cause = Some(value.clone());
                } else if name == "outcome" {
                    self.outcome = Some(value.clone());
                }
                self.attributes.push(KeyValue::new(name, value));
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "sampled" => self.sampled = Some(value),
            name => self.attributes.push(KeyValue::new(name, value)),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
}
