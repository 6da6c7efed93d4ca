//! A redb storage backend that fails on demand, for fault-injection tests
//! of the journal and of the whole host (`server::open_with_database`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::backends::InMemoryBackend;

/// An in-memory redb backend whose writes, resizes and syncs fail with an
/// I/O error while its switch ([`FailingStorage::switch`]) is on, and panic
/// while its other switch ([`FailingStorage::panic_switch`]) is.
#[derive(Debug, Default)]
pub struct FailingStorage {
    inner: InMemoryBackend,
    failing: Arc<AtomicBool>,
    panicking: Arc<AtomicBool>,
}

impl FailingStorage {
    /// The switch: set it to make every write fail, clear it to let them through.
    pub fn switch(&self) -> Arc<AtomicBool> {
        self.failing.clone()
    }

    /// The panic switch: set it to make every write panic, as redb itself
    /// does on some damaged files.
    pub fn panic_switch(&self) -> Arc<AtomicBool> {
        self.panicking.clone()
    }

    fn check(&self) -> std::io::Result<()> {
        assert!(!self.panicking.load(Ordering::SeqCst), "injected panic in the storage backend");
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
