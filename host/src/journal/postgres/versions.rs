//! Deployed versions on PostgreSQL: their metadata, numbered once per
//! service name for good, and their component bytes, stored once per digest.

use super::{JournalError, NewVersion, PgJournal, VersionMeta, VersionStore};
use crate::domain::ServiceKind;
use crate::journal::records::{self, VersionRecord};

impl VersionStore for PgJournal {
    fn save_version(&self, version: &NewVersion, component: &[u8]) -> Result<VersionMeta, JournalError> {
        self.run(async |conn| {
            conn.client.batch_execute("BEGIN").await?;
            let saved = async {
                // The head row, locked: two hosts deploying at once get two numbers.
                let number: i32 = conn
                    .client
                    .query_one(
                        "INSERT INTO version_heads (service, last) VALUES ($1, 1) \
                         ON CONFLICT (service) DO UPDATE SET last = version_heads.last + 1 RETURNING last",
                        &[&version.service],
                    )
                    .await?
                    .get(0);
                let meta = VersionMeta {
                    service: version.service.clone(),
                    version: number as u32,
                    digest: version.digest.clone(),
                    kind: version.kind,
                    size: component.len() as u64,
                    deployed_at_ms: version.deployed_at_ms,
                    subscriptions: version.subscriptions.clone(),
                    allow_http: version.allow_http.clone(),
                };
                let record = records::encode(&VersionRecord {
                    digest: meta.digest.clone(),
                    kind: meta.kind.as_str().to_string(),
                    size: meta.size,
                    deployed_at_ms: meta.deployed_at_ms,
                    subscriptions: meta.subscriptions.clone(),
                    allow_http: meta.allow_http.clone(),
                })?;
                let inserted = conn
                    .client
                    .execute(
                        "INSERT INTO versions (service, version, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&meta.service, &number, &record],
                    )
                    .await?;
                if inserted == 0 {
                    return Err(JournalError::VersionExists { service: meta.service.clone(), version: meta.version });
                }
                conn.client
                    .execute(
                        "INSERT INTO components (digest, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&meta.digest, &component],
                    )
                    .await?;
                Ok(meta)
            }
            .await;
            finish(conn, saved).await
        })
    }

    fn last_version(&self, service: &str) -> Result<u32, JournalError> {
        self.run(async |conn| {
            let row = conn.client.query_opt("SELECT last FROM version_heads WHERE service = $1", &[&service]).await?;
            Ok(row.map_or(0, |row| row.get::<_, i32>(0) as u32))
        })
    }

    fn delete_versions(&self, service: &str) -> Result<usize, JournalError> {
        self.run(async |conn| {
            conn.client.batch_execute("BEGIN").await?;
            let deleted = async {
                let removed = conn.client.execute("DELETE FROM versions WHERE service = $1", &[&service]).await?;
                // Component bytes no version names any more go too.
                let mut used = std::collections::HashSet::new();
                for row in conn.client.query("SELECT record FROM versions", &[]).await? {
                    used.insert(records::decode::<VersionRecord>(row.get(0), "version")?.digest);
                }
                let digests: Vec<String> = conn
                    .client
                    .query("SELECT digest FROM components", &[])
                    .await?
                    .iter()
                    .map(|row| row.get::<_, String>(0))
                    .filter(|digest| !used.contains(digest))
                    .collect();
                conn.client.execute("DELETE FROM components WHERE digest = ANY($1)", &[&digests]).await?;
                Ok(removed as usize)
            }
            .await;
            finish(conn, deleted).await
        })
    }

    fn versions(&self) -> Result<Vec<VersionMeta>, JournalError> {
        self.run(async |conn| {
            let rows = conn
                .client
                .query("SELECT service, version, record FROM versions ORDER BY service, version", &[])
                .await?;
            rows.iter()
                .map(|row| {
                    let (service, version): (String, i32) = (row.get(0), row.get(1));
                    let what = format!("version {version} of {service}");
                    let record: VersionRecord = records::decode(row.get(2), &what)?;
                    let kind = ServiceKind::from_name(&record.kind)
                        .ok_or_else(|| JournalError::Corrupt(format!("{what}: unknown kind {:?}", record.kind)))?;
                    Ok(VersionMeta {
                        service,
                        version: version as u32,
                        digest: record.digest,
                        kind,
                        size: record.size,
                        deployed_at_ms: record.deployed_at_ms,
                        subscriptions: record.subscriptions,
                        allow_http: record.allow_http,
                    })
                })
                .collect()
        })
    }

    fn component(&self, service: &str, version: u32) -> Result<Option<Vec<u8>>, JournalError> {
        self.run(async |conn| {
            let row = conn
                .client
                .query_opt(
                    "SELECT record FROM versions WHERE service = $1 AND version = $2",
                    &[&service, &(version as i32)],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let record: VersionRecord = records::decode(row.get(0), "version")?;
            let bytes =
                conn.client.query_opt("SELECT bytes FROM components WHERE digest = $1", &[&record.digest]).await?;
            Ok(bytes.map(|row| row.get(0)))
        })
    }
}

/// Commits the open transaction when `result` is a success, else rolls it back.
async fn finish<T>(conn: &mut super::pool::Conn, result: Result<T, JournalError>) -> Result<T, JournalError> {
    match result {
        Ok(value) => {
            conn.client.batch_execute("COMMIT").await?;
            Ok(value)
        }
        Err(error) => {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}
