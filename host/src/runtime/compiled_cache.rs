//! Compiled machine code kept on disk next to the journal, so a restart does
//! not recompile. Files are keyed by the component's digest and by the
//! engine's compatibility hash, so a different wasmtime or different settings
//! never load stale code.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// A directory of serialized, precompiled components.
pub struct CompiledCache {
    dir: PathBuf,
    engine_key: u64,
}

impl CompiledCache {
    /// Uses (and creates) `dir` for components compiled by `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir: dir.to_path_buf(), engine_key: hasher.finish() })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{:016x}.cwasm", self.engine_key))
    }

    /// Loads the compiled form of the component with `digest`, if cached and usable.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` from `Component::serialize`
        // of this same engine configuration (the engine key is in its name),
        // in a directory the host owns. wasmtime still checks its header.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "ignoring unusable compiled component");
                None
            }
        }
    }

    /// Stores the compiled form of a component, atomically (write, then rename).
    pub fn store(&self, digest: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize()?;
        let path = self.path(digest);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}
