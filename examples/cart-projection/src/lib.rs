//! An action that subscribes to the `shopping-cart` service and counts the
//! items added to every cart.
//!
//! It expects, next to it, the `counter` example deployed as service
//! `counter`.
//!
//! Events: for every `ItemAdded` event of a cart,
//! `{"type": "ItemAdded", "item": {"productId", "name", "quantity"}}`, it
//! returns a **synchronous side effect**, command
//! `Increase {"value": quantity}` of entity `items-added` of service
//! `counter`, which the host runs before the event counts as delivered.
//! Other events (such as `ItemRemoved`) are ignored; an event that is not
//! JSON fails with `invalid-payload`.
//!
//! Commands (JSON bodies):
//!
//! - `Describe` (empty body or `{}`) replies
//!   `{"subscribesTo": "shopping-cart", "counter": {"service": "counter", "entityId": "items-added"}, "description": ...}`;
//! - anything else is an unknown command.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{ActionContext, Commands, Failure, Reply, SideEffect, Stateless, SubscribedEvent};

/// The service whose events the projection reads.
pub const CART_SERVICE: &str = "shopping-cart";
/// The entity of the `counter` service counting the items added.
pub const ITEMS_ADDED_COUNTER: &str = "items-added";

/// The cart projection; it holds no state.
#[derive(Debug, Default)]
pub struct CartProjection;

/// The events of a shopping cart this projection reads.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum CartEvent {
    /// A quantity of a product was added.
    ItemAdded {
        /// The product and the quantity added.
        item: LineItem,
    },
    /// Any other event.
    #[serde(other)]
    Other,
}

/// The part of a cart's line item the projection reads.
#[derive(Deserialize)]
struct LineItem {
    quantity: i64,
}

/// The command of the counter the projection counts into, restated here:
/// a dependency on the `counter` crate would link its component exports
/// into this one too.
#[derive(Serialize)]
enum CounterCommand {
    /// Adds `value` to the counter.
    Increase { value: i64 },
}

impl Commands for CounterCommand {
    const SERVICE: &'static str = "counter";
}

/// The projection's commands.
#[derive(Deserialize)]
pub enum ProjectionCommand {
    /// Says what the projection reads and where it counts.
    Describe,
}

/// Where the projection counts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    service: &'static str,
    entity_id: &'static str,
}

/// The reply of `Describe`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Description {
    subscribes_to: &'static str,
    counter: Target,
    description: &'static str,
}

impl Stateless for CartProjection {
    type Command = ProjectionCommand;

    fn handle(command: ProjectionCommand, _ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {
            ProjectionCommand::Describe => Ok(Reply::json(&Description {
                subscribes_to: CART_SERVICE,
                counter: Target { service: CounterCommand::SERVICE, entity_id: ITEMS_ADDED_COUNTER },
                description: "Counts the items added to every shopping cart.",
            })),
        }
    }

    fn on_event(event: SubscribedEvent<'_>, ctx: &mut ActionContext<'_>) -> Result<(), Failure> {
        if let CartEvent::ItemAdded { item } = event.json()? {
            let increase = CounterCommand::Increase { value: item.quantity };
            ctx.effect(SideEffect::to(ITEMS_ADDED_COUNTER, &increase).synchronous());
        }
        Ok(())
    }
}

wasmstate_sdk::export_action!(CartProjection);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::{ActionTestKit, SideEffectCall};

    use super::*;

    #[test]
    fn counts_added_items_synchronously() {
        let kit = ActionTestKit::<CartProjection>::new();
        let event = json!({
            "type": "ItemAdded",
            "item": {"productId": "A14362347", "name": "Deluxe", "quantity": 5}
        });
        assert_eq!(
            kit.on_event("shopping-cart", "cart-1", 1, event),
            Ok(vec![SideEffectCall::new("counter", "items-added", "Increase", json!({"value": 5})).synchronous()])
        );
    }

    #[test]
    fn ignores_other_events() {
        let kit = ActionTestKit::<CartProjection>::new();
        let removed = json!({"type": "ItemRemoved", "productId": "A14362347"});
        assert_eq!(kit.on_event("shopping-cart", "cart-1", 2, removed), Ok(vec![]));
        let unknown = json!({"type": "CheckedOut", "at": 17});
        assert_eq!(kit.on_event("shopping-cart", "cart-1", 3, unknown), Ok(vec![]));
    }

    #[test]
    fn fails_on_an_event_that_is_not_json() {
        let kit = ActionTestKit::<CartProjection>::new();
        let failure = kit.on_event_raw("shopping-cart", "cart-1", 4, b"\x00garbage").unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
        assert!(failure.message().starts_with("event 4 of shopping-cart/cart-1 could not be decoded: "), "{failure}");
    }

    #[test]
    fn describes_itself_and_knows_no_other_command() {
        let kit = ActionTestKit::<CartProjection>::new();
        let description = kit.handle("Describe", ()).unwrap();
        assert_eq!(description["subscribesTo"], "shopping-cart");
        assert_eq!(description["counter"], json!({"service": "counter", "entityId": "items-added"}));
        let failure = kit.handle("AddItem", json!({})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::UnknownCommand);
        assert_eq!(failure.message(), "unknown command \"AddItem\"; the commands are Describe");
    }
}
