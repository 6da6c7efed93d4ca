//! How commits reach a journal's writer, and the one rule every writer
//! keeps when it decides them in order.
//!
//! An entity runs queued commands back to back, each on the state the one
//! before left, and hands their commits over as one *run*. A run reaches
//! the writer whole, in order; a commit of it that follows one that did not
//! land is refused ([`CommitStatus::AfterRefused`]) whatever its seq says.
//! The seq alone cannot tell: when another host appended as many events as
//! the refused commit would have, the follower's expected seq matches a log
//! that never held the state it ran on.

use tokio::sync::oneshot;

use super::{Commit, CommitStatus, JournalError};
use crate::journal::contract::PendingCommit;

/// One commit waiting for the writer, and whoever waits for its outcome.
pub(super) struct Queued {
    /// The commit.
    pub commit: Commit,
    /// Whether it follows the commit before it in the same run.
    pub follows: bool,
    /// Told how the commit ended.
    pub done: oneshot::Sender<Result<CommitStatus, JournalError>>,
}

/// A run of commits, in order, as the writer receives it.
pub(super) type Run = Vec<Queued>;

/// Makes the run the writer receives from `commits`, and the futures that
/// resolve with each commit's outcome; `send` hands the run to the writer
/// and answers false when the writer has stopped.
pub(super) fn submit_run(commits: Vec<Commit>, send: impl FnOnce(Run) -> bool) -> Vec<PendingCommit> {
    if commits.is_empty() {
        // A run of reads and refusals writes nothing: no transaction.
        return Vec::new();
    }
    let mut run = Vec::with_capacity(commits.len());
    let mut waits = Vec::with_capacity(commits.len());
    for (i, commit) in commits.into_iter().enumerate() {
        let (done, wait) = oneshot::channel();
        run.push(Queued { commit, follows: i > 0, done });
        waits.push(wait);
    }
    let sent = send(run);
    waits
        .into_iter()
        .map(|wait| -> PendingCommit {
            Box::pin(async move {
                if !sent {
                    return Err(JournalError::WriterStopped);
                }
                wait.await.map_err(|_| JournalError::WriterStopped)?
            })
        })
        .collect()
}

/// Decides a batch's commits in order with `decide`, refusing those that
/// follow a commit of their run that did not land, without deciding them.
pub(super) fn decide_in_order<'a, E>(
    batch: impl IntoIterator<Item = (&'a Commit, bool)>,
    mut decide: impl FnMut(&'a Commit) -> Result<CommitStatus, E>,
) -> Result<Vec<CommitStatus>, E> {
    let mut statuses: Vec<CommitStatus> = Vec::new();
    for (commit, follows) in batch {
        let after_refused = follows && statuses.last().is_some_and(|before| !before.is_durable());
        let status = if after_refused { CommitStatus::AfterRefused } else { decide(commit)? };
        statuses.push(status);
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_after_a_refused_one_of_its_run_is_refused_undecided() {
        let commits: Vec<Commit> = (0..4).map(|i| Commit::events("s", "e", i, vec![b"x".to_vec()])).collect();
        // Runs: [0, 1, 2] and [3]; 1 is refused, so 2 is too, and 3 is not.
        let follows = [false, true, true, false];
        let mut decided = Vec::new();
        let statuses = decide_in_order(commits.iter().zip(follows), |commit| -> Result<_, ()> {
            let crate::journal::EntityWrite::Events { expected_last_seq: seq, .. } = commit.write else {
                unreachable!("test commits are events")
            };
            decided.push(seq);
            Ok(if seq == 1 {
                CommitStatus::Conflict { expected: 1, found: 2 }
            } else {
                CommitStatus::Durable { last_seq: seq + 1 }
            })
        })
        .unwrap();
        assert_eq!(decided, [0, 1, 3], "the follower of a refused commit is never decided");
        assert_eq!(statuses[2], CommitStatus::AfterRefused);
        assert!(statuses[3].is_durable());
    }
}
