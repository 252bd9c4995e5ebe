//! One row struct per table, as both SQLite and PostgreSQL return it, and its checked conversion
//! into the domain type. `#[derive(sqlx::FromRow)]` is generic over the row type, and every field
//! here is a type both backends decode (`i64`, `String`, `Option` of those).
//!
//! Nothing here panics on data: a value the domain cannot hold is
//! `StoreError::Database("corrupt ...")`.

// Column lists, as macros so that `concat!` splices them into the `&'static str` SQL that sqlx
// takes without an `AssertSqlSafe`.
macro_rules! customer_columns {
    () => {
        "id, name, status, currency, key_prefix, balance, discount, created_at"
    };
}
macro_rules! ledger_columns {
    () => {
        "id, customer_id, kind, amount, balance_after, order_id, reason, actor, created_at"
    };
}
macro_rules! order_columns {
    () => {
        "id, customer_id, service_id, service_type, params, link, quantity, units, charge, \
         refunded, status, status_raw, start_count, remains, extra, provider, upstream_service, \
         upstream_order_id, upstream_cost, forward_state, forward_attempts, forward_error, \
         claimed_by, claimed_at, forwarded_at, next_poll_at, idempotency_key, created_at, \
         updated_at, attention, placed_as"
    };
}
/// What a status report is judged against: the narrow [`OrderTermsRow`].
macro_rules! order_terms_columns {
    () => {
        "id, customer_id, params, units, charge, refunded, status, status_raw, upstream_cost, \
         upstream_order_id, started_at, finished_at"
    };
}
/// What `status` reads of an order: the narrow [`OrderStatusRow`].
macro_rules! order_status_columns {
    () => {
        "id, quantity, charge, refunded, status, status_raw, start_count, remains, extra"
    };
}
macro_rules! attempt_columns {
    () => {
        "order_id, provider, upstream_service, outcome, detail, started_at, finished_at, why"
    };
}
macro_rules! refill_columns {
    () => {
        "id, order_id, customer_id, provider, upstream_refill_id, status, status_raw, \
         forward_state, error, created_at, updated_at"
    };
}
macro_rules! cancel_columns {
    () => {
        "id, order_id, customer_id, forward_state, error, created_at, updated_at"
    };
}
macro_rules! admin_columns {
    () => {
        "id, username, password_hash, role, failed_logins, locked_until, last_login_at, created_at"
    };
}
macro_rules! audit_columns {
    () => {
        "id, actor, action, target, before, after, created_at"
    };
}
/// The stored texts of the terminal order statuses, for SQL filters. Kept in step with
/// [`OrderStatus::is_terminal`] by a unit test.
macro_rules! terminal_statuses {
    () => {
        "('Completed', 'Partial', 'Canceled', 'Refunded', 'Expired')"
    };
}

use std::fmt::Display;
use std::str::FromStr;

use rust_decimal::Decimal;
use smm_wire::{Money, OrderStatus, RefillStatus};

use crate::{
    AdminRole, AdminUser, AuditEntry, CancelRequest, Customer, CustomerId, CustomerStatus,
    ForwardAttempt, ForwardState, LedgerEntry, LedgerKind, Order, OrderId, Refill, RefillId,
    ServiceId, StoreError, StoreResult,
};

/// The stored text of an order status whose spelling no table knew; the spelling itself is in
/// `status_raw`.
pub(crate) const UNKNOWN: &str = "Unknown";

pub(crate) fn corrupt(what: &str, detail: impl Display) -> StoreError {
    StoreError::Database(format!("corrupt {what}: {detail}"))
}

/// `(status, status_raw)` as stored: the canonical spelling, or `Unknown` and the raw text.
pub(crate) fn order_status_text(status: &OrderStatus) -> (&str, Option<&str>) {
    match status {
        OrderStatus::Unknown(raw) => (UNKNOWN, Some(raw.as_str())),
        known => (known.as_str(), None),
    }
}

pub(crate) fn order_status_from_text(text: &str, raw: Option<String>) -> StoreResult<OrderStatus> {
    Ok(match text {
        "Pending" => OrderStatus::Pending,
        "In progress" => OrderStatus::InProgress,
        "Processing" => OrderStatus::Processing,
        "Completed" => OrderStatus::Completed,
        "Partial" => OrderStatus::Partial,
        "Canceled" => OrderStatus::Canceled,
        "Refunded" => OrderStatus::Refunded,
        "Active" => OrderStatus::Active,
        "Paused" => OrderStatus::Paused,
        "Expired" => OrderStatus::Expired,
        UNKNOWN => OrderStatus::Unknown(raw.unwrap_or_default()),
        other => return Err(corrupt("order status", other)),
    })
}

pub(crate) fn refill_status_text(status: &RefillStatus) -> (&str, Option<&str>) {
    match status {
        RefillStatus::Unknown(raw) => (UNKNOWN, Some(raw.as_str())),
        known => (known.as_str(), None),
    }
}

pub(crate) fn refill_status_from_text(
    text: &str,
    raw: Option<String>,
) -> StoreResult<RefillStatus> {
    Ok(match text {
        "Pending" => RefillStatus::Pending,
        "In progress" => RefillStatus::InProgress,
        "Completed" => RefillStatus::Completed,
        "Rejected" => RefillStatus::Rejected,
        "Canceled" => RefillStatus::Canceled,
        UNKNOWN => RefillStatus::Unknown(raw.unwrap_or_default()),
        other => return Err(corrupt("refill status", other)),
    })
}

pub(crate) fn forward_state(text: &str) -> StoreResult<ForwardState> {
    ForwardState::parse(text).ok_or_else(|| corrupt("forward state", text))
}

fn decimal(what: &str, text: &str) -> StoreResult<Decimal> {
    Decimal::from_str(text).map_err(|_| corrupt(what, text))
}

fn unsigned<T: TryFrom<i64>>(what: &str, value: i64) -> StoreResult<T> {
    T::try_from(value).map_err(|_| corrupt(what, value))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CustomerRow {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub currency: String,
    pub key_prefix: String,
    pub balance: i64,
    pub discount: Option<String>,
    pub created_at: i64,
}

impl TryFrom<CustomerRow> for Customer {
    type Error = StoreError;

    fn try_from(row: CustomerRow) -> StoreResult<Customer> {
        Ok(Customer {
            id: CustomerId(row.id),
            status: CustomerStatus::parse(&row.status)
                .ok_or_else(|| corrupt("customer status", &row.status))?,
            discount: row
                .discount
                .as_deref()
                .map(|d| decimal("customer discount", d))
                .transpose()?,
            name: row.name,
            currency: row.currency,
            key_prefix: row.key_prefix,
            balance: Money::from_units(row.balance),
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LedgerRow {
    pub id: i64,
    pub customer_id: i64,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub order_id: Option<i64>,
    pub reason: String,
    pub actor: String,
    pub created_at: i64,
}

impl TryFrom<LedgerRow> for LedgerEntry {
    type Error = StoreError;

    fn try_from(row: LedgerRow) -> StoreResult<LedgerEntry> {
        Ok(LedgerEntry {
            id: row.id,
            customer_id: CustomerId(row.customer_id),
            kind: LedgerKind::parse(&row.kind).ok_or_else(|| corrupt("ledger kind", &row.kind))?,
            amount: Money::from_units(row.amount),
            balance_after: Money::from_units(row.balance_after),
            order_id: row.order_id.map(OrderId),
            reason: row.reason,
            actor: row.actor,
            created_at: row.created_at,
        })
    }
}

/// The narrow row behind [`crate::OrderStatusView`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OrderStatusRow {
    pub id: i64,
    pub quantity: Option<i64>,
    pub charge: i64,
    pub refunded: i64,
    pub status: String,
    pub status_raw: Option<String>,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    pub extra: Option<String>,
}

impl TryFrom<OrderStatusRow> for crate::OrderStatusView {
    type Error = StoreError;

    fn try_from(row: OrderStatusRow) -> StoreResult<crate::OrderStatusView> {
        Ok(crate::OrderStatusView {
            id: OrderId(row.id),
            quantity: row
                .quantity
                .map(|q| unsigned("order quantity", q))
                .transpose()?,
            charge: Money::from_units(row.charge),
            refunded: Money::from_units(row.refunded),
            status: order_status_from_text(&row.status, row.status_raw)?,
            start_count: row.start_count,
            remains: row.remains,
            extra: row.extra,
        })
    }
}

/// The narrow row behind [`PolledOrder`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OrderTermsRow {
    pub id: i64,
    pub customer_id: i64,
    pub params: String,
    pub units: i64,
    pub charge: i64,
    pub refunded: i64,
    pub status: String,
    pub status_raw: Option<String>,
    pub upstream_cost: Option<String>,
    pub upstream_order_id: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// An order as a poll batch reads it: its terms, and what tells whether a report changes
/// anything but its counts.
#[derive(Debug, Clone)]
pub(crate) struct PolledOrder {
    pub terms: crate::rules::OrderTerms,
    pub upstream_order_id: Option<String>,
    /// The stored `status_raw`, as it is (the terms' status drops it for a known status).
    pub status_raw: Option<String>,
    pub started: bool,
    pub finished: bool,
}

impl TryFrom<OrderTermsRow> for PolledOrder {
    type Error = StoreError;

    fn try_from(row: OrderTermsRow) -> StoreResult<Self> {
        let terms = crate::rules::OrderTerms {
            id: OrderId(row.id),
            customer_id: CustomerId(row.customer_id),
            params: row.params,
            units: unsigned("order units", row.units)?,
            charge: Money::from_units(row.charge),
            refunded: Money::from_units(row.refunded),
            upstream_cost: row
                .upstream_cost
                .as_deref()
                .map(|c| decimal("upstream cost", c))
                .transpose()?,
            status: order_status_from_text(&row.status, row.status_raw.clone())?,
        };
        Ok(PolledOrder {
            terms,
            upstream_order_id: row.upstream_order_id,
            status_raw: row.status_raw,
            started: row.started_at.is_some(),
            finished: row.finished_at.is_some(),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub id: i64,
    pub customer_id: i64,
    pub service_id: i64,
    pub service_type: String,
    pub params: String,
    pub link: Option<String>,
    pub quantity: Option<i64>,
    pub units: i64,
    pub charge: i64,
    pub refunded: i64,
    pub status: String,
    pub status_raw: Option<String>,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    pub extra: Option<String>,
    pub provider: Option<String>,
    pub upstream_service: Option<String>,
    pub upstream_order_id: Option<String>,
    pub upstream_cost: Option<String>,
    pub forward_state: String,
    pub forward_attempts: i64,
    pub forward_error: Option<String>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<i64>,
    pub forwarded_at: Option<i64>,
    pub next_poll_at: Option<i64>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub attention: Option<String>,
    pub placed_as: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;

    fn try_from(row: OrderRow) -> StoreResult<Order> {
        Ok(Order {
            id: OrderId(row.id),
            customer_id: CustomerId(row.customer_id),
            service_id: ServiceId(row.service_id),
            service_type: row.service_type,
            params: row.params,
            link: row.link,
            quantity: row
                .quantity
                .map(|q| unsigned("order quantity", q))
                .transpose()?,
            units: unsigned("order units", row.units)?,
            charge: Money::from_units(row.charge),
            refunded: Money::from_units(row.refunded),
            status: order_status_from_text(&row.status, row.status_raw)?,
            start_count: row.start_count,
            remains: row.remains,
            extra: row.extra,
            provider: row.provider,
            upstream_service: row.upstream_service,
            upstream_order_id: row.upstream_order_id,
            upstream_cost: row
                .upstream_cost
                .as_deref()
                .map(|c| decimal("upstream cost", c))
                .transpose()?,
            forward_state: forward_state(&row.forward_state)?,
            forward_attempts: unsigned("forward attempts", row.forward_attempts)?,
            forward_error: row.forward_error,
            claimed_by: row.claimed_by,
            claimed_at: row.claimed_at,
            forwarded_at: row.forwarded_at,
            next_poll_at: row.next_poll_at,
            idempotency_key: row.idempotency_key,
            created_at: row.created_at,
            updated_at: row.updated_at,
            attention: row.attention,
            placed_as: row
                .placed_as
                .as_deref()
                .map(|json| serde_json::from_str(json).map_err(|_| corrupt("placed_as", json)))
                .transpose()?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub order_id: i64,
    pub provider: String,
    pub upstream_service: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub why: Option<String>,
}

impl From<AttemptRow> for ForwardAttempt {
    fn from(row: AttemptRow) -> ForwardAttempt {
        ForwardAttempt {
            order_id: OrderId(row.order_id),
            provider: row.provider,
            upstream_service: row.upstream_service,
            outcome: row.outcome,
            detail: row.detail,
            started_at: row.started_at,
            finished_at: row.finished_at,
            why: row.why,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RefillRow {
    pub id: i64,
    pub order_id: i64,
    pub customer_id: i64,
    pub provider: Option<String>,
    pub upstream_refill_id: Option<String>,
    pub status: String,
    pub status_raw: Option<String>,
    pub forward_state: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<RefillRow> for Refill {
    type Error = StoreError;

    fn try_from(row: RefillRow) -> StoreResult<Refill> {
        Ok(Refill {
            id: RefillId(row.id),
            order_id: OrderId(row.order_id),
            customer_id: CustomerId(row.customer_id),
            provider: row.provider,
            upstream_refill_id: row.upstream_refill_id,
            status: refill_status_from_text(&row.status, row.status_raw)?,
            forward_state: forward_state(&row.forward_state)?,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CancelRow {
    pub id: i64,
    pub order_id: i64,
    pub customer_id: i64,
    pub forward_state: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<CancelRow> for CancelRequest {
    type Error = StoreError;

    fn try_from(row: CancelRow) -> StoreResult<CancelRequest> {
        Ok(CancelRequest {
            id: row.id,
            order_id: OrderId(row.order_id),
            customer_id: CustomerId(row.customer_id),
            forward_state: forward_state(&row.forward_state)?,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at: i64,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> AuditEntry {
        AuditEntry {
            id: row.id,
            actor: row.actor,
            action: row.action,
            target: row.target,
            before: row.before,
            after: row.after,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AdminRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
}

impl TryFrom<AdminRow> for AdminUser {
    type Error = StoreError;

    fn try_from(row: AdminRow) -> StoreResult<AdminUser> {
        Ok(AdminUser {
            role: AdminRole::parse(&row.role).ok_or_else(|| corrupt("admin role", &row.role))?,
            failed_logins: u32::try_from(row.failed_logins)
                .map_err(|_| corrupt("failed_logins", row.failed_logins))?,
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            locked_until: row.locked_until,
            last_login_at: row.last_login_at,
            created_at: row.created_at,
        })
    }
}

/// A session joined with its user's columns.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    #[sqlx(flatten)]
    pub user: AdminRow,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statuses_round_trip_through_their_stored_text() {
        let all = [
            OrderStatus::Pending,
            OrderStatus::InProgress,
            OrderStatus::Processing,
            OrderStatus::Completed,
            OrderStatus::Partial,
            OrderStatus::Canceled,
            OrderStatus::Refunded,
            OrderStatus::Active,
            OrderStatus::Paused,
            OrderStatus::Expired,
            OrderStatus::Unknown("Weird Thing".into()),
        ];
        for status in all {
            let (text, raw) = order_status_text(&status);
            let back = order_status_from_text(text, raw.map(str::to_owned));
            assert_eq!(back, Ok(status.clone()));
            assert_eq!(
                terminal_statuses!().contains(&format!("'{text}'")),
                status.is_terminal(),
                "{status:?}"
            );
        }
        assert!(order_status_from_text("Bogus", None).is_err());
    }

    #[test]
    fn refill_statuses_round_trip_through_their_stored_text() {
        let all = [
            RefillStatus::Pending,
            RefillStatus::InProgress,
            RefillStatus::Completed,
            RefillStatus::Rejected,
            RefillStatus::Canceled,
            RefillStatus::Unknown("queued?".into()),
        ];
        for status in all {
            let (text, raw) = refill_status_text(&status);
            assert_eq!(
                refill_status_from_text(text, raw.map(str::to_owned)),
                Ok(status.clone())
            );
        }
        assert!(refill_status_from_text("Bogus", None).is_err());
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let row = CustomerRow {
            id: 1,
            name: "a".into(),
            status: "deleted".into(),
            currency: "USD".into(),
            key_prefix: "k".into(),
            balance: 0,
            discount: None,
            created_at: 0,
        };
        assert!(matches!(
            Customer::try_from(row),
            Err(StoreError::Database(_))
        ));
        assert!(unsigned::<u64>("units", -1).is_err());
        assert!(decimal("discount", "five").is_err());
    }
}

/// What `claim_polls` reads of an order.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PollRow {
    pub id: i64,
    pub provider: Option<String>,
    pub upstream_order_id: Option<String>,
    pub status: String,
    pub status_raw: Option<String>,
    pub created_at: i64,
}

impl TryFrom<PollRow> for crate::PollItem {
    type Error = StoreError;

    fn try_from(row: PollRow) -> StoreResult<crate::PollItem> {
        Ok(crate::PollItem {
            order_id: OrderId(row.id),
            provider: row
                .provider
                .ok_or_else(|| corrupt("sent order without provider", row.id))?,
            upstream_order_id: row
                .upstream_order_id
                .ok_or_else(|| corrupt("sent order without upstream id", row.id))?,
            status: order_status_from_text(&row.status, row.status_raw)?,
            created_at: row.created_at,
        })
    }
}

// ---- notifications (migration 0012) -----------------------------------------------------------

macro_rules! webhook_event_columns {
    () => {
        "id, customer_id, kind, order_id, refill_id, status, status_raw, prev_status, \
         prev_status_raw, quantity, charge, refunded, start_count, remains, extra, amount, \
         balance, threshold, created_at, state, attempts, tries, retry_from, next_attempt_at, \
         delivered_at, last_error"
    };
}
macro_rules! webhook_delivery_columns {
    () => {
        "id, event_id, customer_id, attempt, at, http_status, latency_ms, error"
    };
}
macro_rules! alert_columns {
    () => {
        "id, channel, key, state, title, lines, created_at, attempts"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WebhookEventRow {
    pub id: i64,
    pub customer_id: i64,
    pub kind: String,
    pub order_id: Option<i64>,
    pub refill_id: Option<i64>,
    pub status: Option<String>,
    pub status_raw: Option<String>,
    pub prev_status: Option<String>,
    pub prev_status_raw: Option<String>,
    pub quantity: Option<i64>,
    pub charge: Option<i64>,
    pub refunded: Option<i64>,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    pub extra: Option<String>,
    pub amount: Option<i64>,
    pub balance: Option<i64>,
    pub threshold: Option<i64>,
    pub created_at: i64,
    pub state: String,
    pub attempts: i64,
    pub tries: i64,
    pub retry_from: Option<i64>,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

impl TryFrom<WebhookEventRow> for crate::WebhookEvent {
    type Error = StoreError;

    fn try_from(row: WebhookEventRow) -> StoreResult<crate::WebhookEvent> {
        use crate::{WebhookEventData, WebhookEventKind};
        fn need<T>(what: &str, value: Option<T>) -> StoreResult<T> {
            value.ok_or_else(|| corrupt("webhook event", format!("{what} missing")))
        }
        let kind = WebhookEventKind::parse(&row.kind)
            .ok_or_else(|| corrupt("webhook event kind", &row.kind))?;
        let data = match kind {
            WebhookEventKind::OrderStatus => WebhookEventData::OrderStatus {
                order: crate::OrderStatusView {
                    id: OrderId(need("order_id", row.order_id)?),
                    quantity: row
                        .quantity
                        .map(|q| unsigned("order quantity", q))
                        .transpose()?,
                    charge: Money::from_units(need("charge", row.charge)?),
                    refunded: Money::from_units(need("refunded", row.refunded)?),
                    status: order_status_from_text(&need("status", row.status)?, row.status_raw)?,
                    start_count: row.start_count,
                    remains: row.remains,
                    extra: row.extra,
                },
                previous: order_status_from_text(
                    &need("prev_status", row.prev_status)?,
                    row.prev_status_raw,
                )?,
            },
            WebhookEventKind::RefillStatus => WebhookEventData::RefillStatus {
                refill: RefillId(need("refill_id", row.refill_id)?),
                order: OrderId(need("order_id", row.order_id)?),
                status: refill_status_from_text(&need("status", row.status)?, row.status_raw)?,
                previous: refill_status_from_text(
                    &need("prev_status", row.prev_status)?,
                    row.prev_status_raw,
                )?,
            },
            WebhookEventKind::RefundPaid => WebhookEventData::RefundPaid {
                order: OrderId(need("order_id", row.order_id)?),
                amount: Money::from_units(need("amount", row.amount)?),
                balance: Money::from_units(need("balance", row.balance)?),
            },
            WebhookEventKind::BalanceLow => WebhookEventData::BalanceLow {
                balance: Money::from_units(need("balance", row.balance)?),
                threshold: Money::from_units(need("threshold", row.threshold)?),
            },
        };
        Ok(crate::WebhookEvent {
            id: row.id,
            customer: CustomerId(row.customer_id),
            data,
            created_at: row.created_at,
            state: crate::WebhookEventState::parse(&row.state)
                .ok_or_else(|| corrupt("webhook event state", &row.state))?,
            attempts: row.attempts,
            tries: row.tries,
            retry_from: row.retry_from.unwrap_or(row.created_at),
            next_attempt_at: row.next_attempt_at,
            delivered_at: row.delivered_at,
            last_error: row.last_error,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WebhookDeliveryRow {
    pub id: i64,
    pub event_id: i64,
    pub customer_id: i64,
    pub attempt: i64,
    pub at: i64,
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

impl TryFrom<WebhookDeliveryRow> for crate::WebhookDelivery {
    type Error = StoreError;

    fn try_from(row: WebhookDeliveryRow) -> StoreResult<crate::WebhookDelivery> {
        Ok(crate::WebhookDelivery {
            id: row.id,
            event: row.event_id,
            customer: CustomerId(row.customer_id),
            attempt: row.attempt,
            at: row.at,
            http_status: row
                .http_status
                .map(|s| unsigned("http status", s))
                .transpose()?,
            latency_ms: row.latency_ms,
            error: row.error,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AlertRow {
    pub id: i64,
    pub channel: String,
    pub key: String,
    pub state: String,
    pub title: String,
    pub lines: String,
    pub created_at: i64,
    pub attempts: i64,
}

impl TryFrom<AlertRow> for crate::AlertMessage {
    type Error = StoreError;

    fn try_from(row: AlertRow) -> StoreResult<crate::AlertMessage> {
        Ok(crate::AlertMessage {
            id: row.id,
            channel: row.channel,
            key: row.key,
            state: crate::AlertState::parse(&row.state)
                .ok_or_else(|| corrupt("alert state", &row.state))?,
            title: row.title,
            lines: serde_json::from_str(&row.lines).map_err(|e| corrupt("alert lines", e))?,
            created_at: row.created_at,
            attempts: row.attempts,
        })
    }
}
