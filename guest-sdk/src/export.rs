//! The WebAssembly exports: generated bindings, the glue between them and
//! the byte-level cores, and the `export_*!` macros.
//!
//! Components built with this SDK target `wasmstate:entity@0.2.0`. Each
//! kind of service targets its own WIT world, so each has its own
//! bindings and its own export macro; the four share one copy of the
//! `wasmstate:entity/types` interface.

/// Bindings generated from the `wasmstate:entity` WIT package, one module
/// per world.
#[doc(hidden)]
pub mod bindings {
    /// The `event-sourced-entity` world; owner of the shared types.
    pub mod event_sourced {
        wit_bindgen::generate!({
            path: "../wit/v0.2.0",
            world: "event-sourced-entity",
            pub_export_macro: true,
            export_macro_name: "__export_event_sourced_entity",
            default_bindings_module: "wasmstate_sdk::bindings::event_sourced",
        });
    }

    /// The `value-entity` world.
    pub mod value {
        wit_bindgen::generate!({
            path: "../wit/v0.2.0",
            world: "value-entity",
            with: {
                "wasmstate:entity/types@0.2.0": crate::bindings::types,
            },
            pub_export_macro: true,
            export_macro_name: "__export_value_entity",
            default_bindings_module: "wasmstate_sdk::bindings::value",
        });
    }

    /// The `action-service` world.
    pub mod action {
        wit_bindgen::generate!({
            path: "../wit/v0.2.0",
            world: "action-service",
            with: {
                "wasmstate:entity/types@0.2.0": crate::bindings::types,
            },
            pub_export_macro: true,
            export_macro_name: "__export_action_service",
            default_bindings_module: "wasmstate_sdk::bindings::action",
        });
    }

    /// The `crdt-entity` world.
    pub mod crdt {
        wit_bindgen::generate!({
            path: "../wit/v0.2.0",
            world: "crdt-entity",
            with: {
                "wasmstate:entity/types@0.2.0": crate::bindings::types,
            },
            pub_export_macro: true,
            export_macro_name: "__export_crdt_entity",
            default_bindings_module: "wasmstate_sdk::bindings::crdt",
        });
    }

    pub use event_sourced::wasmstate::entity::types;
}

/// Glue between the generated bindings and the [`raw`](crate::raw) cores.
#[doc(hidden)]
pub mod __private {
    use crate::bindings::action::exports::wasmstate::entity::action as action_wit;
    use crate::bindings::event_sourced::exports::wasmstate::entity::event_sourced as event_sourced_wit;
    use crate::bindings::types;
    use crate::bindings::value::exports::wasmstate::entity::value as value_wit;
    use crate::raw::value::StateChange;
    use crate::{
        Command, Effect, Failure, FailureCode, Metadata, Missed, Reply, StoredEvent, SubscribedEvent, TimerChange,
        TimerDue, raw,
    };

    /// Implements the exported `event-sourced.handle` for entity type `E`.
    pub fn event_sourced_handle<E: crate::EventSourcedEntity>(
        snapshot: Option<types::Snapshot>,
        events: Vec<types::Event>,
        command: types::Command,
    ) -> Result<event_sourced_wit::Effects, types::Failure> {
        let snapshot = snapshot.as_ref().map(|s| (s.seq, s.state.as_slice()));
        let events = events.iter().map(stored_event);
        let effects = raw::event_sourced::handle::<E>(snapshot, events, command_of(&command)).map_err(failure)?;
        Ok(event_sourced_wit::Effects {
            events: effects.events,
            reply: reply(effects.reply),
            side_effects: side_effects(effects.side_effects),
            state: effects.state,
            timers: timers(effects.timers),
        })
    }

    /// Implements the exported `event-sourced.replay` for entity type `E`.
    pub fn event_sourced_replay<E: crate::EventSourcedEntity>(
        snapshot: Option<types::Snapshot>,
        events: Vec<types::Event>,
    ) -> Result<Vec<u8>, types::ReplayFailure> {
        let snapshot = snapshot.as_ref().map(|s| (s.seq, s.state.as_slice()));
        raw::event_sourced::replay::<E>(snapshot, events.iter().map(stored_event))
            .map_err(|failure| types::ReplayFailure { seq: failure.seq, message: failure.message })
    }

    fn stored_event(event: &types::Event) -> StoredEvent<'_> {
        StoredEvent::new(event.seq, event.version, &event.payload)
    }

    /// Implements the exported `value.decode-state` for entity type `E`.
    pub fn value_decode_state<E: crate::ValueEntity>(state: Vec<u8>) -> Result<Vec<u8>, types::Failure> {
        raw::value::decode_state::<E>(&state).map_err(failure)
    }

    /// Implements the exported `value.handle` for entity type `E`.
    pub fn value_handle<E: crate::ValueEntity>(
        state: Option<Vec<u8>>,
        command: types::Command,
    ) -> Result<value_wit::ValueEffects, types::Failure> {
        let effects = raw::value::handle::<E>(state.as_deref(), command_of(&command)).map_err(failure)?;
        Ok(value_wit::ValueEffects {
            reply: reply(effects.reply),
            state: match effects.state {
                StateChange::Unchanged => value_wit::StateChange::Unchanged,
                StateChange::Update(bytes) => value_wit::StateChange::Update(bytes),
                StateChange::Delete => value_wit::StateChange::Delete,
            },
            side_effects: side_effects(effects.side_effects),
            timers: timers(effects.timers),
        })
    }

    pub use crate::export_crdt::crdt_handle;

    /// Implements the exported `action.handle` for action type `A`.
    pub fn action_handle<A: crate::Action>(
        command: types::Command,
    ) -> Result<action_wit::ActionEffects, types::Failure> {
        let effects = raw::action::handle::<A>(command_of(&command)).map_err(failure)?;
        Ok(action_wit::ActionEffects {
            reply: reply(effects.reply),
            side_effects: side_effects(effects.side_effects),
            timers: timers(effects.timers),
        })
    }

    /// Implements the exported `action.on-event` for action type `A`.
    pub fn action_on_event<A: crate::Action>(
        event: types::SubscribedEvent,
    ) -> Result<Vec<types::Effect>, types::Failure> {
        let event = SubscribedEvent::new(&event.service, &event.entity_id, event.seq, &event.payload)
            .with_version(event.version);
        raw::action::on_event::<A>(event).map(side_effects).map_err(failure)
    }

    pub(crate) fn command_of(command: &types::Command) -> Command<'_> {
        let metadata = Metadata::new(command.seq, command.now_ms, command.idempotency_key.as_deref())
            .with_service(&command.service);
        Command::new(&command.name, &command.payload, &command.entity_id).with_metadata(metadata)
    }

    pub(crate) fn reply(reply: Reply) -> types::Reply {
        match reply {
            Reply::Message(bytes) => types::Reply::Message(bytes),
            Reply::Forward(forward) => types::Reply::Forward(types::Forward {
                service: forward.service,
                entity_id: forward.entity_id,
                command: forward.command,
                payload: forward.payload,
            }),
        }
    }

    pub(crate) fn side_effects(effects: Vec<Effect>) -> Vec<types::Effect> {
        effects
            .into_iter()
            .map(|effect| match effect {
                Effect::Command(effect) => types::Effect::Command(types::SideEffect {
                    service: effect.service,
                    entity_id: effect.entity_id,
                    command: effect.command,
                    payload: effect.payload,
                    synchronous: effect.synchronous,
                }),
                Effect::Webhook(webhook) => types::Effect::Webhook(types::Webhook {
                    url: webhook.url,
                    method: webhook.method,
                    headers: webhook.headers,
                    content_type: webhook.content_type,
                    body: webhook.body,
                }),
            })
            .collect()
    }

    pub(crate) fn timers(changes: Vec<TimerChange>) -> Vec<types::TimerChange> {
        changes
            .into_iter()
            .map(|change| match change {
                TimerChange::Set { name, due, call } => types::TimerChange::Set(types::Timer {
                    name,
                    due: match due {
                        TimerDue::AfterMs(ms) => types::TimerDue::AfterMs(ms),
                        TimerDue::AtMs(ms) => types::TimerDue::AtMs(ms),
                        TimerDue::Cron(cron) => types::TimerDue::Cron(types::CronSchedule {
                            expression: cron.expression,
                            missed: match cron.missed {
                                Missed::Skip => types::MissedFirings::Skip,
                                Missed::Once => types::MissedFirings::Once,
                                Missed::All => types::MissedFirings::All,
                            },
                        }),
                    },
                    service: call.service,
                    entity_id: call.entity_id,
                    command: call.command,
                    payload: call.payload,
                }),
                TimerChange::Cancel(name) => types::TimerChange::Cancel(name),
            })
            .collect()
    }

    pub(crate) fn failure(failure: Failure) -> types::Failure {
        types::Failure {
            code: match failure.code() {
                FailureCode::Rejected => types::FailureCode::Rejected,
                FailureCode::UnknownCommand => types::FailureCode::UnknownCommand,
                FailureCode::InvalidPayload => types::FailureCode::InvalidPayload,
                FailureCode::InvalidState => types::FailureCode::InvalidState,
            },
            message: failure.message().to_owned(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::{Cron, SideEffect, TimerCall};

        #[test]
        fn side_effects_become_the_wit_effects_in_order() {
            let effects = vec![
                Effect::from(SideEffect::new("audit", "a-1", "Record").payload("1").synchronous()),
                Effect::from(
                    SideEffect::webhook("https://h/x").method("PUT").header("X-A", "b").body("hi", "text/plain"),
                ),
                Effect::from(SideEffect::webhook("http://h/")),
            ];
            let converted = side_effects(effects);
            let types::Effect::Command(command) = &converted[0] else { panic!("{converted:?}") };
            assert_eq!(
                (command.service.as_str(), command.entity_id.as_str(), command.command.as_str()),
                ("audit", "a-1", "Record")
            );
            assert!(command.synchronous && command.payload == b"1");
            let types::Effect::Webhook(put) = &converted[1] else { panic!("{converted:?}") };
            assert_eq!(
                (put.url.as_str(), put.method.as_str(), put.content_type.as_str()),
                ("https://h/x", "PUT", "text/plain")
            );
            assert_eq!(
                (put.headers.as_slice(), put.body.as_slice()),
                ([("X-A".to_owned(), "b".to_owned())].as_slice(), b"hi".as_slice())
            );
            let types::Effect::Webhook(post) = &converted[2] else { panic!("{converted:?}") };
            assert_eq!(
                (post.method.as_str(), post.content_type.as_str(), post.body.len()),
                ("POST", "application/json", 0)
            );
        }

        #[test]
        fn timer_changes_become_the_wit_ones_in_order() {
            let call = TimerCall::new("orders", "o-1", "Expire").payload("{}");
            let cron = Cron::new("0 9 * * MON-FRI Europe/Paris").missed(Missed::All);
            let changes = vec![
                TimerChange::Set { name: "a".into(), due: TimerDue::AfterMs(900), call: call.clone() },
                TimerChange::Set { name: "b".into(), due: TimerDue::AtMs(7), call: call.clone() },
                TimerChange::Set { name: "c".into(), due: TimerDue::Cron(cron), call },
                TimerChange::Cancel("a".into()),
            ];
            let converted = timers(changes);
            let types::TimerChange::Set(first) = &converted[0] else { panic!("{converted:?}") };
            assert_eq!((first.name.as_str(), first.service.as_str(), first.entity_id.as_str()), ("a", "orders", "o-1"));
            assert_eq!((first.command.as_str(), first.payload.as_slice()), ("Expire", b"{}".as_slice()));
            assert!(matches!(first.due, types::TimerDue::AfterMs(900)));
            assert!(matches!(
                &converted[1],
                types::TimerChange::Set(types::Timer { due: types::TimerDue::AtMs(7), .. })
            ));
            let types::TimerChange::Set(types::Timer { due: types::TimerDue::Cron(schedule), .. }) = &converted[2]
            else {
                panic!("{converted:?}")
            };
            assert_eq!(schedule.expression, "0 9 * * MON-FRI Europe/Paris");
            assert!(matches!(schedule.missed, types::MissedFirings::All));
            assert!(matches!(&converted[3], types::TimerChange::Cancel(name) if name == "a"));
        }
    }
}

/// Exports an [`EventSourcedEntity`](crate::EventSourcedEntity) as the
/// component's `wasmstate:entity/event-sourced` interface (world
/// `event-sourced-entity`).
///
/// Invoke it once, at the crate's top level, in a `cdylib` crate; a
/// component exports exactly one kind of service. The exports are only
/// emitted when compiling for WebAssembly, so the same crate also builds
/// natively for unit tests.
///
/// ```
/// # use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply};
/// # #[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
/// # struct ShoppingCart {}
/// # impl EventSourcedEntity for ShoppingCart {
/// #     type Event = ();
/// #     fn apply(&mut self, _: &()) {}
/// #     fn handle(&self, c: Command<'_>, _: &mut Context<'_, Self>) -> Result<Reply, Failure> {
/// #         Err(c.unknown())
/// #     }
/// # }
/// wasmstate_sdk::export_event_sourced!(ShoppingCart);
/// ```
#[macro_export]
macro_rules! export_event_sourced {
    ($entity:ty) => {
        const _: () = {
            struct __WasmstateEventSourced;

            impl $crate::bindings::event_sourced::exports::wasmstate::entity::event_sourced::Guest
                for __WasmstateEventSourced
            {
                fn handle(
                    snapshot: ::core::option::Option<$crate::bindings::types::Snapshot>,
                    events: ::std::vec::Vec<$crate::bindings::types::Event>,
                    command: $crate::bindings::types::Command,
                ) -> ::core::result::Result<
                    $crate::bindings::event_sourced::exports::wasmstate::entity::event_sourced::Effects,
                    $crate::bindings::types::Failure,
                > {
                    $crate::__private::event_sourced_handle::<$entity>(snapshot, events, command)
                }

                fn replay(
                    snapshot: ::core::option::Option<$crate::bindings::types::Snapshot>,
                    events: ::std::vec::Vec<$crate::bindings::types::Event>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::bindings::types::ReplayFailure> {
                    $crate::__private::event_sourced_replay::<$entity>(snapshot, events)
                }
            }

            // Native builds (unit tests) only type-check the glue: the export
            // names are not valid symbol names for native linkers.
            #[cfg(target_family = "wasm")]
            $crate::bindings::event_sourced::__export_event_sourced_entity!(
                __WasmstateEventSourced with_types_in $crate::bindings::event_sourced
            );
        };
    };
}

/// Exports a [`ValueEntity`](crate::ValueEntity) as the component's
/// `wasmstate:entity/value` interface (world `value-entity`).
///
/// Invoke it once, at the crate's top level, in a `cdylib` crate; a
/// component exports exactly one kind of service. The exports are only
/// emitted when compiling for WebAssembly.
///
/// ```
/// # use wasmstate_sdk::{Command, Failure, Reply, ValueContext, ValueEntity};
/// # #[derive(Default, serde::Serialize, serde::Deserialize)]
/// # struct Profile {}
/// # impl ValueEntity for Profile {
/// #     fn handle(&self, c: Command<'_>, _: &mut ValueContext<'_, Self>) -> Result<Reply, Failure> {
/// #         Err(c.unknown())
/// #     }
/// # }
/// wasmstate_sdk::export_value_entity!(Profile);
/// ```
#[macro_export]
macro_rules! export_value_entity {
    ($entity:ty) => {
        const _: () = {
            struct __WasmstateValueEntity;

            impl $crate::bindings::value::exports::wasmstate::entity::value::Guest for __WasmstateValueEntity {
                fn handle(
                    state: ::core::option::Option<::std::vec::Vec<u8>>,
                    command: $crate::bindings::types::Command,
                ) -> ::core::result::Result<
                    $crate::bindings::value::exports::wasmstate::entity::value::ValueEffects,
                    $crate::bindings::types::Failure,
                > {
                    $crate::__private::value_handle::<$entity>(state, command)
                }

                fn decode_state(
                    state: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::bindings::types::Failure> {
                    $crate::__private::value_decode_state::<$entity>(state)
                }
            }

            #[cfg(target_family = "wasm")]
            $crate::bindings::value::__export_value_entity!(
                __WasmstateValueEntity with_types_in $crate::bindings::value
            );
        };
    };
}

/// Exports an [`Action`](crate::Action) as the component's
/// `wasmstate:entity/action` interface (world `action-service`).
///
/// Invoke it once, at the crate's top level, in a `cdylib` crate; a
/// component exports exactly one kind of service. The exports are only
/// emitted when compiling for WebAssembly.
///
/// ```
/// # use wasmstate_sdk::{Action, ActionContext, Command, Failure, Reply};
/// # #[derive(Default)]
/// # struct Validator;
/// # impl Action for Validator {
/// #     fn handle(&self, c: Command<'_>, _: &mut ActionContext<'_>) -> Result<Reply, Failure> {
/// #         Err(c.unknown())
/// #     }
/// # }
/// wasmstate_sdk::export_action!(Validator);
/// ```
#[macro_export]
macro_rules! export_action {
    ($action:ty) => {
        const _: () = {
            struct __WasmstateAction;

            impl $crate::bindings::action::exports::wasmstate::entity::action::Guest for __WasmstateAction {
                fn handle(
                    command: $crate::bindings::types::Command,
                ) -> ::core::result::Result<
                    $crate::bindings::action::exports::wasmstate::entity::action::ActionEffects,
                    $crate::bindings::types::Failure,
                > {
                    $crate::__private::action_handle::<$action>(command)
                }

                fn on_event(
                    event: $crate::bindings::types::SubscribedEvent,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::bindings::types::Effect>,
                    $crate::bindings::types::Failure,
                > {
                    $crate::__private::action_on_event::<$action>(event)
                }
            }

            #[cfg(target_family = "wasm")]
            $crate::bindings::action::__export_action_service!(
                __WasmstateAction with_types_in $crate::bindings::action
            );
        };
    };
}
