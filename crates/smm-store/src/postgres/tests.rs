//! Focused tests of the PostgreSQL store's concurrency properties and money paths. Each test
//! creates its own database on the server named by `TEST_DATABASE_URL` (an admin URL) and drops
//! it afterwards (`smm-test-db`); without the variable they print a line and pass — except under
//! `CI=true`, where they fail.

use std::collections::HashSet;
use std::sync::Arc;

use rust_decimal::Decimal;
use smm_wire::{Money, OrderStatus};

use super::PostgresStore;
use crate::*;

/// A throwaway database; dropped (with its connections) when the guard goes, even on panic.
struct TestDb {
    store: Arc<PostgresStore>,
    _db: smm_test_db::PgDb,
}

impl TestDb {
    async fn create(test: &str) -> Option<TestDb> {
        let db = smm_test_db::PgDb::create(test).await?;
        let store = PostgresStore::connect(db.url())
            .await
            .expect("connect to the test database");
        Some(TestDb {
            store: Arc::new(store),
            _db: db,
        })
    }
}

const NOW: Timestamp = 1_700_000_000_000;

async fn customer_with(store: &PostgresStore, key: &str, balance: Money) -> Customer {
    let customer = store
        .create_customer(
            NewCustomer {
                name: format!("customer {key}"),
                currency: "USD".into(),
                key_hash: hash_api_key(key),
                key_prefix: key.chars().take(4).collect(),
            },
            "admin",
            NOW,
        )
        .await
        .expect("create customer");
    if balance.is_positive() {
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Deposit,
                balance,
                "top-up",
                "admin",
                NOW,
            )
            .await
            .expect("deposit");
    }
    customer
}

fn new_order(customer: CustomerId, charge: Money, units: u64, key: Option<&str>) -> NewOrder {
    NewOrder {
        customer_id: customer,
        service_id: ServiceId(1),
        service_type: "Default".into(),
        params: r#"{"service":1}"#.into(),
        link: Some("https://example.com/p/1".into()),
        quantity: Some(units),
        units,
        charge,
        idempotency_key: key.map(str::to_owned),
    }
}

/// Places, claims and sends one order; returns it as `sent` at `provider` under `upstream`.
async fn sent_order(
    store: &PostgresStore,
    customer: CustomerId,
    charge: Money,
    units: u64,
    upstream: &str,
) -> Order {
    let placed = store
        .place_order(new_order(customer, charge, units, None), NOW)
        .await
        .expect("place");
    let id = placed.order().id;
    // Claim until this order is ours (other queued orders may be ahead of it).
    loop {
        let claimed = store
            .claim_for_forwarding("w1", 10, NOW)
            .await
            .expect("claim");
        assert!(!claimed.is_empty(), "order {id} was never claimed");
        if claimed.iter().any(|o| o.id == id) {
            break;
        }
    }
    store
        .begin_attempt(id, "prov", "svc-7", NOW + 1)
        .await
        .expect("begin");
    store
        .finish_attempt(
            id,
            ForwardOutcome::Sent {
                upstream_order_id: upstream.into(),
                upstream_cost: Some(Decimal::new(1234, 4)),
                next_poll_at: NOW + 60_000,
            },
            NOW + 2,
        )
        .await
        .expect("finish")
}

async fn assert_books_balance(store: &PostgresStore, customer: CustomerId) -> Money {
    let balance = store.customer(customer).await.expect("customer").balance;
    assert_eq!(store.ledger_sum(customer).await.expect("sum"), balance);
    balance
}

fn partial(remains: i64) -> StatusUpdate {
    StatusUpdate {
        status: OrderStatus::Partial,
        start_count: Some(10),
        remains: Some(remains),
        extra: None,
        next_poll_at: NOW + 120_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_placements_never_overdraw() {
    let Some(db) = TestDb::create("concurrent_placements_never_overdraw").await else {
        return;
    };
    let store = db.store.clone();
    let charge = Money::from_units(27_819);
    let funds = Money::from_units(27_819 * 100);
    let customer = customer_with(&store, "key-overdraw", funds).await;

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .place_order(new_order(customer.id, charge, 1000, None), NOW)
                    .await
            })
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(Placed::New(_)) => placed += 1,
            Err(StoreError::InsufficientFunds) => refused += 1,
            other => panic!("unexpected placement result: {other:?}"),
        }
    }
    assert_eq!((placed, refused), (100, 100));
    assert_eq!(assert_books_balance(&store, customer.id).await, Money::ZERO);
    let ledger = store.ledger(customer.id, None, 500).await.expect("ledger");
    assert_eq!(ledger.len(), 101);
    assert!(ledger.iter().all(|e| !e.balance_after.is_negative()));
    let counts = store.count_by_forward_state().await.expect("counts");
    assert!(counts.contains(&(ForwardState::Queued, 100)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_claim_each_order_exactly_once() {
    let Some(db) = TestDb::create("two_workers_claim_each_order_exactly_once").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-claims", Money::from_units(1_000_000)).await;
    // Place 1,000 orders, 8 at a time.
    let placers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..125 {
                    store
                        .place_order(new_order(customer.id, Money::from_units(7), 1, None), NOW)
                        .await
                        .expect("place");
                }
            })
        })
        .collect();
    for placer in placers {
        placer.await.expect("placer");
    }

    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_for_forwarding(worker, 25, NOW + 5)
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    assert!(batch.len() <= 25, "claimed {} past the limit", batch.len());
                    for order in batch {
                        assert_eq!(order.forward_state, ForwardState::Sending);
                        assert_eq!(order.claimed_by.as_deref(), Some(worker));
                        assert_eq!(order.forward_attempts, 1);
                        mine.push(order.id);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), 1000, "claimed {} orders", all.len());
    assert_eq!(unique.len(), 1000, "an order was claimed twice");
    assert!(
        store
            .claim_for_forwarding("w3", 10, NOW + 6)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_partial_pays_once_even_concurrently() {
    let Some(db) = TestDb::create("the_same_partial_pays_once_even_concurrently").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-partial", Money::from_units(100_000)).await;
    let charge = Money::from_units(27_819);
    let order = sent_order(&store, customer.id, charge, 1000, "U-1").await;

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .apply_status("prov", "U-1", partial(157), NOW + 10)
                    .await
            })
        })
        .collect();
    let mut refunds = Vec::new();
    for task in tasks {
        let applied = task.await.expect("task").expect("apply").expect("known");
        assert_eq!(applied.order_id, order.id);
        assert!(applied.terminal);
        refunds.extend(applied.refund);
    }
    assert_eq!(refunds, vec![Money::from_units(4_367)]);
    // Once more, sequentially: terminal, nothing paid.
    let again = store
        .apply_status("prov", "U-1", partial(157), NOW + 11)
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(again.refund, None);
    assert!(again.terminal);

    let ledger = store.ledger(customer.id, None, 100).await.expect("ledger");
    let refund_rows: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == LedgerKind::Refund)
        .collect();
    assert_eq!(refund_rows.len(), 1);
    assert_eq!(refund_rows[0].amount, Money::from_units(4_367));
    assert_eq!(
        assert_books_balance(&store, customer.id).await,
        Money::from_units(100_000 - 27_819 + 4_367)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_from_placement_to_a_partial_refund() {
    let Some(db) = TestDb::create("an_order_goes_from_placement_to_a_partial_refund").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-path", Money::from_units(50_000)).await;
    let charge = Money::from_units(27_819);

    let placed = store
        .place_order(new_order(customer.id, charge, 1000, Some("idem-1")), NOW)
        .await
        .expect("place");
    let Placed::New(order) = placed else {
        panic!("expected a new order: {placed:?}");
    };
    assert_eq!(order.forward_state, ForwardState::Queued);
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.charge, charge);
    assert_eq!(
        store.customer(customer.id).await.expect("c").balance,
        Money::from_units(50_000 - 27_819)
    );
    let ledger = store.ledger(customer.id, None, 10).await.expect("ledger");
    assert_eq!(ledger[0].kind, LedgerKind::Charge);
    assert_eq!(ledger[0].amount, Money::from_units(-27_819));
    assert_eq!(ledger[0].order_id, Some(order.id));
    assert_eq!(ledger[0].reason, format!("order {}", order.id));

    // The same key again: the first order, nothing charged.
    let again = store
        .place_order(
            new_order(customer.id, charge, 1000, Some("idem-1")),
            NOW + 1,
        )
        .await
        .expect("again");
    assert_eq!(again, Placed::Existing(order.clone()));
    assert_books_balance(&store, customer.id).await;

    let claimed = store
        .claim_for_forwarding("w1", 10, NOW + 5)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].claimed_at, Some(NOW + 5));
    store
        .begin_attempt(order.id, "prov", "svc-7", NOW + 6)
        .await
        .expect("begin");
    let attempts = store.attempts(order.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "pending");

    let sent = store
        .finish_attempt(
            order.id,
            ForwardOutcome::Sent {
                upstream_order_id: "U-77".into(),
                upstream_cost: Some(Decimal::new(2_5000, 5)),
                next_poll_at: NOW + 1_000,
            },
            NOW + 7,
        )
        .await
        .expect("finish");
    assert_eq!(sent.forward_state, ForwardState::Sent);
    assert_eq!(sent.provider.as_deref(), Some("prov"));
    assert_eq!(sent.upstream_service.as_deref(), Some("svc-7"));
    assert_eq!(sent.upstream_order_id.as_deref(), Some("U-77"));
    assert_eq!(sent.upstream_cost, Some(Decimal::new(2_5000, 5)));
    assert_eq!(sent.forwarded_at, Some(NOW + 7));
    assert_eq!(sent.next_poll_at, Some(NOW + 1_000));
    let attempts = store.attempts(order.id).await.expect("attempts");
    assert_eq!(attempts[0].outcome, "sent");
    assert_eq!(attempts[0].finished_at, Some(NOW + 7));

    // Not due yet; then due, leased, and not claimable again during the lease.
    assert!(
        store
            .claim_polls(None, 10, NOW + 60_000, NOW + 999)
            .await
            .expect("polls")
            .is_empty()
    );
    let polls = store
        .claim_polls(Some("prov"), 10, NOW + 60_000, NOW + 1_000)
        .await
        .expect("polls");
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].upstream_order_id, "U-77");
    assert!(
        store
            .claim_polls(None, 10, NOW + 60_000, NOW + 2_000)
            .await
            .expect("polls")
            .is_empty()
    );
    assert!(
        store
            .claim_polls(Some("other"), 10, NOW + 60_000, NOW + 70_000)
            .await
            .expect("polls")
            .is_empty()
    );

    let progress = store
        .apply_status(
            "prov",
            "U-77",
            StatusUpdate {
                status: OrderStatus::Unknown("Queued upstream".into()),
                start_count: Some(10),
                remains: Some(900),
                extra: None,
                next_poll_at: NOW + 3_000,
            },
            NOW + 2_500,
        )
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(progress.refund, None);
    assert!(!progress.terminal);
    let stored = store.order(order.id).await.expect("order");
    assert_eq!(
        stored.status,
        OrderStatus::Unknown("Queued upstream".into())
    );
    assert_eq!(stored.next_poll_at, Some(NOW + 3_000));

    let done = store
        .apply_status(
            "prov",
            "U-77",
            StatusUpdate {
                start_count: None,
                ..partial(157)
            },
            NOW + 4_000,
        )
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(done.refund, Some(Money::from_units(4_367)));
    assert!(done.terminal);
    let stored = store.order(order.id).await.expect("order");
    assert_eq!(stored.status, OrderStatus::Partial);
    assert_eq!(
        stored.start_count,
        Some(10),
        "kept when the update has none"
    );
    assert_eq!(stored.remains, Some(157));
    assert_eq!(stored.refunded, Money::from_units(4_367));
    assert_eq!(stored.next_poll_at, None);
    assert_eq!(
        assert_books_balance(&store, customer.id).await,
        Money::from_units(50_000 - 27_819 + 4_367)
    );
    let refund = &store.ledger(customer.id, None, 1).await.expect("ledger")[0];
    assert_eq!(refund.kind, LedgerKind::Refund);
    assert_eq!(refund.actor, "reconciler");
    assert_eq!(refund.reason, "refund: Partial, remains 157 of 1000");
    assert_eq!(
        store
            .apply_status("prov", "nope", partial(1), NOW)
            .await
            .expect("apply"),
        None
    );
    // Terminal orders are not polled or deferred back into the queue.
    store
        .defer_polls(&[order.id], NOW + 5_000)
        .await
        .expect("defer");
    assert_eq!(
        store.order(order.id).await.expect("order").next_poll_at,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_keys_place_one_order() {
    let Some(db) = TestDb::create("concurrent_duplicate_keys_place_one_order").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-idem", Money::from_units(1_000)).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .place_order(
                        new_order(customer.id, Money::from_units(10), 1, Some("k")),
                        NOW,
                    )
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut new = 0;
    for task in tasks {
        let placed = task.await.expect("task").expect("place");
        if matches!(placed, Placed::New(_)) {
            new += 1;
        }
        ids.insert(placed.order().id);
    }
    assert_eq!((new, ids.len()), (1, 1));
    assert_eq!(
        assert_books_balance(&store, customer.id).await,
        Money::from_units(990)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_refusals_change_nothing() {
    let Some(db) = TestDb::create("placement_refusals_change_nothing").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-refuse", Money::from_units(100)).await;
    let order = |charge| new_order(customer.id, Money::from_units(charge), 1, None);
    assert_eq!(
        store.place_order(order(101), NOW).await,
        Err(StoreError::InsufficientFunds)
    );
    assert!(matches!(
        store.place_order(order(-1), NOW).await,
        Err(StoreError::Invalid(_))
    ));
    let mut missing = order(1);
    missing.customer_id = CustomerId(999_999);
    assert_eq!(
        store.place_order(missing, NOW).await,
        Err(StoreError::NotFound("customer"))
    );
    // A free order writes no ledger row.
    let free = store.place_order(order(0), NOW).await.expect("free");
    assert!(matches!(free, Placed::New(_)));
    store
        .set_customer_status(customer.id, CustomerStatus::Suspended, "admin", NOW)
        .await
        .expect("suspend");
    assert_eq!(
        store.place_order(order(1), NOW).await,
        Err(StoreError::CustomerSuspended)
    );
    assert_eq!(
        assert_books_balance(&store, customer.id).await,
        Money::from_units(100)
    );
    assert_eq!(
        store.ledger(customer.id, None, 10).await.expect("l").len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_failures_end_in_one_refund_or_ambiguity() {
    let Some(db) = TestDb::create("forwarding_failures_end_in_one_refund_or_ambiguity").await
    else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-fail", Money::from_units(10_000)).await;
    let charge = Money::from_units(1_000);

    // Failed → still sending; requeue → queued, not before the given time.
    let a = store
        .place_order(new_order(customer.id, charge, 10, None), NOW)
        .await
        .expect("place")
        .order()
        .id;
    store
        .claim_for_forwarding("w1", 1, NOW)
        .await
        .expect("claim");
    store.begin_attempt(a, "p1", "s", NOW).await.expect("begin");
    let failed = store
        .finish_attempt(
            a,
            ForwardOutcome::Failed {
                not_sent: true,
                detail: "connection refused".into(),
            },
            NOW,
        )
        .await
        .expect("finish");
    assert_eq!(failed.forward_state, ForwardState::Sending);
    assert_eq!(failed.forward_error.as_deref(), Some("connection refused"));
    assert!(matches!(
        store
            .finish_attempt(a, ForwardOutcome::Ambiguous { detail: "x".into() }, NOW)
            .await,
        Err(StoreError::InvalidState(_))
    ));
    store
        .requeue(a, NOW + 10_000, "all routes down", NOW)
        .await
        .expect("requeue");
    assert!(
        store
            .claim_for_forwarding("w1", 5, NOW + 9_999)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim_for_forwarding("w1", 5, NOW + 10_000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].forward_attempts, 2);

    // Rejected everywhere: full refund, once.
    assert_eq!(store.reject_order(a, "bad link", NOW).await, Ok(charge));
    assert!(matches!(
        store.reject_order(a, "bad link", NOW).await,
        Err(StoreError::InvalidState(_))
    ));
    let rejected = store.order(a).await.expect("order");
    assert_eq!(rejected.status, OrderStatus::Canceled);
    assert_eq!(rejected.forward_state, ForwardState::Rejected);
    assert_eq!(rejected.refunded, charge);

    // An upstream id clash: Conflict, the order is kept as ambiguous.
    let first = sent_order(&store, customer.id, charge, 10, "DUP").await;
    assert_eq!(first.forward_state, ForwardState::Sent);
    let b = store
        .place_order(new_order(customer.id, charge, 10, None), NOW)
        .await
        .expect("place")
        .order()
        .id;
    store
        .claim_for_forwarding("w2", 5, NOW)
        .await
        .expect("claim");
    store
        .begin_attempt(b, "prov", "s", NOW)
        .await
        .expect("begin");
    let clash = store
        .finish_attempt(
            b,
            ForwardOutcome::Sent {
                upstream_order_id: "DUP".into(),
                upstream_cost: None,
                next_poll_at: NOW,
            },
            NOW,
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    let b_order = store.order(b).await.expect("order");
    assert_eq!(b_order.forward_state, ForwardState::Ambiguous);
    assert!(
        b_order
            .forward_error
            .as_deref()
            .unwrap_or("")
            .contains("DUP")
    );
    assert_eq!(store.attempts(b).await.expect("a")[0].outcome, "ambiguous");

    // Attaching the same upstream id is a conflict too; another one works.
    assert!(matches!(
        store
            .attach_upstream_order(b, "prov", "DUP", "admin", NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let attached = store
        .attach_upstream_order(b, "prov", "REAL-1", "admin", NOW + 1)
        .await
        .expect("attach");
    assert_eq!(attached.forward_state, ForwardState::Sent);
    assert_eq!(attached.next_poll_at, Some(NOW + 1));

    // A worker that died mid-send: recovered as ambiguous, then canceled by an admin.
    let c = store
        .place_order(new_order(customer.id, charge, 10, None), NOW)
        .await
        .expect("place")
        .order()
        .id;
    store
        .claim_for_forwarding("dead", 5, NOW)
        .await
        .expect("claim");
    store
        .begin_attempt(c, "prov", "s", NOW)
        .await
        .expect("begin");
    assert!(
        store
            .recover_sending(NOW, NOW + 1)
            .await
            .expect("recover")
            .is_empty()
    );
    assert_eq!(store.recover_sending(NOW + 1, NOW + 2).await, Ok(vec![c]));
    let c_order = store.order(c).await.expect("order");
    assert_eq!(c_order.forward_state, ForwardState::Ambiguous);
    assert_eq!(
        c_order.forward_error.as_deref(),
        Some("found in sending after claim by dead expired")
    );
    assert_eq!(store.attempts(c).await.expect("a")[0].outcome, "ambiguous");
    assert_eq!(
        store
            .cancel_ambiguous(c, "not found upstream", "admin", NOW)
            .await,
        Ok(charge)
    );
    assert!(matches!(
        store.cancel_ambiguous(c, "again", "admin", NOW).await,
        Err(StoreError::InvalidState(_))
    ));
    let audit = store.audit_log(10).await.expect("audit");
    assert_eq!(audit[0].action, "order.cancel_ambiguous");
    assert_eq!(audit[0].target, format!("order:{c}"));
    assert_books_balance(&store, customer.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_refills_and_admin_actions() {
    let Some(db) = TestDb::create("cancels_refills_and_admin_actions").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-admin-1", Money::from_units(10_000)).await;
    let other = customer_with(&store, "key-admin-2", Money::ZERO).await;
    let charge = Money::from_units(700);

    // Queued → canceled locally with a full refund.
    let queued = store
        .place_order(new_order(customer.id, charge, 10, None), NOW)
        .await
        .expect("place")
        .order()
        .id;
    assert_eq!(
        store.request_cancel(other.id, queued, NOW).await,
        Err(StoreError::NotFound("order"))
    );
    assert_eq!(
        store.request_cancel(customer.id, queued, NOW).await,
        Ok(CancelOutcome::CanceledLocally { refund: charge })
    );
    assert!(matches!(
        store.request_cancel(customer.id, queued, NOW).await,
        Err(StoreError::InvalidState(_))
    ));

    // Sent → one cancel request, however often asked.
    let sent = sent_order(&store, customer.id, charge, 10, "S-1").await;
    let Ok(CancelOutcome::Requested(request)) =
        store.request_cancel(customer.id, sent.id, NOW).await
    else {
        panic!("expected a cancel request");
    };
    let Ok(CancelOutcome::Requested(again)) =
        store.request_cancel(customer.id, sent.id, NOW + 1).await
    else {
        panic!("expected the same cancel request");
    };
    assert_eq!(request, again);
    assert_eq!(
        store.cancels_in_state(ForwardState::Queued, 10).await,
        Ok(vec![request.clone()])
    );
    let updated = store
        .update_cancel(request.id, ForwardState::Sent, None, NOW + 2)
        .await
        .expect("update");
    assert_eq!(updated.forward_state, ForwardState::Sent);

    // Refills.
    assert_eq!(
        store.create_refill(other.id, sent.id, NOW).await,
        Err(StoreError::NotFound("order"))
    );
    let refill = store
        .create_refill(customer.id, sent.id, NOW)
        .await
        .expect("refill");
    assert_eq!(refill.provider.as_deref(), Some("prov"));
    assert_eq!(refill.forward_state, ForwardState::Queued);
    let refill = store
        .update_refill(
            refill.id,
            RefillUpdate {
                upstream_refill_id: Some("R-1".into()),
                status: Some(smm_wire::RefillStatus::Unknown("odd".into())),
                forward_state: Some(ForwardState::Sent),
                ..RefillUpdate::default()
            },
            NOW + 3,
        )
        .await
        .expect("update refill");
    assert_eq!(refill.status, smm_wire::RefillStatus::Unknown("odd".into()));
    assert_eq!(refill.provider.as_deref(), Some("prov"));
    assert_eq!(
        store.customer_refills(customer.id, &[refill.id]).await,
        Ok(vec![refill.clone()])
    );
    assert_eq!(
        store.customer_refills(other.id, &[refill.id]).await,
        Ok(vec![])
    );
    assert_eq!(
        store.refills_in_state(ForwardState::Sent, 10).await,
        Ok(vec![refill])
    );

    // Admin actions, each audited; keys never appear in the audit.
    assert!(matches!(
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Deposit,
                Money::from_units(-5),
                "x",
                "a",
                NOW
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Refund,
                Money::from_units(5),
                "x",
                "a",
                NOW
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Adjustment,
                Money::ZERO,
                "x",
                "a",
                NOW
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .adjust_balance(
                other.id,
                LedgerKind::Adjustment,
                Money::from_units(-1),
                "x",
                "a",
                NOW
            )
            .await,
        Err(StoreError::InsufficientFunds)
    );
    let debit = store
        .adjust_balance(
            customer.id,
            LedgerKind::Adjustment,
            Money::from_units(-300),
            "correction",
            "admin",
            NOW,
        )
        .await
        .expect("debit");
    assert_eq!(debit.amount, Money::from_units(-300));
    assert_books_balance(&store, customer.id).await;

    store
        .rotate_key(other.id, &hash_api_key("new-secret"), "new-", "admin", NOW)
        .await
        .expect("rotate");
    assert_eq!(
        store
            .rotate_key(
                customer.id,
                &hash_api_key("new-secret"),
                "new-",
                "admin",
                NOW
            )
            .await
            .map(|c| c.id),
        Err(StoreError::Conflict("customers_key_hash_key".into()))
    );
    assert_eq!(
        store
            .customer_by_key_hash(&hash_api_key("new-secret"))
            .await
            .expect("lookup")
            .map(|c| c.id),
        Some(other.id)
    );
    assert_eq!(
        store
            .customer_by_key_hash(&hash_api_key("key-admin-2"))
            .await,
        Ok(None)
    );
    let discounted = store
        .set_discount(customer.id, Some(Decimal::new(75, 1)), "admin", NOW)
        .await
        .expect("discount");
    assert_eq!(discounted.discount, Some(Decimal::new(75, 1)));
    assert!(matches!(
        store
            .set_discount(customer.id, Some(Decimal::ONE_HUNDRED), "admin", NOW)
            .await,
        Err(StoreError::Invalid(_))
    ));
    store
        .set_customer_rate(
            customer.id,
            ServiceId(3),
            Some(Decimal::new(125, 2)),
            "admin",
            NOW,
        )
        .await
        .expect("rate");
    assert_eq!(
        store.customer_rates(customer.id).await,
        Ok(vec![(ServiceId(3), Decimal::new(125, 2))])
    );
    store
        .set_customer_rate(customer.id, ServiceId(3), None, "admin", NOW)
        .await
        .expect("rate removed");
    assert_eq!(store.customer_rates(customer.id).await, Ok(vec![]));

    let audit = store.audit_log(100).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in [
        "customer.create",
        "customer.credit",
        "customer.debit",
        "customer.rotate_key",
        "customer.discount",
        "customer.rate",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    let secret = hash_api_key("new-secret");
    assert!(audit.iter().all(|a| {
        !a.before.as_deref().unwrap_or("").contains(&secret)
            && !a.after.as_deref().unwrap_or("").contains(&secret)
    }));

    // Stable service ids.
    let s1 = store.service_id("prov", "10").await.expect("sid");
    let s2 = store.service_id("prov", "11").await.expect("sid");
    assert_eq!(store.service_id("prov", "10").await, Ok(s1));
    assert_eq!(s2.0, s1.0 + 1, "known pairs must not burn ids");
    assert_eq!(store.service_ids().await.expect("ids").len(), 2);

    // Listing and paging.
    let newest = store
        .list_orders(&OrderFilter {
            customer_id: Some(customer.id),
            limit: 1,
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(newest.len(), 1);
    let older = store
        .list_orders(&OrderFilter {
            customer_id: Some(customer.id),
            before_id: Some(newest[0].id),
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert!(older.iter().all(|o| o.id < newest[0].id));
    assert_eq!(older.len(), 1);
    let page = store.ledger(customer.id, None, 2).await.expect("ledger");
    let rest = store
        .ledger(customer.id, Some(page[1].id), 100)
        .await
        .expect("ledger");
    assert!(rest.iter().all(|e| e.id < page[1].id));
    store.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_respect_the_limit_and_recovery_spares_fresh_claims() {
    let Some(db) = TestDb::create("claims_respect_the_limit").await else {
        return;
    };
    let store = db.store.clone();
    let customer = customer_with(&store, "key-limit", Money::from_units(1_000)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let placed = store
            .place_order(new_order(customer.id, Money::from_units(5), 1, None), NOW)
            .await
            .expect("place");
        ids.push(placed.order().id);
    }
    let first = store
        .claim_for_forwarding("old", 1, NOW)
        .await
        .expect("claim");
    assert_eq!(first.iter().map(|o| o.id).collect::<Vec<_>>(), vec![ids[0]]);
    let next = store
        .claim_for_forwarding("new", 2, NOW + 10_000)
        .await
        .expect("claim");
    assert_eq!(
        next.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[1], ids[2]]
    );
    assert_eq!(
        store.recover_sending(NOW + 5_000, NOW + 20_000).await,
        Ok(vec![ids[0]])
    );
    assert_eq!(
        store.order(ids[1]).await.expect("order").forward_state,
        ForwardState::Sending
    );

    // Polls too: two due, one leased per claim.
    for (i, id) in ids[1..3].iter().enumerate() {
        store
            .begin_attempt(*id, "prov", "s", NOW)
            .await
            .expect("begin");
        store
            .finish_attempt(
                *id,
                ForwardOutcome::Sent {
                    upstream_order_id: format!("P-{i}"),
                    upstream_cost: None,
                    next_poll_at: NOW,
                },
                NOW,
            )
            .await
            .expect("sent");
    }
    let polls = store
        .claim_polls(None, 1, NOW + 60_000, NOW)
        .await
        .expect("polls");
    assert_eq!(
        polls.iter().map(|p| p.order_id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let polls = store
        .claim_polls(None, 5, NOW + 60_000, NOW)
        .await
        .expect("polls");
    assert_eq!(
        polls.iter().map(|p| p.order_id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
}
