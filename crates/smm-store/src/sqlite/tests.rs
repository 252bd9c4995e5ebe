//! Focused tests of the SQLite store: money paths and the concurrency properties that the single
//! writer must guarantee. Each test gets its own database file in a temp dir of its own.

use std::collections::HashSet;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_forward_and_partial_refund() {
    let db = temp_store("partial").await;
    let store = &*db.store;
    let alice = customer(store, "alice", 100_000).await;

    let placed = store
        .place_order(new_order(alice.id, 27_819, None), 10)
        .await
        .expect("place");
    let Placed::New(order) = placed else {
        panic!("expected a new order");
    };
    assert_eq!(order.forward_state, ForwardState::Queued);
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.charge, Money::from_units(27_819));
    assert_eq!(
        assert_ledger_consistent(store, alice.id).await,
        Money::from_units(100_000 - 27_819)
    );
    let charge_row = &store.ledger(alice.id, None, 0).await.expect("ledger")[0];
    assert_eq!(charge_row.kind, LedgerKind::Charge);
    assert_eq!(charge_row.amount, Money::from_units(-27_819));
    assert_eq!(charge_row.order_id, Some(order.id));
    assert_eq!(charge_row.reason, format!("order {}", order.id));

    let claimed = store
        .claim_for_forwarding("w1", 10, 20)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].forward_state, ForwardState::Sending);
    assert_eq!(claimed[0].claimed_by.as_deref(), Some("w1"));
    assert_eq!(claimed[0].forward_attempts, 1);

    store
        .begin_attempt(order.id, "p1", "101", 21)
        .await
        .expect("begin");
    let attempts = store.attempts(order.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "pending");

    let sent = store
        .finish_attempt(
            order.id,
            ForwardOutcome::Sent {
                upstream_order_id: "U-1".to_owned(),
                upstream_cost: Some("0.21".parse().expect("decimal")),
                next_poll_at: 100,
            },
            22,
        )
        .await
        .expect("finish");
    assert_eq!(sent.forward_state, ForwardState::Sent);
    assert_eq!(sent.provider.as_deref(), Some("p1"));
    assert_eq!(sent.upstream_service.as_deref(), Some("101"));
    assert_eq!(sent.upstream_order_id.as_deref(), Some("U-1"));
    assert_eq!(sent.upstream_cost, Some("0.21".parse().expect("decimal")));
    assert_eq!(sent.next_poll_at, Some(100));
    assert_eq!(
        store.attempts(order.id).await.expect("attempts")[0].outcome,
        "sent"
    );

    // Not due yet, then due.
    assert!(
        store
            .claim_polls(None, 10, 200, 99)
            .await
            .expect("polls")
            .is_empty()
    );
    let polls = store
        .claim_polls(Some("p1"), 10, 200, 100)
        .await
        .expect("polls");
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].upstream_order_id, "U-1");
    // Leased: nobody else gets it until 200.
    assert!(
        store
            .claim_polls(None, 10, 300, 150)
            .await
            .expect("polls")
            .is_empty()
    );

    let in_progress = store
        .apply_status(
            "p1",
            "U-1",
            StatusUpdate {
                status: OrderStatus::InProgress,
                start_count: Some(10),
                remains: Some(900),
                extra: None,
                next_poll_at: 400,
            },
            300,
        )
        .await
        .expect("apply")
        .expect("known order");
    assert_eq!(in_progress.refund, None);
    assert!(!in_progress.terminal);

    let applied = store
        .apply_status("p1", "U-1", partial(157), 400)
        .await
        .expect("apply")
        .expect("known order");
    assert_eq!(applied.refund, Some(Money::from_units(4_367)));
    assert!(applied.terminal);
    let after = store.order(order.id).await.expect("order");
    assert_eq!(after.status, OrderStatus::Partial);
    assert_eq!(after.refunded, Money::from_units(4_367));
    assert_eq!(after.remains, Some(157));
    assert_eq!(after.start_count, Some(10));
    assert_eq!(after.next_poll_at, None);
    assert_eq!(
        assert_ledger_consistent(store, alice.id).await,
        Money::from_units(100_000 - 27_819 + 4_367)
    );
    let refund_row = &store.ledger(alice.id, None, 1).await.expect("ledger")[0];
    assert_eq!(refund_row.kind, LedgerKind::Refund);
    assert_eq!(refund_row.actor, "reconciler");
    assert!(
        refund_row.reason.contains("remains 157 of 1000"),
        "{}",
        refund_row.reason
    );

    // Terminal: never changed or paid again.
    let again = store
        .apply_status(
            "p1",
            "U-1",
            StatusUpdate {
                status: OrderStatus::Canceled,
                ..partial(0)
            },
            500,
        )
        .await
        .expect("apply")
        .expect("known order");
    assert_eq!(again.refund, None);
    assert!(again.terminal);
    assert_eq!(
        store.order(order.id).await.expect("order").status,
        OrderStatus::Partial
    );
    assert!(
        store
            .claim_polls(None, 10, 2000, 1000)
            .await
            .expect("polls")
            .is_empty()
    );
    assert_eq!(
        store.apply_status("p1", "nope", partial(1), 500).await,
        Ok(None)
    );
    db.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_never_overdraw() {
    let db = temp_store("placements").await;
    let bob = customer(&db.store, "bob", 100 * 1_000).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move { store.place_order(new_order(bob.id, 1_000, None), 10).await })
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("join") {
            Ok(Placed::New(_)) => placed += 1,
            Err(StoreError::InsufficientFunds) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((placed, refused), (100, 100));
    assert_eq!(
        assert_ledger_consistent(&db.store, bob.id).await,
        Money::ZERO
    );
    let ledger = db.store.ledger(bob.id, None, 1000).await.expect("ledger");
    assert_eq!(ledger.len(), 101);
    let orders = db
        .store
        .list_orders(&OrderFilter {
            customer_id: Some(bob.id),
            limit: 1000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    assert_eq!(orders.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_claim_each_order_once() {
    let db = temp_store("claims").await;
    let carol = customer(&db.store, "carol", 0).await;
    for _ in 0..1000 {
        db.store
            .place_order(new_order(carol.id, 0, None), 10)
            .await
            .expect("place");
    }
    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|worker| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_for_forwarding(worker, 7, 20)
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    assert!(batch.windows(2).all(|w| w[0].id < w[1].id));
                    mine.extend(batch.into_iter().map(|order| order.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let mine = worker.await.expect("join");
        per_worker.push(mine.len());
        for id in mine {
            assert!(seen.insert(id), "order {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(per_worker.iter().sum::<usize>(), 1000);
    let counts = db.store.count_by_forward_state().await.expect("counts");
    assert!(counts.contains(&(ForwardState::Sending, 1000)));
    assert!(counts.contains(&(ForwardState::Queued, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_partial_is_refunded_once() {
    let db = temp_store("refund-once").await;
    let dave = customer(&db.store, "dave", 100_000).await;
    let order = sent_order(&db.store, dave.id, 27_819, "U-7").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move { store.apply_status("p1", "U-7", partial(157), 300).await })
        })
        .collect();
    let mut refunds = Vec::new();
    for task in tasks {
        let applied = task.await.expect("join").expect("apply").expect("known");
        assert!(applied.terminal);
        refunds.extend(applied.refund);
    }
    // And once more, sequentially.
    let late = db
        .store
        .apply_status("p1", "U-7", partial(157), 400)
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(late.refund, None);
    assert_eq!(refunds, vec![Money::from_units(4_367)]);
    let ledger = db.store.ledger(dave.id, None, 100).await.expect("ledger");
    let refund_rows: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == LedgerKind::Refund && e.order_id == Some(order))
        .collect();
    assert_eq!(refund_rows.len(), 1);
    assert_eq!(
        assert_ledger_consistent(&db.store, dave.id).await,
        Money::from_units(100_000 - 27_819 + 4_367)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_order() {
    let db = temp_store("idempotency").await;
    let erin = customer(&db.store, "erin", 10_000).await;
    let first = db
        .store
        .place_order(new_order(erin.id, 1_000, Some("k1")), 10)
        .await
        .expect("first");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move {
                store
                    .place_order(new_order(erin.id, 1_000, Some("k1")), 11)
                    .await
            })
        })
        .collect();
    for task in tasks {
        match task.await.expect("join").expect("place") {
            Placed::Existing(order) => assert_eq!(order, *first.order()),
            Placed::New(_) => panic!("charged twice"),
        }
    }
    // Another customer may use the same key.
    let frank = customer(&db.store, "frank", 10_000).await;
    assert!(matches!(
        db.store
            .place_order(new_order(frank.id, 1_000, Some("k1")), 12)
            .await,
        Ok(Placed::New(_))
    ));
    assert_eq!(
        assert_ledger_consistent(&db.store, erin.id).await,
        Money::from_units(9_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_orders_change_nothing() {
    let db = temp_store("refused").await;
    let store = &*db.store;
    let gina = customer(store, "gina", 500).await;
    assert_eq!(
        store.place_order(new_order(gina.id, 501, None), 10).await,
        Err(StoreError::InsufficientFunds)
    );
    assert_eq!(
        store
            .place_order(new_order(CustomerId(999), 1, None), 10)
            .await,
        Err(StoreError::NotFound("customer"))
    );
    store
        .set_customer_status(gina.id, CustomerStatus::Suspended, "admin", 11)
        .await
        .expect("suspend");
    assert_eq!(
        store.place_order(new_order(gina.id, 1, None), 12).await,
        Err(StoreError::CustomerSuspended)
    );
    assert!(
        store
            .list_orders(&OrderFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        assert_ledger_consistent(store, gina.id).await,
        Money::from_units(500)
    );
    // A zero charge writes no ledger row.
    store
        .set_customer_status(gina.id, CustomerStatus::Active, "admin", 13)
        .await
        .expect("activate");
    assert!(
        store
            .place_order(new_order(gina.id, 0, None), 14)
            .await
            .is_ok()
    );
    assert_eq!(
        store.ledger(gina.id, None, 0).await.expect("ledger").len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_id_clash_keeps_the_order_as_ambiguous() {
    let db = temp_store("clash").await;
    let store = &*db.store;
    let hank = customer(store, "hank", 100_000).await;
    sent_order(store, hank.id, 1_000, "U-1").await;
    let second = store
        .place_order(new_order(hank.id, 1_000, None), 30)
        .await
        .expect("place")
        .order()
        .id;
    store.claim_for_forwarding("w", 1, 31).await.expect("claim");
    store
        .begin_attempt(second, "p1", "101", 32)
        .await
        .expect("begin");
    let result = store
        .finish_attempt(
            second,
            ForwardOutcome::Sent {
                upstream_order_id: "U-1".to_owned(),
                upstream_cost: None,
                next_poll_at: 100,
            },
            33,
        )
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let order = store.order(second).await.expect("order");
    assert_eq!(order.forward_state, ForwardState::Ambiguous);
    assert!(
        order
            .forward_error
            .as_deref()
            .unwrap_or_default()
            .contains("U-1")
    );
    assert_eq!(
        store.attempts(second).await.expect("attempts")[0].outcome,
        "ambiguous"
    );

    // Attaching it to the same id is refused too; to a free one works.
    assert!(matches!(
        store
            .attach_upstream_order(second, "p1", "U-1", "admin", 40)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let attached = store
        .attach_upstream_order(second, "p1", "U-2", "admin", 41)
        .await
        .expect("attach");
    assert_eq!(attached.forward_state, ForwardState::Sent);
    assert_eq!(attached.next_poll_at, Some(41));
    assert_eq!(
        store.audit_log(1).await.expect("audit")[0].target,
        format!("order:{second}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_requeue_reject_and_recover() {
    let db = temp_store("failures").await;
    let store = &*db.store;
    let ivy = customer(store, "ivy", 100_000).await;
    let a = store
        .place_order(new_order(ivy.id, 2_000, None), 10)
        .await
        .expect("a")
        .order()
        .id;
    let b = store
        .place_order(new_order(ivy.id, 3_000, None), 10)
        .await
        .expect("b")
        .order()
        .id;
    let c = store
        .place_order(new_order(ivy.id, 4_000, None), 10)
        .await
        .expect("c")
        .order()
        .id;
    assert_eq!(
        store
            .claim_for_forwarding("w1", 3, 20)
            .await
            .expect("claim")
            .len(),
        3
    );

    // a: a route fails, then every route failed: back to the queue.
    store.begin_attempt(a, "p1", "1", 21).await.expect("begin");
    assert_eq!(
        store.requeue(a, 1_000, "x", 21).await,
        Err(StoreError::InvalidState(format!(
            "order {a} has an attempt in flight; finish it first"
        )))
    );
    let failed = store
        .finish_attempt(
            a,
            ForwardOutcome::Failed {
                not_sent: true,
                detail: "down".into(),
            },
            22,
        )
        .await
        .expect("finish");
    assert_eq!(failed.forward_state, ForwardState::Sending);
    assert_eq!(failed.forward_error.as_deref(), Some("down"));
    store
        .requeue(a, 1_000, "all routes down", 23)
        .await
        .expect("requeue");
    assert!(
        store
            .claim_for_forwarding("w1", 10, 999)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        store
            .claim_for_forwarding("w1", 10, 1_000)
            .await
            .expect("claim")[0]
            .id,
        a
    );

    // b: rejected everywhere, refunded once.
    assert_eq!(
        store.reject_order(b, "no such service", 30).await,
        Ok(Money::from_units(3_000))
    );
    let rejected = store.order(b).await.expect("order");
    assert_eq!(rejected.status, OrderStatus::Canceled);
    assert_eq!(rejected.forward_state, ForwardState::Rejected);
    assert_eq!(rejected.refunded, rejected.charge);
    assert!(matches!(
        store.reject_order(b, "again", 31).await,
        Err(StoreError::InvalidState(_))
    ));

    // c: the worker died mid-call.
    store.begin_attempt(c, "p1", "1", 24).await.expect("begin");
    assert_eq!(store.recover_sending(20, 40).await, Ok(vec![]));
    let recovered = store.recover_sending(1_001, 40).await.expect("recover");
    assert_eq!(recovered, vec![a, c]);
    let ambiguous = store.order(c).await.expect("order");
    assert_eq!(ambiguous.forward_state, ForwardState::Ambiguous);
    assert_eq!(
        ambiguous.forward_error.as_deref(),
        Some("found in sending after claim by w1 expired")
    );
    assert_eq!(
        store.attempts(c).await.expect("attempts")[0].outcome,
        "ambiguous"
    );
    assert_eq!(
        store
            .cancel_ambiguous(c, "not found upstream", "admin", 50)
            .await,
        Ok(Money::from_units(4_000))
    );
    assert_eq!(
        store.audit_log(1).await.expect("audit")[0].action,
        "order.cancel_ambiguous"
    );
    assert!(matches!(
        store.cancel_ambiguous(c, "twice", "admin", 51).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(
        assert_ledger_consistent(store, ivy.id).await,
        Money::from_units(100_000 - 2_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_and_refills() {
    let db = temp_store("cancels").await;
    let store = &*db.store;
    let jo = customer(store, "jo", 100_000).await;
    let other = customer(store, "other", 0).await;
    let queued = store
        .place_order(new_order(jo.id, 5_000, None), 10)
        .await
        .expect("q")
        .order()
        .id;
    assert_eq!(
        store.request_cancel(other.id, queued, 11).await,
        Err(StoreError::NotFound("order"))
    );
    assert_eq!(
        store.request_cancel(jo.id, queued, 11).await,
        Ok(CancelOutcome::CanceledLocally {
            refund: Money::from_units(5_000)
        })
    );
    assert!(matches!(
        store.request_cancel(jo.id, queued, 12).await,
        Err(StoreError::InvalidState(_))
    ));

    let sent = sent_order(store, jo.id, 1_000, "U-9").await;
    let Ok(CancelOutcome::Requested(first)) = store.request_cancel(jo.id, sent, 30).await else {
        panic!("expected a cancel request");
    };
    let Ok(CancelOutcome::Requested(second)) = store.request_cancel(jo.id, sent, 31).await else {
        panic!("expected a cancel request");
    };
    assert_eq!(first, second);
    assert_eq!(
        store
            .cancels_in_state(ForwardState::Queued, 0)
            .await
            .expect("c"),
        vec![first.clone()]
    );
    let updated = store
        .update_cancel(first.id, ForwardState::Sent, None, 32)
        .await
        .expect("update");
    assert_eq!(updated.forward_state, ForwardState::Sent);

    assert_eq!(
        store.create_refill(other.id, sent, 33).await,
        Err(StoreError::NotFound("order"))
    );
    let refill = store.create_refill(jo.id, sent, 33).await.expect("refill");
    assert_eq!(refill.provider.as_deref(), Some("p1"));
    assert_eq!(refill.forward_state, ForwardState::Queued);
    let updated = store
        .update_refill(
            refill.id,
            RefillUpdate {
                upstream_refill_id: Some("R-1".into()),
                status: Some(smm_wire::RefillStatus::Unknown("weird".into())),
                forward_state: Some(ForwardState::Sent),
                ..RefillUpdate::default()
            },
            34,
        )
        .await
        .expect("update refill");
    assert_eq!(
        updated.status,
        smm_wire::RefillStatus::Unknown("weird".into())
    );
    assert_eq!(updated.provider.as_deref(), Some("p1"));
    assert_eq!(
        store
            .customer_refills(jo.id, &[refill.id, RefillId(999)])
            .await
            .expect("r"),
        vec![updated.clone()]
    );
    assert!(
        store
            .customer_refills(other.id, &[refill.id])
            .await
            .expect("r")
            .is_empty()
    );
    assert_eq!(
        store
            .refills_in_state(ForwardState::Sent, 10)
            .await
            .expect("r"),
        vec![updated]
    );
    assert_eq!(
        assert_ledger_consistent(store, jo.id).await,
        Money::from_units(100_000 - 1_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_balances_and_audit() {
    let db = temp_store("customers").await;
    let store = &*db.store;
    let kim = customer(store, "kim", 0).await;
    assert!(matches!(
        store
            .create_customer(
                NewCustomer {
                    name: "dup".into(),
                    currency: "USD".into(),
                    key_hash: hash_api_key("key-kim"),
                    key_prefix: "x".into(),
                },
                "admin",
                1,
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    for (kind, amount) in [
        (LedgerKind::Charge, 5),
        (LedgerKind::Refund, 5),
        (LedgerKind::Deposit, -5),
        (LedgerKind::Adjustment, 0),
        (LedgerKind::Deposit, Money::MAX.units() + 1),
    ] {
        assert!(matches!(
            store
                .adjust_balance(kim.id, kind, Money::from_units(amount), "r", "admin", 3)
                .await,
            Err(StoreError::Invalid(_))
        ));
    }
    assert_eq!(
        store
            .adjust_balance(
                kim.id,
                LedgerKind::Adjustment,
                Money::from_units(-1),
                "r",
                "admin",
                3
            )
            .await,
        Err(StoreError::InsufficientFunds)
    );
    let entry = store
        .adjust_balance(
            kim.id,
            LedgerKind::Deposit,
            Money::from_units(700),
            "wire",
            "admin",
            4,
        )
        .await
        .expect("deposit");
    assert_eq!(entry.balance_after, Money::from_units(700));
    let entry = store
        .adjust_balance(
            kim.id,
            LedgerKind::Adjustment,
            Money::from_units(-200),
            "fix",
            "admin",
            5,
        )
        .await
        .expect("debit");
    assert_eq!(entry.balance_after, Money::from_units(500));
    assert_eq!(
        store.audit_log(1).await.expect("audit")[0].action,
        "customer.debit"
    );
    assert_eq!(
        assert_ledger_consistent(store, kim.id).await,
        Money::from_units(500)
    );
    let page = store.ledger(kim.id, None, 1).await.expect("ledger");
    let older = store
        .ledger(kim.id, Some(page[0].id), 10)
        .await
        .expect("ledger");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].amount, Money::from_units(700));

    let new_hash = hash_api_key("new-key");
    let rotated = store
        .rotate_key(kim.id, &new_hash, "nk", "admin", 6)
        .await
        .expect("rotate");
    assert_eq!(rotated.key_prefix, "nk");
    assert_eq!(
        store.customer_by_key_hash(&hash_api_key("key-kim")).await,
        Ok(None)
    );
    assert_eq!(
        store.customer_by_key_hash(&new_hash).await,
        Ok(Some(rotated))
    );
    let audit = &store.audit_log(1).await.expect("audit")[0];
    assert_eq!(audit.action, "customer.rotate_key");
    for text in [&audit.before, &audit.after] {
        assert!(!text.as_deref().unwrap_or_default().contains(&new_hash));
    }
    let lee = customer(store, "lee", 0).await;
    assert!(matches!(
        store.rotate_key(lee.id, &new_hash, "nk", "admin", 7).await,
        Err(StoreError::Conflict(_))
    ));

    let discounted = store
        .set_discount(kim.id, Some("5.5".parse().expect("d")), "admin", 8)
        .await
        .expect("discount");
    assert_eq!(discounted.discount, Some("5.5".parse().expect("d")));
    assert!(matches!(
        store
            .set_discount(kim.id, Some(100.into()), "admin", 8)
            .await,
        Err(StoreError::Invalid(_))
    ));
    store
        .set_customer_rate(
            kim.id,
            ServiceId(3),
            Some("1.25".parse().expect("d")),
            "admin",
            9,
        )
        .await
        .expect("rate");
    assert_eq!(
        store.customer_rates(kim.id).await,
        Ok(vec![(ServiceId(3), "1.25".parse().expect("d"))])
    );
    store
        .set_customer_rate(kim.id, ServiceId(3), None, "admin", 10)
        .await
        .expect("rate");
    assert_eq!(store.customer_rates(kim.id).await, Ok(vec![]));
    assert_eq!(
        store.audit_log(1).await.expect("audit")[0].action,
        "customer.rate"
    );

    let s1 = store.service_id("p1", "101").await.expect("sid");
    let s2 = store.service_id("p2", "101").await.expect("sid");
    assert_ne!(s1, s2);
    assert_eq!(store.service_id("p1", "101").await, Ok(s1));
    assert_eq!(store.service_ids().await.expect("sids").len(), 2);
    store.ping().await.expect("ping");
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

#[tokio::test]
async fn unknown_statuses_keep_their_spelling() {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("connect");
    let ned = customer(&store, "ned", 10_000).await;
    let order = sent_order(&store, ned.id, 1_000, "U-1").await;
    store
        .apply_status(
            "p1",
            "U-1",
            StatusUpdate {
                status: OrderStatus::Unknown("Stuck".into()),
                ..partial(5)
            },
            50,
        )
        .await
        .expect("apply");
    let stored = store.order(order).await.expect("order");
    assert_eq!(stored.status, OrderStatus::Unknown("Stuck".into()));
    assert_eq!(stored.next_poll_at, Some(500));
    let polls = store.claim_polls(None, 10, 600, 500).await.expect("polls");
    assert_eq!(polls[0].status, OrderStatus::Unknown("Stuck".into()));
    store.defer_polls(&[order], 900).await.expect("defer");
    assert_eq!(
        store.order(order).await.expect("order").next_poll_at,
        Some(900)
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
