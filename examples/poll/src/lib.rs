//! A poll: distributed voting with one vote per voter, as a CRDT entity.
//!
//! Each poll is an entity (its id names the poll) whose value is an
//! observed-remove map, replicated to every host: each host takes votes on
//! its own copy without waiting for the others, and the copies merge.
//!
//! # The map
//!
//! | key | value | written by |
//! |---|---|---|
//! | `"options"` | grow-only set of the option names | `AddOption` |
//! | `"voter:<id>"` | last-writer-wins register holding the option voter `<id>` chose | `Vote` (removed by `Retract`) |
//! | `"closed"` | flag, enabled once the poll is closed | `Close` |
//!
//! The tallies are not stored: every reply counts them from the voters'
//! registers ([`results`]). That is what makes one vote per voter hold
//! under concurrency. A voter's choice is one register, so a voter who
//! votes on two hosts at once (or changes their vote on one while the
//! other still has the old one) ends up, once the hosts merge, with the
//! latest of the two choices: counted once, whatever the order the
//! changes arrive in. Counters per option adjusted by each vote would not
//! hold: two hosts each moving the same voter would each add one.
//!
//! # Commands (JSON bodies)
//!
//! - `AddOption {"option"}` adds an option (adding one twice changes
//!   nothing);
//! - `Vote {"voter", "option"}` records the voter's choice, one of the
//!   poll's options; a voter who votes again moves their vote;
//! - `Retract {"voter"}` takes the voter's vote back (a voter without a
//!   vote: nothing changes);
//! - `Close` closes the poll for good: `AddOption`, `Vote` and `Retract`
//!   are refused from then on;
//! - `Results` changes nothing.
//!
//! Each replies the results, [`Results`]: `{"options": {"pizza": 2,
//! "salad": 1}, "voters": 3, "closed": false}`, every option with its
//! votes (zero included), the number of voters and whether the poll is
//! closed. Voter ids and options must not be blank.
//!
//! # Concurrency
//!
//! - A voter's latest vote wins, by the host's clock, wherever it was cast.
//! - A vote concurrent with a retract of the same voter on another host
//!   wins: the map keeps a key updated concurrently with its removal.
//! - `Close` reaches the other hosts as the hosts merge: a vote a host
//!   accepted before the close reached it counts; after that, the host
//!   refuses votes too.
//! - A vote needs its option on the host it is cast on: an option just
//!   added on another host can be voted for once it has reached this one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, CrdtContext, CrdtEntity, Failure, Reply};

/// The map key of the poll's options (a grow-only set of names).
pub const OPTIONS: &str = "options";

/// The map key of the flag that closes the poll.
pub const CLOSED: &str = "closed";

/// The prefix of a voter's map key: `voter:<id>`, a register holding the
/// option the voter chose.
pub const VOTER_PREFIX: &str = "voter:";

/// The map key of voter `voter`'s choice.
pub fn voter_key(voter: &str) -> String {
    format!("{VOTER_PREFIX}{voter}")
}

/// The poll entity: its value is the map the crate's documentation
/// describes; the type itself holds nothing.
pub struct Poll;

/// The poll's commands, as the host names them: `POST
/// /v1/services/poll/entities/{poll}/Vote` with `{"voter": "ada",
/// "option": "pizza"}` is `PollCommand::Vote { .. }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PollCommand {
    /// Adds an option voters may choose.
    AddOption {
        /// The option's name.
        option: String,
    },
    /// Records `voter`'s choice of `option`, replacing their earlier one.
    Vote {
        /// Who votes.
        voter: String,
        /// One of the poll's options.
        option: String,
    },
    /// Takes `voter`'s vote back.
    Retract {
        /// Whose vote.
        voter: String,
    },
    /// Closes the poll for good.
    Close,
    /// Reads the results.
    Results,
}

impl Commands for PollCommand {
    const SERVICE: &'static str = "poll";
}

/// What every command replies: the tallies as this host has the poll.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    /// Each option with the number of voters who chose it.
    pub options: BTreeMap<String, u64>,
    /// How many voters voted.
    pub voters: u64,
    /// Whether the poll is closed.
    pub closed: bool,
}

impl CrdtEntity for Poll {
    type Command = PollCommand;

    fn handle(command: PollCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
        let changes = !matches!(command, PollCommand::Close | PollCommand::Results);
        if changes && ctx.map().flag(CLOSED).is_enabled() {
            return Err(Failure::rejected(format!("poll {} is closed", ctx.entity_id())));
        }
        match command {
            PollCommand::AddOption { option } => {
                not_blank(&option, "an option")?;
                if !ctx.map().gset(OPTIONS).contains(&option) {
                    ctx.map().gset(OPTIONS).add(&option);
                }
            }
            PollCommand::Vote { voter, option } => {
                not_blank(&voter, "a voter's id")?;
                let options: Vec<String> = ctx.map().gset(OPTIONS).elements()?;
                if !options.contains(&option) {
                    return Err(unknown_option(ctx.entity_id(), &option, &options));
                }
                ctx.map().lww(&voter_key(&voter)).set(&option);
            }
            PollCommand::Retract { voter } => {
                let key = voter_key(&voter);
                if ctx.map().get(&key).is_some() {
                    ctx.map().remove(&key);
                }
            }
            PollCommand::Close => {
                if !ctx.map().flag(CLOSED).is_enabled() {
                    ctx.map().flag(CLOSED).enable();
                }
            }
            PollCommand::Results => {}
        }
        Ok(Reply::json(&results(ctx)?))
    }
}

/// The results of the poll as this host has it, with the command's
/// changes: every option, and each voter's choice counted once.
///
/// # Errors
///
/// `invalid_state` if a key or a voter's choice is not a JSON string.
pub fn results(ctx: &mut CrdtContext<'_>) -> Result<Results, Failure> {
    let mut results = Results::default();
    for (key, value) in ctx.map().entries::<String>()? {
        if key == OPTIONS {
            for option in value.elements::<String>()? {
                results.options.entry(option).or_default();
            }
        } else if key == CLOSED {
            results.closed = value.as_flag().unwrap_or_default();
        } else if key.starts_with(VOTER_PREFIX)
            && let Some(option) = value.register::<String>()?
        {
            *results.options.entry(option).or_default() += 1;
            results.voters += 1;
        }
    }
    Ok(results)
}

/// Refuses a blank `value`, named `what`.
fn not_blank(value: &str, what: &str) -> Result<(), Failure> {
    if value.trim().is_empty() {
        return Err(Failure::rejected(format!("{what} may not be blank")));
    }
    Ok(())
}

/// The failure of a vote for `option`, which poll `poll` lacks.
fn unknown_option(poll: &str, option: &str, options: &[String]) -> Failure {
    if options.is_empty() {
        return Failure::rejected(format!("poll {poll} has no options yet: add {option:?} with AddOption first"));
    }
    Failure::rejected(format!("{option:?} is not an option of poll {poll}; its options are {}", options.join(", ")))
}

wasmstate_sdk::export_crdt!(Poll);

#[cfg(test)]
mod tests;
