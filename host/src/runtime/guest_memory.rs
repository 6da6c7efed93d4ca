//! What guests' linear memories may take: each instance at most
//! `--max-guest-memory`, and all of them together at most
//! `--max-total-guest-memory`, so many guests growing at once get a prompt
//! 503 instead of the host meeting the kernel's OOM killer. An instance's
//! share is held from the moment its memory grows until its store drops
//! (an idle instance keeps its memory, so it keeps its share).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

/// The bytes of linear memory all guests may hold together.
#[derive(Debug)]
pub struct HostMemory {
    used: AtomicUsize,
    max: usize,
}

impl HostMemory {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), max })
    }

    /// The budget a machine can afford: half of its memory (or of its
    /// cgroup's limit, if lower), or no limit if neither can be read.
    pub fn default_max() -> usize {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        });
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|max| max.trim().parse().ok());
        match (total, cgroup) {
            (Some(a), Some(b)) => a.min(b) / 2,
            (Some(a), None) | (None, Some(a)) => a / 2,
            (None, None) => usize::MAX,
        }
    }

    /// The bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|n| *n <= self.max)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Caps one instance's linear memories, holds their share of the host's
/// budget, and remembers which cap a growth hit.
pub struct MemoryLimiter {
    max_bytes: usize,
    host: Arc<HostMemory>,
    /// The bytes of the host's budget this instance holds.
    held: usize,
    /// Set when the guest asked for more memory than one instance may have.
    pub exceeded: bool,
    /// Set when the host's budget had no room for the growth.
    pub host_full: bool,
}

impl MemoryLimiter {
    /// A limiter of `max_bytes` per instance, within `host`.
    pub fn new(max_bytes: usize, host: Arc<HostMemory>) -> Self {
        Self { max_bytes, host, held: 0, exceeded: false, host_full: false }
    }

    /// The bytes of linear memory the instance holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Forgets which cap the last call hit.
    pub fn start_call(&mut self) {
        self.exceeded = false;
        self.host_full = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        if !self.host.try_take(growth) {
            self.host_full = true;
            return Ok(false);
        }
        self.held += growth;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.host.give_back(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_share_the_host_budget_and_give_it_back() {
        let host = HostMemory::new(10);
        let mut a = MemoryLimiter::new(8, host.clone());
        let mut b = MemoryLimiter::new(8, host.clone());
        assert!(a.memory_growing(0, 6, None).unwrap());
        assert!(!b.memory_growing(0, 6, None).unwrap() && b.host_full && !b.exceeded);
        assert!(!a.memory_growing(6, 9, None).unwrap() && a.exceeded, "past one instance's cap");
        assert!(b.memory_growing(0, 4, None).unwrap());
        assert_eq!(host.used(), 10);
        drop(a);
        assert_eq!(host.used(), 4);
        drop(b);
        assert_eq!(host.used(), 0);
    }
}
