//! 5: how long a cold entity with a long log takes to answer, with and
//! without a snapshot. The log is written straight into the data dir's
//! journal through the library (100,000 counter events in one commit), then
//! a fresh server answers the entity's first `Get`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmstate::bench_hooks::{
    Call, CommandMeta, Commit, EntityStore, EntityWrite, Event, JOURNAL_FILE, Metrics, RedbJournal, StoredSnapshot,
};
use wasmstate_tests::Server;

use crate::inproc::Guest;
use crate::load::{self, Client};
use crate::report::{Report, Samples, Timing};
use crate::servers::{Guests, Running};

/// Entities with a long log in each data dir: one timed cold load each.
const ENTITIES: usize = 5;
/// A counter event as the counter guest emits it.
const EVENT: &[u8] = br#"{"type":"Increased","value":1}"#;

/// Runs the scenario for a log of `events` events, with a snapshot at the
/// last event (`--snapshot-every 100`) and without any.
pub async fn rehydration(guests: &Guests, guest: &Guest, report: &mut Report, events: u64) -> anyhow::Result<()> {
    for snapshot in [true, false] {
        let every = if snapshot { "100" } else { "1000000000" };
        let args = ["--snapshot-every", every];
        let dir = Running::start(&args, &[("counter", &guests.counter)]).await?.stop().await?;
        let journal_path = dir.path().join(JOURNAL_FILE);
        let (written, loads) = write_logs(&journal_path, events, snapshot).await?;
        let mode = if snapshot { "snapshot at the last event" } else { "no snapshot" };
        report.facts.push((
            format!("5 writing {ENTITIES} × {events} events ({mode}) through Journal::commit"),
            format!("{:.2} s", written.as_secs_f64()),
        ));
        let load_label = format!("journal.load_entity, {events} events, {mode}");
        report.timings.push(Timing::new("5", &load_label, loads));
        wait_until_closed(&journal_path).await?;

        let server = Server::start(dir.path(), &args).await?;
        let mut client = Client::connect(load::addr_of(server.base())?).await?;
        // The first invocation of a fresh process pays for its own warm-up;
        // keep that out of the entity's cold load.
        client.post_ok("/v1/services/counter/entities/fresh/Get", "{}").await?;
        let (mut cold, mut warm) = (Samples::default(), Samples::default());
        for e in 0..ENTITIES {
            let path = format!("/v1/services/counter/entities/long-{e}/Get");
            let start = Instant::now();
            let reply = client.post_ok(&path, "{}").await?;
            cold.push(start.elapsed());
            let value: serde_json::Value = serde_json::from_slice(&reply)?;
            anyhow::ensure!(value["value"] == events, "the cold entity answered {value}, expected {events}");
            let start = Instant::now();
            client.post_ok(&path, "{}").await?;
            warm.push(start.elapsed());
        }
        let label = if snapshot {
            format!("rehydrate {events} events, snapshot-every 100: first Get")
        } else {
            format!("rehydrate {events} events, no snapshot: first Get")
        };
        let mut timing = Timing::new("5", &label, cold);
        timing.note = "page cache warm: the log was just written".into();
        report.timings.push(timing);
        if snapshot {
            report.timings.push(Timing::new("5", "the same entity's next Get (warm)", warm));
        }
        let status = server.stop().await?;
        anyhow::ensure!(status.success(), "wasmstate exited with {status}");
    }
    guest_fold(guest, report, events).await
}

/// Commits `events` events to each long entity at once, with a
/// snapshot at the last one if asked; answers how long the writes took and
/// how long reading each entity back takes.
async fn write_logs(path: &Path, events: u64, snapshot: bool) -> anyhow::Result<(Duration, Samples)> {
    let journal = RedbJournal::open(path, Arc::new(Metrics::default())).context("open the server's journal")?;
    let start = Instant::now();
    for e in 0..ENTITIES {
        let state = format!(r#"{{"value":{events}}}"#).into_bytes();
        let mut commit = Commit::events("counter", &format!("long-{e}"), 0, vec![EVENT.to_vec(); events as usize]);
        if let EntityWrite::Events { snapshot: slot, .. } = &mut commit.write {
            *slot = snapshot.then_some(StoredSnapshot { seq: events, version: 1, state });
        }
        let status = journal.commit(commit).await?;
        anyhow::ensure!(status.is_durable(), "the journal refused a commit: {status:?}");
    }
    let written = start.elapsed();
    let mut loads = Samples::default();
    for e in 0..ENTITIES {
        let start = Instant::now();
        let history = journal.load_entity("counter", &format!("long-{e}"))?;
        loads.push(start.elapsed());
        anyhow::ensure!(history.last_seq == events, "wrote {events} events, read back {}", history.last_seq);
    }
    Ok((written, loads))
}

/// Waits until the journal file is closed (its writer thread lets go of it
/// just after the journal is dropped), so the server can open it.
pub async fn wait_until_closed(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redb::Database::create(path) {
            Ok(db) => {
                drop(db);
                return Ok(());
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => return Err(error).context("the journal is still open"),
        }
    }
}

/// The guest's share of a cold load without a snapshot: `Runtime::handle_event_sourced`
/// folding all the events, in process.
async fn guest_fold(guest: &Guest, report: &mut Report, events: u64) -> anyhow::Result<()> {
    let log: Vec<Event> = (1..=events).map(|seq| Event { seq, version: 1, payload: EVENT.to_vec() }).collect();
    let command =
        Call { service: "counter".into(), entity: "long".into(), command: "Get".into(), payload: b"{}".to_vec() };
    let mut samples = Samples::default();
    for _ in 0..3 {
        let (log, command) = (log.clone(), command.clone());
        let start = Instant::now();
        let effects =
            guest.runtime.handle_event_sourced(&guest.counter, None, log, command, CommandMeta::now(0, None)).await?;
        samples.push(start.elapsed());
        anyhow::ensure!(effects.is_ok(), "Get over the long log failed");
    }
    report.timings.push(Timing::new(
        "5",
        &format!("handle_event_sourced folding {events} events (guest only)"),
        samples,
    ));
    Ok(())
}
