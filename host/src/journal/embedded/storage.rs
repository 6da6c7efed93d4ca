//! The database under the journal, and how it is opened again after the
//! storage failed. redb refuses every read and write once an I/O error hit
//! it (a full disk, say), until it is reopened; the writer reopens it at
//! once, so reads go on, then probes writes until the storage takes them
//! again, so the host recovers without a restart.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::JournalError;

/// Opens the journal's database (again).
pub type Reopen = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// How long a reopen waits for reads in progress to let go of the old database.
const DRAIN: Duration = Duration::from_secs(10);

/// The journal's database, which can be swapped for a freshly opened one.
pub(super) struct Storage {
    current: RwLock<Option<Arc<Database>>>,
    reopen: Option<Reopen>,
}

impl Storage {
    /// `db`, reopened by `reopen` after a failure (never, without one).
    pub fn new(db: Database, reopen: Option<Reopen>) -> Arc<Self> {
        Arc::new(Self { current: RwLock::new(Some(Arc::new(db))), reopen })
    }

    /// The database, unless it is being reopened.
    pub fn get(&self) -> Result<Arc<Database>, JournalError> {
        self.current.read().unwrap().clone().ok_or(JournalError::Reopening)
    }

    /// Whether the database can be reopened.
    pub fn can_reopen(&self) -> bool {
        self.reopen.is_some()
    }

    /// Closes the database and opens it again. Until that succeeds, reads
    /// and writes answer [`JournalError::Reopening`].
    pub fn reopen(&self) -> Result<(), JournalError> {
        let Some(reopen) = &self.reopen else { return Ok(()) };
        let old = self.current.write().unwrap().take();
        if let Some(old) = old {
            // redb locks its file: the old database must be gone first.
            let since = Instant::now();
            while Arc::strong_count(&old) > 1 && since.elapsed() < DRAIN {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(old);
        }
        let db = reopen()?;
        *self.current.write().unwrap() = Some(Arc::new(db));
        Ok(())
    }
}
