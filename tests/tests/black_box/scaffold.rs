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
        ("crdt", "my-likes", "post-1", "Like", json!({"user": "ada"}), json!({"likes": 1, "users": ["ada"]})),
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

/// `wasmstate dev`: with no server at its URL it starts one, builds and
/// deploys the crate, and on every change builds and deploys again; a
/// change that does not build is said, and the version before keeps
/// serving.
#[tokio::test]
async fn dev_starts_a_server_deploys_and_redeploys_on_every_change() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;

    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("my-tally");
    let output = new("my-tally", "event-sourced", &dir);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let mut dev = Command::new(binary())
        .args(["--url", &url, "dev"])
        .arg(&dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("WASMSTATE_TOKEN")
        .env_remove("RUSTFLAGS")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let said = tokio::task::spawn_blocking(move || {
        let mut said = Vec::new();
        let mut wait_for = |text: &str| {
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                said.push(line.clone());
                if line.contains(text) {
                    return;
                }
            }
            panic!("dev never said {text:?}; it said {said:?}");
        };
        wait_for("started a server at");
        wait_for("deployed my-tally version 1 (event-sourced)");
        wait_for("watching");
        lines
    });
    let lines = said.await.unwrap();
    let api = wasmstate_tests::Api::new(&url);
    let added = api.invoke("my-tally", "e-1", "Add", json!({"amount": 2})).await.expect(200);
    assert_eq!(added, json!({"total": 2, "additions": 1}));

    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let fold = "self.total = self.total.saturating_add(*amount);";
    assert!(source.contains(fold));
    // A change that does not compile: said, and version 1 keeps serving.
    std::fs::write(&lib, source.replace(fold, "self.total = self.total.saturating_add(*amount * 10;")).unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let line = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).unwrap();
            assert!(!line.contains("version 2"), "a broken build deploys nothing: {line}");
            if line.contains("error: the build failed") {
                return lines;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(api.invoke("my-tally", "e-2", "Add", json!({"amount": 2})).await.expect(200)["total"], 2);
    // Fixed: version 2 is deployed and serves.
    std::fs::write(&lib, source.replace(fold, "self.total = self.total.saturating_add(*amount * 10);")).unwrap();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let line = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).unwrap();
            if line.contains("deployed my-tally version 2 (event-sourced)") {
                return;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(api.invoke("my-tally", "e-3", "Add", json!({"amount": 2})).await.expect(200)["total"], 20);

    // Stopping dev stops the server it started.
    dev.kill().unwrap();
    dev.wait().unwrap();
    let stopped =
        api.eventually(Duration::from_secs(5), || async { reqwest::get(format!("{url}/healthz")).await.is_err() });
    assert!(stopped.await, "the server dev started stops with it");
}
