//! Commits made by other hosts on the same database, heard through
//! PostgreSQL's `LISTEN/NOTIFY`, so live event streams, subscriptions and
//! the outbox and the timers on this host wake for them as they do for its
//! own.
//!
//! Each batch that appends events, adds outbox entries or sets timers
//! notifies [`CHANNEL`] in its transaction (PostgreSQL delivers it on
//! commit, never for a rolled-back batch). The payload is the writing
//! host's tag on the first line; then `!outbox` when the batch added
//! outbox entries, `!timers` when it set timers; then
//! one line `service \t entity \t last_seq` per entity that got events,
//! and one `!crdt \t service \t entity \t delta` per change of a CRDT
//! entity, the delta in hex (postcard), which the others join without
//! reading the entity (a line without one, when it would not fit, has them
//! read it); entity ids hold no control characters, so the lines parse
//! back exactly. A batch whose
//! lines would pass PostgreSQL's payload limit sends `!all` instead of
//! them (as does a tag alone): everyone looks. A host that does not know
//! a `!` line passes over it.
//!
//! A listener connection of its own hears them. Whenever it (re)connects,
//! it wakes every watcher, the outbox and the timers, since commits may
//! have gone unheard meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::{CommitWatch, Wakeups};

/// The channel commits are announced on.
pub(super) const CHANNEL: &str = "wasmstate_commits";

/// The longest payload sent; PostgreSQL refuses 8,000 bytes and more.
const MAX_PAYLOAD: usize = 7_900;

/// How long the listener waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(1);

/// The payload announcing `written` (service, entity, last seq) and the
/// changes of CRDT entities, `changed` (service, entity, encoded delta),
/// by `host`, and whether it added outbox entries and set timers.
pub(super) fn payload<'a>(
    host: u64,
    (outbox, timers): (bool, bool),
    written: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    changed: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a [u8]>)>,
) -> String {
    let mut head = format!("{host:016x}\n");
    for (said, line) in [(outbox, "!outbox\n"), (timers, "!timers\n")] {
        if said {
            head.push_str(line);
        }
    }
    let mut payload = head.clone();
    for (service, entity, seq) in written {
        payload.push_str(&format!("{service}\t{entity}\t{seq}\n"));
        if payload.len() > MAX_PAYLOAD {
            return head + "!all\n";
        }
    }
    for (service, entity, delta) in changed {
        let line = format!("!crdt\t{service}\t{entity}");
        if payload.len() + line.len() + 1 > MAX_PAYLOAD {
            return head + "!all\n";
        }
        payload.push_str(&line);
        if let Some(delta) = delta
            && payload.len() + 2 * delta.len() + 2 <= MAX_PAYLOAD
        {
            payload.push('\t');
            for byte in delta {
                payload.push_str(&format!("{byte:02x}"));
            }
        }
        payload.push('\n');
    }
    payload
}

/// The bytes `hex` spells, if it spells any.
fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// What one notification says.
#[derive(Debug, PartialEq, Eq)]
struct Heard<'a> {
    /// The host that committed.
    host: u64,
    /// Whether it added outbox entries.
    outbox: bool,
    /// Whether it set timers.
    timers: bool,
    /// Its entities' last seqs; `None`: too many to say, look at everything.
    written: Option<Vec<(&'a str, &'a str, u64)>>,
    /// The changes of CRDT entities, each with its delta in hex when it
    /// fit (empty when `written` is `None`).
    changed: Vec<(&'a str, &'a str, Option<&'a str>)>,
}

/// Reads a payload back; `None` if it is not one of ours.
fn parse(payload: &str) -> Option<Heard<'_>> {
    let mut lines = payload.lines().peekable();
    let host = u64::from_str_radix(lines.next()?, 16).ok()?;
    let (mut outbox, mut timers, mut all) = (false, false, lines.peek().is_none());
    let (mut written, mut changed) = (Vec::new(), Vec::new());
    for line in lines {
        match line {
            "!outbox" => outbox = true,
            "!timers" => timers = true,
            "!all" => all = true,
            _ if line.starts_with("!crdt\t") => {
                let mut fields = line.split('\t').skip(1);
                if let (Some(service), Some(entity)) = (fields.next(), fields.next()) {
                    changed.push((service, entity, fields.next()));
                }
            }
            _ => {
                let mut fields = line.split('\t');
                if let (Some(service), Some(entity), Some(Ok(seq))) =
                    (fields.next(), fields.next(), fields.next().map(str::parse))
                {
                    written.push((service, entity, seq));
                }
            }
        }
    }
    if all {
        changed.clear();
    }
    Some(Heard { host, outbox, timers, written: (!all).then_some(written), changed })
}

/// Listens on `config`'s database, on `runtime`, for the commits of hosts
/// other than `host`, and wakes their watchers in `watch`, and in `wake`
/// the outbox for those that added outbox entries and the timers for those
/// that set timers.
pub(super) fn spawn_listener(runtime: &Handle, config: Config, host: u64, watch: Arc<CommitWatch>, wake: Wakeups) {
    runtime.spawn(async move {
        loop {
            if let Err(error) = listen(&config, host, &watch, &wake).await {
                tracing::debug!(%error, "the journal's commit listener lost its connection");
            }
            tokio::time::sleep(RECONNECT).await;
        }
    });
}

/// Listens until the connection ends.
async fn listen(config: &Config, host: u64, watch: &CommitWatch, wake: &Wakeups) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.clone().application_name("wasmstate listener").connect(NoTls).await?;
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
    wake.outbox.notify_one();
    wake.timers.notify_one();
    while let Some(payload) = notifications.recv().await {
        let Some(heard) = parse(&payload) else {
            tracing::warn!(payload, "an unreadable commit notification");
            continue;
        };
        if heard.host == host {
            continue;
        }
        if heard.outbox {
            wake.outbox.notify_one();
        }
        if heard.timers {
            wake.timers.notify_one();
        }
        match heard.written {
            Some(written) => {
                for (service, entity, seq) in written {
                    watch.committed(&service.into(), &entity.into(), seq);
                }
                for (service, entity, delta) in heard.changed {
                    // A delta that does not read back is no delta: the
                    // entity reads its rows again.
                    let delta = delta.and_then(unhex).and_then(|bytes| postcard::from_bytes(&bytes).ok());
                    watch.changed_elsewhere(&service.into(), &entity.into(), delta);
                }
            }
            None => watch.wake_all(),
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
        let changes = [("votes", "poll 1", Some(&[0x01, 0xab][..])), ("votes", "poll 2", None)];
        let sent = payload(7, (false, false), [("shop", "cart 1", 3), ("shop", "é", 9)], changes);
        let written = Some(vec![("shop", "cart 1", 3), ("shop", "é", 9)]);
        let changed = vec![("votes", "poll 1", Some("01ab")), ("votes", "poll 2", None)];
        assert_eq!(unhex("01ab"), Some(vec![0x01, 0xab]));
        assert_eq!((unhex("01a"), unhex("zz")), (None, None));
        assert_eq!(parse(&sent), Some(Heard { host: 7, outbox: false, timers: false, written, changed }));
        let long = "x".repeat(200);
        let many = payload(7, (true, true), (0..100).map(|seq| ("shop", long.as_str(), seq)), []);
        assert!(many.len() < MAX_PAYLOAD);
        let all = Heard { host: 7, outbox: true, timers: true, written: None, changed: vec![] };
        assert_eq!(parse(&many), Some(all));
        let crdts = payload(7, (false, false), [], (0..100).map(|_| ("votes", long.as_str(), None)));
        assert_eq!(
            parse(&crdts),
            Some(Heard { host: 7, outbox: false, timers: false, written: None, changed: vec![] })
        );
    }

    #[test]
    fn an_outbox_alone_wakes_no_watcher_and_a_tag_alone_wakes_all() {
        let heard = |outbox, timers, written| Heard { host: 7, outbox, timers, written, changed: vec![] };
        assert_eq!(parse(&payload(7, (true, false), [], [])), Some(heard(true, false, Some(vec![]))));
        assert_eq!(parse(&payload(7, (false, true), [], [])), Some(heard(false, true, Some(vec![]))));
        assert_eq!(parse("0000000000000007\n"), Some(heard(false, false, None)));
        // A line a newer host adds is passed over.
        let newer = heard(false, false, Some(vec![]));
        assert_eq!(parse("0000000000000007\n!later\n"), Some(newer));
        assert_eq!(parse("not a tag"), None);
    }
}
