//! `GET /v1/services/{s}/entities?after=ID&limit=N`: a service's stored
//! entities a page at a time, in id order, each with its last seq.

use std::path::Path;

use serde_json::{Value, json};
use wasmstate_tests::Api;
use wasmstate_tests::guests::{COUNTER, ORDER_VALIDATOR, USER_PROFILE};

use crate::start;

/// Every page of `service`'s listing, `limit` at a time: the (id, last_seq)
/// pairs in order, and how many pages it took.
async fn all_pages(api: &Api, service: &str, limit: usize) -> (Vec<(String, u64)>, usize) {
    let (mut all, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let query = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
        let page = api.get(&format!("/v1/services/{service}/entities?limit={limit}{query}")).await.expect(200);
        pages += 1;
        for head in page["entities"].as_array().unwrap() {
            all.push((head["entity"].as_str().unwrap().to_string(), head["last_seq"].as_u64().unwrap()));
        }
        match &page["next"] {
            Value::String(next) => after = Some(next.clone()),
            Value::Null => return (all, pages),
            other => panic!("next is {other}"),
        }
    }
}

#[tokio::test]
async fn entities_are_listed_a_page_at_a_time_in_id_order() {
    let t = start(&[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("user-profile", Path::new(USER_PROFILE)).await;
    api.deploy("orders", Path::new(ORDER_VALIDATOR)).await;
    // Ids whose byte order is not their insertion order; "b" gets 3 events.
    for (entity, times) in [("d", 1), ("b", 3), ("a-1", 1), ("c", 2), ("B", 1)] {
        for _ in 0..times {
            api.invoke("counter", entity, "Increase", json!({ "value": 1 })).await.expect(200);
        }
    }
    // A read commits nothing: it makes no entity.
    api.invoke("counter", "only-read", "Get", json!({})).await.expect(200);
    let expected: Vec<(String, u64)> =
        [("B", 1), ("a-1", 1), ("b", 3), ("c", 2), ("d", 1)].iter().map(|(e, n)| (e.to_string(), *n)).collect();
    assert_eq!(all_pages(api, "counter", 2).await, (expected.clone(), 3));
    assert_eq!(all_pages(api, "counter", 5).await, (expected.clone(), 1), "no empty page after a full last one");
    let first = api.get("/v1/services/counter/entities").await.expect(200);
    assert_eq!(first["entities"].as_array().unwrap().len(), 5, "100 by default");
    assert_eq!(first["entities"][2], json!({"entity": "b", "last_seq": 3}));
    let after_last = api.get("/v1/services/counter/entities?after=d").await.expect(200);
    assert_eq!(after_last, json!({"entities": [], "next": null}));

    // A value entity's last_seq is its revision.
    for name in ["Ada", "Ada L."] {
        api.invoke("user-profile", "ada", "Update", json!({"name": name, "email": "ada@example.com"}))
            .await
            .expect(200);
    }
    api.invoke("user-profile", "bob", "Update", json!({"name": "Bob", "email": "bob@example.com"})).await.expect(200);
    let (profiles, _) = all_pages(api, "user-profile", 1).await;
    assert_eq!(profiles, [("ada".to_string(), 2), ("bob".to_string(), 1)]);
    // An action stores no entities.
    assert_eq!(api.get("/v1/services/orders/entities").await.expect(200), json!({"entities": [], "next": null}));
}

#[tokio::test]
async fn a_bad_listing_request_is_refused_clearly() {
    let t = start(&[]).await;
    let api = &t.api;
    api.deploy("counter", Path::new(COUNTER)).await;
    api.invoke("counter", "c", "Increase", json!({ "value": 1 })).await.expect(200);
    for bad in ["limit=0", "limit=1001", "limit=-1", "limit=x", "after="] {
        let (kind, message) = api.get(&format!("/v1/services/counter/entities?{bad}")).await.expect_error(400);
        assert!(!message.is_empty(), "{bad}: {kind}");
    }
    let (kind, _) = api.get("/v1/services/nope/entities").await.expect_error(404);
    assert_eq!(kind, "unknown_service");
    assert_eq!(all_pages(api, "counter", 1000).await.0, [("c".to_string(), 1)], "nothing changed");
}
