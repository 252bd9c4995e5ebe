//! Issue 12's v2 contract under races: a cancel is decided by the service's flag whatever the
//! forwarding state, a cancel of an order being sent is recorded and delivered after the send,
//! a repeat after the upstream refused answers with the refusal, each id of a multi-id cancel
//! answers for itself; one open refill per order; a subscription's status shows no upstream
//! child ids.

use std::time::Duration;

use serde_json::{Value, json};
use smm_panel_sim::{Fault, FaultRule, Outcomes};
use smm_store::{ForwardState, OrderId};
use smm_wire::OrderStatus;

use crate::support::{
    Backend, START_BALANCE, TestGateway, error_reply, money_add, money_sub, per_thousand,
    requests_for, wait_for,
};

/// Alpha's service 3 (Package) has `"cancel": false`; service 1 (Default) allows cancels.
const NOT_CANCELLABLE: u64 = 3;

async fn add(gw: &TestGateway, service: u64, quantity: u64, link: &str) -> OrderId {
    gw.add_ok(&[
        ("service", &service.to_string()),
        ("link", link),
        ("quantity", &quantity.to_string()),
    ])
    .await
}

/// Waits until the forwarder is sending `id`.
async fn wait_sending(gw: &TestGateway, id: OrderId) {
    wait_for(
        "the order to be sending",
        Duration::from_secs(10),
        || async { gw.order(id).await.forward_state == ForwardState::Sending },
    )
    .await;
}

/// `cancel` of a service with `"cancel": false` answers "Cancel is disabled" while the order is
/// still queued here, exactly as once it is upstream, and changes nothing; in a multi-id cancel
/// each id gets its own answer. A cancel of an order whose send is ambiguous waits with it, and
/// ends with the order when an admin gives it up.
pub async fn cancel_is_decided_by_the_flag_whatever_the_state(backend: Backend) {
    // One order at a time: while one hangs at alpha, the next one stays queued.
    let gw = TestGateway::start_with(backend, |settings| {
        settings.forwarder.batch = 1;
        settings.forwarder.concurrency = 1;
        for provider in &mut settings.providers {
            provider.timeout_secs = 3;
        }
    })
    .await;
    assert!(
        !gw.app()
            .catalog()
            .get(NOT_CANCELLABLE)
            .expect("service 3")
            .cancel
    );
    let disabled = error_reply("Cancel is disabled for this service");
    let sent = add(
        &gw,
        NOT_CANCELLABLE,
        500,
        "https://instagram.com/p/flag-sent",
    )
    .await;
    gw.wait_forwarded(sent).await;
    assert_eq!(
        gw.api("cancel", &[("order", &sent.to_string())]).await,
        disabled,
        "sent: decided by the flag"
    );

    gw.alpha()
        .add_fault(FaultRule::always(Fault::Hang).on_action("add").times(1));
    let blocker = add(&gw, 1, 100, "https://instagram.com/p/flag-blocker").await;
    wait_sending(&gw, blocker).await;
    let fixed = add(
        &gw,
        NOT_CANCELLABLE,
        500,
        "https://instagram.com/p/flag-fixed",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gw.order(fixed).await.forward_state,
        ForwardState::Queued,
        "the test's premise: the second order waits behind the hanging one"
    );
    let balance = gw.balance().await;
    assert_eq!(
        gw.api("cancel", &[("order", &fixed.to_string())]).await,
        disabled,
        "queued: decided by the flag too"
    );
    assert_eq!(
        gw.api(
            "cancel",
            &[("orders", &format!("{fixed},{blocker},{sent}"))]
        )
        .await,
        json!([
            {"order": fixed.0, "cancel": disabled},
            {"order": blocker.0, "cancel": 1},
            {"order": sent.0, "cancel": disabled},
        ]),
        "each id its own answer; the sending order's cancel is accepted"
    );
    assert_eq!(gw.balance().await, balance, "nothing refunded yet");
    assert_eq!(gw.order(fixed).await.refunded, smm_wire::Money::ZERO);

    // The hanging send becomes ambiguous; the queued order goes out and is refused the same.
    let blocked = gw.wait_state(blocker, ForwardState::Ambiguous).await;
    gw.wait_state(fixed, ForwardState::Sent).await;
    assert_eq!(
        gw.api("cancel", &[("order", &fixed.to_string())]).await,
        disabled,
        "sent: the same answer as queued"
    );
    // The accepted cancel waits with the ambiguous order: never sent for an order not upstream.
    gw.reconcile().await;
    assert!(requests_for(gw.alpha(), "cancel").is_empty());
    let waiting = gw
        .store()
        .cancels_in_state(ForwardState::Queued, 10)
        .await
        .expect("cancels");
    assert_eq!(
        waiting.iter().map(|r| r.order_id).collect::<Vec<_>>(),
        [blocker]
    );
    // Given up by an admin: refunded in full once, and the request ends with it.
    let refund = gw
        .store()
        .cancel_ambiguous(
            blocker,
            "not found upstream",
            "e2e",
            crate::support::now_ms(),
        )
        .await
        .expect("give up");
    assert_eq!(refund, blocked.charge);
    gw.reconcile().await;
    assert!(
        gw.store()
            .cancels_in_state(ForwardState::Queued, 10)
            .await
            .expect("cancels")
            .is_empty()
    );
    assert!(requests_for(gw.alpha(), "cancel").is_empty());
    assert_eq!(
        gw.api("cancel", &[("order", &blocker.to_string())]).await,
        error_reply("Order can not be canceled")
    );
    assert_eq!(gw.balance().await, money_add(balance, blocked.charge));
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// A cancel that arrives while the order is being sent is accepted (not "Order can not be
/// canceled"), recorded, and forwarded once the send succeeded; asked again it is the same
/// request. When the upstream then refuses the cancel, asking again answers with the refusal,
/// and a multi-id cancel mixes that refusal with the other ids' own results.
pub async fn cancel_while_sending_is_delivered_after_the_send(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.alpha().add_fault(
        FaultRule::always(Fault::Latency { ms: 3_000 })
            .on_action("add")
            .times(1),
    );
    let charge = per_thousand(gw.rate(1).await, 1000);
    let x = add(&gw, 1, 1000, "https://instagram.com/p/cancel-sending").await;
    wait_sending(&gw, x).await;
    assert_eq!(
        gw.api("cancel", &[("order", &x.to_string())]).await,
        json!({"cancel": 1}),
        "accepted while sending"
    );
    assert_eq!(gw.order(x).await.forward_state, ForwardState::Sending);
    assert_eq!(
        gw.api("cancel", &[("orders", &x.to_string())]).await,
        json!([{"order": x.0, "cancel": 1}])
    );
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));

    let sent = gw.wait_forwarded(x).await;
    let upstream = sent.upstream_order_id.clone().expect("upstream id");
    gw.reconcile().await;
    let cancels = requests_for(gw.alpha(), "cancel");
    assert_eq!(
        cancels.len(),
        1,
        "delivered once after the send: {cancels:?}"
    );
    let asked = cancels[0]
        .params
        .get("orders")
        .or_else(|| cancels[0].params.get("order"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(asked, upstream);
    gw.reconcile().await;
    assert_eq!(requests_for(gw.alpha(), "cancel").len(), 1, "never twice");

    // The upstream refuses the next cancel: a repeat gets the refusal, not "accepted".
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    let y = add(&gw, 1, 1000, "https://instagram.com/p/cancel-refused").await;
    let z = add(&gw, 1, 1000, "https://instagram.com/p/cancel-other").await;
    gw.wait_forwarded(y).await;
    gw.wait_forwarded(z).await;
    assert_eq!(
        gw.api("cancel", &[("order", &y.to_string())]).await,
        json!({"cancel": 1})
    );
    gw.alpha().add_fault(
        FaultRule::always(Fault::Error {
            text: "Order can not be canceled".into(),
        })
        .on_action("cancel")
        .times(1),
    );
    gw.reconcile().await;
    let refused = error_reply("Order can not be canceled");
    for _ in 0..2 {
        assert_eq!(
            gw.api("cancel", &[("order", &y.to_string())]).await,
            refused,
            "the refusal, every time"
        );
    }
    assert_eq!(
        gw.api("cancel", &[("orders", &format!("{y},{z},999999"))])
            .await,
        json!([
            {"order": y.0, "cancel": refused},
            {"order": z.0, "cancel": 1},
            {"order": 999999, "cancel": error_reply("Incorrect order ID")},
        ])
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// While a refill of an order is open, `refill` answers with that refill's id (single, multi,
/// many at once) and the upstream gets one refill; once it finished, a new one is created.
pub async fn refills_are_one_open_per_order(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    let a = add(&gw, 1, 1000, "https://instagram.com/p/refill-once").await;
    gw.wait_forwarded(a).await;
    gw.alpha().advance(Duration::from_secs(4 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(a).await.status, OrderStatus::Completed);

    let single = |reply: Value| -> u64 {
        reply["refill"]
            .as_str()
            .unwrap_or_else(|| panic!("a refill id: {reply}"))
            .parse()
            .expect("digits")
    };
    let first = single(gw.api("refill", &[("order", &a.to_string())]).await);
    assert_eq!(
        single(gw.api("refill", &[("order", &a.to_string())]).await),
        first,
        "queued: the same refill"
    );
    let a_text = a.to_string();
    let params = [("order", a_text.as_str())];
    let asks = (0..6).map(|_| gw.api("refill", &params));
    for reply in futures_util::future::join_all(asks).await {
        assert_eq!(single(reply), first, "concurrent asks: one refill");
    }
    assert_eq!(
        gw.api("refill", &[("orders", &a.to_string())]).await,
        json!([{"order": a.0, "refill": first}])
    );
    gw.reconcile().await;
    assert_eq!(requests_for(gw.alpha(), "refill").len(), 1);
    assert_eq!(gw.alpha().refills().len(), 1);
    let refill = gw
        .store()
        .customer_refills(gw.customer, &[smm_store::RefillId(first as i64)])
        .await
        .expect("refills");
    if refill[0].status != smm_wire::RefillStatus::Completed {
        assert_eq!(
            single(gw.api("refill", &[("order", &a.to_string())]).await),
            first,
            "sent and running: the same refill"
        );
    }
    // Finished upstream: the next ask is a new refill.
    gw.alpha().advance(Duration::from_secs(4 * 3600));
    wait_for("the refill to finish", Duration::from_secs(20), || async {
        gw.reconcile().await;
        gw.store()
            .customer_refills(gw.customer, &[smm_store::RefillId(first as i64)])
            .await
            .expect("refills")[0]
            .status
            .is_terminal()
    })
    .await;
    let second = single(gw.api("refill", &[("order", &a.to_string())]).await);
    assert!(second > first);
    gw.reconcile().await;
    assert_eq!(requests_for(gw.alpha(), "refill").len(), 2);
    gw.finish().await;
}

/// `status` of a subscription shows how many posts were delivered and never the upstream's
/// child order ids (ids at the provider, meaningless to the customer).
pub async fn subscription_status_shows_no_upstream_child_ids(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    let id = gw
        .add_ok(&[
            ("service", "19"),
            ("username", "subscriber"),
            ("min", "50"),
            ("max", "100"),
            ("delay", "0"),
            ("posts", "5"),
            ("expiry", "2030-12-31"),
        ])
        .await;
    gw.wait_forwarded(id).await;
    gw.alpha().advance(Duration::from_secs(24 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    // The upstream lists child orders for this subscription: the gateway does not pass them on.
    let upstream = gw.alpha().order(
        gw.order(id)
            .await
            .upstream_order_id
            .expect("upstream id")
            .parse()
            .expect("numeric"),
    );
    assert!(upstream.is_some());
    let stored = gw.order(id).await;
    let extra: Value = serde_json::from_str(stored.extra.as_deref().unwrap_or("{}")).expect("json");
    assert!(
        extra["orders"].as_array().is_some_and(|o| !o.is_empty()),
        "the upstream reported child ids: {extra}"
    );
    for reply in [
        gw.api("status", &[("order", &id.to_string())]).await,
        gw.api("status", &[("orders", &id.to_string())]).await[id.to_string()].clone(),
    ] {
        let object = reply.as_object().expect("an object");
        assert!(!object.contains_key("orders"), "{reply}");
        assert!(object.contains_key("posts"), "{reply}");
        assert!(object["status"].as_str().is_some(), "{reply}");
    }
    gw.finish().await;
}

/// A cancel call that certainly never left (the provider's port refuses connections) is not a
/// refusal: the request goes back to the queue for a later round, and a repeat still answers
/// "accepted".
pub async fn unsent_cancel_calls_are_queued_again(backend: Backend) {
    let mut gw = TestGateway::start_polling(backend, |_| {}).await;
    let id = add(
        &gw,
        crate::support::BETA_ONLY,
        1000,
        "https://instagram.com/p/cancel-unsent",
    )
    .await;
    gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(
        gw.api("cancel", &[("order", &id.to_string())]).await,
        json!({"cancel": 1})
    );
    let _beta = gw.stop_beta();
    gw.reconcile().await;
    let queued = gw
        .store()
        .cancels_in_state(ForwardState::Queued, 10)
        .await
        .expect("cancels");
    assert_eq!(
        queued.iter().map(|r| r.order_id).collect::<Vec<_>>(),
        [id],
        "not sent, so queued again: {:?}",
        gw.store()
            .cancels_in_state(ForwardState::Rejected, 10)
            .await
    );
    assert_eq!(
        gw.api("cancel", &[("order", &id.to_string())]).await,
        json!({"cancel": 1})
    );
    gw.finish().await;
}
