//! Operations (issue #6): the admin API over the same operations as the CLI, and hot reload.

use std::time::Duration;

use reqwest::Method;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};
use smm_panel_sim::{Fault, FaultRule, Outcomes};
use smm_store::{ForwardState, OrderId};
use smm_wire::{Money, OrderStatus};

use crate::support::{BETA_ONLY, Backend, LINK, TestGateway, WITH_BETA_FALLBACK};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn money(value: &Value) -> Money {
    value
        .as_str()
        .unwrap_or_else(|| panic!("money as a string, got {value}"))
        .parse()
        .expect("money")
}

/// Customers and money through `/admin/v1`: every change a ledger row with the admin's name,
/// every refusal a clear error envelope that changes nothing, suspensions and key rotations
/// effective on the v2 API at once, everything audited.
pub async fn admin_api_keeps_exact_books(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let customers_before = gw.store().list_customers().await.expect("list").len();

    // No token: refused, nothing created.
    let refused = gw
        .http
        .post(format!("{}/admin/v1/customers", gw.admin_url))
        .json(&json!({ "name": "Mallory" }))
        .send()
        .await
        .expect("call");
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(error_code(&body), "unauthorized");
    assert_eq!(
        gw.store().list_customers().await.expect("list").len(),
        customers_before
    );

    let (status, created) = gw
        .admin(
            Method::POST,
            "/admin/v1/customers",
            Some(&json!({ "name": "Alice" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"]
        .as_str()
        .expect("key shown once")
        .to_owned();
    assert_eq!(key.len(), 32);
    let id = created["customer"]["id"].as_i64().expect("id");
    assert_eq!(created["customer"]["balance"], "0.00000");
    assert_eq!(created["customer"]["currency"], "USD");
    assert_eq!(
        gw.call(&key, "balance", &[]).await,
        json!({ "balance": "0.00000", "currency": "USD" })
    );

    let path = |action: &str| format!("/admin/v1/customers/{id}/{action}");
    let (status, entry) = gw
        .admin(
            Method::POST,
            &path("credit"),
            Some(&json!({ "amount": "10.5", "reason": "top-up" })),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["amount"], "10.50000");
    assert_eq!(entry["balance_after"], "10.50000");
    assert_eq!(entry["actor"], "admin:e2e");

    // Refusals: a float amount, a negative one, no reason, unknown fields, too much.
    for (body, code) in [
        (json!({ "amount": 10.5, "reason": "float" }), 400),
        (json!({ "amount": "-1", "reason": "negative" }), 400),
        (json!({ "amount": "1", "reason": " " }), 400),
        (json!({ "amount": "1", "reason": "x", "extra": 1 }), 400),
        (
            json!({ "amount": "1.000001", "reason": "too precise" }),
            400,
        ),
    ] {
        let (status, reply) = gw.admin(Method::POST, &path("credit"), Some(&body)).await;
        assert_eq!(status.as_u16(), code, "{body} → {reply}");
        assert_eq!(error_code(&reply), "invalid_request", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (status, reply) = gw
        .admin(
            Method::POST,
            &path("debit"),
            Some(&json!({ "amount": "100", "reason": "too much" })),
        )
        .await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(error_code(&reply), "conflict");
    let (status, entry) = gw
        .admin(
            Method::POST,
            &path("debit"),
            Some(&json!({ "amount": "0.25", "reason": "fee" })),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["amount"], "-0.25000");
    assert_eq!(entry["balance_after"], "10.25000");
    assert_eq!(
        gw.call(&key, "balance", &[]).await["balance"],
        "10.25000",
        "the v2 API sees the same books"
    );

    let (status, ledger) = gw.admin(Method::GET, &path("ledger"), None).await;
    assert_eq!(status, 200);
    let rows = ledger["ledger"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "only the two accepted changes: {ledger}");
    assert_eq!(rows[0]["reason"], "fee", "newest first");
    assert!(rows.iter().all(|r| r["actor"] == "admin:e2e"));

    // Suspension and reactivation take effect on the v2 API at once (the key cache is cleared).
    let (status, suspended) = gw.admin(Method::POST, &path("suspend"), None).await;
    assert_eq!(
        (status.as_u16(), &suspended["status"]),
        (200, &json!("suspended"))
    );
    assert!(gw.call(&key, "balance", &[]).await["error"].is_string());
    let (status, _) = gw.admin(Method::POST, &path("activate"), None).await;
    assert_eq!(status, 200);
    assert_eq!(gw.call(&key, "balance", &[]).await["balance"], "10.25000");

    // Rotation: the old key stops working, the new one (shown once) works.
    let (status, rotated) = gw.admin(Method::POST, &path("rotate-key"), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["api_key"].as_str().expect("new key").to_owned();
    assert_ne!(new_key, key);
    assert_eq!(
        gw.call(&key, "balance", &[]).await,
        json!({ "error": "Invalid API key" })
    );
    assert_eq!(
        gw.call(&new_key, "balance", &[]).await["balance"],
        "10.25000"
    );

    let (status, missing) = gw
        .admin(Method::GET, "/admin/v1/customers/987654", None)
        .await;
    assert_eq!((status.as_u16(), error_code(&missing)), (404, "not_found"));
    let (status, missing) = gw.admin(Method::GET, "/admin/v1/nothing-here", None).await;
    assert_eq!((status.as_u16(), error_code(&missing)), (404, "not_found"));

    // Audited: who, what, before and after.
    let (_, audit) = gw
        .admin(Method::GET, "/admin/v1/audit?limit=50", None)
        .await;
    let audit = audit["audit"].as_array().expect("audit rows").clone();
    let target = format!("customer:{id}");
    let ours: Vec<&Value> = audit
        .iter()
        .filter(|a| a["target"] == target.as_str())
        .collect();
    let actions: Vec<&str> = ours.iter().filter_map(|a| a["action"].as_str()).collect();
    for action in ["customer.create", "customer.status", "customer.rotate_key"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    assert!(ours.iter().all(|a| a["actor"] == "admin:e2e"), "{ours:?}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let transitions: Vec<(String, String)> = ours
        .iter()
        .filter(|a| a["action"] == "customer.status")
        .map(|a| (text(&a["before"]), text(&a["after"])))
        .collect();
    assert_eq!(transitions.len(), 2, "{transitions:?}");
    assert!(transitions[1].0.contains("active") && transitions[1].1.contains("suspended"));
    assert!(transitions[0].0.contains("suspended") && transitions[0].1.contains("active"));

    let customer = smm_store::CustomerId(id);
    assert_eq!(
        gw.store().ledger_sum(customer).await.expect("sum"),
        gw.balance_of(customer).await
    );
    gw.finish().await;
}

/// Orders through `/admin/v1`: search by every criterion, inspect with the upstream history,
/// resolve ambiguous orders by attaching (found upstream) or canceling with a refund, and a
/// price preview that matches what the customer sees.
pub async fn admin_api_finds_and_resolves_orders(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    gw.alpha().add_fault(
        FaultRule::always(Fault::DropAfterRecord)
            .on_action("add")
            .times(2),
    );
    let links = [
        "https://x.test/a1",
        "https://x.test/a2",
        "https://x.test/ok",
    ];
    let mut ids = Vec::new();
    for link in links {
        let id = gw
            .add_ok(&[("service", "3"), ("link", link), ("quantity", "100")])
            .await;
        ids.push(id);
        // One at a time, so the two faults hit the first two.
        settled(&gw, id).await;
    }
    let search = |query: &str| {
        let gw = &gw;
        let query = query.to_owned();
        async move {
            let (status, body) = gw
                .admin(Method::GET, &format!("/admin/v1/orders?{query}"), None)
                .await;
            (status, body)
        }
    };
    let count = |body: &Value| body["orders"].as_array().map_or(0, Vec::len);
    let (status, ambiguous) = search("forward_state=ambiguous").await;
    assert_eq!(status, 200);
    assert_eq!(count(&ambiguous), 2, "{ambiguous}");
    let (_, mine) = search(&format!("customer={}", gw.customer)).await;
    assert_eq!(count(&mine), 3);
    let (_, by_link) = search("link=https://x.test/ok").await;
    assert_eq!(count(&by_link), 1);
    assert_eq!(by_link["orders"][0]["id"], ids[2].0);
    assert_eq!(by_link["orders"][0]["forward_state"], "sent");
    let (_, by_provider) = search("provider=alpha&limit=2").await;
    assert_eq!(count(&by_provider), 2, "limit holds");
    let (_, pending) = search("status=Pending").await;
    assert_eq!(count(&pending), 3);
    let (_, none) = search("status=Completed").await;
    assert_eq!(count(&none), 0);
    for bad in [
        "status=Bogus",
        "forward_state=lost",
        "customer=abc",
        "colour=red",
    ] {
        let (status, body) = search(bad).await;
        assert_eq!(
            (status.as_u16(), error_code(&body)),
            (400, "invalid_request"),
            "{bad}: {body}"
        );
    }

    let (status, detail) = gw
        .admin(Method::GET, &format!("/admin/v1/orders/{}", ids[0]), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["order"]["forward_state"], "ambiguous");
    assert_eq!(detail["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["attempts"][0]["outcome"], "ambiguous");
    let (_, work_list) = gw
        .admin(Method::GET, "/admin/v1/orders/ambiguous", None)
        .await;
    assert_eq!(work_list["orders"][0]["id"], ids[0].0, "oldest first");

    // The first one did reach the upstream: attach it.
    let upstream = gw
        .alpha()
        .orders()
        .into_iter()
        .find(|o| o.link.as_deref() == Some(links[0]))
        .expect("the upstream has the first order");
    let (status, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{}/attach", ids[0]),
            Some(&json!({ "provider": "nowhere", "upstream_order": "1" })),
        )
        .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (400, "invalid_request")
    );
    let (status, attached) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{}/attach", ids[0]),
            Some(&json!({ "provider": "alpha", "upstream_order": upstream.id.to_string() })),
        )
        .await;
    assert_eq!(status, 200, "{attached}");
    assert_eq!(attached["forward_state"], "sent");
    assert_eq!(attached["upstream_order"], upstream.id.to_string());

    // The second: give it up, with a full refund, once.
    let balance = gw.balance().await;
    let charge = gw.order(ids[1]).await.charge;
    let cancel = format!("/admin/v1/orders/{}/cancel-ambiguous", ids[1]);
    let (status, canceled) = gw
        .admin(
            Method::POST,
            &cancel,
            Some(&json!({ "reason": "not upstream" })),
        )
        .await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(money(&canceled["refunded"]), charge);
    assert_eq!(
        gw.balance().await,
        balance.checked_add(charge).expect("sum")
    );
    let (status, again) = gw
        .admin(Method::POST, &cancel, Some(&json!({ "reason": "twice" })))
        .await;
    assert_eq!((status.as_u16(), error_code(&again)), (409, "conflict"));
    assert_eq!(
        gw.balance().await,
        balance.checked_add(charge).expect("sum")
    );
    assert_eq!(gw.order(ids[1]).await.status, OrderStatus::Canceled);
    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.admin_url))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("smm_refunds_total{reason=\"ambiguous_canceled\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("smm_ambiguous_orders 0"), "{metrics}");

    // The price preview agrees with `services`.
    let (status, prices) = gw
        .admin(
            Method::GET,
            &format!("/admin/v1/customers/{}/prices", gw.customer),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let line = prices["services"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["service"] == 3)
        .expect("service 3 listed")
        .clone();
    let rate: Decimal = line["rate"]
        .as_str()
        .expect("rate")
        .parse()
        .expect("decimal");
    assert_eq!(rate, gw.rate(3).await);
    assert_eq!(line["provider"], "alpha");
    assert!(line["cost"].as_str().is_some());
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Hot reload: an invalid config changes nothing (every problem reported, no audit row, same
/// prices); a valid one changes prices at once without a restart, and is audited; a removed
/// provider is retired, and its open orders keep reconciling, refunds included.
pub async fn reload_changes_prices_or_nothing(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let app = gw.app().clone();
    let rate_before = gw.rate(1).await;
    let cost = app
        .catalog()
        .get(1)
        .and_then(|s| s.primary_route().map(|r| r.cost))
        .expect("service 1 priced");

    // An order at beta that will end Partial, placed before beta is removed.
    gw.set_outcomes("beta", 1, Outcomes::always_partial());
    let beta_order = gw
        .add_ok(&[
            ("service", &BETA_ONLY.to_string()),
            ("link", LINK),
            ("quantity", "1000"),
        ])
        .await;
    let beta_order = gw.wait_forwarded(beta_order).await;
    assert_eq!(beta_order.provider.as_deref(), Some("beta"));

    // Invalid: several problems at once; nothing changes.
    let mut invalid = (*app.settings()).clone();
    invalid.pricing.default.percent = Some(Decimal::from(-500));
    invalid.services[0].routes[0].provider = "nowhere".into();
    let problems = app
        .reload(invalid, "test")
        .await
        .expect_err("an invalid config is refused");
    assert!(problems.len() >= 2, "every problem reported: {problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("percent")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("nowhere")),
        "{problems:?}"
    );
    assert_eq!(app.runtime().version, 1);
    assert_eq!(gw.rate(1).await, rate_before);
    let audited = |action: &'static str| {
        let store = gw.store().clone();
        async move {
            store
                .audit_log(100)
                .await
                .expect("audit")
                .into_iter()
                .filter(|a| a.action == action)
                .collect::<Vec<_>>()
        }
    };
    assert!(audited("config.reload").await.is_empty());

    // Valid: +50 % instead of +30 %, at once.
    let mut valid = (*app.settings()).clone();
    valid.pricing.default.percent = Some(Decimal::from(50));
    let report = app
        .reload(valid, "test")
        .await
        .expect("a valid config applies");
    assert_eq!(report.version, 2);
    assert_eq!(report.changed, vec!["pricing".to_owned()]);
    let expected = (cost * Decimal::new(15, 1))
        .round_dp_with_strategy(4, RoundingStrategy::ToPositiveInfinity)
        .normalize();
    let rate_after = gw.rate(1).await;
    assert_eq!(rate_after.normalize(), expected, "was {rate_before}");
    assert!(rate_after > rate_before);
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "1000")])
        .await;
    assert_eq!(
        gw.order(id).await.charge,
        Money::from_decimal_round_up(rate_after).expect("money"),
        "new orders are charged the new price"
    );
    let rows = audited("config.reload").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, "test");
    assert!(
        rows[0]
            .before
            .as_deref()
            .is_some_and(|b| b.contains("\"30\"")),
        "{rows:?}"
    );
    assert!(
        rows[0]
            .after
            .as_deref()
            .is_some_and(|a| a.contains("\"50\"")),
        "{rows:?}"
    );

    // Remove beta: retired, not routed to, its order still reconciled with its refund.
    let mut without_beta = (*app.settings()).clone();
    without_beta.providers.retain(|p| p.name != "beta");
    without_beta.services.retain(|s| s.id != BETA_ONLY);
    for service in &mut without_beta.services {
        service.routes.retain(|r| r.provider != "beta");
    }
    let report = app
        .reload(without_beta, "test")
        .await
        .expect("removing a provider applies");
    assert_eq!(report.providers_retired, vec!["beta".to_owned()]);
    assert!(!app.provider_available("beta"));
    let services = gw.api("services", &[]).await;
    assert!(
        !services
            .as_array()
            .expect("array")
            .iter()
            .any(|s| s["service"] == BETA_ONLY),
        "beta's only service is gone"
    );
    assert!(WITH_BETA_FALLBACK.iter().all(|id| {
        app.catalog()
            .get(*id)
            .is_some_and(|s| s.routes.iter().all(|r| r.provider == "alpha"))
    }));
    gw.advance_sims(Duration::from_secs(24 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    let order = gw.order(beta_order.id).await;
    assert_eq!(
        order.status,
        OrderStatus::Partial,
        "still reconciled after removal"
    );
    assert!(order.refunded > Money::ZERO, "and refunded");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Waits until the forwarder is done with `id` (sent, ambiguous or rejected).
async fn settled(gw: &TestGateway, id: OrderId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = gw.order(id).await.forward_state;
        if !matches!(state, ForwardState::Queued | ForwardState::Sending) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "order {id} still {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each customer sees their own prices in `services` (the list-price reply is cached per
/// catalog; discounts and custom rates are never served from it), and the admin preview
/// agrees with what each one sees.
pub async fn customer_prices_are_their_own(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let list = gw.api("services", &[]).await;
    let list_rate = |reply: &Value, service: u64| -> Decimal {
        reply
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["service"] == service)
            .and_then(|s| s["rate"].as_str())
            .expect("rate")
            .parse()
            .expect("decimal")
    };
    let discounted = gw
        .create_customer("discounted", "e2e-discount-key-000001", Money::ZERO)
        .await;
    gw.store()
        .set_discount(discounted, Some(Decimal::from(10)), "test", 0)
        .await
        .expect("discount");
    let custom = gw
        .create_customer("custom", "e2e-custom-key-0000001", Money::ZERO)
        .await;
    let special = Decimal::new(12_345, 4);
    gw.store()
        .set_customer_rate(custom, smm_store::ServiceId(2), Some(special), "test", 0)
        .await
        .expect("custom rate");

    for _ in 0..2 {
        let mine = gw.api("services", &[]).await;
        assert_eq!(mine, list, "list prices, cached or not");
        let theirs = gw.call("e2e-discount-key-000001", "services", &[]).await;
        for service in [1, 2, 3] {
            let expected = (list_rate(&list, service) * Decimal::new(9, 1))
                .round_dp_with_strategy(4, RoundingStrategy::ToPositiveInfinity);
            assert_eq!(
                list_rate(&theirs, service),
                expected,
                "10 % off service {service}"
            );
        }
        let custom_reply = gw.call("e2e-custom-key-0000001", "services", &[]).await;
        assert_eq!(list_rate(&custom_reply, 2), special);
        assert_eq!(list_rate(&custom_reply, 1), list_rate(&list, 1));
    }
    for (customer, key) in [
        (discounted, "e2e-discount-key-000001"),
        (custom, "e2e-custom-key-0000001"),
    ] {
        let seen = gw.call(key, "services", &[]).await;
        let (status, preview) = gw
            .admin(
                Method::GET,
                &format!("/admin/v1/customers/{customer}/prices"),
                None,
            )
            .await;
        assert_eq!(status, 200);
        for line in preview["services"].as_array().expect("lines") {
            if line["enabled"] != true {
                continue;
            }
            let service = line["service"].as_u64().expect("id");
            let rate: Decimal = line["rate"]
                .as_str()
                .expect("rate")
                .parse()
                .expect("decimal");
            assert_eq!(
                rate,
                list_rate(&seen, service),
                "preview of {customer}, service {service}"
            );
        }
    }
    gw.finish().await;
}

/// A Custom Comments Package is priced flat but delivered line by line: a Partial refunds the
/// undelivered lines' share of the charge (as the upstream refunds the reseller), once.
pub async fn comment_packages_refund_undelivered_lines(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 7, Outcomes::always_partial());
    let lines: Vec<String> = (1..=10).map(|n| format!("comment number {n}")).collect();
    let id = gw
        .add_ok(&[
            ("service", "7"),
            ("link", LINK),
            ("comments", &lines.join("\n")),
        ])
        .await;
    let order = gw.wait_forwarded(id).await;
    assert_eq!(order.units, 10, "measured in comment lines");
    gw.advance_sims(Duration::from_secs(30 * 24 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    let order = gw.order(id).await;
    assert_eq!(order.status, OrderStatus::Partial);
    let remains = u64::try_from(order.remains.expect("remains reported")).expect("positive");
    assert!(
        (1..10).contains(&remains),
        "a real Partial: {remains} of 10 left"
    );
    let owed = order.charge.mul_div_floor(remains, 10).expect("refund");
    assert_eq!(order.refunded, owed);
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(id).await.refunded, owed, "once");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// Issue #12, defect 6: a customer's currency is never just a label. Amounts are never
/// converted, so creating a customer in any currency other than the server's is refused, with
/// a clear error, by the admin API and the CLI alike, and creates nothing; the server's own
/// currency (given or defaulted) is accepted.
pub async fn customers_are_created_in_the_servers_currency_only(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let before = gw.store().list_customers().await.expect("list").len();
    for currency in ["EUR", "INR", "BRL", "RUB"] {
        let (status, refused) = gw
            .admin(
                Method::POST,
                "/admin/v1/customers",
                Some(&json!({ "name": "Abroad", "currency": currency })),
            )
            .await;
        assert_eq!(
            (status.as_u16(), error_code(&refused)),
            (400, "invalid_request"),
            "{refused}"
        );
        let message = refused["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(currency) && message.contains("USD"),
            "{message}"
        );
    }
    // The CLI, another process on the same database, refuses the same way.
    let url = gw.app().settings().database.url.clone();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_smm-gateway"))
        .args([
            "customers",
            "create",
            "--name",
            "Abroad",
            "--currency",
            "EUR",
        ])
        .env_remove("SMM_GATEWAY_CONFIG")
        .env("SMM_GATEWAY__DATABASE__URL", &url)
        .output()
        .expect("run smm-gateway");
    assert!(!output.status.success());
    let text = crate::support::text(&output);
    assert!(text.contains("currency EUR is not supported"), "{text}");
    assert_eq!(
        gw.store().list_customers().await.expect("list").len(),
        before
    );
    for body in [
        json!({ "name": "Home", "currency": "USD" }),
        json!({ "name": "Default" }),
    ] {
        let (status, created) = gw
            .admin(Method::POST, "/admin/v1/customers", Some(&body))
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["customer"]["currency"], "USD");
    }
    gw.finish().await;
}
