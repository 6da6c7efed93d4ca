//! Deployed versions: numbers never name two components, and what the host
//! says about them at start-up is true.

use std::path::Path;

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING};
use wasmstate_tests::{Api, Server};

use crate::{start, start_with};

#[tokio::test]
async fn a_version_number_is_never_given_twice() {
    let t = start_with("counter", COUNTER, &[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(MISBEHAVING)).await;
    api.invoke("counter", "c", "Echo", json!({"value": 1})).await.expect(200);
    api.send(reqwest::Method::DELETE, "/v1/services/counter", Vec::new()).await.expect(200);

    // A redeploy after the delete goes on from the last number.
    let deployed = api.deploy("counter", Path::new(MISBEHAVING)).await;
    assert_eq!(deployed["version"], 3);
    let described = api.get("/v1/services/counter").await.expect(200);
    assert_eq!(
        described["versions"].as_array().unwrap().iter().map(|v| v["version"].clone()).collect::<Vec<_>>(),
        [json!(3)]
    );
    // The entities' data stayed.
    assert_eq!(api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"applied": 1}));

    let t = t.restart().await;
    assert_eq!(t.api.get("/v1/services/counter").await.expect(200)["version"], 3);
    t.api.send(reqwest::Method::DELETE, "/v1/services/counter", Vec::new()).await.expect(200);
    assert_eq!(t.api.deploy("counter", Path::new(COUNTER)).await["version"], 4);
}

#[tokio::test]
async fn start_up_says_which_services_it_deployed_and_which_it_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = format!("counter={COUNTER}");
    let args = ["--deploy", deploy.as_str()];
    let server = Server::start(dir.path(), &args).await.unwrap();
    assert!(
        server.stdout().contains(&"deployed counter (event-sourced, version 1)".to_string()),
        "{:?}",
        server.stdout()
    );
    Api::new(server.base()).deploy("m", Path::new(MISBEHAVING)).await;

    let server = server.restart().await.unwrap();
    let said = server.stdout();
    assert!(said.contains(&"loaded counter (event-sourced, version 1)".to_string()), "{said:?}");
    assert!(said.contains(&"loaded m (event-sourced, version 1)".to_string()), "{said:?}");
    assert!(!said.iter().any(|line| line.starts_with("deployed")), "nothing was deployed: {said:?}");
}

#[tokio::test]
async fn a_refused_upgrade_names_both_kinds_in_plain_english() {
    let t = start(&[]).await;
    t.api.deploy("svc", Path::new(COUNTER)).await;
    let bytes = std::fs::read(wasmstate_tests::guests::USER_PROFILE).unwrap();
    let (kind, message) = t.api.deploy_bytes("svc", bytes).await.expect_error(409);
    assert_eq!(kind, "conflict");
    assert_eq!(message, "svc is an event-sourced service; a new version must be one too, not a value service");
}

/// A component costly to compile is refused within the compile budget,
/// in a process of its own, and nothing is deployed.
#[tokio::test]
async fn a_deploy_that_takes_too_much_to_compile_is_refused() {
    for budget in [["--max-compile-time", "1ms"], ["--max-compile-memory", "8MiB"]] {
        let t = start(&budget).await;
        let (kind, message) = t.api.deploy_bytes("m", std::fs::read(MISBEHAVING).unwrap()).await.expect_error(400);
        assert_eq!(kind, "invalid_component", "{budget:?}");
        assert!(message.contains("budget"), "{budget:?}: {message}");
        t.api.get("/v1/services/m").await.expect_error(404);
        t.api.get("/healthz").await.expect(200);
    }
}

/// The counter component, with `modules` more core modules (never
/// instantiated), each of one function that takes the compiler long: `ops`
/// rounds of arithmetic on a few locals.
fn slow_to_compile(modules: usize, ops: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }
    // (func (local i64 i64 i64 i64) ...): each round mixes the locals.
    let mut code = vec![0x01, 0x04, 0x7e];
    for round in 0..ops {
        let (a, b) = ((round % 4) as u8, ((round + 1) % 4) as u8);
        code.extend_from_slice(&[0x20, a, 0x20, b, 0x7e, 0x20, b, 0x7c, 0x21, a]);
    }
    code.push(0x0b);
    let mut body = vec![0x01];
    leb(code.len(), &mut body);
    body.extend_from_slice(&code);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[0x01, 0x60, 0x00, 0x00], &mut module);
    section(3, &[0x01, 0x00], &mut module);
    section(10, &body, &mut module);
    // Sections of a component come in any order: one more at the end.
    let mut component = std::fs::read(COUNTER).expect("the counter component");
    for _ in 0..modules {
        section(1, &module, &mut component);
    }
    component
}

/// A deploy compiling for long (seconds, here) holds no lock the others
/// need: meanwhile another service deploys, answers and is deleted.
#[tokio::test]
async fn a_long_compile_holds_up_no_other_deploy() {
    let t = start(&["--max-body-bytes", "64MiB"]).await;
    t.api.deploy("old", Path::new(MISBEHAVING)).await;
    let slow = {
        let api = t.api.clone();
        tokio::spawn(async move { api.deploy_bytes("slow", slow_to_compile(5, 700_000)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    t.api.deploy("counter", Path::new(COUNTER)).await;
    t.api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);
    t.api.send(reqwest::Method::DELETE, "/v1/services/old", Vec::new()).await.expect(200);
    assert!(!slow.is_finished(), "the other deploy waited for the long compile");
    slow.await.unwrap().expect(201);
    t.api.invoke("slow", "c", "Increase", json!({"value": 2})).await.expect(200);
}

/// A host on a journal of its own is a cluster of one: itself, at the URL
/// it answers on.
#[tokio::test]
async fn a_lone_host_lists_itself_as_its_cluster() {
    let t = start(&[]).await;
    let hosts = t.api.get("/v1/cluster").await.expect(200)["hosts"].clone();
    let hosts = hosts.as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["url"], t.server.base());
    assert_eq!(hosts[0]["self"], true);
    assert!(hosts[0]["id"].as_str().is_some_and(|id| id.len() == 16), "{hosts:?}");
    assert!(hosts[0]["last_seen_ms"].as_u64().is_some());
}
