//! A run of an entity's queued commands: each runs on the state the one
//! before left, their commits go to the journal as one run (so they can
//! share one transaction, and one after a refused commit is refused too),
//! and each reply goes out only once its commit, and every earlier one, is
//! durable.
//!
//! The journal is the truth. A commit refused for a conflict means the
//! cached state was stale — another host wrote to the entity — so the
//! cached state goes, and that command and the ones after it run again on
//! the state reloaded from the journal, a few times with jittered pauses:
//! for a simple race the client sees a normal reply. A run that commits
//! nothing, on a journal other hosts write to, first checks that the
//! cached state is the entity's latest.

use std::sync::Arc;
use std::time::Duration;

use super::entity_command::{self, CachedState};
use super::idempotency::Keyed;
use super::mailbox::{EntityKey, Mail, Work};
use super::{Invocation, InvokeError, Shared, blocking};
use crate::domain::FollowUp;
use crate::journal::CommitStatus;
use crate::services::Service;

/// How many times commands refused for a conflict run again.
const CONFLICT_RETRIES: u32 = 4;

/// One command of a run, until it is answered.
struct Queued {
    service: Arc<Service>,
    invocation: Invocation,
    done: tokio::sync::oneshot::Sender<Result<FollowUp, InvokeError>>,
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
            Work::Command(invocation) => queued.push(Queued { service: job.service, invocation, done: job.done }),
            Work::Outside(_) => {
                let _ = job.done.send(Err(InvokeError::Internal("a write outside commands was batched".into())));
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

/// What broke a run: after it, what the run's commands answered was
/// decided on state that never became durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// A commit found the log moved on: run those commands again.
    Conflict,
    /// A commit failed or was refused for another reason.
    Failed,
}

/// Runs the commands once and answers those it can; answers the ones to
/// run again after a conflict (none on the `last_try`), with the cached
/// state dropped.
async fn run_once(
    shared: &Arc<Shared>,
    key: &EntityKey,
    cached: &mut Option<CachedState>,
    queued: Vec<Queued>,
    last_try: bool,
) -> Vec<Queued> {
    let started_on = cached.as_ref().map(CachedState::head);
    let mut ran = Vec::with_capacity(queued.len());
    let mut commits = Vec::new();
    for command in queued {
        let invocation = command.invocation.clone();
        let (result, keyed, commits_at) =
            match entity_command::run(shared, key, cached, &command.service, invocation).await {
                Ok(done) => {
                    let at = done.commit.map(|commit| {
                        commits.push(commit);
                        commits.len() - 1
                    });
                    (Ok(done.follow_up), done.keyed, at)
                }
                Err(error) => (Err(error), None, None),
            };
        ran.push((command, result, keyed, commits_at));
    }
    // Commits check the state they ran on; a run of reads alone, on a warm
    // entity other hosts may write to, checks it here.
    if commits.is_empty()
        && let Some(head) = started_on
        && shared.journal.has_other_writers()
        && !is_latest(shared, key, head).await
    {
        *cached = None;
        if !last_try {
            return ran.into_iter().map(|(command, ..)| command).collect();
        }
    }
    let mut durables = shared.journal.commit_run(commits).into_iter();
    // The run's first commit tells whether the state it started on was
    // the journal's: if it conflicts, nothing of the run landed, and every
    // command in it — the reads and refusals before that commit too — ran
    // on stale state, so all of them run again.
    let mut first = match durables.next() {
        Some(pending) => Some(pending.await),
        None => None,
    };
    if matches!(first, Some(Ok(CommitStatus::Conflict { .. }))) && !last_try {
        *cached = None;
        return ran.into_iter().map(|(command, ..)| command).collect();
    }
    let mut broken = None;
    let mut again = Vec::new();
    for (command, result, keyed, commits_at) in ran {
        let durable = match commits_at {
            Some(0) => first.take(),
            Some(_) => match durables.next() {
                Some(pending) => Some(pending.await),
                None => None,
            },
            None => None,
        };
        let answer = match (result, durable) {
            (Ok(follow_up), Some(status)) => match broken {
                None => settle(shared, key, status, follow_up, keyed.as_ref(), &mut broken).await,
                Some(_) => Err(InvokeError::EarlierCommitFailed),
            },
            // An answer without a commit after a broken one was decided on
            // state that may never have become durable.
            (_, _) if broken.is_some() => Err(InvokeError::EarlierCommitFailed),
            (Ok(follow_up), None) => Ok(follow_up),
            (Err(error), _) => Err(error),
        };
        match answer {
            Err(InvokeError::Conflict { .. } | InvokeError::EarlierCommitFailed)
                if broken == Some(Broken::Conflict) && !last_try =>
            {
                again.push(command)
            }
            answer => {
                let _ = command.done.send(answer);
            }
        }
    }
    if broken.is_some() {
        *cached = None;
    }
    again
}

/// What a command answers once its commit ended with `status`, noting in
/// `broken` a commit that did not land.
async fn settle(
    shared: &Arc<Shared>,
    key: &EntityKey,
    status: Result<CommitStatus, crate::journal::JournalError>,
    follow_up: FollowUp,
    keyed: Option<&Keyed>,
    broken: &mut Option<Broken>,
) -> Result<FollowUp, InvokeError> {
    match status {
        Ok(CommitStatus::Durable { .. }) => Ok(follow_up),
        Ok(CommitStatus::Conflict { expected, found }) => {
            *broken = Some(Broken::Conflict);
            Err(InvokeError::Conflict { expected, found })
        }
        Ok(CommitStatus::OutboxFull { service }) => {
            *broken = Some(Broken::Failed);
            Err(InvokeError::outbox_full(&service))
        }
        // Keyed commands run alone, after their key was looked up, so only
        // another writer of the journal gets here first.
        Ok(CommitStatus::KeyRecorded) => match keyed {
            Some(keyed) => shared.replay_winner(&key.service, &key.entity, keyed).await,
            None => Err(InvokeError::Internal("the journal found a key on an unkeyed commit".into())),
        },
        Ok(CommitStatus::AfterRefused) => {
            *broken = Some(Broken::Failed);
            Err(InvokeError::EarlierCommitFailed)
        }
        Err(error) => {
            *broken = Some(Broken::Failed);
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
