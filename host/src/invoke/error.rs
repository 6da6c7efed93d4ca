//! Why an invocation failed, whichever path started it.

use crate::domain::{Failure, FailureCode};
use crate::journal::{CommitStatus, JournalError};
use crate::metrics::InvocationOutcome;
use crate::runtime::GuestError;

use super::MAX_HOPS;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No service of that name is deployed.
    #[error("no service named {0:?} is deployed")]
    UnknownService(String),
    /// The service was deployed once and has been deleted: unlike one not
    /// deployed yet, retrying will not help.
    #[error("the service {0:?} was deleted")]
    DeletedService(String),
    /// A forward or side effect named an invalid target.
    #[error("{0}")]
    InvalidTarget(String),
    /// A timer the guest set or cancelled is not one the host can keep:
    /// a bad name, target, time or cron schedule.
    #[error("{0}")]
    InvalidTimer(String),
    /// A webhook the guest asked for is not one the host may send: a bad
    /// URL, method or header, or a host not on the service's allow-list.
    #[error("{0}")]
    InvalidWebhook(String),
    /// A CRDT entity's delta is not one the host can apply: of another
    /// type than the entity's, or a map in a map.
    #[error("{0}")]
    InvalidDelta(String),
    /// The CRDT entity was deleted, for good.
    #[error("the entity {0} was deleted")]
    EntityDeleted(String),
    /// The entity's mailbox is full, or the host has too many invocations
    /// in flight.
    #[error("{0}; retry later")]
    Overloaded(String),
    /// An earlier command queued on the same entity failed to commit, so
    /// this one ran on state that never became durable.
    #[error("an earlier command on this entity failed to commit; retry")]
    EarlierCommitFailed,
    /// The entity's log moved on under the command: the state it ran on was
    /// not the committed one. Nothing was written.
    #[error("the entity changed while the command ran (it expected seq {expected}, the journal has {found}); retry")]
    Conflict {
        /// The last seq the command ran on.
        expected: u64,
        /// The last seq in the journal.
        found: u64,
    },
    /// The idempotency key was recorded by a command that asked something
    /// else (another command name or payload).
    #[error("the Idempotency-Key {0:?} was already used for a different command or payload")]
    KeyReused(String),
    /// Another command with the same idempotency key committed first, and
    /// its record expired before it could be read.
    #[error("the idempotency key's record expired while it was read; retry")]
    KeyRecordExpired,
    /// A read of an entity's past asked for what its history does not hold.
    #[error("{0}")]
    NotInHistory(String),
    /// A read of an entity's past asked for history compaction dropped.
    #[error("{0}")]
    HistoryCompacted(String),
    /// The guest refused the command.
    #[error("{}", .0.message)]
    Failed(Failure),
    /// The guest trapped, timed out or hit a limit.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The guest produced more output than allowed; nothing was persisted.
    #[error("{0}")]
    OutputLimit(String),
    /// Forwards and synchronous side effects nested deeper than [`MAX_HOPS`].
    #[error("forwards and synchronous side effects nested more than {MAX_HOPS} deep; is there a loop?")]
    TooManyHops,
    /// A synchronous side effect failed. The command itself was committed.
    #[error("the command was committed, but its synchronous side effect {target} failed: {source}")]
    SideEffectFailed {
        /// `service/entity/command` of the side effect.
        target: String,
        /// Why it failed.
        source: Box<InvokeError>,
    },
    /// A timer's firing found its timer cancelled or set again: nothing
    /// ran.
    #[error("the timer was cancelled or set again before it fired")]
    TimerGone,
    /// The writes could not be committed, or stored data could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The host could not run the invocation.
    #[error("{0}")]
    Internal(String),
}

impl InvokeError {
    /// The command asked for side effects to `target` (a service, or a
    /// service's webhooks to one origin), which has too many waiting in
    /// the outbox already.
    pub fn outbox_full(target: &str) -> Self {
        let target = if target.starts_with("webhooks of ") { target.to_owned() } else { format!("service {target:?}") };
        InvokeError::Overloaded(format!("too many side effects wait in the outbox for {target}"))
    }

    /// What an invocation answers when a commit of its own (not one of an
    /// entity's run) did not land with `status`; a recorded key is the
    /// caller's to replay when the invocation has one.
    pub(super) fn refused_commit(status: CommitStatus) -> Self {
        match status {
            CommitStatus::Conflict { expected, found } => InvokeError::Conflict { expected, found },
            CommitStatus::OutboxFull { service } => InvokeError::outbox_full(&service),
            CommitStatus::KeyRecorded => InvokeError::Internal("the journal found a key on an unkeyed commit".into()),
            CommitStatus::AfterRefused => InvokeError::Internal("a commit alone followed a refused one".into()),
            CommitStatus::TimerGone => InvokeError::TimerGone,
            CommitStatus::Durable { .. } => {
                InvokeError::Internal("a durable commit was taken for a refused one".into())
            }
        }
    }

    /// Whether trying the same invocation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            InvokeError::Overloaded(_)
            | InvokeError::EarlierCommitFailed
            | InvokeError::Conflict { .. }
            | InvokeError::KeyRecordExpired
            | InvokeError::Journal(_)
            | InvokeError::Internal(_)
            | InvokeError::UnknownService(_)
            | InvokeError::Guest(GuestError::Timeout(_) | GuestError::Busy | GuestError::HostMemoryFull(_)) => true,
            InvokeError::SideEffectFailed { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// Whether the server failed rather than the request: the host itself,
    /// or the service's code, which cannot read an entity's stored state.
    /// Such failures are logged at ERROR, in the invocation's span.
    pub fn is_host_failure(&self) -> bool {
        match self {
            // Logged once by the journal when its storage failed, not per refusal.
            InvokeError::Journal(JournalError::WritesRefused(_) | JournalError::Reopening) => false,
            InvokeError::Journal(_) | InvokeError::Internal(_) => true,
            InvokeError::Failed(failure) => failure.code == FailureCode::InvalidState,
            _ => false,
        }
    }

    /// How the invocation counts in `wasmstate_invocations_total`.
    pub fn outcome(&self) -> InvocationOutcome {
        match self {
            InvokeError::Failed(_) => InvocationOutcome::Failed,
            InvokeError::Guest(GuestError::Timeout(_)) => InvocationOutcome::TimedOut,
            InvokeError::Guest(GuestError::Busy | GuestError::HostMemoryFull(_)) => InvocationOutcome::Refused,
            InvokeError::Guest(_) | InvokeError::OutputLimit(_) => InvocationOutcome::Trapped,
            _ => InvocationOutcome::Refused,
        }
    }
}
