//! The PostgreSQL implementation of [`Store`](crate::Store), for deployments where several
//! gateway processes share one database.
//!
//! # Concurrency
//!
//! Every method is one transaction at READ COMMITTED, made correct by explicit row locks rather
//! than by serialisable retries:
//!
//! * money moves under the customer's row lock (`UPDATE customers ... RETURNING balance` or
//!   `SELECT ... FOR UPDATE`), so concurrent placements for one customer queue up behind each
//!   other and the balance can never be spent twice;
//! * state changes of an order happen under its row lock (`SELECT ... FOR UPDATE`), always taken
//!   before the customer's, so the two locks are always acquired in the same order;
//! * queues (forwarding, polling, refills, cancel requests, recovery) are claimed with `FOR UPDATE SKIP LOCKED`, so two
//!   workers never take the same row and never wait for each other. The locking `SELECT` sits in
//!   a `MATERIALIZED` CTE, which runs exactly once: as a plain `id IN (subquery)` the planner may
//!   re-run it for every row it updates, each run skipping the rows already taken, and a
//!   `LIMIT 1` claim then takes every queued order;
//! * the unique indexes (`orders_idempotency`, `orders_upstream`, `ledger_one_refund`, ...) are
//!   the last line: a violation is handled where it has a domain meaning and is a
//!   [`StoreError::Conflict`] everywhere else.
//!
//! Every transaction ends explicitly, before the method returns: COMMIT on success, an awaited
//! ROLLBACK on error (see `settle`). Left to sqlx, a dropped transaction's ROLLBACK is only
//! queued, and its row locks outlive the error that ended it.
//!
//! # Limits
//!
//! In every method that takes a `limit` (listings and claims alike), 0 means 100.

mod rows;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde_json::json;
use smm_wire::{Money, OrderStatus};
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

use self::rows::PollRow;
use crate::rows::{
    AttemptRow, AuditRow, CancelRow, CustomerRow, LedgerRow, OrderRow, RefillRow,
    TERMINAL_STATUSES, convert_all, corrupt, forward_state, order_status_from_text,
    order_status_text, refill_status_text,
};
use crate::*;

// Column lists shared by every query that reads a whole row. Macros rather than `const`s so that
// `concat!` can splice them into `&'static str` queries (sqlx 0.9 only takes static SQL without
// an explicit `AssertSqlSafe`).
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
         updated_at"
    };
}
macro_rules! attempt_columns {
    () => {
        "order_id, provider, upstream_service, outcome, detail, started_at, finished_at"
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
macro_rules! audit_columns {
    () => {
        "id, actor, action, target, before, after, created_at"
    };
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Unique indexes whose violation has a domain meaning.
const IDEMPOTENCY_INDEX: &str = "orders_idempotency";
const UPSTREAM_INDEX: &str = "orders_upstream";
const ONE_REFUND_INDEX: &str = "ledger_one_refund";

const MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a `limit` of 0 means (see the module docs).
const DEFAULT_LIMIT: i64 = 100;

/// The store on a PostgreSQL database (see the module docs for the concurrency model).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (a pool of up to 16 connections) and runs the migrations. Several processes may
    /// do this at once on one database: the migrator serialises them with an advisory lock.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(e) => {
                    StoreError::Invalid(format!("bad PostgreSQL URL: {e}"))
                }
                other => db_err(other),
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations failed: {e}")))?;
        Ok(PostgresStore { pool })
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }
}

/// Translates sqlx errors into domain words at the boundary.
fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound("row"),
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                StoreError::Conflict(db.constraint().unwrap_or(db.message()).to_owned())
            } else if db.is_check_violation() {
                StoreError::Invalid(db.message().to_owned())
            } else {
                match db.code().as_deref() {
                    Some("40001") => StoreError::Database(format!(
                        "serialization failure (retry): {}",
                        db.message()
                    )),
                    Some("40P01") => {
                        StoreError::Database(format!("deadlock detected: {}", db.message()))
                    }
                    _ => StoreError::Database(db.to_string()),
                }
            }
        }
        sqlx::Error::PoolTimedOut => {
            StoreError::Database("timed out waiting for a database connection".to_owned())
        }
        other => StoreError::Database(other.to_string()),
    }
}

/// Ends a transaction: COMMIT on `Ok`, an awaited ROLLBACK on `Err`, before the result goes
/// back to the caller. A dropped [`Transaction`] only queues its ROLLBACK, which sqlx sends later
/// from the task that returns the connection to the pool; until then the row locks it took
/// outlive the error, making other callers wait and hiding the rows from `SKIP LOCKED` claims.
///
/// The error is a [`StoreError`], or an [`Abort`] for a body that can hand a case back.
async fn settle<T, E: From<StoreError>>(
    tx: Transaction<'static, Postgres>,
    result: Result<T, E>,
) -> Result<T, E> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(db_err)?;
            Ok(value)
        }
        Err(e) => {
            // The body's error is the one to report. A failed ROLLBACK is queued again when the
            // transaction drops, and a broken connection is closed instead of going back to the
            // pool: either way the transaction ends.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "ROLLBACK failed");
            }
            Err(e)
        }
    }
}

/// How a transaction body ends short of its result: an error, or a case it hands back to the
/// caller, to be dealt with after [`settle`] has rolled the transaction back.
enum Abort<X> {
    Error(StoreError),
    Handoff(X),
}

impl<X> From<StoreError> for Abort<X> {
    fn from(e: StoreError) -> Self {
        Abort::Error(e)
    }
}

/// Is `e` a violation of the unique index `constraint`?
fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// A `limit` as bound in SQL, 0 meaning [`DEFAULT_LIMIT`].
fn limit_or_default(limit: u32) -> i64 {
    match limit {
        0 => DEFAULT_LIMIT,
        n => i64::from(n),
    }
}

fn to_i64(what: &str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} out of range: {value}")))
}

fn customer_target(id: i64) -> String {
    format!("customer:{id}")
}

fn order_target(id: i64) -> String {
    format!("order:{id}")
}

/// The order's forwarding state, if it is one of `allowed`; `InvalidState` otherwise.
fn require_state(
    row: &OrderRow,
    allowed: &[ForwardState],
    action: &str,
) -> StoreResult<ForwardState> {
    let state = forward_state(&row.forward_state)?;
    if allowed.contains(&state) {
        Ok(state)
    } else {
        Err(StoreError::InvalidState(format!(
            "cannot {action} order {}: it is {}",
            row.id,
            state.as_str()
        )))
    }
}

fn order_summary(row: &OrderRow) -> String {
    json!({
        "forward_state": row.forward_state,
        "status": row.status,
        "provider": row.provider,
        "upstream_order_id": row.upstream_order_id,
        "refunded": Money::from_units(row.refunded).to_string(),
    })
    .to_string()
}

// ---- statements used inside transactions ---------------------------------------------------

async fn lock_order(conn: &mut PgConnection, id: OrderId) -> StoreResult<OrderRow> {
    sqlx::query_as::<_, OrderRow>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("order"))
}

async fn lock_customer(conn: &mut PgConnection, id: CustomerId) -> StoreResult<CustomerRow> {
    sqlx::query_as::<_, CustomerRow>(concat!(
        "SELECT ",
        customer_columns!(),
        " FROM customers WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("customer"))
}

async fn insert_audit(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&str>,
    after: Option<&str>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, before, after, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(before)
    .bind(after)
    .bind(now)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Credits `amount` to the order's customer with the order's one `refund` ledger row and adds it
/// to `orders.refunded`. The caller holds the order's row lock.
async fn pay_refund(
    conn: &mut PgConnection,
    order: &OrderRow,
    amount: Money,
    reason: &str,
    actor: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let balance: i64 = sqlx::query_scalar(
        "UPDATE customers SET balance = balance + $1 WHERE id = $2 RETURNING balance",
    )
    .bind(amount.units())
    .bind(order.customer_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("customer"))?;
    sqlx::query(
        "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, actor, \
         created_at) VALUES ($1, 'refund', $2, $3, $4, $5, $6, $7)",
    )
    .bind(order.customer_id)
    .bind(amount.units())
    .bind(balance)
    .bind(order.id)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE orders SET refunded = refunded + $2, updated_at = $3 WHERE id = $1")
        .bind(order.id)
        .bind(amount.units())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Cancels a locked order for good: the rest of its charge refunded (one ledger row, if there
/// is anything left to refund), status `Canceled`, `rejected`, no more polls. Returns the refund.
async fn cancel_and_refund(
    conn: &mut PgConnection,
    order: &OrderRow,
    forward_error: &str,
    reason: &str,
    actor: &str,
    now: Timestamp,
) -> StoreResult<Money> {
    let refund = Money::from_units(order.charge)
        .checked_sub(Money::from_units(order.refunded))
        .filter(|r| !r.is_negative())
        .ok_or_else(|| corrupt("order refund", order.id))?;
    if refund.is_positive() {
        pay_refund(conn, order, refund, reason, actor, now).await?;
    }
    sqlx::query(
        "UPDATE orders SET status = 'Canceled', status_raw = NULL, forward_state = 'rejected', \
         forward_error = $2, next_poll_at = NULL, updated_at = $3 WHERE id = $1",
    )
    .bind(order.id)
    .bind(forward_error)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(refund)
}

/// Closes the order's latest `pending` attempt with `outcome`; its provider, if there was one.
async fn close_pending_attempt(
    conn: &mut PgConnection,
    order: OrderId,
    outcome: &str,
    detail: Option<&str>,
    now: Timestamp,
) -> StoreResult<Option<(String, String)>> {
    sqlx::query_as(
        "UPDATE forward_attempts SET outcome = $2, detail = $3, finished_at = $4 \
         WHERE id = (SELECT id FROM forward_attempts WHERE order_id = $1 AND outcome = 'pending' \
                     ORDER BY id DESC LIMIT 1) \
         RETURNING provider, upstream_service",
    )
    .bind(order.0)
    .bind(outcome)
    .bind(detail)
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(db_err)
}

/// Refuses to give up on a locked order while one of its attempts is `pending`: that call may
/// have reached the upstream, so requeuing could send the order twice and rejecting could refund
/// an order that is in fact running.
async fn require_no_pending_attempt(conn: &mut PgConnection, order: OrderId) -> StoreResult<()> {
    let pending: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM forward_attempts WHERE order_id = $1 AND outcome = 'pending')",
    )
    .bind(order.0)
    .fetch_one(conn)
    .await
    .map_err(db_err)?;
    if pending {
        return Err(StoreError::InvalidState(format!(
            "order {order} has an attempt in flight; finish it first"
        )));
    }
    Ok(())
}

impl PostgresStore {
    /// `place_order` without the handling of a concurrent duplicate idempotency key.
    async fn place_order_once(&self, new: &NewOrder, now: Timestamp) -> StoreResult<Placed> {
        let units = to_i64("units", new.units)?;
        let quantity = new.quantity.map(|q| to_i64("quantity", q)).transpose()?;
        let mut tx = self.begin().await?;
        let result = async {
            if let Some(key) = &new.idempotency_key
                && let Some(first) = find_by_idempotency_key(&mut tx, new.customer_id, key).await?
            {
                return Ok(Placed::Existing(first.try_into()?));
            }

            // The row lock taken here serialises concurrent placements for one customer.
            let balance: Option<i64> = sqlx::query_scalar(
                "UPDATE customers SET balance = balance - $1 \
                 WHERE id = $2 AND status = 'active' AND balance >= $1 RETURNING balance",
            )
            .bind(new.charge.units())
            .bind(new.customer_id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(balance) = balance else {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM customers WHERE id = $1")
                        .bind(new.customer_id.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                return Err(match status.as_deref() {
                    None => StoreError::NotFound("customer"),
                    Some("active") => StoreError::InsufficientFunds,
                    Some(_) => StoreError::CustomerSuspended,
                });
            };

            let order: OrderRow = sqlx::query_as(concat!(
                "INSERT INTO orders (customer_id, service_id, service_type, params, link, \
                 quantity, units, charge, refunded, status, forward_state, forward_attempts, \
                 idempotency_key, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'Pending', 'queued', 0, $9, $10, $10) \
                 RETURNING ",
                order_columns!()
            ))
            .bind(new.customer_id.0)
            .bind(new.service_id.0)
            .bind(&new.service_type)
            .bind(&new.params)
            .bind(new.link.as_deref())
            .bind(quantity)
            .bind(units)
            .bind(new.charge.units())
            .bind(new.idempotency_key.as_deref())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;

            if new.charge.is_positive() {
                sqlx::query(
                    "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, \
                     reason, actor, created_at) \
                     VALUES ($1, 'charge', $2, $3, $4, $5, 'customer', $6)",
                )
                .bind(new.customer_id.0)
                .bind(-new.charge.units())
                .bind(balance)
                .bind(order.id)
                .bind(format!("order {}", order.id))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(Placed::New(order.try_into()?))
        }
        .await;
        settle(tx, result).await
    }

    /// A `Sent` outcome whose upstream id is already another order's at that provider: the
    /// order is not lost but set aside as `ambiguous` for an admin, and the clash is reported.
    async fn upstream_clash(
        &self,
        order: OrderId,
        provider: &str,
        upstream_order_id: &str,
        now: Timestamp,
    ) -> StoreResult<Order> {
        let owner: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE provider = $1 AND upstream_order_id = $2",
        )
        .bind(provider)
        .bind(upstream_order_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let message = match owner {
            Some(owner) => format!(
                "upstream order id {upstream_order_id} at {provider} already belongs to order \
                 {owner}"
            ),
            None => format!(
                "upstream order id {upstream_order_id} at {provider} already belongs to another \
                 order"
            ),
        };
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_order(&mut tx, order).await?;
            if forward_state(&row.forward_state)? == ForwardState::Sending {
                close_pending_attempt(&mut tx, order, "ambiguous", Some(&message), now).await?;
                sqlx::query(
                    "UPDATE orders SET forward_state = 'ambiguous', forward_error = $2, \
                     updated_at = $3 WHERE id = $1",
                )
                .bind(order.0)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(())
        }
        .await;
        settle(tx, result).await?;
        Err(StoreError::Conflict(message))
    }

    /// The fields of a customer row changed by an audited admin action, in one transaction.
    async fn update_customer_audited(
        &self,
        id: CustomerId,
        change: CustomerChange<'_>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin().await?;
        let result = async {
            let before = lock_customer(&mut tx, id).await?;
            let (action, before_json, after_json, query) = match change {
                CustomerChange::Status(status) => (
                    "customer.status",
                    json!({ "status": before.status }),
                    json!({ "status": status.as_str() }),
                    sqlx::query_as::<_, CustomerRow>(concat!(
                        "UPDATE customers SET status = $2 WHERE id = $1 RETURNING ",
                        customer_columns!()
                    ))
                    .bind(id.0)
                    .bind(status.as_str()),
                ),
                CustomerChange::Key { hash, prefix } => (
                    "customer.rotate_key",
                    json!({ "key_prefix": before.key_prefix }),
                    json!({ "key_prefix": prefix }),
                    sqlx::query_as::<_, CustomerRow>(concat!(
                        "UPDATE customers SET key_hash = $2, key_prefix = $3 WHERE id = $1 \
                         RETURNING ",
                        customer_columns!()
                    ))
                    .bind(id.0)
                    .bind(hash)
                    .bind(prefix),
                ),
                CustomerChange::Discount(discount) => {
                    let text = discount.map(|d| d.to_string());
                    (
                        "customer.discount",
                        json!({ "discount": before.discount }),
                        json!({ "discount": text }),
                        sqlx::query_as::<_, CustomerRow>(concat!(
                            "UPDATE customers SET discount = $2 WHERE id = $1 RETURNING ",
                            customer_columns!()
                        ))
                        .bind(id.0)
                        .bind(text.clone()),
                    )
                }
            };
            let after = query.fetch_one(&mut *tx).await.map_err(db_err)?;
            insert_audit(
                &mut tx,
                actor,
                action,
                &customer_target(id.0),
                Some(&before_json.to_string()),
                Some(&after_json.to_string()),
                now,
            )
            .await?;
            Ok(after)
        }
        .await;
        settle(tx, result).await?.try_into()
    }
}

/// An audited change to a customer row.
enum CustomerChange<'a> {
    Status(CustomerStatus),
    Key { hash: &'a str, prefix: &'a str },
    Discount(Option<Decimal>),
}

async fn find_by_idempotency_key(
    conn: &mut PgConnection,
    customer: CustomerId,
    key: &str,
) -> StoreResult<Option<OrderRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE customer_id = $1 AND idempotency_key = $2"
    ))
    .bind(customer.0)
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(db_err)
}

/// A pending attempt row for a `sending` order (locked), and the claim renewed.
async fn note_attempt(
    tx: &mut Transaction<'static, Postgres>,
    order: OrderId,
    provider: &str,
    upstream_service: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let row = lock_order(tx, order).await?;
    require_state(&row, &[ForwardState::Sending], "begin an attempt for")?;
    sqlx::query(
        "INSERT INTO forward_attempts (order_id, provider, upstream_service, outcome, \
         started_at) VALUES ($1, $2, $3, 'pending', $4)",
    )
    .bind(order.0)
    .bind(provider)
    .bind(upstream_service)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "UPDATE orders SET provider = $2, upstream_service = $3, updated_at = $4, \
         claimed_at = $4 WHERE id = $1",
    )
    .bind(order.0)
    .bind(provider)
    .bind(upstream_service)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // ---- customers and money ---------------------------------------------------------------

    async fn create_customer(
        &self,
        new: NewCustomer,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin().await?;
        let result = async {
            let row: CustomerRow = sqlx::query_as(concat!(
                "INSERT INTO customers (name, status, currency, key_hash, key_prefix, balance, \
                 created_at) VALUES ($1, 'active', $2, $3, $4, 0, $5) RETURNING ",
                customer_columns!()
            ))
            .bind(&new.name)
            .bind(&new.currency)
            .bind(&new.key_hash)
            .bind(&new.key_prefix)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let after = json!({
                "name": row.name,
                "currency": row.currency,
                "key_prefix": row.key_prefix,
                "status": row.status,
            })
            .to_string();
            insert_audit(
                &mut tx,
                actor,
                "customer.create",
                &customer_target(row.id),
                None,
                Some(&after),
                now,
            )
            .await?;
            Ok(row)
        }
        .await;
        settle(tx, result).await?.try_into()
    }

    async fn customer(&self, id: CustomerId) -> StoreResult<Customer> {
        sqlx::query_as::<_, CustomerRow>(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("customer"))?
        .try_into()
    }

    async fn customer_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Customer>> {
        sqlx::query_as::<_, CustomerRow>(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(Customer::try_from)
        .transpose()
    }

    async fn list_customers(&self) -> StoreResult<Vec<Customer>> {
        let rows: Vec<CustomerRow> = sqlx::query_as(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn set_customer_status(
        &self,
        id: CustomerId,
        status: CustomerStatus,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        self.update_customer_audited(id, CustomerChange::Status(status), actor, now)
            .await
    }

    async fn rotate_key(
        &self,
        id: CustomerId,
        key_hash: &str,
        key_prefix: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        let change = CustomerChange::Key {
            hash: key_hash,
            prefix: key_prefix,
        };
        self.update_customer_audited(id, change, actor, now).await
    }

    async fn set_discount(
        &self,
        id: CustomerId,
        discount: Option<Decimal>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        if let Some(d) = discount
            && (d <= Decimal::ZERO || d >= Decimal::ONE_HUNDRED)
        {
            return Err(StoreError::Invalid(format!(
                "a discount is a percent strictly between 0 and 100, not {d}"
            )));
        }
        self.update_customer_audited(id, CustomerChange::Discount(discount), actor, now)
            .await
    }

    async fn set_customer_rate(
        &self,
        id: CustomerId,
        service: ServiceId,
        rate: Option<Decimal>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        if let Some(r) = rate
            && r.is_sign_negative()
            && !r.is_zero()
        {
            return Err(StoreError::Invalid(format!(
                "a rate cannot be negative: {r}"
            )));
        }
        let mut tx = self.begin().await?;
        let result = async {
            lock_customer(&mut tx, id).await?;
            let old: Option<String> = sqlx::query_scalar(
                "SELECT rate FROM customer_rates WHERE customer_id = $1 AND service_id = $2",
            )
            .bind(id.0)
            .bind(service.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let new = rate.map(|r| r.to_string());
            match &new {
                Some(text) => sqlx::query(
                    "INSERT INTO customer_rates (customer_id, service_id, rate) \
                     VALUES ($1, $2, $3) \
                     ON CONFLICT (customer_id, service_id) DO UPDATE SET rate = EXCLUDED.rate",
                )
                .bind(id.0)
                .bind(service.0)
                .bind(text),
                None => sqlx::query(
                    "DELETE FROM customer_rates WHERE customer_id = $1 AND service_id = $2",
                )
                .bind(id.0)
                .bind(service.0),
            }
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let before = json!({ "service": service.0, "rate": old }).to_string();
            let after = json!({ "service": service.0, "rate": new }).to_string();
            insert_audit(
                &mut tx,
                actor,
                "customer.rate",
                &customer_target(id.0),
                Some(&before),
                Some(&after),
                now,
            )
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result).await
    }

    async fn customer_rates(&self, id: CustomerId) -> StoreResult<Vec<(ServiceId, Decimal)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT service_id, rate FROM customer_rates WHERE customer_id = $1 \
             ORDER BY service_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(service, rate)| {
                rate.parse::<Decimal>()
                    .map(|rate| (ServiceId(service), rate))
                    .map_err(|_| corrupt("customer rate", &rate))
            })
            .collect()
    }

    async fn adjust_balance(
        &self,
        id: CustomerId,
        kind: LedgerKind,
        amount: Money,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<LedgerEntry> {
        match kind {
            LedgerKind::Deposit if !amount.is_positive() => {
                return Err(StoreError::Invalid(format!(
                    "a deposit must be positive, not {amount}"
                )));
            }
            LedgerKind::Deposit | LedgerKind::Adjustment => {}
            other => {
                return Err(StoreError::Invalid(format!(
                    "a balance is adjusted with a deposit or an adjustment, not a {}",
                    other.as_str()
                )));
            }
        }
        if amount == Money::ZERO {
            return Err(StoreError::Invalid("a zero amount changes nothing".into()));
        }
        if amount.abs() > Money::MAX {
            return Err(StoreError::Invalid(format!(
                "amount over the maximum: {amount}"
            )));
        }
        let mut tx = self.begin().await?;
        let result = async {
            let customer = lock_customer(&mut tx, id).await?;
            let before = Money::from_units(customer.balance);
            let after = before
                .checked_add(amount)
                .ok_or_else(|| StoreError::Invalid("the balance would overflow".into()))?;
            if after.is_negative() {
                return Err(StoreError::InsufficientFunds);
            }
            sqlx::query("UPDATE customers SET balance = $2 WHERE id = $1")
                .bind(id.0)
                .bind(after.units())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let entry: LedgerRow = sqlx::query_as(concat!(
                "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, \
                 actor, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7) RETURNING ",
                ledger_columns!()
            ))
            .bind(id.0)
            .bind(kind.as_str())
            .bind(amount.units())
            .bind(after.units())
            .bind(reason)
            .bind(actor)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let action = if amount.is_positive() {
                "customer.credit"
            } else {
                "customer.debit"
            };
            let before_json = json!({ "balance": before.to_string() }).to_string();
            let after_json = json!({
                "balance": after.to_string(),
                "amount": amount.to_string(),
                "kind": kind.as_str(),
                "reason": reason,
            })
            .to_string();
            insert_audit(
                &mut tx,
                actor,
                action,
                &customer_target(id.0),
                Some(&before_json),
                Some(&after_json),
                now,
            )
            .await?;
            Ok(entry)
        }
        .await;
        settle(tx, result).await?.try_into()
    }

    async fn ledger(
        &self,
        id: CustomerId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let rows: Vec<LedgerRow> = sqlx::query_as(concat!(
            "SELECT ",
            ledger_columns!(),
            " FROM ledger WHERE customer_id = $1 AND ($2::BIGINT IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(id.0)
        .bind(before)
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn ledger_sum(&self, id: CustomerId) -> StoreResult<Money> {
        let sum: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM ledger WHERE customer_id = $1",
        )
        .bind(id.0)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(Money::from_units(sum))
    }

    // ---- orders ------------------------------------------------------------------------------

    async fn place_order(&self, new: NewOrder, now: Timestamp) -> StoreResult<Placed> {
        if new.charge.is_negative() || new.charge > Money::MAX {
            return Err(StoreError::Invalid(format!(
                "a charge must be between 0 and {}, not {}",
                Money::MAX,
                new.charge
            )));
        }
        match self.place_order_once(&new, now).await {
            // A concurrent placement with the same key won the race: its transaction committed
            // (ours was rolled back whole), so the first order is there to be read.
            Err(StoreError::Conflict(constraint)) if constraint == IDEMPOTENCY_INDEX => {
                let key = new.idempotency_key.as_deref().unwrap_or_default();
                let mut conn = self.pool.acquire().await.map_err(db_err)?;
                let first = find_by_idempotency_key(&mut conn, new.customer_id, key)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Database(
                            "idempotency key clashed but no order holds it".to_owned(),
                        )
                    })?;
                Ok(Placed::Existing(first.try_into()?))
            }
            other => other,
        }
    }

    async fn order(&self, id: OrderId) -> StoreResult<Order> {
        sqlx::query_as::<_, OrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("order"))?
        .try_into()
    }

    async fn customer_orders(
        &self,
        customer: CustomerId,
        ids: &[OrderId],
    ) -> StoreResult<Vec<Order>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let rows: Vec<OrderRow> = sqlx::query_as(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE customer_id = $1 AND id = ANY($2) ORDER BY id"
        ))
        .bind(customer.0)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn customer_order_statuses(
        &self,
        customer: CustomerId,
        ids: &[OrderId],
    ) -> StoreResult<Vec<OrderStatusView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let rows: Vec<crate::rows::OrderStatusRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM orders WHERE customer_id = $1 AND id = ANY($2) ORDER BY id",
            crate::rows::ORDER_STATUS_COLUMNS
        )))
        .bind(customer.0)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn list_orders(&self, filter: &OrderFilter) -> StoreResult<Vec<Order>> {
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE TRUE"
        ));
        if let Some(customer) = filter.customer_id {
            query.push(" AND customer_id = ").push_bind(customer.0);
        }
        if let Some(state) = filter.forward_state {
            query
                .push(" AND forward_state = ")
                .push_bind(state.as_str());
        }
        if let Some(status) = &filter.status {
            query
                .push(" AND status = ")
                .push_bind(crate::rows::order_status_text(status).0.to_owned());
        }
        if let Some(provider) = &filter.provider {
            query.push(" AND provider = ").push_bind(provider.clone());
        }
        if let Some(link) = &filter.link {
            query.push(" AND link = ").push_bind(link.clone());
        }
        if let Some(before) = filter.before_id {
            query.push(" AND id < ").push_bind(before.0);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_or_default(filter.limit));
        let rows: Vec<OrderRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        convert_all(rows)
    }

    async fn count_by_status(&self) -> StoreResult<Vec<(String, i64)>> {
        sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn count_by_forward_state(&self) -> StoreResult<Vec<(ForwardState, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT forward_state, COUNT(*) FROM orders GROUP BY forward_state")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        let mut counts: Vec<(ForwardState, i64)> =
            ForwardState::ALL.iter().map(|&state| (state, 0)).collect();
        for (text, count) in rows {
            let state = forward_state(&text)?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = count;
            }
        }
        Ok(counts)
    }

    async fn claim_for_forwarding(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Order>> {
        let mut rows: Vec<OrderRow> = sqlx::query_as(concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM orders \
                 WHERE forward_state = 'queued' AND forward_after <= $2 \
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE orders SET forward_state = 'sending', claimed_by = $1, claimed_at = $2, \
             forward_attempts = forward_attempts + 1, updated_at = $2 \
             FROM picked WHERE id = picked_id \
             RETURNING ",
            order_columns!()
        ))
        .bind(worker)
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.sort_by_key(|row| row.id);
        convert_all(rows)
    }

    async fn begin_attempt(
        &self,
        order: OrderId,
        provider: &str,
        upstream_service: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let result = note_attempt(&mut tx, order, provider, upstream_service, now).await;
        settle(tx, result).await
    }

    async fn begin_attempts(&self, attempts: &[AttemptStart], now: Timestamp) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        // Locked in id order, like every multi-row lock here: no deadlock with another batch.
        let mut sorted: Vec<&AttemptStart> = attempts.iter().collect();
        sorted.sort_by_key(|a| a.order);
        let mut tx = self.begin().await?;
        let result = async {
            for a in sorted {
                note_attempt(&mut tx, a.order, &a.provider, &a.upstream_service, now).await?;
            }
            Ok(())
        }
        .await;
        settle(tx, result).await
    }

    async fn finish_attempt(
        &self,
        order: OrderId,
        outcome: ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<Order> {
        let (attempt_outcome, detail) = match &outcome {
            ForwardOutcome::Sent { .. } => ("sent", None),
            ForwardOutcome::Ambiguous { detail } => ("ambiguous", Some(detail.as_str())),
            ForwardOutcome::Failed {
                not_sent: true,
                detail,
            } => ("not_sent", Some(detail.as_str())),
            ForwardOutcome::Failed {
                not_sent: false,
                detail,
            } => ("rejected", Some(detail.as_str())),
        };
        let mut tx = self.begin().await?;
        // The handoff is a clash of upstream ids: (provider, upstream order id).
        let result: Result<OrderRow, Abort<(String, &str)>> = async {
            let row = lock_order(&mut tx, order).await?;
            require_state(&row, &[ForwardState::Sending], "finish an attempt for")?;
            let Some((provider, upstream_service)) =
                close_pending_attempt(&mut tx, order, attempt_outcome, detail, now).await?
            else {
                return Err(StoreError::InvalidState(format!(
                    "order {order} has no pending forward attempt"
                ))
                .into());
            };
            let updated: OrderRow = match &outcome {
                ForwardOutcome::Sent {
                    upstream_order_id,
                    upstream_cost,
                    next_poll_at,
                } => {
                    let sent = sqlx::query_as(concat!(
                        "UPDATE orders SET forward_state = 'sent', provider = $2, \
                         upstream_service = $3, upstream_order_id = $4, upstream_cost = $5, \
                         forwarded_at = $6, next_poll_at = $7, forward_error = NULL, \
                         updated_at = $6 WHERE id = $1 RETURNING ",
                        order_columns!()
                    ))
                    .bind(order.0)
                    .bind(&provider)
                    .bind(&upstream_service)
                    .bind(upstream_order_id)
                    .bind(upstream_cost.map(|c| c.to_string()))
                    .bind(now)
                    .bind(next_poll_at)
                    .fetch_one(&mut *tx)
                    .await;
                    match sent {
                        // Dealt with after the rollback, in a transaction of its own.
                        Err(e) if is_unique_violation(&e, UPSTREAM_INDEX) => {
                            return Err(Abort::Handoff((provider, upstream_order_id.as_str())));
                        }
                        other => other.map_err(db_err)?,
                    }
                }
                ForwardOutcome::Ambiguous { detail } => sqlx::query_as(concat!(
                    "UPDATE orders SET forward_state = 'ambiguous', forward_error = $2, \
                     updated_at = $3 WHERE id = $1 RETURNING ",
                    order_columns!()
                ))
                .bind(order.0)
                .bind(detail)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?,
                ForwardOutcome::Failed { detail, .. } => sqlx::query_as(concat!(
                    "UPDATE orders SET forward_error = $2, updated_at = $3 WHERE id = $1 \
                     RETURNING ",
                    order_columns!()
                ))
                .bind(order.0)
                .bind(detail)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?,
            };
            Ok(updated)
        }
        .await;
        match settle(tx, result).await {
            Ok(updated) => updated.try_into(),
            Err(Abort::Error(e)) => Err(e),
            Err(Abort::Handoff((provider, upstream_order_id))) => {
                self.upstream_clash(order, &provider, upstream_order_id, now)
                    .await
            }
        }
    }

    async fn requeue(
        &self,
        order: OrderId,
        not_before: Timestamp,
        detail: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_order(&mut tx, order).await?;
            require_state(&row, &[ForwardState::Sending], "requeue")?;
            require_no_pending_attempt(&mut tx, order).await?;
            sqlx::query(
                "UPDATE orders SET forward_state = 'queued', forward_after = $2, \
                 forward_error = $3, claimed_by = NULL, claimed_at = NULL, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(order.0)
            .bind(not_before)
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            Ok(())
        }
        .await;
        settle(tx, result).await
    }

    async fn reject_order(
        &self,
        order: OrderId,
        detail: &str,
        now: Timestamp,
    ) -> StoreResult<Money> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_order(&mut tx, order).await?;
            require_state(
                &row,
                &[ForwardState::Sending, ForwardState::Queued],
                "reject",
            )?;
            require_no_pending_attempt(&mut tx, order).await?;
            let reason = format!("refund: order {order} rejected upstream ({detail})");
            let refund =
                cancel_and_refund(&mut tx, &row, detail, &reason, "forwarder", now).await?;
            Ok(refund)
        }
        .await;
        settle(tx, result).await
    }

    async fn recover_sending(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<OrderId>> {
        let mut tx = self.begin().await?;
        let result = async {
            // SKIP LOCKED: a live worker in the middle of finishing an attempt is left alone.
            let ids: Vec<i64> = sqlx::query_scalar(
                "WITH stale AS MATERIALIZED ( \
                     SELECT id AS stale_id FROM orders WHERE forward_state = 'sending' \
                     AND (claimed_at IS NULL OR claimed_at < $1) FOR UPDATE SKIP LOCKED) \
                 UPDATE orders SET forward_state = 'ambiguous', \
                 forward_error = 'found in sending after claim by ' \
                     || COALESCE(claimed_by, 'an unknown worker') || ' expired', \
                 updated_at = $2 \
                 FROM stale WHERE id = stale_id \
                 RETURNING id",
            )
            .bind(claimed_before)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            if !ids.is_empty() {
                sqlx::query(
                    "UPDATE forward_attempts SET outcome = 'ambiguous', finished_at = $2, \
                     detail = COALESCE(detail, 'the worker stopped before recording an outcome') \
                     WHERE order_id = ANY($1) AND outcome = 'pending'",
                )
                .bind(&ids)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(ids)
        }
        .await;
        let mut ids = settle(tx, result).await?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(OrderId).collect())
    }

    async fn attempts(&self, order: OrderId) -> StoreResult<Vec<ForwardAttempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM forward_attempts WHERE order_id = $1 ORDER BY id"
        ))
        .bind(order.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(ForwardAttempt::from).collect())
    }

    async fn attach_upstream_order(
        &self,
        order: OrderId,
        provider: &str,
        upstream_order_id: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Order> {
        if provider.trim().is_empty() || upstream_order_id.trim().is_empty() {
            return Err(StoreError::Invalid(
                "a provider and an upstream order id are required".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let result = async {
            let before = lock_order(&mut tx, order).await?;
            require_state(
                &before,
                &[ForwardState::Ambiguous],
                "attach an upstream order to",
            )?;
            let after: OrderRow = sqlx::query_as(concat!(
                "UPDATE orders SET provider = $2, upstream_order_id = $3, forward_state = 'sent', \
                 forwarded_at = COALESCE(forwarded_at, $4), next_poll_at = $4, \
                 forward_error = NULL, updated_at = $4 WHERE id = $1 RETURNING ",
                order_columns!()
            ))
            .bind(order.0)
            .bind(provider)
            .bind(upstream_order_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e, UPSTREAM_INDEX) {
                    StoreError::Conflict(format!(
                        "upstream order id {upstream_order_id} at {provider} already belongs to \
                         another order"
                    ))
                } else {
                    db_err(e)
                }
            })?;
            insert_audit(
                &mut tx,
                actor,
                "order.attach_upstream",
                &order_target(order.0),
                Some(&order_summary(&before)),
                Some(&order_summary(&after)),
                now,
            )
            .await?;
            Ok(after)
        }
        .await;
        settle(tx, result).await?.try_into()
    }

    async fn cancel_ambiguous(
        &self,
        order: OrderId,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Money> {
        let mut tx = self.begin().await?;
        let result = async {
            let before = lock_order(&mut tx, order).await?;
            require_state(&before, &[ForwardState::Ambiguous], "cancel")?;
            let ledger_reason = format!("refund: ambiguous order {order} canceled ({reason})");
            let error = format!("canceled by {actor}: {reason}");
            let refund =
                cancel_and_refund(&mut tx, &before, &error, &ledger_reason, actor, now).await?;
            let after = json!({
                "forward_state": ForwardState::Rejected.as_str(),
                "status": OrderStatus::Canceled.as_str(),
                "refund": refund.to_string(),
                "reason": reason,
            })
            .to_string();
            insert_audit(
                &mut tx,
                actor,
                "order.cancel_ambiguous",
                &order_target(order.0),
                Some(&order_summary(&before)),
                Some(&after),
                now,
            )
            .await?;
            Ok(refund)
        }
        .await;
        settle(tx, result).await
    }

    // ---- polling -----------------------------------------------------------------------------

    async fn claim_polls(
        &self,
        provider: Option<&str>,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<PollItem>> {
        let mut rows: Vec<PollRow> = sqlx::query_as(
            "WITH due AS MATERIALIZED ( \
                 SELECT id, next_poll_at FROM orders \
                 WHERE forward_state = 'sent' AND NOT (status = ANY($1)) \
                 AND next_poll_at <= $2 AND upstream_order_id IS NOT NULL \
                 AND ($3::TEXT IS NULL OR provider = $3) \
                 ORDER BY next_poll_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE orders AS o SET next_poll_at = $5 FROM due WHERE o.id = due.id \
             RETURNING o.id, o.provider, o.upstream_order_id, o.status, o.status_raw, \
                 o.created_at, due.next_poll_at AS due_at",
        )
        .bind(&TERMINAL_STATUSES[..])
        .bind(now)
        .bind(provider)
        .bind(limit_or_default(limit))
        .bind(lease_until)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.sort_by_key(|row| (row.due_at, row.id));
        convert_all(rows)
    }

    async fn apply_status(
        &self,
        provider: &str,
        upstream_order_id: &str,
        update: StatusUpdate,
        now: Timestamp,
    ) -> StoreResult<Option<StatusApplied>> {
        let mut tx = self.begin().await?;
        // The handoff is the order whose second refund the index refused.
        let result: Result<Option<StatusApplied>, Abort<OrderId>> = async {
            let row: Option<OrderRow> = sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE provider = $1 AND upstream_order_id = $2 FOR UPDATE"
            ))
            .bind(provider)
            .bind(upstream_order_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let order_id = OrderId(row.id);
            let current = Order::try_from(row)?;
            if current.status.is_terminal() {
                return Ok(Some(StatusApplied {
                    order_id,
                    refund: None,
                    terminal: true,
                }));
            }

            let terminal = update.status.is_terminal();
            let (status, status_raw) = order_status_text(&update.status);
            let row: OrderRow = sqlx::query_as(concat!(
                "UPDATE orders SET status = $2, status_raw = $3, \
                 start_count = COALESCE($4, start_count), remains = COALESCE($5, remains), \
                 extra = COALESCE($6, extra), next_poll_at = $7, updated_at = $8 \
                 WHERE id = $1 RETURNING ",
                order_columns!()
            ))
            .bind(order_id.0)
            .bind(status)
            .bind(status_raw)
            .bind(update.start_count)
            .bind(update.remains)
            .bind(update.extra.as_deref())
            .bind((!terminal).then_some(update.next_poll_at))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;

            // Only this report's `remains` counts: a stale one from an earlier poll could overpay.
            let due = refund_due(
                &update.status,
                current.charge,
                current.units,
                update.remains,
            );
            let owed = due
                .checked_sub(current.refunded)
                .filter(|owed| owed.is_positive());
            if let Some(owed) = owed {
                let reason = match (&update.status, update.remains) {
                    (OrderStatus::Partial, Some(remains)) => {
                        format!("refund: Partial, remains {remains} of {}", current.units)
                    }
                    (status, _) => format!("refund: {}", status.as_str()),
                };
                match pay_refund(&mut tx, &row, owed, &reason, "reconciler", now).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(constraint)) if constraint == ONE_REFUND_INDEX => {
                        return Err(Abort::Handoff(order_id));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Some(StatusApplied {
                order_id,
                refund: owed,
                terminal,
            }))
        }
        .await;
        match settle(tx, result).await {
            Ok(applied) => Ok(applied),
            Err(Abort::Error(e)) => Err(e),
            // The index forbids a second refund: whatever happened, never pay twice.
            Err(Abort::Handoff(order_id)) => {
                let stored = self.order(order_id).await?;
                tracing::warn!(
                    order = %order_id,
                    "a second refund was refused by ledger_one_refund; status not applied"
                );
                Ok(Some(StatusApplied {
                    order_id,
                    refund: None,
                    terminal: stored.status.is_terminal(),
                }))
            }
        }
    }

    async fn apply_statuses(
        &self,
        provider: &str,
        updates: Vec<(String, StatusUpdate)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Option<StatusApplied>>> {
        const UPDATE_POLLED: &str = "UPDATE orders SET status = $1, status_raw = $2, \
             start_count = COALESCE($3, start_count), remains = COALESCE($4, remains), \
             extra = COALESCE($5, extra), next_poll_at = $6, updated_at = $7 WHERE id = $8";
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<String> = updates.iter().map(|(id, _)| id.clone()).collect();
        let mut tx = self.begin().await?;
        let result: StoreResult<(Vec<Option<StatusApplied>>, Vec<usize>)> = async {
            // Locked in id order, like every other multi-row lock here, so two pollers of the
            // same batch cannot deadlock.
            let rows: Vec<OrderRow> = sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE provider = $1 AND upstream_order_id = ANY($2) \
                 ORDER BY id FOR UPDATE"
            ))
            .bind(provider)
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            let orders: Vec<Order> = convert_all(rows)?;
            let by_upstream: std::collections::HashMap<&str, &Order> = orders
                .iter()
                .filter_map(|o| o.upstream_order_id.as_deref().map(|u| (u, o)))
                .collect();
            let mut results: Vec<Option<StatusApplied>> = vec![None; updates.len()];
            let mut with_refund = Vec::new();
            for (index, (upstream_order_id, update)) in updates.iter().enumerate() {
                let Some(order) = by_upstream.get(upstream_order_id.as_str()) else {
                    continue;
                };
                if order.status.is_terminal() {
                    results[index] = Some(StatusApplied {
                        order_id: order.id,
                        refund: None,
                        terminal: true,
                    });
                    continue;
                }
                let due = refund_due(&update.status, order.charge, order.units, update.remains);
                if due
                    .checked_sub(order.refunded)
                    .is_some_and(|owed| owed.is_positive())
                {
                    with_refund.push(index);
                    continue;
                }
                if update.status == OrderStatus::Partial && update.remains.is_none() {
                    tracing::warn!(
                        order = order.id.0,
                        provider,
                        upstream_order_id = upstream_order_id.as_str(),
                        "Partial without remains: no refund computed, check the order by hand"
                    );
                }
                let terminal = update.status.is_terminal();
                let (status, status_raw) = order_status_text(&update.status);
                sqlx::query(UPDATE_POLLED)
                    .bind(status)
                    .bind(status_raw)
                    .bind(update.start_count)
                    .bind(update.remains)
                    .bind(update.extra.as_deref())
                    .bind((!terminal).then_some(update.next_poll_at))
                    .bind(now)
                    .bind(order.id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                results[index] = Some(StatusApplied {
                    order_id: order.id,
                    refund: None,
                    terminal,
                });
            }
            Ok((results, with_refund))
        }
        .await;
        let (mut results, with_refund) = match result {
            Ok(results) => {
                tx.commit().await.map_err(db_err)?;
                results
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        // Refunds one by one, through the one-refund path.
        for index in with_refund {
            let (upstream_order_id, update) = &updates[index];
            results[index] = self
                .apply_status(provider, upstream_order_id, update.clone(), now)
                .await?;
        }
        Ok(results)
    }

    async fn defer_polls(&self, orders: &[OrderId], next_poll_at: Timestamp) -> StoreResult<()> {
        if orders.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = orders.iter().map(|id| id.0).collect();
        sqlx::query(
            "UPDATE orders SET next_poll_at = $2 WHERE id = ANY($1) AND forward_state = 'sent' \
             AND next_poll_at IS NOT NULL AND NOT (status = ANY($3))",
        )
        .bind(ids)
        .bind(next_poll_at)
        .bind(&TERMINAL_STATUSES[..])
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    // ---- refills and cancels -----------------------------------------------------------------

    async fn create_refill(
        &self,
        customer: CustomerId,
        order: OrderId,
        now: Timestamp,
    ) -> StoreResult<Refill> {
        sqlx::query_as::<_, RefillRow>(concat!(
            "INSERT INTO refills (order_id, customer_id, provider, status, forward_state, \
             created_at, updated_at) \
             SELECT id, customer_id, provider, 'Pending', 'queued', $3, $3 FROM orders \
             WHERE id = $1 AND customer_id = $2 RETURNING ",
            refill_columns!()
        ))
        .bind(order.0)
        .bind(customer.0)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("order"))?
        .try_into()
    }

    async fn update_refill(
        &self,
        id: RefillId,
        update: RefillUpdate,
        now: Timestamp,
    ) -> StoreResult<Refill> {
        let (status, status_raw) = match &update.status {
            Some(status) => {
                let (text, raw) = refill_status_text(status);
                (Some(text), raw)
            }
            None => (None, None),
        };
        sqlx::query_as::<_, RefillRow>(concat!(
            "UPDATE refills SET provider = COALESCE($2, provider), \
             upstream_refill_id = COALESCE($3, upstream_refill_id), \
             status = COALESCE($4, status), \
             status_raw = CASE WHEN $4::TEXT IS NULL THEN status_raw ELSE $5 END, \
             forward_state = COALESCE($6, forward_state), error = COALESCE($7, error), \
             updated_at = $8 WHERE id = $1 RETURNING ",
            refill_columns!()
        ))
        .bind(id.0)
        .bind(update.provider.as_deref())
        .bind(update.upstream_refill_id.as_deref())
        .bind(status)
        .bind(status_raw)
        .bind(update.forward_state.map(ForwardState::as_str))
        .bind(update.error.as_deref())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("refill"))?
        .try_into()
    }

    async fn customer_refills(
        &self,
        customer: CustomerId,
        ids: &[RefillId],
    ) -> StoreResult<Vec<Refill>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE customer_id = $1 AND id = ANY($2) ORDER BY id"
        ))
        .bind(customer.0)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn refills_in_state(&self, state: ForwardState, limit: u32) -> StoreResult<Vec<Refill>> {
        let rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE forward_state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn unfinished_refills(&self, limit: u32) -> StoreResult<Vec<Refill>> {
        let rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE forward_state = 'sent' \
             AND status NOT IN ('Completed', 'Rejected', 'Canceled') ORDER BY id LIMIT $1"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn claim_refills(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Refill>> {
        // The same MATERIALIZED + SKIP LOCKED claim as `claim_for_forwarding` (module docs).
        let mut rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM refills WHERE forward_state = 'queued' \
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE refills SET forward_state = 'sending', claimed_by = $1, claimed_at = $2, \
             updated_at = $2 FROM picked WHERE id = picked_id RETURNING ",
            refill_columns!()
        ))
        .bind(worker)
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.sort_by_key(|row| row.id);
        convert_all(rows)
    }

    async fn recover_sending_refills(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<RefillId>> {
        // A row marked `sending` before claims were recorded has no `claimed_at`: its
        // `updated_at` is when it was marked. SKIP LOCKED leaves a live worker's write alone.
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "WITH stale AS MATERIALIZED ( \
                 SELECT id AS stale_id FROM refills WHERE forward_state = 'sending' \
                 AND COALESCE(claimed_at, updated_at) < $1 FOR UPDATE SKIP LOCKED) \
             UPDATE refills SET forward_state = 'ambiguous', \
             error = 'found in sending after the claim by ' \
                 || COALESCE(claimed_by, 'an unknown worker') \
                 || ' expired: the upstream may have it, so it is not sent again', \
             updated_at = $2 FROM stale WHERE id = stale_id RETURNING id",
        )
        .bind(claimed_before)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(RefillId).collect())
    }

    async fn request_cancel(
        &self,
        customer: CustomerId,
        order: OrderId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome> {
        let mut tx = self.begin().await?;
        let result = async {
            let row: OrderRow = sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id = $1 AND customer_id = $2 FOR UPDATE"
            ))
            .bind(order.0)
            .bind(customer.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("order"))?;
            let state = forward_state(&row.forward_state)?;
            let status = order_status_from_text(&row.status, row.status_raw.clone())?;
            let outcome = match state {
                ForwardState::Queued => {
                    let refund = cancel_and_refund(
                        &mut tx,
                        &row,
                        "canceled by the customer before forwarding",
                        "canceled before forwarding",
                        "customer",
                        now,
                    )
                    .await?;
                    CancelOutcome::CanceledLocally { refund }
                }
                ForwardState::Sent if !status.is_terminal() => {
                    let inserted: Option<CancelRow> = sqlx::query_as(concat!(
                        "INSERT INTO cancel_requests (order_id, customer_id, forward_state, \
                         created_at, updated_at) VALUES ($1, $2, 'queued', $3, $3) \
                         ON CONFLICT (order_id) DO NOTHING RETURNING ",
                        cancel_columns!()
                    ))
                    .bind(order.0)
                    .bind(customer.0)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    let request = match inserted {
                        Some(request) => request,
                        None => sqlx::query_as(concat!(
                            "SELECT ",
                            cancel_columns!(),
                            " FROM cancel_requests WHERE order_id = $1"
                        ))
                        .bind(order.0)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?,
                    };
                    CancelOutcome::Requested(request.try_into()?)
                }
                _ => {
                    return Err(StoreError::InvalidState(format!(
                        "order {order} cannot be canceled: it is {} with status {}",
                        state.as_str(),
                        row.status
                    )));
                }
            };
            Ok(outcome)
        }
        .await;
        settle(tx, result).await
    }

    async fn update_cancel(
        &self,
        id: i64,
        state: ForwardState,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<CancelRequest> {
        sqlx::query_as::<_, CancelRow>(concat!(
            "UPDATE cancel_requests SET forward_state = $2, error = $3, updated_at = $4 \
             WHERE id = $1 RETURNING ",
            cancel_columns!()
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("cancel request"))?
        .try_into()
    }

    async fn cancels_in_state(
        &self,
        state: ForwardState,
        limit: u32,
    ) -> StoreResult<Vec<CancelRequest>> {
        let rows: Vec<CancelRow> = sqlx::query_as(concat!(
            "SELECT ",
            cancel_columns!(),
            " FROM cancel_requests WHERE forward_state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn claim_cancels(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<CancelRequest>> {
        let mut rows: Vec<CancelRow> = sqlx::query_as(concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM cancel_requests WHERE forward_state = 'queued' \
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE cancel_requests SET forward_state = 'sending', claimed_by = $1, \
             claimed_at = $2, updated_at = $2 FROM picked WHERE id = picked_id RETURNING ",
            cancel_columns!()
        ))
        .bind(worker)
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.sort_by_key(|row| row.id);
        convert_all(rows)
    }

    async fn recover_sending_cancels(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "WITH stale AS MATERIALIZED ( \
                 SELECT id AS stale_id FROM cancel_requests WHERE forward_state = 'sending' \
                 AND COALESCE(claimed_at, updated_at) < $1 FOR UPDATE SKIP LOCKED) \
             UPDATE cancel_requests SET forward_state = 'ambiguous', \
             error = 'found in sending after the claim by ' \
                 || COALESCE(claimed_by, 'an unknown worker') \
                 || ' expired: the upstream may have it, so it is not sent again', \
             updated_at = $2 FROM stale WHERE id = stale_id RETURNING id",
        )
        .bind(claimed_before)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        ids.sort_unstable();
        Ok(ids)
    }

    // ---- catalog and audit -------------------------------------------------------------------

    async fn service_id(&self, provider: &str, upstream_service: &str) -> StoreResult<ServiceId> {
        const SELECT: &str =
            "SELECT id FROM service_ids WHERE provider = $1 AND upstream_service = $2";
        let existing: Option<i64> = sqlx::query_scalar(SELECT)
            .bind(provider)
            .bind(upstream_service)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        if let Some(id) = existing {
            return Ok(ServiceId(id));
        }
        // Looked up first so that known pairs do not burn identity values.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO service_ids (provider, upstream_service) VALUES ($1, $2) \
             ON CONFLICT (provider, upstream_service) DO NOTHING RETURNING id",
        )
        .bind(provider)
        .bind(upstream_service)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let id = match inserted {
            Some(id) => id,
            // A concurrent caller inserted it first (and has committed: ON CONFLICT waited).
            None => sqlx::query_scalar(SELECT)
                .bind(provider)
                .bind(upstream_service)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?,
        };
        Ok(ServiceId(id))
    }

    async fn service_ids(&self) -> StoreResult<Vec<(ServiceId, String, String)>> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, provider, upstream_service FROM service_ids ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(id, provider, service)| (ServiceId(id), provider, service))
            .collect())
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        before: Option<&str>,
        after: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        insert_audit(&mut conn, actor, action, target, before, after, now).await
    }

    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    async fn save_provider_catalog(
        &self,
        provider: &str,
        services_json: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO provider_catalogs (provider, services, synced_at) VALUES ($1, $2, $3) \
             ON CONFLICT (provider) DO UPDATE SET services = EXCLUDED.services, \
             synced_at = EXCLUDED.synced_at",
        )
        .bind(provider)
        .bind(services_json)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn provider_catalogs(&self) -> StoreResult<Vec<(String, String, Timestamp)>> {
        sqlx::query_as(
            "SELECT provider, services, synced_at FROM provider_catalogs ORDER BY provider",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }
}
