//! One command on an event-sourced or value entity, inside the entity's
//! task: rebuild the state if cold, call the guest, and prepare the commit of
//! everything the command produced. The cached state moves on at once, so
//! the entity can run its next queued command while this one commits; the
//! task replies only once the commit is durable (see [`super::mailbox`]).

use std::sync::Arc;

use super::mailbox::EntityKey;
use super::{InvokeError, InvokeRequest, Produced, Shared, blocking, split_effects};
use crate::journal::{Commit, EntityWrite, StoredSnapshot};
use crate::runtime::{Command, EntityKind, Event, Snapshot, StateChange};
use crate::services::Service;

/// The last committed state of a warm entity.
pub(super) enum Cached {
    /// An event-sourced entity's state as of its last event, handed to the
    /// guest as the snapshot of its next command.
    EventSourced(Snapshot),
    /// A value entity's stored state (`None` when there is none).
    Value(Option<Vec<u8>>),
}

/// What the guest produced, before it is committed.
struct Pending {
    write: EntityWrite,
    /// The cached state once the command is done; `None` leaves it as it is.
    cache_after: Option<Cached>,
    reply: crate::runtime::Reply,
    side_effects: Vec<crate::runtime::SideEffect>,
}

/// A command the guest has run, whose writes are not yet durable.
pub(super) struct Prepared {
    /// What to commit; `None` when the command wrote nothing.
    pub commit: Option<Commit>,
    /// What to answer once the commit is durable.
    pub produced: Produced,
}

/// Runs one command on the entity `key`, whose cached state is `cached`,
/// and moves the cached state to what the command leaves.
pub(super) async fn prepare(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<Cached>,
    request: InvokeRequest,
) -> Result<Prepared, InvokeError> {
    let service =
        shared.services.get(&key.service).ok_or_else(|| InvokeError::UnknownService(key.service.to_string()))?;
    let idempotency_key = request.idempotency_key;
    if let Some(replayed) = shared.replay(&key.service, &key.entity, idempotency_key.as_ref()).await? {
        return Ok(Prepared { commit: None, produced: replayed });
    }
    let target = request.invocation;
    let command = Command { name: target.command, payload: target.payload, entity_id: target.entity };
    let pending = match service.entity.kind() {
        EntityKind::EventSourced => event_sourced(shared, key, cached, &service, command).await?,
        EntityKind::Value => value(shared, key, cached, &service, command).await?,
        EntityKind::Action => return Err(InvokeError::Internal("an action has no entity task".into())),
    };
    let events = match &pending.write {
        EntityWrite::Events { events, .. } => events.len(),
        _ => 0,
    };
    shared.check_output(events, &pending.reply, &pending.side_effects)?;

    let (outcome, asynchronous) = split_effects(pending.reply, pending.side_effects);
    let commit = Commit {
        service: key.service.clone(),
        entity: key.entity.clone(),
        write: pending.write,
        outbox: asynchronous,
        idempotency: shared.idempotency_record(idempotency_key.as_ref(), &outcome),
    };
    if let Some(after) = pending.cache_after {
        *cached = Some(after);
    }
    let commit = (!commit.is_empty()).then_some(commit);
    let produced = Produced::new(outcome, &key.service, &key.entity, idempotency_key.as_ref());
    Ok(Prepared { commit, produced })
}

async fn event_sourced(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<Cached>,
    service: &Arc<Service>,
    command: Command,
) -> Result<Pending, InvokeError> {
    let loaded;
    let (snapshot, events, last_seq) = match cached {
        Some(Cached::EventSourced(snapshot)) => (Some(&*snapshot), &[][..], snapshot.seq),
        _ => {
            loaded = load_events(shared, key).await?;
            (loaded.0.as_ref(), &loaded.1[..], loaded.2)
        }
    };
    let effects = shared
        .runtime
        .handle_event_sourced(&service.entity, snapshot, events, &command)
        .await?
        .map_err(InvokeError::Failed)?;

    let new_last = last_seq + effects.events.len() as u64;
    let every = shared.config.snapshot_every;
    let snapshot = ((last_seq + 1)..=new_last)
        .any(|s| s % every == 0)
        .then(|| StoredSnapshot { seq: new_last, state: effects.state.clone() });
    // Even with no events, a commit of side effects (or an idempotency
    // record) is checked against the seq the command ran on: after an
    // earlier queued command fails to commit, it is refused too.
    let write = EntityWrite::Events { expected_last_seq: last_seq, events: effects.events, snapshot };
    Ok(Pending {
        write,
        cache_after: Some(Cached::EventSourced(Snapshot { seq: new_last, state: effects.state })),
        reply: effects.reply,
        side_effects: effects.side_effects,
    })
}

async fn value(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<Cached>,
    service: &Arc<Service>,
    command: Command,
) -> Result<Pending, InvokeError> {
    if !matches!(cached, Some(Cached::Value(_))) {
        // The stored state is the committed state: cache it even if the
        // command then fails.
        let journal = shared.journal.clone();
        let (s, e) = (key.service.clone(), key.entity.clone());
        let state = blocking(move || journal.value(&s, &e)).await??;
        shared.metrics.record_cold_load();
        *cached = Some(Cached::Value(state));
    }
    let state = match cached {
        Some(Cached::Value(state)) => state.as_deref(),
        _ => None,
    };
    let effects = shared.runtime.handle_value(&service.entity, state, &command).await?.map_err(InvokeError::Failed)?;
    let (write, after) = match effects.state {
        StateChange::Unchanged => (EntityWrite::Nothing, None),
        StateChange::Update(new) => (EntityWrite::Value(Some(new.clone())), Some(Cached::Value(Some(new)))),
        StateChange::Delete => (EntityWrite::Value(None), Some(Cached::Value(None))),
    };
    Ok(Pending { write, cache_after: after, reply: effects.reply, side_effects: effects.side_effects })
}

/// Loads a cold event-sourced entity's latest snapshot and the events after it.
async fn load_events(
    shared: &Arc<Shared>,
    key: &EntityKey,
) -> Result<(Option<Snapshot>, Vec<Event>, u64), InvokeError> {
    let journal = shared.journal.clone();
    let (service, entity) = (key.service.clone(), key.entity.clone());
    let history = blocking(move || journal.load_entity(&service, &entity)).await??;
    shared.metrics.record_cold_load();
    let snapshot = history.snapshot.map(|s| Snapshot { seq: s.seq, state: s.state });
    let events = history.events.into_iter().map(|e| Event { seq: e.seq, payload: e.payload }).collect();
    Ok((snapshot, events, history.last_seq))
}
