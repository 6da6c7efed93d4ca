//! The byte-level cores shared by the WebAssembly exports and the
//! [`testkit`](crate::testkit).
//!
//! They mirror the WIT functions without depending on the generated
//! bindings: each decodes what the host passes in, runs the service's
//! handler and encodes what it produced. Replies and side effects are the
//! SDK's own [`Reply`](crate::Reply) and [`SideEffect`](crate::SideEffect),
//! which already hold encoded payloads.

pub mod action;
pub mod event_sourced;
pub mod value;
