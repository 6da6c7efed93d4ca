//! `GET .../events?follow=true` on a CRDT entity: its value as
//! Server-Sent Events — the current value at once, then the value after
//! every change, whichever host made it (live counters, presence).
//!
//! The stream watches the entity's commits (this host's, and on
//! PostgreSQL the other hosts' as their notifications arrive) before it
//! reads the value, and reads the value itself from the journal, the join
//! of every replica's row: a notification can delay a value but never lose
//! the last one. Changes that land while one is read come out as one value;
//! a value equal to the last one sent is not sent again. Once the entity
//! is deleted, a `deleted` event ends the stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::AppState;
use super::crdt_value::{type_name, value_json};
use crate::invoke::{InvokeError, Invoker};
use crate::journal::Watching;

struct FollowValue {
    invoker: Invoker,
    service: String,
    entity: String,
    /// The data of the last value sent, if any.
    last: Option<Value>,
    /// How many values were sent: the next one's id.
    sent: u64,
    deleted: bool,
    commits: Watching<(Arc<str>, Arc<str>)>,
    shutdown: watch::Receiver<bool>,
}

/// The live stream of one CRDT entity's value.
pub fn follow_value(
    state: &AppState,
    service: String,
    entity: String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let follow = FollowValue {
        commits: state.journal.commits().entity(&service, &entity),
        invoker: state.invoker.clone(),
        service,
        entity,
        last: None,
        sent: 0,
        deleted: false,
        shutdown: state.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let (name, data) = f.next_value().await?;
        f.sent += 1;
        Some((Ok(Event::default().id(f.sent.to_string()).event(name).data(data.to_string())), f))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

impl FollowValue {
    /// The next value to send (its event name and data), waiting for a
    /// change if need be; `None` ends the stream.
    async fn next_value(&mut self) -> Option<(&'static str, Value)> {
        if self.deleted {
            return None;
        }
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let value = match self.invoker.read_crdt(&self.service, &self.entity).await {
                Ok((value, _)) => value,
                Err(InvokeError::EntityDeleted(_)) => {
                    self.deleted = true;
                    return Some(("deleted", json!({"deleted": true})));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read a CRDT entity for a live stream");
                    return None;
                }
            };
            let data = json!({
                "crdt": value.as_ref().map(type_name),
                "state": value.as_ref().map_or(Value::Null, value_json),
            });
            if self.last.as_ref() != Some(&data) {
                self.last = Some(data.clone());
                return Some(("value", data));
            }
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                _ = self.commits.changed() => {}
            }
        }
    }
}
