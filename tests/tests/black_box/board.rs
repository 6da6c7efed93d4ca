//! The board example on a real host: items added, edited, marked done and
//! removed, each a text register and a done flag in the map; a change to a
//! missing item is refused and changes nothing; the value streams after
//! each change; restart keeps the board. Runs on both journals
//! (`WASMSTATE_TEST_JOURNAL`).

use std::time::Duration;

use serde_json::{Value, json};
use wasmstate_tests::guests::BOARD;
use wasmstate_tests::sse::EventStream;

use crate::{Running, start_with};

const BOARD_SERVICE: &str = "board";

async fn command(t: &Running, name: &str, body: Value) -> wasmstate_tests::Reply {
    t.api.invoke(BOARD_SERVICE, "team", name, body).await
}

/// What `GET …/entities/team` shows: (type, value).
async fn shown(t: &Running) -> (Value, Value) {
    let body = t.api.get(&format!("/v1/services/{BOARD_SERVICE}/entities/team")).await.expect(200);
    (body["crdt"].clone(), body["state"].clone())
}

#[tokio::test]
async fn items_change_and_stream_and_a_missing_one_is_refused() {
    let t = start_with(BOARD_SERVICE, BOARD, &[]).await;
    command(&t, "Add", json!({"id": "milk", "text": "Buy milk"})).await.expect(200);
    let url = format!("{}/v1/services/{BOARD_SERVICE}/entities/team/events?follow=true", t.server.base());
    let mut stream = EventStream::open(&url).await.expect("the stream opens");
    let next = Duration::from_secs(5);
    let first = json!({"crdt": "ormap", "state": {"milk/text": "Buy milk"}});
    assert_eq!(stream.next(next).await.unwrap(), ("1".to_owned(), first));

    // One change at a time: changes that land together may stream as one value.
    let changes = [
        (
            "Add",
            json!({"id": "bread", "text": "Buy bread"}),
            json!({"bread/text": "Buy bread", "milk/text": "Buy milk"}),
        ),
        (
            "Edit",
            json!({"id": "milk", "text": "Buy oat milk"}),
            json!({"bread/text": "Buy bread", "milk/text": "Buy oat milk"}),
        ),
        (
            "Done",
            json!({"id": "bread"}),
            json!({"bread/done": true, "bread/text": "Buy bread", "milk/text": "Buy oat milk"}),
        ),
    ];
    for ((name, body, state), id) in changes.into_iter().zip(["2", "3", "4"]) {
        command(&t, name, body).await.expect(200);
        assert_eq!(stream.next(next).await.unwrap(), (id.to_owned(), json!({"crdt": "ormap", "state": state})));
    }
    let items = json!({"items": [
        {"id": "bread", "text": "Buy bread", "done": true},
        {"id": "milk", "text": "Buy oat milk", "done": false},
    ]});
    assert_eq!(command(&t, "Get", json!({})).await.expect(200), items);
    let value = json!({"bread/done": true, "bread/text": "Buy bread", "milk/text": "Buy oat milk"});
    assert_eq!(shown(&t).await, (json!("ormap"), value.clone()));

    // Changes to an item not on the board are refused and change nothing.
    for (name, body) in [("Edit", json!({"id": "eggs", "text": "Buy eggs"})), ("Done", json!({"id": "eggs"}))] {
        let (kind, message) = command(&t, name, body).await.expect_error(400);
        assert_eq!((kind.as_str(), message.as_str()), ("command_failed", "no item eggs on board team"), "{name}");
    }
    assert_eq!(shown(&t).await, (json!("ormap"), value));

    let removed = command(&t, "Remove", json!({"id": "bread"})).await.expect(200);
    assert_eq!(removed, json!({"items": [{"id": "milk", "text": "Buy oat milk", "done": false}]}));
    let t = t.restart().await;
    assert_eq!(command(&t, "Get", json!({})).await.expect(200), removed);
    assert_eq!(shown(&t).await, (json!("ormap"), json!({"milk/text": "Buy oat milk"})));
    assert_eq!(command(&t, "Clear", json!({})).await.expect(200), json!({"items": []}));
    assert_eq!(shown(&t).await, (json!("ormap"), json!({})));
}
