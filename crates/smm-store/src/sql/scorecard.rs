//! Scorecards in the database (issue #15): the per-route, per-day aggregates of migration 0013
//! (totals plus the deltas not folded yet) and a route's recent attempts. The [`Store`] methods
//! of the same names call these.

use sqlx::{Executor, Row};

use super::{Dialect, SqlStore};
use crate::*;

/// Every route's counters over the days from `$1`, totals and deltas, in [`RouteCounts`]'
/// order.
const ROUTE_COUNTS: &str = "SELECT provider, upstream_service, CAST(SUM(attempts) AS BIGINT), CAST(SUM(accepted) AS \
     BIGINT), CAST(SUM(refused) AS BIGINT), CAST(SUM(not_sent) AS BIGINT), \
     CAST(SUM(ambiguous) AS BIGINT), CAST(SUM(call_ms) AS BIGINT), CAST(SUM(orders) AS \
     BIGINT), CAST(SUM(started) AS BIGINT), CAST(SUM(completed) AS BIGINT), CAST(SUM(partial) \
     AS BIGINT), CAST(SUM(canceled) AS BIGINT), CAST(SUM(undelivered_ppm) AS BIGINT), \
     CAST(SUM(cost_nanos) AS BIGINT), CAST(SUM(kept_cost_nanos) AS BIGINT), CAST(SUM(charged) \
     AS BIGINT), CAST(SUM(refunded) AS BIGINT), CAST(SUM(refills) AS BIGINT), \
     CAST(SUM(refills_done) AS BIGINT), CAST(SUM(refills_failed) AS BIGINT) FROM ( SELECT \
     provider, upstream_service, attempts, accepted, refused, not_sent, ambiguous, call_ms, \
     orders, started, completed, partial, canceled, undelivered_ppm, cost_nanos, \
     kept_cost_nanos, charged, refunded, refills, refills_done, refills_failed FROM \
     route_days WHERE day >= $1 UNION ALL SELECT provider, upstream_service, attempts, \
     accepted, refused, not_sent, ambiguous, call_ms, orders, started, completed, partial, \
     canceled, undelivered_ppm, cost_nanos, kept_cost_nanos, charged, refunded, refills, \
     refills_done, refills_failed FROM route_day_deltas WHERE day >= $1 ) AS r GROUP BY \
     provider, upstream_service ORDER BY provider, upstream_service";

#[allow(private_bounds)]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: sqlx::IntoArguments<D>,
    usize: sqlx::ColumnIndex<D::Row>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> &'q str: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<i64>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
{
    pub(crate) async fn route_records_impl(
        &self,
        window: ScoreWindow,
    ) -> StoreResult<Vec<RouteRecord>> {
        let first_day = window.first_day();
        let rows = sqlx::query::<D>(ROUTE_COUNTS)
            .bind(first_day)
            .fetch_all(&self.reader)
            .await?;
        let mut records: BTreeMap<(String, String), RouteRecord> = BTreeMap::new();
        for row in rows {
            let provider: String = row.try_get(0usize)?;
            let upstream_service: String = row.try_get(1usize)?;
            let mut v = [0i64; 19];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = row.try_get::<Option<i64>, usize>(i + 2)?.unwrap_or(0);
            }
            let counts = RouteCounts {
                attempts: v[0],
                accepted: v[1],
                refused: v[2],
                not_sent: v[3],
                ambiguous: v[4],
                call_ms: v[5],
                orders: v[6],
                started: v[7],
                completed: v[8],
                partial: v[9],
                canceled: v[10],
                undelivered_ppm: v[11],
                cost_nanos: v[12],
                kept_cost_nanos: v[13],
                charged: v[14],
                refunded: v[15],
                refills: v[16],
                refills_done: v[17],
                refills_failed: v[18],
            };
            records.insert(
                (provider.clone(), upstream_service.clone()),
                RouteRecord {
                    provider,
                    upstream_service,
                    counts,
                    durations: RouteDurations::default(),
                },
            );
        }
        let times: Vec<(String, String, String, i64, Option<i64>)> =
            sqlx::query_as::<D, (String, String, String, i64, Option<i64>)>(
                "SELECT provider, upstream_service, kind, bucket, CAST(SUM(n) AS BIGINT) FROM ( \
                 SELECT provider, upstream_service, kind, bucket, n FROM route_day_times \
                 WHERE day >= $1 \
                 UNION ALL \
                 SELECT provider, upstream_service, kind, bucket, n FROM route_day_time_deltas \
                 WHERE day >= $1) AS t \
                 GROUP BY provider, upstream_service, kind, bucket",
            )
            .bind(first_day)
            .fetch_all(&self.reader)
            .await?;
        for (provider, upstream_service, kind, bucket, n) in times {
            let n = n.unwrap_or(0);
            if n == 0 {
                continue;
            }
            let record = records
                .entry((provider.clone(), upstream_service.clone()))
                .or_insert_with(|| RouteRecord {
                    provider,
                    upstream_service,
                    ..RouteRecord::default()
                });
            if let Some(durations) = record.durations.kind_mut(&kind) {
                durations.add(bucket, n);
            }
        }
        Ok(records.into_values().collect())
    }

    pub(crate) async fn recent_attempts_impl(
        &self,
        provider: &str,
        upstream_service: &str,
        limit: u32,
    ) -> StoreResult<Vec<RecentAttempt>> {
        type RecentRow = (i64, String, i64, String, Option<i64>, Option<i64>);
        let rows: Vec<RecentRow> = sqlx::query_as::<D, RecentRow>(
            "SELECT a.order_id, a.outcome, a.started_at, o.status, o.forwarded_at, o.started_at \
             FROM forward_attempts a JOIN orders o ON o.id = a.order_id \
             WHERE a.provider = $1 AND a.upstream_service = $2 \
             AND a.outcome IN ('sent', 'rejected', 'ambiguous') \
             ORDER BY a.id DESC LIMIT $3",
        )
        .bind(provider)
        .bind(upstream_service)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(order, outcome, at, status, forwarded_at, started_at)| RecentAttempt {
                    order_id: OrderId(order),
                    outcome,
                    at,
                    status,
                    forwarded_at,
                    started_at,
                },
            )
            .collect())
    }
}

use std::collections::BTreeMap;
