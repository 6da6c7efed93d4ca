//! `GET .../events?from=N&follow=true`: an entity's events as Server-Sent
//! Events — the backlog from N, then each newly committed event, in seq
//! order, with no gap and no duplicate.
//!
//! The stream watches its entity's commits before it reads the backlog, and
//! always reads the events themselves from the journal from the next seq it
//! owes, so a notification can delay an event but never lose or repeat one.
//! The journal's writer wakes only the streams of the entity it committed
//! ([`crate::journal::CommitWatch`]), so followers cost commits nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::AppState;
use super::entities::EventReply;
use crate::domain;
use crate::journal::{Journal, Watching};

/// Events read from the journal at once.
const PAGE: usize = 512;

/// One Server-Sent Event of the stream, as the OpenAPI document describes
/// each event of a `text/event-stream`: named `event`, with the event's
/// seq as its id and the event as an `EventReply` in JSON as its data.
pub struct StreamedEvent;

impl PartialSchema for StreamedEvent {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let name = string().enum_values(Some(["event"])).description(Some("Always `event`."));
        let id = string().pattern(Some("^[0-9]+$")).description(Some("The event's seq."));
        let data =
            string().content_media_type("application/json").description(Some("The event: an `EventReply` in JSON."));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("event", name)
            .property("id", id)
            .property("data", data)
            .required("event")
            .required("id")
            .required("data")
            .description(Some("One Server-Sent Event of a live stream of an entity's events."))
            .into()
    }
}

impl ToSchema for StreamedEvent {}

struct Follow {
    journal: Arc<dyn Journal>,
    service: String,
    entity: String,
    next: u64,
    buffer: VecDeque<domain::Event>,
    commits: Watching<(Arc<str>, Arc<str>)>,
    shutdown: watch::Receiver<bool>,
}

/// The live stream of one entity's events from seq `from`.
pub fn follow(
    state: &AppState,
    service: String,
    entity: String,
    from: u64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let follow = Follow {
        commits: state.journal.commits().entity(&service, &entity),
        journal: state.journal.clone(),
        service,
        entity,
        next: from.max(1),
        buffer: VecDeque::new(),
        shutdown: state.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next_event().await?;
        let seq = event.seq;
        f.next = seq + 1;
        let data = serde_json::to_string(&EventReply::from(event)).unwrap_or_default();
        Some((Ok(Event::default().id(seq.to_string()).event("event").data(data)), f))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

impl Follow {
    /// The next event owed, waiting for it if need be; `None` ends the stream.
    async fn next_event(&mut self) -> Option<domain::Event> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(event);
            }
            if *self.shutdown.borrow() {
                return None;
            }
            let (journal, service, entity, next) =
                (self.journal.clone(), self.service.clone(), self.entity.clone(), self.next);
            let page = move || journal.events_page(&service, &entity, next, PAGE, super::entities::MAX_PAGE_BYTES);
            match tokio::task::spawn_blocking(page).await {
                Ok(Ok(events)) if !events.is_empty() => {
                    self.buffer.extend(events);
                    continue;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "cannot read events for a live stream");
                    return None;
                }
                Err(_) => return None,
            }
            if !self.wait_for_commit().await {
                return None;
            }
        }
    }

    /// Waits until this entity commits an event at or past `next`; false
    /// when the server shuts down.
    async fn wait_for_commit(&mut self) -> bool {
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return false,
                last_seq = self.commits.changed() => if last_seq >= self.next {
                    return true;
                },
            }
        }
    }
}
