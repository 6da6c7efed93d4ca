//! The idle instances a version keeps for its next calls, bounded per
//! version and across all versions together: every idle instance holds one
//! of the pooling allocator's slots, and the slots idle instances may hold
//! are never all of them, so a call to a version without an idle instance
//! can always get a slot unless that many calls really run at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How many instances may be idle across all versions.
pub struct IdleBudget {
    remaining: AtomicUsize,
}

impl IdleBudget {
    /// A budget of `limit` idle instances.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { remaining: AtomicUsize::new(limit) })
    }

    fn try_take(&self) -> bool {
        self.remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    fn put_back(&self, count: usize) {
        self.remaining.fetch_add(count, Ordering::AcqRel);
    }
}

/// One version's idle instances.
pub struct IdlePool<T> {
    idle: Mutex<Vec<T>>,
    max_idle: usize,
    budget: Arc<IdleBudget>,
}

impl<T> IdlePool<T> {
    /// A pool of at most `max_idle` instances, drawn from `budget`.
    pub fn new(max_idle: usize, budget: Arc<IdleBudget>) -> Self {
        Self { idle: Mutex::new(Vec::new()), max_idle, budget }
    }

    /// The budget this pool draws from.
    #[cfg(feature = "bench-hooks")]
    pub fn budget(&self) -> &Arc<IdleBudget> {
        &self.budget
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<T> {
        let instance = self.idle.lock().unwrap().pop();
        if instance.is_some() {
            self.budget.put_back(1);
        }
        instance
    }

    /// Keeps `instance` for a later call if this pool and the budget have
    /// room; drops it (freeing its slot) otherwise.
    pub fn give_back(&self, instance: T) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.max_idle && self.budget.try_take() {
            idle.push(instance);
        }
    }
}

impl<T> Drop for IdlePool<T> {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |idle| idle.len());
        self.budget.put_back(idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_share_the_budget_and_give_it_back() {
        let budget = IdleBudget::new(3);
        let a = IdlePool::new(2, budget.clone());
        let b = IdlePool::new(2, budget.clone());
        a.give_back(1);
        a.give_back(2);
        a.give_back(3);
        assert_eq!(a.idle.lock().unwrap().len(), 2, "at most max_idle per pool");
        b.give_back(4);
        b.give_back(5);
        assert_eq!(b.idle.lock().unwrap().len(), 1, "at most the budget across pools");

        assert_eq!(a.take(), Some(2));
        b.give_back(6);
        assert_eq!(b.idle.lock().unwrap().len(), 2, "a taken instance returns its share");

        drop(a);
        let c = IdlePool::new(2, budget.clone());
        c.give_back(7);
        assert_eq!(c.take(), Some(7), "a dropped pool returns its share");
        assert_eq!(c.take(), None);
        drop((b, c));
        assert_eq!(budget.remaining.load(Ordering::Relaxed), 3);
    }
}
