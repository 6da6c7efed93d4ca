//! What a guest call produces, in the host's terms: its reply, further
//! commands and webhooks, the change to its entity's state and its timers;
//! and what a committed command leaves to do.
//!
//! [`AsyncEffect`] and [`FollowUp`] are part of the journal's stored
//! records (`journal/records.rs`): changing their fields changes the
//! stored format, which takes a new schema version.

use serde::{Deserialize, Serialize};

use super::{Call, Reply};

/// A further command a command asks for, run once its writes are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideEffect {
    /// What to invoke.
    pub call: Call,
    /// True: run before the reply, failing the reply if it fails. False:
    /// delivered from the durable outbox after the reply, at least once.
    pub synchronous: bool,
}

/// An HTTP request a command asks the host to send once its writes are
/// durable: from the outbox, at least once, under an idempotency key that
/// stays the same across attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// The service whose command asked for it: its allow-list applies.
    pub service: String,
    /// The version of that service whose command asked for it.
    pub version: u32,
    /// Where to send it: an `http` or `https` URL.
    pub url: String,
    /// The request's method.
    pub method: String,
    /// Extra request headers, as (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// The body's media type.
    pub content_type: String,
    /// The request body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Webhook {
    /// The method sent when a guest names none.
    pub const DEFAULT_METHOD: &str = "POST";
    /// The media type sent when a guest names none.
    pub const DEFAULT_CONTENT_TYPE: &str = "application/json";
}

/// A side effect delivered from the durable outbox after its command's
/// commit: a command of a deployed service, or a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AsyncEffect {
    /// A command, run as any invocation is.
    Command(Call),
    /// An HTTP request to the outside world.
    Webhook(Webhook),
}

impl AsyncEffect {
    /// The command, for an entry known to hold one.
    ///
    /// # Panics
    ///
    /// On a webhook.
    #[cfg(test)]
    pub fn command(&self) -> &Call {
        match self {
            AsyncEffect::Command(call) => call,
            AsyncEffect::Webhook(webhook) => panic!("a webhook to {}, not a command", webhook.url),
        }
    }

    /// What the outbox counts its waiting entries by, for its quota: the
    /// target service of a command; for a webhook, the service that sent
    /// it and the origin it goes to (`webhooks of fraud to
    /// https://cases.example.com:443`, which no service name can be).
    pub fn target(&self) -> String {
        match self {
            AsyncEffect::Command(call) => call.service.clone(),
            AsyncEffect::Webhook(webhook) => {
                format!("webhooks of {} to {}", webhook.service, crate::outbound::origin_of(&webhook.url))
            }
        }
    }
}

/// A repeating schedule of a timer: when its slots are, and what becomes
/// of the slots that passed unfired. Stored with the timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSchedule {
    /// Five cron fields, or six with seconds first, then optionally an IANA
    /// time zone (UTC when there is none), as the entity wrote it.
    pub expression: String,
    /// What becomes of the slots that passed unfired.
    pub missed: MissedFirings,
}

/// What a cron schedule does with the slots that passed while no host
/// could fire them (see [`crate::timers`] for when a slot counts as missed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MissedFirings {
    /// Fire none of them: go on at the next slot.
    Skip,
    /// Fire once for all of them, then go on at the next slot.
    #[default]
    Once,
    /// Fire every one of them, oldest first (at most the last 100).
    All,
}

impl MissedFirings {
    /// The policy's name, as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedFirings::Skip => "skip",
            MissedFirings::Once => "once",
            MissedFirings::All => "all",
        }
    }
}

/// When a timer a guest sets is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerDue {
    /// This many milliseconds after the command started.
    AfterMs(u64),
    /// At this time, in ms since the Unix epoch.
    AtMs(u64),
    /// At every slot of a schedule.
    Cron(CronSchedule),
}

/// A change a guest makes to its entity's timers (for an action, the
/// timers of its routing key), committed with the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerRequest {
    /// Sets timer `name`, replacing one of that name.
    Set {
        /// Its name among the entity's timers.
        name: String,
        /// When it fires.
        due: TimerDue,
        /// What it runs.
        call: Call,
    },
    /// Cancels the timer of this name, if there is one.
    Cancel(String),
}

/// What one guest call produced: a reply, side effects and, for an entity,
/// a change of its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    /// The reply, or a forward.
    pub reply: Reply,
    /// Further commands, in the order the guest asked for them.
    pub side_effects: Vec<SideEffect>,
    /// Webhooks, in the order the guest asked for them; their `service` and
    /// `version` are filled in by [`Effects::into_parts`].
    pub webhooks: Vec<Webhook>,
    /// What becomes of the entity's state.
    pub state: StateChange,
    /// Timers set and cancelled, in order.
    pub timers: Vec<TimerRequest>,
}

/// What a command does to its entity's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Nothing: an action, or a value command that left its state alone.
    Unchanged,
    /// An event-sourced entity's new events and its state after them.
    Events {
        /// The events, in order.
        events: Vec<Vec<u8>>,
        /// The state after all of them, as the guest encoded it.
        state: Vec<u8>,
    },
    /// A value entity's new state.
    Update(Vec<u8>),
    /// A value entity's state is deleted.
    Delete,
    /// A CRDT entity's change, which the host applies as this host's
    /// replica (`None`: none).
    Crdt(Option<wasmstate_crdt::Change>),
    /// A CRDT entity is deleted for good.
    CrdtDelete,
}

impl Effects {
    /// Effects of a call that only answers `reply`.
    pub fn reply(reply: Reply) -> Self {
        Self {
            reply,
            side_effects: Vec::new(),
            webhooks: Vec::new(),
            state: StateChange::Unchanged,
            timers: Vec::new(),
        }
    }

    /// Splits into the state change, what follows the commit (the
    /// synchronous side effects, then the reply) and the asynchronous side
    /// effects, which go to the outbox: commands, then the webhooks of
    /// version `version` of `service`.
    pub fn into_parts(self, service: &str, version: u32) -> (StateChange, FollowUp, Vec<AsyncEffect>) {
        let mut synchronous = Vec::new();
        let mut asynchronous = Vec::new();
        for effect in self.side_effects {
            if effect.synchronous {
                synchronous.push(effect.call);
            } else {
                asynchronous.push(AsyncEffect::Command(effect.call));
            }
        }
        for webhook in self.webhooks {
            asynchronous.push(AsyncEffect::Webhook(Webhook { service: service.to_owned(), version, ..webhook }));
        }
        (self.state, FollowUp { synchronous, reply: self.reply }, asynchronous)
    }
}

/// What a committed command leaves to do: its synchronous side effects, in
/// order, then its reply or forward. Recorded under the command's
/// idempotency key, so a repeat of the key does it again, each step under
/// a key derived from the command's (see [`IdempotencyKey::derived`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The synchronous side effects.
    pub synchronous: Vec<Call>,
    /// The reply, or the forward that answers.
    pub reply: Reply,
}

impl FollowUp {
    /// An empty reply and nothing to run.
    pub fn nothing() -> Self {
        Self { synchronous: Vec::new(), reply: Reply::Message(Vec::new()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_split_into_what_follows_and_the_outbox() {
        let call =
            |entity: &str| Call { service: "s".into(), entity: entity.into(), command: "C".into(), payload: vec![] };
        let effects = Effects {
            reply: Reply::Message(b"ok".to_vec()),
            side_effects: vec![
                SideEffect { call: call("a"), synchronous: false },
                SideEffect { call: call("b"), synchronous: true },
                SideEffect { call: call("c"), synchronous: false },
            ],
            webhooks: vec![Webhook {
                service: String::new(),
                version: 0,
                url: "https://example.com/hook".into(),
                method: "POST".into(),
                headers: Vec::new(),
                content_type: "application/json".into(),
                body: b"{}".to_vec(),
            }],
            state: StateChange::Delete,
            timers: Vec::new(),
        };
        let (state, follow_up, outbox) = effects.into_parts("cart", 3);
        assert_eq!(state, StateChange::Delete);
        assert_eq!(follow_up, FollowUp { synchronous: vec![call("b")], reply: Reply::Message(b"ok".to_vec()) });
        let [AsyncEffect::Command(a), AsyncEffect::Command(c), AsyncEffect::Webhook(hook)] = outbox.as_slice() else {
            panic!("{outbox:?}");
        };
        assert_eq!((a, c), (&call("a"), &call("c")));
        assert_eq!(
            (hook.service.as_str(), hook.version),
            ("cart", 3),
            "the webhook names the version that asked for it"
        );
        assert_eq!(outbox[2].target(), "webhooks of cart to https://example.com:443");
    }
}
