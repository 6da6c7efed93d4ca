//! 8: a verified deploy over many stored entities: how long the host takes
//! to rebuild every entity of a service with a new version (from its
//! snapshot, and from event 1) and to run a probe command on the old and
//! the new version against each. The logs are written straight into the
//! data dir's journal through the library, then a fresh server verifies
//! the cart's next version against them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use hyper::Method;
use wasmstate::bench_hooks::{Commit, EntityStore, EntityWrite, JOURNAL_FILE, Metrics, RedbJournal, StoredSnapshot};
use wasmstate_tests::Server;

use crate::load::{self, Client};
use crate::report::{Report, Samples, Target, Timing};
use crate::servers::{Guests, Running};

/// Products per cart: the events cycle through them.
const PRODUCTS: usize = 10;
/// The longest a verification of 10,000 entities of 100 events may take.
const TARGET_SECONDS: f64 = 10.0;

/// Writes `entities` carts of `events` events each, then verifies a new
/// version of the cart against them (twice: without and with a probe).
pub async fn verified_deploy(guests: &Guests, report: &mut Report, entities: usize, events: u64) -> anyhow::Result<()> {
    let dir = Running::start(&[], &[("cart", &guests.cart)]).await?.stop().await?;
    let journal_path = dir.path().join(JOURNAL_FILE);
    let started = Instant::now();
    {
        let journal = RedbJournal::open(&journal_path, Arc::new(Metrics::default())).context("open the journal")?;
        let mut pending = Vec::new();
        for e in 0..entities {
            pending.push(journal.commit(cart_commit(e, events)));
            if pending.len() == 256 || e + 1 == entities {
                for commit in pending.drain(..) {
                    anyhow::ensure!(commit.await?.is_durable(), "the journal refused a commit");
                }
            }
        }
    }
    report.facts.push((
        format!("8 writing {entities} carts × {events} events through Journal::commit"),
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    ));
    crate::rehydrate::wait_until_closed(&journal_path).await?;

    let server = Server::start(dir.path(), &[]).await?;
    let mut client = Client::connect(load::addr_of(server.base())?).await?;
    for (label, query) in [("replay", "verify=replay"), ("replay + probe GetCart", "verify=replay&probe=GetCart")] {
        let start = Instant::now();
        let body = client
            .expect(Method::PUT, &format!("/v1/services/cart?{query}"), Bytes::from(guests.cart.clone()), 201)
            .await?;
        let elapsed = start.elapsed();
        let deployed: serde_json::Value = serde_json::from_slice(&body)?;
        let report_json = &deployed["verification"];
        anyhow::ensure!(report_json["checked"] == entities, "checked {}", report_json["checked"]);
        anyhow::ensure!(report_json["failed_total"] == 0, "failures: {report_json}");
        let mut samples = Samples::default();
        samples.push(elapsed);
        let name = format!("verified deploy, {entities} carts × {events} events: {label}");
        report.timings.push(Timing::new("8", &name, samples));
        let seconds = elapsed.as_secs_f64();
        report.targets.push(Target {
            goal: format!("8: verify {entities} entities × {events} events ({label}) < {TARGET_SECONDS:.0} s"),
            measured: format!("{seconds:.2} s ({:.0} entities/s)", entities as f64 / seconds),
            met: seconds < TARGET_SECONDS,
        });
    }
    let status = server.stop().await?;
    anyhow::ensure!(status.success(), "wasmstate exited with {status}");
    Ok(())
}

/// Cart `e`'s `events` events, cycling through the products, with the
/// snapshot a server taking one every 100 events would have stored.
fn cart_commit(e: usize, events: u64) -> Commit {
    let event = |n: u64| {
        let p = n as usize % PRODUCTS;
        format!(r#"{{"type":"ItemAdded","item":{{"productId":"P{p}","name":"Product {p}","quantity":1}}}}"#)
            .into_bytes()
    };
    let mut commit = Commit::events("cart", &format!("cart-{e:05}"), 0, (0..events).map(event).collect());
    let last_snapshot = events / 100 * 100;
    if last_snapshot > 0
        && let EntityWrite::Events { snapshot, .. } = &mut commit.write
    {
        let items: Vec<String> = (0..PRODUCTS.min(last_snapshot as usize))
            .map(|p| {
                let quantity = (last_snapshot as usize - p).div_ceil(PRODUCTS);
                format!(r#"{{"productId":"P{p}","name":"Product {p}","quantity":{quantity}}}"#)
            })
            .collect();
        let state = format!(r#"{{"items":[{}]}}"#, items.join(",")).into_bytes();
        *snapshot = Some(StoredSnapshot { seq: last_snapshot, version: 1, state });
    }
    commit.version = 1;
    commit
}
