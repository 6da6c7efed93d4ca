//! CRDT entities: replicated data types the host stores, replicates and
//! merges, each host a replica that changes its copy without waiting for
//! the others (Cloudstate's CRDT entities, made durable).
//!
//! | type | handle | changes |
//! |---|---|---|
//! | grow-only counter | [`ctx.gcounter()`](CrdtContext::gcounter) | increment |
//! | counter | [`ctx.pncounter()`](CrdtContext::pncounter) | increment, decrement |
//! | grow-only set | [`ctx.gset()`](CrdtContext::gset) | add |
//! | observed-remove set | [`ctx.orset()`](CrdtContext::orset) | add, remove, clear (an add wins over a concurrent remove) |
//! | register | [`ctx.lww()`](CrdtContext::lww) | set, by the latest write, the first ([`Clock::Reverse`]) or a [`Clock::Custom`] clock |
//! | flag | [`ctx.flag()`](CrdtContext::flag) | enable |
//! | map | [`ctx.map()`](CrdtContext::map) | a key's value (any type but a map), remove a key, clear |
//! | vote | [`ctx.vote()`](CrdtContext::vote) | vote yes or no as this host |
//!
//! An entity takes the type of its first change and keeps it; a command
//! sends at most one change, its [`CrdtDelta`], which the handles build up.
//! Elements, register values and map keys are JSON, compared as bytes.
//! Deleting an entity ([`CrdtContext::delete`]) is permanent.

mod context;
mod delta;
mod handles;
mod value;

use serde::de::DeserializeOwned;

pub use context::CrdtContext;
pub(crate) use context::CrdtParts;
pub use delta::{Clock, CrdtDelta, LwwDelta, OrMapDelta, OrSetDelta};
pub use handles::{
    FlagHandle, GCounterHandle, GSetHandle, LwwHandle, MapHandle, OrSetHandle, PNCounterHandle, VoteHandle,
};
pub use value::{CrdtKind, CrdtValue, VoteValue};

use crate::{Failure, Reply};

/// A CRDT entity: its value is a replicated data type the host keeps, and
/// a command reads it and changes it through [`CrdtContext`]'s typed
/// handles.
///
/// The implementing type holds nothing: the host hands each command the
/// entity's value as this host has it ([`CrdtContext::value`]). The SDK
/// decodes each command into [`Self::Command`] first (see
/// [`Command::decode`](crate::Command::decode)).
///
/// # Example
///
/// ```
/// use serde::Deserialize;
/// use wasmstate_sdk::{CrdtContext, CrdtEntity, Failure, Reply};
///
/// /// Who liked a post, from any region.
/// struct Likes;
///
/// #[derive(Deserialize)]
/// enum LikesCommand {
///     Like { user: String },
///     Unlike { user: String },
///     Get,
/// }
///
/// impl CrdtEntity for Likes {
///     type Command = LikesCommand;
///
///     fn handle(command: LikesCommand, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure> {
///         match command {
///             LikesCommand::Like { user } => {
///                 ctx.orset().add(&user);
///             }
///             LikesCommand::Unlike { user } => {
///                 ctx.orset().remove(&user);
///             }
///             LikesCommand::Get => {}
///         }
///         Ok(Reply::json(&ctx.orset().elements::<String>()?))
///     }
/// }
///
/// // Makes this crate a component exporting `wasmstate:entity/crdt`.
/// wasmstate_sdk::export_crdt!(Likes);
///
/// // Unit tests run it as the host would, and simulate other hosts.
/// use serde_json::json;
/// use wasmstate_sdk::testkit::CrdtKit;
///
/// let mut kit = CrdtKit::<Likes>::new("post-1");
/// kit.handle("Like", json!({"user": "ada"})).unwrap();
/// // This host's ada unlikes while another host's ada likes again: the like wins.
/// kit.replica("host-b").handle("Like", json!({"user": "ada"})).unwrap();
/// assert_eq!(kit.handle("Unlike", json!({"user": "ada"})), Ok(json!([])));
/// kit.merge_from("host-b");
/// assert_eq!(kit.handle("Get", ()), Ok(json!(["ada"])));
/// ```
pub trait CrdtEntity {
    /// The entity's commands: a serde enum whose variant names are the
    /// command names and whose fields are their JSON arguments.
    type Command: DeserializeOwned;

    /// Handles one decoded command against [`CrdtContext::value`].
    ///
    /// Change the value through the context's handles, delete the entity
    /// with [`CrdtContext::delete`], add side effects with
    /// [`CrdtContext::effect`], set and cancel timers with
    /// [`CrdtContext::schedule`] and [`CrdtContext::cancel`]; reply with a
    /// message or a [`Reply::forward`]. Returning `Err`, or a change of the
    /// wrong type, discards the delta, the deletion, every side effect and
    /// every timer change.
    fn handle(command: Self::Command, ctx: &mut CrdtContext<'_>) -> Result<Reply, Failure>;
}
