//! Order placements per second on SQLite and PostgreSQL, each beside a baseline measured in the
//! same run: a bare sqlx program running the same placement transaction (balance debit, order
//! row, ledger row) with the same concurrency, and the same placements through the group-commit
//! queue (issue #16). Figures go to docs/benchmarks.md as ratios.
//!
//! ```sh
//! scripts/with-postgres.sh cargo bench -p smm-store --bench placement
//! ```
//!
//! Knobs (environment): `BENCH_SECONDS` per measurement (5), `BENCH_CONCURRENCY` placing tasks
//! (8), `BENCH_ROUNDS` interleaved rounds (3; medians are reported), `BENCH_PG_LANES` the
//! group-commit lanes on PostgreSQL (4, as the gateway). PostgreSQL runs when
//! `TEST_DATABASE_URL` is set (an admin URL; a database is created and dropped).

#![allow(clippy::float_arithmetic)] // ratios and milliseconds for the report only

mod baseline;

use baseline::{Run, T0, customers, measure};
use smm_store::{CustomerId, NewOrder, Placed, ServiceId};
use smm_wire::Money;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn new_order(customer: CustomerId) -> NewOrder {
    NewOrder {
        customer_id: customer,
        service_id: ServiceId(1),
        service_type: "Default".into(),
        params: r#"{"type":"default","link":"https://x.test/p","quantity":1000,"drip_feed":null}"#
            .into(),
        link: Some("https://x.test/p".into()),
        quantity: Some(1000),
        units: 1000,
        charge: Money::from_units(27_819),
        idempotency_key: None,
        placed_as: None,
        request_fingerprint: None,
    }
}

fn median(runs: &[Run], f: impl Fn(&Run) -> u64) -> u64 {
    let mut values: Vec<u64> = runs.iter().map(f).collect();
    values.sort_unstable();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let seconds = env_num("BENCH_SECONDS", 5);
    let concurrency = usize::try_from(env_num("BENCH_CONCURRENCY", 8)).unwrap_or(8);
    let rounds = usize::try_from(env_num("BENCH_ROUNDS", 3))
        .unwrap_or(3)
        .max(1);

    let mut backends = Vec::new();

    // SQLite: a temp file, the store's own settings (WAL, synchronous=FULL).
    let dir = smm_test_db::temp_dir();
    let sqlite_url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = smm_store::connect(&sqlite_url).await.expect("sqlite store");
    let store_customers = customers(&store, concurrency, "store").await;
    let base_customers = customers(&store, concurrency, "base").await;
    let lite_pool = baseline::sqlite_pool(&sqlite_url, concurrency).await;
    backends.push((
        "sqlite",
        store,
        store_customers,
        Box::new(move |concurrency: usize, seconds: u64| {
            let pool = lite_pool.clone();
            let ids = base_customers.clone();
            Box::pin(async move { baseline::run_sqlite(pool, ids, concurrency, seconds).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Run>>>
        }) as Box<dyn Fn(usize, u64) -> _>,
    ));

    // PostgreSQL, when configured.
    let mut pg_db = None;
    if let Some(db) = smm_test_db::PgDb::create("bench").await {
        let url = db.url().to_owned();
        let store = smm_store::connect(&url).await.expect("postgres store");
        let store_customers = customers(&store, concurrency, "store").await;
        let base_customers = customers(&store, concurrency, "base").await;
        let pg_pool = baseline::postgres_pool(&url, concurrency).await;
        backends.push((
            "postgres",
            store,
            store_customers,
            Box::new(move |concurrency: usize, seconds: u64| {
                let pool = pg_pool.clone();
                let ids = base_customers.clone();
                Box::pin(
                    async move { baseline::run_postgres(pool, ids, concurrency, seconds).await },
                ) as std::pin::Pin<Box<dyn std::future::Future<Output = Run>>>
            }) as Box<dyn Fn(usize, u64) -> _>,
        ));
        pg_db = Some(db);
    } else {
        eprintln!("TEST_DATABASE_URL not set: PostgreSQL skipped (use scripts/with-postgres.sh)");
    }

    println!(
        "placement benchmark: {concurrency} concurrent placers, {seconds} s per measurement, \
         {rounds} interleaved rounds (medians), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    for (name, store, ids, baseline) in &backends {
        let mut store_runs = Vec::new();
        let mut base_runs = Vec::new();
        let mut group_runs = Vec::new();
        let lanes = match store.backend() {
            smm_store::Backend::Sqlite => 1,
            smm_store::Backend::Postgres => {
                usize::try_from(env_num("BENCH_PG_LANES", 4)).unwrap_or(4)
            }
        };
        let queue = smm_store::GroupCommit::start(store.clone(), lanes);
        for _ in 0..rounds {
            base_runs.push(baseline(concurrency, seconds).await);
            let store = store.clone();
            let ids_again = ids.clone();
            let ids = ids.clone();
            store_runs.push(
                measure(concurrency, seconds, move |task| {
                    let store = store.clone();
                    let customer = ids[task];
                    async move {
                        match store.place_order(new_order(customer), T0).await {
                            Ok(Placed::New(_)) => {}
                            other => panic!("placement failed: {other:?}"),
                        }
                    }
                })
                .await,
            );
            let queue = queue.clone();
            let group_ids = ids_again.clone();
            group_runs.push(
                measure(concurrency, seconds, move |task| {
                    let queue = queue.clone();
                    let customer = group_ids[task];
                    async move {
                        match queue.place(new_order(customer), T0).await {
                            Ok(Placed::New(_)) => {}
                            other => panic!("placement failed: {other:?}"),
                        }
                    }
                })
                .await,
            );
        }
        results.push((*name, store_runs, base_runs, group_runs));
    }

    println!();
    println!("| backend | variant | placements/s | p50 ms | p99 ms | ratio to baseline |");
    println!("|---|---|---|---|---|---|");
    for (name, store_runs, base_runs, group_runs) in &results {
        let base = median(base_runs, |r| r.per_second);
        for (variant, runs) in [
            ("baseline D (bare sqlx tx)", base_runs),
            ("smm-store place_order", store_runs),
            ("smm-store GroupCommit::place", group_runs),
        ] {
            let rate = median(runs, |r| r.per_second);
            println!(
                "| {name} | {variant} | {rate} | {:.2} | {:.2} | {} |",
                median(runs, |r| r.p50_us) as f64 / 1000.0,
                median(runs, |r| r.p99_us) as f64 / 1000.0,
                if variant.starts_with("baseline") {
                    "1.00".to_owned()
                } else {
                    format!("{:.2}", rate as f64 / base.max(1) as f64)
                }
            );
        }
    }

    drop(backends);
    drop(pg_db); // drops the database
    drop(dir);
}
