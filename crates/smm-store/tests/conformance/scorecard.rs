//! Scorecard cases (issue #15): a known history of orders, attempts and refills, and every
//! figure of the routes' records checked against it, on both databases.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use smm_store::*;
use smm_wire::{Money, OrderStatus, RefillStatus};

use crate::cases::{Db, T0, funded, update};

const DAY: i64 = DAY_MS;

/// Places an order at `at`, claims it and notes an attempt at `provider`/`service`; returns it
/// while its attempt is in flight.
async fn attempt(
    db: &Db,
    customer: CustomerId,
    charge: &str,
    provider: &str,
    service: &str,
    at: Timestamp,
) -> Order {
    let order = match db
        .place_order(
            NewOrder {
                customer_id: customer,
                service_id: ServiceId(7),
                service_type: "Default".into(),
                params: r#"{"type":"default","link":"https://x.test/p","quantity":1000,"drip_feed":null}"#.into(),
                link: Some("https://x.test/p".into()),
                quantity: Some(1000),
                units: 1000,
                charge: charge.parse().expect("money"),
                idempotency_key: None,
                placed_as: None,
                request_fingerprint: None,
            },
            at,
        )
        .await
        .expect("place")
    {
        Placed::New(order) => order,
        other => panic!("expected a new order, got {other:?}"),
    };
    let claimed = db.claim_for_forwarding("w", 1000, at).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![order.id]
    );
    db.begin_attempts(
        &[AttemptStart {
            order: order.id,
            provider: provider.into(),
            upstream_service: service.into(),
            why: Some(format!("test: {provider}")),
        }],
        at,
    )
    .await
    .expect("begin");
    order
}

/// An order accepted as `upstream` = (upstream order id, cost in provider money) after a call
/// of `call_ms`.
async fn accepted(
    db: &Db,
    customer: CustomerId,
    charge: &str,
    route: (&str, &str),
    upstream: (&str, &str),
    at: Timestamp,
    call_ms: i64,
) -> Order {
    let order = attempt(db, customer, charge, route.0, route.1, at).await;
    db.finish_attempt(
        order.id,
        ForwardOutcome::Sent {
            upstream_order_id: upstream.0.into(),
            upstream_cost: Some(upstream.1.parse::<Decimal>().expect("decimal")),
            next_poll_at: at + call_ms + 1_000,
        },
        at + call_ms,
    )
    .await
    .expect("sent")
}

async fn status(
    db: &Db,
    provider: &str,
    upstream: &str,
    status: OrderStatus,
    remains: Option<i64>,
    at: Timestamp,
) {
    db.apply_status(provider, upstream, update(status, remains), at)
        .await
        .expect("status")
        .expect("applied");
}

async fn records_over(db: &Db, now: Timestamp, days: u32) -> Vec<RouteRecord> {
    db.route_records(ScoreWindow { now, days })
        .await
        .expect("route records")
}

fn record<'a>(records: &'a [RouteRecord], provider: &str, service: &str) -> &'a RouteRecord {
    records
        .iter()
        .find(|r| r.provider == provider && r.upstream_service == service)
        .unwrap_or_else(|| panic!("no record for {provider}/{service} in {records:?}"))
}

pub async fn scorecards_are_exact(db: Db) {
    let c = funded(&db, "scored", "1000").await;
    let alpha = ("alpha", "10");
    let beta = ("beta", "20");
    // Today, on alpha: four accepted orders.
    // 1: started after 60 s, completed after 600 s.
    let o1 = accepted(&db, c.id, "2", alpha, ("a1", "1.5"), T0, 250).await;
    status(
        &db,
        "alpha",
        "a1",
        OrderStatus::InProgress,
        Some(1000),
        T0 + 250 + 60_000,
    )
    .await;
    status(
        &db,
        "alpha",
        "a1",
        OrderStatus::Completed,
        Some(0),
        T0 + 250 + 600_000,
    )
    .await;
    // 2: started after 120 s (seen twice: the first start counts), completed after 1,234 s.
    accepted(&db, c.id, "2", alpha, ("a2", "1.5"), T0 + 1_000, 1_234).await;
    status(
        &db,
        "alpha",
        "a2",
        OrderStatus::InProgress,
        Some(900),
        T0 + 2_234 + 120_000,
    )
    .await;
    status(
        &db,
        "alpha",
        "a2",
        OrderStatus::InProgress,
        Some(500),
        T0 + 2_234 + 180_000,
    )
    .await;
    status(
        &db,
        "alpha",
        "a2",
        OrderStatus::Completed,
        Some(0),
        T0 + 2_234 + 1_234_000,
    )
    .await;
    // 3: Partial with 250 of 1000 undelivered after a start at 3,000 s: a quarter refunded.
    accepted(&db, c.id, "2", alpha, ("a3", "1.5"), T0 + 2_000, 100).await;
    status(
        &db,
        "alpha",
        "a3",
        OrderStatus::InProgress,
        Some(1000),
        T0 + 2_100 + 3_000_000,
    )
    .await;
    status(
        &db,
        "alpha",
        "a3",
        OrderStatus::Partial,
        Some(250),
        T0 + 2_100 + 3_600_000,
    )
    .await;
    // 4: still pending, never started.
    accepted(&db, c.id, "2", alpha, ("a4", "1.5"), T0 + 3_000, 50).await;
    // A refusal and an ambiguous attempt at alpha; a call that never left.
    let refused = attempt(&db, c.id, "2", "alpha", "10", T0 + 4_000).await;
    db.finish_attempt(
        refused.id,
        ForwardOutcome::Failed {
            not_sent: false,
            detail: "bad link".into(),
        },
        T0 + 4_300,
    )
    .await
    .expect("refused");
    db.reject_order(refused.id, "rejected by every route", T0 + 4_300)
        .await
        .expect("reject");
    let unsure = attempt(&db, c.id, "2", "alpha", "10", T0 + 5_000).await;
    db.finish_attempt(
        unsure.id,
        ForwardOutcome::Ambiguous {
            detail: "timeout".into(),
        },
        T0 + 35_000,
    )
    .await
    .expect("ambiguous");
    let unreachable = attempt(&db, c.id, "2", "alpha", "10", T0 + 6_000).await;
    db.finish_attempt(
        unreachable.id,
        ForwardOutcome::Failed {
            not_sent: true,
            detail: "connection refused".into(),
        },
        T0 + 6_010,
    )
    .await
    .expect("not sent");
    db.requeue(unreachable.id, T0 + DAY, "unreachable", T0 + 6_010)
        .await
        .expect("requeue");
    // Order 1 is refilled twice: one refill completes in 45 s, one is rejected.
    let refill = db
        .create_refill(c.id, o1.id, T0 + 700_000)
        .await
        .expect("refill");
    db.update_refill(
        refill.id,
        RefillUpdate {
            forward_state: Some(ForwardState::Sent),
            upstream_refill_id: Some("r1".into()),
            ..RefillUpdate::default()
        },
        T0 + 700_010,
    )
    .await
    .expect("sent");
    db.update_refill(
        refill.id,
        RefillUpdate {
            status: Some(RefillStatus::Completed),
            ..RefillUpdate::default()
        },
        T0 + 745_000,
    )
    .await
    .expect("done");
    let rejected = db
        .create_refill(c.id, o1.id, T0 + 800_000)
        .await
        .expect("refill");
    db.update_refill(
        rejected.id,
        RefillUpdate {
            status: Some(RefillStatus::Rejected),
            ..RefillUpdate::default()
        },
        T0 + 800_500,
    )
    .await
    .expect("rejected");
    // Ten days ago, on beta: one order canceled before it started (full refund).
    accepted(&db, c.id, "3", beta, ("b1", "2"), T0 - 10 * DAY, 400).await;
    status(
        &db,
        "beta",
        "b1",
        OrderStatus::Canceled,
        Some(1000),
        T0 - 10 * DAY + 5_000,
    )
    .await;
    db.compact_aggregates().await.expect("compact");

    let week = records_over(&db, T0 + 4_000_000, 7).await;
    let month = records_over(&db, T0 + 4_000_000, 30).await;
    assert!(
        week.iter().all(|r| r.provider != "beta"),
        "beta's order is 10 days old: {week:?}"
    );
    let a = record(&week, "alpha", "10");
    assert_eq!(
        a,
        record(&month, "alpha", "10"),
        "alpha's history is all within 7 days"
    );
    let n = a.counts;
    assert_eq!(
        (n.attempts, n.accepted, n.refused, n.ambiguous, n.not_sent),
        (7, 4, 1, 1, 1)
    );
    assert_eq!(n.call_ms, 250 + 1_234 + 100 + 50 + 300 + 30_000 + 10);
    assert_eq!(
        (n.orders, n.started, n.completed, n.partial, n.canceled),
        (4, 3, 2, 1, 0)
    );
    assert_eq!(n.finished(), 3);
    assert_eq!(
        n.undelivered_ppm, 250_000,
        "a quarter of the Partial order undelivered"
    );
    // Costs 1.5 × 4 in 1e-8, a quarter of one order's cost refunded upstream.
    assert_eq!(n.cost_nanos, 600_000_000);
    assert_eq!(n.kept_cost_nanos, 600_000_000 - 37_500_000);
    assert_eq!((n.charged, n.refunded), (800_000, 50_000));
    assert_eq!((n.refills, n.refills_done, n.refills_failed), (2, 1, 1));
    // Durations, truncated to two significant digits of milliseconds.
    let d = &a.durations;
    assert_eq!(d.start.count(), 3);
    assert_eq!(
        (d.start.median(), d.start.p90()),
        (Some(120_000), Some(3_000_000))
    );
    assert_eq!(d.complete.count(), 2);
    assert_eq!(
        (d.complete.median(), d.complete.p90()),
        (Some(600_000), Some(1_200_000))
    );
    assert_eq!((d.refill.count(), d.refill.median()), (1, Some(45_000)));
    assert_eq!(d.call.count(), 7);
    assert_eq!(
        d.call.median(),
        Some(250),
        "calls 10, 50, 100, 250, 300, 1200, 30000"
    );
    assert_eq!(d.call.p90(), Some(30_000));
    let b = record(&month, "beta", "20");
    assert_eq!(
        (b.counts.orders, b.counts.started, b.counts.canceled),
        (1, 0, 1)
    );
    assert_eq!((b.counts.charged, b.counts.refunded), (300_000, 300_000));
    assert_eq!(
        (b.counts.cost_nanos, b.counts.kept_cost_nanos),
        (200_000_000, 0)
    );
    assert_eq!(b.durations.start.count(), 0);

    // The recent window: newest first, with what became of each order.
    // The refusal every route would share is not judged; order 4, accepted at T0 + 3,000 and
    // not started, is judged only once it is older than the start target.
    let query = |limit: u32, open_after: Timestamp| RecentQuery {
        limit,
        since: T0 - DAY,
        open_after,
    };
    let recent = db
        .recent_attempts("alpha", "10", query(10, T0 + 2_999))
        .await
        .expect("recent");
    let outcomes: Vec<&str> = recent.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ambiguous", "sent", "sent", "sent"]);
    assert_eq!(recent[1].status, "Partial");
    assert_eq!(recent[1].started_at, Some(T0 + 2_100 + 3_000_000));
    let stuck = db
        .recent_attempts("alpha", "10", query(10, T0 + 3_000))
        .await
        .expect("recent");
    assert_eq!(stuck.len(), 5);
    assert_eq!(
        (stuck[1].status.as_str(), stuck[1].started_at),
        ("Pending", None)
    );
    let two = db
        .recent_attempts("alpha", "10", query(2, T0 + 3_000))
        .await
        .expect("recent");
    assert_eq!(two.len(), 2);
    let later = RecentQuery {
        since: T0 + 4_000,
        ..query(10, T0 + 3_000)
    };
    let only = db
        .recent_attempts("alpha", "10", later)
        .await
        .expect("recent");
    assert_eq!(
        only.len(),
        1,
        "only the ambiguous call is that recent: {only:?}"
    );
    // A refusal of an order another route then accepted is about the route: judged.
    let moved = attempt(&db, c.id, "2", "alpha", "10", T0 + 8_000).await;
    db.finish_attempt(
        moved.id,
        ForwardOutcome::Failed {
            not_sent: false,
            detail: "service paused".into(),
        },
        T0 + 8_100,
    )
    .await
    .expect("refused");
    db.begin_attempts(
        &[AttemptStart {
            order: moved.id,
            provider: "beta".into(),
            upstream_service: "20".into(),
            why: Some("fail-over".into()),
        }],
        T0 + 8_100,
    )
    .await
    .expect("begin at beta");
    db.finish_attempt(
        moved.id,
        ForwardOutcome::Sent {
            upstream_order_id: "b2".into(),
            upstream_cost: None,
            next_poll_at: T0 + 9_000,
        },
        T0 + 8_200,
    )
    .await
    .expect("sent at beta");
    let judged = db
        .recent_attempts("alpha", "10", query(1, T0 + 2_999))
        .await
        .expect("recent");
    assert_eq!(
        (judged[0].order_id, judged[0].outcome.as_str()),
        (moved.id, "rejected")
    );
    let attempts = db.attempts(o1.id).await.expect("attempts");
    assert_eq!(attempts[0].why.as_deref(), Some("test: alpha"));
}

/// A report in a poll round: the order's index, its status and `remains`.
type Report = (usize, OrderStatus, Option<i64>);

/// A poll batch's statuses count as the same reports applied one by one: two routes given the
/// same history, one polled order by order, the other in batches, keep the same record, the
/// same totals per provider, the same timelines, and the status counts stay those of the
/// orders. (On PostgreSQL the batch is written set-wise and the one-by-one path by the row
/// triggers: migration 0019 must write what they do.)
pub async fn batched_statuses_score_as_one_by_one(db: Db) {
    let c = funded(&db, "batched", "1000").await;
    let routes = [("solo", "10"), ("batch", "10")];
    let mut uids: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let mut orders: Vec<Vec<OrderId>> = vec![Vec::new(), Vec::new()];
    for (r, route) in routes.iter().enumerate() {
        for i in 0..7i64 {
            let uid = format!("{}-{i}", route.0);
            let cost = format!("1.{i}");
            let order = accepted(
                &db,
                c.id,
                "2",
                *route,
                (&uid, &cost),
                T0 + i * 1_000,
                100 + i,
            )
            .await;
            uids[r].push(uid);
            orders[r].push(order.id);
        }
    }
    // Three rounds of reports (order index, status, remains), at the same times for both routes:
    // starts, completions, a Partial, a cancel, an order reported twice in one round, and one
    // that never moves.
    let rounds: [(Timestamp, Vec<Report>); 3] = [
        (
            T0 + 90_000,
            vec![
                (0, OrderStatus::InProgress, Some(1000)),
                (1, OrderStatus::InProgress, Some(800)),
                (2, OrderStatus::Completed, Some(0)),
                (3, OrderStatus::Canceled, Some(1000)),
                (4, OrderStatus::Processing, None),
                (5, OrderStatus::Pending, None),
            ],
        ),
        (
            T0 + 700_000,
            vec![
                (0, OrderStatus::Completed, Some(0)),
                (1, OrderStatus::InProgress, Some(300)),
                (4, OrderStatus::InProgress, Some(600)),
                (4, OrderStatus::Partial, Some(600)),
                (5, OrderStatus::InProgress, Some(1000)),
            ],
        ),
        (
            T0 + 2_500_000,
            vec![
                (1, OrderStatus::Partial, Some(250)),
                (5, OrderStatus::Completed, Some(0)),
            ],
        ),
    ];
    for (at, reports) in &rounds {
        for (i, reported, remains) in reports {
            status(&db, "solo", &uids[0][*i], reported.clone(), *remains, *at).await;
        }
        let batch: Vec<(String, StatusUpdate)> = reports
            .iter()
            .map(|(i, reported, remains)| (uids[1][*i].clone(), update(reported.clone(), *remains)))
            .collect();
        let applied = db.apply_statuses("batch", batch, *at).await.expect("batch");
        assert!(applied.iter().all(Option::is_some), "{applied:?}");
    }
    db.compact_aggregates().await.expect("compact");

    let records = records_over(&db, T0 + 3_000_000, 7).await;
    let solo = record(&records, "solo", "10");
    let batch = RouteRecord {
        provider: "solo".into(),
        ..record(&records, "batch", "10").clone()
    };
    assert_eq!(batch, *solo, "batched polling scored differently");
    let n = solo.counts;
    assert_eq!(
        (n.orders, n.started, n.completed, n.partial, n.canceled),
        (7, 5, 3, 2, 1)
    );
    assert_eq!(n.undelivered_ppm, 600_000 + 250_000);
    assert_eq!(solo.durations.complete.count(), 3);
    assert!(n.refunded > 0 && n.kept_cost_nanos < n.cost_nanos, "{n:?}");

    let totals = db.order_totals_since(T0).await.expect("totals");
    let provider = |name: &str| -> Vec<(Timestamp, i64, Decimal, Decimal)> {
        totals
            .providers
            .iter()
            .filter(|p| p.provider == name)
            .map(|p| (p.day_start, p.orders, p.cost, p.kept_cost))
            .collect()
    };
    assert_eq!(provider("batch"), provider("solo"), "{totals:?}");
    assert!(provider("solo")[0].3 < provider("solo")[0].2, "{totals:?}");
    let day = &totals.days[0];
    let mut charged = Money::ZERO;
    let mut refunded = Money::ZERO;
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    for id in orders.iter().flatten() {
        let order = db.order(*id).await.expect("order");
        charged = charged.checked_add(order.charge).expect("sum");
        refunded = refunded.checked_add(order.refunded).expect("sum");
        *by_status
            .entry(order.status.as_str().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        (day.orders, day.charged, day.refunded),
        (14, charged, refunded)
    );
    let counted: BTreeMap<String, i64> = db
        .count_by_status()
        .await
        .expect("counts")
        .into_iter()
        .collect();
    assert_eq!(counted, by_status);
    for (i, (solo, batch)) in orders[0].iter().zip(&orders[1]).enumerate() {
        let events = |t: OrderTimeline| -> Vec<(Timestamp, String, ForwardState)> {
            t.events
                .into_iter()
                .map(|e| (e.at, e.status, e.forward_state))
                .collect()
        };
        let mut solo = events(db.order_timeline(*solo).await.expect("timeline"));
        let batch = events(db.order_timeline(*batch).await.expect("timeline"));
        if i == 4 {
            // Reported twice in the second round: the batch applies the last report only.
            let superseded = (T0 + 700_000, "In progress".to_owned(), ForwardState::Sent);
            assert!(solo.contains(&superseded), "{solo:?}");
            solo.retain(|e| *e != superseded);
        }
        assert_eq!(batch, solo, "order {i}");
    }
}
