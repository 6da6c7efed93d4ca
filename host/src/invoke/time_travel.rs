//! Reading an entity's past and trying commands without consequences: its
//! state as of an event, and dry runs, which run a command against the
//! current state (or a past one) and answer what it would do, committing
//! nothing and sending nothing. Both run the service's newest version,
//! within the same in-flight limit and output limits as every invocation.

use super::{InvokeError, Invoker, Shared, blocking, mailbox};
use crate::domain::{Call, CommandMeta, Effects, ServiceKind, StateChange};
use crate::journal::{AsOf, Forked, NotKept};
use crate::runtime::{FailedAt, Replayed, Snapshot, WitVersion};
use wasmstate_crdt::Crdt;

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
    /// A CRDT entity's value after the change it asks for, as this host's
    /// replica would see it.
    pub crdt_value: Option<wasmstate_crdt::Value>,
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
        if service.compiled.wit_version() == WitVersion::V0_1 {
            return Ok(StateAt { seq: 0, state: None });
        }
        let as_of = self.shared.as_of(&service.meta.service, entity, at).await?;
        let seq = as_of.seq();
        let snapshot = as_of.snapshot.map(|s| Snapshot::new(s.seq, s.version, s.state));
        // Reading a past state sends nothing.
        let compiled = service.compiled.with_http(None);
        let replayed =
            self.shared.runtime.replay(&compiled, &service.meta.service, entity, snapshot.as_ref(), &as_of.events);
        let replayed = replayed.await?;
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
    /// after event `at`) and answers what it would do, committing nothing
    /// and sending nothing (its guest may make no HTTP request).
    pub async fn dry_run(&self, call: Call, at: Option<u64>) -> Result<DryRun, InvokeError> {
        let _permit = self.shared.permit()?;
        self.shared.metrics.record_dry_run();
        let service = self.shared.service(&call.service)?;
        let runtime = &self.shared.runtime;
        // A dry run sends nothing: no HTTP request either.
        let compiled = service.compiled.with_http(None);
        let mut crdt_value = None;
        let (seq, effects) = match service.kind() {
            ServiceKind::EventSourced => {
                let as_of = self.shared.as_of(&call.service, &call.entity, at).await?;
                let seq = as_of.seq();
                let snapshot = as_of.snapshot.map(|s| Snapshot::new(s.seq, s.version, s.state));
                let meta = CommandMeta::now(seq, None);
                let effects =
                    runtime.handle_event_sourced(&compiled, snapshot.as_ref(), as_of.events, call, meta).await?;
                (seq, effects)
            }
            ServiceKind::Value | ServiceKind::Action | ServiceKind::Crdt if at.is_some() => {
                return Err(InvokeError::NotInHistory(format!(
                    "{} keeps no history: a dry run runs on its current state",
                    service.kind().with_article()
                )));
            }
            ServiceKind::Value => {
                let journal = self.shared.journal.clone();
                let (s, e) = (call.service.clone(), call.entity.clone());
                let stored = blocking(move || journal.load_value(&s, &e)).await??;
                let meta = CommandMeta::now(stored.revision, None);
                (0, runtime.handle_value(&compiled, stored.state.as_deref(), call, meta).await?)
            }
            ServiceKind::Action => (0, runtime.handle_action(&compiled, call, CommandMeta::now(0, None)).await?),
            ServiceKind::Crdt => {
                let (stored, merged) =
                    super::crdt_command::read_stored(&self.shared, &call.service, &call.entity).await?;
                if merged.deleted {
                    return Err(InvokeError::EntityDeleted(format!("{}/{}", call.service, call.entity)));
                }
                let replica = &self.shared.replica;
                let value = merged.state.as_ref().map(|state| state.value(replica));
                let meta = CommandMeta::now(stored.revision_of(replica), None);
                let effects = runtime.handle_crdt(&compiled, value, call, meta).await?;
                if let Ok(Effects { state: StateChange::Crdt(Some(change)), .. }) = &effects {
                    let mut state = merged.state.unwrap_or_else(|| Crdt::empty_for(change));
                    state
                        .apply(replica, change, crate::journal::now_ms())
                        .map_err(|e| InvokeError::InvalidDelta(e.to_string()))?;
                    crdt_value = Some(state.value(replica));
                }
                (0, effects)
            }
        };
        let effects = effects.map_err(InvokeError::Failed)?;
        self.shared.check_output(&service, &effects)?;
        Ok(DryRun { seq, effects, crdt_value })
    }
}

impl Invoker {
    /// Makes `to` a new entity of `service` whose log is `from`'s up to
    /// event `at` (see [`Journal::fork`](crate::journal::Journal::fork)),
    /// from `to`'s entity task, so no command on `to` runs meanwhile or on
    /// what it held before.
    pub async fn fork(&self, service: &str, from: &str, to: &str, at: Option<u64>) -> Result<Forked, InvokeError> {
        let service = self.shared.service(service)?;
        if service.kind() != ServiceKind::EventSourced {
            return Err(InvokeError::NotInHistory(format!("{} has no log to fork", service.kind().with_article())));
        }
        let (journal, name, from, target, at) =
            (self.shared.journal.clone(), service.meta.service.clone(), from.to_string(), to.to_string(), at);
        let write = move || journal.fork(&name, &from, &target, at);
        Ok(mailbox::write_outside_commands(&self.shared, service, to, write).await??)
    }
}

impl Shared {
    /// What folds to `entity`'s state right after event `at`, or why that
    /// is not kept.
    async fn as_of(&self, service: &str, entity: &str, at: Option<u64>) -> Result<AsOf, InvokeError> {
        let journal = self.journal.clone();
        let (s, e) = (service.to_string(), entity.to_string());
        blocking(move || journal.as_of(&s, &e, at)).await??.map_err(|not_kept| {
            let message = not_kept.message(entity, at.unwrap_or_default());
            match not_kept {
                NotKept::Beyond { .. } => InvokeError::NotInHistory(message),
                NotKept::Compacted { .. } => InvokeError::HistoryCompacted(message),
            }
        })
    }
}
