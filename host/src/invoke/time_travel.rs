//! Reading an entity's past and trying commands without consequences: its
//! state as of an event, and dry runs, which run a command against the
//! current state (or a past one) and answer what it would do, committing
//! nothing and sending nothing. Both run the service's newest version,
//! within the same in-flight limit and output limits as every invocation.

use std::sync::Arc;

use super::{InvokeError, Invoker, Shared, blocking};
use crate::domain::{Call, Effects, ServiceKind};
use crate::journal::{FullHistory, NotKept};
use crate::runtime::{FailedAt, Replayed, Snapshot};
use crate::services::Service;

/// An entity's state as of one event.
#[derive(Debug)]
pub struct StateAt {
    /// The seq of the last event folded in.
    pub seq: u64,
    /// The state as the newest version encodes it; `None` when the
    /// component (built against 0.1.0) cannot say.
    pub state: Option<Vec<u8>>,
}

/// What a command would do.
#[derive(Debug)]
pub struct DryRun {
    /// The seq it ran on (0 for an action, or a value entity).
    pub seq: u64,
    /// What it produced: events or a state change, the reply, side effects.
    pub effects: Effects,
}

impl Invoker {
    /// `service`'s entity `entity` right after event `at` (`None`: now), as
    /// the newest version folds it.
    pub async fn state_at(&self, service: &str, entity: &str, at: Option<u64>) -> Result<StateAt, InvokeError> {
        let _permit = self.shared.permit()?;
        let service = self.shared.service(service)?;
        if service.kind() != ServiceKind::EventSourced {
            return Err(InvokeError::NotInHistory(format!(
                "{} keeps no history to fold; read its state with GET /v1/services/{}/entities/{entity}",
                service.kind().with_article(),
                service.meta.service
            )));
        }
        let history = self.shared.full_history(&service.meta.service, entity).await?;
        let (snapshot, events) = as_of(&history, entity, at)?;
        let seq = events.last().map(|e| e.seq).or(snapshot.as_ref().map(|s| s.seq())).unwrap_or(0);
        let replayed = self
            .shared
            .runtime
            .replay(&service.compiled, &service.meta.service, entity, snapshot.as_ref(), events.to_vec())
            .await?;
        match replayed {
            Ok(Replayed::State(state)) => Ok(StateAt { seq, state: Some(state) }),
            Ok(Replayed::Folded) => Ok(StateAt { seq, state: None }),
            Err(failure) => {
                let at = match failure.at {
                    FailedAt::Event(seq) => format!(" at event {seq}"),
                    FailedAt::Snapshot(seq) => format!(" at the snapshot as of {seq}"),
                    FailedAt::Unknown => String::new(),
                };
                Err(InvokeError::Failed(crate::domain::Failure {
                    code: crate::domain::FailureCode::InvalidState,
                    message: format!("the state cannot be rebuilt{at}: {}", failure.message),
                }))
            }
        }
    }

    /// Runs `call` against the entity's current state (or the state right
    /// after event `at`) and answers what it would do, committing nothing.
    pub async fn dry_run(&self, call: Call, at: Option<u64>) -> Result<DryRun, InvokeError> {
        let _permit = self.shared.permit()?;
        self.shared.metrics.record_dry_run();
        let service = self.shared.service(&call.service)?;
        let runtime = &self.shared.runtime;
        let (seq, effects) = match service.kind() {
            ServiceKind::EventSourced => {
                let history = self.shared.full_history(&call.service, &call.entity).await?;
                let (snapshot, events) = as_of(&history, &call.entity, at)?;
                let seq = events.last().map(|e| e.seq).or(snapshot.as_ref().map(|s| s.seq())).unwrap_or(0);
                let effects =
                    runtime.handle_event_sourced(&service.compiled, snapshot.as_ref(), events.to_vec(), call).await?;
                (seq, effects)
            }
            ServiceKind::Value | ServiceKind::Action if at.is_some() => {
                return Err(InvokeError::NotInHistory(format!(
                    "{} keeps no history: a dry run runs on its current state",
                    service.kind().with_article()
                )));
            }
            ServiceKind::Value => {
                let journal = self.shared.journal.clone();
                let (s, e) = (call.service.clone(), call.entity.clone());
                let state = blocking(move || journal.value(&s, &e)).await??;
                (0, runtime.handle_value(&service.compiled, state.as_deref(), call).await?)
            }
            ServiceKind::Action => (0, runtime.handle_action(&service.compiled, call).await?),
        };
        let effects = effects.map_err(InvokeError::Failed)?;
        self.shared.check_output(&effects)?;
        Ok(DryRun { seq, effects })
    }
}

impl Shared {
    /// The newest version of `name`, or why there is none.
    pub(super) fn service(&self, name: &str) -> Result<Arc<Service>, InvokeError> {
        self.services.get(name).ok_or_else(|| {
            if self.services.was_deleted(name) {
                InvokeError::DeletedService(name.into())
            } else {
                InvokeError::UnknownService(name.into())
            }
        })
    }

    /// A place among the invocations in flight.
    pub(super) fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, InvokeError> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Overloaded("the host has too many invocations in flight".into()))
    }

    async fn full_history(&self, service: &str, entity: &str) -> Result<FullHistory, InvokeError> {
        let journal = self.journal.clone();
        let (s, e) = (service.to_string(), entity.to_string());
        Ok(blocking(move || journal.full_history(&s, &e)).await??)
    }
}

/// The snapshot (as the runtime lends it) and events that fold to the state
/// right after event `at`.
fn as_of<'h>(
    history: &'h FullHistory,
    entity: &str,
    at: Option<u64>,
) -> Result<(Option<Snapshot>, &'h [crate::domain::Event]), InvokeError> {
    let (snapshot, events) = history.as_of(at).map_err(|not_kept| {
        let message = not_kept.message(entity, at.unwrap_or_default());
        match not_kept {
            NotKept::Beyond { .. } => InvokeError::NotInHistory(message),
            NotKept::Compacted { .. } => InvokeError::HistoryCompacted(message),
        }
    })?;
    Ok((snapshot.map(|s| Snapshot::new(s.seq, s.version, s.state.clone())), events))
}
