//! A redb storage backend that fails on demand, for fault-injection tests
//! of the journal and of the whole host (`open_with_storage`). Clones share
//! one in-memory file, so the database can be opened again on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::backends::InMemoryBackend;

/// An in-memory redb backend that fails while one of its switches is on:
/// writes, resizes and syncs with an I/O error ([`switch`](Self::switch))
/// or with "no space left on device" ([`disk_full`](Self::disk_full)),
/// reads with an I/O error ([`read_switch`](Self::read_switch)), and
/// writes by panicking ([`panic_switch`](Self::panic_switch)).
#[derive(Debug, Default, Clone)]
pub struct FailingStorage {
    inner: Arc<InMemoryBackend>,
    failing: Arc<AtomicBool>,
    full: Arc<AtomicBool>,
    failing_reads: Arc<AtomicBool>,
    panicking: Arc<AtomicBool>,
}

// The unit tests use one switch; the fault-injection tests use them all.
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
impl FailingStorage {
    /// The switch: set it to make every write fail, clear it to let them through.
    pub fn switch(&self) -> Arc<AtomicBool> {
        self.failing.clone()
    }

    /// The disk-full switch: every write fails with `ENOSPC` while it is on.
    pub fn disk_full(&self) -> Arc<AtomicBool> {
        self.full.clone()
    }

    /// The read switch: every read fails while it is on.
    pub fn read_switch(&self) -> Arc<AtomicBool> {
        self.failing_reads.clone()
    }

    /// The panic switch: set it to make every write panic, as redb itself
    /// does on some damaged files.
    pub fn panic_switch(&self) -> Arc<AtomicBool> {
        self.panicking.clone()
    }

    fn check(&self) -> std::io::Result<()> {
        assert!(!self.panicking.load(Ordering::SeqCst), "injected panic in the storage backend");
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected disk failure"));
        }
        Ok(())
    }
}

impl redb::StorageBackend for FailingStorage {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        if self.failing_reads.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected read failure"));
        }
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
