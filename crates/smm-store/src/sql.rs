//! The one implementation of [`Store`], for every SQL database the store runs on.
//!
//! [`SqlStore<D>`] is generic over a [`Dialect`]: `sqlx::Sqlite` or `sqlx::Postgres`. Each method
//! is one transaction that reads rows, asks [`crate::rules`] what to do, and writes what the rule
//! decided. The SQL text is shared too: `$n` placeholders, `RETURNING`, `ON CONFLICT`,
//! `UPDATE ... FROM` and `WITH ... AS MATERIALIZED` mean the same on both databases, and the few
//! words that differ are written as `{word}` in a statement and filled in by the dialect
//! ([`Dialect::word`]): row locks, the lists of ids bound as one JSON text, an index hint.
//!
//! # Concurrency
//!
//! The same statements are correct under both databases' models:
//!
//! * PostgreSQL runs every method at READ COMMITTED, made correct by explicit row locks
//!   (`{for_update}`): money moves under the customer's row lock, an order's state changes under
//!   its row lock, taken before the customer's, and multi-row locks are taken in id order, so no
//!   two transactions wait on each other in a cycle. Queues (forwarding, polls, refills,
//!   cancels, recovery) are claimed with `{skip_locked}` inside a `MATERIALIZED` CTE, which runs
//!   exactly once: two workers never take the same row and never wait for each other. Polls
//!   are leased in `poll_leases` instead, by an `INSERT … ON CONFLICT DO UPDATE … WHERE` the
//!   lease ran out, whose `RETURNING` is the claim: a lease another claim holds is not taken.
//! * SQLite has one writer connection and starts every write transaction with
//!   `BEGIN IMMEDIATE` ([`Dialect::BEGIN`]), so a transaction holds the write lock from its first
//!   statement and row locks are not needed (the words are empty).
//!
//! Every transaction ends before the method returns ([`settle`]): COMMIT on success, an awaited
//! ROLLBACK on error. Left to sqlx, a dropped transaction's ROLLBACK is only queued, and on
//! PostgreSQL its row locks would outlive the error that ended it.
//!
//! The unique indexes (`orders_idempotency`, `orders_upstream`, `ledger_one_refund`, ...) are the
//! last line: a violation is handled where it has a domain meaning ([`unique_index`]) and is a
//! [`StoreError::Conflict`] everywhere else.

mod grouped;
mod notify;
mod scorecard;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde_json::json;
use smm_wire::Money;
use sqlx::{Executor, Pool, QueryBuilder, Transaction};

use crate::rows::{
    AdminRow, AlertRow, AttemptRow, AuditRow, CancelRow, CustomerRow, LedgerRow, OrderRow,
    OrderStatusRow, OrderTermsRow, PollRow, PolledOrder, RefillRow, SessionRow, WebhookDeliveryRow,
    WebhookEventRow, convert_all, corrupt, order_status_text, refill_status_text,
};
use crate::rules::{
    self, CancelPlan, LocalCancel, OrderTerms, StatusPlan, customer_target, limit_or_default,
    order_summary, order_target, to_i64,
};
use crate::*;

/// What differs between the SQL databases the store runs on: how a write transaction starts, a
/// few words of SQL, and how a connection is opened (in the backend's module).
pub trait Dialect: sqlx::Database + sqlx::database::HasStatementCache {
    const BACKEND: Backend;
    /// The statement that opens a write transaction.
    const BEGIN: &'static str;

    /// The SQL for `{name}` (or `{name:$n}`) in a statement:
    ///
    /// * `for_update`: lock the rows read, until the transaction ends;
    /// * `for_no_key_update`: the same, letting other transactions' foreign-key checks through
    ///   (for rows whose key the transaction does not change);
    /// * `skip_locked`: lock the rows read, skipping rows another transaction holds;
    /// * `int_list:$n` / `text_list:$n`: a parenthesised subquery of the values of the JSON
    ///   array bound as `$n` (ids as integers, or texts);
    /// * `json_rows:$n`: the table `j` of the rows bound as `$n` ([`json_rows`]);
    /// * `limit:$n`: `LIMIT $n`, written so that a new limit keeps the statement prepared;
    /// * `poll_index`: the index hint that keeps the poll claim on the partial poll index;
    /// * `upstream_index`: the hint that keeps a lookup of many upstream ids on the unique
    ///   (provider, upstream id) index (the statement must say `upstream_order_id IS NOT NULL`,
    ///   the partial index's condition);
    /// * `orders_batch_open:$n` / `orders_batch_close`: around an `UPDATE orders … FROM (…) AS v
    ///   WHERE orders.id = v.column1` whose rows are bound as `$n` ([`json_rows`], the order's
    ///   id first), run between the [`Self::ORDERS_BATCH`] statements: the statement that
    ///   writes what the row triggers on `orders` would for those rows, set-wise.
    fn word(name: &str, param: &str) -> String;

    /// The statements run just before and just after an update of many orders written between
    /// `{orders_batch_open}` and `{orders_batch_close}`, to make the row triggers on `orders`
    /// stand aside for it: `None` where the triggers run for it as for any other write.
    const ORDERS_BATCH: Option<(&'static str, &'static str)>;

    /// The statement announcing, inside a transaction, that the customer bound as `$1` (its id
    /// as text) changed; `None` where the database cannot notify other connections.
    const NOTIFY_CUSTOMER: Option<&'static str>;

    /// The statements folding the order aggregates' deltas into their totals
    /// ([`Store::compact_aggregates`]); empty where triggers update the totals directly.
    const COMPACT_AGGREGATES: &'static [&'static str];
    /// Clears the dead rows a big compaction leaves.
    const VACUUM_AGGREGATES: &'static [&'static str];

    /// Starts listening for those announcements ([`Store::customer_events`]).
    fn customer_events(pool: &Pool<Self>) -> Option<tokio::sync::mpsc::Receiver<CustomerEvent>>;
}

/// The store on a SQL database: a pool for writes and one for reads (the same pool except on
/// SQLite, which keeps a single writer connection beside a few readers).
pub struct SqlStore<D: Dialect> {
    pub(crate) writer: Pool<D>,
    pub(crate) reader: Pool<D>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            writer: self.writer.clone(),
            reader: self.reader.clone(),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &D::BACKEND)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Closes every connection (waiting for running transactions). For an orderly shutdown.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

// ---- SQL text --------------------------------------------------------------------------------

/// Statements with `{words}`, rendered once per dialect and kept for the life of the process
/// (the set of statements is fixed, so this is bounded).
static RENDERED: [RwLock<Option<HashMap<&'static str, &'static str>>>; 2] =
    [RwLock::new(None), RwLock::new(None)];

/// `template` in dialect `D`: the text itself when it has no `{word}`.
fn sql<D: Dialect>(template: &'static str) -> &'static str {
    if !template.contains('{') {
        return template;
    }
    let cache = &RENDERED[D::BACKEND as usize];
    if let Some(done) = cache
        .read()
        .ok()
        .and_then(|map| map.as_ref().and_then(|m| m.get(template).copied()))
    {
        return done;
    }
    let rendered: &'static str = Box::leak(render::<D>(template).into_boxed_str());
    if let Ok(mut map) = cache.write() {
        map.get_or_insert_with(HashMap::new)
            .insert(template, rendered);
    }
    rendered
}

fn render<D: Dialect>(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 1..start + len];
        let (name, param) = inner.split_once(':').unwrap_or((inner, ""));
        out.push_str(&D::word(name, param));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// A JSON array of ids, bound where a statement says `{int_list:$n}`.
fn int_list(ids: impl IntoIterator<Item = i64>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    format!("[{}]", ids.join(","))
}

/// Rows of values as one JSON array of arrays, bound where a statement says `{json_rows:$n}`
/// (a table `j` of `n`, the row's position from 0, and `r`, the row; a statement reads a value as
/// `r ->> i`, cast where it is not text). A multi-row statement written this way has one text
/// whatever its number of rows, so one prepared statement serves every size: on SQLite each
/// prepared statement on `orders` holds its triggers' compiled programs, about 300 KB, and a
/// `VALUES` row per item made a statement text per group size (issue #16's peak RSS).
fn json_rows(rows: impl IntoIterator<Item = serde_json::Value>) -> String {
    serde_json::Value::Array(rows.into_iter().collect()).to_string()
}

/// One order's status report in a batch ([`SqlStore::record_statuses`]): the update, whether
/// it is terminal, an attention note, and the refund paid with it (zero for none).
struct StatusReport<'a> {
    order: OrderId,
    update: &'a StatusUpdate,
    terminal: bool,
    attention: Option<String>,
    refund: Money,
}

/// Whether `report` writes nothing to `order` but its counts (start count, remains, extra),
/// its next poll and `updated_at`: the same status and raw text, no refund, no attention, and
/// no start or finish time to set. Most polls of a sweep are such (an order still in
/// progress); [`SqlStore::record_counts`] writes them without the status columns.
fn only_counts_change(order: &PolledOrder, report: &StatusReport<'_>) -> bool {
    let status = &report.update.status;
    let (_, raw) = order_status_text(status);
    order.terms.status == *status
        && order.status_raw.as_deref() == raw
        && report.refund == Money::ZERO
        && report.attention.is_none()
        && (order.started || !rules::status_started(status))
        && (order.finished || !rules::status_finished(status))
}

/// A JSON array of texts, bound where a statement says `{text_list:$n}`.
fn text_list<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::from(texts.into_iter().collect::<Vec<_>>()).to_string()
}

// ---- errors ----------------------------------------------------------------------------------

/// The unique indexes whose violation has a domain meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UniqueIndex {
    Idempotency,
    Upstream,
    OneRefund,
    CustomerKey,
    AdminUsername,
}

/// Which index a unique violation hit. PostgreSQL names the constraint; SQLite names the
/// columns (`UNIQUE constraint failed: orders.provider, orders.upstream_order_id`).
pub(crate) fn unique_index(error: &sqlx::Error) -> Option<UniqueIndex> {
    let db = error.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    let name = db.constraint().unwrap_or_else(|| db.message());
    const KNOWN: [(&str, &str, UniqueIndex); 5] = [
        (
            "orders_idempotency",
            "orders.customer_id, orders.idempotency_key",
            UniqueIndex::Idempotency,
        ),
        (
            "orders_upstream",
            "orders.provider, orders.upstream_order_id",
            UniqueIndex::Upstream,
        ),
        (
            "ledger_one_refund",
            "ledger.order_id",
            UniqueIndex::OneRefund,
        ),
        (
            "customers_key_hash_key",
            "customers.key_hash",
            UniqueIndex::CustomerKey,
        ),
        (
            "admin_users_username_key",
            "admin_users.username",
            UniqueIndex::AdminUsername,
        ),
    ];
    KNOWN
        .iter()
        .find(|(constraint, columns, _)| name == *constraint || name.ends_with(columns))
        .map(|(_, _, index)| *index)
}

/// sqlx errors in domain words, at the boundary: unique rules are `Conflict` (in words a
/// reseller can read), `CHECK` and foreign-key rules `Invalid`, undecodable rows corrupt.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        if let Some(index) = unique_index(&error) {
            return StoreError::Conflict(
                match index {
                    UniqueIndex::Idempotency => "the idempotency key was already used",
                    UniqueIndex::Upstream => "the upstream order id is already held by an order",
                    UniqueIndex::OneRefund => "the order was already refunded",
                    UniqueIndex::CustomerKey => "the key is already in use by a customer",
                    UniqueIndex::AdminUsername => "the username is already taken",
                }
                .to_owned(),
            );
        }
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound("row"),
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() {
                    StoreError::Conflict(format!("a uniqueness rule refused it: {}", db.message()))
                } else if db.is_check_violation() || db.is_foreign_key_violation() {
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
            e @ (sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }) => corrupt("row", e),
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// Ends a transaction: COMMIT on `Ok`, an awaited ROLLBACK on `Err`, before the result goes
/// back to the caller.
async fn settle<D: Dialect, T, E: From<StoreError>>(
    tx: Transaction<'static, D>,
    result: Result<T, E>,
) -> Result<T, E> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(StoreError::from)?;
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

impl<X> From<sqlx::Error> for Abort<X> {
    fn from(e: sqlx::Error) -> Self {
        Abort::Error(e.into())
    }
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

// The bounds that make a `sqlx::Database` usable here: its connections execute queries, and it
// encodes and decodes the column types of the schema (64-bit integers and texts) and our rows.
// Written on both impl blocks below: Rust does not infer where-clauses from a trait. The row
// types named are the crate's own, hence `private_bounds`.
#[allow(private_bounds)]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: sqlx::IntoArguments<D>,
    usize: sqlx::ColumnIndex<D::Row>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> bool: sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> &'q str: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<i64>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<String>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'r> CustomerRow: sqlx::FromRow<'r, D::Row>,
    for<'r> LedgerRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderTermsRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderStatusRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AttemptRow: sqlx::FromRow<'r, D::Row>,
    for<'r> RefillRow: sqlx::FromRow<'r, D::Row>,
    for<'r> CancelRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AuditRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AdminRow: sqlx::FromRow<'r, D::Row>,
    for<'r> SessionRow: sqlx::FromRow<'r, D::Row>,
    for<'r> PollRow: sqlx::FromRow<'r, D::Row>,
    for<'r> WebhookEventRow: sqlx::FromRow<'r, D::Row>,
    for<'r> WebhookDeliveryRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AlertRow: sqlx::FromRow<'r, D::Row>,
{
    /// A write transaction.
    async fn begin(&self) -> StoreResult<Transaction<'static, D>> {
        Ok(self.writer.begin_with(D::BEGIN).await?)
    }

    async fn lock_order(conn: &mut D::Connection, id: OrderId) -> StoreResult<OrderRow> {
        sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE id = $1{for_update}"
        )))
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound("order"))
    }

    /// The order's one cancel request, if any.
    async fn cancel_request_of(
        conn: &mut D::Connection,
        order: OrderId,
    ) -> StoreResult<Option<CancelRequest>> {
        sqlx::query_as::<D, CancelRow>(concat!(
            "SELECT ",
            cancel_columns!(),
            " FROM cancel_requests WHERE order_id = $1"
        ))
        .bind(order.0)
        .fetch_optional(conn)
        .await?
        .map(CancelRequest::try_from)
        .transpose()
    }

    /// Ends the order's queued cancel request without forwarding it: its order was canceled
    /// and refunded here ([`rules::cancel_closed_locally`] says why).
    async fn close_cancel_request(
        conn: &mut D::Connection,
        order: OrderId,
        why: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query::<D>(
            "UPDATE cancel_requests SET forward_state = 'rejected', error = $2, updated_at = $3 \
             WHERE order_id = $1 AND forward_state = 'queued'",
        )
        .bind(order.0)
        .bind(rules::cancel_closed_locally(order, why))
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn lock_customer(conn: &mut D::Connection, id: CustomerId) -> StoreResult<CustomerRow> {
        sqlx::query_as::<D, CustomerRow>(sql::<D>(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = $1{for_update}"
        )))
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound("customer"))
    }

    async fn order_by_key(
        conn: &mut D::Connection,
        customer: CustomerId,
        key: &str,
    ) -> StoreResult<Option<OrderRow>> {
        Ok(sqlx::query_as::<D, OrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE customer_id = $1 AND idempotency_key = $2"
        ))
        .bind(customer.0)
        .bind(key)
        .fetch_optional(conn)
        .await?)
    }

    /// Announces (delivered when the transaction commits, dropped if it rolls back) that the
    /// customer's key, status or prices changed, so every gateway instance forgets what it
    /// cached of them ([`Store::customer_events`]).
    async fn notify_customer(conn: &mut D::Connection, id: CustomerId) -> StoreResult<()> {
        if let Some(statement) = D::NOTIFY_CUSTOMER {
            sqlx::query::<D>(statement)
                .bind(id.0.to_string())
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    async fn write_audit(
        conn: &mut D::Connection,
        actor: &str,
        action: &str,
        target: &str,
        before: Option<&str>,
        after: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query::<D>(
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
        .await?;
        Ok(())
    }

    /// Applies a posting. The balance moves only if it stays within `0..=Money::MAX`
    /// (`InsufficientFunds` below zero).
    async fn post(conn: &mut D::Connection, p: Posting<'_>) -> StoreResult<LedgerEntry> {
        rules::check_ledger_amount(p.amount)?;
        let amount = p.amount.units();
        // The customer's totals move with the balance: a charge is an order placed and spent,
        // a refund is spend given back.
        let (placed, spent) = match p.kind {
            LedgerKind::Charge => (1_i64, -amount),
            LedgerKind::Refund => (0, -amount),
            LedgerKind::Deposit | LedgerKind::Adjustment => (0, 0),
        };
        let balance_after: Option<i64> = sqlx::query_scalar::<D, i64>(
            "UPDATE customers SET balance = balance + $1, orders_placed = orders_placed + $4, \
             spent = spent + $5 \
             WHERE id = $2 AND balance + $1 >= 0 AND balance + $1 <= $3 RETURNING balance",
        )
        .bind(amount)
        .bind(p.customer.0)
        .bind(Money::MAX.units())
        .bind(placed)
        .bind(spent)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(balance_after) = balance_after else {
            let balance: Option<i64> =
                sqlx::query_scalar::<D, i64>("SELECT balance FROM customers WHERE id = $1")
                    .bind(p.customer.0)
                    .fetch_optional(&mut *conn)
                    .await?;
            return Err(match balance {
                None => StoreError::NotFound("customer"),
                Some(balance) if balance.checked_add(amount).is_some_and(|b| b < 0) => {
                    StoreError::InsufficientFunds
                }
                Some(_) => rules::balance_past_max(),
            });
        };
        let row: LedgerRow = sqlx::query_as::<D, LedgerRow>(concat!(
            "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, actor, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            ledger_columns!()
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
        .await?;
        LedgerEntry::try_from(row)
    }

    /// Pays an order's one refund: the ledger row and `orders.refunded` move together. The
    /// caller holds the order's row lock.
    async fn pay_refund(
        conn: &mut D::Connection,
        order: &Order,
        amount: Money,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        Self::post(
            &mut *conn,
            Posting {
                customer: order.customer_id,
                kind: LedgerKind::Refund,
                amount,
                order: Some(order.id),
                reason,
                actor,
                now,
            },
        )
        .await?;
        sqlx::query::<D>(
            "UPDATE orders SET refunded = refunded + $2, updated_at = $3 WHERE id = $1",
        )
        .bind(order.id.0)
        .bind(amount.units())
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The ledger side of [`Self::pay_refund`] for a status batch's refunds, in three statements
    /// whatever their number: the customers' rows locked in id order, one `UPDATE` per
    /// customer, the ledger rows (each with the balance right after it, customer by customer,
    /// order by order). The orders' `refunded` is the caller's, with their statuses
    /// ([`Self::record_statuses`]). Any refusal (a balance past [`Money::MAX`], a second refund
    /// of an order, which the ledger's index refuses) fails them all: the caller rolls back and
    /// pays them one by one.
    async fn pay_refunds(
        conn: &mut D::Connection,
        mut refunds: Vec<(&OrderTerms, Money, String)>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        if refunds.is_empty() {
            return Ok(());
        }
        refunds.sort_by_key(|(order, ..)| (order.customer_id, order.id));
        let mut customers: Vec<i64> = refunds.iter().map(|(o, ..)| o.customer_id.0).collect();
        customers.dedup();
        let mut balances: BTreeMap<i64, i64> = sqlx::query_as::<D, (i64, i64)>(sql::<D>(
            "SELECT id, balance FROM customers WHERE id IN {int_list:$1} \
             ORDER BY id{for_no_key_update}",
        ))
        .bind(int_list(customers.iter().copied()))
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let mut ledger = Vec::with_capacity(refunds.len());
        let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
        for (order, amount, reason) in &refunds {
            let customer = order.customer_id.0;
            rules::check_ledger_amount(*amount)?;
            let balance = balances
                .get_mut(&customer)
                .ok_or(StoreError::NotFound("customer"))?;
            *balance = balance
                .checked_add(amount.units())
                .filter(|after| *after <= Money::MAX.units())
                .ok_or_else(rules::balance_past_max)?;
            *totals.entry(customer).or_default() += amount.units();
            ledger.push(json!([
                customer,
                LedgerKind::Refund.as_str(),
                amount.units(),
                *balance,
                order.id.0,
                reason,
                actor,
                now,
            ]));
        }
        // A refund is spend given back (as `post` keeps the totals).
        let updated = sqlx::query_scalar::<D, i64>(sql::<D>(
            "UPDATE customers SET balance = balance + v.column2, spent = spent - v.column2 \
             FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, \
             CAST(r ->> 1 AS BIGINT) AS column2 FROM {json_rows:$1}) AS v \
             WHERE customers.id = v.column1 RETURNING customers.id",
        ))
        .bind(json_rows(totals.iter().map(|(id, sum)| json!([id, sum]))))
        .fetch_all(&mut *conn)
        .await?;
        if updated.len() != totals.len() {
            return Err(StoreError::Database(
                "a refunded customer's row changed under its lock".to_owned(),
            ));
        }
        Self::insert_ledger_rows(&mut *conn, json_rows(ledger)).await
    }

    /// Ledger rows in one statement, inserted (ids assigned) in the order given: each row
    /// `[customer, kind, amount, balance_after, order, reason, actor, created_at]`, bound as
    /// [`json_rows`]. The balances after are the caller's, computed under the customers' locks.
    pub(crate) async fn insert_ledger_rows(
        conn: &mut D::Connection,
        rows: String,
    ) -> StoreResult<()> {
        sqlx::query::<D>(sql::<D>(
            "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, \
             actor, created_at) \
             SELECT CAST(r ->> 0 AS BIGINT), r ->> 1, CAST(r ->> 2 AS BIGINT), \
             CAST(r ->> 3 AS BIGINT), CAST(r ->> 4 AS BIGINT), r ->> 5, r ->> 6, \
             CAST(r ->> 7 AS BIGINT) FROM {json_rows:$1} ORDER BY n",
        ))
        .bind(rows)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Gives a locked order up locally ([`rules::LocalCancel`]): the rest of its charge back as
    /// its one refund, status `Canceled`, `rejected`, no more polls. Returns the refund.
    async fn cancel_locally(
        conn: &mut D::Connection,
        order: &Order,
        why: &LocalCancel,
        now: Timestamp,
    ) -> StoreResult<Money> {
        let refund = rules::local_cancel_refund(order)?;
        if refund.is_positive() {
            Self::pay_refund(&mut *conn, order, refund, &why.reason, &why.actor, now).await?;
        }
        sqlx::query::<D>(
            "UPDATE orders SET status = 'Canceled', status_raw = NULL, forward_state = 'rejected', \
             forward_error = $2, next_poll_at = NULL, updated_at = $3, \
             finished_at = COALESCE(finished_at, $3) WHERE id = $1",
        )
        .bind(order.id.0)
        .bind(why.forward_error.as_str())
        .bind(now)
        .execute(conn)
        .await?;
        Ok(refund)
    }

    /// Closes every `pending` attempt of `order` with `outcome`; the provider and service of
    /// the latest, if there was one.
    async fn close_pending_attempts(
        conn: &mut D::Connection,
        order: OrderId,
        outcome: &str,
        detail: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<(String, String)>> {
        let mut closed: Vec<(i64, String, String)> = sqlx::query_as::<D, (i64, String, String)>(
            "UPDATE forward_attempts SET outcome = $2, detail = COALESCE($3, detail), \
             finished_at = $4 WHERE order_id = $1 AND outcome = 'pending' \
             RETURNING id, provider, upstream_service",
        )
        .bind(order.0)
        .bind(outcome)
        .bind(detail)
        .bind(now)
        .fetch_all(conn)
        .await?;
        closed.sort_by_key(|(id, _, _)| *id);
        Ok(closed
            .pop()
            .map(|(_, provider, service)| (provider, service)))
    }

    async fn has_pending_attempt(conn: &mut D::Connection, order: OrderId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar::<D, bool>(
            "SELECT EXISTS (SELECT 1 FROM forward_attempts WHERE order_id = $1 \
             AND outcome = 'pending')",
        )
        .bind(order.0)
        .fetch_one(conn)
        .await?)
    }

    /// A pending attempt row for a `sending` order (locked), and the claim renewed.
    async fn note_attempt(
        conn: &mut D::Connection,
        order: OrderId,
        provider: &str,
        upstream_service: &str,
        why: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let row = Order::try_from(Self::lock_order(&mut *conn, order).await?)?;
        rules::require_state(&row, &[ForwardState::Sending], "begin an attempt for")?;
        sqlx::query::<D>(
            "INSERT INTO forward_attempts (order_id, provider, upstream_service, outcome, \
             started_at, why) VALUES ($1, $2, $3, 'pending', $4, $5)",
        )
        .bind(order.0)
        .bind(provider)
        .bind(upstream_service)
        .bind(now)
        .bind(why)
        .execute(&mut *conn)
        .await?;
        sqlx::query::<D>(
            "UPDATE orders SET provider = $2, upstream_service = $3, updated_at = $4, \
             claimed_at = $4 WHERE id = $1",
        )
        .bind(order.0)
        .bind(provider)
        .bind(upstream_service)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records an upstream status report on an order (a refund, if any, is paid separately),
    /// and puts it on the attention list when a rule said so.
    async fn record_status(
        conn: &mut D::Connection,
        order: OrderId,
        update: &StatusUpdate,
        terminal: bool,
        attention: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (status, status_raw) = order_status_text(&update.status);
        sqlx::query::<D>(
            "UPDATE orders SET status = $2, status_raw = $3, \
             start_count = COALESCE($4, start_count), remains = COALESCE($5, remains), \
             extra = COALESCE($6, extra), next_poll_at = $7, updated_at = $8, \
             attention = COALESCE($9, attention), \
             started_at = COALESCE(started_at, CASE WHEN $10 = 1 THEN $8 END), \
             finished_at = COALESCE(finished_at, CASE WHEN $11 = 1 THEN $8 END) WHERE id = $1",
        )
        .bind(order.0)
        .bind(status)
        .bind(status_raw)
        .bind(update.start_count)
        .bind(update.remains)
        .bind(update.extra.as_deref())
        .bind((!terminal).then_some(update.next_poll_at))
        .bind(now)
        .bind(attention)
        .bind(i64::from(rules::status_started(&update.status)))
        .bind(i64::from(rules::status_finished(&update.status)))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// [`Store::apply_statuses`] in one transaction, refunds included. The orders are locked
    /// in id order and the refunds paid in customer order, like every other multi-row lock
    /// here, so two pollers cannot deadlock. The handoff is why the refunds failed (the index
    /// refused a second one, a balance would overflow, a lock wait timed out): the transaction
    /// is then rolled back, and the caller applies the batch order by order.
    async fn apply_status_batch(
        &self,
        provider: &str,
        updates: &[(String, StatusUpdate)],
        now: Timestamp,
    ) -> Result<Vec<Option<StatusApplied>>, Abort<StoreError>> {
        let wanted = text_list(updates.iter().map(|(id, _)| id.as_str()));
        let mut tx = self.begin().await?;
        let result = async {
            let rows = sqlx::query_as::<D, OrderTermsRow>(sql::<D>(concat!(
                "SELECT ",
                order_terms_columns!(),
                " FROM orders{upstream_index} WHERE provider = $1 \
                 AND upstream_order_id IS NOT NULL AND upstream_order_id IN {text_list:$2} \
                 ORDER BY id{for_no_key_update}"
            )))
            .bind(provider)
            .bind(wanted.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let orders: Vec<PolledOrder> = convert_all(rows)?;
            Self::release_poll_leases(&mut tx, orders.iter().map(|o| o.terms.id)).await?;
            let by_upstream: HashMap<&str, &PolledOrder> = orders
                .iter()
                .filter_map(|o| o.upstream_order_id.as_deref().map(|u| (u, o)))
                .collect();
            let mut results: Vec<Option<StatusApplied>> = vec![None; updates.len()];
            // Per order, its last report in the batch (a later one replaces an earlier).
            let mut planned: BTreeMap<OrderId, (usize, &PolledOrder, StatusPlan)> = BTreeMap::new();
            let mut superseded = Vec::new();
            for (index, (upstream_order_id, update)) in updates.iter().enumerate() {
                let Some(&order) = by_upstream.get(upstream_order_id.as_str()) else {
                    continue;
                };
                let plan = rules::plan_status(&order.terms, update);
                if let Some((earlier, ..)) = planned.insert(order.terms.id, (index, order, plan)) {
                    superseded.push((earlier, order.terms.id));
                }
            }
            // Each earlier report with the index of its order's last one.
            let superseded: Vec<(usize, usize)> = superseded
                .into_iter()
                .filter_map(|(earlier, order)| {
                    planned.get(&order).map(|(last, ..)| (earlier, *last))
                })
                .collect();
            let mut recorded: Vec<StatusReport<'_>> = Vec::new();
            let mut counted: Vec<StatusReport<'_>> = Vec::new();
            let mut refunded = Vec::new();
            let mut refunds: Vec<(&OrderTerms, Money, String)> = Vec::new();
            for (index, order, plan) in planned.into_values() {
                let (terminal, refund) = match plan {
                    StatusPlan::Settled => (true, None),
                    StatusPlan::Apply {
                        terminal,
                        refund,
                        attention,
                    } => {
                        let report = StatusReport {
                            order: order.terms.id,
                            update: &updates[index].1,
                            terminal,
                            attention,
                            refund: refund.as_ref().map_or(Money::ZERO, |(amount, _)| *amount),
                        };
                        match refund {
                            Some((amount, reason)) => {
                                refunds.push((&order.terms, amount, reason));
                                refunded.push(report);
                                (terminal, Some(amount))
                            }
                            None if only_counts_change(order, &report) => {
                                counted.push(report);
                                (terminal, None)
                            }
                            None => {
                                recorded.push(report);
                                (terminal, None)
                            }
                        }
                    }
                };
                results[index] = Some(StatusApplied {
                    order_id: order.terms.id,
                    refund,
                    terminal,
                });
            }
            // The orders that owe nothing first, then the refunds, then the refunded orders'
            // statuses with their refunds (whose webhook events, a trigger, then show the charge
            // net of the refund, as `status` does from now on): the customers' rows (one
            // customer may own every order of every provider's batch) stay locked only for the
            // end of the transaction. A statement per refunded order instead kept that lock
            // held for a round trip per statement, and the PostgreSQL sweep took 35 s, not 25;
            // three statements per refund held it for 60 ms a batch.
            Self::record_counts(&mut tx, &counted, now).await?;
            Self::record_statuses(&mut tx, &recorded, now).await?;
            if let Err(e) = Self::pay_refunds(&mut tx, refunds, "reconciler", now).await {
                return Err(Abort::Handoff(e));
            }
            Self::record_statuses(&mut tx, &refunded, now).await?;
            // An earlier report of an order answers as the last one did, without its refund.
            for (earlier, last) in superseded {
                results[earlier] = results[last].map(|last| StatusApplied {
                    refund: None,
                    ..last
                });
            }
            Ok(results)
        }
        .await;
        settle(tx, result).await
    }

    /// [`Self::record_status`] for several orders in one statement (the reconciler's batches:
    /// one round trip instead of one per order), each order's refund, if any, added to its
    /// `refunded` in the same write (the ledger side is [`Self::pay_refunds`]'s). Each order
    /// appears once. On PostgreSQL what the row triggers on `orders` write for a status change
    /// is written for the whole batch at once ([`Dialect::ORDERS_BATCH`], migration 0019):
    /// `conn` must be inside the caller's transaction (the setting that stands the triggers
    /// aside is the transaction's) with the orders' rows locked, so the rows read before the
    /// update are the ones it changes.
    async fn record_statuses(
        conn: &mut D::Connection,
        reports: &[StatusReport<'_>],
        now: Timestamp,
    ) -> StoreResult<()> {
        if reports.is_empty() {
            return Ok(());
        }
        let rows = json_rows(reports.iter().map(|report| {
            let update = report.update;
            let (status, status_raw) = order_status_text(&update.status);
            json!([
                report.order.0,
                status,
                status_raw,
                update.start_count,
                update.remains,
                update.extra,
                (!report.terminal).then_some(update.next_poll_at),
                report.attention,
                i64::from(rules::status_started(&update.status)),
                i64::from(rules::status_finished(&update.status)),
                report.refund.units(),
            ])
        }));
        if let Some((before, _)) = D::ORDERS_BATCH {
            sqlx::query::<D>(before).execute(&mut *conn).await?;
        }
        sqlx::query::<D>(sql::<D>(
            "{orders_batch_open:$1}UPDATE orders SET status = v.column2, status_raw = v.column3, \
             start_count = COALESCE(v.column4, start_count), \
             remains = COALESCE(v.column5, remains), extra = COALESCE(v.column6, extra), \
             next_poll_at = v.column7, updated_at = $2, \
             attention = COALESCE(v.column8, attention), \
             started_at = COALESCE(started_at, CASE WHEN v.column9 = 1 THEN $2 END), \
             finished_at = COALESCE(finished_at, CASE WHEN v.column10 = 1 THEN $2 END), \
             refunded = refunded + v.column11 \
             FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, r ->> 1 AS column2, \
             r ->> 2 AS column3, CAST(r ->> 3 AS BIGINT) AS column4, \
             CAST(r ->> 4 AS BIGINT) AS column5, r ->> 5 AS column6, \
             CAST(r ->> 6 AS BIGINT) AS column7, r ->> 7 AS column8, \
             CAST(r ->> 8 AS BIGINT) AS column9, CAST(r ->> 9 AS BIGINT) AS column10, \
             CAST(r ->> 10 AS BIGINT) AS column11 \
             FROM {json_rows:$1}) AS v WHERE orders.id = v.column1{orders_batch_close}",
        ))
        .bind(rows)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if let Some((_, after)) = D::ORDERS_BATCH {
            sqlx::query::<D>(after).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// [`Self::record_statuses`] for reports that leave the status as it is
    /// ([`only_counts_change`]): only the counts, the next poll and `updated_at` are written.
    /// Leaving the status columns out of the `SET` leaves their indexes and the triggers that
    /// watch them alone (SQLite, 500 such rows: 2.4 ms, against 4.9 ms with them).
    async fn record_counts(
        conn: &mut D::Connection,
        reports: &[StatusReport<'_>],
        now: Timestamp,
    ) -> StoreResult<()> {
        if reports.is_empty() {
            return Ok(());
        }
        let rows = json_rows(reports.iter().map(|report| {
            let update = report.update;
            json!([
                report.order.0,
                update.start_count,
                update.remains,
                update.extra,
                (!report.terminal).then_some(update.next_poll_at),
            ])
        }));
        sqlx::query::<D>(sql::<D>(
            "UPDATE orders SET start_count = COALESCE(v.column2, start_count), \
             remains = COALESCE(v.column3, remains), extra = COALESCE(v.column4, extra), \
             next_poll_at = v.column5, updated_at = $2 \
             FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, CAST(r ->> 1 AS BIGINT) AS column2, \
             CAST(r ->> 2 AS BIGINT) AS column3, r ->> 3 AS column4, \
             CAST(r ->> 4 AS BIGINT) AS column5 \
             FROM {json_rows:$1}) AS v WHERE orders.id = v.column1",
        ))
        .bind(rows)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Ends the poll leases of `orders` (their status was applied, or their next poll set):
    /// each is due again at its `next_poll_at`.
    async fn release_poll_leases(
        conn: &mut D::Connection,
        orders: impl IntoIterator<Item = OrderId>,
    ) -> StoreResult<()> {
        sqlx::query::<D>(sql::<D>(
            "DELETE FROM poll_leases WHERE order_id IN {int_list:$1}",
        ))
        .bind(int_list(orders.into_iter().map(|id| id.0)))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// [`Store::finish_attempt`] in its own transaction.
    async fn finish_attempt_impl(
        &self,
        order: OrderId,
        outcome: &ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<Order> {
        let mut tx = self.begin().await?;
        let result = Self::finish_attempt_in(&mut tx, order, outcome, now).await;
        match settle(tx, result).await {
            Ok(updated) => updated.try_into(),
            Err(Abort::Error(e)) => Err(e),
            Err(Abort::Handoff((provider, upstream_order_id))) => Err(self
                .upstream_clash(order, &provider, upstream_order_id, now)
                .await),
        }
    }

    /// The writes of [`Store::finish_attempt`], inside the caller's transaction. The handoff is
    /// a clash of upstream ids, (provider, upstream order id), for the caller to deal with after
    /// a rollback.
    async fn finish_attempt_in<'o>(
        conn: &mut D::Connection,
        order: OrderId,
        outcome: &'o ForwardOutcome,
        now: Timestamp,
    ) -> Result<OrderRow, Abort<(String, &'o str)>> {
        if let ForwardOutcome::Sent {
            upstream_order_id, ..
        } = outcome
            && upstream_order_id.trim().is_empty()
        {
            return Err(StoreError::Invalid("an empty upstream order id".to_owned()).into());
        }
        let (attempt_outcome, detail) = rules::attempt_outcome(outcome);
        let row = Order::try_from(Self::lock_order(&mut *conn, order).await?)?;
        rules::require_state(&row, &[ForwardState::Sending], "finish an attempt for")?;
        let Some((provider, upstream_service)) =
            Self::close_pending_attempts(&mut *conn, order, attempt_outcome, detail, now).await?
        else {
            return Err(StoreError::InvalidState(format!(
                "order {order} has no attempt in flight"
            ))
            .into());
        };
        let updated = match &outcome {
            ForwardOutcome::Sent {
                upstream_order_id,
                upstream_cost,
                next_poll_at,
            } => {
                let sent = sqlx::query_as::<D, OrderRow>(concat!(
                    "UPDATE orders SET forward_state = 'sent', provider = $2, \
                     upstream_service = $3, upstream_order_id = $4, upstream_cost = $5, \
                     forwarded_at = $6, next_poll_at = $7, forward_error = NULL, \
                     updated_at = $6 WHERE id = $1 RETURNING ",
                    order_columns!()
                ))
                .bind(order.0)
                .bind(provider.as_str())
                .bind(upstream_service.as_str())
                .bind(upstream_order_id.as_str())
                .bind(upstream_cost.map(|c| c.to_string()))
                .bind(now)
                .bind(*next_poll_at)
                .fetch_one(&mut *conn)
                .await;
                match sent {
                    // Dealt with after the rollback, in a transaction of its own.
                    Err(e) if unique_index(&e) == Some(UniqueIndex::Upstream) => {
                        return Err(Abort::Handoff((provider, upstream_order_id.as_str())));
                    }
                    other => other?,
                }
            }
            ForwardOutcome::Ambiguous { detail } => {
                sqlx::query_as::<D, OrderRow>(concat!(
                    "UPDATE orders SET forward_state = 'ambiguous', forward_error = $2, \
                     updated_at = $3 WHERE id = $1 RETURNING ",
                    order_columns!()
                ))
                .bind(order.0)
                .bind(detail.as_str())
                .bind(now)
                .fetch_one(&mut *conn)
                .await?
            }
            ForwardOutcome::Failed { detail, .. } => {
                sqlx::query_as::<D, OrderRow>(concat!(
                    "UPDATE orders SET forward_error = $2, updated_at = $3 WHERE id = $1 \
                     RETURNING ",
                    order_columns!()
                ))
                .bind(order.0)
                .bind(detail.as_str())
                .bind(now)
                .fetch_one(&mut *conn)
                .await?
            }
        };
        Ok(updated)
    }

    /// [`Store::place_order`]: one placement in its own transaction.
    async fn place_order_impl(&self, new: NewOrder, now: Timestamp) -> StoreResult<Placed> {
        rules::check_charge(new.charge)?;
        match self.place_order_once(&new, now).await {
            Ok(placed) => Ok(placed),
            Err(Abort::Error(e)) => Err(e),
            // A concurrent placement with the same key won the race: its transaction committed
            // (ours was rolled back whole), so the first order is there to be read.
            Err(Abort::Handoff(())) => {
                let key = new.idempotency_key.as_deref().unwrap_or_default();
                let mut conn = self.writer.acquire().await?;
                let first = Self::order_by_key(&mut conn, new.customer_id, key)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Database(
                            "idempotency key clashed but no order holds it".to_owned(),
                        )
                    })?;
                Ok(Placed::Existing(first.try_into()?))
            }
        }
    }

    /// `place_order` without the handling of a concurrent duplicate idempotency key (handed
    /// back as `Abort::Handoff`).
    async fn place_order_once(&self, new: &NewOrder, now: Timestamp) -> Result<Placed, Abort<()>> {
        let units = to_i64("units", new.units)?;
        let quantity = new.quantity.map(|q| to_i64("quantity", q)).transpose()?;
        let placed_as = new
            .placed_as
            .as_ref()
            .map(|p| serde_json::to_string(p).map_err(|e| StoreError::Invalid(e.to_string())))
            .transpose()?;
        let mut tx = self.begin().await?;
        let result: Result<Placed, Abort<()>> = async {
            if let Some(key) = &new.idempotency_key
                && let Some(first) = Self::order_by_key(&mut tx, new.customer_id, key).await?
            {
                return Ok(Placed::Existing(first.try_into()?));
            }
            // The customer's row lock, taken here, serialises placements for one customer.
            let (status, balance): (String, i64) = sqlx::query_as::<D, (String, i64)>(sql::<D>(
                "SELECT status, balance FROM customers WHERE id = $1{for_update}",
            ))
            .bind(new.customer_id.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("customer"))?;
            match CustomerStatus::parse(&status) {
                Some(CustomerStatus::Active) => {}
                Some(CustomerStatus::Suspended) => {
                    return Err(StoreError::CustomerSuspended.into());
                }
                None => return Err(corrupt("customer status", status).into()),
            }
            if balance < new.charge.units() {
                return Err(StoreError::InsufficientFunds.into());
            }
            let inserted = sqlx::query_as::<D, OrderRow>(concat!(
                "INSERT INTO orders (customer_id, service_id, service_type, params, link, \
                 quantity, units, charge, refunded, status, forward_state, forward_attempts, \
                 idempotency_key, created_at, updated_at, placed_as, request_fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'Pending', 'queued', 0, $9, $10, $10, \
                 $11, $12) \
                 RETURNING ",
                order_columns!()
            ))
            .bind(new.customer_id.0)
            .bind(new.service_id.0)
            .bind(new.service_type.as_str())
            .bind(new.params.as_str())
            .bind(new.link.as_deref())
            .bind(quantity)
            .bind(units)
            .bind(new.charge.units())
            .bind(new.idempotency_key.as_deref())
            .bind(now)
            .bind(placed_as.as_deref())
            .bind(new.request_fingerprint.as_deref())
            .fetch_one(&mut *tx)
            .await;
            let row = match inserted {
                Err(e) if unique_index(&e) == Some(UniqueIndex::Idempotency) => {
                    return Err(Abort::Handoff(()));
                }
                other => other?,
            };
            let order = Order::try_from(row)?;
            if new.charge.is_positive() {
                Self::post(
                    &mut tx,
                    Posting {
                        customer: new.customer_id,
                        kind: LedgerKind::Charge,
                        amount: Money::from_units(-new.charge.units()),
                        order: Some(order.id),
                        reason: &rules::charge_reason(order.id),
                        actor: "customer",
                        now,
                    },
                )
                .await?;
            }
            Ok(Placed::New(order))
        }
        .await;
        settle(tx, result).await
    }

    /// A `Sent` outcome whose upstream id another order holds at that provider: the order is
    /// not lost but set aside as `ambiguous` for an admin, and the clash is reported.
    async fn upstream_clash(
        &self,
        order: OrderId,
        provider: &str,
        upstream_order_id: &str,
        now: Timestamp,
    ) -> StoreError {
        let result: StoreResult<String> = async {
            let mut tx = self.begin().await?;
            let result = async {
                let holder: Option<i64> = sqlx::query_scalar::<D, i64>(
                    "SELECT id FROM orders WHERE provider = $1 AND upstream_order_id = $2",
                )
                .bind(provider)
                .bind(upstream_order_id)
                .fetch_optional(&mut *tx)
                .await?;
                let message = rules::upstream_clash(provider, upstream_order_id, holder);
                let row = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
                if row.forward_state == ForwardState::Sending {
                    Self::close_pending_attempts(&mut tx, order, "ambiguous", Some(&message), now)
                        .await?;
                    sqlx::query::<D>(
                        "UPDATE orders SET forward_state = 'ambiguous', forward_error = $2, \
                         updated_at = $3 WHERE id = $1",
                    )
                    .bind(order.0)
                    .bind(message.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(message)
            }
            .await;
            settle(tx, result).await
        }
        .await;
        match result {
            Ok(message) => StoreError::Conflict(message),
            Err(e) => e,
        }
    }

    /// An audited change of one customer row: `update` is an `UPDATE customers ... WHERE id = $1
    /// RETURNING` statement, `bind` gives it its other values.
    async fn update_customer(
        &self,
        id: CustomerId,
        change: CustomerChange<'_>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        let mut tx = self.begin().await?;
        let result: StoreResult<CustomerRow> = async {
            let before = Self::lock_customer(&mut tx, id).await?;
            Self::notify_customer(&mut tx, id).await?;
            let (action, before_json, after_json, query) = match change {
                CustomerChange::Status(status) => (
                    "customer.status",
                    json!({ "status": before.status }),
                    json!({ "status": status.as_str() }),
                    sqlx::query_as::<D, CustomerRow>(concat!(
                        "UPDATE customers SET status = $2 WHERE id = $1 RETURNING ",
                        customer_columns!()
                    ))
                    .bind(id.0)
                    .bind(status.as_str()),
                ),
                // Only prefixes: the key and its hash never go into the audit log.
                CustomerChange::Key { hash, prefix } => (
                    "customer.rotate_key",
                    json!({ "key_prefix": before.key_prefix }),
                    json!({ "key_prefix": prefix }),
                    sqlx::query_as::<D, CustomerRow>(concat!(
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
                        sqlx::query_as::<D, CustomerRow>(concat!(
                            "UPDATE customers SET discount = $2 WHERE id = $1 RETURNING ",
                            customer_columns!()
                        ))
                        .bind(id.0)
                        .bind(text),
                    )
                }
            };
            let after = query.fetch_one(&mut *tx).await?;
            Self::write_audit(
                &mut tx,
                actor,
                action,
                &customer_target(id),
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

    /// Claims up to `limit` queued rows of an outbox (orders to forward, refills, cancels) for
    /// `worker`, in id order: `statement` binds the worker, the time and the limit.
    async fn claim_outbox<R>(
        &self,
        statement: &'static str,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<R>>
    where
        for<'r> R: sqlx::FromRow<'r, D::Row> + Send + Unpin + HasId,
    {
        let mut tx = self.begin().await?;
        let result = sqlx::query_as::<D, R>(statement)
            .bind(worker)
            .bind(now)
            .bind(limit_or_default(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from);
        let mut rows = settle(tx, result).await?;
        rows.sort_by_key(HasId::id);
        Ok(rows)
    }

    /// Marks the outbox rows left `sending` by a claim older than `claimed_before` as
    /// `ambiguous`: the upstream may have them, so they are not sent again.
    async fn recover_outbox(
        &self,
        statement: &'static str,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let mut tx = self.begin().await?;
        let result = sqlx::query_scalar::<D, i64>(statement)
            .bind(claimed_before)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from);
        let mut ids = settle(tx, result).await?;
        ids.sort_unstable();
        Ok(ids)
    }
}

/// An audited change to a customer row.
enum CustomerChange<'a> {
    Status(CustomerStatus),
    Key { hash: &'a str, prefix: &'a str },
    Discount(Option<Decimal>),
}

/// Outbox rows, put back in id order after a claim.
trait HasId {
    fn id(&self) -> i64;
}

impl HasId for OrderRow {
    fn id(&self) -> i64 {
        self.id
    }
}

impl HasId for RefillRow {
    fn id(&self) -> i64 {
        self.id
    }
}

impl HasId for CancelRow {
    fn id(&self) -> i64 {
        self.id
    }
}

/// The claim of an outbox (`refills`, `cancel_requests`): the same `MATERIALIZED` +
/// `{skip_locked}` claim as the forwarder's.
macro_rules! claim_outbox_sql {
    ($table:literal, $columns:expr) => {
        concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM ",
            $table,
            " WHERE forward_state = 'queued' ORDER BY id {limit:$3}{skip_locked}) \
             UPDATE ",
            $table,
            " SET forward_state = 'sending', claimed_by = $1, claimed_at = $2, \
             updated_at = $2 FROM picked WHERE id = picked_id RETURNING ",
            $columns
        )
    };
}

/// The recovery of an outbox's expired claims. A row marked `sending` before claims were
/// recorded has no `claimed_at`: its `updated_at` is when it was marked.
macro_rules! recover_outbox_sql {
    ($table:literal) => {
        concat!(
            "WITH stale AS MATERIALIZED ( \
                 SELECT id AS stale_id FROM ",
            $table,
            " WHERE forward_state = 'sending' \
                 AND COALESCE(claimed_at, updated_at) < $1{skip_locked}) \
             UPDATE ",
            $table,
            " SET forward_state = 'ambiguous', \
             error = 'found in sending after the claim by ' \
                 || COALESCE(claimed_by, 'an unknown worker') \
                 || ' expired: the upstream may have it, so it is not sent again', \
             updated_at = $2 FROM stale WHERE id = stale_id RETURNING id"
        )
    };
}

#[async_trait]
#[allow(private_bounds)]
impl<D: Dialect> Store for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: sqlx::IntoArguments<D>,
    usize: sqlx::ColumnIndex<D::Row>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> bool: sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> &'q str: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<i64>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<String>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'r> CustomerRow: sqlx::FromRow<'r, D::Row>,
    for<'r> LedgerRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderTermsRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderStatusRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AttemptRow: sqlx::FromRow<'r, D::Row>,
    for<'r> RefillRow: sqlx::FromRow<'r, D::Row>,
    for<'r> CancelRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AuditRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AdminRow: sqlx::FromRow<'r, D::Row>,
    for<'r> SessionRow: sqlx::FromRow<'r, D::Row>,
    for<'r> PollRow: sqlx::FromRow<'r, D::Row>,
    for<'r> WebhookEventRow: sqlx::FromRow<'r, D::Row>,
    for<'r> WebhookDeliveryRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AlertRow: sqlx::FromRow<'r, D::Row>,
{
    fn backend(&self) -> Backend {
        D::BACKEND
    }

    fn customer_events(&self) -> Option<tokio::sync::mpsc::Receiver<CustomerEvent>> {
        D::customer_events(&self.writer)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query::<D>("SELECT 1").execute(&self.reader).await?;
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
        let result = async {
            let row: CustomerRow = sqlx::query_as::<D, CustomerRow>(concat!(
                "INSERT INTO customers (name, status, currency, key_hash, key_prefix, balance, \
                 created_at) VALUES ($1, 'active', $2, $3, $4, 0, $5) RETURNING ",
                customer_columns!()
            ))
            .bind(new.name.as_str())
            .bind(new.currency.as_str())
            .bind(new.key_hash.as_str())
            .bind(new.key_prefix.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let customer = Customer::try_from(row)?;
            let after = json!({
                "name": customer.name,
                "currency": customer.currency,
                "key_prefix": customer.key_prefix,
                "status": customer.status.as_str(),
            })
            .to_string();
            Self::write_audit(
                &mut tx,
                actor,
                "customer.create",
                &customer_target(customer.id),
                None,
                Some(&after),
                now,
            )
            .await?;
            Ok(customer)
        }
        .await;
        settle(tx, result).await
    }

    async fn customer(&self, id: CustomerId) -> StoreResult<Customer> {
        sqlx::query_as::<D, CustomerRow>(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound("customer"))?
        .try_into()
    }

    async fn customer_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Customer>> {
        let row = sqlx::query_as::<D, CustomerRow>(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Customer::try_from).transpose()
    }

    async fn list_customers(&self) -> StoreResult<Vec<Customer>> {
        let rows = sqlx::query_as::<D, CustomerRow>(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers ORDER BY id"
        ))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn set_customer_status(
        &self,
        id: CustomerId,
        status: CustomerStatus,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        self.update_customer(id, CustomerChange::Status(status), actor, now)
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
        self.update_customer(id, change, actor, now).await
    }

    async fn set_discount(
        &self,
        id: CustomerId,
        discount: Option<Decimal>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer> {
        rules::check_discount(discount)?;
        self.update_customer(id, CustomerChange::Discount(discount), actor, now)
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
        rules::check_rate(rate)?;
        let mut tx = self.begin().await?;
        let result = async {
            Self::lock_customer(&mut tx, id).await?;
            Self::notify_customer(&mut tx, id).await?;
            let old: Option<String> = sqlx::query_scalar::<D, String>(
                "SELECT rate FROM customer_rates WHERE customer_id = $1 AND service_id = $2",
            )
            .bind(id.0)
            .bind(service.0)
            .fetch_optional(&mut *tx)
            .await?;
            let new = rate.map(|r| r.to_string());
            match &new {
                Some(text) => sqlx::query::<D>(
                    "INSERT INTO customer_rates (customer_id, service_id, rate) \
                     VALUES ($1, $2, $3) \
                     ON CONFLICT (customer_id, service_id) DO UPDATE SET rate = excluded.rate",
                )
                .bind(id.0)
                .bind(service.0)
                .bind(text.as_str()),
                None => sqlx::query::<D>(
                    "DELETE FROM customer_rates WHERE customer_id = $1 AND service_id = $2",
                )
                .bind(id.0)
                .bind(service.0),
            }
            .execute(&mut *tx)
            .await?;
            let before = json!({ "service": service.0, "rate": old }).to_string();
            let after = json!({ "service": service.0, "rate": new }).to_string();
            Self::write_audit(
                &mut tx,
                actor,
                "customer.rate",
                &customer_target(id),
                Some(&before),
                Some(&after),
                now,
            )
            .await
        }
        .await;
        settle(tx, result).await
    }

    async fn customer_rates(&self, id: CustomerId) -> StoreResult<Vec<(ServiceId, Decimal)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as::<D, (i64, String)>(
            "SELECT service_id, rate FROM customer_rates WHERE customer_id = $1 \
             ORDER BY service_id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?;
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
        rules::check_adjustment(kind, amount)?;
        let mut tx = self.begin().await?;
        let result = async {
            let before = Self::lock_customer(&mut tx, id).await?;
            let entry = Self::post(
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
            let before_json =
                json!({ "balance": Money::from_units(before.balance).to_string() }).to_string();
            let after_json = json!({
                "balance": entry.balance_after.to_string(),
                "amount": amount.to_string(),
                "kind": kind.as_str(),
                "reason": reason,
                "ledger_id": entry.id,
            })
            .to_string();
            Self::write_audit(
                &mut tx,
                actor,
                rules::adjustment_action(amount),
                &customer_target(id),
                Some(&before_json),
                Some(&after_json),
                now,
            )
            .await?;
            Ok(entry)
        }
        .await;
        settle(tx, result).await
    }

    async fn ledger(
        &self,
        id: CustomerId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query_as::<D, LedgerRow>(concat!(
            "SELECT ",
            ledger_columns!(),
            " FROM ledger WHERE customer_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(id.0)
        .bind(before)
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn ledger_sum(&self, id: CustomerId) -> StoreResult<Money> {
        let sum: i64 = sqlx::query_scalar::<D, i64>(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE customer_id = $1",
        )
        .bind(id.0)
        .fetch_one(&self.reader)
        .await?;
        Ok(Money::from_units(sum))
    }

    // ---- orders ----------------------------------------------------------------------------

    async fn place_order(&self, new: NewOrder, now: Timestamp) -> StoreResult<Placed> {
        self.place_order_impl(new, now).await
    }

    async fn place_orders(&self, batch: Vec<(NewOrder, Timestamp)>) -> Vec<StoreResult<Placed>> {
        self.place_orders_impl(batch, None).await
    }

    async fn place_orders_claiming(
        &self,
        batch: Vec<(NewOrder, Timestamp)>,
        claim: PlacementClaim<'_>,
    ) -> Vec<StoreResult<Placed>> {
        self.place_orders_impl(batch, Some(claim)).await
    }

    async fn place_and_finish(
        &self,
        placements: Vec<(NewOrder, Timestamp)>,
        claim: Option<PlacementClaim<'_>>,
        outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
    ) -> (Vec<StoreResult<Placed>>, Vec<StoreResult<Order>>) {
        self.place_and_finish_impl(placements, claim, outcomes)
            .await
    }

    async fn order_by_idempotency_key(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> StoreResult<Option<KeyedOrder>> {
        let found: Option<(i64, Option<String>)> = sqlx::query_as::<D, (i64, Option<String>)>(
            "SELECT id, request_fingerprint FROM orders \
             WHERE customer_id = $1 AND idempotency_key = $2",
        )
        .bind(customer.0)
        .bind(key)
        .fetch_optional(&self.reader)
        .await?;
        match found {
            None => Ok(None),
            Some((id, request_fingerprint)) => Ok(Some(KeyedOrder {
                order: self.order(OrderId(id)).await?,
                request_fingerprint,
            })),
        }
    }

    async fn order(&self, id: OrderId) -> StoreResult<Order> {
        sqlx::query_as::<D, OrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await?
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
        let rows = sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE customer_id = $1 AND id IN {int_list:$2} ORDER BY id"
        )))
        .bind(customer.0)
        .bind(int_list(ids.iter().map(|id| id.0)))
        .fetch_all(&self.reader)
        .await?;
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
        let rows = sqlx::query_as::<D, OrderStatusRow>(sql::<D>(concat!(
            "SELECT ",
            order_status_columns!(),
            " FROM orders WHERE customer_id = $1 AND id IN {int_list:$2} ORDER BY id"
        )))
        .bind(customer.0)
        .bind(int_list(ids.iter().map(|id| id.0)))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn list_orders(&self, filter: &OrderFilter) -> StoreResult<Vec<Order>> {
        let mut query = QueryBuilder::<D>::new(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE 1 = 1"
        ));
        if let Some(customer) = filter.customer_id {
            query.push(" AND customer_id = ").push_bind(customer.0);
        }
        if let Some(state) = filter.forward_state {
            query
                .push(" AND forward_state = ")
                .push_bind(state.as_str().to_owned());
        }
        if let Some(status) = &filter.status {
            query
                .push(" AND status = ")
                .push_bind(order_status_text(status).0.to_owned());
        }
        if let Some(provider) = &filter.provider {
            query.push(" AND provider = ").push_bind(provider.clone());
        }
        if let Some(link) = &filter.link {
            query.push(" AND link = ").push_bind(link.clone());
        }
        if let Some(service) = filter.service_id {
            query.push(" AND service_id = ").push_bind(service.0);
        }
        if let Some(from) = filter.created_from {
            query.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(before) = filter.created_before {
            query.push(" AND created_at < ").push_bind(before);
        }
        if let Some(before) = filter.before_id {
            query.push(" AND id < ").push_bind(before.0);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_or_default(filter.limit));
        let rows: Vec<OrderRow> = query.build_query_as().fetch_all(&self.reader).await?;
        convert_all(rows)
    }

    async fn count_by_status(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as::<D, (String, i64)>(
            "SELECT status, CAST(SUM(orders) AS BIGINT) FROM (\
             SELECT status, orders FROM order_counts UNION ALL \
             SELECT status, orders FROM order_count_deltas) t \
             GROUP BY status HAVING SUM(orders) > 0 ORDER BY status",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    async fn count_by_forward_state(&self) -> StoreResult<Vec<(ForwardState, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as::<D, (String, i64)>(
            "SELECT forward_state, CAST(SUM(orders) AS BIGINT) FROM (\
             SELECT forward_state, orders FROM order_counts UNION ALL \
             SELECT forward_state, orders FROM order_count_deltas) t \
             GROUP BY forward_state",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut counts: Vec<(ForwardState, i64)> =
            ForwardState::ALL.iter().map(|&state| (state, 0)).collect();
        for (state, count) in rows {
            let state = crate::rows::forward_state(&state)?;
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
        let statement = sql::<D>(concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM orders \
                 WHERE forward_state = 'queued' AND forward_after <= $2 \
                 ORDER BY id {limit:$3}{skip_locked}) \
             UPDATE orders SET forward_state = 'sending', claimed_by = $1, claimed_at = $2, \
             forward_attempts = forward_attempts + 1, updated_at = $2 \
             FROM picked WHERE id = picked_id \
             RETURNING ",
            order_columns!()
        ));
        let rows: Vec<OrderRow> = self.claim_outbox(statement, worker, limit, now).await?;
        convert_all(rows)
    }

    async fn claim_and_begin(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
        first_attempts: &mut (dyn for<'o> FnMut(&'o [Order]) -> Vec<AttemptStart> + Send),
    ) -> StoreResult<Vec<Order>> {
        let mut tx = self.begin().await?;
        let result = Self::claim_and_begin_in(&mut tx, worker, limit, now, first_attempts).await;
        settle(tx, result).await
    }

    async fn begin_attempt(
        &self,
        order: OrderId,
        provider: &str,
        upstream_service: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let result =
            Self::note_attempt(&mut tx, order, provider, upstream_service, None, now).await;
        settle(tx, result).await
    }

    async fn renew_claim(&self, order: OrderId, worker: &str, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let result = sqlx::query_scalar::<D, i64>(
            "UPDATE orders SET claimed_at = $3 WHERE id = $1 AND forward_state = 'sending' \
             AND claimed_by = $2 AND NOT EXISTS (SELECT 1 FROM forward_attempts \
             WHERE order_id = $1 AND outcome = 'pending') RETURNING id",
        )
        .bind(order.0)
        .bind(worker)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map(|renewed| renewed.is_some())
        .map_err(StoreError::from);
        settle(tx, result).await
    }

    async fn begin_attempts(&self, attempts: &[AttemptStart], now: Timestamp) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        // Locked in id order, like every multi-row lock here: no deadlock with another batch.
        let mut sorted: Vec<&AttemptStart> = attempts.iter().collect();
        sorted.sort_by_key(|a| a.order);
        let distinct = sorted.windows(2).all(|pair| pair[0].order != pair[1].order);
        if distinct && sorted.len() > 1 {
            return self.begin_attempts_together(&sorted, now).await;
        }
        let mut tx = self.begin().await?;
        let result = async {
            for a in sorted {
                Self::note_attempt(
                    &mut tx,
                    a.order,
                    &a.provider,
                    &a.upstream_service,
                    a.why.as_deref(),
                    now,
                )
                .await?;
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
        self.finish_attempt_impl(order, &outcome, now).await
    }

    async fn finish_attempts(
        &self,
        outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
    ) -> Vec<StoreResult<Order>> {
        self.finish_attempts_impl(outcomes).await
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
            let row = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            rules::require_state(&row, &[ForwardState::Sending], "requeue")?;
            if Self::has_pending_attempt(&mut tx, order).await? {
                return Err(rules::attempt_in_flight(order));
            }
            sqlx::query::<D>(
                "UPDATE orders SET forward_state = 'queued', forward_after = $2, \
                 forward_error = $3, claimed_by = NULL, claimed_at = NULL, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(order.0)
            .bind(not_before)
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
            let row = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            rules::require_state(
                &row,
                &[ForwardState::Sending, ForwardState::Queued],
                "reject",
            )?;
            if Self::has_pending_attempt(&mut tx, order).await? {
                return Err(rules::attempt_in_flight(order));
            }
            Self::cancel_locally(&mut tx, &row, &LocalCancel::rejected(order, detail), now).await
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
        let result: StoreResult<Vec<i64>> = async {
            // SKIP LOCKED: a live worker in the middle of finishing an attempt is left alone.
            let ids: Vec<i64> = sqlx::query_scalar::<D, i64>(sql::<D>(
                "WITH stale AS MATERIALIZED ( \
                     SELECT id AS stale_id FROM orders WHERE forward_state = 'sending' \
                     AND (claimed_at IS NULL OR claimed_at < $1){skip_locked}) \
                 UPDATE orders SET forward_state = 'ambiguous', \
                 forward_error = 'found in sending after claim by ' \
                     || COALESCE(claimed_by, 'an unknown worker') || ' expired', \
                 updated_at = $2 \
                 FROM stale WHERE id = stale_id \
                 RETURNING id",
            ))
            .bind(claimed_before)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            if !ids.is_empty() {
                sqlx::query::<D>(sql::<D>(
                    "UPDATE forward_attempts SET outcome = 'ambiguous', finished_at = $2, \
                     detail = COALESCE(detail, 'worker lease expired with the attempt in flight') \
                     WHERE order_id IN {int_list:$1} AND outcome = 'pending'",
                ))
                .bind(int_list(ids.iter().copied()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Ok(ids)
        }
        .await;
        let mut ids = settle(tx, result).await?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(OrderId).collect())
    }

    async fn attempts(&self, order: OrderId) -> StoreResult<Vec<ForwardAttempt>> {
        let rows = sqlx::query_as::<D, AttemptRow>(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM forward_attempts WHERE order_id = $1 ORDER BY id"
        ))
        .bind(order.0)
        .fetch_all(&self.reader)
        .await?;
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
        rules::check_attach(provider, upstream_order_id)?;
        let mut tx = self.begin().await?;
        let result = async {
            let before = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            rules::require_state(
                &before,
                &[ForwardState::Ambiguous],
                "attach an upstream order to",
            )?;
            let holder: Option<i64> = sqlx::query_scalar::<D, i64>(
                "SELECT id FROM orders WHERE provider = $1 AND upstream_order_id = $2 \
                 AND id <> $3",
            )
            .bind(provider)
            .bind(upstream_order_id)
            .bind(order.0)
            .fetch_optional(&mut *tx)
            .await?;
            if holder.is_some() {
                return Err(StoreError::Conflict(rules::upstream_clash(
                    provider,
                    upstream_order_id,
                    holder,
                )));
            }
            let after: Order = sqlx::query_as::<D, OrderRow>(concat!(
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
            .await?
            .try_into()?;
            Self::write_audit(
                &mut tx,
                actor,
                "order.attach_upstream",
                &order_target(order),
                Some(&order_summary(&before).to_string()),
                Some(&order_summary(&after).to_string()),
                now,
            )
            .await?;
            Ok(after)
        }
        .await;
        settle(tx, result).await
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
            let before = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            rules::require_state(&before, &[ForwardState::Ambiguous], "cancel")?;
            let why = LocalCancel::ambiguous_canceled(order, actor, reason);
            let refund = Self::cancel_locally(&mut tx, &before, &why, now).await?;
            let after = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            let mut after = order_summary(&after);
            if let Some(fields) = after.as_object_mut() {
                fields.insert("refund".to_owned(), json!(refund.to_string()));
                fields.insert("reason".to_owned(), json!(reason));
            }
            Self::write_audit(
                &mut tx,
                actor,
                "order.cancel_ambiguous",
                &order_target(order),
                Some(&order_summary(&before).to_string()),
                Some(&after.to_string()),
                now,
            )
            .await?;
            Ok(refund)
        }
        .await;
        settle(tx, result).await
    }

    async fn attention_orders(&self, limit: u32) -> StoreResult<Vec<Order>> {
        let rows = sqlx::query_as::<D, OrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE attention IS NOT NULL ORDER BY id LIMIT $1"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn order_timeline(&self, order: OrderId) -> StoreResult<OrderTimeline> {
        let events: Vec<(i64, String, String)> = sqlx::query_as::<D, (i64, String, String)>(
            "SELECT at, status, forward_state FROM order_events WHERE order_id = $1 ORDER BY id",
        )
        .bind(order.0)
        .fetch_all(&self.reader)
        .await?;
        let events = events
            .into_iter()
            .map(|(at, status, state)| {
                Ok(OrderEvent {
                    at,
                    status,
                    forward_state: crate::rows::forward_state(&state)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let ledger = sqlx::query_as::<D, LedgerRow>(concat!(
            "SELECT ",
            ledger_columns!(),
            " FROM ledger WHERE order_id = $1 ORDER BY id"
        ))
        .bind(order.0)
        .fetch_all(&self.reader)
        .await?;
        let refills = sqlx::query_as::<D, RefillRow>(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE order_id = $1 ORDER BY id"
        ))
        .bind(order.0)
        .fetch_all(&self.reader)
        .await?;
        let mut conn = self.reader.acquire().await?;
        let cancel = Self::cancel_request_of(&mut conn, order).await?;
        Ok(OrderTimeline {
            events,
            ledger: convert_all(ledger)?,
            refills: convert_all(refills)?,
            cancel,
        })
    }

    async fn stuck_orders_count(&self, before: Timestamp) -> StoreResult<i64> {
        Ok(sqlx::query_scalar::<D, i64>(
            "SELECT COUNT(*) FROM orders WHERE forward_state IN ('queued', 'sending') \
             AND created_at < $1",
        )
        .bind(before)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn compact_aggregates(&self) -> StoreResult<()> {
        // Each statement takes exactly the deltas it deletes, whoever appends meanwhile; the
        // totals are updated in key order, so two compactions cannot deadlock.
        if D::COMPACT_AGGREGATES.is_empty() {
            return Ok(());
        }
        let folded: i64 = sqlx::query_scalar::<D, i64>(
            "SELECT (SELECT COUNT(*) FROM order_count_deltas) \
             + (SELECT COUNT(*) FROM order_day_deltas) \
             + (SELECT COUNT(*) FROM order_provider_day_deltas) \
             + (SELECT COUNT(*) FROM route_day_deltas) \
             + (SELECT COUNT(*) FROM route_day_time_deltas)",
        )
        .fetch_one(&self.writer)
        .await?;
        for statement in D::COMPACT_AGGREGATES {
            sqlx::query::<D>(*statement).execute(&self.writer).await?;
        }
        // A big fold (a bulk import) leaves as many dead rows, which readers would scan until
        // autovacuum came by: clear them now.
        if folded > 10_000 {
            for statement in D::VACUUM_AGGREGATES {
                sqlx::query::<D>(*statement).execute(&self.writer).await?;
            }
        }
        Ok(())
    }

    async fn customer_totals(&self) -> StoreResult<Vec<CustomerTotals>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as::<D, (i64, i64, i64)>(
            "SELECT id, orders_placed, spent FROM customers ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, orders, spent)| CustomerTotals {
                customer: CustomerId(id),
                orders,
                spent: Money::from_units(spent),
            })
            .collect())
    }

    async fn attention_count(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar::<D, i64>("SELECT COUNT(*) FROM orders WHERE attention IS NOT NULL")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn settle_attention(
        &self,
        order: OrderId,
        refund: Money,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Money> {
        let mut tx = self.begin().await?;
        let result = async {
            let before = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            rules::check_settlement(&before, refund)?;
            if refund.is_positive() {
                let text = rules::settlement_reason(order, actor, reason);
                Self::pay_refund(&mut tx, &before, refund, &text, actor, now).await?;
            }
            sqlx::query::<D>("UPDATE orders SET attention = NULL, updated_at = $2 WHERE id = $1")
                .bind(order.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let mut before_json = order_summary(&before);
            if let Some(fields) = before_json.as_object_mut() {
                fields.insert("attention".to_owned(), json!(before.attention));
            }
            let after = json!({
                "refund": refund.to_string(),
                "reason": reason,
                "refunded": before.refunded.checked_add(refund).unwrap_or(before.charge).to_string(),
            });
            Self::write_audit(
                &mut tx,
                actor,
                "order.settle",
                &order_target(order),
                Some(&before_json.to_string()),
                Some(&after.to_string()),
                now,
            )
            .await?;
            Ok(refund)
        }
        .await;
        settle(tx, result).await
    }

    // ---- polling ---------------------------------------------------------------------------

    async fn claim_polls(
        &self,
        provider: Option<&str>,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<PollItem>> {
        // Two texts: the poll index leads with the provider, which a `$2 IS NULL OR` would
        // keep the planner from seeking on.
        macro_rules! due {
            ($provider:literal) => {
                concat!(
                    "SELECT id, provider, upstream_order_id, status, status_raw, created_at \
                     FROM orders{poll_index} WHERE forward_state = 'sent' AND status NOT IN ",
                    terminal_statuses!(),
                    " AND next_poll_at IS NOT NULL AND next_poll_at <= $1 \
                     AND upstream_order_id IS NOT NULL AND ",
                    $provider,
                    " AND NOT EXISTS (SELECT 1 FROM poll_leases AS l \
                     WHERE l.order_id = orders.id AND l.expires_at > $1) \
                     ORDER BY next_poll_at, id {limit:$3}{skip_locked}"
                )
            };
        }
        let text = match provider {
            Some(_) => sql::<D>(due!("provider = $2")),
            None => sql::<D>(due!("$2 IS NULL")),
        };
        let mut tx = self.begin().await?;
        let result = async {
            let mut rows = sqlx::query_as::<D, PollRow>(text)
                .bind(now)
                .bind(provider)
                .bind(limit_or_default(limit))
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            // A lease another claim took since this one read (PostgreSQL, another instance)
            // is left to it: only the ids returned are this claim's.
            let leased: HashSet<i64> = sqlx::query_scalar::<D, i64>(sql::<D>(
                "INSERT INTO poll_leases (order_id, expires_at) \
                 SELECT value, $2 FROM {int_list:$1} AS l WHERE true \
                 ON CONFLICT (order_id) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE poll_leases.expires_at <= $3 RETURNING order_id",
            ))
            .bind(int_list(rows.iter().map(|row| row.id)))
            .bind(lease_until)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            rows.retain(|row| leased.contains(&row.id));
            convert_all(rows)
        }
        .await;
        settle(tx, result).await
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
            let row = sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE provider = $1 AND upstream_order_id = $2{for_update}"
            )))
            .bind(provider)
            .bind(upstream_order_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let order = Order::try_from(row)?;
            Self::release_poll_leases(&mut tx, [order.id]).await?;
            let (terminal, refund, attention) = match rules::plan_status(&(&order).into(), &update)
            {
                StatusPlan::Settled => {
                    return Ok(Some(StatusApplied {
                        order_id: order.id,
                        refund: None,
                        terminal: true,
                    }));
                }
                StatusPlan::Apply {
                    terminal,
                    refund,
                    attention,
                } => (terminal, refund, attention),
            };
            // The refund first: the status change's webhook event (a trigger) then records
            // the charge net of it, as `status` shows it from now on.
            if let Some((amount, reason)) = &refund {
                match Self::pay_refund(&mut tx, &order, *amount, reason, "reconciler", now).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => return Err(Abort::Handoff(order.id)),
                    Err(e) => return Err(e.into()),
                }
            }
            Self::record_status(
                &mut tx,
                order.id,
                &update,
                terminal,
                attention.as_deref(),
                now,
            )
            .await?;
            Ok(Some(StatusApplied {
                order_id: order.id,
                refund: refund.map(|(amount, _)| amount),
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
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        match self.apply_status_batch(provider, &updates, now).await {
            Ok(results) => Ok(results),
            Err(Abort::Error(e)) => Err(e),
            // A refund failed and the batch was rolled back: each order again on its own, so
            // that one order's trouble leaves only its own status unapplied (a refused second
            // refund is settled there; any other failure is logged, the order answered `None`
            // and polled again after its lease).
            Err(Abort::Handoff(error)) => {
                tracing::warn!(%error, "a status batch's refunds failed; applying the batch order by order");
                let mut results = Vec::with_capacity(updates.len());
                for (upstream_order_id, update) in updates {
                    results.push(
                        match self
                            .apply_status(provider, &upstream_order_id, update, now)
                            .await
                        {
                            Ok(applied) => applied,
                            Err(error) => {
                                tracing::error!(provider, upstream_order = %upstream_order_id, %error, "cannot apply a polled status");
                                None
                            }
                        },
                    );
                }
                Ok(results)
            }
        }
    }

    async fn defer_polls(&self, orders: &[OrderId], next_poll_at: Timestamp) -> StoreResult<()> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let result = async {
            sqlx::query::<D>(sql::<D>(concat!(
                "UPDATE orders SET next_poll_at = $1 WHERE id IN {int_list:$2} \
                 AND forward_state = 'sent' AND status NOT IN ",
                terminal_statuses!()
            )))
            .bind(next_poll_at)
            .bind(int_list(orders.iter().map(|id| id.0)))
            .execute(&mut *tx)
            .await?;
            Self::release_poll_leases(&mut tx, orders.iter().copied()).await
        }
        .await;
        settle(tx, result).await
    }

    // ---- refills and cancels ---------------------------------------------------------------

    async fn create_refill(
        &self,
        customer: CustomerId,
        order: OrderId,
        now: Timestamp,
    ) -> StoreResult<Refill> {
        let mut tx = self.begin().await?;
        let result = async {
            // The order's row lock makes the check and the insert one step for concurrent asks.
            let row = Self::lock_order(&mut tx, order).await?;
            if row.customer_id != customer.0 {
                return Err(StoreError::NotFound("order"));
            }
            let open = sqlx::query_as::<D, RefillRow>(concat!(
                "SELECT ",
                refill_columns!(),
                " FROM refills WHERE order_id = $1 \
                 AND forward_state IN ('queued', 'sending', 'sent') \
                 AND status NOT IN ('Completed', 'Rejected', 'Canceled') ORDER BY id LIMIT 1"
            ))
            .bind(order.0)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(open) = open {
                return Ok(open);
            }
            Ok(sqlx::query_as::<D, RefillRow>(concat!(
                "INSERT INTO refills (order_id, customer_id, provider, status, forward_state, \
                 created_at, updated_at) \
                 SELECT id, customer_id, provider, 'Pending', 'queued', $3, $3 FROM orders \
                 WHERE id = $1 AND customer_id = $2 RETURNING ",
                refill_columns!()
            ))
            .bind(order.0)
            .bind(customer.0)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?)
        }
        .await;
        settle(tx, result).await?.try_into()
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
        // A status change writes a webhook event (a trigger): the order's row lock, taken
        // first as everywhere, keeps the order's events in commit order with its others.
        let order: Option<i64> =
            match sqlx::query_scalar::<D, i64>("SELECT order_id FROM refills WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
            {
                Ok(order) => order,
                Err(e) => return settle(tx, Err(StoreError::from(e))).await,
            };
        if update.status.is_some()
            && let Some(order) = order
            && let Err(e) = Self::lock_order(&mut tx, OrderId(order)).await
        {
            return settle(tx, Err(e)).await;
        }
        let result = sqlx::query_as::<D, RefillRow>(concat!(
            "UPDATE refills SET provider = COALESCE($2, provider), \
             upstream_refill_id = COALESCE($3, upstream_refill_id), \
             status = COALESCE($4, status), \
             status_raw = CASE WHEN $4 IS NULL THEN status_raw ELSE $5 END, \
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
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from);
        settle(tx, result)
            .await?
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
        let rows = sqlx::query_as::<D, RefillRow>(sql::<D>(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE customer_id = $1 AND id IN {int_list:$2} ORDER BY id"
        )))
        .bind(customer.0)
        .bind(int_list(ids.iter().map(|id| id.0)))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn refills_in_state(&self, state: ForwardState, limit: u32) -> StoreResult<Vec<Refill>> {
        let rows = sqlx::query_as::<D, RefillRow>(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE forward_state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn unfinished_refills(&self, limit: u32) -> StoreResult<Vec<Refill>> {
        let rows = sqlx::query_as::<D, RefillRow>(concat!(
            "SELECT ",
            refill_columns!(),
            " FROM refills WHERE forward_state = 'sent' \
             AND status NOT IN ('Completed', 'Rejected', 'Canceled') ORDER BY id LIMIT $1"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn claim_refills(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Refill>> {
        let statement = sql::<D>(claim_outbox_sql!("refills", refill_columns!()));
        let rows: Vec<RefillRow> = self.claim_outbox(statement, worker, limit, now).await?;
        convert_all(rows)
    }

    async fn recover_sending_refills(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<RefillId>> {
        let statement = sql::<D>(recover_outbox_sql!("refills"));
        let ids = self.recover_outbox(statement, claimed_before, now).await?;
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
            // The order's row lock serialises every cancel (and the forwarder's finish) of it.
            let row = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
            if row.customer_id != customer {
                return Err(StoreError::NotFound("order"));
            }
            let existing = Self::cancel_request_of(&mut tx, order).await?;
            match rules::plan_cancel(&row, existing.as_ref()) {
                CancelPlan::Locally => {
                    let why = LocalCancel::by_customer(order);
                    let refund = Self::cancel_locally(&mut tx, &row, &why, now).await?;
                    // Recorded while the order was on its way and then queued again.
                    Self::close_cancel_request(
                        &mut tx,
                        order,
                        "was canceled before forwarding",
                        now,
                    )
                    .await?;
                    Ok(CancelOutcome::CanceledLocally { refund })
                }
                CancelPlan::Existing => Ok(CancelOutcome::Requested(
                    existing.ok_or(StoreError::NotFound("cancel request"))?,
                )),
                CancelPlan::Request => {
                    sqlx::query::<D>(
                        "INSERT INTO cancel_requests (order_id, customer_id, forward_state, \
                         created_at, updated_at) VALUES ($1, $2, 'queued', $3, $3) \
                         ON CONFLICT (order_id) DO NOTHING",
                    )
                    .bind(order.0)
                    .bind(customer.0)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let request = Self::cancel_request_of(&mut tx, order)
                        .await?
                        .ok_or(StoreError::NotFound("cancel request"))?;
                    Ok(CancelOutcome::Requested(request))
                }
                CancelPlan::Refuse(message) => Err(StoreError::InvalidState(message)),
            }
        }
        .await;
        settle(tx, result).await
    }

    async fn close_unsendable_cancels(
        &self,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<(OrderId, Option<Money>)>> {
        let mut tx = self.begin().await?;
        let result = async {
            // Requests whose order will never be upstream (refused: `rejected`) or went back to
            // the queue: neither can be forwarded, both end here.
            let candidates: Vec<i64> = sqlx::query_scalar::<D, i64>(
                "SELECT c.order_id FROM cancel_requests c JOIN orders o ON o.id = c.order_id \
                 WHERE c.forward_state = 'queued' AND o.forward_state IN ('queued', 'rejected') \
                 ORDER BY c.order_id LIMIT $1",
            )
            .bind(limit_or_default(limit))
            .fetch_all(&mut *tx)
            .await?;
            let mut closed = Vec::with_capacity(candidates.len());
            for id in candidates {
                let order = OrderId(id);
                // Locked, then looked at again: the forwarder may have moved it meanwhile.
                let row = Order::try_from(Self::lock_order(&mut tx, order).await?)?;
                let outcome = match row.forward_state {
                    ForwardState::Queued => {
                        let why = LocalCancel::by_customer(order);
                        let refund = Self::cancel_locally(&mut tx, &row, &why, now).await?;
                        Self::close_cancel_request(
                            &mut tx,
                            order,
                            "was queued again before forwarding",
                            now,
                        )
                        .await?;
                        Some(refund)
                    }
                    ForwardState::Rejected => {
                        // Refunded in full when every route refused it.
                        Self::close_cancel_request(&mut tx, order, "was refused upstream", now)
                            .await?;
                        None
                    }
                    _ => continue,
                };
                closed.push((order, outcome));
            }
            Ok(closed)
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
        let mut tx = self.begin().await?;
        let result = sqlx::query_as::<D, CancelRow>(concat!(
            "UPDATE cancel_requests SET forward_state = $2, error = $3, updated_at = $4 \
             WHERE id = $1 RETURNING ",
            cancel_columns!()
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from);
        settle(tx, result)
            .await?
            .ok_or(StoreError::NotFound("cancel request"))?
            .try_into()
    }

    async fn cancels_in_state(
        &self,
        state: ForwardState,
        limit: u32,
    ) -> StoreResult<Vec<CancelRequest>> {
        let rows = sqlx::query_as::<D, CancelRow>(concat!(
            "SELECT ",
            cancel_columns!(),
            " FROM cancel_requests WHERE forward_state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn claim_cancels(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<CancelRequest>> {
        // Only requests whose order is upstream (`sent`): one recorded while its order was
        // `sending` or `ambiguous` waits for the outcome, without holding up the others.
        let statement = sql::<D>(concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM cancel_requests WHERE forward_state = 'queued' \
                 AND order_id IN (SELECT id FROM orders WHERE forward_state = 'sent') \
                 ORDER BY id {limit:$3}{skip_locked}) \
             UPDATE cancel_requests SET forward_state = 'sending', claimed_by = $1, \
             claimed_at = $2, updated_at = $2 FROM picked WHERE id = picked_id RETURNING ",
            cancel_columns!()
        ));
        let rows: Vec<CancelRow> = self.claim_outbox(statement, worker, limit, now).await?;
        convert_all(rows)
    }

    async fn recover_sending_cancels(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let statement = sql::<D>(recover_outbox_sql!("cancel_requests"));
        self.recover_outbox(statement, claimed_before, now).await
    }

    // ---- catalog and audit -----------------------------------------------------------------

    async fn service_id(&self, provider: &str, upstream_service: &str) -> StoreResult<ServiceId> {
        const SELECT: &str =
            "SELECT id FROM service_ids WHERE provider = $1 AND upstream_service = $2";
        // Almost always already assigned: answered by a reader, without a write transaction.
        let known: Option<i64> = sqlx::query_scalar::<D, i64>(SELECT)
            .bind(provider)
            .bind(upstream_service)
            .fetch_optional(&self.reader)
            .await?;
        if let Some(id) = known {
            return Ok(ServiceId(id));
        }
        let mut tx = self.begin().await?;
        let result: StoreResult<i64> = async {
            // ON CONFLICT waits for a concurrent inserter's commit, so the SELECT then sees it.
            sqlx::query::<D>(
                "INSERT INTO service_ids (provider, upstream_service) VALUES ($1, $2) \
                 ON CONFLICT (provider, upstream_service) DO NOTHING",
            )
            .bind(provider)
            .bind(upstream_service)
            .execute(&mut *tx)
            .await?;
            Ok(sqlx::query_scalar::<D, i64>(SELECT)
                .bind(provider)
                .bind(upstream_service)
                .fetch_one(&mut *tx)
                .await?)
        }
        .await;
        Ok(ServiceId(settle(tx, result).await?))
    }

    async fn service_ids(&self) -> StoreResult<Vec<(ServiceId, String, String)>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as::<D, (i64, String, String)>(
            "SELECT id, provider, upstream_service FROM service_ids ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
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
        let result = Self::write_audit(&mut tx, actor, action, target, before, after, now).await;
        settle(tx, result).await
    }

    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query_as::<D, AuditRow>(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    async fn search_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut query = QueryBuilder::<D>::new(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE 1 = 1"
        ));
        // Prefixes compared with substr and length: the same on both databases (LIKE is
        // case-insensitive on SQLite only, and would need its wildcards escaped).
        for (column, prefix) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target", &filter.target),
        ] {
            if let Some(prefix) = prefix {
                query
                    .push(format!(" AND substr({column}, 1, CAST("))
                    .push_bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
                    .push(" AS INTEGER)) = ")
                    .push_bind(prefix.clone());
            }
        }
        if let Some(from) = filter.from {
            query.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(before) = filter.before {
            query.push(" AND created_at < ").push_bind(before);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_or_default(filter.limit));
        let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.reader).await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    async fn order_totals_since(&self, since: Timestamp) -> StoreResult<OrderTotals> {
        const DAY_MS: i64 = 86_400_000;
        let first = since.div_euclid(DAY_MS);
        let days: Vec<(i64, i64, i64, i64)> = sqlx::query_as::<D, (i64, i64, i64, i64)>(
            "SELECT day, CAST(SUM(orders) AS BIGINT), CAST(SUM(charged) AS BIGINT), \
             CAST(SUM(refunded) AS BIGINT) FROM (\
             SELECT day, orders, charged, refunded FROM order_days WHERE day >= $1 UNION ALL \
             SELECT day, orders, charged, refunded FROM order_day_deltas WHERE day >= $1) t \
             GROUP BY day HAVING SUM(orders) > 0 ORDER BY day",
        )
        .bind(first)
        .fetch_all(&self.reader)
        .await?;
        type ProviderRow = (i64, String, i64, i64, i64);
        let providers: Vec<ProviderRow> = sqlx::query_as::<D, ProviderRow>(
            "SELECT day, provider, CAST(SUM(orders) AS BIGINT), CAST(SUM(cost_nanos) AS BIGINT), \
             CAST(SUM(kept_cost_nanos) AS BIGINT) FROM (\
             SELECT day, provider, orders, cost_nanos, kept_cost_nanos FROM order_provider_days \
             WHERE day >= $1 UNION ALL \
             SELECT day, provider, orders, cost_nanos, kept_cost_nanos \
             FROM order_provider_day_deltas WHERE day >= $1) t \
             GROUP BY day, provider HAVING SUM(orders) > 0 ORDER BY day, provider",
        )
        .bind(first)
        .fetch_all(&self.reader)
        .await?;
        Ok(OrderTotals {
            days: days
                .into_iter()
                .map(|(day, orders, charged, refunded)| DayTotals {
                    day_start: day * DAY_MS,
                    orders,
                    charged: Money::from_units(charged),
                    refunded: Money::from_units(refunded),
                })
                .collect(),
            providers: providers
                .into_iter()
                .map(|(day, provider, orders, cost, kept)| ProviderDayTotals {
                    day_start: day * DAY_MS,
                    provider,
                    orders,
                    cost: Decimal::new(cost, 8),
                    kept_cost: Decimal::new(kept, 8),
                })
                .collect(),
        })
    }

    async fn create_admin(
        &self,
        new: NewAdmin,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<AdminUser> {
        rules::check_username(&new.username)?;
        let mut tx = self.begin().await?;
        let result = async {
            let row: AdminRow = sqlx::query_as::<D, AdminRow>(concat!(
                "INSERT INTO admin_users (username, password_hash, role, failed_logins, \
                 created_at) VALUES ($1, $2, $3, 0, $4) RETURNING ",
                admin_columns!()
            ))
            .bind(new.username.as_str())
            .bind(new.password_hash.as_str())
            .bind(new.role.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let user = AdminUser::try_from(row)?;
            let after = json!({"username": user.username, "role": user.role.as_str()}).to_string();
            Self::write_audit(
                &mut tx,
                actor,
                "admin.create",
                &rules::admin_target(user.id),
                None,
                Some(&after),
                now,
            )
            .await?;
            Ok(user)
        }
        .await;
        settle(tx, result).await
    }

    async fn admins(&self) -> StoreResult<Vec<AdminUser>> {
        let rows = sqlx::query_as::<D, AdminRow>(concat!(
            "SELECT ",
            admin_columns!(),
            " FROM admin_users ORDER BY username"
        ))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    async fn admin_by_username(&self, username: &str) -> StoreResult<Option<AdminUser>> {
        sqlx::query_as::<D, AdminRow>(concat!(
            "SELECT ",
            admin_columns!(),
            " FROM admin_users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.reader)
        .await?
        .map(AdminUser::try_from)
        .transpose()
    }

    async fn login_failed(
        &self,
        user: i64,
        lockout: Lockout,
        now: Timestamp,
    ) -> StoreResult<AdminUser> {
        let mut tx = self.begin().await?;
        let result = async {
            let row: AdminRow = sqlx::query_as::<D, AdminRow>(sql::<D>(concat!(
                "SELECT ",
                admin_columns!(),
                " FROM admin_users WHERE id = $1{for_update}"
            )))
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("admin user"))?;
            let before = AdminUser::try_from(row)?;
            let (failed, locked_until) =
                rules::after_failed_login(before.failed_logins, lockout, now);
            let row: AdminRow = sqlx::query_as::<D, AdminRow>(concat!(
                "UPDATE admin_users SET failed_logins = $2, \
                 locked_until = COALESCE($3, locked_until) WHERE id = $1 RETURNING ",
                admin_columns!()
            ))
            .bind(user)
            .bind(i64::from(failed))
            .bind(locked_until)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(until) = locked_until {
                let after = json!({"locked_until": until}).to_string();
                Self::write_audit(
                    &mut tx,
                    "console",
                    "admin.lock",
                    &rules::admin_target(user),
                    None,
                    Some(&after),
                    now,
                )
                .await?;
            }
            AdminUser::try_from(row)
        }
        .await;
        settle(tx, result).await
    }

    async fn login_succeeded(
        &self,
        user: i64,
        session: NewSession,
        now: Timestamp,
    ) -> StoreResult<AdminSession> {
        let mut tx = self.begin().await?;
        let result = async {
            let row: AdminRow = sqlx::query_as::<D, AdminRow>(concat!(
                "UPDATE admin_users SET failed_logins = 0, locked_until = NULL, \
                 last_login_at = $2 WHERE id = $1 \
                 AND (locked_until IS NULL OR locked_until <= $2) RETURNING ",
                admin_columns!()
            ))
            .bind(user)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::InvalidState(
                "the account is locked (or gone)".into(),
            ))?;
            let user = AdminUser::try_from(row)?;
            sqlx::query::<D>("DELETE FROM admin_sessions WHERE user_id = $1 AND expires_at <= $2")
                .bind(user.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query::<D>(
                "INSERT INTO admin_sessions (token_hash, user_id, csrf_token, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(session.token_hash.as_str())
            .bind(user.id)
            .bind(session.csrf_token.as_str())
            .bind(now)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            let actor = format!("console:{}", user.username);
            Self::write_audit(
                &mut tx,
                &actor,
                "admin.login",
                &rules::admin_target(user.id),
                None,
                None,
                now,
            )
            .await?;
            Ok(AdminSession {
                user,
                csrf_token: session.csrf_token,
                expires_at: session.expires_at,
            })
        }
        .await;
        settle(tx, result).await
    }

    async fn admin_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<AdminSession>> {
        let row = sqlx::query_as::<D, SessionRow>(
            "SELECT u.id, u.username, u.password_hash, u.role, u.failed_logins, u.locked_until, \
             u.last_login_at, u.created_at, s.csrf_token, s.expires_at \
             FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(AdminSession {
                user: AdminUser::try_from(row.user)?,
                csrf_token: row.csrf_token,
                expires_at: row.expires_at,
            })
        })
        .transpose()
    }

    async fn end_admin_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let result = async {
            let ended: Option<(i64, String)> = sqlx::query_as::<D, (i64, String)>(
                "SELECT u.id, u.username FROM admin_sessions s \
                 JOIN admin_users u ON u.id = s.user_id WHERE s.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, username)) = ended else {
                return Ok(());
            };
            sqlx::query::<D>("DELETE FROM admin_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
            let actor = format!("console:{username}");
            Self::write_audit(
                &mut tx,
                &actor,
                "admin.logout",
                &rules::admin_target(id),
                None,
                None,
                now,
            )
            .await
        }
        .await;
        settle(tx, result).await
    }

    async fn save_provider_catalog(
        &self,
        provider: &str,
        services_json: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let result = sqlx::query::<D>(
            "INSERT INTO provider_catalogs (provider, services, synced_at) VALUES ($1, $2, $3) \
             ON CONFLICT (provider) DO UPDATE SET services = excluded.services, \
             synced_at = excluded.synced_at",
        )
        .bind(provider)
        .bind(services_json)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from);
        settle(tx, result).await?;
        Ok(())
    }

    async fn provider_catalogs(&self) -> StoreResult<Vec<(String, String, Timestamp)>> {
        Ok(sqlx::query_as::<D, (String, String, i64)>(
            "SELECT provider, services, synced_at FROM provider_catalogs ORDER BY provider",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    // ---- customer webhooks and alerts (sql/notify.rs) --------------------------------------

    async fn webhook(&self, customer: CustomerId) -> StoreResult<WebhookSettings> {
        self.webhook_impl(customer).await
    }

    async fn set_webhook(
        &self,
        customer: CustomerId,
        target: Option<(&str, &str)>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings> {
        self.set_webhook_impl(customer, target, actor, now).await
    }

    async fn set_low_balance_threshold(
        &self,
        customer: CustomerId,
        threshold: Option<Money>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings> {
        self.set_low_balance_threshold_impl(customer, threshold, actor, now)
            .await
    }

    async fn resume_webhook(
        &self,
        customer: CustomerId,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings> {
        self.resume_webhook_impl(customer, actor, now).await
    }

    async fn claim_webhook_events(
        &self,
        claim: WebhookClaim<'_>,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<WebhookJob>> {
        self.claim_webhook_events_impl(claim, lease_until, now)
            .await
    }

    async fn finish_webhook_deliveries(
        &self,
        outcomes: &[DeliveryOutcome],
        alert_channels: &[String],
        now: Timestamp,
    ) -> StoreResult<Vec<CustomerId>> {
        self.finish_webhook_deliveries_impl(outcomes, alert_channels, now)
            .await
    }

    async fn webhook_events(
        &self,
        customer: CustomerId,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<WebhookEvent>> {
        self.webhook_events_impl(customer, limit, before).await
    }

    async fn webhook_event(&self, id: i64) -> StoreResult<WebhookEvent> {
        self.webhook_event_impl(id).await
    }

    async fn webhook_deliveries(
        &self,
        customer: CustomerId,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.webhook_deliveries_impl(customer, limit, before).await
    }

    async fn resend_webhook_event(
        &self,
        event: i64,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookEvent> {
        self.resend_webhook_event_impl(event, actor, now).await
    }

    async fn prune_notifications(
        &self,
        webhooks_before: Timestamp,
        alerts_before: Timestamp,
    ) -> StoreResult<u64> {
        self.prune_notifications_impl(webhooks_before, alerts_before)
            .await
    }

    async fn release_notification_claims(&self) -> StoreResult<u64> {
        self.release_notification_claims_impl().await
    }

    async fn webhook_backlog(&self) -> StoreResult<WebhookBacklog> {
        self.webhook_backlog_impl().await
    }

    async fn route_records(&self, window: ScoreWindow) -> StoreResult<Vec<RouteRecord>> {
        self.route_records_impl(window).await
    }

    async fn recent_attempts(
        &self,
        provider: &str,
        upstream_service: &str,
        recent: RecentQuery,
    ) -> StoreResult<Vec<RecentAttempt>> {
        self.recent_attempts_impl(provider, upstream_service, recent)
            .await
    }

    async fn alert_condition(
        &self,
        alert: &NewAlert<'_>,
        active: bool,
        cooldown_ms: i64,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.alert_condition_impl(alert, active, cooldown_ms, now)
            .await
    }

    async fn unstarted_orders(
        &self,
        placed_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrderId, ServiceId, Timestamp)>> {
        self.unstarted_orders_impl(placed_before, limit).await
    }

    async fn oldest_queued_at(&self) -> StoreResult<Option<Timestamp>> {
        self.oldest_queued_at_impl().await
    }

    async fn alert_event(&self, alert: &NewAlert<'_>, now: Timestamp) -> StoreResult<bool> {
        self.alert_event_impl(alert, now).await
    }

    async fn active_alerts(&self) -> StoreResult<Vec<AlertCondition>> {
        self.active_alerts_impl().await
    }

    async fn claim_alerts(
        &self,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertMessage>> {
        self.claim_alerts_impl(limit, lease_until, now).await
    }

    async fn finish_alerts(&self, outcomes: &[AlertOutcome], now: Timestamp) -> StoreResult<()> {
        self.finish_alerts_impl(outcomes, now).await
    }
}
