//! The limits on what one guest call may produce, checked before anything
//! is committed, the same for every path: a runaway guest fails its own
//! invocation instead of the host, and a forward or side effect no request
//! could address never reaches the journal.

use crate::domain::{Effects, Reply, StateChange};
use crate::names::{validate_entity_id, validate_service_name};

use super::{InvokeError, Shared};

impl Shared {
    /// Refuses output past the configured limits, and targets that are not
    /// valid names.
    pub(super) fn check_output(&self, effects: &Effects) -> Result<(), InvokeError> {
        let max = self.config.max_events_per_command;
        if let StateChange::Events { events, .. } = &effects.state {
            if events.len() > max {
                return Err(InvokeError::OutputLimit(format!(
                    "the command emitted {} events; at most {max} are allowed",
                    events.len()
                )));
            }
            let bytes: usize = events.iter().map(Vec::len).sum();
            let max_bytes = self.config.max_event_bytes_per_command;
            if bytes > max_bytes {
                return Err(InvokeError::OutputLimit(format!(
                    "the command emitted {bytes} bytes of events; at most {max_bytes} are allowed"
                )));
            }
        }
        if let StateChange::Events { state, .. } | StateChange::Update(state) = &effects.state
            && state.len() > self.config.max_state_bytes
        {
            return Err(InvokeError::OutputLimit(format!(
                "the command left a state of {} bytes; at most {} are allowed",
                state.len(),
                self.config.max_state_bytes
            )));
        }
        if effects.side_effects.len() > max {
            return Err(InvokeError::OutputLimit(format!(
                "the guest asked for {} side effects; at most {max} are allowed",
                effects.side_effects.len()
            )));
        }
        let reply_bytes = match &effects.reply {
            Reply::Message(bytes) => bytes.len(),
            Reply::Forward(call) => {
                check_target(&call.service, &call.entity)?;
                call.payload.len()
            }
        };
        for effect in &effects.side_effects {
            check_target(&effect.call.service, &effect.call.entity)?;
        }
        if reply_bytes > self.config.max_reply_bytes {
            return Err(InvokeError::OutputLimit(format!(
                "the reply has {reply_bytes} bytes; at most {} are allowed",
                self.config.max_reply_bytes
            )));
        }
        Ok(())
    }
}

/// Checks that a forward or side effect names a service and entity a
/// request could name.
pub(super) fn check_target(service: &str, entity: &str) -> Result<(), InvokeError> {
    validate_service_name(service)
        .map_err(|e| InvokeError::InvalidTarget(format!("a forward or side effect names an invalid service: {e}")))?;
    validate_entity_id(entity)
        .map_err(|e| InvokeError::InvalidTarget(format!("a forward or side effect names an invalid entity: {e}")))
}
