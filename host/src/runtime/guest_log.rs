//! A guest's own log: each line it writes to stderr becomes a host log line
//! (target `wasmstate::guest`) in the span of the invocation it belongs to,
//! so it names the service, entity, command and invocation. Lines are
//! capped in length, and a service's guests share a rate limit: lines past
//! it are dropped, and how many is said once the limit lets lines through
//! again.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The longest line logged; the rest of a longer one is cut.
pub const MAX_LINE_BYTES: usize = 1024;
/// Lines a service's guests may log per second, on average...
const LINES_PER_SECOND: f64 = 100.0;
/// ...and at once, after a quiet spell.
const BURST_LINES: f64 = 500.0;

/// The rate limit a service version's guests share.
pub struct LogBudget {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last one logged.
    dropped: u64,
}

/// Whether a line may be logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it; `dropped` lines before it were not.
    Log { dropped: u64 },
    /// Drop it.
    Drop,
}

impl LogBudget {
    /// A full budget.
    pub fn new() -> Arc<Self> {
        let bucket = Bucket { tokens: BURST_LINES, refilled: Instant::now(), dropped: 0 };
        Arc::new(Self { bucket: Mutex::new(bucket) })
    }

    /// Takes one line's share of the budget at `now`, if there is one.
    pub fn admit(&self, now: Instant) -> Admit {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * LINES_PER_SECOND).min(BURST_LINES);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Admit::Log { dropped: std::mem::take(&mut bucket.dropped) }
        } else {
            bucket.dropped += 1;
            Admit::Drop
        }
    }
}

/// Splits a guest's stderr into lines and logs them under a budget.
pub struct LineLog {
    budget: Arc<LogBudget>,
    /// The line being written, up to [`MAX_LINE_BYTES`].
    pending: Vec<u8>,
    /// Whether bytes of the pending line were cut.
    cut: bool,
}

impl LineLog {
    /// Logs lines under `budget`.
    pub fn new(budget: Arc<LogBudget>) -> Self {
        Self { budget, pending: Vec::new(), cut: false }
    }

    /// Takes the next bytes the guest wrote; logs each line they end.
    pub fn write(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.push(&bytes[..end]);
            self.end_line();
            bytes = &bytes[end + 1..];
        }
        self.push(bytes);
    }

    /// Logs the line written so far, if any: at the end of a call, whose
    /// last line may have no newline (a panic message, say).
    pub fn end_line(&mut self) {
        if self.pending.is_empty() || !tracing::enabled!(target: "wasmstate::guest", tracing::Level::INFO) {
            self.pending.clear();
            self.cut = false;
            return;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end();
        if !line.is_empty() {
            let cut = if self.cut { "…" } else { "" };
            match self.budget.admit(Instant::now()) {
                Admit::Log { dropped } => {
                    if dropped > 0 {
                        tracing::warn!(target: "wasmstate::guest", dropped, "guest log lines were dropped: over the rate limit of {LINES_PER_SECOND} a second");
                    }
                    tracing::info!(target: "wasmstate::guest", "{line}{cut}");
                }
                Admit::Drop => {}
            }
        }
        self.pending.clear();
        self.cut = false;
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES - self.pending.len();
        if bytes.len() > room {
            self.cut = true;
        }
        self.pending.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate_and_counts_what_it_drops() {
        let budget = LogBudget::new();
        let start = Instant::now();
        for _ in 0..BURST_LINES as usize {
            assert_eq!(budget.admit(start), Admit::Log { dropped: 0 });
        }
        assert_eq!(budget.admit(start), Admit::Drop);
        assert_eq!(budget.admit(start), Admit::Drop);
        // A tenth of a second later, ten more lines may go; the first says
        // how many were dropped.
        let later = start + Duration::from_millis(100);
        assert_eq!(budget.admit(later), Admit::Log { dropped: 2 });
        for _ in 1..10 {
            assert_eq!(budget.admit(later), Admit::Log { dropped: 0 });
        }
        assert_eq!(budget.admit(later), Admit::Drop);
    }

    #[test]
    fn long_lines_are_cut_and_lines_split_across_writes_are_joined() {
        let mut log = LineLog::new(LogBudget::new());
        log.write(b"hel");
        assert_eq!(log.pending, b"hel");
        log.write(b"lo\nwor");
        assert_eq!(log.pending, b"wor", "the first line was logged");
        log.end_line();
        assert!(log.pending.is_empty());
        log.write(&vec![b'x'; 3 * MAX_LINE_BYTES]);
        assert_eq!(log.pending.len(), MAX_LINE_BYTES);
        assert!(log.cut);
        log.write(b"\n");
        assert!(log.pending.is_empty() && !log.cut);
    }
}
