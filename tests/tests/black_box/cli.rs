//! The binary as a client: deploy, invoke, events, services.

use std::process::Command;

use serde_json::{Value, json};
use wasmstate_tests::guests::COUNTER;
use wasmstate_tests::server::binary;

use crate::start;

fn run(url: &str, args: &[&str]) -> (bool, Value, String) {
    let output = Command::new(binary()).arg("--url").arg(url).args(args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (output.status.success(), value, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn client_commands() {
    let t = start(&[]).await;
    let url = t.server.base().to_string();
    tokio::task::spawn_blocking(move || {
        let (ok, deployed, err) = run(&url, &["deploy", "counter", COUNTER]);
        assert!(ok, "{err}");
        assert_eq!(deployed["version"], 1);
        let (ok, reply, err) = run(&url, &["invoke", "counter", "c1", "Increase", r#"{"value": 4}"#]);
        assert!(ok, "{err}");
        assert_eq!(reply, json!({"value": 4}));
        let (ok, reply, _) = run(&url, &["invoke", "counter", "c1", "Get"]);
        assert!(ok);
        assert_eq!(reply, json!({"value": 4}));
        let (ok, events, _) = run(&url, &["events", "counter", "c1"]);
        assert!(ok);
        assert_eq!(events.as_array().unwrap().len(), 1);
        let (ok, services, _) = run(&url, &["services"]);
        assert!(ok);
        assert_eq!(services[0]["service"], "counter");
        let (ok, _, err) = run(&url, &["invoke", "nope", "c1", "Get"]);
        assert!(!ok);
        assert!(err.contains("404"), "{err}");
    })
    .await
    .unwrap();
}
