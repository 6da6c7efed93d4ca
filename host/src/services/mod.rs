//! The registry of deployed services: every version's metadata, and the
//! compiled, pre-instantiated newest version of each service, which new
//! invocations use. `upgrade.rs` holds what checks a new version against
//! the stored entities, and rollbacks; `pickup.rs` what takes in the
//! versions other hosts on the same journal deployed.

mod pickup;
mod upgrade;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::domain::ServiceKind;
use crate::finish_on_drop::FinishOnDrop;
use crate::journal::{Journal, JournalError, NewVersion, Retention, VersionMeta};
use crate::metrics::Metrics;
use crate::names::validate_service_name;
use crate::outbound::{AllowList, AllowListError, HttpPolicy};
use crate::runtime::{CompiledCache, CompiledService, ComponentError, Runtime};
use crate::verify::{Progress, Report, VerifyOptions};
pub use pickup::spawn as spawn_pickup;

/// How many components may compile at once: compiling a large one takes
/// seconds and much memory.
const COMPILE_SLOTS: usize = 2;

/// The version of a service that new invocations run.
pub struct Service {
    /// Its metadata.
    pub meta: VersionMeta,
    /// Its compiled component.
    pub compiled: CompiledService,
}

impl Service {
    /// Version `meta`, its calls sending what `http` grants it over HTTP.
    pub fn new(meta: VersionMeta, compiled: CompiledService, http: &HttpPolicy, metrics: &Arc<Metrics>) -> Self {
        let compiled = compiled.with_http(Some(http.grant(&meta, metrics)));
        Self { meta, compiled }
    }

    /// The kind of service it is.
    pub fn kind(&self) -> ServiceKind {
        self.meta.kind
    }
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
    /// The new version could not rebuild every stored entity checked (or,
    /// under `strict`, a probe's replies differed): it does not take
    /// traffic, and the version serving keeps serving.
    #[error("the new version was refused: {} of {} entities checked could not be rebuilt{}", .0.failed_total, .0.checked, strict_note(.0))]
    UpgradeRejected(Box<Report>),
    /// The allow-list asks for a host beyond the server's cap.
    #[error("{0}")]
    HttpNotAllowed(#[from] AllowListError),
    /// The host had no room to finish the work; retry.
    #[error("{0}")]
    Busy(String),
    /// The version to roll back to does not exist.
    #[error("{0}")]
    NoSuchVersion(String),
    /// The journal could not store it.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Compilation could not be run.
    #[error("{0}")]
    Internal(String),
}

fn strict_note(report: &Report) -> String {
    let mut note = String::new();
    if report.differences_total > 0 {
        note.push_str(&format!(", {} probe replies differed", report.differences_total));
    }
    if report.state_differences_total > 0 {
        note.push_str(&format!(
            ", {} entities fold to another state from event 1 than from their snapshot",
            report.state_differences_total
        ));
    }
    note
}

/// A version to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The service name.
    pub service: String,
    /// The component.
    pub bytes: Vec<u8>,
    /// For an action: the services whose events it subscribes to.
    pub subscriptions: Vec<String>,
    /// Check the stored entities with it before it takes traffic.
    pub verify: Option<VerifyOptions>,
    /// How much history the service keeps from now on (`None`: as before).
    pub retain: Option<Retention>,
    /// The hosts its guests may send HTTP requests and webhooks to.
    pub allow_http: AllowList,
}

impl DeployRequest {
    /// A deploy of `bytes` as `service`, unverified, with no HTTP.
    pub fn new(service: String, bytes: Vec<u8>, subscriptions: Vec<String>) -> Self {
        Self { service, bytes, subscriptions, verify: None, retain: None, allow_http: AllowList::default() }
    }
}

/// What a deploy made: the new version, and what its verification found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deployed {
    /// The new version.
    #[serde(flatten)]
    pub meta: VersionMeta,
    /// The report of the check against the stored entities, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Report>,
}

/// What `GET /v1/services/{service}` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceInfo {
    /// The service name.
    pub service: String,
    /// The kind of the newest version.
    pub kind: ServiceKind,
    /// The newest version, which invocations use.
    pub version: u32,
    /// The digest of the newest version.
    pub digest: String,
    /// The services the newest version subscribes to.
    pub subscriptions: Vec<String>,
    /// The hosts the newest version's guests may send HTTP requests and
    /// webhooks to (empty: none).
    pub allow_http: Vec<String>,
    /// Every deployed version, oldest first.
    pub versions: Vec<VersionMeta>,
    /// How much of its entities' history the service keeps: `all` or `snapshots:K`.
    #[schema(value_type = String, example = "all")]
    pub retain: Retention,
}

/// The deployed services.
pub struct Services {
    runtime: Arc<Runtime>,
    journal: Arc<dyn Journal>,
    cache: Arc<CompiledCache>,
    metrics: Arc<Metrics>,
    /// What services may send over HTTP.
    http: HttpPolicy,
    current: RwLock<BTreeMap<String, Arc<Service>>>,
    history: RwLock<BTreeMap<String, Vec<VersionMeta>>>,
    /// Held by one deploy or delete at a time, from before it reads the
    /// history until its change is in storage and in memory; never while
    /// compiling.
    deploying: tokio::sync::Mutex<()>,
    /// How many components may compile at once.
    compiling: tokio::sync::Semaphore,
    /// Counts the deploys and deletes, so others can follow the changes.
    changes: watch::Sender<u64>,
    /// The verifications running, by service.
    verifying: Mutex<HashMap<String, Arc<Progress>>>,
}

impl Services {
    /// Loads every deployed service from the journal, compiling (or loading
    /// from the cache) the newest version of each.
    pub fn load(
        runtime: Arc<Runtime>,
        journal: Arc<dyn Journal>,
        cache: CompiledCache,
        metrics: Arc<Metrics>,
        http: HttpPolicy,
    ) -> anyhow::Result<Self> {
        let history = by_service(journal.versions()?);
        let mut current = BTreeMap::new();
        let cache = Arc::new(cache);
        for (name, versions) in &history {
            let meta = versions.last().expect("a service has at least one version").clone();
            let bytes = stored_bytes(&*journal, &meta)?;
            // One component this host can no longer run (say, after an
            // upgrade that changed the WIT) must not keep the others down.
            match compile_cached(&runtime, &cache, &bytes, &meta.digest) {
                Ok(compiled) => {
                    current.insert(name.clone(), Arc::new(Service::new(meta, compiled, &http, &metrics)));
                }
                Err(error) => {
                    tracing::error!(service = %name, version = meta.version, %error, "cannot load the service; deploy a new version");
                }
            }
        }
        Ok(Self {
            runtime,
            journal,
            cache,
            metrics,
            http,
            current: RwLock::new(current),
            history: RwLock::new(history),
            deploying: tokio::sync::Mutex::new(()),
            compiling: tokio::sync::Semaphore::new(COMPILE_SLOTS),
            changes: watch::Sender::new(0),
            verifying: Mutex::new(HashMap::new()),
        })
    }

    /// The newest version of a service.
    pub fn get(&self, name: &str) -> Option<Arc<Service>> {
        self.current.read().unwrap().get(name).cloned()
    }

    /// The hosts a webhook that version `committed_by` of `service` asked
    /// for may reach now: the allow-list of the service's newest version
    /// (within the server's cap). `Err`, saying why, while this host has not
    /// loaded that version (deployed on another host moments ago) or the
    /// service at all: the webhook waits rather than be judged by an older
    /// list.
    pub fn webhook_allow_list(&self, service: &str, committed_by: u32) -> Result<AllowList, String> {
        let newest = self.history.read().unwrap().get(service).and_then(|versions| versions.last().cloned());
        match newest {
            Some(meta) if meta.version >= committed_by => Ok(self.http.allow_list_of(&meta)),
            Some(meta) => Err(format!(
                "version {committed_by} of {service} is not loaded on this host yet (it has {})",
                meta.version
            )),
            None => Err(format!("{service} is not deployed on this host")),
        }
    }

    /// The newest version of every service that can run, by name.
    pub fn running(&self) -> Vec<VersionMeta> {
        self.current.read().unwrap().values().map(|s| s.meta.clone()).collect()
    }

    /// Every (subscriber, source) pair the newest versions declare.
    pub fn subscriptions(&self) -> Vec<(String, String)> {
        let current = self.current.read().unwrap();
        current
            .values()
            .flat_map(|s| s.meta.subscriptions.iter().map(|source| (s.meta.service.clone(), source.clone())))
            .collect()
    }

    /// Whether `name` had versions that were all deleted (as opposed to
    /// never having been deployed, or being deployed right now: a deploy
    /// stores its version before the version takes traffic, and meanwhile
    /// the name is not deleted).
    pub fn was_deleted(&self, name: &str) -> bool {
        // Holding the deploys' lock, no version is stored but not yet running.
        let Ok(_no_deploy_under_way) = self.deploying.try_lock() else { return false };
        !self.is_deployed(name) && self.journal.last_version(name).is_ok_and(|last| last > 0)
    }

    /// Changes whenever a deploy or delete has taken effect.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every deployed service, by name.
    pub fn list(&self) -> Vec<ServiceInfo> {
        let history = self.history.read().unwrap();
        history.keys().filter_map(|name| describe(name, &history, self.journal.retention(name))).collect()
    }

    /// Whether `name` has a deployed version (whether or not it could be
    /// loaded), without building its description.
    pub fn is_deployed(&self, name: &str) -> bool {
        self.history.read().unwrap().get(name).is_some_and(|versions| !versions.is_empty())
    }

    /// One deployed service and all its versions.
    pub fn describe(&self, name: &str) -> Option<ServiceInfo> {
        describe(name, &self.history.read().unwrap(), self.journal.retention(name))
    }

    /// Deploys the request's component as the next version of its service:
    /// validates and compiles it, checks the stored entities with it when
    /// asked to, stores it durably, and makes it the version new invocations
    /// use. An action may subscribe to other services' events. Once
    /// started, it runs to the end even if the returned future is dropped.
    pub async fn deploy(self: &Arc<Self>, request: DeployRequest) -> Result<Deployed, DeployError> {
        let this = self.clone();
        let deployed = FinishOnDrop::new(async move { this.deploy_now(request, false).await });
        Ok(deployed.await?.expect("a deploy that does not skip an unchanged version makes one"))
    }

    /// Deploys `request` unless the newest version of its service already
    /// has the same digest, subscriptions and allow-list; answers the new
    /// version, if any.
    pub async fn deploy_if_changed(
        self: &Arc<Self>,
        request: DeployRequest,
    ) -> Result<Option<VersionMeta>, DeployError> {
        let this = self.clone();
        let deployed = FinishOnDrop::new(async move { this.deploy_now(request, true).await }).await?;
        Ok(deployed.map(|deployed| deployed.meta))
    }

    async fn deploy_now(&self, request: DeployRequest, skip_same: bool) -> Result<Option<Deployed>, DeployError> {
        let DeployRequest { service: name, bytes, subscriptions, verify, retain, allow_http } = request;
        validate_service_name(&name).map_err(DeployError::InvalidName)?;
        self.http.check(&allow_http)?;
        let allow_http = allow_http.entries();
        for source in &subscriptions {
            validate_service_name(source).map_err(|e| DeployError::InvalidName(format!("subscription: {e}")))?;
        }
        let latest = || self.history.read().unwrap().get(&name).and_then(|v| v.last().cloned());
        let unchanged = |latest: &Option<VersionMeta>, digest: &str| {
            skip_same
                && latest.as_ref().is_some_and(|m| {
                    m.digest == digest && m.subscriptions == subscriptions && m.allow_http == allow_http
                })
        };
        // Hashing and compiling block, and take long for a large component:
        // off the async threads, within a few compile slots, and outside the
        // lock that other deploys and deletes need.
        let (runtime, cache, hashed) = (self.runtime.clone(), self.cache.clone(), bytes);
        let slot = self.compiling.acquire().await.map_err(|e| DeployError::Internal(e.to_string()))?;
        let digest_of = move || (hex(&Sha256::digest(&hashed)), hashed);
        let (digest, bytes) =
            tokio::task::spawn_blocking(digest_of).await.map_err(|e| DeployError::Internal(e.to_string()))?;
        if unchanged(&latest(), &digest) {
            return Ok(None);
        }
        let cached_digest = digest.clone();
        // Code compiled before (a rollback, a redeploy) loads from the cache.
        let (compiled, bytes) = tokio::task::spawn_blocking(move || {
            compile_cached(&runtime, &cache, &bytes, &cached_digest).map(|compiled| (compiled, bytes))
        })
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))??;
        drop(slot);

        let kind = compiled.kind();
        if let Some(latest) = latest().filter(|m| m.kind != kind) {
            return Err(kind_changed(&latest, kind));
        }
        let serving = self.get(&name);
        let verification = match &verify {
            Some(options) => Some(self.verify(&name, &compiled, serving.as_deref(), options).await?),
            None => None,
        };

        let _one_at_a_time = self.deploying.lock().await;
        let latest = latest();
        if unchanged(&latest, &digest) {
            tracing::debug!(service = %name, "already deployed");
            return Ok(None);
        }
        if verification.is_some() && latest.as_ref().map(|m| m.version) != serving.as_ref().map(|s| s.meta.version) {
            return Err(DeployError::Conflict(format!(
                "another version of {name} was deployed while this one was verified; deploy it again"
            )));
        }
        if let Some(latest) = latest.as_ref().filter(|m| m.kind != kind) {
            return Err(kind_changed(latest, kind));
        }
        if retain.is_some_and(|r| r != Retention::All) && kind != ServiceKind::EventSourced {
            return Err(DeployError::Conflict(format!(
                "only an event-sourced service has a history to compact, not {} service",
                kind.with_article()
            )));
        }
        if !subscriptions.is_empty() && kind != ServiceKind::Action {
            return Err(DeployError::Conflict(format!(
                "only an action can subscribe to events, not {} service",
                kind.with_article()
            )));
        }
        let journal = self.journal.clone();
        let deployed_at_ms = crate::journal::now_ms();
        let version = NewVersion { service: name, digest, kind, deployed_at_ms, subscriptions, allow_http };
        let meta = tokio::task::spawn_blocking(move || -> Result<_, DeployError> {
            let meta = journal.save_version(&version, &bytes)?;
            if let Some(retain) = retain {
                journal.set_retention(&meta.service, retain)?;
            }
            Ok(meta)
        })
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))??;
        self.history.write().unwrap().entry(meta.service.clone()).or_default().push(meta.clone());
        let service = Service::new(meta.clone(), compiled, &self.http, &self.metrics);
        self.current.write().unwrap().insert(meta.service.clone(), Arc::new(service));
        self.metrics.record_deploy();
        self.changes.send_modify(|n| *n += 1);
        tracing::info!(service = %meta.service, version = meta.version, digest = %meta.digest, "deployed");
        Ok(Some(Deployed { meta, verification }))
    }

    /// Removes a service: every version, so new invocations answer 404. Its
    /// entities' events and states stay in the journal, and a later deploy
    /// under the same name continues from them (with the next version
    /// number). Answers how many versions were removed, or `None` for a
    /// service that is not deployed. Once started, it runs to the end even
    /// if the returned future is dropped.
    pub async fn delete(self: &Arc<Self>, name: String) -> Result<Option<usize>, DeployError> {
        let this = self.clone();
        FinishOnDrop::new(async move { this.delete_now(name).await }).await
    }

    async fn delete_now(&self, service: String) -> Result<Option<usize>, DeployError> {
        let _one_at_a_time = self.deploying.lock().await;
        if !self.history.read().unwrap().contains_key(&service) {
            return Ok(None);
        }
        let (journal, name) = (self.journal.clone(), service.clone());
        // The side effects waiting for it can never be delivered: they go too.
        let (removed, dropped) = tokio::task::spawn_blocking(move || {
            Ok::<_, JournalError>((journal.delete_versions(&name)?, journal.outbox_drop_service(&name)?))
        })
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))??;
        self.metrics.record_outbox_dropped(dropped as u64);
        self.current.write().unwrap().remove(&service);
        self.history.write().unwrap().remove(&service);
        self.changes.send_modify(|n| *n += 1);
        tracing::info!(%service, versions = removed, dropped_side_effects = dropped, "deleted");
        Ok(Some(removed))
    }
}

/// The refusal of a new version of another kind than `latest`.
fn kind_changed(latest: &VersionMeta, kind: ServiceKind) -> DeployError {
    DeployError::Conflict(format!(
        "{} is {} service; a new version must be one too, not {} service",
        latest.service,
        latest.kind.with_article(),
        kind.with_article()
    ))
}

/// Every stored version, by service, in the journal's order (oldest first).
fn by_service(versions: Vec<VersionMeta>) -> BTreeMap<String, Vec<VersionMeta>> {
    let mut history: BTreeMap<String, Vec<VersionMeta>> = BTreeMap::new();
    for meta in versions {
        history.entry(meta.service.clone()).or_default().push(meta);
    }
    history
}

/// The component bytes of the stored version `meta`.
fn stored_bytes(journal: &dyn Journal, meta: &VersionMeta) -> anyhow::Result<Vec<u8>> {
    journal
        .component(&meta.service, meta.version)?
        .ok_or_else(|| anyhow::anyhow!("component bytes of {} v{} are missing", meta.service, meta.version))
}

/// The compiled form of a component: from the cache when it has it, else
/// compiled (and cached for the next start, deploy or rollback).
fn compile_cached(
    runtime: &Runtime,
    cache: &CompiledCache,
    bytes: &[u8],
    digest: &str,
) -> Result<CompiledService, DeployError> {
    if let Some(component) = cache.load(runtime.engine(), digest) {
        return Ok(runtime.prepare(&component)?);
    }
    let (component, compiled) = runtime.compile(bytes)?;
    if let Err(error) = cache.store(digest, &component) {
        tracing::warn!(%error, "could not cache compiled component");
    }
    Ok(compiled)
}

fn describe(name: &str, history: &BTreeMap<String, Vec<VersionMeta>>, retain: Retention) -> Option<ServiceInfo> {
    let versions = history.get(name)?;
    let latest = versions.last()?;
    Some(ServiceInfo {
        service: name.to_string(),
        kind: latest.kind,
        version: latest.version,
        digest: latest.digest.clone(),
        subscriptions: latest.subscriptions.clone(),
        allow_http: latest.allow_http.clone(),
        versions: versions.clone(),
        retain,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
