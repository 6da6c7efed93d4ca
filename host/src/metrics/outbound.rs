//! Outbound HTTP: guests' requests by service, host and status, with their
//! latency per service; webhook deliveries by target host and outcome.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::histogram::{self, Histogram};

/// What became of one delivery attempt of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WebhookAttempt {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed in a way that may pass (5xx, 408, 429, a network error);
    /// it will be tried again.
    Retried,
    /// The receiver refused it (another 4xx), it is no longer allowed, or
    /// it ran out of attempts: dropped.
    Dropped,
}

impl WebhookAttempt {
    fn as_str(self) -> &'static str {
        match self {
            WebhookAttempt::Delivered => "delivered",
            WebhookAttempt::Retried => "retried",
            WebhookAttempt::Dropped => "dropped",
        }
    }
}

/// The outbound HTTP metrics.
#[derive(Default)]
pub struct OutboundMetrics {
    /// Guests' requests by (service, host, status).
    requests: Mutex<BTreeMap<(String, String, String), u64>>,
    /// Seconds guests' requests took, by service.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Webhook delivery attempts by (host, outcome).
    webhooks: Mutex<BTreeMap<(String, WebhookAttempt), u64>>,
}

impl OutboundMetrics {
    /// Counts one request a guest of `service` made to `host` (`host:port`)
    /// and how it ended: the response's status code, or why there was none
    /// (`denied`, `prohibited`, `limit`, `timeout`, `too_large`, `error`).
    pub fn record_request(&self, service: &str, host: &str, status: &str, took: Option<Duration>) {
        let key = (service.to_owned(), host.to_owned(), status.to_owned());
        *self.requests.lock().unwrap().entry(key).or_default() += 1;
        if let Some(took) = took {
            let mut latency = self.latency.lock().unwrap();
            latency
                .entry(service.to_owned())
                .or_insert_with(|| Histogram::seconds(histogram::SECONDS))
                .observe_duration(took);
        }
    }

    /// Counts one delivery attempt of a webhook to `host`.
    pub fn record_webhook(&self, host: &str, attempt: WebhookAttempt) {
        *self.webhooks.lock().unwrap().entry((host.to_owned(), attempt)).or_default() += 1;
    }

    /// Appends them to `out` in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "wasmstate_outbound_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests guests made, by service, host and status (a code, or why there was none).\n# TYPE {name} counter"
        );
        for ((service, host, status), count) in self.requests.lock().unwrap().iter() {
            let (host, status) = (escape(host), escape(status));
            let _ = writeln!(out, "{name}{{service=\"{service}\",host=\"{host}\",status=\"{status}\"}} {count}");
        }
        let name = "wasmstate_outbound_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds guests' HTTP requests took, to the response's headers.\n# TYPE {name} histogram"
        );
        for (service, latency) in self.latency.lock().unwrap().iter() {
            latency.render(out, name, &format!("service=\"{service}\""));
        }
        let name = "wasmstate_webhook_deliveries_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook delivery attempts from the outbox, by target host and outcome.\n# TYPE {name} counter"
        );
        for ((host, attempt), count) in self.webhooks.lock().unwrap().iter() {
            let _ = writeln!(out, "{name}{{host=\"{}\",outcome=\"{}\"}} {count}", escape(host), attempt.as_str());
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_webhooks_render_with_their_labels() {
        let metrics = OutboundMetrics::default();
        metrics.record_request("fraud", "api.example.com:443", "200", Some(Duration::from_millis(30)));
        metrics.record_request("fraud", "evil.example.com:443", "denied", None);
        metrics.record_webhook("cases.example.com:443", WebhookAttempt::Retried);
        metrics.record_webhook("cases.example.com:443", WebhookAttempt::Delivered);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains(
            "wasmstate_outbound_requests_total{service=\"fraud\",host=\"api.example.com:443\",status=\"200\"} 1"
        ));
        assert!(out.contains("status=\"denied\"} 1"));
        assert!(out.contains("wasmstate_outbound_request_duration_seconds_count{service=\"fraud\"} 1"));
        assert!(
            out.contains("wasmstate_webhook_deliveries_total{host=\"cases.example.com:443\",outcome=\"delivered\"} 1")
        );
        assert!(out.contains("outcome=\"retried\"} 1"));
    }
}
