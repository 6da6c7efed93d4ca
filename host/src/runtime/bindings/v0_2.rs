//! `wasmstate:entity@0.2.0`: what the SDK builds components against.

use crate::domain::{
    CommandMeta, CronSchedule, Event, MissedFirings, SubscribedEvent, TimerDue, TimerRequest, Webhook,
};

super::version_bindings!("../wit/v0.2.0", timers);

pub(in crate::runtime) use self::exports::wasmstate::entity::crdt as crdt_iface;

/// What 0.2.0's side-effect lists hold: commands and webhooks.
type GuestEffect = wit::Effect;

/// Splits the side effects a guest asked for into commands and webhooks,
/// each in the order asked.
pub(super) fn effects_of(effects: Vec<GuestEffect>) -> (Vec<SideEffect>, Vec<Webhook>) {
    let mut commands = Vec::new();
    let mut webhooks = Vec::new();
    for effect in effects {
        match effect {
            wit::Effect::Command(command) => commands.push(command.into()),
            wit::Effect::Webhook(hook) => webhooks.push(Webhook {
                // The invocation path fills in the service that asked.
                service: String::new(),
                version: 0,
                url: hook.url,
                method: hook.method,
                headers: hook.headers,
                content_type: hook.content_type,
                body: hook.body,
            }),
        }
    }
    (commands, webhooks)
}

/// The timers a guest set and cancelled, in the host's terms.
pub(super) fn timer_requests(changes: Vec<wit::TimerChange>) -> Vec<TimerRequest> {
    changes.into_iter().map(TimerRequest::from).collect()
}

impl From<wit::TimerChange> for TimerRequest {
    fn from(change: wit::TimerChange) -> Self {
        match change {
            wit::TimerChange::Set(timer) => TimerRequest::Set {
                name: timer.name,
                due: match timer.due {
                    wit::TimerDue::AfterMs(ms) => TimerDue::AfterMs(ms),
                    wit::TimerDue::AtMs(ms) => TimerDue::AtMs(ms),
                    wit::TimerDue::Cron(cron) => TimerDue::Cron(CronSchedule {
                        expression: cron.expression,
                        missed: match cron.missed {
                            wit::MissedFirings::Skip => MissedFirings::Skip,
                            wit::MissedFirings::Once => MissedFirings::Once,
                            wit::MissedFirings::All => MissedFirings::All,
                        },
                    }),
                },
                call: Call {
                    service: timer.service,
                    entity: timer.entity_id,
                    command: timer.command,
                    payload: timer.payload,
                },
            },
            wit::TimerChange::Cancel(name) => TimerRequest::Cancel(name),
        }
    }
}

/// The command `call`, run as `meta` says.
pub(in crate::runtime) fn command(call: Call, meta: CommandMeta) -> wit::Command {
    wit::Command {
        service: call.service,
        name: call.command,
        payload: call.payload,
        entity_id: call.entity,
        seq: meta.seq,
        now_ms: meta.now_ms,
        idempotency_key: meta.idempotency_key,
    }
}

impl From<Event> for wit::Event {
    fn from(event: Event) -> Self {
        Self { seq: event.seq, version: event.version, payload: event.payload }
    }
}

impl From<SubscribedEvent> for wit::SubscribedEvent {
    fn from(event: SubscribedEvent) -> Self {
        Self {
            service: event.source,
            entity_id: event.entity,
            seq: event.seq,
            version: event.version,
            payload: event.payload,
        }
    }
}
