//! Upgrades: the check of a new version against the service's stored
//! entities before it takes traffic (see [`crate::verify`]), its progress,
//! and rollbacks to an earlier version's code.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{DeployError, DeployRequest, Deployed, Service, Services};
use crate::outbound::AllowList;
use crate::runtime::CompiledService;
use crate::verify::{self, Progress, Report, VerifyOptions};

impl Services {
    /// Makes an earlier version of `name` the newest again, as a new version
    /// number running the old code: version `to`, or else the one before
    /// the newest. Verified against the stored entities like a deploy, when
    /// `verify` asks.
    pub async fn rollback(
        self: &Arc<Self>,
        name: String,
        to: Option<u32>,
        verify: Option<VerifyOptions>,
    ) -> Result<(Deployed, u32), DeployError> {
        let target = {
            let history = self.history.read().unwrap();
            let versions =
                history.get(&name).ok_or_else(|| DeployError::NoSuchVersion(format!("{name:?} is not deployed")))?;
            match to {
                Some(to) => {
                    versions.iter().find(|v| v.version == to).cloned().ok_or_else(|| {
                        DeployError::NoSuchVersion(format!("{name} has no version {to} to roll back to"))
                    })?
                }
                None => versions.iter().rev().nth(1).cloned().ok_or_else(|| {
                    DeployError::NoSuchVersion(format!("{name} has only one version: there is none to roll back to"))
                })?,
            }
        };
        let (journal, service, number) = (self.journal.clone(), name.clone(), target.version);
        let bytes = tokio::task::spawn_blocking(move || journal.component(&service, number))
            .await
            .map_err(|e| DeployError::Internal(e.to_string()))??
            .ok_or_else(|| DeployError::Internal(format!("the component of {name} v{number} is missing")))?;
        // The version rolled back to keeps the hosts it was granted.
        let allow_http = AllowList::from_entries(target.allow_http.iter().map(String::as_str))?;
        let subscriptions = target.subscriptions;
        let request = DeployRequest { service: name, bytes, subscriptions, verify, retain: None, allow_http };
        let deployed = self.deploy(request).await?;
        Ok((deployed, target.version))
    }

    /// How far the verification of a new version of `name` is, while one
    /// runs: (entities checked, entities to check).
    pub fn verification_progress(&self, name: &str) -> Option<(usize, usize)> {
        let verifying = self.verifying.lock().unwrap();
        let progress = verifying.get(name)?;
        Some((progress.checked.load(Ordering::Relaxed), progress.total.load(Ordering::Relaxed)))
    }

    /// Checks the stored entities of `name` with `compiled`, comparing the
    /// probe's replies with `serving`'s; refuses it unless the report passes.
    pub(super) async fn verify(
        &self,
        name: &str,
        compiled: &CompiledService,
        serving: Option<&Service>,
        options: &VerifyOptions,
    ) -> Result<Report, DeployError> {
        let progress = Arc::new(Progress::default());
        {
            let mut verifying = self.verifying.lock().unwrap();
            if verifying.contains_key(name) {
                return Err(DeployError::Conflict(format!("a new version of {name} is being verified already")));
            }
            verifying.insert(name.to_string(), progress.clone());
        }
        // A check sends nothing: the serving version probed beside the new
        // one may make no HTTP request (the new one has no grant yet).
        let old = serving.map(|s| s.compiled.with_http(None));
        let check = verify::Check {
            runtime: &self.runtime,
            journal: &self.journal,
            service: name,
            kind: compiled.kind(),
            new: compiled,
            old: old.as_ref(),
            options,
            progress: &progress,
        };
        let report = check.run().await;
        self.verifying.lock().unwrap().remove(name);
        let report = report.map_err(|error| match error {
            verify::CheckError::Journal(error) => DeployError::Journal(error),
            error @ verify::CheckError::Busy(_) => DeployError::Busy(error.to_string()),
            verify::CheckError::Internal(error) => DeployError::Internal(format!("the verification failed: {error}")),
        })?;
        self.metrics.record_verification(report.checked, !report.passes(options));
        if report.passes(options) { Ok(report) } else { Err(DeployError::UpgradeRejected(Box::new(report))) }
    }
}
