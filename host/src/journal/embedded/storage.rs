//! The database under the journal, and how it is opened again after the
//! storage failed. redb refuses every read and write once an I/O error hit
//! it (a full disk, say), until it is reopened; the writer reopens it at
//! once, so reads go on (a read that comes while the database is being
//! reopened waits for it), then probes writes until the storage takes them
//! again, so the host recovers without a restart.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use redb::Database;

use super::JournalError;

/// Opens the journal's database (again).
pub type Reopen = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// How long a reopen waits for reads in progress to let go of the old database.
const DRAIN: Duration = Duration::from_secs(10);

/// How long a read waits for a reopen in progress before it answers
/// [`JournalError::Reopening`]. Reopening takes milliseconds when the
/// storage works; longer, it does not, and the caller hears so.
const READ_WAIT: Duration = Duration::from_secs(2);

/// The journal's database, which can be swapped for a freshly opened one.
pub(super) struct Storage {
    current: Mutex<Current>,
    /// Notified when a reopen ends.
    reopened: Condvar,
    reopen: Option<Reopen>,
}

/// The database in use, if there is one.
struct Current {
    db: Option<Arc<Database>>,
    /// A reopen is under way (reads wait for it); without a database and
    /// without a reopen, the last reopen failed (reads answer at once).
    reopening: bool,
}

impl Storage {
    /// `db`, reopened by `reopen` after a failure (never, without one).
    pub fn new(db: Database, reopen: Option<Reopen>) -> Arc<Self> {
        let current = Current { db: Some(Arc::new(db)), reopening: false };
        Arc::new(Self { current: Mutex::new(current), reopened: Condvar::new(), reopen })
    }

    /// The database; while it is being reopened, waits (a little) for it.
    /// Callers are on blocking threads.
    pub fn get(&self) -> Result<Arc<Database>, JournalError> {
        let current = self.current.lock().unwrap();
        let (current, _) = self.reopened.wait_timeout_while(current, READ_WAIT, |c| c.reopening).unwrap();
        current.db.clone().ok_or(JournalError::Reopening)
    }

    /// The database, or none while it is being (or could not be) reopened;
    /// never waits.
    pub fn current(&self) -> Option<Arc<Database>> {
        self.current.lock().unwrap().db.clone()
    }

    /// Whether the database can be reopened.
    pub fn can_reopen(&self) -> bool {
        self.reopen.is_some()
    }

    /// Closes the database and opens it again. Until that succeeds, reads
    /// and writes answer [`JournalError::Reopening`].
    pub fn reopen(&self) -> Result<(), JournalError> {
        let Some(reopen) = &self.reopen else { return Ok(()) };
        let old = {
            let mut current = self.current.lock().unwrap();
            current.reopening = true;
            current.db.take()
        };
        if let Some(old) = old {
            // redb locks its file: the old database must be gone first.
            let since = Instant::now();
            while Arc::strong_count(&old) > 1 && since.elapsed() < DRAIN {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(old);
        }
        let opened = reopen();
        let mut current = self.current.lock().unwrap();
        current.reopening = false;
        let result = opened.map(|db| current.db = Some(Arc::new(db))).map_err(JournalError::from);
        drop(current);
        self.reopened.notify_all();
        result
    }
}
