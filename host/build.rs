//! Embeds what `wasmstate new` writes beside a new crate, as
//! `$OUT_DIR/scaffold_sdk.rs` (included by `cli/scaffold.rs`): the guest
//! SDK's source, a standalone manifest for it (the workspace's versions of
//! its dependencies), the WIT package it builds against, the source and a
//! standalone manifest of the CRDT model its test kit merges replicas with
//! (`host/crdt`, a native dependency of the SDK), and the workspace's
//! `Cargo.lock`, so a new crate builds with the versions this workspace
//! tests.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The WIT version the SDK builds against (`export.rs`: `../wit/v0.2.0`).
const WIT_DIR: &str = "wit/v0.2.0";

/// The workspace dependencies the SDK takes, as `[workspace.dependencies]`
/// spells them.
const SDK_DEPENDENCIES: &[&str] = &["serde", "serde_json", "wit-bindgen"];

/// Those it takes only outside WebAssembly: the test kit's cron schedules.
/// (It also takes the CRDT model there, by path: `../wasmstate-crdt`.)
const SDK_NATIVE_DEPENDENCIES: &[&str] = &["croner", "jiff"];

/// The workspace dependencies the CRDT model takes.
const CRDT_DEPENDENCIES: &[&str] = &["serde"];

/// Those it takes only on WebAssembly: the WASI bindings of outbound HTTP.
const SDK_WASM_DEPENDENCIES: &[&str] = &["wasi"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set"));
    let workspace = manifest_dir.parent().expect("the host lives in the workspace root");
    for source in ["guest-sdk/src", "host/crdt/src", WIT_DIR, "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(source).display());
    }

    let mut out = String::new();
    embed_sources(&mut out, "SDK_SOURCES", "The SDK's source files", &workspace.join("guest-sdk"));
    embed_sources(&mut out, "CRDT_SOURCES", "The CRDT model's source files", &workspace.join("host/crdt"));

    let wit = workspace.join(WIT_DIR).join("entity.wit");
    writeln!(out, "/// The WIT package the SDK builds against, and where it goes.\npub(super) const SDK_WIT: (&str, &str) = ({:?}, include_str!({:?}));\n", format!("{WIT_DIR}/entity.wit"), wit.display().to_string()).expect("a string takes writes");

    let lock = workspace.join("Cargo.lock");
    writeln!(out, "/// The workspace's lock file: the versions a new crate starts from.\npub(super) const LOCKFILE: &str = include_str!({:?});\n", lock.display().to_string()).expect("a string takes writes");

    let root = fs::read_to_string(workspace.join("Cargo.toml")).expect("the workspace manifest is readable");
    let version = workspace_value(&root, "workspace.package", "version");
    let edition = workspace_value(&root, "workspace.package", "edition");
    let mut manifest = format!(
        "[package]\nname = \"wasmstate-sdk\"\ndescription = \"Write wasmstate services in Rust\"\nversion = {version}\nedition = {edition}\npublish = false\n\n[lib]\nname = \"wasmstate_sdk\"\n\n[dependencies]\n"
    );
    for dependency in SDK_DEPENDENCIES {
        let spec = workspace_value(&root, "workspace.dependencies", dependency);
        writeln!(manifest, "{dependency} = {spec}").expect("a string takes writes");
    }
    manifest.push_str("\n[target.'cfg(not(target_arch = \"wasm32\"))'.dependencies]\n");
    for dependency in SDK_NATIVE_DEPENDENCIES {
        let spec = workspace_value(&root, "workspace.dependencies", dependency);
        writeln!(manifest, "{dependency} = {spec}").expect("a string takes writes");
    }
    manifest.push_str("wasmstate-crdt = { path = \"../wasmstate-crdt\" }\n");
    manifest.push_str("\n[target.'cfg(target_arch = \"wasm32\")'.dependencies]\n");
    for dependency in SDK_WASM_DEPENDENCIES {
        let spec = workspace_value(&root, "workspace.dependencies", dependency);
        writeln!(manifest, "{dependency} = {spec}").expect("a string takes writes");
    }
    writeln!(out, "/// The SDK's manifest, standalone.\npub(super) const SDK_MANIFEST: &str = {manifest:?};")
        .expect("a string takes writes");

    let mut manifest = format!(
        "[package]\nname = \"wasmstate-crdt\"\ndescription = \"The replicated data types of wasmstate's CRDT entities\"\nversion = {version}\nedition = {edition}\npublish = false\n\n[dependencies]\n"
    );
    for dependency in CRDT_DEPENDENCIES {
        let spec = workspace_value(&root, "workspace.dependencies", dependency);
        writeln!(manifest, "{dependency} = {spec}").expect("a string takes writes");
    }
    writeln!(out, "\n/// The CRDT model's manifest, standalone.\npub(super) const CRDT_MANIFEST: &str = {manifest:?};")
        .expect("a string takes writes");

    let path = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set")).join("scaffold_sdk.rs");
    fs::write(&path, out).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

/// Writes constant `name`, documented as `doc`, into `out`: the Rust
/// source files under `crate_dir/src`, each by its path inside the crate.
fn embed_sources(out: &mut String, name: &str, doc: &str, crate_dir: &Path) {
    let mut sources = Vec::new();
    collect(&crate_dir.join("src"), &mut sources);
    sources.sort();
    writeln!(out, "/// {doc}, by path inside the crate.\npub(super) const {name}: &[(&str, &str)] = &[")
        .expect("a string takes writes");
    for path in &sources {
        let inside = path.strip_prefix(crate_dir).expect("under the crate").to_string_lossy().replace('\\', "/");
        writeln!(out, "    ({inside:?}, include_str!({:?})),", path.display().to_string())
            .expect("a string takes writes");
    }
    out.push_str("];\n\n");
}

/// Every file under `dir`, recursively.
fn collect(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, into);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            into.push(path);
        }
    }
}

/// The value of `key` in table `[table]` of a manifest, as written (one
/// line): enough for the workspace's own `Cargo.toml`.
fn workspace_value(manifest: &str, table: &str, key: &str) -> String {
    let header = format!("[{table}]");
    let mut lines = manifest.lines().skip_while(|line| line.trim() != header).skip(1);
    lines
        .by_ref()
        .take_while(|line| !line.trim_start().starts_with('['))
        .find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == key).then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in [{table}] of the workspace manifest"))
}
