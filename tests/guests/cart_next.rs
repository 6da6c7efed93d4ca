//! Next versions of the shopping cart example, for the tests of verified
//! deploys: each package that builds this file turns one feature on.
//!
//! - `renamed-event`: `ItemAdded` holds its line under `line`, not `item`,
//!   with no default: it cannot read the events the example stored
//!   (incompatible).
//! - `upcasting`: the same rename, with an upcaster that reads the old
//!   shape too (compatible).
//! - `new-reply`: reads the example's events, but keeps a `totalQuantity`
//!   in its state, folded from the events (0 in a snapshot the example
//!   took, which lacks it), and `GetCart` answers it too (compatible, with
//!   a changed reply, and a state folded from a snapshot that differs from
//!   the one folded from event 1).
//!
//! Commands and state are the example's: `AddItem`, `RemoveItem`, `GetCart`.
//!
//! It dispatches commands by name through `EventSourcedEntity`, the style
//! entities were written in before typed commands: keeping it here proves
//! that such entities keep building and running.

use serde::{Deserialize, Serialize};
#[cfg(feature = "upcasting")]
use wasmstate_sdk::StoredEvent;
use wasmstate_sdk::{Command, Context, EventSourcedEntity, Failure, Reply};

/// A quantity of one product.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    product_id: String,
    name: String,
    quantity: i32,
}

/// The cart's state, as the example keeps it (and, in `new-reply`, the
/// total quantity added).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShoppingCart {
    items: Vec<LineItem>,
    #[cfg(feature = "new-reply")]
    #[serde(default)]
    total_quantity: i32,
}

/// What happened to a cart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    /// A quantity of a product was added.
    #[cfg(any(feature = "renamed-event", feature = "upcasting"))]
    ItemAdded {
        /// The product and the quantity added: `item` in the example.
        line: LineItem,
    },
    /// A quantity of a product was added.
    #[cfg(not(any(feature = "renamed-event", feature = "upcasting")))]
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

impl Event {
    fn added(line: LineItem) -> Self {
        #[cfg(any(feature = "renamed-event", feature = "upcasting"))]
        return Event::ItemAdded { line };
        #[cfg(not(any(feature = "renamed-event", feature = "upcasting")))]
        return Event::ItemAdded { item: line };
    }
}

/// The shape of `ItemAdded` the example stores.
#[cfg(feature = "upcasting")]
#[derive(Deserialize)]
#[serde(tag = "type")]
enum OldEvent {
    ItemAdded { item: LineItem },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoveItem {
    product_id: String,
}

impl EventSourcedEntity for ShoppingCart {
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            #[cfg(any(feature = "renamed-event", feature = "upcasting"))]
            Event::ItemAdded { line: item } => self.add(item),
            #[cfg(not(any(feature = "renamed-event", feature = "upcasting")))]
            Event::ItemAdded { item } => self.add(item),
            Event::ItemRemoved { product_id } => self.items.retain(|line| line.product_id != *product_id),
        }
    }

    #[cfg(feature = "upcasting")]
    fn upcast(event: StoredEvent<'_>) -> serde_json::Result<Event> {
        event.json().or_else(|error| match event.json::<OldEvent>() {
            Ok(OldEvent::ItemAdded { item }) => Ok(Event::ItemAdded { line: item }),
            Err(_) => Err(error),
        })
    }

    fn handle(&self, command: Command<'_>, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        match command.name() {
            "AddItem" => {
                let item: LineItem = command.json()?;
                if item.quantity <= 0 {
                    return Err(Failure::rejected("Quantity must be greater than zero."));
                }
                ctx.emit(Event::added(item));
                Ok(Reply::empty())
            }
            "RemoveItem" => {
                let RemoveItem { product_id } = command.json()?;
                if !self.items.iter().any(|line| line.product_id == product_id) {
                    return Err(Failure::rejected(format!("Item {product_id} is not in the cart.")));
                }
                ctx.emit(Event::ItemRemoved { product_id });
                Ok(Reply::empty())
            }
            "GetCart" => Ok(Reply::json(self)),
            _ => Err(command.unknown()),
        }
    }
}

impl ShoppingCart {
    fn add(&mut self, item: &LineItem) {
        #[cfg(feature = "new-reply")]
        {
            self.total_quantity += item.quantity;
        }
        match self.items.iter_mut().find(|line| line.product_id == item.product_id) {
            Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
            None => self.items.push(item.clone()),
        }
    }
}

wasmstate_sdk::export_event_sourced!(ShoppingCart);
