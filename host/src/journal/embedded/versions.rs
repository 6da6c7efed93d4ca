//! Deployed versions: their metadata, numbered once per service name for
//! good, and their component bytes, stored once per digest however many
//! versions (of however many services) share them.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{COMPONENTS, VERSION_HEADS, VERSIONS};
use super::{JournalError, NewVersion, RedbJournal, VersionMeta, VersionStore, records};
use crate::domain::ServiceKind;

impl VersionStore for RedbJournal {
    /// Stores a new deployed version, durably: gives it the number after
    /// the last one this service name ever had, and stores its metadata and
    /// component bytes.
    fn save_version(&self, version: &NewVersion, component: &[u8]) -> Result<VersionMeta, JournalError> {
        let txn = self.db()?.begin_write()?;
        let meta = {
            let mut heads = txn.open_table(VERSION_HEADS)?;
            let number = heads.get(version.service.as_str())?.map_or(0, |v| v.value()) + 1;
            heads.insert(version.service.as_str(), number)?;
            let meta = VersionMeta {
                service: version.service.clone(),
                version: number,
                digest: version.digest.clone(),
                kind: version.kind,
                size: component.len() as u64,
                deployed_at_ms: version.deployed_at_ms,
                subscriptions: version.subscriptions.clone(),
                allow_http: version.allow_http.clone(),
            };
            let mut versions = txn.open_table(VERSIONS)?;
            let key = (meta.service.as_str(), number);
            if versions.get(key)?.is_some() {
                return Err(JournalError::VersionExists { service: meta.service.clone(), version: number });
            }
            let record = records::VersionRecord {
                digest: meta.digest.clone(),
                kind: meta.kind.as_str().to_string(),
                size: meta.size,
                deployed_at_ms: meta.deployed_at_ms,
                subscriptions: meta.subscriptions.clone(),
                allow_http: meta.allow_http.clone(),
            };
            versions.insert(key, records::encode(&record)?.as_slice())?;
            // Stored once per digest, however many versions share it.
            let mut components = txn.open_table(COMPONENTS)?;
            if components.get(meta.digest.as_str())?.is_none() {
                components.insert(meta.digest.as_str(), component)?;
            }
            meta
        };
        txn.commit()?;
        Ok(meta)
    }

    /// The last version number `service` was given (0 if never deployed).
    fn last_version(&self, service: &str) -> Result<u32, JournalError> {
        let txn = self.db()?.begin_read()?;
        Ok(txn.open_table(VERSION_HEADS)?.get(service)?.map_or(0, |v| v.value()))
    }

    /// Removes every deployed version of `service` (metadata, and the
    /// component bytes no other version shares), durably; answers how many
    /// there were. Its entities' data stays, and so does its last version
    /// number.
    fn delete_versions(&self, service: &str) -> Result<usize, JournalError> {
        let txn = self.db()?.begin_write()?;
        let removed = {
            let mut versions = txn.open_table(VERSIONS)?;
            let mut gone: Vec<(u32, String)> = Vec::new();
            for row in versions.range((service, 0)..=(service, u32::MAX))? {
                let (key, value) = row?;
                let record: records::VersionRecord = records::decode(value.value(), "version")?;
                gone.push((key.value().1, record.digest));
            }
            for (number, _) in &gone {
                versions.remove((service, *number))?;
            }
            let mut still_used = HashSet::new();
            for row in versions.iter()? {
                let (_, value) = row?;
                still_used.insert(records::decode::<records::VersionRecord>(value.value(), "version")?.digest);
            }
            let mut components = txn.open_table(COMPONENTS)?;
            for (_, digest) in &gone {
                if !still_used.contains(digest) {
                    components.remove(digest.as_str())?;
                }
            }
            gone.len()
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Every deployed version of every service, ordered by (service, version).
    fn versions(&self) -> Result<Vec<VersionMeta>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(VERSIONS)?.iter()? {
            let (key, value) = row?;
            let (service, version) = key.value();
            let what = format!("version {version} of {service}");
            let record: records::VersionRecord = records::decode(value.value(), &what)?;
            let kind = ServiceKind::from_name(&record.kind)
                .ok_or_else(|| JournalError::Corrupt(format!("{what}: unknown kind {:?}", record.kind)))?;
            out.push(VersionMeta {
                service: service.to_string(),
                version,
                digest: record.digest,
                kind,
                size: record.size,
                deployed_at_ms: record.deployed_at_ms,
                subscriptions: record.subscriptions,
                allow_http: record.allow_http,
            });
        }
        Ok(out)
    }

    /// The component bytes of one deployed version.
    fn component(&self, service: &str, version: u32) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db()?.begin_read()?;
        let Some(row) = txn.open_table(VERSIONS)?.get((service, version))? else { return Ok(None) };
        let record: records::VersionRecord = records::decode(row.value(), "version")?;
        Ok(txn.open_table(COMPONENTS)?.get(record.digest.as_str())?.map(|v| v.value().to_vec()))
    }
}

impl RedbJournal {
    /// How many bytes of components the journal holds, each digest once.
    #[cfg(test)]
    pub(super) fn component_bytes(&self) -> Result<u64, JournalError> {
        let txn = self.db()?.begin_read()?;
        let mut total = 0;
        for row in txn.open_table(COMPONENTS)?.iter()? {
            total += row?.1.value().len() as u64;
        }
        Ok(total)
    }
}
