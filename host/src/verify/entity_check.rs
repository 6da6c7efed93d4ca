//! The check of one stored entity against a new version: rebuild its state
//! (from the latest snapshot, as a cold load does, and from event 1 — or
//! the oldest snapshot compaction kept — folded page by page), or decode
//! its stored value, and run the probe command on the old and the new
//! version.
//!
//! A rebuild from the latest snapshot that meets a guest limit (time,
//! memory) fails the entity: a cold load would meet it too. A fold from
//! event 1 that meets one leaves the entity "not checked" that way.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{Call, CommandMeta, Effects, Event, Failure, FailureCode, Reply, ServiceKind, payload_json};
use crate::journal::{EntityHistory, Journal, JournalError};
use crate::runtime::{CompiledService, FailedAt, GuestError, ReplayFailure, Replayed, Runtime, Snapshot, WitVersion};

/// How often a call the host had no room for (every instance busy, the
/// guests' memory full) is tried before the entity counts as not checked.
const ATTEMPTS_WHEN_BUSY: u32 = 50;
/// How long to wait between those attempts.
const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// The most bytes of events one step of a fold from event 1 hands the guest.
const FOLD_PAGE_BYTES: usize = 4 << 20;
/// The most bytes of a reply a report shows.
const MAX_REPLY_SHOWN: usize = 4 << 10;

/// An entity the new version could not rebuild.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EntityFailure {
    /// The entity.
    pub entity: String,
    /// What was rebuilt: `snapshot` (the latest snapshot and the events
    /// after it), `start` (every event from 1, or from the oldest snapshot
    /// kept where the service compacts its history) or `state` (a value
    /// entity's stored state).
    pub from: &'static str,
    /// The seq of the event that could not be read; for the snapshot, the
    /// seq it is as of; `null` when the component did not say.
    pub seq: Option<u64>,
    /// Whether it was the snapshot that could not be read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
    /// What the component said.
    pub message: String,
}

/// An entity on which the probe's replies differ.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ReplyDifference {
    /// The entity.
    pub entity: String,
    /// What the serving version answered.
    pub old: Value,
    /// What the new version answered.
    pub new: Value,
}

/// An entity a check could not be finished on, and why: the guest met a
/// limit folding its log from event 1.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NotChecked {
    /// The entity.
    pub entity: String,
    /// What was being rebuilt (see [`EntityFailure::from`]).
    pub from: &'static str,
    /// The limit met.
    pub message: String,
}

/// An entity the new version folds to another state from event 1 than
/// from its latest snapshot: its `apply` changed what the events mean, or
/// the snapshot lacks what the new state derives from them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StateDifference {
    /// The entity.
    pub entity: String,
    /// The state read from the latest snapshot, with the events after it.
    pub from_snapshot: Value,
    /// The state folded from event 1 (or the oldest snapshot kept).
    pub from_start: Value,
}

/// What checking one entity found.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub failures: Vec<EntityFailure>,
    pub not_checked: Vec<NotChecked>,
    pub difference: Option<ReplyDifference>,
    pub state_difference: Option<StateDifference>,
}

/// Why a check stopped: the host's, not the version's.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The host had no room to run the guest, for a while.
    #[error("the host is too busy to verify the new version ({0}); retry")]
    Busy(GuestError),
    /// A blocking task failed.
    #[error("{0}")]
    Internal(String),
}

/// How a rebuild ended.
enum Rebuilt {
    /// With the state it folded to, when the component can answer it.
    Done(Option<Vec<u8>>),
    Failed(ReplayFailure),
    Limit(GuestError),
}

/// Checks entities of one service, one after the other.
pub(super) struct Worker {
    pub runtime: Arc<Runtime>,
    pub journal: Arc<dyn Journal>,
    pub service: String,
    pub kind: ServiceKind,
    pub new: CompiledService,
    pub old: Option<CompiledService>,
    pub probe: Option<String>,
}

impl Worker {
    /// Checks `entity`. Errors are the host's.
    pub async fn check(&self, entity: &str) -> Result<Outcome, CheckError> {
        match self.kind {
            ServiceKind::EventSourced => {
                let history = self.read(entity, |journal, service, id| journal.load_entity(service, id)).await?;
                self.check_event_sourced(entity, history).await
            }
            ServiceKind::Value => match self.read(entity, |journal, service, id| journal.value(service, id)).await? {
                Some(state) => self.check_value(entity, &state).await,
                None => Ok(Outcome::default()),
            },
            // A CRDT's state is the host's own, which every version reads
            // alike; an action has none.
            ServiceKind::Crdt | ServiceKind::Action => Ok(Outcome::default()),
        }
    }

    /// Runs a journal read off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        entity: &str,
        read: impl FnOnce(&dyn Journal, &str, &str) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, CheckError> {
        let (journal, service, id) = (self.journal.clone(), self.service.clone(), entity.to_string());
        let read = tokio::task::spawn_blocking(move || read(&*journal, &service, &id));
        Ok(read.await.map_err(|e| CheckError::Internal(e.to_string()))??)
    }

    async fn check_event_sourced(&self, entity: &str, history: EntityHistory) -> Result<Outcome, CheckError> {
        let snapshot = history.snapshot.map(|s| Snapshot::new(s.seq, s.version, s.state));
        let mut outcome = Outcome::default();
        // As a cold load does: a limit met here fails the entity.
        let cold = match self.replay(entity, snapshot.as_ref(), &history.events).await? {
            Ok(Replayed::State(state)) => Rebuilt::Done(Some(state)),
            Ok(Replayed::Folded) => Rebuilt::Done(None),
            Err(rebuilt) => rebuilt,
        };
        let cold = record(&mut outcome, entity, if snapshot.is_some() { "snapshot" } else { "start" }, cold, true);
        if snapshot.is_some() {
            let folded = self.fold_from_oldest(entity).await?;
            let folded = record(&mut outcome, entity, "start", folded, false);
            // The new code folds the whole log to another state than the
            // one it reads from the snapshot an earlier version took.
            if let (Some(from_snapshot), Some(from_start)) = (cold, folded) {
                let (from_snapshot, from_start) = (payload_json(&from_snapshot), payload_json(&from_start));
                if from_snapshot != from_start {
                    outcome.state_difference = Some(StateDifference {
                        entity: entity.into(),
                        from_snapshot: shown(from_snapshot),
                        from_start: shown(from_start),
                    });
                }
            }
        }
        if outcome.failures.is_empty()
            && let (Some(probe), Some(old)) = (&self.probe, &self.old)
        {
            let events = &history.events;
            // Both versions run the probe at the same time, so a reply that
            // shows the time differs only where the code does.
            let meta = CommandMeta::now(history.last_seq, None);
            let run = async |version: &CompiledService| {
                let call = self.probe_call(entity, probe);
                let snapshot = snapshot.as_ref();
                retry_when_busy(|| {
                    self.runtime.handle_event_sourced(version, snapshot, events.clone(), call.clone(), meta.clone())
                })
                .await
            };
            let (old, new) = (busy_stops(run(old).await)?, busy_stops(run(&self.new).await)?);
            outcome.difference = difference(entity, old, new);
        }
        Ok(outcome)
    }

    /// Folds `entity` from its oldest kept state, a page of events at a
    /// time, each step starting from the state the last one answered (a
    /// 0.1.0 component, which cannot answer it, gets the whole log at once).
    async fn fold_from_oldest(&self, entity: &str) -> Result<Rebuilt, CheckError> {
        let (oldest, first) = self.read(entity, |journal, service, id| journal.oldest_state(service, id)).await?;
        let mut state = oldest.map(|s| Snapshot::new(s.seq, s.version, s.state));
        let mut from = state.as_ref().map_or(first.max(1), |s| s.seq() + 1);
        let page = if self.new.wit_version() == WitVersion::V0_1 { usize::MAX } else { FOLD_PAGE_BYTES };
        loop {
            let events = self
                .read(entity, move |journal, service, id| journal.events_page(service, id, from, usize::MAX, page))
                .await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(Rebuilt::Done(state.map(Snapshot::into_state)));
            };
            match self.replay(entity, state.as_ref(), &events).await? {
                Ok(Replayed::State(folded)) => {
                    state = Some(Snapshot::new(last, 0, folded));
                    from = last + 1;
                }
                Ok(Replayed::Folded) => return Ok(Rebuilt::Done(None)),
                Err(rebuilt) => return Ok(rebuilt),
            }
        }
    }

    /// Replays `events` onto `snapshot` with the new version: what it folds
    /// to, or how it failed.
    async fn replay(
        &self,
        entity: &str,
        snapshot: Option<&Snapshot>,
        events: &[Event],
    ) -> Result<Result<Replayed, Rebuilt>, CheckError> {
        let replayed =
            retry_when_busy(|| self.runtime.replay(&self.new, &self.service, entity, snapshot, events)).await;
        Ok(match replayed {
            Ok(Ok(replayed)) => Ok(replayed),
            Ok(Err(failure)) => Err(Rebuilt::Failed(failure)),
            Err(error @ (GuestError::MemoryLimit(_) | GuestError::Timeout(_))) => Err(Rebuilt::Limit(error)),
            Err(error @ GuestError::Trap(_)) => {
                Err(Rebuilt::Failed(ReplayFailure { at: FailedAt::Unknown, message: error.to_string() }))
            }
            Err(error) => return Err(CheckError::Busy(error)),
        })
    }

    async fn check_value(&self, entity: &str, state: &[u8]) -> Result<Outcome, CheckError> {
        let decoded = retry_when_busy(|| self.runtime.decode_state(&self.new, &self.service, entity, state)).await;
        let message = match decoded {
            Ok(Ok(_)) => None,
            Ok(Err(message)) => Some(message),
            Err(error @ (GuestError::MemoryLimit(_) | GuestError::Timeout(_) | GuestError::Trap(_))) => {
                Some(error.to_string())
            }
            Err(error) => return Err(CheckError::Busy(error)),
        };
        if let Some(message) = message {
            let failure = EntityFailure { entity: entity.into(), from: "state", seq: None, snapshot: false, message };
            return Ok(Outcome { failures: vec![failure], ..Outcome::default() });
        }
        let (Some(probe), Some(old)) = (&self.probe, &self.old) else { return Ok(Outcome::default()) };
        let meta = CommandMeta::now(0, None);
        let run = async |version: &CompiledService| {
            let call = self.probe_call(entity, probe);
            retry_when_busy(|| self.runtime.handle_value(version, Some(state), call.clone(), meta.clone())).await
        };
        let (old, new) = (busy_stops(run(old).await)?, busy_stops(run(&self.new).await)?);
        Ok(Outcome { difference: difference(entity, old, new), ..Outcome::default() })
    }

    fn probe_call(&self, entity: &str, probe: &str) -> Call {
        Call { service: self.service.clone(), entity: entity.into(), command: probe.into(), payload: Vec::new() }
    }
}

/// Adds how a rebuild from `from` ended to `outcome`: a limit met is a
/// failure when `limits_fail`, else the entity was not checked that way.
/// Answers the state it folded to, if it did and the component said.
fn record(
    outcome: &mut Outcome,
    entity: &str,
    from: &'static str,
    rebuilt: Rebuilt,
    limits_fail: bool,
) -> Option<Vec<u8>> {
    let failure = match rebuilt {
        Rebuilt::Done(state) => return state,
        Rebuilt::Failed(failure) => failure,
        Rebuilt::Limit(error) if limits_fail => ReplayFailure { at: FailedAt::Unknown, message: error.to_string() },
        Rebuilt::Limit(error) => {
            outcome.not_checked.push(NotChecked { entity: entity.into(), from, message: error.to_string() });
            return None;
        }
    };
    let (seq, snapshot) = match failure.at {
        FailedAt::Event(seq) => (Some(seq), false),
        FailedAt::Snapshot(seq) => (Some(seq), true),
        FailedAt::Unknown => (None, false),
    };
    outcome.failures.push(EntityFailure { entity: entity.into(), from, seq, snapshot, message: failure.message });
    None
}

/// Runs `call` again while the host has no room for it, a while at most.
async fn retry_when_busy<T, F: Future<Output = Result<T, GuestError>>>(
    mut call: impl FnMut() -> F,
) -> Result<T, GuestError> {
    let mut attempt = 1;
    loop {
        match call().await {
            Err(GuestError::Busy | GuestError::HostMemoryFull(_)) if attempt < ATTEMPTS_WHEN_BUSY => {
                attempt += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// A probe's answer, unless the host had no room to run it: that stops the check.
fn busy_stops<T>(answer: Result<T, GuestError>) -> Result<Result<T, GuestError>, CheckError> {
    match answer {
        Err(error @ (GuestError::Busy | GuestError::HostMemoryFull(_))) => Err(CheckError::Busy(error)),
        other => Ok(other),
    }
}

/// The two answers of the probe, if they differ: replies compared as JSON
/// when both are JSON, byte for byte otherwise. A guest the host had no
/// room for stops the check.
fn difference(
    entity: &str,
    old: Result<Result<Effects, Failure>, GuestError>,
    new: Result<Result<Effects, Failure>, GuestError>,
) -> Option<ReplyDifference> {
    let (old, new) = (answer_json(old), answer_json(new));
    (old != new).then(|| ReplyDifference { entity: entity.into(), old: shown(old), new: shown(new) })
}

/// `answer` as a report shows it: cut to a string of its first
/// [`MAX_REPLY_SHOWN`] bytes when it is longer.
fn shown(answer: Value) -> Value {
    let text = answer.to_string();
    if text.len() <= MAX_REPLY_SHOWN {
        return answer;
    }
    let cut = (0..=MAX_REPLY_SHOWN).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    Value::String(format!("{}… ({} bytes in all)", &text[..cut], text.len()))
}

/// A probe's answer as the report shows it: the reply, a forward, or the
/// failure.
fn answer_json(answer: Result<Result<Effects, Failure>, GuestError>) -> Value {
    match answer {
        Ok(Ok(effects)) => match effects.reply {
            Reply::Message(bytes) => payload_json(&bytes),
            Reply::Forward(call) => json!({"forward": call.target(), "payload": payload_json(&call.payload)}),
        },
        Ok(Err(failure)) => json!({"error": {"code": failure_code(failure.code), "message": failure.message}}),
        Err(error) => json!({"error": {"code": "guest_error", "message": error.to_string()}}),
    }
}

fn failure_code(code: FailureCode) -> &'static str {
    match code {
        FailureCode::Rejected => "rejected",
        FailureCode::UnknownCommand => "unknown_command",
        FailureCode::InvalidPayload => "invalid_payload",
        FailureCode::InvalidState => "invalid_state",
    }
}
