//! Black-box tests: each starts the real `wasmstate` binary on a free
//! loopback port with a temporary data dir, deploys real components and
//! talks HTTP.

mod background;
mod bad_input;
mod board;
mod cart;
mod cli;
mod connections;
mod console;
mod counter;
mod crash;
mod crdt;
mod deploy_cancel;
mod disk_failure;
mod entity_listing;
mod fraud_detector;
mod full_disk;
mod fuzz;
mod guest_limits;
mod guest_timers;
mod history;
#[path = "../common/http_receiver.rs"]
mod http_receiver;
mod idempotency;
#[path = "../common/in_process.rs"]
mod in_process;
mod integrity;
mod kinds;
mod logging;
mod memory_budgets;
mod metrics;
mod openapi;
mod origins;
mod outbound_http;
mod overload;
mod poll;
mod restart;
mod scaffold;
mod security;
mod services;
mod stored;
mod subscriptions;
mod tck;
mod timer_examples;
mod timers;
mod timers_load;
#[path = "../common/tls_server.rs"]
mod tls_server;
mod traces;
mod typed_commands;
mod upgrades;
mod webhooks;

use std::path::Path;

use wasmstate_tests::{Api, Server};

/// A started server with its data dir (deleted when dropped) and a client.
pub struct Running {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub api: Api,
}

/// Starts a server on a fresh data dir with extra `serve` flags.
pub async fn start(args: &[&str]) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), args).await.expect("server starts");
    let api = Api::new(server.base());
    Running { dir, server, api }
}

/// Starts a server and deploys one component as `service`.
pub async fn start_with(service: &str, component: &str, args: &[&str]) -> Running {
    let running = start(args).await;
    running.api.deploy(service, Path::new(component)).await;
    running
}

impl Running {
    /// Restarts the server on the same data dir and flags.
    pub async fn restart(self) -> Running {
        let Running { dir, server, .. } = self;
        let server = server.restart().await.expect("server restarts");
        let api = Api::new(server.base());
        Running { dir, server, api }
    }
}

/// Sends one HTTP/1.1 request exactly as written (no path normalisation)
/// and answers the whole raw response.
pub async fn raw_http(base: &str, request_line: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{request_line} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// A small xorshift generator: the tests need variety, not quality.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock; the seed is printed so a failure can be replayed.
    pub fn from_clock(test: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let seed = nanos as u64 | 1;
        eprintln!("{test} seed {seed}");
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Up to `max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// One of `options`.
    pub fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len())]
    }
}
