//! The web console, end to end in headless Chromium (Debian's
//! `/usr/bin/chromium`, driven by playwright-core from
//! `make browser-deps`): the token, a deploy by drag and drop, an entity
//! opened, commands sent from the form, the events on the live log, the
//! service on the live charts, and a screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, TCK_CRDT};

use crate::start;

/// Where `make browser-deps` puts playwright-core.
fn node_modules() -> PathBuf {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser/node_modules");
    assert!(
        modules.join("playwright-core").is_dir(),
        "playwright-core is not installed in {}: run `make browser-deps` (make test does)",
        modules.display()
    );
    modules
}

#[tokio::test]
async fn the_console_deploys_invokes_and_follows_in_a_real_browser() {
    let t = start(&["--admin-token", "adm", "--invoke-token", "inv"]).await;
    assert!(Path::new("/usr/bin/chromium").exists(), "Debian's chromium package is needed (.ci/run installs it)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/console.cjs");
    let screenshot = t.dir.path().join("console.png");
    let output = Command::new("node")
        .env("NODE_PATH", node_modules())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .arg(&script)
        .args([t.server.base(), "adm", COUNTER])
        .arg(&screenshot)
        .arg(TCK_CRDT)
        .output()
        .expect("node runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the console test failed:\n{said}\n{:?}", t.server.stdout());
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");

    // What the browser did is what the API says, and the refused commands
    // committed nothing: five Increases, 5 + 2 + 1 + 1 + 1.
    let api = wasmstate_tests::Api::new(t.server.base()).with_token("adm");
    let events = api.get("/v1/services/counter/entities/c1/events").await.expect(200);
    assert_eq!(events.as_array().unwrap().len(), 5);
    assert_eq!(api.invoke("counter", "c1", "Get", json!({})).await.expect(200), json!({"value": 10}));
}

#[tokio::test]
async fn the_console_s_files_come_from_the_binary_with_a_strict_policy() {
    let t = start(&["--admin-token", "adm"]).await;
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        // No token: the pages hold no data.
        let response = http.get(format!("{}{path}", t.server.base())).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    let missing = http.get(format!("{}/console/secret.js", t.server.base())).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let html = http.get(format!("{}/", t.server.base())).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing loaded from elsewhere");
}
