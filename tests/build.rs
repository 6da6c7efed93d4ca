//! Builds the guest components the tests deploy and hands the tests their
//! paths, as `$OUT_DIR/guests.rs` (included by `src/guests.rs`).
//!
//! The guests are built by a nested `cargo build` into their own target
//! directory, `target/guests`: sharing the outer build's directory would
//! deadlock on its lock. `make examples` builds into the same directory, so
//! the two share artifacts.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::Command;

/// The guests' target triple.
const TARGET: &str = "wasm32-wasip2";

/// Each guest's package, constant name and documentation.
const GUESTS: &[(&str, &str, &str)] = &[
    ("shopping-cart", "SHOPPING_CART", "The shopping cart example entity (event-sourced)."),
    ("counter", "COUNTER", "The counter example entity (event-sourced)."),
    ("user-profile", "USER_PROFILE", "The user profile example entity (value)."),
    (
        "order-validator",
        "ORDER_VALIDATOR",
        "The order validator example action: forwards to `shopping-cart`, counts into `counter`.",
    ),
    (
        "cart-projection",
        "CART_PROJECTION",
        "The cart projection example action: counts `shopping-cart`'s `ItemAdded` events into `counter`.",
    ),
    (
        "order-workflow",
        "ORDER_WORKFLOW",
        "The order saga example entity (event-sourced, as `orders`): reserves in `inventory`, expires unpaid orders on a timer.",
    ),
    (
        "inventory",
        "INVENTORY",
        "The inventory example entity (event-sourced, as `inventory`): reserves and releases stock for `orders`.",
    ),
    (
        "reminders",
        "REMINDERS",
        "The reminders example entity (event-sourced, as `reminders`): notes with a digest on a cron schedule.",
    ),
    (
        "fraud-detector",
        "FRAUD_DETECTOR",
        "The fraud detector example entity (event-sourced): scores transactions, calls a scoring service over HTTP, opens cases with webhooks.",
    ),
    (
        "poll",
        "POLL",
        "The poll example entity (CRDT, as `poll`): options and one vote per voter in a map, tallied in each reply; `Close` refuses later votes.",
    ),
    (
        "board",
        "BOARD",
        "The shared board example entity (CRDT, as `board`): items in a map, each a text register (`<id>/text`) and a done flag (`<id>/done`).",
    ),
    (
        "tck-event-sourced",
        "TCK_EVENT_SOURCED",
        "The TCK model's event-sourced entity: `Process` emits, forwards, adds side effects and fails on command.",
    ),
    (
        "tck-value",
        "TCK_VALUE",
        "The TCK model's value entity: `Process` updates, deletes, forwards, adds side effects and fails on command.",
    ),
    (
        "tck-crdt",
        "TCK_CRDT",
        "The TCK model's CRDT entity, its type picked by the entity id's prefix (`gcounter-`, `orset-`, ...): `Process` changes, deletes, forwards, adds side effects and fails on command; `Get` replies with the value.",
    ),
    (
        "fan-out",
        "FAN_OUT",
        "A subscriber returning two synchronous side effects per event: `counter`/`first`, then `audit`/`second`.",
    ),
    (
        "effects-per-event",
        "EFFECTS_PER_EVENT",
        "A subscriber to `misbehaving` whose `Echo {\"value\": {\"effects\": n}}` events each return n side effects on `counter`/`flooded`.",
    ),
    (
        "misbehaving",
        "MISBEHAVING",
        "An entity that panics, loops, eats memory, reads files and floods events on command.",
    ),
    ("wrong-world", "WRONG_WORLD", "A component that exports none of the `wasmstate:entity` interfaces."),
    ("bad-import", "BAD_IMPORT", "An entity that imports an interface the host does not provide."),
    (
        "counter-v0-1",
        "COUNTER_V0_1",
        "An event-sourced counter built against the frozen `wasmstate:entity@0.1.0`, with the bindings alone.",
    ),
    (
        "cart-renamed-event",
        "CART_RENAMED_EVENT",
        "The shopping cart with `ItemAdded`'s `item` renamed to `line` and no upcaster: it cannot read the example's events.",
    ),
    (
        "cart-upcasting",
        "CART_UPCASTING",
        "The shopping cart with `ItemAdded`'s `item` renamed to `line` and an upcaster that reads the example's events.",
    ),
    (
        "cart-new-reply",
        "CART_NEW_REPLY",
        "The shopping cart that also keeps a `totalQuantity` folded from its events (0 in the example's snapshots) and answers it in `GetCart`.",
    ),
    ("two-kinds", "TWO_KINDS", "A component that exports both `event-sourced` and `value`, so its kind is ambiguous."),
    (
        "timers-guest",
        "TIMERS",
        "An event-sourced entity whose `Schedule` sets a timer (after, at or cron; `Tick` on itself by default), `Cancel` cancels one and `Tick` records its time and idempotency key.",
    ),
    (
        "timer-action",
        "TIMER_ACTION",
        "An action whose `Schedule` sets a timer on its routing key running any command, and `Cancel` cancels one.",
    ),
    (
        "http-client",
        "HTTP_CLIENT",
        "A value entity whose `fetch`, `fetch_then_fail` and `fetch_many` call out over HTTP, `webhook` and `webhook_then_fail` add a webhook, counted in its state (`get`).",
    ),
];

/// Whether the environment variable `key`, set by the outer cargo for this
/// build script or by the user for the host build, would leak into the
/// nested build and change or confuse it.
fn leaks_into_nested_build(key: &str) -> bool {
    const NAMES: &[&str] = &[
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC_LINKER",
    ];
    const PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "DEP_", "__CARGO"];
    NAMES.contains(&key) || PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set"));
    let workspace = manifest_dir.parent().expect("the tests crate lives in the workspace root");
    for source in ["guest-sdk", "wit", "examples", "tests/guests", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(source).display());
    }

    let target_dir = workspace.join("target").join("guests");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(workspace).args(["build", "--release", "--target", TARGET, "--target-dir"]).arg(&target_dir);
    for (package, ..) in GUESTS {
        cargo.args(["-p", package]);
    }
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(leaks_into_nested_build) {
            cargo.env_remove(key);
        }
    }
    // The jobserver variables (CARGO_MAKEFLAGS, MAKEFLAGS) stay: the nested
    // build then shares the outer build's job slots. Its stdout goes to our
    // stderr, as cargo reads our stdout for directives.
    cargo.stdout(io::stderr());
    let status = cargo.status().unwrap_or_else(|error| panic!("cannot run {cargo:?}: {error}"));
    assert!(
        status.success(),
        "building the guest components failed ({status}); is the {TARGET} target installed? \
         (`rustup target add {TARGET}`)"
    );

    let wasm_dir = target_dir.join(TARGET).join("release");
    let mut consts = String::new();
    for (package, name, doc) in GUESTS {
        let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        let path = wasm.to_str().expect("the target directory's path is UTF-8");
        writeln!(consts, "/// {doc}\npub const {name}: &str = {path:?};").expect("writing to a String");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set"));
    fs::write(out_dir.join("guests.rs"), consts).expect("writing guests.rs");
}
