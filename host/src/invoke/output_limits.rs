//! The limits on what one guest call may produce, checked before anything
//! is committed, the same for every path: a runaway guest fails its own
//! invocation instead of the host, and a forward or side effect no request
//! could address never reaches the journal, nor a webhook its service may
//! not send.

use crate::domain::{Effects, Reply, StateChange};
use crate::names::{validate_entity_id, validate_service_name};
use crate::outbound::{AllowList, check_webhook};
use crate::services::Service;

use super::{InvokeError, InvokerConfig, Shared};

impl Shared {
    /// Refuses output past the configured limits, targets that are not
    /// valid names, and webhooks `service` may not send.
    pub(super) fn check_output(&self, service: &Service, effects: &Effects) -> Result<(), InvokeError> {
        check_output(&self.config, effects)?;
        if !effects.webhooks.is_empty() {
            let grant = service.compiled.http_grant();
            let nothing = AllowList::default();
            let allow = grant.as_ref().map_or(&nothing, |grant| &grant.allow);
            for webhook in &effects.webhooks {
                check_webhook(webhook, allow).map_err(InvokeError::InvalidWebhook)?;
            }
        }
        Ok(())
    }
}

/// Refuses output past `config`'s limits, and targets that are not valid names.
fn check_output(config: &InvokerConfig, effects: &Effects) -> Result<(), InvokeError> {
    let max = config.max_events_per_command;
    if let StateChange::Events { events, .. } = &effects.state {
        if events.len() > max {
            return Err(InvokeError::OutputLimit(format!(
                "the command emitted {} events; at most {max} are allowed",
                events.len()
            )));
        }
        let bytes: usize = events.iter().map(Vec::len).sum();
        let max_bytes = config.max_event_bytes_per_command;
        if bytes > max_bytes {
            return Err(InvokeError::OutputLimit(format!(
                "the command emitted {bytes} bytes of events; at most {max_bytes} are allowed"
            )));
        }
    }
    if let StateChange::Events { state, .. } | StateChange::Update(state) = &effects.state {
        if state.len() > config.max_state_bytes {
            return Err(InvokeError::OutputLimit(format!(
                "the command left a state of {} bytes; at most {} are allowed",
                state.len(),
                config.max_state_bytes
            )));
        }
        // Stored, it would be handed to a guest that cannot take it in.
        if state.len() > config.max_loadable_bytes {
            return Err(InvokeError::OutputLimit(format!(
                "the command left a state of {} bytes, more than the {} a guest can load \
                     (half of --max-guest-memory); the entity would no longer load",
                state.len(),
                config.max_loadable_bytes
            )));
        }
    }
    let side_effects = effects.side_effects.len() + effects.webhooks.len();
    if side_effects > max {
        return Err(InvokeError::OutputLimit(format!(
            "the guest asked for {side_effects} side effects; at most {max} are allowed"
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
    let webhook_bytes: usize = effects
        .webhooks
        .iter()
        .map(|webhook| {
            let headers: usize = webhook.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
            webhook.body.len() + webhook.url.len() + headers
        })
        .sum();
    if webhook_bytes > config.max_reply_bytes {
        return Err(InvokeError::OutputLimit(format!(
            "the command's webhooks carry {webhook_bytes} bytes (bodies, URLs and headers); at most {} are allowed",
            config.max_reply_bytes
        )));
    }
    if reply_bytes > config.max_reply_bytes {
        return Err(InvokeError::OutputLimit(format!(
            "the reply has {reply_bytes} bytes; at most {} are allowed",
            config.max_reply_bytes
        )));
    }
    Ok(())
}

/// Checks that a forward or side effect names a service and entity a
/// request could name.
pub(super) fn check_target(service: &str, entity: &str) -> Result<(), InvokeError> {
    validate_service_name(service)
        .map_err(|e| InvokeError::InvalidTarget(format!("a forward or side effect names an invalid service: {e}")))?;
    validate_entity_id(entity)
        .map_err(|e| InvokeError::InvalidTarget(format!("a forward or side effect names an invalid entity: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits as a host with 16 MiB guests and a generous state cap has them.
    fn config() -> InvokerConfig {
        InvokerConfig::for_tests()
    }

    fn leaving(state: StateChange) -> Effects {
        Effects { state, ..Effects::reply(Reply::Message(Vec::new())) }
    }

    #[test]
    fn a_state_no_guest_could_load_is_refused_for_both_kinds_of_entity() {
        let config = config();
        let loadable = vec![0; 8 << 20];
        let too_big = vec![0; (8 << 20) + 1];
        assert!(check_output(&config, &leaving(StateChange::Update(loadable.clone()))).is_ok());
        let events = StateChange::Events { events: vec![b"e".to_vec()], state: loadable };
        assert!(check_output(&config, &leaving(events)).is_ok());
        for state in
            [StateChange::Update(too_big.clone()), StateChange::Events { events: vec![b"e".to_vec()], state: too_big }]
        {
            let Err(InvokeError::OutputLimit(message)) = check_output(&config, &leaving(state)) else {
                panic!("a state past what a guest can load must be refused");
            };
            assert!(message.contains("would no longer load"), "{message}");
        }
    }

    #[test]
    fn the_state_cap_is_checked_first_and_names_its_flag_s_limit() {
        let config = InvokerConfig { max_state_bytes: 1 << 20, ..config() };
        let Err(InvokeError::OutputLimit(message)) =
            check_output(&config, &leaving(StateChange::Update(vec![0; 2 << 20])))
        else {
            panic!("a state past --max-state-bytes must be refused");
        };
        assert!(message.contains("at most 1048576"), "{message}");
    }
}
