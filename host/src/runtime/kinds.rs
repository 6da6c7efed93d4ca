//! The kinds of service a component can implement, and the typed call of
//! each kind's functions.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::{action_iface, event_sourced_iface, value_iface};
use super::idle_pool::{IdleBudget, IdlePool};
use super::{
    ACTION_INTERFACE, ActionEffects, Command, EVENT_SOURCED_INTERFACE, Effects, Event, Failure, GuestError, GuestState,
    Runtime, SideEffect, Snapshot, SubscribedEvent, VALUE_INTERFACE, ValueEffects,
};

/// The kinds of service a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// Exports `wasmstate:entity/event-sourced`: state is the fold of events.
    EventSourced,
    /// Exports `wasmstate:entity/value`: state is one stored value.
    Value,
    /// Exports `wasmstate:entity/action`: stateless.
    Action,
}

impl EntityKind {
    /// Every kind, in the order the host looks for them.
    pub const ALL: [EntityKind; 3] = [EntityKind::EventSourced, EntityKind::Value, EntityKind::Action];

    /// The name reported over HTTP and stored with the version.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::EventSourced => "event-sourced",
            EntityKind::Value => "value",
            EntityKind::Action => "action",
        }
    }

    /// The interface a component of this kind exports.
    pub fn interface(self) -> &'static str {
        match self {
            EntityKind::EventSourced => EVENT_SOURCED_INTERFACE,
            EntityKind::Value => VALUE_INTERFACE,
            EntityKind::Action => ACTION_INTERFACE,
        }
    }
}

#[derive(Clone)]
enum KindIndices {
    EventSourced(event_sourced_iface::GuestIndices),
    Value(value_iface::GuestIndices),
    Action(action_iface::GuestIndices),
}

/// A validated, compiled component ready to be instantiated cheaply, with
/// the idle instances of earlier calls.
#[derive(Clone)]
pub struct CompiledEntity {
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

impl CompiledEntity {
    pub(super) fn new(
        pre: InstancePre<GuestState>,
        kind: EntityKind,
        budget: Arc<IdleBudget>,
    ) -> wasmtime::Result<Self> {
        let indices = match kind {
            EntityKind::EventSourced => KindIndices::EventSourced(event_sourced_iface::GuestIndices::new(&pre)?),
            EntityKind::Value => KindIndices::Value(value_iface::GuestIndices::new(&pre)?),
            EntityKind::Action => KindIndices::Action(action_iface::GuestIndices::new(&pre)?),
        };
        let max_idle = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self { pre, indices, idle: Arc::new(IdlePool::new(max_idle, budget)) })
    }

    /// The same version without idle instances: every call makes a new
    /// instance and drops it afterwards. For measurements of the cold call.
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
    pub fn kind(&self) -> EntityKind {
        match self.indices {
            KindIndices::EventSourced(_) => EntityKind::EventSourced,
            KindIndices::Value(_) => EntityKind::Value,
            KindIndices::Action(_) => EntityKind::Action,
        }
    }

    fn wrong_kind(&self, wanted: EntityKind) -> GuestError {
        GuestError::Trap(format!("a {} component was called as {}", self.kind().as_str(), wanted.as_str()))
    }
}

impl Runtime {
    /// Runs an event-sourced entity's `handle`.
    pub async fn handle_event_sourced(
        &self,
        entity: &CompiledEntity,
        snapshot: Option<&Snapshot>,
        events: &[Event],
        command: &Command,
    ) -> GuestResult<Effects> {
        let KindIndices::EventSourced(indices) = &entity.indices else {
            return Err(entity.wrong_kind(EntityKind::EventSourced));
        };
        self.call(entity, async |store, instance| {
            indices.load(&mut *store, instance)?.call_handle(store, snapshot, events, command).await
        })
        .await
    }

    /// Runs a value entity's `handle`.
    pub async fn handle_value(
        &self,
        entity: &CompiledEntity,
        state: Option<&[u8]>,
        command: &Command,
    ) -> GuestResult<ValueEffects> {
        let KindIndices::Value(indices) = &entity.indices else {
            return Err(entity.wrong_kind(EntityKind::Value));
        };
        self.call(entity, async |store, instance| {
            indices.load(&mut *store, instance)?.call_handle(store, state, command).await
        })
        .await
    }

    /// Runs an action's `handle`.
    pub async fn handle_action(&self, entity: &CompiledEntity, command: &Command) -> GuestResult<ActionEffects> {
        let KindIndices::Action(indices) = &entity.indices else {
            return Err(entity.wrong_kind(EntityKind::Action));
        };
        self.call(entity, async |store, instance| {
            indices.load(&mut *store, instance)?.call_handle(store, command).await
        })
        .await
    }

    /// Delivers one subscribed event to an action's `on-event`.
    pub async fn on_event(&self, entity: &CompiledEntity, event: &SubscribedEvent) -> GuestResult<Vec<SideEffect>> {
        let KindIndices::Action(indices) = &entity.indices else {
            return Err(entity.wrong_kind(EntityKind::Action));
        };
        self.call(entity, async |store, instance| {
            indices.load(&mut *store, instance)?.call_on_event(store, event).await
        })
        .await
    }
}
