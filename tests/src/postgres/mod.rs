//! Throwaway PostgreSQL servers for black-box tests.
//!
//! [`shared`] starts one per test process on first use, on a free loopback
//! port with a temporary data dir, and it is gone when the process exits.
//! Each test takes an empty database of its own on it with
//! [`Postgres::create_database`].
//!
//! `$WASMSTATE_TEST_PG` (`postgres://user:pass@host:port/db`, of a user that
//! may `CREATE DATABASE`) points [`shared`] at a server of one's own instead.
//! Without it, `initdb` and `postgres` must be installed (Debian:
//! `apt-get install postgresql`); a test that needs them fails without them.
//!
//! [`start_own`] starts a server of one test's own, always here (whether or
//! not `$WASMSTATE_TEST_PG` is set), that the test may stop, kill and start
//! again on the same port to see what a wasmstate host does when its
//! database goes away ([`OwnPostgres`]).
//!
//! No server is tied to any tokio runtime: a thread of its own starts it and
//! then waits on it, and the server gets `SIGQUIT` (an immediate shutdown)
//! from the kernel when that thread, and so the test process, ends
//! (`PR_SET_PDEATHSIG`). A process that exits normally also removes the data
//! dir of the shared server, and an [`OwnPostgres`] removes its own when
//! dropped; dirs left by killed processes are removed by a later start once
//! they are an hour old.
//!
//! Inside: `cluster` makes a cluster in a temp dir and starts `postgres` on
//! it, `run` is the thread that waits on one started `postgres` and how it
//! is stopped or killed, and `own` is [`OwnPostgres`].

mod cluster;
mod own;
mod run;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::{OnceCell, oneshot};
use tokio_postgres::NoTls;

use cluster::{Cluster, tail};
use run::{Postmaster, Run};

pub use own::{OwnPostgres, start_own};

/// The environment variable naming a server to use instead of starting one.
pub const ENV: &str = "WASMSTATE_TEST_PG";

/// The superuser a started server's cluster is made with (trust auth).
const USER: &str = "wasmstate";

/// How to get a server when there is none.
const HOW_TO_GET_ONE: &str = "install PostgreSQL (Debian: `apt-get install postgresql`) or set \
     WASMSTATE_TEST_PG to postgres://user:pass@host:port/db of a server where that user may CREATE DATABASE";

/// A PostgreSQL server that tests make databases on: one started for this
/// process, or the one `$WASMSTATE_TEST_PG` names.
#[derive(Debug)]
pub struct Postgres {
    endpoint: Endpoint,
    /// What only a server started here has.
    local: Option<Local>,
}

/// A server started by this process, and its cluster.
#[derive(Debug)]
struct Local {
    run: Run,
    cluster: Arc<Cluster>,
    port: u16,
}

/// The server of this test process, started on first use (or the one
/// `$WASMSTATE_TEST_PG` names, checked on first use) and kept until the
/// process exits. Callable from any runtime; a failed start is not kept, so
/// each caller gets the error.
pub async fn shared() -> anyhow::Result<&'static Postgres> {
    static SHARED: OnceCell<Postgres> = OnceCell::const_new();
    SHARED
        .get_or_try_init(|| async {
            match std::env::var(ENV) {
                Ok(url) if !url.is_empty() => {
                    let endpoint = Endpoint::external(&url)?;
                    ping(&endpoint.maintenance)
                        .await
                        .with_context(|| format!("the server {ENV} names is not usable"))?;
                    Ok(Postgres { endpoint, local: None })
                }
                _ => {
                    let local = launch().await?;
                    remove_at_exit(local.run.postmaster(), local.cluster.dir().to_path_buf());
                    Ok(Postgres { endpoint: Endpoint::local(local.port), local: Some(local) })
                }
            }
        })
        .await
}

/// Connects to `url` (as [`Postgres::create_database`] returns), driving the
/// connection on a task of the current runtime.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config =
        url.parse().with_context(|| format!("not a PostgreSQL URL: {}", redact(url)))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) =
        config.connect(NoTls).await.with_context(|| format!("cannot connect to {}", redact(url)))?;
    tokio::spawn(async move {
        // It ends when the client is dropped; an error shows up in the
        // client's next call.
        let _ = connection.await;
    });
    Ok(client)
}

impl Postgres {
    /// The URL of `database` on this server, e.g.
    /// `postgres://wasmstate@127.0.0.1:40123/ws_1_0_9f3a01c2`.
    pub fn url(&self, database: &str) -> String {
        self.endpoint.url(database)
    }

    /// Makes a new, empty database with a name no other test (of this or
    /// another process on the same server) has, and answers its URL.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        self.endpoint.create_database(|| self.describe()).await
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// The process id of the server, if this process started it.
    pub fn pid(&self) -> Option<u32> {
        self.local.as_ref().map(|local| local.run.pid())
    }

    /// The server's data dir, if this process started it.
    pub fn data_dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|local| local.cluster.data_dir())
    }

    /// The file the server logs to, if this process started it.
    pub fn log_path(&self) -> Option<&Path> {
        self.local.as_ref().map(|local| local.cluster.log_path())
    }

    /// Which server this is, and if it was started here and has exited, how
    /// and the end of its log.
    fn describe(&self) -> String {
        let Some(local) = &self.local else {
            return format!("the PostgreSQL server {ENV} names ({})", redact(&self.endpoint.maintenance));
        };
        let log_path = local.cluster.log_path();
        match local.run.ended() {
            Some(ended) => {
                format!("the test PostgreSQL server {ended}; the end of {}:\n{}", log_path.display(), tail(log_path))
            }
            None => format!("the test PostgreSQL server on port {} (log: {})", self.port(), log_path.display()),
        }
    }
}

/// Makes a cluster in a new temp dir and starts a server on it, on a free
/// port, from a thread that then waits on it; answers them once the server
/// accepts queries. Should the caller stop waiting, the server is stopped
/// and the temp dir removed.
async fn launch() -> anyhow::Result<Local> {
    on_a_thread("postgres-start", || {
        let cluster = Arc::new(Cluster::create()?);
        let (port, run) = Run::start(cluster.clone(), Cluster::serve_on_free_port)?;
        Ok(Local { run, cluster, port })
    })
    .await
}

/// Runs `work`, which blocks, on a thread of its own named `name`: it needs
/// no particular runtime, and it goes on to the end should the caller stop
/// waiting (dropping what it answers).
async fn on_a_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .with_context(|| format!("cannot start the thread {name}"))?;
    rx.await.with_context(|| format!("the thread {name} died"))?
}

/// Where a server takes connections, and how to name its databases.
#[derive(Debug)]
struct Endpoint {
    /// The URL of the server without a database: `postgres://user@host:port`.
    base: String,
    /// What follows the database in the URL (`?…`), or nothing.
    query: String,
    /// The URL of the database to run `CREATE DATABASE` in.
    maintenance: String,
    port: u16,
}

impl Endpoint {
    /// A server started here on `port`.
    fn local(port: u16) -> Self {
        let base = format!("postgres://{USER}@127.0.0.1:{port}");
        Self { maintenance: format!("{base}/postgres"), base, query: String::new(), port }
    }

    /// The server `url` names: its database is the maintenance database.
    fn external(url: &str) -> anyhow::Result<Self> {
        let config: tokio_postgres::Config =
            url.parse().with_context(|| format!("{ENV} is not a PostgreSQL URL: {}", redact(url)))?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let (head, query) = match url.split_once('?') {
            Some((head, query)) => (head, format!("?{query}")),
            None => (url, String::new()),
        };
        let authority = head.find("://").map_or(0, |at| at + 3);
        let base = match head[authority..].find('/') {
            Some(slash) => &head[..authority + slash],
            None => head,
        };
        Ok(Self { base: base.to_string(), query, maintenance: url.to_string(), port })
    }

    /// The URL of `database` on this server.
    fn url(&self, database: &str) -> String {
        format!("{}/{database}{}", self.base, self.query)
    }

    /// Makes a new, empty database with a name no other test has, and
    /// answers its URL; `describe` says which server failed if one does.
    async fn create_database(&self, describe: impl Fn() -> String) -> anyhow::Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name =
            format!("ws_{}_{}_{:08x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), random() as u32);
        let client = connect(&self.maintenance).await.with_context(&describe)?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create database {name}"))
            .with_context(&describe)?;
        Ok(self.url(&name))
    }
}

/// Connects to `url` and runs a query.
async fn ping(url: &str) -> anyhow::Result<()> {
    connect(url).await?.simple_query("SELECT 1").await.context("cannot query")?;
    Ok(())
}

/// The servers to stop and the dirs to remove when the process exits.
static AT_EXIT: Mutex<Vec<(Arc<Postmaster>, PathBuf)>> = Mutex::new(Vec::new());

/// Stops `postmaster` and removes `dir` when the process exits normally (a
/// killed process leaves `dir` to a later start's clean-up).
fn remove_at_exit(postmaster: Arc<Postmaster>, dir: PathBuf) {
    static REGISTER: Once = Once::new();
    AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()).push((postmaster, dir));
    REGISTER.call_once(|| {
        // SAFETY: atexit(3) with a function that does not unwind (it
        // catches panics) and may run at any point of the exit.
        unsafe {
            libc::atexit(at_exit);
        }
    });
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let servers = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
        for (postmaster, dir) in servers {
            postmaster.signal(libc::SIGQUIT);
            // The thread waiting on the server reaps it and says so.
            let deadline = Instant::now() + Duration::from_secs(5);
            while postmaster.ended().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

/// `url` without its password.
fn redact(url: &str) -> String {
    let authority = url.find("://").map_or(0, |at| at + 3);
    let end = url[authority..].find(['/', '?']).map_or(url.len(), |at| authority + at);
    match url[authority..end].rfind('@') {
        Some(at) => {
            let user_info = &url[authority..authority + at];
            match user_info.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..authority], &url[authority + at..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// A number unlikely to repeat, for names.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}
