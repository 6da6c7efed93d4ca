//! Commits made by other hosts on the same database, heard through
//! PostgreSQL's `LISTEN/NOTIFY`, so live event streams and subscriptions
//! on this host wake for them as they do for its own.
//!
//! Each batch that appends events notifies [`CHANNEL`] in its transaction
//! (PostgreSQL delivers it on commit, never for a rolled-back batch). The
//! payload is the writing host's tag on the first line, then one line
//! `service \t entity \t last_seq` per entity; entity ids hold no control
//! characters, so the lines parse back exactly. A batch whose lines would
//! pass PostgreSQL's payload limit sends the tag alone: everyone looks.
//!
//! A listener connection of its own hears them. Whenever it (re)connects,
//! it wakes every watcher, since commits may have gone unheard meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::CommitWatch;

/// The channel commits are announced on.
pub(super) const CHANNEL: &str = "wasmstate_commits";

/// The longest payload sent; PostgreSQL refuses 8,000 bytes and more.
const MAX_PAYLOAD: usize = 7_900;

/// How long the listener waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(1);

/// The payload announcing `written` (service, entity, last seq) by `host`.
pub(super) fn payload<'a>(host: u64, written: impl IntoIterator<Item = (&'a str, &'a str, u64)>) -> String {
    let mut payload = format!("{host:016x}\n");
    for (service, entity, seq) in written {
        payload.push_str(&format!("{service}\t{entity}\t{seq}\n"));
        if payload.len() > MAX_PAYLOAD {
            return format!("{host:016x}\n");
        }
    }
    payload
}

/// What one notification says.
#[derive(Debug, PartialEq, Eq)]
struct Heard<'a> {
    /// The host that committed.
    host: u64,
    /// Its entities' last seqs; `None`: too many to say, look at everything.
    written: Option<Vec<(&'a str, &'a str, u64)>>,
}

/// Reads a payload back; `None` if it is not one of ours.
fn parse(payload: &str) -> Option<Heard<'_>> {
    let mut lines = payload.lines();
    let host = u64::from_str_radix(lines.next()?, 16).ok()?;
    let written: Vec<_> = lines
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some((fields.next()?, fields.next()?, fields.next()?.parse().ok()?))
        })
        .collect();
    Some(Heard { host, written: (!written.is_empty()).then_some(written) })
}

/// Listens on `config`'s database, on `runtime`, for the commits of hosts
/// other than `host`, and wakes their watchers in `watch`.
pub(super) fn spawn_listener(runtime: &Handle, config: Config, host: u64, watch: Arc<CommitWatch>) {
    runtime.spawn(async move {
        loop {
            if let Err(error) = listen(&config, host, &watch).await {
                tracing::debug!(%error, "the journal's commit listener lost its connection");
            }
            tokio::time::sleep(RECONNECT).await;
        }
    });
}

/// Listens until the connection ends.
async fn listen(config: &Config, host: u64, watch: &CommitWatch) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (heard, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if heard.send(notification.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "the journal's commit listener connection failed");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Whatever was committed while no one listened.
    watch.wake_all();
    while let Some(payload) = notifications.recv().await {
        match parse(&payload) {
            Some(heard) if heard.host == host => {}
            Some(Heard { written: Some(written), .. }) => {
                for (service, entity, seq) in written {
                    watch.committed(&service.into(), &entity.into(), seq);
                }
            }
            Some(Heard { written: None, .. }) => watch.wake_all(),
            None => tracing::warn!(payload, "an unreadable commit notification"),
        }
    }
    driver.abort();
    drop(client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_and_a_long_one_says_look_at_everything() {
        let sent = payload(7, [("shop", "cart 1", 3), ("shop", "é", 9)]);
        let written = Some(vec![("shop", "cart 1", 3), ("shop", "é", 9)]);
        assert_eq!(parse(&sent), Some(Heard { host: 7, written }));
        let long = "x".repeat(200);
        let many = payload(7, (0..100).map(|seq| ("shop", long.as_str(), seq)));
        assert!(many.len() < MAX_PAYLOAD);
        assert_eq!(parse(&many), Some(Heard { host: 7, written: None }));
    }
}
