//! Connections to the journal's PostgreSQL database.
//!
//! The journal's methods block (the host calls them from blocking tasks),
//! so a [`Pool`] hands a blocking caller one connection at a time and runs
//! the caller's statements on it with [`block_on`]: `tokio-postgres`'s
//! client futures only talk to their connection task over channels, so any
//! thread can drive them, while the connection tasks themselves run on the
//! journal's own runtime. A connection that broke is dropped and made
//! again on next use, so the host recovers by itself once the database is
//! back.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::JournalError;

/// How the journal's connections are named in `pg_stat_activity`; the
/// writer's and the listener's add what they are.
pub(super) const APPLICATION: &str = "wasmstate";

/// How long making a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `future` to completion on this thread, parking it while it waits.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// One connection, with the statements prepared on it.
pub(super) struct Conn {
    /// The client.
    pub client: Client,
    /// The process id of its server backend, which outlives the client
    /// when the connection breaks on the client's side only.
    pub backend: i32,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// `sql`, prepared once per connection.
    pub async fn statement(&mut self, sql: &'static str) -> Result<Statement, JournalError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Opens a connection to `config`'s database, its connection task on `runtime`.
pub(super) async fn connect(config: Config, runtime: Handle) -> Result<Conn, JournalError> {
    let connecting = runtime.spawn(async move {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| JournalError::Unavailable("connecting to the database timed out".into()))??;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a journal database connection ended");
            }
        });
        client.batch_execute(super::schema::SESSION_SETUP).await?;
        let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        Ok::<_, JournalError>((client, backend))
    });
    let (client, backend) =
        connecting.await.map_err(|e| JournalError::Unavailable(format!("connecting failed: {e}")))??;
    Ok(Conn { client, backend, statements: HashMap::new() })
}

/// A fixed number of connections, each made when first needed and again
/// after it broke.
pub(super) struct Pool {
    config: Config,
    runtime: Handle,
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    /// Whether the last statement run found the database unreachable.
    unavailable: AtomicBool,
}

impl Pool {
    /// A pool of `size` connections to `config`'s database.
    pub fn new(config: Config, runtime: Handle, size: usize) -> Self {
        let slots = (0..size.max(1)).map(|_| Mutex::new(None)).collect();
        Self { config, runtime, slots, next: AtomicUsize::new(0), unavailable: AtomicBool::new(false) }
    }

    /// A new connection of the pool's settings, outside the pool.
    pub async fn connect(&self) -> Result<Conn, JournalError> {
        self.connect_as(APPLICATION).await
    }

    /// A new connection outside the pool, named `application` in
    /// PostgreSQL's `pg_stat_activity`.
    pub async fn connect_as(&self, application: &str) -> Result<Conn, JournalError> {
        let mut config = self.config.clone();
        config.application_name(application);
        connect(config, self.runtime.clone()).await
    }

    /// Runs `op` on a connection of the pool, blocking this thread until
    /// it ends. A connection that failed under it is made again next time.
    pub fn run<T>(&self, op: impl AsyncFnOnce(&mut Conn) -> Result<T, JournalError>) -> Result<T, JournalError> {
        let mut slot = self.take();
        if slot.as_ref().is_none_or(|conn| conn.client.is_closed()) {
            *slot = None;
            match block_on(self.connect()) {
                Ok(conn) => *slot = Some(conn),
                Err(error) => {
                    self.unavailable.store(matches!(error, JournalError::Unavailable(_)), Ordering::Relaxed);
                    return Err(error);
                }
            }
        }
        let conn = slot.as_mut().expect("just connected");
        let result = block_on(op(conn));
        let lost = matches!(result, Err(JournalError::Unavailable(_)));
        self.unavailable.store(lost, Ordering::Relaxed);
        if lost || conn.client.is_closed() {
            *slot = None;
        }
        result
    }

    /// Whether the last statement run (or connection made) found the
    /// database unreachable. The hosts' heartbeats run every second, so
    /// this is never much older.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// A free connection slot if there is one, else the next in turn.
    fn take(&self) -> MutexGuard<'_, Option<Conn>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.slots.len() {
            if let Ok(slot) = self.slots[(start + i) % self.slots.len()].try_lock() {
                return slot;
            }
        }
        self.slots[start % self.slots.len()].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
