//! Delayed calls: a command to run later, kept as a durable timer owned by
//! its target entity. The scheduling is a commit of its own (the timer,
//! and the key's record when it has one), so a repeat of its
//! `Idempotency-Key` answers the same timer instead of setting another.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Notify;
use tracing::Instrument;

use super::idempotency::Keyed;
use super::{InvokeError, Invoker};
use crate::domain::{Call, FollowUp, IdempotencyKey, Reply};
use crate::journal::{Commit, CommitStatus, EntityWrite, Timer, TimerChange};
use crate::trace_context::{Hex, TraceContext, random_id};
use sha2::{Digest, Sha256};

/// A delayed call, once its timer is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Scheduled {
    /// The timer's name among its entity's timers.
    pub timer: String,
    /// When it is due, in ms since the Unix epoch.
    pub due_at_ms: u64,
}

impl Invoker {
    /// Sets a timer on `call`'s entity that runs `call` at `due_ms`, and
    /// answers it once durable. With `key`, a repeat answers the timer the
    /// first one set.
    pub async fn schedule(
        &self,
        call: Call,
        key: Option<IdempotencyKey>,
        due_ms: u64,
        trace: TraceContext,
    ) -> Result<Scheduled, InvokeError> {
        // Its own span, which the firing's names as its parent.
        let span = tracing::info_span!(
            "schedule",
            service = call.service.as_str(),
            entity = call.entity.as_str(),
            command = call.command.as_str(),
            due_ms,
            trace_id = %Hex(&trace.trace_id),
            span_id = %Hex(&trace.span_id),
            parent_span_id = trace.parent_hex(),
            sampled = trace.sampled,
        );
        self.set_timer(call, key, due_ms, trace).instrument(span).await
    }

    /// [`Invoker::schedule`], in its span.
    async fn set_timer(
        &self,
        call: Call,
        key: Option<IdempotencyKey>,
        due_ms: u64,
        trace: TraceContext,
    ) -> Result<Scheduled, InvokeError> {
        let shared = &self.shared;
        let service = shared.service(&call.service)?;
        let keyed = key.map(|key| Keyed::scheduling(key, &call));
        let (name, entity): (Arc<str>, Arc<str>) = (call.service.as_str().into(), call.entity.as_str().into());
        if let Some(keyed) = &keyed
            && let Some(follow_up) = shared.replay(&name, &entity, keyed).await?
        {
            return scheduled_of(follow_up);
        }
        let timer_name = delayed_name(keyed.as_ref().map(Keyed::key));
        let answer = Scheduled { timer: timer_name.clone(), due_at_ms: due_ms };
        let reply = serde_json::to_vec(&answer).map_err(|e| InvokeError::Internal(e.to_string()))?;
        let follow_up = FollowUp { synchronous: Vec::new(), reply: Reply::Message(reply) };
        let mut timer = Timer::new(&name, &entity, &timer_name, call, due_ms, 0);
        timer.trace = trace.kept();
        let commit = Commit {
            service: name.clone(),
            entity: entity.clone(),
            version: service.meta.version,
            hops: 0,
            write: EntityWrite::Nothing,
            outbox: Vec::new(),
            idempotency: shared.record(keyed.as_ref(), &follow_up, &[], true),
            timers: vec![TimerChange::Set(Box::new(timer))],
            fires: None,
            trace: trace.kept(),
        };
        match (shared.journal.commit(commit).await?, &keyed) {
            (CommitStatus::Durable { .. }, _) => Ok(answer),
            (CommitStatus::KeyRecorded, Some(keyed)) => {
                scheduled_of(shared.replay_winner(&name, &entity, keyed).await?)
            }
            (refused, _) => Err(InvokeError::refused_commit(refused)),
        }
    }

    /// Cancels `service/entity`'s timer `name` in a commit of its own;
    /// false when there is none.
    pub async fn cancel_timer(&self, service: &str, entity: &str, name: &str) -> Result<bool, InvokeError> {
        let journal = self.shared.journal.clone();
        let (s, e) = (service.to_string(), entity.to_string());
        let timers = super::blocking(move || journal.timers_of(&s, &e)).await??;
        if !timers.iter().any(|timer| timer.name == name) {
            return Ok(false);
        }
        let mut commit = Commit::events(service, entity, 0, Vec::new());
        commit.write = EntityWrite::Nothing;
        commit.timers = vec![TimerChange::Cancel(name.to_string())];
        match self.shared.journal.commit(commit).await? {
            CommitStatus::Durable { .. } => Ok(true),
            refused => Err(InvokeError::refused_commit(refused)),
        }
    }

    /// What wakes the timer worker: a commit that set a timer (on
    /// PostgreSQL, on any host).
    pub fn timer_signal(&self) -> Arc<Notify> {
        self.shared.journal.timer_signal()
    }
}

/// The name of a delayed call's timer: from its key, so a repeat names
/// the same timer (hashed: a key may hold any printable character and be
/// longer than a timer name), else random.
fn delayed_name(key: Option<&IdempotencyKey>) -> String {
    let bytes: [u8; 16] = match key {
        Some(key) => Sha256::digest(key.as_str().as_bytes())[..16].try_into().expect("16 of 32 bytes"),
        None => random_id(),
    };
    format!("delayed-{}", Hex(&bytes))
}

/// The scheduling an idempotency record answers.
fn scheduled_of(follow_up: FollowUp) -> Result<Scheduled, InvokeError> {
    match follow_up.reply {
        Reply::Message(bytes) => serde_json::from_slice(&bytes)
            .map_err(|_| InvokeError::Internal("the key's record is not of a delayed call".into())),
        Reply::Forward(_) => Err(InvokeError::Internal("the key's record is not of a delayed call".into())),
    }
}
