//! Group commit (issue #16): several placements, or several forwarding outcomes, written in one
//! transaction, so they share one durable commit instead of paying one each.
//!
//! # Placements
//!
//! Every placement keeps the rules of [`Store::place_order`]: its own idempotency key, its
//! customer's status and balance, its own debit, `charge` ledger row and order. The checks are
//! made in this process on rows read under the write lock (SQLite) or the customers' row locks
//! (PostgreSQL, taken in id order), so a placement that fails them writes nothing and the
//! others go on. The writes are then a handful of multi-row statements whatever the size of the
//! group: the orders, the customers' totals, the ledger rows.
//!
//! A statement failing before the commit rolls the whole group back (nothing was written), and
//! its placements are then placed one by one, so an order that breaks a constraint fails alone.
//! A failed COMMIT is reported to every placement of the group and never retried: on
//! PostgreSQL a lost connection during COMMIT leaves it unknown whether the group is in, and a
//! retry could place it twice.
//!
//! Each statement's rows are bound as one JSON array (`{json_rows:$n}`), so its text is the same
//! whatever the size of the group, and one prepared statement serves every size.
//!
//! # Forwarding outcomes
//!
//! The outcomes of a group of upstream calls are recorded one after another in one
//! transaction, by the same code as [`Store::finish_attempt`], the orders locked in id order.
//! Any error before COMMIT (an upstream id clash, an order no longer `sending`) rolls the group
//! back and its outcomes are recorded one by one, each with its own answer.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sqlx::Executor;

use super::{Abort, Dialect, SqlStore, int_list, json_rows, settle, sql, unique_index};
use crate::rows::{
    AdminRow, AlertRow, AttemptRow, AuditRow, CancelRow, CustomerRow, LedgerRow, OrderRow,
    OrderStatusRow, OrderTermsRow, PollRow, RefillRow, SessionRow, WebhookDeliveryRow,
    WebhookEventRow, convert_all, corrupt,
};
use crate::rules::{self, limit_or_default, to_i64};
use crate::*;

/// One placement of a group, checked and encoded before the transaction.
struct Prepared<'a> {
    index: usize,
    new: &'a NewOrder,
    now: Timestamp,
    units: i64,
    quantity: Option<i64>,
    placed_as: Option<String>,
}

impl Prepared<'_> {
    /// The order as it would stand in the queue once placed with `id`, shown to a claim
    /// before it is written ([`Store::place_orders_claiming`]).
    fn queued(&self, id: OrderId) -> Order {
        let new = self.new;
        Order {
            id,
            customer_id: new.customer_id,
            service_id: new.service_id,
            service_type: new.service_type.clone(),
            params: new.params.clone(),
            link: new.link.clone(),
            quantity: new.quantity,
            units: new.units,
            charge: new.charge,
            refunded: Money::ZERO,
            status: smm_wire::OrderStatus::Pending,
            start_count: None,
            remains: None,
            extra: None,
            provider: None,
            upstream_service: None,
            upstream_order_id: None,
            upstream_cost: None,
            forward_state: ForwardState::Queued,
            forward_attempts: 0,
            forward_error: None,
            claimed_by: None,
            claimed_at: None,
            forwarded_at: None,
            next_poll_at: None,
            idempotency_key: new.idempotency_key.clone(),
            created_at: self.now,
            updated_at: self.now,
            attention: None,
            placed_as: new.placed_as.clone(),
        }
    }
}

/// What a group decided for a placement inside its transaction.
enum Decision {
    /// Refused or answered without writing: an error, or the order an earlier key placed.
    Done(Box<StoreResult<Placed>>),
    /// To be placed: its position among the group's new orders.
    Insert(usize),
    /// Repeats the idempotency key of the new order at this position in the same group.
    SameKeyAs(usize),
}

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
    /// [`Store::place_orders`].
    pub(crate) async fn place_orders_impl(
        &self,
        batch: Vec<(NewOrder, Timestamp)>,
        mut claim: Option<PlacementClaim<'_>>,
    ) -> Vec<StoreResult<Placed>> {
        // A placement alone goes the one-by-one way unless its order may be claimed.
        if batch.len() > 1 || claim.is_some() {
            match self.place_group(&batch, claim.as_mut()).await {
                Ok(placed) => return placed,
                // Rolled back before COMMIT: nothing of the group was written.
                Err(Abort::Handoff(e)) => {
                    tracing::debug!(error = %e, orders = batch.len(),
                        "a grouped placement failed before its commit; placing one by one");
                }
                Err(Abort::Error(e)) => {
                    return batch.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        let mut placed = Vec::with_capacity(batch.len());
        for (new, now) in batch {
            placed.push(self.place_order_impl(new, now).await);
        }
        placed
    }

    /// The group in one transaction. `Abort::Handoff` carries an error raised before COMMIT
    /// (the transaction rolled back, so the placements may be retried alone); `Abort::Error` a
    /// failed COMMIT (not to be retried).
    async fn place_group(
        &self,
        batch: &[(NewOrder, Timestamp)],
        claim: Option<&mut PlacementClaim<'_>>,
    ) -> Result<Vec<StoreResult<Placed>>, Abort<StoreError>> {
        let (mut decided, prepared) = Self::prepare_all(batch);
        if prepared.is_empty() {
            return Ok(Self::placed_answers(decided, &[]));
        }
        let mut tx = self.begin().await.map_err(Abort::Handoff)?;
        let body = self
            .place_group_in(&mut tx, &prepared, &mut decided, claim)
            .await;
        let orders = settle_group(tx, body).await?;
        Ok(Self::placed_answers(decided, &orders))
    }

    /// Each placement checked and encoded ([`Self::prepare`]), and those refused already.
    fn prepare_all(batch: &[(NewOrder, Timestamp)]) -> (Vec<Option<Decision>>, Vec<Prepared<'_>>) {
        let mut decided: Vec<Option<Decision>> = (0..batch.len()).map(|_| None).collect();
        let mut prepared = Vec::with_capacity(batch.len());
        for (index, (new, now)) in batch.iter().enumerate() {
            match Self::prepare(index, new, *now) {
                Ok(p) => prepared.push(p),
                Err(e) => decided[index] = Some(Decision::Done(Box::new(Err(e)))),
            }
        }
        (decided, prepared)
    }

    /// Each placement's answer, once the group's `orders` are committed.
    fn placed_answers(
        decided: Vec<Option<Decision>>,
        orders: &[Order],
    ) -> Vec<StoreResult<Placed>> {
        decided
            .into_iter()
            .map(|decision| match decision {
                Some(Decision::Done(result)) => *result,
                Some(Decision::Insert(at)) => Ok(Placed::New(orders[at].clone())),
                Some(Decision::SameKeyAs(at)) => Ok(Placed::Existing(orders[at].clone())),
                None => Err(StoreError::Database(
                    "a grouped placement was left undecided".to_owned(),
                )),
            })
            .collect()
    }

    /// [`Store::place_and_finish`].
    pub(crate) async fn place_and_finish_impl(
        &self,
        placements: Vec<(NewOrder, Timestamp)>,
        mut claim: Option<PlacementClaim<'_>>,
        outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
    ) -> (Vec<StoreResult<Placed>>, Vec<StoreResult<Order>>) {
        if outcomes.is_empty() {
            return (self.place_orders_impl(placements, claim).await, Vec::new());
        }
        if placements.is_empty() {
            return (Vec::new(), self.finish_attempts_impl(outcomes).await);
        }
        match self
            .write_together(&placements, claim.as_mut(), &outcomes)
            .await
        {
            Ok(written) => written,
            Err(Abort::Error(e)) => (
                placements.iter().map(|_| Err(e.clone())).collect(),
                outcomes.iter().map(|_| Err(e.clone())).collect(),
            ),
            // Rolled back before COMMIT: each group goes its own way.
            Err(Abort::Handoff(e)) => {
                tracing::debug!(error = %e, placements = placements.len(), outcomes = outcomes.len(),
                    "placements and outcomes failed together before their commit; writing apart");
                (
                    self.place_orders_impl(placements, claim).await,
                    self.finish_attempts_impl(outcomes).await,
                )
            }
        }
    }

    /// Placements and outcomes in one transaction; `Abort` as in [`Self::place_group`].
    async fn write_together(
        &self,
        placements: &[(NewOrder, Timestamp)],
        claim: Option<&mut PlacementClaim<'_>>,
        outcomes: &[(OrderId, ForwardOutcome, Timestamp)],
    ) -> Result<(Vec<StoreResult<Placed>>, Vec<StoreResult<Order>>), Abort<StoreError>> {
        let ids = Self::outcome_ids(outcomes).map_err(Abort::Handoff)?;
        let (mut decided, prepared) = Self::prepare_all(placements);
        let mut tx = self.begin().await.map_err(Abort::Handoff)?;
        let mut body = Ok(Vec::new());
        if !prepared.is_empty() {
            body = self
                .place_group_in(&mut tx, &prepared, &mut decided, claim)
                .await;
        }
        let body = match body {
            Ok(orders) => Self::finish_group_in(&mut tx, outcomes, &ids)
                .await
                .map(|rows| (orders, rows)),
            Err(e) => Err(e),
        };
        let (orders, rows) = settle_group(tx, body).await?;
        Ok((
            Self::placed_answers(decided, &orders),
            Self::outcome_answers(outcomes, rows),
        ))
    }

    /// The checks and encodings a placement needs before any database work.
    fn prepare(index: usize, new: &NewOrder, now: Timestamp) -> StoreResult<Prepared<'_>> {
        rules::check_charge(new.charge)?;
        Ok(Prepared {
            index,
            new,
            now,
            units: to_i64("units", new.units)?,
            quantity: new.quantity.map(|q| to_i64("quantity", q)).transpose()?,
            placed_as: new
                .placed_as
                .as_ref()
                .map(|p| serde_json::to_string(p).map_err(|e| StoreError::Invalid(e.to_string())))
                .transpose()?,
        })
    }

    /// Reads, decides and writes the group; returns the new orders in the order placed.
    async fn place_group_in(
        &self,
        conn: &mut D::Connection,
        prepared: &[Prepared<'_>],
        decided: &mut [Option<Decision>],
        claim: Option<&mut PlacementClaim<'_>>,
    ) -> StoreResult<Vec<Order>> {
        // An idempotency key used before answers with its first order.
        let mut pending = Vec::with_capacity(prepared.len());
        for p in prepared {
            if let Some(key) = &p.new.idempotency_key
                && let Some(first) = Self::order_by_key(&mut *conn, p.new.customer_id, key).await?
            {
                decided[p.index] = Some(Decision::Done(Box::new(Ok(Placed::Existing(
                    first.try_into()?,
                )))));
            } else {
                pending.push(p);
            }
        }
        // The customers' rows, locked in id order (two groups never wait on each other in a
        // cycle); their balances then move here, placement by placement. On PostgreSQL the
        // lock lets foreign-key checks through (FOR NO KEY UPDATE): a transaction inserting
        // rows that name several customers (the notifier's delivery log) takes their KEY SHARE
        // locks in its own order, and FOR UPDATE would deadlock with it.
        let customers: Vec<i64> = {
            let mut ids: Vec<i64> = pending.iter().map(|p| p.new.customer_id.0).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut accounts: BTreeMap<i64, (String, i64)> = BTreeMap::new();
        if !customers.is_empty() {
            let rows: Vec<(i64, String, i64)> = sqlx::query_as::<D, (i64, String, i64)>(sql::<D>(
                "SELECT id, status, balance FROM customers WHERE id IN {int_list:$1} \
                 ORDER BY id{for_no_key_update}",
            ))
            .bind(int_list(customers.iter().copied()))
            .fetch_all(&mut *conn)
            .await?;
            accounts.extend(rows.into_iter().map(|(id, s, b)| (id, (s, b))));
        }
        let starting: BTreeMap<i64, i64> = accounts.iter().map(|(id, (_, b))| (*id, *b)).collect();
        let mut inserts: Vec<&Prepared<'_>> = Vec::new();
        let mut keys: HashMap<(i64, &str), usize> = HashMap::new();
        for p in pending {
            let customer = p.new.customer_id.0;
            if let Some(key) = p.new.idempotency_key.as_deref()
                && let Some(&at) = keys.get(&(customer, key))
            {
                decided[p.index] = Some(Decision::SameKeyAs(at));
                continue;
            }
            let refusal = match accounts.get_mut(&customer) {
                None => Some(StoreError::NotFound("customer")),
                Some((status, balance)) => match CustomerStatus::parse(status) {
                    Some(CustomerStatus::Active) if *balance >= p.new.charge.units() => {
                        *balance -= p.new.charge.units();
                        None
                    }
                    Some(CustomerStatus::Active) => Some(StoreError::InsufficientFunds),
                    Some(CustomerStatus::Suspended) => Some(StoreError::CustomerSuspended),
                    None => Some(corrupt("customer status", status.clone())),
                },
            };
            if let Some(e) = refusal {
                decided[p.index] = Some(Decision::Done(Box::new(Err(e))));
                continue;
            }
            if let Some(key) = p.new.idempotency_key.as_deref() {
                keys.insert((customer, key), inserts.len());
            }
            decided[p.index] = Some(Decision::Insert(inserts.len()));
            inserts.push(p);
        }
        if inserts.is_empty() {
            return Ok(Vec::new());
        }
        let orders = Self::insert_orders(&mut *conn, &inserts, claim).await?;

        // The customers' balances and totals: one row per customer.
        let mut totals: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for p in &inserts {
            let total = totals.entry(p.new.customer_id.0).or_default();
            total.0 += p.new.charge.units();
            total.1 += 1;
        }
        let updated: Vec<i64> = sqlx::query_scalar::<D, i64>(sql::<D>(
            "UPDATE customers SET balance = balance - v.column2, \
             orders_placed = orders_placed + v.column3, spent = spent + v.column2 \
             FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, CAST(r ->> 1 AS BIGINT) AS column2, \
             CAST(r ->> 2 AS BIGINT) AS column3 FROM {json_rows:$1}) AS v \
             WHERE customers.id = v.column1 RETURNING customers.id",
        ))
        .bind(json_rows(
            totals
                .iter()
                .map(|(id, (charge, count))| json!([id, charge, count])),
        ))
        .fetch_all(&mut *conn)
        .await?;
        if updated.len() != totals.len() {
            return Err(StoreError::Database(
                "a grouped placement's customer rows changed under their lock".to_owned(),
            ));
        }

        // The ledger rows, each with the balance right after it, in the order placed.
        let mut running = starting;
        let rows = json_rows(inserts.iter().zip(&orders).map(|(p, order)| {
            let balance = running.entry(p.new.customer_id.0).or_default();
            *balance -= p.new.charge.units();
            json!([
                p.new.customer_id.0,
                LedgerKind::Charge.as_str(),
                -p.new.charge.units(),
                *balance,
                order.id.0,
                rules::charge_reason(order.id),
                "customer",
                p.now,
            ])
        }));
        Self::insert_ledger_rows(&mut *conn, rows).await?;
        Ok(orders)
    }

    /// The group's new orders in one statement, returned in the order given. Their ids are
    /// reserved first, in the order given, so that `claim` can be shown them and each order it
    /// picks written claimed at once ([`Store::place_orders_claiming`]); the picked orders'
    /// attempts and `sending` steps follow in one statement each.
    async fn insert_orders(
        conn: &mut D::Connection,
        inserts: &[&Prepared<'_>],
        claim: Option<&mut PlacementClaim<'_>>,
    ) -> StoreResult<Vec<Order>> {
        // Without a claim the database numbers the rows as it inserts them.
        let mut ids: Vec<Option<i64>> = vec![None; inserts.len()];
        let (worker, mut attempts) = match claim {
            None => (None, Vec::new()),
            Some(claim) => {
                let count = i64::try_from(inserts.len()).unwrap_or(i64::MAX);
                let mut reserved: Vec<i64> =
                    sqlx::query_scalar::<D, i64>(sql::<D>("{new_order_ids:$1}"))
                        .bind(int_list(1..=count))
                        .fetch_all(&mut *conn)
                        .await?;
                reserved.sort_unstable();
                reserved.dedup();
                if reserved.len() != inserts.len() {
                    return Err(StoreError::Database(
                        "fewer order ids reserved than orders placed".to_owned(),
                    ));
                }
                let queued: Vec<Order> = inserts
                    .iter()
                    .zip(&reserved)
                    .map(|(p, id)| p.queued(OrderId(*id)))
                    .collect();
                ids = reserved.into_iter().map(Some).collect();
                (Some(claim.worker), (claim.first_attempts)(&queued))
            }
        };
        attempts.sort_by_key(|a| a.order);
        let distinct = attempts
            .windows(2)
            .all(|pair| pair[0].order != pair[1].order);
        if !distinct
            || !attempts
                .iter()
                .all(|a| ids.binary_search(&Some(a.order.0)).is_ok())
        {
            return Err(StoreError::Invalid(
                "first attempts are for distinct orders of the group".to_owned(),
            ));
        }
        let routes: HashMap<i64, &AttemptStart> = attempts.iter().map(|a| (a.order.0, a)).collect();
        // The claim's moment: the group's latest placement.
        let claimed_at = inserts.iter().map(|p| p.now).max().unwrap_or_default();
        let rows = json_rows(inserts.iter().zip(&ids).map(|(p, id)| {
            let route = id.and_then(|id| routes.get(&id));
            json!([
                p.new.customer_id.0,
                p.new.service_id.0,
                p.new.service_type,
                p.new.params,
                p.new.link,
                p.quantity,
                p.units,
                p.new.charge.units(),
                p.new.idempotency_key,
                p.now,
                p.placed_as,
                p.new.request_fingerprint,
                id,
                if route.is_some() {
                    ForwardState::Sending.as_str()
                } else {
                    ForwardState::Queued.as_str()
                },
                route.map_or(0, |_| 1),
                route.and(worker),
                route.map(|_| claimed_at),
                route.map(|a| a.provider.as_str()),
                route.map(|a| a.upstream_service.as_str()),
                route.map_or(p.now, |_| claimed_at),
            ])
        }));
        // The same statement with and without the reserved ids (r ->> 12).
        macro_rules! insert {
            ($id_column:literal, $id:literal) => {
                concat!(
                    "INSERT INTO orders (customer_id, service_id, service_type, params, link, \
                     quantity, units, charge, refunded, status, idempotency_key, created_at, \
                     placed_as, request_fingerprint, ",
                    $id_column,
                    "forward_state, forward_attempts, claimed_by, claimed_at, provider, \
                     upstream_service, updated_at) \
                     SELECT CAST(r ->> 0 AS BIGINT), CAST(r ->> 1 AS BIGINT), r ->> 2, r ->> 3, \
                     r ->> 4, CAST(r ->> 5 AS BIGINT), CAST(r ->> 6 AS BIGINT), \
                     CAST(r ->> 7 AS BIGINT), 0, 'Pending', r ->> 8, CAST(r ->> 9 AS BIGINT), \
                     r ->> 10, r ->> 11, ",
                    $id,
                    "r ->> 13, CAST(r ->> 14 AS BIGINT), r ->> 15, CAST(r ->> 16 AS BIGINT), \
                     r ->> 17, r ->> 18, CAST(r ->> 19 AS BIGINT) \
                     FROM {json_rows:$1} ORDER BY n RETURNING ",
                    order_columns!()
                )
            };
        }
        let statement = if worker.is_some() {
            insert!("id, ", "CAST(r ->> 12 AS BIGINT), ")
        } else {
            insert!("", "")
        };
        let inserted = sqlx::query_as::<D, OrderRow>(sql::<D>(statement))
            .bind(rows)
            .fetch_all(&mut *conn)
            .await;
        let mut rows: Vec<OrderRow> = match inserted {
            // Another instance placed the same key first (PostgreSQL): the group is rolled
            // back and its placements go one by one, which answers with that order.
            Err(e) if unique_index(&e) == Some(super::UniqueIndex::Idempotency) => {
                return Err(StoreError::Conflict(
                    "an idempotency key was placed concurrently".to_owned(),
                ));
            }
            other => other?,
        };
        rows.sort_by_key(|row| row.id);
        let orders = rows
            .into_iter()
            .map(Order::try_from)
            .collect::<StoreResult<Vec<Order>>>()?;
        let in_order = orders.len() == inserts.len()
            && orders
                .iter()
                .zip(inserts)
                .zip(&ids)
                .all(|((order, p), id)| {
                    id.is_none_or(|id| order.id.0 == id)
                        && order.customer_id == p.new.customer_id
                        && order.charge == p.new.charge
                        && order.params == p.new.params
                        && order.idempotency_key == p.new.idempotency_key
                });
        if !in_order {
            return Err(StoreError::Database(
                "a grouped placement's orders came back out of order".to_owned(),
            ));
        }
        if !attempts.is_empty() {
            let sorted: Vec<&AttemptStart> = attempts.iter().collect();
            let rows = Self::insert_attempts(&mut *conn, &sorted, claimed_at).await?;
            // The step the claim's UPDATE would have put in each timeline (migration 0011's
            // trigger fires on updates only).
            sqlx::query::<D>(sql::<D>(
                "INSERT INTO order_events (order_id, at, status, forward_state) \
                 SELECT CAST(r ->> 0 AS BIGINT), $2, 'Pending', 'sending' \
                 FROM {json_rows:$1} ORDER BY n",
            ))
            .bind(rows)
            .bind(claimed_at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(orders)
    }

    /// [`Store::finish_attempts`].
    pub(crate) async fn finish_attempts_impl(
        &self,
        outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
    ) -> Vec<StoreResult<Order>> {
        if outcomes.len() > 1 {
            match self.finish_group(&outcomes).await {
                Ok(finished) => return finished,
                Err(Abort::Handoff(e)) => {
                    tracing::debug!(error = %e, outcomes = outcomes.len(),
                        "a grouped outcome failed before its commit; recording one by one");
                }
                Err(Abort::Error(e)) => {
                    return outcomes.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        let mut finished = Vec::with_capacity(outcomes.len());
        for (order, outcome, now) in &outcomes {
            finished.push(self.finish_attempt_impl(*order, outcome, *now).await);
        }
        finished
    }

    /// [`Store::begin_attempts`] for distinct orders (sorted by id) in three statements: the
    /// orders locked and checked `sending` (each as `note_attempt` checks it), the pending
    /// attempts inserted, the orders' route and claim time set. All or nothing.
    pub(crate) async fn begin_attempts_together(
        &self,
        sorted: &[&AttemptStart],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let result = async {
            let rows = sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id IN {int_list:$1} ORDER BY id{for_no_key_update}"
            )))
            .bind(int_list(sorted.iter().map(|a| a.order.0)))
            .fetch_all(&mut *tx)
            .await?;
            let orders: Vec<Order> = convert_all(rows)?;
            for a in sorted {
                let order = orders
                    .iter()
                    .find(|o| o.id == a.order)
                    .ok_or(StoreError::NotFound("order"))?;
                rules::require_state(order, &[ForwardState::Sending], "begin an attempt for")?;
            }
            let rows = Self::insert_attempts(&mut tx, sorted, now).await?;
            sqlx::query::<D>(sql::<D>(
                "UPDATE orders SET provider = v.column2, upstream_service = v.column3, \
                 updated_at = $2, claimed_at = $2 \
                 FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, r ->> 1 AS column2, \
                 r ->> 2 AS column3 FROM {json_rows:$1}) AS v WHERE orders.id = v.column1",
            ))
            .bind(&rows)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result).await
    }

    /// The pending attempts of `sorted` (distinct orders, by id, each locked and `sending`)
    /// inserted in one statement, whatever their number; returns their rows as bound (the
    /// caller that still has to set the orders' routes binds them again).
    async fn insert_attempts(
        conn: &mut D::Connection,
        sorted: &[&AttemptStart],
        now: Timestamp,
    ) -> StoreResult<String> {
        let rows = json_rows(
            sorted
                .iter()
                .map(|a| json!([a.order.0, a.provider, a.upstream_service, a.why])),
        );
        sqlx::query::<D>(sql::<D>(
            "INSERT INTO forward_attempts (order_id, provider, upstream_service, outcome, \
             started_at, why) \
             SELECT CAST(r ->> 0 AS BIGINT), r ->> 1, r ->> 2, 'pending', $2, r ->> 3 \
             FROM {json_rows:$1} ORDER BY n",
        ))
        .bind(&rows)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(rows)
    }

    /// [`Store::claim_and_begin`] inside the caller's transaction, sorted by id: the due queued
    /// orders picked and locked, shown to `first_attempts`, then claimed with their first
    /// route set in one `UPDATE` (one new version of each order, not one for the claim and
    /// another for the route: on PostgreSQL each is a row version and an entry in every index
    /// of `orders`), and the attempts inserted.
    pub(crate) async fn claim_and_begin_in(
        conn: &mut D::Connection,
        worker: &str,
        limit: u32,
        now: Timestamp,
        first_attempts: &mut (dyn for<'o> FnMut(&'o [Order]) -> Vec<AttemptStart> + Send),
    ) -> StoreResult<Vec<Order>> {
        let rows = sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE forward_state = 'queued' AND forward_after <= $1 \
             ORDER BY id {limit:$2}{skip_locked}"
        )))
        .bind(now)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut picked: Vec<Order> = convert_all(rows)?;
        if picked.is_empty() {
            return Ok(picked);
        }
        picked.sort_by_key(|order| order.id);
        let mut attempts = first_attempts(&picked);
        attempts.sort_by_key(|a| a.order);
        let distinct = attempts
            .windows(2)
            .all(|pair| pair[0].order != pair[1].order);
        let ours = attempts
            .iter()
            .all(|a| picked.binary_search_by_key(&a.order, |o| o.id).is_ok());
        if !distinct || !ours {
            return Err(StoreError::Invalid(
                "first attempts are for distinct orders of the claim".to_owned(),
            ));
        }
        let routes: HashMap<OrderId, &AttemptStart> =
            attempts.iter().map(|a| (a.order, a)).collect();
        let claims = json_rows(picked.iter().map(|order| {
            let route = routes.get(&order.id);
            json!([
                order.id.0,
                route.map(|a| a.provider.as_str()),
                route.map(|a| a.upstream_service.as_str()),
            ])
        }));
        let rows = sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
            "UPDATE orders SET forward_state = 'sending', claimed_by = $1, claimed_at = $2, \
             forward_attempts = forward_attempts + 1, updated_at = $2, \
             provider = COALESCE(v.column2, provider), \
             upstream_service = COALESCE(v.column3, upstream_service) \
             FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, r ->> 1 AS column2, \
             r ->> 2 AS column3 FROM {json_rows:$3}) AS v \
             WHERE orders.id = v.column1 AND orders.forward_state = 'queued' \
             RETURNING ",
            order_columns!()
        )))
        .bind(worker)
        .bind(now)
        .bind(claims)
        .fetch_all(&mut *conn)
        .await?;
        if rows.len() != picked.len() {
            return Err(StoreError::Database(
                "a picked order changed under its lock".to_owned(),
            ));
        }
        let mut claimed: Vec<Order> = convert_all(rows)?;
        claimed.sort_by_key(|order| order.id);
        if !attempts.is_empty() {
            let sorted: Vec<&AttemptStart> = attempts.iter().collect();
            Self::insert_attempts(conn, &sorted, now).await?;
        }
        Ok(claimed)
    }

    /// The group in one transaction and three statements whatever its size: the orders
    /// locked (in id order) and checked `sending`, their pending attempts closed, the orders
    /// updated. `Abort` as in [`Self::place_group`]; anything the one-by-one path would answer
    /// differently (an order twice, an empty upstream id, an order not `sending` or with no
    /// attempt in flight, an upstream id clash) aborts before COMMIT and goes that way.
    async fn finish_group(
        &self,
        outcomes: &[(OrderId, ForwardOutcome, Timestamp)],
    ) -> Result<Vec<StoreResult<Order>>, Abort<StoreError>> {
        let ids = Self::outcome_ids(outcomes).map_err(Abort::Handoff)?;
        let mut tx = self.begin().await.map_err(Abort::Handoff)?;
        let body = Self::finish_group_in(&mut tx, outcomes, &ids).await;
        let rows = settle_group(tx, body).await?;
        Ok(Self::outcome_answers(outcomes, rows))
    }

    /// The group's order ids, sorted; `InvalidState` for what the one-by-one path would answer
    /// differently (an order twice, an empty upstream id).
    fn outcome_ids(outcomes: &[(OrderId, ForwardOutcome, Timestamp)]) -> StoreResult<Vec<i64>> {
        let retry = |why: &str| StoreError::InvalidState(why.to_owned());
        let mut ids: Vec<i64> = outcomes.iter().map(|(order, ..)| order.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != outcomes.len() {
            return Err(retry("an order twice in one group"));
        }
        let empty_id = outcomes.iter().any(|(_, outcome, _)| {
            matches!(outcome, ForwardOutcome::Sent { upstream_order_id, .. }
                if upstream_order_id.trim().is_empty())
        });
        if empty_id {
            return Err(retry("an empty upstream order id"));
        }
        Ok(ids)
    }

    /// Each outcome's answer: its order as recorded.
    fn outcome_answers(
        outcomes: &[(OrderId, ForwardOutcome, Timestamp)],
        rows: Vec<OrderRow>,
    ) -> Vec<StoreResult<Order>> {
        let mut by_id: HashMap<i64, OrderRow> = rows.into_iter().map(|r| (r.id, r)).collect();
        outcomes
            .iter()
            .map(|(order, ..)| {
                by_id.remove(&order.0).map_or_else(
                    || {
                        Err(StoreError::Database(
                            "an outcome was left unrecorded".to_owned(),
                        ))
                    },
                    Order::try_from,
                )
            })
            .collect()
    }

    async fn finish_group_in(
        conn: &mut D::Connection,
        outcomes: &[(OrderId, ForwardOutcome, Timestamp)],
        ids: &[i64],
    ) -> StoreResult<Vec<OrderRow>> {
        let states: Vec<(i64, String)> = sqlx::query_as::<D, (i64, String)>(sql::<D>(
            "SELECT id, forward_state FROM orders WHERE id IN {int_list:$1} ORDER BY id{for_no_key_update}",
        ))
        .bind(int_list(ids.iter().copied()))
        .fetch_all(&mut *conn)
        .await?;
        if states.len() != ids.len()
            || states
                .iter()
                .any(|(_, state)| state != ForwardState::Sending.as_str())
        {
            return Err(StoreError::InvalidState(
                "an order of the group is not sending".to_owned(),
            ));
        }
        // Each order's pending attempt closed; the route it was sent through comes back.
        let closing = json_rows(outcomes.iter().map(|(order, outcome, now)| {
            let (attempt_outcome, detail) = rules::attempt_outcome(outcome);
            json!([order.0, attempt_outcome, detail, now])
        }));
        let mut closed: Vec<(i64, i64, String, String)> =
            sqlx::query_as::<D, (i64, i64, String, String)>(sql::<D>(
                "UPDATE forward_attempts SET outcome = v.column2, \
                 detail = COALESCE(v.column3, detail), finished_at = v.column4 \
                 FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, r ->> 1 AS column2, \
                 r ->> 2 AS column3, CAST(r ->> 3 AS BIGINT) AS column4 \
                 FROM {json_rows:$1}) AS v \
                 WHERE forward_attempts.order_id = v.column1 \
                 AND forward_attempts.outcome = 'pending' \
                 RETURNING forward_attempts.id, forward_attempts.order_id, \
                 forward_attempts.provider, forward_attempts.upstream_service",
            ))
            .bind(closing)
            .fetch_all(&mut *conn)
            .await?;
        // The newest pending attempt of each order is the route (as `close_pending_attempts`).
        closed.sort_by_key(|(id, ..)| *id);
        let routes: HashMap<i64, (String, String)> = closed
            .into_iter()
            .map(|(_, order, provider, service)| (order, (provider, service)))
            .collect();
        if routes.len() != ids.len() {
            return Err(StoreError::InvalidState(
                "an order of the group has no attempt in flight".to_owned(),
            ));
        }
        let recorded = json_rows(outcomes.iter().map(|(order, outcome, now)| {
            let (provider, service) = routes
                .get(&order.0)
                .map(|(p, s)| (p.as_str(), s.as_str()))
                .unwrap_or_default();
            let (state, upstream_id, cost, next_poll, error) = match outcome {
                ForwardOutcome::Sent {
                    upstream_order_id,
                    upstream_cost,
                    next_poll_at,
                } => (
                    ForwardState::Sent,
                    Some(upstream_order_id.as_str()),
                    upstream_cost.map(|c| c.to_string()),
                    Some(*next_poll_at),
                    None,
                ),
                ForwardOutcome::Ambiguous { detail } => (
                    ForwardState::Ambiguous,
                    None,
                    None,
                    None,
                    Some(detail.as_str()),
                ),
                ForwardOutcome::Failed { detail, .. } => (
                    ForwardState::Sending,
                    None,
                    None,
                    None,
                    Some(detail.as_str()),
                ),
            };
            json!([
                order.0,
                state.as_str(),
                provider,
                service,
                upstream_id,
                cost,
                next_poll,
                error,
                now
            ])
        }));
        let rows: Vec<OrderRow> = sqlx::query_as::<D, OrderRow>(sql::<D>(concat!(
            "UPDATE orders SET forward_state = v.column2, \
             provider = CASE WHEN v.column2 = 'sent' THEN v.column3 ELSE provider END, \
             upstream_service = CASE WHEN v.column2 = 'sent' THEN v.column4 \
             ELSE upstream_service END, \
             upstream_order_id = CASE WHEN v.column2 = 'sent' THEN v.column5 \
             ELSE upstream_order_id END, \
             upstream_cost = CASE WHEN v.column2 = 'sent' THEN v.column6 ELSE upstream_cost END, \
             forwarded_at = CASE WHEN v.column2 = 'sent' THEN v.column9 ELSE forwarded_at END, \
             next_poll_at = CASE WHEN v.column2 = 'sent' THEN v.column7 ELSE next_poll_at END, \
             forward_error = v.column8, updated_at = v.column9 \
             FROM (SELECT CAST(r ->> 0 AS BIGINT) AS column1, r ->> 1 AS column2, \
             r ->> 2 AS column3, r ->> 3 AS column4, r ->> 4 AS column5, r ->> 5 AS column6, \
             CAST(r ->> 6 AS BIGINT) AS column7, r ->> 7 AS column8, \
             CAST(r ->> 8 AS BIGINT) AS column9 FROM {json_rows:$1}) AS v \
             WHERE orders.id = v.column1 RETURNING ",
            order_columns!()
        )))
        .bind(recorded)
        .fetch_all(&mut *conn)
        .await?;
        if rows.len() != ids.len() {
            return Err(StoreError::Database(
                "a grouped outcome's order changed under its lock".to_owned(),
            ));
        }
        Ok(rows)
    }
}

/// Ends a group's transaction: COMMIT after a body that went through (a failed COMMIT is
/// `Abort::Error`, never retried), ROLLBACK after one that failed (`Abort::Handoff`: nothing
/// was written, so the group's items may be written another way).
async fn settle_group<D: Dialect, T>(
    tx: sqlx::Transaction<'static, D>,
    body: StoreResult<T>,
) -> Result<T, Abort<StoreError>> {
    match body {
        Ok(value) => {
            tx.commit()
                .await
                .map_err(|e| Abort::Error(StoreError::from(e)))?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "ROLLBACK failed");
            }
            Err(Abort::Handoff(e))
        }
    }
}
