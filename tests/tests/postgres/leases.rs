//! Work done once for the whole cluster (the outbox, each subscription,
//! the timers) runs on the host holding its lease. A holder that dies or
//! stalls past its lease is taken over, its stale writes are refused, the
//! cart projection still counts every item added exactly once, and a timer
//! set on a killed holder fires once on another host.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmstate_tests::guests::{CART_PROJECTION, COUNTER, SHOPPING_CART};
use wasmstate_tests::postgres::shared;
use wasmstate_tests::{Api, Server};

use crate::{answers, serves, start_host};

/// A host silent this long is taken for dead, and its leases expire.
const HOST_TIMEOUT: &str = "2s";

/// The subscription the cart projection runs under.
const PROJECTION_LEASE: &str = "subscription/cart-projection/shopping-cart";

/// A host on the database `url`, with its data dir.
struct Host {
    _dir: tempfile::TempDir,
    server: Server,
    api: Api,
}

async fn host(url: &str) -> Host {
    host_with_timeout(url, HOST_TIMEOUT).await
}

/// A host on the database `url` taken for dead after `timeout`.
async fn host_with_timeout(url: &str, timeout: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_host(url, dir.path(), &["--host-timeout", timeout]).await;
    Host { _dir: dir, server, api }
}

/// Deploys the counter, the shopping cart and the projection counting
/// every cart's items into `counter/items-added`, and waits until every
/// host serves them.
async fn deploy_projection(hosts: &[&Host]) {
    let api = &hosts[0].api;
    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("shopping-cart", Path::new(SHOPPING_CART)).await;
    let bytes = std::fs::read(CART_PROJECTION).unwrap();
    let path = "/v1/services/cart-projection?subscribe=shopping-cart";
    api.send(reqwest::Method::PUT, path, bytes).await.expect(201);
    for host in hosts {
        let api = &host.api;
        assert!(serves(api, "counter").await, "every host serves the counter");
        let carts = answers(api, "shopping-cart", "GetCart", Duration::from_secs(2));
        assert!(carts.await, "every host serves the carts");
    }
}

/// This host's id, as `GET /v1/cluster` says.
async fn id_of(api: &Api) -> String {
    let cluster = api.get("/v1/cluster").await.expect(200);
    let me = cluster["hosts"].as_array().unwrap().iter().find(|h| h["self"] == json!(true)).cloned();
    me.expect("the host lists itself")["id"].as_str().unwrap().to_string()
}

/// Lease `name` as `api`'s journal has it: (holder, epoch, expires_at_ms),
/// once taken; and all of `GET /v1/cluster`, to say.
async fn lease_record(api: &Api, name: &str) -> (Option<(String, u64, u64)>, Value) {
    let cluster = api.get("/v1/cluster").await.expect(200);
    let lease = cluster["leases"].as_array().unwrap().iter().find(|l| l["name"] == json!(name)).map(|lease| {
        let holder = lease["holder"].as_str().unwrap().to_string();
        (holder, lease["epoch"].as_u64().unwrap(), lease["expires_at_ms"].as_u64().unwrap())
    });
    (lease, cluster)
}

/// Lease `name` as `api`'s journal has it: (holder, epoch), once taken.
async fn lease(api: &Api, name: &str) -> Option<(String, u64)> {
    lease_record(api, name).await.0.map(|(holder, epoch, _)| (holder, epoch))
}

/// Waits until lease `name` is held (not expired); answers (holder, epoch).
async fn held(api: &Api, name: &str) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (found, cluster) = lease_record(api, name).await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        if let Some((holder, epoch, _)) = found.filter(|(_, _, expires_at_ms)| *expires_at_ms > now) {
            return (holder, epoch);
        }
        assert!(Instant::now() < deadline, "lease {name} is never taken: {cluster}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds one item to `cart` through `api`, under `key`; retries through
/// the next of `apis` while one cannot answer, so the add lands once.
async fn add_item(apis: &[Api], first: usize, cart: &str, key: &str) {
    let body = json!({"productId": "p", "name": "thing", "quantity": 1});
    for attempt in 0..40 {
        let api = &apis[(first + attempt) % apis.len()];
        let sent = api.try_invoke_idempotent("shopping-cart", cart, "AddItem", body.clone(), key).await;
        match sent {
            Ok(reply) if reply.status == 200 => return,
            Ok(reply) if reply.status == 503 => {}
            Ok(reply) => panic!("adding to {cart}: {} {}", reply.status, reply.body),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("adding to {cart} never landed");
}

async fn items_added(api: &Api) -> u64 {
    api.invoke("counter", "items-added", "Get", json!({})).await.expect(200)["value"].as_u64().unwrap()
}

/// Waits until the projection counted `expected` items, then checks it
/// counts no more.
async fn assert_counted_once(api: &Api, expected: u64) {
    let counted = api.eventually(Duration::from_secs(20), || async { items_added(api).await >= expected });
    assert!(counted.await, "the projection counted {} of {expected} items", items_added(api).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(items_added(api).await, expected, "every item counted exactly once");
}

/// An entity of `counter` that `owner` owns, as `other` routes: a read of
/// it sent to `other` is forwarded.
async fn owned_by(other: &Api, prefix: &str) -> String {
    for n in 0..64 {
        let entity = format!("{prefix}-{n}");
        let before = other.metric("wasmstate_forwarded_total").await;
        other.invoke("counter", &entity, "Get", json!({})).await.expect(200);
        if other.metric("wasmstate_forwarded_total").await > before {
            return entity;
        }
    }
    panic!("no entity of the other host among 64");
}

fn value(reply: Value) -> u64 {
    reply["value"].as_u64().unwrap()
}

#[tokio::test]
async fn a_paused_lease_holder_loses_its_leases_and_its_stale_writes_conflict() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let (one, two) = (host(&url).await, host(&url).await);
    deploy_projection(&[&one, &two]).await;
    let (holder, epoch) = held(&one.api, PROJECTION_LEASE).await;
    let (stalled, other) = if holder == id_of(&one.api).await { (&one, &two) } else { (&two, &one) };
    assert_eq!(holder, id_of(&stalled.api).await);
    let both = [stalled.api.clone(), other.api.clone()];

    // The stalled host caches an entity it owns, at seq 3.
    let entity = owned_by(&other.api, "stale").await;
    for _ in 0..3 {
        stalled.api.invoke("counter", &entity, "Increase", json!({"value": 1})).await.expect(200);
    }
    for n in 0..5 {
        add_item(&both, n, &format!("cart-{n}"), &format!("before-{n}")).await;
    }
    assert_counted_once(&other.api, 5).await;

    // Paused past its lease: the other host takes over the subscription
    // and the entities.
    let retries = stalled.api.metric("wasmstate_conflict_retries_total").await;
    stalled.server.pause();
    let taken_over = other.api.eventually(Duration::from_secs(10), || async {
        lease(&other.api, PROJECTION_LEASE).await.is_some_and(|(by, at)| by != holder && at > epoch)
    });
    assert!(taken_over.await, "the other host took the subscription's lease over");
    let alone = other.api.eventually(Duration::from_secs(10), || async {
        other.api.get("/v1/cluster").await.expect(200)["hosts"].as_array().unwrap().len() == 1
    });
    assert!(alone.await, "the paused host is taken for dead");
    for expected in 4..=6 {
        let reply = other.api.invoke("counter", &entity, "Increase", json!({"value": 1})).await;
        assert_eq!(value(reply.expect(200)), expected);
    }
    for n in 0..5 {
        add_item(std::slice::from_ref(&other.api), 0, &format!("cart-{n}"), &format!("during-{n}")).await;
    }
    assert_counted_once(&other.api, 10).await;
    let (_, epoch_now) = held(&other.api, PROJECTION_LEASE).await;

    // Back: its cached state is stale, so its write conflicts and runs
    // again on what the other host wrote; and it stops the work of the
    // leases it lost instead of doing it again.
    stalled.server.resume();
    let reply = stalled.api.invoke("counter", &entity, "Increase", json!({"value": 1})).await;
    assert_eq!(value(reply.expect(200)), 7, "the command ran again on the journal's state");
    assert!(stalled.api.metric("wasmstate_conflict_retries_total").await > retries, "its first try conflicted");
    let lost = stalled.api.eventually(Duration::from_secs(5), || async {
        stalled.api.metric("wasmstate_leases_lost_total").await >= 1.0
    });
    assert!(lost.await, "the paused host knows it lost its lease");
    for n in 0..5 {
        add_item(&both, n, &format!("cart-{n}"), &format!("after-{n}")).await;
    }
    assert_counted_once(&other.api, 15).await;
    assert_eq!(held(&stalled.api, PROJECTION_LEASE).await, (id_of(&other.api).await, epoch_now), "no flapping");
    assert_eq!(other.api.seqs("counter", &entity).await, (1..=7).collect::<Vec<_>>(), "no gap, no duplicate");
}

#[tokio::test]
async fn the_projection_counts_every_item_once_when_its_lease_holder_is_killed_mid_stream() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let mut hosts = vec![host(&url).await, host(&url).await, host(&url).await];
    deploy_projection(&hosts.iter().collect::<Vec<_>>()).await;
    let (holder, epoch) = held(&hosts[0].api, PROJECTION_LEASE).await;
    let mut ids = Vec::new();
    for host in &hosts {
        ids.push(id_of(&host.api).await);
    }
    let dead = ids.iter().position(|id| *id == holder).expect("a host holds the lease");

    // Adds stream in through every host while the holder dies.
    const ADDS: usize = 240;
    let apis: Vec<Api> = hosts.iter().map(|h| h.api.clone()).collect();
    let streaming = tokio::spawn(async move {
        for n in 0..ADDS {
            let cart = format!("cart-{}", n % 24);
            add_item(&apis, n, &cart, &format!("add-{n}")).await;
        }
    });
    let one_third = hosts[(dead + 1) % 3].api.eventually(Duration::from_secs(20), || async {
        items_added(&hosts[(dead + 1) % 3].api).await >= ADDS as u64 / 3
    });
    assert!(one_third.await, "the projection counts while the adds stream in");
    hosts.remove(dead).server.kill().await.unwrap();
    streaming.await.expect("every add landed");

    let survivor = &hosts[0].api;
    let (new_holder, new_epoch) = held(survivor, PROJECTION_LEASE).await;
    assert!(new_holder != holder && new_epoch > epoch, "a survivor took the lease over");
    assert_counted_once(survivor, ADDS as u64).await;
}

#[tokio::test]
async fn a_host_that_stops_hands_its_leases_over_at_once() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    // Leases that would take a minute to expire.
    let (one, two) = (host_with_timeout(&url, "60s").await, host_with_timeout(&url, "60s").await);
    deploy_projection(&[&one, &two]).await;
    let (holder, epoch) = held(&one.api, PROJECTION_LEASE).await;
    let (stopping, staying) = if holder == id_of(&one.api).await { (one, two) } else { (two, one) };
    let stayed = id_of(&staying.api).await;
    assert!(stopping.server.stop().await.unwrap().success());
    let taken = staying.api.eventually(Duration::from_secs(20), || async {
        lease(&staying.api, PROJECTION_LEASE).await.is_some_and(|(by, at)| by == stayed && at > epoch)
    });
    assert!(taken.await, "the other host took the lease it let go, long before it could expire");
    add_item(std::slice::from_ref(&staying.api), 0, "cart", "after-the-stop").await;
    assert_counted_once(&staying.api, 1).await;
}

/// Timers fire on the host holding the `timers` lease: one set through it
/// fires once on another host after it is killed.
#[tokio::test]
async fn a_timer_set_on_the_lease_holder_fires_once_after_it_is_killed() {
    let url = shared().await.expect("a PostgreSQL server").create_database().await.expect("a database");
    let hosts = vec![host(&url).await, host(&url).await, host(&url).await];
    hosts[0].api.deploy("counter", Path::new(COUNTER)).await;
    for host in &hosts {
        let serving = answers(&host.api, "counter", "Get", Duration::from_secs(5));
        assert!(serving.await, "every host serves the counter");
    }
    let (holder, epoch) = held(&hosts[0].api, "timers").await;
    let mut ids = Vec::new();
    for host in &hosts {
        ids.push(id_of(&host.api).await);
    }
    let at = ids.iter().position(|id| *id == holder).expect("the holder is one of the hosts");
    let path = "/v1/services/counter/entities/timed/Increase?delay=2s";
    hosts[at].api.send(reqwest::Method::POST, path, br#"{"value": 1}"#.to_vec()).await.expect(202);

    let mut hosts = hosts;
    let killed = hosts.remove(at);
    killed.server.kill().await.unwrap();
    let survivor = &hosts[0].api;
    let fired = || async { value(survivor.invoke("counter", "timed", "Get", json!({})).await.expect(200)) == 1 };
    assert!(survivor.eventually(Duration::from_secs(20), fired).await, "another host fires the timer");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(value(survivor.invoke("counter", "timed", "Get", json!({})).await.expect(200)), 1, "once");
    let (new_holder, new_epoch) = held(survivor, "timers").await;
    assert!(new_holder != holder && new_epoch > epoch, "{new_holder} {new_epoch}");
    let timers = survivor.get("/v1/services/counter/entities/timed/timers").await.expect(200);
    assert_eq!(timers, json!([]));
}
