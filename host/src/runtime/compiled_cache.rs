//! Compiled machine code kept on disk next to the journal, so a restart does
//! not recompile. Files are named by the component's digest and by the
//! engine's compatibility hash, so a different wasmtime or different settings
//! never load stale code. Each file ends with an HMAC-SHA-256 of the code
//! that binds it to its component's digest and to this engine, keyed by a
//! secret the journal keeps ([`crate::journal::Journal::compiled_cache_key`]),
//! checked before the code is loaded: a file damaged on disk (a crash
//! mid-write, a bad sector), another component's code renamed into place, or
//! a file made for another journal is recompiled, never run.

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
    key: [u8; 32],
}

impl CompiledCache {
    /// Uses (and creates) `dir` for components compiled by `engine`, their
    /// checksums keyed by `key`.
    pub fn new(dir: &Path, engine: &Engine, key: [u8; 32]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir: dir.to_path_buf(), engine_key: hasher.finish(), key })
    }

    /// The checksum of `code` as the compiled form of the component with
    /// `digest`: HMAC-SHA-256 under the cache's key of the digest, the
    /// engine's hash and the code.
    fn checksum(&self, digest: &str, code: &[u8]) -> [u8; CHECKSUM_LEN] {
        let mut message = Sha256::new();
        message.update((digest.len() as u64).to_le_bytes());
        message.update(digest.as_bytes());
        message.update(self.engine_key.to_le_bytes());
        message.update(code);
        hmac_sha256(&self.key, &message.finalize())
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
        let Some(code) = self.checked_code(digest, &bytes) else {
            tracing::warn!(path = %path.display(), "ignoring a compiled component whose checksum does not match");
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
        file.write_all(&self.checksum(digest, &code))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

impl CompiledCache {
    /// The code of a cache file, if its checksum says it is the compiled
    /// form of the component with `digest`.
    fn checked_code<'a>(&self, digest: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let (code, checksum) = bytes.split_at_checked(bytes.len().checked_sub(CHECKSUM_LEN)?)?;
        (self.checksum(digest, code) == checksum).then_some(code)
    }
}

/// HMAC-SHA-256 (RFC 2104) of a 32-byte digest under a 32-byte key.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut inner = [0x36u8; BLOCK];
    let mut outer = [0x5cu8; BLOCK];
    for (i, byte) in key.iter().enumerate() {
        inner[i] ^= byte;
        outer[i] ^= byte;
    }
    let inner_hash = Sha256::new().chain_update(inner).chain_update(message).finalize();
    Sha256::new().chain_update(outer).chain_update(inner_hash).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompiledCache::new(dir.path(), &engine, [7; 32]).unwrap();
        let component = Component::from_binary(&engine, b"\0asm\x0d\0\x01\0").unwrap();
        cache.store("d1", &component).unwrap();
        assert!(cache.load(&engine, "d1").is_some());
        assert!(cache.load(&engine, "other").is_none());

        // Another component's file renamed into place is not this one's.
        cache.store("d2", &component).unwrap();
        std::fs::copy(cache.path("d2"), cache.path("d3")).unwrap();
        assert!(cache.load(&engine, "d3").is_none(), "bound to its digest");
        // Nor is a file made under another journal's key.
        let other = CompiledCache::new(dir.path(), &engine, [8; 32]).unwrap();
        assert!(other.load(&engine, "d1").is_none(), "bound to the journal's key");

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
