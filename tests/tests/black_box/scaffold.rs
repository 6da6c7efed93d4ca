//! `wasmstate new`: a crate of each kind, made in a temp dir outside this
//! workspace, is formatted and passes `cargo test` as generated, builds for
//! `wasm32-wasip2`, deploys and answers the call its README shows.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use wasmstate_tests::server::binary;

use crate::start;

/// Where the new crates build: one directory for all of them and every
/// run, so their dependencies build once.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold")
}

/// Runs `cargo args` in `dir`, asserting success.
fn cargo(dir: &Path, args: &[&str]) {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(dir).args(args).env("CARGO_TARGET_DIR", target_dir());
    for leaking in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"] {
        command.env_remove(leaking);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `wasmstate new name --kind kind --path dir`.
fn new(name: &str, kind: &str, dir: &Path) -> std::process::Output {
    let mut command = Command::new(binary());
    command.args(["new", name, "--kind", kind, "--path"]).arg(dir);
    command.output().expect("wasmstate runs")
}

#[tokio::test]
async fn a_new_crate_of_each_kind_tests_builds_deploys_and_answers() {
    let t = start(&[]).await;
    let kinds = [
        ("event-sourced", "my-tally", "e-1", "Add", json!({"amount": 2}), json!({"total": 2, "additions": 1})),
        ("value", "my-note", "e-1", "Set", json!({"text": "hello"}), json!({"text": "hello"})),
        ("action", "my-greeter", "any", "Greet", json!({"name": "Ada"}), json!({"greeting": "Hello, Ada!"})),
    ];
    for (kind, name, entity, command, body, reply) in kinds {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(name);
        let made = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || {
                let output = new(name, kind, &dir);
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                cargo(&dir, &["fmt", "--check"]);
                cargo(&dir, &["test", "--quiet"]);
                cargo(&dir, &["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
            }
        });
        made.await.unwrap();
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let wasm = format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
        assert!(readme.contains(&wasm), "the README names the component: {readme}");

        let component = target_dir().join(wasm.trim_start_matches("target/"));
        t.api.deploy(name, &component).await;
        assert_eq!(t.api.invoke(name, entity, command, body).await.expect(200), reply, "{kind}");
        let (code, _) = t.api.invoke(name, entity, "Nope", json!({})).await.expect_error(400);
        assert_eq!(code, "unknown_command");
    }
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_that_holds_files() {
    let temp = tempfile::tempdir().unwrap();
    let output = new("My Cart", "value", &temp.path().join("x"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: \"My Cart\" is not a service name"), "{stderr}");
    assert!(!temp.path().join("x").exists(), "nothing was written");

    std::fs::write(temp.path().join("keep.txt"), "mine").unwrap();
    let output = new("cart", "value", temp.path());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists and is not empty"));
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1, "nothing was written");
}
