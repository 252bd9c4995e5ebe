//! Billing and refunds per order type (`docs/billing.md`), driven through the simulator: what
//! each type is charged at `add`, what each terminal status refunds, and the orders no signal
//! settles, which wait for a person on the attention list.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use smm_panel_sim::Outcomes;
use smm_store::{Delivery, StatusUpdate};
use smm_wire::{Money, OrderStatus};

use crate::support::{Backend, LINK, TestGateway};

/// The refund the simulator's lowered `charge` tells: the order's charge × the upstream's refund
/// / the upstream's charge, rounded down.
fn by_upstream_share(charge: Money, upstream_charge: Money, upstream_refund: Money) -> Money {
    let (part, whole) = (upstream_refund.units(), upstream_charge.units());
    charge
        .mul_div_floor(
            u64::try_from(part).expect("positive"),
            u64::try_from(whole).expect("positive"),
        )
        .expect("refund")
}

fn money(d: rust_decimal::Decimal) -> Money {
    Money::from_decimal_exact(d).expect("5 decimals")
}

/// Subscriptions: charged for `max` × posts; Canceled after k of N posts refunds (N − k) / N.
pub async fn subscriptions_refund_the_posts_not_served(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    let before = gw.balance().await;
    let id = gw
        .add_ok(&[
            ("service", "19"),
            ("username", "subscriber"),
            ("min", "50"),
            ("max", "100"),
            ("delay", "0"),
            ("posts", "10"),
        ])
        .await;
    let order = gw.wait_forwarded(id).await;
    assert_eq!(order.units, 1000, "max × posts");
    assert_eq!(
        gw.balance().await,
        Money::from_units(before.units() - order.charge.units())
    );
    // An hour of upstream time: some posts served, not all ten.
    gw.advance_sims(Duration::from_secs(3600));
    assert_eq!(
        gw.api("cancel", &[("orders", &id.to_string())]).await,
        json!([{"order": id.0, "cancel": 1}])
    );
    gw.reconcile().await; // forwards the cancel
    gw.make_polls_due().await;
    gw.reconcile().await;
    let order = gw.order(id).await;
    assert_eq!(order.status, OrderStatus::Canceled);
    let upstream: u64 = order
        .upstream_order_id
        .as_deref()
        .and_then(|u| u.parse().ok())
        .expect("numeric upstream id");
    let served = gw
        .alpha()
        .order(upstream)
        .expect("sim order")
        .posts
        .expect("posts");
    assert!(
        (1..10).contains(&served),
        "a real partial subscription: {served} of 10"
    );
    let owed = order.charge.mul_div_floor(10 - served, 10).expect("refund");
    assert_eq!(order.refunded, owed, "{served} of 10 posts served");
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(id).await.refunded, owed, "once");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// A Partial whose upstream reports no `remains` refunds by the upstream's own lowered charge
/// against the cost the order was expected to have there.
pub async fn partials_without_remains_refund_by_the_upstream_charge(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 3, Outcomes::always_partial());
    gw.alpha().set_dialect(smm_panel_sim::Dialect {
        no_remains: true,
        ..smm_panel_sim::Dialect::default()
    });
    let id = gw
        .add_ok(&[("service", "3"), ("link", LINK), ("quantity", "1000")])
        .await;
    let order = gw.wait_forwarded(id).await;
    gw.advance_sims(Duration::from_secs(30 * 24 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    let order_now = gw.order(id).await;
    let upstream: u64 = order
        .upstream_order_id
        .as_deref()
        .and_then(|u| u.parse().ok())
        .expect("numeric upstream id");
    let sim = gw.alpha().order(upstream).expect("sim order");
    assert_eq!(sim.status, smm_panel_sim::OrderStatus::Partial);
    assert!(sim.refunded > rust_decimal::Decimal::ZERO, "a real Partial");
    assert_eq!(order_now.status, OrderStatus::Partial);
    assert_eq!(order_now.remains, None, "no remains reported");
    let owed = by_upstream_share(order.charge, money(sim.charge), money(sim.refunded));
    assert!(owed.is_positive());
    assert_eq!(order_now.refunded, owed);
    assert_eq!(order_now.attention, None);
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(id).await.refunded, owed, "once");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// `old_posts` and orders for nothing are refused at `add`, with nothing charged.
pub async fn old_posts_and_free_orders_are_refused(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    // The upstreams list `min = 0` for service 1.
    for sim in [gw.alpha(), gw.beta()] {
        let mut catalog = sim.services();
        catalog
            .iter_mut()
            .find(|s| s.id == 1)
            .expect("service 1")
            .min = 0;
        sim.set_services(catalog);
    }
    gw.gateway().app.sync_catalog().await;
    assert_eq!(
        gw.api("services", &[])
            .await
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["service"] == json!(1))
            .expect("service 1")["min"],
        json!("1"),
        "an upstream min of 0 is listed as 1, the least add accepts"
    );
    let before = gw.balance().await;
    assert_eq!(
        gw.add(&[
            ("service", "19"),
            ("username", "subscriber"),
            ("min", "50"),
            ("max", "100"),
            ("delay", "0"),
            ("posts", "2"),
            ("old_posts", "3"),
        ])
        .await,
        json!({"error": "Incorrect old_posts"})
    );
    assert_eq!(
        gw.add(&[("service", "1"), ("link", LINK), ("quantity", "0")])
            .await,
        json!({"error": "Quantity less than minimal 1"})
    );
    assert_eq!(gw.balance().await, before);
    assert!(gw.orders_of(gw.customer).await.is_empty());
    gw.finish().await;
}

/// A terminal report no signal settles goes on the attention list (CLI and admin API), and an
/// admin settles it once: one refund row, audited.
pub async fn unsettled_orders_wait_for_a_person(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let id = gw.add_ok(&[("service", "5"), ("link", LINK)]).await;
    let order = gw.wait_forwarded(id).await;
    // A Package Partial with neither `remains` nor a charge: nothing tells the share.
    gw.store()
        .apply_status(
            order.provider.as_deref().expect("provider"),
            order.upstream_order_id.as_deref().expect("upstream id"),
            StatusUpdate {
                status: OrderStatus::Partial,
                start_count: None,
                remains: None,
                extra: None,
                delivery: Delivery::default(),
                next_poll_at: 0,
            },
            crate::support::now_ms(),
        )
        .await
        .expect("apply")
        .expect("known");
    let balance = gw.balance().await;
    let (status, listed) = gw
        .admin(Method::GET, "/admin/v1/orders/attention", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let orders = listed["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["id"], id.0);
    assert!(
        orders[0]["attention"]
            .as_str()
            .is_some_and(|a| a.starts_with("Partial")),
        "{listed}"
    );
    // Too much is refused and changes nothing.
    let too_much = order.charge.to_string().parse::<Money>().expect("money");
    let too_much = Money::from_units(too_much.units() + 1).to_string();
    let (status, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{}/settle", id.0),
            Some(&json!({"refund": too_much, "reason": "asked upstream"})),
        )
        .await;
    assert_eq!(status.as_u16() / 100, 4, "{body}");
    assert_eq!(gw.balance().await, balance);
    // Half back, once.
    let half = order.charge.mul_div_floor(1, 2).expect("half");
    let (status, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{}/settle", id.0),
            Some(&json!({"refund": half.to_string(), "reason": "upstream says half delivered"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refunded"], half.to_string());
    assert_eq!(
        gw.balance().await,
        Money::from_units(balance.units() + half.units())
    );
    let (status, _) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{}/settle", id.0),
            Some(&json!({"refund": "0.00001", "reason": "again"})),
        )
        .await;
    assert_eq!(status.as_u16() / 100, 4, "settled once");
    let (_, listed) = gw
        .admin(Method::GET, "/admin/v1/orders/attention", None)
        .await;
    assert_eq!(listed["orders"], json!([]));
    let audit = gw.store().audit_log(20).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "order.settle" && e.actor == "admin:e2e"),
        "{audit:?}"
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}
