//! A fraud detector: scores every transaction of an account, and opens a
//! case in an outside case system for the suspicious ones.
//!
//! An event-sourced entity per account (its id is the account's). A
//! transaction's score adds up the points of the account's own
//! deterministic [`rules`] — an amount far above the account's average, a
//! country it never paid from, a burst of transactions within a minute —
//! and, when a scoring service is configured, the score that service
//! answers. At or above the account's threshold (70 unless configured) a
//! transaction is suspicious, and a case goes to the case system as a
//! webhook.
//!
//! The two outside calls show the two ways out of a command:
//!
//! - The scoring service is called *during* the command, with
//!   [`wasmstate_sdk::http::post`], because its answer decides the score.
//!   The score it answered is recorded in the `TransactionScored` event
//!   (`external_score`), and the state changes only from the event, so a
//!   replay never calls out. A scoring service that fails fails the
//!   command: nothing is recorded, and the client may try again.
//! - The case goes out as a webhook ([`SideEffect::webhook`]): the host
//!   sends it from its durable outbox once the event is committed, with an
//!   `Idempotency-Key` that stays the same across retries, and never for a
//!   command that failed.
//!
//! Both URLs must be on the service's allow-list: deploy it with
//! `?allow_http=host:port,...` (see the README beside this crate).
//!
//! Commands (JSON bodies):
//!
//! - `configure {"case_system_url", "scoring_url"?, "threshold"?}`: where
//!   cases go, the scoring service if any (`null`: none), and the score
//!   from which a transaction is suspicious (1 to 100, default
//!   [`DEFAULT_THRESHOLD`]); replies the summary;
//! - `record {"id", "amount_cents", "merchant", "country"}` scores a
//!   transaction (an id of 1 to 128 bytes, a positive amount, a merchant,
//!   a two-letter country code) and replies `{"score", "suspicious",
//!   "reasons": [...], "duplicate": false}`. An id already recorded (among
//!   the latest [`KEPT_TRANSACTIONS`]) is answered as recorded, with
//!   `"duplicate": true`, and changes nothing. Refused until the account
//!   is configured;
//! - `get` replies the summary: `{"account", "count", "average_cents",
//!   "countries", "suspicious", "configuration"}`.
//!
//! Events: `Configured {"case_system_url", "scoring_url", "threshold"}` and
//! `TransactionScored {"id", "amount_cents", "merchant", "country",
//! "score", "suspicious", "reasons", "external_score", "at_ms"}`, each
//! tagged with `"type"`.
//!
//! A case (the webhook's JSON body): `{"account", "transaction": {"id",
//! "amount_cents", "merchant", "country", "at_ms"}, "score", "reasons"}`.

pub mod rules;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Context, EventSourced, Failure, Reply, SideEffect, http};

/// The score from which a transaction is suspicious, unless configured.
pub const DEFAULT_THRESHOLD: u32 = 70;
/// The highest score.
pub const MAX_SCORE: u32 = 100;
/// How many of the latest transactions the state keeps (for duplicates and
/// bursts).
pub const KEPT_TRANSACTIONS: usize = 1000;
/// The longest transaction id, in bytes.
const MAX_ID_BYTES: usize = 128;

/// Where an account's cases go and how it scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// Where cases are sent, as webhooks.
    pub case_system_url: String,
    /// The scoring service transactions are also sent to, if any.
    pub scoring_url: Option<String>,
    /// The score from which a transaction is suspicious.
    pub threshold: u32,
}

/// A transaction to score, as `record` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The transaction's id, unique per account.
    pub id: String,
    /// The amount, in cents.
    pub amount_cents: u64,
    /// Where it was paid.
    pub merchant: String,
    /// The country it was paid in: an ISO 3166 two-letter code.
    pub country: String,
}

/// A transaction as scored: the `TransactionScored` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoredTransaction {
    /// The transaction's id.
    pub id: String,
    /// The amount, in cents.
    pub amount_cents: u64,
    /// Where it was paid.
    pub merchant: String,
    /// The country it was paid in.
    pub country: String,
    /// Its score, 0 to [`MAX_SCORE`].
    pub score: u32,
    /// Whether the score reached the threshold.
    pub suspicious: bool,
    /// Why it scored what it did.
    pub reasons: Vec<String>,
    /// What the scoring service answered, if one was asked.
    pub external_score: Option<u32>,
    /// When it was recorded, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// An account's history: the state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Where cases go and how it scores; `None` until configured.
    pub configuration: Option<Configuration>,
    /// How many transactions were recorded.
    pub count: u64,
    /// Their total amount, in cents.
    pub total_cents: u64,
    /// The countries they were paid in.
    pub countries: BTreeSet<String>,
    /// How many were suspicious.
    pub suspicious: u64,
    /// The latest [`KEPT_TRANSACTIONS`], oldest first.
    pub recent: Vec<ScoredTransaction>,
}

impl Account {
    /// Folds a scored transaction into the history.
    fn record(&mut self, scored: ScoredTransaction) {
        self.count += 1;
        self.total_cents = self.total_cents.saturating_add(scored.amount_cents);
        self.countries.insert(scored.country.clone());
        self.suspicious += u64::from(scored.suspicious);
        self.recent.push(scored);
        let excess = self.recent.len().saturating_sub(KEPT_TRANSACTIONS);
        self.recent.drain(..excess);
    }

    /// What `get` replies for account `account`.
    fn summary(&self, account: &str) -> Summary {
        Summary {
            account: account.to_owned(),
            count: self.count,
            average_cents: self.total_cents.checked_div(self.count).unwrap_or(0),
            countries: self.countries.iter().cloned().collect(),
            suspicious: self.suspicious,
            configuration: self.configuration.clone(),
        }
    }
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// The account was configured, replacing any earlier configuration.
    Configured(Configuration),
    /// A transaction was scored.
    TransactionScored(ScoredTransaction),
}

/// The arguments of `configure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    /// Where cases go.
    pub case_system_url: String,
    /// The scoring service, if any.
    #[serde(default)]
    pub scoring_url: Option<String>,
    /// The score from which a transaction is suspicious.
    #[serde(default)]
    pub threshold: Option<u32>,
}

/// The detector's commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Configures the account.
    Configure(Configure),
    /// Scores a transaction.
    Record(Transaction),
    /// Replies the summary.
    Get,
}

/// The reply of `record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The transaction's score.
    pub score: u32,
    /// Whether it is suspicious.
    pub suspicious: bool,
    /// Why it scored what it did.
    pub reasons: Vec<String>,
    /// Whether it was recorded before: the answer is the one recorded.
    pub duplicate: bool,
}

/// The reply of `get` and `configure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The account's id.
    pub account: String,
    /// How many transactions were recorded.
    pub count: u64,
    /// Their average amount, in cents (0 without any).
    pub average_cents: u64,
    /// The countries they were paid in.
    pub countries: Vec<String>,
    /// How many were suspicious.
    pub suspicious: u64,
    /// How the account is configured, if it is.
    pub configuration: Option<Configuration>,
}

/// What the scoring service is sent.
#[derive(Serialize)]
struct ScoreRequest<'a> {
    account: &'a str,
    #[serde(flatten)]
    transaction: &'a Transaction,
}

/// What the scoring service answers.
#[derive(Deserialize)]
struct ScoreResponse {
    score: u32,
}

/// What goes to the case system: the webhook's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The account's id.
    pub account: String,
    /// The suspicious transaction.
    pub transaction: CaseTransaction,
    /// Its score.
    pub score: u32,
    /// Why it is suspicious.
    pub reasons: Vec<String>,
}

/// The transaction of a [`Case`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseTransaction {
    /// Its id.
    pub id: String,
    /// The amount, in cents.
    pub amount_cents: u64,
    /// Where it was paid.
    pub merchant: String,
    /// The country it was paid in.
    pub country: String,
    /// When it was recorded, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// `url` when it is an `http` or `https` URL; `field` names it otherwise.
fn check_url(field: &str, url: String) -> Result<String, Failure> {
    let url = url.trim().to_owned();
    let lower = url.to_ascii_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://")) && !url.contains(char::is_whitespace) {
        Ok(url)
    } else {
        Err(Failure::rejected(format!("{field} must be an http:// or https:// URL, not {url:?}")))
    }
}

/// The configuration `configure` asks for, or why it cannot be one.
fn configuration(configure: Configure) -> Result<Configuration, Failure> {
    let threshold = configure.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !(1..=MAX_SCORE).contains(&threshold) {
        return Err(Failure::rejected(format!("threshold must be 1 to {MAX_SCORE}, not {threshold}")));
    }
    Ok(Configuration {
        case_system_url: check_url("case_system_url", configure.case_system_url)?,
        scoring_url: configure.scoring_url.map(|url| check_url("scoring_url", url)).transpose()?,
        threshold,
    })
}

/// `transaction`, its country uppercased, or why it cannot be recorded.
fn checked(mut transaction: Transaction) -> Result<Transaction, Failure> {
    if transaction.id.is_empty() || transaction.id.len() > MAX_ID_BYTES {
        return Err(Failure::rejected(format!("a transaction id has 1 to {MAX_ID_BYTES} bytes")));
    }
    if transaction.amount_cents == 0 {
        return Err(Failure::rejected("amount_cents must be positive"));
    }
    if transaction.merchant.trim().is_empty() {
        return Err(Failure::rejected("a transaction names its merchant"));
    }
    transaction.country = transaction.country.trim().to_ascii_uppercase();
    if transaction.country.len() != 2 || !transaction.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Failure::rejected(format!(
            "country must be a two-letter ISO 3166 code such as NL, not {:?}",
            transaction.country
        )));
    }
    Ok(transaction)
}

/// What the scoring service at `url` scores `transaction` of `account`.
fn external_score(url: &str, account: &str, transaction: &Transaction) -> Result<u32, Failure> {
    let failed = |error: http::HttpError| {
        Failure::rejected(format!("the scoring service failed, so nothing was recorded: {error}"))
    };
    let request = ScoreRequest { account, transaction };
    let response = http::post(url, &request).and_then(http::Response::error_for_status).map_err(failed)?;
    let ScoreResponse { score } = response.json().map_err(failed)?;
    if score > MAX_SCORE {
        return Err(Failure::rejected(format!(
            "the scoring service answered score {score}, outside 0 to {MAX_SCORE}, so nothing was recorded"
        )));
    }
    Ok(score)
}

/// Scores `transaction` against `account` and what the scoring service
/// answers, if one is configured.
fn score(ctx: &Context<'_, Account>, transaction: Transaction) -> Result<ScoredTransaction, Failure> {
    let account = ctx.state();
    let Some(configuration) = &account.configuration else {
        return Err(Failure::rejected(format!(
            "account {} is not configured: send configure {{\"case_system_url\": ...}} first",
            ctx.entity_id()
        )));
    };
    let at_ms = ctx.metadata().now_ms();
    let findings = rules::check(account, &transaction, at_ms);
    let mut score: u32 = findings.iter().map(|finding| finding.points).sum();
    let mut reasons: Vec<String> = findings.into_iter().map(|finding| finding.reason).collect();
    let external_score = match &configuration.scoring_url {
        Some(url) => Some(external_score(url, ctx.entity_id(), &transaction)?),
        None => None,
    };
    if let Some(external) = external_score.filter(|external| *external > 0) {
        score += external;
        reasons.push(format!("the scoring service scored it {external}"));
    }
    let score = score.min(MAX_SCORE);
    let Transaction { id, amount_cents, merchant, country } = transaction;
    let suspicious = score >= configuration.threshold;
    Ok(ScoredTransaction { id, amount_cents, merchant, country, score, suspicious, reasons, external_score, at_ms })
}

/// The case of `scored`, a suspicious transaction of `account`.
fn case(account: &str, scored: &ScoredTransaction) -> Case {
    Case {
        account: account.to_owned(),
        transaction: CaseTransaction {
            id: scored.id.clone(),
            amount_cents: scored.amount_cents,
            merchant: scored.merchant.clone(),
            country: scored.country.clone(),
            at_ms: scored.at_ms,
        },
        score: scored.score,
        reasons: scored.reasons.clone(),
    }
}

impl Verdict {
    /// The verdict recorded in `scored`.
    fn of(scored: &ScoredTransaction, duplicate: bool) -> Self {
        Self { score: scored.score, suspicious: scored.suspicious, reasons: scored.reasons.clone(), duplicate }
    }
}

impl EventSourced for Account {
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Configured(configuration) => self.configuration = Some(configuration.clone()),
            Event::TransactionScored(scored) => self.record(scored.clone()),
        }
    }

    fn handle(command: Command, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            Command::Configure(configure) => {
                ctx.emit(Event::Configured(configuration(configure)?));
                Ok(Reply::json(&ctx.state().summary(ctx.entity_id())))
            }
            Command::Record(transaction) => {
                let transaction = checked(transaction)?;
                // A repeat is answered from history: no call, no event, no case.
                if let Some(earlier) = ctx.state().recent.iter().find(|earlier| earlier.id == transaction.id) {
                    return Ok(Reply::json(&Verdict::of(earlier, true)));
                }
                let scored = score(ctx, transaction)?;
                if scored.suspicious
                    && let Some(configuration) = &ctx.state().configuration
                {
                    let webhook = SideEffect::webhook(&configuration.case_system_url);
                    ctx.effect(webhook.json(&case(ctx.entity_id(), &scored)));
                }
                let verdict = Verdict::of(&scored, false);
                ctx.emit(Event::TransactionScored(scored));
                Ok(Reply::json(&verdict))
            }
            Command::Get => Ok(Reply::json(&ctx.state().summary(ctx.entity_id()))),
        }
    }
}

wasmstate_sdk::export_event_sourced!(Account);

#[cfg(test)]
mod tests;
