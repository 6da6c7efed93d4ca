//! Compiled machine code kept on disk next to the journal, so a restart does
//! not recompile. Files are keyed by the component's digest and by the
//! engine's compatibility hash, so a different wasmtime or different settings
//! never load stale code. Each file ends with the SHA-256 of the code before
//! it, checked before the code is loaded: a file damaged on disk (a crash
//! mid-write, a bad sector) is recompiled, never run.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The length of the checksum that ends each file.
const CHECKSUM_LEN: usize = 32;

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
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot read compiled component");
                return None;
            }
        };
        let Some(code) = checked_code(&bytes) else {
            tracing::warn!(path = %path.display(), "ignoring damaged compiled component (checksum mismatch)");
            return None;
        };
        // SAFETY: the code is exactly what `store` wrote from
        // `Component::serialize` (its checksum matches) with this same engine
        // configuration (the engine key is in the file's name), in a
        // directory the host owns. wasmtime still checks its header.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "ignoring unusable compiled component");
                None
            }
        }
    }

    /// Stores the compiled form of a component, atomically (write and sync,
    /// then rename).
    pub fn store(&self, digest: &str, component: &Component) -> anyhow::Result<()> {
        let code = component.serialize()?;
        let path = self.path(digest);
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&code)?;
        file.write_all(&Sha256::digest(&code))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// The code of a cache file, if its checksum matches.
fn checked_code(bytes: &[u8]) -> Option<&[u8]> {
    let (code, checksum) = bytes.split_at_checked(bytes.len().checked_sub(CHECKSUM_LEN)?)?;
    (Sha256::digest(code).as_slice() == checksum).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompiledCache::new(dir.path(), &engine).unwrap();
        let component = Component::from_binary(&engine, b"\0asm\x0d\0\x01\0").unwrap();
        cache.store("d1", &component).unwrap();
        assert!(cache.load(&engine, "d1").is_some());
        assert!(cache.load(&engine, "other").is_none());

        let path = cache.path("d1");
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        for damaged in [flipped, good[..good.len() - 1].to_vec(), vec![0; good.len()], Vec::new()] {
            std::fs::write(&path, damaged).unwrap();
            assert!(cache.load(&engine, "d1").is_none());
        }
    }
}
