//! The customer page's Webhook section and the overview's alert conditions (issue #14) in
//! headless Chromium, against the real gateway and a webhook receiver on 127.0.0.1: an operator
//! sets the URL (the signing secret shown once), a threshold and a debit make an event that
//! arrives signed and shows in the delivery log, Resend sends it again under its id, a failing
//! receiver pauses the webhook (the page says why) and Resume delivers again; a private URL, a
//! bad threshold, a form without its CSRF token and a viewer's change are refused.
//!
//! `UPDATE_SCREENSHOTS=1` also writes `webhook-secret` (the secret shown once) and
//! `customer-webhook` (the section), desktop and phone.

use std::time::Duration;

use serde_json::json;
use smm_notify::signing;
use smm_server::config::Settings;
use smm_store::WebhookEventState;

use crate::console::{gateway_with, logged_in, screenshot_dir, shoot};
use crate::support::browser::Browser;
use crate::support::{Answer, Backend, Receiver, TestGateway, now_ms, wait_for};

both_backends!(
    an_operator_sets_a_webhook_and_follows_its_deliveries,
    webhook_changes_are_refused_when_private_forged_or_not_allowed,
);

/// Deliveries go out at once and a failing receiver is paused within seconds.
fn quick_webhooks(settings: &mut Settings) {
    settings.webhooks.allow_private_targets = true;
    settings.webhooks.interval_ms = 20;
    settings.webhooks.timeout_secs = 1;
    settings.webhooks.first_retry_secs = 1;
    settings.webhooks.max_retry_secs = 1;
    settings.webhooks.retry_window_secs = 2;
}

/// Waits until the store has logged `n` attempts for the test customer.
async fn wait_attempts(gw: &TestGateway, n: usize) {
    wait_for(
        &format!("{n} delivery attempts logged"),
        Duration::from_secs(20),
        || async {
            gw.store()
                .webhook_deliveries(gw.customer, 50, None)
                .await
                .is_ok_and(|log| log.len() >= n)
        },
    )
    .await;
}

/// The delivery log's newest row, its cells' text separated by single spaces.
async fn first_row(browser: &Browser) -> String {
    let text = browser.text("#webhook-deliveries tbody tr").await;
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn an_operator_sets_a_webhook_and_follows_its_deliveries(backend: Backend) {
    let gw = gateway_with(backend, quick_webhooks).await;
    let receiver = Receiver::start().await;
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    let page = format!("{}/customers/{}", gw.admin_url, gw.customer.0);
    browser.goto(&page).await;
    assert!(browser.text("#webhook-url").await.contains("none"));
    assert!(
        !browser.page_source().await.contains("webhook-resume-form"),
        "nothing to resume"
    );

    // The URL: the secret is on the answer to the POST, and never again.
    // Long enough to show that it wraps on a phone.
    let path = "/hooks/smm/reseller-panel-customer-e2e-notifications-receiver-endpoint";
    let url = format!("{}{path}", receiver.base);
    browser.fill("#webhook-url-input", &url).await;
    browser.submit("#webhook-form").await;
    let secret = browser.text("#webhook-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret:?}");
    assert_eq!(browser.text("#set-url").await, url);
    if let Some(dir) = screenshot_dir(backend) {
        shoot(&browser, &dir, "webhook-secret").await;
    }
    browser.goto(&page).await;
    assert!(!browser.page_source().await.contains(&secret), "shown once");
    assert_eq!(browser.text("#webhook-url").await, url);
    assert_eq!(browser.text("#webhook-state").await, "active");

    // A bad threshold changes nothing; a good one is shown.
    browser.fill("#low-balance-input", "-5").await;
    browser.submit("#low-balance-form").await;
    assert!(
        browser.text(".flash.error").await.contains("threshold"),
        "{}",
        browser.text("main").await
    );
    assert_eq!(browser.text("#low-balance").await, "none");
    browser.fill("#low-balance-input", "900").await;
    browser.submit("#low-balance-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Low-balance threshold set to 900"),
        "{}",
        browser.text("main").await
    );
    assert!(browser.text("#low-balance").await.contains("below 900"));

    // A debit through the console crosses it: a signed balance.low arrives.
    browser.click("input[value=debit]").await;
    browser.fill("#amount", "200").await;
    browser.fill("#reason", "webhook test").await;
    browser.submit("#balance-form").await;
    assert!(browser.text(".flash.notice").await.contains("Debited 200"));
    let received = receiver
        .wait_until(Duration::from_secs(20), "the balance.low event", |r| {
            !r.is_empty()
        })
        .await;
    let first = received[0].json();
    assert_eq!(first["event"], "balance.low", "{first}");
    assert_eq!(received[0].path, path);
    let header = received[0]
        .header(signing::SIGNATURE_HEADER)
        .expect("signed");
    signing::verify(&secret, &header, &received[0].body, now_ms() / 1000, 300)
        .expect("signed with the secret shown");
    let event = first["event_id"].as_i64().expect("event id");
    wait_attempts(&gw, 1).await;

    // The page's log: the attempt with its 200, and the event delivered.
    browser.goto(&page).await;
    let row = first_row(&browser).await;
    assert!(
        row.starts_with(&format!("{event} balance.low 1 ")) && row.contains(" 200 "),
        "{row}"
    );
    let events = browser.text("#webhook-events").await;
    assert!(events.contains(&format!("{event} balance.low")), "{events}");
    assert!(events.contains("delivered"), "{events}");
    assert_eq!(browser.text("#webhook-pending").await, "0");

    // Resend: the same event id again.
    browser.submit(&format!("#resend-{event}")).await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains(&format!("Event {event} (balance.low) queued again")),
        "{}",
        browser.text("main").await
    );
    let received = receiver
        .wait_until(Duration::from_secs(20), "the resend", |r| r.len() >= 2)
        .await;
    assert_eq!(received[1].json(), first, "the same event, the same id");
    wait_attempts(&gw, 2).await;

    // A receiver failing past the retry window: paused, and the page says why.
    receiver.answer_always(Answer::Status(503));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    browser.goto(&page).await;
    browser.submit(&format!("#resend-{event}")).await;
    wait_for("the webhook paused", Duration::from_secs(20), || async {
        gw.store()
            .webhook(gw.customer)
            .await
            .is_ok_and(|w| w.paused_at.is_some())
    })
    .await;
    browser.goto(&page).await;
    let state = browser.text("#webhook-state").await;
    assert!(
        state.starts_with("paused since") && state.contains("503"),
        "{state}"
    );
    assert_eq!(browser.text("#webhook-pending").await, "1");
    let row = first_row(&browser).await;
    assert!(row.contains(" 503 "), "{row}");

    // Resume: what waited goes out.
    receiver.answer_always(Answer::Status(200));
    let before = receiver.received().len();
    browser.submit("#webhook-resume-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Deliveries resumed"),
        "{}",
        browser.text("main").await
    );
    let received = receiver
        .wait_until(Duration::from_secs(20), "the resumed event", |r| {
            r.len() > before
        })
        .await;
    assert_eq!(received.last().expect("resumed").json(), first);
    wait_for("the event delivered", Duration::from_secs(20), || async {
        gw.store()
            .webhook_event(event)
            .await
            .is_ok_and(|e| e.state == WebhookEventState::Delivered)
    })
    .await;
    // (The page the resume led to may have been drawn while the event was going out.)
    browser.goto(&page).await;
    assert_eq!(browser.text("#webhook-state").await, "active");
    assert_eq!(browser.text("#webhook-pending").await, "0");
    if let Some(dir) = screenshot_dir(backend) {
        // The section on a desktop; on a phone, its delivery log.
        browser.set_viewport_size(1280, 900).await;
        browser
            .execute(
                "document.querySelector('#webhook-section').scrollIntoView();",
                vec![],
            )
            .await;
        browser.screenshot(&dir.join("customer-webhook.png")).await;
        browser.set_viewport_size(390, 844).await;
        browser
            .execute(
                "document.querySelector('#webhook-deliveries').scrollIntoView();",
                vec![],
            )
            .await;
        browser
            .screenshot(&dir.join("customer-webhook-phone.png"))
            .await;
        browser.set_viewport_size(1280, 900).await;
    }

    let actions: Vec<String> = gw
        .store()
        .audit_log(50)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.actor == "console:operator")
        .map(|e| e.action)
        .collect();
    for action in [
        "customer.webhook",
        "webhook.resend",
        "customer.webhook_resume",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }

    // Removed: no URL, the threshold kept; then the threshold removed too.
    browser.goto(&page).await;
    browser.submit("#webhook-remove-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Webhook removed")
    );
    assert!(browser.text("#webhook-url").await.contains("none"));
    assert_eq!(gw.store().webhook(gw.customer).await.expect("w").url, None);
    browser.submit("#low-balance-clear-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Low-balance threshold removed")
    );
    assert_eq!(browser.text("#low-balance").await, "none");
    browser.close().await;
    gw.finish().await;
}

async fn webhook_changes_are_refused_when_private_forged_or_not_allowed(backend: Backend) {
    let gw = gateway_with(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    let page = format!("{}/customers/{}", gw.admin_url, gw.customer.0);
    browser.goto(&page).await;

    // 127.0.0.1 is refused (webhooks.allow_private_targets is off): nothing set, nothing sent.
    browser
        .fill("#webhook-url-input", &format!("{}/hook", receiver.base))
        .await;
    browser.submit("#webhook-form").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains("private, loopback or link-local"),
        "{}",
        browser.text("main").await
    );
    assert!(!browser.page_source().await.contains("whsec_"));
    assert!(browser.text("#webhook-url").await.contains("none"));
    assert_eq!(gw.store().webhook(gw.customer).await.expect("w").url, None);

    // A form without the CSRF token changes nothing.
    browser.fill("#low-balance-input", "50").await;
    browser.submit_without("#low-balance-form", "csrf").await;
    assert!(
        browser.text("main").await.contains("CSRF"),
        "{}",
        browser.text("main").await
    );
    let settings = gw.store().webhook(gw.customer).await.expect("w");
    assert_eq!(settings.low_balance_threshold, None, "nothing changed");
    browser.close().await;

    // A viewer sees the section without a form, and a change sent anyway is refused.
    gw.store()
        .set_webhook(
            gw.customer,
            Some(("https://panel.example.com/hook", "whsec_x")),
            "test",
            now_ms(),
        )
        .await
        .expect("set directly");
    let Some(viewer) = logged_in(&gw, "viewer").await else {
        return;
    };
    viewer.goto(&page).await;
    assert_eq!(
        viewer.text("#webhook-url").await,
        "https://panel.example.com/hook"
    );
    let source = viewer.page_source().await;
    assert!(source.contains("webhook-deliveries"));
    for form in ["webhook-form", "low-balance-form", "webhook-remove-form"] {
        assert!(!source.contains(form), "a viewer has no {form}");
    }
    viewer
        .execute(
            "const form = document.createElement('form');
             form.method = 'post'; form.action = arguments[0]; form.id = 'forged';
             for (const [name, value] of [['csrf', document.querySelector('form.who input[name=csrf]').value]]) {
               const input = document.createElement('input');
               input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
             }
             const button = document.createElement('button'); button.type = 'submit';
             form.appendChild(button); document.body.appendChild(form);",
            vec![json!(format!("/customers/{}/webhook/remove", gw.customer.0))],
        )
        .await;
    viewer.submit("#forged").await;
    assert!(
        viewer.text("main").await.contains("Your role may not"),
        "{}",
        viewer.text("main").await
    );
    assert_eq!(
        gw.store()
            .webhook(gw.customer)
            .await
            .expect("w")
            .url
            .as_deref(),
        Some("https://panel.example.com/hook"),
        "nothing changed"
    );
    viewer.close().await;
    assert!(receiver.received().is_empty(), "nothing reached 127.0.0.1");
    gw.finish().await;
}
