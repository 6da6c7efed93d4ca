//! Invocations counted and timed per service, kind and outcome.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::RwLock;
use std::time::Duration;

use super::InvocationOutcome;
use super::histogram::{self, Histogram};
use crate::domain::ServiceKind;

/// Series for the kinds a service can have, and for none (an invocation
/// refused before its service was found).
const KIND_SLOTS: usize = ServiceKind::ALL.len() + 1;

/// One service's duration histograms, by kind slot and outcome.
struct ServiceSeries([[Histogram; InvocationOutcome::ALL.len()]; KIND_SLOTS]);

impl ServiceSeries {
    fn new() -> Self {
        Self(std::array::from_fn(|_| std::array::from_fn(|_| Histogram::seconds(histogram::SECONDS))))
    }
}

/// The invocations of every service that was invoked.
///
/// An invocation of a name that is not a deployed service counts under the
/// service `""`: labels only ever name deployed services, so a client
/// cannot add series by making names up.
#[derive(Default)]
pub struct Invocations {
    by_service: RwLock<HashMap<Box<str>, ServiceSeries>>,
}

impl Invocations {
    /// Counts one invocation of `service` (`None`: not a deployed service)
    /// of `kind`, which ended with `outcome` after `elapsed`.
    pub fn record(&self, service: Option<(&str, ServiceKind)>, outcome: InvocationOutcome, elapsed: Duration) {
        let (name, slot) = match service {
            Some((name, kind)) => (name, ServiceKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)),
            None => ("", ServiceKind::ALL.len()),
        };
        let observe = |series: &ServiceSeries| series.0[slot][outcome as usize].observe_duration(elapsed);
        if let Some(series) = self.by_service.read().unwrap().get(name) {
            return observe(series);
        }
        let mut by_service = self.by_service.write().unwrap();
        observe(by_service.entry(name.into()).or_insert_with(ServiceSeries::new));
    }

    /// Writes `wasmstate_invocations_total` and
    /// `wasmstate_invocation_duration_seconds`: for each service, the kinds
    /// it was invoked as, with every outcome.
    pub fn render(&self, out: &mut String) {
        let by_service = self.by_service.read().unwrap();
        // Sorted, so the output is stable; service names are
        // [A-Za-z0-9._-], nothing to escape in a label.
        let sorted: BTreeMap<&str, &ServiceSeries> = by_service.iter().map(|(k, v)| (&**k, v)).collect();
        let series = || {
            sorted.iter().flat_map(|(service, series)| {
                series.0.iter().enumerate().filter(|(_, by_outcome)| by_outcome.iter().any(|h| h.count() > 0)).flat_map(
                    move |(slot, by_outcome)| {
                        let kind = ServiceKind::ALL.get(slot).map_or("", |kind| kind.as_str());
                        InvocationOutcome::ALL.iter().zip(by_outcome).map(move |(outcome, histogram)| {
                            (
                                format!("service=\"{service}\",kind=\"{kind}\",outcome=\"{}\"", outcome.as_str()),
                                histogram,
                            )
                        })
                    },
                )
            })
        };
        let name = "wasmstate_invocations_total";
        let _ = writeln!(out, "# HELP {name} Invocations by service, kind and outcome.\n# TYPE {name} counter");
        for (labels, histogram) in series() {
            let _ = writeln!(out, "{name}{{{labels}}} {}", histogram.count());
        }
        let name = "wasmstate_invocation_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds from an invocation's start to its answer (its synchronous side effects and forward included), by service, kind and outcome.\n# TYPE {name} histogram"
        );
        for (labels, histogram) in series() {
            histogram.render(out, name, &labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_renders_the_kinds_it_ran_as_with_every_outcome() {
        let invocations = Invocations::default();
        let counter = Some(("counter", ServiceKind::EventSourced));
        invocations.record(counter, InvocationOutcome::Ok, Duration::from_millis(2));
        invocations.record(counter, InvocationOutcome::Failed, Duration::from_millis(3));
        invocations.record(None, InvocationOutcome::Refused, Duration::ZERO);
        let mut out = String::new();
        invocations.render(&mut out);
        let line = |labels: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("wasmstate_invocations_total{{{labels}}} ")))
                .map(|v| v.to_string())
        };
        assert_eq!(line("service=\"counter\",kind=\"event-sourced\",outcome=\"ok\"").as_deref(), Some("1"));
        assert_eq!(line("service=\"counter\",kind=\"event-sourced\",outcome=\"trapped\"").as_deref(), Some("0"));
        assert_eq!(line("service=\"\",kind=\"\",outcome=\"refused\"").as_deref(), Some("1"));
        assert_eq!(line("service=\"counter\",kind=\"value\",outcome=\"ok\""), None, "a kind it never ran as");
        assert!(out.contains(
            "wasmstate_invocation_duration_seconds_count{service=\"counter\",kind=\"event-sourced\",outcome=\"failed\"} 1"
        ));
    }
}
