//! Cloudstate's shopping cart as an event-sourced entity.
//!
//! Commands (JSON bodies):
//!
//! - `AddItem {"productId", "name", "quantity"}` adds `quantity` (which must
//!   be greater than zero) of a product, summing quantities per product;
//!   replies `{}`;
//! - `RemoveItem {"productId"}` removes a product that is in the cart;
//!   replies `{}`;
//! - `GetCart` (empty body or `{}`) replies
//!   `{"items": [{"productId", "name", "quantity"}, ...]}`, in the order the
//!   products were first added.
//!
//! Events: `{"type":"ItemAdded","item":{"productId","name","quantity"}}` and
//! `{"type":"ItemRemoved","productId":...}`.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, Context, EventSourced, Failure, Reply};

/// A quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// The product's id.
    pub product_id: String,
    /// The product's name, as given when it was first added.
    pub name: String,
    /// How many are in the cart; always positive.
    pub quantity: i32,
}

/// The cart's state, also the reply of `GetCart`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShoppingCart {
    /// One line per product, in the order products were first added.
    pub items: Vec<LineItem>,
}

/// What happened to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    /// A quantity of a product was added.
    ItemAdded {
        /// The product and the quantity added.
        item: LineItem,
    },
    /// A product was removed altogether.
    ItemRemoved {
        /// The product's id.
        product_id: String,
    },
}

/// The cart's commands, as the host names them: `POST
/// /v1/services/shopping-cart/entities/{id}/AddItem` with a [`LineItem`]
/// is `CartCommand::AddItem(item)`. Other services call them by type with
/// [`Forward::to`](wasmstate_sdk::Forward::to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum CartCommand {
    /// Adds a quantity (greater than zero) of a product; replies `{}`.
    AddItem(LineItem),
    /// Removes a product that is in the cart; replies `{}`.
    RemoveItem {
        /// The product's id.
        product_id: String,
    },
    /// Replies with the cart.
    GetCart,
}

impl Commands for CartCommand {
    const SERVICE: &'static str = "shopping-cart";
}

impl ShoppingCart {
    fn item(&self, product_id: &str) -> Option<&LineItem> {
        self.items.iter().find(|item| item.product_id == product_id)
    }
}

impl EventSourced for ShoppingCart {
    type Command = CartCommand;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::ItemAdded { item } => match self.items.iter_mut().find(|line| line.product_id == item.product_id) {
                Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
                None => self.items.push(item.clone()),
            },
            Event::ItemRemoved { product_id } => self.items.retain(|line| line.product_id != *product_id),
        }
    }

    fn handle(command: CartCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            CartCommand::AddItem(item) => {
                if item.quantity <= 0 {
                    return Err(Failure::rejected(format!(
                        "Quantity for item {} must be greater than zero.",
                        item.product_id
                    )));
                }
                let held = ctx.state().item(&item.product_id).map_or(0, |line| line.quantity);
                if held.checked_add(item.quantity).is_none() {
                    return Err(Failure::rejected(format!(
                        "Quantity for item {} would exceed {}.",
                        item.product_id,
                        i32::MAX
                    )));
                }
                ctx.emit(Event::ItemAdded { item });
                Ok(Reply::empty())
            }
            CartCommand::RemoveItem { product_id } => {
                if ctx.state().item(&product_id).is_none() {
                    return Err(Failure::rejected(format!(
                        "Cannot remove item {product_id} because it is not in the cart."
                    )));
                }
                ctx.emit(Event::ItemRemoved { product_id });
                Ok(Reply::empty())
            }
            CartCommand::GetCart => Ok(Reply::json(ctx.state())),
        }
    }
}

wasmstate_sdk::export_event_sourced!(ShoppingCart);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::TestKit;

    use super::*;

    fn add(kit: &mut TestKit<ShoppingCart>, product_id: &str, name: &str, quantity: i32) -> Result<Value, Failure> {
        kit.handle("AddItem", json!({"productId": product_id, "name": name, "quantity": quantity}))
    }

    #[test]
    fn cloudstate_cart_sequence() {
        let mut kit = TestKit::<ShoppingCart>::new("cart-1");
        assert_eq!(kit.handle("GetCart", ()), Ok(json!({"items": []})));

        assert_eq!(add(&mut kit, "A14362347", "Deluxe", 5), Ok(json!({})));
        assert_eq!(add(&mut kit, "B14623482", "Basic", 1), Ok(json!({})));
        assert_eq!(add(&mut kit, "A14362347", "Deluxe", 2), Ok(json!({})));
        assert_eq!(
            kit.handle("GetCart", json!({})),
            Ok(json!({"items": [
                {"productId": "A14362347", "name": "Deluxe", "quantity": 7},
                {"productId": "B14623482", "name": "Basic", "quantity": 1},
            ]}))
        );

        assert_eq!(kit.handle("RemoveItem", json!({"productId": "A14362347"})), Ok(json!({})));
        assert_eq!(
            kit.handle("GetCart", ()),
            Ok(json!({"items": [{"productId": "B14623482", "name": "Basic", "quantity": 1}]}))
        );

        let failure = add(&mut kit, "A14362347", "Deluxe", 0).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected);
        assert_eq!(failure.message(), "Quantity for item A14362347 must be greater than zero.");
        let failure = kit.handle("RemoveItem", json!({"productId": "A14362347"})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected);
        assert_eq!(failure.message(), "Cannot remove item A14362347 because it is not in the cart.");

        assert_eq!(kit.seq(), 4);
        assert_eq!(
            kit.events_json(),
            [
                (1, json!({"type": "ItemAdded", "item": {"productId": "A14362347", "name": "Deluxe", "quantity": 5}})),
                (2, json!({"type": "ItemAdded", "item": {"productId": "B14623482", "name": "Basic", "quantity": 1}})),
                (3, json!({"type": "ItemAdded", "item": {"productId": "A14362347", "name": "Deluxe", "quantity": 2}})),
                (4, json!({"type": "ItemRemoved", "productId": "A14362347"})),
            ]
        );
    }

    #[test]
    fn snapshots_keep_insertion_order() {
        let mut kit = TestKit::<ShoppingCart>::new("cart-2").with_snapshot_every(1);
        for (id, quantity) in [("c", 1), ("a", 2), ("b", 3), ("a", 4)] {
            add(&mut kit, id, id, quantity).unwrap();
        }
        let ids: Vec<_> = kit.state().items.into_iter().map(|item| (item.product_id, item.quantity)).collect();
        assert_eq!(ids, [("c".to_owned(), 1), ("a".to_owned(), 6), ("b".to_owned(), 3)]);
    }

    #[test]
    fn rejects_negative_and_overflowing_quantities() {
        let mut kit = TestKit::<ShoppingCart>::new("cart-3");
        assert_eq!(add(&mut kit, "A1", "x", -2).unwrap_err().code(), FailureCode::Rejected);
        add(&mut kit, "A1", "x", i32::MAX).unwrap();
        let failure = add(&mut kit, "A1", "x", 1).unwrap_err();
        assert_eq!(failure.message(), "Quantity for item A1 would exceed 2147483647.");
        assert_eq!(kit.seq(), 1);
    }

    #[test]
    fn reports_bad_commands() {
        let mut kit = TestKit::<ShoppingCart>::new("cart-4");
        let failure = kit.handle_raw("AddItem", b"{\"productId\":").unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
        assert!(failure.message().starts_with("invalid payload for command \"AddItem\": "));
        let failure = kit.handle("Checkout", ()).unwrap_err();
        assert_eq!(
            failure,
            Failure::unknown_command("unknown command \"Checkout\"; the commands are AddItem, RemoveItem, GetCart")
        );
        assert!(kit.events().is_empty());
    }
}
