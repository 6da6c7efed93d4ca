//! The poll example on a real host: each voter counts once (a second vote
//! moves theirs), the value is a map of the options, a register per voter
//! and the closed flag, a refused command changes nothing, and restart
//! keeps the poll. Runs on both journals (`WASMSTATE_TEST_JOURNAL`).

use serde_json::{Value, json};
use wasmstate_tests::guests::POLL;

use crate::{Running, start_with};

const POLL_SERVICE: &str = "poll";

async fn command(t: &Running, name: &str, body: Value) -> wasmstate_tests::Reply {
    t.api.invoke(POLL_SERVICE, "lunch", name, body).await
}

/// What `GET …/entities/lunch` shows: (type, value).
async fn shown(t: &Running) -> (Value, Value) {
    let body = t.api.get(&format!("/v1/services/{POLL_SERVICE}/entities/lunch")).await.expect(200);
    (body["crdt"].clone(), body["state"].clone())
}

fn vote(voter: &str, option: &str) -> Value {
    json!({ "voter": voter, "option": option })
}

#[tokio::test]
async fn each_voter_counts_once_and_a_closed_poll_refuses_votes() {
    let t = start_with(POLL_SERVICE, POLL, &[]).await;
    command(&t, "AddOption", json!({"option": "pizza"})).await.expect(200);
    command(&t, "AddOption", json!({"option": "salad"})).await.expect(200);
    for (voter, option) in [("ada", "pizza"), ("bob", "salad"), ("cy", "pizza")] {
        command(&t, "Vote", vote(voter, option)).await.expect(200);
    }
    let moved = command(&t, "Vote", vote("ada", "salad")).await.expect(200);
    assert_eq!(moved, json!({"options": {"pizza": 1, "salad": 2}, "voters": 3, "closed": false}));
    let retracted = command(&t, "Retract", json!({"voter": "cy"})).await.expect(200);
    assert_eq!(retracted, json!({"options": {"pizza": 0, "salad": 2}, "voters": 2, "closed": false}));

    let value = json!({"options": ["pizza", "salad"], "voter:ada": "salad", "voter:bob": "salad"});
    assert_eq!(shown(&t).await, (json!("ormap"), value.clone()));

    // A vote for an option the poll lacks is refused and changes nothing.
    let (kind, message) = command(&t, "Vote", vote("dee", "sushi")).await.expect_error(400);
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("command_failed", "\"sushi\" is not an option of poll lunch; its options are pizza, salad")
    );
    assert_eq!(shown(&t).await, (json!("ormap"), value));

    let closed = json!({"options": {"pizza": 0, "salad": 2}, "voters": 2, "closed": true});
    assert_eq!(command(&t, "Close", json!({})).await.expect(200), closed);
    let before = shown(&t).await;
    assert_eq!(before.1["closed"], true);
    let (kind, message) = command(&t, "Vote", vote("bob", "pizza")).await.expect_error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("command_failed", "poll lunch is closed"));
    assert_eq!(shown(&t).await, before);

    let t = t.restart().await;
    assert_eq!(command(&t, "Results", json!({})).await.expect(200), closed);
    assert_eq!(shown(&t).await, before);
}
