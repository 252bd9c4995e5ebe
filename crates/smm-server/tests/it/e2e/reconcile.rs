//! The reconciler end to end: statuses polled from both simulators in batches of at most 100
//! ids, refunds paid exactly once and to the unit, upstream faults that change nothing but the
//! schedule, unknown statuses kept under watch, refills and cancels forwarded once each, and
//! vanished upstream services disabled (never priced 0). Section (f) cases 14–20.
//!
//! Every test starts a gateway whose orders are due for polling as soon as they are forwarded
//! and drives each reconciliation round itself (`reconciler::round`), so simulated time (the
//! simulators' clocks) and polling are both in the test's hands.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use smm_panel_sim::{Dialect, Fault, FaultRule, Outcomes, RecordedRequest, Sim, SimOrder};
use smm_store::{ForwardState, LedgerKind, Order, OrderId, StatusUpdate, refund_due};
use smm_wire::{Money, OrderStatus};

use crate::support::{
    BETA_ONLY, Backend, LINK, START_BALANCE, TestGateway, error_reply, money_add, money_sub,
    now_ms, per_thousand, requests_for, wait_for, wire_status,
};

/// Past the end of every order and refill plan of the simulators (at most 30 s pending plus
/// 600 s running).
const LONG: Duration = Duration::from_secs(4 * 3600);

/// The status words a refill may show.
const REFILL_WORDS: [&str; 5] = [
    "Pending",
    "In progress",
    "Completed",
    "Rejected",
    "Canceled",
];

// ---- helpers -------------------------------------------------------------------------------

fn remains_of(sim: &SimOrder) -> i64 {
    i64::try_from(sim.remains).expect("remains fit i64")
}

/// The refund the simulator's report owes, worked out here without the store's code:
/// Canceled → the whole charge; Partial → ⌊charge × remains / units⌋ in 0.00001 units;
/// anything else → nothing.
fn refund_by_hand(status: &OrderStatus, charge: Money, units: u64, remains: i64) -> Money {
    match status {
        OrderStatus::Canceled | OrderStatus::Refunded => charge,
        OrderStatus::Partial => {
            let units = i128::from(units);
            let remains = i128::from(remains).clamp(0, units);
            let refund = i128::from(charge.units()) * remains / units;
            Money::from_units(i64::try_from(refund).expect("refund fits"))
        }
        _ => Money::ZERO,
    }
}

/// The refund the simulator's report of this order owes: `refund_due` over what the
/// SIMULATOR says, cross-checked against the arithmetic done by hand.
fn expected_refund(order: &Order, sim: &SimOrder) -> Money {
    let status = wire_status(sim.status);
    let due = refund_due(&status, order.charge, order.units, Some(remains_of(sim)));
    assert_eq!(
        due,
        refund_by_hand(&status, order.charge, order.units, remains_of(sim)),
        "refund_due agrees with the arithmetic by hand for order {} ({status:?})",
        order.id
    );
    due
}

/// The simulator's view of a forwarded order.
fn sim_order(gw: &TestGateway, order: &Order) -> SimOrder {
    let provider = order.provider.as_deref().expect("the order was forwarded");
    let id: u64 = order
        .upstream_order_id
        .as_deref()
        .expect("the order has an upstream id")
        .parse()
        .expect("a numeric upstream id");
    gw.sim(provider)
        .order(id)
        .unwrap_or_else(|| panic!("{provider} knows its order {id}"))
}

/// The local order mirrors the simulator's: status, remains, start count, and a refund of
/// exactly what the report owes. Returns that refund.
fn assert_mirrors(order: &Order, sim: &SimOrder) -> Money {
    let what = format!(
        "order {} ({}/{})",
        order.id,
        order.provider.as_deref().unwrap_or("-"),
        order.upstream_order_id.as_deref().unwrap_or("-")
    );
    assert_eq!(order.units, sim.quantity, "{what}: units");
    assert_eq!(order.status, wire_status(sim.status), "{what}: status");
    assert_eq!(order.remains, Some(remains_of(sim)), "{what}: remains");
    assert_eq!(
        order.start_count,
        Some(i64::try_from(sim.start_count).expect("fits")),
        "{what}: start count"
    );
    let refund = expected_refund(order, sim);
    assert_eq!(order.refunded, refund, "{what}: refund");
    assert!(order.refunded <= order.charge, "{what}: refund ≤ charge");
    refund
}

/// A local order polled while it ran upstream: the same status (the simulator's clock runs on
/// in real time, but no plan changes state within the second between the poll and this
/// check), no refund, and remains between what the simulator says now (delivery went on
/// since the poll) and the whole quantity.
fn assert_running(order: &Order, sim: &SimOrder) {
    assert_eq!(
        order.status,
        wire_status(sim.status),
        "order {}: status",
        order.id
    );
    assert!(
        !order.status.is_terminal(),
        "order {} still running",
        order.id
    );
    assert_eq!(
        order.refunded,
        Money::ZERO,
        "order {}: no refund yet",
        order.id
    );
    let remains = order.remains.expect("remains reported");
    assert!(
        (remains_of(sim)..=i64::try_from(sim.quantity).expect("fits")).contains(&remains),
        "order {}: remains {remains}, the simulator now {} of {}",
        order.id,
        sim.remains,
        sim.quantity
    );
}

/// What the customer's `status` shows for an order whose upstream report is `sim`.
fn status_json(order: &Order, sim: &SimOrder) -> Value {
    let net = money_sub(order.charge, expected_refund(order, sim));
    json!({
        "charge": net.to_string(),
        "start_count": sim.start_count.to_string(),
        "status": wire_status(sim.status).as_str(),
        "remains": sim.remains.to_string(),
        "currency": "USD",
    })
}

/// The order with its poll schedule blanked (the one thing a failed poll may change).
fn unscheduled(order: &Order) -> Order {
    Order {
        next_poll_at: None,
        ..order.clone()
    }
}

/// `add` as the funded customer: `(local service, quantity, link)`.
async fn add(gw: &TestGateway, service: u64, quantity: u64, link: &str) -> OrderId {
    gw.add_ok(&[
        ("service", &service.to_string()),
        ("link", link),
        ("quantity", &quantity.to_string()),
    ])
    .await
}

/// Places every `(service, quantity)` through `add`, 16 requests at a time; ids in order.
async fn add_all(gw: &TestGateway, specs: &[(u64, u64)]) -> Vec<OrderId> {
    futures_util::stream::iter(specs.iter().copied().enumerate())
        .map(|(i, (service, quantity))| async move {
            let link = format!("https://instagram.com/p/reconcile-{i}");
            add(gw, service, quantity, &link).await
        })
        .buffered(16)
        .collect()
        .await
}

/// The orders, read back in the order of `ids`.
async fn orders(gw: &TestGateway, ids: &[OrderId]) -> Vec<Order> {
    let mut found: BTreeMap<OrderId, Order> = BTreeMap::new();
    for chunk in ids.chunks(500) {
        for order in gw
            .store()
            .customer_orders(gw.customer, chunk)
            .await
            .expect("read orders")
        {
            found.insert(order.id, order);
        }
    }
    ids.iter()
        .map(|id| {
            found
                .remove(id)
                .unwrap_or_else(|| panic!("order {id} exists"))
        })
        .collect()
}

/// Waits until every order is `sent`; returns them.
async fn all_sent(gw: &TestGateway, ids: &[OrderId]) -> Vec<Order> {
    wait_for(
        &format!("{} orders to be forwarded", ids.len()),
        Duration::from_secs(60),
        || async {
            orders(gw, ids).await.iter().all(|o| {
                !matches!(
                    o.forward_state,
                    ForwardState::Queued | ForwardState::Sending
                )
            })
        },
    )
    .await;
    let orders = orders(gw, ids).await;
    for order in &orders {
        assert_eq!(
            order.forward_state,
            ForwardState::Sent,
            "order {} forwarded ({:?})",
            order.id,
            order.forward_error
        );
    }
    orders
}

/// The last sequence number in a simulator's request log (0 when empty).
fn last_seq(sim: &Sim) -> u64 {
    sim.requests().last().map_or(0, |r| r.seq)
}

/// The `action` requests a simulator received after `seq`.
fn requests_since(sim: &Sim, action: &str, seq: u64) -> Vec<RecordedRequest> {
    requests_for(sim, action)
        .into_iter()
        .filter(|r| r.seq > seq)
        .collect()
}

/// The ids of a request's comma list parameter `name` (empty when absent).
fn id_list(request: &RecordedRequest, name: &str) -> Vec<String> {
    request
        .params
        .get(name)
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Makes every watched order due, runs one round, and checks how each simulator was asked:
/// `ceil(due / 100)` multi-status calls, each with 1 to 100 ids, every due order asked about
/// exactly once, nothing else. Returns how many orders were due.
async fn counted_round(gw: &TestGateway) -> usize {
    let due = gw.make_polls_due().await;
    let seqs = [last_seq(gw.alpha()), last_seq(gw.beta())];
    gw.reconcile().await;
    for (provider, seq) in ["alpha", "beta"].into_iter().zip(seqs) {
        let expected: BTreeSet<String> = due
            .iter()
            .filter(|o| o.provider.as_deref() == Some(provider))
            .map(|o| o.upstream_order_id.clone().expect("upstream id"))
            .collect();
        let calls = requests_since(gw.sim(provider), "status", seq);
        let sizes: Vec<usize> = calls.iter().map(|c| id_list(c, "orders").len()).collect();
        assert!(
            sizes.iter().all(|n| (1..=100).contains(n)),
            "{provider}: every status call carries 1 to 100 ids: {sizes:?}"
        );
        assert!(
            calls.iter().all(|c| !c.params.contains_key("order")),
            "{provider}: statuses are asked in batches"
        );
        assert_eq!(
            calls.len(),
            expected.len().div_ceil(100),
            "{provider}: {} due orders take {} calls, got sizes {sizes:?}",
            expected.len(),
            expected.len().div_ceil(100)
        );
        let asked: Vec<String> = calls.iter().flat_map(|c| id_list(c, "orders")).collect();
        assert_eq!(
            asked.len(),
            expected.len(),
            "{provider}: each due order once"
        );
        assert_eq!(
            asked.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{provider}: exactly the due orders"
        );
    }
    due.len()
}

/// The customer's refund rows, by order.
async fn refund_rows(gw: &TestGateway) -> BTreeMap<OrderId, Vec<Money>> {
    let mut rows: BTreeMap<OrderId, Vec<Money>> = BTreeMap::new();
    for entry in gw.ledger_of(gw.customer).await {
        if entry.kind == LedgerKind::Refund {
            let order = entry.order_id.expect("a refund names its order");
            rows.entry(order).or_default().push(entry.amount);
        }
    }
    rows
}

/// Every order has exactly the refund rows its refund implies (one row, or none when nothing
/// was owed), and the balance is deposits − charges + refunds, equal to the ledger's sum.
async fn assert_books(gw: &TestGateway, orders: &[Order], deposits: Money) {
    let rows = refund_rows(gw).await;
    let mut expected = deposits;
    for order in orders {
        expected = money_add(money_sub(expected, order.charge), order.refunded);
        let paid = rows.get(&order.id).cloned().unwrap_or_default();
        if order.refunded.is_positive() {
            assert_eq!(
                paid,
                vec![order.refunded],
                "order {}: one refund row",
                order.id
            );
        } else {
            assert!(
                paid.is_empty(),
                "order {}: no refund row: {paid:?}",
                order.id
            );
        }
    }
    let known: BTreeSet<OrderId> = orders.iter().map(|o| o.id).collect();
    assert!(
        rows.keys().all(|id| known.contains(id)),
        "no refund for an order this test does not know"
    );
    assert_eq!(gw.balance().await, expected, "deposits − charges + refunds");
    gw.assert_ledger_consistent(gw.customer).await;
}

async fn status_reply(gw: &TestGateway, id: OrderId) -> Value {
    gw.api("status", &[("order", &id.to_string())]).await
}

/// `{"error": text}` with any text.
fn assert_error_object(reply: &Value, what: &str) {
    let object = reply
        .as_object()
        .unwrap_or_else(|| panic!("{what}: an object, got {reply}"));
    assert!(
        object.len() == 1 && object.get("error").and_then(Value::as_str).is_some(),
        "{what}: {{\"error\": text}}, got {reply}"
    );
}

fn partial_and_canceled() -> Outcomes {
    Outcomes {
        completed: 0.4,
        partial: 0.4,
        canceled: 0.2,
        refill_rejected: 0.0,
    }
}

// ---- (f) 15 and 20 at volume ---------------------------------------------------------------

/// 1,000 orders across two providers end Completed, Partial or Canceled upstream; a few rounds
/// bring every local order to the simulator's state with the refund its report owes, to the
/// unit; every status call carries at most 100 ids and each round asks about each due order
/// once; the books balance exactly.
pub async fn many_orders_reach_terminal_states_with_exact_refunds(backend: Backend) {
    const PER_PROVIDER: u64 = 500;
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, partial_and_canceled());
    gw.set_outcomes("beta", 1, partial_and_canceled());
    let rates = [(1, gw.rate(1).await), (BETA_ONLY, gw.rate(BETA_ONLY).await)];

    // Quantities 50..=1000, so charges and refunds round in every way.
    let specs: Vec<(u64, u64)> = (0..2 * PER_PROVIDER)
        .map(|i| {
            let service = if i % 2 == 0 { 1 } else { BETA_ONLY };
            (service, 50 + (i * 7919) % 951)
        })
        .collect();
    let ids = add_all(&gw, &specs).await;
    let sent = all_sent(&gw, &ids).await;
    let mut charges = Money::ZERO;
    for (order, (service, quantity)) in sent.iter().zip(&specs) {
        let rate = rates
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, r)| *r)
            .expect("rate");
        assert_eq!(
            order.charge,
            per_thousand(rate, *quantity),
            "order {}",
            order.id
        );
        assert_eq!(order.units, *quantity);
        let provider = if *service == 1 { "alpha" } else { "beta" };
        assert_eq!(order.provider.as_deref(), Some(provider));
        charges = money_add(charges, order.charge);
    }
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charges));

    // Round 1: the orders are still pending upstream (a slow machine may see a few start, or
    // be canceled by the panel at the end of their pending time).
    let started = std::time::Instant::now();
    assert_eq!(
        counted_round(&gw).await,
        ids.len(),
        "every order due at once"
    );
    let first = started.elapsed();
    for order in orders(&gw, &ids).await {
        if order.status.is_terminal() {
            assert_mirrors(&order, &sim_order(&gw, &order));
        } else {
            assert_eq!(order.refunded, Money::ZERO, "order {}", order.id);
        }
    }

    // Everything ends upstream; one round brings every order home.
    gw.advance_sims(LONG);
    let started = std::time::Instant::now();
    let mut rounds = 0;
    loop {
        let watched = orders(&gw, &ids)
            .await
            .iter()
            .filter(|o| !o.status.is_terminal())
            .count();
        if watched == 0 {
            break;
        }
        assert!(
            rounds < 5,
            "{watched} orders still not terminal after {rounds} rounds"
        );
        assert_eq!(counted_round(&gw).await, watched);
        rounds += 1;
    }
    assert_eq!(
        rounds, 1,
        "one round after the upstreams finished is enough"
    );
    eprintln!(
        "{} orders: first round {first:?}, final round {:?}",
        ids.len(),
        started.elapsed()
    );
    // Terminal orders are never asked about again.
    assert_eq!(counted_round(&gw).await, 0);

    let done = orders(&gw, &ids).await;
    let mut outcomes: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for order in &done {
        let sim = sim_order(&gw, order);
        assert_mirrors(order, &sim);
        let provider = order.provider.clone().expect("provider");
        let word = match sim.status {
            smm_panel_sim::OrderStatus::Completed => "Completed",
            smm_panel_sim::OrderStatus::Partial => "Partial",
            smm_panel_sim::OrderStatus::Canceled => "Canceled",
            other => panic!("order {} not terminal upstream: {other:?}", order.id),
        };
        *outcomes.entry((provider, word)).or_default() += 1;
    }
    for provider in ["alpha", "beta"] {
        for word in ["Completed", "Partial", "Canceled"] {
            assert!(
                outcomes
                    .get(&(provider.to_owned(), word))
                    .copied()
                    .unwrap_or(0)
                    >= 10,
                "the mix has {word} orders at {provider}: {outcomes:?}"
            );
        }
    }
    assert_books(&gw, &done, START_BALANCE).await;

    // The customer sees the same, with the reduced charges (multi status, 100 at a time).
    for chunk in done.chunks(100) {
        let list = chunk
            .iter()
            .map(|o| o.id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let reply = gw.api("status", &[("orders", &list)]).await;
        let expected: serde_json::Map<String, Value> = chunk
            .iter()
            .map(|o| (o.id.to_string(), status_json(o, &sim_order(&gw, o))))
            .collect();
        assert_eq!(reply, Value::Object(expected));
    }
    gw.finish().await;
}

// ---- (f) 16 through the reconciler -----------------------------------------------------------

/// Alpha and beta both number their orders from 10001. Alpha's 10001 ends Partial and beta's
/// Completed; then alpha's 10002 ends Completed and beta's Partial. Each local order gets its
/// own provider's report, whichever provider is polled first.
pub async fn equal_upstream_ids_never_cross(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_partial());
    gw.set_outcomes("beta", 1, Outcomes::always_completed());
    let a1 = add(&gw, 1, 400, "https://instagram.com/p/alpha-1").await;
    let b1 = add(&gw, BETA_ONLY, 700, "https://instagram.com/p/beta-1").await;
    all_sent(&gw, &[a1, b1]).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    gw.set_outcomes("beta", 1, Outcomes::always_partial());
    let a2 = add(&gw, 1, 900, "https://instagram.com/p/alpha-2").await;
    let b2 = add(&gw, BETA_ONLY, 300, "https://instagram.com/p/beta-2").await;
    let ids = [a1, b1, a2, b2];
    let sent = all_sent(&gw, &ids).await;
    let upstream: Vec<(&str, &str)> = sent
        .iter()
        .map(|o| {
            (
                o.provider.as_deref().unwrap_or("-"),
                o.upstream_order_id.as_deref().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        upstream,
        [
            ("alpha", "10001"),
            ("beta", "10001"),
            ("alpha", "10002"),
            ("beta", "10002")
        ]
    );

    gw.advance_sims(LONG);
    assert_eq!(counted_round(&gw).await, 4);
    let done = orders(&gw, &ids).await;
    let expected = [
        OrderStatus::Partial,
        OrderStatus::Completed,
        OrderStatus::Completed,
        OrderStatus::Partial,
    ];
    for (order, status) in done.iter().zip(&expected) {
        let sim = sim_order(&gw, order);
        assert_eq!(&wire_status(sim.status), status, "the simulators' plans");
        assert_mirrors(order, &sim);
    }
    assert!(done[0].refunded.is_positive() && done[3].refunded.is_positive());
    assert_eq!(done[1].refunded, Money::ZERO);
    assert_eq!(done[2].refunded, Money::ZERO);
    // The remains differ between the two Partials (different quantities): no crossing.
    assert_ne!(done[0].remains, done[3].remains);
    let list = ids.map(|id| id.to_string()).join(",");
    let reply = gw.api("status", &[("orders", &list)]).await;
    for order in &done {
        assert_eq!(
            reply[order.id.to_string()],
            status_json(order, &sim_order(&gw, order))
        );
    }
    assert_books(&gw, &done, START_BALANCE).await;
    gw.finish().await;
}

// ---- (f) 20: faults while polling --------------------------------------------------------------

/// Each fault on alpha's `status` (a 500 page, a Cloudflare page, an empty body, a 429, a cut
/// reply, a dropped connection, a hang past the provider timeout, a whole-reply error) leaves
/// every alpha order exactly as it was (only its next poll moves, backed off), while beta's
/// orders progress in the same round; once the fault is gone the orders reach their true
/// states with exact refunds.
pub async fn polling_faults_change_nothing_and_recover(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |settings| {
        settings.providers[0].timeout_secs = 1;
        // A back-off longer than the poll lease, so that the two can be told apart.
        settings.reconciler.failure_backoff_secs = 900;
    })
    .await;
    gw.set_outcomes("alpha", 2, Outcomes::always_partial());
    gw.set_outcomes("alpha", 3, Outcomes::always_canceled());
    gw.set_outcomes("beta", 1, Outcomes::always_partial());
    let faults = [
        Fault::Http500,
        Fault::Html200,
        Fault::EmptyBody,
        Fault::RateLimited,
        Fault::Garbled,
        Fault::DropBeforeRecord,
        Fault::Hang,
        Fault::Error {
            text: "Incorrect request".into(),
        },
    ];
    let mut all: Vec<OrderId> = Vec::new();
    for (i, fault) in faults.into_iter().enumerate() {
        let name = fault.name();
        let n = u64::try_from(i).expect("small");
        let link = |what: &str| format!("https://instagram.com/p/fault-{i}-{what}");
        let partial = add(&gw, 2, 100 + 37 * n, &link("partial")).await;
        let canceled = add(&gw, 3, 300 + 11 * n, &link("canceled")).await;
        let at_beta = add(&gw, BETA_ONLY, 200 + 13 * n, &link("beta")).await;
        all.extend([partial, canceled, at_beta]);
        all_sent(&gw, &[partial, canceled, at_beta]).await;
        // Their true states are terminal from now on.
        gw.advance_sims(LONG);

        gw.alpha()
            .add_fault(FaultRule::always(fault.clone()).on_action("status"));
        let before = orders(&gw, &[partial, canceled]).await;
        let balance = gw.balance().await;
        gw.make_polls_due().await;
        let seq = last_seq(gw.alpha());
        let backoff_ms = i64::try_from(gw.app().settings().reconciler.failure_backoff_secs * 1000)
            .expect("fits");
        let polled_at = now_ms();
        gw.reconcile().await;
        let polled_until = now_ms();

        let calls = requests_since(gw.alpha(), "status", seq);
        assert!(
            !calls.is_empty() && calls.iter().all(|c| c.fault.as_deref() == Some(name)),
            "{name}: alpha was asked and the fault answered: {calls:?}"
        );
        let after = orders(&gw, &[partial, canceled]).await;
        for (before, after) in before.iter().zip(&after) {
            assert_eq!(
                unscheduled(after),
                unscheduled(before),
                "{name}: order {} untouched",
                before.id
            );
            assert!(
                after.next_poll_at.is_some_and(|t| (polled_at + backoff_ms
                    ..=polled_until + backoff_ms)
                    .contains(&t)),
                "{name}: order {} backed off, next poll {:?}",
                after.id,
                after.next_poll_at
            );
        }
        // Beta is not held up by alpha's trouble.
        let beta_order = &orders(&gw, &[at_beta]).await[0];
        let beta_refund = assert_mirrors(beta_order, &sim_order(&gw, beta_order));
        assert_eq!(
            beta_order.status,
            OrderStatus::Partial,
            "{name}: beta polled"
        );
        assert_eq!(
            gw.balance().await,
            money_add(balance, beta_refund),
            "{name}"
        );

        // The fault clears: the next round brings the true states and their refunds.
        gw.alpha().clear_faults();
        gw.make_polls_due().await;
        gw.reconcile().await;
        let done = orders(&gw, &[partial, canceled]).await;
        for order in &done {
            assert_mirrors(order, &sim_order(&gw, order));
        }
        assert_eq!(done[0].status, OrderStatus::Partial, "{name}");
        assert_eq!(done[1].status, OrderStatus::Canceled, "{name}");
        assert_eq!(done[1].refunded, done[1].charge, "{name}: full refund");
        gw.assert_ledger_consistent(gw.customer).await;
    }
    assert_books(&gw, &orders(&gw, &all).await, START_BALANCE).await;
    gw.finish().await;
}

// ---- (f) 14 ------------------------------------------------------------------------------------

/// Upstream spellings normalise: numeric codes (as strings and as JSON numbers), `Cancelled`,
/// lower case and snake case, both while running (`In progress`) and at the end, with the
/// refunds their reports owe.
pub async fn spelled_statuses_are_normalised(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    gw.set_outcomes("alpha", 2, Outcomes::always_partial());
    gw.set_outcomes("alpha", 3, Outcomes::always_canceled());
    let dialects = [
        (
            "numeric",
            Dialect {
                numeric_status: true,
                ..Dialect::default()
            },
        ),
        (
            "numeric numbers",
            Dialect {
                numeric_status: true,
                numbers_as_numbers: true,
                ..Dialect::default()
            },
        ),
        (
            "Cancelled",
            Dialect {
                cancelled_spelling: true,
                ..Dialect::default()
            },
        ),
        (
            "lower case",
            Dialect {
                lowercase_status: true,
                ..Dialect::default()
            },
        ),
        (
            "snake case",
            Dialect {
                snake_status: true,
                ..Dialect::default()
            },
        ),
    ];
    let mut all = Vec::new();
    for (i, (name, dialect)) in dialects.into_iter().enumerate() {
        let link = |what: &str| format!("https://instagram.com/p/dialect-{i}-{what}");
        let ids = [
            add(&gw, 1, 500, &link("completed")).await,
            add(&gw, 2, 400, &link("partial")).await,
            add(&gw, 3, 300, &link("canceled")).await,
        ];
        all.extend(ids);
        all_sent(&gw, &ids).await;

        // 40 s in: past every Pending (≤ 30 s), before any run ends (≥ 60 s).
        gw.alpha().advance(Duration::from_secs(40));
        gw.alpha().set_dialect(dialect);
        assert_eq!(counted_round(&gw).await, 3, "{name}");
        gw.alpha().set_dialect(Dialect::default());
        let running = orders(&gw, &ids).await;
        assert_eq!(running[0].status, OrderStatus::InProgress, "{name}");
        assert_eq!(running[1].status, OrderStatus::InProgress, "{name}");
        assert_eq!(running[2].status, OrderStatus::Canceled, "{name}");
        assert_running(&running[0], &sim_order(&gw, &running[0]));
        assert_running(&running[1], &sim_order(&gw, &running[1]));
        assert_mirrors(&running[2], &sim_order(&gw, &running[2]));
        for order in &running {
            assert_eq!(
                status_reply(&gw, order.id).await["status"],
                json!(order.status.as_str()),
                "{name}"
            );
        }

        gw.alpha().advance(LONG);
        gw.alpha().set_dialect(dialect);
        assert_eq!(counted_round(&gw).await, 2, "{name}");
        gw.alpha().set_dialect(Dialect::default());
        let done = orders(&gw, &ids).await;
        let expected = [
            OrderStatus::Completed,
            OrderStatus::Partial,
            OrderStatus::Canceled,
        ];
        for (order, status) in done.iter().zip(&expected) {
            assert_eq!(&order.status, status, "{name}");
            assert_mirrors(order, &sim_order(&gw, order));
        }
    }
    assert_books(&gw, &orders(&gw, &all).await, START_BALANCE).await;
    gw.finish().await;
}

/// An upstream status no table knows is kept verbatim as `Unknown`, shown downstream as
/// "In progress" (never "Pending"), pays nothing, and keeps the order watched: the next poll
/// brings the true state.
///
/// The simulator cannot produce such a status through the gateway: its only non-word dialect
/// is the numeric one, whose codes 0–4 are all in the default table, and the provider settings
/// have no status-code table to leave a code out of. So the unknown status is applied through
/// the store exactly as the reconciler applies one (with the reconciler's own schedule), and
/// the rest of the path — downstream `status`, the next poll — is the real one.
pub async fn unknown_statuses_stay_watched(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 2, Outcomes::always_partial());
    let id = add(&gw, 2, 800, LINK).await;
    let order = all_sent(&gw, &[id]).await.remove(0);
    let charge = order.charge;
    let balance = gw.balance().await;
    let upstream = order.upstream_order_id.clone().expect("upstream id");

    let unknown = OrderStatus::Unknown("Stuck".into());
    let now = now_ms();
    let min_ms = i64::try_from(gw.app().settings().reconciler.min_poll_secs * 1000).expect("fits");
    let next = smm_server::reconciler::next_poll(now, order.created_at, &unknown, min_ms);
    assert_eq!(
        next,
        now + (5 * 60_000).max(min_ms),
        "an unknown status is looked at again in 5 minutes"
    );
    let applied = gw
        .store()
        .apply_status(
            "alpha",
            &upstream,
            StatusUpdate {
                delivery: Default::default(),
                status: unknown.clone(),
                start_count: Some(7),
                remains: Some(40),
                extra: None,
                next_poll_at: next,
            },
            now,
        )
        .await
        .expect("apply")
        .expect("alpha's order is known");
    assert_eq!(applied.order_id, id);
    assert_eq!(applied.refund, None, "an unknown status pays nothing");
    assert!(!applied.terminal, "an unknown status is not an end");
    let stored = gw.order(id).await;
    assert_eq!(stored.status, unknown, "kept verbatim for the alert");
    assert_eq!(stored.refunded, Money::ZERO);
    assert_eq!(stored.next_poll_at, Some(next), "still scheduled");
    assert_eq!(gw.balance().await, balance);
    let shown = json!({
        "charge": charge.to_string(),
        "start_count": "7",
        "status": "In progress",
        "remains": "40",
        "currency": "USD",
    });
    assert_eq!(status_reply(&gw, id).await, shown);
    assert_eq!(
        gw.api("status", &[("orders", &format!("{id},999999"))])
            .await,
        json!({id.to_string(): shown, "999999": error_reply("Incorrect order ID")})
    );

    // Still watched: once due, it is polled like any running order and reaches its true state.
    gw.alpha().advance(LONG);
    assert_eq!(
        counted_round(&gw).await,
        1,
        "the unknown order is due again"
    );
    let done = gw.order(id).await;
    let refund = assert_mirrors(&done, &sim_order(&gw, &done));
    assert_eq!(done.status, OrderStatus::Partial);
    assert!(refund.is_positive());
    assert_eq!(gw.balance().await, money_add(balance, refund));
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

// ---- (f) 15 ------------------------------------------------------------------------------------

/// Partial reports pay `charge × remains / quantity` (rounded down) once: two rounds at the
/// same time ask about each order once between them; the same report applied again, a later
/// report with other remains and a Canceled after the Partial change nothing; the customer's
/// `status` shows the reduced charge.
pub async fn partial_refunds_are_paid_once(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 2, Outcomes::always_partial());
    gw.set_outcomes("beta", 1, Outcomes::always_partial());
    let specs = [
        (2, 777),
        (2, 1_001),
        (2, 4_321),
        (BETA_ONLY, 333),
        (BETA_ONLY, 999),
        (BETA_ONLY, 5_000),
    ];
    let ids = add_all(&gw, &specs).await;
    all_sent(&gw, &ids).await;
    gw.advance_sims(LONG);

    gw.make_polls_due().await;
    let seqs = [last_seq(gw.alpha()), last_seq(gw.beta())];
    tokio::join!(gw.reconcile(), gw.reconcile());
    for (provider, seq) in ["alpha", "beta"].into_iter().zip(seqs) {
        let asked: Vec<String> = requests_since(gw.sim(provider), "status", seq)
            .iter()
            .flat_map(|c| id_list(c, "orders"))
            .collect();
        assert_eq!(
            asked.len(),
            3,
            "{provider}: two concurrent rounds ask about each order once: {asked:?}"
        );
    }
    let done = orders(&gw, &ids).await;
    for order in &done {
        assert_eq!(order.status, OrderStatus::Partial);
        let refund = assert_mirrors(order, &sim_order(&gw, order));
        assert!(
            refund.is_positive() && refund < order.charge,
            "order {}",
            order.id
        );
    }
    assert_books(&gw, &done, START_BALANCE).await;
    let balance = gw.balance().await;

    // Terminal orders are not polled again, even when asked to be.
    assert_eq!(counted_round(&gw).await, 0);
    // The same Partial twice at once, a Partial with other remains, a Canceled: nothing moves.
    for order in &done {
        let provider = order.provider.as_deref().expect("provider");
        let upstream = order.upstream_order_id.as_deref().expect("upstream id");
        let report = |status: OrderStatus, remains: i64| StatusUpdate {
            delivery: Default::default(),
            status,
            start_count: Some(1),
            remains: Some(remains),
            extra: None,
            next_poll_at: now_ms() + 60_000,
        };
        let same = order.remains.expect("remains");
        let (first, second, other, canceled) = tokio::join!(
            gw.store().apply_status(
                provider,
                upstream,
                report(OrderStatus::Partial, same),
                now_ms()
            ),
            gw.store().apply_status(
                provider,
                upstream,
                report(OrderStatus::Partial, same),
                now_ms()
            ),
            gw.store().apply_status(
                provider,
                upstream,
                report(
                    OrderStatus::Partial,
                    i64::try_from(order.units).expect("fits")
                ),
                now_ms()
            ),
            gw.store().apply_status(
                provider,
                upstream,
                report(OrderStatus::Canceled, 0),
                now_ms()
            ),
        );
        for applied in [first, second, other, canceled] {
            let applied = applied.expect("apply").expect("known");
            assert_eq!(applied.order_id, order.id);
            assert_eq!(applied.refund, None, "order {}: paid already", order.id);
            assert!(applied.terminal);
        }
        assert_eq!(
            &gw.order(order.id).await,
            order,
            "a terminal order never changes"
        );
    }
    assert_eq!(gw.balance().await, balance);
    assert_books(&gw, &done, START_BALANCE).await;

    for order in &done {
        let sim = sim_order(&gw, order);
        let reply = status_reply(&gw, order.id).await;
        assert_eq!(reply, status_json(order, &sim));
        assert_eq!(
            reply["charge"],
            json!(money_sub(order.charge, order.refunded).to_string()),
            "the reduced charge"
        );
        assert_ne!(reply["charge"], json!(order.charge.to_string()));
    }
    gw.finish().await;
}

// ---- (f) 17 ------------------------------------------------------------------------------------

/// A refill of a Completed order: `{"refill": "<id>"}`, forwarded once by the next round with
/// the upstream order id, its status mirrored until it ends (Completed at one service,
/// Rejected at another), never asked about again after that. Multi refills mix ids and
/// per-item errors; a service without refill says so.
pub async fn refill_round_trip(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    gw.set_outcomes(
        "alpha",
        4,
        Outcomes {
            refill_rejected: 1.0,
            ..Outcomes::always_completed()
        },
    );
    gw.set_outcomes("alpha", 3, Outcomes::always_completed());
    let a = add(&gw, 1, 1000, "https://instagram.com/p/refill-a").await;
    let b = add(&gw, 1, 2000, "https://instagram.com/p/refill-b").await;
    let c = add(&gw, 4, 100, "https://instagram.com/p/refill-c").await;
    let d = add(&gw, 3, 500, "https://instagram.com/p/refill-d").await;
    let ids = [a, b, c, d];
    let sent = all_sent(&gw, &ids).await;
    let upstream: BTreeMap<OrderId, String> = sent
        .iter()
        .map(|o| (o.id, o.upstream_order_id.clone().expect("upstream id")))
        .collect();
    gw.alpha().advance(LONG);
    assert_eq!(counted_round(&gw).await, 4);
    for order in orders(&gw, &ids).await {
        assert_eq!(order.status, OrderStatus::Completed, "order {}", order.id);
    }
    let balance = gw.balance().await;

    // Single: a string id alone.
    let reply = gw.api("refill", &[("order", &a.to_string())]).await;
    let object = reply.as_object().expect("an object");
    assert_eq!(object.len(), 1, "{reply}");
    let refill_a: u64 = reply["refill"]
        .as_str()
        .unwrap_or_else(|| panic!("a single refill id is a string: {reply}"))
        .parse()
        .expect("digits");
    assert_eq!(
        gw.api("refill_status", &[("refill", &refill_a.to_string())])
            .await,
        json!({"status": "Pending"}),
        "queued, not yet forwarded"
    );
    // Multi: an int id, and a per-item error for an unknown order.
    let reply = gw
        .api("refill", &[("orders", &format!("{b},999999"))])
        .await;
    let refill_b = reply[0]["refill"]
        .as_u64()
        .unwrap_or_else(|| panic!("multi refill ids are ints: {reply}"));
    assert_eq!(
        reply,
        json!([
            {"order": b.0, "refill": refill_b},
            {"order": 999999, "refill": error_reply("Incorrect order ID")},
        ])
    );
    let refill_c: u64 = gw.api("refill", &[("order", &c.to_string())]).await["refill"]
        .as_str()
        .expect("a string id")
        .parse()
        .expect("digits");
    // No refill at a service without it: single and per item.
    let disabled = error_reply("Refill is disabled for this service");
    assert_eq!(
        gw.api("refill", &[("order", &d.to_string())]).await,
        disabled
    );
    assert_eq!(
        gw.api("refill", &[("orders", &format!("{d},999999"))])
            .await,
        json!([
            {"order": d.0, "refill": disabled},
            {"order": 999999, "refill": error_reply("Incorrect order ID")},
        ])
    );
    let refills = [refill_a, refill_b, refill_c];
    assert_eq!(
        BTreeSet::from(refills).len(),
        3,
        "three distinct refill ids: {refills:?}"
    );

    // One round forwards each refill once, by upstream order id, and polls its status.
    let seq = last_seq(gw.alpha());
    gw.reconcile().await;
    let forwarded = requests_since(gw.alpha(), "refill", seq);
    let mut asked: Vec<String> = forwarded
        .iter()
        .map(|r| r.params.get("order").cloned().unwrap_or_default())
        .collect();
    asked.sort();
    let mut want: Vec<String> = [a, b, c].iter().map(|id| upstream[id].clone()).collect();
    want.sort();
    assert_eq!(
        asked, want,
        "one upstream refill per refill, by upstream order id"
    );
    assert_eq!(gw.alpha().refills().len(), 3);
    assert!(
        !requests_since(gw.alpha(), "refill_status", seq).is_empty(),
        "sent refills are polled"
    );
    let list = refills.map(|r| r.to_string()).join(",");
    let reply = gw
        .api("refill_status", &[("refills", &format!("{list},999999"))])
        .await;
    let items = reply.as_array().expect("an array");
    assert_eq!(items.len(), 4, "{reply}");
    for (item, refill) in items.iter().zip(refills) {
        assert_eq!(item["refill"], json!(refill));
        assert!(
            item["status"]
                .as_str()
                .is_some_and(|w| REFILL_WORDS.contains(&w)),
            "a status word: {reply}"
        );
    }
    assert_eq!(
        items[3],
        json!({"refill": 999999, "status": error_reply("Refill not found")})
    );

    // The upstream finishes them; the next round mirrors it.
    gw.alpha().advance(LONG);
    let upstream_words: BTreeMap<String, String> = gw
        .alpha()
        .refills()
        .into_iter()
        .map(|r| (r.order.to_string(), r.status))
        .collect();
    assert_eq!(upstream_words[&upstream[&a]], "Completed");
    assert_eq!(upstream_words[&upstream[&b]], "Completed");
    assert_eq!(upstream_words[&upstream[&c]], "Rejected");
    gw.reconcile().await;
    assert_eq!(
        gw.api("refill_status", &[("refills", &list)]).await,
        json!([
            {"refill": refill_a, "status": "Completed"},
            {"refill": refill_b, "status": "Completed"},
            {"refill": refill_c, "status": "Rejected"},
        ])
    );
    assert_eq!(
        gw.api("refill_status", &[("refill", &refill_c.to_string())])
            .await,
        json!({"status": "Rejected"})
    );

    // Finished refills are neither sent again nor polled again.
    let seq = last_seq(gw.alpha());
    gw.reconcile().await;
    assert!(requests_since(gw.alpha(), "refill", seq).is_empty());
    assert!(requests_since(gw.alpha(), "refill_status", seq).is_empty());
    assert_eq!(requests_for(gw.alpha(), "refill").len(), 3);
    assert_eq!(gw.balance().await, balance, "refills move no money");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Refills that finished long ago do not stop new ones from being polled. The gateway keeps
/// every refill it sent in state `sent` (finished or not); 1,000 finished ones are made here
/// through the store, as months of use would, then a real refill goes the whole way.
pub async fn finished_refills_do_not_starve_new_ones(backend: Backend) {
    const FINISHED: usize = 1_000;
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    let id = add(&gw, 1, 1000, "https://instagram.com/p/refill-history").await;
    all_sent(&gw, &[id]).await;
    gw.alpha().advance(LONG);
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(id).await.status, OrderStatus::Completed);

    let store = gw.store();
    futures_util::stream::iter(0..FINISHED)
        .map(|i| async move {
            let refill = store
                .create_refill(gw.customer, id, now_ms())
                .await
                .expect("a refill");
            store
                .update_refill(
                    refill.id,
                    smm_store::RefillUpdate {
                        provider: Some("alpha".into()),
                        upstream_refill_id: Some((900_000 + i).to_string()),
                        status: Some(smm_wire::RefillStatus::Completed),
                        forward_state: Some(ForwardState::Sent),
                        error: None,
                    },
                    now_ms(),
                )
                .await
                .expect("finished upstream");
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let reply = gw.api("refill", &[("order", &id.to_string())]).await;
    let refill = reply["refill"]
        .as_str()
        .unwrap_or_else(|| panic!("a refill id: {reply}"))
        .to_owned();
    let seq = last_seq(gw.alpha());
    gw.reconcile().await;
    assert_eq!(
        requests_since(gw.alpha(), "refill", seq).len(),
        1,
        "the new refill is forwarded"
    );
    assert_eq!(gw.alpha().refills().len(), 1);
    gw.alpha().advance(LONG);
    assert_eq!(gw.alpha().refills()[0].status, "Completed", "done upstream");
    let seq = last_seq(gw.alpha());
    gw.reconcile().await;
    let polled: Vec<String> = requests_since(gw.alpha(), "refill_status", seq)
        .iter()
        .flat_map(|r| id_list(r, "refills"))
        .collect();
    assert_eq!(
        polled,
        ["1"],
        "the one unfinished refill is polled (the finished ones are not)"
    );
    assert_eq!(
        gw.api("refill_status", &[("refill", &refill)]).await,
        json!({"status": "Completed"}),
        "mirrored downstream"
    );
    gw.finish().await;
}

// ---- (f) 18 ------------------------------------------------------------------------------------

/// `cancel` of forwarded orders answers 1 and moves no money; one round sends one upstream
/// `cancel` per provider carrying every requested order; the refund comes only when a later
/// poll sees Canceled/Partial, exactly once; repeated cancels never reach the upstream again.
pub async fn cancel_round_trip(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    gw.set_outcomes("beta", 1, Outcomes::always_completed());
    gw.set_outcomes("alpha", 3, Outcomes::always_completed());
    let x1 = add(&gw, 1, 1000, "https://instagram.com/p/cancel-1").await;
    let x2 = add(&gw, 1, 3000, "https://instagram.com/p/cancel-2").await;
    let x3 = add(&gw, BETA_ONLY, 2000, "https://instagram.com/p/cancel-3").await;
    let fixed = add(&gw, 3, 500, "https://instagram.com/p/cancel-fixed").await;
    let ids = [x1, x2, x3, fixed];
    let sent = all_sent(&gw, &ids).await;
    let upstream: BTreeMap<OrderId, String> = sent
        .iter()
        .map(|o| (o.id, o.upstream_order_id.clone().expect("upstream id")))
        .collect();
    let balance = gw.balance().await;

    assert_eq!(
        gw.api("cancel", &[("orders", &format!("{x1},{x2},{x3},{fixed}"))])
            .await,
        json!([
            {"order": x1.0, "cancel": 1},
            {"order": x2.0, "cancel": 1},
            {"order": x3.0, "cancel": 1},
            {"order": fixed.0, "cancel": error_reply("Cancel is disabled for this service")},
        ])
    );
    assert_eq!(
        gw.api("cancel", &[("orders", &x1.to_string())]).await,
        json!([{"order": x1.0, "cancel": 1}]),
        "asking twice is fine"
    );
    assert_eq!(gw.balance().await, balance, "1 means asked, not refunded");
    let queued = gw
        .store()
        .cancels_in_state(ForwardState::Queued, 100)
        .await
        .expect("cancels");
    assert_eq!(queued.len(), 3, "one request per order: {queued:?}");

    // One round: the polls come first (still Pending), then one cancel call per provider.
    let seqs = [last_seq(gw.alpha()), last_seq(gw.beta())];
    gw.reconcile().await;
    let alpha_cancels = requests_since(gw.alpha(), "cancel", seqs[0]);
    let beta_cancels = requests_since(gw.beta(), "cancel", seqs[1]);
    assert_eq!(alpha_cancels.len(), 1, "{alpha_cancels:?}");
    assert_eq!(beta_cancels.len(), 1, "{beta_cancels:?}");
    assert_eq!(
        id_list(&alpha_cancels[0], "orders")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([upstream[&x1].clone(), upstream[&x2].clone()])
    );
    assert_eq!(id_list(&beta_cancels[0], "orders"), [upstream[&x3].clone()]);
    for id in [x1, x2, x3] {
        let order = gw.order(id).await;
        assert!(
            !order.status.is_terminal(),
            "no poll has seen the cancel yet"
        );
        assert_eq!(order.refunded, Money::ZERO);
        let upstream_status = sim_order(&gw, &order).status;
        assert!(
            matches!(
                upstream_status,
                smm_panel_sim::OrderStatus::Canceled | smm_panel_sim::OrderStatus::Partial
            ),
            "the upstream canceled order {id}: {upstream_status:?}"
        );
    }
    assert_eq!(
        gw.balance().await,
        balance,
        "no money before the status turns"
    );
    assert!(
        gw.store()
            .cancels_in_state(ForwardState::Queued, 100)
            .await
            .expect("cancels")
            .is_empty()
    );
    assert_eq!(
        gw.api("cancel", &[("order", &x1.to_string())]).await,
        json!({"cancel": 1}),
        "asked again while the order still runs locally"
    );

    // The next poll sees the outcome: refunds, once (`fixed` is still running upstream).
    assert_eq!(counted_round(&gw).await, 4);
    let done = orders(&gw, &[x1, x2, x3]).await;
    for order in &done {
        let refund = assert_mirrors(order, &sim_order(&gw, order));
        assert!(refund.is_positive(), "order {} refunded", order.id);
    }
    let reply = gw.api("cancel", &[("orders", &format!("{x1},{x3}"))]).await;
    assert_eq!(reply[0]["order"], json!(x1.0));
    assert_eq!(reply[1]["order"], json!(x3.0));
    assert_error_object(&reply[0]["cancel"], "cancel of a finished order");
    assert_error_object(&reply[1]["cancel"], "cancel of a finished order");
    gw.reconcile().await;
    assert_eq!(
        requests_for(gw.alpha(), "cancel").len(),
        1,
        "never sent twice"
    );
    assert_eq!(
        requests_for(gw.beta(), "cancel").len(),
        1,
        "never sent twice"
    );
    for order in &done {
        assert_eq!(
            status_reply(&gw, order.id).await,
            status_json(order, &sim_order(&gw, order))
        );
    }
    let mut all = done;
    all.extend(orders(&gw, &[fixed]).await);
    assert_books(&gw, &all, START_BALANCE).await;
    gw.finish().await;
}

// ---- (f) 19 ------------------------------------------------------------------------------------

/// The customer's `services` entry for `service`, if listed.
async fn listed(gw: &TestGateway, service: u64) -> Option<Value> {
    gw.api("services", &[])
        .await
        .as_array()
        .expect("services is an array")
        .iter()
        .find(|s| s["service"].as_u64() == Some(service))
        .cloned()
}

/// An upstream service that vanishes (or loses its price) takes the local service out of
/// `services` and `add` (never listed at rate 0); a local service with another route keeps
/// serving through it; orders already upstream are still reconciled; restoring the upstream
/// service brings the local one back at its price.
pub async fn vanished_upstream_service_is_disabled_not_free(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 3, Outcomes::always_partial());
    let original = gw.alpha().services();
    let before = listed(&gw, 3).await.expect("service 3 listed");
    let before_1 = listed(&gw, 1).await.expect("service 1 listed");
    let earlier = add(&gw, 3, 5000, "https://instagram.com/p/vanish-earlier").await;
    all_sent(&gw, &[earlier]).await;

    for (what, services) in [
        (
            "vanished",
            original
                .iter()
                .filter(|s| s.id != 3 && s.id != 1)
                .cloned()
                .collect::<Vec<_>>(),
        ),
        (
            "priced 0",
            original
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    if s.id == 3 || s.id == 1 {
                        s.rate = rust_decimal::Decimal::ZERO;
                    }
                    s
                })
                .collect(),
        ),
    ] {
        gw.alpha().set_services(services);
        let issues = gw.app().sync_catalog().await;
        assert!(!issues.is_empty(), "{what}: the sync reports it");
        // Service 3 (and NARROW, also on alpha's 3) has no other route: gone.
        for service in [3, crate::support::NARROW] {
            assert_eq!(
                listed(&gw, service).await,
                None,
                "{what}: {service} unlisted"
            );
            assert_eq!(
                gw.add(&[
                    ("service", &service.to_string()),
                    ("link", LINK),
                    ("quantity", "1000"),
                ])
                .await,
                error_reply("Incorrect service ID"),
                "{what}: service {service}"
            );
        }
        let services = gw.api("services", &[]).await;
        for item in services.as_array().expect("an array") {
            let rate = crate::support::decimal(&item["rate"]);
            assert!(
                rate > rust_decimal::Decimal::ZERO,
                "{what}: never free: {item}"
            );
        }
        // Service 1 also routes to beta's 1: still listed, at a positive rate, served by beta.
        let one = listed(&gw, 1).await.expect("service 1 still listed");
        assert_eq!(
            one["rate"], before_1["rate"],
            "{what}: beta's 1 costs the same"
        );
        let beta_adds = requests_for(gw.beta(), "add").len();
        let id = add(
            &gw,
            1,
            100,
            &format!("https://instagram.com/p/vanish-{}", what.replace(' ', "-")),
        )
        .await;
        let order = all_sent(&gw, &[id]).await.remove(0);
        assert_eq!(order.provider.as_deref(), Some("beta"), "{what}");
        assert_eq!(requests_for(gw.beta(), "add").len(), beta_adds + 1);
    }

    // The order placed before is still reconciled.
    gw.alpha().advance(LONG);
    gw.make_polls_due().await;
    gw.reconcile().await;
    let done = gw.order(earlier).await;
    assert_eq!(done.status, OrderStatus::Partial);
    assert_mirrors(&done, &sim_order(&gw, &done));

    // Restored: back at the same price, and orders go to alpha again.
    gw.alpha().set_services(original);
    gw.app().sync_catalog().await;
    assert_eq!(listed(&gw, 3).await, Some(before));
    assert_eq!(listed(&gw, 1).await, Some(before_1));
    let id = add(&gw, 3, 1000, "https://instagram.com/p/vanish-restored").await;
    assert_eq!(
        all_sent(&gw, &[id]).await[0].provider.as_deref(),
        Some("alpha")
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}
