//! Baseline D of the benchmarks, shared by `benches/placement.rs` and the gateway benchmark
//! (`crates/smm-server/examples/bench_tool.rs`, via `#[path]`): a bare sqlx program running the
//! same placement transaction the store runs (balance debit, order row, ledger row), one
//! transaction per order, from a number of concurrent tasks — the storage ceiling any
//! placement path on this machine can reach with one commit per order.
//!
//! Not a bench target itself (Cargo only discovers `benches/*.rs` and `benches/*/main.rs`).

#![allow(dead_code)] // each includer uses its own subset

use std::sync::Arc;
use std::time::{Duration, Instant};

use smm_store::{CustomerId, LedgerKind, NewCustomer, Store, hash_api_key};
use smm_wire::Money;

/// A fixed timestamp for rows written by benchmarks.
pub const T0: i64 = 1_700_000_000_000;

/// What one measurement gives.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub per_second: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// The `pct` percentile of sorted samples (nearest rank below).
pub fn percentile(sorted: &[u64], pct: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * pct / 100]
}

/// Runs `place` from `concurrency` tasks (task i uses customer i) for `seconds`.
pub async fn measure<F, Fut>(concurrency: usize, seconds: u64, place: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let place = Arc::new(place);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let place = place.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                place(task).await;
                latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("bench task"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let count = u64::try_from(all.len()).unwrap_or(u64::MAX);
    Run {
        per_second: count * 1000 / u64::try_from(elapsed.as_millis()).unwrap_or(1).max(1),
        p50_us: percentile(&all, 50),
        p99_us: percentile(&all, 99),
    }
}

/// `count` customers, created through the store, with room for every order a bench can place.
pub async fn customers(store: &Arc<dyn Store>, count: usize, tag: &str) -> Vec<CustomerId> {
    let mut ids = Vec::new();
    for i in 0..count {
        let c = store
            .create_customer(
                NewCustomer {
                    name: format!("bench-{tag}-{i}"),
                    currency: "USD".into(),
                    key_hash: hash_api_key(&format!("bench-{tag}-{i}")),
                    key_prefix: "bench".into(),
                },
                "bench",
                T0,
            )
            .await
            .expect("customer");
        store
            .adjust_balance(
                c.id,
                LedgerKind::Deposit,
                Money::from_units(1_000_000_000_000_000),
                "bench",
                "bench",
                T0,
            )
            .await
            .expect("deposit");
        ids.push(c.id);
    }
    ids
}

/// The placement transaction's statements, valid on both databases.
pub const BASELINE_SQL: [&str; 3] = [
    "UPDATE customers SET balance = balance - $1 WHERE id = $2 AND balance >= $1 RETURNING balance",
    "INSERT INTO orders (customer_id, service_id, service_type, params, link, quantity, units, \
     charge, created_at, updated_at) VALUES ($1, 1, 'Default', $2, 'https://x.test/p', 1000, \
     1000, $3, $4, $4) RETURNING id",
    "INSERT INTO ledger (customer_id, kind, amount, balance_after, order_id, reason, actor, \
     created_at) VALUES ($1, 'charge', $2, $3, $4, 'order', 'customer', $5)",
];

/// One placement transaction on `$pool`, opened with `$begin` (`"BEGIN IMMEDIATE"` on SQLite,
/// so the writer lock is taken up front as the store does; `"BEGIN"` on PostgreSQL).
macro_rules! baseline_place {
    ($pool:expr, $begin:expr, $customer:expr) => {{
        let mut tx = $pool.begin_with($begin).await.expect("begin");
        let charge: i64 = 27_819;
        let balance: i64 = sqlx::query_scalar($crate::baseline::BASELINE_SQL[0])
            .bind(charge)
            .bind($customer)
            .fetch_one(&mut *tx)
            .await
            .expect("debit");
        let order: i64 = sqlx::query_scalar($crate::baseline::BASELINE_SQL[1])
            .bind($customer)
            .bind(r#"{"type":"default"}"#)
            .bind(charge)
            .bind($crate::baseline::T0)
            .fetch_one(&mut *tx)
            .await
            .expect("order");
        sqlx::query($crate::baseline::BASELINE_SQL[2])
            .bind($customer)
            .bind(-charge)
            .bind(balance)
            .bind(order)
            .bind($crate::baseline::T0)
            .execute(&mut *tx)
            .await
            .expect("ledger");
        tx.commit().await.expect("commit");
    }};
}

/// A SQLite pool for the baseline with the store's durability settings (WAL,
/// `synchronous=FULL`), `connections` writers contending through the busy handler.
pub async fn sqlite_pool(url: &str, connections: usize) -> sqlx::SqlitePool {
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("sqlite url");
    let options = options
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(u32::try_from(connections).unwrap_or(8))
        .connect_with(options)
        .await
        .expect("baseline pool")
}

/// A PostgreSQL pool for the baseline, one connection per placing task.
pub async fn postgres_pool(url: &str, connections: usize) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(connections).unwrap_or(8))
        .connect(url)
        .await
        .expect("baseline pool")
}

/// Baseline D on SQLite: `concurrency` tasks, each on its own customer, for `seconds`.
pub async fn run_sqlite(
    pool: sqlx::SqlitePool,
    ids: Vec<CustomerId>,
    concurrency: usize,
    seconds: u64,
) -> Run {
    measure(concurrency, seconds, move |task| {
        let pool = pool.clone();
        let customer = ids[task % ids.len()].0;
        async move { baseline_place!(pool, "BEGIN IMMEDIATE", customer) }
    })
    .await
}

/// Baseline D on PostgreSQL: `concurrency` tasks, each on its own customer, for `seconds`.
pub async fn run_postgres(
    pool: sqlx::PgPool,
    ids: Vec<CustomerId>,
    concurrency: usize,
    seconds: u64,
) -> Run {
    measure(concurrency, seconds, move |task| {
        let pool = pool.clone();
        let customer = ids[task % ids.len()].0;
        async move { baseline_place!(pool, "BEGIN", customer) }
    })
    .await
}
