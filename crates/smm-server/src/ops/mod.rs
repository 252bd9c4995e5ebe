//! Admin operations, one implementation for the two front ends: the `smm-gateway` CLI prints
//! their results, the admin API (`/admin/v1`) returns them as JSON.
//!
//! Every mutating operation names its actor (`cli:USER`, `admin:NAME`) and is audited by the
//! store in the same transaction as the change, with the before and after values. Results are
//! typed views, shared by the CLI, the admin API and its OpenAPI document: money as exact
//! decimal strings (`"12.34000"`), never floats.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smm_routing::{Catalog, CustomerPricing};
use smm_store::{
    AuditEntry, Customer, CustomerId, CustomerStatus, ForwardAttempt, ForwardState, LedgerEntry,
    LedgerKind, NewCustomer, Order, OrderFilter, OrderId, ServiceId, Store, StoreError,
    hash_api_key,
};
use smm_wire::{Money, OrderStatus};
use utoipa::{IntoParams, ToSchema};

use crate::app::now_ms;
use crate::config::Settings;

mod admins;
pub mod config_file;
pub mod notifications;
pub mod on_behalf;
pub mod overview;
pub mod scorecards;
pub use admins::{AdminView, LoginRefusal, hash_password, verify_password};

/// Why an operation failed. Each kind maps to one HTTP status and one `code` in the admin API's
/// error envelope, and to a one-line message in the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (a malformed amount, an empty reason, an unknown filter).
    #[error("{0}")]
    Invalid(String),
    /// The request is fine but the record's state does not allow it (an order that is not
    /// ambiguous, a debit larger than the balance, an upstream id already used).
    #[error("{0}")]
    Conflict(String),
    /// The database failed; details are in the logs.
    #[error("{0}")]
    Unavailable(String),
}

impl OpError {
    /// The stable machine-readable code of the admin API's error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            OpError::NotFound(_) => "not_found",
            OpError::Invalid(_) => "invalid_request",
            OpError::Conflict(_) => "conflict",
            OpError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => OpError::NotFound(error.to_string()),
            StoreError::Invalid(_) => OpError::Invalid(error.to_string()),
            StoreError::InsufficientFunds
            | StoreError::CustomerSuspended
            | StoreError::Conflict(_)
            | StoreError::InvalidState(_) => OpError::Conflict(error.to_string()),
            StoreError::Database(_) => {
                tracing::error!(%error, "store error in an admin operation");
                OpError::Unavailable("the database is unavailable".into())
            }
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// A customer as the admin sees it. The key itself is never shown again after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CustomerView {
    pub id: i64,
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    pub currency: String,
    pub key_prefix: String,
    /// A decimal string.
    pub balance: String,
    /// Percent off every price without a custom rate, as a decimal string.
    pub discount: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl From<&Customer> for CustomerView {
    fn from(c: &Customer) -> Self {
        CustomerView {
            id: c.id.0,
            name: c.name.clone(),
            status: c.status.as_str().to_owned(),
            currency: c.currency.clone(),
            key_prefix: c.key_prefix.clone(),
            balance: c.balance.to_string(),
            discount: c.discount.map(|d| d.to_string()),
            created_at: c.created_at,
        }
    }
}

/// A customer with a freshly generated API key: the only time the key is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WithKey {
    pub customer: CustomerView,
    pub api_key: String,
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerView {
    pub id: i64,
    /// `deposit`, `charge`, `refund` or `adjustment`.
    pub kind: String,
    /// Signed decimal string.
    pub amount: String,
    pub balance_after: String,
    pub order: Option<i64>,
    pub reason: String,
    pub actor: String,
    pub created_at: i64,
}

impl From<&LedgerEntry> for LedgerView {
    fn from(e: &LedgerEntry) -> Self {
        LedgerView {
            id: e.id,
            kind: e.kind.as_str().to_owned(),
            amount: e.amount.to_string(),
            balance_after: e.balance_after.to_string(),
            order: e.order_id.map(|o| o.0),
            reason: e.reason.clone(),
            actor: e.actor.clone(),
            created_at: e.created_at,
        }
    }
}

/// An order with money as strings and its parameters decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: i64,
    pub customer: i64,
    pub service: i64,
    #[serde(rename = "type")]
    pub service_type: String,
    /// The order's parameters as given (decoded JSON; the raw text if it is not JSON).
    pub params: Value,
    pub link: Option<String>,
    pub quantity: Option<u64>,
    pub units: u64,
    pub charge: String,
    pub refunded: String,
    /// `Pending`, `In progress`, `Processing`, `Completed`, `Partial`, `Canceled`, ...
    pub status: String,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    pub provider: Option<String>,
    pub upstream_service: Option<String>,
    pub upstream_order: Option<String>,
    /// In the provider's currency, exact.
    pub upstream_cost: Option<String>,
    /// `queued`, `sending`, `sent`, `ambiguous`, `rejected`.
    pub forward_state: String,
    pub forward_attempts: u32,
    pub forward_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub forwarded_at: Option<i64>,
    pub next_poll_at: Option<i64>,
    pub updated_at: i64,
    /// Why the order waits for a person (ended upstream, refund unknown); settle it with
    /// `orders settle`.
    pub attention: Option<String>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            id: o.id.0,
            customer: o.customer_id.0,
            service: o.service_id.0,
            service_type: o.service_type.clone(),
            params: serde_json::from_str::<Value>(&o.params)
                .unwrap_or_else(|_| Value::String(o.params.clone())),
            link: o.link.clone(),
            quantity: o.quantity,
            units: o.units,
            charge: o.charge.to_string(),
            refunded: o.refunded.to_string(),
            status: o.status.as_str().to_owned(),
            start_count: o.start_count,
            remains: o.remains,
            provider: o.provider.clone(),
            upstream_service: o.upstream_service.clone(),
            upstream_order: o.upstream_order_id.clone(),
            upstream_cost: o.upstream_cost.map(|c| c.to_string()),
            forward_state: o.forward_state.as_str().to_owned(),
            forward_attempts: o.forward_attempts,
            forward_error: o.forward_error.clone(),
            idempotency_key: o.idempotency_key.clone(),
            created_at: o.created_at,
            forwarded_at: o.forwarded_at,
            next_poll_at: o.next_poll_at,
            updated_at: o.updated_at,
            attention: o.attention.clone(),
        }
    }
}

/// An ambiguous order on the admin's work list: the order and how long it has waited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AmbiguousOrderView {
    #[serde(flatten)]
    pub order: OrderView,
    pub age_seconds: i64,
}

/// One forwarding attempt of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub order_id: i64,
    pub provider: String,
    pub upstream_service: String,
    /// `pending` while the call is in flight, then `sent`, `rejected`, `not_sent`, `ambiguous`.
    pub outcome: String,
    pub detail: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Why the attempt went to this route: which routing policy chose it and on what grounds
    /// (`null` for attempts made before policies existed).
    pub why: Option<String>,
}

impl From<&ForwardAttempt> for AttemptView {
    fn from(a: &ForwardAttempt) -> Self {
        AttemptView {
            order_id: a.order_id.0,
            provider: a.provider.clone(),
            upstream_service: a.upstream_service.clone(),
            outcome: a.outcome.clone(),
            detail: a.detail.clone(),
            started_at: a.started_at,
            finished_at: a.finished_at,
            why: a.why.clone(),
        }
    }
}

/// One order with its upstream history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    pub order: OrderView,
    pub attempts: Vec<AttemptView>,
    /// Placed, status changes, charge and refund, refills and the cancel request, oldest
    /// first (the upstream attempts are in `attempts`).
    pub timeline: Vec<TimelineEntry>,
}

/// One moment of an order's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub what: String,
}

fn timeline(order: &Order, t: &smm_store::OrderTimeline) -> Vec<TimelineEntry> {
    let mut entries = vec![TimelineEntry {
        at: order.created_at,
        what: format!("placed, charged {}", order.charge),
    }];
    for e in &t.events {
        entries.push(TimelineEntry {
            at: e.at,
            what: format!(
                "status {}, forwarding {}",
                e.status,
                e.forward_state.as_str()
            ),
        });
    }
    for l in &t.ledger {
        entries.push(TimelineEntry {
            at: l.created_at,
            what: format!(
                "{} {}: {} (by {})",
                l.kind.as_str(),
                l.amount,
                l.reason,
                l.actor
            ),
        });
    }
    for r in &t.refills {
        entries.push(TimelineEntry {
            at: r.created_at,
            what: format!("refill {} requested", r.id.0),
        });
        if r.updated_at > r.created_at {
            entries.push(TimelineEntry {
                at: r.updated_at,
                what: format!(
                    "refill {}: {}, forwarding {}{}",
                    r.id.0,
                    r.status.as_str(),
                    r.forward_state.as_str(),
                    r.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    if let Some(c) = &t.cancel {
        entries.push(TimelineEntry {
            at: c.created_at,
            what: "cancel requested".into(),
        });
        if c.updated_at > c.created_at {
            entries.push(TimelineEntry {
                at: c.updated_at,
                what: format!(
                    "cancel: forwarding {}{}",
                    c.forward_state.as_str(),
                    c.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    // Oldest first; at the same moment, in the order recorded above.
    entries.sort_by_key(|e| e.at);
    entries
}

/// One audited admin action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The value before, as JSON text.
    pub before: Option<String>,
    /// The value after, as JSON text.
    pub after: Option<String>,
    pub created_at: i64,
}

impl From<&AuditEntry> for AuditView {
    fn from(a: &AuditEntry) -> Self {
        AuditView {
            id: a.id,
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            before: a.before.clone(),
            after: a.after.clone(),
            created_at: a.created_at,
        }
    }
}

/// Search criteria for [`Ops::search_orders`], as strings from a query or the command line.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderSearch {
    pub customer: Option<i64>,
    /// `Pending`, `In progress`, `Processing`, `Completed`, `Partial`, `Canceled`, `Refunded`.
    pub status: Option<String>,
    /// `queued`, `sending`, `sent`, `ambiguous`, `rejected`.
    pub forward_state: Option<String>,
    pub provider: Option<String>,
    pub link: Option<String>,
    /// The local service id ordered.
    pub service: Option<i64>,
    /// Placed on or after this day (`YYYY-MM-DD`, UTC).
    pub from: Option<String>,
    /// Placed on or before this day (`YYYY-MM-DD`, UTC).
    pub to: Option<String>,
    /// Only orders with a smaller id (paging backwards).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<u32>,
}

/// Midnight UTC of `YYYY-MM-DD`, in ms since the epoch.
pub fn day_start(field: &str, text: &str) -> OpResult<i64> {
    let invalid = || {
        OpError::Invalid(format!(
            "{field} must be a day like 2026-12-31, not {text:?}"
        ))
    };
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || parts.next().and_then(|p| p.parse::<i32>().ok());
    let (Some(year), Some(month), Some(day)) = (next(), next(), next()) else {
        return Err(invalid());
    };
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(invalid)?;
    let day = u8::try_from(day).map_err(|_| invalid())?;
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| invalid())?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// One line of a customer's price list preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceLine {
    pub service: u64,
    pub name: String,
    pub category: String,
    #[serde(rename = "type")]
    pub service_type: String,
    /// What this customer pays (per 1000, or per order for flat-priced types).
    pub rate: String,
    /// The list price before the customer's discount or custom rate.
    pub list_rate: String,
    /// What the first route costs the reseller, in the reseller's currency.
    pub cost: Option<String>,
    pub provider: Option<String>,
    pub upstream_service: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
}

/// A custom rate: what the customer pays for one service instead of its list rate (still at
/// least the service's cost unless its markup allows selling below cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RateView {
    pub service: i64,
    /// Per 1000 (or per order for flat-priced types), a decimal string.
    pub rate: String,
}

/// A customer's own price rules: a discount on every service, and custom rates that replace
/// the price of single services (a custom rate wins over the discount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PricingView {
    pub customer: i64,
    /// Percent off, a decimal string strictly between 0 and 100; `null` for none.
    pub discount: Option<String>,
    /// Ordered by service.
    pub rates: Vec<RateView>,
}

/// A positive decimal string with at most 5 decimals (no exponent, no float).
fn positive_decimal(field: &str, text: &str) -> OpResult<Decimal> {
    let exact: Money = text
        .trim()
        .parse()
        .map_err(|e| OpError::Invalid(format!("{field}: {e}")))?;
    if exact <= Money::ZERO {
        return Err(OpError::Invalid(format!("{field} must be positive")));
    }
    text.trim()
        .parse::<Decimal>()
        .map(|d| d.normalize())
        .map_err(|e| OpError::Invalid(format!("{field}: {e}")))
}

/// The admin operations over one store, on behalf of one actor.
#[derive(Debug, Clone, Copy)]
pub struct Ops<'a> {
    pub store: &'a dyn Store,
    pub settings: &'a Settings,
    pub actor: &'a str,
}

impl Ops<'_> {
    /// Creates a customer and returns their API key (shown once; only its hash is stored).
    /// `currency` defaults to, and must be, the server's (`server.currency`): amounts are never
    /// converted, so any other currency is refused.
    pub async fn create_customer(&self, name: &str, currency: Option<&str>) -> OpResult<WithKey> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(OpError::Invalid("name must be 1 to 200 characters".into()));
        }
        let currency =
            currency.map_or_else(|| self.settings.server.currency.clone(), str::to_owned);
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(OpError::Invalid(format!(
                "currency must be a 3-letter upper-case code, not {currency:?}"
            )));
        }
        // Prices, charges, balances and the ledger are all in the server's currency: a customer
        // labelled with another would be shown amounts in a currency they are not in. Until the
        // gateway converts (rates, rounding, the rate kept on each order), it refuses others.
        if currency != self.settings.server.currency {
            return Err(OpError::Invalid(format!(
                "currency {currency} is not supported: this gateway prices, charges and keeps \
                 balances in {} only (server.currency); create the customer in {}",
                self.settings.server.currency, self.settings.server.currency
            )));
        }
        let key = generate_api_key()?;
        let customer = self
            .store
            .create_customer(
                NewCustomer {
                    name: name.to_owned(),
                    currency,
                    key_hash: hash_api_key(&key),
                    key_prefix: key_prefix(&key),
                },
                self.actor,
                now_ms(),
            )
            .await?;
        Ok(WithKey {
            customer: (&customer).into(),
            api_key: key,
        })
    }

    /// Each customer's order count and spend (charges less refunds), by customer id.
    pub async fn customer_totals(
        &self,
    ) -> OpResult<std::collections::BTreeMap<i64, smm_store::CustomerTotals>> {
        Ok(self
            .store
            .customer_totals()
            .await?
            .into_iter()
            .map(|t| (t.customer.0, t))
            .collect())
    }

    pub async fn list_customers(&self) -> OpResult<Vec<CustomerView>> {
        Ok(self
            .store
            .list_customers()
            .await?
            .iter()
            .map(CustomerView::from)
            .collect())
    }

    pub async fn customer(&self, id: i64) -> OpResult<CustomerView> {
        Ok((&self.store.customer(CustomerId(id)).await?).into())
    }

    /// Newest first; `before` (a ledger row id) pages backwards.
    pub async fn ledger(
        &self,
        id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> OpResult<Vec<LedgerView>> {
        self.store.customer(CustomerId(id)).await?;
        Ok(self
            .store
            .ledger(CustomerId(id), before, limit.clamp(1, 1000))
            .await?
            .iter()
            .map(LedgerView::from)
            .collect())
    }

    /// Adds money (`credit`, a deposit row) or takes it (`debit`, an adjustment row, never
    /// below zero). `amount` is a positive decimal with at most 5 decimals; a reason is required.
    pub async fn change_balance(
        &self,
        id: i64,
        credit: bool,
        amount: &str,
        reason: &str,
    ) -> OpResult<LedgerView> {
        let amount: Money = amount
            .trim()
            .parse()
            .map_err(|e| OpError::Invalid(format!("amount: {e}")))?;
        if amount <= Money::ZERO {
            return Err(OpError::Invalid("amount must be positive".into()));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(OpError::Invalid("a reason is required".into()));
        }
        let (kind, signed) = if credit {
            (LedgerKind::Deposit, amount)
        } else {
            let negative = Money::ZERO
                .checked_sub(amount)
                .ok_or_else(|| OpError::Invalid("amount out of range".into()))?;
            (LedgerKind::Adjustment, negative)
        };
        let entry = self
            .store
            .adjust_balance(CustomerId(id), kind, signed, reason, self.actor, now_ms())
            .await?;
        Ok((&entry).into())
    }

    /// Replaces the customer's key. The old one stops working at once in the process that made
    /// the change, on PostgreSQL in every instance as soon as the change commits, and on SQLite
    /// in a gateway process other than this one within `server.key_cache_ttl_secs`. The same
    /// holds for [`Ops::set_status`]: a suspended customer is refused on every action.
    pub async fn rotate_key(&self, id: i64) -> OpResult<WithKey> {
        let key = generate_api_key()?;
        let customer = self
            .store
            .rotate_key(
                CustomerId(id),
                &hash_api_key(&key),
                &key_prefix(&key),
                self.actor,
                now_ms(),
            )
            .await?;
        Ok(WithKey {
            customer: (&customer).into(),
            api_key: key,
        })
    }

    pub async fn set_status(&self, id: i64, status: CustomerStatus) -> OpResult<CustomerView> {
        let customer = self
            .store
            .set_customer_status(CustomerId(id), status, self.actor, now_ms())
            .await?;
        Ok((&customer).into())
    }

    /// Orders matching every given criterion, newest first.
    pub async fn search_orders(&self, search: &OrderSearch) -> OpResult<Vec<OrderView>> {
        let forward_state = match search.forward_state.as_deref() {
            None => None,
            Some(text) => Some(ForwardState::parse(text).ok_or_else(|| {
                OpError::Invalid(format!(
                    "forward_state must be one of queued, sending, sent, ambiguous, rejected, not {text:?}"
                ))
            })?),
        };
        let status = match search.status.as_deref() {
            None => None,
            Some(text) => match OrderStatus::normalize(text, &smm_wire::StatusCodes::default()) {
                OrderStatus::Unknown(_) => {
                    return Err(OpError::Invalid(format!(
                        "status must be one of Pending, In progress, Processing, Completed, Partial, Canceled, Refunded, not {text:?}"
                    )));
                }
                known => Some(known),
            },
        };
        let orders = self
            .store
            .list_orders(&OrderFilter {
                customer_id: search.customer.map(CustomerId),
                forward_state,
                status,
                provider: search.provider.clone(),
                link: search.link.clone(),
                service_id: search.service.map(ServiceId),
                created_from: search
                    .from
                    .as_deref()
                    .map(|d| day_start("from", d))
                    .transpose()?,
                created_before: search
                    .to
                    .as_deref()
                    .map(|d| day_start("to", d).map(|t| t + 86_400_000))
                    .transpose()?,
                before_id: search.before.map(OrderId),
                limit: search.limit.unwrap_or(100).clamp(1, 1000),
            })
            .await?;
        Ok(orders.iter().map(OrderView::from).collect())
    }

    /// Ambiguous orders, oldest first: the admin's work list.
    pub async fn ambiguous_orders(&self) -> OpResult<Vec<AmbiguousOrderView>> {
        let mut orders = self
            .store
            .list_orders(&OrderFilter {
                forward_state: Some(ForwardState::Ambiguous),
                limit: 10_000,
                ..OrderFilter::default()
            })
            .await?;
        orders.reverse();
        let now = now_ms();
        Ok(orders
            .iter()
            .map(|o| AmbiguousOrderView {
                order: o.into(),
                age_seconds: (now - o.created_at).max(0) / 1000,
            })
            .collect())
    }

    pub async fn order(&self, id: i64) -> OpResult<OrderDetail> {
        let order = self.store.order(OrderId(id)).await?;
        let attempts = self.store.attempts(order.id).await?;
        let events = self.store.order_timeline(order.id).await?;
        Ok(OrderDetail {
            timeline: timeline(&order, &events),
            order: (&order).into(),
            attempts: attempts.iter().map(AttemptView::from).collect(),
        })
    }

    /// An ambiguous order was found upstream: attach its upstream id; it is polled from now on.
    pub async fn attach(&self, id: i64, provider: &str, upstream: &str) -> OpResult<OrderView> {
        if self.settings.provider(provider).is_none() {
            return Err(OpError::Invalid(format!(
                "no provider named {provider:?} in the configuration"
            )));
        }
        let upstream = upstream.trim();
        if smm_wire::UpstreamId::new(upstream).is_none() {
            return Err(OpError::Invalid(format!(
                "{upstream:?} is not an upstream order id"
            )));
        }
        let order = self
            .store
            .attach_upstream_order(OrderId(id), provider, upstream, self.actor, now_ms())
            .await?;
        Ok((&order).into())
    }

    /// An ambiguous order is not upstream (or is given up): canceled with a full refund.
    /// Returns the refund.
    pub async fn cancel_ambiguous(&self, id: i64, reason: &str) -> OpResult<String> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(OpError::Invalid("a reason is required".into()));
        }
        let refund = self
            .store
            .cancel_ambiguous(OrderId(id), reason, self.actor, now_ms())
            .await?;
        Ok(refund.to_string())
    }

    /// Orders that ended upstream without a signal telling their refund, oldest first: the
    /// second work list.
    pub async fn attention_orders(&self) -> OpResult<Vec<OrderView>> {
        let orders = self.store.attention_orders(10_000).await?;
        Ok(orders.iter().map(OrderView::from).collect())
    }

    /// Settles an order on the attention list: `refund` (a decimal string, `0` for none; at
    /// most what is left of its charge) paid as its one refund with the reason; audited.
    /// Returns the refund.
    pub async fn settle(&self, id: i64, refund: &str, reason: &str) -> OpResult<String> {
        let refund: Money = refund
            .trim()
            .parse()
            .map_err(|e| OpError::Invalid(format!("refund: {e}")))?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(OpError::Invalid("a reason is required".into()));
        }
        let paid = self
            .store
            .settle_attention(OrderId(id), refund, reason, self.actor, now_ms())
            .await?;
        Ok(paid.to_string())
    }

    /// The audit log, newest first.
    /// The audit entries matching every given prefix (actor, action, target) and day range
    /// (`YYYY-MM-DD`, UTC, both ends included), newest first, at most `limit`.
    pub async fn search_audit(
        &self,
        actor: Option<&str>,
        action: Option<&str>,
        target: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: u32,
    ) -> OpResult<Vec<AuditView>> {
        let text = |t: Option<&str>| {
            t.map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let filter = smm_store::AuditFilter {
            actor: text(actor),
            action: text(action),
            target: text(target),
            from: text(from).map(|d| day_start("from", &d)).transpose()?,
            before: text(to)
                .map(|d| day_start("to", &d).map(|t| t + 86_400_000))
                .transpose()?,
            limit: limit.clamp(1, 1000),
        };
        Ok(self
            .store
            .search_audit(&filter)
            .await?
            .iter()
            .map(AuditView::from)
            .collect())
    }

    pub async fn audit(&self, limit: u32) -> OpResult<Vec<AuditView>> {
        Ok(self
            .store
            .audit_log(limit.clamp(1, 1000))
            .await?
            .iter()
            .map(AuditView::from)
            .collect())
    }

    /// The customer's discount and custom rates.
    pub async fn pricing(&self, id: i64) -> OpResult<PricingView> {
        let customer = self.store.customer(CustomerId(id)).await?;
        self.pricing_of(&customer).await
    }

    async fn pricing_of(&self, customer: &Customer) -> OpResult<PricingView> {
        let mut rates: Vec<RateView> = self
            .store
            .customer_rates(customer.id)
            .await?
            .into_iter()
            .map(|(service, rate)| RateView {
                service: service.0,
                rate: rate.to_string(),
            })
            .collect();
        rates.sort_by_key(|r| r.service);
        Ok(PricingView {
            customer: customer.id.0,
            discount: customer.discount.map(|d| d.to_string()),
            rates,
        })
    }

    /// Sets the customer's discount (a percent strictly between 0 and 100, as a decimal string
    /// with at most 5 decimals) or, with `None`, removes it. Audited. A running gateway applies
    /// it at once when set through the admin API; on PostgreSQL every instance applies it as
    /// soon as it commits (the store announces it), wherever it was made; on SQLite a change
    /// made by another process (the CLI) within `server.key_cache_ttl_secs` (at most 60 s).
    pub async fn set_discount(&self, id: i64, discount: Option<&str>) -> OpResult<PricingView> {
        let discount = match discount {
            None => None,
            Some(text) => {
                let d = positive_decimal("discount", text)?;
                if d >= Decimal::ONE_HUNDRED {
                    return Err(OpError::Invalid(format!(
                        "discount is a percent strictly between 0 and 100, not {d}"
                    )));
                }
                Some(d)
            }
        };
        let customer = self
            .store
            .set_discount(CustomerId(id), discount, self.actor, now_ms())
            .await?;
        self.pricing_of(&customer).await
    }

    /// Sets the customer's own rate for one service (a positive decimal string with at most 5
    /// decimals, per 1000 or per order like the list rate) or, with `None`, removes it. The
    /// service must be a configured or exposed one; a rate can be removed for any. Audited.
    pub async fn set_rate(
        &self,
        id: i64,
        service: i64,
        rate: Option<&str>,
    ) -> OpResult<PricingView> {
        let rate = rate
            .map(|text| positive_decimal("rate", text))
            .transpose()?;
        if service < 1 {
            return Err(OpError::Invalid(format!(
                "service must be a positive id, not {service}"
            )));
        }
        let customer = self.store.customer(CustomerId(id)).await?;
        if rate.is_some() && !self.known_service(service).await? {
            return Err(OpError::NotFound(format!(
                "no service {service} is configured or exposed"
            )));
        }
        self.store
            .set_customer_rate(customer.id, ServiceId(service), rate, self.actor, now_ms())
            .await?;
        self.pricing_of(&customer).await
    }

    /// A local service id of the configuration or assigned to an exposed upstream service.
    async fn known_service(&self, service: i64) -> OpResult<bool> {
        if u64::try_from(service).is_ok_and(|id| self.settings.services.iter().any(|s| s.id == id))
        {
            return Ok(true);
        }
        Ok(self
            .store
            .service_ids()
            .await?
            .iter()
            .any(|(id, _, _)| id.0 == service))
    }

    /// What `customer` sees in `services` (and what is disabled, and why), with costs.
    pub async fn price_list(&self, id: i64, catalog: &Catalog) -> OpResult<Vec<PriceLine>> {
        let customer = self.store.customer(CustomerId(id)).await?;
        let custom_rates = self
            .store
            .customer_rates(customer.id)
            .await?
            .into_iter()
            .filter_map(|(service, rate)| u64::try_from(service.0).ok().map(|s| (s, rate)))
            .collect();
        let pricing = CustomerPricing {
            discount: customer.discount,
            custom_rates,
        };
        Ok(catalog
            .iter()
            .map(|s| {
                let route = s.primary_route();
                PriceLine {
                    service: s.id,
                    name: s.name.clone(),
                    category: s.category.clone(),
                    service_type: s.service_type.as_str().to_owned(),
                    rate: s.price_for(&pricing).to_string(),
                    list_rate: s.rate.to_string(),
                    cost: route.map(|r| r.cost.to_string()),
                    provider: route.map(|r| r.provider.clone()),
                    upstream_service: route.map(|r| r.upstream_service.to_string()),
                    enabled: s.enabled,
                    disabled_reason: s.disabled_reason.clone(),
                }
            })
            .collect())
    }
}

/// A new random API key: 32 hex characters (128 bits) from the OS generator.
pub fn generate_api_key() -> OpResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| OpError::Unavailable(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// The display prefix of a key.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(6).collect()
}
