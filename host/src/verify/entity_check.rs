//! The check of one stored entity against a new version: rebuild its state
//! (from the latest snapshot, and from event 1), or decode its stored value,
//! and run the probe command on the old and the new version.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{Call, Effects, Failure, FailureCode, Reply, ServiceKind, payload_json};
use crate::journal::{FullHistory, Journal};
use crate::runtime::{CompiledService, FailedAt, GuestError, Runtime, Snapshot};

/// How often a call the host had no room for (every instance busy, the
/// guests' memory full) is tried before the entity counts as not checked.
const ATTEMPTS_WHEN_BUSY: u32 = 50;
/// How long to wait between those attempts.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// An entity the new version could not rebuild.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplyDifference {
    /// The entity.
    pub entity: String,
    /// What the serving version answered.
    pub old: Value,
    /// What the new version answered.
    pub new: Value,
}

/// What checking one entity found.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub failures: Vec<EntityFailure>,
    pub difference: Option<ReplyDifference>,
}

/// Checks entities of one service, one after the other.
pub(super) struct Worker {
    pub runtime: Arc<Runtime>,
    pub journal: Arc<Journal>,
    pub service: String,
    pub kind: ServiceKind,
    pub new: CompiledService,
    pub old: Option<CompiledService>,
    pub probe: Option<String>,
}

impl Worker {
    /// Checks `entity`. Errors are the host's: the journal could not be read.
    pub async fn check(&self, entity: &str) -> anyhow::Result<Outcome> {
        match self.kind {
            ServiceKind::EventSourced => {
                let (journal, service, id) = (self.journal.clone(), self.service.clone(), entity.to_string());
                let history = tokio::task::spawn_blocking(move || journal.full_history(&service, &id)).await??;
                Ok(self.check_event_sourced(entity, &history).await)
            }
            ServiceKind::Value => {
                let (journal, service, id) = (self.journal.clone(), self.service.clone(), entity.to_string());
                let state = tokio::task::spawn_blocking(move || journal.value(&service, &id)).await??;
                Ok(match state {
                    Some(state) => self.check_value(entity, &state).await,
                    None => Outcome::default(),
                })
            }
            ServiceKind::Action => Ok(Outcome::default()),
        }
    }

    async fn check_event_sourced(&self, entity: &str, history: &FullHistory) -> Outcome {
        let snapshot = history.snapshot.as_ref().map(|s| Snapshot::new(s.seq, s.version, s.state.clone()));
        let mut outcome = Outcome::default();
        let mut rebuild = async |from: &'static str, snapshot: Option<&Snapshot>, events: &[crate::domain::Event]| {
            let replayed =
                retry_when_busy(|| self.runtime.replay(&self.new, &self.service, entity, snapshot, events.to_vec()))
                    .await;
            let failure = match replayed {
                Ok(Ok(_)) => return,
                Ok(Err(failure)) => failure,
                Err(error) => crate::runtime::ReplayFailure { at: FailedAt::Unknown, message: not_checked(&error) },
            };
            let (seq, at_snapshot) = match failure.at {
                FailedAt::Event(seq) => (Some(seq), false),
                FailedAt::Snapshot(seq) => (Some(seq), true),
                FailedAt::Unknown => (None, false),
            };
            let message = failure.message;
            outcome.failures.push(EntityFailure { entity: entity.into(), from, seq, snapshot: at_snapshot, message });
        };
        if snapshot.is_some() {
            rebuild("snapshot", snapshot.as_ref(), history.after_snapshot()).await;
        }
        // From event 1, or, where compaction dropped the first events, from
        // the oldest snapshot kept.
        let (oldest, events) = history.oldest();
        let oldest = oldest.map(|s| Snapshot::new(s.seq, s.version, s.state.clone()));
        if oldest.is_none() || oldest.as_ref().map(Snapshot::seq) != snapshot.as_ref().map(Snapshot::seq) {
            rebuild("start", oldest.as_ref(), events).await;
        }
        if outcome.failures.is_empty()
            && let (Some(probe), Some(old)) = (&self.probe, &self.old)
        {
            let events = history.after_snapshot();
            let run = async |version: &CompiledService| {
                let call = self.probe_call(entity, probe);
                retry_when_busy(|| {
                    self.runtime.handle_event_sourced(version, snapshot.as_ref(), events.to_vec(), call.clone())
                })
                .await
            };
            let (old, new) = (run(old).await, run(&self.new).await);
            outcome.difference = difference(entity, old, new);
        }
        outcome
    }

    async fn check_value(&self, entity: &str, state: &[u8]) -> Outcome {
        let decoded = retry_when_busy(|| self.runtime.decode_state(&self.new, &self.service, entity, state)).await;
        let message = match decoded {
            Ok(Ok(_)) => None,
            Ok(Err(message)) => Some(message),
            Err(error) => Some(not_checked(&error)),
        };
        if let Some(message) = message {
            let failure = EntityFailure { entity: entity.into(), from: "state", seq: None, snapshot: false, message };
            return Outcome { failures: vec![failure], difference: None };
        }
        let (Some(probe), Some(old)) = (&self.probe, &self.old) else { return Outcome::default() };
        let run = async |version: &CompiledService| {
            let call = self.probe_call(entity, probe);
            retry_when_busy(|| self.runtime.handle_value(version, Some(state), call.clone())).await
        };
        let (old, new) = (run(old).await, run(&self.new).await);
        Outcome { failures: Vec::new(), difference: difference(entity, old, new) }
    }

    fn probe_call(&self, entity: &str, probe: &str) -> Call {
        Call { service: self.service.clone(), entity: entity.into(), command: probe.into(), payload: Vec::new() }
    }
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

fn not_checked(error: &GuestError) -> String {
    format!("the entity could not be checked: {error}")
}

/// The two answers of the probe, if they differ: replies compared as JSON
/// when both are JSON, byte for byte otherwise.
fn difference(
    entity: &str,
    old: Result<Result<Effects, Failure>, GuestError>,
    new: Result<Result<Effects, Failure>, GuestError>,
) -> Option<ReplyDifference> {
    let (old, new) = (answer_json(old), answer_json(new));
    (old != new).then(|| ReplyDifference { entity: entity.into(), old, new })
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
