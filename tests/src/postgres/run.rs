//! One run of a server: a started `postgres` (the postmaster) and the thread
//! that started it and then waits on it. The postmaster gets `SIGQUIT` when
//! that thread ends (`PR_SET_PDEATHSIG`, see `cluster`), so the thread lives
//! exactly as long as the postmaster; a server started again is a new run,
//! on a new thread. The thread holds on to the cluster until the postmaster
//! has exited, so that its temp dir stays as long. A run dropped stops its
//! server. Everything here blocks.
//!
//! The thread reaps the postmaster only while holding the lock that
//! [`Postmaster::signal`] holds, so a signal reaches the postmaster or
//! nobody, never a later process that got its pid.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::cluster::Cluster;

/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the processes of a killed server may take to be gone.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the server exited its port may still accept connections.
const PORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(5);

/// A started server and the thread waiting on it; dropped, it stops the
/// server.
#[derive(Debug)]
pub(super) struct Run {
    postmaster: Arc<Postmaster>,
    /// Until it has been joined.
    thread: Option<JoinHandle<()>>,
}

/// The postmaster of a run, which may be signalled until it is reaped.
#[derive(Debug)]
pub(super) struct Postmaster {
    pid: u32,
    /// How it ended, once the thread has reaped it.
    ended: Mutex<Option<Ended>>,
}

/// How a postmaster ended: its exit status, if waiting on it worked.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ended(Option<ExitStatus>);

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(status) => write!(f, "exited with {status}"),
            None => write!(f, "exited"),
        }
    }
}

impl Run {
    /// Runs `serve` on a new thread, which spawns a postmaster there on
    /// `cluster` and answers it once it accepts queries (and a value of its
    /// own); the thread then waits on the postmaster until it exits, and
    /// only then lets go of `cluster`. Blocks until `serve` is done.
    pub(super) fn start<T, F>(cluster: Arc<Cluster>, serve: F) -> anyhow::Result<(T, Self)>
    where
        T: Send + 'static,
        F: FnOnce(&Cluster) -> anyhow::Result<(T, Child)> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let (value, mut child) = match serve(&cluster) {
                    Ok(started) => started,
                    Err(error) => {
                        let _ = tx.send(Err(error));
                        return;
                    }
                };
                let postmaster = Arc::new(Postmaster { pid: child.id(), ended: Mutex::new(None) });
                if let Err(mpsc::SendError(Ok((value, _)))) = tx.send(Ok((value, postmaster.clone()))) {
                    // Whoever started it is gone (it panicked): nobody will
                    // use this one.
                    postmaster.signal(libc::SIGQUIT);
                    postmaster.wait(&mut child);
                    drop(value);
                    return;
                }
                postmaster.wait(&mut child);
            })
            .context("cannot start the thread that runs PostgreSQL")?;
        let (value, postmaster) = rx.recv().context("the thread starting PostgreSQL died")??;
        Ok((value, Self { postmaster, thread: Some(thread) }))
    }

    pub(super) fn pid(&self) -> u32 {
        self.postmaster.pid
    }

    pub(super) fn postmaster(&self) -> Arc<Postmaster> {
        self.postmaster.clone()
    }

    /// How the postmaster ended, if it has.
    pub(super) fn ended(&self) -> Option<Ended> {
        self.postmaster.ended()
    }

    /// Shuts the server down fast (`SIGINT`: clients are disconnected, a
    /// checkpoint written) and waits until it has exited, or kills it if it
    /// takes over [`STOP_TIMEOUT`]. Blocks.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        self.shut_down(libc::SIGINT)
    }

    /// Kills the postmaster and every process it started with `SIGKILL`,
    /// all at once as in a crash, and waits until they are gone. Blocks.
    pub(super) fn crash(mut self) -> anyhow::Result<()> {
        self.kill_all()
    }

    /// Shuts the server down with `signal` (`SIGINT`: fast, `SIGQUIT`:
    /// immediate) and waits until it has exited, or kills it if it takes
    /// over [`STOP_TIMEOUT`].
    fn shut_down(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        if self.thread.is_none() {
            return Ok(());
        }
        self.postmaster.signal(signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.thread.as_ref().is_some_and(|thread| !thread.is_finished()) {
            if Instant::now() >= deadline {
                self.kill_all()?;
                bail!("PostgreSQL did not shut down within {STOP_TIMEOUT:?}, so it was killed");
            }
            std::thread::sleep(POLL);
        }
        self.join()
    }

    fn kill_all(&mut self) -> anyhow::Result<()> {
        let children = {
            let ended = self.postmaster.lock();
            let pid = self.postmaster.pid as libc::pid_t;
            if ended.is_some() {
                Vec::new()
            } else {
                // Stopped, it starts no more processes and reaps none, so
                // those it started keep their pids until it is dead.
                kill(pid, libc::SIGSTOP);
                let deadline = Instant::now() + GONE_TIMEOUT;
                while stat(pid).is_some_and(|stat| !matches!(stat.state, b'T' | b'Z' | b'X')) {
                    if Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let children = children_of(pid);
                for child in &children {
                    kill(child.pid, libc::SIGKILL);
                }
                kill(pid, libc::SIGKILL);
                children
            }
        };
        self.join()?;
        let deadline = Instant::now() + GONE_TIMEOUT;
        while let Some(child) = children.iter().find(|child| child.alive()) {
            if Instant::now() >= deadline {
                bail!("process {} of the killed PostgreSQL server is still alive after {GONE_TIMEOUT:?}", child.pid);
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Waits until the thread, and so the postmaster, is done.
    fn join(&mut self) -> anyhow::Result<()> {
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| anyhow!("the thread waiting on PostgreSQL panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Run {
    /// Stops the server unless [`Run::stop`] or [`Run::crash`] already has,
    /// with an immediate shutdown (`SIGQUIT`: no checkpoint, so quick, and
    /// what is dropped is thrown away). Blocks until it has exited.
    fn drop(&mut self) {
        let _ = self.shut_down(libc::SIGQUIT);
    }
}

impl Postmaster {
    /// Sends `signal` to the postmaster unless it has been reaped.
    pub(super) fn signal(&self, signal: libc::c_int) {
        let ended = self.lock();
        if ended.is_none() {
            kill(self.pid as libc::pid_t, signal);
        }
    }

    /// How the postmaster ended, if it has.
    pub(super) fn ended(&self) -> Option<Ended> {
        *self.lock()
    }

    /// Waits until `child` (the postmaster) exits, then reaps it.
    fn wait(&self, child: &mut Child) {
        loop {
            // SAFETY: siginfo_t is plain old data for which all zeroes is a
            // valid value; waitid fills it in.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid(2) on a child of ours, into memory we own;
            // WNOWAIT leaves the child to reap below, under the lock.
            let rc =
                unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        let mut ended = self.lock();
        *ended = Some(Ended(child.wait().ok()));
    }

    fn lock(&self) -> MutexGuard<'_, Option<Ended>> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits until nothing accepts connections on loopback `port` any more, as
/// nothing should once the server there has exited.
pub(super) fn wait_port_closed(port: u16) -> anyhow::Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + PORT_TIMEOUT;
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
        if Instant::now() >= deadline {
            bail!(
                "port {port} still accepts connections {PORT_TIMEOUT:?} after PostgreSQL exited: another process listens on it"
            );
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Sends `signal` to `pid`, which the caller knows to be the process it
/// means (see [`Postmaster::signal`] and [`Run::crash`]).
fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) takes no memory.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A process, told apart from a later one with its pid by when it started.
struct Process {
    pid: libc::pid_t,
    started: u64,
}

impl Process {
    /// Whether it still runs (a zombie does not).
    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|stat| stat.started == self.started && !matches!(stat.state, b'Z' | b'X'))
    }
}

/// The children of `parent` now.
fn children_of(parent: libc::pid_t) -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let stat = stat(pid)?;
            (stat.parent == parent).then_some(Process { pid, started: stat.started })
        })
        .collect()
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie), …
    state: u8,
    parent: libc::pid_t,
    /// When it started, in clock ticks since boot.
    started: u64,
}

/// What `/proc/<pid>/stat` says of `pid`, if it is there.
fn stat(pid: libc::pid_t) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold anything, even `)`.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: *fields.first()?.as_bytes().first()?,
        parent: fields.get(1)?.parse().ok()?,
        // Field 22 of the line, the 20th after comm.
        started: fields.get(19)?.parse().ok()?,
    })
}
