//! Random requests: random methods, paths of random bytes, random bodies and
//! malformed HTTP. The host answers each with a clear status (never a 5xx),
//! and stays up and consistent.

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmstate_tests::guests::COUNTER;

use crate::{Rng, start_with};

/// Percent-encodes every byte that is not unreserved.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn random_requests_get_clear_answers_and_change_nothing_they_should_not() {
    let t = start_with("counter", COUNTER, &[]).await;
    let mut rng = Rng::from_clock("fuzz");
    let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];
    for _ in 0..400 {
        let segments: Vec<String> = (0..rng.below(7))
            .map(|_| match rng.below(3) {
                0 => {
                    rng.pick(&["v1", "services", "counter", "entities", "events", "Get", "Increase", ".."]).to_string()
                }
                _ => encode(&rng.bytes(12)),
            })
            .collect();
        let query = if rng.below(4) == 0 { format!("?from={}", encode(&rng.bytes(6))) } else { String::new() };
        let path = format!("/{}{query}", segments.join("/"));
        let method = methods[rng.below(methods.len())].clone();
        // Never deploy over the counter: PUT goes to random service names only.
        if method == Method::PUT && path.starts_with("/v1/services/counter") {
            continue;
        }
        let body = match rng.below(3) {
            0 => Vec::new(),
            1 => rng.bytes(256),
            _ => json!({"value": rng.next_u64() as i64 % 10}).to_string().into_bytes(),
        };
        let reply = t.api.send(method.clone(), &path, body).await;
        let status = reply.status.as_u16();
        assert!(
            matches!(status, 200 | 201 | 400 | 404 | 405 | 413),
            "{method} {path} answered {status}: {}",
            reply.body
        );
        if status >= 400 {
            assert!(reply.body["error"]["kind"].is_string(), "{method} {path}: {}", reply.body);
        }
    }

    // Malformed HTTP straight on the socket.
    let addr = t.server.base().trim_start_matches("http://").to_string();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let garbage = rng.bytes(300);
        let _ = stream.write_all(&garbage).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read_to_end(&mut sink)).await;
    }

    // Still up, the counter still consistent with its log.
    t.api.get("/healthz").await.expect(200);
    assert_eq!(t.api.get("/v1/services").await.expect(200).as_array().unwrap().len(), 1);
    t.api.invoke("counter", "after-fuzz", "Increase", json!({"value": 2})).await.expect(200);
    assert_eq!(t.api.invoke("counter", "after-fuzz", "Get", json!({})).await.expect(200), json!({"value": 2}));
}
