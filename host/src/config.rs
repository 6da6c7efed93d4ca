//! `wasmstate serve` settings, each a flag with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::outbound::{AllowList, OutboundLimits};

/// Settings of the server.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WASMSTATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the journal and the compiled-code cache.
    #[arg(long, env = "WASMSTATE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The journal's PostgreSQL database (`postgres://user:pass@host:port/db`),
    /// which many hosts can share. Absent: the redb file in --data-dir. The
    /// compiled-code cache stays in --data-dir either way.
    #[arg(long, env = "WASMSTATE_JOURNAL", value_parser = parse_journal_url)]
    pub journal: Option<String>,

    /// Store a snapshot whenever a command's events cross a multiple of N.
    #[arg(long, env = "WASMSTATE_SNAPSHOT_EVERY", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,

    /// Drop an idle entity's in-memory state after this long (e.g. 30s, 500ms, 2m).
    #[arg(long, env = "WASMSTATE_PASSIVATE_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub passivate_after: Duration,

    /// How many entities may hold their state in memory; past it, the least
    /// recently used idle ones are passivated first.
    #[arg(long, env = "WASMSTATE_MAX_ACTIVE_ENTITIES", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active_entities: u32,

    /// Stop a guest call that runs longer than this (e.g. 5s) and answer 504.
    #[arg(long, env = "WASMSTATE_INVOCATION_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub invocation_timeout: Duration,

    /// The most linear memory one guest instance may have (e.g. 64MiB).
    #[arg(long, env = "WASMSTATE_MAX_GUEST_MEMORY", default_value = "64MiB", value_parser = parse_size)]
    pub max_guest_memory: usize,

    /// The most linear memory all guest instances may have together (e.g.
    /// 4GiB); a call that needs more answers 503. Default: half the
    /// machine's memory (or its cgroup's limit).
    #[arg(long, env = "WASMSTATE_MAX_TOTAL_GUEST_MEMORY", value_parser = parse_size)]
    pub max_total_guest_memory: Option<usize>,

    /// The longest a deployed component may take to compile (e.g. 60s);
    /// longer is refused (400).
    #[arg(long, env = "WASMSTATE_MAX_COMPILE_TIME", default_value = "60s", value_parser = parse_duration)]
    pub max_compile_time: Duration,

    /// The most memory compiling a deployed component may take (e.g. 2GiB);
    /// more is refused (400).
    #[arg(long, env = "WASMSTATE_MAX_COMPILE_MEMORY", default_value = "2GiB", value_parser = parse_size)]
    pub max_compile_memory: usize,

    /// The binary that compiles components in a process of its own, within
    /// the budget above: the `wasmstate` binary itself when it serves.
    /// Unset (an embedded host), components compile in process.
    #[arg(skip)]
    pub compile_worker: Option<PathBuf>,

    /// The largest command payload accepted (e.g. 1MiB); larger answers 413.
    #[arg(long, env = "WASMSTATE_MAX_BODY_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub max_body_bytes: usize,

    /// The largest component upload accepted (e.g. 50MiB); larger answers 413.
    #[arg(long, env = "WASMSTATE_MAX_DEPLOY_BYTES", default_value = "50MiB", value_parser = parse_size)]
    pub max_deploy_bytes: usize,

    /// The most commands that may wait for one entity; more answer 503.
    #[arg(long, env = "WASMSTATE_MAILBOX_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub mailbox_capacity: u32,

    /// The most invocations in flight, from every path (requests, outbox and
    /// event deliveries); more answer 503.
    #[arg(long, env = "WASMSTATE_MAX_IN_FLIGHT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// The most events, and the most side effects, one invocation (an event
    /// delivery too) may produce; more fail it (500) and persist nothing.
    #[arg(long, env = "WASMSTATE_MAX_EVENTS_PER_COMMAND", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_events_per_command: u32,

    /// The largest state a command may leave (e.g. 8MiB); larger fails the command (500).
    #[arg(long, env = "WASMSTATE_MAX_STATE_BYTES", default_value = "8MiB", value_parser = parse_size)]
    pub max_state_bytes: usize,

    /// The most bytes of events one command may emit (e.g. 4MiB); more fail the command (500).
    #[arg(long, env = "WASMSTATE_MAX_EVENT_BYTES_PER_COMMAND", default_value = "4MiB", value_parser = parse_size)]
    pub max_event_bytes_per_command: usize,

    /// Also store a snapshot whenever the events after the latest one pass
    /// this size (e.g. 4MiB), so a cold load never has more to fold.
    #[arg(long, env = "WASMSTATE_SNAPSHOT_EVERY_BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub snapshot_every_bytes: usize,

    /// How much state the entities may hold in memory in all (e.g. 1GiB);
    /// past it, the least recently used idle ones are passivated first.
    #[arg(long, env = "WASMSTATE_MAX_CACHED_STATE_BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub max_cached_state_bytes: usize,

    /// The largest reply one command may produce (e.g. 1MiB); larger fails the command (500).
    #[arg(long, env = "WASMSTATE_MAX_REPLY_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub max_reply_bytes: usize,

    /// How long an `Idempotency-Key` answers repeats with the recorded reply (e.g. 24h).
    #[arg(long, env = "WASMSTATE_IDEMPOTENCY_TTL", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_ttl: Duration,

    /// Delivery attempts of an asynchronous side effect before it is dropped.
    #[arg(long, env = "WASMSTATE_OUTBOX_MAX_ATTEMPTS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub outbox_max_attempts: u32,

    /// The most asynchronous side effects that may wait in the outbox for one
    /// target service; a command that would add more answers 503.
    #[arg(long, env = "WASMSTATE_MAX_OUTBOX_PER_SERVICE", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_outbox_per_service: u64,

    /// The most any service may be granted to reach over HTTP, as
    /// allow-list entries, comma-separated (e.g. `*.example.com,10.0.0.0/8:*`);
    /// a deploy asking for a host beyond it is refused (400). Default: no cap.
    #[arg(long, env = "WASMSTATE_ALLOW_HTTP_MAX", value_parser = parse_allow_list)]
    pub allow_http_max: Option<AllowList>,

    /// The longest one outbound HTTP request (a guest's, or an attempt at a
    /// webhook) may take, to the end of its response (e.g. 10s); a guest's
    /// also ends with its command's time.
    #[arg(long, env = "WASMSTATE_HTTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_timeout: Duration,

    /// The largest response body an outbound HTTP request reads (e.g. 1MiB).
    #[arg(long, env = "WASMSTATE_HTTP_MAX_RESPONSE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub http_max_response_bytes: usize,

    /// A PEM file of root certificates that outbound HTTPS (guests' requests
    /// and webhooks) trusts beside the Mozilla roots built in: for servers
    /// of a private PKI.
    #[arg(long, env = "WASMSTATE_HTTP_CA_FILE", value_name = "PEM")]
    pub http_ca_file: Option<std::path::PathBuf>,

    /// The most outbound HTTP requests one command may make; more are refused.
    #[arg(long, env = "WASMSTATE_HTTP_MAX_REQUESTS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_requests: u32,

    /// Delivery attempts of one event to a subscriber before it is kept as a
    /// dead letter and passed over.
    #[arg(long, env = "WASMSTATE_SUBSCRIPTION_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub subscription_max_attempts: u32,

    /// Memory for the journal's own page cache (pages read or written lately).
    /// The operating system caches the file as well, so a small cache costs
    /// little speed; this bounds how much of the host's memory the journal keeps.
    #[arg(long, env = "WASMSTATE_JOURNAL_CACHE", default_value = "4MiB", value_parser = parse_size)]
    pub journal_cache: usize,

    /// Require `Authorization: Bearer <token>` to deploy and delete services.
    #[arg(long, env = "WASMSTATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Require `Authorization: Bearer <token>` to invoke entities and read their logs.
    #[arg(long, env = "WASMSTATE_INVOKE_TOKEN", hide_env_values = true)]
    pub invoke_token: Option<String>,

    /// Require `Authorization: Bearer <token>` to read `/metrics` and the
    /// deployed services (without it, the invoke token guards them).
    #[arg(long, env = "WASMSTATE_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,

    /// How often services that keep only some history (`retain=snapshots:K`)
    /// drop the rest (e.g. 10s).
    #[arg(long, env = "WASMSTATE_COMPACT_EVERY", default_value = "10s", value_parser = parse_duration)]
    pub compact_every: Duration,

    /// Refuse deploys and rollbacks of a service that has stored entities
    /// unless they are verified against them (`verify=replay`).
    #[arg(long, env = "WASMSTATE_REQUIRE_VERIFY")]
    pub require_verify: bool,

    /// How the other hosts on the journal reach this one (e.g.
    /// http://10.0.0.1:8081). Default: http:// and the address it listens on.
    #[arg(long, env = "WASMSTATE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// The secret the hosts on one journal share to send each other commands
    /// (set it through the environment). Required with a PostgreSQL journal
    /// unless --insecure; without it, every host runs what it receives.
    #[arg(long, env = "WASMSTATE_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,

    /// A host on the journal with no heartbeat for this long is taken for
    /// dead (e.g. 5s).
    #[arg(long, env = "WASMSTATE_HOST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub host_timeout: Duration,

    /// The host names requests may name in `Host`, comma-separated (a name,
    /// or name:port). Default: the loopback names on a loopback address,
    /// the address itself on another, any host on 0.0.0.0 or [::].
    #[arg(long, env = "WASMSTATE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Origins (scheme://host[:port]) that web pages may invoke and deploy
    /// from, comma-separated; they get CORS answers. Other origins are refused.
    #[arg(long, env = "WASMSTATE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// The most connections served at once (lowered to fit the open-file
    /// limit); past it, connections are answered 503 at once.
    #[arg(long, env = "WASMSTATE_MAX_CONNECTIONS", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// How long a connection may take to send a request's whole header,
    /// from when it connects or finishes its last response (it closes idle
    /// keep-alive connections too).
    #[arg(long, env = "WASMSTATE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// The largest request header accepted (e.g. 32KiB); larger answers 431.
    #[arg(long, env = "WASMSTATE_MAX_HEADER_BYTES", default_value = "32KiB", value_parser = parse_header_size)]
    pub max_header_bytes: usize,

    /// Allow listening on a non-loopback address without an admin token.
    #[arg(long, env = "WASMSTATE_INSECURE")]
    pub insecure: bool,

    /// Deploy a component at start-up, as NAME=PATH, with options as in a
    /// deploy's query: NAME=PATH?subscribe=SOURCE[,SOURCE]&allow_http=HOST[,HOST],
    /// unless that service's newest version is already the same. Repeatable.
    #[arg(long = "deploy", value_name = "NAME=PATH", value_parser = parse_deploy)]
    pub deploys: Vec<StartupDeploy>,

    /// Export the spans of every invocation (and its guest calls and
    /// commit) over OTLP/HTTP to this collector, e.g. http://localhost:4318
    /// (spans go to URL/v1/traces).
    #[arg(long, env = "WASMSTATE_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

impl ServeConfig {
    /// Settings from `serve`-style arguments (without the program name),
    /// the defaults filling the rest; for embedding the server.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{Args, FromArgMatches};
        let command = Self::augment_args(clap::Command::new("serve").no_binary_name(true));
        Self::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    /// The bounds on every outbound HTTP request.
    pub fn outbound(&self) -> OutboundLimits {
        OutboundLimits {
            timeout: self.http_timeout,
            max_response_bytes: self.http_max_response_bytes as u64,
            max_requests_per_command: self.http_max_requests,
        }
    }
}

/// Accepts a PostgreSQL URL, the one kind of `--journal` there is.
fn parse_journal_url(text: &str) -> Result<String, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(text.to_string())
    } else {
        Err("the journal is a PostgreSQL URL, postgres://user:pass@host:port/db \
             (leave it out for the redb file in --data-dir)"
            .into())
    }
}

/// The longest duration a setting takes: deadlines computed from it stay
/// far from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Reads an allow-list: entries such as `api.example.com`, `*.example.com`,
/// `10.0.0.0/8:*`, comma-separated.
pub fn parse_allow_list(text: &str) -> Result<AllowList, String> {
    AllowList::parse(text).map_err(|e| e.to_string())
}

/// Parses `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds, up to
/// 100 years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 30s, 2m"))?;
    let duration = match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        other => return Err(format!("invalid duration unit {other:?}: use ms, s, m or h")),
    };
    duration.filter(|d| *d <= MAX_DURATION).ok_or_else(|| format!("the duration {text:?} is longer than 100 years"))
}

/// Parses a byte size: `4096`, `64KiB`, `64MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number.parse().map_err(|_| format!("invalid size {text:?}: expected e.g. 4096, 64KiB, 1MiB"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("invalid size unit {other:?}: use KiB, MiB or GiB")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a header size: at least 1 KiB, at most 64 KiB.
fn parse_header_size(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    if !(1 << 10..=64 << 10).contains(&size) {
        return Err(format!("a header size must be 1KiB to 64KiB, not {text:?}"));
    }
    Ok(size)
}

/// A component to deploy at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupDeploy {
    /// The service name.
    pub service: String,
    /// The component file.
    pub path: PathBuf,
    /// The services it subscribes to.
    pub subscriptions: Vec<String>,
    /// The hosts its guests may reach over HTTP.
    pub allow_http: AllowList,
}

fn parse_deploy(text: &str) -> Result<StartupDeploy, String> {
    let (service, rest) = text.split_once('=').ok_or_else(|| format!("expected NAME=PATH, got {text:?}"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut deploy = StartupDeploy {
        service: service.to_string(),
        path: PathBuf::from(path),
        subscriptions: Vec::new(),
        allow_http: AllowList::default(),
    };
    for option in query.split('&').filter(|option| !option.is_empty()) {
        match option.split_once('=') {
            Some(("subscribe", sources)) => deploy.subscriptions = sources.split(',').map(str::to_string).collect(),
            Some(("allow_http", hosts)) => deploy.allow_http = parse_allow_list(hosts)?,
            _ => return Err(format!("a start-up deploy takes subscribe= and allow_http=, not {option:?}")),
        }
    }
    Ok(deploy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("18446744073709551615h").is_err(), "no overflow");
        assert!(parse_duration("876000h").is_ok() && parse_duration("876001h").is_err());
    }

    #[test]
    fn settings_from_arguments() {
        let config = ServeConfig::from_args(["--data-dir", "/tmp/x", "--snapshot-every", "5"]).unwrap();
        assert_eq!(config.snapshot_every, 5);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.invocation_timeout, Duration::from_secs(5));
        assert_eq!(config.journal_cache, 4 << 20);
        assert_eq!(ServeConfig::from_args(["--journal-cache", "64MiB"]).unwrap().journal_cache, 64 << 20);
        assert!(ServeConfig::from_args(["--snapshot-every", "0"]).is_err());
    }

    #[test]
    fn startup_deploys() {
        let plain = parse_deploy("cart=a/cart.wasm").unwrap();
        assert_eq!(
            (plain.service.as_str(), plain.path.to_str(), plain.subscriptions.len()),
            ("cart", Some("a/cart.wasm"), 0)
        );
        let sub = parse_deploy("proj=p.wasm?subscribe=cart,orders").unwrap();
        assert_eq!(sub.subscriptions, ["cart", "orders"]);
        let both = parse_deploy("fraud=f.wasm?allow_http=127.0.0.1:9100,*.example.com&subscribe=a").unwrap();
        assert_eq!(
            (both.subscriptions, both.allow_http.entries()),
            (vec!["a".into()], vec!["127.0.0.1:9100".into(), "*.example.com".into()])
        );
        assert!(parse_deploy("no-equals").is_err());
        assert!(parse_deploy("x=x.wasm?retain=all").is_err());
        assert!(parse_deploy("x=x.wasm?allow_http=https://x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("50mb"), Ok(50 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1PiB").is_err());
    }
}
