//! Two hosts on one PostgreSQL journal, in one process: each caches its own
//! entities, so what one writes makes the other's cached state stale. A
//! command never commits on stale state: its commit conflicts, and it runs
//! again on the state reloaded from the journal, so the client sees a
//! normal reply; a read answers every write acknowledged before it; the
//! log has no gap and no duplicate.

use std::path::Path;

use serde_json::{Value, json};
use wasmstate::{ServeConfig, SharedJournal};
use wasmstate_tests::Api;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING, USER_PROFILE};

/// A host on `journal`, served in process on a free port, with its data dir.
async fn host(journal: &SharedJournal) -> (tempfile::TempDir, Api) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig::from_args(["--data-dir".as_ref(), dir.path().as_os_str()]).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let state = wasmstate::open_on_shared(&config, journal, shutdown).await.unwrap().state;
    (dir, crate::in_process::serve(state, stop).await)
}

/// Two hosts on a fresh database, the counter deployed before the second
/// opens (so it loads it from the journal).
async fn two_hosts() -> [(tempfile::TempDir, Api); 2] {
    let postgres = wasmstate_tests::postgres::shared().await.expect("a PostgreSQL server");
    let url = postgres.create_database().await.expect("a database");
    let journal = SharedJournal::connect(&url).await.expect("the journal opens");
    let a = host(&journal).await;
    a.1.deploy("counter", Path::new(COUNTER)).await;
    a.1.deploy("profiles", Path::new(USER_PROFILE)).await;
    let b = host(&journal).await;
    [a, b]
}

async fn increase(api: &Api, entity: &str, by: u64) -> Value {
    api.invoke("counter", entity, "Increase", json!({ "value": by })).await.expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_stale_state_runs_the_command_again_on_the_journal_s() {
    let [(_a_dir, a), (_b_dir, b)] = two_hosts().await;
    increase(&a, "c", 1).await;
    // b loads the entity (seq 1) and moves it on; a still holds seq 1.
    increase(&b, "c", 10).await;
    assert_eq!(a.metric("wasmstate_conflict_retries_total").await, 0.0);
    assert_eq!(increase(&a, "c", 100).await, json!({ "value": 111 }));
    assert!(a.metric("wasmstate_conflict_retries_total").await >= 1.0, "a's commit conflicted and ran again");
    // b holds seq 2; its read sees a's write all the same.
    assert_eq!(b.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({ "value": 111 }));
    assert_eq!(a.seqs("counter", "c").await, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_through_two_hosts_all_land_once_in_order() {
    let [(_a_dir, a), (_b_dir, b)] = two_hosts().await;
    const CALLS: u64 = 120;
    for (_, reply) in crate::race_increments(&[a.clone(), b.clone()], CALLS as usize, |_| "hot".into()).await {
        assert_eq!(reply.status, 200, "every command lands, however the hosts raced: {}", reply.body);
    }
    for api in [&a, &b] {
        assert_eq!(api.invoke("counter", "hot", "Get", json!({})).await.expect(200), json!({ "value": CALLS }));
    }
    assert_eq!(a.seqs("counter", "hot").await, (1..=CALLS).collect::<Vec<_>>(), "no gap, no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_entity_written_through_two_hosts_never_loses_a_write() {
    let [(_a_dir, a), (_b_dir, b)] = two_hosts().await;
    let update = |api: &Api, name: &str| {
        let (api, name) = (api.clone(), name.to_string());
        async move { api.invoke("profiles", "p", "Update", json!({ "name": name, "email": "p@example.com" })).await }
    };
    let get = |api: &Api| {
        let api = api.clone();
        async move { api.invoke("profiles", "p", "Get", json!({})).await.expect(200)["name"].clone() }
    };
    update(&a, "one").await.expect(200);
    update(&b, "two").await.expect(200);
    // a's cached revision is stale: its read sees b's write, and its write
    // runs again on it.
    assert_eq!(get(&a).await, "two");
    update(&b, "three").await.expect(200);
    update(&a, "four").await.expect(200);
    assert!(a.metric("wasmstate_conflict_retries_total").await >= 2.0, "a's read and write each ran again");
    assert_eq!(get(&b).await, "four");
    assert_eq!(get(&a).await, "four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_deployed_or_deleted_on_one_host_is_live_on_the_other_within_a_second() {
    let [(_a_dir, a), (_b_dir, b)] = two_hosts().await;
    b.invoke("m", "x", "Get", json!({})).await.expect_error(404);
    a.deploy("m", Path::new(MISBEHAVING)).await;
    let second = std::time::Duration::from_secs(1);
    assert!(crate::serves(&b, "m").await, "b serves what a deployed within a second");
    assert_eq!(b.get("/v1/services/m").await.expect(200)["version"], 1);
    // A new version of a service b already runs.
    a.deploy("m", Path::new(MISBEHAVING)).await;
    let newer = b.eventually(second, || async { b.get("/v1/services/m").await.body["version"] == 2 }).await;
    assert!(newer, "b runs a's new version within a second");
    a.send(reqwest::Method::DELETE, "/v1/services/m", Vec::new()).await.expect(200);
    let gone = b.eventually(second, || async { b.invoke("m", "x", "Get", json!({})).await.status == 404 }).await;
    assert!(gone, "b stops serving what a deleted within a second");
}
