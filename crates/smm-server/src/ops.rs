//! Admin operations, one implementation for the two front ends: the `smm-gateway` CLI prints
//! their results, the admin API (`/admin/v1`) returns them as JSON.
//!
//! Every mutating operation names its actor (`cli:USER`, `admin:NAME`) and is audited by the
//! store in the same transaction as the change, with the before and after values. Results are
//! plain serialisable views: money as exact decimal strings (`"12.34000"`), never floats.

use serde::Serialize;
use serde_json::{Value, json};
use smm_routing::{Catalog, CustomerPricing};
use smm_store::{
    AuditEntry, Customer, CustomerId, CustomerStatus, ForwardAttempt, ForwardState, LedgerEntry,
    LedgerKind, NewCustomer, Order, OrderFilter, OrderId, Store, StoreError, hash_api_key,
};
use smm_wire::{Money, OrderStatus};

use crate::app::now_ms;
use crate::config::Settings;

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
#[derive(Debug, Clone, Serialize)]
pub struct CustomerView {
    pub id: i64,
    pub name: String,
    pub status: &'static str,
    pub currency: String,
    pub key_prefix: String,
    pub balance: String,
    /// Percent off every price, as a decimal string.
    pub discount: Option<String>,
    pub created_at: i64,
}

impl From<&Customer> for CustomerView {
    fn from(c: &Customer) -> Self {
        CustomerView {
            id: c.id.0,
            name: c.name.clone(),
            status: c.status.as_str(),
            currency: c.currency.clone(),
            key_prefix: c.key_prefix.clone(),
            balance: c.balance.to_string(),
            discount: c.discount.map(|d| d.to_string()),
            created_at: c.created_at,
        }
    }
}

/// A customer with a freshly generated API key: the only time the key is shown.
#[derive(Debug, Clone, Serialize)]
pub struct WithKey {
    pub customer: CustomerView,
    pub api_key: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerView {
    pub id: i64,
    pub kind: &'static str,
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
            kind: e.kind.as_str(),
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
pub fn order_view(o: &Order) -> Value {
    json!({
        "id": o.id.0,
        "customer": o.customer_id.0,
        "service": o.service_id.0,
        "type": o.service_type,
        "params": serde_json::from_str::<Value>(&o.params).unwrap_or(Value::String(o.params.clone())),
        "link": o.link,
        "quantity": o.quantity,
        "units": o.units,
        "charge": o.charge.to_string(),
        "refunded": o.refunded.to_string(),
        "status": o.status.as_str(),
        "start_count": o.start_count,
        "remains": o.remains,
        "provider": o.provider,
        "upstream_service": o.upstream_service,
        "upstream_order": o.upstream_order_id,
        "upstream_cost": o.upstream_cost.map(|c| c.to_string()),
        "forward_state": o.forward_state.as_str(),
        "forward_attempts": o.forward_attempts,
        "forward_error": o.forward_error,
        "idempotency_key": o.idempotency_key,
        "created_at": o.created_at,
        "forwarded_at": o.forwarded_at,
        "next_poll_at": o.next_poll_at,
        "updated_at": o.updated_at,
    })
}

/// One order with its upstream history.
#[derive(Debug, Clone, Serialize)]
pub struct OrderDetail {
    pub order: Value,
    pub attempts: Vec<ForwardAttempt>,
}

/// Search criteria for [`Ops::search_orders`], as strings from a query or the command line.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSearch {
    pub customer: Option<i64>,
    /// `Pending`, `In progress`, `Processing`, `Completed`, `Partial`, `Canceled`, `Refunded`.
    pub status: Option<String>,
    /// `queued`, `sending`, `sent`, `ambiguous`, `rejected`.
    pub forward_state: Option<String>,
    pub provider: Option<String>,
    pub link: Option<String>,
    /// Only orders with a smaller id (paging backwards).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<u32>,
}

/// One line of a customer's price list preview.
#[derive(Debug, Clone, Serialize)]
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

/// The admin operations over one store, on behalf of one actor.
#[derive(Debug, Clone, Copy)]
pub struct Ops<'a> {
    pub store: &'a dyn Store,
    pub settings: &'a Settings,
    pub actor: &'a str,
}

impl Ops<'_> {
    /// Creates a customer and returns their API key (shown once; only its hash is stored).
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

    /// Replaces the customer's key; the old one stops working at once.
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
    pub async fn search_orders(&self, search: &OrderSearch) -> OpResult<Vec<Value>> {
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
                before_id: search.before.map(OrderId),
                limit: search.limit.unwrap_or(100).clamp(1, 1000),
            })
            .await?;
        Ok(orders.iter().map(order_view).collect())
    }

    /// Ambiguous orders, oldest first: the admin's work list.
    pub async fn ambiguous_orders(&self) -> OpResult<Vec<Value>> {
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
            .map(|o| {
                let mut view = order_view(o);
                view["age_seconds"] = json!((now - o.created_at).max(0) / 1000);
                view
            })
            .collect())
    }

    pub async fn order(&self, id: i64) -> OpResult<OrderDetail> {
        let order = self.store.order(OrderId(id)).await?;
        let attempts = self.store.attempts(order.id).await?;
        Ok(OrderDetail {
            order: order_view(&order),
            attempts,
        })
    }

    /// An ambiguous order was found upstream: attach its upstream id; it is polled from now on.
    pub async fn attach(&self, id: i64, provider: &str, upstream: &str) -> OpResult<Value> {
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
        Ok(order_view(&order))
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

    /// The audit log, newest first.
    pub async fn audit(&self, limit: u32) -> OpResult<Vec<AuditEntry>> {
        Ok(self.store.audit_log(limit.clamp(1, 1000)).await?)
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
