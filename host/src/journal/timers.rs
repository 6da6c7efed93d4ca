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
//!
//! A timer with a [`CronSchedule`] repeats: once a slot has fired it stays,
//! moved to its next slot, with the same id.

use serde::{Deserialize, Serialize};

use super::JournalError;
use super::records::{decode, encode_traced, trace_after};
use crate::domain::{Call, CronSchedule};
use crate::trace_context::TraceContext;

/// The longest timer name accepted.
pub const MAX_TIMER_NAME: usize = 128;

/// The furthest ahead a timer may be set.
pub const MAX_TIMER_DELAY: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 24 * 3600);

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
    /// When it was first due (for a repeating timer, the slot it fires
    /// next): its firing's key names this.
    pub scheduled_ms: u64,
    /// Its schedule, if it repeats.
    pub schedule: Option<CronSchedule>,
    /// How many forwards and side effects deep its firing runs.
    pub hops: u32,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The span of the command that set it, when its trace is sampled.
    pub trace: Option<TraceContext>,
}

/// The timer setting a command fires, named in the command's commit: the
/// commit lands only while that setting is stored, so a timer cancelled or
/// set again before its firing commits does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerGuard {
    /// The service of the entity that owns the timer.
    pub service: String,
    /// The entity that owns it.
    pub entity: String,
    /// Its name.
    pub name: String,
    /// The setting that fires.
    pub id: u64,
}

impl TimerGuard {
    /// The guard of `timer`'s current setting.
    pub fn of(timer: &Timer) -> Self {
        Self { service: timer.service.clone(), entity: timer.entity.clone(), name: timer.name.clone(), id: timer.id }
    }
}

/// A change a commit makes to its entity's timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// Sets a timer, replacing one of the same owner and name.
    Set(Box<Timer>),
    /// Removes the commit's entity's timer of this name, if there is one.
    Cancel(String),
}

/// A `TIMERS` row: a timer but its key (owner and name), then the trace
/// of the command that set it (see `records::encode_traced`).
#[derive(Debug, Serialize, Deserialize)]
struct TimerRecord<C, S> {
    id: u64,
    call: C,
    due_ms: u64,
    scheduled_ms: u64,
    hops: u32,
    attempts: u32,
    last_error: Option<String>,
    schedule: Option<S>,
}

/// A row as schema versions before repeating timers wrote it (redb 3,
/// PostgreSQL 4): the same fields but the schedule.
#[derive(Debug, Serialize, Deserialize)]
struct TimerRecordV1 {
    id: u64,
    call: Call,
    due_ms: u64,
    scheduled_ms: u64,
    hops: u32,
    attempts: u32,
    last_error: Option<String>,
}

/// Rewrites a row of the layout before repeating timers in the current
/// one, keeping its trace: what the migrations to redb schema 4 and
/// PostgreSQL schema 5 do to every timer.
pub(super) fn upgrade_row(bytes: &[u8], what: &str) -> Result<Vec<u8>, JournalError> {
    let old: TimerRecordV1 = decode(bytes, what)?;
    let record = TimerRecord::<_, CronSchedule> {
        id: old.id,
        call: &old.call,
        due_ms: old.due_ms,
        scheduled_ms: old.scheduled_ms,
        hops: old.hops,
        attempts: old.attempts,
        last_error: old.last_error.clone(),
        schedule: None,
    };
    encode_traced(&record, trace_after::<TimerRecordV1>(bytes).as_ref())
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
            schedule: None,
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
            schedule: self.schedule.as_ref(),
        };
        encode_traced(&record, self.trace.as_ref())
    }

    /// Decodes the row of `service/entity`'s timer `name`.
    pub(super) fn read(service: &str, entity: &str, name: &str, bytes: &[u8]) -> Result<Self, JournalError> {
        let record: TimerRecord<Call, CronSchedule> = decode(bytes, &format!("timer {name:?} of {service}/{entity}"))?;
        Ok(Self {
            service: service.to_string(),
            entity: entity.to_string(),
            name: name.to_string(),
            id: record.id,
            call: record.call,
            due_ms: record.due_ms,
            scheduled_ms: record.scheduled_ms,
            schedule: record.schedule,
            hops: record.hops,
            attempts: record.attempts,
            last_error: record.last_error,
            trace: trace_after::<TimerRecord<Call, CronSchedule>>(bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MissedFirings;

    #[test]
    fn a_timer_round_trips_and_its_layout_is_pinned() {
        let call = Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: b"{}".to_vec() };
        let mut timer = Timer::new("o", "x", "t", call, 300, 1);
        timer.id = 5;
        assert_eq!(timer.encode().unwrap(), b"\x05\x01s\x01e\x01C\x02{}\xac\x02\xac\x02\x01\x00\x00\x00");
        assert_eq!(Timer::read("o", "x", "t", &timer.encode().unwrap()).unwrap(), timer);
        timer.attempts = 2;
        timer.last_error = Some("no".into());
        timer.trace = Some(TraceContext { trace_id: [1; 16], span_id: [2; 8], parent_span_id: None, sampled: true });
        assert_eq!(Timer::read("o", "x", "t", &timer.encode().unwrap()).unwrap(), timer);
        assert!(Timer::read("o", "x", "t", b"\x05").is_err());
        timer.schedule = Some(CronSchedule { expression: "* * * * *".into(), missed: MissedFirings::All });
        assert_eq!(Timer::read("o", "x", "t", &timer.encode().unwrap()).unwrap(), timer);
        timer.trace = None;
        let bytes = timer.encode().unwrap();
        assert!(bytes.ends_with(b"\x02no\x01\x09* * * * *\x02"), "{bytes:?}");
        assert_ne!(
            Timer::new("o", "x", "t", timer.call.clone(), 1, 0).id,
            Timer::new("o", "x", "t", timer.call, 1, 0).id
        );
    }

    #[test]
    fn a_row_before_repeating_timers_is_upgraded_with_its_trace() {
        let call = Call { service: "s".into(), entity: "e".into(), command: "C".into(), payload: b"{}".to_vec() };
        let old = b"\x05\x01s\x01e\x01C\x02{}\xac\x02\xac\x02\x01\x00\x00";
        let mut expected = Timer::new("o", "x", "t", call, 300, 1);
        expected.id = 5;
        assert_eq!(Timer::read("o", "x", "t", &upgrade_row(old, "t").unwrap()).unwrap(), expected);
        let trace = TraceContext { trace_id: [1; 16], span_id: [2; 8], parent_span_id: None, sampled: true };
        let mut traced = old.to_vec();
        traced.push(1);
        traced.extend(postcard::to_allocvec(&trace).unwrap());
        expected.trace = Some(trace);
        assert_eq!(Timer::read("o", "x", "t", &upgrade_row(&traced, "t").unwrap()).unwrap(), expected);
        assert!(upgrade_row(b"\x05", "t").is_err());
    }
}
