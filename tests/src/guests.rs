//! Paths of the guest components the build script compiled for
//! `wasm32-wasip2`, one constant per guest (the examples and the test-only
//! guests under `tests/guests/`), each the absolute path of a `.wasm`
//! component.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
