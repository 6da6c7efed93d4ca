//! The account's own rules: deterministic checks of a transaction against
//! the account's history, each adding points to its score.

use crate::{Account, Transaction};

/// How many transactions an account needs before its average means
/// anything.
pub const MIN_HISTORY: u64 = 3;
/// How many times the account's average an amount must exceed to count as
/// far above it.
pub const AVERAGE_FACTOR: u64 = 3;
/// The points of an amount far above the account's average.
pub const FAR_ABOVE_AVERAGE_POINTS: u32 = 50;
/// The points of a country the account has never paid from.
pub const NEW_COUNTRY_POINTS: u32 = 30;
/// The window of a burst, in ms.
pub const BURST_WINDOW_MS: u64 = 60_000;
/// How many earlier transactions within [`BURST_WINDOW_MS`] make a burst.
pub const BURST_SIZE: usize = 3;
/// The points of a burst.
pub const BURST_POINTS: u32 = 40;

/// One reason to suspect a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it adds to the score.
    pub points: u32,
    /// Why, for people.
    pub reason: String,
}

/// `cents` as units with two decimals, such as `12.50`.
pub fn amount(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What the account's history says of `transaction`, made at `at_ms`.
pub fn check(account: &Account, transaction: &Transaction, at_ms: u64) -> Vec<Finding> {
    let mut findings = Vec::new();
    if account.count >= MIN_HISTORY {
        let average = account.total_cents / account.count;
        if transaction.amount_cents > average.saturating_mul(AVERAGE_FACTOR) {
            findings.push(Finding {
                points: FAR_ABOVE_AVERAGE_POINTS,
                reason: format!(
                    "amount {} is more than {AVERAGE_FACTOR} times the account's average of {}",
                    amount(transaction.amount_cents),
                    amount(average)
                ),
            });
        }
    }
    if account.count > 0 && !account.countries.contains(&transaction.country) {
        let seen: Vec<&str> = account.countries.iter().map(String::as_str).collect();
        findings.push(Finding {
            points: NEW_COUNTRY_POINTS,
            reason: format!("first transaction from {} (before: {})", transaction.country, seen.join(", ")),
        });
    }
    let since = at_ms.saturating_sub(BURST_WINDOW_MS);
    let recent = account.recent.iter().filter(|earlier| earlier.at_ms > since).count();
    if recent >= BURST_SIZE {
        findings.push(Finding {
            points: BURST_POINTS,
            reason: format!("{} transactions within {} s", recent + 1, BURST_WINDOW_MS / 1000),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ScoredTransaction;

    const T0: u64 = 1_900_000_000_000;

    fn transaction(amount_cents: u64, country: &str) -> Transaction {
        Transaction { id: "tx".into(), amount_cents, merchant: "shop".into(), country: country.into() }
    }

    /// An account with `amounts` paid in NL, a minute apart, the last at `T0`.
    fn account(amounts: &[u64]) -> Account {
        let mut account = Account::default();
        for (n, &amount_cents) in amounts.iter().enumerate() {
            let at_ms = T0 - (amounts.len() - 1 - n) as u64 * BURST_WINDOW_MS;
            account.record(ScoredTransaction {
                id: format!("tx-{n}"),
                amount_cents,
                merchant: "shop".into(),
                country: "NL".into(),
                score: 0,
                suspicious: false,
                reasons: Vec::new(),
                external_score: None,
                at_ms,
            });
        }
        account
    }

    #[test]
    fn an_amount_far_above_the_average_needs_a_history() {
        let later = T0 + BURST_WINDOW_MS;
        assert!(check(&account(&[1000, 1000]), &transaction(100_000, "NL"), later).is_empty());
        let findings = check(&account(&[1000, 2000, 3000]), &transaction(6001, "NL"), later);
        assert_eq!(findings[0].points, FAR_ABOVE_AVERAGE_POINTS);
        assert_eq!(findings[0].reason, "amount 60.01 is more than 3 times the account's average of 20.00");
        assert!(check(&account(&[1000, 2000, 3000]), &transaction(6000, "NL"), later).is_empty());
    }

    #[test]
    fn a_new_country_counts_once_the_account_has_paid_somewhere() {
        assert!(check(&Account::default(), &transaction(100, "BR"), T0).is_empty());
        let mut account = account(&[100]);
        account.countries = BTreeSet::from(["DE".to_owned(), "NL".to_owned()]);
        let findings = check(&account, &transaction(100, "BR"), T0 + BURST_WINDOW_MS);
        assert_eq!(
            findings,
            [Finding { points: NEW_COUNTRY_POINTS, reason: "first transaction from BR (before: DE, NL)".into() }]
        );
    }

    #[test]
    fn a_burst_is_the_fourth_transaction_within_a_minute() {
        let mut account = account(&[100, 100, 100]);
        for earlier in &mut account.recent {
            earlier.at_ms = T0;
        }
        let findings = check(&account, &transaction(100, "NL"), T0 + 59_000);
        assert_eq!(findings, [Finding { points: BURST_POINTS, reason: "4 transactions within 60 s".into() }]);
        assert!(check(&account, &transaction(100, "NL"), T0 + BURST_WINDOW_MS).is_empty());
    }
}
