//! Two gateways on one PostgreSQL database stay one gateway for customers: what one instance
//! (or the CLI) changes — a balance, a key rotation, a suspension, a custom price — the other
//! serves correctly at once (balances are never cached) or within the key-cache TTL.

use std::future::Future;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use smm_panel_sim::{Sim, SimConfig};
use smm_server::Gateway;
use smm_server::ops::Ops;
use smm_store::CustomerStatus;

use crate::support::{self, Backend, one_service_settings, start_gateway, wait_for};

async fn start(url: &str, sim: &str) -> Gateway {
    let mut settings = one_service_settings(url, sim);
    settings.server.key_cache_ttl_secs = 1;
    start_gateway(settings, false).await
}

async fn call(http: &reqwest::Client, gateway: &Gateway, key: &str, action: &str) -> Value {
    http.post(gateway.api_url())
        .form(&[("key", key), ("action", action)])
        .send()
        .await
        .expect("v2")
        .json()
        .await
        .expect("json")
}

/// Polls `check` for up to 5 s (the TTL is 1 s).
async fn eventually<F: FnMut() -> Fut, Fut: Future<Output = bool>>(what: &str, check: F) {
    wait_for(
        &format!("{what} within the cache TTL"),
        Duration::from_secs(5),
        check,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_on_keys_balances_and_prices() {
    let Some(db) = support::TestDb::create(Backend::Postgres, "instances").await else {
        return;
    };
    let sim = Sim::spawn(SimConfig::demo()).await.expect("sim");
    let a = start(&db.url, &sim.api_url()).await;
    let b = start(&db.url, &sim.api_url()).await;
    let http = reqwest::Client::new();
    let settings = a.app.settings();
    let ops = Ops {
        store: a.app.store.as_ref(),
        settings: &settings,
        actor: "test",
    };

    let created = ops.create_customer("shared", None).await.expect("create");
    let id = created.customer.id;
    let key = created.api_key;
    ops.change_balance(id, true, "10", "deposit")
        .await
        .expect("credit");
    for gateway in [&a, &b] {
        assert_eq!(
            call(&http, gateway, &key, "balance").await["balance"],
            "10.00000"
        );
    }
    // Balances are read from the database: a change through A shows on B at once.
    ops.change_balance(id, false, "2.5", "fee")
        .await
        .expect("debit");
    assert_eq!(call(&http, &b, &key, "balance").await["balance"], "7.50000");

    // A rotation through A (which forgets its own cache): B, which cached the old key, refuses
    // it within the TTL and accepts the new one at once.
    let rotated = ops.rotate_key(id).await.expect("rotate");
    a.app.invalidate_keys();
    assert_eq!(
        call(&http, &a, &key, "balance").await,
        json!({ "error": "Invalid API key" })
    );
    assert_eq!(
        call(&http, &b, &rotated.api_key, "balance").await["balance"],
        "7.50000"
    );
    eventually("B refuses the old key", async || {
        call(&http, &b, &key, "balance").await == json!({ "error": "Invalid API key" })
    })
    .await;

    // A suspension likewise; and the reactivation.
    ops.set_status(id, CustomerStatus::Suspended)
        .await
        .expect("suspend");
    eventually("B refuses the suspended customer", async || {
        call(&http, &b, &rotated.api_key, "balance").await["error"].is_string()
    })
    .await;
    ops.set_status(id, CustomerStatus::Active)
        .await
        .expect("activate");
    eventually("B serves the reactivated customer", async || {
        call(&http, &b, &rotated.api_key, "balance").await["balance"] == "7.50000"
    })
    .await;

    // A custom price set elsewhere reaches B's `services` within the TTL.
    let special = Decimal::new(54_242, 4); // above cost: below-cost prices are clamped
    a.app
        .store
        .set_customer_rate(
            smm_store::CustomerId(id),
            smm_store::ServiceId(1),
            Some(special),
            "test",
            0,
        )
        .await
        .expect("custom rate");
    eventually("B prices with the custom rate", async || {
        let services = call(&http, &b, &rotated.api_key, "services").await;
        services[0]["rate"].as_str() == Some("5.4242")
    })
    .await;

    a.shutdown().await;
    b.shutdown().await;
}

/// The `smm-gateway` command line, another process on the same database.
fn cli(database: &str, args: &[&str]) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_smm-gateway"))
        .args(args)
        .env_remove("SMM_GATEWAY_CONFIG")
        .env("SMM_GATEWAY__DATABASE__URL", database)
        .output()
        .expect("run smm-gateway");
    assert!(output.status.success(), "{}", support::text(&output));
}

/// Polls `check` for up to 3 s: far under the gateways' 60 s key-cache lifetime.
async fn at_once<F: FnMut() -> Fut, Fut: Future<Output = bool>>(what: &str, check: F) {
    wait_for(
        &format!("{what} within 3 s (the cache lifetime is 60 s)"),
        Duration::from_secs(3),
        check,
    )
    .await;
}

/// Issue #12, defect 13: on PostgreSQL a customer change committed anywhere — instance A's
/// operations, or the CLI in another process — reaches instance B at once (`LISTEN/NOTIFY`),
/// not after B's key cache expires (60 s here, the most the configuration allows). A suspended
/// customer is refused on every action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_instance_at_once() {
    let Some(db) = support::TestDb::create(Backend::Postgres, "instances-notify").await else {
        return;
    };
    let sim = Sim::spawn(SimConfig::demo()).await.expect("sim");
    let start_long = async || {
        let mut settings = one_service_settings(&db.url, &sim.api_url());
        settings.server.key_cache_ttl_secs = smm_server::config::MAX_KEY_CACHE_TTL_SECS;
        start_gateway(settings, false).await
    };
    let a = start_long().await;
    let b = start_long().await;
    let http = reqwest::Client::new();
    let settings = a.app.settings();
    let ops = Ops {
        store: a.app.store.as_ref(),
        settings: &settings,
        actor: "test",
    };
    let created = ops.create_customer("notified", None).await.expect("create");
    let id = created.customer.id;
    let key = created.api_key;
    ops.change_balance(id, true, "10", "deposit")
        .await
        .expect("credit");
    // B caches the key and the (absent) custom rates.
    let list_rate = call(&http, &b, &key, "services").await[0]["rate"].clone();
    assert_eq!(
        call(&http, &b, &key, "balance").await["balance"],
        "10.00000"
    );

    // A rotation through A: B refuses the old key at once.
    let rotated = ops.rotate_key(id).await.expect("rotate");
    at_once("B refuses the rotated-out key", async || {
        call(&http, &b, &key, "balance").await == json!({ "error": "Invalid API key" })
    })
    .await;
    let key = rotated.api_key;
    assert_eq!(
        call(&http, &b, &key, "balance").await["balance"],
        "10.00000"
    );

    // A suspension by the CLI (another process): B refuses every action at once.
    cli(&db.url, &["customers", "suspend", &id.to_string()]);
    let suspended = json!({ "error": "Your account is suspended" });
    at_once("B refuses the suspended customer", async || {
        call(&http, &b, &key, "balance").await == suspended
    })
    .await;
    for (action, extra) in [
        ("services", &[][..]),
        ("status", &[("order", "1")][..]),
        ("refill", &[("order", "1")][..]),
        ("refill_status", &[("refill", "1")][..]),
        ("cancel", &[("order", "1")][..]),
        (
            "add",
            &[
                ("service", "1"),
                ("link", "https://x.example/p"),
                ("quantity", "100"),
            ][..],
        ),
    ] {
        let mut params = vec![("key", key.as_str()), ("action", action)];
        params.extend_from_slice(extra);
        let reply: Value = http
            .post(b.api_url())
            .form(&params)
            .send()
            .await
            .expect("v2")
            .json()
            .await
            .expect("json");
        assert_eq!(reply, suspended, "{action}");
    }
    cli(&db.url, &["customers", "activate", &id.to_string()]);
    at_once("B serves the reactivated customer", async || {
        call(&http, &b, &key, "balance").await["balance"] == "10.00000"
    })
    .await;

    // Prices: a discount and a custom rate set through A reach B's `services` at once.
    ops.set_discount(id, Some("50")).await.expect("discount");
    at_once("B applies the discount", async || {
        call(&http, &b, &key, "services").await[0]["rate"] != list_rate
    })
    .await;
    ops.set_rate(id, 1, Some("5.4242")).await.expect("rate");
    at_once("B applies the custom rate", async || {
        call(&http, &b, &key, "services").await[0]["rate"].as_str() == Some("5.4242")
    })
    .await;

    a.shutdown().await;
    b.shutdown().await;
}

/// Three gateways on one PostgreSQL database, all watching the same conditions and sharing
/// one webhook outbox: each alert goes out once, not once per instance, and each webhook event
/// reaches the customer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_send_each_alert_and_each_webhook_event_once() {
    let Some(db) = support::TestDb::create(Backend::Postgres, "instances").await else {
        return;
    };
    let sim = Sim::spawn(SimConfig::demo()).await.expect("sim");
    let alerts = support::Receiver::start().await;
    let hooks = support::Receiver::start().await;
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let mut settings = one_service_settings(&db.url, &sim.api_url());
        settings.alerts.channels = vec![smm_server::config::notifications::AlertChannelSettings {
            name: "ops".into(),
            kind: smm_server::config::notifications::AlertChannelKind::Webhook,
            url: Some(format!("{}/ops", alerts.base)),
            secret_env: None,
            secret_file: None,
            chat_id: None,
            smtp_host: None,
            smtp_port: None,
            smtp_security: Default::default(),
            smtp_username: None,
            from: None,
            to: Vec::new(),
        }];
        settings.alerts.interval_secs = 1;
        // Every order is "stuck" after a second: all three see it at once.
        settings.alerts.stuck_after_secs = 1;
        settings.webhooks.allow_private_targets = true;
        settings.webhooks.interval_ms = 20;
        gateways.push(start_gateway(settings, false).await);
    }
    let settings = gateways[0].app.settings();
    let ops = Ops {
        store: gateways[0].app.store.as_ref(),
        settings: &settings,
        actor: "test",
    };
    let created = ops.create_customer("hooked", None).await.expect("create");
    let id = created.customer.id;
    ops.change_balance(id, true, "100", "deposit")
        .await
        .expect("credit");
    ops.set_webhook(id, &format!("{}/hook", hooks.base))
        .await
        .expect("webhook");
    ops.set_low_balance(id, Some("99.5"))
        .await
        .expect("threshold");
    // Crossings through each instance's store: three balance.low events.
    for (i, gateway) in gateways.iter().enumerate() {
        let ops = Ops {
            store: gateway.app.store.as_ref(),
            settings: &settings,
            actor: "test",
        };
        ops.change_balance(id, false, "1", "fee")
            .await
            .expect("debit");
        if i < 2 {
            ops.change_balance(id, true, "1", "back")
                .await
                .expect("credit");
        }
    }
    // An order placed and left Pending upstream: stuck for every instance.
    let http = reqwest::Client::new();
    let placed: Value = http
        .post(gateways[1].api_url())
        .form(&[
            ("key", created.api_key.as_str()),
            ("action", "add"),
            ("service", "1"),
            ("link", "https://instagram.com/p/x"),
            ("quantity", "100"),
        ])
        .send()
        .await
        .expect("add")
        .json()
        .await
        .expect("json");
    assert!(placed["order"].is_u64(), "{placed}");
    alerts
        .wait_until(Duration::from_secs(20), "the stuck alert", |r| {
            r.iter().any(|r| r.json()["key"] == "orders.stuck:1")
        })
        .await;
    hooks
        .wait_until(Duration::from_secs(20), "three events", |r| r.len() >= 3)
        .await;
    // Several rounds on each instance later: still one of each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = alerts
        .received()
        .iter()
        .filter(|r| r.json()["key"] == "orders.stuck:1" && r.json()["state"] == "started")
        .count();
    assert_eq!(stuck, 1, "one alert from three instances");
    let received = hooks.received();
    let ids: Vec<i64> = received
        .iter()
        .filter_map(|r| r.json()["event_id"].as_i64())
        .collect();
    let distinct: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    assert_eq!(ids.len(), 3, "each event delivered once: {ids:?}");
    for gateway in gateways {
        gateway.shutdown().await;
    }
}
