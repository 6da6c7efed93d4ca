//! Durable timers: a command to run at a time, owned by an entity under a
//! name, committed with the command that set it (or with a delayed call
//! over HTTP) and kept until it has fired.
//!
//! A timer is keyed by its owner and name, and indexed by when it is due,
//! so the host holds only the next ones in memory however many wait. Each
//! setting of a timer gets a new random `id`: what fires names the id it
//! read, so a timer replaced or cancelled meanwhile is not removed or
//! retried by a firing of its earlier setting, and the firing's key
//! (`timer {id} {due}`) is the same however often it is delivered.

use serde::{Deserialize, Serialize};

use super::JournalError;
use super::records::{decode, encode_traced, trace_after};
use crate::domain::Call;
use crate::trace_context::TraceContext;

/// The longest timer name accepted.
pub const MAX_TIMER_NAME: usize = 128;

/// A timer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The service of the entity that owns it.
    pub service: String,
    /// The entity that owns it (for an action, its routing key).
    pub entity: String,
    /// Its name, unique per owner: setting it again replaces it.
    pub name: String,
    /// This setting of it, random: firings name it.
    pub id: u64,
    /// What it runs.
    pub call: Call,
    /// When it is due (after a failed attempt: when it is tried again), in
    /// ms since the Unix epoch.
    pub due_ms: u64,
    /// When it was first due: its firing's key names this.
    pub scheduled_ms: u64,
    /// How many forwards and side effects deep its firing runs.
    pub hops: u32,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The span of the command that set it, when its trace is sampled.
    pub trace: Option<TraceContext>,
}

/// A change a commit makes to its entity's timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// Sets a timer, replacing one of the same owner and name.
    Set(Box<Timer>),
    /// Removes the commit's entity's timer of this name, if there is one.
    Cancel(String),
}

/// A `TIMERS` row: a timer but its key (owner and name).
#[derive(Debug, Serialize, Deserialize)]
struct TimerRecord<C> {
    id: u64,
    call: C,
    due_ms: u64,
    scheduled_ms: u64,
    hops: u32,
    attempts: u32,
    last_error: Option<String>,
}

impl Timer {
    /// A new timer of `service/entity` named `name`, running `call` at `due_ms`.
    pub fn new(service: &str, entity: &str, name: &str, call: Call, due_ms: u64, hops: u32) -> Self {
        let id = crate::trace_context::random_id();
        Self {
            service: service.to_string(),
            entity: entity.to_string(),
            name: name.to_string(),
            id: u64::from_le_bytes(id),
            call,
            due_ms,
            scheduled_ms: due_ms,
            hops,
            attempts: 0,
            last_error: None,
            trace: None,
        }
    }

    /// The row of the timer, with its trace.
    pub(super) fn encode(&self) -> Result<Vec<u8>, JournalError> {
        let record = TimerRecord {
            id: self.id,
            call: &self.call,
            due_ms: self.due_ms,
            scheduled_ms: self.scheduled_ms,
            hops: self.hops,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        };
        encode_traced(&record, self.trace.as_ref())
    }

    /// Decodes the row of `service/entity`'s timer `name`.
    pub(super) fn read(service: &str, entity: &str, name: &str, bytes: &[u8]) -> Result<Self, JournalError> {
        let record: TimerRecord<Call> = decode(bytes, &format!("timer {name:?} of {service}/{entity}"))?;
        Ok(Self {
            service: service.to_string(),
            entity: entity.to_string(),
            name: name.to_string(),
            id: record.id,
            call: record.call,
            due_ms: record.due_ms,
            scheduled_ms: record.scheduled_ms,
            hops: record.hops,
            attempts: record.attempts,
            last_error: record.last_error,
            trace: trace_after::<TimerRecord<Call>>(bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_round_trips_and_its_layout_is_pinned() {
        let call = Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: b"{}".to_vec() };
        let mut timer = Timer::new("o", "x", "t", call, 300, 1);
        timer.id = 5;
        assert_eq!(timer.encode().unwrap(), b"\x05\x01s\x01e\x01C\x02{}\xac\x02\xac\x02\x01\x00\x00");
        assert_eq!(Timer::read("o", "x", "t", &timer.encode().unwrap()).unwrap(), timer);
        timer.attempts = 2;
        timer.last_error = Some("no".into());
        timer.trace = Some(TraceContext { trace_id: [1; 16], span_id: [2; 8], parent_span_id: None, sampled: true });
        assert_eq!(Timer::read("o", "x", "t", &timer.encode().unwrap()).unwrap(), timer);
        assert!(Timer::read("o", "x", "t", b"\x05").is_err());
        assert_ne!(
            Timer::new("o", "x", "t", timer.call.clone(), 1, 0).id,
            Timer::new("o", "x", "t", timer.call, 1, 0).id
        );
    }
}
