//! A property test over random upstream status sequences: whatever order, spelling, repetition
//! or concurrency the statuses of a few orders arrive in, the books stay exact — refunds never
//! exceed charges, an order has at most one refund row, the first terminal status decides the
//! refund (`charge × clamp(remains) / units` rounded down for Partial, everything for Canceled
//! and Refunded), a terminal order never changes again, and the balance is the ledger's sum,
//! never negative.
//!
//! Every case touches the database, so the runner is driven by hand: a fresh customer and
//! provider per case on the test's one store, 32 cases, shrinking on failure (each shrink step
//! runs against new rows, so earlier attempts never interfere).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use smm_store::*;
use smm_wire::{Money, OrderStatus};

type Db = Arc<dyn Store>;

const T0: Timestamp = 1_700_000_000_000;

#[derive(Debug, Clone)]
struct OrderSpec {
    charge: i64,
    units: u64,
}

#[derive(Debug, Clone)]
struct Step {
    order: usize,
    status: OrderStatus,
    remains: Option<i64>,
    /// Applied twice in a row.
    repeat: bool,
    /// Applied twice at the same time.
    concurrent: bool,
}

#[derive(Debug, Clone)]
struct Case {
    orders: Vec<OrderSpec>,
    steps: Vec<Step>,
    /// Deposited on top of the charges (units of 0.00001).
    slack: i64,
}

fn status() -> impl Strategy<Value = OrderStatus> {
    prop_oneof![
        2 => Just(OrderStatus::Pending),
        2 => Just(OrderStatus::InProgress),
        1 => Just(OrderStatus::Processing),
        1 => Just(OrderStatus::Active),
        1 => Just(OrderStatus::Paused),
        2 => Just(OrderStatus::Unknown("Stuck".into())),
        1 => Just(OrderStatus::Unknown("4".into())),
        2 => Just(OrderStatus::Completed),
        4 => Just(OrderStatus::Partial),
        2 => Just(OrderStatus::Canceled),
        1 => Just(OrderStatus::Refunded),
        1 => Just(OrderStatus::Expired),
    ]
}

fn remains() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        1 => Just(None),
        6 => (-2_000i64..=12_000).prop_map(Some),
        1 => Just(Some(0)),
        1 => Just(Some(i64::MIN)),
        1 => Just(Some(i64::MAX)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    // Units 0: a flat-priced order, whose Partial pays no automatic refund.
    let units = prop_oneof![1 => Just(0u64), 9 => 1u64..=10_000];
    let order = (1i64..=5_000_000, units).prop_map(|(charge, units)| OrderSpec { charge, units });
    (proptest::collection::vec(order, 1..=4), 0i64..=1_000).prop_flat_map(|(orders, slack)| {
        let n = orders.len();
        let step = (0..n, status(), remains(), any::<bool>(), any::<bool>()).prop_map(
            |(order, status, remains, repeat, concurrent)| Step {
                order,
                status,
                remains,
                repeat,
                concurrent,
            },
        );
        proptest::collection::vec(step, 1..=16).prop_map(move |steps| Case {
            orders: orders.clone(),
            steps,
            slack,
        })
    })
}

/// What the test expects of one order.
#[derive(Debug, Clone)]
struct Model {
    id: OrderId,
    upstream: String,
    charge: Money,
    units: u64,
    status: OrderStatus,
    remains: Option<i64>,
    refunded: Money,
}

fn terminal(status: &OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Completed
            | OrderStatus::Partial
            | OrderStatus::Canceled
            | OrderStatus::Refunded
            | OrderStatus::Expired
    )
}

/// The refund a terminal status owes, worked out independently of the store's code (a Partial
/// of a flat-priced order, `units` 0, or without `remains` owes nothing automatically).
fn owed(status: &OrderStatus, charge: Money, units: u64, remains: Option<i64>) -> Money {
    match (status, remains) {
        (OrderStatus::Canceled | OrderStatus::Refunded, _) => charge,
        (OrderStatus::Partial, Some(remains)) if units > 0 => {
            let units = i128::from(units);
            let remains = i128::from(remains).clamp(0, units);
            let refund = i128::from(charge.units()) * remains / units;
            Money::from_units(i64::try_from(refund).expect("refund ≤ charge"))
        }
        _ => Money::ZERO,
    }
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

fn fail(what: &str, error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {error}"))
}

async fn run_case(db: &Db, number: u32, case: Case) -> Result<(), TestCaseError> {
    let provider = format!("prop{number}");
    let customer = db
        .create_customer(
            NewCustomer {
                name: format!("prop-{number}"),
                currency: "USD".into(),
                key_hash: hash_api_key(&format!("prop-key-{number}-{}", std::process::id())),
                key_prefix: "prop".into(),
            },
            "admin",
            T0,
        )
        .await
        .map_err(|e| fail("create customer", e))?;
    let charges: i64 = case.orders.iter().map(|o| o.charge).sum();
    let deposit = Money::from_units(charges + case.slack);
    db.adjust_balance(
        customer.id,
        LedgerKind::Deposit,
        deposit,
        "top-up",
        "admin",
        T0,
    )
    .await
    .map_err(|e| fail("deposit", e))?;

    // Place every order and forward it to this case's provider.
    let mut models = Vec::new();
    for (i, spec) in case.orders.iter().enumerate() {
        let placed = db
            .place_order(
                NewOrder {
                    customer_id: customer.id,
                    service_id: ServiceId(7),
                    service_type: "Default".into(),
                    params: r#"{"type":"default","link":"https://x.test/p","quantity":1,"drip_feed":null}"#
                        .into(),
                    link: Some("https://x.test/p".into()),
                    quantity: Some(spec.units),
                    units: spec.units,
                    charge: Money::from_units(spec.charge),
                    idempotency_key: None,
                    placed_as: None,
                    request_fingerprint: None,
                },
                T0,
            )
            .await
            .map_err(|e| fail("place", e))?;
        let Placed::New(order) = placed else {
            return Err(TestCaseError::fail("a new order expected"));
        };
        models.push(Model {
            id: order.id,
            upstream: format!("{}", 50_000 + i),
            charge: order.charge,
            units: spec.units,
            status: OrderStatus::Pending,
            remains: None,
            refunded: Money::ZERO,
        });
    }
    let claimed = db
        .claim_for_forwarding("prop", 1_000, T0)
        .await
        .map_err(|e| fail("claim", e))?;
    for order in &claimed {
        if !models.iter().any(|m| m.id == order.id) {
            db.requeue(order.id, T0, "not this case's", T0)
                .await
                .map_err(|e| fail("requeue", e))?;
        }
    }
    for model in &models {
        check!(
            claimed.iter().any(|o| o.id == model.id),
            "order {} claimed",
            model.id
        );
        db.begin_attempt(model.id, &provider, "svc-1", T0)
            .await
            .map_err(|e| fail("begin", e))?;
        db.finish_attempt(
            model.id,
            ForwardOutcome::Sent {
                upstream_order_id: model.upstream.clone(),
                upstream_cost: None,
                next_poll_at: T0,
            },
            T0,
        )
        .await
        .map_err(|e| fail("sent", e))?;
    }

    for (n, step) in case.steps.iter().enumerate() {
        let model = &mut models[step.order];
        let now = T0 + 1_000 * i64::try_from(n).unwrap_or(0);
        let update = StatusUpdate {
            delivery: Default::default(),
            status: step.status.clone(),
            start_count: Some(17),
            remains: step.remains,
            extra: None,
            next_poll_at: now + 60_000,
        };
        let applies = if step.concurrent {
            let (a, b) = tokio::join!(
                db.apply_status(&provider, &model.upstream, update.clone(), now),
                db.apply_status(&provider, &model.upstream, update.clone(), now),
            );
            vec![a, b]
        } else {
            let mut results = vec![
                db.apply_status(&provider, &model.upstream, update.clone(), now)
                    .await,
            ];
            if step.repeat {
                results.push(
                    db.apply_status(&provider, &model.upstream, update.clone(), now)
                        .await,
                );
            }
            results
        };
        let mut paid = Money::ZERO;
        for applied in applies {
            let applied = applied
                .map_err(|e| fail("apply", e))?
                .ok_or_else(|| TestCaseError::fail("the order is known"))?;
            check!(applied.order_id == model.id, "step {n}: the right order");
            if let Some(refund) = applied.refund {
                check!(refund.is_positive(), "step {n}: a refund is positive");
                paid = paid.checked_add(refund).expect("small sums");
            }
        }

        // The model: only the first terminal status counts.
        let before = model.refunded;
        if !terminal(&model.status) {
            model.status = step.status.clone();
            if step.remains.is_some() {
                model.remains = step.remains;
            }
            if terminal(&model.status) {
                model.refunded = owed(&model.status, model.charge, model.units, step.remains);
            }
        }
        check!(
            paid == model.refunded.checked_sub(before).expect("no overflow"),
            "step {n} ({step:?}): paid {paid}, expected {}",
            model.refunded.checked_sub(before).expect("no overflow")
        );

        let order = db.order(model.id).await.map_err(|e| fail("order", e))?;
        check!(
            order.status == model.status,
            "step {n}: status {:?}, expected {:?}",
            order.status,
            model.status
        );
        check!(
            order.remains == model.remains,
            "step {n}: remains {:?}, expected {:?}",
            order.remains,
            model.remains
        );
        check!(
            order.refunded == model.refunded,
            "step {n} ({step:?}): refunded {}, expected {}",
            order.refunded,
            model.refunded
        );
        check!(
            order.refunded <= order.charge,
            "step {n}: refund {} > charge {}",
            order.refunded,
            order.charge
        );
        check!(
            terminal(&order.status) == order.next_poll_at.is_none(),
            "step {n}: polled while running, never after the end ({:?}, {:?})",
            order.status,
            order.next_poll_at
        );

        // The books, after every step.
        let ledger = db
            .ledger(customer.id, None, 10_000)
            .await
            .map_err(|e| fail("ledger", e))?;
        let rows = ledger
            .iter()
            .filter(|e| e.kind == LedgerKind::Refund && e.order_id == Some(model.id))
            .count();
        check!(
            rows == usize::from(model.refunded.is_positive()),
            "step {n}: {rows} refund rows for order {}",
            model.id
        );
        let balance = db
            .customer(customer.id)
            .await
            .map_err(|e| fail("customer", e))?
            .balance;
        let sum = db
            .ledger_sum(customer.id)
            .await
            .map_err(|e| fail("ledger sum", e))?;
        check!(
            balance == sum,
            "step {n}: balance {balance} != ledger {sum}"
        );
        check!(!balance.is_negative(), "step {n}: balance {balance} < 0");
        let refunds = models
            .iter()
            .try_fold(Money::ZERO, |total, m| total.checked_add(m.refunded))
            .expect("small sums");
        let expected = Money::from_units(case.slack)
            .checked_add(refunds)
            .expect("small sums");
        check!(
            balance == expected,
            "step {n}: balance {balance}, expected deposit − charges + refunds = {expected}"
        );
    }

    // Exactly the running orders are still watched.
    let watched = db
        .claim_polls(Some(&provider), 1_000, T0 + 10_000_000, T0 + 5_000_000)
        .await
        .map_err(|e| fail("claim polls", e))?;
    let mut watched: Vec<OrderId> = watched.iter().map(|p| p.order_id).collect();
    watched.sort();
    let running: Vec<OrderId> = models
        .iter()
        .filter(|m| !terminal(&m.status))
        .map(|m| m.id)
        .collect();
    check!(
        watched == running,
        "watched {watched:?}, running {running:?}"
    );
    Ok(())
}

/// Random status sequences (every status, remains negative, zero, beyond the quantity, absent
/// and extreme; repeated and concurrent) keep the books exact.
pub async fn random_status_sequences_keep_the_books(db: Db) {
    static CASES: AtomicU32 = AtomicU32::new(0);
    let runtime = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        let number = CASES.fetch_add(1, Ordering::Relaxed);
        tokio::task::block_in_place(|| runtime.block_on(run_case(&db, number, case)))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
