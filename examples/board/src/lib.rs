//! A shared board: items to do that a team edits together from any host,
//! as a CRDT entity (a "shared collaborative workspace").
//!
//! Each board is an entity (its id names the board) whose value is an
//! observed-remove map, replicated to every host: each host changes its
//! own copy without waiting for the others, and the copies merge.
//!
//! # The map
//!
//! A map's values cannot be maps, so an item is two keys side by side:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `"<id>/text"` | last-writer-wins register holding the item's text | `Add`, `Edit` |
//! | `"<id>/done"` | flag, enabled once the item is done | `Done` |
//!
//! The key is split at its last `/`, so an item id may hold `/` too. An
//! item is on the board while either of its keys is; `Remove` removes both,
//! `Clear` every key.
//!
//! # Commands (JSON bodies)
//!
//! - `Add {"id", "text"}` adds an item, not done (an id already on the
//!   board is refused: `Edit` changes its text);
//! - `Edit {"id", "text"}` changes an item's text;
//! - `Done {"id"}` marks an item done, for good;
//! - `Remove {"id"}` removes an item;
//! - `Clear` removes every item;
//! - `Get` changes nothing.
//!
//! `Edit`, `Done` and `Remove` of an item not on the board are refused,
//! as are a blank id or text. Each command replies the board, [`View`]:
//! `{"items": [{"id", "text", "done"}, ...]}`, sorted by id.
//!
//! # Concurrency
//!
//! - Edits of one item on two hosts: the latest, by the host's clock, wins.
//! - An item removed (or cleared) on one host while another host changes it
//!   comes back once they merge: a change wins over a concurrent remove
//!   (the add-wins rule of observed-remove maps), with what the changing
//!   host wrote. An edit brings the item back with the new text, not done
//!   (its done flag was removed); a `Done` brings it back done, with an
//!   empty text until an `Edit` gives it one (its text was removed).
//! - Two hosts adding the same id at once: both adds are accepted, and the
//!   latest text wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, CrdtContext, CrdtEntity, Failure, Reply};

/// The suffix of an item's text key: `<id>/text`.
pub const TEXT_SUFFIX: &str = "/text";

/// The suffix of an item's done key: `<id>/done`.
pub const DONE_SUFFIX: &str = "/done";

/// The map key of item `id`'s text.
pub fn text_key(id: &str) -> String {
    format!("{id}{TEXT_SUFFIX}")
}

/// The map key of item `id`'s done flag.
pub fn done_key(id: &str) -> String {
    format!("{id}{DONE_SUFFIX}")
}

/// The board entity: its value is the map the crate's documentation
/// describes; the type itself holds nothing.
pub struct Board;

/// The board's commands, as the host names them: `POST
/// /v1/services/board/entities/{board}/Add` with `{"id": "milk", "text":
/// "Buy milk"}` is `BoardCommand::Add { .. }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BoardCommand {
    /// Adds an item, not done.
    Add {
        /// The item's id, new to the board.
        id: String,
        /// Its text.
        text: String,
    },
    /// Changes an item's text.
    Edit {
        /// The item's id.
        id: String,
        /// Its new text.
        text: String,
    },
    /// Marks an item done.
    Done {
        /// The item's id.
        id: String,
    },
    /// Removes an item.
    Remove {
        /// The item's id.
        id: String,
    },
    /// Removes every item.
    Clear,
    /// Reads the board.
    Get,
}

impl Commands for BoardCommand {
    const SERVICE: &'static str = "board";
}

/// An item of the board.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its id.
    pub id: String,
    /// Its text (empty if only its done flag is left: see the crate's
    /// documentation).
    pub text: String,
    /// Whether it is done.
    pub done: bool,
}

/// What every command replies: the board as this host has it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The items, sorted by id.
    pub items: Vec<Item>,
}

impl CrdtEntity for Board {
    type Command = BoardCommand;

    fn handle(command: BoardCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
        match command {
            BoardCommand::Add { id, text } => {
                not_blank(&id, "an item's id")?;
                not_blank(&text, "an item's text")?;
                if find(ctx, &id)?.is_some() {
                    return Err(Failure::rejected(format!(
                        "item {id} is already on board {}: Edit changes its text",
                        ctx.entity_id()
                    )));
                }
                ctx.map().lww(&text_key(&id)).set(&text);
            }
            BoardCommand::Edit { id, text } => {
                not_blank(&text, "an item's text")?;
                existing(ctx, &id)?;
                ctx.map().lww(&text_key(&id)).set(&text);
            }
            BoardCommand::Done { id } => {
                if !existing(ctx, &id)?.done {
                    ctx.map().flag(&done_key(&id)).enable();
                }
            }
            BoardCommand::Remove { id } => {
                existing(ctx, &id)?;
                for key in [text_key(&id), done_key(&id)] {
                    if ctx.map().get(&key).is_some() {
                        ctx.map().remove(&key);
                    }
                }
            }
            BoardCommand::Clear => {
                if !view(ctx)?.items.is_empty() {
                    ctx.map().clear();
                }
            }
            BoardCommand::Get => {}
        }
        Ok(Reply::json(&view(ctx)?))
    }
}

/// The board as this host has it, with the command's changes: its items
/// sorted by id.
///
/// # Errors
///
/// `invalid_state` if a key or a text is not a JSON string.
pub fn view(ctx: &mut CrdtContext<'_>) -> Result<View, Failure> {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for (key, value) in ctx.map().entries::<String>()? {
        if let Some(id) = key.strip_suffix(TEXT_SUFFIX) {
            let item = items.entry(id.to_owned()).or_default();
            item.text = value.register::<String>()?.unwrap_or_default();
        } else if let Some(id) = key.strip_suffix(DONE_SUFFIX) {
            items.entry(id.to_owned()).or_default().done = value.as_flag().unwrap_or_default();
        }
    }
    let items = items.into_iter().map(|(id, item)| Item { id, ..item }).collect();
    Ok(View { items })
}

/// Item `id`, if it is on the board.
fn find(ctx: &mut CrdtContext<'_>, id: &str) -> Result<Option<Item>, Failure> {
    Ok(view(ctx)?.items.into_iter().find(|item| item.id == id))
}

/// Item `id`, or a failure saying the board lacks it.
fn existing(ctx: &mut CrdtContext<'_>, id: &str) -> Result<Item, Failure> {
    find(ctx, id)?.ok_or_else(|| Failure::rejected(format!("no item {id} on board {}", ctx.entity_id())))
}

/// Refuses a blank `value`, named `what`.
fn not_blank(value: &str, what: &str) -> Result<(), Failure> {
    if value.trim().is_empty() {
        return Err(Failure::rejected(format!("{what} may not be blank")));
    }
    Ok(())
}

wasmstate_sdk::export_crdt!(Board);

#[cfg(test)]
mod tests;
