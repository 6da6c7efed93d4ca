//! Black-box test harness for wasmstate: starts the real `wasmstate` binary
//! on a free loopback port with a temporary data dir and talks HTTP to it.
//! The guest components it deploys are built by this crate's build script
//! (see [`guests`]).

pub mod api;
pub mod guests;
pub mod postgres;
pub mod server;
pub mod sse;

pub use api::{Api, Reply};
pub use server::{JournalKind, Options, Server};
