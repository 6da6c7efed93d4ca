//! `/metrics` is valid Prometheus exposition, checked by `promtool check
//! metrics` (Debian's `prometheus` package): invocations are counted and
//! timed per service, kind and outcome, and the journal's commits, the
//! outbox's and the subscriptions' deliveries have histograms.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::Api;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING};

use crate::start;

async fn metrics_text(api: &Api) -> String {
    api.get("/metrics").await.expect(200).as_str().expect("text").to_string()
}

/// Runs `promtool check metrics` on `text`; its complaints if it has any.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool, from Debian's prometheus package (.ci/run installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_each_service_by_kind_and_outcome() {
    let t = start(&[]).await;
    let api = &t.api;
    promtool_check(&metrics_text(api).await).expect("a fresh host's metrics pass promtool");

    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("m", Path::new(MISBEHAVING)).await;
    for _ in 0..3 {
        api.invoke("counter", "c", "Increase", json!({ "value": 1 })).await.expect(200);
    }
    api.invoke("counter", "c", "Increse", json!({})).await.expect_error(400);
    api.invoke("made-up", "x", "Get", json!({})).await.expect_error(404);
    // A side effect through the outbox.
    let effect = json!({"service": "counter", "entity": "later", "synchronous": false, "command": "Increase", "payload": {"value": 1}});
    api.invoke("m", "e", "Effect", effect).await.expect(200);
    let delivered = || async { api.metric("wasmstate_outbox_delivery_seconds_count").await >= 1.0 };
    assert!(api.eventually(Duration::from_secs(5), delivered).await, "the side effect is delivered and timed");

    let text = metrics_text(api).await;
    promtool_check(&text).unwrap_or_else(|problems| panic!("promtool: {problems}\n{text}"));
    let value = |series: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.parse::<f64>().unwrap())
    };
    let counter = |outcome: &str| format!("service=\"counter\",kind=\"event-sourced\",outcome=\"{outcome}\"");
    assert_eq!(value(&format!("wasmstate_invocations_total{{{}}}", counter("ok"))), Some(4.0), "3 + the side effect");
    assert_eq!(value(&format!("wasmstate_invocations_total{{{}}}", counter("failed"))), Some(1.0));
    assert_eq!(value(&format!("wasmstate_invocations_total{{{}}}", counter("trapped"))), Some(0.0));
    let ok_count = format!("wasmstate_invocation_duration_seconds_count{{{}}}", counter("ok"));
    assert_eq!(value(&ok_count), Some(4.0));
    let ok_inf = format!("wasmstate_invocation_duration_seconds_bucket{{{},le=\"+Inf\"}}", counter("ok"));
    assert_eq!(value(&ok_inf), Some(4.0));
    let m_ok = "wasmstate_invocations_total{service=\"m\",kind=\"event-sourced\",outcome=\"ok\"}";
    assert_eq!(value(m_ok), Some(1.0));
    assert_eq!(value("wasmstate_invocations_total{service=\"counter\",kind=\"value\",outcome=\"ok\"}"), None);
    // A name that is not a deployed service adds no series of its own.
    assert!(!text.contains("made-up"), "{text}");
    // Every commit is timed and its batch size counted, and a command that
    // writes nothing (the refused `Increse`) makes no transaction.
    let commits = value("wasmstate_journal_commits_total").unwrap();
    assert!(commits >= 5.0, "{commits}");
    assert_eq!(value("wasmstate_journal_commit_duration_seconds_count"), Some(commits));
    assert_eq!(value("wasmstate_journal_commit_batch_size_count"), Some(commits));
    let appended = value("wasmstate_journal_commit_batch_size_sum").unwrap();
    assert!(appended >= commits, "{appended} commands in {commits} transactions\n{text}");
    assert!(text.contains("# TYPE wasmstate_subscription_delivery_seconds histogram"));
}
