//! 9: what live event streams cost the commit path. One connection runs
//! AddItem on one warm cart, first alone, then while 2,000 Server-Sent
//! Event streams follow other carts: a commit wakes the followers of its
//! own entity only, so its latency must not grow with the streams.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load;
use crate::report::{Report, Target};
use crate::servers::{Guests, Running, one_warm_cart, row};

/// How many streams follow other carts.
const FOLLOWERS: usize = 2_000;
/// How much slower the commit path may get with them, at the median.
const MAX_SLOWDOWN: f64 = 1.5;

/// Runs the scenario, each load for `duration`.
pub async fn followers(guests: &Guests, report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let connections = (FOLLOWERS + 64).to_string();
    let running = Running::start(&["--max-connections", &connections], &[("cart", &guests.cart)]).await?;
    let (next, load) = one_warm_cart(&running, duration).await?;

    let alone = load::run(running.addr, load, next.clone(), &running.watched()).await?;
    let alone = row(report, "9a", "sequential AddItem, no event streams", alone);
    let mut streams = Vec::with_capacity(FOLLOWERS);
    for n in 0..FOLLOWERS {
        streams
            .push(follow(running.addr, &format!("/v1/services/cart/entities/followed-{n}/events?follow=true")).await?);
    }
    let followed = load::run(running.addr, load, next, &running.watched()).await?;
    let followed = row(report, "9b", &format!("the same, {FOLLOWERS} streams following other carts"), followed);
    let slowdown = followed.p50.as_secs_f64() / alone.p50.as_secs_f64().max(1e-9);
    report.targets.push(Target {
        goal: format!("9: p50 with {FOLLOWERS} event streams ≤ {MAX_SLOWDOWN}× without"),
        measured: format!("{slowdown:.2}×"),
        met: slowdown <= MAX_SLOWDOWN,
    });
    report.rows.push(alone);
    report.rows.push(followed);
    drop(streams);
    running.stop().await?;
    Ok(())
}

/// Opens a live event stream at `path` and reads its response head.
async fn follow(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 512];
    let read = stream.read(&mut head).await?;
    anyhow::ensure!(
        head[..read].starts_with(b"HTTP/1.1 200"),
        "the stream answered {:?}",
        String::from_utf8_lossy(&head[..read])
    );
    Ok(stream)
}
