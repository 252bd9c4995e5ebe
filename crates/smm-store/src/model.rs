//! The store's domain types. Money is [`Money`] (integer units of 0.00001); times are
//! [`Timestamp`]s (milliseconds since the Unix epoch, UTC), so both backends store plain integers.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smm_wire::{Money, OrderStatus, RefillStatus};

/// Milliseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A customer of the reseller.
    CustomerId
);
id_type!(
    /// The order id a customer sees: stable, monotonically increasing.
    OrderId
);
id_type!(
    /// The refill id a customer sees.
    RefillId
);
id_type!(
    /// A local service id, as shown in `services`.
    ServiceId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    Active,
    Suspended,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerStatus::Active => "active",
            CustomerStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<CustomerStatus> {
        match s {
            "active" => Some(CustomerStatus::Active),
            "suspended" => Some(CustomerStatus::Suspended),
            _ => None,
        }
    }
}

/// A customer. The API key itself is never stored: only its SHA-256 ([`crate::hash_api_key`])
/// and a short prefix for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    pub status: CustomerStatus,
    pub currency: String,
    pub key_prefix: String,
    /// Always equal to the sum of the customer's ledger.
    pub balance: Money,
    /// Percent off every price (`5` = 5 %), if the customer has one.
    pub discount: Option<Decimal>,
    pub created_at: Timestamp,
}

/// A customer's orders and spend, kept by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerTotals {
    pub customer: CustomerId,
    /// Orders placed (each with its charge).
    pub orders: i64,
    /// Charges less refunds.
    pub spent: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub name: String,
    pub currency: String,
    pub key_hash: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Money in (admin credit, payment).
    Deposit,
    /// An order's charge (negative).
    Charge,
    /// A refund of (part of) an order's charge (positive). At most one per order.
    Refund,
    /// An admin correction, either sign.
    Adjustment,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Deposit => "deposit",
            LedgerKind::Charge => "charge",
            LedgerKind::Refund => "refund",
            LedgerKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerKind> {
        match s {
            "deposit" => Some(LedgerKind::Deposit),
            "charge" => Some(LedgerKind::Charge),
            "refund" => Some(LedgerKind::Refund),
            "adjustment" => Some(LedgerKind::Adjustment),
            _ => None,
        }
    }
}

/// One balance change. `amount` is signed: charges are negative, deposits and refunds positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub customer_id: CustomerId,
    pub kind: LedgerKind,
    pub amount: Money,
    pub balance_after: Money,
    pub order_id: Option<OrderId>,
    pub reason: String,
    pub actor: String,
    pub created_at: Timestamp,
}

/// Where an order is on its way upstream.
///
/// ```text
/// queued ──claim──▶ sending ──▶ sent
///    ▲                 │ ├────▶ ambiguous   (timeout/garbled reply, or found `sending` after a crash)
///    └──── requeue ────┘ └────▶ rejected    (every route said no: canceled, fully refunded)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardState {
    Queued,
    Sending,
    Sent,
    Ambiguous,
    Rejected,
}

impl ForwardState {
    pub const ALL: [ForwardState; 5] = [
        ForwardState::Queued,
        ForwardState::Sending,
        ForwardState::Sent,
        ForwardState::Ambiguous,
        ForwardState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ForwardState::Queued => "queued",
            ForwardState::Sending => "sending",
            ForwardState::Sent => "sent",
            ForwardState::Ambiguous => "ambiguous",
            ForwardState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<ForwardState> {
        match s {
            "queued" => Some(ForwardState::Queued),
            "sending" => Some(ForwardState::Sending),
            "sent" => Some(ForwardState::Sent),
            "ambiguous" => Some(ForwardState::Ambiguous),
            "rejected" => Some(ForwardState::Rejected),
            _ => None,
        }
    }
}

/// Everything needed to place an order; the charge is computed by the caller (routing) and
/// frozen here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: CustomerId,
    pub service_id: ServiceId,
    /// The service type's exact string (`Default`, `Custom Comments`, ...).
    pub service_type: String,
    /// The validated order as JSON ([`smm_wire::OrderRequest`] serialised).
    pub params: String,
    pub link: Option<String>,
    /// The quantity the customer asked for (per run for drip-feed), if the type has one.
    pub quantity: Option<u64>,
    /// The units a Partial's `remains` is measured against (quantity × runs, line count, ...);
    /// 0 when there is none (flat-priced types): a Partial then pays no automatic refund.
    pub units: u64,
    pub charge: Money,
    pub idempotency_key: Option<String>,
    /// What the order is placed as (its routes and the service's flags), kept with the order.
    pub placed_as: Option<PlacedAs>,
    /// What an idempotent `add` asked for, as a hash the caller computes (the server: SHA-256
    /// of the service id and the canonical order parameters). Stored with the order, so a
    /// retry with the same key can be told apart from a different request reusing it.
    pub request_fingerprint: Option<String>,
}

/// What an order was placed as, frozen at placement: the route choice and the service flags
/// that matter after `add`. The forwarder sends through these routes, and refill/cancel
/// eligibility follows these flags, whatever the service id means in the catalog later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedAs {
    /// The service offered cancels (`cancel: true` in its catalog entry).
    pub cancel: bool,
    /// The service offered refills.
    pub refill: bool,
    /// The service offered drip-feed.
    #[serde(default)]
    pub dripfeed: bool,
    /// The routes, in priority order.
    pub routes: Vec<PlacedRoute>,
}

/// One route of [`PlacedAs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedRoute {
    pub provider: String,
    pub upstream_service: String,
    /// The upstream's rate at placement (per 1000, or per order for flat-priced types), in
    /// the provider's currency.
    pub upstream_rate: Decimal,
}

/// An order found by its idempotency key, with the fingerprint of the request that placed it
/// (`None` for orders placed without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedOrder {
    pub order: Order,
    pub request_fingerprint: Option<String>,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub service_id: ServiceId,
    pub service_type: String,
    pub params: String,
    pub link: Option<String>,
    pub quantity: Option<u64>,
    pub units: u64,
    /// Frozen at placement.
    pub charge: Money,
    /// What has been refunded (0 or the one refund row's amount).
    pub refunded: Money,
    pub status: OrderStatus,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    /// Drip-feed/subscription extras from the upstream, as JSON, passed through to `status`.
    pub extra: Option<String>,
    pub provider: Option<String>,
    pub upstream_service: Option<String>,
    pub upstream_order_id: Option<String>,
    /// In the provider's currency, exact.
    pub upstream_cost: Option<Decimal>,
    pub forward_state: ForwardState,
    pub forward_attempts: u32,
    pub forward_error: Option<String>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<Timestamp>,
    pub forwarded_at: Option<Timestamp>,
    pub next_poll_at: Option<Timestamp>,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why the order waits for a person: it ended upstream but no signal told the refund it is
    /// owed (`Store::attention_orders`, settled with `Store::settle_attention`).
    pub attention: Option<String>,
    /// See [`Order::placed_as`].
    pub placed_as: Option<PlacedAs>,
}

impl Order {
    /// The charge net of refunds: what the customer's `status` shows.
    /// What the order was placed as (routes, cancel/refill flags); `None` for orders placed
    /// before the gateway kept it (the catalog's current entry is all there is for them).
    pub fn placed_as(&self) -> Option<&PlacedAs> {
        self.placed_as.as_ref()
    }

    pub fn net_charge(&self) -> Money {
        self.charge
            .checked_sub(self.refunded)
            .unwrap_or(Money::ZERO)
    }
}

/// What a customer's `status` shows of an order: only the columns the reply needs, so a
/// 100-id `status` reads a tenth of the data a full [`Order`] would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatusView {
    pub id: OrderId,
    pub quantity: Option<u64>,
    pub charge: Money,
    pub refunded: Money,
    pub status: OrderStatus,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    /// Drip-feed and subscription extras (JSON), as on [`Order::extra`].
    pub extra: Option<String>,
}

impl OrderStatusView {
    /// What the customer paid net of refunds.
    pub fn net_charge(&self) -> Money {
        self.charge
            .checked_sub(self.refunded)
            .unwrap_or(Money::ZERO)
    }
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// A new order: balance debited, ledger row written, queued for forwarding.
    New(Order),
    /// The customer's idempotency key was used before: the first order, nothing charged again.
    Existing(Order),
}

impl Placed {
    pub fn order(&self) -> &Order {
        match self {
            Placed::New(order) | Placed::Existing(order) => order,
        }
    }
}

/// One forwarding attempt, for the order's upstream history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardAttempt {
    pub order_id: OrderId,
    pub provider: String,
    pub upstream_service: String,
    /// `pending` while the call is in flight, then `sent`, `rejected`, `not_sent`, `ambiguous`.
    pub outcome: String,
    pub detail: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Why the attempt went to this route: the routing policy's explanation (`None` for
    /// attempts noted without one).
    pub why: Option<String>,
}

/// One attempt about to be made: the order, the route it goes to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptStart {
    pub order: OrderId,
    pub provider: String,
    pub upstream_service: String,
    /// The routing policy's explanation, kept with the attempt.
    pub why: Option<String>,
}

/// Who claims a group's new orders as they are placed, and which ([`Store::place_orders_claiming`]).
pub struct PlacementClaim<'a> {
    /// The worker the orders are claimed for (as [`Store::claim_and_begin`]'s `worker`).
    pub worker: &'a str,
    /// Shown the new orders as they would stand in the queue; the first attempts of those to
    /// claim (each order at most once, among those shown).
    pub first_attempts: &'a mut (dyn for<'o> FnMut(&'o [Order]) -> Vec<AttemptStart> + Send),
}

impl std::fmt::Debug for PlacementClaim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementClaim")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// What the forwarder learned from the upstream about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The upstream accepted: the order is `sent`, polled from `next_poll_at`.
    Sent {
        upstream_order_id: String,
        upstream_cost: Option<Decimal>,
        next_poll_at: Timestamp,
    },
    /// The upstream may have acted: the order is `ambiguous`, never re-sent automatically.
    Ambiguous { detail: String },
    /// This route definitively did not take the order (`rejected` or `not_sent`): the attempt is
    /// closed and the order stays `sending` for the next route.
    Failed { not_sent: bool, detail: String },
}

/// An upstream status report for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub status: OrderStatus,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    pub extra: Option<String>,
    /// What else the upstream said about delivery, for the refund rules.
    pub delivery: Delivery,
    /// When to poll next if the status is not terminal.
    pub next_poll_at: Timestamp,
}

/// The delivery signals of an upstream status besides `remains`: each tells the undelivered
/// share of some order types (see `docs/billing.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Drip-feed parents: runs done.
    pub runs: Option<u32>,
    /// Subscriptions: posts served.
    pub posts: Option<u64>,
    /// The upstream's own charge for the order now, in its currency (real panels lower it after
    /// a partial refund).
    pub charge: Option<Decimal>,
}

/// What applying a status did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusApplied {
    pub order_id: OrderId,
    /// The refund written by this call (never twice for an order).
    pub refund: Option<Money>,
    /// The order is now terminal (and will not be polled again).
    pub terminal: bool,
}

/// An order due for a status poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollItem {
    pub order_id: OrderId,
    pub provider: String,
    pub upstream_order_id: String,
    pub status: OrderStatus,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refill {
    pub id: RefillId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub provider: Option<String>,
    pub upstream_refill_id: Option<String>,
    pub status: RefillStatus,
    pub forward_state: ForwardState,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A customer's cancel request for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CancelRequest {
    pub id: i64,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub forward_state: ForwardState,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The order had not left the gateway: canceled and fully refunded at once.
    CanceledLocally { refund: Money },
    /// The order is upstream: a cancel request is queued for forwarding (or already was).
    Requested(CancelRequest),
}

/// What a console user may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Reads everything, changes nothing.
    Viewer,
    /// Customers, orders, resolutions, credits and debits.
    Operator,
    /// Everything, including providers, configuration and other admin users.
    Owner,
}

impl AdminRole {
    pub const ALL: [AdminRole; 3] = [AdminRole::Owner, AdminRole::Operator, AdminRole::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Operator => "operator",
            AdminRole::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<AdminRole> {
        AdminRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: AdminRole) -> bool {
        self >= needed
    }
}

/// A console user. The password itself is never stored: only its argon2id hash (PHC string),
/// which the server computes and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminUser {
    pub id: i64,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: AdminRole,
    /// Failed logins since the last success or lock.
    pub failed_logins: u32,
    /// Logins are refused until then.
    pub locked_until: Option<Timestamp>,
    pub last_login_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl AdminUser {
    pub fn locked_at(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// An admin user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdmin {
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: AdminRole,
}

/// When repeated failures lock an account: after `max_failures` in a row, for `lock_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub max_failures: u32,
    pub lock_ms: i64,
}

/// A console session to open. `token_hash` is the SHA-256 (hex) of the cookie's random token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token_hash: String,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// A live console session and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    pub user: AdminUser,
    /// Every form of the session carries it; a change without it is refused.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// A change of an order's status or forwarding state, as recorded (migration 0011).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    pub at: Timestamp,
    /// The status column's word (`Unknown` for a status the gateway does not know).
    pub status: String,
    pub forward_state: ForwardState,
}

/// Everything that happened to an order besides its upstream attempts: its status changes,
/// its ledger rows (charge, refund), its refills and its cancel request. Oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderTimeline {
    pub events: Vec<OrderEvent>,
    pub ledger: Vec<LedgerEntry>,
    pub refills: Vec<Refill>,
    pub cancel: Option<CancelRequest>,
}

/// One UTC day of placed orders, summed by the database as orders are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotals {
    /// Midnight UTC of the day the orders were placed, ms since the epoch.
    pub day_start: Timestamp,
    pub orders: i64,
    pub charged: Money,
    pub refunded: Money,
}

/// The orders of one UTC day (of placement) sent to one provider, and what they were expected
/// to cost there (provider currency, truncated to 8 decimals per order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderDayTotals {
    pub day_start: Timestamp,
    pub provider: String,
    pub orders: i64,
    pub cost: Decimal,
    /// `cost` net of each order's refunded share (the upstream refunds what it did not
    /// deliver as the gateway does).
    pub kept_cost: Decimal,
}

/// The kept aggregates of the orders placed since a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderTotals {
    /// Oldest first; days without orders are missing.
    pub days: Vec<DayTotals>,
    pub providers: Vec<ProviderDayTotals>,
}

/// An admin action, recorded forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at: Timestamp,
}

/// Filters for searching the audit log. `None` means any; texts match as prefixes
/// (`console:` finds every console user, `order:12` that order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Recorded at or after this.
    pub from: Option<Timestamp>,
    /// Recorded before this.
    pub before: Option<Timestamp>,
    pub limit: u32,
}

/// Filters for listing orders. `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub customer_id: Option<CustomerId>,
    pub forward_state: Option<ForwardState>,
    /// The order's status (`Pending`, `In progress`, `Partial`, ...; unknown upstream statuses
    /// are all `Unknown`).
    pub status: Option<OrderStatus>,
    pub provider: Option<String>,
    pub link: Option<String>,
    /// The local service ordered.
    pub service_id: Option<ServiceId>,
    /// Placed at or after this.
    pub created_from: Option<Timestamp>,
    /// Placed before this.
    pub created_before: Option<Timestamp>,
    /// Only orders with an id below this (for paging backwards from the newest).
    pub before_id: Option<OrderId>,
    pub limit: u32,
}
