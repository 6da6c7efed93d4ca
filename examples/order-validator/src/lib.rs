//! An action that validates orders, then forwards them to a shopping cart.
//!
//! It expects two services next to it, deployed under these names:
//!
//! - `shopping-cart` (the `shopping-cart` example): every valid order is
//!   **forwarded** to command `AddItem` of the cart named by the order, so
//!   the caller gets the cart's reply (`{}`) or its failure;
//! - `counter` (the `counter` example): every valid order adds an
//!   **asynchronous side effect**, command `Increase {"value": 1}` of entity
//!   `orders`, which counts the orders placed.
//!
//! Commands (JSON bodies):
//!
//! - `PlaceOrder {"cartId", "productId", "name", "quantity"}`: `cartId` and
//!   `productId` must not be empty (nor only whitespace), `cartId` must be a
//!   valid entity id (at most 256 bytes, no `/`, no control characters) and
//!   `quantity` must be between 1 and 1000; otherwise the order is rejected.
//!   The name is trimmed, and an empty (or missing) name becomes the
//!   `productId`. Forwards to `shopping-cart`, entity `cartId`, command
//!   `AddItem` with `{"productId", "name", "quantity"}`.
//!
//! The routing key the action is invoked with does not matter.

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{ActionContext, Commands, Failure, Forward, Reply, SideEffect, Stateless};

/// The entity of the `counter` service counting the orders placed.
pub const ORDERS_COUNTER: &str = "orders";
/// The largest quantity one order may ask for.
pub const MAX_QUANTITY: i64 = 1000;
/// The longest entity id the host accepts, in bytes.
const MAX_ENTITY_ID_BYTES: usize = 256;

/// The order validator; it holds no state.
#[derive(Debug, Default)]
pub struct OrderValidator;

/// The commands of the shopping cart this action calls, restated here: a
/// dependency on the `shopping-cart` crate would link its component
/// exports into this one too.
#[derive(Debug, Serialize)]
pub enum CartCommand {
    /// Adds a quantity of a product to the cart.
    AddItem(LineItem),
}

impl Commands for CartCommand {
    const SERVICE: &'static str = "shopping-cart";
}

/// A quantity of one product, as the cart's `AddItem` takes it.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// The product's id.
    pub product_id: String,
    /// The product's name.
    pub name: String,
    /// How many; between 1 and [`MAX_QUANTITY`].
    pub quantity: i64,
}

/// The command of the counter this action calls.
#[derive(Debug, Serialize)]
pub enum CounterCommand {
    /// Adds `value` to the counter.
    Increase {
        /// The amount.
        value: i64,
    },
}

impl Commands for CounterCommand {
    const SERVICE: &'static str = "counter";
}

/// The validator's commands.
#[derive(Deserialize)]
pub enum OrderCommand {
    /// Validates an order and forwards it to its cart.
    PlaceOrder(PlaceOrder),
}

/// An order for one product, to be added to a cart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    cart_id: String,
    product_id: String,
    #[serde(default)]
    name: String,
    quantity: i64,
}

fn check_id(field: &str, id: &str) -> Result<(), Failure> {
    if id.trim().is_empty() {
        return Err(Failure::rejected(format!("{field} must not be empty.")));
    }
    if id.len() > MAX_ENTITY_ID_BYTES || id.contains('/') || id.contains(char::is_control) {
        return Err(Failure::rejected(format!(
            "{field} {id:?} is not a valid entity id: it must be at most \
             {MAX_ENTITY_ID_BYTES} bytes, with no / and no control characters."
        )));
    }
    Ok(())
}

impl PlaceOrder {
    /// Validates the order and turns it into the cart's `AddItem`.
    fn validate(self) -> Result<(String, LineItem), Failure> {
        check_id("cartId", &self.cart_id)?;
        if self.product_id.trim().is_empty() {
            return Err(Failure::rejected("productId must not be empty."));
        }
        if !(1..=MAX_QUANTITY).contains(&self.quantity) {
            return Err(Failure::rejected(format!(
                "Quantity for item {} must be between 1 and {MAX_QUANTITY}. It was [{}].",
                self.product_id, self.quantity
            )));
        }
        let name = match self.name.trim() {
            "" => self.product_id.clone(),
            name => name.to_owned(),
        };
        let item = LineItem { product_id: self.product_id, name, quantity: self.quantity };
        Ok((self.cart_id, item))
    }
}

impl Stateless for OrderValidator {
    type Command = OrderCommand;

    fn handle(command: OrderCommand, ctx: &mut ActionContext<'_>) -> Result<Reply, Failure> {
        match command {
            OrderCommand::PlaceOrder(order) => {
                let (cart_id, item) = order.validate()?;
                ctx.effect(SideEffect::to(ORDERS_COUNTER, &CounterCommand::Increase { value: 1 }));
                Ok(Reply::forward(Forward::to(cart_id, &CartCommand::AddItem(item))))
            }
        }
    }
}

wasmstate_sdk::export_action!(OrderValidator);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::{ActionTestKit, ForwardCall, Outcome, SideEffectCall};

    use super::*;

    fn place(order: Value) -> Result<Outcome, Failure> {
        ActionTestKit::<OrderValidator>::new().handle_outcome("PlaceOrder", order)
    }

    fn rejection(order: Value) -> String {
        let failure = place(order).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Rejected, "{failure}");
        failure.message().to_owned()
    }

    #[test]
    fn forwards_a_valid_order_and_counts_it() {
        let outcome = place(json!({
            "cartId": "cart-1", "productId": "A14362347", "name": "  Deluxe ", "quantity": 5
        }));
        assert_eq!(
            outcome,
            Ok(Outcome {
                reply: None,
                forward: Some(ForwardCall::new(
                    "shopping-cart",
                    "cart-1",
                    "AddItem",
                    json!({"productId": "A14362347", "name": "Deluxe", "quantity": 5}),
                )),
                side_effects: vec![SideEffectCall::new("counter", "orders", "Increase", json!({"value": 1}))],
                webhooks: vec![],
            })
        );
    }

    #[test]
    fn an_empty_or_missing_name_becomes_the_product_id() {
        for order in [
            json!({"cartId": "c", "productId": "B1", "name": "   ", "quantity": 1}),
            json!({"cartId": "c", "productId": "B1", "quantity": 1}),
        ] {
            let forward = place(order).unwrap().forward.unwrap();
            assert_eq!(forward.payload, json!({"productId": "B1", "name": "B1", "quantity": 1}));
        }
    }

    #[test]
    fn rejects_bad_ids() {
        let order =
            |cart: &str, product: &str| json!({"cartId": cart, "productId": product, "name": "x", "quantity": 1});
        assert_eq!(rejection(order("", "A1")), "cartId must not be empty.");
        assert_eq!(rejection(order(" ", "A1")), "cartId must not be empty.");
        assert_eq!(rejection(order("c", "")), "productId must not be empty.");
        assert_eq!(
            rejection(order("a/b", "A1")),
            "cartId \"a/b\" is not a valid entity id: it must be at most 256 bytes, \
             with no / and no control characters."
        );
        assert!(rejection(order(&"c".repeat(257), "A1")).contains("not a valid entity id"));
        assert!(place(order(&"c".repeat(256), "A1")).is_ok());
    }

    #[test]
    fn rejects_quantities_outside_1_to_1000() {
        let order = |quantity: i64| json!({"cartId": "c", "productId": "A1", "name": "x", "quantity": quantity});
        for quantity in [0, -3, 1001, i64::MAX] {
            assert_eq!(
                rejection(order(quantity)),
                format!("Quantity for item A1 must be between 1 and 1000. It was [{quantity}].")
            );
        }
        for quantity in [1, 1000] {
            let forward = place(order(quantity)).unwrap().forward.unwrap();
            assert_eq!(forward.payload["quantity"], quantity);
        }
    }

    #[test]
    fn reports_bad_commands() {
        let kit = ActionTestKit::<OrderValidator>::new();
        let failure = kit.handle_outcome("PlaceOrder", json!({"cartId": "c"})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
        assert_eq!(kit.handle("CancelOrder", ()).unwrap_err().code(), FailureCode::UnknownCommand);
    }
}
