//! The web console (issue #13) in headless Chromium, against the real gateway, both simulators
//! and a real database: logging in (a wrong password refused, a lockout after repeated
//! failures), every page rendered with data (the overview with an alert condition on), a
//! customer created, credited and shown in the ledger (and their new key working on v2), an
//! ambiguous order resolved with its refund, a change without the CSRF token refused, a viewer
//! refused any change. The customer page's Webhook section: `console_notifications`.
//!
//! `UPDATE_SCREENSHOTS=1` also writes the pages' screenshots (desktop and a 390-px-wide phone)
//! to `docs/screenshots/`.

use std::path::PathBuf;

use serde_json::json;
use smm_panel_sim::{Fault, FaultRule};
use smm_server::ops::Ops;
use smm_store::ForwardState;

use crate::support::Backend;
use crate::support::browser::Browser;
use crate::support::gateway::{START_BALANCE, TestGateway};

pub const PASSWORD: &str = "a long console password";

both_backends!(
    logins_are_checked_and_lock_after_repeated_failures,
    every_page_renders_with_data,
    an_operator_creates_and_credits_a_customer,
    an_ambiguous_order_is_resolved_with_its_refund,
    changes_without_the_csrf_token_or_the_role_are_refused,
    prices_keys_and_users_are_managed_from_the_console,
    refills_and_cancels_are_asked_on_the_customers_behalf,
);

/// A gateway with console users `owner`, `operator` and `viewer` (one per role).
pub async fn gateway(backend: Backend) -> TestGateway {
    gateway_with(backend, |_| {}).await
}

/// Like [`gateway`], with `adjust` changing the settings before the gateway starts.
pub async fn gateway_with(
    backend: Backend,
    adjust: impl FnOnce(&mut smm_server::config::Settings),
) -> TestGateway {
    let gw = TestGateway::start_with(backend, |s| {
        s.console.max_failed_logins = 3;
        s.console.lockout_minutes = 10;
        adjust(s);
    })
    .await;
    let settings = gw.app().settings();
    let ops = Ops {
        store: gw.store().as_ref(),
        settings: &settings,
        actor: "test",
    };
    for role in ["owner", "operator", "viewer"] {
        ops.create_admin(role, PASSWORD, role)
            .await
            .expect("console user");
    }
    gw
}

async fn login(browser: &Browser, gw: &TestGateway, user: &str, password: &str) {
    browser.goto(&format!("{}/login", gw.admin_url)).await;
    browser.fill("#username", user).await;
    browser.fill("#password", password).await;
    browser.submit("form").await;
}

pub async fn logged_in(gw: &TestGateway, user: &str) -> Option<Browser> {
    let browser = Browser::start().await?;
    login(&browser, gw, user, PASSWORD).await;
    assert_eq!(
        browser.current_url().await.path(),
        "/",
        "{user} lands on the overview"
    );
    Some(browser)
}

async fn logins_are_checked_and_lock_after_repeated_failures(backend: Backend) {
    let gw = gateway(backend).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    // Pages need a session.
    browser.goto(&format!("{}/customers", gw.admin_url)).await;
    assert_eq!(browser.current_url().await.path(), "/login");

    login(&browser, &gw, "owner", "not the password").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains("Wrong username or password")
    );
    login(&browser, &gw, "nobody", PASSWORD).await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains("Wrong username or password"),
        "an unknown username gets the same answer"
    );
    // Two more wrong passwords make three: locked, and then even the right one is refused.
    login(&browser, &gw, "owner", "wrong again").await;
    login(&browser, &gw, "owner", "and again").await;
    assert!(browser.text(".flash.error").await.contains("locked"));
    login(&browser, &gw, "owner", PASSWORD).await;
    assert!(browser.text(".flash.error").await.contains("locked"));
    assert_eq!(browser.current_url().await.path(), "/login");
    assert!(browser.cookie("smm_session").await.is_none());

    // Another user is not affected; the cookie is HttpOnly and SameSite=Strict; logout ends
    // the session in the database.
    login(&browser, &gw, "operator", PASSWORD).await;
    assert_eq!(browser.current_url().await.path(), "/");
    let cookie = browser.cookie("smm_session").await.expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    browser.submit("form.who").await;
    assert_eq!(browser.current_url().await.path(), "/login");
    browser.goto(&format!("{}/", gw.admin_url)).await;
    assert_eq!(browser.current_url().await.path(), "/login", "logged out");

    let audit: Vec<String> = gw
        .store()
        .audit_log(50)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| format!("{} {}", e.actor, e.action))
        .collect();
    assert!(
        audit.contains(&"console admin.lock".to_owned()),
        "{audit:?}"
    );
    assert!(
        audit.contains(&"console:operator admin.logout".to_owned()),
        "{audit:?}"
    );
    browser.close().await;
    gw.finish().await;
}

/// Where `UPDATE_SCREENSHOTS=1` writes, or `None`.
pub fn screenshot_dir(backend: Backend) -> Option<PathBuf> {
    (std::env::var_os("UPDATE_SCREENSHOTS").is_some() && backend == Backend::Sqlite).then(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).expect("docs/screenshots");
        dir
    })
}

/// `NAME.png` (1280 px wide) and `NAME-phone.png` (390 px) of the current page in `dir`; the
/// window is left at desktop size.
pub async fn shoot(browser: &Browser, dir: &std::path::Path, name: &str) {
    browser.set_viewport_size(1280, 900).await;
    browser.screenshot(&dir.join(format!("{name}.png"))).await;
    browser.set_viewport_size(390, 844).await;
    browser
        .screenshot(&dir.join(format!("{name}-phone.png")))
        .await;
    browser.set_viewport_size(1280, 900).await;
}

async fn every_page_renders_with_data(backend: Backend) {
    let gw = gateway(backend).await;
    // Some business: two orders sent, one ambiguous.
    let sent = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/one"),
            ("quantity", "100"),
        ])
        .await;
    gw.wait_forwarded(sent).await;
    gw.alpha()
        .add_fault(FaultRule::always(Fault::Garbled).on_action("add").times(1));
    let unknown = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/two"),
            ("quantity", "200"),
        ])
        .await;
    gw.wait_state(unknown, ForwardState::Ambiguous).await;
    // The alert conditions, checked now rather than at the notifier's next round.
    smm_server::notifier::alerts::evaluate(gw.app()).await;
    let Some(browser) = logged_in(&gw, "viewer").await else {
        return;
    };
    let shots = screenshot_dir(backend);
    let pages = [
        ("overview", "/".to_owned(), "1 ambiguous orders"),
        (
            "orders",
            "/orders".to_owned(),
            "https://instagram.com/p/two",
        ),
        ("order", format!("/orders/{}", unknown.0), "ambiguous"),
        ("customers", "/customers".to_owned(), "e2e"),
        (
            "customer",
            format!("/customers/{}", gw.customer.0),
            "charge",
        ),
        ("audit", "/audit".to_owned(), "admin.login"),
        // Their screenshots are an owner's, from tests/it/console_config.rs.
        ("services", "/services".to_owned(), "Catalog (22 services"),
        ("providers", "/providers".to_owned(), "20 services"),
        ("config", "/config".to_owned(), "Running configuration"),
    ];
    for (name, path, expected) in pages {
        browser.goto(&format!("{}{path}", gw.admin_url)).await;
        let text = browser.text("main").await;
        assert!(text.contains(expected), "{path} shows {expected:?}: {text}");
        let owners_shot = ["services", "providers", "config"].contains(&name);
        if let Some(dir) = shots.as_ref().filter(|_| !owners_shot) {
            shoot(&browser, dir, name).await;
            if name == "overview" {
                // Keyboard only: Tab past the skip link and the brand to the first nav entry,
                // and show where the focus is.
                for _ in 0..3 {
                    let focused = browser.client().active_element().await.expect("focus");
                    focused.send_keys("\u{E004}").await.expect("Tab");
                }
                browser.screenshot(&dir.join("overview-keyboard.png")).await;
            }
        }
    }
    // The overview's money: 300 units at the list rate, nothing refunded yet.
    browser.goto(&format!("{}/", gw.admin_url)).await;
    // The alert condition on now, in the work list, linked to its order.
    let work = browser.text("ul.work").await;
    assert!(
        work.contains(&format!("order.ambiguous:{} since ", unknown.0)),
        "{work}"
    );
    browser
        .find(&format!("li.alert a[href='/orders/{}']", unknown.0))
        .await;
    let charged = gw
        .order(sent)
        .await
        .charge
        .checked_add(gw.order(unknown).await.charge);
    let overview = browser.text("main").await;
    assert!(
        overview.contains(&format!("{} USD", charged.expect("sum"))),
        "revenue today: {overview}"
    );
    // The order search by day placed and by service.
    let today = time::OffsetDateTime::now_utc().date();
    let today = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let search = |query: String| {
        let browser = &browser;
        let url = format!("{}/orders?{query}", gw.admin_url);
        async move {
            browser.goto(&url).await;
            browser.text("main").await
        }
    };
    assert!(
        search(format!("from={today}&to={today}&service=1"))
            .await
            .contains("/p/two")
    );
    assert!(!search("to=2000-01-01".into()).await.contains("/p/two"));
    assert!(!search("service=2".into()).await.contains("/p/two"));
    assert!(
        search("from=yesterday".into())
            .await
            .contains("from must be a day")
    );
    // The audit log, searched in the database.
    let audit = |query: String| {
        let browser = &browser;
        let url = format!("{}/audit?{query}", gw.admin_url);
        async move {
            browser.goto(&url).await;
            browser.text("main").await
        }
    };
    let logins = format!("actor=console:&action=admin.login&from={today}&to={today}");
    assert!(audit(logins).await.contains("console:viewer"));
    assert!(!audit("actor=cli:".into()).await.contains("admin.login"));
    let long_ago = "action=admin.login&to=2000-01-01".to_owned();
    assert!(!audit(long_ago).await.contains("console:viewer"));
    assert!(
        audit("to=someday".into())
            .await
            .contains("to must be a day")
    );
    // The customer list's order count and spend, kept by the store.
    browser.goto(&format!("{}/customers", gw.admin_url)).await;
    assert_eq!(browser.text("#customers td.orders").await, "2");
    assert_eq!(
        browser.text("#customers td.spent").await,
        format!("{} USD", charged.expect("sum"))
    );
    browser.close().await;
    gw.finish().await;
}

async fn an_operator_creates_and_credits_a_customer(backend: Backend) {
    let gw = gateway(backend).await;
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    browser.goto(&format!("{}/customers", gw.admin_url)).await;
    browser.fill("#name", "Acme Panel").await;
    browser.submit("form.inline").await;
    let key = browser.text("#api-key").await;
    assert!(key.len() >= 20, "a key is shown: {key:?}");
    // The key works on v2 at once, with an empty balance.
    assert_eq!(
        gw.call(&key, "balance", &[]).await,
        json!({"balance": "0.00000", "currency": "USD"})
    );
    browser.click("main a[href^='/customers/']").await;
    browser.wait_for("#balance-form").await;
    browser.fill("#amount", "12.5").await;
    browser.fill("#reason", "bank transfer 42").await;
    browser.submit("#balance-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Credited 12.50000")
    );
    assert_eq!(browser.text("#balance").await, "12.50000 USD");
    let ledger = browser.text("#ledger-table").await;
    assert!(
        ledger.contains("deposit")
            && ledger.contains("bank transfer 42")
            && ledger.contains("console:operator"),
        "{ledger}"
    );
    // A debit beyond the balance is refused and changes nothing.
    browser.click("input[value=debit]").await;
    browser.fill("#amount", "20").await;
    browser.fill("#reason", "too much").await;
    browser.submit("#balance-form").await;
    assert!(
        browser.text(".flash.error").await.contains("insufficient")
            || browser
                .text(".flash.error")
                .await
                .to_lowercase()
                .contains("funds")
    );
    assert_eq!(browser.text("#balance").await, "12.50000 USD");
    assert_eq!(
        gw.call(&key, "balance", &[]).await,
        json!({"balance": "12.50000", "currency": "USD"})
    );
    browser.close().await;
    gw.finish().await;
}

async fn an_ambiguous_order_is_resolved_with_its_refund(backend: Backend) {
    let gw = gateway(backend).await;
    gw.alpha()
        .add_fault(FaultRule::always(Fault::Garbled).on_action("add").times(1));
    let id = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/lost"),
            ("quantity", "100"),
        ])
        .await;
    gw.wait_state(id, ForwardState::Ambiguous).await;
    let charge = gw.order(id).await.charge;
    assert!(gw.balance().await < START_BALANCE);
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    browser
        .goto(&format!("{}/orders?forward_state=ambiguous", gw.admin_url))
        .await;
    browser.click(&format!("a[href='/orders/{}']", id.0)).await;
    browser.wait_for("#cancel-form").await;
    browser.fill("#cancel-reason", "not found at alpha").await;
    browser.submit("#cancel-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains(&format!("refunded {charge}")),
        "{}",
        browser.text("main").await
    );
    assert_eq!(browser.text("#refunded").await, charge.to_string());
    // The timeline shows the send that went nowhere known, and the refund with its reason.
    let timeline = browser.text("#order-timeline").await;
    assert!(timeline.contains("forwarding ambiguous"), "{timeline}");
    assert!(timeline.contains(&format!("refund {charge}")), "{timeline}");
    assert!(timeline.contains("by console:operator"), "{timeline}");
    assert_eq!(
        gw.balance().await,
        START_BALANCE,
        "the whole charge came back"
    );
    gw.assert_ledger_consistent(gw.customer).await;
    let order = gw.order(id).await;
    assert_eq!(
        (order.refunded, order.forward_state),
        (charge, ForwardState::Rejected)
    );
    let audit = gw.store().audit_log(10).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "console:operator" && e.target == format!("order:{}", id.0)),
        "{audit:?}"
    );
    browser.close().await;
    gw.finish().await;
}

async fn changes_without_the_csrf_token_or_the_role_are_refused(backend: Backend) {
    let gw = gateway(backend).await;
    let customer = gw.customer;
    let before = gw.balance().await;
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    let page = format!("{}/customers/{}", gw.admin_url, customer.0);
    browser.goto(&page).await;
    browser.fill("#amount", "5").await;
    browser.fill("#reason", "forged").await;
    browser.submit_without("#balance-form", "csrf").await;
    assert!(
        browser.text("main").await.contains("CSRF"),
        "{}",
        browser.text("main").await
    );
    // A token from another session is refused as well.
    browser.goto(&page).await;
    browser
        .execute(
            "document.querySelector('#balance-form input[name=csrf]').value = 'f'.repeat(64);",
            vec![],
        )
        .await;
    browser.fill("#amount", "5").await;
    browser.fill("#reason", "forged").await;
    browser.submit("#balance-form").await;
    assert!(browser.text("main").await.contains("CSRF"));
    assert_eq!(gw.balance().await, before, "nothing changed");
    browser.close().await;

    // A viewer sees no forms, and a change sent anyway (with a valid token) is refused.
    let Some(viewer) = logged_in(&gw, "viewer").await else {
        return;
    };
    viewer.goto(&page).await;
    assert!(viewer.page_source().await.contains("ledger-table"));
    assert!(!viewer.page_source().await.contains("balance-form"));
    viewer
        .execute(
            "const form = document.createElement('form');
             form.method = 'post'; form.action = arguments[0]; form.id = 'forged';
             for (const [name, value] of [['csrf', document.querySelector('form.who input[name=csrf]').value],
                                          ['direction', 'credit'], ['amount', '5'], ['reason', 'viewer']]) {
               const input = document.createElement('input');
               input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
             }
             const button = document.createElement('button'); button.type = 'submit';
             form.appendChild(button); document.body.appendChild(form);",
            vec![json!(format!("/customers/{}/balance", customer.0))],
        )
        .await;
    viewer.submit("#forged").await;
    assert!(
        viewer.text("main").await.contains("Your role may not"),
        "{}",
        viewer.text("main").await
    );
    assert_eq!(gw.balance().await, before, "nothing changed");
    viewer.close().await;
    gw.finish().await;
}

async fn prices_keys_and_users_are_managed_from_the_console(backend: Backend) {
    let gw = gateway(backend).await;
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    let page = format!("{}/customers/{}", gw.admin_url, gw.customer.0);
    let list_rate = gw.rate(1).await;

    // A 10 % discount: v2 `services` shows it at once.
    browser.goto(&page).await;
    browser.fill("#discount-input", "10").await;
    browser.submit("#discount-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Discount set to 10 %")
    );
    assert_eq!(browser.text("#discount").await, "10 %");
    let discounted = gw.rate(1).await;
    assert!(discounted < list_rate, "{discounted} < {list_rate}");
    // A custom rate for service 2 wins; a bad one is refused and changes nothing.
    browser.fill("#rate-service", "2").await;
    browser.fill("#rate-input", "-1").await;
    browser.submit("#rate-form").await;
    assert!(browser.find(".flash.error").await.text().await.is_ok());
    browser.fill("#rate-service", "2").await;
    browser.fill("#rate-input", "9.5").await;
    browser.submit("#rate-form").await;
    assert!(
        browser.text("#rates").await.contains("service 2: 9.5"),
        "{}",
        browser.text("#rates").await
    );
    assert_eq!(gw.rate(2).await, rust_decimal::Decimal::new(95, 1));

    // A new key: shown once, works at once; the old one is refused at once.
    browser.submit("#rotate-form").await;
    let key = browser.text("#api-key").await;
    assert_eq!(
        gw.call(crate::support::gateway::KEY, "balance", &[]).await,
        json!({"error": "Invalid API key"})
    );
    assert!(gw.call(&key, "balance", &[]).await.get("balance").is_some());

    // Users are the owner's: the operator is refused, the owner creates a viewer who can
    // log in.
    browser.goto(&format!("{}/admins", gw.admin_url)).await;
    assert!(browser.text("main").await.contains("Your role may not"));
    browser.close().await;
    let Some(owner) = logged_in(&gw, "owner").await else {
        return;
    };
    owner.goto(&format!("{}/admins", gw.admin_url)).await;
    owner.fill("#new-username", "carol").await;
    owner.fill("#new-password", "short").await;
    owner.submit("#admin-form").await;
    assert!(
        owner.text("main").await.contains("at least 12"),
        "a short password is refused (the browser's minlength aside)"
    );
    owner.fill("#new-username", "carol").await;
    owner.fill("#new-password", PASSWORD).await;
    owner.submit("#admin-form").await;
    assert!(
        owner
            .text(".flash.notice")
            .await
            .contains("Created carol (viewer)")
    );
    assert!(owner.text("#admins").await.contains("carol"));
    owner.close().await;
    let Some(carol) = logged_in(&gw, "carol").await else {
        return;
    };
    carol.close().await;
    gw.finish().await;
}

/// The v2 rules decide a refill or a cancel the staff asks for, and answer with the v2 errors:
/// no refill before the order completed, no cancel on a service without cancels; then a refill
/// of the completed order and a cancel of a cancellable one go through, audited.
async fn refills_and_cancels_are_asked_on_the_customers_behalf(backend: Backend) {
    use smm_panel_sim::Outcomes;
    use smm_wire::{ErrorKind, OrderStatus};

    let gw = gateway(backend).await;
    // Alpha's service 4 takes refills, not cancels; service 2 takes cancels.
    gw.set_outcomes("alpha", 4, Outcomes::always_completed());
    let views = gw
        .add_ok(&[
            ("service", "4"),
            ("link", "https://instagram.com/p/behalf"),
            ("quantity", "1000"),
        ])
        .await;
    let likes = gw
        .add_ok(&[
            ("service", "2"),
            ("link", "https://instagram.com/p/behalf-2"),
            ("quantity", "100"),
        ])
        .await;
    gw.wait_forwarded(views).await;
    gw.wait_forwarded(likes).await;
    let Some(browser) = logged_in(&gw, "operator").await else {
        return;
    };
    let page = format!("{}/orders/{}", gw.admin_url, views.0);
    browser.goto(&page).await;
    browser.submit("#refill-form").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains(&format!("Refill refused: {}", ErrorKind::RefillNotAllowed)),
        "{}",
        browser.text("main").await
    );
    browser.submit("#cancel-order-form").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains(&format!("Cancel refused: {}", ErrorKind::CancelDisabled)),
        "{}",
        browser.text("main").await
    );

    browser
        .goto(&format!("{}/orders/{}", gw.admin_url, likes.0))
        .await;
    browser.submit("#cancel-order-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("Cancel requested"),
        "{}",
        browser.text("main").await
    );

    gw.alpha().advance(std::time::Duration::from_secs(4 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(views).await.status, OrderStatus::Completed);
    browser.goto(&page).await;
    browser.submit("#refill-form").await;
    let notice = browser.text(".flash.notice").await;
    assert!(
        notice.contains("Refill") && notice.contains("requested"),
        "{notice}"
    );
    let refill: i64 = notice
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a refill id in {notice:?}"));
    let refills = gw
        .store()
        .customer_refills(gw.customer, &[smm_store::RefillId(refill)])
        .await
        .expect("refills");
    assert!(
        refills.iter().any(|r| r.order_id == views),
        "the refill is the customer's: {refills:?}"
    );
    // The order's timeline: placed and charged, sent, completed, the refill.
    browser.goto(&page).await;
    let timeline = browser.text("#order-timeline").await;
    for step in [
        "placed, charged".to_owned(),
        "charge -".to_owned(),
        "forwarding sent".to_owned(),
        "status Completed".to_owned(),
        format!("refill {refill} requested"),
    ] {
        assert!(timeline.contains(&step), "{step:?} in {timeline}");
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
    assert!(actions.contains(&"order.refill".to_owned()), "{actions:?}");
    assert!(actions.contains(&"order.cancel".to_owned()), "{actions:?}");
    browser.close().await;

    let Some(viewer) = logged_in(&gw, "viewer").await else {
        return;
    };
    viewer.goto(&page).await;
    assert!(!viewer.page_source().await.contains("refill-form"));
    viewer.close().await;
    gw.finish().await;
}
