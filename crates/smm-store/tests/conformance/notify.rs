//! Notification cases (issue #14): the webhook outbox the triggers fill, its delivery
//! bookkeeping, and the reseller's alert conditions.

use std::collections::HashSet;

use smm_store::*;
use smm_wire::{Money, OrderStatus, RefillStatus};

use crate::cases::{
    Db, T0, assert_books_balance, customer, funded, money, place, refund_rows, sent_order, update,
};

const HOOK: &str = "http://127.0.0.1:9/hook";

/// A claim of up to `limit` events, whoever's.
fn any(limit: u32) -> WebhookClaim<'static> {
    WebhookClaim {
        limit,
        per_customer: limit,
        skip: &[],
    }
}

async fn hooked(db: &Db, name: &str, amount: &str) -> Customer {
    let c = funded(db, name, amount).await;
    db.set_webhook(c.id, Some((HOOK, "whsec_test")), "admin", T0)
        .await
        .expect("set webhook");
    c
}

/// Every event of the customer, oldest first.
async fn events(db: &Db, c: CustomerId) -> Vec<WebhookEvent> {
    let mut all = db.webhook_events(c, 1000, None).await.expect("events");
    all.reverse();
    all
}

fn delivered(job: &WebhookJob, at: Timestamp) -> DeliveryOutcome {
    DeliveryOutcome {
        event: job.event.id,
        customer: job.event.customer,
        at,
        http_status: Some(200),
        latency_ms: 3,
        error: None,
        next: DeliveryNext::Delivered,
    }
}

fn failed(job: &WebhookJob, at: Timestamp, next: DeliveryNext) -> DeliveryOutcome {
    DeliveryOutcome {
        event: job.event.id,
        customer: job.event.customer,
        at,
        http_status: Some(500),
        latency_ms: 7,
        error: Some("HTTP 500".into()),
        next,
    }
}

/// A poll batch pays its refunds in its own transaction, for several customers at once: each
/// refund once, its event before its order's status event (which shows the charge net of
/// it), the books balanced; a second report of one order in the batch answers as the last one.
pub async fn batched_refunds_commit_with_their_statuses(db: Db) {
    let c = hooked(&db, "hooked", "10").await;
    let q = funded(&db, "plain", "10").await;
    let partial = sent_order(&db, c.id, "0.27819", "alpha", "r1").await;
    let plain_canceled = sent_order(&db, q.id, "1", "alpha", "r2").await;
    let canceled = sent_order(&db, c.id, "1", "alpha", "r3").await;
    let running = sent_order(&db, q.id, "1", "alpha", "r4").await;
    let batch = vec![
        ("r3".to_owned(), update(OrderStatus::InProgress, Some(500))),
        ("r2".to_owned(), update(OrderStatus::Canceled, None)),
        ("r1".to_owned(), update(OrderStatus::Partial, Some(157))),
        ("r4".to_owned(), update(OrderStatus::InProgress, Some(10))),
        ("r3".to_owned(), update(OrderStatus::Canceled, None)),
    ];
    let results = db
        .apply_statuses("alpha", batch.clone(), T0 + 2_000)
        .await
        .expect("batch");
    let got: Vec<(OrderId, Option<Money>, bool)> = results
        .iter()
        .map(|r| {
            let r = r.expect("known");
            (r.order_id, r.refund, r.terminal)
        })
        .collect();
    let refund = Money::from_units(4_367);
    assert_eq!(
        got,
        vec![
            (canceled.id, None, true),
            (plain_canceled.id, Some(money("1")), true),
            (partial.id, Some(refund), true),
            (running.id, None, false),
            (canceled.id, Some(money("1")), true),
        ]
    );
    for (order, status, refunded) in [
        (partial.id, OrderStatus::Partial, refund),
        (plain_canceled.id, OrderStatus::Canceled, money("1")),
        (canceled.id, OrderStatus::Canceled, money("1")),
        (running.id, OrderStatus::InProgress, Money::ZERO),
    ] {
        let o = db.order(order).await.expect("order");
        assert_eq!((o.status, o.refunded), (status, refunded), "order {order}");
    }
    for (customer, order) in [
        (c.id, partial.id),
        (c.id, canceled.id),
        (q.id, plain_canceled.id),
    ] {
        assert_eq!(refund_rows(&db, customer, order).await, 1);
    }
    assert_books_balance(&db, c.id).await;
    assert_books_balance(&db, q.id).await;

    // The hooked customer's events: each refund, and each status change showing it.
    let got = events(&db, c.id).await;
    let refunds: Vec<OrderId> = got
        .iter()
        .filter_map(|e| match &e.data {
            WebhookEventData::RefundPaid { order, .. } => Some(*order),
            _ => None,
        })
        .collect();
    assert_eq!(refunds, vec![partial.id, canceled.id]);
    let statuses: Vec<(OrderId, OrderStatus, Money)> = got
        .iter()
        .filter_map(|e| match &e.data {
            WebhookEventData::OrderStatus { order, .. } => {
                Some((order.id, order.status.clone(), order.net_charge()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (
                partial.id,
                OrderStatus::Partial,
                partial.charge.checked_sub(refund).expect("net")
            ),
            (canceled.id, OrderStatus::Canceled, Money::ZERO),
        ]
    );
    // docs/notifications.md: a `refund.paid` comes before its order's `order.status`.
    for (at, event) in got.iter().enumerate() {
        if let WebhookEventData::RefundPaid { order, .. } = &event.data {
            let status = got.iter().position(|e| {
                matches!(&e.data, WebhookEventData::OrderStatus { order: view, .. } if view.id == *order)
            });
            assert!(
                status.is_some_and(|s| s > at),
                "refund of {order} after its status: {got:?}"
            );
        }
    }
    // The same batch again pays nothing more.
    let again = db
        .apply_statuses("alpha", batch, T0 + 3_000)
        .await
        .expect("batch");
    assert!(
        again.iter().flatten().all(|a| a.refund.is_none()),
        "{again:?}"
    );
    assert_books_balance(&db, c.id).await;
    assert_books_balance(&db, q.id).await;
    assert_eq!(events(&db, c.id).await.len(), got.len());
}

pub async fn webhook_events_follow_every_change(db: Db) {
    let quiet = funded(&db, "quiet", "10").await;
    let c = hooked(&db, "hooky", "10").await;
    let settings = db.webhook(c.id).await.expect("settings");
    assert_eq!(settings.url.as_deref(), Some(HOOK));
    assert_eq!(settings.pending, 0);

    // Placing is not a change of status; being sent is not either.
    let order = sent_order(&db, c.id, "0.27819", "alpha", "1").await;
    let unhooked = sent_order(&db, quiet.id, "1", "alpha", "2").await;
    assert!(events(&db, c.id).await.is_empty());

    db.apply_status(
        "alpha",
        "1",
        update(OrderStatus::InProgress, Some(400)),
        T0 + 2_000,
    )
    .await
    .expect("apply")
    .expect("known");
    // The same status again is no change.
    db.apply_status(
        "alpha",
        "1",
        update(OrderStatus::InProgress, Some(300)),
        T0 + 2_500,
    )
    .await
    .expect("apply");
    db.apply_status(
        "alpha",
        "1",
        update(OrderStatus::Partial, Some(157)),
        T0 + 3_000,
    )
    .await
    .expect("apply");
    db.apply_status(
        "alpha",
        "2",
        update(OrderStatus::Completed, Some(0)),
        T0 + 3_000,
    )
    .await
    .expect("apply");
    assert!(
        events(&db, quiet.id).await.is_empty(),
        "no webhook, no events"
    );
    let _ = unhooked;

    let got = events(&db, c.id).await;
    let kinds: Vec<WebhookEventKind> = got.iter().map(|e| e.data.kind()).collect();
    assert_eq!(
        kinds,
        [
            WebhookEventKind::OrderStatus,
            WebhookEventKind::RefundPaid,
            WebhookEventKind::OrderStatus,
        ]
    );
    match &got[0].data {
        WebhookEventData::OrderStatus {
            order: view,
            previous,
        } => {
            assert_eq!(view.id, order.id);
            assert_eq!(*previous, OrderStatus::Pending);
            assert_eq!(view.status, OrderStatus::InProgress);
            assert_eq!(view.remains, Some(400));
            assert_eq!(view.start_count, Some(3572));
            assert_eq!(view.refunded, Money::ZERO);
        }
        other => panic!("expected an order status, got {other:?}"),
    }
    assert_eq!(got[0].created_at, T0 + 2_000);
    let refund = Money::from_units(4_367);
    match &got[1].data {
        WebhookEventData::RefundPaid {
            order: o,
            amount,
            balance,
        } => {
            assert_eq!(*o, order.id);
            assert_eq!(*amount, refund);
            assert_eq!(*balance, db.customer(c.id).await.expect("customer").balance);
        }
        other => panic!("expected a refund, got {other:?}"),
    }
    match &got[2].data {
        WebhookEventData::OrderStatus {
            order: view,
            previous,
        } => {
            assert_eq!(*previous, OrderStatus::InProgress);
            assert_eq!(view.status, OrderStatus::Partial);
            assert_eq!(view.remains, Some(157));
            // What `status` shows from now on: the charge net of the refund.
            assert_eq!(
                view.net_charge(),
                order.charge.checked_sub(refund).expect("net")
            );
            let shown = db
                .customer_order_statuses(c.id, &[order.id])
                .await
                .expect("statuses");
            assert_eq!(&shown[0], view);
        }
        other => panic!("expected an order status, got {other:?}"),
    }
    assert!(got.iter().all(|e| e.state == WebhookEventState::Pending));

    // A local cancel of a queued order: Canceled, and its refund.
    let queued = place(&db, c.id, "1").await;
    match db
        .request_cancel(c.id, queued.id, T0 + 4_000)
        .await
        .expect("cancel")
    {
        CancelOutcome::CanceledLocally { .. } => {}
        other => panic!("expected a local cancel, got {other:?}"),
    }
    let got = events(&db, c.id).await;
    let last: Vec<WebhookEventKind> = got[3..].iter().map(|e| e.data.kind()).collect();
    assert_eq!(
        last,
        [WebhookEventKind::RefundPaid, WebhookEventKind::OrderStatus]
    );

    // Refills: every change of a refill's status.
    let refill = db
        .create_refill(c.id, order.id, T0 + 5_000)
        .await
        .expect("refill");
    db.update_refill(
        refill.id,
        RefillUpdate {
            status: Some(RefillStatus::InProgress),
            ..RefillUpdate::default()
        },
        T0 + 6_000,
    )
    .await
    .expect("refill update");
    let got = events(&db, c.id).await;
    match &got.last().expect("an event").data {
        WebhookEventData::RefillStatus {
            refill: r,
            order: o,
            status,
            previous,
        } => {
            assert_eq!((*r, *o), (refill.id, order.id));
            assert_eq!(*status, RefillStatus::InProgress);
            assert_eq!(*previous, RefillStatus::Pending);
        }
        other => panic!("expected a refill status, got {other:?}"),
    }
    assert_eq!(db.webhook(c.id).await.expect("settings").pending, 6);
    assert_books_balance(&db, c.id).await;
}

pub async fn webhook_claims_keep_each_orders_events_in_order(db: Db) {
    let c = hooked(&db, "orderly", "10").await;
    let a = sent_order(&db, c.id, "1", "alpha", "a").await;
    let b = sent_order(&db, c.id, "1", "alpha", "b").await;
    for (at, status) in [
        (T0 + 1_000, OrderStatus::InProgress),
        (T0 + 2_000, OrderStatus::Completed),
    ] {
        for upstream in ["a", "b"] {
            db.apply_status("alpha", upstream, update(status.clone(), Some(0)), at)
                .await
                .expect("apply");
        }
    }
    // Nothing is due before it was recorded.
    assert!(
        db.claim_webhook_events(any(10), T0 + 60_000, T0 + 999)
            .await
            .expect("claim")
            .is_empty()
    );
    // One event per order at a time: the first of each.
    let first = db
        .claim_webhook_events(any(10), T0 + 60_000, T0 + 3_000)
        .await
        .expect("claim");
    let orders: Vec<Option<OrderId>> = first.iter().map(|j| j.event.data.order()).collect();
    assert_eq!(orders, [Some(a.id), Some(b.id)]);
    assert!(
        first
            .iter()
            .all(|j| j.url == HOOK && j.secret == "whsec_test")
    );
    assert!(first.iter().all(|j| j.currency == "USD"));
    // Leased: not claimed again meanwhile, and the second events wait behind them.
    assert!(
        db.claim_webhook_events(any(10), T0 + 60_000, T0 + 3_000)
            .await
            .expect("claim")
            .is_empty()
    );
    // a's first is delivered, b's fails and is retried later: a's second goes, b's waits.
    db.finish_webhook_deliveries(
        &[
            delivered(&first[0], T0 + 3_100),
            failed(&first[1], T0 + 3_100, DeliveryNext::RetryAt(T0 + 10_000)),
        ],
        &[],
        T0 + 3_100,
    )
    .await
    .expect("finish");
    let second = db
        .claim_webhook_events(any(10), T0 + 60_000, T0 + 4_000)
        .await
        .expect("claim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.data.order(), Some(a.id));
    match &second[0].event.data {
        WebhookEventData::OrderStatus { order, .. } => {
            assert_eq!(order.status, OrderStatus::Completed)
        }
        other => panic!("{other:?}"),
    }
    db.finish_webhook_deliveries(&[delivered(&second[0], T0 + 4_100)], &[], T0 + 4_100)
        .await
        .expect("finish");
    // b's first comes back when its retry is due, attempt 2.
    let retry = db
        .claim_webhook_events(any(10), T0 + 60_000, T0 + 10_000)
        .await
        .expect("claim");
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].event.id, first[1].event.id);
    assert_eq!(retry[0].event.attempts, 1);
    assert_eq!(retry[0].event.last_error.as_deref(), Some("HTTP 500"));
    db.finish_webhook_deliveries(&[delivered(&retry[0], T0 + 10_100)], &[], T0 + 10_100)
        .await
        .expect("finish");
    let log = db.webhook_deliveries(c.id, 100, None).await.expect("log");
    assert_eq!(log.len(), 4);
    let for_b: Vec<(i64, Option<u16>)> = log
        .iter()
        .rev()
        .filter(|d| d.event == first[1].event.id)
        .map(|d| (d.attempt, d.http_status))
        .collect();
    assert_eq!(for_b, [(1, Some(500)), (2, Some(200))]);
    let _ = b;
}

pub async fn paused_webhooks_keep_their_events_until_resumed(db: Db) {
    let c = hooked(&db, "flaky", "10").await;
    sent_order(&db, c.id, "1", "alpha", "p").await;
    db.apply_status(
        "alpha",
        "p",
        update(OrderStatus::Completed, Some(0)),
        T0 + 1_000,
    )
    .await
    .expect("apply");
    let jobs = db
        .claim_webhook_events(any(10), T0 + 60_000, T0 + 2_000)
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 1);
    let channels = vec!["ops".to_owned()];
    let paused = db
        .finish_webhook_deliveries(
            &[failed(&jobs[0], T0 + 2_000, DeliveryNext::Pause)],
            &channels,
            T0 + 2_000,
        )
        .await
        .expect("finish");
    assert_eq!(paused, [c.id]);
    // The reseller's alert was written with the pause.
    let told = db
        .claim_alerts(10, T0 + 60_000, T0 + 2_000)
        .await
        .expect("alerts");
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].channel, "ops");
    assert!(
        told[0]
            .key
            .starts_with(&format!("webhook.paused:{}:", c.id.0))
    );
    assert!(told[0].lines[0].contains("HTTP 500"), "{:?}", told[0].lines);
    let settings = db.webhook(c.id).await.expect("settings");
    assert_eq!(settings.paused_at, Some(T0 + 2_000));
    assert_eq!(settings.pending, 1);
    let backlog = db.webhook_backlog().await.expect("backlog");
    assert_eq!(backlog.paused_customers, 1);
    assert_eq!(backlog.pending, 1);
    assert_eq!(
        backlog.oldest_pending_at, None,
        "a paused customer's events are not due"
    );
    assert!(
        db.claim_webhook_events(any(10), T0 + 60_000, T0 + 90_000)
            .await
            .expect("claim")
            .is_empty()
    );
    // Resuming puts them back at once; resuming twice is refused.
    db.resume_webhook(c.id, "admin", T0 + 100_000)
        .await
        .expect("resume");
    assert!(matches!(
        db.resume_webhook(c.id, "admin", T0 + 100_000).await,
        Err(StoreError::InvalidState(_))
    ));
    let jobs = db
        .claim_webhook_events(any(10), T0 + 160_000, T0 + 100_000)
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 1);
    // Resumed: a fresh retry window and backoff, the attempts still counted.
    assert_eq!(jobs[0].event.retry_from, T0 + 100_000);
    assert_eq!((jobs[0].event.tries, jobs[0].event.attempts), (0, 1));
    db.finish_webhook_deliveries(&[delivered(&jobs[0], T0 + 100_001)], &[], T0 + 100_001)
        .await
        .expect("finish");
    let event = db.webhook_event(jobs[0].event.id).await.expect("event");
    assert_eq!(event.state, WebhookEventState::Delivered);
    assert_eq!(event.delivered_at, Some(T0 + 100_001));

    // A resend goes out again under the same id.
    let again = db
        .resend_webhook_event(event.id, "admin", T0 + 200_000)
        .await
        .expect("resend");
    assert_eq!(again.state, WebhookEventState::Pending);
    let jobs = db
        .claim_webhook_events(any(10), T0 + 260_000, T0 + 200_000)
        .await
        .expect("claim");
    assert_eq!(
        jobs.iter().map(|j| j.event.id).collect::<Vec<_>>(),
        [event.id]
    );

    // Removing the webhook discards what waits; a resend then has nowhere to go.
    db.set_webhook(c.id, None, "admin", T0 + 300_000)
        .await
        .expect("clear");
    let event = db.webhook_event(event.id).await.expect("event");
    assert_eq!(event.state, WebhookEventState::Discarded);
    assert!(matches!(
        db.resend_webhook_event(event.id, "admin", T0 + 300_001)
            .await,
        Err(StoreError::InvalidState(_))
    ));
    // A late outcome for a discarded event is logged and changes nothing.
    db.finish_webhook_deliveries(&[delivered(&jobs[0], T0 + 300_002)], &[], T0 + 300_002)
        .await
        .expect("finish");
    assert_eq!(
        db.webhook_event(event.id).await.expect("event").state,
        WebhookEventState::Discarded
    );
    // The audit names the URL, never the secret.
    let audit = db.audit_log(100).await.expect("audit");
    let hooks: Vec<&AuditEntry> = audit
        .iter()
        .filter(|e| e.action.starts_with("customer.webhook") || e.action == "webhook.resend")
        .collect();
    assert_eq!(hooks.len(), 4);
    assert!(
        audit
            .iter()
            .all(|e| !format!("{e:?}").contains("whsec_test"))
    );
}

pub async fn low_balance_is_told_once_per_crossing(db: Db) {
    let c = hooked(&db, "spender", "1").await;
    assert!(matches!(
        db.set_low_balance_threshold(c.id, Some(Money::ZERO), "admin", T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    let settings = db
        .set_low_balance_threshold(c.id, Some(money("0.5")), "admin", T0)
        .await
        .expect("threshold");
    assert_eq!(settings.low_balance_threshold, Some(money("0.5")));
    // 1.00 → 0.70 (above), → 0.40 (crosses), → 0.10 (still below: nothing new).
    for charge in ["0.3", "0.3", "0.3"] {
        place(&db, c.id, charge).await;
    }
    let lows: Vec<WebhookEvent> = events(&db, c.id)
        .await
        .into_iter()
        .filter(|e| e.data.kind() == WebhookEventKind::BalanceLow)
        .collect();
    assert_eq!(lows.len(), 1);
    assert_eq!(
        lows[0].data,
        WebhookEventData::BalanceLow {
            balance: money("0.4"),
            threshold: money("0.5"),
        }
    );
    // Back above, and down again: a second crossing, a second event.
    db.adjust_balance(c.id, LedgerKind::Deposit, money("1"), "top-up", "admin", T0)
        .await
        .expect("deposit");
    place(&db, c.id, "0.7").await;
    let lows = events(&db, c.id)
        .await
        .into_iter()
        .filter(|e| e.data.kind() == WebhookEventKind::BalanceLow)
        .count();
    assert_eq!(lows, 2);
    assert_books_balance(&db, c.id).await;
}

pub async fn concurrent_webhook_claims_take_each_event_once(db: Db) {
    let c = hooked(&db, "busy", "100").await;
    let plain = customer(&db, "plain").await;
    let _ = plain;
    for i in 0..300 {
        db.adjust_balance(
            c.id,
            LedgerKind::Adjustment,
            money("-0.01"),
            "x",
            "admin",
            T0,
        )
        .await
        .expect("debit");
        let _ = i;
    }
    // 300 refunds-free postings make no events; statuses of 300 orders do.
    let mut orders = Vec::new();
    for i in 0..300 {
        orders.push(sent_order(&db, c.id, "0.01", "alpha", &format!("u{i}")).await);
    }
    for i in 0..300 {
        db.apply_status(
            "alpha",
            &format!("u{i}"),
            update(OrderStatus::Completed, Some(0)),
            T0 + 1_000,
        )
        .await
        .expect("apply");
    }
    let claim = |db: Db| async move {
        let mut mine = Vec::new();
        loop {
            let jobs = db
                .claim_webhook_events(any(25), T0 + 600_000, T0 + 2_000)
                .await
                .expect("claim");
            if jobs.is_empty() {
                return mine;
            }
            mine.extend(jobs.into_iter().map(|j| j.event.id));
            tokio::task::yield_now().await;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claim(db.clone())),
        tokio::spawn(claim(db.clone()))
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    let all: HashSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 300, "an event was claimed twice");
    assert_eq!(all.len(), 300);
}

pub async fn alert_conditions_alert_once_per_change(db: Db) {
    let channels = vec!["ops".to_owned(), "mail".to_owned()];
    let lines = vec!["alpha answered 503 five times".to_owned()];
    let alert = NewAlert {
        key: "provider.cooldown:alpha",
        title: "alpha is cooling down",
        lines: &lines,
        channels: &channels,
    };
    const COOLDOWN: i64 = 600_000;
    // Two instances see it start at once: one alert.
    let (x, y) = tokio::join!(
        db.alert_condition(&alert, true, COOLDOWN, T0),
        db.alert_condition(&alert, true, COOLDOWN, T0)
    );
    assert_eq!(
        [x.expect("x"), y.expect("y")]
            .iter()
            .filter(|s| **s)
            .count(),
        1
    );
    assert!(
        !db.alert_condition(&alert, true, COOLDOWN, T0 + 1)
            .await
            .expect("again")
    );
    let active = db.active_alerts().await.expect("active");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].key, "provider.cooldown:alpha");
    assert_eq!(active[0].since, T0);
    // It clears once.
    assert!(
        db.alert_condition(&alert, false, COOLDOWN, T0 + 10)
            .await
            .expect("clear")
    );
    assert!(
        !db.alert_condition(&alert, false, COOLDOWN, T0 + 11)
            .await
            .expect("clear")
    );
    assert!(db.active_alerts().await.expect("active").is_empty());
    // Flapping within the cooldown: recorded, not sent, and neither is its clear.
    assert!(
        !db.alert_condition(&alert, true, COOLDOWN, T0 + 20)
            .await
            .expect("flap")
    );
    assert_eq!(db.active_alerts().await.expect("active").len(), 1);
    assert!(
        !db.alert_condition(&alert, false, COOLDOWN, T0 + 30)
            .await
            .expect("clear")
    );
    // Started again within the cooldown and still on when it has passed: held back, then
    // sent once.
    for at in [T0 + 40, T0 + COOLDOWN - 1] {
        assert!(
            !db.alert_condition(&alert, true, COOLDOWN, at)
                .await
                .expect("held")
        );
    }
    assert!(
        db.alert_condition(&alert, true, COOLDOWN, T0 + COOLDOWN + 1)
            .await
            .expect("late start")
    );
    assert!(
        !db.alert_condition(&alert, true, COOLDOWN, T0 + COOLDOWN + 2)
            .await
            .expect("once")
    );

    // One-offs: once per key, ever.
    let summary = NewAlert {
        key: "summary:2023-11-14",
        title: "Daily summary",
        lines: &lines,
        channels: &channels,
    };
    assert!(db.alert_event(&summary, T0).await.expect("event"));
    assert!(!db.alert_event(&summary, T0 + 5).await.expect("event"));

    // The outbox: start, clear, start, summary — one row per channel each.
    let claimed = db
        .claim_alerts(100, T0 + COOLDOWN * 2, T0 + COOLDOWN + 2)
        .await
        .expect("claim");
    let states: Vec<(AlertState, &str)> = claimed
        .iter()
        .map(|m| (m.state, m.channel.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (AlertState::Started, "ops"),
            (AlertState::Started, "mail"),
            (AlertState::Cleared, "ops"),
            (AlertState::Cleared, "mail"),
            (AlertState::Started, "ops"),
            (AlertState::Started, "mail"),
            (AlertState::Event, "ops"),
            (AlertState::Event, "mail"),
        ]
    );
    assert_eq!(claimed[0].lines, lines);
    assert!(
        db.claim_alerts(100, T0 + COOLDOWN * 2, T0 + COOLDOWN + 2)
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    // Sent, retried, given up.
    let outcomes: Vec<AlertOutcome> = claimed
        .iter()
        .enumerate()
        .map(|(i, m)| AlertOutcome {
            id: m.id,
            error: (i > 0).then(|| "refused".to_owned()),
            retry_at: (i == 1).then_some(T0 + COOLDOWN + 100),
            gave_up: i > 1,
        })
        .collect();
    db.finish_alerts(&outcomes, T0 + COOLDOWN + 3)
        .await
        .expect("finish");
    let again = db
        .claim_alerts(100, T0 + COOLDOWN * 3, T0 + COOLDOWN + 100)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|m| m.id).collect::<Vec<_>>(),
        [claimed[1].id]
    );
    assert_eq!(again[0].attempts, 1);
}

pub async fn webhook_claims_share_out_receivers(db: Db) {
    let a = hooked(&db, "alpha-co", "10").await;
    let b = hooked(&db, "beta-co", "10").await;
    for (c, prefix) in [(&a, "a"), (&b, "b")] {
        for i in 0..5 {
            let upstream = format!("{prefix}{i}");
            sent_order(&db, c.id, "0.1", "alpha", &upstream).await;
            db.apply_status(
                "alpha",
                &upstream,
                update(OrderStatus::Completed, Some(0)),
                T0 + 1_000,
            )
            .await
            .expect("apply");
        }
    }
    // At most two of one customer per claim, however many are due.
    let claim = |skip: &'static [CustomerId]| WebhookClaim {
        limit: 100,
        per_customer: 2,
        skip,
    };
    let first = db
        .claim_webhook_events(claim(&[]), T0 + 60_000, T0 + 2_000)
        .await
        .expect("claim");
    let of =
        |jobs: &[WebhookJob], c: CustomerId| jobs.iter().filter(|j| j.event.customer == c).count();
    assert_eq!((of(&first, a.id), of(&first, b.id)), (2, 2));
    // A customer skipped gets nothing; the other gets their next two.
    let skip: &'static [CustomerId] = Box::leak(vec![a.id].into_boxed_slice());
    let second = db
        .claim_webhook_events(claim(skip), T0 + 60_000, T0 + 2_000)
        .await
        .expect("claim");
    assert_eq!((of(&second, a.id), of(&second, b.id)), (0, 2));
    let ids: HashSet<i64> = first.iter().chain(&second).map(|j| j.event.id).collect();
    assert_eq!(ids.len(), 6, "no event claimed twice");
    // A process that knows it is alone lets go of every claim: they can be taken at once.
    assert_eq!(db.release_notification_claims().await.expect("release"), 6);
    let again = db
        .claim_webhook_events(any(100), T0 + 60_000, T0 + 2_000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 10);
}

pub async fn notifications_are_pruned_once_done(db: Db) {
    let c = hooked(&db, "old-timer", "10").await;
    for upstream in ["d1", "d2", "w1"] {
        sent_order(&db, c.id, "0.1", "alpha", upstream).await;
        db.apply_status(
            "alpha",
            upstream,
            update(OrderStatus::Completed, Some(0)),
            T0 + 1_000,
        )
        .await
        .expect("apply");
    }
    let jobs = db
        .claim_webhook_events(any(10), T0 + 60_000, T0 + 2_000)
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 3);
    // Two delivered, one still failing.
    db.finish_webhook_deliveries(
        &[
            delivered(&jobs[0], T0 + 2_000),
            delivered(&jobs[1], T0 + 2_000),
            failed(&jobs[2], T0 + 2_000, DeliveryNext::RetryAt(T0 + 9_000)),
        ],
        &[],
        T0 + 2_000,
    )
    .await
    .expect("finish");
    let channels = vec!["ops".to_owned()];
    let lines = vec!["x".to_owned()];
    let alert = |key| NewAlert {
        key,
        title: "t",
        lines: &lines,
        channels: &channels,
    };
    db.alert_condition(&alert("still.on"), true, 0, T0)
        .await
        .expect("on");
    db.alert_condition(&alert("was.on"), true, 0, T0)
        .await
        .expect("on");
    db.alert_condition(&alert("was.on"), false, 0, T0 + 1)
        .await
        .expect("off");
    db.alert_event(&alert("one.off"), T0).await.expect("event");
    let sent = db
        .claim_alerts(100, T0 + 60_000, T0 + 2)
        .await
        .expect("claim");
    let outcomes: Vec<AlertOutcome> = sent
        .iter()
        .map(|m| AlertOutcome {
            id: m.id,
            error: None,
            retry_at: None,
            gave_up: false,
        })
        .collect();
    db.finish_alerts(&outcomes, T0 + 3).await.expect("finish");

    // Nothing ended before the cutoffs: nothing goes.
    assert_eq!(db.prune_notifications(T0, T0).await.expect("prune"), 0);
    // Later: the two delivered events and their two log rows, the four alerts sent (even the
    // start of the condition still on), the condition that is off and the one-off key.
    let gone = db
        .prune_notifications(T0 + 10_000, T0 + 10_000)
        .await
        .expect("prune");
    assert_eq!(gone, 2 + 2 + 4 + 2);
    let left = db.webhook_events(c.id, 100, None).await.expect("events");
    assert_eq!(left.len(), 1, "the event still waiting is kept");
    assert_eq!(left[0].id, jobs[2].event.id);
    let log = db.webhook_deliveries(c.id, 100, None).await.expect("log");
    assert_eq!(log.len(), 1);
    let active = db.active_alerts().await.expect("active");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].key, "still.on");
    // A pruned one-off key could be written again; a condition still on is still on.
    assert!(
        !db.alert_condition(&alert("still.on"), true, 0, T0 + 20_000)
            .await
            .expect("on")
    );
}
