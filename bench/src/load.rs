//! The load generator: HTTP/1.1 keep-alive connections to one loopback
//! address (hyper's low-level client, one TCP connection each). Every
//! connection sends its next request as soon as it has read the previous
//! reply (a closed loop, like `oha -c N`), until a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::report::Samples;

/// No single request may take longer than this; the bench fails instead of hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    /// Connects to `addr`, which must be a loopback address.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(addr.ip().is_loopback(), "the bench only drives load at loopback addresses, not {addr}");
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, host: addr.to_string() })
    }

    /// Sends one request and reads the whole reply.
    pub async fn send(&mut self, method: Method, uri: Uri, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.context("request timed out")?
    }

    /// POSTs `body` to `path` and fails unless the answer is 200; answers the body.
    pub async fn post_ok(&mut self, path: &str, body: &str) -> anyhow::Result<Bytes> {
        self.expect(Method::POST, path, Bytes::copy_from_slice(body.as_bytes()), 200).await
    }

    /// Sends a request and fails unless the answer has `status`; answers the body.
    pub async fn expect(&mut self, method: Method, path: &str, body: Bytes, status: u16) -> anyhow::Result<Bytes> {
        let (got, reply) = self.send(method.clone(), path.parse()?, body).await?;
        if got.as_u16() != status {
            bail!("{method} {path} answered {got}, expected {status}: {}", String::from_utf8_lossy(&reply));
        }
        Ok(reply)
    }
}

/// The address of a base URL such as `http://127.0.0.1:40123`.
pub fn addr_of(base: &str) -> anyhow::Result<SocketAddr> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    authority.parse().with_context(|| format!("not a socket address: {base}"))
}

/// The request a connection sends next, given a global request counter:
/// a POST to a URI with a body.
pub type NextRequest = Arc<dyn Fn(u64) -> (Uri, Bytes) + Send + Sync>;

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent connections, each with at most one request in flight.
    pub connections: usize,
    /// Requests before the measured window (warming caches, entities, connections).
    pub warmup: Duration,
    /// The measured window; no request starts after it.
    pub duration: Duration,
    /// At most this many requests (the warm-up's included); the run ends
    /// early once they are all sent and answered. `None`: no limit.
    pub requests: Option<u64>,
}

/// What one load run measured (the warm-up excluded).
#[derive(Debug)]
pub struct LoadResult {
    /// Latencies of the 200 answers started in the window.
    pub latencies: Samples,
    /// From the window's start until the last of its requests finished.
    pub elapsed: Duration,
    /// Answers other than 200, and broken connections.
    pub errors: u64,
    /// The first such error, for the report.
    pub first_error: Option<String>,
    /// CPU used during the window by each watched process, in cores.
    pub cpu: Vec<f64>,
}

/// Reads a CPU time used so far (by a process, some threads, ...).
pub type CpuProbe = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The CPU time of process `pid`.
pub fn process(pid: u32) -> CpuProbe {
    Arc::new(move || cpu_time(&format!("/proc/{pid}/stat")))
}

/// The CPU time of the threads named `name` of process `pid`.
pub fn threads(pid: u32, name: &'static str) -> CpuProbe {
    Arc::new(move || threads_cpu_time(pid, name))
}

/// The CPU time of process `pid` and of every process descending from it
/// (a PostgreSQL postmaster and its backends, background workers, ...).
///
/// Each reading walks `/proc` and sums utime+stime of the processes alive
/// at that moment, so a process that exits inside the measured window is
/// missed: its CPU time is in neither reading (the kernel moves it to its
/// parent's cutime/cstime, which this leaves out), and the figure comes
/// out low by what it used. PostgreSQL's backends of the host's connections
/// live as long as those do; short-lived ones (an autovacuum worker, say)
/// may be missed.
pub fn process_tree(pid: u32) -> CpuProbe {
    Arc::new(move || tree_cpu_time(pid))
}

/// The CPU time the whole machine has spent busy (every core, every
/// process, the kernel's interrupts), from `/proc/stat`.
pub fn machine() -> CpuProbe {
    Arc::new(machine_cpu_time)
}

/// The CPU time of this process but for its threads named `name`.
pub fn process_but(name: &'static str) -> CpuProbe {
    let pid = std::process::id();
    Arc::new(move || own_cpu_time().saturating_sub(threads_cpu_time(pid, name)))
}

/// Drives `load` at `addr`; the CPU time `watch` reads is sampled over the
/// measured window.
pub async fn run(addr: SocketAddr, load: Load, next: NextRequest, watch: &[CpuProbe]) -> anyhow::Result<LoadResult> {
    run_spread(&[addr], load, next, watch).await
}

/// [`run`] with the connections spread round-robin over `addrs`.
pub async fn run_spread(
    addrs: &[SocketAddr],
    load: Load,
    next: NextRequest,
    watch: &[CpuProbe],
) -> anyhow::Result<LoadResult> {
    let mut clients = Vec::with_capacity(load.connections);
    for i in 0..load.connections {
        clients.push(Client::connect(addrs[i % addrs.len()]).await?);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let window_start = start + load.warmup;
    let deadline = window_start + load.duration;

    let probes = watch.to_vec();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(window_start.into()).await;
        probes.iter().map(|probe| probe()).collect::<Vec<_>>()
    });

    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (next, counter) = (next.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Samples::with_capacity(1 << 14);
                let (mut errors, mut first_error) = (0u64, None);
                loop {
                    let sent = Instant::now();
                    if sent >= deadline {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if load.requests.is_some_and(|limit| n >= limit) {
                        break;
                    }
                    let (uri, body) = next(n);
                    let path = uri.clone();
                    let measured = sent >= window_start;
                    match client.send(Method::POST, uri, body).await {
                        Ok((status, _)) if status == StatusCode::OK => {
                            if measured {
                                latencies.push(sent.elapsed());
                            }
                        }
                        Ok((status, reply)) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| {
                                format!("POST {path} answered {status}: {}", String::from_utf8_lossy(&reply))
                            });
                        }
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("POST {path} failed: {error:#}"));
                            break;
                        }
                    }
                }
                (latencies, errors, first_error, Instant::now())
            })
        })
        .collect();

    let mut result = LoadResult {
        latencies: Samples::default(),
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
        cpu: Vec::new(),
    };
    let mut finished = window_start;
    for task in tasks {
        let (latencies, errors, first_error, done) = task.await?;
        result.latencies.merge(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
        finished = finished.max(done);
    }
    let after: Vec<Duration> = watch.iter().map(|probe| probe()).collect();
    let before = sampler.await?;
    result.elapsed = finished.saturating_duration_since(window_start);
    result.cpu = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b).as_secs_f64() / result.elapsed.as_secs_f64().max(1e-9))
        .collect();
    Ok(result)
}

/// The CPU time this process has used so far.
pub fn own_cpu_time() -> Duration {
    cpu_time("/proc/self/stat")
}

fn threads_cpu_time(pid: u32, name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
        .map(|task| cpu_time(&task.path().join("stat").to_string_lossy()))
        .sum()
}

fn tree_cpu_time(root: u32) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    // pid → (ppid, CPU time) of every process alive now.
    let processes: std::collections::HashMap<u32, (u32, Duration)> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields = stat_fields(&stat)?;
            Some((pid, (fields.get(1)?.parse().ok()?, ticks_of(&fields))))
        })
        .collect();
    let descends = |mut pid: u32| {
        // A ppid chain ends at 0 (init's parent); the bound guards a cycle
        // that pids reused between two reads of /proc could fake.
        for _ in 0..processes.len() {
            if pid == root {
                return true;
            }
            match processes.get(&pid) {
                Some(&(ppid, _)) if ppid != 0 => pid = ppid,
                _ => return false,
            }
        }
        false
    };
    processes.iter().filter(|&(&pid, _)| descends(pid)).map(|(_, &(_, cpu))| cpu).sum()
}

fn machine_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice
    // (guest time is counted in user too); busy is all but idle and iowait.
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| values.get(i)).sum();
    from_ticks(busy)
}

/// The fields of a `stat` file after the command name (field 2, which may
/// hold spaces and parentheses): field 3 (state) first.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// utime plus stime (fields 14 and 15) of [`stat_fields`].
fn ticks_of(fields: &[&str]) -> Duration {
    from_ticks([11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum())
}

/// A CPU time in clock ticks as a duration.
fn from_ticks(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// User plus system CPU time used so far by the process or thread whose
/// `stat` file is at `path` (zero if unreadable).
fn cpu_time(path: &str) -> Duration {
    std::fs::read_to_string(path).ok().as_deref().and_then(stat_fields).map_or(Duration::ZERO, |f| ticks_of(&f))
}
