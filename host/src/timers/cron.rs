//! Cron schedules: parsing an expression, stepping through its slots, and
//! deciding which slot of a repeating timer fires when it comes up late.
//!
//! An expression is five fields (minute, hour, day of month, month, day of
//! week) or six with seconds first, as croner reads them, then optionally
//! an IANA time zone: `0 9 * * MON-FRI Europe/Paris`. Without one, slots
//! are in UTC. Slots follow the zone's clock, daylight saving included.
//!
//! A slot counts as **missed** when it comes up more than [`GRACE`] late,
//! or half the time to the slot after it when that is less (a schedule
//! every two seconds misses a slot one second late). What a timer does
//! with its missed slots is its [`MissedFirings`] policy.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::domain::MissedFirings;

/// How late a slot may fire before it counts as missed.
pub const GRACE: Duration = Duration::from_secs(60);

/// The most missed slots an `all` policy fires; older ones are passed over.
pub const MAX_MISSED: usize = 100;

/// The longest cron expression accepted.
pub const MAX_EXPRESSION: usize = 256;

/// A cron expression that cannot be a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron schedule {expression:?}: {reason}")]
pub struct InvalidCron {
    expression: String,
    reason: String,
}

/// A parsed cron schedule, in its time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    zone: TimeZone,
}

impl CronSpec {
    /// Parses `expression`: five or six cron fields, then optionally a
    /// time zone. Whether it has a slot ahead is the caller's to ask
    /// ([`next_after`](Self::next_after)): a timer being set asks it once,
    /// a firing need not.
    pub fn parse(expression: &str) -> Result<Self, InvalidCron> {
        let invalid = |reason: String| InvalidCron { expression: expression.to_string(), reason };
        if expression.len() > MAX_EXPRESSION {
            return Err(invalid(format!("longer than {MAX_EXPRESSION} bytes")));
        }
        let fields: Vec<&str> = expression.split_whitespace().collect();
        // A last word that names a time zone is one; no cron field does.
        let (fields, zone) = match fields.split_last() {
            Some((last, rest)) if !rest.is_empty() => match TimeZone::get(last) {
                Ok(zone) => (rest, zone),
                Err(_) if last.contains(|c: char| c.is_ascii_lowercase()) => {
                    return Err(invalid(format!("{last:?} is no time zone this host knows")));
                }
                Err(_) => (&fields[..], TimeZone::UTC),
            },
            _ => (&fields[..], TimeZone::UTC),
        };
        if !(5..=6).contains(&fields.len()) {
            return Err(invalid(format!(
                "{} fields; a schedule has five (minute hour day-of-month month day-of-week), or six with \
                 seconds first, then optionally a time zone",
                fields.len()
            )));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(&fields.join(" ")).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { cron, zone })
    }

    /// The first slot after `ms` (ms since the Unix epoch); `None` when
    /// there is none in the next few years.
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let at = Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }

    /// The last slot at or before `ms`.
    fn latest_at(&self, ms: u64) -> Option<u64> {
        let at = Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?.to_zoned(self.zone.clone());
        let previous = self.cron.find_previous_occurrence(&at, true).ok()?;
        u64::try_from(previous.timestamp().as_millisecond()).ok()
    }

    /// How late `slot` may fire before it counts as missed.
    fn grace(&self, slot: u64) -> u64 {
        let grace = GRACE.as_millis() as u64;
        self.next_after(slot).map_or(grace, |next| grace.min((next - slot) / 2))
    }

    /// What a repeating timer whose next slot is `slot` does when it is
    /// looked at, `now`, under `missed`.
    pub fn plan(&self, slot: u64, now: u64, missed: MissedFirings) -> Plan {
        let latest = match self.latest_at(now) {
            Some(latest) if latest >= slot && slot <= now => latest,
            // Not due yet (or the slot is not one of the schedule's, say
            // after a clock change): it fires as it is.
            _ => return Plan { fire: Some(slot), passed_over: 0 },
        };
        let on_time = |at: u64| now - at <= self.grace(at);
        match missed {
            _ if latest == slot => match missed {
                MissedFirings::Skip if !on_time(slot) => Plan { fire: None, passed_over: 1 },
                _ => Plan { fire: Some(slot), passed_over: 0 },
            },
            MissedFirings::Skip => {
                let fire = on_time(latest).then_some(latest);
                Plan { fire, passed_over: self.count_between(slot, latest, MAX_MISSED) + usize::from(fire.is_none()) }
            }
            MissedFirings::Once => {
                Plan { fire: Some(latest), passed_over: self.count_between(slot, latest, MAX_MISSED) }
            }
            MissedFirings::All => {
                // The oldest of the last MAX_MISSED slots, or `slot` if
                // that is newer.
                let mut first = latest;
                let mut back = 1;
                while back < MAX_MISSED {
                    match self.latest_at(first - 1) {
                        Some(earlier) if earlier >= slot => first = earlier,
                        _ => break,
                    }
                    back += 1;
                }
                let passed_over = if first > slot { self.count_between(slot, first, MAX_MISSED) } else { 0 };
                Plan { fire: Some(first), passed_over }
            }
        }
    }

    /// How many slots there are from `from` (included) to `until`
    /// (excluded), counting at most `most`.
    fn count_between(&self, from: u64, until: u64, most: usize) -> usize {
        let mut count = 0;
        let mut at = from;
        while at < until && count < most {
            count += 1;
            match self.next_after(at) {
                Some(next) => at = next,
                None => break,
            }
        }
        count
    }
}

/// What a repeating timer does with the slot it is due at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The slot to fire now, if any: the timer's firing key names it.
    pub fire: Option<u64>,
    /// How many slots its policy passes over (for the log; counted up to
    /// [`MAX_MISSED`]).
    pub passed_over: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1000;
    /// 2030-01-01T00:00:00Z, a Tuesday.
    const T0: u64 = 1_893_456_000_000;

    #[test]
    fn parses_five_or_six_fields_and_a_time_zone() {
        let daily = CronSpec::parse("0 9 * * MON-FRI Europe/Paris").unwrap();
        // 09:00 in Paris in winter is 08:00 UTC.
        assert_eq!(daily.next_after(T0), Some(T0 + 8 * 3600 * SECOND));
        let utc = CronSpec::parse("0 9 * * MON-FRI").unwrap();
        assert_eq!(utc.next_after(T0), Some(T0 + 9 * 3600 * SECOND));
        assert_eq!(CronSpec::parse("0 9 * * MON-FRI UTC").unwrap().next_after(T0), Some(T0 + 9 * 3600 * SECOND));
        let every_two = CronSpec::parse("*/2 * * * * *").unwrap();
        assert_eq!(every_two.next_after(T0), Some(T0 + 2 * SECOND));
        assert_eq!(every_two.next_after(T0 + 1), Some(T0 + 2 * SECOND));
        assert_eq!(CronSpec::parse("*/5 * * * *").unwrap().next_after(T0), Some(T0 + 300 * SECOND));
        for bad in ["", "* * *", "61 * * * *", "* * * * * * *", "0 9 * * * Mars/Olympus", "0 9 * * * nowhere"] {
            assert!(CronSpec::parse(bad).is_err(), "{bad:?}");
        }
        let error = CronSpec::parse("0 9 * *").unwrap_err().to_string();
        assert!(error.contains("4 fields"), "{error}");
        assert!(CronSpec::parse(&"*".repeat(300)).is_err());
    }

    fn plan(missed: MissedFirings, slot: u64, now: u64) -> Plan {
        CronSpec::parse("*/2 * * * * *").unwrap().plan(slot, now, missed)
    }

    #[test]
    fn an_on_time_slot_fires_under_every_policy() {
        for missed in [MissedFirings::Skip, MissedFirings::Once, MissedFirings::All] {
            assert_eq!(plan(missed, T0, T0 + 10), Plan { fire: Some(T0), passed_over: 0 });
            // Not due yet: fires as it is.
            assert_eq!(plan(missed, T0 + 2 * SECOND, T0), Plan { fire: Some(T0 + 2 * SECOND), passed_over: 0 });
        }
        // A minute-long schedule has a minute's grace; a two-second one one second's.
        let hourly = CronSpec::parse("0 * * * *").unwrap();
        assert_eq!(hourly.plan(T0, T0 + 59 * SECOND, MissedFirings::Skip).fire, Some(T0));
        assert_eq!(hourly.plan(T0, T0 + 61 * SECOND, MissedFirings::Skip).fire, None);
        assert_eq!(plan(MissedFirings::Skip, T0, T0 + 1500).fire, None);
    }

    #[test]
    fn missed_slots_follow_the_policy() {
        // Down from T0 to T0 + 9.5 s: slots T0, +2, +4, +6, +8 passed.
        let now = T0 + 9 * SECOND + 500;
        assert_eq!(plan(MissedFirings::Skip, T0, now), Plan { fire: None, passed_over: 5 });
        // The latest slot is on time: skip fires it, passing the older over.
        assert_eq!(
            plan(MissedFirings::Skip, T0, T0 + 8 * SECOND + 10),
            Plan { fire: Some(T0 + 8 * SECOND), passed_over: 4 }
        );
        assert_eq!(plan(MissedFirings::Once, T0, now), Plan { fire: Some(T0 + 8 * SECOND), passed_over: 4 });
        assert_eq!(plan(MissedFirings::All, T0, now), Plan { fire: Some(T0), passed_over: 0 });
        // All fires at most the last MAX_MISSED slots.
        let long = T0 + (2 * MAX_MISSED as u64 + 9) * 2 * SECOND;
        let all = plan(MissedFirings::All, T0, long);
        let latest = long - long % (2 * SECOND);
        assert_eq!(all.fire, Some(latest - (MAX_MISSED as u64 - 1) * 2 * SECOND));
        assert_eq!(all.passed_over, MAX_MISSED);
    }
}
