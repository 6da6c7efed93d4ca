//! Typed commands through the host: what a command learns of its
//! invocation (seq, time, idempotency key), and the answers the SDK gives
//! a command its enum does not have or a payload that does not fit.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wasmstate_tests::guests::{COUNTER, TCK_EVENT_SOURCED, TCK_VALUE};

use crate::{Running, start_with};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

/// `Metadata` of `service/id`, checking that its time lies in the call.
async fn metadata(t: &Running, service: &str, id: &str, key: Option<&str>) -> Value {
    let before = now_ms();
    let reply = match key {
        Some(key) => t.api.invoke_idempotent(service, id, "Metadata", json!({}), key).await,
        None => t.api.invoke(service, id, "Metadata", json!({})).await,
    };
    let reply = reply.expect(200);
    let at = reply["nowMs"].as_u64().expect("nowMs is a number");
    assert!(before <= at && at <= now_ms(), "the command's time {at} lies in the call, from {before}");
    reply
}

#[tokio::test]
async fn a_command_sees_its_seq_its_time_and_its_idempotency_key() {
    let t = start_with("tck", TCK_EVENT_SOURCED, &[]).await;
    t.api.deploy("tck-value", Path::new(TCK_VALUE)).await;

    let first = metadata(&t, "tck", "m", None).await;
    assert_eq!((first["seq"].clone(), first["idempotencyKey"].clone()), (json!(0), Value::Null));
    let emit = json!({"actions": [{"emit": "A"}, {"emit": "B"}]});
    t.api.invoke("tck", "m", "Process", emit).await.expect(200);
    assert_eq!(metadata(&t, "tck", "m", None).await["seq"], 2, "the seq of the entity's last event");

    let keyed = metadata(&t, "tck", "m", Some("order-17")).await;
    assert_eq!(keyed["idempotencyKey"], "order-17");
    // A repeat of the key answers the first reply, time and all.
    let repeat = t.api.invoke_idempotent("tck", "m", "Metadata", json!({}), "order-17").await.expect(200);
    assert_eq!(repeat, keyed);

    // A value entity's seq counts the writes of its state.
    assert_eq!(metadata(&t, "tck-value", "v", None).await["seq"], 0);
    for value in ["x", "y"] {
        let update = json!({"actions": [{"update": value}]});
        t.api.invoke("tck-value", "v", "Process", update).await.expect(200);
    }
    assert_eq!(metadata(&t, "tck-value", "v", None).await["seq"], 2);
}

#[tokio::test]
async fn a_typed_entity_refuses_an_unknown_command_or_a_payload_that_does_not_fit() {
    let t = start_with("counter", COUNTER, &[]).await;
    let (code, message) = t.api.invoke("counter", "c", "Increse", json!({"value": 1})).await.expect_error(400);
    assert_eq!(code, "unknown_command");
    assert_eq!(message, "unknown command \"Increse\"; the commands are Increase, Decrease, Get");

    let (code, message) = t.api.invoke("counter", "c", "Increase", json!({"value": "one"})).await.expect_error(400);
    assert_eq!(code, "invalid_payload");
    assert!(message.starts_with("invalid payload for command \"Increase\": invalid type: string \"one\""), "{message}");

    let (code, message) = t.api.invoke("counter", "c", "Get", json!({"all": true})).await.expect_error(400);
    assert_eq!(code, "invalid_payload");
    assert!(message.ends_with("this command takes no payload (send none, null or {})"), "{message}");

    assert!(t.api.events("counter", "c", 1).await.is_empty(), "a refused command stores nothing");
    let reply = t.api.invoke("counter", "c", "Increase", json!({"value": 2})).await.expect(200);
    assert_eq!(reply, json!({"value": 2}));
    assert_eq!(t.api.invoke_raw("counter", "c", "Get", Vec::new()).await.expect(200), json!({"value": 2}));
}
