//! `wasmstate metrics`: a short summary of a server's `/metrics` — each
//! service's invocations by outcome with their p50 and p99 latency, then the
//! journal, outbox and memory figures people look at first.

use std::collections::BTreeMap;

use super::table::{Table, styled_stdout};

/// One sample of the exposition: its metric name, labels and value.
struct Sample<'a> {
    name: &'a str,
    labels: BTreeMap<&'a str, String>,
    value: f64,
}

/// Parses the Prometheus text format, skipping comments and lines it does
/// not understand.
fn samples(text: &str) -> Vec<Sample<'_>> {
    text.lines().filter(|line| !line.starts_with('#')).filter_map(sample).collect()
}

fn sample(line: &str) -> Option<Sample<'_>> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        value => value.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)?),
        None => (series, BTreeMap::new()),
    };
    Some(Sample { name, labels, value })
}

/// `a="x",b="y"`, values unescaped.
fn labels(mut text: &str) -> Option<BTreeMap<&str, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name, value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The `q` quantile of a histogram given as cumulative `(le, count)`
/// buckets, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does; `None` without observations.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Above the last finite bound: say that bound.
                return Some(lower);
            }
            let within = count - below;
            let fraction = if within > 0.0 { (rank - below) / within } else { 1.0 };
            return Some(lower + (le - lower) * fraction);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// Seconds as ms or s for people.
fn latency(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.2} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
    }
}

/// One (service, kind)'s invocations: counts by outcome, and the duration
/// buckets of every outcome merged, by bound.
#[derive(Default)]
struct ServiceFigures {
    outcomes: BTreeMap<String, f64>,
    /// Keyed by the bound's bits, which order like the bounds (all ≥ 0):
    /// (bound, cumulative count).
    buckets: BTreeMap<u64, (f64, f64)>,
}

/// The summary of the exposition `text`.
pub fn summary(text: &str) -> String {
    let samples = samples(text);
    let mut services: BTreeMap<(String, String), ServiceFigures> = BTreeMap::new();
    let key = |s: &Sample| {
        (s.labels.get("service").cloned().unwrap_or_default(), s.labels.get("kind").cloned().unwrap_or_default())
    };
    for s in &samples {
        match s.name {
            "wasmstate_invocations_total" => {
                let outcome = s.labels.get("outcome").cloned().unwrap_or_default();
                *services.entry(key(s)).or_default().outcomes.entry(outcome).or_default() += s.value;
            }
            // A refusal's time says nothing of how long the service takes.
            "wasmstate_invocation_duration_seconds_bucket"
                if s.labels.get("outcome").is_none_or(|outcome| outcome != "refused") =>
            {
                let Some(le) = s.labels.get("le").and_then(|le| le.parse::<f64>().ok()) else { continue };
                let bucket = services.entry(key(s)).or_default().buckets.entry(le.to_bits()).or_insert((le, 0.0));
                bucket.1 += s.value;
            }
            _ => {}
        }
    }
    let mut table = Table::new(&["SERVICE", "KIND", "OK", "FAILED", "TRAPPED", "TIMED OUT", "REFUSED", "P50", "P99"]);
    for ((service, kind), ServiceFigures { outcomes, buckets }) in &services {
        let count = |outcome: &str| format!("{}", outcomes.get(outcome).copied().unwrap_or(0.0));
        let buckets: Vec<(f64, f64)> = buckets.values().copied().collect();
        let service = if service.is_empty() { "(no service)".to_string() } else { service.clone() };
        table.row(vec![
            service,
            if kind.is_empty() { "-".into() } else { kind.clone() },
            count("ok"),
            count("failed"),
            count("trapped"),
            count("timed_out"),
            count("refused"),
            latency(quantile(0.5, &buckets)),
            latency(quantile(0.99, &buckets)),
        ]);
    }
    let mut out = if table.is_empty() { "no invocations yet\n".to_string() } else { table.render(styled_stdout()) };
    let value = |name: &str| samples.iter().filter(|s| s.name == name).map(|s| s.value).sum::<f64>();
    let commit_buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == "wasmstate_journal_commit_duration_seconds_bucket")
        .filter_map(|s| Some((s.labels.get("le")?.parse().ok()?, s.value)))
        .collect();
    let lines = [
        (
            "journal",
            format!(
                "{} commits of {} commands, p99 {}, {} failed",
                value("wasmstate_journal_commits_total"),
                value("wasmstate_journal_appends_total"),
                latency(quantile(0.99, &commit_buckets)),
                value("wasmstate_journal_commit_failures_total"),
            ),
        ),
        (
            "outbox",
            format!(
                "{} pending, {} delivered, {} retried, {} dropped",
                value("wasmstate_outbox_pending"),
                value("wasmstate_outbox_delivered_total"),
                value("wasmstate_outbox_retries_total"),
                value("wasmstate_outbox_dropped_total"),
            ),
        ),
        (
            "entities",
            format!(
                "{} in memory, {} of state, {} of guest memory",
                value("wasmstate_active_entities"),
                super::show::bytes(value("wasmstate_cached_state_bytes") as u64),
                super::show::bytes(value("wasmstate_guest_memory_bytes") as u64),
            ),
        ),
        ("connections", format!("{} open", value("wasmstate_connections_open"))),
    ];
    out.push('\n');
    for (name, line) in lines {
        out.push_str(&format!("{:<13}{line}\n", format!("{name}:")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_parsed_and_unescaped() {
        let s = sample(r#"m{a="x",b="q\"uo\\te"} 2.5"#).unwrap();
        assert_eq!((s.name, s.value), ("m", 2.5));
        assert_eq!(s.labels.get("a").map(String::as_str), Some("x"));
        assert_eq!(s.labels.get("b").map(String::as_str), Some(r#"q"uo\te"#));
        assert_eq!(sample("plain 3").unwrap().labels.len(), 0);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = [(0.001, 50.0), (0.01, 90.0), (0.1, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &buckets), Some(0.001));
        let p90 = quantile(0.9, &buckets).unwrap();
        assert!((p90 - 0.01).abs() < 1e-12, "{p90}");
        let p95 = quantile(0.95, &buckets).unwrap();
        assert!((p95 - 0.055).abs() < 1e-12, "{p95}");
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 4.0)]), Some(1.0), "above the last bound");
    }

    #[test]
    fn the_summary_has_a_row_per_service_and_kind() {
        let text = "# TYPE wasmstate_invocations_total counter\n\
            wasmstate_invocations_total{service=\"counter\",kind=\"event-sourced\",outcome=\"ok\"} 3\n\
            wasmstate_invocations_total{service=\"counter\",kind=\"event-sourced\",outcome=\"failed\"} 1\n\
            wasmstate_invocation_duration_seconds_bucket{service=\"counter\",kind=\"event-sourced\",outcome=\"ok\",le=\"0.001\"} 3\n\
            wasmstate_invocation_duration_seconds_bucket{service=\"counter\",kind=\"event-sourced\",outcome=\"ok\",le=\"+Inf\"} 3\n\
            wasmstate_invocation_duration_seconds_bucket{service=\"counter\",kind=\"event-sourced\",outcome=\"failed\",le=\"0.001\"} 0\n\
            wasmstate_invocation_duration_seconds_bucket{service=\"counter\",kind=\"event-sourced\",outcome=\"failed\",le=\"+Inf\"} 1\n\
            wasmstate_invocation_duration_seconds_bucket{service=\"counter\",kind=\"event-sourced\",outcome=\"refused\",le=\"0.001\"} 100\n\
            wasmstate_invocation_duration_seconds_bucket{service=\"counter\",kind=\"event-sourced\",outcome=\"refused\",le=\"+Inf\"} 100\n\
            wasmstate_journal_commits_total 3\nwasmstate_journal_appends_total 3\n";
        let out = summary(text);
        let row = out.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..7], ["counter", "event-sourced", "3", "1", "0", "0", "0"], "{out}");
        assert_eq!(cells[7..], ["0.67", "ms", "1.00", "ms"], "refusals do not count in the latency: {out}");
        assert!(out.contains("journal:     3 commits of 3 commands"), "{out}");
    }
}
