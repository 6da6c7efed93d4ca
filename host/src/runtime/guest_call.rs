//! A compiled service and the typed call of each kind's functions: the
//! host's types go in, are converted to the generated ones for the call,
//! and the guest's answer comes back as [`Effects`].

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::{self, Snapshot, action_iface, event_sourced_iface, value_iface};
use super::idle_pool::{IdleBudget, IdlePool};
use super::{GuestError, GuestState, Runtime};
use crate::domain::{Call, Effects, Event, Failure, ServiceKind, SubscribedEvent};

#[derive(Clone)]
enum KindIndices {
    EventSourced(event_sourced_iface::GuestIndices),
    Value(value_iface::GuestIndices),
    Action(action_iface::GuestIndices),
}

/// A validated, compiled component ready to be instantiated cheaply, with
/// the idle instances of earlier calls.
#[derive(Clone)]
pub struct CompiledService {
    pre: InstancePre<GuestState>,
    indices: KindIndices,
    idle: Arc<IdlePool<WarmInstance>>,
}

/// An instance that finished a call without trapping, ready for the next one.
pub(super) struct WarmInstance {
    pub store: Store<GuestState>,
    pub instance: Instance,
}

/// The answer of a guest call: the guest's own result, or why it gave none.
pub type GuestResult<T> = Result<Result<T, Failure>, GuestError>;

impl CompiledService {
    pub(super) fn new(
        pre: InstancePre<GuestState>,
        kind: ServiceKind,
        budget: Arc<IdleBudget>,
    ) -> wasmtime::Result<Self> {
        let indices = match kind {
            ServiceKind::EventSourced => KindIndices::EventSourced(event_sourced_iface::GuestIndices::new(&pre)?),
            ServiceKind::Value => KindIndices::Value(value_iface::GuestIndices::new(&pre)?),
            ServiceKind::Action => KindIndices::Action(action_iface::GuestIndices::new(&pre)?),
        };
        let max_idle = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self { pre, indices, idle: Arc::new(IdlePool::new(max_idle, budget)) })
    }

    /// The same version without idle instances: every call makes a new
    /// instance and drops it afterwards. For measurements of the cold call.
    #[cfg(feature = "bench-hooks")]
    pub fn without_idle_instances(&self) -> Self {
        let budget = self.idle.budget().clone();
        Self { pre: self.pre.clone(), indices: self.indices.clone(), idle: Arc::new(IdlePool::new(0, budget)) }
    }

    /// An idle instance, if a call left one.
    pub(super) fn take_idle(&self) -> Option<WarmInstance> {
        self.idle.take()
    }

    /// Keeps an instance for the next call: up to one per core, within the
    /// runtime's budget of idle instances.
    pub(super) fn give_back(&self, warm: WarmInstance) {
        self.idle.give_back(warm);
    }

    pub(super) fn pre(&self) -> &InstancePre<GuestState> {
        &self.pre
    }

    /// The kind of service the component implements.
    pub fn kind(&self) -> ServiceKind {
        match self.indices {
            KindIndices::EventSourced(_) => ServiceKind::EventSourced,
            KindIndices::Value(_) => ServiceKind::Value,
            KindIndices::Action(_) => ServiceKind::Action,
        }
    }

    fn wrong_kind(&self, wanted: ServiceKind) -> GuestError {
        GuestError::Trap(format!("{} component was called as {wanted}", self.kind().with_article()))
    }
}

impl Runtime {
    /// Runs an event-sourced entity's `handle` on the state `snapshot` (the
    /// latest snapshot, if any) followed by `events`.
    pub async fn handle_event_sourced(
        &self,
        service: &CompiledService,
        snapshot: Option<&Snapshot>,
        events: Vec<Event>,
        command: Call,
    ) -> GuestResult<Effects> {
        let KindIndices::EventSourced(indices) = &service.indices else {
            return Err(service.wrong_kind(ServiceKind::EventSourced));
        };
        let snapshot = snapshot.map(|s| &s.0);
        let events: Vec<bindings::wit::Event> = events.into_iter().map(Into::into).collect();
        let command = command.into();
        let answer = self
            .call(service, async |store, instance| {
                indices.load(&mut *store, instance)?.call_handle(store, snapshot, &events, &command).await
            })
            .await?;
        Ok(answer.map(Effects::from).map_err(Failure::from))
    }

    /// Runs a value entity's `handle` on its stored state (none if unset).
    pub async fn handle_value(
        &self,
        service: &CompiledService,
        state: Option<&[u8]>,
        command: Call,
    ) -> GuestResult<Effects> {
        let KindIndices::Value(indices) = &service.indices else {
            return Err(service.wrong_kind(ServiceKind::Value));
        };
        let command = command.into();
        let answer = self
            .call(service, async |store, instance| {
                indices.load(&mut *store, instance)?.call_handle(store, state, &command).await
            })
            .await?;
        Ok(answer.map(Effects::from).map_err(Failure::from))
    }

    /// Runs an action's `handle`.
    pub async fn handle_action(&self, service: &CompiledService, command: Call) -> GuestResult<Effects> {
        let KindIndices::Action(indices) = &service.indices else {
            return Err(service.wrong_kind(ServiceKind::Action));
        };
        let command = command.into();
        let answer = self
            .call(service, async |store, instance| {
                indices.load(&mut *store, instance)?.call_handle(store, &command).await
            })
            .await?;
        Ok(answer.map(Effects::from).map_err(Failure::from))
    }

    /// Delivers one subscribed event to an action's `on-event`: its side
    /// effects, with an empty reply.
    pub async fn on_event(&self, service: &CompiledService, event: SubscribedEvent) -> GuestResult<Effects> {
        let KindIndices::Action(indices) = &service.indices else {
            return Err(service.wrong_kind(ServiceKind::Action));
        };
        let event = event.into();
        let answer = self
            .call(service, async |store, instance| {
                indices.load(&mut *store, instance)?.call_on_event(store, &event).await
            })
            .await?;
        Ok(answer.map(bindings::event_effects).map_err(Failure::from))
    }
}
