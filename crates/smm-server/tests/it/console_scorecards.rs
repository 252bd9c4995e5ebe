//! The console's scorecards page and the routing decision on an order's page (issue #15) in
//! headless Chromium, against the real gateway, both simulators and a real database: a small
//! known history placed through v2 and finished upstream (alpha completes service 1 and cancels
//! service 2, beta delivers Partials, one order fails over from alpha to beta), then the page's
//! figures checked exactly for 7 and for 30 days, a window other than 7 or 30 refused with a
//! message (400), and the order that failed over showing why each attempt went where it did.
//!
//! `UPDATE_SCREENSHOTS=1` also writes `scorecards` (desktop and phone).

use std::time::Duration;

use smm_panel_sim::{Fault, FaultRule, Outcomes};
use smm_server::config::Settings;
use smm_store::{ForwardState, OrderId};
use smm_wire::Money;

use crate::console::{gateway_with, logged_in, screenshot_dir, shoot};
use crate::support::browser::Browser;
use crate::support::gateway::{BETA_ONLY, LINK};
use crate::support::{Backend, TestGateway, now_ms};

both_backends!(scorecards_show_each_routes_record_and_orders_show_why);

/// Orders are due for a status poll as soon as they are sent; the test drives every
/// reconciliation round and scorecard refresh itself.
fn test_driven(settings: &mut Settings) {
    settings.forwarder.first_poll_secs = 0;
    settings.reconciler.interval_ms = 3_600_000;
    settings.routing.refresh_secs = 3600;
}

/// Places an order of `service` through v2 and waits until an upstream accepted it.
async fn place(gw: &TestGateway, service: u64) -> OrderId {
    let service = service.to_string();
    let id = gw
        .add_ok(&[
            ("service", service.as_str()),
            ("link", LINK),
            ("quantity", "100"),
        ])
        .await;
    gw.wait_state(id, ForwardState::Sent).await;
    id
}

/// The UTC date `days_back` days before today, `2026-12-01`.
fn date_before_today(days_back: i64) -> String {
    let day = now_ms().div_euclid(86_400_000) - days_back;
    let at = time::OffsetDateTime::from_unix_timestamp(day * 86_400).expect("a date");
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

/// The text of one figure (`cell`, its class) in the row of `route` (`alpha` for the
/// provider's totals, `alpha/1` for a route).
async fn figure(browser: &Browser, route: &str, cell: &str) -> String {
    let provider = route.split('/').next().unwrap_or(route);
    let row = if route.contains('/') {
        format!("#scorecard-{provider} tr.route[data-route='{route}']")
    } else {
        format!("#scorecard-{provider} tr.totals")
    };
    browser.text(&format!("{row} td.{cell}")).await
}

/// The figures of the known history, row by row: orders, finished, completion, Partial,
/// cancel, acceptance and call errors.
async fn assert_figures(browser: &Browser, completed_revenue: &str) {
    let expected: [(&str, [&str; 7]); 5] = [
        // Alpha: 3 completed at alpha/1, 1 canceled at alpha/2; 5 calls, 1 refused.
        ("alpha", ["4", "4", "75 %", "0 %", "25 %", "80 %", "0 %"]),
        ("alpha/1", ["3", "3", "100 %", "0 %", "0 %", "75 %", "0 %"]),
        ("alpha/2", ["1", "1", "0 %", "0 %", "100 %", "100 %", "0 %"]),
        // Beta: the order that failed over and one of the beta-only service, both Partial.
        ("beta", ["2", "2", "0 %", "100 %", "0 %", "100 %", "0 %"]),
        ("beta/1", ["2", "2", "0 %", "100 %", "0 %", "100 %", "0 %"]),
    ];
    let cells = [
        "orders",
        "finished",
        "completion",
        "partial",
        "cancel",
        "acceptance",
        "call-errors",
    ];
    for (route, figures) in expected {
        for (cell, want) in cells.iter().zip(figures) {
            assert_eq!(figure(browser, route, cell).await, want, "{route} {cell}");
        }
    }
    // No refill was asked: no share of them to show.
    assert_eq!(figure(browser, "alpha", "refills").await, "0");
    assert_eq!(figure(browser, "alpha", "refill-success").await, "–");
    // Nothing was Partial at alpha: no undelivered share; beta's Partials have one.
    assert_eq!(figure(browser, "alpha/1", "undelivered").await, "–");
    let undelivered = figure(browser, "beta/1", "undelivered").await;
    assert!(
        undelivered.ends_with(" %") && undelivered != "0 %",
        "{undelivered}"
    );
    // What the customer paid for alpha/1's completed orders, none of it refunded.
    assert_eq!(
        figure(browser, "alpha/1", "revenue").await,
        completed_revenue
    );
    // Every accepted order was seen Completed, Partial or Canceled: times are shown as
    // durations where there are any.
    let complete = figure(browser, "alpha/1", "complete-median").await;
    assert!(
        complete.ends_with(" s") || complete.ends_with(" ms") || complete.ends_with(" m"),
        "{complete}"
    );
    assert_eq!(figure(browser, "beta/1", "complete-median").await, "–");
}

async fn scorecards_show_each_routes_record_and_orders_show_why(backend: Backend) {
    let gw = gateway_with(backend, test_driven).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    gw.set_outcomes("alpha", 2, Outcomes::always_canceled());
    gw.set_outcomes("beta", 1, Outcomes::always_partial());
    let mut completed = Vec::new();
    for _ in 0..3 {
        completed.push(place(&gw, 1).await);
    }
    // Alpha refuses this one for good: it fails over to beta's route.
    gw.alpha().add_fault(
        FaultRule::always(Fault::Error {
            text: "Incorrect link".into(),
        })
        .on_action("add")
        .times(1),
    );
    let failed_over = place(&gw, 1).await;
    assert_eq!(
        gw.order(failed_over).await.provider.as_deref(),
        Some("beta")
    );
    place(&gw, 2).await;
    place(&gw, BETA_ONLY).await;

    // Everything finishes upstream; the gateway polls, applies and re-reads the scorecards.
    gw.advance_sims(Duration::from_secs(86_400));
    for _ in 0..3 {
        if gw.make_polls_due().await.is_empty() {
            break;
        }
        gw.reconcile().await;
    }
    assert!(
        gw.make_polls_due().await.is_empty(),
        "every order finished upstream"
    );
    smm_server::scorecards::refresh(gw.app()).await;
    let mut revenue = Money::ZERO;
    for id in &completed {
        let order = gw.order(*id).await;
        assert_eq!(order.refunded, Money::ZERO);
        revenue = revenue.checked_add(order.charge).expect("a sum");
    }

    let Some(browser) = logged_in(&gw, "viewer").await else {
        return;
    };
    // From the navigation: the last 7 days.
    browser.click("header nav a[href='/scorecards']").await;
    browser.wait_for("#scorecard-alpha").await;
    browser
        .find("header nav a[href='/scorecards'][aria-current=page]")
        .await;
    browser.find("#days-7[aria-current=page]").await;
    assert!(
        browser
            .text("#window")
            .await
            .contains(&format!("since {}", date_before_today(6))),
        "{}",
        browser.text("#window").await
    );
    assert_figures(&browser, &revenue.to_string()).await;
    if let Some(dir) = screenshot_dir(backend) {
        shoot(&browser, &dir, "scorecards").await;
    }

    // The last 30 days: the same history, a longer window.
    browser.click("#days-30").await;
    browser.wait_for("#days-30[aria-current=page]").await;
    assert_eq!(browser.current_url().await.query(), Some("days=30"));
    assert!(
        browser
            .text("#window")
            .await
            .contains(&format!("since {}", date_before_today(29)))
    );
    assert_figures(&browser, &revenue.to_string()).await;

    // Any other window is refused with a message, and no figures.
    for (days, message) in [
        ("5", "days must be 7 or 30, not 5"),
        ("week", "days must be 7 or 30, not \"week\""),
    ] {
        browser
            .goto(&format!("{}/scorecards?days={days}", gw.admin_url))
            .await;
        assert_eq!(browser.text("#scorecards-error").await, message);
        assert!(!browser.page_source().await.contains("scorecard-alpha"));
    }
    let session = browser.cookie("smm_session").await.expect("session");
    let response = gw
        .http
        .get(format!("{}/scorecards?days=5", gw.admin_url))
        .header("cookie", format!("smm_session={}", session.value()))
        .send()
        .await
        .expect("the refused page");
    assert_eq!(response.status(), 400);

    // Each provider on the providers page leads to its scorecard.
    browser.goto(&format!("{}/providers", gw.admin_url)).await;
    browser.click("a[href='/scorecards#scorecard-beta']").await;
    browser.wait_for("#scorecard-beta").await;
    assert_eq!(
        browser.current_url().await.fragment(),
        Some("scorecard-beta")
    );

    // The order that failed over: each attempt says which policy sent it where, and why.
    let attempts = gw.store().attempts(failed_over).await.expect("attempts");
    let whys: Vec<String> = attempts
        .iter()
        .map(|a| a.why.clone().expect("a why on every attempt"))
        .collect();
    assert_eq!(whys.len(), 2, "{attempts:?}");
    assert!(
        whys[0].starts_with("priority: alpha/1 is the first route available"),
        "{whys:?}"
    );
    assert!(whys[1].starts_with("fail-over: alpha: "), "{whys:?}");
    browser
        .goto(&format!("{}/orders/{}", gw.admin_url, failed_over.0))
        .await;
    let shown = browser
        .execute(
            "return Array.from(document.querySelectorAll('#order-attempts .why-text'))
                 .map(e => e.innerText);",
            vec![],
        )
        .await;
    assert_eq!(shown, serde_json::json!(whys), "the page shows every why");
    let table = browser.text("#order-attempts").await;
    assert!(table.contains("Routing: priority: alpha/1"), "{table}");
    browser.close().await;
    gw.finish().await;
}
