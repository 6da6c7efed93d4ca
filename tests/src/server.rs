//! Starting and stopping a real `wasmstate` server process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The cluster token test servers on PostgreSQL share.
pub const CLUSTER_TOKEN: &str = "test-cluster-token";

/// The `wasmstate` binary under test: `$WASMSTATE_BIN`, or the one cargo
/// built next to this test executable (`make test` builds it first).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WASMSTATE_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/wasmstate
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join("wasmstate");
    assert!(
        bin.exists(),
        "{} does not exist: build it with `cargo build -p wasmstate` (make test does) or set WASMSTATE_BIN",
        bin.display()
    );
    bin
}

/// A running server on a free loopback port, killed when dropped.
pub struct Server {
    child: Child,
    base: String,
    data_dir: PathBuf,
    args: Vec<String>,
    options: Options,
    journal_url: Option<String>,
    stdout: Output,
    stderr: Output,
}

/// How to start a server, besides its `serve` flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Environment variables to set (`RUST_LOG` defaults to
    /// `$WASMSTATE_TEST_LOG`, else `warn`).
    pub env: Vec<(String, String)>,
    /// Keep what the server writes to stderr (see [`Server::stderr`])
    /// instead of passing it through.
    pub capture_stderr: bool,
    /// The server's limit of open files (`RLIMIT_NOFILE`, soft and hard),
    /// if it is to be lower than the test's.
    pub max_open_files: Option<u64>,
    /// The journal to run on; `None`: the one [`JournalKind::under_test`] names.
    pub journal: Option<JournalKind>,
}

/// Which journal a test server keeps its data in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalKind {
    /// The embedded redb file in the data dir.
    Redb,
    /// A database of its own on the test PostgreSQL server
    /// ([`crate::postgres::shared`]), one per data dir.
    Postgres,
    /// This PostgreSQL database (a URL).
    Database(String),
}

impl JournalKind {
    /// The journal the suite runs on: `$WASMSTATE_TEST_JOURNAL`, `redb`
    /// (the default) or `postgres`. `make test` runs the suite on both.
    pub fn under_test() -> Self {
        match std::env::var("WASMSTATE_TEST_JOURNAL").as_deref() {
            Ok("postgres") => JournalKind::Postgres,
            Ok("redb") | Err(_) => JournalKind::Redb,
            Ok(other) => panic!("WASMSTATE_TEST_JOURNAL is redb or postgres, not {other:?}"),
        }
    }
}

/// The PostgreSQL journal of each data dir, so a server restarted on a
/// data dir finds its data again.
fn databases() -> &'static Mutex<HashMap<PathBuf, String>> {
    static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    DATABASES.get_or_init(Default::default)
}

/// The URL of `data_dir`'s PostgreSQL journal, made on first use.
pub async fn journal_database(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(url) = databases().lock().unwrap().get(data_dir) {
        return Ok(url.clone());
    }
    let postgres = crate::postgres::shared().await?;
    let url = postgres.create_database().await?;
    databases().lock().unwrap().insert(data_dir.to_path_buf(), url.clone());
    Ok(url)
}

/// The lines a server wrote to one stream.
type Output = Arc<Mutex<Vec<String>>>;

impl Server {
    /// Starts a server on `data_dir` with extra `serve` flags.
    pub async fn start(data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(data_dir, args, Options::default()).await
    }

    /// Starts a server on `data_dir` with extra `serve` flags and `options`.
    pub async fn start_with(data_dir: &Path, args: &[&str], options: Options) -> anyhow::Result<Self> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let journal = options.journal.clone().unwrap_or_else(JournalKind::under_test);
        let journal_url = match journal {
            JournalKind::Postgres => Some(journal_database(data_dir).await?),
            JournalKind::Database(url) => Some(url),
            JournalKind::Redb => None,
        };
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(journal_url.iter().flat_map(|url| ["--journal", url]))
            // Hosts on one database share a secret to send each other commands.
            .envs(journal_url.iter().map(|_| ("WASMSTATE_CLUSTER_TOKEN", CLUSTER_TOKEN)))
            .args(&args)
            .env("RUST_LOG", std::env::var("WASMSTATE_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(if options.capture_stderr { Stdio::piped() } else { Stdio::inherit() })
            .kill_on_drop(true);
        if let Some(files) = options.max_open_files {
            let limit = libc::rlimit { rlim_cur: files, rlim_max: files };
            // SAFETY: between fork and exec the closure only calls
            // setrlimit, which is async-signal-safe, on a struct it owns.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().context("cannot start wasmstate")?;
        let (stdout, stderr) = (Output::default(), Output::default());
        if let Some(pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    stderr.lock().unwrap().push(line);
                }
            });
        }
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let seen = stdout.clone();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                seen.lock().unwrap().push(line.clone());
                if let Some(url) = line.strip_prefix("wasmstate listening on ") {
                    return Ok(url.trim().to_string());
                }
            }
            bail!("wasmstate exited before listening")
        })
        .await
        .context("wasmstate did not start listening within 60 s")?;
        let base = match base {
            Ok(base) => base,
            Err(error) => {
                // Give the stderr reader a moment to take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let said = stderr.lock().unwrap().join("\n");
                return Err(error.context(format!("stderr: {said}")));
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        let seen = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push(line);
            }
        });
        Ok(Self { child, base, data_dir: data_dir.to_path_buf(), args, options, journal_url, stdout, stderr })
    }

    /// The lines the server has written to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The lines the server has written to stderr so far, if it was
    /// started with [`Options::capture_stderr`].
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's base URL, e.g. `http://127.0.0.1:40123`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of the server's PostgreSQL journal, when it runs on one.
    pub fn journal_url(&self) -> Option<&str> {
        self.journal_url.as_deref()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Stops the server with SIGTERM and waits for it; answers its exit status.
    pub async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.pid(), libc::SIGTERM);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("wasmstate did not stop within 30 s of SIGTERM")??;
        Ok(status)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        signal(self.pid(), libc::SIGKILL);
        self.child.wait().await?;
        Ok(())
    }

    /// Pauses the server with SIGSTOP, as a long GC pause or a VM stall
    /// would: it keeps its port and its connections, and answers nothing.
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// Lets a paused server go on with SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// The server's resident memory in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server and starts it again on the same data dir, flags
    /// and options.
    pub async fn restart(self) -> anyhow::Result<Self> {
        let (data_dir, args, options) = (self.data_dir.clone(), self.args.clone(), self.options.clone());
        let status = self.stop().await?;
        anyhow::ensure!(status.success(), "wasmstate exited with {status}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_with(&data_dir, &args, options).await
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned and still own.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}
