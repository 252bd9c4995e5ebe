//! The cases, each written once against `Arc<dyn Store>`.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use rust_decimal::Decimal;
use smm_store::*;
use smm_wire::{Money, OrderStatus, RefillStatus};

pub use crate::props::random_status_sequences_keep_the_books;

pub(crate) type Db = Arc<dyn Store>;

pub(crate) const T0: Timestamp = 1_700_000_000_000;

pub(crate) fn money(s: &str) -> Money {
    s.parse().expect("money literal")
}

pub(crate) async fn customer(db: &Db, name: &str) -> Customer {
    db.create_customer(
        NewCustomer {
            name: name.into(),
            currency: "USD".into(),
            key_hash: hash_api_key(&format!("key-of-{name}")),
            key_prefix: "key-of".into(),
        },
        "admin",
        T0,
    )
    .await
    .expect("create customer")
}

pub(crate) async fn funded(db: &Db, name: &str, amount: &str) -> Customer {
    let c = customer(db, name).await;
    db.adjust_balance(
        c.id,
        LedgerKind::Deposit,
        money(amount),
        "top-up",
        "admin",
        T0,
    )
    .await
    .expect("deposit");
    db.customer(c.id).await.expect("customer")
}

pub(crate) fn new_order(customer: CustomerId, charge: &str) -> NewOrder {
    NewOrder {
        customer_id: customer,
        service_id: ServiceId(7),
        service_type: "Default".into(),
        params: r#"{"type":"default","link":"https://x.test/p","quantity":1000,"drip_feed":null}"#
            .into(),
        link: Some("https://x.test/p".into()),
        quantity: Some(1000),
        units: 1000,
        charge: money(charge),
        idempotency_key: None,
        placed_as: None,
        request_fingerprint: None,
    }
}

pub(crate) async fn place(db: &Db, customer: CustomerId, charge: &str) -> Order {
    match db.place_order(new_order(customer, charge), T0).await {
        Ok(Placed::New(order)) => order,
        other => panic!("expected a new order, got {other:?}"),
    }
}

/// Balance equals the ledger sum, and is never negative.
pub(crate) async fn assert_books_balance(db: &Db, customer: CustomerId) {
    let c = db.customer(customer).await.expect("customer");
    let sum = db.ledger_sum(customer).await.expect("ledger sum");
    assert_eq!(c.balance, sum, "balance must equal the ledger sum");
    assert!(!c.balance.is_negative());
    // Each ledger row's balance after is the one before it plus its amount, in id order (the
    // order the customer's row lock let them in), ending at the balance.
    let mut rows = db.ledger(customer, None, 100_000).await.expect("ledger");
    rows.sort_by_key(|row| row.id);
    let mut running = Money::ZERO;
    for row in &rows {
        running = running.checked_add(row.amount).expect("no overflow");
        assert_eq!(
            row.balance_after, running,
            "ledger row {} balance after",
            row.id
        );
    }
    assert_eq!(running, c.balance, "the last balance after is the balance");
    // The kept totals equal what the orders say.
    let orders = db
        .list_orders(&OrderFilter {
            customer_id: Some(customer),
            limit: 100_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    let spent = orders.iter().fold(Money::ZERO, |total, o| {
        total
            .checked_add(o.charge)
            .and_then(|t| t.checked_sub(o.refunded))
            .expect("no overflow")
    });
    let totals = db.customer_totals().await.expect("totals");
    let kept = totals
        .iter()
        .find(|t| t.customer == customer)
        .expect("the customer's totals");
    assert_eq!(kept.orders, orders.len() as i64, "orders placed");
    assert_eq!(kept.spent, spent, "spend = charges less refunds");
    assert_aggregates_match_the_orders(db).await;
}

/// The aggregates the database keeps (migration 0010) equal what every order says.
async fn assert_aggregates_match_the_orders(db: &Db) {
    use std::collections::BTreeMap;
    let orders = db
        .list_orders(&OrderFilter {
            limit: 1_000_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    let mut days: BTreeMap<i64, (i64, Money, Money)> = BTreeMap::new();
    let mut providers: BTreeMap<(i64, String), (i64, i64, i64)> = BTreeMap::new();
    let mut statuses: BTreeMap<String, i64> = BTreeMap::new();
    let mut states: BTreeMap<&'static str, i64> = BTreeMap::new();
    for o in &orders {
        let day = o.created_at.div_euclid(DAY_MS) * DAY_MS;
        let entry = days.entry(day).or_insert((0, Money::ZERO, Money::ZERO));
        entry.0 += 1;
        entry.1 = entry.1.checked_add(o.charge).expect("sum");
        entry.2 = entry.2.checked_add(o.refunded).expect("sum");
        // The column's words: statuses the gateway does not know are stored as `Unknown`.
        let status = match &o.status {
            OrderStatus::Unknown(_) => "Unknown",
            known => known.as_str(),
        };
        *statuses.entry(status.to_owned()).or_insert(0) += 1;
        *states.entry(o.forward_state.as_str()).or_insert(0) += 1;
        if let (ForwardState::Sent, Some(provider), Some(cost)) =
            (o.forward_state, &o.provider, o.upstream_cost)
        {
            // Capped at 1e15 nanos like the triggers (no sum may overflow).
            let nanos = (cost * Decimal::new(100_000_000, 0))
                .trunc()
                .to_string()
                .parse::<i128>()
                .expect("nanos")
                .clamp(0, 1_000_000_000_000_000);
            let nanos = i64::try_from(nanos).expect("capped");
            let charge = i128::from(o.charge.units());
            let refunded_share = if charge > 0 {
                i64::try_from(i128::from(nanos) * i128::from(o.refunded.units()) / charge)
                    .expect("share")
            } else {
                0
            };
            let entry = providers
                .entry((day, provider.clone()))
                .or_insert((0, 0, 0));
            entry.0 += 1;
            entry.1 += nanos;
            entry.2 += nanos - refunded_share;
        }
    }
    let totals = db.order_totals_since(0).await.expect("totals");
    let kept_days: BTreeMap<i64, (i64, Money, Money)> = totals
        .days
        .iter()
        .map(|d| (d.day_start, (d.orders, d.charged, d.refunded)))
        .collect();
    assert_eq!(kept_days, days, "order_days");
    let kept_providers: BTreeMap<(i64, String), (i64, i64, i64)> = totals
        .providers
        .iter()
        .map(|p| {
            let nanos = |d: Decimal| (d * Decimal::new(100_000_000, 0)).trunc().to_string();
            (
                (p.day_start, p.provider.clone()),
                (
                    p.orders,
                    nanos(p.cost).parse().expect("nanos"),
                    nanos(p.kept_cost).parse().expect("nanos"),
                ),
            )
        })
        .collect();
    assert_eq!(kept_providers, providers, "order_provider_days");
    let kept_statuses: BTreeMap<String, i64> = db
        .count_by_status()
        .await
        .expect("counts")
        .into_iter()
        .collect();
    assert_eq!(kept_statuses, statuses, "order_counts by status");
    let kept_states: BTreeMap<&'static str, i64> = db
        .count_by_forward_state()
        .await
        .expect("counts")
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str(), n))
        .collect();
    assert_eq!(kept_states, states, "order_counts by forward state");
    // The routes' scorecards (migration 0013) count the same orders, outcomes and money.
    let mut routes: BTreeMap<(String, String), [i64; 6]> = BTreeMap::new();
    for o in &orders {
        if let (ForwardState::Sent, Some(provider), Some(service), Some(_)) = (
            o.forward_state,
            &o.provider,
            &o.upstream_service,
            o.forwarded_at,
        ) {
            let r = routes
                .entry((provider.clone(), service.clone()))
                .or_insert([0; 6]);
            r[0] += 1;
            r[1] += i64::from(matches!(
                o.status,
                OrderStatus::Completed | OrderStatus::Expired
            ));
            r[2] += i64::from(o.status == OrderStatus::Partial);
            r[3] += i64::from(matches!(
                o.status,
                OrderStatus::Canceled | OrderStatus::Refunded
            ));
            r[4] += o.charge.units();
            r[5] += o.refunded.units();
        }
    }
    let window = ScoreWindow {
        now: T0 + 400 * DAY_MS,
        days: 3650,
    };
    let kept_routes: BTreeMap<(String, String), [i64; 6]> = db
        .route_records(window)
        .await
        .expect("route records")
        .into_iter()
        .filter(|r| r.counts.orders != 0)
        .map(|r| {
            let n = r.counts;
            (
                (r.provider, r.upstream_service),
                [
                    n.orders,
                    n.completed,
                    n.partial,
                    n.canceled,
                    n.charged,
                    n.refunded,
                ],
            )
        })
        .collect();
    assert_eq!(kept_routes, routes, "route_days");
    // Folding the deltas into the totals changes no answer.
    db.compact_aggregates().await.expect("compaction");
    assert_eq!(db.order_totals_since(0).await.expect("totals"), totals);
}

/// Places an order and takes it all the way to `sent` at `provider` with `upstream`.
pub(crate) async fn sent_order(
    db: &Db,
    customer: CustomerId,
    charge: &str,
    provider: &str,
    upstream: &str,
) -> Order {
    let order = place(db, customer, charge).await;
    let claimed = db.claim_for_forwarding("w", 1000, T0).await.expect("claim");
    assert!(claimed.iter().any(|o| o.id == order.id));
    for other in claimed.iter().filter(|o| o.id != order.id) {
        db.requeue(other.id, T0, "not this test's", T0)
            .await
            .expect("requeue");
    }
    db.begin_attempt(order.id, provider, "svc-1", T0)
        .await
        .expect("begin");
    db.finish_attempt(
        order.id,
        ForwardOutcome::Sent {
            upstream_order_id: upstream.into(),
            upstream_cost: Some(Decimal::new(12_345, 5)),
            next_poll_at: T0 + 1_000,
        },
        T0,
    )
    .await
    .expect("sent")
}

pub(crate) fn update(status: OrderStatus, remains: Option<i64>) -> StatusUpdate {
    StatusUpdate {
        delivery: Default::default(),
        status,
        start_count: Some(3572),
        remains,
        extra: None,
        next_poll_at: T0 + 60_000,
    }
}

pub(crate) async fn refund_rows(db: &Db, customer: CustomerId, order: OrderId) -> usize {
    db.ledger(customer, None, 1000)
        .await
        .expect("ledger")
        .iter()
        .filter(|e| e.kind == LedgerKind::Refund && e.order_id == Some(order))
        .count()
}

pub async fn customers_lifecycle(db: Db) {
    let c = customer(&db, "alice").await;
    assert_eq!(c.name, "alice");
    assert_eq!(c.status, CustomerStatus::Active);
    assert_eq!(c.balance, Money::ZERO);
    assert_eq!(c.currency, "USD");
    assert_eq!(db.customer(c.id).await.expect("get"), c);
    let found = db
        .customer_by_key_hash(&hash_api_key("key-of-alice"))
        .await
        .expect("lookup");
    assert_eq!(found.map(|f| f.id), Some(c.id));
    assert_eq!(db.customer_by_key_hash("nope").await.expect("lookup"), None);
    assert_eq!(
        db.customer(CustomerId(999_999)).await,
        Err(StoreError::NotFound("customer"))
    );

    // A key hash belongs to one customer only.
    let duplicate = db
        .create_customer(
            NewCustomer {
                name: "mallory".into(),
                currency: "USD".into(),
                key_hash: hash_api_key("key-of-alice"),
                key_prefix: "key-of".into(),
            },
            "admin",
            T0,
        )
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );

    let bob = customer(&db, "bob").await;
    let all = db.list_customers().await.expect("list");
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![c.id, bob.id]
    );

    // Suspension blocks orders and changes nothing else.
    db.adjust_balance(
        c.id,
        LedgerKind::Deposit,
        money("10"),
        "top-up",
        "admin",
        T0,
    )
    .await
    .expect("deposit");
    let suspended = db
        .set_customer_status(c.id, CustomerStatus::Suspended, "admin", T0)
        .await
        .expect("suspend");
    assert_eq!(suspended.status, CustomerStatus::Suspended);
    assert_eq!(
        db.place_order(new_order(c.id, "1"), T0).await,
        Err(StoreError::CustomerSuspended)
    );
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("10"));
    db.set_customer_status(c.id, CustomerStatus::Active, "admin", T0)
        .await
        .expect("reactivate");
    place(&db, c.id, "1").await;

    // Rotation: the old key stops working at once, the new one works.
    let rotated = db
        .rotate_key(c.id, &hash_api_key("new-key"), "new-ke", "admin", T0)
        .await
        .expect("rotate");
    assert_eq!(rotated.key_prefix, "new-ke");
    assert_eq!(
        db.customer_by_key_hash(&hash_api_key("key-of-alice"))
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        db.customer_by_key_hash(&hash_api_key("new-key"))
            .await
            .expect("lookup")
            .map(|c| c.id),
        Some(c.id)
    );
    assert!(matches!(
        db.rotate_key(bob.id, &hash_api_key("new-key"), "new-ke", "admin", T0)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Price rules.
    let discounted = db
        .set_discount(c.id, Some(Decimal::new(75, 1)), "admin", T0)
        .await
        .expect("discount");
    assert_eq!(discounted.discount, Some(Decimal::new(75, 1)));
    assert_eq!(
        db.set_discount(c.id, None, "admin", T0)
            .await
            .expect("clear")
            .discount,
        None
    );
    db.set_customer_rate(c.id, ServiceId(3), Some(Decimal::new(125, 2)), "admin", T0)
        .await
        .expect("rate");
    db.set_customer_rate(c.id, ServiceId(4), Some(Decimal::new(2, 0)), "admin", T0)
        .await
        .expect("rate");
    db.set_customer_rate(c.id, ServiceId(4), None, "admin", T0)
        .await
        .expect("remove rate");
    assert_eq!(
        db.customer_rates(c.id).await.expect("rates"),
        vec![(ServiceId(3), Decimal::new(125, 2))]
    );
    assert!(db.customer_rates(bob.id).await.expect("rates").is_empty());

    // Every admin change above is audited, and the audit never holds a key or its hash.
    let audit = db.audit_log(100).await.expect("audit");
    let actions: BTreeSet<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in [
        "customer.create",
        "customer.status",
        "customer.rotate_key",
        "customer.discount",
        "customer.rate",
        "customer.credit",
    ] {
        assert!(
            actions.contains(action),
            "{action} not audited: {actions:?}"
        );
    }
    for entry in &audit {
        let text = format!("{entry:?}");
        assert!(!text.contains(&hash_api_key("new-key")));
        assert!(!text.contains(&hash_api_key("key-of-alice")));
        assert!(!text.contains("new-key"));
    }
}

pub async fn balance_adjustments(db: Db) {
    let c = customer(&db, "carol").await;
    let entry = db
        .adjust_balance(
            c.id,
            LedgerKind::Deposit,
            money("100.84292"),
            "bank transfer",
            "admin",
            T0,
        )
        .await
        .expect("credit");
    assert_eq!(entry.amount, money("100.84292"));
    assert_eq!(entry.balance_after, money("100.84292"));
    assert_eq!(entry.kind, LedgerKind::Deposit);
    assert_eq!(entry.reason, "bank transfer");
    assert_eq!(entry.actor, "admin");

    let debit = db
        .adjust_balance(
            c.id,
            LedgerKind::Adjustment,
            money("-0.84292"),
            "correction",
            "admin",
            T0,
        )
        .await
        .expect("debit");
    assert_eq!(debit.balance_after, money("100"));

    // A debit past zero, a zero amount, a negative deposit, a charge by hand: refused, no change.
    assert_eq!(
        db.adjust_balance(
            c.id,
            LedgerKind::Adjustment,
            money("-100.00001"),
            "x",
            "admin",
            T0
        )
        .await,
        Err(StoreError::InsufficientFunds)
    );
    for (kind, amount) in [
        (LedgerKind::Deposit, "0"),
        (LedgerKind::Deposit, "-1"),
        (LedgerKind::Charge, "-1"),
        (LedgerKind::Refund, "1"),
    ] {
        let result = db
            .adjust_balance(c.id, kind, money(amount), "x", "admin", T0)
            .await;
        assert!(
            matches!(result, Err(StoreError::Invalid(_))),
            "{kind:?} {amount}: {result:?}"
        );
    }
    let huge = Money::MAX
        .checked_add(Money::from_units(1))
        .expect("fits i64");
    assert!(matches!(
        db.adjust_balance(c.id, LedgerKind::Deposit, huge, "x", "admin", T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        db.adjust_balance(
            CustomerId(424_242),
            LedgerKind::Deposit,
            money("1"),
            "x",
            "admin",
            T0
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("100"));

    // Ledger pages newest first.
    for i in 1..=5 {
        db.adjust_balance(
            c.id,
            LedgerKind::Deposit,
            money(&i.to_string()),
            "more",
            "admin",
            T0,
        )
        .await
        .expect("credit");
    }
    let page = db.ledger(c.id, None, 3).await.expect("ledger");
    assert_eq!(page.len(), 3);
    assert!(page.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(page[0].amount, money("5"));
    let next = db
        .ledger(c.id, Some(page[2].id), 100)
        .await
        .expect("ledger");
    assert_eq!(next.len(), 4);
    assert!(next.iter().all(|e| e.id < page[2].id));
    assert_books_balance(&db, c.id).await;
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("115"));
}

pub async fn place_order_debits_and_queues(db: Db) {
    let c = funded(&db, "dave", "1").await;
    let first = place(&db, c.id, "0.27819").await;
    assert_eq!(first.charge, money("0.27819"));
    assert_eq!(first.refunded, Money::ZERO);
    assert_eq!(first.net_charge(), money("0.27819"));
    assert_eq!(first.forward_state, ForwardState::Queued);
    assert_eq!(first.status, OrderStatus::Pending);
    assert_eq!(first.customer_id, c.id);
    assert_eq!(first.quantity, Some(1000));
    assert_eq!(first.units, 1000);
    assert_eq!(first.link.as_deref(), Some("https://x.test/p"));
    assert_eq!(first.provider, None);
    assert_eq!(first.upstream_order_id, None);
    assert_eq!(db.order(first.id).await.expect("get"), first);
    assert_eq!(
        db.customer(c.id).await.expect("get").balance,
        money("0.72181")
    );

    let charge_row = db.ledger(c.id, None, 1).await.expect("ledger").remove(0);
    assert_eq!(charge_row.kind, LedgerKind::Charge);
    assert_eq!(charge_row.amount, money("-0.27819"));
    assert_eq!(charge_row.order_id, Some(first.id));
    assert_eq!(charge_row.balance_after, money("0.72181"));

    // Ids increase.
    let second = place(&db, c.id, "0.00001").await;
    assert!(second.id > first.id);

    // Not enough funds: an error, and nothing written.
    let ledger_before = db.ledger(c.id, None, 100).await.expect("ledger");
    assert_eq!(
        db.place_order(new_order(c.id, "0.72181"), T0).await,
        Err(StoreError::InsufficientFunds)
    );
    assert_eq!(
        db.ledger(c.id, None, 100).await.expect("ledger"),
        ledger_before
    );
    let orders = db
        .list_orders(&OrderFilter {
            customer_id: Some(c.id),
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(orders.len(), 2);
    // Exactly the balance is fine.
    place(&db, c.id, "0.72180").await;
    assert_eq!(db.customer(c.id).await.expect("get").balance, Money::ZERO);
    assert_books_balance(&db, c.id).await;

    assert_eq!(
        db.place_order(new_order(CustomerId(555_555), "1"), T0)
            .await,
        Err(StoreError::NotFound("customer"))
    );
    assert_eq!(
        db.order(OrderId(987_654)).await,
        Err(StoreError::NotFound("order"))
    );

    // A customer sees only their own orders.
    let other = funded(&db, "erin", "5").await;
    let theirs = place(&db, other.id, "1").await;
    let mine = db
        .customer_orders(c.id, &[first.id, theirs.id, OrderId(987_654)])
        .await
        .expect("orders");
    assert_eq!(
        mine.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![first.id]
    );
}

/// Issue #12, defect 11: the fingerprint of the request that placed a keyed order is kept and
/// found with the order by its key (per customer), so a retry can be told from a different
/// request reusing the key.
pub async fn idempotency_fingerprints_are_kept(db: Db) {
    let c = funded(&db, "fiona", "10").await;
    let other = funded(&db, "gus", "10").await;
    let placed = db
        .place_order(
            NewOrder {
                idempotency_key: Some("k-1".into()),
                request_fingerprint: Some("fp-a".into()),
                ..new_order(c.id, "1")
            },
            T0,
        )
        .await
        .expect("place");
    let found = db
        .order_by_idempotency_key(c.id, "k-1")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(&found.order, placed.order());
    assert_eq!(found.request_fingerprint.as_deref(), Some("fp-a"));
    // A retry carrying another fingerprint still gets the first order (the caller compares):
    // nothing is charged again and the stored fingerprint is the first one.
    let again = db
        .place_order(
            NewOrder {
                idempotency_key: Some("k-1".into()),
                request_fingerprint: Some("fp-b".into()),
                ..new_order(c.id, "2")
            },
            T0 + 1,
        )
        .await
        .expect("again");
    assert_eq!(again, Placed::Existing(placed.order().clone()));
    let found = db
        .order_by_idempotency_key(c.id, "k-1")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.request_fingerprint.as_deref(), Some("fp-a"));
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("9"));
    // Keyed without a fingerprint; other keys and other customers find nothing.
    db.place_order(
        NewOrder {
            idempotency_key: Some("k-2".into()),
            ..new_order(c.id, "1")
        },
        T0,
    )
    .await
    .expect("place");
    let bare = db
        .order_by_idempotency_key(c.id, "k-2")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(bare.request_fingerprint, None);
    assert_eq!(
        db.order_by_idempotency_key(c.id, "k-3")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        db.order_by_idempotency_key(other.id, "k-1")
            .await
            .expect("lookup"),
        None
    );
    assert_books_balance(&db, c.id).await;
}

/// Issue #12, defect 13: on PostgreSQL every committed key rotation, status change, discount
/// and custom rate is announced to listeners (other gateway instances), and a change that
/// fails announces nothing; SQLite has no announcements (its caches rely on their lifetime).
pub async fn customer_changes_are_announced(db: Db) {
    let Some(mut events) = db.customer_events() else {
        assert_eq!(db.backend(), Backend::Sqlite);
        return;
    };
    assert_eq!(db.backend(), Backend::Postgres);
    let next = async |events: &mut tokio::sync::mpsc::Receiver<CustomerEvent>| {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .expect("an announcement within 10 s")
            .expect("listener alive")
    };
    // Listening starts with a resync.
    assert_eq!(next(&mut events).await, CustomerEvent::Resync);
    let c = customer(&db, "announced").await;
    let changed = CustomerEvent::Changed(c.id);
    db.rotate_key(c.id, &hash_api_key("rotated"), "rotate", "admin", T0)
        .await
        .expect("rotate");
    assert_eq!(next(&mut events).await, changed);
    db.set_customer_status(c.id, CustomerStatus::Suspended, "admin", T0)
        .await
        .expect("suspend");
    assert_eq!(next(&mut events).await, changed);
    db.set_discount(c.id, Some(Decimal::new(5, 0)), "admin", T0)
        .await
        .expect("discount");
    assert_eq!(next(&mut events).await, changed);
    db.set_customer_rate(c.id, ServiceId(1), Some(Decimal::new(2, 0)), "admin", T0)
        .await
        .expect("rate");
    assert_eq!(next(&mut events).await, changed);
    // A change that fails (an unknown customer) rolls back and announces nothing; the next
    // announcement is the next real change.
    assert!(
        db.set_customer_status(CustomerId(999_999), CustomerStatus::Active, "admin", T0)
            .await
            .is_err()
    );
    db.set_customer_status(c.id, CustomerStatus::Active, "admin", T0)
        .await
        .expect("reactivate");
    assert_eq!(next(&mut events).await, changed);
}

pub async fn idempotency_keys(db: Db) {
    let c = funded(&db, "frank", "10").await;
    let other = funded(&db, "grace", "10").await;
    let keyed = |customer| NewOrder {
        idempotency_key: Some("retry-123".into()),
        ..new_order(customer, "1")
    };
    let first = match db.place_order(keyed(c.id), T0).await.expect("place") {
        Placed::New(order) => order,
        other => panic!("{other:?}"),
    };
    let again = db
        .place_order(keyed(c.id), T0 + 5)
        .await
        .expect("place again");
    assert_eq!(again, Placed::Existing(first.clone()));
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("9"));
    // The same key from another customer is another order.
    assert!(matches!(
        db.place_order(keyed(other.id), T0).await.expect("other"),
        Placed::New(_)
    ));

    // Concurrent retries with one key: one order, one charge.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let db = db.clone();
        let order = NewOrder {
            idempotency_key: Some("burst".into()),
            ..new_order(c.id, "1")
        };
        tasks.push(tokio::spawn(async move { db.place_order(order, T0).await }));
    }
    let mut ids = HashSet::new();
    let mut new = 0;
    for task in tasks {
        match task.await.expect("join").expect("place") {
            Placed::New(order) => {
                new += 1;
                ids.insert(order.id);
            }
            Placed::Existing(order) => {
                ids.insert(order.id);
            }
        }
    }
    assert_eq!(new, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("8"));
    assert_books_balance(&db, c.id).await;
}

pub async fn concurrent_placements_spend_exactly_the_balance(db: Db) {
    // A balance that covers exactly 100 orders; 200 placed at once.
    let c = funded(&db, "heidi", "27.81900").await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let db = db.clone();
        let order = new_order(c.id, "0.27819");
        tasks.push(tokio::spawn(async move { db.place_order(order, T0).await }));
    }
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("join") {
            Ok(Placed::New(_)) => placed += 1,
            Err(StoreError::InsufficientFunds) => refused += 1,
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!((placed, refused), (100, 100));
    let after = db.customer(c.id).await.expect("get");
    assert_eq!(after.balance, Money::ZERO);
    assert_books_balance(&db, c.id).await;
    let orders = db
        .list_orders(&OrderFilter {
            customer_id: Some(c.id),
            limit: 1000,
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(orders.len(), 100);
    let charges = db
        .ledger(c.id, None, 1000)
        .await
        .expect("ledger")
        .into_iter()
        .filter(|e| e.kind == LedgerKind::Charge)
        .count();
    assert_eq!(charges, 100);
}

pub async fn concurrent_claims_take_each_order_once(db: Db) {
    let c = funded(&db, "ivan", "1000").await;
    for _ in 0..1000 {
        place(&db, c.id, "0.5").await;
    }
    let worker = |name: &'static str| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = db.claim_for_forwarding(name, 37, T0).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                assert!(batch.len() <= 37);
                for order in &batch {
                    assert_eq!(order.forward_state, ForwardState::Sending);
                    assert_eq!(order.claimed_by.as_deref(), Some(name));
                }
                mine.extend(batch.into_iter().map(|o| o.id));
            }
        })
    };
    // A claim takes at most `limit` orders.
    let few = db
        .claim_for_forwarding("probe", 3, T0)
        .await
        .expect("claim");
    assert_eq!(few.len(), 3);
    for order in &few {
        db.requeue(order.id, T0, "probe", T0)
            .await
            .expect("requeue");
    }
    let (a, b) = (worker("a"), worker("b"));
    let a = a.await.expect("worker a");
    let b = b.await.expect("worker b");
    let all: HashSet<OrderId> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 1000, "an order was claimed twice");
    assert_eq!(all.len(), 1000, "an order was never claimed");
    assert!(
        db.claim_for_forwarding("c", 10, T0)
            .await
            .expect("claim")
            .is_empty()
    );
}

pub async fn forwarding_lifecycle(db: Db) {
    let c = funded(&db, "judy", "10").await;
    let order = place(&db, c.id, "1").await;
    // Not claimable before it is claimed? It is claimable at once.
    assert!(matches!(
        db.begin_attempt(order.id, "alpha", "11", T0).await,
        Err(StoreError::InvalidState(_))
    ));
    let claimed = db
        .claim_for_forwarding("w1", 10, T0 + 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].claimed_at, Some(T0 + 1));

    // Route 1 refuses, route 2 accepts.
    db.begin_attempt(order.id, "alpha", "11", T0 + 2)
        .await
        .expect("begin");
    let after_fail = db
        .finish_attempt(
            order.id,
            ForwardOutcome::Failed {
                not_sent: false,
                detail: "Incorrect service ID".into(),
            },
            T0 + 3,
        )
        .await
        .expect("failed");
    assert_eq!(after_fail.forward_state, ForwardState::Sending);
    db.begin_attempt(order.id, "beta", "22", T0 + 4)
        .await
        .expect("begin");
    let sent = db
        .finish_attempt(
            order.id,
            ForwardOutcome::Sent {
                upstream_order_id: "23501".into(),
                upstream_cost: Some(Decimal::new(27_819, 5)),
                next_poll_at: T0 + 10_000,
            },
            T0 + 5,
        )
        .await
        .expect("sent");
    assert_eq!(sent.forward_state, ForwardState::Sent);
    assert_eq!(sent.provider.as_deref(), Some("beta"));
    assert_eq!(sent.upstream_service.as_deref(), Some("22"));
    assert_eq!(sent.upstream_order_id.as_deref(), Some("23501"));
    assert_eq!(sent.upstream_cost, Some(Decimal::new(27_819, 5)));
    assert_eq!(sent.forwarded_at, Some(T0 + 5));
    assert_eq!(sent.next_poll_at, Some(T0 + 10_000));
    assert_eq!(sent.status, OrderStatus::Pending);

    let attempts = db.attempts(order.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.provider.as_str(), a.outcome.as_str()))
            .collect::<Vec<_>>(),
        vec![("alpha", "rejected"), ("beta", "sent")]
    );
    assert_eq!(attempts[0].detail.as_deref(), Some("Incorrect service ID"));
    assert_eq!(attempts[1].finished_at, Some(T0 + 5));

    // Sent orders are never claimed again.
    assert!(
        db.claim_for_forwarding("w2", 10, T0 + 100)
            .await
            .expect("claim")
            .is_empty()
    );

    // An ambiguous outcome parks the order.
    let other = place(&db, c.id, "1").await;
    db.claim_for_forwarding("w1", 10, T0).await.expect("claim");
    db.begin_attempt(other.id, "alpha", "11", T0)
        .await
        .expect("begin");
    let parked = db
        .finish_attempt(
            other.id,
            ForwardOutcome::Ambiguous {
                detail: "timeout".into(),
            },
            T0,
        )
        .await
        .expect("ambiguous");
    assert_eq!(parked.forward_state, ForwardState::Ambiguous);
    assert_eq!(parked.forward_error.as_deref(), Some("timeout"));
    assert_eq!(parked.provider.as_deref(), Some("alpha"));
    assert!(
        db.claim_for_forwarding("w2", 10, T0 + 100)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_books_balance(&db, c.id).await;
}

pub async fn upstream_ids_are_unique_per_provider_only(db: Db) {
    let c = funded(&db, "kim", "10").await;
    let a = sent_order(&db, c.id, "1", "alpha", "555").await;
    // The same upstream id at another provider is another order.
    let b = sent_order(&db, c.id, "1", "beta", "555").await;
    assert_ne!(a.id, b.id);

    // The same upstream id twice at one provider: refused, and the order is not lost.
    let clash = place(&db, c.id, "1").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.begin_attempt(clash.id, "alpha", "svc-1", T0)
        .await
        .expect("begin");
    let result = db
        .finish_attempt(
            clash.id,
            ForwardOutcome::Sent {
                upstream_order_id: "555".into(),
                upstream_cost: None,
                next_poll_at: T0,
            },
            T0,
        )
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let kept = db.order(clash.id).await.expect("still there");
    assert_eq!(kept.forward_state, ForwardState::Ambiguous);
    assert!(kept.forward_error.is_some());

    // Statuses go to the right order.
    let applied = db
        .apply_status("beta", "555", update(OrderStatus::Completed, Some(0)), T0)
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(applied.order_id, b.id);
    assert_eq!(
        db.order(b.id).await.expect("get").status,
        OrderStatus::Completed
    );
    assert_eq!(
        db.order(a.id).await.expect("get").status,
        OrderStatus::Pending
    );
    let canceled = db
        .apply_status("alpha", "555", update(OrderStatus::Canceled, None), T0)
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(canceled.order_id, a.id);
    assert_eq!(canceled.refund, Some(money("1")));
    assert_eq!(db.order(b.id).await.expect("get").refunded, Money::ZERO);
    assert_eq!(
        db.apply_status("gamma", "555", update(OrderStatus::Completed, None), T0)
            .await
            .expect("apply"),
        None
    );
    assert_books_balance(&db, c.id).await;
}

pub async fn requeue_and_reject(db: Db) {
    let c = funded(&db, "leo", "10").await;
    let order = place(&db, c.id, "2.5").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.requeue(order.id, T0 + 60_000, "every provider unreachable", T0)
        .await
        .expect("requeue");
    let queued = db.order(order.id).await.expect("get");
    assert_eq!(queued.forward_state, ForwardState::Queued);
    assert_eq!(
        queued.forward_error.as_deref(),
        Some("every provider unreachable")
    );
    assert!(
        db.claim_for_forwarding("w", 10, T0 + 59_999)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = db
        .claim_for_forwarding("w", 10, T0 + 60_000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].forward_attempts, 2);

    let refund = db
        .reject_order(order.id, "rejected by every route", T0)
        .await
        .expect("reject");
    assert_eq!(refund, money("2.5"));
    let rejected = db.order(order.id).await.expect("get");
    assert_eq!(rejected.forward_state, ForwardState::Rejected);
    assert_eq!(rejected.status, OrderStatus::Canceled);
    assert_eq!(rejected.refunded, money("2.5"));
    assert_eq!(rejected.net_charge(), Money::ZERO);
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("10"));
    // Never twice.
    assert!(matches!(
        db.reject_order(order.id, "again", T0).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(refund_rows(&db, c.id, order.id).await, 1);
    assert_books_balance(&db, c.id).await;
}

pub async fn crash_recovery_and_ambiguous_resolution(db: Db) {
    let c = funded(&db, "mia", "10").await;
    let crashed = place(&db, c.id, "1").await;
    let fresh = place(&db, c.id, "1").await;
    let claimed = db
        .claim_for_forwarding("dead-worker", 1, T0)
        .await
        .expect("claim");
    assert_eq!(claimed[0].id, crashed.id);
    db.begin_attempt(crashed.id, "alpha", "11", T0)
        .await
        .expect("begin");
    db.claim_for_forwarding("live-worker", 1, T0 + 10_000)
        .await
        .expect("claim");

    // Claims older than the lease become ambiguous; newer ones are left alone.
    let recovered = db
        .recover_sending(T0 + 5_000, T0 + 20_000)
        .await
        .expect("recover");
    assert_eq!(recovered, vec![crashed.id]);
    let parked = db.order(crashed.id).await.expect("get");
    assert_eq!(parked.forward_state, ForwardState::Ambiguous);
    assert!(parked.forward_error.is_some());
    assert_eq!(
        db.order(fresh.id).await.expect("get").forward_state,
        ForwardState::Sending
    );
    let attempts = db.attempts(crashed.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_ne!(attempts[0].outcome, "pending");
    // Never re-sent automatically.
    assert!(
        db.claim_for_forwarding("w", 10, T0 + 30_000)
            .await
            .expect("claim")
            .is_empty()
    );

    // Resolution 1: found upstream.
    let attached = db
        .attach_upstream_order(crashed.id, "alpha", "777", "admin", T0 + 40_000)
        .await
        .expect("attach");
    assert_eq!(attached.forward_state, ForwardState::Sent);
    assert_eq!(attached.upstream_order_id.as_deref(), Some("777"));
    let polls = db
        .claim_polls(Some("alpha"), 10, T0 + 50_000, T0 + 40_000)
        .await
        .expect("polls");
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].order_id, crashed.id);
    assert!(matches!(
        db.attach_upstream_order(crashed.id, "alpha", "778", "admin", T0)
            .await,
        Err(StoreError::InvalidState(_))
    ));

    // Resolution 2: given up, fully refunded, once.
    db.recover_sending(T0 + 20_000, T0 + 40_000)
        .await
        .expect("recover");
    assert_eq!(
        db.order(fresh.id).await.expect("get").forward_state,
        ForwardState::Ambiguous
    );
    let refund = db
        .cancel_ambiguous(fresh.id, "not found upstream", "admin", T0 + 50_000)
        .await
        .expect("cancel");
    assert_eq!(refund, money("1"));
    let canceled = db.order(fresh.id).await.expect("get");
    assert_eq!(canceled.status, OrderStatus::Canceled);
    assert_eq!(canceled.forward_state, ForwardState::Rejected);
    assert!(matches!(
        db.cancel_ambiguous(fresh.id, "again", "admin", T0).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(refund_rows(&db, c.id, fresh.id).await, 1);
    let audit = db.audit_log(10).await.expect("audit");
    assert!(audit.iter().any(|a| a.action == "order.cancel_ambiguous"));
    assert!(audit.iter().any(|a| a.action == "order.attach_upstream"));
    assert_books_balance(&db, c.id).await;
}

/// A poll's lease (a row of its own since migration 0016) hides an order from other claims until
/// its status is applied, one by one or in a batch, or its poll is deferred: then the order is
/// due at its new time, lease or no lease. A lease that ran out is taken over. Concurrent claims
/// share the due orders out, none twice.
pub async fn poll_leases_end_with_the_status_or_the_deferral(db: Db) {
    let c = funded(&db, "lease", "100").await;
    let batched = sent_order(&db, c.id, "1", "alpha", "L-1").await;
    let deferred = sent_order(&db, c.id, "1", "alpha", "L-2").await;
    let single = sent_order(&db, c.id, "1", "alpha", "L-3").await;
    let ids = |polls: Vec<PollItem>| polls.iter().map(|p| p.order_id).collect::<Vec<_>>();
    let claim = |lease_until: Timestamp, now: Timestamp| {
        let db = db.clone();
        async move {
            db.claim_polls(Some("alpha"), 10, lease_until, now)
                .await
                .expect("claim")
        }
    };

    // Leased until T0 + 600 s.
    assert_eq!(
        ids(claim(T0 + 600_000, T0 + 1_000).await),
        vec![batched.id, deferred.id, single.id]
    );
    assert!(claim(T0 + 600_000, T0 + 1_000).await.is_empty());
    // The statuses are next due at T0 + 60 s (`update`), the deferred poll at T0 + 30 s.
    db.apply_statuses(
        "alpha",
        vec![("L-1".into(), update(OrderStatus::InProgress, Some(5)))],
        T0 + 2_000,
    )
    .await
    .expect("batch");
    db.apply_status(
        "alpha",
        "L-3",
        update(OrderStatus::InProgress, Some(7)),
        T0 + 2_000,
    )
    .await
    .expect("single")
    .expect("known");
    db.defer_polls(&[deferred.id], T0 + 30_000)
        .await
        .expect("defer");
    assert!(claim(T0 + 600_000, T0 + 29_999).await.is_empty());
    assert_eq!(
        ids(claim(T0 + 90_000, T0 + 30_000).await),
        vec![deferred.id],
        "due again long before its lease ran out"
    );
    assert_eq!(
        ids(claim(T0 + 700_000, T0 + 60_000).await),
        vec![batched.id, single.id],
        "the deferred order is leased again, the others are due"
    );
    assert!(claim(T0 + 700_000, T0 + 89_999).await.is_empty());
    assert_eq!(
        ids(claim(T0 + 800_000, T0 + 90_000).await),
        vec![deferred.id],
        "a lease that ran out is taken over"
    );
    assert_eq!(
        db.order(deferred.id).await.expect("order").next_poll_at,
        Some(T0 + 30_000),
        "a lease leaves the order's schedule as it was"
    );

    // Forty orders due at once, eight claims of five at the same time: no order twice.
    let mut due = BTreeSet::new();
    for i in 0..40 {
        due.insert(
            sent_order(&db, c.id, "1", "beta", &format!("B-{i}"))
                .await
                .id,
        );
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.claim_polls(Some("beta"), 5, T0 + 600_000, T0 + 1_000)
                    .await
                    .expect("claim")
            })
        })
        .collect();
    let mut claimed = BTreeSet::new();
    for task in tasks {
        let polls = task.await.expect("join");
        assert!(polls.len() <= 5);
        for poll in polls {
            assert!(
                claimed.insert(poll.order_id),
                "{:?} claimed twice",
                poll.order_id
            );
        }
    }
    assert!(claimed.is_subset(&due));
    // Whatever the interleaving left behind is still due, and nothing claimed is.
    let rest: BTreeSet<OrderId> = db
        .claim_polls(Some("beta"), 100, T0 + 600_000, T0 + 1_000)
        .await
        .expect("claim")
        .into_iter()
        .map(|p| p.order_id)
        .collect();
    assert!(rest.is_disjoint(&claimed));
    assert_eq!(rest.len() + claimed.len(), due.len());
}

pub async fn polling_and_refunds(db: Db) {
    let c = funded(&db, "nina", "10").await;
    let partial = sent_order(&db, c.id, "0.27819", "alpha", "1").await;
    let canceled = sent_order(&db, c.id, "1", "alpha", "2").await;
    let unknown = sent_order(&db, c.id, "1", "alpha", "3").await;

    // Nothing is due before its time; due ones are leased.
    assert!(
        db.claim_polls(None, 10, T0 + 5_000, T0 + 999)
            .await
            .expect("polls")
            .is_empty()
    );
    let due = db
        .claim_polls(None, 10, T0 + 5_000, T0 + 1_000)
        .await
        .expect("polls");
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|p| p.provider == "alpha"));
    assert!(
        db.claim_polls(None, 10, T0 + 6_000, T0 + 1_000)
            .await
            .expect("polls")
            .is_empty()
    );

    let progress = db
        .apply_status(
            "alpha",
            "1",
            update(OrderStatus::InProgress, Some(400)),
            T0 + 2_000,
        )
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(progress.refund, None);
    assert!(!progress.terminal);
    let o = db.order(partial.id).await.expect("get");
    assert_eq!(o.status, OrderStatus::InProgress);
    assert_eq!(o.remains, Some(400));
    assert_eq!(o.start_count, Some(3572));
    assert_eq!(o.next_poll_at, Some(T0 + 60_000));

    // Partial: charge × remains / units, rounded down; once.
    let applied = db
        .apply_status(
            "alpha",
            "1",
            update(OrderStatus::Partial, Some(157)),
            T0 + 3_000,
        )
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(applied.refund, Some(Money::from_units(4_367)));
    assert!(applied.terminal);
    let o = db.order(partial.id).await.expect("get");
    assert_eq!(o.status, OrderStatus::Partial);
    assert_eq!(o.refunded, Money::from_units(4_367));
    assert_eq!(o.net_charge(), Money::from_units(27_819 - 4_367));
    assert_eq!(o.next_poll_at, None);
    let again = db
        .apply_status(
            "alpha",
            "1",
            update(OrderStatus::Partial, Some(157)),
            T0 + 4_000,
        )
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(again.refund, None);
    // Terminal is final, even if the upstream changes its mind.
    db.apply_status(
        "alpha",
        "1",
        update(OrderStatus::Canceled, None),
        T0 + 5_000,
    )
    .await
    .expect("apply");
    assert_eq!(
        db.order(partial.id).await.expect("get").status,
        OrderStatus::Partial
    );
    assert_eq!(refund_rows(&db, c.id, partial.id).await, 1);

    // Canceled: the whole charge.
    let full = db
        .apply_status("alpha", "2", update(OrderStatus::Canceled, None), T0)
        .await
        .expect("apply")
        .expect("known");
    assert_eq!(full.refund, Some(money("1")));
    assert_eq!(
        db.order(canceled.id).await.expect("get").refunded,
        money("1")
    );

    // An unknown spelling is kept verbatim and stays pollable.
    let odd = db
        .apply_status(
            "alpha",
            "3",
            update(OrderStatus::Unknown("Stuck-ish".into()), None),
            T0,
        )
        .await
        .expect("apply")
        .expect("known");
    assert!(!odd.terminal);
    let o = db.order(unknown.id).await.expect("get");
    assert_eq!(o.status, OrderStatus::Unknown("Stuck-ish".into()));
    assert_eq!(o.next_poll_at, Some(T0 + 60_000));
    let later = db
        .claim_polls(None, 10, T0 + 120_000, T0 + 60_000)
        .await
        .expect("polls");
    assert_eq!(
        later.iter().map(|p| p.order_id).collect::<Vec<_>>(),
        vec![unknown.id]
    );

    let balance = db.customer(c.id).await.expect("get").balance;
    assert_eq!(
        balance,
        money("10")
            .checked_sub(money("2.27819"))
            .expect("sub")
            .checked_add(Money::from_units(4_367 + 100_000))
            .expect("add")
    );
    assert_books_balance(&db, c.id).await;
}

/// `begin_attempts` notes a claimed batch's first attempts in one transaction, all or
/// nothing: one order not `sending` and no attempt is noted for any of them.
pub async fn batch_attempts_are_all_or_nothing(db: Db) {
    let c = funded(&db, "ada", "10").await;
    let first = place(&db, c.id, "1").await;
    let second = place(&db, c.id, "1").await;
    let queued = place(&db, c.id, "1").await;
    let claimed = db.claim_for_forwarding("w", 2, T0).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    let start = |order: OrderId, provider: &str| AttemptStart {
        order,
        provider: provider.into(),
        upstream_service: "7".into(),
        why: None,
    };
    // The third is still queued: the whole batch is refused.
    let refused = db
        .begin_attempts(
            &[
                start(first.id, "alpha"),
                start(queued.id, "alpha"),
                start(second.id, "beta"),
            ],
            T0 + 10,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidState(_))),
        "{refused:?}"
    );
    for id in [first.id, second.id, queued.id] {
        assert!(
            db.attempts(id).await.expect("attempts").is_empty(),
            "order {id}"
        );
    }
    db.begin_attempts(
        &[start(second.id, "beta"), start(first.id, "alpha")],
        T0 + 20,
    )
    .await
    .expect("batch");
    for (id, provider) in [(first.id, "alpha"), (second.id, "beta")] {
        let attempts = db.attempts(id).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].provider.as_str(), attempts[0].outcome.as_str()),
            (provider, "pending")
        );
        let order = db.order(id).await.expect("order");
        assert_eq!(order.provider.as_deref(), Some(provider));
        assert_eq!(order.claimed_at, Some(T0 + 20), "the claim is renewed");
    }
    // A pending attempt blocks requeue, as for a single begin.
    assert!(db.requeue(first.id, T0, "x", T0).await.is_err());
    db.begin_attempts(&[], T0).await.expect("empty batch");
}

/// `claim_and_begin` claims and notes the first attempts it is told of with one commit, all or
/// nothing: an attempt for an order outside the claim, or twice for one order, and nothing is
/// claimed or noted.
pub async fn claims_note_their_first_attempts(db: Db) {
    let c = funded(&db, "ada", "10").await;
    let first = place(&db, c.id, "1").await;
    let second = place(&db, c.id, "1").await;
    let third = place(&db, c.id, "1").await;
    let start = |order: OrderId, provider: &str| AttemptStart {
        order,
        provider: provider.into(),
        upstream_service: "7".into(),
        why: Some("cheapest".into()),
    };
    let nothing_moved = |db: Db| async move {
        for id in [first.id, second.id, third.id] {
            let order = db.order(id).await.expect("order");
            assert_eq!(order.forward_state, ForwardState::Queued, "order {id}");
            assert!(db.attempts(id).await.expect("attempts").is_empty());
        }
    };
    // Told of an order outside the claim (the third, past the limit).
    let mut shown = Vec::new();
    let refused = db
        .claim_and_begin("w", 2, T0, &mut |orders: &[Order]| {
            shown = orders.iter().map(|o| o.id).collect();
            vec![start(third.id, "alpha")]
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(shown, vec![first.id, second.id], "shown the claim, by id");
    nothing_moved(db.clone()).await;
    // The same order twice.
    let refused = db
        .claim_and_begin("w", 2, T0, &mut |_: &[Order]| {
            vec![start(first.id, "alpha"), start(first.id, "beta")]
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    nothing_moved(db.clone()).await;

    // The second goes at once through beta, the first waits (no attempt noted).
    let claimed = db
        .claim_and_begin("w", 2, T0 + 10, &mut |orders: &[Order]| {
            vec![start(orders[1].id, "beta")]
        })
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    assert!(
        claimed
            .iter()
            .all(|o| o.forward_state == ForwardState::Sending)
    );
    let attempts = db.attempts(second.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (
            attempts[0].provider.as_str(),
            attempts[0].outcome.as_str(),
            attempts[0].why.as_deref()
        ),
        ("beta", "pending", Some("cheapest"))
    );
    let order = db.order(second.id).await.expect("order");
    assert_eq!(order.provider.as_deref(), Some("beta"));
    assert_eq!(order.claimed_at, Some(T0 + 10));
    assert!(db.attempts(first.id).await.expect("attempts").is_empty());
    assert_eq!(
        db.order(first.id).await.expect("order").forward_state,
        ForwardState::Sending
    );
    // A pending attempt blocks requeue; the order without one may be requeued.
    assert!(db.requeue(second.id, T0, "x", T0).await.is_err());
    db.requeue(first.id, T0 + 60_000, "x", T0 + 20)
        .await
        .expect("requeue");
    let rest = db
        .claim_for_forwarding("w", 10, T0 + 20)
        .await
        .expect("claim");
    assert_eq!(
        rest.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![third.id]
    );
    // Nothing queued and due: the attempts are not asked for.
    let claimed = db
        .claim_and_begin("w", 10, T0 + 30, &mut |_: &[Order]| {
            panic!("nothing was claimed")
        })
        .await
        .expect("empty claim");
    assert!(claimed.is_empty());
}

/// Issue #12 (7): what an order was placed as (routes, flags) is stored with it and read back
/// unchanged; orders placed without it read back `None`.
pub async fn orders_keep_what_they_were_placed_as(db: Db) {
    let c = funded(&db, "pia", "10").await;
    let placed_as = PlacedAs {
        cancel: true,
        refill: false,
        dripfeed: true,
        routes: vec![
            PlacedRoute {
                provider: "alpha".into(),
                upstream_service: "101".into(),
                upstream_rate: Decimal::new(123_456, 5),
            },
            PlacedRoute {
                provider: "beta".into(),
                upstream_service: "7".into(),
                upstream_rate: Decimal::ONE,
            },
        ],
    };
    let new = NewOrder {
        placed_as: Some(placed_as.clone()),
        ..new_order(c.id, "1")
    };
    let Placed::New(order) = db.place_order(new, T0).await.expect("place") else {
        panic!("a new order");
    };
    assert_eq!(order.placed_as(), Some(&placed_as));
    assert_eq!(
        db.order(order.id).await.expect("order").placed_as(),
        Some(&placed_as)
    );
    let claimed = db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    assert_eq!(claimed[0].placed_as(), Some(&placed_as));
    let legacy = place(&db, c.id, "1").await;
    assert_eq!(db.order(legacy.id).await.expect("order").placed_as(), None);
}

/// `renew_claim` keeps a claim waiting for its rate-limit slot out of `recover_sending`, for
/// its own worker only and only while no attempt is pending (issue #12, 9): a wait is not a
/// call in flight.
pub async fn waiting_claims_are_renewed_not_recovered(db: Db) {
    let c = funded(&db, "ida", "10").await;
    let waiting = place(&db, c.id, "1").await;
    let stale = place(&db, c.id, "1").await;
    let claimed = db.claim_for_forwarding("w", 2, T0).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    assert!(
        !db.renew_claim(waiting.id, "other", T0 + 900)
            .await
            .expect("renew"),
        "another worker's claim is not renewed"
    );
    assert!(
        db.renew_claim(waiting.id, "w", T0 + 900)
            .await
            .expect("renew")
    );
    assert_eq!(
        db.order(waiting.id).await.expect("order").claimed_at,
        Some(T0 + 900)
    );
    // The lease (cut-off T0 + 500) takes only the claim that was not renewed.
    let recovered = db
        .recover_sending(T0 + 500, T0 + 1000)
        .await
        .expect("recover");
    assert_eq!(recovered, vec![stale.id]);
    assert_eq!(
        db.order(waiting.id).await.expect("order").forward_state,
        ForwardState::Sending
    );
    assert!(
        !db.renew_claim(stale.id, "w", T0 + 1000)
            .await
            .expect("renew"),
        "a recovered claim is not renewed"
    );
    // With an attempt pending the lease measures the call: no renewal.
    db.begin_attempt(waiting.id, "alpha", "7", T0 + 1000)
        .await
        .expect("begin");
    assert!(
        !db.renew_claim(waiting.id, "w", T0 + 1100)
            .await
            .expect("renew")
    );
    assert_eq!(
        db.order(waiting.id).await.expect("order").claimed_at,
        Some(T0 + 1000)
    );
    // A queued order is nobody's claim.
    let queued = place(&db, c.id, "1").await;
    assert!(
        !db.renew_claim(queued.id, "w", T0 + 1100)
            .await
            .expect("renew")
    );
}

/// A refund that cannot be paid (here the customer's balance would pass [`Money::MAX`]) rolls
/// the batch back and the batch is applied order by order: that order's status is left
/// unapplied (answered `None`, polled again later), every other order's is recorded.
pub async fn a_failed_refund_leaves_the_rest_of_the_batch_applied(db: Db) {
    let plain = funded(&db, "plain", "10").await;
    let running = sent_order(&db, plain.id, "1", "alpha", "f1").await;
    let rich = funded(&db, "rich", "10").await;
    let stuck = sent_order(&db, rich.id, "1", "alpha", "f2").await;
    let balance = db.customer(rich.id).await.expect("customer").balance;
    db.adjust_balance(
        rich.id,
        LedgerKind::Deposit,
        Money::MAX.checked_sub(balance).expect("room"),
        "to the maximum",
        "admin",
        T0,
    )
    .await
    .expect("deposit");
    let batch = vec![
        ("f1".to_owned(), update(OrderStatus::InProgress, Some(400))),
        ("f2".to_owned(), update(OrderStatus::Canceled, None)),
    ];
    let results = db
        .apply_statuses("alpha", batch, T0 + 2_000)
        .await
        .expect("batch");
    let got: Vec<Option<(OrderId, Option<Money>)>> = results
        .iter()
        .map(|r| r.map(|a| (a.order_id, a.refund)))
        .collect();
    assert_eq!(got, vec![Some((running.id, None)), None]);
    assert_eq!(
        db.order(running.id).await.expect("order").status,
        OrderStatus::InProgress
    );
    let o = db.order(stuck.id).await.expect("order");
    assert_eq!((o.status, o.refunded), (OrderStatus::Pending, Money::ZERO));
    assert_eq!(refund_rows(&db, rich.id, stuck.id).await, 0);
    assert_books_balance(&db, plain.id).await;
    assert_books_balance(&db, rich.id).await;
}

/// `apply_statuses` applies a poller's whole batch: statuses and refunds together, each refund
/// exactly once, unknown ids as `None`, terminal orders untouched; applied twice, nothing more
/// is paid.
pub async fn batched_statuses_pay_each_refund_once(db: Db) {
    let c = funded(&db, "bea", "10").await;
    let progress = sent_order(&db, c.id, "1", "alpha", "b1").await;
    let completed = sent_order(&db, c.id, "1", "alpha", "b2").await;
    let partial = sent_order(&db, c.id, "0.27819", "alpha", "b3").await;
    let canceled = sent_order(&db, c.id, "1", "alpha", "b4").await;
    let finished = sent_order(&db, c.id, "1", "alpha", "b5").await;
    let elsewhere = sent_order(&db, c.id, "1", "beta", "b1").await;
    db.apply_status("alpha", "b5", update(OrderStatus::Completed, Some(0)), T0)
        .await
        .expect("apply")
        .expect("known");
    let batch = vec![
        ("b1".to_owned(), update(OrderStatus::InProgress, Some(400))),
        ("b2".to_owned(), update(OrderStatus::Completed, Some(0))),
        ("b3".to_owned(), update(OrderStatus::Partial, Some(157))),
        ("nope".to_owned(), update(OrderStatus::Completed, Some(0))),
        ("b4".to_owned(), update(OrderStatus::Canceled, None)),
        ("b5".to_owned(), update(OrderStatus::Canceled, None)),
    ];
    let results = db
        .apply_statuses("alpha", batch.clone(), T0 + 2_000)
        .await
        .expect("batch");
    assert_eq!(results.len(), batch.len());
    let ids: Vec<Option<OrderId>> = results.iter().map(|r| r.map(|a| a.order_id)).collect();
    assert_eq!(
        ids,
        vec![
            Some(progress.id),
            Some(completed.id),
            Some(partial.id),
            None,
            Some(canceled.id),
            Some(finished.id)
        ]
    );
    let refunds: Vec<Option<Money>> = results.iter().map(|r| r.and_then(|a| a.refund)).collect();
    assert_eq!(
        refunds,
        vec![
            None,
            None,
            Some(Money::from_units(4_367)),
            None,
            Some(money("1")),
            None
        ]
    );
    let terminal: Vec<bool> = results.iter().flatten().map(|a| a.terminal).collect();
    assert_eq!(terminal, vec![false, true, true, true, true]);

    let o = db.order(progress.id).await.expect("get");
    assert_eq!(
        (o.status.clone(), o.remains, o.start_count, o.next_poll_at),
        (
            OrderStatus::InProgress,
            Some(400),
            Some(3572),
            Some(T0 + 60_000)
        )
    );
    let o = db.order(completed.id).await.expect("get");
    assert_eq!(
        (o.status.clone(), o.next_poll_at),
        (OrderStatus::Completed, None)
    );
    assert_eq!(
        db.order(finished.id).await.expect("get").status,
        OrderStatus::Completed
    );
    let o = db.order(elsewhere.id).await.expect("get");
    assert_eq!(
        o.status,
        OrderStatus::Pending,
        "same upstream id at beta untouched"
    );

    // The same batch again: nothing more is paid, terminal orders stay as they are.
    let again = db
        .apply_statuses("alpha", batch, T0 + 3_000)
        .await
        .expect("batch");
    assert!(
        again.iter().flatten().all(|a| a.refund.is_none()),
        "{again:?}"
    );
    assert_eq!(refund_rows(&db, c.id, partial.id).await, 1);
    assert_eq!(refund_rows(&db, c.id, canceled.id).await, 1);
    assert_eq!(
        db.order(partial.id).await.expect("get").refunded,
        Money::from_units(4_367)
    );
    assert!(
        db.apply_statuses("alpha", Vec::new(), T0)
            .await
            .expect("empty")
            .is_empty()
    );

    // `status` reads the narrow view: the same values as the full order, sorted, the customer's
    // only.
    let views = db
        .customer_order_statuses(c.id, &[partial.id, progress.id, OrderId(i64::MAX)])
        .await
        .expect("views");
    assert_eq!(
        views.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![progress.id, partial.id]
    );
    for view in &views {
        let full = db.order(view.id).await.expect("get");
        assert_eq!(
            (view.quantity, view.charge, view.refunded, &view.status),
            (full.quantity, full.charge, full.refunded, &full.status)
        );
        assert_eq!(
            (view.start_count, view.remains, &view.extra),
            (full.start_count, full.remains, &full.extra)
        );
        assert_eq!(view.net_charge(), full.net_charge());
    }
    let other = funded(&db, "other", "1").await;
    assert!(
        db.customer_order_statuses(other.id, &[partial.id])
            .await
            .expect("views")
            .is_empty(),
        "never another customer's"
    );
    assert_books_balance(&db, c.id).await;
}

pub async fn concurrent_partial_pays_one_refund(db: Db) {
    let c = funded(&db, "oscar", "10").await;
    let order = sent_order(&db, c.id, "3", "alpha", "42").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.apply_status("alpha", "42", update(OrderStatus::Partial, Some(500)), T0)
                .await
        }));
    }
    let mut paid = Money::ZERO;
    for task in tasks {
        let applied = task.await.expect("join").expect("apply").expect("known");
        if let Some(refund) = applied.refund {
            paid = paid.checked_add(refund).expect("add");
        }
    }
    assert_eq!(paid, money("1.5"));
    assert_eq!(refund_rows(&db, c.id, order.id).await, 1);
    assert_eq!(
        db.order(order.id).await.expect("get").refunded,
        money("1.5")
    );
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("8.5"));
    assert_books_balance(&db, c.id).await;
}

pub async fn defer_polls_only_moves_the_schedule(db: Db) {
    let c = funded(&db, "pat", "10").await;
    let order = sent_order(&db, c.id, "1", "alpha", "9").await;
    db.defer_polls(&[order.id], T0 + 99_000)
        .await
        .expect("defer");
    let o = db.order(order.id).await.expect("get");
    assert_eq!(o.next_poll_at, Some(T0 + 99_000));
    assert_eq!(o.status, OrderStatus::Pending);
    assert_eq!(o.forward_state, ForwardState::Sent);
    assert!(
        db.claim_polls(None, 10, T0 + 200_000, T0 + 98_999)
            .await
            .expect("polls")
            .is_empty()
    );
    assert_eq!(
        db.claim_polls(None, 10, T0 + 200_000, T0 + 99_000)
            .await
            .expect("polls")
            .len(),
        1
    );
    db.defer_polls(&[], T0).await.expect("nothing to defer");
}

pub async fn refills(db: Db) {
    let c = funded(&db, "quinn", "10").await;
    let stranger = funded(&db, "rita", "10").await;
    let order = sent_order(&db, c.id, "1", "alpha", "100").await;
    assert_eq!(
        db.create_refill(stranger.id, order.id, T0).await,
        Err(StoreError::NotFound("order"))
    );
    let refill = db.create_refill(c.id, order.id, T0).await.expect("refill");
    assert_eq!(refill.order_id, order.id);
    assert_eq!(refill.customer_id, c.id);
    assert_eq!(refill.provider.as_deref(), Some("alpha"));
    assert_eq!(refill.status, RefillStatus::Pending);
    assert_eq!(refill.forward_state, ForwardState::Queued);
    assert_eq!(
        db.refills_in_state(ForwardState::Queued, 10)
            .await
            .expect("list"),
        vec![refill.clone()]
    );
    let sent = db
        .update_refill(
            refill.id,
            RefillUpdate {
                upstream_refill_id: Some("9001".into()),
                forward_state: Some(ForwardState::Sent),
                ..RefillUpdate::default()
            },
            T0 + 1,
        )
        .await
        .expect("update");
    assert_eq!(sent.upstream_refill_id.as_deref(), Some("9001"));
    assert_eq!(sent.forward_state, ForwardState::Sent);
    assert_eq!(sent.status, RefillStatus::Pending);
    let done = db
        .update_refill(
            refill.id,
            RefillUpdate {
                status: Some(RefillStatus::Completed),
                ..RefillUpdate::default()
            },
            T0 + 2,
        )
        .await
        .expect("update");
    assert_eq!(done.status, RefillStatus::Completed);
    assert_eq!(done.upstream_refill_id.as_deref(), Some("9001"));
    let second = db
        .create_refill(c.id, order.id, T0)
        .await
        .expect("another refill");
    assert!(second.id > refill.id);
    let mine = db
        .customer_refills(c.id, &[refill.id, second.id, RefillId(999)])
        .await
        .expect("refills");
    assert_eq!(mine.len(), 2);
    assert!(
        db.customer_refills(stranger.id, &[refill.id])
            .await
            .expect("refills")
            .is_empty()
    );
    assert!(
        db.refills_in_state(ForwardState::Sent, 10)
            .await
            .expect("list")
            .iter()
            .any(|r| r.id == refill.id)
    );
}

pub async fn cancels(db: Db) {
    let c = funded(&db, "sam", "10").await;
    let stranger = funded(&db, "tom", "10").await;

    // Still queued locally: canceled and refunded at once.
    let queued = place(&db, c.id, "2").await;
    assert_eq!(
        db.request_cancel(stranger.id, queued.id, T0).await,
        Err(StoreError::NotFound("order"))
    );
    let outcome = db
        .request_cancel(c.id, queued.id, T0)
        .await
        .expect("cancel");
    assert_eq!(
        outcome,
        CancelOutcome::CanceledLocally { refund: money("2") }
    );
    let o = db.order(queued.id).await.expect("get");
    assert_eq!(o.status, OrderStatus::Canceled);
    assert_eq!(o.forward_state, ForwardState::Rejected);
    assert!(
        db.claim_for_forwarding("w", 10, T0)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(matches!(
        db.request_cancel(c.id, queued.id, T0).await,
        Err(StoreError::InvalidState(_))
    ));

    // Upstream: a request to forward, one per order; no money moves.
    let upstream = sent_order(&db, c.id, "1", "alpha", "5").await;
    let balance = db.customer(c.id).await.expect("get").balance;
    let first = match db
        .request_cancel(c.id, upstream.id, T0)
        .await
        .expect("cancel")
    {
        CancelOutcome::Requested(request) => request,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.order_id, upstream.id);
    assert_eq!(first.forward_state, ForwardState::Queued);
    let second = db
        .request_cancel(c.id, upstream.id, T0 + 1)
        .await
        .expect("again");
    assert_eq!(second, CancelOutcome::Requested(first.clone()));
    assert_eq!(db.customer(c.id).await.expect("get").balance, balance);
    assert_eq!(
        db.cancels_in_state(ForwardState::Queued, 10)
            .await
            .expect("list"),
        vec![first.clone()]
    );
    let sent = db
        .update_cancel(first.id, ForwardState::Sent, None, T0 + 2)
        .await
        .expect("update");
    assert_eq!(sent.forward_state, ForwardState::Sent);
    let failed = db
        .update_cancel(
            first.id,
            ForwardState::Rejected,
            Some("Order can not be canceled"),
            T0 + 3,
        )
        .await
        .expect("update");
    assert_eq!(failed.error.as_deref(), Some("Order can not be canceled"));
    assert!(
        db.cancels_in_state(ForwardState::Queued, 10)
            .await
            .expect("list")
            .is_empty()
    );

    // Terminal orders cannot be canceled.
    let done = sent_order(&db, c.id, "1", "alpha", "6").await;
    db.apply_status("alpha", "6", update(OrderStatus::Completed, Some(0)), T0)
        .await
        .expect("apply");
    assert!(matches!(
        db.request_cancel(c.id, done.id, T0).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_books_balance(&db, c.id).await;
}

pub async fn service_ids_are_stable(db: Db) {
    let a = db.service_id("alpha", "1").await.expect("id");
    let b = db.service_id("alpha", "2").await.expect("id");
    let c = db.service_id("beta", "1").await.expect("id");
    assert_ne!(a, b);
    assert_ne!(a, c);
    // Issue #12 (7): exposure ids come from their own range, apart from explicit ids (which
    // config validation keeps below 1 000 000, smm_routing::EXPOSURE_ID_BASE).
    for id in [a, b, c] {
        assert!(id.0 >= 1_000_000, "exposure id {id:?} in its own range");
    }
    assert_eq!(db.service_id("alpha", "1").await.expect("id"), a);
    // Concurrent first sight still yields one id.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let db = db.clone();
        tasks.push(tokio::spawn(
            async move { db.service_id("gamma", "77").await },
        ));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("join").expect("id"));
    }
    assert_eq!(ids.len(), 1);
    let all = db.service_ids().await.expect("ids");
    assert_eq!(all.len(), 4);
    assert!(all.contains(&(a, "alpha".to_owned(), "1".to_owned())));
}

pub async fn listing_and_counts(db: Db) {
    let c = funded(&db, "uma", "100").await;
    let d = funded(&db, "vic", "100").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(place(&db, c.id, "1").await.id);
    }
    let theirs = place(&db, d.id, "1").await;
    sent_order(&db, d.id, "1", "alpha", "1").await;

    let page = db
        .list_orders(&OrderFilter {
            customer_id: Some(c.id),
            limit: 3,
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    let rest = db
        .list_orders(&OrderFilter {
            customer_id: Some(c.id),
            before_id: Some(ids[2]),
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        rest.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]]
    );
    // Six still queued, placed at T0; the sent one is not stuck.
    assert_eq!(db.stuck_orders_count(T0 + 1).await, Ok(6));
    assert_eq!(db.stuck_orders_count(T0).await, Ok(0));
    // By service and by the day placed (all were placed at T0; the service is the one
    // `new_order` gives).
    let service = theirs.service_id;
    let count = |filter: OrderFilter| {
        let db = db.clone();
        async move { db.list_orders(&filter).await.expect("list").len() }
    };
    assert_eq!(
        count(OrderFilter {
            service_id: Some(service),
            ..OrderFilter::default()
        })
        .await,
        7
    );
    assert_eq!(
        count(OrderFilter {
            service_id: Some(ServiceId(service.0 + 1)),
            ..OrderFilter::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(OrderFilter {
            created_from: Some(T0),
            created_before: Some(T0 + 1),
            ..OrderFilter::default()
        })
        .await,
        7
    );
    assert_eq!(
        count(OrderFilter {
            created_before: Some(T0),
            ..OrderFilter::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(OrderFilter {
            created_from: Some(T0 + 1),
            ..OrderFilter::default()
        })
        .await,
        0
    );
    let by_provider = db
        .list_orders(&OrderFilter {
            provider: Some("alpha".into()),
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(by_provider.len(), 1);
    let sent = db
        .list_orders(&OrderFilter {
            forward_state: Some(ForwardState::Sent),
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(sent.len(), 1);
    let by_link = db
        .list_orders(&OrderFilter {
            link: Some("https://x.test/p".into()),
            ..OrderFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(by_link.len(), 7);
    assert!(by_link.iter().any(|o| o.id == theirs.id));

    let counts = db.count_by_forward_state().await.expect("counts");
    let count = |state| {
        counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    };
    // sent_order requeued everything it claimed except its own order.
    assert_eq!(count(ForwardState::Queued), 6);
    assert_eq!(count(ForwardState::Sent), 1);
    assert_eq!(count(ForwardState::Ambiguous), 0);
}

pub async fn audit_log(db: Db) {
    db.audit(
        "ops",
        "config.reload",
        "config",
        Some("{\"v\":1}"),
        Some("{\"v\":2}"),
        T0,
    )
    .await
    .expect("audit");
    db.audit("ops", "config.reload", "config", None, None, T0 + 1)
        .await
        .expect("audit");
    let log = db.audit_log(10).await.expect("log");
    assert_eq!(log.len(), 2);
    assert!(log[0].id > log[1].id);
    assert_eq!(log[1].before.as_deref(), Some("{\"v\":1}"));
    assert_eq!(log[1].after.as_deref(), Some("{\"v\":2}"));
    assert_eq!(log[1].actor, "ops");
    assert_eq!(log[1].created_at, T0);

    // Searched by prefixes and time, the same on both databases (case counts; `%` and `_`
    // are plain characters).
    db.audit(
        "console:Ann",
        "order.cancel",
        "order:12",
        None,
        None,
        T0 + 2,
    )
    .await
    .expect("audit");
    db.audit(
        "console:bob",
        "order.refill",
        "order:123",
        None,
        None,
        T0 + 3,
    )
    .await
    .expect("audit");
    db.audit("cli:%_", "config.edit", "config", None, None, T0 + 4)
        .await
        .expect("audit");
    let found = |filter: AuditFilter| {
        let db = db.clone();
        async move {
            db.search_audit(&AuditFilter {
                limit: 100,
                ..filter
            })
            .await
            .expect("search")
            .into_iter()
            .map(|e| e.created_at - T0)
            .collect::<Vec<_>>()
        }
    };
    let text = |t: &str| Some(t.to_owned());
    assert_eq!(
        found(AuditFilter {
            actor: text("console:"),
            ..AuditFilter::default()
        })
        .await,
        [3, 2]
    );
    assert_eq!(
        found(AuditFilter {
            actor: text("console:a"),
            ..AuditFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        found(AuditFilter {
            actor: text("cli:%"),
            ..AuditFilter::default()
        })
        .await,
        [4]
    );
    assert_eq!(
        found(AuditFilter {
            actor: text("cli:_x"),
            ..AuditFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        found(AuditFilter {
            target: text("order:12"),
            ..AuditFilter::default()
        })
        .await,
        [3, 2]
    );
    assert_eq!(
        found(AuditFilter {
            target: text("order:123"),
            ..AuditFilter::default()
        })
        .await,
        [3]
    );
    assert_eq!(
        found(AuditFilter {
            action: text("config."),
            ..AuditFilter::default()
        })
        .await,
        [4, 1, 0]
    );
    assert_eq!(
        found(AuditFilter {
            from: Some(T0 + 1),
            before: Some(T0 + 3),
            ..AuditFilter::default()
        })
        .await,
        [2, 1]
    );
}

pub async fn provider_catalogs_are_kept(db: Db) {
    assert!(db.provider_catalogs().await.expect("list").is_empty());
    db.save_provider_catalog("beta", "[2]", T0)
        .await
        .expect("save");
    db.save_provider_catalog("alpha", "[1]", T0)
        .await
        .expect("save");
    db.save_provider_catalog("alpha", "[1,3]", T0 + 5)
        .await
        .expect("replace");
    assert_eq!(
        db.provider_catalogs().await.expect("list"),
        vec![
            ("alpha".to_owned(), "[1,3]".to_owned(), T0 + 5),
            ("beta".to_owned(), "[2]".to_owned(), T0),
        ]
    );
}

/// Places `n` orders and takes them all to `sent` at `alpha` (upstream ids `up-0`, `up-1`, ...),
/// without the one-at-a-time claims of [`sent_order`].
async fn sent_orders(db: &Db, customer: CustomerId, n: usize) -> Vec<Order> {
    for _ in 0..n {
        place(db, customer, "0.01").await;
    }
    let claimed = db
        .claim_for_forwarding("setup", u32::try_from(n).expect("n fits"), T0)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), n);
    let mut sent = Vec::with_capacity(n);
    for (i, order) in claimed.iter().enumerate() {
        db.begin_attempt(order.id, "alpha", "svc-1", T0)
            .await
            .expect("begin");
        sent.push(
            db.finish_attempt(
                order.id,
                ForwardOutcome::Sent {
                    upstream_order_id: format!("up-{i}"),
                    upstream_cost: None,
                    next_poll_at: T0 + 1_000,
                },
                T0,
            )
            .await
            .expect("sent"),
        );
    }
    sent
}

/// Two workers claim from one queue at once, in batches of `batch`, until it is empty; each
/// returns the ids it got. Every claimed row must be `sending`.
async fn claim_race<F, Fut>(claim: F, batch: u32) -> (Vec<i64>, Vec<i64>)
where
    F: Fn(&'static str, u32) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<(i64, ForwardState)>> + Send,
{
    let worker = |name: &'static str| {
        let claim = claim.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(name, batch).await;
                if got.is_empty() {
                    return mine;
                }
                assert!(
                    got.len() <= batch as usize,
                    "a claim took more than its limit"
                );
                for (_, state) in &got {
                    assert_eq!(*state, ForwardState::Sending);
                }
                mine.extend(got.into_iter().map(|(id, _)| id));
                tokio::task::yield_now().await;
            }
        })
    };
    let (a, b) = (worker("a"), worker("b"));
    (a.await.expect("worker a"), b.await.expect("worker b"))
}

/// Asserts that two workers' claims cover `expected` ids, each exactly once.
fn assert_each_claimed_once(a: &[i64], b: &[i64], expected: usize, what: &str) {
    let all: HashSet<i64> = a.iter().chain(b).copied().collect();
    assert_eq!(a.len() + b.len(), expected, "a {what} was claimed twice");
    assert_eq!(all.len(), expected, "a {what} was never claimed");
}

pub async fn concurrent_refill_claims_take_each_once(db: Db) {
    let c = funded(&db, "uma", "100").await;
    // One open refill per order: 500 orders, one refill each.
    let orders = sent_orders(&db, c.id, 500).await;
    let mut refills = Vec::new();
    for order in &orders {
        refills.push(db.create_refill(c.id, order.id, T0).await.expect("refill"));
    }
    assert_eq!(refills.len(), 500);

    // A claim takes at most `limit`, oldest first, and marks them sending.
    let few = db.claim_refills("probe", 3, T0).await.expect("claim");
    assert_eq!(
        few.iter().map(|r| r.id).collect::<Vec<_>>(),
        refills[..3].iter().map(|r| r.id).collect::<Vec<_>>()
    );
    assert!(few.iter().all(|r| r.forward_state == ForwardState::Sending));
    // Handing a claim back (its provider is gone, say) queues it for the next claim.
    for refill in &few {
        db.update_refill(
            refill.id,
            RefillUpdate {
                forward_state: Some(ForwardState::Queued),
                ..RefillUpdate::default()
            },
            T0,
        )
        .await
        .expect("hand back");
    }

    let claim = {
        let db = db.clone();
        move |worker: &'static str, limit: u32| {
            let db = db.clone();
            async move {
                db.claim_refills(worker, limit, T0 + 1)
                    .await
                    .expect("claim refills")
                    .into_iter()
                    .map(|r| (r.id.0, r.forward_state))
                    .collect::<Vec<_>>()
            }
        }
    };
    let (a, b) = claim_race(claim, 23).await;
    assert_each_claimed_once(&a, &b, 500, "refill");
    assert!(
        db.claim_refills("c", 10, T0 + 2)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        db.refills_in_state(ForwardState::Queued, 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        db.refills_in_state(ForwardState::Sending, 1000)
            .await
            .expect("list")
            .len(),
        500
    );
    // Claims do not touch money.
    assert_books_balance(&db, c.id).await;
}

pub async fn concurrent_cancel_claims_take_each_once(db: Db) {
    let c = funded(&db, "vic", "100").await;
    let orders = sent_orders(&db, c.id, 500).await;
    let balance = db.customer(c.id).await.expect("get").balance;
    for order in &orders {
        match db.request_cancel(c.id, order.id, T0).await.expect("cancel") {
            CancelOutcome::Requested(request) => {
                assert_eq!(request.forward_state, ForwardState::Queued);
            }
            other => panic!("expected a cancel request, got {other:?}"),
        }
    }
    let few = db.claim_cancels("probe", 3, T0).await.expect("claim");
    assert_eq!(few.len(), 3);
    assert!(few.iter().all(|r| r.forward_state == ForwardState::Sending));
    assert_eq!(
        few.iter().map(|r| r.order_id).collect::<Vec<_>>(),
        orders[..3].iter().map(|o| o.id).collect::<Vec<_>>(),
        "oldest first"
    );
    for request in &few {
        db.update_cancel(request.id, ForwardState::Queued, None, T0)
            .await
            .expect("hand back");
    }

    let claim = {
        let db = db.clone();
        move |worker: &'static str, limit: u32| {
            let db = db.clone();
            async move {
                db.claim_cancels(worker, limit, T0 + 1)
                    .await
                    .expect("claim cancels")
                    .into_iter()
                    .map(|r| (r.id, r.forward_state))
                    .collect::<Vec<_>>()
            }
        }
    };
    let (a, b) = claim_race(claim, 23).await;
    assert_each_claimed_once(&a, &b, 500, "cancel request");
    assert!(
        db.claim_cancels("c", 10, T0 + 2)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        db.cancels_in_state(ForwardState::Sending, 1000)
            .await
            .expect("list")
            .len(),
        500
    );
    // A claimed (`sending`) request is still the order's one request: asking again returns it.
    match db
        .request_cancel(c.id, orders[0].id, T0 + 3)
        .await
        .expect("again")
    {
        CancelOutcome::Requested(request) => {
            assert_eq!(request.forward_state, ForwardState::Sending);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.customer(c.id).await.expect("get").balance, balance);
    assert_books_balance(&db, c.id).await;
}

pub async fn stale_refill_and_cancel_claims_become_ambiguous(db: Db) {
    let c = funded(&db, "walt", "10").await;
    let orders = sent_orders(&db, c.id, 4).await;
    let refill = |order: OrderId| {
        let db = db.clone();
        async move { db.create_refill(c.id, order, T0).await.expect("refill") }
    };
    let cancel = |order: OrderId| {
        let db = db.clone();
        async move {
            match db.request_cancel(c.id, order, T0).await.expect("cancel") {
                CancelOutcome::Requested(request) => request,
                other => panic!("{other:?}"),
            }
        }
    };

    // A worker that dies after claiming, one that is alive, and a row marked `sending` by a
    // gateway that predates claims (no claimed_at: its updated_at counts).
    let dead_refill = refill(orders[0].id).await;
    let dead_cancel = cancel(orders[0].id).await;
    assert_eq!(
        db.claim_refills("dead-worker", 1, T0).await.expect("claim")[0].id,
        dead_refill.id
    );
    assert_eq!(
        db.claim_cancels("dead-worker", 1, T0).await.expect("claim")[0].id,
        dead_cancel.id
    );
    let live_refill = refill(orders[1].id).await;
    let live_cancel = cancel(orders[1].id).await;
    db.claim_refills("live-worker", 10, T0 + 10_000)
        .await
        .expect("claim");
    db.claim_cancels("live-worker", 10, T0 + 10_000)
        .await
        .expect("claim");
    let legacy_refill = refill(orders[2].id).await;
    let legacy_cancel = cancel(orders[2].id).await;
    db.update_refill(
        legacy_refill.id,
        RefillUpdate {
            forward_state: Some(ForwardState::Sending),
            ..RefillUpdate::default()
        },
        T0 + 1,
    )
    .await
    .expect("mark");
    db.update_cancel(legacy_cancel.id, ForwardState::Sending, None, T0 + 1)
        .await
        .expect("mark");
    // Queued and finished rows are never touched.
    let queued_refill = refill(orders[3].id).await;
    let queued_cancel = cancel(orders[3].id).await;

    let refills = db
        .recover_sending_refills(T0 + 5_000, T0 + 20_000)
        .await
        .expect("recover refills");
    assert_eq!(refills, vec![dead_refill.id, legacy_refill.id]);
    let cancels = db
        .recover_sending_cancels(T0 + 5_000, T0 + 20_000)
        .await
        .expect("recover cancels");
    assert_eq!(cancels, vec![dead_cancel.id, legacy_cancel.id]);

    let mine = db
        .customer_refills(
            c.id,
            &[
                dead_refill.id,
                live_refill.id,
                legacy_refill.id,
                queued_refill.id,
            ],
        )
        .await
        .expect("refills");
    let state = |id: RefillId| {
        mine.iter()
            .find(|r| r.id == id)
            .map(|r| (r.forward_state, r.error.clone()))
            .expect("listed")
    };
    let (dead_state, dead_error) = state(dead_refill.id);
    assert_eq!(dead_state, ForwardState::Ambiguous);
    assert!(
        dead_error
            .as_deref()
            .is_some_and(|e| e.contains("dead-worker")),
        "the error names the worker that died: {dead_error:?}"
    );
    assert_eq!(state(live_refill.id).0, ForwardState::Sending);
    assert_eq!(state(legacy_refill.id).0, ForwardState::Ambiguous);
    assert_eq!(state(queued_refill.id).0, ForwardState::Queued);

    let ambiguous = db
        .cancels_in_state(ForwardState::Ambiguous, 10)
        .await
        .expect("list");
    assert_eq!(
        ambiguous.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![dead_cancel.id, legacy_cancel.id]
    );
    assert!(
        ambiguous[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("dead-worker"))
    );
    assert_eq!(
        db.cancels_in_state(ForwardState::Sending, 10)
            .await
            .expect("list")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![live_cancel.id]
    );

    // Never sent again: only the queued ones are claimable, and a second recovery finds nothing.
    assert_eq!(
        db.claim_refills("w", 10, T0 + 30_000)
            .await
            .expect("claim")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![queued_refill.id]
    );
    assert_eq!(
        db.claim_cancels("w", 10, T0 + 30_000)
            .await
            .expect("claim")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![queued_cancel.id]
    );
    assert!(
        db.recover_sending_refills(T0 + 5_000, T0 + 40_000)
            .await
            .expect("recover")
            .is_empty()
    );
    assert!(
        db.recover_sending_cancels(T0 + 5_000, T0 + 40_000)
            .await
            .expect("recover")
            .is_empty()
    );
    assert_books_balance(&db, c.id).await;
}

pub async fn requeue_and_reject_refuse_an_attempt_in_flight(db: Db) {
    let c = funded(&db, "xena", "10").await;
    let order = place(&db, c.id, "2").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.begin_attempt(order.id, "alpha", "11", T0)
        .await
        .expect("begin");

    // The pending attempt may have reached the upstream: neither queued again nor refunded.
    assert!(matches!(
        db.requeue(order.id, T0, "unreachable", T0 + 1).await,
        Err(StoreError::InvalidState(_))
    ));
    assert!(matches!(
        db.reject_order(order.id, "rejected", T0 + 1).await,
        Err(StoreError::InvalidState(_))
    ));
    let unchanged = db.order(order.id).await.expect("get");
    assert_eq!(unchanged.forward_state, ForwardState::Sending);
    assert_eq!(unchanged.refunded, Money::ZERO);
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("8"));
    assert_eq!(refund_rows(&db, c.id, order.id).await, 0);

    // Once the attempt is closed (the route did not take it), both are allowed.
    db.finish_attempt(
        order.id,
        ForwardOutcome::Failed {
            not_sent: true,
            detail: "connection refused".into(),
        },
        T0 + 2,
    )
    .await
    .expect("finish");
    db.requeue(order.id, T0 + 3, "unreachable", T0 + 2)
        .await
        .expect("requeue");
    assert_eq!(
        db.order(order.id).await.expect("get").forward_state,
        ForwardState::Queued
    );
    db.claim_for_forwarding("w", 10, T0 + 3)
        .await
        .expect("claim");
    db.begin_attempt(order.id, "alpha", "11", T0 + 3)
        .await
        .expect("begin");
    assert!(matches!(
        db.reject_order(order.id, "rejected", T0 + 4).await,
        Err(StoreError::InvalidState(_))
    ));
    db.finish_attempt(
        order.id,
        ForwardOutcome::Failed {
            not_sent: false,
            detail: "Incorrect service ID".into(),
        },
        T0 + 4,
    )
    .await
    .expect("finish");
    assert_eq!(
        db.reject_order(order.id, "rejected by every route", T0 + 5)
            .await
            .expect("reject"),
        money("2")
    );
    assert_eq!(refund_rows(&db, c.id, order.id).await, 1);
    assert_books_balance(&db, c.id).await;
}

// ---- ported from the backends' own tests ---------------------------------------------------

pub async fn concurrent_duplicate_keys_place_one_order(db: Db) {
    let c = funded(&db, "dup-keys", "1.00000").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut new = new_order(c.id, "0.01000");
                new.idempotency_key = Some("k".into());
                db.place_order(new, T0).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut placed_new = 0;
    for task in tasks {
        let placed = task.await.expect("task").expect("place");
        if matches!(placed, Placed::New(_)) {
            placed_new += 1;
        }
        ids.insert(placed.order().id);
    }
    assert_eq!((placed_new, ids.len()), (1, 1));
    assert_eq!(db.customer(c.id).await.expect("c").balance, money("0.99"));
    assert_books_balance(&db, c.id).await;
}

pub async fn claims_respect_the_limit_and_recovery_spares_fresh_claims(db: Db) {
    let c = funded(&db, "limits", "1.00000").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(place(&db, c.id, "0.00005").await.id);
    }
    let first = db.claim_for_forwarding("old", 1, T0).await.expect("claim");
    assert_eq!(first.iter().map(|o| o.id).collect::<Vec<_>>(), vec![ids[0]]);
    let next = db
        .claim_for_forwarding("new", 2, T0 + 10_000)
        .await
        .expect("claim");
    assert_eq!(
        next.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[1], ids[2]]
    );
    assert_eq!(
        db.recover_sending(T0 + 5_000, T0 + 20_000).await,
        Ok(vec![ids[0]])
    );
    assert_eq!(
        db.order(ids[1]).await.expect("order").forward_state,
        ForwardState::Sending
    );
    // Polls too: two due, one leased per claim, in due order.
    for (i, id) in ids[1..3].iter().enumerate() {
        db.begin_attempt(*id, "prov", "s", T0).await.expect("begin");
        db.finish_attempt(
            *id,
            ForwardOutcome::Sent {
                upstream_order_id: format!("P-{i}"),
                upstream_cost: None,
                next_poll_at: T0 + i64::try_from(i).expect("small"),
            },
            T0,
        )
        .await
        .expect("sent");
    }
    let polls = db
        .claim_polls(None, 1, T0 + 60_000, T0 + 10)
        .await
        .expect("polls");
    assert_eq!(
        polls.iter().map(|p| p.order_id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let polls = db
        .claim_polls(None, 5, T0 + 60_000, T0 + 10)
        .await
        .expect("polls");
    assert_eq!(
        polls.iter().map(|p| p.order_id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
}

// ---- the drifts between the two backends (issue #11), each pinned on both -------------------

/// The ledger reasons a reseller reads are the same words on every database, and name the order.
pub async fn ledger_reasons_are_the_same_everywhere(db: Db) {
    let c = funded(&db, "reasons", "10.00000").await;
    // A Partial refund.
    let partial = sent_order(&db, c.id, "1.00000", "p1", "R-1").await;
    db.apply_status("p1", "R-1", update(OrderStatus::Partial, Some(250)), T0)
        .await
        .expect("partial");
    // A Canceled refund.
    let canceled = sent_order(&db, c.id, "1.00000", "p1", "R-2").await;
    db.apply_status("p1", "R-2", update(OrderStatus::Canceled, None), T0)
        .await
        .expect("canceled");
    // A cancel before forwarding.
    let local = place(&db, c.id, "1.00000").await;
    db.request_cancel(c.id, local.id, T0).await.expect("cancel");
    // A rejection.
    let rejected = place(&db, c.id, "1.00000").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.reject_order(rejected.id, "Incorrect link", T0)
        .await
        .expect("reject");
    // An ambiguous order canceled by an admin.
    let ambiguous = place(&db, c.id, "1.00000").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.begin_attempt(ambiguous.id, "p1", "s", T0)
        .await
        .expect("begin");
    db.finish_attempt(
        ambiguous.id,
        ForwardOutcome::Ambiguous {
            detail: "timeout".into(),
        },
        T0,
    )
    .await
    .expect("ambiguous");
    db.cancel_ambiguous(ambiguous.id, "not at the upstream", "ops", T0)
        .await
        .expect("cancel ambiguous");

    let ledger = db.ledger(c.id, None, 100).await.expect("ledger");
    let reason = |order: OrderId| {
        ledger
            .iter()
            .find(|e| e.kind == LedgerKind::Refund && e.order_id == Some(order))
            .map(|e| e.reason.clone())
            .expect("a refund row")
    };
    assert_eq!(
        reason(partial.id),
        format!(
            "refund: Partial, remains 250 of 1000 (order {})",
            partial.id
        )
    );
    assert_eq!(
        reason(canceled.id),
        format!("refund: Canceled (order {})", canceled.id)
    );
    assert_eq!(
        reason(local.id),
        format!("refund: order {} canceled before forwarding", local.id)
    );
    assert_eq!(
        reason(rejected.id),
        format!("refund: order {} rejected: Incorrect link", rejected.id)
    );
    assert_eq!(
        reason(ambiguous.id),
        format!(
            "refund: order {} canceled by ops: not at the upstream",
            ambiguous.id
        )
    );
    let charge = ledger
        .iter()
        .find(|e| e.kind == LedgerKind::Charge && e.order_id == Some(partial.id))
        .expect("charge row");
    assert_eq!(charge.reason, format!("order {}", partial.id));
    assert_books_balance(&db, c.id).await;
}

/// The audit log records the same JSON on every database, including the ledger row an
/// adjustment wrote and the charge of an order an admin changed.
pub async fn audit_json_is_the_same_everywhere(db: Db) {
    let c = funded(&db, "audit-json", "5.00000").await;
    let entry = db
        .adjust_balance(
            c.id,
            LedgerKind::Adjustment,
            money("-1.50000"),
            "goodwill",
            "ops",
            T0,
        )
        .await
        .expect("debit");
    let order = place(&db, c.id, "1.00000").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.begin_attempt(order.id, "p1", "s", T0)
        .await
        .expect("begin");
    db.finish_attempt(
        order.id,
        ForwardOutcome::Ambiguous {
            detail: "timeout".into(),
        },
        T0,
    )
    .await
    .expect("ambiguous");
    db.attach_upstream_order(order.id, "p1", "A-1", "ops", T0)
        .await
        .expect("attach");
    let log = db.audit_log(100).await.expect("audit");
    let find = |action: &str| {
        log.iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("{action} audited"))
            .clone()
    };
    let json = |text: &Option<String>| -> serde_json::Value {
        serde_json::from_str(text.as_deref().expect("json")).expect("valid json")
    };
    let debit = find("customer.debit");
    assert_eq!(
        json(&debit.before),
        serde_json::json!({ "balance": "5.00000" })
    );
    assert_eq!(
        json(&debit.after),
        serde_json::json!({
            "balance": "3.50000",
            "amount": "-1.50000",
            "kind": "adjustment",
            "reason": "goodwill",
            "ledger_id": entry.id,
        })
    );
    let attach = find("order.attach_upstream");
    assert_eq!(
        json(&attach.before),
        serde_json::json!({
            "forward_state": "ambiguous",
            "status": "Pending",
            "provider": "p1",
            "upstream_order_id": null,
            "charge": "1.00000",
            "refunded": "0.00000",
        })
    );
    assert_eq!(json(&attach.after)["upstream_order_id"], "A-1");
    assert_eq!(json(&attach.after)["charge"], "1.00000");
}

/// A key another customer holds is refused in words, never with a raw constraint name.
pub async fn rotate_key_conflict_is_worded(db: Db) {
    let a = customer(&db, "rot-a").await;
    let b = customer(&db, "rot-b").await;
    let taken = hash_api_key("key-of-rot-a");
    let refused = db.rotate_key(b.id, &taken, "key-of", "ops", T0).await;
    assert_eq!(
        refused,
        Err(StoreError::Conflict(
            "the key is already in use by a customer".into()
        ))
    );
    assert_eq!(db.customer(a.id).await.expect("a").key_prefix, "key-of");
}

/// Rates: zero is a price, anything signed negative (a negative zero too) is refused, on every
/// database.
pub async fn customer_rates_refuse_negative_zero(db: Db) {
    let c = customer(&db, "rates").await;
    let mut negative_zero = Decimal::new(0, 2);
    negative_zero.set_sign_negative(true);
    for rate in [negative_zero, Decimal::new(-15, 1)] {
        let bad = rate;
        assert!(
            matches!(
                db.set_customer_rate(c.id, ServiceId(3), Some(rate), "ops", T0)
                    .await,
                Err(StoreError::Invalid(_))
            ),
            "{bad} accepted"
        );
    }
    db.set_customer_rate(c.id, ServiceId(3), Some(Decimal::ZERO), "ops", T0)
        .await
        .expect("zero is a rate");
    assert_eq!(
        db.customer_rates(c.id).await.expect("rates"),
        vec![(ServiceId(3), Decimal::ZERO)]
    );
}

/// Finishing an attempt closes every pending attempt of the order, not only the latest: an
/// attempt row left `pending` would block a requeue forever.
pub async fn finishing_closes_every_pending_attempt(db: Db) {
    let c = funded(&db, "attempts", "1.00000").await;
    let order = place(&db, c.id, "0.10000").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.begin_attempt(order.id, "p1", "s1", T0)
        .await
        .expect("first");
    db.begin_attempt(order.id, "p2", "s2", T0 + 1)
        .await
        .expect("second");
    db.finish_attempt(
        order.id,
        ForwardOutcome::Failed {
            not_sent: true,
            detail: "connection refused".into(),
        },
        T0 + 2,
    )
    .await
    .expect("finish");
    let attempts = db.attempts(order.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts.iter().all(|a| a.outcome != "pending"),
        "{attempts:?}"
    );
    // Nothing in flight: the order can be requeued.
    db.requeue(order.id, T0 + 3, "next route", T0 + 3)
        .await
        .expect("requeue");
}

// ---- refunds per order type (issue #12) -------------------------------------------------------

/// Places an order with `params` (an `OrderRequest` as JSON) and `units`, and takes it to `sent`.
async fn sent_typed(
    db: &Db,
    customer: CustomerId,
    params: &str,
    units: u64,
    upstream: &str,
    upstream_cost: Option<Decimal>,
) -> Order {
    let mut new = new_order(customer, "1.00000");
    new.params = params.into();
    new.units = units;
    new.quantity = None;
    let order = match db.place_order(new, T0).await {
        Ok(Placed::New(order)) => order,
        other => panic!("expected a new order, got {other:?}"),
    };
    let claimed = db.claim_for_forwarding("w", 1000, T0).await.expect("claim");
    for other in claimed.iter().filter(|o| o.id != order.id) {
        db.requeue(other.id, T0, "not this test's", T0)
            .await
            .expect("requeue");
    }
    db.begin_attempt(order.id, "p1", "svc", T0)
        .await
        .expect("begin");
    db.finish_attempt(
        order.id,
        ForwardOutcome::Sent {
            upstream_order_id: upstream.into(),
            upstream_cost,
            next_poll_at: T0 + 1_000,
        },
        T0,
    )
    .await
    .expect("sent")
}

fn report(status: OrderStatus, remains: Option<i64>, delivery: Delivery) -> StatusUpdate {
    StatusUpdate {
        delivery,
        ..update(status, remains)
    }
}

const SUBSCRIPTION_10: &str = r#"{"type":"subscriptions","username":"u","min":10,"max":100,"delay":0,"posts":10,"old_posts":null,"expiry":null}"#;
const DRIP_3: &str = r#"{"type":"default","link":"https://x.test/p","quantity":100,"drip_feed":{"runs":3,"interval":10}}"#;
const PACKAGE: &str = r#"{"type":"package","link":"https://x.test/p"}"#;

async fn refunded_for(db: &Db, order: &Order, status: StatusUpdate) -> Money {
    db.apply_status(
        order.provider.as_deref().expect("provider"),
        order.upstream_order_id.as_deref().expect("upstream id"),
        status,
        T0 + 5,
    )
    .await
    .expect("apply")
    .expect("known order");
    db.order(order.id).await.expect("order").refunded
}

/// Subscriptions refund the posts not served: Canceled after 9 of 10 posts pays a tenth,
/// Expired after 2 of 10 pays eight tenths, Completed pays nothing.
pub async fn subscriptions_refund_the_posts_not_served(db: Db) {
    let c = funded(&db, "subs", "10.00000").await;
    let canceled = sent_typed(&db, c.id, SUBSCRIPTION_10, 1000, "S-1", None).await;
    let posts = |n| Delivery {
        posts: Some(n),
        ..Delivery::default()
    };
    assert_eq!(
        refunded_for(
            &db,
            &canceled,
            report(OrderStatus::Canceled, None, posts(9))
        )
        .await,
        money("0.10000")
    );
    let expired = sent_typed(&db, c.id, SUBSCRIPTION_10, 1000, "S-2", None).await;
    assert_eq!(
        refunded_for(&db, &expired, report(OrderStatus::Expired, None, posts(2))).await,
        money("0.80000")
    );
    let completed = sent_typed(&db, c.id, SUBSCRIPTION_10, 1000, "S-3", None).await;
    assert_eq!(
        refunded_for(
            &db,
            &completed,
            report(OrderStatus::Completed, None, posts(10))
        )
        .await,
        Money::ZERO
    );
    // Stopped without a post count: no guess, a person decides.
    let unknown = sent_typed(&db, c.id, SUBSCRIPTION_10, 1000, "S-4", None).await;
    assert_eq!(
        refunded_for(
            &db,
            &unknown,
            report(OrderStatus::Canceled, None, Delivery::default())
        )
        .await,
        Money::ZERO
    );
    let listed = db.attention_orders(10).await.expect("attention");
    assert_eq!(
        listed.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![unknown.id]
    );
    assert_eq!(db.attention_count().await, Ok(1));
    assert_books_balance(&db, c.id).await;
}

/// Drip-feed parents refund the runs not done, whether the upstream says Canceled or a Partial
/// that reports only runs.
pub async fn drip_feed_refunds_follow_runs(db: Db) {
    let c = funded(&db, "drip", "10.00000").await;
    let runs = |n| Delivery {
        runs: Some(n),
        ..Delivery::default()
    };
    let canceled = sent_typed(&db, c.id, DRIP_3, 300, "D-1", None).await;
    assert_eq!(
        refunded_for(&db, &canceled, report(OrderStatus::Canceled, None, runs(2))).await,
        money("0.33333")
    );
    let partial = sent_typed(&db, c.id, DRIP_3, 300, "D-2", None).await;
    assert_eq!(
        refunded_for(&db, &partial, report(OrderStatus::Partial, None, runs(1))).await,
        money("0.66666")
    );
    // remains, when given, is the finer signal.
    let by_remains = sent_typed(&db, c.id, DRIP_3, 300, "D-3", None).await;
    assert_eq!(
        refunded_for(
            &db,
            &by_remains,
            report(OrderStatus::Partial, Some(30), runs(2))
        )
        .await,
        money("0.10000")
    );
    // Canceled before any run: the whole charge.
    let untouched = sent_typed(&db, c.id, DRIP_3, 300, "D-4", None).await;
    assert_eq!(
        refunded_for(
            &db,
            &untouched,
            report(OrderStatus::Canceled, None, runs(0))
        )
        .await,
        money("1.00000")
    );
    assert_books_balance(&db, c.id).await;
}

/// A Partial without `remains` uses the upstream's own charge against the expected cost; when
/// no signal tells the share, the order goes on the attention list and is settled by a person,
/// once, audited and ledgered.
pub async fn partials_without_remains_use_the_charge_or_wait_for_a_person(db: Db) {
    let c = funded(&db, "attention", "10.00000").await;
    let charge = |c: &str| Delivery {
        charge: Some(c.parse().expect("decimal")),
        ..Delivery::default()
    };
    // A plain Package: the upstream charged 2.00 and now shows 0.50: three quarters undelivered.
    let package = sent_typed(&db, c.id, PACKAGE, 0, "P-1", Some(Decimal::new(2, 0))).await;
    assert_eq!(
        refunded_for(
            &db,
            &package,
            report(OrderStatus::Partial, None, charge("0.50"))
        )
        .await,
        money("0.75000")
    );
    // A Default order without remains, with the charge signal.
    let units = sent_order(&db, c.id, "1.00000", "p1", "U-1").await; // cost 0.12345
    assert_eq!(
        refunded_for(
            &db,
            &units,
            report(OrderStatus::Partial, None, charge("0.06172"))
        )
        .await,
        money("0.50004")
    );
    // No signal at all: no refund, on the attention list.
    let blind = sent_typed(&db, c.id, PACKAGE, 0, "P-2", None).await;
    assert_eq!(
        refunded_for(
            &db,
            &blind,
            report(OrderStatus::Partial, None, Delivery::default())
        )
        .await,
        Money::ZERO
    );
    let waiting = db.attention_orders(10).await.expect("attention");
    assert_eq!(
        waiting.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![blind.id]
    );
    assert!(
        waiting[0]
            .attention
            .as_deref()
            .is_some_and(|a| a.starts_with("Partial"))
    );
    // Bad settlements change nothing.
    assert!(matches!(
        db.settle_attention(blind.id, money("1.00001"), "too much", "ops", T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        db.settle_attention(units.id, money("0.10000"), "not waiting", "ops", T0)
            .await,
        Err(StoreError::InvalidState(_))
    ));
    let paid = db
        .settle_attention(
            blind.id,
            money("0.40000"),
            "upstream says 60% delivered",
            "ops",
            T0,
        )
        .await
        .expect("settle");
    assert_eq!(paid, money("0.40000"));
    let settled = db.order(blind.id).await.expect("order");
    assert_eq!(
        (settled.refunded, settled.attention),
        (money("0.40000"), None)
    );
    assert!(db.attention_orders(10).await.expect("attention").is_empty());
    assert_eq!(db.attention_count().await, Ok(0));
    // Once: it is off the list now.
    assert!(
        db.settle_attention(blind.id, money("0.10000"), "again", "ops", T0)
            .await
            .is_err()
    );
    assert!(
        db.audit_log(50)
            .await
            .expect("audit")
            .iter()
            .any(|e| e.action == "order.settle" && e.actor == "ops")
    );
    assert_books_balance(&db, c.id).await;
}

/// No order is ever placed for nothing.
pub async fn free_orders_are_refused(db: Db) {
    let c = funded(&db, "free", "1.00000").await;
    assert!(matches!(
        db.place_order(new_order(c.id, "0"), T0).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        db.list_orders(&OrderFilter::default())
            .await
            .expect("orders")
            .is_empty()
    );
    assert_books_balance(&db, c.id).await;
}

/// Claims `order` for forwarding and begins its attempt at alpha: the order is `sending`.
async fn sending_order(db: &Db, customer: CustomerId, charge: &str) -> Order {
    let order = place(db, customer, charge).await;
    let claimed = db.claim_for_forwarding("w", 1000, T0).await.expect("claim");
    assert!(claimed.iter().any(|o| o.id == order.id));
    for other in claimed.iter().filter(|o| o.id != order.id) {
        db.requeue(other.id, T0, "not this test's", T0)
            .await
            .expect("requeue");
    }
    db.begin_attempt(order.id, "alpha", "svc-1", T0)
        .await
        .expect("begin");
    let order = db.order(order.id).await.expect("get");
    assert_eq!(order.forward_state, ForwardState::Sending);
    order
}

fn requested(outcome: CancelOutcome) -> CancelRequest {
    match outcome {
        CancelOutcome::Requested(request) => request,
        other => panic!("expected a cancel request, got {other:?}"),
    }
}

/// A cancel that arrives while its order is `sending` (or `ambiguous`) is recorded, not
/// refused, and waits for the send's outcome: forwarded once the order is `sent`; closed (the
/// order refunded in full exactly once) when every route refused it or it went back to the
/// queue. A repeat after the upstream refused a cancel gets that refusal back.
pub async fn cancels_of_orders_in_flight_wait_for_the_send(db: Db) {
    let c = funded(&db, "ursula", "20").await;

    // Sent after all: the request is forwarded then, and only then.
    let a = sending_order(&db, c.id, "1").await;
    let request = requested(db.request_cancel(c.id, a.id, T0).await.expect("cancel"));
    assert_eq!(request.forward_state, ForwardState::Queued);
    assert_eq!(
        requested(db.request_cancel(c.id, a.id, T0 + 1).await.expect("again")),
        request
    );
    assert!(
        db.claim_cancels("r", 10, T0)
            .await
            .expect("claim")
            .is_empty(),
        "not forwarded before the order is upstream"
    );
    assert!(
        db.close_unsendable_cancels(10, T0)
            .await
            .expect("close")
            .is_empty()
    );
    db.finish_attempt(
        a.id,
        ForwardOutcome::Sent {
            upstream_order_id: "a-1".into(),
            upstream_cost: None,
            next_poll_at: T0 + 1_000,
        },
        T0,
    )
    .await
    .expect("finish");
    let claimed = db.claim_cancels("r", 10, T0 + 2).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, request.id);
    // The upstream refuses it: asking again answers with that refusal, not "accepted".
    db.update_cancel(
        request.id,
        ForwardState::Rejected,
        Some("Order can not be canceled"),
        T0 + 3,
    )
    .await
    .expect("refused");
    let again = requested(db.request_cancel(c.id, a.id, T0 + 4).await.expect("again"));
    assert_eq!(again.forward_state, ForwardState::Rejected);
    assert_eq!(again.error.as_deref(), Some("Order can not be canceled"));
    db.apply_status(
        "alpha",
        "a-1",
        update(OrderStatus::Completed, Some(0)),
        T0 + 5,
    )
    .await
    .expect("apply");
    let finished = requested(
        db.request_cancel(c.id, a.id, T0 + 6)
            .await
            .expect("finished"),
    );
    assert_eq!(
        finished.error.as_deref(),
        Some("Order can not be canceled"),
        "still the refusal once the order finished"
    );

    // Refused by every route: the order is refunded once (by the rejection), the request is
    // closed and never forwarded.
    let before = db.customer(c.id).await.expect("get").balance;
    let b = sending_order(&db, c.id, "2").await;
    requested(db.request_cancel(c.id, b.id, T0).await.expect("cancel"));
    db.finish_attempt(
        b.id,
        ForwardOutcome::Failed {
            not_sent: false,
            detail: "Incorrect link".into(),
        },
        T0,
    )
    .await
    .expect("finish");
    assert_eq!(
        db.reject_order(b.id, "Incorrect link", T0)
            .await
            .expect("reject"),
        money("2")
    );
    assert_eq!(
        db.close_unsendable_cancels(10, T0 + 1)
            .await
            .expect("close"),
        vec![(b.id, None)]
    );
    assert!(
        db.close_unsendable_cancels(10, T0 + 2)
            .await
            .expect("close")
            .is_empty()
    );
    assert!(
        db.claim_cancels("r", 10, T0 + 2)
            .await
            .expect("claim")
            .is_empty()
    );
    let closed = db
        .cancels_in_state(ForwardState::Rejected, 10)
        .await
        .expect("list");
    assert!(closed.iter().any(|r| r.order_id == b.id));
    assert_eq!(db.customer(c.id).await.expect("get").balance, before);
    assert_eq!(refund_rows(&db, c.id, b.id).await, 1);
    assert!(matches!(
        db.request_cancel(c.id, b.id, T0 + 3).await,
        Err(StoreError::InvalidState(_))
    ));

    // Back in the queue (no route took it): canceled and refunded in full, once.
    let d = sending_order(&db, c.id, "3").await;
    requested(db.request_cancel(c.id, d.id, T0).await.expect("cancel"));
    db.finish_attempt(
        d.id,
        ForwardOutcome::Failed {
            not_sent: true,
            detail: "connection refused".into(),
        },
        T0,
    )
    .await
    .expect("finish");
    db.requeue(d.id, T0, "no route now", T0)
        .await
        .expect("requeue");
    assert_eq!(
        db.close_unsendable_cancels(10, T0 + 1)
            .await
            .expect("close"),
        vec![(d.id, Some(money("3")))]
    );
    let d = db.order(d.id).await.expect("get");
    assert_eq!(d.status, OrderStatus::Canceled);
    assert_eq!(d.forward_state, ForwardState::Rejected);
    assert_eq!(d.refunded, money("3"));
    assert!(
        db.close_unsendable_cancels(10, T0 + 2)
            .await
            .expect("close")
            .is_empty()
    );
    assert_eq!(db.customer(c.id).await.expect("get").balance, before);

    // Ambiguous: the request waits with the order, forwarded once it is found upstream.
    let e = sending_order(&db, c.id, "1").await;
    db.finish_attempt(
        e.id,
        ForwardOutcome::Ambiguous {
            detail: "timeout".into(),
        },
        T0,
    )
    .await
    .expect("finish");
    let request = requested(db.request_cancel(c.id, e.id, T0).await.expect("cancel"));
    assert!(
        db.claim_cancels("r", 10, T0)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        db.close_unsendable_cancels(10, T0)
            .await
            .expect("close")
            .is_empty()
    );
    db.attach_upstream_order(e.id, "alpha", "e-1", "admin", T0 + 1)
        .await
        .expect("attach");
    let claimed = db.claim_cancels("r", 10, T0 + 2).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [request.id]
    );
    assert_books_balance(&db, c.id).await;
}

/// While a refill of an order is open, asking again returns it; many asking at once create
/// one. A finished (or refused) refill lets the next one be created.
pub async fn refills_are_one_open_per_order(db: Db) {
    let c = funded(&db, "vera", "10").await;
    let order = sent_order(&db, c.id, "1", "alpha", "r-1").await;
    db.apply_status("alpha", "r-1", update(OrderStatus::Completed, Some(0)), T0)
        .await
        .expect("apply");
    let asks: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.create_refill(c.id, order.id, T0 + i).await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for ask in asks {
        ids.insert(ask.await.expect("task").expect("refill").id.0);
    }
    assert_eq!(ids.len(), 1, "one refill for concurrent asks: {ids:?}");
    let first = RefillId(*ids.first().expect("one"));
    for state in [ForwardState::Sending, ForwardState::Sent] {
        db.update_refill(
            first,
            RefillUpdate {
                forward_state: Some(state),
                ..RefillUpdate::default()
            },
            T0 + 10,
        )
        .await
        .expect("update");
        assert_eq!(
            db.create_refill(c.id, order.id, T0 + 11)
                .await
                .expect("again")
                .id,
            first,
            "still open while {state:?}"
        );
    }
    assert_eq!(
        db.refills_in_state(ForwardState::Sent, 10)
            .await
            .expect("list")
            .len(),
        1
    );
    db.update_refill(
        first,
        RefillUpdate {
            status: Some(RefillStatus::Completed),
            ..RefillUpdate::default()
        },
        T0 + 12,
    )
    .await
    .expect("done");
    let second = db
        .create_refill(c.id, order.id, T0 + 13)
        .await
        .expect("next");
    assert!(second.id > first);
    db.update_refill(
        second.id,
        RefillUpdate {
            forward_state: Some(ForwardState::Rejected),
            error: Some("Order not eligible for refill".into()),
            ..RefillUpdate::default()
        },
        T0 + 14,
    )
    .await
    .expect("refused");
    let third = db
        .create_refill(c.id, order.id, T0 + 15)
        .await
        .expect("next");
    assert!(third.id > second.id);
    let stranger = funded(&db, "walt", "1").await;
    assert_eq!(
        db.create_refill(stranger.id, order.id, T0).await,
        Err(StoreError::NotFound("order"))
    );
}

/// Console users and sessions (issue #13): unique usernames, failures counted and locking at
/// the limit, a success clearing them and opening a session found by its token hash until it
/// expires, logout ending it; each step audited.
pub async fn admin_users_and_sessions(db: Db) {
    let new = |name: &str, role| NewAdmin {
        username: name.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role,
    };
    let owner = db
        .create_admin(new("alice", AdminRole::Owner), "cli:root", T0)
        .await
        .expect("alice");
    assert_eq!((owner.role, owner.failed_logins), (AdminRole::Owner, 0));
    assert_eq!(
        db.create_admin(new("alice", AdminRole::Viewer), "cli:root", T0)
            .await,
        Err(StoreError::Conflict("the username is already taken".into()))
    );
    assert!(matches!(
        db.create_admin(new("no spaces", AdminRole::Viewer), "cli:root", T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    db.create_admin(new("bob", AdminRole::Viewer), "cli:root", T0)
        .await
        .expect("bob");
    let names: Vec<String> = db
        .admins()
        .await
        .expect("admins")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    // Three failures lock for a minute; the count starts again.
    let lockout = Lockout {
        max_failures: 3,
        lock_ms: 60_000,
    };
    let after = db.login_failed(owner.id, lockout, T0).await.expect("one");
    assert_eq!((after.failed_logins, after.locked_until), (1, None));
    db.login_failed(owner.id, lockout, T0).await.expect("two");
    let locked = db
        .login_failed(owner.id, lockout, T0 + 5)
        .await
        .expect("three");
    assert_eq!(locked.failed_logins, 0);
    assert_eq!(locked.locked_until, Some(T0 + 5 + 60_000));
    assert!(locked.locked_at(T0 + 60_000) && !locked.locked_at(T0 + 60_005));

    // A success while locked is refused (a concurrent failure locked it).
    let early = NewSession {
        token_hash: "c".repeat(64),
        csrf_token: "csrf-0".to_owned(),
        expires_at: T0 + 1_000,
    };
    assert!(matches!(
        db.login_succeeded(owner.id, early, T0 + 6).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(
        db.admin_session(&"c".repeat(64), T0 + 7)
            .await
            .expect("none"),
        None
    );
    // Once the lock has passed, a success clears it and opens a session.
    let session = NewSession {
        token_hash: "a".repeat(64),
        csrf_token: "csrf-1".to_owned(),
        expires_at: T0 + 61_000,
    };
    let opened = db
        .login_succeeded(owner.id, session, T0 + 60_010)
        .await
        .expect("login");
    assert_eq!(opened.user.locked_until, None);
    assert_eq!(opened.user.last_login_at, Some(T0 + 60_010));
    let found = db
        .admin_session(&"a".repeat(64), T0 + 60_999)
        .await
        .expect("session")
        .expect("live");
    assert_eq!(
        (found.user.username.as_str(), found.csrf_token.as_str()),
        ("alice", "csrf-1")
    );
    assert_eq!(
        db.admin_session(&"a".repeat(64), T0 + 61_000)
            .await
            .expect("expired"),
        None
    );
    assert_eq!(
        db.admin_session(&"b".repeat(64), T0)
            .await
            .expect("unknown"),
        None
    );
    db.end_admin_session(&"a".repeat(64), T0 + 60_020)
        .await
        .expect("logout");
    assert_eq!(
        db.admin_session(&"a".repeat(64), T0 + 60_021)
            .await
            .expect("ended"),
        None
    );
    db.end_admin_session(&"a".repeat(64), T0 + 60_022)
        .await
        .expect("a second logout is a no-op");

    let actions: Vec<(String, String)> = db
        .audit_log(100)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.target == format!("admin:{}", owner.id))
        .map(|e| (e.actor, e.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("console:alice".to_owned(), "admin.logout".to_owned()),
            ("console:alice".to_owned(), "admin.login".to_owned()),
            ("console".to_owned(), "admin.lock".to_owned()),
            ("cli:root".to_owned(), "admin.create".to_owned()),
        ]
    );
}

/// An upstream cost too large for the aggregates' integers is capped there; the order's own
/// write never fails for it (the provider already accepted the order).
pub async fn enormous_upstream_costs_never_fail_the_send(db: Db) {
    let c = funded(&db, "whale", "1000").await;
    let order = place(&db, c.id, "1").await;
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    db.begin_attempt(order.id, "alpha", "svc-1", T0)
        .await
        .expect("begin");
    let huge = Decimal::from_str_exact("99999999999999999999.12345678").expect("decimal");
    let sent = db
        .finish_attempt(
            order.id,
            ForwardOutcome::Sent {
                upstream_order_id: "u-1".into(),
                upstream_cost: Some(huge),
                next_poll_at: T0 + 1_000,
            },
            T0,
        )
        .await
        .expect("sent despite the cost");
    assert_eq!(sent.forward_state, ForwardState::Sent);
    let totals = db.order_totals_since(0).await.expect("totals");
    assert_eq!(totals.providers.len(), 1);
    assert_eq!(
        totals.providers[0].cost,
        Decimal::new(1_000_000_000_000_000, 8)
    );
    assert_books_balance(&db, c.id).await;
}

/// A poll batch's rows travel as one JSON array (`{json_rows:$n}`): every field comes back as
/// the upstream said it, whatever it looks like. A status code that reads as a number stays
/// text, integers past 2^53 stay exact, and quotes, backslashes and non-ASCII text survive.
pub async fn batched_statuses_keep_every_field_exactly(db: Db) {
    let c = funded(&db, "exact", "10").await;
    let odd = sent_order(&db, c.id, "1", "alpha", "j1").await;
    let quoted = sent_order(&db, c.id, "1", "alpha", "j2").await;
    let big = 9_007_199_254_740_993_i64; // 2^53 + 1: not a double
    let batch = vec![
        (
            "j1".to_owned(),
            StatusUpdate {
                start_count: Some(big),
                extra: Some("0042".into()),
                ..update(OrderStatus::Unknown("00123".into()), Some(big - 1))
            },
        ),
        (
            "j2".to_owned(),
            StatusUpdate {
                start_count: None,
                extra: Some("é \"q\" \\ 🙂 [1, 2]".into()),
                ..update(OrderStatus::InProgress, None)
            },
        ),
    ];
    let applied = db
        .apply_statuses("alpha", batch, T0 + 1_000)
        .await
        .expect("batch");
    assert!(applied.iter().all(Option::is_some), "{applied:?}");

    let o = db.order(odd.id).await.expect("order");
    assert_eq!(o.status, OrderStatus::Unknown("00123".into()));
    assert_eq!((o.start_count, o.remains), (Some(big), Some(big - 1)));
    assert_eq!(o.extra.as_deref(), Some("0042"));
    let q = db.order(quoted.id).await.expect("order");
    assert_eq!(q.status, OrderStatus::InProgress);
    assert_eq!(q.extra.as_deref(), Some("é \"q\" \\ 🙂 [1, 2]"));
    assert_eq!(
        (q.start_count, q.remains),
        (None, None),
        "absent fields stay as they were"
    );
}

/// A report that leaves an order's status as it is writes only its counts, its next poll and
/// `updated_at` (a statement without the status columns, issue #16). Every field must still
/// come out as one by one: absent counts kept, a changed raw text of an unknown status still a
/// change, no timeline event for a report that changes no status.
pub async fn unchanged_statuses_write_only_their_counts(db: Db) {
    let c = funded(&db, "steady", "10").await;
    let odd = sent_order(&db, c.id, "1", "alpha", "k1").await;
    let busy = sent_order(&db, c.id, "1", "alpha", "k2").await;
    let big = 9_007_199_254_740_993_i64;
    let first = vec![
        (
            "k1".to_owned(),
            StatusUpdate {
                start_count: Some(big),
                extra: Some("0042".into()),
                ..update(OrderStatus::Unknown("00123".into()), Some(big - 1))
            },
        ),
        (
            "k2".to_owned(),
            StatusUpdate {
                extra: Some("first".into()),
                ..update(OrderStatus::InProgress, Some(500))
            },
        ),
    ];
    db.apply_statuses("alpha", first, T0 + 1_000)
        .await
        .expect("first batch");
    let events = |id: OrderId| {
        let db = db.clone();
        async move { db.order_timeline(id).await.expect("timeline").events.len() }
    };
    let (odd_events, busy_events) = (events(odd.id).await, events(busy.id).await);

    // The same statuses again, with new counts for some fields and none for others.
    let second = vec![
        (
            "k1".to_owned(),
            StatusUpdate {
                start_count: Some(big + 1),
                extra: Some("0043".into()),
                next_poll_at: T0 + 120_000,
                ..update(OrderStatus::Unknown("00123".into()), None)
            },
        ),
        (
            "k2".to_owned(),
            StatusUpdate {
                start_count: None,
                next_poll_at: T0 + 130_000,
                ..update(OrderStatus::InProgress, Some(400))
            },
        ),
    ];
    let applied = db
        .apply_statuses("alpha", second, T0 + 2_000)
        .await
        .expect("second batch");
    assert_eq!(
        applied,
        vec![
            Some(StatusApplied {
                order_id: odd.id,
                refund: None,
                terminal: false
            }),
            Some(StatusApplied {
                order_id: busy.id,
                refund: None,
                terminal: false
            }),
        ]
    );
    let o = db.order(odd.id).await.expect("order");
    assert_eq!(o.status, OrderStatus::Unknown("00123".into()));
    assert_eq!((o.start_count, o.remains), (Some(big + 1), Some(big - 1)));
    assert_eq!(o.extra.as_deref(), Some("0043"));
    assert_eq!(
        (o.next_poll_at, o.updated_at),
        (Some(T0 + 120_000), T0 + 2_000)
    );
    let b = db.order(busy.id).await.expect("order");
    assert_eq!(b.status, OrderStatus::InProgress);
    assert_eq!((b.start_count, b.remains), (Some(3572), Some(400)));
    assert_eq!(b.extra.as_deref(), Some("first"), "an absent extra is kept");
    assert_eq!(
        (b.next_poll_at, b.updated_at),
        (Some(T0 + 130_000), T0 + 2_000)
    );
    assert_eq!(
        (events(odd.id).await, events(busy.id).await),
        (odd_events, busy_events),
        "no status changed, no event"
    );

    // Another raw text of an unknown status is a change of status.
    let third = vec![(
        "k1".to_owned(),
        update(OrderStatus::Unknown("00124".into()), None),
    )];
    db.apply_statuses("alpha", third, T0 + 3_000)
        .await
        .expect("third batch");
    let o = db.order(odd.id).await.expect("order");
    assert_eq!(o.status, OrderStatus::Unknown("00124".into()));
    assert_eq!(o.updated_at, T0 + 3_000);
    let balance = db.customer(c.id).await.expect("customer").balance;
    assert_eq!(balance, money("8"), "no refund was paid");
}
