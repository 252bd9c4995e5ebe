//! The SQLite implementation of [`Store`](crate::Store).
//!
//! # Connections
//!
//! SQLite serialises writers. Instead of letting several connections race for the write lock
//! (and sleep in busy handlers), the store keeps **one writer connection**, fed by the pool's
//! fair queue, for every transaction that writes, and a small pool of reader connections for
//! pure reads (WAL lets them run beside the writer). Every write transaction starts with
//! `BEGIN IMMEDIATE`, so the write lock is taken up front: another process writing the same
//! file (the CLI) makes us wait in the busy handler instead of failing a snapshot upgrade
//! half-way through. An in-memory database has a single connection for everything.
//!
//! Durability: WAL with `synchronous = FULL`, so a committed order survives a power loss.
//!
//! Every trait method is one transaction. A `Transaction` that is dropped (an error, a cancelled
//! future) is rolled back by sqlx before the connection is used again.

mod rows;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde_json::json;
use smm_wire::{Money, OrderStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use self::rows::PollRow;
use crate::rows::{
    AttemptRow, AuditRow, CancelRow, CustomerRow, LedgerRow, OrderRow, RefillRow, convert_all,
    corrupt, order_status_from_text, order_status_text, refill_status_text,
};
use crate::*;

// Column lists, as macros so that they splice into `&'static str` SQL with `concat!`.
macro_rules! customer_cols {
    () => {
        "id, name, status, currency, key_prefix, balance, discount, created_at"
    };
}
macro_rules! ledger_cols {
    () => {
        "id, customer_id, kind, amount, balance_after, order_id, reason, actor, created_at"
    };
}
macro_rules! order_cols {
    () => {
        "id, customer_id, service_id, service_type, params, link, quantity, units, charge, \
         refunded, status, status_raw, start_count, remains, extra, provider, upstream_service, \
         upstream_order_id, upstream_cost, forward_state, forward_attempts, forward_error, \
         claimed_by, claimed_at, forwarded_at, next_poll_at, idempotency_key, created_at, \
         updated_at"
    };
}
macro_rules! attempt_cols {
    () => {
        "order_id, provider, upstream_service, outcome, detail, started_at, finished_at"
    };
}
macro_rules! refill_cols {
    () => {
        "id, order_id, customer_id, provider, upstream_refill_id, status, status_raw, \
         forward_state, error, created_at, updated_at"
    };
}
macro_rules! cancel_cols {
    () => {
        "id, order_id, customer_id, forward_state, error, created_at, updated_at"
    };
}
macro_rules! audit_cols {
    () => {
        "id, actor, action, target, before, after, created_at"
    };
}
/// The stored texts of the terminal statuses ([`OrderStatus::is_terminal`]).
macro_rules! terminal_statuses {
    () => {
        "('Completed', 'Partial', 'Canceled', 'Refunded', 'Expired')"
    };
}

const READERS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller may queue for the writer (or a reader) before `Database("pool timed out")`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// `limit = 0` in a listing means this many.
const DEFAULT_LIMIT: i64 = 100;

/// The embedded store: one SQLite file (WAL), a single writer connection and a few readers.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every transaction that writes.
    writer: SqlitePool,
    /// Pure reads. The same pool as `writer` for an in-memory database.
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at `url`
    /// (`sqlite://data/smm-gateway.db`, `sqlite::memory:`) and runs the migrations.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("not a usable SQLite URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full);
        // WAL is a property of the file: the writer sets it once, readers inherit it.
        let writer_options = if in_memory {
            options.clone()
        } else {
            create_parent_dir(options.get_filename())?;
            options.clone().journal_mode(SqliteJournalMode::Wal)
        };

        // Never let the pool close the writer: for an in-memory database it *is* the database.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(writer_options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(format!("migrating the SQLite database: {e}")))?;

        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(db_err)?
        };
        Ok(SqliteStore { writer, reader })
    }

    /// Closes every connection (waiting for running transactions). For an orderly shutdown.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// A write transaction on the single writer connection, holding the write lock from the
    /// start.
    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    /// After `finish_attempt` hit an upstream id that another order already holds: the order is
    /// kept, as `ambiguous` with the clash explained, and the caller gets `Conflict`.
    async fn mark_upstream_clash(
        &self,
        order: OrderId,
        provider: &str,
        upstream_order_id: &str,
        now: Timestamp,
    ) -> StoreError {
        let result: StoreResult<String> = async {
            let mut tx = self.begin().await?;
            let holder: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM orders WHERE provider = ? AND upstream_order_id = ?",
            )
            .bind(provider)
            .bind(upstream_order_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let holder =
                holder.map_or_else(|| "another order".to_owned(), |id| format!("order {id}"));
            let message = format!(
                "upstream order id {upstream_order_id} at {provider} is already held by {holder}"
            );
            sqlx::query(
                "UPDATE orders SET forward_state = 'ambiguous', forward_error = ?, updated_at = ? \
                 WHERE id = ? AND forward_state = 'sending'",
            )
            .bind(&message)
            .bind(now)
            .bind(order.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            close_pending_attempts(&mut tx, order, "ambiguous", &message, now).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(message)
        }
        .await;
        match result {
            Ok(message) => {
                tracing::error!(order = order.0, %message, "upstream id clash; order is ambiguous");
                StoreError::Conflict(message)
            }
            Err(error) => {
                tracing::error!(order = order.0, %error, "could not mark an upstream id clash");
                error
            }
        }
    }
}

fn create_parent_dir(file: &Path) -> StoreResult<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|e| {
                StoreError::Database(format!("cannot create directory {}: {e}", dir.display()))
            }),
        _ => Ok(()),
    }
}

/// Translates an sqlx error into domain words. Unique rules are `Conflict`, `CHECK`s `Invalid`.
fn db_err(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::RowNotFound => StoreError::NotFound("row"),
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                StoreError::Conflict(db.constraint().unwrap_or(db.message()).to_owned())
            } else if db.is_check_violation() || db.is_foreign_key_violation() {
                StoreError::Invalid(db.message().to_owned())
            } else {
                StoreError::Database(db.to_string())
            }
        }
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }) => corrupt("row", e),
        other => StoreError::Database(other.to_string()),
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn to_i64(what: &str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} is too large: {value}")))
}

fn limit_or_default(limit: u32) -> i64 {
    if limit == 0 {
        DEFAULT_LIMIT
    } else {
        i64::from(limit)
    }
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`.
fn id_array(ids: impl IntoIterator<Item = i64>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    format!("[{}]", ids.join(","))
}

fn order_target(id: OrderId) -> String {
    format!("order:{id}")
}

fn customer_target(id: CustomerId) -> String {
    format!("customer:{id}")
}

// ---- helpers running inside a transaction ----------------------------------------------------

async fn customer_row(conn: &mut SqliteConnection, id: CustomerId) -> StoreResult<CustomerRow> {
    sqlx::query_as(concat!(
        "SELECT ",
        customer_cols!(),
        " FROM customers WHERE id = ?"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("customer"))
}

async fn order_row(conn: &mut SqliteConnection, id: OrderId) -> StoreResult<OrderRow> {
    sqlx::query_as(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE id = ?"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("order"))
}

async fn order_by_key(
    conn: &mut SqliteConnection,
    customer: CustomerId,
    key: &str,
) -> StoreResult<Option<OrderRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        order_cols!(),
        " FROM orders WHERE customer_id = ? AND idempotency_key = ?"
    ))
    .bind(customer.0)
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(db_err)
}

/// A pending attempt row for a `sending` order, and the claim renewed.
async fn note_attempt(
    conn: &mut SqliteConnection,
    order: OrderId,
    provider: &str,
    upstream_service: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let row = order_row(conn, order).await?;
    if row.forward_state != ForwardState::Sending.as_str() {
        return Err(StoreError::InvalidState(format!(
            "order {order} is {}, not sending",
            row.forward_state
        )));
    }
    sqlx::query(
        "INSERT INTO forward_attempts (order_id, provider, upstream_service, outcome, \
         started_at) VALUES (?, ?, ?, 'pending', ?)",
    )
    .bind(order.0)
    .bind(provider)
    .bind(upstream_service)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "UPDATE orders SET provider = ?1, upstream_service = ?2, updated_at = ?3, \
         claimed_at = ?3 WHERE id = ?4",
    )
    .bind(provider)
    .bind(upstream_service)
    .bind(now)
    .bind(order.0)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn write_audit(
    conn: &mut SqliteConnection,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&str>,
    after: Option<&str>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, before, after, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
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

/// One balance change: the customer's balance and the ledger row move together.
struct Posting<'a> {
    customer: CustomerId,
    kind: LedgerKind,
    /// Signed; never zero.
    amount: Money,
    order: Option<OrderId>,
    reason: &'a str,
    actor: &'a str,
    now: Timestamp,
}

/// Applies a posting. The balance moves only if it stays within `0..=Money::MAX`
/// (`InsufficientFunds` below zero).
async fn post(conn: &mut SqliteConnection, p: Posting<'_>) -> StoreResult<LedgerEntry> {
    let amount = p.amount.units();
    if amount == 0 || p.amount.abs() > Money::MAX {
        return Err(StoreError::Invalid(format!(
            "ledger amount out of range: {}",
            p.amount
        )));
    }
    let balance_after: Option<i64> = sqlx::query_scalar(
        "UPDATE customers SET balance = balance + ?1 \
         WHERE id = ?2 AND balance + ?1 >= 0 AND balance + ?1 <= ?3 RETURNING balance",
    )
    .bind(amount)
    .bind(p.customer.0)
    .bind(Money::MAX.units())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(balance_after) = balance_after else {
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM customers WHERE id = ?")
            .bind(p.customer.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        return Err(match balance {
            None => StoreError::NotFound("customer"),
            Some(balance) if balance.checked_add(amount).is_some_and(|b| b < 0) => {
                StoreError::InsufficientFunds
            }
            Some(_) => StoreError::Invalid(format!(
                "the balance would exceed the maximum of {}",
                Money::MAX
            )),
        });
    };
    let row: LedgerRow = sqlx::query_as(concat!(
        "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, actor, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
        ledger_cols!()
    ))
    .bind(p.customer.0)
    .bind(p.kind.as_str())
    .bind(amount)
    .bind(balance_after)
    .bind(p.order.map(|o| o.0))
    .bind(p.reason)
    .bind(p.actor)
    .bind(p.now)
    .fetch_one(conn)
    .await
    .map_err(db_err)?;
    LedgerEntry::try_from(row)
}

/// Closes every `pending` attempt of `order` with `outcome`.
async fn close_pending_attempts(
    conn: &mut SqliteConnection,
    order: OrderId,
    outcome: &str,
    detail: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE forward_attempts SET outcome = ?, detail = COALESCE(detail, ?), finished_at = ? \
         WHERE order_id = ? AND outcome = 'pending'",
    )
    .bind(outcome)
    .bind(detail)
    .bind(now)
    .bind(order.0)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn has_pending_attempt(conn: &mut SqliteConnection, order: OrderId) -> StoreResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM forward_attempts WHERE order_id = ? AND outcome = 'pending')",
    )
    .bind(order.0)
    .fetch_one(conn)
    .await
    .map_err(db_err)
}

/// Gives an order up locally: the whole unrefunded charge back as the order's one refund row,
/// status `Canceled`, `rejected`. Returns the refund.
async fn cancel_with_full_refund(
    conn: &mut SqliteConnection,
    order: &OrderRow,
    forward_error: Option<&str>,
    reason: &str,
    actor: &str,
    now: Timestamp,
) -> StoreResult<Money> {
    if order.refunded != 0 {
        return Err(StoreError::InvalidState(format!(
            "order {} was already refunded",
            order.id
        )));
    }
    let refund = Money::from_units(order.charge);
    if refund.is_positive() {
        post(
            &mut *conn,
            Posting {
                customer: CustomerId(order.customer_id),
                kind: LedgerKind::Refund,
                amount: refund,
                order: Some(OrderId(order.id)),
                reason,
                actor,
                now,
            },
        )
        .await?;
    }
    sqlx::query(
        "UPDATE orders SET refunded = charge, status = 'Canceled', status_raw = NULL, \
         forward_state = 'rejected', forward_error = COALESCE(?, forward_error), \
         next_poll_at = NULL, updated_at = ? WHERE id = ?",
    )
    .bind(forward_error)
    .bind(now)
    .bind(order.id)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(refund)
}

/// A small JSON summary of an order for the audit log.
fn order_summary(order: &OrderRow) -> serde_json::Value {
    json!({
        "forward_state": order.forward_state,
        "status": order.status,
        "provider": order.provider,
        "upstream_order_id": order.upstream_order_id,
        "charge": Money::from_units(order.charge).to_string(),
        "refunded": Money::from_units(order.refunded).to_string(),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // ---- customers and money -------------------------------------------------------------

    async fn create_customer(
        &self,
        new: NewCustomer,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin().await?;
        let row: CustomerRow = sqlx::query_as(concat!(
            "INSERT INTO customers (name, status, currency, key_hash, key_prefix, balance, \
             created_at) VALUES (?, 'active', ?, ?, ?, 0, ?) RETURNING ",
            customer_cols!()
        ))
        .bind(&new.name)
        .bind(&new.currency)
        .bind(&new.key_hash)
        .bind(&new.key_prefix)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let customer = Customer::try_from(row)?;
        let after = json!({
            "name": customer.name,
            "currency": customer.currency,
            "key_prefix": customer.key_prefix,
            "status": customer.status.as_str(),
        })
        .to_string();
        write_audit(
            &mut tx,
            actor,
            "customer.create",
            &customer_target(customer.id),
            None,
            Some(&after),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(customer)
    }

    async fn customer(&self, id: CustomerId) -> StoreResult<Customer> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        customer_row(&mut conn, id).await?.try_into()
    }

    async fn customer_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Customer>> {
        let row: Option<CustomerRow> = sqlx::query_as(concat!(
            "SELECT ",
            customer_cols!(),
            " FROM customers WHERE key_hash = ?"
        ))
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.map(Customer::try_from).transpose()
    }

    async fn list_customers(&self) -> StoreResult<Vec<Customer>> {
        let rows: Vec<CustomerRow> = sqlx::query_as(concat!(
            "SELECT ",
            customer_cols!(),
            " FROM customers ORDER BY id"
        ))
        .fetch_all(&self.reader)
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
        let mut tx = self.begin().await?;
        let before = customer_row(&mut tx, id).await?;
        let row: CustomerRow = sqlx::query_as(concat!(
            "UPDATE customers SET status = ? WHERE id = ? RETURNING ",
            customer_cols!()
        ))
        .bind(status.as_str())
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let customer = Customer::try_from(row)?;
        write_audit(
            &mut tx,
            actor,
            "customer.status",
            &customer_target(id),
            Some(&json!({ "status": before.status }).to_string()),
            Some(&json!({ "status": status.as_str() }).to_string()),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(customer)
    }

    async fn rotate_key(
        &self,
        id: CustomerId,
        key_hash: &str,
        key_prefix: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin().await?;
        let before = customer_row(&mut tx, id).await?;
        let row: CustomerRow = sqlx::query_as(concat!(
            "UPDATE customers SET key_hash = ?, key_prefix = ? WHERE id = ? RETURNING ",
            customer_cols!()
        ))
        .bind(key_hash)
        .bind(key_prefix)
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("the key is already in use by a customer".to_owned())
            }
            other => other,
        })?;
        let customer = Customer::try_from(row)?;
        // Only prefixes: the key and its hash never go into the audit log.
        write_audit(
            &mut tx,
            actor,
            "customer.rotate_key",
            &customer_target(id),
            Some(&json!({ "key_prefix": before.key_prefix }).to_string()),
            Some(&json!({ "key_prefix": key_prefix }).to_string()),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(customer)
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
        let mut tx = self.begin().await?;
        let before = customer_row(&mut tx, id).await?;
        let row: CustomerRow = sqlx::query_as(concat!(
            "UPDATE customers SET discount = ? WHERE id = ? RETURNING ",
            customer_cols!()
        ))
        .bind(discount.map(|d| d.to_string()))
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let customer = Customer::try_from(row)?;
        write_audit(
            &mut tx,
            actor,
            "customer.discount",
            &customer_target(id),
            Some(&json!({ "discount": before.discount }).to_string()),
            Some(&json!({ "discount": discount.map(|d| d.to_string()) }).to_string()),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(customer)
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
        {
            return Err(StoreError::Invalid(format!(
                "a rate cannot be negative: {r}"
            )));
        }
        let mut tx = self.begin().await?;
        customer_row(&mut tx, id).await?;
        let old: Option<String> = sqlx::query_scalar(
            "SELECT rate FROM customer_rates WHERE customer_id = ? AND service_id = ?",
        )
        .bind(id.0)
        .bind(service.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        match rate {
            Some(rate) => sqlx::query(
                "INSERT INTO customer_rates (customer_id, service_id, rate) VALUES (?, ?, ?) \
                 ON CONFLICT (customer_id, service_id) DO UPDATE SET rate = excluded.rate",
            )
            .bind(id.0)
            .bind(service.0)
            .bind(rate.to_string()),
            None => {
                sqlx::query("DELETE FROM customer_rates WHERE customer_id = ? AND service_id = ?")
                    .bind(id.0)
                    .bind(service.0)
            }
        }
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        write_audit(
            &mut tx,
            actor,
            "customer.rate",
            &customer_target(id),
            Some(&json!({ "service": service.0, "rate": old }).to_string()),
            Some(&json!({ "service": service.0, "rate": rate.map(|r| r.to_string()) }).to_string()),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn customer_rates(&self, id: CustomerId) -> StoreResult<Vec<(ServiceId, Decimal)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT service_id, rate FROM customer_rates WHERE customer_id = ? ORDER BY service_id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(service, rate)| {
                Decimal::from_str(&rate)
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
        if !matches!(kind, LedgerKind::Deposit | LedgerKind::Adjustment) {
            return Err(StoreError::Invalid(format!(
                "a balance adjustment is a deposit or an adjustment, not a {}",
                kind.as_str()
            )));
        }
        if amount == Money::ZERO {
            return Err(StoreError::Invalid("the amount is zero".to_owned()));
        }
        if amount.abs() > Money::MAX {
            return Err(StoreError::Invalid(format!(
                "the amount exceeds the maximum of {}",
                Money::MAX
            )));
        }
        if kind == LedgerKind::Deposit && amount.is_negative() {
            return Err(StoreError::Invalid(
                "a deposit must be positive (use an adjustment to debit)".to_owned(),
            ));
        }
        let mut tx = self.begin().await?;
        let before = customer_row(&mut tx, id).await?;
        let entry = post(
            &mut tx,
            Posting {
                customer: id,
                kind,
                amount,
                order: None,
                reason,
                actor,
                now,
            },
        )
        .await?;
        let action = if amount.is_positive() {
            "customer.credit"
        } else {
            "customer.debit"
        };
        write_audit(
            &mut tx,
            actor,
            action,
            &customer_target(id),
            Some(&json!({ "balance": Money::from_units(before.balance).to_string() }).to_string()),
            Some(
                &json!({
                    "balance": entry.balance_after.to_string(),
                    "amount": amount.to_string(),
                    "kind": kind.as_str(),
                    "reason": reason,
                    "ledger_id": entry.id,
                })
                .to_string(),
            ),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(entry)
    }

    async fn ledger(
        &self,
        id: CustomerId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let rows: Vec<LedgerRow> = sqlx::query_as(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE customer_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(id.0)
        .bind(before)
        .bind(before)
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn ledger_sum(&self, id: CustomerId) -> StoreResult<Money> {
        let sum: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE customer_id = ?")
                .bind(id.0)
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?;
        Ok(Money::from_units(sum))
    }

    // ---- orders ----------------------------------------------------------------------------

    async fn place_order(&self, new: NewOrder, now: Timestamp) -> StoreResult<Placed> {
        if new.charge.is_negative() || new.charge > Money::MAX {
            return Err(StoreError::Invalid(format!(
                "charge out of range: {}",
                new.charge
            )));
        }
        let units = to_i64("units", new.units)?;
        let quantity = new.quantity.map(|q| to_i64("quantity", q)).transpose()?;

        let mut tx = self.begin().await?;
        if let Some(key) = &new.idempotency_key
            && let Some(first) = order_by_key(&mut tx, new.customer_id, key).await?
        {
            return Ok(Placed::Existing(first.try_into()?));
        }
        let (status, balance): (String, i64) =
            sqlx::query_as("SELECT status, balance FROM customers WHERE id = ?")
                .bind(new.customer_id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound("customer"))?;
        match CustomerStatus::parse(&status) {
            Some(CustomerStatus::Active) => {}
            Some(CustomerStatus::Suspended) => return Err(StoreError::CustomerSuspended),
            None => return Err(corrupt("customer status", status)),
        }
        if balance < new.charge.units() {
            return Err(StoreError::InsufficientFunds);
        }

        let inserted: Result<OrderRow, sqlx::Error> = sqlx::query_as(concat!(
            "INSERT INTO orders (customer_id, service_id, service_type, params, link, quantity, \
             units, charge, refunded, status, forward_state, idempotency_key, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'Pending', 'queued', ?, ?, ?) \
             RETURNING ",
            order_cols!()
        ))
        .bind(new.customer_id.0)
        .bind(new.service_id.0)
        .bind(&new.service_type)
        .bind(&new.params)
        .bind(&new.link)
        .bind(quantity)
        .bind(units)
        .bind(new.charge.units())
        .bind(&new.idempotency_key)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let row = match (inserted, &new.idempotency_key) {
            (Ok(row), _) => row,
            // The key was taken meanwhile (cannot happen under the write lock, but if it
            // does, the first order is the answer).
            (Err(e), Some(key)) if is_unique_violation(&e) => {
                tx.rollback().await.map_err(db_err)?;
                let mut conn = self.writer.acquire().await.map_err(db_err)?;
                return match order_by_key(&mut conn, new.customer_id, key).await? {
                    Some(first) => Ok(Placed::Existing(first.try_into()?)),
                    None => Err(db_err(e)),
                };
            }
            (Err(e), _) => return Err(db_err(e)),
        };
        let order = Order::try_from(row)?;
        if new.charge.is_positive() {
            post(
                &mut tx,
                Posting {
                    customer: new.customer_id,
                    kind: LedgerKind::Charge,
                    amount: Money::from_units(-new.charge.units()),
                    order: Some(order.id),
                    reason: &format!("order {}", order.id),
                    actor: "customer",
                    now,
                },
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Placed::New(order))
    }

    async fn order(&self, id: OrderId) -> StoreResult<Order> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        order_row(&mut conn, id).await?.try_into()
    }

    async fn customer_orders(
        &self,
        customer: CustomerId,
        ids: &[OrderId],
    ) -> StoreResult<Vec<Order>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<OrderRow> = sqlx::query_as(concat!(
            "SELECT ",
            order_cols!(),
            " FROM orders WHERE customer_id = ? AND id IN (SELECT value FROM json_each(?)) \
             ORDER BY id"
        ))
        .bind(customer.0)
        .bind(id_array(ids.iter().map(|id| id.0)))
        .fetch_all(&self.reader)
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
        let rows: Vec<crate::rows::OrderStatusRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM orders WHERE customer_id = ? AND id IN (SELECT value FROM json_each(?)) \
             ORDER BY id",
            crate::rows::ORDER_STATUS_COLUMNS
        )))
        .bind(customer.0)
        .bind(id_array(ids.iter().map(|id| id.0)))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn list_orders(&self, filter: &OrderFilter) -> StoreResult<Vec<Order>> {
        let mut query =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", order_cols!(), " FROM orders WHERE 1"));
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
            query.push(" AND provider = ").push_bind(provider.as_str());
        }
        if let Some(link) = &filter.link {
            query.push(" AND link = ").push_bind(link.as_str());
        }
        if let Some(before) = filter.before_id {
            query.push(" AND id < ").push_bind(before.0);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_or_default(filter.limit));
        let rows: Vec<OrderRow> = query
            .build_query_as()
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        convert_all(rows)
    }

    async fn count_by_status(&self) -> StoreResult<Vec<(String, i64)>> {
        sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn count_by_forward_state(&self) -> StoreResult<Vec<(ForwardState, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT forward_state, COUNT(*) FROM orders GROUP BY forward_state")
                .fetch_all(&self.reader)
                .await
                .map_err(db_err)?;
        let mut counts: Vec<(ForwardState, i64)> =
            ForwardState::ALL.iter().map(|&state| (state, 0)).collect();
        for (state, count) in rows {
            let state =
                ForwardState::parse(&state).ok_or_else(|| corrupt("forward state", &state))?;
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
        let mut tx = self.begin().await?;
        let rows: Vec<OrderRow> = sqlx::query_as(concat!(
            "UPDATE orders SET forward_state = 'sending', claimed_by = ?1, claimed_at = ?2, \
             forward_attempts = forward_attempts + 1, updated_at = ?2 \
             WHERE id IN (SELECT id FROM orders WHERE forward_state = 'queued' \
             AND forward_after <= ?2 ORDER BY id LIMIT ?3) RETURNING ",
            order_cols!()
        ))
        .bind(worker)
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut orders: Vec<Order> = convert_all(rows)?;
        orders.sort_by_key(|order| order.id);
        tx.commit().await.map_err(db_err)?;
        Ok(orders)
    }

    async fn begin_attempt(
        &self,
        order: OrderId,
        provider: &str,
        upstream_service: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        note_attempt(&mut tx, order, provider, upstream_service, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn begin_attempts(&self, attempts: &[AttemptStart], now: Timestamp) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for a in attempts {
            note_attempt(&mut tx, a.order, &a.provider, &a.upstream_service, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn finish_attempt(
        &self,
        order: OrderId,
        outcome: ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<Order> {
        let mut tx = self.begin().await?;
        let row = order_row(&mut tx, order).await?;
        if row.forward_state != ForwardState::Sending.as_str() {
            return Err(StoreError::InvalidState(format!(
                "order {order} is {}, not sending",
                row.forward_state
            )));
        }
        let (attempt, provider, upstream_service): (i64, String, String) = sqlx::query_as(
            "SELECT id, provider, upstream_service FROM forward_attempts \
             WHERE order_id = ? AND outcome = 'pending' ORDER BY id DESC LIMIT 1",
        )
        .bind(order.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| {
            StoreError::InvalidState(format!("order {order} has no attempt in flight"))
        })?;

        let (attempt_outcome, attempt_detail, updated) = match outcome {
            ForwardOutcome::Sent {
                upstream_order_id,
                upstream_cost,
                next_poll_at,
            } => {
                if upstream_order_id.trim().is_empty() {
                    return Err(StoreError::Invalid("an empty upstream order id".to_owned()));
                }
                let updated: Result<OrderRow, sqlx::Error> = sqlx::query_as(concat!(
                    "UPDATE orders SET forward_state = 'sent', provider = ?1, \
                     upstream_service = ?2, upstream_order_id = ?3, upstream_cost = ?4, \
                     forwarded_at = ?5, next_poll_at = ?6, forward_error = NULL, updated_at = ?5 \
                     WHERE id = ?7 RETURNING ",
                    order_cols!()
                ))
                .bind(&provider)
                .bind(&upstream_service)
                .bind(&upstream_order_id)
                .bind(upstream_cost.map(|c| c.to_string()))
                .bind(now)
                .bind(next_poll_at)
                .bind(order.0)
                .fetch_one(&mut *tx)
                .await;
                match updated {
                    Ok(updated) => (
                        "sent",
                        format!("upstream order {upstream_order_id}"),
                        updated,
                    ),
                    Err(e) if is_unique_violation(&e) => {
                        tx.rollback().await.map_err(db_err)?;
                        return Err(self
                            .mark_upstream_clash(order, &provider, &upstream_order_id, now)
                            .await);
                    }
                    Err(e) => return Err(db_err(e)),
                }
            }
            ForwardOutcome::Ambiguous { detail } => {
                let updated = sqlx::query_as(concat!(
                    "UPDATE orders SET forward_state = 'ambiguous', forward_error = ?, \
                     updated_at = ? WHERE id = ? RETURNING ",
                    order_cols!()
                ))
                .bind(&detail)
                .bind(now)
                .bind(order.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                ("ambiguous", detail, updated)
            }
            ForwardOutcome::Failed { not_sent, detail } => {
                let updated = sqlx::query_as(concat!(
                    "UPDATE orders SET forward_error = ?, updated_at = ? WHERE id = ? RETURNING ",
                    order_cols!()
                ))
                .bind(&detail)
                .bind(now)
                .bind(order.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                let outcome = if not_sent { "not_sent" } else { "rejected" };
                (outcome, detail, updated)
            }
        };
        sqlx::query(
            "UPDATE forward_attempts SET outcome = ?, detail = ?, finished_at = ? WHERE id = ?",
        )
        .bind(attempt_outcome)
        .bind(&attempt_detail)
        .bind(now)
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let updated = Order::try_from(updated)?;
        tx.commit().await.map_err(db_err)?;
        Ok(updated)
    }

    async fn requeue(
        &self,
        order: OrderId,
        not_before: Timestamp,
        detail: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = order_row(&mut tx, order).await?;
        if row.forward_state != ForwardState::Sending.as_str() {
            return Err(StoreError::InvalidState(format!(
                "order {order} is {}, not sending",
                row.forward_state
            )));
        }
        // A pending attempt may have reached the upstream: sending again could duplicate it.
        if has_pending_attempt(&mut tx, order).await? {
            return Err(StoreError::InvalidState(format!(
                "order {order} has an attempt in flight; finish it first"
            )));
        }
        sqlx::query(
            "UPDATE orders SET forward_state = 'queued', forward_after = ?, forward_error = ?, \
             claimed_by = NULL, claimed_at = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(not_before)
        .bind(detail)
        .bind(now)
        .bind(order.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn reject_order(
        &self,
        order: OrderId,
        detail: &str,
        now: Timestamp,
    ) -> StoreResult<Money> {
        let mut tx = self.begin().await?;
        let row = order_row(&mut tx, order).await?;
        if row.forward_state != ForwardState::Sending.as_str()
            && row.forward_state != ForwardState::Queued.as_str()
        {
            return Err(StoreError::InvalidState(format!(
                "order {order} is {}, neither queued nor sending",
                row.forward_state
            )));
        }
        if has_pending_attempt(&mut tx, order).await? {
            return Err(StoreError::InvalidState(format!(
                "order {order} has an attempt in flight; finish it first"
            )));
        }
        let refund = cancel_with_full_refund(
            &mut tx,
            &row,
            Some(detail),
            &format!("refund: order {order} rejected: {detail}"),
            "forwarder",
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(refund)
    }

    async fn recover_sending(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<OrderId>> {
        let mut tx = self.begin().await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE orders SET forward_state = 'ambiguous', \
             forward_error = 'found in sending after claim by ' \
                 || COALESCE(claimed_by, 'an unknown worker') || ' expired', \
             updated_at = ? WHERE forward_state = 'sending' \
             AND (claimed_at IS NULL OR claimed_at < ?) RETURNING id",
        )
        .bind(now)
        .bind(claimed_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        ids.sort_unstable();
        if !ids.is_empty() {
            sqlx::query(
                "UPDATE forward_attempts SET outcome = 'ambiguous', \
                 detail = COALESCE(detail, 'worker lease expired with the attempt in flight'), \
                 finished_at = ? \
                 WHERE outcome = 'pending' AND order_id IN (SELECT value FROM json_each(?))",
            )
            .bind(now)
            .bind(id_array(ids.iter().copied()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(ids.into_iter().map(OrderId).collect())
    }

    async fn attempts(&self, order: OrderId) -> StoreResult<Vec<ForwardAttempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(concat!(
            "SELECT ",
            attempt_cols!(),
            " FROM forward_attempts WHERE order_id = ? ORDER BY id"
        ))
        .bind(order.0)
        .fetch_all(&self.reader)
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
                "a provider and an upstream order id are required".to_owned(),
            ));
        }
        let mut tx = self.begin().await?;
        let before = order_row(&mut tx, order).await?;
        if before.forward_state != ForwardState::Ambiguous.as_str() {
            return Err(StoreError::InvalidState(format!(
                "order {order} is {}, not ambiguous",
                before.forward_state
            )));
        }
        let holder: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE provider = ? AND upstream_order_id = ? AND id <> ?",
        )
        .bind(provider)
        .bind(upstream_order_id)
        .bind(order.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(holder) = holder {
            return Err(StoreError::Conflict(format!(
                "upstream order id {upstream_order_id} at {provider} is already held by order \
                 {holder}"
            )));
        }
        let row: OrderRow = sqlx::query_as(concat!(
            "UPDATE orders SET provider = ?1, upstream_order_id = ?2, forward_state = 'sent', \
             forward_error = NULL, forwarded_at = COALESCE(forwarded_at, ?3), next_poll_at = ?3, \
             updated_at = ?3 WHERE id = ?4 RETURNING ",
            order_cols!()
        ))
        .bind(provider)
        .bind(upstream_order_id)
        .bind(now)
        .bind(order.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        write_audit(
            &mut tx,
            actor,
            "order.attach_upstream",
            &order_target(order),
            Some(&order_summary(&before).to_string()),
            Some(&order_summary(&row).to_string()),
            now,
        )
        .await?;
        let attached = Order::try_from(row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(attached)
    }

    async fn cancel_ambiguous(
        &self,
        order: OrderId,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Money> {
        let mut tx = self.begin().await?;
        let before = order_row(&mut tx, order).await?;
        if before.forward_state != ForwardState::Ambiguous.as_str() {
            return Err(StoreError::InvalidState(format!(
                "order {order} is {}, not ambiguous",
                before.forward_state
            )));
        }
        let refund = cancel_with_full_refund(
            &mut tx,
            &before,
            Some(reason),
            &format!("refund: order {order} canceled by {actor}: {reason}"),
            actor,
            now,
        )
        .await?;
        let mut after = order_summary(&order_row(&mut tx, order).await?);
        if let Some(fields) = after.as_object_mut() {
            fields.insert("refund".to_owned(), json!(refund.to_string()));
            fields.insert("reason".to_owned(), json!(reason));
        }
        write_audit(
            &mut tx,
            actor,
            "order.cancel_ambiguous",
            &order_target(order),
            Some(&order_summary(&before).to_string()),
            Some(&after.to_string()),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(refund)
    }

    // ---- polling ---------------------------------------------------------------------------

    async fn claim_polls(
        &self,
        provider: Option<&str>,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<PollItem>> {
        let mut tx = self.begin().await?;
        let rows: Vec<PollRow> = sqlx::query_as(concat!(
            // The partial poll index holds only orders still being polled; left to itself the
            // planner picks `orders_forward` and scans every finished `sent` order (0.3 s per
            // claim with a million of them, 3 ms this way).
            "SELECT id, provider, upstream_order_id, status, status_raw, created_at \
             FROM orders INDEXED BY orders_poll \
             WHERE forward_state = 'sent' AND status NOT IN ",
            terminal_statuses!(),
            " AND next_poll_at IS NOT NULL AND next_poll_at <= ?1 \
             AND provider IS NOT NULL AND upstream_order_id IS NOT NULL \
             AND (?2 IS NULL OR provider = ?2) \
             ORDER BY next_poll_at, id LIMIT ?3"
        ))
        .bind(now)
        .bind(provider)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        if !rows.is_empty() {
            sqlx::query(
                "UPDATE orders SET next_poll_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(lease_until)
            .bind(id_array(rows.iter().map(|row| row.id)))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let items = convert_all(rows)?;
        tx.commit().await.map_err(db_err)?;
        Ok(items)
    }

    async fn apply_status(
        &self,
        provider: &str,
        upstream_order_id: &str,
        update: StatusUpdate,
        now: Timestamp,
    ) -> StoreResult<Option<StatusApplied>> {
        let mut tx = self.begin().await?;
        let row: Option<OrderRow> = sqlx::query_as(concat!(
            "SELECT ",
            order_cols!(),
            " FROM orders WHERE provider = ? AND upstream_order_id = ?"
        ))
        .bind(provider)
        .bind(upstream_order_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let order = Order::try_from(row)?;
        if order.status.is_terminal() {
            return Ok(Some(StatusApplied {
                order_id: order.id,
                refund: None,
                terminal: true,
            }));
        }

        let terminal = update.status.is_terminal();
        // The refund follows this report's `remains`, never an older one: remains only shrink,
        // so a stale value would overpay.
        if update.status == OrderStatus::Partial && update.remains.is_none() {
            tracing::warn!(
                order = order.id.0,
                provider,
                upstream_order_id,
                "Partial without remains: no refund computed, check the order by hand"
            );
        }
        let due = refund_due(&update.status, order.charge, order.units, update.remains);
        let owed = due
            .checked_sub(order.refunded)
            .filter(|owed| owed.is_positive());
        let refunded = match owed {
            Some(owed) => {
                let reason = match (&update.status, update.remains) {
                    (OrderStatus::Partial, Some(remains)) => format!(
                        "refund: Partial, remains {remains} of {} (order {})",
                        order.units, order.id
                    ),
                    (status, _) => format!("refund: {} (order {})", status.as_str(), order.id),
                };
                let posted = post(
                    &mut tx,
                    Posting {
                        customer: order.customer_id,
                        kind: LedgerKind::Refund,
                        amount: owed,
                        order: Some(order.id),
                        reason: &reason,
                        actor: "reconciler",
                        now,
                    },
                )
                .await;
                match posted {
                    Ok(_) => order.refunded.checked_add(owed).unwrap_or(order.charge),
                    Err(StoreError::Conflict(message)) => {
                        // Another writer paid this order's one refund: never pay twice.
                        tracing::warn!(order = order.id.0, %message, "refund already paid");
                        tx.rollback().await.map_err(db_err)?;
                        let current: Order = {
                            let mut conn = self.writer.acquire().await.map_err(db_err)?;
                            order_row(&mut conn, order.id).await?.try_into()?
                        };
                        return Ok(Some(StatusApplied {
                            order_id: order.id,
                            refund: None,
                            terminal: current.status.is_terminal(),
                        }));
                    }
                    Err(other) => return Err(other),
                }
            }
            None => order.refunded,
        };

        let (status, status_raw) = order_status_text(&update.status);
        sqlx::query(
            "UPDATE orders SET status = ?, status_raw = ?, start_count = COALESCE(?, start_count), \
             remains = COALESCE(?, remains), extra = COALESCE(?, extra), next_poll_at = ?, \
             refunded = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(status_raw)
        .bind(update.start_count)
        .bind(update.remains)
        .bind(&update.extra)
        .bind((!terminal).then_some(update.next_poll_at))
        .bind(refunded.units())
        .bind(now)
        .bind(order.id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(StatusApplied {
            order_id: order.id,
            refund: owed,
            terminal,
        }))
    }

    async fn apply_statuses(
        &self,
        provider: &str,
        updates: Vec<(String, StatusUpdate)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Option<StatusApplied>>> {
        const UPDATE_POLLED: &str = "UPDATE orders SET status = ?, status_raw = ?, \
             start_count = COALESCE(?, start_count), remains = COALESCE(?, remains), \
             extra = COALESCE(?, extra), next_poll_at = ?, updated_at = ? WHERE id = ?";
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = serde_json::Value::from(
            updates
                .iter()
                .map(|(id, _)| serde_json::Value::from(id.as_str()))
                .collect::<Vec<_>>(),
        )
        .to_string();
        let mut tx = self.begin().await?;
        let rows: Vec<OrderRow> = sqlx::query_as(concat!(
            "SELECT ",
            order_cols!(),
            " FROM orders WHERE provider = ? AND upstream_order_id IN \
             (SELECT value FROM json_each(?))"
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
        tx.commit().await.map_err(db_err)?;
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
        let mut tx = self.begin().await?;
        sqlx::query(concat!(
            "UPDATE orders SET next_poll_at = ? WHERE id IN (SELECT value FROM json_each(?)) \
             AND forward_state = 'sent' AND status NOT IN ",
            terminal_statuses!()
        ))
        .bind(next_poll_at)
        .bind(id_array(orders.iter().map(|id| id.0)))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    // ---- refills and cancels ---------------------------------------------------------------

    async fn create_refill(
        &self,
        customer: CustomerId,
        order: OrderId,
        now: Timestamp,
    ) -> StoreResult<Refill> {
        let mut tx = self.begin().await?;
        let row = order_row(&mut tx, order).await?;
        if row.customer_id != customer.0 {
            return Err(StoreError::NotFound("order"));
        }
        let refill: RefillRow = sqlx::query_as(concat!(
            "INSERT INTO refills (order_id, customer_id, provider, status, forward_state, \
             created_at, updated_at) VALUES (?, ?, ?, 'Pending', 'queued', ?, ?) RETURNING ",
            refill_cols!()
        ))
        .bind(order.0)
        .bind(customer.0)
        .bind(&row.provider)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let refill = Refill::try_from(refill)?;
        tx.commit().await.map_err(db_err)?;
        Ok(refill)
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
        let mut tx = self.begin().await?;
        let row: RefillRow = sqlx::query_as(concat!(
            "UPDATE refills SET provider = COALESCE(?1, provider), \
             upstream_refill_id = COALESCE(?2, upstream_refill_id), \
             status = COALESCE(?3, status), \
             status_raw = CASE WHEN ?3 IS NULL THEN status_raw ELSE ?4 END, \
             forward_state = COALESCE(?5, forward_state), error = COALESCE(?6, error), \
             updated_at = ?7 WHERE id = ?8 RETURNING ",
            refill_cols!()
        ))
        .bind(&update.provider)
        .bind(&update.upstream_refill_id)
        .bind(status)
        .bind(status_raw)
        .bind(update.forward_state.map(ForwardState::as_str))
        .bind(&update.error)
        .bind(now)
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("refill"))?;
        let refill = Refill::try_from(row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(refill)
    }

    async fn customer_refills(
        &self,
        customer: CustomerId,
        ids: &[RefillId],
    ) -> StoreResult<Vec<Refill>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "SELECT ",
            refill_cols!(),
            " FROM refills WHERE customer_id = ? AND id IN (SELECT value FROM json_each(?)) \
             ORDER BY id"
        ))
        .bind(customer.0)
        .bind(id_array(ids.iter().map(|id| id.0)))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn refills_in_state(&self, state: ForwardState, limit: u32) -> StoreResult<Vec<Refill>> {
        let rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "SELECT ",
            refill_cols!(),
            " FROM refills WHERE forward_state = ? ORDER BY id LIMIT ?"
        ))
        .bind(state.as_str())
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        convert_all(rows)
    }

    async fn unfinished_refills(&self, limit: u32) -> StoreResult<Vec<Refill>> {
        let rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "SELECT ",
            refill_cols!(),
            " FROM refills WHERE forward_state = 'sent' \
             AND status NOT IN ('Completed', 'Rejected', 'Canceled') ORDER BY id LIMIT ?"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
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
        // One writer and BEGIN IMMEDIATE: nobody else can claim between the pick and the mark.
        let mut tx = self.begin().await?;
        let mut rows: Vec<RefillRow> = sqlx::query_as(concat!(
            "UPDATE refills SET forward_state = 'sending', claimed_by = ?1, claimed_at = ?2, \
             updated_at = ?2 WHERE id IN (SELECT id FROM refills WHERE forward_state = 'queued' \
             ORDER BY id LIMIT ?3) RETURNING ",
            refill_cols!()
        ))
        .bind(worker)
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.sort_by_key(|row| row.id);
        convert_all(rows)
    }

    async fn recover_sending_refills(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<RefillId>> {
        // A row marked `sending` before claims were recorded has no `claimed_at`: its
        // `updated_at` is when it was marked.
        let mut tx = self.begin().await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE refills SET forward_state = 'ambiguous', \
             error = 'found in sending after the claim by ' \
                 || COALESCE(claimed_by, 'an unknown worker') \
                 || ' expired: the upstream may have it, so it is not sent again', \
             updated_at = ?2 \
             WHERE forward_state = 'sending' AND COALESCE(claimed_at, updated_at) < ?1 \
             RETURNING id",
        )
        .bind(claimed_before)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
        let row = order_row(&mut tx, order).await?;
        if row.customer_id != customer.0 {
            return Err(StoreError::NotFound("order"));
        }
        let state = ForwardState::parse(&row.forward_state)
            .ok_or_else(|| corrupt("forward state", &row.forward_state))?;
        let terminal = order_status_from_text(&row.status, row.status_raw.clone())?.is_terminal();
        let outcome = match state {
            ForwardState::Queued => {
                let refund = cancel_with_full_refund(
                    &mut tx,
                    &row,
                    Some("canceled by the customer before forwarding"),
                    "canceled before forwarding",
                    "customer",
                    now,
                )
                .await?;
                CancelOutcome::CanceledLocally { refund }
            }
            ForwardState::Sent if !terminal => {
                sqlx::query(
                    "INSERT INTO cancel_requests (order_id, customer_id, forward_state, \
                     created_at, updated_at) VALUES (?, ?, 'queued', ?, ?) \
                     ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(order.0)
                .bind(customer.0)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let request: CancelRow = sqlx::query_as(concat!(
                    "SELECT ",
                    cancel_cols!(),
                    " FROM cancel_requests WHERE order_id = ?"
                ))
                .bind(order.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                CancelOutcome::Requested(request.try_into()?)
            }
            _ => {
                return Err(StoreError::InvalidState(format!(
                    "order {order} cannot be canceled now ({}, {})",
                    row.forward_state, row.status
                )));
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }

    async fn update_cancel(
        &self,
        id: i64,
        state: ForwardState,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<CancelRequest> {
        let mut tx = self.begin().await?;
        let row: CancelRow = sqlx::query_as(concat!(
            "UPDATE cancel_requests SET forward_state = ?, error = ?, updated_at = ? \
             WHERE id = ? RETURNING ",
            cancel_cols!()
        ))
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("cancel request"))?;
        let request = CancelRequest::try_from(row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(request)
    }

    async fn cancels_in_state(
        &self,
        state: ForwardState,
        limit: u32,
    ) -> StoreResult<Vec<CancelRequest>> {
        let rows: Vec<CancelRow> = sqlx::query_as(concat!(
            "SELECT ",
            cancel_cols!(),
            " FROM cancel_requests WHERE forward_state = ? ORDER BY id LIMIT ?"
        ))
        .bind(state.as_str())
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
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
        let mut tx = self.begin().await?;
        let mut rows: Vec<CancelRow> = sqlx::query_as(concat!(
            "UPDATE cancel_requests SET forward_state = 'sending', claimed_by = ?1, \
             claimed_at = ?2, updated_at = ?2 WHERE id IN (SELECT id FROM cancel_requests \
             WHERE forward_state = 'queued' ORDER BY id LIMIT ?3) RETURNING ",
            cancel_cols!()
        ))
        .bind(worker)
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.sort_by_key(|row| row.id);
        convert_all(rows)
    }

    async fn recover_sending_cancels(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let mut tx = self.begin().await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE cancel_requests SET forward_state = 'ambiguous', \
             error = 'found in sending after the claim by ' \
                 || COALESCE(claimed_by, 'an unknown worker') \
                 || ' expired: the upstream may have it, so it is not sent again', \
             updated_at = ?2 \
             WHERE forward_state = 'sending' AND COALESCE(claimed_at, updated_at) < ?1 \
             RETURNING id",
        )
        .bind(claimed_before)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        ids.sort_unstable();
        Ok(ids)
    }

    // ---- catalog and audit -----------------------------------------------------------------

    async fn service_id(&self, provider: &str, upstream_service: &str) -> StoreResult<ServiceId> {
        const SELECT: &str =
            "SELECT id FROM service_ids WHERE provider = ? AND upstream_service = ?";
        // Almost always already assigned: answer from a reader without taking the write lock.
        let known: Option<i64> = sqlx::query_scalar(SELECT)
            .bind(provider)
            .bind(upstream_service)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        if let Some(id) = known {
            return Ok(ServiceId(id));
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO service_ids (provider, upstream_service) VALUES (?, ?) \
             ON CONFLICT (provider, upstream_service) DO NOTHING",
        )
        .bind(provider)
        .bind(upstream_service)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let id: i64 = sqlx::query_scalar(SELECT)
            .bind(provider)
            .bind(upstream_service)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(ServiceId(id))
    }

    async fn service_ids(&self) -> StoreResult<Vec<(ServiceId, String, String)>> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, provider, upstream_service FROM service_ids ORDER BY id")
                .fetch_all(&self.reader)
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
        let mut tx = self.begin().await?;
        write_audit(&mut tx, actor, action, target, before, after, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO provider_catalogs (provider, services, synced_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (provider) DO UPDATE SET services = excluded.services, \
             synced_at = excluded.synced_at",
        )
        .bind(provider)
        .bind(services_json)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn provider_catalogs(&self) -> StoreResult<Vec<(String, String, Timestamp)>> {
        sqlx::query_as(
            "SELECT provider, services, synced_at FROM provider_catalogs ORDER BY provider",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)
    }
}
