//! The fraud detector example on a real host: it scores each transaction
//! with its rules and a scoring service it calls over HTTP (the score that
//! came back recorded in its event), and opens a case in the case system
//! with a webhook once a suspicious transaction is committed. A repeated
//! transaction is answered from history: no call, no second case.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::FRAUD_DETECTOR;

use crate::http_receiver::Receiver;
use crate::start;

#[tokio::test]
async fn a_suspicious_transaction_opens_one_case_and_every_score_is_recorded() {
    let outside = Receiver::start().await;
    let t = start(&[]).await;
    let api = &t.api;
    let allow = format!("allow_http={}", outside.authority());
    api.deploy_with("fraud", Path::new(FRAUD_DETECTOR), &allow).await.expect(201);
    let configure = json!({ "case_system_url": outside.url("/cases"), "scoring_url": outside.url("/score") });
    api.invoke("fraud", "acc-1", "configure", configure).await.expect(200);

    for n in 1..=3 {
        let tx = json!({ "id": format!("tx-{n}"), "amount_cents": 2000, "merchant": "Bakery", "country": "NL" });
        let scored = api.invoke("fraud", "acc-1", "record", tx).await.expect(200);
        assert_eq!((scored["score"].as_u64(), scored["suspicious"].as_bool()), (Some(10), Some(false)), "{scored}");
    }
    let scoring = outside.requests_to("/score");
    assert_eq!(scoring.len(), 3, "the scoring service was asked about each transaction");
    assert_eq!(scoring[0].json()["id"], "tx-1", "{:?}", scoring[0]);

    let big = json!({ "id": "tx-4", "amount_cents": 90000, "merchant": "Electronics", "country": "BR" });
    let scored = api.invoke("fraud", "acc-1", "record", big.clone()).await.expect(200);
    assert_eq!(scored["suspicious"], true, "{scored}");
    let cases = outside.wait_for("/cases", 1, Duration::from_secs(10)).await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    let case = cases[0].json();
    assert_eq!((case["account"].as_str(), case["transaction"]["id"].as_str()), (Some("acc-1"), Some("tx-4")), "{case}");
    assert!(cases[0].header("idempotency-key").is_some());

    let again = api.invoke("fraud", "acc-1", "record", big).await.expect(200);
    assert_eq!(again["duplicate"], true, "{again}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!((outside.requests_to("/score").len(), outside.requests_to("/cases").len()), (4, 1));

    let events = api.events("fraud", "acc-1", 1).await;
    let scored: Vec<_> = events.iter().filter(|e| e["payload"]["type"] == "TransactionScored").collect();
    assert_eq!(scored.len(), 4, "{events:?}");
    assert!(scored.iter().all(|e| e["payload"]["external_score"] == 10), "{scored:?}");
}
