//! What a test changes in a stopped server's journal behind its back,
//! in whichever journal the suite runs on.

use std::path::{Path, PathBuf};

use redb::ReadableTable;
use wasmstate_tests::JournalKind;

const EVENTS: redb::TableDefinition<(&str, &str, u64), &[u8]> = redb::TableDefinition::new("events");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

/// The journal of a data dir.
pub enum Stored {
    /// The redb file.
    Redb(PathBuf),
    /// The PostgreSQL database's URL.
    Postgres(String),
}

impl Stored {
    /// The journal the server on `dir` ran on.
    pub async fn of(dir: &Path) -> Self {
        match JournalKind::under_test() {
            JournalKind::Redb => Stored::Redb(dir.join("journal.redb")),
            JournalKind::Postgres => {
                Stored::Postgres(wasmstate_tests::server::journal_database(dir).await.expect("the dir's database"))
            }
            JournalKind::Database(url) => Stored::Postgres(url),
        }
    }

    /// Changes the stored row of event `seq` of `service/entity` with `edit`.
    pub async fn edit_event(&self, service: &str, entity: &str, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        match self {
            Stored::Redb(path) => {
                let db = redb::Database::create(path).unwrap();
                let txn = db.begin_write().unwrap();
                {
                    let mut events = txn.open_table(EVENTS).unwrap();
                    let mut row = events.get((service, entity, seq)).unwrap().expect("the event").value().to_vec();
                    edit(&mut row);
                    events.insert((service, entity, seq), row.as_slice()).unwrap();
                }
                txn.commit().unwrap();
            }
            Stored::Postgres(url) => {
                let client = wasmstate_tests::postgres::connect(url).await.unwrap();
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&service, &entity, &(seq as i64)];
                let row = client
                    .query_one(
                        "SELECT record FROM wasmstate.events WHERE service = $1 AND entity = $2 AND seq = $3",
                        &key,
                    )
                    .await
                    .unwrap();
                let mut record: Vec<u8> = row.get(0);
                edit(&mut record);
                client
                    .execute(
                        "UPDATE wasmstate.events SET record = $4 WHERE service = $1 AND entity = $2 AND seq = $3",
                        &[&service, &entity, &(seq as i64), &record],
                    )
                    .await
                    .unwrap();
            }
        }
    }

    /// Sets the journal's stored schema version.
    pub async fn set_schema_version(&self, version: u64) {
        match self {
            Stored::Redb(path) => {
                let db = redb::Database::create(path).unwrap();
                let txn = db.begin_write().unwrap();
                txn.open_table(META).unwrap().insert("schema_version", version).unwrap();
                txn.commit().unwrap();
            }
            Stored::Postgres(url) => {
                let client = wasmstate_tests::postgres::connect(url).await.unwrap();
                let sql = "UPDATE wasmstate.meta SET value = $1 WHERE key = 'schema_version'";
                assert_eq!(client.execute(sql, &[&(version as i64)]).await.unwrap(), 1);
            }
        }
    }

    /// The journal's stored schema version.
    pub async fn schema_version(&self) -> u64 {
        match self {
            Stored::Redb(path) => {
                let db = redb::Database::create(path).unwrap();
                let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
                txn.open_table(META).unwrap().get("schema_version").unwrap().unwrap().value()
            }
            Stored::Postgres(url) => {
                let client = wasmstate_tests::postgres::connect(url).await.unwrap();
                let row = client
                    .query_one("SELECT value FROM wasmstate.meta WHERE key = 'schema_version'", &[])
                    .await
                    .unwrap();
                row.get::<_, i64>(0) as u64
            }
        }
    }
}
