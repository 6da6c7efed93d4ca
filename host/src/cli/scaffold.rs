//! `wasmstate new`: a new service crate, ready to build and test.
//!
//! The crate gets a working service of the kind asked for, with its unit
//! tests and a README, and the SDK's source beside it under `sdk/`: the
//! SDK is not on crates.io, so the binary carries the copy it was built
//! with (see `build.rs`), with the CRDT model its test kit depends on
//! outside WebAssembly (`sdk/wasmstate-crdt`), and the workspace's lock
//! file pins the versions its tests ran with.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

include!(concat!(env!("OUT_DIR"), "/scaffold_sdk.rs"));

/// The kinds of service `wasmstate new` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// State folded from events.
    EventSourced,
    /// One stored state.
    Value,
    /// Stateless.
    Action,
    /// A replicated data type the host merges.
    Crdt,
}

impl Kind {
    /// The service's `src/lib.rs`, with `{{Type}}` and `{{name}}` to fill.
    fn template(self) -> &'static str {
        match self {
            Kind::EventSourced => include_str!("templates/event_sourced.rs"),
            Kind::Value => include_str!("templates/value.rs"),
            Kind::Action => include_str!("templates/action.rs"),
            Kind::Crdt => include_str!("templates/crdt.rs"),
        }
    }

    /// The kind as the README names it.
    fn name(self) -> &'static str {
        match self {
            Kind::EventSourced => "event-sourced entity",
            Kind::Value => "value entity",
            Kind::Action => "action",
            Kind::Crdt => "CRDT entity",
        }
    }

    /// A first call of the new service, for its README.
    fn invoke(self, service: &str) -> String {
        match self {
            Kind::EventSourced => format!("wasmstate invoke {service} e-1 Add '{{\"amount\": 2}}'"),
            Kind::Value => format!("wasmstate invoke {service} e-1 Set '{{\"text\": \"hello\"}}'"),
            Kind::Action => format!("wasmstate invoke {service} any Greet '{{\"name\": \"Ada\"}}'"),
            Kind::Crdt => format!("wasmstate invoke {service} post-1 Like '{{\"user\": \"ada\"}}'"),
        }
    }
}

/// Writes crate `name` of `kind` into `dir` (`./name` when `None`), and
/// answers where.
///
/// # Errors
///
/// When `name` is no crate name, `dir` exists and is not empty, or a file
/// cannot be written.
pub fn new_crate(name: &str, kind: Kind, dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() && fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{Type}}", &type_name(name))
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{kind_name}}", kind.name())
            .replace("{{invoke}}", &kind.invoke(name))
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), manifest(name)),
        ("Cargo.lock".into(), LOCKFILE.to_owned()),
        ("src/lib.rs".into(), fill(kind.template())),
        ("README.md".into(), fill(include_str!("templates/README.md"))),
        (".gitignore".into(), "/target\n".to_owned()),
        ("rustfmt.toml".into(), include_str!("../../../rustfmt.toml").to_owned()),
        ("sdk/wasmstate-sdk/Cargo.toml".into(), SDK_MANIFEST.to_owned()),
        (Path::new("sdk").join(SDK_WIT.0), SDK_WIT.1.to_owned()),
        ("sdk/wasmstate-crdt/Cargo.toml".into(), CRDT_MANIFEST.to_owned()),
    ];
    files
        .extend(SDK_SOURCES.iter().map(|(path, text)| (Path::new("sdk/wasmstate-sdk").join(path), (*text).to_owned())));
    files.extend(
        CRDT_SOURCES.iter().map(|(path, text)| (Path::new("sdk/wasmstate-crdt").join(path), (*text).to_owned())),
    );
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// The new crate's manifest: its own workspace, so it builds wherever it
/// is put, even inside another workspace.
fn manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the component; rlib: so `cargo test` runs the unit tests natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
wasmstate-sdk = {{ path = "sdk/wasmstate-sdk" }}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
serde_json = "1"

[workspace]

[profile.release]
opt-level = "s"
"#
    )
}

/// Refuses a name cargo would refuse, or one the service could not be
/// deployed under.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|first| first.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 64;
    if !valid {
        bail!(
            "{name:?} is not a service name for a new crate: use 1 to 64 lowercase letters, digits and '-', starting with a letter"
        );
    }
    Ok(())
}

/// `my-cart` as a Rust type name: `MyCart`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_bad_names_are_refused() {
        assert_eq!(type_name("my-cart-2"), "MyCart2");
        assert_eq!(type_name("tally"), "Tally");
        for bad in ["", "Cart", "2cart", "my_cart", "cart-", "a b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("my-cart-2").is_ok());
    }

    #[test]
    fn the_sdk_is_carried_whole() {
        let paths: Vec<&str> = SDK_SOURCES.iter().map(|(path, _)| *path).collect();
        for needed in ["src/lib.rs", "src/export.rs", "src/testkit/mod.rs", "src/raw/mod.rs"] {
            assert!(paths.contains(&needed), "{needed} in {paths:?}");
        }
        assert!(SDK_MANIFEST.contains("wit-bindgen = "));
        assert!(SDK_WIT.1.contains("package wasmstate:entity@0.2.0;"));
    }

    #[test]
    fn the_crdt_model_is_carried_beside_the_sdk() {
        let paths: Vec<&str> = CRDT_SOURCES.iter().map(|(path, _)| *path).collect();
        for needed in ["src/lib.rs", "src/causal.rs", "src/map.rs"] {
            assert!(paths.contains(&needed), "{needed} in {paths:?}");
        }
        let native = SDK_MANIFEST.split("[target.'cfg(not(target_arch = \"wasm32\"))'.dependencies]").nth(1).unwrap();
        let native = native.split("\n[").next().unwrap();
        assert!(native.contains("wasmstate-crdt = { path = \"../wasmstate-crdt\" }"), "{SDK_MANIFEST}");
        assert!(CRDT_MANIFEST.contains("name = \"wasmstate-crdt\"") && CRDT_MANIFEST.contains("serde = "));
        assert!(!CRDT_MANIFEST.contains("workspace = true"), "standalone: {CRDT_MANIFEST}");

        let dir = tempfile::tempdir().unwrap();
        let made = new_crate("tally", Kind::Value, Some(&dir.path().join("tally"))).unwrap();
        assert!(made.join("sdk/wasmstate-crdt/Cargo.toml").is_file());
        assert!(made.join("sdk/wasmstate-crdt/src/lib.rs").is_file());
        assert!(made.join("sdk/wasmstate-sdk/src/testkit/crdt.rs").is_file());
    }

    #[test]
    fn a_crate_is_not_written_over_a_directory_that_holds_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let error = new_crate("tally", Kind::Value, Some(dir.path())).unwrap_err();
        assert!(error.to_string().ends_with("exists and is not empty"), "{error}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "nothing was written");
    }
}
