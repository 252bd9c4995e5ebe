//! Two gateways on one PostgreSQL database stay one gateway for customers: what one instance
//! (or the CLI) changes — a balance, a key rotation, a suspension, a custom price — the other
//! serves correctly at once (balances are never cached) or within the key-cache TTL.

mod support;

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use smm_panel_sim::{Sim, SimConfig};
use smm_provider_client::SecretKey;
use smm_routing::{RouteDef, ServiceDef};
use smm_server::Gateway;
use smm_server::config::{ProviderSettings, Settings};
use smm_server::ops::Ops;
use smm_store::CustomerStatus;

async fn start(url: &str, sim: &str) -> Gateway {
    let mut settings = Settings::defaults().expect("defaults");
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.key_cache_ttl_secs = 1;
    settings.database.url = url.to_owned();
    settings.providers = vec![ProviderSettings::new(
        "alpha",
        sim,
        SecretKey::new(smm_panel_sim::DEMO_KEY),
    )];
    settings.services = vec![ServiceDef {
        id: 1,
        name: None,
        category: None,
        routes: vec![RouteDef {
            provider: "alpha".into(),
            service: "1".into(),
        }],
        min: None,
        max: None,
        markup: None,
        desc: None,
        enabled: true,
    }];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Gateway::start(settings, listener).await.expect("gateway")
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
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within the cache TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_on_keys_balances_and_prices() {
    let Some(db) = support::TestDb::create("postgres", "instances").await else {
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
