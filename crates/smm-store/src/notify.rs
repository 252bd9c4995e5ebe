//! Notifications kept by the store (issue #14): customers' webhook settings, the outbox of
//! their events (written by triggers with the change that caused them, migration 0012), the
//! delivery log, and the reseller's alert conditions and alert outbox.

use serde::Serialize;
use smm_wire::{Money, OrderStatus, RefillStatus};

use crate::{CustomerId, OrderId, OrderStatusView, RefillId, Timestamp};

/// A customer's webhook: where their events go and when they are told their balance is low.
/// The signing secret is never read back through this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookSettings {
    pub customer: CustomerId,
    pub url: Option<String>,
    /// Deliveries stopped because the receiver kept failing; events keep being recorded and go
    /// out once resumed.
    pub paused_at: Option<Timestamp>,
    pub low_balance_threshold: Option<Money>,
    /// Events recorded and not yet delivered.
    pub pending: i64,
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WebhookEventKind {
    /// `order.status`: an order's status changed.
    OrderStatus,
    /// `refill.status`: a refill's status changed.
    RefillStatus,
    /// `refund.paid`: a refund reached the balance.
    RefundPaid,
    /// `balance.low`: the balance fell below the customer's threshold.
    BalanceLow,
}

impl WebhookEventKind {
    pub const ALL: [WebhookEventKind; 4] = [
        WebhookEventKind::OrderStatus,
        WebhookEventKind::RefillStatus,
        WebhookEventKind::RefundPaid,
        WebhookEventKind::BalanceLow,
    ];

    /// The name receivers see (`X-Smm-Event`, the payload's `event`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventKind::OrderStatus => "order.status",
            WebhookEventKind::RefillStatus => "refill.status",
            WebhookEventKind::RefundPaid => "refund.paid",
            WebhookEventKind::BalanceLow => "balance.low",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookEventKind> {
        WebhookEventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// Where an event is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEventState {
    Pending,
    Delivered,
    /// The customer removed their webhook before it went out.
    Discarded,
}

impl WebhookEventState {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventState::Pending => "pending",
            WebhookEventState::Delivered => "delivered",
            WebhookEventState::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookEventState> {
        [
            WebhookEventState::Pending,
            WebhookEventState::Delivered,
            WebhookEventState::Discarded,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// What happened, as recorded when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEventData {
    /// The order as `status` showed it right after the change, and the status before.
    OrderStatus {
        order: OrderStatusView,
        previous: OrderStatus,
    },
    RefillStatus {
        refill: RefillId,
        order: OrderId,
        status: RefillStatus,
        previous: RefillStatus,
    },
    RefundPaid {
        order: OrderId,
        amount: Money,
        balance: Money,
    },
    BalanceLow {
        balance: Money,
        threshold: Money,
    },
}

impl WebhookEventData {
    pub fn kind(&self) -> WebhookEventKind {
        match self {
            WebhookEventData::OrderStatus { .. } => WebhookEventKind::OrderStatus,
            WebhookEventData::RefillStatus { .. } => WebhookEventKind::RefillStatus,
            WebhookEventData::RefundPaid { .. } => WebhookEventKind::RefundPaid,
            WebhookEventData::BalanceLow { .. } => WebhookEventKind::BalanceLow,
        }
    }

    /// The order the event is about, if any: an order's events go out in id order.
    pub fn order(&self) -> Option<OrderId> {
        match self {
            WebhookEventData::OrderStatus { order, .. } => Some(order.id),
            WebhookEventData::RefillStatus { order, .. }
            | WebhookEventData::RefundPaid { order, .. } => Some(*order),
            WebhookEventData::BalanceLow { .. } => None,
        }
    }
}

/// One event of a customer's outbox. `id` is the event id receivers de-duplicate by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: i64,
    pub customer: CustomerId,
    pub data: WebhookEventData,
    pub created_at: Timestamp,
    pub state: WebhookEventState,
    /// Every attempt made, for the delivery log.
    pub attempts: i64,
    /// Failed attempts since retries last started afresh, at `retry_from`: when the event was
    /// recorded, or later when its customer's deliveries were resumed, a new URL was set or it
    /// was resent. The backoff and the retry window count from there.
    pub tries: i64,
    pub retry_from: Timestamp,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Which events a claim may take ([`crate::Store::claim_webhook_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookClaim<'a> {
    /// At most this many events.
    pub limit: u32,
    /// At most this many of one customer.
    pub per_customer: u32,
    /// None of these customers'.
    pub skip: &'a [CustomerId],
}

/// A claimed event with what delivering it needs. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookJob {
    pub event: WebhookEvent,
    pub url: String,
    pub secret: String,
    /// The customer's currency, as `status` names it.
    pub currency: String,
}

impl std::fmt::Debug for WebhookJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookJob")
            .field("event", &self.event)
            .field("url", &self.url)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub event: i64,
    pub customer: CustomerId,
    pub at: Timestamp,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    /// Why it failed; `None` when delivered.
    pub error: Option<String>,
    pub next: DeliveryNext,
}

/// What the outbox does with the event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Delivered,
    /// Try again then.
    RetryAt(Timestamp),
    /// The receiver kept failing past the retry window: pause the customer's deliveries; the
    /// event is tried again when they are resumed.
    Pause,
}

/// One attempt in a customer's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    pub id: i64,
    pub event: i64,
    pub customer: CustomerId,
    pub attempt: i64,
    pub at: Timestamp,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// The outbox as a whole, for metrics and alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookBacklog {
    /// Events waiting, paused customers' included.
    pub pending: i64,
    /// When the oldest waiting event of a customer not paused was recorded.
    pub oldest_pending_at: Option<Timestamp>,
    /// Customers whose deliveries are paused.
    pub paused_customers: i64,
}

/// Whether an alert starts, clears, or is a one-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Started,
    Cleared,
    Event,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Started => "started",
            AlertState::Cleared => "cleared",
            AlertState::Event => "event",
        }
    }

    pub fn parse(text: &str) -> Option<AlertState> {
        [AlertState::Started, AlertState::Cleared, AlertState::Event]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// An alert to write to the outbox, once per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert<'a> {
    /// The condition (`provider.cooldown:alpha`) or the one-off's unique key
    /// (`summary:2026-12-07`).
    pub key: &'a str,
    pub title: &'a str,
    pub lines: &'a [String],
    /// The channels to send it to, by name.
    pub channels: &'a [String],
}

/// A condition that is on now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertCondition {
    pub key: String,
    pub since: Timestamp,
    pub detail: Option<String>,
    /// Its start was sent (false while the cooldown holds it back).
    pub notified: bool,
}

/// A claimed alert for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMessage {
    pub id: i64,
    pub channel: String,
    pub key: String,
    pub state: AlertState,
    pub title: String,
    pub lines: Vec<String>,
    pub created_at: Timestamp,
    pub attempts: i64,
}

/// What became of sending one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOutcome {
    pub id: i64,
    pub error: Option<String>,
    /// `None` when sent, or when the channel is given up on (`gave_up`).
    pub retry_at: Option<Timestamp>,
    pub gave_up: bool,
}
