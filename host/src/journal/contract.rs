//! What every journal does, whichever database holds it: the seam between
//! the host and its storage. [`Journal`] gathers seven traits, one per kind
//! of record; the host holds an `Arc<dyn Journal>` and never learns which
//! journal it has.
//!
//! Every method but [`EntityStore::commit`] blocks on the database: the
//! host calls them from blocking tasks (`spawn_blocking`), never on an
//! async worker.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Notify;

use super::timers::Timer;
use super::{
    AsOf, Commit, CommitStatus, CommitWatch, Compacted, DeadLetter, EntityHead, EntityHistory, EntityPosition, Forked,
    HostRecord, IdempotencyRecord, JournalError, Lease, LeaseRecord, NewVersion, NotKept, OutboxEntry, Retention,
    SchemaStatus, ServiceLogEntry, StoredCrdt, StoredSnapshot, StoredValue, VersionMeta,
};
use crate::domain::{Event, IdempotencyKey, ServiceKind};

/// A commit on its way to durability.
pub type PendingCommit = Pin<Box<dyn Future<Output = Result<CommitStatus, JournalError>> + Send>>;

/// A journal: every kind of record the host keeps.
pub trait Journal:
    EntityStore + Bookkeeping + HistoryStore + OutboxStore + TimerStore + RetentionStore + VersionStore + LeaseStore
{
}

impl<
    T: EntityStore + Bookkeeping + HistoryStore + OutboxStore + TimerStore + RetentionStore + VersionStore + LeaseStore,
> Journal for T
{
}

/// Entities' logs: the commit path and the reads that load an entity.
pub trait EntityStore: Send + Sync {
    /// What opening found: a new journal, a current one, or one migrated.
    fn schema_status(&self) -> SchemaStatus;

    /// Whether the journal takes writes; false while its storage is failed
    /// (a full disk, an unreachable database) and being recovered.
    fn is_healthy(&self) -> bool;

    /// Durably writes everything one command produced, atomically: queues
    /// the commit at once (commits queued one after the other are written
    /// in that order, possibly in one transaction) and answers a future
    /// that resolves once it is durable or refused.
    fn commit(&self, commit: Commit) -> PendingCommit {
        self.commit_run(vec![commit]).pop().expect("one commit, one outcome")
    }

    /// Queues the commits of commands an entity ran back to back, each on
    /// the state the one before left, as one run: written in order, and a
    /// commit after one of the run that did not land is refused
    /// ([`CommitStatus::AfterRefused`]) whatever its seq says. Answers one
    /// future per commit, in order.
    fn commit_run(&self, commits: Vec<Commit>) -> Vec<PendingCommit>;

    /// The waiters of commits that append events: watch an entity or a
    /// service through it.
    fn commits(&self) -> &Arc<CommitWatch>;

    /// Whether other hosts may write to this journal, so an entity's cached
    /// state may be stale: a command that commits nothing then checks it
    /// ([`head`](Self::head)) before it answers.
    fn has_other_writers(&self) -> bool {
        false
    }

    /// Reads again what the journal keeps in memory of its tables (the
    /// outbox entries waiting per service, the retention policies), which
    /// other hosts change too. Nothing to do for a journal of one host.
    fn reread_books(&self) -> Result<(), JournalError> {
        Ok(())
    }

    /// Where an entity stands: the seq of its last event, or a value
    /// entity's revision (0 for neither).
    fn head(&self, service: &str, entity: &str) -> Result<u64, JournalError>;

    /// Woken after each commit that adds outbox entries.
    fn outbox_signal(&self) -> Arc<Notify>;

    /// Woken after each commit that sets a timer (on PostgreSQL, another
    /// host's too).
    fn timer_signal(&self) -> Arc<Notify>;

    /// Where an entity's log stands.
    fn position(&self, service: &str, entity: &str) -> Result<EntityPosition, JournalError>;

    /// Loads what a cold entity needs: its latest snapshot and the events after it.
    fn load_entity(&self, service: &str, entity: &str) -> Result<EntityHistory, JournalError>;

    /// Loads what a cold value entity needs: its state and revision.
    fn load_value(&self, service: &str, entity: &str) -> Result<StoredValue, JournalError>;

    /// Loads a CRDT entity: every replica's row (none: never written).
    fn load_crdt(&self, service: &str, entity: &str) -> Result<StoredCrdt, JournalError>;

    /// Reads up to `limit` committed events of an entity, from seq `from` on.
    fn events(&self, service: &str, entity: &str, from: u64, limit: usize) -> Result<Vec<Event>, JournalError> {
        self.events_page(service, entity, from, limit, usize::MAX)
    }

    /// Reads committed events of an entity from seq `from` on: up to
    /// `limit` of them, and no more once their payloads pass `max_bytes`
    /// (but always one, if there is one).
    fn events_page(
        &self,
        service: &str,
        entity: &str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Event>, JournalError>;

    /// The key of the compiled-code cache's checksums: made once per
    /// journal, so a cache file made for another journal, or for another
    /// component, is never taken for this one's.
    fn compiled_cache_key(&self) -> Result<[u8; 32], JournalError>;
}

/// Reads and writes beside the event log: value states, idempotency
/// records, the per-service log, subscription offsets and dead letters.
pub trait Bookkeeping: Send + Sync {
    /// Records that `host` is alive now. A journal of one host keeps no
    /// heartbeats.
    fn heartbeat(&self, host: &HostRecord) -> Result<(), JournalError> {
        let _ = host;
        Ok(())
    }

    /// The hosts whose last heartbeat is at or after `since_ms`.
    fn hosts(&self, since_ms: u64) -> Result<Vec<HostRecord>, JournalError> {
        let _ = since_ms;
        Ok(Vec::new())
    }

    /// Forgets `id`'s heartbeat, as a host that stops does.
    fn leave(&self, id: &str) -> Result<(), JournalError> {
        let _ = id;
        Ok(())
    }

    /// A value entity's stored state.
    fn value(&self, service: &str, entity: &str) -> Result<Option<Vec<u8>>, JournalError>;

    /// The record a command left under an idempotency key on this entity,
    /// if the record has not expired at `now_ms`.
    fn idempotency_record(
        &self,
        service: &str,
        entity: &str,
        key: &IdempotencyKey,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>, JournalError>;

    /// Deletes idempotency records that expired before `now_ms`; answers how many.
    fn sweep_idempotency(&self, now_ms: u64) -> Result<usize, JournalError>;

    /// Up to `limit` events of `service` after log position `after`, in
    /// commit order, with no gap: a position is never seen after a later one.
    fn service_log(&self, service: &str, after: u64, limit: usize) -> Result<Vec<ServiceLogEntry>, JournalError>;

    /// The last position of `service`'s log (0 when it has no events).
    fn service_log_head(&self, service: &str) -> Result<u64, JournalError>;

    /// The last service-log position delivered to `subscriber` from `source`.
    fn offset(&self, subscriber: &str, source: &str) -> Result<u64, JournalError>;

    /// Moves `subscriber`'s offset in `source` to `position`, durably, if
    /// `lease` (the subscription's) is still held: else
    /// [`JournalError::LeaseLost`], and nothing is written.
    fn set_offset(&self, subscriber: &str, source: &str, position: u64, lease: &Lease) -> Result<(), JournalError>;

    /// Records that `subscriber` gave up on the event at `position` of
    /// `source`'s log, if `lease` is still held (as [`set_offset`](Self::set_offset)).
    fn add_dead_letter(
        &self,
        subscriber: &str,
        source: &str,
        position: u64,
        letter: &DeadLetter,
        lease: &Lease,
    ) -> Result<(), JournalError>;

    /// The events `subscriber` gave up on, as (source, position, letter),
    /// by source and position.
    fn dead_letters(&self, subscriber: &str) -> Result<Vec<(String, u64, DeadLetter)>, JournalError>;
}

/// Reads across a service's entities and along one entity's whole
/// history, and forks: what verified deploys and time travel need.
pub trait HistoryStore: Send + Sync {
    /// The ids of every stored entity of `service`, in order: those with
    /// events for an event-sourced service, those with a stored state for a
    /// value entity, none for an action.
    fn entity_ids(&self, service: &str, kind: ServiceKind) -> Result<Vec<String>, JournalError> {
        Ok(self.entity_page(service, kind, None, usize::MAX)?.into_iter().map(|head| head.entity).collect())
    }

    /// Up to `limit` of the stored entities of `service` (as
    /// [`HistoryStore::entity_ids`] has them) whose ids sort after `after`,
    /// in id order (bytewise), each with its last seq.
    fn entity_page(
        &self,
        service: &str,
        kind: ServiceKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityHead>, JournalError>;

    /// Whether `service` has any stored entity of `kind`.
    fn has_entities(&self, service: &str, kind: ServiceKind) -> Result<bool, JournalError>;

    /// What folds to `entity`'s state right after event `at` (`None`: its
    /// last), read at one point in time.
    fn as_of(&self, service: &str, entity: &str, at: Option<u64>) -> Result<Result<AsOf, NotKept>, JournalError>;

    /// The oldest state of `entity` that is kept, and the seq of its first
    /// kept event (0 for none): no snapshot (the initial state) when the
    /// log is kept from event 1, else the oldest snapshot that compaction
    /// kept, which covers the events it dropped.
    fn oldest_state(&self, service: &str, entity: &str) -> Result<(Option<StoredSnapshot>, u64), JournalError>;

    /// Makes `to` a new entity of `service` whose log is `from`'s up to
    /// event `at` (default: all), durably, in one transaction. The copies
    /// do not enter the service's log. The caller makes sure no command
    /// runs on `to` meanwhile.
    fn fork(&self, service: &str, from: &str, to: &str, at: Option<u64>) -> Result<Forked, JournalError>;
}

/// Asynchronous side effects waiting for delivery.
pub trait OutboxStore: Send + Sync {
    /// Bounds how many entries may wait for one target service: a commit
    /// that would pass it is refused ([`CommitStatus::OutboxFull`]).
    fn set_outbox_quota(&self, quota: u64);

    /// Up to `limit` outbox entries due at `now_ms` with an id past `after`,
    /// oldest first, and the number of entries waiting in all.
    fn outbox_due(&self, now_ms: u64, after: u64, limit: usize) -> Result<(Vec<OutboxEntry>, u64), JournalError>;

    /// Removes delivered (or abandoned) outbox entries, if `lease` (the
    /// outbox's) is still held: else [`JournalError::LeaseLost`], and
    /// nothing is removed.
    fn outbox_remove(&self, ids: &[u64], lease: &Lease) -> Result<(), JournalError>;

    /// Records a failed attempt: the entry is retried at `next_attempt_ms`
    /// (unless it was dropped meanwhile, with its service), if `lease` is
    /// still held (as [`outbox_remove`](Self::outbox_remove)).
    fn outbox_retry(&self, entry: &OutboxEntry, lease: &Lease) -> Result<(), JournalError>;

    /// Removes every entry waiting for `service` (it was deleted); answers
    /// how many there were.
    fn outbox_drop_service(&self, service: &str) -> Result<usize, JournalError>;
}

/// Durable timers (`timers.rs`): set and cancelled by commits, fired by
/// one host at a time.
pub trait TimerStore: Send + Sync {
    /// Up to `limit` timers due at or before `until_ms`, earliest first.
    fn timers_due(&self, until_ms: u64, limit: usize) -> Result<Vec<Timer>, JournalError>;

    /// When the earliest timer is due, if any waits.
    fn next_timer_due(&self) -> Result<Option<u64>, JournalError>;

    /// Every timer `service/entity` owns, by name.
    fn timers_of(&self, service: &str, entity: &str) -> Result<Vec<Timer>, JournalError>;

    /// How many timers wait.
    fn timers_pending(&self) -> Result<u64, JournalError>;

    /// Records that `timers` fired, in one write: one that fires once is
    /// removed, one with a schedule is stored as given (moved to its next
    /// slot); each unless it was set again or cancelled meanwhile (its id
    /// is not the stored one). Under the `timers` lease.
    fn timers_fired(&self, timers: &[Timer], lease: &Lease) -> Result<(), JournalError>;

    /// Stores `timer` as it now stands — after a failed attempt (its
    /// attempts, error and next due time), or moved to another slot of its
    /// schedule — unless it was set again or cancelled meanwhile; under
    /// the `timers` lease.
    fn timer_update(&self, timer: &Timer, lease: &Lease) -> Result<(), JournalError>;
}

/// How much history each service keeps, and the compaction that drops the rest.
pub trait RetentionStore: Send + Sync {
    /// How much history `service` keeps.
    fn retention(&self, service: &str) -> Retention;

    /// Every service that keeps only some history, with its K.
    fn compacted_services(&self) -> Vec<(String, u32)>;

    /// Sets how much history `service` keeps, durably.
    fn set_retention(&self, service: &str, retention: Retention) -> Result<(), JournalError>;

    /// Drops what `service`'s entities no longer keep under `retain=
    /// snapshots:k`: each entity's events up to its k-th latest snapshot
    /// (but never its last event), and the snapshots before that one. Waits
    /// (deletes nothing) while one of `subscribers` has not been given every
    /// event of the service.
    fn compact(&self, service: &str, k: u32, subscribers: &[String]) -> Result<Compacted, JournalError>;
}

/// Deployed versions and their component bytes.
pub trait VersionStore: Send + Sync {
    /// Stores a new deployed version, durably: gives it the number after
    /// the last one this service name ever had, and stores its metadata and
    /// component bytes.
    fn save_version(&self, version: &NewVersion, component: &[u8]) -> Result<VersionMeta, JournalError>;

    /// The last version number `service` was given (0 if never deployed).
    fn last_version(&self, service: &str) -> Result<u32, JournalError>;

    /// Removes every deployed version of `service` (metadata, and the
    /// component bytes no other version shares), durably; answers how many
    /// there were. Its entities' data stays, and so does its last version
    /// number.
    fn delete_versions(&self, service: &str) -> Result<usize, JournalError>;

    /// Every deployed version of every service, ordered by (service, version).
    fn versions(&self) -> Result<Vec<VersionMeta>, JournalError>;

    /// The component bytes of one deployed version.
    fn component(&self, service: &str, version: u32) -> Result<Option<Vec<u8>>, JournalError>;
}

/// Leases on the work that runs on one host at a time however many share
/// the journal (the outbox, each subscription): a lease is held until it
/// expires, and each holder gets a new epoch, which the writes of that work
/// name, so a holder that lost its lease can no longer write. On a journal
/// of one host, that host holds every lease, always at epoch 1.
pub trait LeaseStore: Send + Sync {
    /// Takes lease `name` for `holder` for `ttl_ms`, by the database's
    /// clock, when no one holds it or its holder let it expire, with the
    /// next epoch; `None` while another holds it.
    fn take_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>, JournalError> {
        let _ = ttl_ms;
        Ok(Some(Lease { name: name.to_string(), holder: holder.to_string(), epoch: 1 }))
    }

    /// Holds `lease` for `ttl_ms` more; false when it was taken over
    /// meanwhile (its epoch is gone).
    fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> Result<bool, JournalError> {
        let _ = (lease, ttl_ms);
        Ok(true)
    }

    /// Lets `lease` go, so another host may take it at once.
    fn release_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        let _ = lease;
        Ok(())
    }

    /// Every lease that was ever taken, by name, as the journal has it now.
    fn leases(&self) -> Result<Vec<LeaseRecord>, JournalError> {
        Ok(Vec::new())
    }
}
