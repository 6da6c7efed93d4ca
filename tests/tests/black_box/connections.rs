//! Connections no client can hoard: slowloris and idle keep-alive
//! connections are closed at the header deadline, oversized headers are
//! refused, connections past the cap are answered at once, and through all
//! of it `/healthz` and invocations keep answering within a second.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use wasmstate_tests::guests::COUNTER;
use wasmstate_tests::{Api, Options, Server};

/// The header deadline the tests use, short so they run quickly.
const DEADLINE: Duration = Duration::from_secs(2);

fn addr(server: &Server) -> String {
    server.base().trim_start_matches("http://").to_string()
}

async fn start(args: &[&str], options: Options) -> (tempfile::TempDir, Server, Api) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--header-read-timeout", "2s"];
    all.extend_from_slice(args);
    let server = Server::start_with(dir.path(), &all, options).await.expect("server starts");
    let api = Api::new(server.base());
    api.deploy("counter", Path::new(COUNTER)).await;
    (dir, server, api)
}

/// `/healthz` and an invocation each answer within a second; answers the
/// invocation's status.
async fn answers_within_a_second(api: &Api) -> u16 {
    let health = tokio::time::timeout(Duration::from_secs(1), api.try_send(reqwest::Method::GET, "/healthz", vec![]));
    let health = health.await.expect("/healthz answers within 1 s").expect("/healthz answers");
    assert_eq!(health.status.as_u16(), 200, "{}", health.body);
    let invoke =
        tokio::time::timeout(Duration::from_secs(1), api.try_invoke("counter", "c", "Increase", json!({"value": 1})));
    let invoke = invoke.await.expect("an invocation answers within 1 s").expect("an invocation answers");
    if invoke.status.as_u16() != 200 {
        assert_eq!(invoke.status.as_u16(), 503, "{}", invoke.body);
        assert_eq!(invoke.retry_after.as_deref(), Some("1"));
    }
    invoke.status.as_u16()
}

/// Whether the server closes `stream` within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Opens `count` connections at once that each send a header one byte at a
/// time, forever; answers how many the server closed within `within`.
async fn slowloris(addr: &str, count: usize, within: Duration) -> usize {
    let mut attackers = JoinSet::new();
    for _ in 0..count {
        let addr = addr.to_string();
        attackers.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else { return true };
            if stream
                .write_all(b"POST /v1/services/counter/entities/c/Increase HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .await
                .is_err()
            {
                return true;
            }
            let deadline = tokio::time::Instant::now() + within;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if stream.write_all(b"a").await.is_err() {
                    return true;
                }
                if closed_by_server(&mut stream, Duration::from_millis(1)).await {
                    return true;
                }
            }
            false
        });
    }
    attackers.join_all().await.into_iter().filter(|closed| *closed).count()
}

#[tokio::test]
async fn slowloris_connections_are_closed_and_the_host_keeps_answering() {
    let (_dir, server, api) = start(&["--max-connections", "500"], Options::default()).await;
    let addr = addr(&server);
    let attack = tokio::spawn({
        let addr = addr.clone();
        async move { slowloris(&addr, 3_000, DEADLINE * 3).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Mid-attack: past the cap, /healthz answers and an invocation gets a
    // prompt 503 (or a 200, if a slot is free).
    answers_within_a_second(&api).await;
    assert_eq!(attack.await.unwrap(), 3_000, "every slowloris connection was closed");
    assert_eq!(answers_within_a_second(&api).await, 200);
    assert!(api.metric("wasmstate_connections_timed_out_total").await >= 400.0);
    assert!(api.metric("wasmstate_connections_refused_total").await >= 2_000.0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (_dir, server, api) = start(&[], Options::default()).await;
    let addr = addr(&server);
    let mut idle = JoinSet::new();
    for _ in 0..3_000 {
        let addr = addr.clone();
        idle.spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                // Past the cap and the overflow lane: closed at once.
                return true;
            }
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            // Now stay idle, keeping the connection alive.
            closed_by_server(&mut stream, DEADLINE * 3).await
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    answers_within_a_second(&api).await;
    let closed = idle.join_all().await.into_iter().filter(|closed| *closed).count();
    assert_eq!(closed, 3_000, "every idle connection was closed at the header deadline");
    assert_eq!(answers_within_a_second(&api).await, 200);
}

#[tokio::test]
async fn oversized_headers_are_refused_without_holding_their_bytes() {
    let (_dir, server, api) = start(&[], Options::default()).await;
    let addr = addr(&server);
    // A header past the cap (32 KiB by default) answers 431.
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let header = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "x".repeat(33 << 10));
    stream.write_all(header.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(answer.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&answer));

    // A thousand clients sending 380 KiB headers at once each cost the
    // server at most the cap, and are all turned away (431, or a reset
    // when the server closes on bytes it never read).
    let before = server.rss_kib();
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'x', 380 << 10));
    let head: std::sync::Arc<[u8]> = head.into();
    let mut senders = JoinSet::new();
    for _ in 0..1_000 {
        let (addr, head) = (addr.clone(), head.clone());
        senders.spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            let _ = stream.write_all(&head).await;
            let mut answer = Vec::new();
            let ended = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
            ended.is_ok() && !answer.starts_with(b"HTTP/1.1 200")
        });
    }
    let turned_away = senders.join_all().await.into_iter().filter(|away| *away).count();
    assert_eq!(turned_away, 1_000, "every oversized header was refused and its connection closed");
    let after = server.rss_kib();
    assert!(after < before + 64 * 1024, "the server grew from {before} KiB to {after} KiB");
    assert_eq!(answers_within_a_second(&api).await, 200);
}

#[tokio::test]
async fn with_few_file_descriptors_half_open_connections_do_not_starve_the_host() {
    let options = Options { max_open_files: Some(1_024), ..Options::default() };
    let (_dir, server, api) = start(&[], options).await;
    let addr = addr(&server);
    let mut half_open = Vec::new();
    for _ in 0..1_074 {
        if let Ok(stream) = TcpStream::connect(&addr).await {
            half_open.push(stream);
        }
    }
    // Past the slots the open-file limit leaves, connections are answered at
    // once or closed, and /healthz still answers.
    let healthy = api
        .eventually(Duration::from_secs(2), || async {
            let reply =
                tokio::time::timeout(Duration::from_secs(1), api.try_send(reqwest::Method::GET, "/healthz", vec![]))
                    .await;
            matches!(reply, Ok(Ok(reply)) if reply.status == 200)
        })
        .await;
    assert!(healthy, "/healthz answers during the flood");
    tokio::time::sleep(DEADLINE + Duration::from_millis(500)).await;
    assert_eq!(answers_within_a_second(&api).await, 200);
    let mut closed = 0;
    for stream in &mut half_open {
        if closed_by_server(stream, Duration::from_millis(100)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, half_open.len(), "every half-open connection was closed");
    assert_eq!(api.metric("wasmstate_accept_errors_total").await, 0.0, "the host never ran out of descriptors");
}
