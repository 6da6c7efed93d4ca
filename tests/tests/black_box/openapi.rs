//! `GET /v1/openapi.json` is an OpenAPI 3.1 document of every route, and
//! the server keeps to it: schemathesis (from PyPI, `make schemathesis`)
//! sends it requests generated from the document, valid and invalid, and
//! checks that none answers a server error and every answer — status,
//! content type, headers, body — is one the document describes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmstate_tests::Api;
use wasmstate_tests::guests::{COUNTER, SHOPPING_CART, USER_PROFILE};

use crate::start;

/// Every route of the API, as the document names it (the console's pages
/// are left out of it).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/cluster"),
    ("get", "/v1/services"),
    ("get", "/v1/services/{service}"),
    ("put", "/v1/services/{service}"),
    ("delete", "/v1/services/{service}"),
    ("post", "/v1/services/{service}/rollback"),
    ("get", "/v1/services/{service}/verification"),
    ("get", "/v1/services/{service}/dead-letters"),
    ("get", "/v1/services/{service}/entities"),
    ("get", "/v1/services/{service}/entities/{id}"),
    ("get", "/v1/services/{service}/entities/{id}/events"),
    ("get", "/v1/services/{service}/entities/{id}/state"),
    ("post", "/v1/services/{service}/entities/{id}/fork"),
    ("get", "/v1/services/{service}/entities/{id}/timers"),
    ("delete", "/v1/services/{service}/entities/{id}/timers/{name}"),
    ("post", "/v1/services/{service}/entities/{id}/{command}"),
];

/// How long one run of schemathesis may take before the test gives up on
/// it (a run takes about 40 s on two cores).
const SCHEMATHESIS_BUDGET: Duration = Duration::from_secs(150);

/// The schemathesis CLI: `$WASMSTATE_SCHEMATHESIS`, or the one `make
/// schemathesis` installs in `target/schemathesis`.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("WASMSTATE_SCHEMATHESIS") {
        return path.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let cli = root.join("target/schemathesis/bin/schemathesis");
    assert!(cli.exists(), "{} does not exist: run `make schemathesis` (make test does)", cli.display());
    cli
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_describes_every_route_and_the_server_keeps_to_it() {
    let t = start(&["--admin-token", "adm", "--invoke-token", "inv", "--read-token", "rd"]).await;
    let api = Api::new(t.server.base()).with_token("adm");
    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("shopping-cart", Path::new(SHOPPING_CART)).await;
    api.deploy("user-profile", Path::new(USER_PROFILE)).await;
    api.invoke("counter", "c1", "Increase", json!({"value": 3})).await.expect(200);
    let item = json!({"productId": "P1", "name": "Pen", "quantity": 2});
    api.invoke("shopping-cart", "cart1", "AddItem", item).await.expect(200);
    api.invoke("user-profile", "ada", "Update", json!({"name": "Ada", "email": "ada@example.com"})).await.expect(200);

    // Served without a token: a description, no data.
    let document = t.api.get("/v1/openapi.json").await.expect(200);
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", document["openapi"]);
    assert_eq!(document["info"]["title"], "wasmstate");
    let paths = document["paths"].as_object().expect("paths");
    let listed: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(listed, routes, "the document lists exactly the API's routes");

    let mut ids = BTreeSet::new();
    for (method, path) in &routes {
        let operation = &paths[path][method];
        assert!(ids.insert(operation["operationId"].as_str().expect("an operationId")), "{method} {path}");
        let responses = operation["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} has a success answer");
        assert!(responses.contains_key("403"), "{method} {path} documents the origin checks");
        let parameters = operation["parameters"].as_array().expect("parameters");
        assert!(parameters.iter().any(|p| p["name"] == "traceparent"), "{method} {path} takes a traceparent");
        let guarded = !matches!(path.as_str(), "/healthz" | "/v1/openapi.json");
        assert_eq!(operation["security"].is_array(), guarded, "{method} {path}: security");
        assert_eq!(responses.contains_key("401"), guarded, "{method} {path}: 401");
    }
    let invoke = &paths["/v1/services/{service}/entities/{id}/{command}"]["post"];
    assert!(
        invoke["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    );
    assert!(invoke["responses"]["200"]["headers"]["traceparent"].is_object());
    let state = &paths["/v1/services/{service}/entities/{id}/state"]["get"];
    assert!(state["responses"]["200"]["headers"]["Wasmstate-Seq"].is_object());
    let deploy = &paths["/v1/services/{service}"]["put"];
    assert!(deploy["requestBody"]["content"]["application/wasm"].is_object());
    let components = &document["components"];
    assert_eq!(components["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(components["responses"]["Unavailable"]["headers"]["Retry-After"]["required"], true);
    let mut targets = Vec::new();
    refs(&document, &mut targets);
    for target in targets {
        assert!(document.pointer(target.trim_start_matches('#')).is_some(), "{target} resolves");
    }

    // The console's pages stay open; the others answer 401 without a token.
    assert_eq!(t.api.get("/v1/services").await.status, 401);

    // Every operation but the deletes first, so the examples deployed stay
    // for the others to reach; then the deletes.
    run_schemathesis(t.server.base(), &["--exclude-method", "DELETE"]).await;
    run_schemathesis(t.server.base(), &["--include-method", "DELETE"]).await;
}

/// Runs schemathesis against the server at `base` on the operations
/// `filter` selects and asserts it finds nothing: every request generated
/// from the document (valid ones, and invalid ones the server must refuse
/// with a 4xx) is answered without a server error, with a status, content
/// type, headers and body the document describes, and a guarded route
/// refuses a request without the token. Deterministic: the same requests
/// every run.
async fn run_schemathesis(base: &str, filter: &[&str]) {
    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    // Where it keeps its cache of what it found (kept nowhere after the run).
    let scratch = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let run = tokio::process::Command::new(schemathesis())
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/v1/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance,ignored_auth",
            "--header",
            "Authorization: Bearer adm",
            "--mode",
            "all",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--no-color",
        ])
        .args(filter)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &settings)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCHEMATHESIS_BUDGET, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis {filter:?} took over {SCHEMATHESIS_BUDGET:?}"))
        .expect("schemathesis runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis {filter:?} found problems:\n{said}");
    eprintln!("schemathesis {filter:?} passed in {:.0?}", started.elapsed());
}
