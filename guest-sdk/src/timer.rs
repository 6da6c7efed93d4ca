//! Durable timers: commands a service asks the host to run later, set and
//! cancelled through the command context and committed with the command.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::Commands;
use crate::reply::{call_methods, encode_json};

/// The longest timer name, in bytes; a name has at least one, and no
/// control characters.
pub const MAX_TIMER_NAME: usize = 128;

/// When a timer fires.
///
/// `Duration`, `SystemTime` and [`Cron`] convert into it, so
/// `ctx.schedule(name, Duration::from_secs(60), call)` reads as well as
/// `ctx.schedule(name, When::After(Duration::from_secs(60)), call)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// This long after the command's time ([`Metadata::now_ms`](crate::Metadata::now_ms)),
    /// in whole milliseconds (a fraction of one is dropped).
    After(Duration),
    /// At this time, in whole milliseconds since the Unix epoch (a time
    /// before the epoch is the epoch). A time already past fires at once;
    /// the host takes times at most ten years ahead.
    At(SystemTime),
    /// At every slot of a cron schedule, until the timer is cancelled or
    /// replaced.
    Cron(Cron),
}

impl When {
    /// The due time as the host receives it: relative or absolute
    /// milliseconds, or the schedule.
    pub fn due(&self) -> TimerDue {
        match self {
            Self::After(after) => TimerDue::AfterMs(saturating_ms(*after)),
            Self::At(at) => TimerDue::AtMs(at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, saturating_ms)),
            Self::Cron(cron) => TimerDue::Cron(cron.clone()),
        }
    }
}

/// `duration` in whole milliseconds, at most `u64::MAX`.
fn saturating_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl From<Duration> for When {
    /// [`When::After`].
    fn from(after: Duration) -> Self {
        Self::After(after)
    }
}

impl From<SystemTime> for When {
    /// [`When::At`].
    fn from(at: SystemTime) -> Self {
        Self::At(at)
    }
}

impl From<Cron> for When {
    /// [`When::Cron`].
    fn from(cron: Cron) -> Self {
        Self::Cron(cron)
    }
}

/// What a cron schedule does with the slots that passed unfired while no
/// host could fire them (the host counts a slot as missed once it is more
/// than a minute late, or half the time to its next slot when that is less).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Missed {
    /// Fire none of them: the schedule goes on at its next slot.
    Skip,
    /// Fire once for all of them, then go on at the next slot. The default.
    #[default]
    Once,
    /// Fire every one of them, oldest first (at most the last 100), then go on.
    All,
}

/// A repeating schedule: five cron fields (minute, hour, day of month,
/// month, day of week), or six with seconds first, then optionally an IANA
/// time zone (UTC without one).
///
/// ```
/// use wasmstate_sdk::{Cron, Missed};
///
/// let weekdays = Cron::new("0 9 * * MON-FRI Europe/Paris");
/// assert_eq!(weekdays.missed_firings(), Missed::Once);
/// let every_ten_seconds = Cron::new("*/10 * * * * *").missed(Missed::Skip);
/// assert_eq!(every_ten_seconds.expression(), "*/10 * * * * *");
/// ```
///
/// The SDK passes the expression on as it is: the host checks it when the
/// command commits (an expression it cannot read fails the command), and
/// the [`testkit`](crate::testkit) checks it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    pub(crate) expression: String,
    pub(crate) missed: Missed,
}

impl Cron {
    /// The schedule `expression`, firing once for missed slots
    /// ([`Missed::Once`]).
    pub fn new(expression: impl Into<String>) -> Self {
        Self { expression: expression.into(), missed: Missed::default() }
    }

    /// Sets what becomes of the slots that passed unfired.
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// The cron expression, as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// What becomes of the slots that passed unfired.
    pub fn missed_firings(&self) -> Missed {
        self.missed
    }
}

/// When a timer is due, as the host receives it (the WIT `timer-due`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerDue {
    /// This many milliseconds after the command's time.
    AfterMs(u64),
    /// At this time, in milliseconds since the Unix epoch.
    AtMs(u64),
    /// At every slot of this schedule.
    Cron(Cron),
}

/// The command a timer runs when it fires: a command of any service and
/// entity (any routing key for an action), addressed like a
/// [`Forward`](crate::Forward).
///
/// ```
/// use serde::Serialize;
/// use wasmstate_sdk::{Commands, TimerCall};
///
/// #[derive(Serialize)]
/// enum OrderCommand {
///     Expire { reason: String },
/// }
///
/// impl Commands for OrderCommand {
///     const SERVICE: &'static str = "orders";
/// }
///
/// let call = TimerCall::to("order-7", &OrderCommand::Expire { reason: "unpaid".into() });
/// assert_eq!((call.service(), call.entity_id(), call.command()), ("orders", "order-7", "Expire"));
/// assert_eq!(call.payload_bytes(), br#"{"reason":"unpaid"}"#);
///
/// let by_name = TimerCall::new("reports", "daily", "Build").json(&serde_json::json!({"format": "pdf"}));
/// assert_eq!(by_name.payload_bytes(), br#"{"format":"pdf"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerCall {
    pub(crate) service: String,
    pub(crate) entity_id: String,
    pub(crate) command: String,
    pub(crate) payload: Vec<u8>,
}

impl TimerCall {
    /// A call of command `command` of entity `entity_id` (any routing key
    /// for an action) of service `service`, with an empty payload.
    pub fn new(service: impl Into<String>, entity_id: impl Into<String>, command: impl Into<String>) -> Self {
        Self { service: service.into(), entity_id: entity_id.into(), command: command.into(), payload: Vec::new() }
    }

    call_methods!("timer payload");
}

/// A change a command makes to its entity's timers (the WIT
/// `timer-change`), committed with the command's other effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// Set timer `name`, replacing one of the same name.
    Set {
        /// Its name among the entity's timers.
        name: String,
        /// When it fires.
        due: TimerDue,
        /// What it runs.
        call: TimerCall,
    },
    /// Cancel the timer of this name, if there is one.
    Cancel(String),
}

impl TimerChange {
    /// The name of the timer it sets or cancels.
    pub fn name(&self) -> &str {
        match self {
            Self::Set { name, .. } | Self::Cancel(name) => name,
        }
    }

    /// The change setting timer `name` to run `call` when `when` says.
    pub fn set(name: impl Into<String>, when: impl Into<When>, call: TimerCall) -> Self {
        Self::Set { name: name.into(), due: when.into().due(), call }
    }
}

/// The timer methods of a command context (`schedule`, `schedule_self`,
/// `cancel`, `timers`), over its `entity_id` and `timers:
/// Vec<TimerChange>` fields; `$with` says what the timers are committed
/// with, for the docs.
macro_rules! timer_methods {
    ($with:literal) => {
        /// Sets timer `name` to run `call` when `when` says, replacing a
        /// timer of the same name.
        ///
        #[doc = concat!("The timer is committed with ", $with, ": a command that fails")]
        /// sets nothing. The host keeps it durably and runs `call` when it
        /// is due, at least once, under an idempotency key naming this
        /// setting of the timer and the slot (see
        /// [`Metadata::idempotency_key`](crate::Metadata::idempotency_key)),
        /// so a firing repeated after a crash runs once in effect.
        ///
        /// The host fails the command (`invalid_timer`, nothing committed)
        /// if the name is empty, longer than
        /// [`MAX_TIMER_NAME`](crate::MAX_TIMER_NAME) bytes or holds a
        /// control character, if `call` names no valid service, entity or
        /// command, if the timer is due more than ten years ahead, or if
        /// its cron expression does not read or never fires. The test kits
        /// panic on the same.
        pub fn schedule(&mut self, name: impl Into<String>, when: impl Into<$crate::When>, call: $crate::TimerCall) {
            self.timers.push($crate::TimerChange::set(name, when, call));
        }

        /// Sets timer `name` to run `command` on this entity (this routing
        /// key, for an action) when `when` says: a shorthand for
        /// [`schedule`](Self::schedule) with
        /// [`TimerCall::call`](crate::TimerCall::call)`(service, entity_id,
        /// command)`, the service being the one this command is addressed
        /// to ([`Metadata::service`](crate::Metadata::service)), whatever
        /// name it was deployed under, or else the one the command enum's
        /// [`Commands`](crate::Commands) names.
        ///
        /// # Panics
        ///
        /// If `command` is not an enum variant.
        pub fn schedule_self<C: $crate::Commands + ?Sized>(
            &mut self,
            name: impl Into<String>,
            when: impl Into<$crate::When>,
            command: &C,
        ) {
            let service = self.metadata.service().unwrap_or(C::SERVICE);
            let call = $crate::TimerCall::call(service, self.entity_id, command);
            self.schedule(name, when, call);
        }

        /// Cancels timer `name`, if there is one (one set earlier by this
        /// command too).
        #[doc = concat!("The cancel is committed with ", $with, ": a command that fails")]
        /// cancels nothing.
        pub fn cancel(&mut self, name: impl Into<String>) {
            self.timers.push($crate::TimerChange::Cancel(name.into()));
        }

        /// The timer changes made so far by this command, in order: a set
        /// then a cancel of the same name leaves it cancelled.
        pub fn timers(&self) -> &[$crate::TimerChange] {
            &self.timers
        }
    };
}

pub(crate) use timer_methods;

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    enum Job {
        Run { id: u32 },
        Stop,
    }

    impl Commands for Job {
        const SERVICE: &'static str = "jobs";
    }

    #[test]
    fn when_becomes_milliseconds_or_a_schedule() {
        assert_eq!(When::After(Duration::from_micros(1_500_900)).due(), TimerDue::AfterMs(1_500));
        assert_eq!(When::from(Duration::MAX).due(), TimerDue::AfterMs(u64::MAX));
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(When::from(at).due(), TimerDue::AtMs(1_700_000_000_123));
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(When::At(before_epoch).due(), TimerDue::AtMs(0));
        let cron = Cron::new("0 9 * * MON-FRI Europe/Paris").missed(Missed::All);
        assert_eq!(When::from(cron.clone()).due(), TimerDue::Cron(cron));
    }

    #[test]
    fn cron_misses_once_by_default() {
        assert_eq!(Missed::default(), Missed::Once);
        let cron = Cron::new("*/5 * * * *");
        assert_eq!((cron.expression(), cron.missed_firings()), ("*/5 * * * *", Missed::Once));
        assert_eq!(cron.missed(Missed::Skip).missed_firings(), Missed::Skip);
    }

    #[test]
    fn timer_calls_are_addressed_like_forwards() {
        let typed = TimerCall::to("j-1", &Job::Run { id: 4 });
        assert_eq!(typed, TimerCall::new("jobs", "j-1", "Run").payload(r#"{"id":4}"#));
        assert_eq!(TimerCall::call("other", "j-2", &Job::Stop).payload_bytes(), b"");
        assert_eq!(TimerCall::call("other", "j-2", &Job::Stop).service(), "other");
        assert_eq!(TimerCall::new("s", "e", "C").json(&[1, 2]).payload_bytes(), b"[1,2]");
    }

    #[test]
    fn changes_name_their_timer() {
        let set = TimerChange::set("t", Duration::from_secs(1), TimerCall::new("s", "e", "C"));
        let call = TimerCall::new("s", "e", "C");
        assert_eq!(set, TimerChange::Set { name: "t".into(), due: TimerDue::AfterMs(1000), call });
        assert_eq!(set.name(), "t");
        assert_eq!(TimerChange::Cancel("u".into()).name(), "u");
    }
}
