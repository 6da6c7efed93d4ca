//! A cluster in a temp dir of its own, and `postgres` started on it.
//!
//! Everything here blocks, and every program it runs gets `SIGQUIT` when the
//! thread that ran it ends: callers run it on a thread that lives as long as
//! the server (see `run`).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};

use super::{HOW_TO_GET_ONE, USER, connect};

/// The system user a started server runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";
/// How long a started server has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one look at whether a started server answers may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How many free ports a first start tries, should another process take
/// one first.
const PORT_TRIES: usize = 3;
/// How many times a start on a given port tries, and how long apart, while
/// the port is still (or already) taken.
const BIND_TRIES: usize = 10;
const BIND_PAUSE: Duration = Duration::from_millis(200);
/// The start of the names of the temp dirs of started servers.
const DIR_PREFIX: &str = "wasmstate-pg-";
/// How old a temp dir of a server no longer running must be to be removed.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// A cluster made by `initdb` in a temp dir, removed when this is dropped.
#[derive(Debug)]
pub(super) struct Cluster {
    programs: Programs,
    /// Who runs the programs when the tests run as root.
    owner: Option<Owner>,
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    /// Where every start of the server appends its output.
    log_path: PathBuf,
}

impl Cluster {
    /// Finds the programs and makes a cluster whose superuser is [`USER`],
    /// trusted, in a new temp dir.
    pub(super) fn create() -> anyhow::Result<Self> {
        let programs = Programs::find()?;
        remove_stale_dirs();
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let owner = if unsafe { libc::geteuid() } == 0 { Some(Owner::lookup(SYSTEM_USER)?) } else { None };
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("cannot make a temp dir for PostgreSQL")?;
        if let Some(owner) = &owner {
            owner.chown(dir.path())?;
        }
        let data_dir = dir.path().join("data");
        initdb(&programs, dir.path(), &data_dir, owner.as_ref())?;
        Ok(Self { log_path: dir.path().join("postgres.log"), data_dir, dir, programs, owner })
    }

    /// The temp dir, which holds the data dir, the logs and the socket.
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(super) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Starts the server on a loopback port nobody listened on a moment ago
    /// and waits until it answers a query; answers the port and the server.
    pub(super) fn serve_on_free_port(&self) -> anyhow::Result<(u16, Child)> {
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port()?;
            match self.serve(port) {
                Ok(child) => return Ok((port, child)),
                // Another process took the port between our look and the bind.
                Err(error) if tries < PORT_TRIES && error.is::<PortTaken>() => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts the server on `port` (again) and waits until it answers a
    /// query, trying again a few times while the port is taken.
    pub(super) fn serve_on(&self, port: u16) -> anyhow::Result<Child> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.serve(port) {
                Ok(child) => return Ok(child),
                Err(error) if tries < BIND_TRIES && error.is::<PortTaken>() => std::thread::sleep(BIND_PAUSE),
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts the server on `port` and waits until it answers a query; the
    /// error is a [`PortTaken`] if the server could not listen on `port`.
    fn serve(&self, port: u16) -> anyhow::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let logged_before = log.metadata()?.len();
        let mut command = Command::new(&self.programs.postgres);
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(self.dir())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // What is tested is durability: keep it.
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "max_connections=400", "-c", "shared_buffers=128MB", "-c", "logging_collector=off"])
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        child_of_this_thread(&mut command, self.owner.as_ref());
        let mut child =
            command.spawn().with_context(|| format!("cannot start {}", self.programs.postgres.display()))?;
        let url = format!("postgres://{USER}@127.0.0.1:{port}/postgres");
        let Err(error) = wait_ready(&url, &self.data_dir, &mut child) else { return Ok(child) };
        if let Ok(None) = child.try_wait() {
            signal(child.id(), libc::SIGQUIT);
            let _ = child.wait();
        }
        let error = error.context(format!("the end of {}:\n{}", self.log_path.display(), tail(&self.log_path)));
        if read_from(&self.log_path, logged_before).contains("could not bind") {
            return Err(error.context(PortTaken(port)));
        }
        Err(error)
    }
}

/// Why a server did not start: another process listens on its port.
#[derive(Debug)]
struct PortTaken(u16);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} is taken", self.0)
    }
}

/// `initdb` and `postgres`, from one directory so their versions match.
#[derive(Debug)]
struct Programs {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl Programs {
    /// Looks on `PATH`, then in `/usr/lib/postgresql/*/bin`, newest first.
    fn find() -> anyhow::Result<Self> {
        let mut dirs: Vec<PathBuf> =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let version = name.to_str()?.split('.').map(|n| n.parse().ok()).collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        dirs.extend(versions.into_iter().map(|(_, dir)| dir));
        dirs.iter()
            .map(|dir| Self { initdb: dir.join("initdb"), postgres: dir.join("postgres") })
            .find(|programs| executable(&programs.initdb) && executable(&programs.postgres))
            .with_context(|| {
                format!("PostgreSQL's initdb and postgres are neither on PATH nor in /usr/lib/postgresql/*/bin: {HOW_TO_GET_ONE}")
            })
    }
}

/// Whether `path` is a file someone may execute.
fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The system user to run PostgreSQL as, which refuses to run as root.
#[derive(Debug)]
struct Owner {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl Owner {
    fn lookup(name: &str) -> anyhow::Result<Self> {
        let c_name = CString::new(name)?;
        // SAFETY: passwd is plain old data (integers and pointers) for which
        // all zeroes is a valid value; getpwnam_r fills it in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buffer = vec![0 as libc::c_char; 16 * 1024];
        let mut found = std::ptr::null_mut();
        // SAFETY: every pointer is to memory we own and outlives the call;
        // the buffer's length is given.
        let rc =
            unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
        if rc != 0 || found.is_null() {
            bail!(
                "PostgreSQL refuses to run as root and there is no `{name}` user to run it as \
                 (Debian's postgresql package makes one): run the tests as another user, or {HOW_TO_GET_ONE}"
            );
        }
        Ok(Self { uid: entry.pw_uid, gid: entry.pw_gid })
    }

    /// Makes `path` this user's.
    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: chown(2) on a NUL-terminated path we own.
        if unsafe { libc::chown(c_path.as_ptr(), self.uid, self.gid) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot chown {}", path.display()));
        }
        Ok(())
    }
}

/// Makes `command` run as `owner`, if any, and get `SIGQUIT` when the
/// thread spawning it ends.
fn child_of_this_thread(command: &mut Command, owner: Option<&Owner>) {
    let parent = std::process::id() as libc::pid_t;
    let ids = owner.map(|owner| (owner.uid, owner.gid));
    let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
    // SAFETY: between fork and exec the closure makes only system calls that
    // are async-signal-safe (setgroups, setgid, setuid, prctl, getppid) on
    // values it owns, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = ids {
                check(libc::setgroups(1, &gid))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            // After the setuid, which clears it.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong))?;
            if libc::getppid() != parent {
                // The test process ended before the death signal was set.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Makes a cluster in `data_dir` whose superuser is [`USER`], trusted.
fn initdb(programs: &Programs, dir: &Path, data_dir: &Path, owner: Option<&Owner>) -> anyhow::Result<()> {
    let help = Command::new(&programs.initdb)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {}", programs.initdb.display()))?;
    let log_path = dir.join("initdb.log");
    let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(&programs.initdb);
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        .args(String::from_utf8_lossy(&help.stdout).contains("--no-instructions").then_some("--no-instructions"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    child_of_this_thread(&mut command, owner);
    let status = command.status().with_context(|| format!("cannot run {}", programs.initdb.display()))?;
    if !status.success() {
        bail!("initdb exited with {status}; the end of {}:\n{}", log_path.display(), tail(&log_path));
    }
    Ok(())
}

/// A loopback port nobody listened on a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until the server `child`, on `data_dir`, answers a query at `url`.
fn wait_ready(url: &str, data_dir: &Path, child: &mut Child) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    runtime.block_on(async {
        loop {
            let answered = tokio::select! {
                // Bounded: whatever took the port may accept and never answer.
                answered = tokio::time::timeout(PING_TIMEOUT, answers(url, data_dir)) => answered,
                status = exit_of(child) => bail!("postgres exited with {} before it accepted connections", status?),
            };
            let error = match answered {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => error,
                Err(_) => anyhow!("no answer to a query within {PING_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                return Err(error.context(format!("postgres did not accept connections within {READY_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Whether the server at `url` answers a query, and is the one on
/// `data_dir` rather than another that listens on the port.
async fn answers(url: &str, data_dir: &Path) -> anyhow::Result<()> {
    let client = connect(url).await?;
    let row = client.query_one("SELECT current_setting('data_directory')", &[]).await.context("cannot query")?;
    let answering: String = row.try_get(0)?;
    if Path::new(&answering) != data_dir {
        bail!("another server listens on the port: the one on {answering}");
    }
    Ok(())
}

/// Waits until `child` exits.
async fn exit_of(child: &mut Child) -> std::io::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Removes, best effort, temp dirs of servers that were started over an
/// hour ago and are no longer running.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(DIR_PREFIX.as_bytes()) {
            continue;
        }
        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
        let old = modified.elapsed().is_ok_and(|age| age > STALE_AFTER);
        if old && !postmaster_running(&entry.path().join("data")) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether the postmaster that `data_dir/postmaster.pid` names is alive.
fn postmaster_running(data_dir: &Path) -> bool {
    let pid = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<libc::pid_t>().ok());
    pid.is_some_and(|pid| {
        // SAFETY: kill(2) with signal 0 only checks that `pid` exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    })
}

/// Sends `signal` to the child `pid`, which has not been waited on yet.
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child we spawned and have not
    // reaped, so no other process has it.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A (log) file from byte `offset` on, lossily, or nothing.
fn read_from(path: &Path, offset: u64) -> String {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    read().map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

/// The last lines of a log file.
pub(super) fn tail(path: &Path) -> String {
    const BYTES: u64 = 8 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
        Err(error) => format!("(cannot read it: {error})"),
    }
}
