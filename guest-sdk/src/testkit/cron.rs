//! Stepping cron timers in the test kits: an expression is read as the host
//! reads it (five cron fields, or six with seconds first, then optionally
//! an IANA time zone, UTC without one) and its slots follow that zone's
//! clock. Native builds only: the WebAssembly build of the SDK carries no
//! cron parser, and its kits refuse cron timers.

use crate::Cron;

/// The first slot of `cron` after `now_ms`, where a timer set at `now_ms`
/// is first due, or why the host would refuse the schedule.
pub(super) fn first_slot(cron: &Cron, now_ms: u64) -> Result<u64, String> {
    let expression = cron.expression();
    let schedule =
        native::Schedule::parse(expression).map_err(|reason| format!("cron schedule {expression:?} {reason}"))?;
    schedule.next_after(now_ms).ok_or_else(|| format!("cron schedule {expression:?} never fires"))
}

/// The slot of `cron` after `slot_ms`; `None` when there is none.
pub(super) fn next_slot(cron: &Cron, slot_ms: u64) -> Option<u64> {
    native::Schedule::parse(cron.expression()).ok()?.next_after(slot_ms)
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use croner::parser::{CronParser, Seconds, Year};
    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    /// The longest expression the host takes.
    const MAX_EXPRESSION: usize = 256;

    /// A parsed schedule, in its time zone.
    pub(super) struct Schedule {
        cron: croner::Cron,
        zone: TimeZone,
    }

    impl Schedule {
        /// Reads `expression`, or says why it cannot be a schedule.
        pub(super) fn parse(expression: &str) -> Result<Self, String> {
            if expression.len() > MAX_EXPRESSION {
                return Err(format!("is longer than {MAX_EXPRESSION} bytes"));
            }
            let words: Vec<&str> = expression.split_whitespace().collect();
            // A last word naming a time zone is one; no cron field does,
            // and no cron field has lowercase letters.
            let (fields, zone) = match words.split_last() {
                Some((last, rest)) if !rest.is_empty() => match TimeZone::get(last) {
                    Ok(zone) => (rest, zone),
                    Err(_) if last.contains(|c: char| c.is_ascii_lowercase()) => {
                        return Err(format!("ends in {last:?}, which is no time zone"));
                    }
                    Err(_) => (&words[..], TimeZone::UTC),
                },
                _ => (&words[..], TimeZone::UTC),
            };
            if !(5..=6).contains(&fields.len()) {
                return Err(format!(
                    "has {} fields, not five (minute hour day-of-month month day-of-week) or six with seconds first",
                    fields.len()
                ));
            }
            let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
            let cron = parser.parse(&fields.join(" ")).map_err(|error| format!("does not parse: {error}"))?;
            Ok(Self { cron, zone })
        }

        /// The first slot after `ms`, in ms since the Unix epoch.
        pub(super) fn next_after(&self, ms: u64) -> Option<u64> {
            let at = Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?.to_zoned(self.zone.clone());
            let next = self.cron.find_next_occurrence(&at, false).ok()?;
            u64::try_from(next.timestamp().as_millisecond()).ok()
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod native {
    /// No schedule is ever made: the WebAssembly build carries no cron
    /// parser.
    pub(super) struct Schedule(());

    impl Schedule {
        /// Refuses every expression.
        pub(super) fn parse(_: &str) -> Result<Self, String> {
            Err("cannot be stepped by the test kit in a WebAssembly build: run the tests natively".to_owned())
        }

        /// No slot.
        pub(super) fn next_after(&self, _: u64) -> Option<u64> {
            None
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::Missed;

    const SECOND: u64 = 1000;
    /// 2030-01-01T00:00:00Z, a Tuesday.
    const T0: u64 = 1_893_456_000_000;

    #[test]
    fn reads_five_or_six_fields_and_a_time_zone() {
        // 09:00 in Paris in winter is 08:00 UTC.
        assert_eq!(first_slot(&Cron::new("0 9 * * MON-FRI Europe/Paris"), T0), Ok(T0 + 8 * 3600 * SECOND));
        assert_eq!(first_slot(&Cron::new("0 9 * * MON-FRI"), T0), Ok(T0 + 9 * 3600 * SECOND));
        assert_eq!(first_slot(&Cron::new("0 9 * * MON-FRI UTC"), T0), Ok(T0 + 9 * 3600 * SECOND));
        let every_two = Cron::new("*/2 * * * * *").missed(Missed::All);
        assert_eq!(first_slot(&every_two, T0), Ok(T0 + 2 * SECOND));
        assert_eq!(first_slot(&every_two, T0 + 1), Ok(T0 + 2 * SECOND));
        assert_eq!(next_slot(&every_two, T0 + 2 * SECOND), Some(T0 + 4 * SECOND));
        assert_eq!(first_slot(&Cron::new("*/5 * * * *"), T0), Ok(T0 + 300 * SECOND));
    }

    #[test]
    fn refuses_what_the_host_refuses() {
        for bad in
            ["", "* * *", "0 9 * *", "61 * * * *", "* * * * * * *", "0 9 * * * Mars/Olympus", "0 9 * * * nowhere"]
        {
            assert!(native::Schedule::parse(bad).is_err(), "{bad:?}");
            assert_eq!(next_slot(&Cron::new(bad), T0), None);
        }
        assert!(native::Schedule::parse(&"* ".repeat(200)).is_err());
        let reason = first_slot(&Cron::new("0 9 * *"), T0).unwrap_err();
        assert_eq!(
            reason,
            "cron schedule \"0 9 * *\" has 4 fields, not five (minute hour day-of-month month \
                            day-of-week) or six with seconds first"
        );
        let reason = first_slot(&Cron::new("0 9 * * * Atlantis"), T0).unwrap_err();
        assert_eq!(reason, "cron schedule \"0 9 * * * Atlantis\" ends in \"Atlantis\", which is no time zone");
    }
}
