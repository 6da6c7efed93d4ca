//! An event-sourced entity that sets and cancels durable timers on command
//! and records every `Tick` it runs, with the time and idempotency key the
//! host gave it: a timer's firing shows in its state.
//!
//! The state is `{"ticks": [{"label", "now_ms", "key"}...], "scheduled": N,
//! "cancelled": N}`; every command replies it.
//!
//! Commands (JSON bodies):
//!
//! - `Schedule {"name", "after_ms"?, "at_ms"?, "cron"?, "missed"?,
//!   "service"?, "entity"?, "command"?, "payload"?, "fail"?}` emits
//!   `{"type": "Scheduled", "name"}` and sets timer `name`, due after
//!   `after_ms`, at `at_ms` or at every slot of the `cron` expression
//!   (exactly one of them; `missed`: `"skip"`, `"once"` or `"all"`, default
//!   once), to run `command` (default `Tick`) of `entity` (default this
//!   entity) of `service` (default: the one the command reached, else
//!   `timers`) with `payload` (default `{"label": name}`). With `fail` set it then fails with code `rejected`
//!   and that message, so nothing is committed: neither the event nor the
//!   timer.
//! - `Cancel {"name"}` emits `{"type": "Cancelled", "name"}` and cancels
//!   timer `name`.
//! - `Tick {"label"}` emits `{"type": "Ticked", "label", "now_ms", "key"}`
//!   with the command's time and idempotency key (`null` without one).
//! - `Get` changes nothing.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmstate_sdk::{Context, Cron, EventSourced, Failure, Missed, Reply, TimerCall, When};

/// The service name timers target unless `Schedule` names another.
const SERVICE: &str = "timers";

/// The state: the ticks run and how many timers were set and cancelled.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// Every `Tick` run, in order.
    pub ticks: Vec<Tick>,
    /// How many `Schedule` commands were committed.
    pub scheduled: u64,
    /// How many `Cancel` commands were committed.
    pub cancelled: u64,
}

/// One `Tick` the entity ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// The tick's label.
    pub label: String,
    /// The command's time, in ms since the Unix epoch.
    pub now_ms: u64,
    /// The command's idempotency key: a timer's firing has one.
    pub key: Option<String>,
}

/// The entity's commands.
#[derive(Deserialize)]
pub enum Command {
    /// Sets a timer.
    Schedule(Schedule),
    /// Cancels a timer.
    Cancel {
        /// The timer's name.
        name: String,
    },
    /// Records a tick.
    Tick {
        /// The tick's label.
        label: String,
    },
    /// Replies the state.
    Get,
}

/// The argument of `Schedule`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    name: String,
    after_ms: Option<u64>,
    at_ms: Option<u64>,
    cron: Option<String>,
    missed: Option<MissedFirings>,
    service: Option<String>,
    entity: Option<String>,
    command: Option<String>,
    payload: Option<Value>,
    fail: Option<String>,
}

/// A cron timer's policy for missed slots, as `Schedule` spells it.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissedFirings {
    Skip,
    Once,
    All,
}

/// What the entity records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// Timer `name` was set.
    Scheduled {
        /// The timer's name.
        name: String,
    },
    /// Timer `name` was cancelled.
    Cancelled {
        /// The timer's name.
        name: String,
    },
    /// A `Tick` ran.
    Ticked {
        /// The tick's label.
        label: String,
        /// The command's time.
        now_ms: u64,
        /// The command's idempotency key.
        key: Option<String>,
    },
}

impl Schedule {
    /// When the timer fires: exactly one of `after_ms`, `at_ms`, `cron`.
    fn when(&self) -> Result<When, Failure> {
        let missed = match self.missed {
            Some(MissedFirings::Skip) => Missed::Skip,
            Some(MissedFirings::Once) | None => Missed::Once,
            Some(MissedFirings::All) => Missed::All,
        };
        match (self.after_ms, self.at_ms, &self.cron) {
            (Some(after), None, None) => Ok(When::After(Duration::from_millis(after))),
            (None, Some(at), None) => Ok(When::At(UNIX_EPOCH + Duration::from_millis(at))),
            (None, None, Some(cron)) => Ok(When::Cron(Cron::new(cron).missed(missed))),
            _ => Err(Failure::invalid_payload("Schedule takes exactly one of after_ms, at_ms and cron")),
        }
    }
}

impl EventSourced for Timers {
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Scheduled { .. } => self.scheduled += 1,
            Event::Cancelled { .. } => self.cancelled += 1,
            Event::Ticked { label, now_ms, key } => {
                self.ticks.push(Tick { label: label.clone(), now_ms: *now_ms, key: key.clone() });
            }
        }
    }

    fn handle(command: Command, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            Command::Schedule(schedule) => {
                let when = schedule.when()?;
                let entity = schedule.entity.unwrap_or_else(|| ctx.entity_id().to_owned());
                let call = TimerCall::new(
                    schedule.service.as_deref().or(ctx.metadata().service()).unwrap_or(SERVICE),
                    entity,
                    schedule.command.as_deref().unwrap_or("Tick"),
                )
                .json(&schedule.payload.unwrap_or_else(|| json!({ "label": schedule.name })));
                ctx.emit(Event::Scheduled { name: schedule.name.clone() });
                ctx.schedule(schedule.name, when, call);
                if let Some(message) = schedule.fail {
                    return Err(Failure::rejected(message));
                }
            }
            Command::Cancel { name } => {
                ctx.emit(Event::Cancelled { name: name.clone() });
                ctx.cancel(name);
            }
            Command::Tick { label } => {
                let metadata = ctx.metadata();
                let key = metadata.idempotency_key().map(str::to_owned);
                ctx.emit(Event::Ticked { label, now_ms: metadata.now_ms(), key });
            }
            Command::Get => {}
        }
        Ok(Reply::json(ctx.state()))
    }
}

wasmstate_sdk::export_event_sourced!(Timers);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::testkit::{ScheduledCall, TestKit};
    use wasmstate_sdk::{Cron, FailureCode, Missed, TimerDue};

    use super::*;

    /// 2030-01-01T00:00:00Z.
    const T0: u64 = 1_893_456_000_000;

    fn kit() -> TestKit<Timers> {
        let mut kit = TestKit::<Timers>::new("t-1").with_service("timers");
        kit.set_time_ms(T0);
        kit
    }

    #[test]
    fn a_timer_ticks_on_its_entity_under_the_hosts_key() {
        let mut kit = kit();
        let state = kit.handle("Schedule", json!({"name": "soon", "after_ms": 1500})).unwrap();
        assert_eq!(state, json!({"ticks": [], "scheduled": 1, "cancelled": 0}));
        let pending = &kit.timers()[0];
        assert_eq!((pending.name.as_str(), pending.due_ms), ("soon", T0 + 1500));
        assert_eq!(pending.call, ScheduledCall::new("timers", "t-1", "Tick", json!({"label": "soon"})));

        let fired = kit.advance(Duration::from_secs(2));
        assert_eq!(fired.len(), 1);
        let key = format!("timer 0000000000000001 {}", T0 + 1500);
        assert_eq!(fired[0].key, key);
        let tick = json!({"label": "soon", "now_ms": T0 + 1500, "key": key});
        assert_eq!(kit.handle("Get", ()), Ok(json!({"ticks": [tick], "scheduled": 1, "cancelled": 0})));
        assert!(kit.timers().is_empty());
    }

    #[test]
    fn cancel_and_failure_leave_no_timer() {
        let mut kit = kit();
        kit.handle("Schedule", json!({"name": "a", "at_ms": T0 + 10})).unwrap();
        kit.handle("Cancel", json!({"name": "a"})).unwrap();
        let failed = kit.handle("Schedule", json!({"name": "b", "after_ms": 5, "fail": "no"}));
        assert_eq!(failed, Err(Failure::rejected("no")));
        assert!(kit.timers().is_empty() && kit.advance(Duration::from_secs(1)).is_empty());
        assert_eq!(kit.handle("Get", ()), Ok(json!({"ticks": [], "scheduled": 1, "cancelled": 1})));

        let both = kit.handle("Schedule", json!({"name": "c", "after_ms": 5, "at_ms": 5})).unwrap_err();
        assert_eq!(both.code(), FailureCode::InvalidPayload);
        let typo = kit.handle("Schedule", json!({"name": "c", "after": 5})).unwrap_err();
        assert_eq!(typo.code(), FailureCode::InvalidPayload);
    }

    #[test]
    fn cron_and_other_targets_are_set_as_asked() {
        let mut kit = kit();
        let schedule = json!({
            "name": "every", "cron": "*/2 * * * * *", "missed": "skip",
            "service": "counter", "entity": "c1", "command": "Increase", "payload": {"value": 1},
        });
        kit.handle("Schedule", schedule).unwrap();
        let due = TimerDue::Cron(Cron::new("*/2 * * * * *").missed(Missed::Skip));
        let wasmstate_sdk::testkit::TimerChangeCall::Set { due: set_due, call, .. } = &kit.timer_changes()[0] else {
            panic!("{:?}", kit.timer_changes())
        };
        assert_eq!((set_due, call), (&due, &ScheduledCall::new("counter", "c1", "Increase", json!({"value": 1}))));
        // Another entity's command comes due at each slot and is not run here.
        let fired = kit.advance(Duration::from_secs(5));
        assert_eq!(
            fired.iter().map(|f| (f.due_ms - T0, f.answer.is_none())).collect::<Vec<_>>(),
            [(2000, true), (4000, true)]
        );
        assert!(kit.state().ticks.is_empty());
    }
}
