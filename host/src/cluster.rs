//! The hosts that share this host's journal, as their heartbeats say.
//!
//! Each host makes an id when it starts and records a heartbeat in the
//! journal every [`HEARTBEAT`], with the URL other hosts reach it at
//! (`--advertise-url`, by default `http://` and the address it listens
//! on). A host whose last heartbeat is older than `--host-timeout` is taken
//! for dead; one that stops says so at once. On a journal of one host
//! (redb) there are no heartbeats: the cluster is this host alone.
//!
//! Each entity has an owner among the live hosts, by rendezvous hashing of
//! the host ids with the entity: every host that sees the same live hosts
//! picks the same owner, and a host that joins or leaves moves only its
//! share of the entities. Commands go to the owner
//! ([`crate::http::forward`]), so one host caches an entity and its
//! commits rarely conflict; correctness never depends on it.
//!
//! A host also holds leases on work done once for the whole cluster
//! ([`crate::leases`]); it lets them go when it stops, as it forgets its
//! heartbeat, so another host takes them over at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::journal::{HostRecord, Journal, Lease, host_tag, now_ms};

/// How often a host records that it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// This host's place among the hosts of its journal.
pub struct Membership {
    id: String,
    /// The other live hosts, as of the last heartbeat.
    peers: RwLock<Vec<HostRecord>>,
    url: RwLock<String>,
    /// Woken when the URL becomes known, for a heartbeat at once.
    url_known: tokio::sync::Notify,
    journal: Arc<dyn Journal>,
    host_timeout: Duration,
    /// The leases this host holds, by name.
    leases: Mutex<HashMap<String, Lease>>,
}

/// A live host, as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Host {
    /// Its id, URL and last heartbeat.
    #[serde(flatten)]
    pub record: HostRecord,
    /// Whether it is the host answering.
    #[serde(rename = "self")]
    pub is_self: bool,
}

impl Membership {
    /// This host, reached at `url` (empty until it is known, see
    /// [`listening_on`](Self::listening_on)), on `journal`.
    pub fn new(url: Option<String>, journal: Arc<dyn Journal>, host_timeout: Duration) -> Arc<Self> {
        let id = format!("{:016x}", host_tag());
        let url = RwLock::new(url.unwrap_or_default());
        let peers = RwLock::new(Vec::new());
        let url_known = tokio::sync::Notify::new();
        Arc::new(Self { id, peers, url, url_known, journal, host_timeout, leases: Mutex::default() })
    }

    /// This host's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host listens on `addr`: without an `--advertise-url`, other
    /// hosts reach it there.
    pub fn listening_on(&self, addr: std::net::SocketAddr) {
        let mut url = self.url.write().unwrap();
        if url.is_empty() {
            if addr.ip().is_unspecified() {
                tracing::warn!(%addr, "listening on every address: set --advertise-url so other hosts can reach this one");
            }
            *url = format!("http://{addr}");
        }
        self.url_known.notify_one();
    }

    /// The host that owns `service/entity`, when it is another one.
    pub fn owner_elsewhere(&self, service: &str, entity: &str) -> Option<HostRecord> {
        let peers = self.peers.read().unwrap();
        let score = |id: &str| score(id, service, entity);
        let mine = score(&self.id);
        peers.iter().filter(|peer| !peer.url.is_empty()).max_by_key(|peer| score(&peer.id)).and_then(|best| {
            let theirs = score(&best.id);
            (theirs > mine || theirs == mine && best.id > self.id).then(|| best.clone())
        })
    }

    /// Reads the live hosts again.
    fn refresh_peers(&self) -> anyhow::Result<()> {
        let since = now_ms().saturating_sub(self.host_timeout.as_millis() as u64);
        let mut others = self.journal.hosts(since)?;
        others.retain(|host| host.id != self.id);
        *self.peers.write().unwrap() = others;
        Ok(())
    }

    /// This host's heartbeat as of now.
    fn record(&self) -> HostRecord {
        HostRecord { id: self.id.clone(), url: self.url.read().unwrap().clone(), last_seen_ms: now_ms() }
    }

    /// This host now holds `lease`.
    pub fn holding(&self, lease: &Lease) {
        self.leases.lock().unwrap().insert(lease.name.clone(), lease.clone());
    }

    /// This host no longer holds `lease`.
    pub fn let_go(&self, lease: &Lease) {
        let mut leases = self.leases.lock().unwrap();
        if leases.get(&lease.name) == Some(lease) {
            leases.remove(&lease.name);
        }
    }

    /// Says this host is gone: lets its leases go and forgets its
    /// heartbeat, so the other hosts take over its work and its entities at
    /// once. Blocks on the journal.
    pub fn leave(&self) {
        let held: Vec<Lease> = self.leases.lock().unwrap().drain().map(|(_, lease)| lease).collect();
        for lease in held {
            if let Err(error) = self.journal.release_lease(&lease) {
                tracing::debug!(%error, lease = %lease.name, "cannot let a lease go");
            }
        }
        if let Err(error) = self.journal.leave(&self.id) {
            tracing::debug!(%error, "cannot forget this host's heartbeat");
        }
    }

    /// The live hosts, this one first and always there, as this host saw
    /// them at its last heartbeat: the hosts it routes commands to.
    pub fn live(&self) -> Vec<Host> {
        let me = Host { record: self.record(), is_self: true };
        let peers = self.peers.read().unwrap();
        let others = peers.iter().map(|record| Host { record: record.clone(), is_self: false });
        std::iter::once(me).chain(others).collect()
    }
}

/// Records this host's heartbeat every [`HEARTBEAT`], from when its URL is
/// known, until the host stops; then forgets it, so the others stop
/// counting on it at once.
pub fn spawn_heartbeat(membership: Arc<Membership>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            let beating = membership.clone();
            let beat = move || -> anyhow::Result<()> {
                let record = beating.record();
                if !record.url.is_empty() {
                    beating.journal.heartbeat(&record)?;
                }
                beating.refresh_peers()
            };
            match tokio::task::spawn_blocking(beat).await {
                Ok(Err(error)) => tracing::warn!(%error, "cannot record this host's heartbeat"),
                Err(error) => tracing::warn!(%error, "recording this host's heartbeat stopped"),
                Ok(Ok(())) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(HEARTBEAT) => {}
                () = membership.url_known.notified() => {}
                _ = shutdown.changed() => break,
            }
        }
        // The leases are let go as their work stops (and by `leave`, once
        // the host drained); the others stop routing here at once.
        let _ = tokio::task::spawn_blocking(move || membership.journal.leave(&membership.id)).await;
    });
}

/// Host `id`'s rendezvous score for `service/entity`: the highest owns it.
/// The same on every host and every build.
fn score(id: &str, service: &str, entity: &str) -> u64 {
    // FNV-1a alone barely orders hosts differently for entities whose names
    // differ in their last bytes; MurmurHash3's finalizer mixes every bit.
    let mut k = fnv1a([id.as_bytes(), b"\0", service.as_bytes(), b"\0", entity.as_bytes()]);
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The 64-bit FNV-1a hash of `parts`, one after the other.
fn fnv1a<const N: usize>(parts: [&[u8]; N]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a([b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a([b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a([b"foo", b"bar"]), fnv1a([b"foobar"]));
    }

    #[test]
    fn three_hosts_own_a_third_of_the_entities_each() {
        let ids = ["d51b1fdb27c3823a", "d6bf58e460c00991", "5491961c57ad1fdb"];
        let mut owned = [0; 3];
        for n in 0..3_000 {
            let entity = format!("cart-{n:04}");
            let owner = (0..3).max_by_key(|&i| score(ids[i], "cart", &entity)).unwrap();
            owned[owner] += 1;
        }
        assert!(owned.iter().all(|&n| (900..1_100).contains(&n)), "{owned:?}");
    }
}
