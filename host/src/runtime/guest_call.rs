//! A compiled service and the typed call of each kind's functions, for
//! components of every WIT version: the host's types go in, are converted
//! to the version's generated ones for the call, and the guest's answer
//! comes back as [`Effects`].

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::{Snapshot, WitVersion, v0_1, v0_2};
use super::guest_log::LogBudget;
use super::idle_pool::{IdleBudget, IdlePool};
use super::{GuestError, GuestState, Runtime};
use crate::domain::{Call, CommandMeta, Effects, Event, Failure, ServiceKind, SubscribedEvent};
use crate::outbound::HttpGrant;
use wasmstate_crdt::Value;

/// The exports of a component: its kind, and the WIT version it was built
/// against.
#[derive(Clone)]
enum Exports {
    EventSourcedV0_1(v0_1::event_sourced_iface::GuestIndices),
    ValueV0_1(v0_1::value_iface::GuestIndices),
    ActionV0_1(v0_1::action_iface::GuestIndices),
    EventSourcedV0_2(v0_2::event_sourced_iface::GuestIndices),
    ValueV0_2(v0_2::value_iface::GuestIndices),
    ActionV0_2(v0_2::action_iface::GuestIndices),
    CrdtV0_2(v0_2::crdt_iface::GuestIndices),
}

/// A validated, compiled component ready to be instantiated cheaply, with
/// the idle instances of earlier calls.
#[derive(Clone)]
pub struct CompiledService {
    pre: InstancePre<GuestState>,
    exports: Exports,
    idle: Arc<IdlePool<WarmInstance>>,
    /// The rate limit of its instances' log lines.
    log_budget: Arc<LogBudget>,
    /// What its calls may send over HTTP (none: nothing).
    http: Option<Arc<HttpGrant>>,
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
        version: WitVersion,
        budget: Arc<IdleBudget>,
    ) -> wasmtime::Result<Self> {
        use {ServiceKind as K, WitVersion as V};
        let exports = match (version, kind) {
            (V::V0_1, K::EventSourced) => {
                Exports::EventSourcedV0_1(v0_1::event_sourced_iface::GuestIndices::new(&pre)?)
            }
            (V::V0_1, K::Value) => Exports::ValueV0_1(v0_1::value_iface::GuestIndices::new(&pre)?),
            (V::V0_1, K::Action) => Exports::ActionV0_1(v0_1::action_iface::GuestIndices::new(&pre)?),
            (V::V0_2, K::EventSourced) => {
                Exports::EventSourcedV0_2(v0_2::event_sourced_iface::GuestIndices::new(&pre)?)
            }
            (V::V0_2, K::Value) => Exports::ValueV0_2(v0_2::value_iface::GuestIndices::new(&pre)?),
            (V::V0_2, K::Action) => Exports::ActionV0_2(v0_2::action_iface::GuestIndices::new(&pre)?),
            (V::V0_2, K::Crdt) => Exports::CrdtV0_2(v0_2::crdt_iface::GuestIndices::new(&pre)?),
            (V::V0_1, K::Crdt) => wasmtime::bail!("CRDT entities came with wasmstate:entity@0.2.0"),
        };
        let max_idle = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            pre,
            exports,
            idle: Arc::new(IdlePool::new(max_idle, budget)),
            log_budget: LogBudget::new(),
            http: None,
        })
    }

    /// The same version, its calls making HTTP requests as `grant` allows
    /// (none: no request at all). Idle instances are shared.
    pub fn with_http(&self, grant: Option<Arc<HttpGrant>>) -> Self {
        Self { http: grant, ..self.clone() }
    }

    /// What its calls may send over HTTP.
    pub fn http_grant(&self) -> Option<Arc<HttpGrant>> {
        self.http.clone()
    }

    /// The same version without idle instances: every call makes a new
    /// instance and drops it afterwards. For measurements of the cold call.
    #[cfg(feature = "bench-hooks")]
    pub fn without_idle_instances(&self) -> Self {
        let budget = self.idle.budget().clone();
        Self {
            pre: self.pre.clone(),
            exports: self.exports.clone(),
            idle: Arc::new(IdlePool::new(0, budget)),
            log_budget: self.log_budget.clone(),
            http: self.http.clone(),
        }
    }

    /// The rate limit its instances' log lines share.
    pub(super) fn log_budget(&self) -> &Arc<LogBudget> {
        &self.log_budget
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
        match self.exports {
            Exports::EventSourcedV0_1(_) | Exports::EventSourcedV0_2(_) => ServiceKind::EventSourced,
            Exports::ValueV0_1(_) | Exports::ValueV0_2(_) => ServiceKind::Value,
            Exports::ActionV0_1(_) | Exports::ActionV0_2(_) => ServiceKind::Action,
            Exports::CrdtV0_2(_) => ServiceKind::Crdt,
        }
    }

    /// The WIT version the component was built against.
    pub fn wit_version(&self) -> WitVersion {
        match self.exports {
            Exports::EventSourcedV0_1(_) | Exports::ValueV0_1(_) | Exports::ActionV0_1(_) => WitVersion::V0_1,
            _ => WitVersion::V0_2,
        }
    }

    fn wrong_kind(&self, wanted: ServiceKind) -> GuestError {
        GuestError::Trap(format!("{} component was called as {wanted}", self.kind().with_article()))
    }
}

/// Calls `$call` on the loaded interface `$iface` of an instance, and
/// converts the guest's answer (`result<T, failure>`) with `$ok`.
macro_rules! guest_call {
    ($runtime:expr, $service:expr, $indices:expr, |$guest:ident, $store:ident| $call:expr, $ok:expr) => {{
        let answer = $runtime
            .call($service, async |$store, instance| {
                let $guest = $indices.load(&mut *$store, instance)?;
                $call.await
            })
            .await?;
        Ok(answer.map($ok).map_err(Failure::from))
    }};
}

/// Runs `$body` for whichever WIT version's `$v1` or `$v2` exports
/// `$exports` holds, with `$indices` its interface and `$m` naming that
/// version's bindings; `$otherwise` for any other kind.
macro_rules! per_version {
    ($exports:expr, $v1:ident | $v2:ident, |$indices:ident, $m:ident| $body:expr, $otherwise:expr) => {
        match $exports {
            Exports::$v2($indices) => {
                use super::bindings::v0_2 as $m;
                $body
            }
            Exports::$v1($indices) => {
                use super::bindings::v0_1 as $m;
                $body
            }
            _ => $otherwise,
        }
    };
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
        meta: CommandMeta,
    ) -> GuestResult<Effects> {
        match &service.exports {
            Exports::EventSourcedV0_2(indices) => {
                let snapshot = snapshot.map(|s| &s.0);
                let events: Vec<v0_2::wit::Event> = events.into_iter().map(Into::into).collect();
                let command = v0_2::command(command, meta);
                guest_call!(
                    self,
                    service,
                    indices,
                    |guest, store| guest.call_handle(store, snapshot, &events, &command),
                    Effects::from
                )
            }
            Exports::EventSourcedV0_1(indices) => {
                let snapshot: Option<v0_1::wit::Snapshot> = snapshot.map(Into::into);
                let events: Vec<v0_1::wit::Event> = events.into_iter().map(Into::into).collect();
                let command = v0_1::command(command, meta);
                guest_call!(
                    self,
                    service,
                    indices,
                    |guest, store| guest.call_handle(store, snapshot.as_ref(), &events, &command),
                    Effects::from
                )
            }
            _ => Err(service.wrong_kind(ServiceKind::EventSourced)),
        }
    }

    /// Runs an event-sourced entity's `replay` (0.2.0 components only):
    /// the state `snapshot` and `events` fold to, or why they do not.
    /// `None` for a component built against 0.1.0, which has no `replay`.
    pub(super) async fn call_replay(
        &self,
        service: &CompiledService,
        snapshot: Option<&Snapshot>,
        events: &[Event],
    ) -> Option<Result<Result<Vec<u8>, (Option<u64>, String)>, GuestError>> {
        let Exports::EventSourcedV0_2(indices) = &service.exports else { return None };
        let snapshot = snapshot.map(|s| &s.0);
        let events: Vec<v0_2::wit::Event> = events.iter().cloned().map(Into::into).collect();
        let answer = self
            .call(service, async |store, instance| {
                indices.load(&mut *store, instance)?.call_replay(store, snapshot, &events).await
            })
            .await;
        Some(answer.map(|answer| answer.map_err(|failure| (failure.seq, failure.message))))
    }

    /// Runs a value entity's `handle` on its stored state (none if unset).
    pub async fn handle_value(
        &self,
        service: &CompiledService,
        state: Option<&[u8]>,
        command: Call,
        meta: CommandMeta,
    ) -> GuestResult<Effects> {
        per_version!(
            &service.exports,
            ValueV0_1 | ValueV0_2,
            |indices, m| {
                let command = m::command(command, meta);
                guest_call!(
                    self,
                    service,
                    indices,
                    |guest, store| guest.call_handle(store, state, &command),
                    Effects::from
                )
            },
            Err(service.wrong_kind(ServiceKind::Value))
        )
    }

    /// Runs a value entity's `decode-state` (0.2.0 components only): the
    /// state as the component encodes it now. `None` for a component built
    /// against 0.1.0.
    pub(super) async fn call_decode_state(
        &self,
        service: &CompiledService,
        state: &[u8],
    ) -> Option<GuestResult<Vec<u8>>> {
        let Exports::ValueV0_2(indices) = &service.exports else { return None };
        let answer: GuestResult<Vec<u8>> =
            async { guest_call!(self, service, indices, |guest, store| guest.call_decode_state(store, state), |s| s) }
                .await;
        Some(answer)
    }

    /// Runs a CRDT entity's `handle` on its current value (none: the entity
    /// is new), as this host's replica sees it.
    pub async fn handle_crdt(
        &self,
        service: &CompiledService,
        value: Option<Value>,
        command: Call,
        meta: CommandMeta,
    ) -> GuestResult<Effects> {
        let Exports::CrdtV0_2(indices) = &service.exports else {
            return Err(service.wrong_kind(ServiceKind::Crdt));
        };
        let value = value.map(super::bindings::crdt::value_to_wit);
        let command = v0_2::command(command, meta);
        guest_call!(
            self,
            service,
            indices,
            |guest, store| guest.call_handle(store, value.as_ref(), &command),
            Effects::from
        )
    }

    /// Runs an action's `handle`.
    pub async fn handle_action(
        &self,
        service: &CompiledService,
        command: Call,
        meta: CommandMeta,
    ) -> GuestResult<Effects> {
        per_version!(
            &service.exports,
            ActionV0_1 | ActionV0_2,
            |indices, m| {
                let command = m::command(command, meta);
                guest_call!(self, service, indices, |guest, store| guest.call_handle(store, &command), Effects::from)
            },
            Err(service.wrong_kind(ServiceKind::Action))
        )
    }

    /// Delivers one subscribed event to an action's `on-event`: its side
    /// effects, with an empty reply.
    pub async fn on_event(&self, service: &CompiledService, event: SubscribedEvent) -> GuestResult<Effects> {
        per_version!(
            &service.exports,
            ActionV0_1 | ActionV0_2,
            |indices, m| {
                let event: m::wit::SubscribedEvent = event.into();
                guest_call!(self, service, indices, |guest, store| guest.call_on_event(store, &event), m::event_effects)
            },
            Err(service.wrong_kind(ServiceKind::Action))
        )
    }
}
