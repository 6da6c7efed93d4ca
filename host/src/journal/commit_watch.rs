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
use wasmstate_crdt::Crdt;

/// The waiters of one key.
type Watchers<K> = Mutex<HashMap<K, watch::Sender<u64>>>;

/// An entity: its service and id.
type EntityKey = (Arc<str>, Arc<str>);

/// The commits waited for, by entity and by service.
#[derive(Default)]
pub struct CommitWatch {
    entities: Watchers<(Arc<str>, Arc<str>)>,
    services: Watchers<Arc<str>>,
    /// CRDT entities, for their changes on other hosts.
    elsewhere: Watchers<(Arc<str>, Arc<str>)>,
    /// What other hosts changed in the watched CRDT entities, not yet taken.
    inbox: Mutex<HashMap<EntityKey, ChangedElsewhere>>,
}

/// What other hosts committed to one CRDT entity since it last looked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangedElsewhere {
    /// Their changes, to join in any order.
    pub deltas: Vec<Crdt>,
    /// Whether some change came without its delta (a delete, one too large
    /// to announce, or commits that may have gone unheard): read the
    /// entity's rows again instead.
    pub reload: bool,
}

/// The most deltas kept for one entity; past them, it reads its rows again.
const MAX_PENDING_DELTAS: usize = 64;

/// A waiter for the commits of one entity or service; dropping it stops
/// the watching.
pub struct Watching<K: Eq + Hash + Clone> {
    receiver: watch::Receiver<u64>,
    key: K,
    watch: Arc<CommitWatch>,
    pick: fn(&CommitWatch) -> &Watchers<K>,
    /// What goes with the key once its last waiter does.
    forget: fn(&CommitWatch, &K),
}

impl CommitWatch {
    /// Watches the commits that append events to `service/entity`.
    pub fn entity(self: &Arc<Self>, service: &str, entity: &str) -> Watching<(Arc<str>, Arc<str>)> {
        Self::watch(self, (service.into(), entity.into()), |w| &w.entities, |_, _| {})
    }

    /// Watches the changes other hosts commit to the CRDT entity
    /// `service/entity` (this host's own do not wake it).
    pub fn crdt_elsewhere(self: &Arc<Self>, service: &str, entity: &str) -> Watching<(Arc<str>, Arc<str>)> {
        Self::watch(
            self,
            (service.into(), entity.into()),
            |w| &w.elsewhere,
            |w, key| {
                w.inbox.lock().unwrap().remove(key);
            },
        )
    }

    /// Watches the commits that append events to any entity of `service`.
    pub fn service(self: &Arc<Self>, service: &str) -> Watching<Arc<str>> {
        Self::watch(self, service.into(), |w| &w.services, |_, _| {})
    }

    fn watch<K: Eq + Hash + Clone>(
        this: &Arc<Self>,
        key: K,
        pick: fn(&CommitWatch) -> &Watchers<K>,
        forget: fn(&CommitWatch, &K),
    ) -> Watching<K> {
        let receiver =
            pick(this).lock().unwrap().entry(key.clone()).or_insert_with(|| watch::Sender::new(0)).subscribe();
        Watching { receiver, key, watch: this.clone(), pick, forget }
    }

    /// Takes what other hosts changed in the CRDT entity `service/entity`
    /// since it was last taken.
    pub fn take_elsewhere(&self, service: &str, entity: &str) -> ChangedElsewhere {
        let key: (Arc<str>, Arc<str>) = (service.into(), entity.into());
        self.inbox.lock().unwrap().remove(&key).unwrap_or_default()
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
    /// Another host changed the CRDT entity `service/entity` by `delta`
    /// (`None`: read its rows again): keeps it for the entity's waiter, if
    /// it has one, and wakes the waiters of its changes and of its changes
    /// elsewhere.
    pub(super) fn changed_elsewhere(&self, service: &Arc<str>, entity: &Arc<str>, delta: Option<Crdt>) {
        let key = (service.clone(), entity.clone());
        if let Some(sender) = self.entities.lock().unwrap().get(&key) {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
        let elsewhere = self.elsewhere.lock().unwrap();
        if let Some(sender) = elsewhere.get(&key) {
            let mut inbox = self.inbox.lock().unwrap();
            let pending = inbox.entry(key).or_default();
            match delta {
                Some(delta) if !pending.reload && pending.deltas.len() < MAX_PENDING_DELTAS => {
                    pending.deltas.push(delta)
                }
                _ => {
                    pending.reload = true;
                    pending.deltas.clear();
                }
            }
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// Wakes every waiter, as when commits may have gone unheard: an
    /// entity's waiters see [`u64::MAX`] (look again), a service's a new
    /// count.
    pub(super) fn wake_all(&self) {
        for sender in self.entities.lock().unwrap().values() {
            sender.send_replace(u64::MAX);
        }
        let elsewhere = self.elsewhere.lock().unwrap();
        let mut inbox = self.inbox.lock().unwrap();
        for (key, sender) in elsewhere.iter() {
            let pending = inbox.entry(key.clone()).or_default();
            pending.reload = true;
            pending.deltas.clear();
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
            (self.forget)(&self.watch, &self.key);
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

    #[tokio::test]
    async fn changes_elsewhere_wait_for_a_watched_crdt_entity_only() {
        let watch = Arc::new(CommitWatch::default());
        let counter = |n| {
            let change = wasmstate_crdt::Change::Increment(n);
            let mut state = Crdt::empty_for(&change);
            state.apply(&"b".to_string(), &change, 0).unwrap();
            state
        };
        let (service, entity): (Arc<str>, Arc<str>) = ("votes".into(), "v".into());
        watch.changed_elsewhere(&service, &entity, Some(counter(1)));
        assert_eq!(watch.take_elsewhere("votes", "v"), ChangedElsewhere::default(), "nobody watched it");
        let mut watching = watch.crdt_elsewhere("votes", "v");
        watch.changed_elsewhere(&service, &entity, Some(counter(2)));
        watching.changed().await;
        let taken = watch.take_elsewhere("votes", "v");
        assert_eq!(taken, ChangedElsewhere { deltas: vec![counter(2)], reload: false });
        // A change without its delta, too many deltas, or commits that may
        // have gone unheard: read the rows again.
        watch.changed_elsewhere(&service, &entity, None);
        assert!(watch.take_elsewhere("votes", "v").reload);
        for n in 0..=MAX_PENDING_DELTAS as u64 {
            watch.changed_elsewhere(&service, &entity, Some(counter(n)));
        }
        assert_eq!(watch.take_elsewhere("votes", "v"), ChangedElsewhere { deltas: vec![], reload: true });
        watch.wake_all();
        assert!(watch.take_elsewhere("votes", "v").reload);
        watch.changed_elsewhere(&service, &entity, Some(counter(3)));
        drop(watching);
        assert!(watch.inbox.lock().unwrap().is_empty(), "what waited goes with the last waiter");
    }
}
