//! The helper program of `bench/run.sh`: seeds databases and simulators, runs baseline D, and
//! watches a running gateway's upstream traffic and outbox. Each subcommand prints one
//! `name=value ...` line for the script to read.
//!
//! * `seed` — a customer (through the store, so the key hash and first ledger row are the
//!   store's own), then with bulk SQL `--closed` finished orders (the "1,000,000 orders in the
//!   database" of the RSS scenario) and `--open` orders sent upstream and due for a status poll,
//!   spread evenly over the simulators given, each with its upstream twin placed in that
//!   simulator through `POST /control/orders`. Every order has its charge row in the ledger, so
//!   the customer's balance still equals the sum of their ledger.
//! * `baseline-d` — baseline D: the store's placement transaction in bare sqlx, one per order,
//!   at a given concurrency (shared with `smm-store`'s placement bench).
//! * `sweep` — waits until the simulators have been asked for `--ids` order statuses; prints
//!   the `status` calls made and the wall time from the first to the last.
//! * `drain` — waits until the gateway's outbox is empty (no order `queued` or `sending`);
//!   prints how long that took: the forwarding lag.
//! * `receive` — a customer's webhook receiver on 127.0.0.1 (`bench/webhooks.sh`): answers 200,
//!   verifies every request's signature with the secret, counts distinct event ids and
//!   duplicates (`GET /counts`); `/baseline` verifies the same way without counting, for wrk.
//! * `sign` — the signature header of a body at this moment, for the baseline's wrk script.
//! * `webhook-drain` — waits until the customers' webhook outbox holds `--events` order status
//!   events and none pending; prints the time from the first event recorded to then.
//! * `compact` — folds the order aggregates' deltas into their totals (after a bulk seed).
//! * `pg-create` / `pg-drop` — a PostgreSQL database for one run.
//!
//! ```sh
//! cargo run --release -p smm-server --example bench_tool -- seed --help
//! ```

#![allow(clippy::float_arithmetic)] // seconds and milliseconds for the report only; no money

#[path = "../../smm-store/benches/baseline/mod.rs"]
mod baseline;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use smm_store::{LedgerKind, NewCustomer, hash_api_key};
use smm_wire::Money;
use sqlx::Connection;

#[derive(Debug, Parser)]
#[command(about = "Seeding, baseline D and watchers for bench/run.sh")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A customer with `--closed` finished and `--open` due orders (and their upstream twins).
    Seed {
        /// Database URL (migrated first).
        #[arg(long)]
        db: String,
        /// The customer's API key (stored hashed).
        #[arg(long)]
        key: String,
        /// Finished orders (Completed, never polled again).
        #[arg(long, default_value_t = 0)]
        closed: u64,
        /// Orders sent upstream and due for a status poll, spread over `--sims`.
        #[arg(long, default_value_t = 0)]
        open: u64,
        /// Simulator API URLs, one per provider `p1`, `p2`, ... (comma-separated).
        #[arg(long, value_delimiter = ',')]
        sims: Vec<String>,
        /// The gateway's key at the simulators.
        #[arg(long, default_value = smm_panel_sim::DEMO_KEY)]
        sim_key: String,
        /// Local service id of the seeded orders (routed to each provider's service 1).
        #[arg(long, default_value_t = 100_001)]
        service: i64,
    },
    /// Baseline D: bare sqlx placement transactions at `--concurrency` for `--seconds`.
    BaselineD {
        /// A database of its own (migrated first); never the gateway's, whose forwarder would
        /// pick up the rows.
        #[arg(long)]
        db: String,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        seconds: u64,
    },
    /// Waits until the simulators were asked for `ids` statuses in all.
    Sweep {
        #[arg(long, value_delimiter = ',')]
        sims: Vec<String>,
        #[arg(long)]
        ids: u64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Waits until no order is `queued` or `sending`.
    Drain {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// A webhook receiver on 127.0.0.1:`port` verifying signatures with `secret`.
    Receive {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        secret: String,
    },
    /// Prints the signature header of `body` for `secret`, timestamped now.
    Sign {
        #[arg(long)]
        secret: String,
        #[arg(long)]
        body: String,
    },
    /// Waits until the webhook outbox holds at least `events` order status events and none
    /// is pending.
    WebhookDrain {
        #[arg(long)]
        db: String,
        #[arg(long)]
        events: i64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Prints `orders=N commits=N`: orders in the database and, on PostgreSQL, transactions
    /// committed in it so far (`pg_stat_database`; `commits=na` on SQLite). Two readings around
    /// a run give the commits each placed order cost, forwarding included.
    DbStats {
        #[arg(long)]
        db: String,
    },
    /// Folds the order aggregates' deltas into their totals (what the reconciler does every
    /// round; a bulk seed leaves a million of them on PostgreSQL) and prints how long it took.
    Compact {
        #[arg(long)]
        db: String,
    },
    /// Creates database `name` on the server of `admin` and prints its URL.
    PgCreate {
        #[arg(long)]
        admin: String,
        #[arg(long)]
        name: String,
    },
    /// Drops database `name` on the server of `admin`.
    PgDrop {
        #[arg(long)]
        admin: String,
        #[arg(long)]
        name: String,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match Args::parse().command {
        Command::Seed {
            db,
            key,
            closed,
            open,
            sims,
            sim_key,
            service,
        } => seed(&db, &key, closed, open, &sims, &sim_key, service).await,
        Command::BaselineD {
            db,
            concurrency,
            seconds,
        } => baseline_d(&db, concurrency.max(1), seconds).await,
        Command::Sweep {
            sims,
            ids,
            timeout_secs,
        } => sweep(&sims, ids, Duration::from_secs(timeout_secs)).await,
        Command::Drain { db, timeout_secs } => drain(&db, Duration::from_secs(timeout_secs)).await,
        Command::DbStats { db } => db_stats(&db).await,
        Command::Receive { port, secret } => receive(port, secret).await,
        Command::Sign { secret, body } => {
            let now = now_ms() / 1000;
            println!(
                "{}",
                smm_notify::signing::sign(&secret, now, body.as_bytes())
            );
            Ok(())
        }
        Command::WebhookDrain {
            db,
            events,
            timeout_secs,
        } => webhook_drain(&db, events, Duration::from_secs(timeout_secs)).await,
        Command::Compact { db } => {
            let started = Instant::now();
            smm_store::connect(&db).await?.compact_aggregates().await?;
            println!("compact_ms={}", started.elapsed().as_millis());
            Ok(())
        }
        Command::PgCreate { admin, name } => {
            println!("{}", smm_test_db::create_database(&admin, &name).await?);
            Ok(())
        }
        Command::PgDrop { admin, name } => {
            smm_test_db::drop_database(&admin, &name).await?;
            Ok(())
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What every seeded order costs (0.09 USD: 100 units at 0.90 per 1000).
const CHARGE: i64 = 9_000;
/// The first deposit: room for every seeded order and any benchmark's placements.
const DEPOSIT: i64 = 1_000_000_000_000_000;

/// Inserts `count` orders numbered by `n` = 1..=count in one statement: finished ones
/// (`status` Completed, no poll) or open ones due now (upstream id `offset + n`).
const INSERT_ORDERS: &str = "\
WITH RECURSIVE s(n) AS (
    SELECT CAST(1 AS BIGINT) UNION ALL SELECT n + 1 FROM s WHERE n < CAST($1 AS BIGINT)
)
INSERT INTO orders (customer_id, service_id, service_type, params, link, quantity, units, charge,
    status, start_count, remains, provider, upstream_service, upstream_order_id, upstream_cost,
    forward_state, forward_attempts, forwarded_at, next_poll_at, created_at, updated_at)
SELECT $2, $3, 'Default',
    '{\"type\":\"default\",\"link\":\"https://x.test/p\",\"quantity\":100,\"drip_feed\":null}',
    'https://x.test/p', 100, 100, $4, $5, 0, $6, $7, '1', $8 || CAST(n + $9 AS TEXT), '0.075', 'sent', 1,
    $10, $11, $10, $10
FROM s";

/// The charge row of every order above `$2` of customer `$1`, with the running balance after
/// each (`$3` = the balance before the first).
const INSERT_CHARGES: &str = "\
INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, actor, created_at)
SELECT customer_id, 'charge', -charge,
    CAST($3 AS BIGINT) - CAST($4 AS BIGINT) * ROW_NUMBER() OVER (ORDER BY id),
    id, 'order', 'customer', created_at
FROM orders WHERE customer_id = $1 AND id > $2";

/// Runs the same statements on either database (`$n` placeholders work on both).
macro_rules! bulk {
    ($pool:expr, $customer:expr, $service:expr, $batches:expr) => {{
        let pool = $pool;
        let mut tx = pool.begin().await?;
        let mut balance: i64 = sqlx::query_scalar("SELECT balance FROM customers WHERE id = $1")
            .bind($customer)
            .fetch_one(&mut *tx)
            .await?;
        for b in $batches {
            let last: Option<i64> =
                sqlx::query_scalar("SELECT MAX(id) FROM orders WHERE customer_id = $1")
                    .bind($customer)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query(INSERT_ORDERS)
                .bind(b.count)
                .bind($customer)
                .bind($service)
                .bind(CHARGE)
                .bind(b.status)
                .bind(b.remains)
                .bind(b.provider.as_str())
                .bind(b.prefix)
                .bind(b.offset)
                .bind(b.created_at)
                .bind(b.next_poll_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_CHARGES)
                .bind($customer)
                .bind(last.unwrap_or(0))
                .bind(balance)
                .bind(CHARGE)
                .execute(&mut *tx)
                .await?;
            balance -= CHARGE * b.count;
            sqlx::query("UPDATE customers SET balance = $1 WHERE id = $2")
                .bind(balance)
                .bind($customer)
                .execute(&mut *tx)
                .await?;
        }
        // Sanity: the books still balance.
        let ledger: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE customer_id = $1",
        )
        .bind($customer)
        .fetch_one(&mut *tx)
        .await?;
        if ledger != balance {
            return Err(format!("ledger {ledger} != balance {balance}").into());
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE customer_id = $1 ORDER BY id LIMIT 100",
        )
        .bind($customer)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        ids
    }};
}

/// One bulk insert: `count` orders alike.
struct Batch {
    count: i64,
    status: &'static str,
    remains: Option<i64>,
    provider: String,
    prefix: &'static str,
    offset: i64,
    created_at: i64,
    next_poll_at: Option<i64>,
}

async fn seed(
    db: &str,
    key: &str,
    closed: u64,
    open: u64,
    sims: &[String],
    sim_key: &str,
    service: i64,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let store = smm_store::connect(db).await?;
    let now = now_ms();
    let customer = store
        .create_customer(
            NewCustomer {
                name: "bench".into(),
                currency: "USD".into(),
                key_hash: hash_api_key(key),
                key_prefix: key.chars().take(6).collect(),
            },
            "bench",
            now,
        )
        .await?;
    store
        .adjust_balance(
            customer.id,
            LedgerKind::Deposit,
            Money::from_units(DEPOSIT),
            "bench seed",
            "bench",
            now,
        )
        .await?;
    drop(store);

    let mut batches = Vec::new();
    if closed > 0 {
        batches.push(Batch {
            count: i64::try_from(closed)?,
            status: "Completed",
            remains: Some(0),
            provider: "p1".into(),
            prefix: "seed-",
            offset: 0,
            created_at: now - 86_400_000,
            next_poll_at: None,
        });
    }
    if open > 0 {
        if sims.is_empty() {
            return Err("--open needs --sims".into());
        }
        let http = reqwest::Client::builder().no_proxy().build()?;
        let per_sim = open / sims.len() as u64;
        for (i, sim) in sims.iter().enumerate() {
            let count = per_sim + u64::from((i as u64) < open % sims.len() as u64);
            let base = sim.trim_end_matches("/api/v2");
            http.put(format!("{base}/control/balance"))
                .json(&serde_json::json!({"key": sim_key, "balance": "1000000000"}))
                .send()
                .await?
                .error_for_status()?;
            let range: serde_json::Value = http
                .post(format!("{base}/control/orders"))
                .json(&serde_json::json!({"count": count, "params": {
                    "key": sim_key, "service": "1", "link": "https://x.test/p", "quantity": "100"}}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let first = range["first"].as_i64().ok_or("no first order id")?;
            batches.push(Batch {
                count: i64::try_from(count)?,
                status: "Pending",
                remains: Some(100),
                provider: format!("p{}", i + 1),
                prefix: "",
                offset: first - 1,
                // Old enough that, once polled, an order is not due again for 30 minutes.
                created_at: now - 36_000_000,
                next_poll_at: Some(0),
            });
        }
    }

    let ids = if db.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = db.parse()?;
        let pool = sqlx::SqlitePool::connect_with(
            options.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
        )
        .await?;
        bulk!(&pool, customer.id.0, service, batches)
    } else {
        let pool = sqlx::PgPool::connect(db).await?;
        let ids = bulk!(&pool, customer.id.0, service, batches);
        sqlx::query("ANALYZE").execute(&pool).await?;
        ids
    };
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    println!(
        "customer={} closed={closed} open={open} seconds={:.1} status_ids={}",
        customer.id.0,
        started.elapsed().as_secs_f64(),
        ids.join(",")
    );
    Ok(())
}

async fn baseline_d(db: &str, concurrency: usize, seconds: u64) -> Result<(), BoxError> {
    let store = smm_store::connect(db).await?;
    let ids = baseline::customers(&store, concurrency, &format!("d{}", std::process::id())).await;
    drop(store);
    let run = if db.starts_with("sqlite:") {
        let pool = baseline::sqlite_pool(db, concurrency).await;
        baseline::run_sqlite(pool, ids, concurrency, seconds).await
    } else {
        let pool = baseline::postgres_pool(db, concurrency).await;
        baseline::run_postgres(pool, ids, concurrency, seconds).await
    };
    println!(
        "rps={} p50_ms={:.2} p99_ms={:.2}",
        run.per_second,
        run.p50_us as f64 / 1000.0,
        run.p99_us as f64 / 1000.0
    );
    Ok(())
}

async fn sweep(sims: &[String], ids: u64, timeout: Duration) -> Result<(), BoxError> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + timeout;
    let mut first_call: Option<Instant> = None;
    loop {
        let (calls, asked) = status_counts(&http, sims).await?;
        if calls > 0 && first_call.is_none() {
            first_call = Some(Instant::now());
        }
        if asked >= ids {
            let seconds = first_call.map_or(0.0, |t| t.elapsed().as_secs_f64());
            // Anything asked twice would show up as extra calls shortly after.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (calls, asked) = status_counts(&http, sims).await?;
            println!("calls={calls} ids={asked} seconds={seconds:.2}");
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("calls={calls} ids={asked} seconds=timeout");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `status` calls and order ids asked, summed over the simulators.
async fn status_counts(http: &reqwest::Client, sims: &[String]) -> Result<(u64, u64), BoxError> {
    let (mut calls, mut asked) = (0, 0);
    for sim in sims {
        let base = sim.trim_end_matches("/api/v2");
        let counts: smm_panel_sim::RequestCounts = http
            .get(format!("{base}/control/counts"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        calls += counts.actions.get("status").copied().unwrap_or(0);
        asked += counts.status_ids;
    }
    Ok((calls, asked))
}

async fn db_stats(db: &str) -> Result<(), BoxError> {
    const ORDERS: &str = "SELECT COUNT(*) FROM orders";
    if db.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = db.parse()?;
        let mut conn = sqlx::SqliteConnection::connect_with(&options.read_only(true)).await?;
        let orders: i64 = sqlx::query_scalar(ORDERS).fetch_one(&mut conn).await?;
        println!("orders={orders} commits=na");
    } else {
        let mut conn = sqlx::PgConnection::connect(db).await?;
        let orders: i64 = sqlx::query_scalar(ORDERS).fetch_one(&mut conn).await?;
        // The statistics collector lags: ask for a fresh snapshot first.
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await?;
        let commits: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        println!("orders={orders} commits={commits}");
    }
    Ok(())
}

const OUTBOX: &str = "SELECT COUNT(*) FROM orders WHERE forward_state IN ('queued', 'sending')";

async fn drain(db: &str, timeout: Duration) -> Result<(), BoxError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let lite;
    let pg;
    if db.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = db.parse()?;
        lite = Some(sqlx::SqlitePool::connect_with(options.read_only(true)).await?);
        pg = None;
    } else {
        lite = None;
        pg = Some(sqlx::PgPool::connect(db).await?);
    }
    loop {
        let left: i64 = match (&lite, &pg) {
            (Some(pool), _) => sqlx::query_scalar(OUTBOX).fetch_one(pool).await?,
            (_, Some(pool)) => sqlx::query_scalar(OUTBOX).fetch_one(pool).await?,
            _ => unreachable!("one pool is open"),
        };
        if left == 0 {
            println!("seconds={:.2}", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("seconds=timeout left={left}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- webhooks ---------------------------------------------------------------------------------

/// What the receiver counted.
#[derive(Default)]
struct Received {
    requests: u64,
    ids: std::collections::HashSet<i64>,
    duplicates: u64,
    bad_signatures: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    baseline: u64,
}

struct Receiver {
    secret: String,
    counts: std::sync::Mutex<Received>,
}

impl Receiver {
    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the request's signature verifies (within 5 minutes, as receivers are told to).
    fn verified(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
        headers
            .get(smm_notify::signing::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|header| {
                smm_notify::signing::verify(&self.secret, header, body, now_ms() / 1000, 300)
                    .is_ok()
            })
    }
}

async fn receive(port: u16, secret: String) -> Result<(), BoxError> {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::Arc;

    async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> &'static str {
        let ok = r.verified(&headers, &body);
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("event_id").and_then(serde_json::Value::as_i64));
        let now = Instant::now();
        let mut c = r.lock();
        c.requests += 1;
        c.first.get_or_insert(now);
        c.last = Some(now);
        if !ok {
            c.bad_signatures += 1;
        }
        if let Some(id) = id
            && !c.ids.insert(id)
        {
            c.duplicates += 1;
        }
        "ok"
    }
    async fn baseline(
        State(r): State<Arc<Receiver>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let ok = r.verified(&headers, &body);
        let mut c = r.lock();
        c.baseline += 1;
        if !ok {
            c.bad_signatures += 1;
        }
        "ok"
    }
    async fn counts(State(r): State<Arc<Receiver>>) -> String {
        let c = r.lock();
        let seconds = match (c.first, c.last) {
            (Some(first), Some(last)) => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        format!(
            "requests={} distinct={} duplicates={} bad_signatures={} seconds={seconds:.2} \
             baseline_requests={}\n",
            c.requests,
            c.ids.len(),
            c.duplicates,
            c.bad_signatures,
            c.baseline
        )
    }

    let state = Arc::new(Receiver {
        secret,
        counts: std::sync::Mutex::new(Received::default()),
    });
    let router = axum::Router::new()
        .route("/counts", get(counts))
        .route("/baseline", post(baseline))
        .fallback(hook)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// Order status events recorded, events pending, and the first and last event's time.
const WEBHOOK_COUNTS: &str = "SELECT \
    CAST(COALESCE(SUM(CASE WHEN kind = 'order.status' THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
    COUNT(*), MIN(created_at), MAX(created_at) FROM webhook_events";
/// Delivery attempts logged, and those that failed.
const WEBHOOK_ATTEMPTS: &str = "SELECT COUNT(*), \
    CAST(COALESCE(SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) \
    FROM webhook_deliveries";

type Counts = (i64, i64, i64, Option<i64>, Option<i64>);

async fn webhook_drain(db: &str, events: i64, timeout: Duration) -> Result<(), BoxError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let lite;
    let pg;
    if db.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = db.parse()?;
        lite = Some(sqlx::SqlitePool::connect_with(options.read_only(true)).await?);
        pg = None;
    } else {
        lite = None;
        pg = Some(sqlx::PgPool::connect(db).await?);
    }
    loop {
        let (status_events, pending, all, first, last): Counts = match (&lite, &pg) {
            (Some(pool), _) => sqlx::query_as(WEBHOOK_COUNTS).fetch_one(pool).await?,
            (_, Some(pool)) => sqlx::query_as(WEBHOOK_COUNTS).fetch_one(pool).await?,
            _ => unreachable!("one pool is open"),
        };
        let drained = status_events >= events && pending == 0;
        if drained || Instant::now() > deadline {
            let at = now_ms();
            let (attempts, failed): (i64, i64) = match (&lite, &pg) {
                (Some(pool), _) => sqlx::query_as(WEBHOOK_ATTEMPTS).fetch_one(pool).await?,
                (_, Some(pool)) => sqlx::query_as(WEBHOOK_ATTEMPTS).fetch_one(pool).await?,
                _ => unreachable!("one pool is open"),
            };
            let first = first.unwrap_or(at);
            let last = last.unwrap_or(at);
            let seconds = (at - first) as f64 / 1000.0;
            let outcome = if drained { "drained" } else { "timeout" };
            println!(
                "outcome={outcome} events={all} status_events={status_events} pending={pending} \
                 seconds={seconds:.2} rate={:.0} recorded_over={:.2} tail={:.2} \
                 attempts={attempts} failed_attempts={failed}",
                all as f64 / seconds.max(0.001),
                (last - first) as f64 / 1000.0,
                (at - last) as f64 / 1000.0,
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
