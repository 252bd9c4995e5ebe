//! What only the SQLite store has to show: its connections (the single writer, the pragmas, the
//! in-memory database) and its write lock shared with other processes. Everything else is in the
//! conformance suite (`tests/conformance`), run on both databases. Each test gets its own
//! database file in a temp dir of its own.

use std::sync::Arc;

use smm_wire::{Money, OrderStatus};
use sqlx::Connection;

use super::SqliteStore;
use crate::*;

/// A store on a fresh file in a fresh directory (which `connect` must create); removed on drop.
struct TestDb {
    url: String,
    store: Arc<SqliteStore>,
    /// Dropped last: removes the directory.
    _dir: smm_test_db::TempDir,
}

async fn temp_store(_name: &str) -> TestDb {
    let dir = smm_test_db::temp_dir();
    let url = format!("sqlite://{}", dir.path().join("nested/smm.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    TestDb {
        url,
        store: Arc::new(store),
        _dir: dir,
    }
}

async fn customer(store: &SqliteStore, name: &str, deposit: i64) -> Customer {
    let customer = store
        .create_customer(
            NewCustomer {
                name: name.to_owned(),
                currency: "USD".to_owned(),
                key_hash: hash_api_key(&format!("key-{name}")),
                key_prefix: format!("k-{name}"),
            },
            "admin",
            1,
        )
        .await
        .expect("create customer");
    if deposit > 0 {
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Deposit,
                Money::from_units(deposit),
                "initial deposit",
                "admin",
                2,
            )
            .await
            .expect("deposit");
    }
    customer
}

fn new_order(customer: CustomerId, charge: i64, key: Option<&str>) -> NewOrder {
    NewOrder {
        customer_id: customer,
        service_id: ServiceId(1),
        service_type: "Default".to_owned(),
        params: r#"{"service":1}"#.to_owned(),
        link: Some("https://example.com/p/1".to_owned()),
        quantity: Some(1000),
        units: 1000,
        charge: Money::from_units(charge),
        idempotency_key: key.map(str::to_owned),
        placed_as: None,
        request_fingerprint: None,
    }
}

/// Places an order and takes it all the way to `sent` at provider `p1` as upstream id `up`.
async fn sent_order(store: &SqliteStore, customer: CustomerId, charge: i64, up: &str) -> OrderId {
    let order = store
        .place_order(new_order(customer, charge, None), 10)
        .await
        .expect("place")
        .order()
        .id;
    let claimed = store.claim_for_forwarding("w", 1, 20).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![order]
    );
    store
        .begin_attempt(order, "p1", "101", 21)
        .await
        .expect("begin");
    store
        .finish_attempt(
            order,
            ForwardOutcome::Sent {
                upstream_order_id: up.to_owned(),
                upstream_cost: Some("0.2".parse().expect("decimal")),
                next_poll_at: 100,
            },
            22,
        )
        .await
        .expect("finish");
    order
}

fn partial(remains: i64) -> StatusUpdate {
    StatusUpdate {
        delivery: Default::default(),
        status: OrderStatus::Partial,
        start_count: Some(10),
        remains: Some(remains),
        extra: None,
        next_poll_at: 500,
    }
}

async fn assert_ledger_consistent(store: &SqliteStore, id: CustomerId) -> Money {
    let balance = store.customer(id).await.expect("customer").balance;
    assert_eq!(store.ledger_sum(id).await.expect("sum"), balance);
    balance
}

#[tokio::test]
async fn in_memory_database_works_on_one_connection() {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("connect");
    let mia = customer(&store, "mia", 10_000).await;
    let order = sent_order(&store, mia.id, 1_000, "U-1").await;
    let applied = store
        .apply_status(
            "p1",
            "U-1",
            StatusUpdate {
                delivery: Default::default(),
                status: OrderStatus::Canceled,
                ..partial(0)
            },
            50,
        )
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(applied.refund, Some(Money::from_units(1_000)));
    assert_eq!(
        store.order(order).await.expect("order").status,
        OrderStatus::Canceled
    );
    assert_eq!(
        assert_ledger_consistent(&store, mia.id).await,
        Money::from_units(10_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_pragmas_on_every_connection() {
    let db = temp_store("pragmas").await;
    for pool in [&db.store.writer, &db.store.reader] {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        // 2 = FULL
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .expect("synchronous");
        assert_eq!(sync, 2);
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(pool)
            .await
            .expect("foreign_keys");
        assert_eq!(fk, 1);
    }
    assert_eq!(db.store.writer.options().get_max_connections(), 1);
    // Reopening an existing file runs no migration twice and keeps the data.
    let ola = customer(&db.store, "ola", 100).await;
    db.store.close().await;
    let reopened = SqliteStore::connect(&db.url).await.expect("reopen");
    assert_eq!(
        reopened.customer(ola.id).await.expect("customer").balance,
        Money::from_units(100)
    );
    reopened.close().await;
}

/// Aborted calls (a client hung up mid-request) must never leave a transaction open on the
/// single writer, nor half a placement behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_transaction_open() {
    let db = temp_store("cancelled").await;
    let pia = customer(&db.store, "pia", 1_000_000).await;
    for round in 0..20 {
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = Arc::clone(&db.store);
                tokio::spawn(
                    async move { store.place_order(new_order(pia.id, 1_000, None), 10).await },
                )
            })
            .collect();
        // Let some of them get going, then pull the plug on all of them.
        tokio::time::sleep(std::time::Duration::from_micros(round * 400)).await;
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
    // The writer is free: another process can take the write lock (a rollback of an aborted
    // call may still be draining, hence a short busy timeout rather than none).
    let mut other = sqlx::SqliteConnection::connect(&db.url)
        .await
        .expect("connect");
    sqlx::query("PRAGMA busy_timeout = 1000")
        .execute(&mut other)
        .await
        .expect("pragma");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("write lock is free");
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("rollback");
    // A write through the store queues behind anything an aborted call left in flight (a COMMIT
    // already sent still lands), so after it the books can be read at rest.
    assert!(matches!(
        db.store
            .place_order(new_order(pia.id, 1_000, None), 11)
            .await,
        Ok(Placed::New(_))
    ));
    // Every order that exists was paid for, and nothing else was.
    let orders = db
        .store
        .list_orders(&OrderFilter {
            customer_id: Some(pia.id),
            limit: 1000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    let balance = assert_ledger_consistent(&db.store, pia.id).await;
    let charges = db
        .store
        .ledger(pia.id, None, 1000)
        .await
        .expect("ledger")
        .iter()
        .filter(|e| e.kind == LedgerKind::Charge)
        .count();
    assert_eq!(charges, orders.len());
    let orders_len = i64::try_from(orders.len()).expect("small");
    assert_eq!(balance, Money::from_units(1_000_000 - 1_000 * orders_len));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_another_process_holding_the_write_lock() {
    let db = temp_store("foreign-writer").await;
    let quin = customer(&db.store, "quin", 0).await;
    let mut cli = sqlx::SqliteConnection::connect(&db.url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut cli)
        .await
        .expect("begin");
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, created_at) VALUES ('cli', 'x', 'y', 1)",
    )
    .execute(&mut cli)
    .await
    .expect("insert");
    let store = Arc::clone(&db.store);
    let deposit = tokio::spawn(async move {
        store
            .adjust_balance(
                quin.id,
                LedgerKind::Deposit,
                Money::from_units(5),
                "r",
                "admin",
                3,
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !deposit.is_finished(),
        "the write did not wait for the lock"
    );
    // Reads go on meanwhile.
    assert_eq!(
        db.store.customer(quin.id).await.expect("read").balance,
        Money::ZERO
    );
    sqlx::query("COMMIT")
        .execute(&mut cli)
        .await
        .expect("commit");
    let entry = deposit
        .await
        .expect("join")
        .expect("deposit after the lock");
    assert_eq!(entry.balance_after, Money::from_units(5));
    assert_eq!(db.store.audit_log(10).await.expect("audit").len(), 3);
}
