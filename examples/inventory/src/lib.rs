//! The stock an order saga reserves and releases, as an event-sourced
//! entity: the inventory of the `order-workflow` example.
//!
//! One entity is one stock location holding every product (the saga uses
//! entity `main`), so an order's items are reserved all at once or not at
//! all. It is deployed as service `inventory`, next to the
//! `order-workflow` example deployed as `orders`: it answers each
//! reservation to its order with an **asynchronous side effect**, so the
//! answer is durable and delivered at least once.
//!
//! Commands (JSON bodies):
//!
//! - `Restock {"productId", "quantity"}` adds `quantity` (greater than
//!   zero) of a product; replies the product's `{"available", "reserved"}`;
//! - `Reserve {"orderId", "items": [{"productId", "quantity"}, ...]}`
//!   reserves the items for the order if every product has enough
//!   available, and answers the order `ItemsReserved`; otherwise it
//!   reserves nothing and answers `ReservationRefused {"reason"}` (a
//!   refusal is an answer, not a failure: a failed command would tell the
//!   order nothing). A reservation the order already holds is answered
//!   `ItemsReserved` again, reserving nothing more. Replies
//!   `{"reserved": true}` or `{"reserved": false, "reason"}`; an `orderId`
//!   that is no valid entity id is rejected;
//! - `Release {"orderId"}` puts the order's reserved items back; an order
//!   holding none changes nothing. Replies `{"released": true|false}`;
//! - `GetStock` (empty body or `{}`) replies the state:
//!   `{"stock": {productId: {"available", "reserved"}}, "reservations":
//!   {orderId: [{"productId", "quantity"}, ...]}}`.
//!
//! Events: `{"type":"Restocked","productId","quantity"}`,
//! `{"type":"Reserved","orderId","items"}` and
//! `{"type":"Released","orderId"}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, Context, EventSourced, Failure, Reply, SideEffect};

/// The longest entity id the host accepts, in bytes.
const MAX_ENTITY_ID_BYTES: usize = 256;

/// A quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// The product's id.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
}

/// What the location holds of one product.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Units free to reserve.
    pub available: u32,
    /// Units reserved for orders; their sum with `available` fits a `u32`.
    pub reserved: u32,
}

/// The state of a stock location, also the reply of `GetStock`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Every product ever restocked, by id.
    pub stock: BTreeMap<String, Stock>,
    /// The items reserved for each order holding a reservation, by order id.
    pub reservations: BTreeMap<String, Vec<Line>>,
}

/// What happened to a stock location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    /// Units of a product arrived.
    Restocked {
        /// The product's id.
        product_id: String,
        /// How many, never zero.
        quantity: u32,
    },
    /// Items were reserved for an order, which holds no other reservation.
    Reserved {
        /// The order's id.
        order_id: String,
        /// The items, each available when they were reserved.
        items: Vec<Line>,
    },
    /// An order's reservation was put back.
    Released {
        /// The order's id.
        order_id: String,
    },
}

/// The inventory's commands, as the host names them; the saga calls them
/// by type with [`SideEffect::to`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum InventoryCommand {
    /// Adds stock of a product.
    Restock {
        /// The product's id.
        product_id: String,
        /// How many, greater than zero.
        quantity: u32,
    },
    /// Reserves an order's items, all or none, and answers the order.
    Reserve {
        /// The order's id: the entity of `orders` that gets the answer.
        order_id: String,
        /// The items to reserve.
        items: Vec<Line>,
    },
    /// Puts an order's reserved items back.
    Release {
        /// The order's id.
        order_id: String,
    },
    /// Replies with the state.
    GetStock,
}

impl Commands for InventoryCommand {
    const SERVICE: &'static str = "inventory";
}

/// The answers the inventory sends an order, restated from the
/// `order-workflow` example: a dependency on its crate would link its
/// component exports into this one too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OrderCommand {
    /// The order's items are reserved.
    ItemsReserved,
    /// The order's items could not be reserved.
    ReservationRefused {
        /// Why, for people.
        reason: String,
    },
}

impl Commands for OrderCommand {
    const SERVICE: &'static str = "orders";
}

/// The reply of `Reserve`.
#[derive(Debug, Serialize)]
struct Reserved {
    reserved: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The reply of `Release`.
#[derive(Debug, Serialize)]
struct Released {
    released: bool,
}

impl Inventory {
    /// Why `items` cannot be reserved for `order_id` now, if they cannot.
    fn refusal(&self, order_id: &str, items: &[Line]) -> Option<String> {
        if items.is_empty() {
            return Some(format!("Order {order_id} asks for no items."));
        }
        // Summed per product: an order may name a product twice.
        let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
        for line in items {
            if line.quantity == 0 {
                return Some(format!("Quantity for item {} must be greater than zero.", line.product_id));
            }
            *wanted.entry(&line.product_id).or_default() += u64::from(line.quantity);
        }
        wanted.into_iter().find_map(|(product_id, wanted)| {
            let available = self.stock.get(product_id).map_or(0, |stock| stock.available);
            (wanted > u64::from(available)).then(|| {
                format!("Only {available} of item {product_id} available; order {order_id} asks for {wanted}.")
            })
        })
    }
}

/// Refuses an order id the host would not take as an entity id, since the
/// inventory answers that entity.
fn check_order_id(order_id: &str) -> Result<(), Failure> {
    if order_id.is_empty()
        || order_id.len() > MAX_ENTITY_ID_BYTES
        || order_id.contains('/')
        || order_id.contains(char::is_control)
    {
        return Err(Failure::rejected(format!(
            "orderId {order_id:?} is not a valid entity id: it must be 1 to \
             {MAX_ENTITY_ID_BYTES} bytes, with no / and no control characters."
        )));
    }
    Ok(())
}

impl EventSourced for Inventory {
    type Command = InventoryCommand;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Restocked { product_id, quantity } => {
                let stock = self.stock.entry(product_id.clone()).or_default();
                stock.available = stock.available.saturating_add(*quantity);
            }
            Event::Reserved { order_id, items } => {
                for line in items {
                    let stock = self.stock.entry(line.product_id.clone()).or_default();
                    stock.available = stock.available.saturating_sub(line.quantity);
                    stock.reserved = stock.reserved.saturating_add(line.quantity);
                }
                self.reservations.insert(order_id.clone(), items.clone());
            }
            Event::Released { order_id } => {
                for line in self.reservations.remove(order_id).unwrap_or_default() {
                    let stock = self.stock.entry(line.product_id).or_default();
                    stock.available = stock.available.saturating_add(line.quantity);
                    stock.reserved = stock.reserved.saturating_sub(line.quantity);
                }
            }
        }
    }

    fn handle(command: InventoryCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command {
            InventoryCommand::Restock { product_id, quantity } => {
                if product_id.trim().is_empty() {
                    return Err(Failure::rejected("productId must not be empty."));
                }
                if quantity == 0 {
                    return Err(Failure::rejected(format!(
                        "Quantity for item {product_id} must be greater than zero."
                    )));
                }
                let stock = ctx.state().stock.get(&product_id).copied().unwrap_or_default();
                if stock.available.checked_add(stock.reserved).and_then(|held| held.checked_add(quantity)).is_none() {
                    return Err(Failure::rejected(format!("Stock of item {product_id} would exceed {}.", u32::MAX)));
                }
                ctx.emit(Event::Restocked { product_id: product_id.clone(), quantity });
                Ok(Reply::json(&ctx.state().stock[&product_id]))
            }
            InventoryCommand::Reserve { order_id, items } => {
                check_order_id(&order_id)?;
                // A reservation asked again (a retry) is answered again,
                // reserving nothing more.
                let held = ctx.state().reservations.contains_key(&order_id);
                let refusal = if held { None } else { ctx.state().refusal(&order_id, &items) };
                let answer = match &refusal {
                    Some(reason) => OrderCommand::ReservationRefused { reason: reason.clone() },
                    None => OrderCommand::ItemsReserved,
                };
                if !held && refusal.is_none() {
                    ctx.emit(Event::Reserved { order_id: order_id.clone(), items });
                }
                ctx.effect(SideEffect::to(order_id, &answer));
                Ok(Reply::json(&Reserved { reserved: refusal.is_none(), reason: refusal }))
            }
            InventoryCommand::Release { order_id } => {
                let released = ctx.state().reservations.contains_key(&order_id);
                if released {
                    ctx.emit(Event::Released { order_id });
                }
                Ok(Reply::json(&Released { released }))
            }
            InventoryCommand::GetStock => Ok(Reply::json(ctx.state())),
        }
    }
}

wasmstate_sdk::export_event_sourced!(Inventory);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasmstate_sdk::FailureCode;
    use wasmstate_sdk::testkit::{Outcome, SideEffectCall, TestKit};

    use super::*;

    fn line(product_id: &str, quantity: u32) -> Line {
        Line { product_id: product_id.to_owned(), quantity }
    }

    fn restock(kit: &mut TestKit<Inventory>, product_id: &str, quantity: u32) -> Result<Value, Failure> {
        kit.send(&InventoryCommand::Restock { product_id: product_id.to_owned(), quantity })
    }

    fn reserve(kit: &mut TestKit<Inventory>, order_id: &str, items: &[Line]) -> Result<Outcome, Failure> {
        kit.send_outcome(&InventoryCommand::Reserve { order_id: order_id.to_owned(), items: items.to_vec() })
    }

    /// The answer the inventory sends order `order_id`.
    fn answer(order_id: &str, command: &str, payload: Value) -> Vec<SideEffectCall> {
        vec![SideEffectCall::new("orders", order_id, command, payload)]
    }

    fn stocked() -> TestKit<Inventory> {
        let mut kit = TestKit::<Inventory>::new("main");
        assert_eq!(restock(&mut kit, "P1", 5), Ok(json!({"available": 5, "reserved": 0})));
        restock(&mut kit, "P2", 2).unwrap();
        kit
    }

    #[test]
    fn reserves_then_releases_an_order_s_items() {
        let mut kit = stocked();
        let reserved = reserve(&mut kit, "o-1", &[line("P1", 2), line("P2", 2)]).unwrap();
        assert_eq!(reserved.reply, Some(json!({"reserved": true})));
        assert_eq!(reserved.side_effects, answer("o-1", "ItemsReserved", Value::Null));
        assert_eq!(
            kit.send(&InventoryCommand::GetStock),
            Ok(json!({
                "stock": {"P1": {"available": 3, "reserved": 2}, "P2": {"available": 0, "reserved": 2}},
                "reservations": {"o-1": [{"productId": "P1", "quantity": 2}, {"productId": "P2", "quantity": 2}]},
            }))
        );

        let release = InventoryCommand::Release { order_id: "o-1".into() };
        assert_eq!(kit.send(&release), Ok(json!({"released": true})));
        assert_eq!(kit.state().stock["P1"], Stock { available: 5, reserved: 0 });
        assert_eq!(kit.state().stock["P2"], Stock { available: 2, reserved: 0 });
        assert!(kit.state().reservations.is_empty());
        // Released twice, or never reserved: nothing changes.
        assert_eq!(kit.send(&release), Ok(json!({"released": false})));
        assert_eq!(kit.seq(), 4);
        assert_eq!(kit.events_json()[3].1, json!({"type": "Released", "orderId": "o-1"}));
    }

    #[test]
    fn a_reservation_asked_again_is_answered_again_and_reserves_nothing_more() {
        let mut kit = stocked();
        reserve(&mut kit, "o-1", &[line("P1", 4)]).unwrap();
        let again = reserve(&mut kit, "o-1", &[line("P1", 4)]).unwrap();
        assert_eq!(again.reply, Some(json!({"reserved": true})));
        assert_eq!(again.side_effects, answer("o-1", "ItemsReserved", Value::Null));
        assert_eq!(kit.state().stock["P1"], Stock { available: 1, reserved: 4 });
        assert_eq!(kit.seq(), 3);
    }

    #[test]
    fn a_refusal_reserves_nothing_and_is_answered_to_the_order() {
        let mut kit = stocked();
        for (items, reason) in [
            (vec![line("P1", 1), line("P2", 3)], "Only 2 of item P2 available; order o-1 asks for 3."),
            (vec![line("P1", 3), line("P1", 3)], "Only 5 of item P1 available; order o-1 asks for 6."),
            (vec![line("P9", 1)], "Only 0 of item P9 available; order o-1 asks for 1."),
            (vec![line("P1", 0)], "Quantity for item P1 must be greater than zero."),
            (vec![], "Order o-1 asks for no items."),
        ] {
            let refused = reserve(&mut kit, "o-1", &items).unwrap();
            assert_eq!(refused.reply, Some(json!({"reserved": false, "reason": reason})));
            assert_eq!(refused.side_effects, answer("o-1", "ReservationRefused", json!({"reason": reason})));
        }
        assert_eq!(kit.seq(), 2, "only the restocks");
        assert!(kit.state().reservations.is_empty());
    }

    #[test]
    fn rejects_bad_restocks_and_order_ids() {
        let mut kit = stocked();
        let rejected = |result: Result<_, Failure>| result.unwrap_err().message().to_owned();
        assert_eq!(rejected(restock(&mut kit, "P1", 0)), "Quantity for item P1 must be greater than zero.");
        assert_eq!(rejected(restock(&mut kit, " ", 1)), "productId must not be empty.");
        reserve(&mut kit, "o-1", &[line("P1", 5)]).unwrap();
        // Reserved units count: available and reserved together fit a u32.
        assert_eq!(rejected(restock(&mut kit, "P1", u32::MAX - 4)), "Stock of item P1 would exceed 4294967295.");
        restock(&mut kit, "P1", u32::MAX - 5).unwrap();
        for order_id in ["", "a/b", "x\n"] {
            let failure = reserve(&mut kit, order_id, &[line("P2", 1)]).unwrap_err();
            assert_eq!(failure.code(), FailureCode::Rejected);
            assert!(failure.message().contains("is not a valid entity id"), "{failure}");
        }
        let failure = kit.handle("Restock", json!({"productId": "P1", "quantity": -1})).unwrap_err();
        assert_eq!(failure.code(), FailureCode::InvalidPayload);
    }

    #[test]
    fn snapshots_keep_the_reservations() {
        let mut kit = TestKit::<Inventory>::new("main").with_snapshot_every(1);
        restock(&mut kit, "P1", 5).unwrap();
        reserve(&mut kit, "o-1", &[line("P1", 2)]).unwrap();
        reserve(&mut kit, "o-2", &[line("P1", 3)]).unwrap();
        kit.send(&InventoryCommand::Release { order_id: "o-1".into() }).unwrap();
        assert_eq!(kit.state().stock["P1"], Stock { available: 2, reserved: 3 });
        assert_eq!(kit.state().reservations.keys().collect::<Vec<_>>(), ["o-2"]);
    }
}
