//! Paths of the guest components the build script compiled for
//! `wasm32-wasip2`: `SHOPPING_CART`, `COUNTER`, `MISBEHAVING` and
//! `WRONG_WORLD`, each the absolute path of a `.wasm` component.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
