//! `wasmstate deploy` and `wasmstate rollback`: a new version of a service,
//! checked against the service's stored entities before it takes traffic
//! whenever the service has any, with the check's progress drawn on a
//! terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use crate::client::Client;

use super::segment;

/// How often the progress of a verification is asked for.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How a deploy or rollback is verified.
#[derive(Debug, Default, clap::Args)]
pub struct VerifyArgs {
    /// Check the new version against the stored entities first (the
    /// default when the service has stored entities).
    #[arg(long, conflicts_with = "no_verify")]
    verify: bool,
    /// Deploy without checking the stored entities.
    #[arg(long)]
    no_verify: bool,
    /// A read-only command (e.g. GetCart) to run on the old and the new
    /// version against every entity checked, comparing the replies.
    #[arg(long, conflicts_with = "no_verify")]
    probe: Option<String>,
    /// Check a deterministic sample of N entities instead of all.
    #[arg(long, conflicts_with = "no_verify")]
    verify_limit: Option<usize>,
    /// Refuse the new version when a probe's replies differ.
    #[arg(long, conflicts_with = "no_verify")]
    strict: bool,
}

impl VerifyArgs {
    /// The query parameters of the verification asked for, if any: asked
    /// for explicitly, or by default when the service has stored entities.
    async fn query(&self, client: &Client, service: &str) -> anyhow::Result<Option<String>> {
        let explicit = self.verify || self.probe.is_some() || self.verify_limit.is_some() || self.strict;
        if self.no_verify || (!explicit && !has_stored_entities(client, service).await?) {
            return Ok(None);
        }
        let mut query = "verify=replay".to_string();
        if let Some(probe) = &self.probe {
            query.push_str(&format!("&probe={}", segment(probe)));
        }
        if let Some(limit) = self.verify_limit {
            query.push_str(&format!("&limit={limit}"));
        }
        if self.strict {
            query.push_str("&strict=true");
        }
        Ok(Some(query))
    }
}

/// Whether the server holds entities of `service` (false when it is not deployed).
async fn has_stored_entities(client: &Client, service: &str) -> anyhow::Result<bool> {
    let Some(described) = client.get_if_found(&format!("/v1/services/{}", segment(service))).await? else {
        return Ok(false);
    };
    let described: serde_json::Value = serde_json::from_str(&described)?;
    Ok(described["stored_entities"].as_bool().unwrap_or(false))
}

/// What a deploy asks for besides the component and its verification.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeployArgs {
    /// For an action: the services whose events it subscribes to.
    #[arg(long, value_delimiter = ',')]
    pub subscribe: Vec<String>,
    /// The hosts the service's guests may send HTTP requests and webhooks
    /// to: api.example.com, *.example.com, api.example.com:8443,
    /// 127.0.0.1:9000, 10.0.0.0/8:* (loopback and private addresses only
    /// when listed as addresses).
    #[arg(long, value_delimiter = ',')]
    pub allow_http: Vec<String>,
}

/// Deploys `component` as the next version of `service`.
pub async fn deploy(
    client: &Client,
    service: &str,
    component: &Path,
    verify: &VerifyArgs,
    args: &DeployArgs,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(component).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", component.display()))?;
    let mut query: Vec<String> = verify.query(client, service).await?.into_iter().collect();
    let list = |items: &[String]| items.iter().map(|s| segment(s)).collect::<Vec<_>>().join(",");
    if !args.subscribe.is_empty() {
        query.push(format!("subscribe={}", list(&args.subscribe)));
    }
    if !args.allow_http.is_empty() {
        query.push(format!("allow_http={}", list(&args.allow_http)));
    }
    let path = with_query(format!("/v1/services/{}", segment(service)), &query);
    with_progress(client, service, !query.is_empty(), client.put(&path, bytes)).await
}

/// Makes version `to` (default: the one before the newest) of `service`
/// the newest again.
pub async fn rollback(client: &Client, service: &str, to: Option<u32>, verify: &VerifyArgs) -> anyhow::Result<String> {
    let mut query: Vec<String> = verify.query(client, service).await?.into_iter().collect();
    query.extend(to.map(|to| format!("to={to}")));
    let path = with_query(format!("/v1/services/{}/rollback", segment(service)), &query);
    with_progress(client, service, true, client.post(&path, Vec::new())).await
}

fn with_query(path: String, query: &[String]) -> String {
    if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) }
}

/// Awaits `request`, drawing the progress of `service`'s verification on
/// stderr meanwhile when it is a terminal and `verifying`.
async fn with_progress(
    client: &Client,
    service: &str,
    verifying: bool,
    request: impl Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<String> {
    if !verifying || !std::io::stderr().is_terminal() {
        return request.await;
    }
    let progress_path = format!("/v1/services/{}/verification", segment(service));
    let draw = async {
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let Ok(Some(body)) = client.get_if_found(&progress_path).await else { continue };
            let Ok(progress) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            let (checked, total) = (progress["checked"].as_u64().unwrap_or(0), progress["total"].as_u64().unwrap_or(0));
            eprint!("\r{}", bar(service, checked, total));
            let _ = std::io::stderr().flush();
        }
    };
    let answer = tokio::select! {
        answer = request => answer,
        () = draw => unreachable!("drawing never ends"),
    };
    eprint!("\r\x1b[2K");
    answer
}

/// `verifying cart: [#########...........]  45% 4,500/10,000 entities`.
fn bar(service: &str, checked: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let done = checked.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0) as usize;
    let percent = (done * 100).checked_div(total).unwrap_or(0);
    let empty = WIDTH as usize - filled;
    format!(
        "verifying {service}: [{}{}] {percent:>3}% {checked}/{total} entities",
        "#".repeat(filled),
        ".".repeat(empty)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_entities_checked() {
        assert_eq!(bar("c", 0, 0), format!("verifying c: [{}]   0% 0/0 entities", ".".repeat(30)));
        assert_eq!(bar("c", 5, 10), format!("verifying c: [{}{}]  50% 5/10 entities", "#".repeat(15), ".".repeat(15)));
        assert_eq!(bar("c", 10, 10), format!("verifying c: [{}] 100% 10/10 entities", "#".repeat(30)));
    }
}
