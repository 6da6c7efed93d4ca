//! 13: reaching the outside world. 13a drives commands that each make one
//! HTTP request to an allowed host (the `http-client` guest's `fetch`, a
//! GET of a small JSON answer from a server in this process) from 64
//! connections over 1,000 entities: what a call out costs a command. 13b
//! commits 10,000 commands that each send one webhook to one origin, then
//! waits until the receiver has them all: how fast the outbox delivers
//! webhooks, and how long after the last commit the last one arrives.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use bytes::Bytes;
use hyper::Uri;

use crate::load::{self, Load};
use crate::memory::thousands;
use crate::report::{Report, Target, fmt_dur};
use crate::servers::{CONNECTIONS, Running, row};

/// The entities 13a's commands are spread over.
const ENTITIES: u64 = 1_000;
/// The webhooks of 13b.
const WEBHOOKS: u64 = 10_000;
/// The longest 13b waits for its webhooks.
const DELIVERY_BOUND: Duration = Duration::from_secs(120);

/// What the receiver has seen.
#[derive(Default)]
struct Seen {
    requests: u64,
    keys: HashSet<String>,
    last: Option<Instant>,
}

/// An HTTP server in this process answering `{"ok":true}`, counting requests
/// and the distinct idempotency keys of webhooks.
async fn receiver() -> anyhow::Result<(SocketAddr, Arc<Mutex<Seen>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let answer = move |headers: HeaderMap| {
        let state = state.clone();
        async move {
            let mut seen = state.lock().unwrap();
            let now = Instant::now();
            seen.requests += 1;
            seen.last = Some(now);
            if let Some(key) = headers.get("idempotency-key").and_then(|key| key.to_str().ok()) {
                seen.keys.insert(key.to_owned());
            }
            ([("content-type", "application/json")], r#"{"ok":true}"#)
        }
    };
    let app = axum::Router::new().fallback(answer);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, seen))
}

/// Runs 13a and 13b.
pub async fn outbound(http_client: &[u8], report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let (outside, seen) = receiver().await?;
    let deploy = format!("http?allow_http={outside}");
    let running = Running::start(&[], &[(deploy.as_str(), http_client)]).await?;

    // 13a: a GET per command.
    let body = Bytes::from(format!(r#"{{"method":"GET","url":"http://{outside}/quote","body":null,"headers":[]}}"#));
    let next: load::NextRequest = Arc::new(move |n| {
        let uri: Uri = format!("/v1/services/http/entities/e-{}/fetch", n % ENTITIES).parse().unwrap();
        (uri, body.clone())
    });
    let load = Load { connections: CONNECTIONS, warmup: Duration::from_secs(1), duration, requests: None };
    let result = load::run(running.addr, load, next, &running.watched()).await?;
    let mut fetched = row(report, "13a", "64 conns, a command that GETs an allowed host (1,000 entities)", result);
    fetched.note = format!("{} requests reached the host", thousands(seen.lock().unwrap().requests));
    report.rows.push(fetched);

    // 13b: a webhook per command, then their delivery.
    let body =
        Bytes::from(format!(r#"{{"url":"http://{outside}/cases","body":{{"case":1}},"headers":[],"method":null}}"#));
    let next: load::NextRequest = Arc::new(move |n| {
        let uri: Uri = format!("/v1/services/http/entities/w-{}/webhook", n % ENTITIES).parse().unwrap();
        (uri, body.clone())
    });
    let load =
        Load { connections: CONNECTIONS, warmup: Duration::ZERO, duration: DELIVERY_BOUND, requests: Some(WEBHOOKS) };
    let committing = Instant::now();
    let result = load::run(running.addr, load, next, &running.watched()).await?;
    let committed = Instant::now();
    anyhow::ensure!(result.errors == 0, "webhook commands failed: {:?}", result.first_error);
    let mut sent = row(report, "13b", "64 conns, 10,000 commands each sending a webhook to one origin", result);
    loop {
        let delivered = seen.lock().unwrap().keys.len() as u64;
        if delivered >= WEBHOOKS || committing.elapsed() > DELIVERY_BOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (delivered, requests, last) = {
        let seen = seen.lock().unwrap();
        (seen.keys.len() as u64, seen.requests, seen.last)
    };
    anyhow::ensure!(delivered >= WEBHOOKS, "only {delivered} of {WEBHOOKS} webhooks arrived within {DELIVERY_BOUND:?}");
    let last = last.unwrap_or(committed);
    let spread = last.saturating_duration_since(committing);
    let rate = WEBHOOKS as f64 / spread.as_secs_f64().max(1e-9);
    let after_last_commit = last.saturating_duration_since(committed);
    sent.note = format!(
        "all {} delivered {} after the first command, {} after the last committed: {rate:.0} webhooks/s",
        thousands(WEBHOOKS),
        fmt_dur(spread),
        fmt_dur(after_last_commit)
    );
    report.rows.push(sent);
    report.facts.push((
        "13b: webhook delivery".into(),
        format!("{rate:.0}/s to one origin (8 lanes), the last {} after the last commit", fmt_dur(after_last_commit)),
    ));
    report.targets.push(Target {
        goal: "13b every webhook delivered exactly once in effect".into(),
        measured: format!("{} keys over {} requests", thousands(delivered), thousands(requests)),
        met: delivered == WEBHOOKS,
    });
    running.stop().await?;
    Ok(())
}
