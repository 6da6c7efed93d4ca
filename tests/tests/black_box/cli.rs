//! The binary as a client: deploy (verified), rollback, invoke (and dry
//! runs), state, fork, events, services, delete; with a token, and errors
//! said in one line.

use std::process::Command;

use serde_json::{Value, json};
use wasmstate_tests::guests::{CART_NEW_REPLY, CART_RENAMED_EVENT, CART_UPCASTING, COUNTER, SHOPPING_CART};
use wasmstate_tests::server::binary;

use crate::start;

fn run(url: &str, args: &[&str]) -> (bool, Value, String) {
    run_with(url, &[], args)
}

/// Runs the client with `env` set (and `RUST_BACKTRACE=1`, which must not
/// make an error print a backtrace).
fn run_with(url: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, Value, String) {
    let mut command = Command::new(binary());
    command.env("RUST_BACKTRACE", "1").env_remove("WASMSTATE_TOKEN").envs(env.iter().copied());
    let output = command.arg("--url").arg(url).args(args).output().expect("runs");
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
