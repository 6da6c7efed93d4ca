//! A run of an entity's queued commands: each runs on the state the one
//! before left, their commits go to the journal as one run (so they can
//! share one transaction, and one after a refused commit is refused too),
//! and each reply goes out only once its commit, and every earlier one, is
//! durable.
//!
//! The journal is the truth. A run's first commit refused for a conflict
//! means the state the run started on was stale — another host wrote to
//! the entity — and nothing of the run landed, so the cached state goes
//! and the whole run runs again on the state reloaded from the journal, a
//! few times with jittered pauses: for a simple race the client sees a
//! normal reply. A run that commits nothing, on a journal other hosts
//! write to, checks that the cached state it ran on is the entity's
//! latest, and runs again if not.

use std::sync::Arc;
use std::time::Duration;

use super::entity_command::{self, CachedState};
use super::idempotency::Keyed;
use super::mailbox::{EntityKey, Mail, Work};
use super::{Invocation, InvokeError, Shared, blocking};
use crate::domain::FollowUp;
use crate::journal::CommitStatus;
use crate::services::Service;
use tracing::Instrument;

/// How many times commands refused for a conflict run again.
const CONFLICT_RETRIES: u32 = 4;

/// One command of a run, until it is answered.
struct Queued {
    service: Arc<Service>,
    invocation: Invocation,
    done: tokio::sync::oneshot::Sender<Result<FollowUp, InvokeError>>,
    /// The invocation's span, which the command runs in.
    span: tracing::Span,
}

/// Runs `batch` on `cached`, answering every command.
pub(super) async fn run_batch(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<CachedState>,
    batch: Vec<Mail>,
) {
    let mut queued = Vec::with_capacity(batch.len());
    for job in batch {
        let job = *job;
        match job.work {
            Work::Command(invocation) => {
                queued.push(Queued { service: job.service, invocation, done: job.done, span: job.span })
            }
            Work::Outside(_) | Work::Merge => {
                let _ = job.done.send(Err(InvokeError::Internal("work outside commands was batched".into())));
            }
        }
    }
    let mut attempt = 0;
    while !queued.is_empty() {
        let last_try = attempt == CONFLICT_RETRIES;
        queued = run_once(shared, key, cached, queued, last_try).await;
        if !queued.is_empty() {
            attempt += 1;
            shared.metrics.record_conflict_retry();
            tokio::time::sleep(jitter(attempt)).await;
        }
    }
}

/// A pause of up to 2^attempt ms before running again.
fn jitter(attempt: u32) -> Duration {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    let most = 1u64 << attempt.min(8);
    Duration::from_micros(u64::from(u16::from_le_bytes(byte)) * most * 1000 / u64::from(u16::MAX))
}

/// Runs the commands once and answers them; or, when the state they ran
/// on was stale (and it is not the `last_try`), answers none and hands
/// them all back to run again, with the cached state dropped.
async fn run_once(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<CachedState>,
    queued: Vec<Queued>,
    last_try: bool,
) -> Vec<Queued> {
    let started_on = cached.as_ref().and_then(CachedState::checked_head);
    let mut ran = Vec::with_capacity(queued.len());
    let mut commits = Vec::new();
    for command in queued {
        let invocation = command.invocation.clone();
        let (result, keyed, commits_at) = match entity_command::run(shared, key, cached, &command.service, invocation)
            .instrument(command.span.clone())
            .await
        {
            Ok(done) => {
                let at = done.commit.map(|commit| {
                    commits.push(commit);
                    (commits.len() - 1, tracing::debug_span!(parent: &command.span, "commit"))
                });
                (Ok(done.follow_up), done.keyed, at)
            }
            Err(error) => (Err(error), None, None),
        };
        ran.push((command, result, keyed, commits_at));
    }
    let mut durables = shared.journal.commit_run(commits).into_iter();
    let mut first = match durables.next() {
        Some(pending) => Some(pending.await),
        None => None,
    };
    // Whether the run started on stale state. Its first commit tells: if it
    // conflicts, nothing of the run landed (the journal refuses the rest),
    // and every command in it — the reads and refusals before that commit
    // too — ran on stale state. A run of reads alone, on a warm entity
    // other hosts may write to, is checked against the entity's head.
    let stale = match &first {
        Some(status) => matches!(status, Ok(CommitStatus::Conflict { .. })),
        None => match started_on {
            Some(head) if shared.journal.has_other_writers() => !is_latest(shared, key, head).await,
            _ => false,
        },
    };
    if stale {
        *cached = None;
        if !last_try {
            return ran.into_iter().map(|(command, ..)| command).collect();
        }
    }
    // Once a commit did not land, what the commands after it answer was
    // decided on state that never became durable.
    let mut broken = false;
    for (command, result, keyed, commits_at) in ran {
        // Each commit's span ends once its status is known.
        let status = match commits_at {
            Some((0, _span)) => first.take(),
            Some((_, span)) => match durables.next() {
                Some(pending) => Some(pending.instrument(span).await),
                None => None,
            },
            None => None,
        };
        let answer = match (result, status) {
            _ if broken => Err(InvokeError::EarlierCommitFailed),
            (Ok(follow_up), Some(status)) => settle(shared, key, status, follow_up, keyed.as_ref(), &mut broken).await,
            (Ok(follow_up), None) => Ok(follow_up),
            (Err(error), _) => Err(error),
        };
        let _ = command.done.send(answer);
    }
    if broken {
        *cached = None;
    }
    Vec::new()
}

/// What a command answers once its commit ended with `status`; `broken`
/// turns true when the commit did not land.
async fn settle(
    shared: &Arc<Shared>,
    key: &EntityKey,
    status: Result<CommitStatus, crate::journal::JournalError>,
    follow_up: FollowUp,
    keyed: Option<&Keyed>,
    broken: &mut bool,
) -> Result<FollowUp, InvokeError> {
    match status {
        Ok(CommitStatus::Durable { .. }) => Ok(follow_up),
        Ok(CommitStatus::Conflict { expected, found }) => {
            *broken = true;
            Err(InvokeError::Conflict { expected, found })
        }
        Ok(CommitStatus::OutboxFull { service }) => {
            *broken = true;
            Err(InvokeError::outbox_full(&service))
        }
        // Keyed commands run alone, after their key was looked up, so only
        // another writer of the journal gets here first.
        Ok(CommitStatus::KeyRecorded) => match keyed {
            Some(keyed) => shared.replay_winner(&key.service, &key.entity, keyed).await,
            None => Err(InvokeError::Internal("the journal found a key on an unkeyed commit".into())),
        },
        Ok(CommitStatus::AfterRefused) => {
            *broken = true;
            Err(InvokeError::EarlierCommitFailed)
        }
        Ok(CommitStatus::TimerGone) => {
            *broken = true;
            Err(InvokeError::TimerGone)
        }
        Err(error) => {
            *broken = true;
            Err(error.into())
        }
    }
}

/// Whether `head` is still where the entity stands in the journal: a read
/// answers from state at least as new as every write acknowledged before
/// it, on whichever host it runs.
async fn is_latest(shared: &Arc<Shared>, key: &EntityKey, head: u64) -> bool {
    let journal = shared.journal.clone();
    let (service, entity) = (key.service.clone(), key.entity.clone());
    matches!(blocking(move || journal.head(&service, &entity)).await, Ok(Ok(found)) if found == head)
}
