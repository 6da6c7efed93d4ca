//! Stateless actions — a command's `handle`, or an event delivered to a
//! subscriber's `on-event` — with no mailbox: every call runs in parallel.
//! The timers an action sets belong to its routing key.
//! Two calls with the same idempotency key may both run the guest, but the
//! journal records only the first: the second answers what the first
//! recorded.

use std::sync::Arc;

use super::guest_timers::{TimerOwner, timer_changes};
use super::{Input, Invocation, InvokeError, Shared};
use crate::domain::{CommandMeta, FollowUp};
use crate::journal::{Commit, CommitStatus, EntityWrite};
use crate::services::Service;
use tracing::Instrument;

/// Runs one action call and commits its asynchronous side effects (and
/// idempotency record) before answering what follows.
pub(super) async fn run(
    shared: &Arc<Shared>,
    service: &Service,
    invocation: Invocation,
) -> Result<FollowUp, InvokeError> {
    let keyed = invocation.keyed();
    let (name, entity): (Arc<str>, Arc<str>) = (invocation.service().into(), invocation.entity().into());
    let (hops, trace, fires) = (invocation.hops, invocation.trace.kept(), invocation.fires.as_deref().cloned());
    if let Some(keyed) = &keyed
        && let Some(follow_up) = shared.replay(&name, &entity, keyed).await?
    {
        return Ok(follow_up);
    }
    let now_ms = crate::journal::now_ms();
    let mut effects = match invocation.input {
        Input::Command(call) => {
            let meta = CommandMeta::at(0, now_ms, invocation.key.as_ref().map(|key| key.as_str().to_owned()));
            shared.runtime.handle_action(&service.compiled, call, meta).await?
        }
        Input::Event { event, .. } => shared.runtime.on_event(&service.compiled, event).await?,
    }
    .map_err(InvokeError::Failed)?;
    shared.check_output(service, &effects)?;
    // An action's timers belong to its routing key.
    let owner = TimerOwner { service: &name, entity: &entity, now_ms, trace };
    let timers = timer_changes(&shared.config, &owner, std::mem::take(&mut effects.timers))?;
    let (_, follow_up, outbox) = effects.into_parts(&name, service.meta.version);
    let idempotency = shared.record(keyed.as_ref(), &follow_up, &outbox, !timers.is_empty());
    let commit = Commit {
        service: name.clone(),
        entity: entity.clone(),
        version: service.meta.version,
        hops,
        write: EntityWrite::Nothing,
        outbox,
        idempotency,
        timers,
        fires,
        trace,
    };
    if commit.is_empty() {
        return Ok(follow_up);
    }
    let status = shared.journal.commit(commit).instrument(tracing::debug_span!("commit")).await?;
    match (status, &keyed) {
        (CommitStatus::Durable { .. }, _) => Ok(follow_up),
        (CommitStatus::KeyRecorded, Some(keyed)) => shared.replay_winner(&name, &entity, keyed).await,
        (refused, _) => Err(InvokeError::refused_commit(refused)),
    }
}
