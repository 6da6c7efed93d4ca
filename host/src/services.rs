//! The registry of deployed services: every version's metadata, and the
//! compiled, pre-instantiated newest version of each service, which new
//! invocations use.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::journal::{Journal, JournalError, VersionMeta};
use crate::metrics::Metrics;
use crate::names::validate_service_name;
use crate::runtime::{CompiledCache, CompiledEntity, ComponentError, EntityKind, Runtime};

/// The version of a service that new invocations run.
pub struct Service {
    /// Its metadata.
    pub meta: VersionMeta,
    /// Its compiled component.
    pub entity: CompiledEntity,
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The service name, or a subscription, is not acceptable.
    #[error("{0}")]
    InvalidName(String),
    /// The deploy contradicts the service's history or kind.
    #[error("{0}")]
    Conflict(String),
    /// The component was refused.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// The journal could not store it.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Compilation could not be run.
    #[error("{0}")]
    Internal(String),
}

/// What `GET /v1/services/{service}` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInfo {
    /// The service name.
    pub service: String,
    /// The kind of entity of the newest version.
    pub kind: String,
    /// The newest version, which invocations use.
    pub version: u32,
    /// The digest of the newest version.
    pub digest: String,
    /// The services the newest version subscribes to.
    pub subscriptions: Vec<String>,
    /// Every deployed version, oldest first.
    pub versions: Vec<VersionMeta>,
}

/// The deployed services.
pub struct Services {
    runtime: Arc<Runtime>,
    journal: Arc<Journal>,
    cache: CompiledCache,
    metrics: Arc<Metrics>,
    current: RwLock<BTreeMap<String, Arc<Service>>>,
    history: RwLock<BTreeMap<String, Vec<VersionMeta>>>,
    /// Held by one deploy or delete at a time, from before it reads the
    /// history until its change is in storage and in memory: its owned guard
    /// moves into the blocking task, which outlives a dropped caller.
    deploying: Arc<tokio::sync::Mutex<()>>,
}

impl Services {
    /// Loads every deployed service from the journal, compiling (or loading
    /// from the cache) the newest version of each.
    pub fn load(
        runtime: Arc<Runtime>,
        journal: Arc<Journal>,
        cache: CompiledCache,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut history: BTreeMap<String, Vec<VersionMeta>> = BTreeMap::new();
        for meta in journal.versions()? {
            history.entry(meta.service.clone()).or_default().push(meta);
        }
        let services = Self {
            runtime,
            journal,
            cache,
            metrics,
            current: RwLock::new(BTreeMap::new()),
            history: RwLock::new(BTreeMap::new()),
            deploying: Arc::new(tokio::sync::Mutex::new(())),
        };
        for (name, versions) in &history {
            let meta = versions.last().expect("a service has at least one version").clone();
            let bytes = services
                .journal
                .component(name, meta.version)?
                .ok_or_else(|| anyhow::anyhow!("component bytes of {name} v{} are missing", meta.version))?;
            // One component this host can no longer run (say, after an
            // upgrade that changed the WIT) must not keep the others down.
            match services.compile_cached(&bytes, &meta.digest) {
                Ok(entity) => {
                    services.current.write().unwrap().insert(name.clone(), Arc::new(Service { meta, entity }));
                }
                Err(error) => {
                    tracing::error!(service = %name, version = meta.version, %error, "cannot load the service; deploy a new version");
                }
            }
        }
        *services.history.write().unwrap() = history;
        Ok(services)
    }

    /// The newest version of a service.
    pub fn get(&self, name: &str) -> Option<Arc<Service>> {
        self.current.read().unwrap().get(name).cloned()
    }

    /// Every (subscriber, source) pair the newest versions declare.
    pub fn subscriptions(&self) -> Vec<(String, String)> {
        let current = self.current.read().unwrap();
        current
            .values()
            .flat_map(|s| s.meta.subscriptions.iter().map(|source| (s.meta.service.clone(), source.clone())))
            .collect()
    }

    /// Every deployed service, by name.
    pub fn list(&self) -> Vec<ServiceInfo> {
        let history = self.history.read().unwrap();
        history.keys().filter_map(|name| describe(name, &history)).collect()
    }

    /// Whether `name` has a deployed version (whether or not it could be
    /// loaded), without building its description.
    pub fn is_deployed(&self, name: &str) -> bool {
        self.history.read().unwrap().get(name).is_some_and(|versions| !versions.is_empty())
    }

    /// One deployed service and all its versions.
    pub fn describe(&self, name: &str) -> Option<ServiceInfo> {
        describe(name, &self.history.read().unwrap())
    }

    /// Deploys `bytes` as the next version of `name`: validates and compiles
    /// it, stores it durably, and makes it the version new invocations use.
    /// An action may subscribe to other services' events. Once it has its
    /// turn, it runs to the end even if the returned future is dropped.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        subscriptions: Vec<String>,
    ) -> Result<VersionMeta, DeployError> {
        self.deploy_inner(name, bytes, subscriptions, false).await
    }

    /// Deploys `bytes` unless the newest version of `name` already has the
    /// same digest and subscriptions.
    pub async fn deploy_if_changed(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        subscriptions: Vec<String>,
    ) -> Result<VersionMeta, DeployError> {
        self.deploy_inner(name, bytes, subscriptions, true).await
    }

    async fn deploy_inner(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        subscriptions: Vec<String>,
        skip_same: bool,
    ) -> Result<VersionMeta, DeployError> {
        validate_service_name(name).map_err(DeployError::InvalidName)?;
        for source in &subscriptions {
            validate_service_name(source).map_err(|e| DeployError::InvalidName(format!("subscription: {e}")))?;
        }
        let one_at_a_time = self.deploying.clone().lock_owned().await;
        let digest = hex(&Sha256::digest(&bytes));
        let latest = self.history.read().unwrap().get(name).and_then(|v| v.last().cloned());
        if skip_same
            && let Some(latest) = latest.as_ref().filter(|m| m.digest == digest && m.subscriptions == subscriptions)
        {
            return Ok(latest.clone());
        }
        let this = self.clone();
        let name = name.to_string();
        // Storage and memory change in the blocking task, which runs to the
        // end even if this future is dropped (say, the client went away).
        tokio::task::spawn_blocking(move || -> Result<_, DeployError> {
            let _one_at_a_time = one_at_a_time;
            let (component, entity) = this.runtime.compile(&bytes)?;
            let kind = entity.kind().as_str();
            if let Some(latest) = latest.as_ref().filter(|m| m.kind != kind) {
                return Err(DeployError::Conflict(format!(
                    "{} is a {} service; a new version must be one too, not {kind}",
                    latest.service, latest.kind
                )));
            }
            if !subscriptions.is_empty() && entity.kind() != EntityKind::Action {
                return Err(DeployError::Conflict(format!(
                    "only an action can subscribe to events, not a {kind} service"
                )));
            }
            let meta = VersionMeta {
                service: name,
                version: latest.map_or(1, |m| m.version + 1),
                digest,
                kind: kind.to_string(),
                size: bytes.len() as u64,
                deployed_at_ms: crate::journal::now_ms(),
                subscriptions,
            };
            this.journal.save_version(&meta, &bytes)?;
            if let Err(error) = this.cache.store(&meta.digest, &component) {
                tracing::warn!(%error, "could not cache compiled component");
            }
            this.history.write().unwrap().entry(meta.service.clone()).or_default().push(meta.clone());
            this.current
                .write()
                .unwrap()
                .insert(meta.service.clone(), Arc::new(Service { meta: meta.clone(), entity }));
            this.metrics.record_deploy();
            tracing::info!(service = %meta.service, version = meta.version, digest = %meta.digest, "deployed");
            Ok(meta)
        })
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))?
    }

    /// Removes a service: every version, so new invocations answer 404. Its
    /// entities' events and states stay in the journal, and a later deploy
    /// under the same name continues from them. Answers how many versions
    /// were removed, or `None` for a service that is not deployed. Once it
    /// has its turn, it runs to the end even if the returned future is dropped.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<Option<usize>, DeployError> {
        let one_at_a_time = self.deploying.clone().lock_owned().await;
        if !self.history.read().unwrap().contains_key(name) {
            return Ok(None);
        }
        let (this, service) = (self.clone(), name.to_string());
        // As in a deploy: storage and memory change in the blocking task.
        let removed = tokio::task::spawn_blocking(move || -> Result<_, DeployError> {
            let _one_at_a_time = one_at_a_time;
            let removed = this.journal.delete_versions(&service)?;
            this.current.write().unwrap().remove(&service);
            this.history.write().unwrap().remove(&service);
            tracing::info!(%service, versions = removed, "deleted");
            Ok(removed)
        })
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))??;
        Ok(Some(removed))
    }

    fn compile_cached(&self, bytes: &[u8], digest: &str) -> Result<CompiledEntity, DeployError> {
        if let Some(component) = self.cache.load(self.runtime.engine(), digest) {
            return Ok(self.runtime.prepare(&component)?);
        }
        let (component, entity) = self.runtime.compile(bytes)?;
        if let Err(error) = self.cache.store(digest, &component) {
            tracing::warn!(%error, "could not cache compiled component");
        }
        Ok(entity)
    }
}

fn describe(name: &str, history: &BTreeMap<String, Vec<VersionMeta>>) -> Option<ServiceInfo> {
    let versions = history.get(name)?;
    let latest = versions.last()?;
    Some(ServiceInfo {
        service: name.to_string(),
        kind: latest.kind.clone(),
        version: latest.version,
        digest: latest.digest.clone(),
        subscriptions: latest.subscriptions.clone(),
        versions: versions.clone(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
