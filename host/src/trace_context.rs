//! W3C Trace Context: where an invocation sits in a distributed trace.
//!
//! A request may carry a `traceparent` header (`00-<trace id>-<parent span
//! id>-<flags>`); the invocation it starts becomes a child of that span, or
//! the root of a new trace when there is none (or it does not parse, as
//! the W3C recommendation asks). Every invocation has a [`TraceContext`]:
//! its trace, its own span id and its parent's. What follows it — forwards,
//! side effects, outbox deliveries, event deliveries to subscribers — runs
//! as its children, also across a restart: the journal keeps the context
//! beside the events and outbox entries a command commits.
//!
//! The ids are the host's own, so a response can name the invocation's
//! span (`traceparent` on the reply) whether or not spans are exported
//! (`--otlp-endpoint`, see `telemetry`).

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The header that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// One span's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The trace it belongs to; never all zeros.
    pub trace_id: [u8; 16],
    /// The span itself; never all zeros.
    pub span_id: [u8; 8],
    /// The span it is a child of, if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the trace is sampled: its spans are recorded and exported.
    pub sampled: bool,
}

impl TraceContext {
    /// The root span of a new trace.
    pub fn root(sampled: bool) -> Self {
        Self { trace_id: random_id(), span_id: random_id(), parent_span_id: None, sampled }
    }

    /// A new span: a child of `parent`, or without one the root of a new
    /// trace, sampled when spans are exported.
    pub fn child_or_root(parent: Option<&TraceContext>) -> Self {
        parent.map_or_else(|| Self::root(crate::telemetry::sampled_by_default()), Self::child)
    }

    /// A new span, child of this one, in the same trace.
    pub fn child(&self) -> Self {
        Self { span_id: random_id(), parent_span_id: Some(self.span_id), ..*self }
    }

    /// The span a request names in its `traceparent` header, as the remote
    /// parent of what the request runs; `None` when it does not parse.
    ///
    /// Version `00` is read exactly; a later version is read by its first
    /// four fields, as the recommendation asks of a reader that does not
    /// know it.
    pub fn from_traceparent(header: &[u8]) -> Option<Self> {
        let header = std::str::from_utf8(header).ok()?.trim();
        let mut fields = header.split('-');
        let version = fields.next()?;
        let (trace, span, flags) = (fields.next()?, fields.next()?, fields.next()?);
        let later = fields.next();
        if version.len() != 2 || !is_lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && (later.is_some() || header.len() != 55) {
            return None;
        }
        if version != "00" && later.is_some_and(str::is_empty) {
            return None;
        }
        let trace_id: [u8; 16] = parse_hex(trace)?;
        let span_id: [u8; 8] = parse_hex(span)?;
        let [flags] = parse_hex::<1>(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, parent_span_id: None, sampled: flags & 1 == 1 })
    }

    /// The context a commit keeps beside its records, so what they start
    /// later joins the trace: only a sampled one, and only while spans
    /// are exported (else nobody will read it).
    pub fn kept(&self) -> Option<Self> {
        (self.sampled && crate::telemetry::sampled_by_default()).then_some(*self)
    }

    /// The `traceparent` header naming this span as the parent of what
    /// the receiver does.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", Hex(&self.trace_id), Hex(&self.span_id), u8::from(self.sampled))
    }

    /// The trace id as 32 lowercase hex digits, as logs show it.
    pub fn trace_hex(&self) -> String {
        Hex(&self.trace_id).to_string()
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_hex(&self) -> String {
        Hex(&self.span_id).to_string()
    }

    /// The parent span's id as 16 lowercase hex digits, if there is one.
    pub fn parent_hex(&self) -> Option<String> {
        self.parent_span_id.as_ref().map(|id| Hex(id).to_string())
    }
}

/// Bytes as lowercase hex.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Ids are 16 bytes at most: one write of a buffer on the stack.
        let mut buffer = [0u8; 64];
        for chunk in self.0.chunks(buffer.len() / 2) {
            for (pair, byte) in buffer.chunks_exact_mut(2).zip(chunk) {
                pair[0] = DIGITS[usize::from(byte >> 4)];
                pair[1] = DIGITS[usize::from(byte & 0xf)];
            }
            let hex = std::str::from_utf8(&buffer[..2 * chunk.len()]).map_err(|_| fmt::Error)?;
            f.write_str(hex)?;
        }
        Ok(())
    }
}

/// Whether `s` is all lowercase hex digits (W3C ids are lowercase).
fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `N` bytes from exactly `2N` lowercase hex digits.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A random id, never all zeros, from a per-thread xorshift generator:
/// for ids that must be unique, not secret (spans, timer settings).
pub fn random_id<const N: usize>() -> [u8; N] {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    let mut out = [0u8; N];
    STATE.with(|state| {
        for chunk in out.chunks_mut(8) {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    });
    if out.iter().all(|&b| b == 0) { random_id() } else { out }
}

/// A non-zero seed for [`random_id`]'s generator: std's per-process
/// random hash keys (taken from the system's randomness), over the thread.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips() {
        let parent = TraceContext::from_traceparent(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(parent.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_hex(), "00f067aa0ba902b7");
        assert!(parent.sampled && parent.parent_span_id.is_none());
        assert_eq!(parent.traceparent(), EXAMPLE);
        assert_eq!(Hex(&[0xab; 40]).to_string(), "ab".repeat(40));
        let unsampled =
            TraceContext::from_traceparent(&EXAMPLE.as_bytes()[..53].iter().chain(b"00").copied().collect::<Vec<_>>());
        assert!(!unsampled.unwrap().sampled);
    }

    #[test]
    fn a_child_keeps_the_trace_and_names_its_parent() {
        let parent = TraceContext::from_traceparent(EXAMPLE.as_bytes()).unwrap();
        let child = parent.child();
        assert_eq!(
            (child.trace_id, child.parent_span_id, child.sampled),
            (parent.trace_id, Some(parent.span_id), true)
        );
        assert_ne!(child.span_id, parent.span_id);
        assert_eq!(child.parent_hex().as_deref(), Some("00f067aa0ba902b7"));
        let root = TraceContext::root(false);
        assert!(root.parent_span_id.is_none() && !root.sampled);
        assert_ne!(root.trace_id, TraceContext::root(false).trace_id);
        assert!(TraceContext::from_traceparent(root.traceparent().as_bytes()).is_some());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bx-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version is read by its first four fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(TraceContext::from_traceparent(later.as_bytes()).is_some());
        assert!(TraceContext::from_traceparent(&[0xff, 0xfe]).is_none());
    }
}
