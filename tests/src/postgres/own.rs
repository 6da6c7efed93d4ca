//! A server of one test's own, which it may stop, kill and start again.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use anyhow::Context;

use super::cluster::{Cluster, tail};
use super::run::{Run, wait_port_closed};
use super::{ENV, Endpoint, launch, on_a_thread};

/// A PostgreSQL server of one test's own, stopped when dropped.
///
/// It is always started here, with a cluster in a temp dir of its own, on
/// a free loopback port that it keeps when started again: a URL stays
/// good across [`stop`](Self::stop) and [`start`](Self::start), and what
/// was committed before a [`kill`](Self::kill) is there after the next
/// start. Its methods may be called from any tokio runtime; concurrent
/// ones take turns, and one whose caller stops waiting still goes on to
/// the end.
#[derive(Debug)]
pub struct OwnPostgres {
    endpoint: Endpoint,
    /// The server while it runs. A start, stop or kill holds the lock for
    /// the whole of it, on a thread of its own.
    run: Arc<Mutex<Option<Run>>>,
    /// Its temp dir goes with the last of it, after every run on it.
    cluster: Arc<Cluster>,
}

/// Starts a PostgreSQL server of the calling test's own and waits until it
/// accepts queries. Whether or not `$WASMSTATE_TEST_PG` is set, this needs
/// `initdb` and `postgres` installed.
pub async fn start_own() -> anyhow::Result<OwnPostgres> {
    let local = launch().await.with_context(|| {
        format!("cannot start a PostgreSQL server of the test's own (one is started here even with {ENV} set)")
    })?;
    Ok(OwnPostgres {
        endpoint: Endpoint::local(local.port),
        run: Arc::new(Mutex::new(Some(local.run))),
        cluster: local.cluster,
    })
}

impl OwnPostgres {
    /// The URL of `database` on this server, e.g.
    /// `postgres://wasmstate@127.0.0.1:40123/ws_1_0_9f3a01c2`; the same
    /// whether the server runs or not.
    pub fn url(&self, database: &str) -> String {
        self.endpoint.url(database)
    }

    /// Makes a new, empty database and answers its URL (see
    /// [`Postgres::create_database`](super::Postgres::create_database)); the
    /// server must be running.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        self.endpoint.create_database(|| self.describe()).await
    }

    /// The server's TCP port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// The server's data dir.
    pub fn data_dir(&self) -> &Path {
        self.cluster.data_dir()
    }

    /// The file every start of the server appends its log to.
    pub fn log_path(&self) -> &Path {
        self.cluster.log_path()
    }

    /// Stops the server (fast shutdown, `SIGINT` to the postmaster: clients
    /// are disconnected and a checkpoint is written), waits until it has
    /// exited and the port no longer accepts connections. Stopping a stopped
    /// server does nothing.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let (run, port) = (self.run.clone(), self.port());
        on_a_thread("postgres-stop", move || {
            if let Some(running) = lock(&run).take() {
                running.stop()?;
            }
            wait_port_closed(port)
        })
        .await
        .with_context(|| format!("cannot stop {}", self.name()))
    }

    /// Starts the server again, on the same data dir and the same port, and
    /// waits until it accepts queries. Starting a running server does
    /// nothing; one that exited by itself is started anew.
    pub async fn start(&self) -> anyhow::Result<()> {
        let (run, cluster, port) = (self.run.clone(), self.cluster.clone(), self.port());
        on_a_thread("postgres-start", move || {
            let mut run = lock(&run);
            if run.as_ref().is_some_and(|running| running.ended().is_none()) {
                return Ok(());
            }
            *run = None;
            let ((), started) = Run::start(cluster, move |cluster| Ok(((), cluster.serve_on(port)?)))?;
            *run = Some(started);
            Ok(())
        })
        .await
        .with_context(|| format!("cannot start again {}", self.name()))
    }

    /// Kills the server as in a crash: `SIGKILL` to the postmaster and every
    /// process it started, all at once. Waits until they are gone and the
    /// port no longer accepts connections. [`start`](Self::start) brings it
    /// back (PostgreSQL recovers from its WAL). Killing a stopped server
    /// does nothing.
    pub async fn kill(&self) -> anyhow::Result<()> {
        let (run, port) = (self.run.clone(), self.port());
        on_a_thread("postgres-kill", move || {
            if let Some(running) = lock(&run).take() {
                running.crash()?;
            }
            wait_port_closed(port)
        })
        .await
        .with_context(|| format!("cannot kill {}", self.name()))
    }

    /// Which server this is and how it is, and if it has exited by itself,
    /// how and the end of its log.
    fn describe(&self) -> String {
        let ended = match self.run.try_lock() {
            Ok(run) => run.as_ref().map(Run::ended),
            Err(TryLockError::Poisoned(run)) => run.into_inner().as_ref().map(Run::ended),
            Err(TryLockError::WouldBlock) => return format!("{}, being started or stopped", self.name()),
        };
        match ended {
            None => format!("{}, stopped", self.name()),
            Some(None) => format!("{}, running", self.name()),
            Some(Some(ended)) => format!("{}, {ended}; the end of its log:\n{}", self.name(), tail(self.log_path())),
        }
    }

    /// Which server this is.
    fn name(&self) -> String {
        format!("the test's own PostgreSQL server on port {} (log: {})", self.port(), self.log_path().display())
    }
}

impl Drop for OwnPostgres {
    /// Stops the server (an immediate shutdown, `SIGQUIT`: it is thrown
    /// away), blocking until it has exited (after a start, stop or kill
    /// still going on), and then removes its temp dir. Needs no runtime.
    fn drop(&mut self) {
        let running = lock(&self.run).take();
        // Stops it, if it runs.
        drop(running);
        // The temp dir goes with the last of the cluster: ours, or that of a
        // run that a start still going on makes.
    }
}

fn lock(run: &Mutex<Option<Run>>) -> MutexGuard<'_, Option<Run>> {
    run.lock().unwrap_or_else(|e| e.into_inner())
}
