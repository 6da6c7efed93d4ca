//! Rebuilding an entity's state without running a command, for components
//! of every WIT version: what verified deploys check and time travel reads.
//!
//! A 0.2.0 component has `event-sourced.replay` and `value.decode-state`.
//! A 0.1.0 component has only `handle`, so it is called with a command no
//! request can send ([`FOLD_ONLY_COMMAND`]): the SDK reads the state before
//! it looks at the command, so an unreadable state answers `invalid-state`
//! and a readable one `unknown-command`. Such a component cannot say what
//! the state is, only whether it reads it.
//!
//! When a history fails without saying where (a 0.1.0 component, or a
//! guest that trapped), the failing event is found by replaying ever
//! shorter prefixes, a bisection: a handful more calls, on failures only.

use super::{CompiledService, GuestError, Runtime, Snapshot};
use crate::domain::{Call, CommandMeta, Event, FailureCode};

/// The command a 0.1.0 component is called with to make it read its state
/// and nothing more. Command names from requests never hold control
/// characters, so no request can run it.
const FOLD_ONLY_COMMAND: &str = "\u{0}wasmstate:fold-only";

/// What replaying an entity's history gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// The state it folds to, as the component encodes it.
    State(Vec<u8>),
    /// It folds, but the component (built against 0.1.0) cannot say into what.
    Folded,
}

/// Where a history could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedAt {
    /// The event of this seq.
    Event(u64),
    /// The snapshot as of this seq.
    Snapshot(u64),
    /// Somewhere the component did not say and a bisection could not tell
    /// (it ran out of time, say).
    Unknown,
}

/// Why an entity's stored history could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayFailure {
    /// Where.
    pub at: FailedAt,
    /// What the component said (or why it stopped).
    pub message: String,
}

/// One replay attempt.
enum Attempt {
    Replayed(Replayed),
    /// The component said where it failed.
    Failed(ReplayFailure),
    /// It failed without saying where; `bisect` says whether looking for
    /// the place is worth it.
    Unlocated {
        message: String,
        bisect: bool,
    },
}

impl Runtime {
    /// Rebuilds `entity` of `service_name` from `snapshot` (none: the
    /// initial state) and `events` with `service`, committing nothing.
    /// Errors are limits the guest met (time, memory) or the host's (no
    /// instance could run it); a failure is the entity's data that the
    /// component cannot read, or on which it trapped.
    pub async fn replay(
        &self,
        service: &CompiledService,
        service_name: &str,
        entity: &str,
        snapshot: Option<&Snapshot>,
        events: &[Event],
    ) -> Result<Result<Replayed, ReplayFailure>, GuestError> {
        let attempt = self.replay_once(service, service_name, entity, snapshot, events).await?;
        let message = match attempt {
            Attempt::Replayed(replayed) => return Ok(Ok(replayed)),
            Attempt::Failed(failure) => return Ok(Err(failure)),
            Attempt::Unlocated { message, bisect: false } => {
                return Ok(Err(ReplayFailure { at: FailedAt::Unknown, message }));
            }
            Attempt::Unlocated { message, bisect: true } => message,
        };
        // Smallest prefix of `events` that fails: with none, the snapshot.
        let fails = async |len: usize| -> Result<Option<String>, GuestError> {
            Ok(match self.replay_once(service, service_name, entity, snapshot, &events[..len]).await? {
                Attempt::Replayed(_) => None,
                Attempt::Failed(failure) => Some(failure.message),
                Attempt::Unlocated { message, .. } => Some(message),
            })
        };
        if let Some(message) = fails(0).await? {
            let at = snapshot.map_or(FailedAt::Unknown, |s| FailedAt::Snapshot(s.seq()));
            return Ok(Err(ReplayFailure { at, message }));
        }
        let (mut passes, mut failing, mut last_message) = (0, events.len(), message);
        while failing - passes > 1 {
            let middle = passes + (failing - passes) / 2;
            match fails(middle).await? {
                Some(message) => (failing, last_message) = (middle, message),
                None => passes = middle,
            }
        }
        let at =
            failing.checked_sub(1).and_then(|i| events.get(i)).map_or(FailedAt::Unknown, |e| FailedAt::Event(e.seq));
        Ok(Err(ReplayFailure { at, message: last_message }))
    }

    async fn replay_once(
        &self,
        service: &CompiledService,
        service_name: &str,
        entity: &str,
        snapshot: Option<&Snapshot>,
        events: &[Event],
    ) -> Result<Attempt, GuestError> {
        let answer = match self.call_replay(service, snapshot, events).await {
            Some(answer) => answer.map(|answer| match answer {
                Ok(state) => Attempt::Replayed(Replayed::State(state)),
                Err((seq, message)) => {
                    let at = match (seq, snapshot) {
                        (Some(seq), _) => FailedAt::Event(seq),
                        (None, Some(snapshot)) => FailedAt::Snapshot(snapshot.seq()),
                        (None, None) => FailedAt::Unknown,
                    };
                    Attempt::Failed(ReplayFailure { at, message })
                }
            }),
            None => {
                let call = fold_only(service_name, entity);
                // Only 0.1.0 components fold this way, and they take no metadata.
                self.handle_event_sourced(service, snapshot, events.to_vec(), call, CommandMeta::default()).await.map(
                    |answer| match answer {
                        Err(failure) if failure.code == FailureCode::InvalidState => {
                            Attempt::Unlocated { message: failure.message, bisect: true }
                        }
                        _ => Attempt::Replayed(Replayed::Folded),
                    },
                )
            }
        };
        entity_failure(answer)
    }

    /// Decodes `entity`'s stored value `state` with `service`, committing
    /// nothing: the state as the component encodes it now (`None` from a
    /// 0.1.0 component, which can only say that it reads it), or why it
    /// cannot read it.
    pub async fn decode_state(
        &self,
        service: &CompiledService,
        service_name: &str,
        entity: &str,
        state: &[u8],
    ) -> Result<Result<Option<Vec<u8>>, String>, GuestError> {
        let answer = match self.call_decode_state(service, state).await {
            Some(answer) => answer.map(|answer| match answer {
                Ok(state) => Attempt::Replayed(Replayed::State(state)),
                Err(failure) => Attempt::Unlocated { message: failure.message, bisect: false },
            }),
            None => {
                let call = fold_only(service_name, entity);
                self.handle_value(service, Some(state), call, CommandMeta::default()).await.map(|answer| match answer {
                    Err(failure) if failure.code == FailureCode::InvalidState => {
                        Attempt::Unlocated { message: failure.message, bisect: false }
                    }
                    _ => Attempt::Replayed(Replayed::Folded),
                })
            }
        };
        Ok(match entity_failure(answer)? {
            Attempt::Replayed(Replayed::State(state)) => Ok(Some(state)),
            Attempt::Replayed(Replayed::Folded) => Ok(None),
            Attempt::Failed(failure) => Err(failure.message),
            Attempt::Unlocated { message, .. } => Err(message),
        })
    }
}

/// The command that makes a 0.1.0 component read its state and stop.
fn fold_only(service: &str, entity: &str) -> Call {
    Call { service: service.into(), entity: entity.into(), command: FOLD_ONLY_COMMAND.into(), payload: Vec::new() }
}

/// A guest that trapped (a panic in `apply`, say) failed on the entity's
/// data; one that ran out of memory or time, or that the host had no room
/// for, met a limit, which stays an error: its caller decides what that
/// means (a cold load would meet it too; a fold from event 1 need not).
fn entity_failure(answer: Result<Attempt, GuestError>) -> Result<Attempt, GuestError> {
    match answer {
        Err(error @ GuestError::Trap(_)) => Ok(Attempt::Unlocated { message: error.to_string(), bisect: true }),
        other => other,
    }
}
