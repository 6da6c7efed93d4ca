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

/// A guest's stderr lines reach the host's log in the span of their
/// invocation (service, entity, command, id), cut to 1 KiB; a guest that
/// logs a flood is rate-limited, and the host says how many lines it dropped.
#[tokio::test]
async fn a_guest_s_log_lines_reach_the_host_log_with_their_invocation_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--log-format", "json"], logging("info")).await.unwrap();
    let api = Api::new(server.base());
    api.deploy("m", Path::new(MISBEHAVING)).await;
    api.invoke("m", "chatty", "Log", json!({"bytes": 5})).await.expect(200);
    let guest_lines = |server: &Server| -> Vec<Value> {
        let lines = server.stderr().into_iter().filter_map(|line| serde_json::from_str::<Value>(&line).ok());
        lines.filter(|line| line["target"] == "wasmstate::guest").collect()
    };
    let logged = wait_for_line(&server, |line| line.contains("wasmstate::guest") && line.contains("lllll")).await;
    let logged: Value = serde_json::from_str(&logged.expect("the guest's line in the host log")).unwrap();
    assert_eq!(logged["fields"]["message"], "lllll");
    assert_eq!(logged["level"], "INFO");
    let span = &logged["span"];
    assert_eq!(
        (&span["name"], &span["service"], &span["entity"]),
        (&json!("invocation"), &json!("m"), &json!("chatty"))
    );
    assert_eq!(span["command"], "Log");
    assert!(span["id"].as_u64().is_some(), "{span}");

    // A long line is cut; its invocation is another.
    api.invoke("m", "chatty", "Log", json!({"bytes": 5000})).await.expect(200);
    let cut = wait_for_line(&server, |line| line.contains("wasmstate::guest") && line.contains("l…")).await;
    let cut: Value = serde_json::from_str(&cut.expect("the long line, cut")).unwrap();
    assert_eq!(cut["fields"]["message"].as_str().unwrap().len(), 1024 + '…'.len_utf8());
    assert_ne!(cut["span"]["id"], span["id"]);

    // A panic's message is logged with its invocation too.
    api.invoke("m", "boom", "Panic", json!({})).await.expect_error(500);
    let panicked =
        wait_for_line(&server, |line| line.contains("wasmstate::guest") && line.contains("the Panic command panics"))
            .await;
    let panicked: Value = serde_json::from_str(&panicked.expect("the panic message")).unwrap();
    assert_eq!(panicked["span"]["entity"], "boom");

    // A flood: 2,000 lines in one command, far past the budget (500 at
    // once, then 100 a second).
    let before = guest_lines(&server).len();
    api.invoke("m", "flood", "Log", json!({"bytes": 1, "lines": 2000})).await.expect(200);
    let flood = guest_lines(&server).len() - before;
    assert!(flood < 1000, "{flood} lines of 2000 logged: the rate limit held");
    // Once the budget refills, the next line comes after a warning saying
    // how many were dropped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.invoke("m", "flood", "Log", json!({"bytes": 3})).await.expect(200);
    let warned = wait_for_line(&server, |line| line.contains("guest log lines were dropped")).await;
    let warned: Value = serde_json::from_str(&warned.expect("a warning of the dropped lines")).unwrap();
    assert!(warned["fields"]["dropped"].as_u64().unwrap() >= 1, "{warned}");
}
