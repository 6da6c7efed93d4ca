//! A redb storage backend that fails on demand, for fault-injection tests
//! of the journal and of the whole host (`server::open_with_database`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::backends::InMemoryBackend;

/// An in-memory redb backend whose writes, resizes and syncs fail with an
/// I/O error while its switch ([`FailingStorage::switch`]) is on.
#[derive(Debug, Default)]
pub struct FailingStorage {
    inner: InMemoryBackend,
    failing: Arc<AtomicBool>,
}

impl FailingStorage {
    /// The switch: set it to make every write fail, clear it to let them through.
    pub fn switch(&self) -> Arc<AtomicBool> {
        self.failing.clone()
    }

    fn check(&self) -> std::io::Result<()> {
        if self.failing.load(Ordering::SeqCst) { Err(std::io::Error::other("injected disk failure")) } else { Ok(()) }
    }
}

impl redb::StorageBackend for FailingStorage {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
}
