//! Versions other hosts deployed or deleted on a journal they share with
//! this one, taken in by this host: polled every [`POLL`], so a version
//! deployed on one host takes traffic on every host within a second.
//!
//! A new version compiles (or loads from the cache) outside the deploys'
//! lock, then goes live under it, unless this host deployed or deleted
//! something meanwhile (then the next poll looks again). A service deleted
//! elsewhere stops taking traffic here.

use std::sync::Arc;
use std::time::Duration;

use super::{Service, Services, by_service, compile_cached, stored_bytes};
use crate::journal::VersionMeta;
use crate::runtime::CompiledService;

/// How often the journal's versions are compared with this host's.
pub const POLL: Duration = Duration::from_millis(400);

impl Services {
    /// Takes in what other hosts deployed or deleted since this host last
    /// looked; answers whether anything changed.
    pub async fn pick_up(&self) -> anyhow::Result<bool> {
        // This host's own deploys and deletes count changes under the
        // deploys' lock: one made while the journal was read wins this
        // round, and the next round looks again.
        let seen = *self.changes.borrow();
        let journal = self.journal.clone();
        let stored_history = by_service(tokio::task::spawn_blocking(move || journal.versions()).await??);
        if *self.history.read().unwrap() == stored_history {
            return Ok(false);
        }
        // Compile what is new here, outside the lock other deploys need.
        let mut loaded = Vec::new();
        for (name, versions) in &stored_history {
            let newest = versions.last().expect("a service has at least one version").clone();
            if self.get(name).is_some_and(|s| s.meta.version >= newest.version) {
                continue;
            }
            let (runtime, cache, journal) = (self.runtime.clone(), self.cache.clone(), self.journal.clone());
            let version = newest.version;
            let service = tokio::task::spawn_blocking(move || -> anyhow::Result<(VersionMeta, CompiledService)> {
                let bytes = stored_bytes(&*journal, &newest)?;
                let compiled = compile_cached(&runtime, &cache, &bytes, &newest.digest)?;
                Ok((newest, compiled))
            })
            .await?;
            match service {
                Ok((meta, compiled)) => loaded.push(Service::new(meta, compiled, &self.http, &self.metrics)),
                Err(error) => {
                    tracing::error!(service = %name, version, %error, "cannot load a version another host deployed")
                }
            }
        }
        let _one_at_a_time = self.deploying.lock().await;
        if *self.changes.borrow() != seen {
            return Ok(false);
        }
        {
            let mut current = self.current.write().unwrap();
            current.retain(|name, _| stored_history.contains_key(name));
            for service in loaded {
                tracing::info!(service = %service.meta.service, version = service.meta.version,
                    "took in a version another host deployed");
                current.insert(service.meta.service.clone(), Arc::new(service));
            }
        }
        *self.history.write().unwrap() = stored_history;
        self.changes.send_modify(|n| *n += 1);
        Ok(true)
    }
}

/// How many polls apart the journal reads its books again
/// ([`crate::journal::EntityStore::reread_books`]).
const BOOKS_EVERY: u32 = 12;

/// Polls the journal for versions other hosts deployed (and, less often,
/// for the outbox counts and retention policies they changed), until the
/// host stops.
pub fn spawn(services: Arc<Services>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        for poll in 1u32.. {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(error) = services.pick_up().await {
                tracing::warn!(%error, "cannot read the versions other hosts deployed");
            }
            if poll % BOOKS_EVERY == 0 {
                let journal = services.journal.clone();
                match tokio::task::spawn_blocking(move || journal.reread_books()).await {
                    Ok(Err(error)) => tracing::warn!(%error, "cannot read the journal's outbox counts and retention"),
                    Err(error) => tracing::warn!(%error, "reading the journal's books stopped"),
                    Ok(Ok(())) => {}
                }
            }
        }
    });
}
