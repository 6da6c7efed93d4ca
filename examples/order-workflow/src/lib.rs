//! An order saga: reserve the items, wait for payment, then confirm the
//! order — or, when no payment comes in time, release the items.
//!
//! Each order is an event-sourced entity of service `orders` (its id is
//! the order's id) that runs its saga with durable messages and a durable
//! timer. It expects the `inventory` example deployed as `inventory` next
//! to it, holding the stock at entity [`STOCK_LOCATION`].
//!
//! 1. `Place` records the order (`Reserving`), sets the timer
//!    [`PAYMENT_TIMER`] to run its own `Expire` when the payment window
//!    closes (15 minutes, or `paymentTimeoutSecs`), and asks the inventory
//!    to `Reserve` the items with an asynchronous side effect.
//! 2. The inventory answers `ItemsReserved` (`AwaitingPayment`) or
//!    `ReservationRefused` (`Rejected`; the timer is cancelled).
//! 3. `Pay` while `AwaitingPayment` confirms the order (`Confirmed`) and
//!    cancels the timer; the items stay reserved for it.
//! 4. Should the timer fire first, `Expire` closes the order (`Expired`)
//!    and compensates: it asks the inventory to `Release` the items. A
//!    later `Pay` is refused.
//!
//! The timer is committed with `Place`'s event, so the host holds it from
//! the moment the order exists, across restarts. Each step is idempotent:
//! the host runs a repeated delivery or firing under the same key, and
//! the order answers a step it already took without changing anything; a
//! reservation that lands after the order expired is released too.
//!
//! Commands (JSON bodies); each replies the order:
//!
//! - `Place {"items": [{"productId", "name"?, "quantity"}, ...],
//!   "paymentTimeoutSecs"?}`: 1 to 100 lines of positive quantities (a
//!   cart's `GetCart` items fit), and a payment window of 1 to 900 seconds
//!   (default 900); an order is placed once;
//! - `Pay {"paymentId"}` confirms an order `AwaitingPayment`; paying it
//!   again with the same id changes nothing; refused in any other status;
//! - `Expire` closes an order still `Reserving` or `AwaitingPayment` (the
//!   payment timer runs it; a client may too) and releases its items;
//!   otherwise it changes nothing;
//! - `ItemsReserved` and `ReservationRefused {"reason"}`: the inventory's
//!   answers;
//! - `GetOrder` (empty body or `{}`).
//!
//! The order (state and reply): `{"status", "items", "payByMs"?,
//! "paymentId"?, "reason"?}`, `status` one of `New` (not placed),
//! `Reserving`, `AwaitingPayment`, `Confirmed`, `Expired` and `Rejected`.
//!
//! Events: `Placed {"items", "payByMs"}`, `ItemsReserved`,
//! `ReservationRefused {"reason"}`, `Paid {"paymentId"}` and `Expired`,
//! each tagged with `"type"`.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wasmstate_sdk::{Commands, Context, EventSourced, Failure, Reply, SideEffect, When};

/// The name of each order's payment timer.
pub const PAYMENT_TIMER: &str = "payment-timeout";
/// How long an order waits for its payment unless `Place` says less.
pub const PAYMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The entity of the `inventory` service holding the stock.
pub const STOCK_LOCATION: &str = "main";
/// The most lines one order may have.
pub const MAX_LINES: usize = 100;

/// A quantity of one product in an order: a cart's line item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The product's id.
    pub product_id: String,
    /// The product's name, for people; may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// How many; greater than zero.
    pub quantity: u32,
}

/// Where an order stands in its saga.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not placed yet.
    #[default]
    New,
    /// Placed; the inventory has not answered yet.
    Reserving,
    /// Its items are reserved; it waits for the payment until `payByMs`.
    AwaitingPayment,
    /// Paid: its items stay reserved for it.
    Confirmed,
    /// Not paid in time: its items were released.
    Expired,
    /// The inventory could not reserve its items.
    Rejected,
}

/// An order: the state, and the reply of every command.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Where it stands.
    pub status: Status,
    /// What was ordered.
    pub items: Vec<OrderLine>,
    /// When the payment window closes, in ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_by_ms: Option<u64>,
    /// The payment that confirmed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// Why the inventory refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    /// The order was placed.
    Placed {
        /// What was ordered.
        items: Vec<OrderLine>,
        /// When the payment window closes.
        pay_by_ms: u64,
    },
    /// The inventory reserved the items.
    ItemsReserved,
    /// The inventory could not reserve the items.
    ReservationRefused {
        /// Why.
        reason: String,
    },
    /// The order was paid.
    Paid {
        /// The payment's id.
        payment_id: String,
    },
    /// The payment window closed before a payment.
    Expired,
}

/// The order's commands, as the host names them. The payment timer runs
/// [`OrderCommand::Expire`] on the order itself; the inventory sends the
/// answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum OrderCommand {
    /// Places the order and starts its saga.
    Place {
        /// 1 to [`MAX_LINES`] lines.
        items: Vec<OrderLine>,
        /// The payment window, 1 to 900 seconds; 900 without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_timeout_secs: Option<u64>,
    },
    /// Pays an order awaiting its payment.
    Pay {
        /// The payment's id, not empty.
        payment_id: String,
    },
    /// Closes an unpaid order and releases its items.
    Expire,
    /// The inventory's answer: the items are reserved.
    ItemsReserved,
    /// The inventory's answer: the items could not be reserved.
    ReservationRefused {
        /// Why.
        reason: String,
    },
    /// Replies with the order.
    GetOrder,
}

impl Commands for OrderCommand {
    const SERVICE: &'static str = "orders";
}

/// A quantity of one product, as the inventory reserves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLine {
    /// The product's id.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
}

/// The inventory's commands the saga sends, restated from the `inventory`
/// example: a dependency on its crate would link its component exports
/// into this one too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum InventoryCommand {
    /// Reserves the order's items, all or none, and answers the order.
    Reserve {
        /// The order's id.
        order_id: String,
        /// The items.
        items: Vec<StockLine>,
    },
    /// Puts the order's reserved items back, if it holds any.
    Release {
        /// The order's id.
        order_id: String,
    },
}

impl Commands for InventoryCommand {
    const SERVICE: &'static str = "inventory";
}

impl From<&OrderLine> for StockLine {
    fn from(line: &OrderLine) -> Self {
        Self { product_id: line.product_id.clone(), quantity: line.quantity }
    }
}

impl Order {
    /// Whether order `id` takes payment `payment_id` now: `Ok(true)` when
    /// it awaits one, `Ok(false)` when that payment confirmed it already
    /// (a retry), or the refusal.
    fn takes_payment(&self, id: &str, payment_id: &str) -> Result<bool, Failure> {
        let refusal = match self.status {
            Status::AwaitingPayment => return Ok(true),
            Status::Confirmed if self.payment_id.as_deref() == Some(payment_id) => return Ok(false),
            Status::Confirmed => format!("Order {id} is already paid."),
            Status::New => format!("Order {id} was not placed."),
            Status::Reserving => format!("Order {id} is not ready for payment: its items are being reserved."),
            Status::Expired => format!(
                "Order {id} expired unpaid at {} ms; its items were released.",
                self.pay_by_ms.unwrap_or_default()
            ),
            Status::Rejected => {
                format!("Order {id} was rejected: {}", self.reason.as_deref().unwrap_or_default())
            }
        };
        Err(Failure::rejected(refusal))
    }
}

/// Refuses what cannot be an order.
fn check_items(items: &[OrderLine]) -> Result<(), Failure> {
    if items.is_empty() || items.len() > MAX_LINES {
        return Err(Failure::rejected(format!("An order has 1 to {MAX_LINES} lines; this one has {}.", items.len())));
    }
    for line in items {
        if line.product_id.trim().is_empty() {
            return Err(Failure::rejected("productId must not be empty."));
        }
        if line.quantity == 0 {
            return Err(Failure::rejected(format!("Quantity for item {} must be greater than zero.", line.product_id)));
        }
    }
    Ok(())
}

/// The payment window `Place` asks for.
fn payment_timeout(secs: Option<u64>) -> Result<Duration, Failure> {
    let most = PAYMENT_TIMEOUT.as_secs();
    match secs {
        None => Ok(PAYMENT_TIMEOUT),
        Some(secs) if (1..=most).contains(&secs) => Ok(Duration::from_secs(secs)),
        Some(secs) => {
            Err(Failure::rejected(format!("paymentTimeoutSecs must be between 1 and {most}. It was [{secs}].")))
        }
    }
}

/// Asks the inventory to put the order's items back.
fn release(ctx: &mut Context<'_, Order>) {
    let order_id = ctx.entity_id().to_owned();
    ctx.effect(SideEffect::to(STOCK_LOCATION, &InventoryCommand::Release { order_id }));
}

impl EventSourced for Order {
    type Command = OrderCommand;
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Placed { items, pay_by_ms } => {
                self.status = Status::Reserving;
                self.items.clone_from(items);
                self.pay_by_ms = Some(*pay_by_ms);
            }
            Event::ItemsReserved => self.status = Status::AwaitingPayment,
            Event::ReservationRefused { reason } => {
                self.status = Status::Rejected;
                self.reason = Some(reason.clone());
            }
            Event::Paid { payment_id } => {
                self.status = Status::Confirmed;
                self.payment_id = Some(payment_id.clone());
            }
            Event::Expired => self.status = Status::Expired,
        }
    }

    fn handle(command: OrderCommand, ctx: &mut Context<'_, Self>) -> Result<Reply, Failure> {
        let id = ctx.entity_id();
        let status = ctx.state().status;
        match command {
            OrderCommand::Place { .. } if status != Status::New => {
                return Err(Failure::rejected(format!("Order {id} was already placed.")));
            }
            OrderCommand::Place { items, payment_timeout_secs } => {
                check_items(&items)?;
                let timeout = payment_timeout(payment_timeout_secs)?;
                let pay_by_ms = ctx.metadata().now_ms().saturating_add(timeout.as_millis() as u64);
                let reserve = InventoryCommand::Reserve {
                    order_id: id.to_owned(),
                    items: items.iter().map(Into::into).collect(),
                };
                ctx.emit(Event::Placed { items, pay_by_ms });
                let pay_by = When::At(UNIX_EPOCH + Duration::from_millis(pay_by_ms));
                ctx.schedule_self(PAYMENT_TIMER, pay_by, &OrderCommand::Expire);
                ctx.effect(SideEffect::to(STOCK_LOCATION, &reserve));
            }
            OrderCommand::ItemsReserved => match status {
                Status::Reserving => ctx.emit(Event::ItemsReserved),
                // Answered again: nothing to do.
                Status::AwaitingPayment | Status::Confirmed => {}
                // Reserved after the order closed (or for no order): give
                // the items back.
                Status::New | Status::Expired | Status::Rejected => release(ctx),
            },
            OrderCommand::ReservationRefused { reason } => {
                if status == Status::Reserving {
                    ctx.emit(Event::ReservationRefused { reason });
                    ctx.cancel(PAYMENT_TIMER);
                }
            }
            OrderCommand::Pay { payment_id } => {
                if payment_id.trim().is_empty() {
                    return Err(Failure::rejected("paymentId must not be empty."));
                }
                if ctx.state().takes_payment(id, &payment_id)? {
                    ctx.emit(Event::Paid { payment_id });
                    ctx.cancel(PAYMENT_TIMER);
                }
            }
            OrderCommand::Expire => {
                // A repeated firing, or one racing the payment, finds the
                // order closed and changes nothing.
                if matches!(status, Status::Reserving | Status::AwaitingPayment) {
                    ctx.emit(Event::Expired);
                    release(ctx);
                }
            }
            OrderCommand::GetOrder => {}
        }
        Ok(Reply::json(ctx.state()))
    }
}

wasmstate_sdk::export_event_sourced!(Order);

#[cfg(test)]
mod tests;
