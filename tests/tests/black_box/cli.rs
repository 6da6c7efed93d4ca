//! The binary as a client: deploy (verified), rollback, invoke (and dry
//! runs), state, fork, events, follow, services, cluster, metrics, delete;
//! tables for people and `--json` for scripts; with a token (and an admin
//! token beside it), and errors said in one line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::{CART_NEW_REPLY, CART_RENAMED_EVENT, CART_UPCASTING, COUNTER, SHOPPING_CART};
use wasmstate_tests::server::binary;

use crate::start;

fn run(url: &str, args: &[&str]) -> (bool, Value, String) {
    run_with(url, &[], args)
}

/// Runs the client with `--json` and `env` set (and `RUST_BACKTRACE=1`,
/// which must not make an error print a backtrace): whether it succeeded,
/// the JSON it printed, and its stderr.
fn run_with(url: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, Value, String) {
    let (ok, stdout, stderr) = run_text(url, env, &[&["--json"], args].concat());
    let value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (ok, value, stderr)
}

/// Runs the client as a person would, without `--json`: whether it
/// succeeded, its stdout and its stderr.
fn run_text(url: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let output = client(url, env).args(args).output().expect("runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn client(url: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command
        .env("RUST_BACKTRACE", "1")
        .env_remove("WASMSTATE_TOKEN")
        .env_remove("WASMSTATE_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .arg("--url")
        .arg(url);
    command
}

/// The cells of each line of a table, split on runs of two spaces or more
/// (cells such as `0.0 s ago` hold single spaces).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect())
        .collect()
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
        // A delayed call prints its timer, and runs later.
        let (ok, timer, err) = run(&url, &["invoke", "counter", "c1", "Increase", r#"{"value": 1}"#, "--delay", "1 s"]);
        assert!(ok, "{err}");
        assert!(timer["timer"].as_str().is_some_and(|name| name.starts_with("delayed-")), "{timer}");
        let started = std::time::Instant::now();
        while run(&url, &["invoke", "counter", "c1", "Get"]).1 != json!({"value": 5}) {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "the delayed call runs");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let (ok, _, err) = run(&url, &["invoke", "counter", "c1", "Get", "--delay", "later"]);
        assert!(!ok && err.contains("delay must be a duration"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_client_sends_its_token_and_says_what_failed_in_one_line() {
    let t = start(&["--admin-token", "adm", "--invoke-token", "inv"]).await;
    let url = t.server.base().to_string();
    tokio::task::spawn_blocking(move || {
        let one_line = |err: &str| {
            assert_eq!(err.trim().lines().count(), 1, "one line, no backtrace: {err}");
            assert!(err.starts_with("error: "), "{err}");
        };
        let (ok, _, err) = run(&url, &["deploy", "counter", COUNTER]);
        assert!(!ok);
        one_line(&err);
        assert!(err.contains("401") && err.contains("--token"), "{err}");
        let (ok, deployed, err) = run(&url, &["--token", "adm", "deploy", "counter", COUNTER]);
        assert!(ok, "{err}");
        assert_eq!(deployed["version"], 1);
        let invoke = ["invoke", "counter", "c", "Increase", r#"{"value": 2}"#];
        let (ok, reply, err) = run_with(&url, &[("WASMSTATE_TOKEN", "inv")], &invoke);
        assert!(ok, "{err}");
        assert_eq!(reply, json!({"value": 2}));
        let (ok, services, err) = run_with(&url, &[("WASMSTATE_TOKEN", "inv")], &["services"]);
        assert!(ok, "{err}");
        assert_eq!(services[0]["service"], "counter");

        let (ok, _, err) = run(&url, &["--token", "inv", "delete", "counter"]);
        assert!(!ok, "the invoke token does not delete");
        one_line(&err);
        let (ok, _, err) = run(&url, &["--token", "adm", "delete", "counter"]);
        assert!(ok, "{err}");
        let (ok, _, err) = run(&url, &["--token", "inv", "invoke", "counter", "c", "Get"]);
        assert!(!ok);
        one_line(&err);
        assert!(err.contains("404") && err.contains("counter"), "{err}");
        let (ok, services, err) = run(&url, &["--token", "inv", "services"]);
        assert!(ok, "{err}");
        assert_eq!(services, json!([]), "deleted");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn people_get_tables_and_live_events() {
    let t = start(&[]).await;
    let url = t.server.base().to_string();
    tokio::task::spawn_blocking(move || {
        let none: &[(&str, &str)] = &[];
        let (ok, out, err) = run_text(&url, none, &["services"]);
        assert!(ok, "{err}");
        assert_eq!(out, "no services deployed\n");
        assert!(run_text(&url, none, &["deploy", "counter", COUNTER]).0);
        for value in [4, 1] {
            let (ok, _, err) =
                run_text(&url, none, &["invoke", "counter", "c1", "Increase", &format!("{{\"value\": {value}}}")]);
            assert!(ok, "{err}");
        }
        let (_, out, _) = run_text(&url, none, &["services"]);
        let table = rows(&out);
        assert_eq!(table[0], ["SERVICE", "KIND", "VERSION", "SUBSCRIBES TO", "RETAIN", "DEPLOYED"]);
        assert_eq!(table[1][..5], ["counter", "event-sourced", "1", "-", "all"]);
        assert!(!out.contains('\x1b'), "no colours off a terminal: {out:?}");
        let (_, out, _) = run_text(&url, none, &["services", "counter"]);
        assert!(out.starts_with("service:         counter\nkind:            event-sourced\n"), "{out}");
        assert!(out.contains("stored entities: yes"), "{out}");
        let (_, out, _) = run_text(&url, none, &["events", "counter", "c1"]);
        assert_eq!(
            rows(&out),
            [
                vec!["SEQ", "VERSION", "EVENT"],
                vec!["1", "1", r#"{"type":"Increased","value":4}"#],
                vec!["2", "1", r#"{"type":"Increased","value":1}"#],
            ]
        );
        let (_, out, _) = run_text(&url, none, &["state", "counter", "c1"]);
        assert_eq!(out, "{\n  \"value\": 5\n}\n", "indented JSON");
        let (_, out, _) = run_text(&url, none, &["cluster"]);
        let table = rows(&out);
        assert_eq!(table[0], ["HOST", "URL", "LAST SEEN"]);
        assert!(table[1][0].ends_with("(this host)") && table[1][1] == url, "{out}");
        let (ok, out, err) = run_text(&url, none, &["metrics"]);
        assert!(ok, "{err}");
        let table = rows(&out);
        assert_eq!(table[0][..7], ["SERVICE", "KIND", "OK", "FAILED", "TRAPPED", "TIMED OUT", "REFUSED"]);
        assert_eq!(table[1][..7], ["counter", "event-sourced", "2", "0", "0", "0", "0"], "{out}");
        assert!(out.contains("journal:     2 commits of 2 commands"), "{out}");

        // follow: from the next event by default, each as it is committed.
        let mut follower = client(&url, none).args(["follow", "counter", "c1"]).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "SEQ  VERSION  EVENT");
        std::thread::sleep(Duration::from_millis(300));
        assert!(run_text(&url, none, &["invoke", "counter", "c1", "Increase", r#"{"value": 7}"#]).0);
        let line = lines.next().unwrap().unwrap();
        assert_eq!(rows(&line)[0], ["3", "1", r#"{"type":"Increased","value":7}"#]);
        follower.kill().unwrap();
        follower.wait().unwrap();
        // With --json, one event per line, from the seq asked for.
        let mut follower = client(&url, none)
            .args(["--json", "follow", "counter", "c1", "--from", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
        let seqs: Vec<Value> = (0..2)
            .map(|_| serde_json::from_str::<Value>(&lines.next().unwrap().unwrap()).unwrap()["seq"].clone())
            .collect();
        assert_eq!(seqs, [json!(2), json!(3)]);
        follower.kill().unwrap();
        follower.wait().unwrap();
    })
    .await
    .unwrap();
}

/// Where a server has an admin token and an invoke token, the client takes
/// both: `--admin-token` for deploys and deletes, `--token` for the rest.
#[tokio::test]
async fn the_admin_token_goes_with_deploys_and_the_other_token_with_the_rest() {
    let t = start(&["--admin-token", "adm", "--invoke-token", "inv"]).await;
    let url = t.server.base().to_string();
    tokio::task::spawn_blocking(move || {
        let both = [("WASMSTATE_TOKEN", "inv"), ("WASMSTATE_ADMIN_TOKEN", "adm")];
        let (ok, deployed, err) = run_with(&url, &both, &["deploy", "counter", COUNTER]);
        assert!(ok, "{err}");
        assert_eq!(deployed["version"], 1);
        let (ok, reply, err) = run_with(&url, &both, &["invoke", "counter", "c", "Increase", r#"{"value": 1}"#]);
        assert!(ok, "{err}");
        assert_eq!(reply, json!({"value": 1}));
        let (ok, _, err) = run(&url, &["--token", "inv", "--admin-token", "wrong", "delete", "counter"]);
        assert!(!ok && err.contains("401") && err.contains("--admin-token"), "{err}");
        let (ok, _, err) = run(&url, &["--token", "inv", "--admin-token", "adm", "delete", "counter"]);
        assert!(ok, "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn deploys_verify_by_default_once_a_service_has_entities_and_history_commands() {
    let t = start(&[]).await;
    let url = t.server.base().to_string();
    tokio::task::spawn_blocking(move || {
        let cart = "shopping-cart";
        // No entities yet: no verification.
        let (ok, deployed, err) = run(&url, &["deploy", cart, SHOPPING_CART]);
        assert!(ok, "{err}");
        assert!(deployed.get("verification").is_none(), "{deployed}");
        let item = r#"{"productId": "p", "name": "p", "quantity": 1}"#;
        assert!(run(&url, &["invoke", cart, "c", "AddItem", item]).0);

        // Now verified by default: the incompatible version is refused.
        let (ok, _, err) = run(&url, &["deploy", cart, CART_RENAMED_EVENT]);
        assert!(!ok);
        assert!(err.contains("409") && err.contains("upgrade_rejected"), "{err}");
        let (ok, deployed, err) = run(&url, &["deploy", cart, CART_UPCASTING, "--probe", "GetCart", "--strict"]);
        assert!(ok, "{err}");
        assert_eq!(deployed["verification"]["checked"], 1, "{deployed}");
        // --no-verify skips it.
        let (ok, deployed, err) = run(&url, &["deploy", cart, CART_NEW_REPLY, "--no-verify"]);
        assert!(ok, "{err}");
        assert!(deployed.get("verification").is_none(), "{deployed}");

        let (ok, state, err) = run(&url, &["state", cart, "c", "--at", "1"]);
        assert!(ok, "{err}");
        assert_eq!(state["items"][0]["productId"], "p");
        let (ok, run_, err) = run(&url, &["invoke", cart, "c", "AddItem", item, "--dry-run"]);
        assert!(ok, "{err}");
        assert_eq!(run_["dry_run"], true);
        let (ok, forked, err) = run(&url, &["fork", cart, "c", "--to", "c2", "--at", "1"]);
        assert!(ok, "{err}");
        assert_eq!(forked["last_seq"], 1);
        let (ok, rolled, err) = run(&url, &["rollback", cart, "--to", "1"]);
        assert!(ok, "{err}");
        assert_eq!((rolled["version"].clone(), rolled["rolled_back_to"].clone()), (json!(4), json!(1)));
        assert_eq!(rolled["verification"]["checked"], 2, "{rolled}");
    })
    .await
    .unwrap();
}
