//! What the forwarder does with what upstreams do: dropped connections, hangs, garbage, errors
//! (English and raw Perfect Panel keys), failover, and equal upstream ids at two providers.

use std::time::Duration;

use serde_json::json;
use smm_panel_sim::{DEMO_KEY, Dialect, Fault, FaultRule, Sim};
use smm_store::{ForwardState, LedgerKind, OrderId, StatusUpdate};
use smm_wire::{Money, OrderStatus};

use crate::support::{
    BETA_ONLY, Backend, LINK, START_BALANCE, TestGateway, adds, error_reply, forwarded_params,
    json, money_sub, now_ms, order_id_of, per_thousand, wait_for,
};

/// Several forwarder rounds (the interval is 50 ms).
const SEVERAL_ROUNDS: Duration = Duration::from_millis(1000);

fn pending_status(charge: Money, remains: u64) -> serde_json::Value {
    json!({
        "charge": charge.to_string(),
        "start_count": "0",
        "status": "Pending",
        "remains": remains.to_string(),
        "currency": "USD",
    })
}

fn faults_named(sim: &Sim, name: &str) -> usize {
    adds(sim)
        .iter()
        .filter(|r| r.fault.as_deref() == Some(name))
        .count()
}

/// (f) 10: the upstream records the order and drops the connection: the order is parked
/// `ambiguous`, never re-sent (not to alpha again, not to beta), and the customer sees one
/// order, charged once.
pub async fn dropped_connection_is_ambiguous_and_never_resent(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    gw.alpha().add_fault(
        FaultRule::always(Fault::DropAfterRecord)
            .on_action("add")
            .times(1),
    );
    let charge = per_thousand(gw.rate(1).await, 100);
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let order = gw.wait_state(id, ForwardState::Ambiguous).await;
    assert_eq!(order.upstream_order_id, None, "no fabricated upstream id");
    assert_eq!(gw.alpha().orders().len(), 1, "the upstream did take it");

    tokio::time::sleep(SEVERAL_ROUNDS).await;
    let order = gw.order(id).await;
    assert_eq!(order.forward_state, ForwardState::Ambiguous, "still parked");
    assert_eq!(order.upstream_order_id, None);
    assert_eq!(adds(gw.alpha()).len(), 1, "exactly one add upstream");
    assert_eq!(faults_named(gw.alpha(), "drop_after_record"), 1);
    assert!(
        adds(gw.beta()).is_empty(),
        "an ambiguous order never fails over"
    );
    assert_eq!(gw.alpha().orders().len(), 1);
    assert!(gw.beta().orders().is_empty());

    // The customer: one order, charged once, shown as pending.
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1);
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    assert_eq!(
        gw.api("status", &[("order", &id.to_string())]).await,
        pending_status(charge, 100)
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 10: the upstream never answers; with a 1 s provider timeout the order is parked
/// `ambiguous` and not re-sent.
pub async fn hanging_upstream_is_ambiguous_and_never_resent(backend: Backend) {
    let gw = TestGateway::start_with(backend, |settings| {
        for provider in &mut settings.providers {
            provider.timeout_secs = 1;
        }
    })
    .await;
    gw.alpha()
        .add_fault(FaultRule::always(Fault::Hang).on_action("add").times(1));
    let charge = per_thousand(gw.rate(1).await, 100);
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let order = gw.wait_state(id, ForwardState::Ambiguous).await;
    assert_eq!(order.upstream_order_id, None);

    tokio::time::sleep(SEVERAL_ROUNDS).await;
    let order = gw.order(id).await;
    assert_eq!(order.forward_state, ForwardState::Ambiguous);
    assert_eq!(adds(gw.alpha()).len(), 1, "sent once, never again");
    assert_eq!(faults_named(gw.alpha(), "hang"), 1);
    assert!(adds(gw.beta()).is_empty(), "never failed over");
    assert!(gw.alpha().orders().is_empty());
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1);
    gw.finish().await;
}

/// (f) 11: HTML, an empty body, a redirect, a garbled reply, an HTTP 500: never a fabricated
/// upstream id; the order is parked `ambiguous` and does not fail over.
pub async fn garbage_replies_are_ambiguous_without_an_upstream_id(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let charge = per_thousand(gw.rate(1).await, 100);
    let faults = [
        (Fault::Html200, "html200"),
        (Fault::EmptyBody, "empty_body"),
        (Fault::Redirect, "redirect"),
        (Fault::Garbled, "garbled"),
        (Fault::Http500, "http500"),
    ];
    let mut expected_balance = START_BALANCE;
    let mut ids: Vec<OrderId> = Vec::new();
    for (index, (fault, name)) in faults.into_iter().enumerate() {
        gw.alpha()
            .add_fault(FaultRule::always(fault).on_action("add").times(1));
        let link = format!("https://instagram.com/p/garbage-{name}");
        let id = gw
            .add_ok(&[("service", "1"), ("link", &link), ("quantity", "100")])
            .await;
        ids.push(id);
        expected_balance = money_sub(expected_balance, charge);
        let order = gw.wait_state(id, ForwardState::Ambiguous).await;
        assert_eq!(order.upstream_order_id, None, "{name}: no upstream id");
        assert!(order.forward_error.is_some(), "{name}: the reason is kept");
        assert_eq!(adds(gw.alpha()).len(), index + 1, "{name}: sent once");
        assert_eq!(faults_named(gw.alpha(), name), 1, "{name}");
        assert!(adds(gw.beta()).is_empty(), "{name}: no failover to beta");
    }
    tokio::time::sleep(SEVERAL_ROUNDS).await;
    for id in &ids {
        let order = gw.order(*id).await;
        assert_eq!(order.forward_state, ForwardState::Ambiguous);
        assert_eq!(order.upstream_order_id, None);
        assert_eq!(order.refunded, Money::ZERO);
    }
    assert_eq!(adds(gw.alpha()).len(), ids.len(), "nothing re-sent");
    assert!(adds(gw.beta()).is_empty());
    // Only the garbled reply was processed upstream.
    assert_eq!(gw.alpha().orders().len(), 1);
    assert_eq!(gw.balance().await, expected_balance);
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 11: `{"error": ...}` from the first route: the order fails over to beta and is sent
/// there, charged once.
pub async fn upstream_error_fails_over_to_the_next_route(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    gw.alpha().add_fault(
        FaultRule::always(Fault::Error {
            text: "Incorrect link".into(),
        })
        .on_action("add")
        .times(1),
    );
    let charge = per_thousand(gw.rate(1).await, 100);
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.provider.as_deref(), Some("beta"));
    assert_eq!(order.upstream_service.as_deref(), Some("1"));
    assert_eq!(order.upstream_order_id.as_deref(), Some("10001"));

    let (alpha, beta) = (adds(gw.alpha()), adds(gw.beta()));
    assert_eq!(alpha.len(), 1, "one add at alpha");
    assert_eq!(alpha[0].fault.as_deref(), Some("error"));
    assert_eq!(beta.len(), 1, "one add at beta");
    assert_eq!(forwarded_params(&alpha[0]), forwarded_params(&beta[0]));
    assert_eq!(beta[0].params.get("service").map(String::as_str), Some("1"));
    assert!(gw.alpha().orders().is_empty());
    assert_eq!(gw.beta().orders().len(), 1);

    let attempts = gw.store().attempts(id).await.expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].provider, "alpha");
    assert_eq!(attempts[1].provider, "beta");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(adds(gw.alpha()).len() + adds(gw.beta()).len(), 2);
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    assert_eq!(
        gw.api("status", &[("order", &id.to_string())]).await,
        pending_status(charge, 100)
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Asserts an order was rejected with a full refund written once to the ledger.
async fn assert_rejected_and_refunded(gw: &TestGateway, id: OrderId, charge: Money) {
    let order = gw.wait_state(id, ForwardState::Rejected).await;
    assert_eq!(order.status, OrderStatus::Canceled);
    assert_eq!(order.upstream_order_id, None);
    assert_eq!(order.charge, charge);
    assert_eq!(order.refunded, charge, "fully refunded");
    let refunds: Vec<_> = gw
        .ledger_of(gw.customer)
        .await
        .into_iter()
        .filter(|e| e.kind == LedgerKind::Refund && e.order_id == Some(id))
        .collect();
    assert_eq!(refunds.len(), 1, "one refund row: {refunds:?}");
    assert_eq!(refunds[0].amount, charge);
}

/// The `status` of a rejected order, as a panel shows an order canceled before it started:
/// nothing charged, nothing delivered (everything remains).
async fn assert_canceled_status(gw: &TestGateway, id: OrderId) {
    let quantity = gw.order(id).await.quantity.expect("a quantity");
    assert_eq!(
        gw.api("status", &[("order", &id.to_string())]).await,
        json!({
            "charge": "0.00000",
            "start_count": "0",
            "status": "Canceled",
            "remains": quantity.to_string(),
            "currency": "USD",
        }),
        "status of rejected order {id}"
    );
}

/// (f) 11: `{"error": ...}` from every route: rejected, status Canceled, fully refunded.
pub async fn upstream_error_on_every_route_rejects_and_refunds(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    for sim in [gw.alpha(), gw.beta()] {
        sim.add_fault(
            FaultRule::always(Fault::Error {
                text: "Incorrect link".into(),
            })
            .on_action("add"),
        );
    }
    let charge = per_thousand(gw.rate(1).await, 100);
    let first = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    assert_rejected_and_refunded(&gw, first, charge).await;
    assert_eq!(gw.balance().await, START_BALANCE, "balance back");
    assert_eq!(adds(gw.alpha()).len(), 1);
    assert_eq!(adds(gw.beta()).len(), 1);

    // A single-route service rejected there too.
    let id = gw
        .add_ok(&[
            ("service", &BETA_ONLY.to_string()),
            ("link", LINK),
            ("quantity", "100"),
        ])
        .await;
    assert_rejected_and_refunded(&gw, id, charge).await;
    assert_eq!(gw.balance().await, START_BALANCE);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(adds(gw.alpha()).len(), 1, "a rejected order is not retried");
    assert_eq!(adds(gw.beta()).len(), 2);
    assert_eq!(gw.balance().await, START_BALANCE, "refunded once only");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// A form POST straight to a simulator as the reseller (`sim-key`).
async fn sim_add(gw: &TestGateway, sim_url: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec![("key", DEMO_KEY), ("action", "add")];
    all.extend_from_slice(params);
    let (status, _, body) = gw.post_form_to(sim_url, &all).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    json(&body)
}

/// Switches both simulators to raw Perfect Panel error keys, and places an order for
/// [`DUPLICATE`] on service 4 (which refuses a second active order on the same link) directly at
/// each, checking that a second one is refused with `neworder.error.link_duplicate`.
async fn raw_keys_and_a_busy_link(gw: &TestGateway) {
    let raw = Dialect {
        raw_error_keys: true,
        ..Dialect::default()
    };
    gw.alpha().set_dialect(raw);
    gw.beta().set_dialect(raw);
    for url in [gw.alpha.api_url(), gw.beta_url()] {
        let first = sim_add(gw, &url, &DUPLICATE).await;
        assert!(first["order"].is_u64(), "placed directly: {first}");
        assert_eq!(
            sim_add(gw, &url, &DUPLICATE).await,
            error_reply("neworder.error.link_duplicate")
        );
    }
}

/// Empties the reseller's account at both simulators and checks the raw key they answer with.
async fn no_funds_upstream(gw: &TestGateway) {
    gw.alpha()
        .set_balance(DEMO_KEY, rust_decimal::Decimal::ZERO);
    gw.beta().set_balance(DEMO_KEY, rust_decimal::Decimal::ZERO);
    let probe = [
        ("service", "1"),
        ("link", "https://instagram.com/p/probe"),
        ("quantity", "100"),
    ];
    for url in [gw.alpha.api_url(), gw.beta_url()] {
        assert_eq!(
            sim_add(gw, &url, &probe).await,
            error_reply("neworder.error.not_enough_funds")
        );
    }
}

const DUPLICATE: [(&str, &str); 3] = [
    ("service", "4"),
    ("link", "https://youtube.com/channel/e2e-duplicate"),
    ("quantity", "100"),
];
const LINK_DUPLICATE: &str =
    "You have active order with this link. Please wait until order being completed.";

/// (f) 12: raw Perfect Panel keys (`neworder.error.link_duplicate`,
/// `neworder.error.not_enough_funds`) from every route: the order is rejected and refunded, and
/// the gateway understood them as the canonical errors. With the default `add_wait_ms = 0` the
/// `add` reply is the order id (the refusal comes later).
pub async fn raw_upstream_error_keys_reject_and_refund(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    raw_keys_and_a_busy_link(&gw).await;
    let charge4 = per_thousand(gw.rate(4).await, 100);
    let duplicate = gw.add_ok(&DUPLICATE).await;
    assert_rejected_and_refunded(&gw, duplicate, charge4).await;
    let reason = gw.order(duplicate).await.forward_error.unwrap_or_default();
    assert!(
        reason.contains(LINK_DUPLICATE),
        "the raw key is understood as the canonical error: {reason:?}"
    );
    assert_eq!(gw.balance().await, START_BALANCE);

    no_funds_upstream(&gw).await;
    let charge1 = per_thousand(gw.rate(1).await, 100);
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    // Issue #12 (8): no funds on the reseller's own account upstream is the reseller's
    // trouble: the order is held queued, not rejected and refunded (as it was before).
    wait_for(
        "the no-funds refusal noted on the held order",
        Duration::from_secs(10),
        || async {
            let order = gw.order(id).await;
            order.forward_state == ForwardState::Queued
                && order
                    .forward_error
                    .is_some_and(|e| e.contains("Not enough funds on balance"))
        },
    )
    .await;
    let order = gw.order(id).await;
    assert_eq!(order.forward_state, ForwardState::Queued, "held");
    assert_eq!(order.refunded, Money::ZERO);
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge1));
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 12 with `server.add_wait_ms`: `add` waits for the first upstream outcome, so a refusal
/// by every route reaches the customer in canonical English (raw keys translated), with the
/// order rejected and refunded; an accepted order answers with its id once it is sent.
pub async fn add_wait_answers_upstream_refusals_in_canonical_words(backend: Backend) {
    let gw = TestGateway::start_with(backend, |settings| {
        settings.server.add_wait_ms = 5_000;
    })
    .await;
    let charge1 = per_thousand(gw.rate(1).await, 100);
    let charge4 = per_thousand(gw.rate(4).await, 100);

    // Accepted: the id comes back once the order is sent.
    let accepted = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let order = gw.order(accepted).await;
    assert_eq!(
        order.forward_state,
        ForwardState::Sent,
        "sent before the reply"
    );
    let expected_balance = money_sub(START_BALANCE, charge1);

    raw_keys_and_a_busy_link(&gw).await;
    assert_eq!(gw.add(&DUPLICATE).await, error_reply(LINK_DUPLICATE));
    let duplicate = gw.orders_of(gw.customer).await[0].id;
    assert_ne!(duplicate, accepted);
    assert_rejected_and_refunded(&gw, duplicate, charge4).await;
    assert_eq!(gw.balance().await, expected_balance, "refunded");

    // An English refusal from every route, passed on as it is.
    for sim in [gw.alpha(), gw.beta()] {
        sim.add_fault(
            FaultRule::always(Fault::Error {
                text: "Incorrect link".into(),
            })
            .on_action("add")
            .times(1),
        );
    }
    assert_eq!(
        gw.add(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/bad"),
            ("quantity", "100"),
        ])
        .await,
        error_reply("Incorrect link")
    );
    let bad_link = gw.orders_of(gw.customer).await[0].id;
    assert_rejected_and_refunded(&gw, bad_link, charge1).await;

    // Issue #12 (8): no funds on the reseller's own account upstream holds the order (it was
    // rejected and refunded before): `add` answers with its id once the wait is over.
    no_funds_upstream(&gw).await;
    let no_funds = order_id_of(
        &gw.add(&[("service", "1"), ("link", LINK), ("quantity", "100")])
            .await,
    );
    let order = gw.order(no_funds).await;
    assert_eq!(order.forward_state, ForwardState::Queued, "held");
    assert_eq!(order.refunded, Money::ZERO);

    assert_eq!(
        gw.balance().await,
        money_sub(expected_balance, charge1),
        "every refusal about the order refunded, the held order not"
    );
    assert_eq!(gw.orders_of(gw.customer).await.len(), 4);
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 16: alpha and beta both number their first order 10001: two local orders, same upstream
/// id, different providers, kept apart (also when a status is applied by (provider, id)).
pub async fn same_upstream_id_at_two_providers_is_kept_apart(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let charge_a = per_thousand(gw.rate(1).await, 100);
    let charge_b = per_thousand(gw.rate(BETA_ONLY).await, 200);
    let a = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/at-alpha"),
            ("quantity", "100"),
        ])
        .await;
    let b = gw
        .add_ok(&[
            ("service", &BETA_ONLY.to_string()),
            ("link", "https://instagram.com/p/at-beta"),
            ("quantity", "200"),
        ])
        .await;
    let order_a = gw.wait_state(a, ForwardState::Sent).await;
    let order_b = gw.wait_state(b, ForwardState::Sent).await;
    assert_eq!(order_a.provider.as_deref(), Some("alpha"));
    assert_eq!(order_b.provider.as_deref(), Some("beta"));
    assert_eq!(order_a.upstream_order_id.as_deref(), Some("10001"));
    assert_eq!(order_b.upstream_order_id.as_deref(), Some("10001"));
    assert_ne!(a, b);
    let (alpha, beta) = (adds(gw.alpha()), adds(gw.beta()));
    assert_eq!(alpha.len(), 1);
    assert_eq!(beta.len(), 1);
    assert_eq!(
        alpha[0].params.get("link").map(String::as_str),
        Some("https://instagram.com/p/at-alpha")
    );
    assert_eq!(
        beta[0].params.get("link").map(String::as_str),
        Some("https://instagram.com/p/at-beta")
    );

    let list = format!("{a},{b}");
    assert_eq!(
        gw.api("status", &[("orders", &list)]).await,
        json!({
            a.to_string(): pending_status(charge_a, 100),
            b.to_string(): pending_status(charge_b, 200),
        })
    );

    // A status for beta's 10001 reaches only the order sent to beta.
    let applied = gw
        .store()
        .apply_status(
            "beta",
            "10001",
            StatusUpdate {
                delivery: Default::default(),
                status: OrderStatus::Completed,
                start_count: Some(5),
                remains: Some(0),
                extra: None,
                next_poll_at: now_ms() + 3_600_000,
            },
            now_ms(),
        )
        .await
        .expect("apply a status")
        .expect("beta's 10001 is known");
    assert_eq!(applied.order_id, b);
    let expected = json!({
        a.to_string(): pending_status(charge_a, 100),
        b.to_string(): {
            "charge": charge_b.to_string(),
            "start_count": "5",
            "status": "Completed",
            "remains": "0",
            "currency": "USD",
        },
    });
    // Written straight to the store, behind the gateway's back: `status` may show the view it
    // read a moment ago for up to its staleness bound.
    let deadline = std::time::Instant::now()
        + smm_server::app::ORDER_VIEW_MAX_AGE
        + Duration::from_millis(500);
    loop {
        let shown = gw.api("status", &[("orders", &list)]).await;
        if shown == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.finish().await;
}

/// A rejected order (every route refused it) and an order canceled while still queued show what
/// a panel shows for an order canceled before it started (the simulator does the same):
/// `charge` 0, `status` Canceled and `remains` = the whole quantity — never `"0"`, which would
/// claim that everything was delivered.
pub async fn canceled_orders_show_everything_remaining(backend: Backend) {
    let mut gw = TestGateway::start(backend).await;
    for sim in [gw.alpha(), gw.beta()] {
        sim.add_fault(
            FaultRule::always(Fault::Error {
                text: "Incorrect link".into(),
            })
            .on_action("add"),
        );
    }
    let charge = per_thousand(gw.rate(1).await, 100);
    let rejected = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    assert_rejected_and_refunded(&gw, rejected, charge).await;

    // Queued: beta is down, so the order routed only there waits; the customer cancels it.
    gw.stop_beta();
    let queued = gw
        .add_ok(&[
            ("service", &BETA_ONLY.to_string()),
            ("link", LINK),
            ("quantity", "250"),
        ])
        .await;
    wait_for(
        "the order routed to the stopped beta to be queued again",
        Duration::from_secs(10),
        || async {
            let order = gw.order(queued).await;
            order.forward_attempts >= 1 && order.forward_state == ForwardState::Queued
        },
    )
    .await;
    assert_eq!(
        gw.api("cancel", &[("order", &queued.to_string())]).await,
        json!({"cancel": 1})
    );
    assert_eq!(gw.order(queued).await.status, OrderStatus::Canceled);
    assert_eq!(gw.balance().await, START_BALANCE);

    assert_canceled_status(&gw, rejected).await;
    assert_canceled_status(&gw, queued).await;
    let list = format!("{rejected},{queued}");
    let reply = gw.api("status", &[("orders", &list)]).await;
    assert_eq!(reply[rejected.to_string()]["remains"], json!("100"));
    assert_eq!(reply[queued.to_string()]["remains"], json!("250"));
    gw.finish().await;
}

/// The admin listener's `/metrics` text.
async fn metrics_text(gw: &TestGateway) -> String {
    gw.http
        .get(format!("{}/metrics", gw.admin_url))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Waits until `sim` has seen `n` adds, then a few more forwarder rounds.
async fn wait_adds(sim: &Sim, n: usize) {
    wait_for(
        &format!("{n} adds upstream"),
        Duration::from_secs(15),
        || async move { adds(sim).len() >= n },
    )
    .await;
}

/// Asserts the order is held: queued again (not rejected), charged, nothing refunded.
async fn assert_held(gw: &TestGateway, id: OrderId, charge: Money, reason: &str) {
    let order = gw.order(id).await;
    assert!(
        matches!(
            order.forward_state,
            ForwardState::Queued | ForwardState::Sending
        ),
        "order {id} held, not {:?} ({:?})",
        order.forward_state,
        order.forward_error
    );
    assert_eq!(order.refunded, Money::ZERO, "nothing refunded");
    assert_eq!(order.charge, charge);
    assert!(
        gw.ledger_of(gw.customer)
            .await
            .iter()
            .all(|e| e.kind != LedgerKind::Refund),
        "no refund row"
    );
    let metrics = metrics_text(gw).await;
    assert!(
        metrics.contains(&format!(
            "smm_forward_held_total{{provider=\"beta\",reason=\"{reason}\"}}"
        )),
        "alerted in the metrics: {metrics}"
    );
}

/// Issue #12 (8): refusals that are the reseller's own trouble at the only route — HTTP 429,
/// "Invalid API key", "Not enough funds" on the reseller's account there — hold the order
/// queued (never canceled and refunded), and it goes through exactly once when the fault
/// clears. With a second route, a 429 fails over at once.
pub async fn transient_refusals_hold_the_order_until_they_clear(backend: Backend) {
    let gw = TestGateway::start_with(backend, |settings| {
        settings.forwarder.requeue_after_secs = 1;
    })
    .await;
    let beta_only = BETA_ONLY.to_string();
    let charge = per_thousand(gw.rate(BETA_ONLY).await, 100);
    let mut balance = START_BALANCE;
    let mut accepted = 0;

    let faults = [
        (Fault::RateLimited, "rate_limited"),
        (
            Fault::Error {
                text: "Invalid API key".into(),
            },
            "invalid_key",
        ),
    ];
    for (n, (fault, reason)) in faults.into_iter().enumerate() {
        gw.beta()
            .add_fault(FaultRule::always(fault).on_action("add"));
        let link = format!("https://instagram.com/p/held-{n}");
        // Counted before the `add`: its first call may leave before the reply does.
        let before = adds(gw.beta()).len();
        let id = gw
            .add_ok(&[
                ("service", &beta_only),
                ("link", &link),
                ("quantity", "100"),
            ])
            .await;
        balance = money_sub(balance, charge);
        // Refused twice: still held, still paid for, never refunded.
        wait_adds(gw.beta(), before + 2).await;
        assert_held(&gw, id, charge, reason).await;
        assert_eq!(gw.balance().await, balance);

        gw.beta().clear_faults();
        let order = gw.wait_state(id, ForwardState::Sent).await;
        accepted += 1;
        assert_eq!(order.refunded, Money::ZERO);
        assert_eq!(gw.beta().orders().len(), accepted, "accepted exactly once");
        let sent: Vec<_> = adds(gw.beta())
            .into_iter()
            .filter(|r| r.fault.is_none() && r.params.get("link") == Some(&link))
            .collect();
        assert_eq!(sent.len(), 1, "forwarded exactly once");
        assert_eq!(gw.balance().await, balance);
    }

    // No funds on the reseller's account at beta: held until the balance is back.
    let funds = gw.beta().balance(DEMO_KEY).expect("the reseller's account");
    gw.beta().set_balance(DEMO_KEY, rust_decimal::Decimal::ZERO);
    let link = "https://instagram.com/p/held-funds";
    let before = adds(gw.beta()).len();
    let id = gw
        .add_ok(&[("service", &beta_only), ("link", link), ("quantity", "100")])
        .await;
    balance = money_sub(balance, charge);
    wait_adds(gw.beta(), before + 1).await;
    tokio::time::sleep(SEVERAL_ROUNDS).await;
    assert_held(&gw, id, charge, "no_funds").await;
    assert_eq!(gw.balance().await, balance);
    gw.beta().set_balance(DEMO_KEY, funds);
    gw.app().check_balances().await;
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.refunded, Money::ZERO);
    assert_eq!(
        gw.beta().orders().len(),
        accepted + 1,
        "accepted exactly once"
    );

    // Two routes: alpha's 429 fails over to beta at once.
    gw.alpha()
        .add_fault(FaultRule::always(Fault::RateLimited).on_action("add"));
    let id = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/held-failover"),
            ("quantity", "100"),
        ])
        .await;
    balance = money_sub(balance, per_thousand(gw.rate(1).await, 100));
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.provider.as_deref(), Some("beta"));
    assert_eq!(gw.balance().await, balance);
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Issue #12 (8): a service disabled for a moment by a reload (its upstream service missing
/// from a catalog sync) holds its queued orders instead of canceling and refunding them; once
/// the service is back they are sent, once.
pub async fn briefly_disabled_service_holds_orders(backend: Backend) {
    let gw = TestGateway::start_with(backend, |settings| {
        settings.forwarder.requeue_after_secs = 1;
    })
    .await;
    let beta_only = BETA_ONLY.to_string();
    let charge = per_thousand(gw.rate(BETA_ONLY).await, 100);
    // Held at first by a 429, so the order is still queued when the service goes away.
    gw.beta()
        .add_fault(FaultRule::always(Fault::RateLimited).on_action("add"));
    let link = "https://instagram.com/p/held-disabled";
    let id = gw
        .add_ok(&[("service", &beta_only), ("link", link), ("quantity", "100")])
        .await;
    wait_adds(gw.beta(), 1).await;

    let services = gw.beta().services();
    let (_, upstream) = crate::support::first_route(BETA_ONLY);
    gw.beta().set_services(
        services
            .iter()
            .filter(|s| s.id != upstream)
            .cloned()
            .collect(),
    );
    gw.app().sync_catalog().await;
    assert!(
        !gw.app().catalog().get(BETA_ONLY).is_some_and(|s| s.enabled),
        "the service is disabled"
    );
    gw.beta().clear_faults();
    // Several retries while disabled: held, not rejected, nothing refunded.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let order = gw.order(id).await;
    assert_eq!(
        order.forward_state,
        ForwardState::Queued,
        "held while disabled ({:?})",
        order.forward_error
    );
    assert_eq!(order.refunded, Money::ZERO);
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    assert!(
        metrics_text(&gw)
            .await
            .contains("smm_forward_held_total{provider=\"-\",reason=\"service_disabled\"}"),
        "alerted"
    );

    gw.beta().set_services(services);
    gw.app().sync_catalog().await;
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.refunded, Money::ZERO);
    assert_eq!(gw.beta().orders().len(), 1, "accepted exactly once");
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Issue #12 (9): a tight per-provider rate limit (1 call a second) with many orders queued at
/// once and a short claim lease (5 s): waiting for the rate limit does not count against the
/// lease, so no order is parked `ambiguous`; each is forwarded exactly once.
pub async fn rate_limit_waits_never_make_orders_ambiguous(backend: Backend) {
    const ORDERS: usize = 16;
    let gw = TestGateway::start_with(backend, |settings| {
        settings.forwarder.lease_secs = 5;
        settings.server.rate_limit_per_minute = 1_000_000;
        for provider in &mut settings.providers {
            provider.timeout_secs = 1;
            provider.connect_timeout_secs = 1;
            if provider.name == "beta" {
                provider.rate_limit_per_second = Some(1);
            }
        }
    })
    .await;
    let beta_only = BETA_ONLY.to_string();
    let charge = per_thousand(gw.rate(BETA_ONLY).await, 100);
    let links: Vec<String> = (0..ORDERS)
        .map(|n| format!("https://instagram.com/p/limited-{n}"))
        .collect();
    let ids: Vec<OrderId> = futures_util::future::join_all(links.iter().map(|link| {
        let beta_only = &beta_only;
        let gw = &gw;
        async move {
            gw.add_ok(&[("service", beta_only), ("link", link), ("quantity", "100")])
                .await
        }
    }))
    .await;
    wait_for("every order forwarded", Duration::from_secs(60), || async {
        let mut done = true;
        for id in &ids {
            let state = gw.order(*id).await.forward_state;
            assert_ne!(
                state,
                ForwardState::Ambiguous,
                "order {id} parked ambiguous"
            );
            done &= state == ForwardState::Sent;
        }
        done
    })
    .await;
    for id in &ids {
        let attempts = gw.store().attempts(*id).await.expect("attempts");
        assert_eq!(attempts.len(), 1, "order {id}: {attempts:?}");
        assert_eq!(attempts[0].outcome, "sent", "order {id}: {attempts:?}");
    }
    let sent = adds(gw.beta());
    assert_eq!(sent.len(), ORDERS, "each forwarded exactly once");
    for link in &links {
        assert_eq!(
            sent.iter()
                .filter(|r| r.params.get("link") == Some(link))
                .count(),
            1,
            "{link}"
        );
    }
    assert_eq!(gw.beta().orders().len(), ORDERS);
    assert_eq!(
        gw.balance().await,
        Money::from_units(START_BALANCE.units() - charge.units() * ORDERS as i64)
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Issue #12 (7): an order keeps what it was placed as. Placed on [`BETA_ONLY`] (beta's
/// service 1) and held queued by a 429, then a reload re-points that id at one of alpha's
/// services with the opposite cancel flag: the order still goes to beta's service 1, exactly
/// once, and `cancel` follows the flag it was placed with, not the id's new meaning.
pub async fn orders_keep_the_routes_and_flags_they_were_placed_with(backend: Backend) {
    let gw = TestGateway::start_with(backend, |settings| {
        settings.forwarder.requeue_after_secs = 1;
    })
    .await;
    let app = gw.app().clone();
    let placed = app
        .catalog()
        .get(BETA_ONLY)
        .cloned()
        .expect("beta-only service");
    let (other, _) = (1..=20u64)
        .filter_map(|id| app.catalog().get(id).cloned().map(|s| (id, s)))
        .find(|(_, s)| s.service_type == placed.service_type && s.cancel != placed.cancel)
        .expect("an alpha service of the same type with the other cancel flag");

    gw.beta()
        .add_fault(FaultRule::always(Fault::RateLimited).on_action("add"));
    let link = "https://instagram.com/p/placed-as";
    let id = gw
        .add_ok(&[
            ("service", &BETA_ONLY.to_string()),
            ("link", link),
            ("quantity", "100"),
        ])
        .await;
    wait_adds(gw.beta(), 1).await;
    let stored = gw.order(id).await;
    let kept = stored.placed_as().expect("placement kept with the order");
    assert_eq!(kept.cancel, placed.cancel);
    assert_eq!(
        kept.routes
            .iter()
            .map(|r| (r.provider.as_str(), r.upstream_service.as_str()))
            .collect::<Vec<_>>(),
        vec![("beta", "1")]
    );

    let mut repointed = (*app.settings()).clone();
    let def = repointed
        .services
        .iter_mut()
        .find(|s| s.id == BETA_ONLY)
        .expect("def");
    def.routes = vec![crate::support::route("alpha", other)];
    app.reload(repointed, "test").await.expect("reload applies");
    assert_eq!(
        app.catalog().get(BETA_ONLY).map(|s| s.cancel),
        Some(!placed.cancel),
        "the id means another service now"
    );

    gw.beta().clear_faults();
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.provider.as_deref(), Some("beta"));
    assert_eq!(order.upstream_service.as_deref(), Some("1"));
    assert!(
        adds(gw.alpha())
            .iter()
            .all(|r| r.params.get("link").map(String::as_str) != Some(link)),
        "never sent to the id's new route"
    );
    assert_eq!(gw.beta().orders().len(), 1, "sent exactly once");

    let reply = gw.api("cancel", &[("orders", &id.to_string())]).await;
    assert_eq!(
        reply
            .to_string()
            .contains("Cancel is disabled for this service"),
        !placed.cancel,
        "cancel follows the flag the order was placed with: {reply}"
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Issue #12 (7): exposing a provider's whole catalog beside explicit services 1..=22 gives
/// the exposed services ids of their own (1 000 000 and up): none is dropped for an id an
/// explicit service holds, and no explicit service changes meaning.
pub async fn exposure_ids_never_collide_with_explicit_ids(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let app = gw.app().clone();
    let before: Vec<_> = crate::support::ALL_SERVICES
        .map(|id| app.catalog().get(id).cloned().expect("explicit service"))
        .collect();
    let mut exposed = (*app.settings()).clone();
    exposed.exposures = vec![smm_routing::Exposure {
        provider: "alpha".into(),
        categories: None,
        markup: None,
    }];
    app.reload(exposed, "test").await.expect("reload applies");
    let upstream = gw.alpha().services().len();
    let catalog = app.catalog();
    let exposed_ids: Vec<u64> = catalog
        .iter()
        .map(|s| s.id)
        .filter(|id| !crate::support::ALL_SERVICES.contains(id))
        .collect();
    assert_eq!(
        exposed_ids.len(),
        upstream,
        "every upstream service exposed"
    );
    assert!(
        exposed_ids
            .iter()
            .all(|id| *id >= smm_routing::EXPOSURE_ID_BASE),
        "{exposed_ids:?}"
    );
    for service in &before {
        assert_eq!(
            catalog.get(service.id),
            Some(service),
            "explicit {} kept",
            service.id
        );
    }
    gw.finish().await;
}
