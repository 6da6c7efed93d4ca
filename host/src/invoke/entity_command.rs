//! One command on an event-sourced or value entity, inside the entity's
//! task: replay a recorded key, or rebuild the state if cold, call the
//! guest, check its output and prepare the commit of everything the command
//! produced. The cached state moves on at once, so the entity can run its
//! next queued command while this one commits; the task answers only once
//! the commit is durable (see [`super::mailbox`]).

use std::sync::Arc;

use super::crdt_command::CachedCrdt;
use super::guest_timers::{TimerOwner, timer_changes};
use super::idempotency::Keyed;
use super::mailbox::EntityKey;
use super::{Input, Invocation, InvokeError, Shared, blocking};
use crate::domain::{Call, CommandMeta, Effects, FollowUp, ServiceKind, StateChange};
use crate::journal::{Commit, EntityWrite, StoredSnapshot, StoredValue};
use crate::runtime::Snapshot;
use crate::services::Service;

/// The last committed state of a warm entity.
pub(super) enum CachedState {
    /// An event-sourced entity's state as of its last event, lent to the
    /// guest as the snapshot of its next command.
    EventSourced {
        /// The state.
        snapshot: Snapshot,
        /// The bytes of the events after the latest stored snapshot: what a
        /// cold load would fold.
        unsnapshotted_bytes: usize,
        /// The bytes of the latest stored snapshot, which a cold load
        /// hands the guest with those events.
        stored_snapshot_bytes: usize,
    },
    /// A value entity's stored state and revision.
    Value(StoredValue),
    /// A CRDT entity's state on this host.
    Crdt(CachedCrdt),
}

impl CachedState {
    /// Where the entity stood in the journal when this state was its
    /// latest: the seq of the last event folded, or the value's revision
    /// (see [`crate::journal::EntityStore::head`]).
    pub fn head(&self) -> u64 {
        match self {
            CachedState::EventSourced { snapshot, .. } => snapshot.seq(),
            CachedState::Value(value) => value.revision,
            CachedState::Crdt(crdt) => crdt.revision,
        }
    }

    /// Where the entity stood in the journal, for a state that must be its
    /// latest to answer a read: `None` for a CRDT, which answers from this
    /// host's replica by design.
    pub fn checked_head(&self) -> Option<u64> {
        match self {
            CachedState::Crdt(_) => None,
            _ => Some(self.head()),
        }
    }

    /// The bytes of state it holds in memory.
    pub fn bytes(&self) -> usize {
        match self {
            CachedState::EventSourced { snapshot, .. } => snapshot.state().len(),
            CachedState::Value(value) => value.state.as_ref().map_or(0, Vec::len),
            CachedState::Crdt(crdt) => crdt.bytes,
        }
    }
}

/// A command the guest has run (or a key replayed), not yet durable.
pub(super) struct Ran {
    /// What to commit; `None` when the command wrote nothing.
    pub commit: Option<Commit>,
    /// What follows once the commit is durable.
    pub follow_up: FollowUp,
    /// The command's key, if it has one.
    pub keyed: Option<Keyed>,
}

/// Runs one command on `entity`, whose cached state is `cached`, and moves
/// the cached state to what the command leaves.
pub(super) async fn run(
    shared: &Arc<Shared>,
    entity: &EntityKey,
    cached: &mut Option<CachedState>,
    service: &Service,
    invocation: Invocation,
) -> Result<Ran, InvokeError> {
    let keyed = invocation.keyed();
    let (hops, trace, fires) = (invocation.hops, invocation.trace.kept(), invocation.fires.as_deref().cloned());
    if let Some(keyed) = &keyed
        && let Some(follow_up) = shared.replay(&entity.service, &entity.entity, keyed).await?
    {
        return Ok(Ran { commit: None, follow_up, keyed: None });
    }
    let key = invocation.key.as_ref().map(|key| key.as_str().to_owned());
    let Input::Command(call) = invocation.input else {
        return Err(InvokeError::Internal(format!("{} service cannot receive events", service.kind().with_article())));
    };
    let now_ms = crate::journal::now_ms();
    let (write, mut effects, cache_after) = match service.kind() {
        ServiceKind::EventSourced => event_sourced(shared, entity, cached, service, call, (now_ms, key)).await?,
        ServiceKind::Value => value(shared, entity, cached, service, call, (now_ms, key)).await?,
        ServiceKind::Crdt => super::crdt_command::run(shared, entity, cached, service, call, (now_ms, key)).await?,
        ServiceKind::Action => return Err(InvokeError::Internal("an action has no entity task".into())),
    };
    let owner = TimerOwner { service: &entity.service, entity: &entity.entity, now_ms, trace };
    let timers = timer_changes(&shared.config, &owner, std::mem::take(&mut effects.timers))?;
    let (_, follow_up, outbox) = effects.into_parts(&entity.service, service.meta.version);
    let idempotency = shared.record(keyed.as_ref(), &follow_up, &outbox, !timers.is_empty());
    let commit = Commit {
        service: entity.service.clone(),
        entity: entity.entity.clone(),
        version: service.meta.version,
        hops,
        write,
        outbox,
        idempotency,
        timers,
        fires,
        trace,
    };
    if let Some(after) = cache_after {
        *cached = Some(after);
    }
    Ok(Ran { commit: (!commit.is_empty()).then_some(commit), follow_up, keyed })
}

/// What a guest call on an entity leaves: the entity's write, the effects
/// (their state change already taken into the write), and the cached state
/// once the command is done (`None` leaves it as it is).
pub(super) type Executed = (EntityWrite, Effects, Option<CachedState>);

/// When a command started (ms since the Unix epoch) and the key it runs
/// under: what its [`CommandMeta`] tells the guest besides the seq.
pub(super) type Started = (u64, Option<String>);

async fn event_sourced(
    shared: &Arc<Shared>,
    entity: &EntityKey,
    cached: &mut Option<CachedState>,
    service: &Service,
    call: Call,
    (now_ms, key): Started,
) -> Result<Executed, InvokeError> {
    let loaded;
    let (snapshot, events, last_seq, unsnapshotted, stored_snapshot) = match cached {
        // A new version never runs on state an earlier one folded: it
        // rebuilds the state from the journal with its own code.
        Some(CachedState::EventSourced { snapshot, unsnapshotted_bytes, stored_snapshot_bytes })
            if snapshot.version() == service.meta.version =>
        {
            (Some(&*snapshot), Vec::new(), snapshot.seq(), *unsnapshotted_bytes, *stored_snapshot_bytes)
        }
        _ => {
            let history = load_history(shared, entity).await?;
            loaded = history.snapshot.map(|s| Snapshot::new(s.seq, s.version, s.state));
            let bytes = history.events.iter().map(|e| e.payload.len()).sum();
            let stored = loaded.as_ref().map_or(0, |s| s.state().len());
            (loaded.as_ref(), history.events, history.last_seq, bytes, stored)
        }
    };
    let mut effects = shared
        .runtime
        .handle_event_sourced(&service.compiled, snapshot, events, call, CommandMeta::at(last_seq, now_ms, key))
        .await?
        .map_err(InvokeError::Failed)?;
    shared.check_output(service, &effects)?;
    let StateChange::Events { events, state } = std::mem::replace(&mut effects.state, StateChange::Unchanged) else {
        return Err(InvokeError::Internal("an event-sourced entity answered no events".into()));
    };
    let new_last = last_seq + events.len() as u64;
    let every = shared.config.snapshot_every;
    // A snapshot every N events, whenever the events a cold load would fold
    // pass a size, and whenever a cold load would hand the guest more than
    // it can take in (the state itself is checked against that with the
    // output), so an entity never outgrows what a guest can load.
    let unsnapshotted = unsnapshotted + events.iter().map(Vec::len).sum::<usize>();
    let due = ((last_seq + 1)..=new_last).any(|s| s % every == 0)
        || unsnapshotted >= shared.config.snapshot_every_bytes
        || stored_snapshot + unsnapshotted > shared.config.max_loadable_bytes;
    let snapshot = (due && !events.is_empty()).then(|| StoredSnapshot {
        seq: new_last,
        version: service.meta.version,
        state: state.clone(),
    });
    let (unsnapshotted_bytes, stored_snapshot_bytes) = match &snapshot {
        Some(snapshot) => (0, snapshot.state.len()),
        None => (unsnapshotted, stored_snapshot),
    };
    // Even with no events, a commit of side effects (or an idempotency
    // record) is checked against the seq the command ran on: after an
    // earlier queued command fails to commit, it is refused too.
    let write = EntityWrite::Events { expected_last_seq: last_seq, events, snapshot };
    let cache = CachedState::EventSourced {
        snapshot: Snapshot::new(new_last, service.meta.version, state),
        unsnapshotted_bytes,
        stored_snapshot_bytes,
    };
    Ok((write, effects, Some(cache)))
}

async fn value(
    shared: &Arc<Shared>,
    entity: &EntityKey,
    cached: &mut Option<CachedState>,
    service: &Service,
    call: Call,
    (now_ms, key): Started,
) -> Result<Executed, InvokeError> {
    if !matches!(cached, Some(CachedState::Value(_))) {
        // The stored state is the committed state: cache it even if the
        // command then fails.
        let journal = shared.journal.clone();
        let (s, e) = (entity.service.clone(), entity.entity.clone());
        let stored = blocking(move || journal.load_value(&s, &e)).await??;
        shared.metrics.record_cold_load();
        *cached = Some(CachedState::Value(stored));
    }
    let Some(CachedState::Value(stored)) = cached else {
        return Err(InvokeError::Internal("a value entity's state was not loaded".into()));
    };
    let (state, revision) = (stored.state.as_deref(), stored.revision);
    let mut effects = shared
        .runtime
        .handle_value(&service.compiled, state, call, CommandMeta::at(revision, now_ms, key))
        .await?
        .map_err(InvokeError::Failed)?;
    shared.check_output(service, &effects)?;
    // The write lands only if the entity is still at the revision it ran on.
    let write = |state: Option<Vec<u8>>| {
        let after = StoredValue { state: state.clone(), revision: revision + 1 };
        (EntityWrite::Value { expected_revision: revision, state }, Some(CachedState::Value(after)))
    };
    let (write, after) = match std::mem::replace(&mut effects.state, StateChange::Unchanged) {
        StateChange::Update(new) => write(Some(new)),
        StateChange::Delete => write(None),
        _ => (EntityWrite::Nothing, None),
    };
    Ok((write, effects, after))
}

/// Loads a cold event-sourced entity's latest snapshot and the events after it.
async fn load_history(shared: &Arc<Shared>, entity: &EntityKey) -> Result<crate::journal::EntityHistory, InvokeError> {
    let journal = shared.journal.clone();
    let (service, id) = (entity.service.clone(), entity.entity.clone());
    let history = blocking(move || journal.load_entity(&service, &id)).await??;
    shared.metrics.record_cold_load();
    Ok(history)
}
