//! The byte-level cores shared by the WebAssembly exports and the
//! [`testkit`](crate::testkit).
//!
//! They mirror the WIT functions without depending on the generated
//! bindings: each decodes what the host passes in, runs the service's
//! handler and encodes what it produced. Replies and side effects are the
//! SDK's own [`Reply`](crate::Reply) and [`SideEffect`](crate::SideEffect),
//! which already hold encoded payloads.

pub mod action;
pub mod crdt;
pub mod event_sourced;
pub mod value;

/// Asserts that `failure` has `code` and a message starting with `prefix`,
/// showing the whole failure otherwise.
#[cfg(test)]
#[track_caller]
fn assert_failure(failure: &crate::Failure, code: crate::FailureCode, prefix: &str) {
    assert_eq!(failure.code(), code);
    assert!(failure.message().starts_with(prefix), "{failure}");
}
