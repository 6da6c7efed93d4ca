//! One mailbox and task per active entity: commands to one entity run one at
//! a time, in arrival order; different entities run in parallel. A task idle
//! longer than the passivation timeout stops and drops the entity's state.
//! When the number of active entities reaches its cap, every entity idle for
//! at least [`MIN_IDLE_UNDER_PRESSURE`] is passivated at once, so memory stays
//! bounded by the entities actually in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::stateful::{self, Cached};
use super::{InvokeError, InvokeRequest, Produced, Shared};

/// Identifies one entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EntityKey {
    pub service: Arc<str>,
    pub entity: Arc<str>,
}

struct Job {
    request: InvokeRequest,
    done: oneshot::Sender<Result<Produced, InvokeError>>,
}

/// How long an entity must have been idle to be passivated early when the
/// active entities reach their cap.
pub const MIN_IDLE_UNDER_PRESSURE: Duration = Duration::from_millis(100);

/// The mailboxes of the active entities.
#[derive(Default)]
pub(crate) struct Mailboxes {
    senders: Mutex<HashMap<EntityKey, mpsc::Sender<Job>>>,
    /// Woken when the active entities reach their cap.
    pressure: Notify,
}

/// Puts the command in its entity's mailbox, starting the entity's task if
/// it has none, and waits for what the command produced.
pub(super) async fn enqueue(shared: &Arc<Shared>, request: InvokeRequest) -> Result<Produced, InvokeError> {
    let key = EntityKey {
        service: request.invocation.service.as_str().into(),
        entity: request.invocation.entity.as_str().into(),
    };
    let (done, answer) = oneshot::channel();
    {
        // Under the lock, so a task retiring at the same moment can never
        // strand a job (see `try_retire`).
        let mut senders = shared.mailboxes.senders.lock().unwrap();
        if senders.len() >= shared.config.max_active_entities && !senders.contains_key(&key) {
            shared.mailboxes.pressure.notify_waiters();
        }
        let sender = senders.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(shared.config.mailbox_capacity);
            tokio::spawn(run_entity(shared.clone(), key.clone(), rx));
            tx
        });
        sender.try_send(Job { request, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                InvokeError::Overloaded(format!("entity {:?} has too many commands waiting", key.entity))
            }
            mpsc::error::TrySendError::Closed(_) => InvokeError::Internal("the entity task stopped".into()),
        })?;
    }
    answer.await.unwrap_or_else(|_| Err(InvokeError::Internal("the entity task stopped".into())))
}

/// Removes the entity's mailbox if nothing waits in it; answers whether its
/// task may stop.
fn try_retire(shared: &Shared, key: &EntityKey, rx: &mpsc::Receiver<Job>) -> bool {
    let mut senders = shared.mailboxes.senders.lock().unwrap();
    if rx.is_empty() {
        senders.remove(key);
        if senders.capacity() > 64 && senders.len() < senders.capacity() / 4 {
            senders.shrink_to_fit();
        }
        true
    } else {
        false
    }
}

async fn run_entity(shared: Arc<Shared>, key: EntityKey, mut rx: mpsc::Receiver<Job>) {
    shared.metrics.add_active_entities(1);
    let mut cached: Option<Cached> = None;
    let mut last_active = Instant::now();
    loop {
        let pressure = shared.mailboxes.pressure.notified();
        let job = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => break,
            },
            () = tokio::time::sleep_until(last_active + shared.config.passivate_after) => {
                if try_retire(&shared, &key, &rx) {
                    break;
                }
                continue;
            }
            () = pressure => {
                if last_active.elapsed() >= MIN_IDLE_UNDER_PRESSURE && try_retire(&shared, &key, &rx) {
                    break;
                }
                continue;
            }
        };
        let result = stateful::run_command(&shared, &key, &mut cached, job.request).await;
        let _ = job.done.send(result);
        last_active = Instant::now();
    }
    shared.metrics.add_active_entities(-1);
}
