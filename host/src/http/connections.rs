//! Serving TCP connections within budgets no client can exhaust.
//!
//! - **Header deadline**: a connection must send a request's whole header
//!   within `header_read_timeout` of connecting or of its last response
//!   (hyper starts the clock as soon as the connection is idle), so neither
//!   a slowloris client nor an idle keep-alive one holds a connection for
//!   long.
//! - **Header size**: a header larger than `max_header_bytes` answers 431
//!   and closes, so a connection buffers at most that much of one.
//! - **Connection cap**: at most `max_connections` connections are served at
//!   once, kept below the process's open-file limit. Past it, a connection
//!   goes to a small overflow lane that reads its first line for a moment
//!   and answers at once: `/healthz` as usual, anything else 503 with
//!   `Retry-After`. When even the lane is full, the connection is closed.
//! - **Accept errors** (out of file descriptors, say) are logged and
//!   counted, and the loop backs off a little instead of spinning.
//!
//! On shutdown the listener closes and every connection finishes the
//! request it is serving, then closes.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// How many connections past the cap may wait at once for their short answer.
pub const OVERFLOW_LANE: usize = 256;
/// How long a connection in the overflow lane may take to send its first line.
const OVERFLOW_READ: Duration = Duration::from_millis(250);
/// The most of a connection's first bytes the overflow lane reads.
const OVERFLOW_READ_BYTES: usize = 1024;
/// How long the accept loop pauses after an error such as "too many open files".
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// The least time between two log lines about refused connections or accept errors.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The budgets of the connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The most connections served at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's header, from
    /// when it connects or finishes its last response.
    pub header_read_timeout: Duration,
    /// The largest request header accepted, in bytes.
    pub max_header_bytes: usize,
}

/// Serves `app` on the connections of `listener` until `shutdown`
/// resolves, then waits for the connections to finish what they serve.
/// `healthy` answers `/healthz` in the overflow lane.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    healthy: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let lane = Arc::new(Semaphore::new(OVERFLOW_LANE));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let refused_log = RateLimitedLog::default();
    let error_log = RateLimitedLog::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    metrics.record_accept_error();
                    error_log.log(|skipped| tracing::error!(%error, skipped, "cannot accept a connection"));
                    if is_resource_error(&error) {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())));
                let metrics = metrics.clone();
                metrics.add_open_connections(1);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        if error.is_timeout() {
                            metrics.record_connection_timeout();
                        }
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    metrics.add_open_connections(-1);
                    drop(slot);
                });
            }
            Err(_) => {
                metrics.record_refused_connection();
                refused_log.log(|skipped| {
                    tracing::warn!(max = limits.max_connections, skipped, "too many connections; answering 503")
                });
                if let Ok(place) = lane.clone().try_acquire_owned() {
                    let healthy = healthy.clone();
                    tokio::spawn(async move {
                        answer_overflow(stream, healthy()).await;
                        drop(place);
                    });
                }
                // Else the stream drops here: the connection closes at once.
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// File descriptors kept for everything but connections: the journal,
/// the compiled-code cache, the runtime's own.
const RESERVED_FILES: u64 = 128;

/// The most connections the process can hold: `requested`, or fewer if the
/// open-file limit (first raised to its hard limit) would not leave room
/// for them, the overflow lane and [`RESERVED_FILES`].
pub fn connection_budget(requested: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    let files = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return requested;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    };
    let room = files.saturating_sub(RESERVED_FILES + OVERFLOW_LANE as u64).max(files / 4).max(1);
    let budget = requested.min(usize::try_from(room).unwrap_or(usize::MAX));
    if budget < requested {
        tracing::warn!(requested, budget, open_file_limit = files, "the open-file limit lowers --max-connections");
    }
    budget
}

/// Whether an accept error means the process is out of a resource (file
/// descriptors, memory), so retrying at once would only spin.
fn is_resource_error(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Answers a connection past the cap from its first line, and closes it.
async fn answer_overflow(mut stream: TcpStream, healthy: bool) {
    let mut head = Vec::with_capacity(OVERFLOW_READ_BYTES);
    let read = tokio::time::timeout(OVERFLOW_READ, async {
        let mut chunk = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < OVERFLOW_READ_BYTES {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() && head.is_empty() {
        return;
    }
    let (status, body) = if head.starts_with(b"GET /healthz ") && healthy {
        ("200 OK", "ok\n".to_string())
    } else if head.starts_with(b"GET /healthz ") {
        ("503 Service Unavailable", error_body("journal_failed", super::JOURNAL_FAILING))
    } else {
        ("503 Service Unavailable", error_body("overloaded", "the host has too many connections; retry later"))
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {}\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        if status.starts_with("200") { "text/plain" } else { "application/json" },
        body.len()
    );
    let _ = tokio::time::timeout(OVERFLOW_READ, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The API's JSON error shape, for answers written without the router.
fn error_body(kind: &str, message: &str) -> String {
    serde_json::json!({ "error": { "kind": kind, "message": message } }).to_string()
}

/// Logs one line per [`LOG_EVERY`] at most, counting the lines it skipped.
#[derive(Default)]
struct RateLimitedLog {
    last: std::sync::Mutex<Option<Instant>>,
    skipped: AtomicU64,
}

impl RateLimitedLog {
    fn log(&self, line: impl FnOnce(u64)) {
        let mut last = self.last.lock().unwrap();
        let now = Instant::now();
        if last.is_some_and(|at| now - at < LOG_EVERY) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        line(self.skipped.swap(0, Ordering::Relaxed));
    }
}
