//! Logs: plain text without colour codes when stderr is not a terminal, or
//! JSON lines; and every invocation logs inside a span that names it.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::MISBEHAVING;
use wasmstate_tests::{Api, Options, Server};

fn logging(level: &str) -> Options {
    Options { env: vec![("RUST_LOG".into(), level.into())], capture_stderr: true, ..Options::default() }
}

/// Polls the server's stderr until a line satisfies `found`.
async fn wait_for_line(server: &Server, found: impl Fn(&str) -> bool) -> Option<String> {
    for _ in 0..100 {
        if let Some(line) = server.stderr().into_iter().find(|line| found(line)) {
            return Some(line);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn text_logs_written_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[], logging("info")).await.unwrap();
    Api::new(server.base()).deploy("m", Path::new(MISBEHAVING)).await;
    let deployed = wait_for_line(&server, |line| line.contains("deployed") && line.contains("service=m")).await;
    assert!(deployed.is_some(), "{:?}", server.stderr());
    let lines = server.stderr();
    assert!(lines.iter().all(|line| !line.contains('\u{1b}')), "{lines:?}");
}

#[tokio::test]
async fn json_logs_name_the_invocation_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--log-format", "json"], logging("wasmstate=debug")).await.unwrap();
    let api = Api::new(server.base());
    api.deploy("m", Path::new(MISBEHAVING)).await;
    api.invoke("m", "e1", "Panic", json!({})).await.expect_error(500);

    let failed = wait_for_line(&server, |line| line.contains("invocation failed")).await;
    let failed: Value = serde_json::from_str(&failed.expect("a log line of the failed invocation")).unwrap();
    assert_eq!(failed["level"], "DEBUG");
    let span = &failed["span"];
    assert_eq!(span["name"], "invocation");
    assert_eq!((&span["service"], &span["entity"], &span["command"]), (&json!("m"), &json!("e1"), &json!("Panic")));
    assert_eq!((&span["version"], &span["outcome"]), (&json!(1), &json!("trapped")));
    for line in server.stderr() {
        let parsed: Result<Value, _> = serde_json::from_str(&line);
        assert!(parsed.is_ok_and(|v| v.is_object()), "not a JSON object: {line}");
    }
}
