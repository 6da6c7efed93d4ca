//! One command on a CRDT entity, inside the entity's task on this host:
//! the guest gets the entity's value as this host's replica sees it and
//! answers a change; the host applies the change to its replica's state
//! and commits that state as its replica's row. Every host is a replica
//! of every CRDT entity and takes writes without asking another: rows of
//! different replicas never conflict, and the entity is their join.

use std::sync::Arc;

use wasmstate_crdt::Crdt;

use super::entity_command::{CachedState, Executed, Started};
use super::mailbox::EntityKey;
use super::{InvokeError, Shared, blocking};
use crate::domain::{Call, CommandMeta, StateChange};
use crate::journal::{EntityWrite, MergedCrdt, StoredCrdt};
use crate::services::Service;

/// A CRDT entity's state on this host: the join of every replica's row
/// as last loaded, with this host's own changes since.
pub(super) struct CachedCrdt {
    /// The state; `None` while the entity was never changed.
    pub state: Option<Crdt>,
    /// The revision of this host's row, which its next write expects.
    pub revision: u64,
    /// Whether the entity was deleted.
    pub deleted: bool,
    /// The bytes of the state, as stored.
    pub bytes: usize,
}

/// Runs one command of a CRDT entity.
pub(super) async fn run(
    shared: &Arc<Shared>,
    entity: &EntityKey,
    cached: &mut Option<CachedState>,
    service: &Service,
    call: Call,
    (now_ms, key): Started,
) -> Result<Executed, InvokeError> {
    if !matches!(cached, Some(CachedState::Crdt(_))) {
        *cached = Some(CachedState::Crdt(load(shared, entity).await?));
    }
    let Some(CachedState::Crdt(current)) = cached else {
        return Err(InvokeError::Internal("a CRDT entity's state was not loaded".into()));
    };
    if current.deleted {
        return Err(InvokeError::EntityDeleted(format!("{}/{}", entity.service, entity.entity)));
    }
    let replica = &shared.replica;
    let value = current.state.as_ref().map(|state| state.value(replica));
    let meta = CommandMeta::at(current.revision, now_ms, key);
    let mut effects =
        shared.runtime.handle_crdt(&service.compiled, value, call, meta).await?.map_err(InvokeError::Failed)?;
    shared.check_output(service, &effects)?;
    let after = match std::mem::replace(&mut effects.state, StateChange::Unchanged) {
        StateChange::Crdt(Some(change)) => {
            let mut state = current.state.clone().unwrap_or_else(|| Crdt::empty_for(&change));
            let delta = state.apply(replica, &change, now_ms).map_err(|e| InvokeError::InvalidDelta(e.to_string()))?;
            Some((Some(state), Some(delta)))
        }
        StateChange::CrdtDelete => Some((None, None)),
        _ => None,
    };
    let Some((state, delta)) = after else {
        return Ok((EntityWrite::Nothing, effects, None));
    };
    let bytes = encoded_len(state.as_ref())?;
    if bytes > shared.config.max_state_bytes {
        return Err(InvokeError::OutputLimit(format!(
            "the entity's state would take {bytes} bytes, more than the {} allowed",
            shared.config.max_state_bytes
        )));
    }
    let expected_revision = current.revision;
    let write = EntityWrite::Crdt { replica: replica.clone(), expected_revision, state: state.clone(), delta };
    let deleted = state.is_none();
    let after = CachedCrdt { state, revision: current.revision + 1, deleted, bytes };
    Ok((write, effects, Some(CachedState::Crdt(after))))
}

/// Reads `service/entity` from the journal: every replica's row, and their
/// join.
pub(super) async fn read_stored(
    shared: &Shared,
    service: &str,
    entity: &str,
) -> Result<(StoredCrdt, MergedCrdt), InvokeError> {
    let journal = shared.journal.clone();
    let (s, e) = (service.to_string(), entity.to_string());
    let stored = blocking(move || journal.load_crdt(&s, &e)).await??;
    let merged = stored.merged(service, entity)?;
    Ok((stored, merged))
}

/// Loads a cold CRDT entity: the join of every replica's row.
async fn load(shared: &Arc<Shared>, entity: &EntityKey) -> Result<CachedCrdt, InvokeError> {
    let (stored, MergedCrdt { state, deleted }) = read_stored(shared, &entity.service, &entity.entity).await?;
    shared.metrics.record_cold_load();
    let bytes = encoded_len(state.as_ref())?;
    Ok(CachedCrdt { state, revision: stored.revision_of(&shared.replica), deleted, bytes })
}

/// Merges into a warm CRDT entity's state what other hosts committed to it
/// since it last looked: the deltas their commits announced, joined in
/// memory; or, when one came without its delta (or some may have gone
/// unheard), every replica's row read again.
pub(super) async fn merge_elsewhere(shared: &Arc<Shared>, entity: &EntityKey, cached: &mut Option<CachedState>) {
    let changed = shared.journal.commits().take_elsewhere(&entity.service, &entity.entity);
    if changed.reload {
        return merge_stored(shared, entity, cached).await;
    }
    let Some(CachedState::Crdt(current)) = cached else { return };
    let joined = changed.deltas.into_iter().try_for_each(|delta| join_into(current, delta));
    if let Err(error) = joined.and_then(|()| encoded_len(current.state.as_ref())).map(|bytes| current.bytes = bytes) {
        tracing::warn!(%error, service = %entity.service, entity = %entity.entity, "cannot merge another host's change");
        *cached = None;
    }
}

/// Merges into a warm CRDT entity's state every replica's row as stored
/// (joining what it already holds changes nothing). A state that cannot
/// be merged is dropped, to be loaded afresh.
pub(super) async fn merge_stored(shared: &Arc<Shared>, entity: &EntityKey, cached: &mut Option<CachedState>) {
    let Some(CachedState::Crdt(current)) = cached else { return };
    let merged = read_stored(shared, &entity.service, &entity.entity).await;
    let joined = merged.and_then(|(_, merged)| {
        current.deleted |= merged.deleted;
        merged.state.map_or(Ok(()), |theirs| join_into(current, theirs))
    });
    if let Err(error) = joined.and_then(|()| encoded_len(current.state.as_ref())).map(|bytes| current.bytes = bytes) {
        tracing::warn!(%error, service = %entity.service, entity = %entity.entity, "cannot merge another host's change");
        *cached = None;
    }
}

/// Joins `theirs` (a delta, or a merged state) into `current`.
fn join_into(current: &mut CachedCrdt, theirs: Crdt) -> Result<(), InvokeError> {
    match &mut current.state {
        None => current.state = Some(theirs),
        Some(mine) => mine.join(&theirs).map_err(|e| InvokeError::InvalidDelta(e.to_string()))?,
    }
    Ok(())
}

/// The bytes `state` takes as stored.
fn encoded_len(state: Option<&Crdt>) -> Result<usize, InvokeError> {
    match state {
        Some(state) => Ok(postcard::to_allocvec(state).map_err(|e| InvokeError::Internal(e.to_string()))?.len()),
        None => Ok(0),
    }
}
