//! The detector through the test kit: its clock, its HTTP stubs and its
//! record of webhooks.

use serde_json::{Value, json};
use wasmstate_sdk::FailureCode;
use wasmstate_sdk::http::{Method, Response};
use wasmstate_sdk::testkit::{self, TestKit};

use super::*;

/// 2030-03-14T00:00:00Z.
const T0: u64 = 1_899_676_800_000;
const MINUTE: u64 = 60_000;
const CASES: &str = "http://127.0.0.1:9100/cases";
const SCORING: &str = "http://127.0.0.1:9100/score";

fn kit(scoring_url: Option<&str>) -> TestKit<Account> {
    let mut kit = TestKit::<Account>::new("acc-1");
    kit.set_time_ms(T0);
    let configure =
        Configure { case_system_url: CASES.into(), scoring_url: scoring_url.map(str::to_owned), threshold: None };
    kit.send(&Command::Configure(configure)).unwrap();
    kit
}

fn transaction(id: &str, amount_cents: u64, country: &str) -> Command {
    Command::Record(Transaction { id: id.into(), amount_cents, merchant: "Bakery".into(), country: country.into() })
}

/// Records `command` an hour after the last, replying its verdict.
fn record(kit: &mut TestKit<Account>, command: &Command) -> Verdict {
    kit.set_time_ms(kit.now_ms() + 60 * MINUTE);
    serde_json::from_value(kit.send(command).unwrap()).unwrap()
}

/// An account with three 20.00 payments in NL, an hour apart.
fn with_history(scoring_url: Option<&str>) -> TestKit<Account> {
    let mut kit = kit(scoring_url);
    for n in 1..=3 {
        let verdict = record(&mut kit, &transaction(&format!("tx-{n}"), 2000, "NL"));
        assert_eq!((verdict.score, verdict.suspicious), (0, false));
    }
    kit
}

#[test]
fn configure_checks_and_replies_the_summary() {
    let mut kit = TestKit::<Account>::new("acc-1");
    let configure = json!({"case_system_url": CASES, "scoring_url": null, "threshold": 50});
    let summary = kit.handle("configure", configure).unwrap();
    let configuration = json!({"case_system_url": CASES, "scoring_url": null, "threshold": 50});
    assert_eq!(
        summary,
        json!({"account": "acc-1", "count": 0, "average_cents": 0, "countries": [], "suspicious": 0, "configuration": configuration})
    );
    let failure = kit.handle("configure", json!({"case_system_url": "cases.example.com"})).unwrap_err();
    assert_eq!(failure.message(), "case_system_url must be an http:// or https:// URL, not \"cases.example.com\"");
    let failure = kit.handle("configure", json!({"case_system_url": CASES, "threshold": 0})).unwrap_err();
    assert_eq!(failure.message(), "threshold must be 1 to 100, not 0");
    assert_eq!(kit.seq(), 1);
}

#[test]
fn an_unconfigured_account_and_bad_transactions_are_refused() {
    let mut unconfigured = TestKit::<Account>::new("acc-1");
    let failure = unconfigured.send(&transaction("tx-1", 100, "NL")).unwrap_err();
    assert!(failure.message().starts_with("account acc-1 is not configured"), "{failure}");

    let mut kit = kit(None);
    for (command, message) in [
        (transaction("", 100, "NL"), "a transaction id has 1 to 128 bytes"),
        (transaction("tx", 0, "NL"), "amount_cents must be positive"),
        (
            transaction("tx", 100, "Netherlands"),
            "country must be a two-letter ISO 3166 code such as NL, not \"NETHERLANDS\"",
        ),
    ] {
        let failure = kit.send(&command).unwrap_err();
        assert_eq!((failure.code(), failure.message()), (FailureCode::Rejected, message));
    }
    let typo = kit.handle("record", json!({"id": "tx", "amount": 1, "merchant": "m", "country": "NL"})).unwrap_err();
    assert_eq!(typo.code(), FailureCode::InvalidPayload);
    assert_eq!(kit.seq(), 1);
}

#[test]
fn ordinary_transactions_are_not_suspicious_and_send_no_case() {
    let mut kit = with_history(None);
    // Far above the average alone scores 50, under the threshold of 70.
    let verdict = record(&mut kit, &transaction("tx-4", 10_000, "nl"));
    assert_eq!((verdict.score, verdict.suspicious), (50, false));
    assert_eq!(verdict.reasons, ["amount 100.00 is more than 3 times the account's average of 20.00"]);
    assert!(kit.webhooks().is_empty());
    let summary = kit.send(&Command::Get).unwrap();
    assert_eq!((summary["count"].clone(), summary["average_cents"].clone()), (json!(4), json!(4000)));
    assert_eq!(summary["countries"], json!(["NL"]));
}

#[test]
fn a_suspicious_transaction_opens_a_case_with_a_webhook() {
    let mut kit = with_history(None);
    let verdict = record(&mut kit, &transaction("tx-4", 90_000, "BR"));
    let reasons = vec![
        "amount 900.00 is more than 3 times the account's average of 20.00".to_owned(),
        "first transaction from BR (before: NL)".to_owned(),
    ];
    assert_eq!(verdict, Verdict { score: 80, suspicious: true, reasons: reasons.clone(), duplicate: false });

    let at_ms = kit.now_ms();
    let case = json!({
        "account": "acc-1",
        "transaction": {"id": "tx-4", "amount_cents": 90_000, "merchant": "Bakery", "country": "BR", "at_ms": at_ms},
        "score": 80,
        "reasons": reasons,
    });
    let webhooks = kit.take_webhooks();
    assert_eq!(webhooks.len(), 1);
    assert_eq!((webhooks[0].url(), webhooks[0].method_name()), (CASES, "POST"));
    assert_eq!((webhooks[0].content_type(), webhooks[0].body_json::<Value>().unwrap()), ("application/json", case));

    let (_, event) = kit.events_json().pop().unwrap();
    assert_eq!(
        (event["type"].clone(), event["suspicious"].clone(), event["at_ms"].clone()),
        (json!("TransactionScored"), json!(true), json!(at_ms))
    );
    assert_eq!(kit.send(&Command::Get).unwrap()["suspicious"], 1);
}

#[test]
fn a_burst_within_a_minute_from_a_new_country_is_suspicious() {
    let mut kit = with_history(None);
    kit.set_time_ms(kit.now_ms() + 30 * MINUTE);
    for n in 0..3 {
        kit.set_time_ms(kit.now_ms() + 10_000);
        let verdict: Verdict =
            serde_json::from_value(kit.send(&transaction(&format!("b-{n}"), 1500, "NL")).unwrap()).unwrap();
        assert!(!verdict.suspicious, "{verdict:?}");
    }
    kit.set_time_ms(kit.now_ms() + 10_000);
    let verdict: Verdict = serde_json::from_value(kit.send(&transaction("b-3", 1500, "DE")).unwrap()).unwrap();
    assert_eq!(verdict.reasons, ["first transaction from DE (before: NL)", "4 transactions within 60 s"]);
    assert_eq!((verdict.score, verdict.suspicious), (70, true));
    assert_eq!(kit.webhooks().len(), 1);
}

#[test]
fn the_scoring_service_adds_its_score_which_the_event_records() {
    testkit::http::respond(Method::Post, SCORING, Response::new(200).with_json(&json!({"score": 0})));
    let mut kit = with_history(Some(SCORING));
    testkit::http::respond(Method::Post, SCORING, Response::new(200).with_json(&json!({"score": 35})));
    let verdict = record(&mut kit, &transaction("tx-4", 2500, "DE"));
    assert_eq!(verdict.reasons, ["first transaction from DE (before: NL)", "the scoring service scored it 35"]);
    assert_eq!((verdict.score, verdict.suspicious), (65, false));

    let requests = testkit::http::requests();
    assert_eq!(requests.len(), 4, "one call per transaction");
    let sent = &requests[3];
    assert_eq!((sent.method.clone(), sent.url.as_str()), (Method::Post, SCORING));
    assert_eq!(
        sent.json(),
        json!({"account": "acc-1", "id": "tx-4", "amount_cents": 2500, "merchant": "Bakery", "country": "DE"})
    );
    let (_, event) = kit.events_json().pop().unwrap();
    assert_eq!(event["external_score"], 35);

    // The state is the events' alone: without the service, it reads the same.
    testkit::http::reset();
    assert_eq!(kit.send(&Command::Get).unwrap()["count"], 4);
    assert!(testkit::http::requests().is_empty());
}

#[test]
fn a_failing_scoring_service_fails_the_command_and_records_nothing() {
    let mut kit = kit(Some(SCORING));
    testkit::http::fail(Method::Post, SCORING, "connection-refused");
    let failure = kit.send(&transaction("tx-1", 90_000, "BR")).unwrap_err();
    assert_eq!(
        failure.message(),
        "the scoring service failed, so nothing was recorded: the request to http://127.0.0.1:9100/score failed: \
         127.0.0.1:9100 refused the connection (connection-refused)"
    );

    testkit::http::respond(Method::Post, SCORING, Response::new(503).with_body("overloaded"));
    let failure = kit.send(&transaction("tx-1", 90_000, "BR")).unwrap_err();
    assert!(failure.message().ends_with("http://127.0.0.1:9100/score answered status 503: overloaded"), "{failure}");

    testkit::http::respond(Method::Post, SCORING, Response::new(200).with_json(&json!({"risk": "high"})));
    let failure = kit.send(&transaction("tx-1", 90_000, "BR")).unwrap_err();
    assert!(failure.message().contains("is not the JSON expected: missing field `score`"), "{failure}");

    testkit::http::respond(Method::Post, SCORING, Response::new(200).with_json(&json!({"score": 101})));
    let failure = kit.send(&transaction("tx-1", 90_000, "BR")).unwrap_err();
    assert_eq!(failure.message(), "the scoring service answered score 101, outside 0 to 100, so nothing was recorded");

    assert_eq!((kit.seq(), kit.state().count), (1, 0));
    assert!(kit.webhooks().is_empty());
}

#[test]
fn a_duplicate_is_answered_from_history() {
    testkit::http::respond(Method::Post, SCORING, Response::new(200).with_json(&json!({"score": 90})));
    let mut kit = kit(Some(SCORING));
    let first = record(&mut kit, &transaction("tx-1", 500, "NL"));
    assert_eq!((first.score, first.suspicious, first.duplicate), (90, true, false));
    let seq = kit.seq();

    let again = record(&mut kit, &transaction("tx-1", 700, "BE"));
    assert_eq!(again, Verdict { duplicate: true, ..first });
    assert_eq!(kit.seq(), seq, "no new event");
    assert_eq!(kit.webhooks().len(), 1, "one case");
    assert_eq!(testkit::http::requests().len(), 1, "one call");
    let summary: Value = kit.send(&Command::Get).unwrap();
    assert_eq!(summary["count"], 1);
}
