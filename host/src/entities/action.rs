//! Stateless actions: no mailbox, every command runs in parallel. Two calls
//! with the same idempotency key may both run the guest, but the journal
//! records only the first: the second answers what the first recorded.

use std::sync::Arc;

use super::{InvokeError, InvokeRequest, Produced, Shared, split_effects};
use crate::journal::{Commit, EntityWrite, JournalError};
use crate::runtime::Command;
use crate::services::Service;

/// Runs one action command and commits its asynchronous side effects (and
/// idempotency record) before answering.
pub(super) async fn run(
    shared: &Arc<Shared>,
    service: &Arc<Service>,
    request: InvokeRequest,
) -> Result<Produced, InvokeError> {
    let target = request.invocation;
    let key = request.idempotency_key;
    if let Some(replayed) = shared.replay(&target.service, &target.entity, key.as_ref()).await? {
        return Ok(replayed);
    }
    let command = Command { name: target.command, payload: target.payload, entity_id: target.entity.clone() };
    let effects = shared.runtime.handle_action(&service.entity, &command).await?.map_err(InvokeError::Failed)?;
    shared.check_output(0, &effects.reply, &effects.side_effects)?;
    let (outcome, asynchronous) = split_effects(effects.reply, effects.side_effects);
    let commit = Commit {
        service: target.service.as_str().into(),
        entity: target.entity.as_str().into(),
        write: EntityWrite::Nothing,
        outbox: asynchronous,
        idempotency: shared.idempotency_record(key.as_ref(), &outcome),
    };
    if !commit.is_empty() {
        match shared.journal.commit(commit).await {
            Err(JournalError::KeyRecorded { .. }) => {
                let replayed = shared.replay(&target.service, &target.entity, key.as_ref()).await?;
                // None only if the record expired in between.
                return replayed
                    .ok_or_else(|| InvokeError::Overloaded("the idempotency key's record just expired".into()));
            }
            committed => committed?,
        }
    }
    Ok(Produced::new(outcome, &target.service, &target.entity, key.as_ref()))
}
