//! The idempotency rules, the same for every path: a keyed invocation whose
//! key is recorded on its entity answers what the record says — if it asks
//! what the recorded one asked — instead of running; otherwise its record
//! commits with its effects, atomically.

use crate::domain::{AsyncEffect, Call, Fingerprint, FollowUp, IdempotencyKey};
use crate::journal::{IdempotencyRecord, now_ms};

use super::{Input, Invocation, InvokeError, Shared, blocking};

/// What the rules need of a keyed invocation, taken before its input goes
/// to the guest.
pub(super) struct Keyed {
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    /// Whether an outcome with nothing to do is recorded too. A caller
    /// reads a command's reply, so it always is; nobody reads an event
    /// delivery's, so one without side effects records nothing.
    record_empty: bool,
}

impl Keyed {
    /// The key of the scheduling of `call` for later: its own fingerprint,
    /// so a key used for the command itself cannot answer its scheduling.
    pub(super) fn scheduling(key: IdempotencyKey, call: &Call) -> Self {
        let fingerprint = Fingerprint::of(&format!("schedule {}", call.command), &call.payload);
        Self { key, fingerprint, record_empty: true }
    }

    /// The key.
    pub(super) fn key(&self) -> &IdempotencyKey {
        &self.key
    }
}

impl Invocation {
    /// The idempotency side of this invocation, if it has a key.
    pub(super) fn keyed(&self) -> Option<Keyed> {
        let key = self.key.clone()?;
        let (fingerprint, record_empty) = match &self.input {
            Input::Command(call) => (Fingerprint::of(&call.command, &call.payload), true),
            Input::Event { event, .. } => (Fingerprint::of(self.name(), &event.payload), false),
        };
        Some(Keyed { key, fingerprint, record_empty })
    }
}

impl Shared {
    /// What an earlier invocation with the same key left to do on
    /// `service/entity`, if its record is live. A record of a different
    /// command or payload refuses the invocation.
    pub(super) async fn replay(
        &self,
        service: &str,
        entity: &str,
        keyed: &Keyed,
    ) -> Result<Option<FollowUp>, InvokeError> {
        let journal = self.journal.clone();
        let (s, e, k) = (service.to_string(), entity.to_string(), keyed.key.clone());
        let Some(record) = blocking(move || journal.idempotency_record(&s, &e, &k, now_ms())).await?? else {
            return Ok(None);
        };
        if record.fingerprint.is_some_and(|recorded| recorded != keyed.fingerprint) {
            return Err(InvokeError::KeyReused(keyed.key.to_string()));
        }
        Ok(Some(record.follow_up))
    }

    /// The answer when another invocation recorded the same key first
    /// while this one ran: what that one recorded.
    pub(super) async fn replay_winner(
        &self,
        service: &str,
        entity: &str,
        keyed: &Keyed,
    ) -> Result<FollowUp, InvokeError> {
        self.replay(service, entity, keyed).await?.ok_or(InvokeError::KeyRecordExpired)
    }

    /// The idempotency record to commit with an invocation's effects.
    pub(super) fn record(
        &self,
        keyed: Option<&Keyed>,
        follow_up: &FollowUp,
        outbox: &[AsyncEffect],
        sets_timers: bool,
    ) -> Option<IdempotencyRecord> {
        let keyed = keyed?;
        let nothing_to_do = follow_up.synchronous.is_empty() && outbox.is_empty() && !sets_timers;
        if nothing_to_do && !keyed.record_empty {
            return None;
        }
        Some(IdempotencyRecord {
            key: keyed.key.clone(),
            expires_at_ms: now_ms() + self.config.idempotency_ttl.as_millis() as u64,
            fingerprint: Some(keyed.fingerprint),
            follow_up: follow_up.clone(),
        })
    }
}
