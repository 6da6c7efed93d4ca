//! The webhooks a kit's commands sent, kept as the host's outbox would
//! send them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::http::{Url, is_token};
use crate::{Effect, Webhook};

/// The webhooks of the committed commands (and event deliveries) of a kit,
/// oldest first, behind a lock so a kit whose commands take `&self` (the
/// action kit) keeps them too.
#[derive(Debug, Default)]
pub(super) struct KitOutbox {
    sent: Mutex<Vec<Webhook>>,
}

impl KitOutbox {
    fn sent(&self) -> MutexGuard<'_, Vec<Webhook>> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the webhooks among `effects`, which a call committed.
    ///
    /// # Panics
    ///
    /// If a webhook is malformed (see [`check`]).
    pub(super) fn commit(&self, effects: &[Effect]) {
        let webhooks: Vec<Webhook> = effects.iter().filter_map(Effect::as_webhook).cloned().collect();
        webhooks.iter().for_each(check);
        self.sent().extend(webhooks);
    }

    /// The webhooks kept, oldest first.
    pub(super) fn list(&self) -> Vec<Webhook> {
        self.sent().clone()
    }

    /// The webhooks kept, oldest first, forgetting them.
    pub(super) fn take(&self) -> Vec<Webhook> {
        std::mem::take(&mut *self.sent())
    }
}

/// Checks that `webhook` can be sent: an `http` or `https` URL with a
/// host, a method that is an HTTP token.
///
/// # Panics
///
/// If it cannot, saying why.
fn check(webhook: &Webhook) {
    if let Err(reason) = Url::parse(webhook.url()) {
        panic!("webhook to {:?}: its URL must be an http or https URL, but {reason}", webhook.url());
    }
    let method = webhook.method_name();
    assert!(is_token(method), "webhook to {}: {method:?} is no HTTP method", webhook.url());
}

/// The webhook methods of a kit (`webhooks`, `take_webhooks`), over its
/// `outbox: KitOutbox` field.
macro_rules! kit_webhook_methods {
    () => {
        /// Every webhook the committed commands sent so far (for the action
        /// kit, the event deliveries too), oldest first: what the host's
        /// outbox would send, once each command's effects are durable. A
        /// failed command sends none. [`Outcome::webhooks`](crate::testkit::Outcome::webhooks)
        /// shows one command's.
        ///
        /// The kit panics on a webhook the host could not send: a URL that
        /// is not `http` or `https` with a host, a method that is no HTTP
        /// token.
        pub fn webhooks(&self) -> Vec<$crate::Webhook> {
            self.outbox.list()
        }

        /// Every webhook sent so far, like [`webhooks`](Self::webhooks),
        /// forgetting them: the next call lists only those sent after.
        pub fn take_webhooks(&self) -> Vec<$crate::Webhook> {
            self.outbox.take()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SideEffect;

    #[test]
    fn keeps_the_webhooks_of_committed_calls_in_order() {
        let outbox = KitOutbox::default();
        let first = SideEffect::webhook("http://h/1");
        let second = SideEffect::webhook("https://h/2").method("PUT");
        outbox.commit(&[first.clone().into(), SideEffect::new("s", "e", "C").into(), second.clone().into()]);
        assert_eq!(outbox.list(), [first.clone(), second.clone()]);
        assert_eq!(outbox.take(), [first, second]);
        assert!(outbox.list().is_empty());
    }

    #[test]
    #[should_panic(expected = "webhook to \"mailto:a@b\": its URL must be an http or https URL, but its scheme")]
    fn refuses_a_webhook_that_is_no_http_request() {
        KitOutbox::default().commit(&[SideEffect::webhook("mailto:a@b").into()]);
    }

    #[test]
    #[should_panic(expected = "webhook to http://h/: \"NOT OK\" is no HTTP method")]
    fn refuses_a_method_that_is_no_token() {
        KitOutbox::default().commit(&[SideEffect::webhook("http://h/").method("NOT OK").into()]);
    }
}
