//! How the client commands show the server's JSON replies to people:
//! tables of services, versions, events, hosts and leases, and a state as
//! indented JSON. `--json` prints the replies as they came instead.

use serde_json::Value;

use super::table::Table;

/// The list of services (`GET /v1/services`).
pub fn services(list: &Value) -> String {
    let mut table = Table::new(&["SERVICE", "KIND", "VERSION", "SUBSCRIBES TO", "RETAIN", "DEPLOYED"]);
    for service in list.as_array().into_iter().flatten() {
        let newest = service["versions"].as_array().and_then(|versions| versions.last());
        table.row(vec![
            text(&service["service"]),
            text(&service["kind"]),
            text(&service["version"]),
            names(&service["subscriptions"]),
            text(&service["retain"]),
            newest.map_or_else(|| "-".into(), |v| time(&v["deployed_at_ms"])),
        ]);
    }
    if table.is_empty() {
        return "no services deployed\n".into();
    }
    table.render(super::table::styled_stdout())
}

/// One service and its versions (`GET /v1/services/{s}`).
pub fn service(description: &Value) -> String {
    let mut out = String::new();
    let fields = [
        ("service", text(&description["service"])),
        ("kind", text(&description["kind"])),
        ("version", text(&description["version"])),
        ("subscribes to", names(&description["subscriptions"])),
        ("retain", text(&description["retain"])),
        ("stored entities", yes_no(&description["stored_entities"])),
    ];
    for (name, value) in fields {
        out.push_str(&format!("{:<17}{value}\n", format!("{name}:")));
    }
    out.push('\n');
    let mut table = Table::new(&["VERSION", "DIGEST", "SIZE", "SUBSCRIBES TO", "DEPLOYED"]);
    for version in description["versions"].as_array().into_iter().flatten() {
        let digest = text(&version["digest"]);
        table.row(vec![
            text(&version["version"]),
            digest.chars().take(12).collect(),
            bytes(version["size"].as_u64().unwrap_or(0)),
            names(&version["subscriptions"]),
            time(&version["deployed_at_ms"]),
        ]);
    }
    out.push_str(&table.render(super::table::styled_stdout()));
    out
}

/// An entity's events (`GET .../events`), one row each.
pub fn events(list: &Value) -> String {
    let mut table = Table::new(&["SEQ", "VERSION", "EVENT"]);
    for event in list.as_array().into_iter().flatten() {
        table.row(event_row(event));
    }
    if table.is_empty() {
        return "no events\n".into();
    }
    table.render(super::table::styled_stdout())
}

/// One event's cells: seq, the version that wrote it, its payload on one line.
pub fn event_row(event: &Value) -> Vec<String> {
    vec![text(&event["seq"]), text(&event["version"]), event["payload"].to_string()]
}

/// An entity's state: indented JSON.
pub fn state(state: &Value) -> String {
    let mut out = serde_json::to_string_pretty(state).unwrap_or_default();
    out.push('\n');
    out
}

/// The cluster's hosts and leases (`GET /v1/cluster`), times relative to
/// `now_ms`.
pub fn cluster(cluster: &Value, now_ms: u64) -> String {
    let styled = super::table::styled_stdout();
    let mut hosts = Table::new(&["HOST", "URL", "LAST SEEN"]);
    for host in cluster["hosts"].as_array().into_iter().flatten() {
        let mut id = text(&host["id"]);
        if host["self"] == Value::Bool(true) {
            id.push_str(" (this host)");
        }
        hosts.row(vec![id, text(&host["url"]), ago(host["last_seen_ms"].as_u64(), now_ms)]);
    }
    let mut out = hosts.render(styled);
    let mut leases = Table::new(&["LEASE", "HOLDER", "EPOCH", "EXPIRES"]);
    for lease in cluster["leases"].as_array().into_iter().flatten() {
        let expires = lease["expires_at_ms"].as_u64().map_or_else(
            || "-".into(),
            |at| if at >= now_ms { format!("in {}", seconds(at - now_ms)) } else { "expired".into() },
        );
        leases.row(vec![text(&lease["name"]), text(&lease["holder"]), text(&lease["epoch"]), expires]);
    }
    if !leases.is_empty() {
        out.push('\n');
        out.push_str(&leases.render(styled));
    }
    out
}

/// A JSON value as a cell: strings without quotes, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A list of names, comma-separated, or `-`.
fn names(value: &Value) -> String {
    let names: Vec<String> = value.as_array().into_iter().flatten().map(text).collect();
    if names.is_empty() { "-".into() } else { names.join(",") }
}

fn yes_no(value: &Value) -> String {
    match value {
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => text(other),
    }
}

/// A size in bytes, KiB or MiB.
pub(super) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.0} KiB", n as f64 / (1 << 10) as f64),
        n => format!("{n} B"),
    }
}

/// A duration in ms, as seconds for people.
fn seconds(ms: u64) -> String {
    if ms < 10_000 { format!("{:.1} s", ms as f64 / 1000.0) } else { format!("{} s", ms / 1000) }
}

fn ago(at_ms: Option<u64>, now_ms: u64) -> String {
    at_ms.map_or_else(|| "-".into(), |at| format!("{} ago", seconds(now_ms.saturating_sub(at))))
}

/// Milliseconds since the Unix epoch as a UTC time, `2026-12-03 17:46:56Z`.
fn time(value: &Value) -> String {
    let Some(ms) = value.as_u64() else { return text(value) };
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time(&json!(1_796_320_016_704u64)), "2026-12-03 17:46:56Z");
        assert_eq!(time(&json!(951_782_400_000u64)), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn the_service_list_is_a_table() {
        let list = json!([
            {"service": "counter", "kind": "event-sourced", "version": 2, "subscriptions": [], "retain": "all",
             "versions": [{"deployed_at_ms": 0}, {"deployed_at_ms": 1_796_320_016_704u64}]},
            {"service": "proj", "kind": "action", "version": 1, "subscriptions": ["counter", "cart"], "retain": "all",
             "versions": [{"deployed_at_ms": 0}]}
        ]);
        assert_eq!(
            services(&list),
            "SERVICE  KIND           VERSION  SUBSCRIBES TO  RETAIN  DEPLOYED\n\
             counter  event-sourced  2        -              all     2026-12-03 17:46:56Z\n\
             proj     action         1        counter,cart   all     1970-01-01 00:00:00Z\n"
        );
        assert_eq!(services(&json!([])), "no services deployed\n");
    }

    #[test]
    fn events_are_one_row_each_with_the_payload_on_one_line() {
        let list = json!([{"seq": 1, "version": 1, "payload": {"type": "Increased", "value": 3}}]);
        assert_eq!(events(&list), "SEQ  VERSION  EVENT\n1    1        {\"type\":\"Increased\",\"value\":3}\n");
    }

    #[test]
    fn the_cluster_names_this_host_and_says_when_leases_expire() {
        let listed = json!({
            "hosts": [{"id": "a1", "url": "http://h:1", "last_seen_ms": 9_000, "self": true}],
            "leases": [{"name": "outbox", "holder": "a1", "epoch": 3, "expires_at_ms": 12_500}]
        });
        assert_eq!(
            cluster(&listed, 10_000),
            "HOST            URL         LAST SEEN\na1 (this host)  http://h:1  1.0 s ago\n\n\
             LEASE   HOLDER  EPOCH  EXPIRES\noutbox  a1      3      in 2.5 s\n"
        );
    }
}
