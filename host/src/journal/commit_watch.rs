//! Who waits for the commits of which entity or service. The writer wakes
//! only those: a commit costs one map lookup per entity and service, not
//! one wake-up per live event stream, however many streams follow other
//! entities.
//!
//! Each watched entity or service has a `watch` channel holding the seq
//! (for a service: the count) of its last durable commit, so a waiter that
//! was busy when a commit landed still sees it changed. A channel goes when
//! its last waiter does.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The waiters of one key.
type Watchers<K> = Mutex<HashMap<K, watch::Sender<u64>>>;

/// The commits waited for, by entity and by service.
#[derive(Default)]
pub struct CommitWatch {
    entities: Watchers<(Arc<str>, Arc<str>)>,
    services: Watchers<Arc<str>>,
    /// CRDT entities, for their changes on other hosts.
    elsewhere: Watchers<(Arc<str>, Arc<str>)>,
}

/// A waiter for the commits of one entity or service; dropping it stops
/// the watching.
pub struct Watching<K: Eq + Hash + Clone> {
    receiver: watch::Receiver<u64>,
    key: K,
    watch: Arc<CommitWatch>,
    pick: fn(&CommitWatch) -> &Watchers<K>,
}

impl CommitWatch {
    /// Watches the commits that append events to `service/entity`.
    pub fn entity(self: &Arc<Self>, service: &str, entity: &str) -> Watching<(Arc<str>, Arc<str>)> {
        Self::watch(self, (service.into(), entity.into()), |w| &w.entities)
    }

    /// Watches the changes other hosts commit to the CRDT entity
    /// `service/entity` (this host's own do not wake it).
    pub fn crdt_elsewhere(self: &Arc<Self>, service: &str, entity: &str) -> Watching<(Arc<str>, Arc<str>)> {
        Self::watch(self, (service.into(), entity.into()), |w| &w.elsewhere)
    }

    /// Watches the commits that append events to any entity of `service`.
    pub fn service(self: &Arc<Self>, service: &str) -> Watching<Arc<str>> {
        Self::watch(self, service.into(), |w| &w.services)
    }

    fn watch<K: Eq + Hash + Clone>(this: &Arc<Self>, key: K, pick: fn(&CommitWatch) -> &Watchers<K>) -> Watching<K> {
        let receiver =
            pick(this).lock().unwrap().entry(key.clone()).or_insert_with(|| watch::Sender::new(0)).subscribe();
        Watching { receiver, key, watch: this.clone(), pick }
    }

    /// Wakes the waiters of `service/entity`, whose log now ends at
    /// `last_seq`, and of `service`.
    pub(super) fn committed(&self, service: &Arc<str>, entity: &Arc<str>, last_seq: u64) {
        if let Some(sender) = self.entities.lock().unwrap().get(&(service.clone(), entity.clone())) {
            sender.send_replace(last_seq);
        }
        if let Some(sender) = self.services.lock().unwrap().get(service) {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
    }
}

impl CommitWatch {
    /// Wakes the waiters of the CRDT entity `service/entity`, which another
    /// host changed: those of its changes and those of its changes
    /// elsewhere.
    pub(super) fn changed_elsewhere(&self, service: &Arc<str>, entity: &Arc<str>) {
        let key = (service.clone(), entity.clone());
        for watchers in [&self.entities, &self.elsewhere] {
            if let Some(sender) = watchers.lock().unwrap().get(&key) {
                sender.send_modify(|count| *count = count.wrapping_add(1));
            }
        }
    }

    /// Wakes every waiter, as when commits may have gone unheard: an
    /// entity's waiters see [`u64::MAX`] (look again), a service's a new
    /// count.
    pub(super) fn wake_all(&self) {
        for sender in self.entities.lock().unwrap().values() {
            sender.send_replace(u64::MAX);
        }
        for sender in self.elsewhere.lock().unwrap().values() {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
        for sender in self.services.lock().unwrap().values() {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
    }
}

impl<K: Eq + Hash + Clone> Watching<K> {
    /// Waits for the next commit after the last one seen; answers the seq
    /// the entity's log ends at (for a service, a count of its commits;
    /// [`u64::MAX`] when commits may have gone unheard, see
    /// [`CommitWatch::wake_all`]).
    pub async fn changed(&mut self) -> u64 {
        // The sender lives as long as a waiter does, so this never ends early.
        let _ = self.receiver.changed().await;
        *self.receiver.borrow_and_update()
    }
}

impl<K: Eq + Hash + Clone> Drop for Watching<K> {
    fn drop(&mut self) {
        let mut watchers = (self.pick)(&self.watch).lock().unwrap();
        // Ours is the last receiver: the channel goes with it.
        if watchers.get(&self.key).is_some_and(|sender| sender.receiver_count() <= 1) {
            watchers.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_watchers_of_a_committed_entity_wake() {
        let watch = Arc::new(CommitWatch::default());
        let mut cart = watch.entity("shop", "cart");
        let mut other = watch.entity("shop", "other");
        let mut shop = watch.service("shop");
        watch.committed(&"shop".into(), &"cart".into(), 3);
        assert_eq!(cart.changed().await, 3);
        assert_eq!(shop.changed().await, 1);
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), other.changed()).await;
        assert!(woke.is_err(), "another entity's commit does not wake it");
        drop((cart, other, shop));
        assert!(watch.entities.lock().unwrap().is_empty() && watch.services.lock().unwrap().is_empty());
    }
}
