//! PostgreSQL, for deployments where several gateway processes share one database: its
//! connections and its words of SQL. Every rule and every statement is in [`crate::sql`], whose
//! module docs give the concurrency model (row locks at READ COMMITTED, `SKIP LOCKED` claims).

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Pool, Postgres};
use tokio::sync::mpsc;

use crate::sql::{Dialect, SqlStore};
use crate::{Backend, CUSTOMER_CHANNEL, CustomerEvent, CustomerId, StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store on a PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const BEGIN: &'static str = "BEGIN";
    const VACUUM_AGGREGATES: &'static [&'static str] = &[
        "VACUUM order_count_deltas, order_day_deltas, order_provider_day_deltas, \
           route_day_deltas, route_day_time_deltas",
    ];
    /// Migrations 0010's and 0013's deltas folded into the totals, one table per statement.
    const COMPACT_AGGREGATES: &'static [&'static str] = &[
        "WITH d AS (DELETE FROM order_count_deltas RETURNING status, forward_state, orders) \
         INSERT INTO order_counts (status, forward_state, orders) \
         SELECT status, forward_state, SUM(orders) FROM d GROUP BY 1, 2 ORDER BY 1, 2 \
         ON CONFLICT (status, forward_state) \
         DO UPDATE SET orders = order_counts.orders + EXCLUDED.orders",
        "WITH d AS (DELETE FROM order_day_deltas RETURNING day, orders, charged, refunded) \
         INSERT INTO order_days (day, orders, charged, refunded) \
         SELECT day, SUM(orders), SUM(charged), SUM(refunded) FROM d GROUP BY 1 ORDER BY 1 \
         ON CONFLICT (day) DO UPDATE SET orders = order_days.orders + EXCLUDED.orders, \
         charged = order_days.charged + EXCLUDED.charged, \
         refunded = order_days.refunded + EXCLUDED.refunded",
        "WITH d AS (DELETE FROM order_provider_day_deltas \
         RETURNING day, provider, orders, cost_nanos, kept_cost_nanos) \
         INSERT INTO order_provider_days (day, provider, orders, cost_nanos, kept_cost_nanos) \
         SELECT day, provider, SUM(orders), SUM(cost_nanos), SUM(kept_cost_nanos) FROM d \
         GROUP BY 1, 2 ORDER BY 1, 2 \
         ON CONFLICT (day, provider) DO UPDATE \
         SET orders = order_provider_days.orders + EXCLUDED.orders, \
         cost_nanos = order_provider_days.cost_nanos + EXCLUDED.cost_nanos, \
         kept_cost_nanos = order_provider_days.kept_cost_nanos + EXCLUDED.kept_cost_nanos",
        // Migration 0013's scorecards.
        "WITH d AS (DELETE FROM route_day_deltas RETURNING day, provider, \
         upstream_service, attempts, accepted, refused, not_sent, ambiguous, call_ms, \
         orders, started, completed, partial, canceled, undelivered_ppm, cost_nanos, \
         kept_cost_nanos, charged, refunded, refills, refills_done, refills_failed) \
         INSERT INTO route_days (day, provider, upstream_service, attempts, accepted, \
         refused, not_sent, ambiguous, call_ms, orders, started, completed, partial, \
         canceled, undelivered_ppm, cost_nanos, kept_cost_nanos, charged, refunded, \
         refills, refills_done, refills_failed) SELECT day, provider, upstream_service, \
         SUM(attempts), SUM(accepted), SUM(refused), SUM(not_sent), SUM(ambiguous), \
         SUM(call_ms), SUM(orders), SUM(started), SUM(completed), SUM(partial), \
         SUM(canceled), SUM(undelivered_ppm), SUM(cost_nanos), SUM(kept_cost_nanos), \
         SUM(charged), SUM(refunded), SUM(refills), SUM(refills_done), \
         SUM(refills_failed) FROM d GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 ON CONFLICT (day, \
         provider, upstream_service) DO UPDATE SET attempts = route_days.attempts + \
         EXCLUDED.attempts, accepted = route_days.accepted + EXCLUDED.accepted, refused = \
         route_days.refused + EXCLUDED.refused, not_sent = route_days.not_sent + \
         EXCLUDED.not_sent, ambiguous = route_days.ambiguous + EXCLUDED.ambiguous, \
         call_ms = route_days.call_ms + EXCLUDED.call_ms, orders = route_days.orders + \
         EXCLUDED.orders, started = route_days.started + EXCLUDED.started, completed = \
         route_days.completed + EXCLUDED.completed, partial = route_days.partial + \
         EXCLUDED.partial, canceled = route_days.canceled + EXCLUDED.canceled, \
         undelivered_ppm = route_days.undelivered_ppm + EXCLUDED.undelivered_ppm, \
         cost_nanos = route_days.cost_nanos + EXCLUDED.cost_nanos, kept_cost_nanos = \
         route_days.kept_cost_nanos + EXCLUDED.kept_cost_nanos, charged = \
         route_days.charged + EXCLUDED.charged, refunded = route_days.refunded + \
         EXCLUDED.refunded, refills = route_days.refills + EXCLUDED.refills, refills_done \
         = route_days.refills_done + EXCLUDED.refills_done, refills_failed = \
         route_days.refills_failed + EXCLUDED.refills_failed",
        "WITH d AS (DELETE FROM route_day_time_deltas RETURNING day, provider, \
         upstream_service, kind, bucket, n) INSERT INTO route_day_times (day, provider, \
         upstream_service, kind, bucket, n) SELECT day, provider, upstream_service, kind, \
         bucket, SUM(n) FROM d GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 ON CONFLICT \
         (day, provider, upstream_service, kind, bucket) DO UPDATE SET n = \
         route_day_times.n + EXCLUDED.n",
    ];

    fn word(name: &str, param: &str) -> String {
        match name {
            "for_update" => " FOR UPDATE".to_owned(),
            // A lock that lets other transactions' foreign-key checks (KEY SHARE) through:
            // for multi-row locks whose updates never change a key (issue #16's groups).
            "for_no_key_update" => " FOR NO KEY UPDATE".to_owned(),
            "skip_locked" => " FOR UPDATE SKIP LOCKED".to_owned(),
            "int_list" => {
                format!("(SELECT value::BIGINT FROM json_array_elements_text({param}::JSON))")
            }
            "text_list" => format!("(SELECT value FROM json_array_elements_text({param}::JSON))"),
            // JSONB: parsed once, each `r ->> k` then a lookup. As JSON every `->>` lexed its
            // row's text again from the start: a poll batch's 11 columns a row were 5 % of
            // PostgreSQL's CPU in the sweep (issue #16).
            "json_rows" => format!(
                "(SELECT n - 1 AS n, r FROM jsonb_array_elements({param}::JSONB) \
                 WITH ORDINALITY AS e (r, n)) AS j"
            ),
            "limit" => format!("LIMIT {param}"),
            // The next order ids, one per element of the JSON list `param`, from the identity's
            // sequence (never handed out twice, whoever inserts).
            "new_order_ids" => format!(
                "SELECT nextval(pg_get_serial_sequence('orders', 'id')) \
                 FROM json_array_elements_text({param}::JSON)"
            ),
            "poll_index" | "upstream_index" => String::new(),
            // Migration 0019: the rows before (read first, in the same snapshot as the
            // update) and after, handed to `orders_updated`, which writes what the row
            // triggers would have for them, a few statements for the whole batch.
            "orders_batch_open" => format!(
                "WITH was AS MATERIALIZED (SELECT o FROM orders AS o WHERE o.id IN \
                 (SELECT CAST(r ->> 0 AS BIGINT) FROM json_array_elements({param}::JSON) \
                 AS e (r))), now AS ("
            ),
            "orders_batch_close" => " RETURNING orders AS o) \
                SELECT orders_updated(ARRAY(SELECT o FROM was ORDER BY (o).id), \
                ARRAY(SELECT o FROM now ORDER BY (o).id))"
                .to_owned(),
            // An unknown word stays in the text, so the statement fails to prepare.
            other => format!("{{{other}}}"),
        }
    }
    const NOTIFY_CUSTOMER: Option<&'static str> =
        Some("SELECT pg_notify('smm_customer_changed', $1)");
    // Migration 0019's row triggers stand aside while this is set; local to the transaction,
    // so an error that rolls it back cannot leave it set.
    const ORDERS_BATCH: Option<(&'static str, &'static str)> = Some((
        "SELECT set_config('smm.orders_updated', 'set-wise', true)",
        "SELECT set_config('smm.orders_updated', '', true)",
    ));

    fn customer_events(pool: &Pool<Postgres>) -> Option<mpsc::Receiver<CustomerEvent>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(listen_customers(pool.clone(), sender));
        Some(receiver)
    }
}

/// Listens on [`CUSTOMER_CHANNEL`] until `events` is dropped or the pool is closed,
/// reconnecting with a capped backoff. Every (re)connection is followed by a `Resync`:
/// announcements made while no connection listened are lost.
async fn listen_customers(pool: Pool<Postgres>, events: mpsc::Sender<CustomerEvent>) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = FIRST_BACKOFF;
    while !events.is_closed() && !pool.is_closed() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CUSTOMER_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listening {
            Ok(mut listener) => {
                if events.send(CustomerEvent::Resync).await.is_err() {
                    return;
                }
                backoff = FIRST_BACKOFF;
                loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        // Nobody listens any more: give the connection back.
                        () = events.closed() => return,
                    };
                    let event = match received {
                        Ok(Some(notification)) => notification
                            .payload()
                            .parse::<i64>()
                            .map_or(CustomerEvent::Resync, |id| {
                                CustomerEvent::Changed(CustomerId(id))
                            }),
                        // The connection was lost: listen again on a new one.
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(%e, "customer change listener failed; reconnecting");
                            break;
                        }
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%e, "cannot listen for customer changes; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl SqlStore<Postgres> {
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
                other => other.into(),
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations failed: {e}")))?;
        Ok(SqlStore {
            writer: pool.clone(),
            reader: pool,
        })
    }
}
