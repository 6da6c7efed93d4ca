//! Notes with a digest on a cron schedule: a user jots notes down and
//! subscribes to a digest (say at 8:00 on weekdays, in their time zone);
//! at every slot of the schedule the host runs the entity's
//! `CompileDigest`, which gathers the notes added since the last digest.
//!
//! An event-sourced entity per user, deployed as service `reminders`. The
//! subscription is one durable cron timer, [`DIGEST_TIMER`], set and
//! cancelled with the commands that record it, so the schedule and the
//! entity's state never disagree. A real service would mail each digest
//! (an asynchronous side effect to a mail service); this one keeps the
//! latest [`KEPT_DIGESTS`] in its state.
//!
//! Commands (JSON bodies); each replies the state:
//!
//! - `AddNote {"text"}` adds a note of 1 to [`MAX_NOTE_BYTES`] bytes;
//! - `Subscribe {"cron", "timeZone"?}` subscribes to a digest at every
//!   slot of `cron` — five fields (minute hour day-of-month month
//!   day-of-week), or six with seconds first — in `timeZone`, an IANA name
//!   (UTC without one), replacing an earlier subscription. The host checks
//!   the schedule when the command commits: one it cannot read fails the
//!   command (500 `invalid_timer`) and changes nothing. Slots missed while
//!   no host could fire them give one late digest ([`Missed::Once`]);
//! - `Unsubscribe` cancels the subscription, if any: no digest follows,
//!   even from a firing already under way;
//! - `CompileDigest` compiles a digest of the notes added since the last
//!   one (an empty digest when there are none) for a subscriber: the timer
//!   runs it, a client may too. Without a subscription it changes nothing;
//! - `Get` (empty body or `{}`).
//!
//! The state: `{"subscription": {"cron", "timeZone"?} | null, "pending":
//! [note, ...], "digests": [{"atMs", "notes": [note, ...]}, ...],
//! "digestsCompiled"}`.
//!
//! Events: `NoteAdded {"text"}`, `Subscribed {"cron", "timeZone"?}`,
//! `Unsubscribed` and `DigestCompiled {"atMs"}`, each tagged with `"type"`.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, Context, Cron, EventSourced, Failure, Missed, Reply};

/// The name of the digest's timer.
pub const DIGEST_TIMER: &str = "digest";
/// How many of the latest digests the state keeps.
pub const KEPT_DIGESTS: usize = 10;
/// The longest note, in bytes.
pub const MAX_NOTE_BYTES: usize = 1000;
/// The longest time zone name, in bytes.
const MAX_TIME_ZONE_BYTES: usize = 64;

/// A digest subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    /// The cron fields, separated by single spaces.
    pub cron: String,
    /// The IANA time zone the fields are read in; UTC without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl Subscription {
    /// The schedule the host steps: the fields, then the time zone.
    pub fn schedule(&self) -> Cron {
        let expression = match &self.time_zone {
            Some(zone) => format!("{} {zone}", self.cron),
            None => self.cron.clone(),
        };
        // One digest for every slot missed: it gathers every note anyway.
        Cron::new(expression).missed(Missed::Once)
    }
}

/// The notes added between two digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    /// When it was compiled, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The notes, oldest first.
    pub notes: Vec<String>,
}

/// A user's notes and digests: the state, and the reply of every command.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reminders {
    /// The digest subscription, if any.
    pub subscription: Option<Subscription>,
    /// The notes added since the last digest, oldest first.
    pub pending: Vec<String>,
    /// The latest [`KEPT_DIGESTS`] digests, oldest first.
    pub digests: Vec<Digest>,
    /// How many digests were compiled, those no longer kept too.
    pub digests_compiled: u64,
}

/// What happened to a user's reminders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    /// A note was added.
    NoteAdded {
        /// The note.
        text: String,
    },
    /// The user subscribed to a digest, replacing any earlier subscription.
    Subscribed(Subscription),
    /// The user unsubscribed.
    Unsubscribed,
    /// The pending notes were compiled into a digest.
    DigestCompiled {
        /// When, in ms since the Unix epoch.
        at_ms: u64,
    },
}

/// The reminders' commands, as the host names them; the digest timer runs
/// [`RemindersCommand::CompileDigest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemindersCommand {
    /// Adds a note.
    AddNote {
        /// The note: 1 to [`MAX_NOTE_BYTES`] bytes.
        text: String,
    },
    /// Subscribes to a digest on a schedule.
    Subscribe(Subscription),
    /// Cancels the subscription.
    Unsubscribe,
    /// Compiles a digest of the pending notes, for a subscriber.
    CompileDigest,
    /// Replies with the state.
    Get,
}

impl Commands for RemindersCommand {
    const SERVICE: &'static str = "reminders";
}

/// The subscription `Subscribe` asks for, its fields separated by single
/// spaces, or why it cannot be one. The host reads the fields and the
/// time zone when the command commits; this refuses early what is plainly
/// not a schedule.
fn check(subscription: Subscription) -> Result<Subscription, Failure> {
    let fields: Vec<&str> = subscription.cron.split_whitespace().collect();
    if !(5..=6).contains(&fields.len()) {
        return Err(Failure::rejected(format!(
            "cron takes five fields (minute hour day-of-month month day-of-week), or six with seconds \
             first; {:?} has {}.",
            subscription.cron,
            fields.len()
        )));
    }
    if let Some(zone) = &subscription.time_zone
        && (zone.is_empty() || zone.len() > MAX_TIME_ZONE_BYTES || zone.contains(|c: char| c.is_whitespace()))
    {
        return Err(Failure::rejected(format!("timeZone {zone:?} is no IANA time zone name, such as Europe/Paris.")));
    }
    Ok(Subscription { cron: fields.join(" "), time_zone: subscription.time_zone })
}

impl EventSourced for Reminders {
    type Command = RemindersCommand;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::NoteAdded { text } => self.pending.push(text.clone()),
            Event::Subscribed(subscription) => self.subscription = Some(subscription.clone()),
            Event::Unsubscribed => self.subscription = None,
            Event::DigestCompiled { at_ms } => {
                self.digests.push(Digest { at_ms: *at_ms, notes: std::mem::take(&mut self.pending) });
                let excess = self.digests.len().saturating_sub(KEPT_DIGESTS);
                self.digests.drain(..excess);
                self.digests_compiled += 1;
            }
        }
    }

    fn handle(command: RemindersCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            RemindersCommand::AddNote { text } => {
                if text.trim().is_empty() || text.len() > MAX_NOTE_BYTES {
                    return Err(Failure::rejected(format!(
                        "A note has 1 to {MAX_NOTE_BYTES} bytes; this one has {}.",
                        text.len()
                    )));
                }
                ctx.emit(Event::NoteAdded { text });
            }
            RemindersCommand::Subscribe(subscription) => {
                let subscription = check(subscription)?;
                // Set again under the same name, the timer replaces the
                // earlier subscription's.
                ctx.schedule_self(DIGEST_TIMER, subscription.schedule(), &RemindersCommand::CompileDigest);
                ctx.emit(Event::Subscribed(subscription));
            }
            RemindersCommand::Unsubscribe => {
                if ctx.state().subscription.is_some() {
                    ctx.emit(Event::Unsubscribed);
                    ctx.cancel(DIGEST_TIMER);
                }
            }
            RemindersCommand::CompileDigest => {
                // A firing that raced `Unsubscribe` finds no subscription.
                if ctx.state().subscription.is_some() {
                    ctx.emit(Event::DigestCompiled { at_ms: ctx.metadata().now_ms() });
                }
            }
            RemindersCommand::Get => {}
        }
        Ok(Reply::json(ctx.state()))
    }
}

wasmstate_sdk::export_event_sourced!(Reminders);

#[cfg(test)]
mod tests;
