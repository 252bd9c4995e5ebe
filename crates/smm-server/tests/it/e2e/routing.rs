//! Routing policies end to end (issue #15): `cheapest` and `quality` rank a service's routes,
//! the customer's price stays the first route's, a definitive refusal still fails over, and
//! every attempt says why it went where it did. Quality learns routes with too little data,
//! explores, demotes a route whose recent orders degrade and promotes it back once it
//! recovers, all from the scorecards the database keeps.

use std::time::Duration;

use rust_decimal::Decimal;
use smm_panel_sim::{Fault, FaultRule, Outcomes};
use smm_routing::Policy;
use smm_store::{ForwardState, OrderId};

use crate::support::{Backend, LINK, TestGateway, per_thousand};

/// Beta's money is worth half the reseller's: beta's routes cost half of alpha's identical ones.
fn beta_half_price(settings: &mut smm_server::config::Settings) {
    let beta = settings
        .providers
        .iter_mut()
        .find(|p| p.name == "beta")
        .expect("beta");
    beta.rate = Decimal::new(5, 1);
}

/// Places an order of service 1 and waits until it is sent; returns it and where it went.
async fn place(gw: &TestGateway) -> (OrderId, String) {
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let order = gw.wait_state(id, ForwardState::Sent).await;
    (id, order.provider.expect("a provider"))
}

/// Why the order's last attempt went where it did.
async fn why(gw: &TestGateway, id: OrderId) -> String {
    let attempts = gw.store().attempts(id).await.expect("attempts");
    attempts
        .last()
        .and_then(|a| a.why.clone())
        .unwrap_or_else(|| panic!("no why on {attempts:?}"))
}

/// Lets every simulated order finish, applies what the upstreams say, and re-reads the
/// scorecards the policies use.
async fn settle(gw: &TestGateway) {
    gw.advance_sims(Duration::from_secs(86_400));
    gw.make_polls_due().await;
    gw.reconcile().await;
    smm_server::scorecards::refresh(gw.app()).await;
}

pub async fn cheapest_sends_to_the_cheaper_route_at_the_same_price(backend: Backend) {
    let gw = TestGateway::start_with(backend, |s| {
        beta_half_price(s);
        s.services
            .iter_mut()
            .find(|d| d.id == 1)
            .expect("service 1")
            .policy = Some(Policy::Cheapest);
    })
    .await;
    // The price is the first route's (alpha's), whichever route serves the order.
    let rate = gw.rate(1).await;
    let catalog = gw.app().catalog();
    let service = catalog.get(1).expect("service 1");
    assert_eq!(service.rate, rate);
    assert_eq!(service.routes[0].provider, "alpha");
    assert_eq!(
        service.routes[1].cost * Decimal::TWO,
        service.routes[0].cost
    );
    let (id, provider) = place(&gw).await;
    assert_eq!(provider, "beta");
    let order = gw.order(id).await;
    assert_eq!(
        order.charge,
        per_thousand(rate, 100),
        "charged the list price"
    );
    let why = why(&gw, id).await;
    assert!(why.starts_with("cheapest: beta/1 costs "), "{why}");
    assert!(why.contains("(next: alpha/1 at "), "{why}");
    // A service under the default policy keeps the configured order.
    let id2 = gw
        .add_ok(&[("service", "2"), ("link", LINK), ("quantity", "100")])
        .await;
    let order2 = gw.wait_state(id2, ForwardState::Sent).await;
    assert_eq!(order2.provider.as_deref(), Some("alpha"));
    assert!(why_starts(&gw, id2, "priority: alpha/2 is the first route available").await);
    // A definitive refusal at the chosen route fails over exactly as before.
    gw.beta().add_fault(
        FaultRule::always(Fault::Error {
            text: "Incorrect link".into(),
        })
        .on_action("add")
        .times(1),
    );
    let (id3, provider3) = place(&gw).await;
    assert_eq!(provider3, "alpha");
    let attempts = gw.store().attempts(id3).await.expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.provider.as_str(), a.outcome.as_str()))
            .collect::<Vec<_>>(),
        [("beta", "rejected"), ("alpha", "sent")]
    );
    assert!(
        attempts[0]
            .why
            .as_deref()
            .is_some_and(|w| w.starts_with("cheapest: beta/1"))
    );
    assert!(
        attempts[1]
            .why
            .as_deref()
            .is_some_and(|w| w.starts_with("fail-over: beta: ")),
        "{attempts:?}"
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

async fn why_starts(gw: &TestGateway, id: OrderId, prefix: &str) -> bool {
    let why = why(gw, id).await;
    assert!(
        why.starts_with(prefix),
        "{why:?} should start with {prefix:?}"
    );
    true
}

pub async fn quality_learns_explores_demotes_and_promotes(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |s| {
        beta_half_price(s);
        s.services
            .iter_mut()
            .find(|d| d.id == 1)
            .expect("service 1")
            .policy = Some(Policy::Quality);
        let r = &mut s.routing;
        r.min_finished = 3;
        r.recent = 4;
        r.demote_min_judged = 3;
        r.explore_percent = Decimal::from(50);
        r.targets.completion_percent = Decimal::from(40);
        // The background refresh stays out of the way: the test refreshes between phases.
        r.refresh_secs = 3600;
    })
    .await;
    let explores =
        |id: OrderId| smm_routing::explores(u64::try_from(id.0).expect("id"), Decimal::from(50));
    // 1. Nothing known: the cheapest route (beta) learns first. Beta delivers Partials.
    gw.set_outcomes("beta", 1, Outcomes::always_partial());
    for _ in 0..3 {
        let (id, provider) = place(&gw).await;
        assert_eq!(provider, "beta");
        assert!(
            why_starts(
                &gw,
                id,
                "quality: no route meets the targets; beta/1 is the cheapest still learning"
            )
            .await
        );
    }
    settle(&gw).await;
    // 2. Beta misses the completion target; alpha has too little data: alpha learns.
    for _ in 0..3 {
        let (id, provider) = place(&gw).await;
        assert_eq!(provider, "alpha", "order {id}: {}", why(&gw, id).await);
        assert!(why_starts(&gw, id, "quality: no route meets the targets; alpha/1 is the cheapest still learning (too little data").await);
    }
    settle(&gw).await;
    // 3. Alpha qualifies: every order goes there, cheaper beta passed over with its reason.
    let (id, provider) = place(&gw).await;
    let reason = why(&gw, id).await;
    assert_eq!(provider, "alpha", "{reason}");
    assert_eq!(
        reason,
        format!(
            "quality: alpha/1 is the cheapest route meeting the targets (cost {}); \
             cheaper: beta/1: misses completion 0 % < 40 %",
            gw.app().catalog().get(1).expect("service 1").routes[0]
                .cost
                .normalize()
        ),
    );
    // 4. Alpha degrades: its recent orders go Partial and it is demoted, although its week
    //    still meets the targets. Only exploring orders probe it.
    gw.set_outcomes("alpha", 1, Outcomes::always_partial());
    for _ in 0..3 {
        let (id, provider) = place(&gw).await;
        assert_eq!(provider, "alpha", "order {id}: alpha still qualified");
    }
    settle(&gw).await;
    let mut probes = 0;
    let mut others = 0;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    while probes < 3 {
        let (id, provider) = place(&gw).await;
        let reason = why(&gw, id).await;
        if explores(id) {
            probes += 1;
            assert_eq!(provider, "alpha", "order {id} explores: {reason}");
            assert!(
                reason.starts_with(
                    "quality: exploring alpha/1 (demoted (3 of its last 4 judged attempts bad)"
                ),
                "{reason}"
            );
        } else {
            others += 1;
            assert_eq!(provider, "beta", "order {id}: alpha demoted: {reason}");
            assert!(reason.contains("beta/1 is the cheapest left"), "{reason}");
        }
        assert!(others < 40, "exploration never picked an order");
    }
    // 5. The probes complete: alpha's recent window is good again and it is promoted back.
    settle(&gw).await;
    for _ in 0..3 {
        let (id, provider) = place(&gw).await;
        assert_eq!(provider, "alpha", "order {id}: promoted back");
    }
    // The scorecards behind it all, in the admin API.
    let (status, cards) = gw
        .admin(reqwest::Method::GET, "/admin/v1/scorecards?days=7", None)
        .await;
    assert_eq!(status, 200, "{cards}");
    let providers = cards["providers"].as_array().expect("providers");
    let card = |name: &str| {
        providers
            .iter()
            .find(|p| p["provider"] == name)
            .unwrap_or_else(|| panic!("{name} in {cards}"))
    };
    assert_eq!(card("beta")["completion_percent"], "0");
    assert_eq!(card("beta")["partial_percent"], "100");
    assert_eq!(card("beta")["routes"][0]["upstream_service"], "1");
    assert!(card("alpha")["orders"].as_i64().expect("orders") >= 9);
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}
