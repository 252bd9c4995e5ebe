//! The real `smm-gateway` binary, SIGKILLed twice — once while it forwards orders and once while
//! it reconciles them — and restarted each time. Afterwards: no order was forwarded twice, every
//! order is either upstream or flagged ambiguous, every refund was paid exactly once and is
//! exactly what the upstream's final status owes, and the books balance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use smm_panel_sim::{Outcomes, Sim, SimConfig};
use smm_store::{CustomerId, ForwardState, LedgerKind, OrderFilter, Store, refund_due};
use smm_wire::{Money, OrderStatus};

use crate::support::{
    Backend, GatewayProcess, TestDb, free_port, funded_customer, temp_dir, wait_for,
};

const KEY: &str = "crash-test-customer-key";
const ORDERS: usize = 240;
const ENV: [(&str, &str); 1] = [("SMM_CRASH_ALPHA_KEY", smm_panel_sim::DEMO_KEY)];

async fn count(store: &Arc<dyn Store>, state: Option<ForwardState>) -> usize {
    store
        .list_orders(&OrderFilter {
            forward_state: state,
            limit: 10_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders")
        .len()
}

async fn refunds(store: &Arc<dyn Store>, customer: CustomerId) -> usize {
    store
        .ledger(customer, None, 10_000)
        .await
        .expect("ledger")
        .iter()
        .filter(|e| e.kind == LedgerKind::Refund)
        .count()
}

async fn crash_and_restart(backend: Backend) {
    let Some(db) = TestDb::create(backend, "crash").await else {
        return;
    };
    // Every order ends Partial upstream, so every order is owed a refund.
    let mut sim = SimConfig::demo();
    for service in &mut sim.services {
        service.outcomes = Outcomes::always_partial();
    }
    let alpha = Sim::spawn(sim).await.expect("sim");

    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let port = free_port();
    let admin_port = free_port();
    let config = dir.join("gateway.toml");
    let log = dir.join("gateway.log");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[database]
url = "{url}"

[forwarder]
interval_ms = 20
concurrency = 4
batch = 8
lease_secs = 5
first_poll_secs = 0

[reconciler]
interval_ms = 20
min_poll_secs = 1
poll_lease_secs = 5
failure_backoff_secs = 1

[[providers]]
name = "alpha"
url = "{alpha}"
key_env = "SMM_CRASH_ALPHA_KEY"
timeout_secs = 1
connect_timeout_secs = 1

[[services]]
id = 1
routes = [{{ provider = "alpha", service = "1" }}]
"#,
            url = db.url,
            alpha = alpha.api_url(),
        ),
    )
    .expect("config");

    // The customer exists before the gateway starts (migrations run here first).
    let store = smm_store::connect(&db.url).await.expect("store");
    let deposit = Money::from_units(1_000 * 100_000);
    let customer = funded_customer(store.as_ref(), "crash", KEY, deposit, "test", 0).await;

    let api = format!("http://127.0.0.1:{port}/api/v2");
    let http = reqwest::Client::new();
    let mut gateway = GatewayProcess::start(&config, &log, &ENV);
    wait_for("the gateway to answer", Duration::from_secs(30), || async {
        http.post(&api)
            .form(&[("key", KEY), ("action", "balance")])
            .send()
            .await
            .is_ok()
    })
    .await;

    // Crash 1: orders arrive while the forwarder works; kill it mid-stream.
    let mut placed = Vec::new();
    for i in 0..ORDERS {
        let link = format!("https://instagram.com/p/crash{i}");
        let reply: serde_json::Value = http
            .post(&api)
            .form(&[
                ("key", KEY),
                ("action", "add"),
                ("service", "1"),
                ("link", link.as_str()),
                ("quantity", "1000"),
            ])
            .send()
            .await
            .expect("add")
            .json()
            .await
            .expect("json");
        placed.push(reply["order"].as_i64().expect("an order id"));
        if i == ORDERS / 2 {
            gateway.restart();
            wait_for("the restarted gateway", Duration::from_secs(30), || async {
                http.post(&api)
                    .form(&[("key", KEY), ("action", "balance")])
                    .send()
                    .await
                    .is_ok()
            })
            .await;
        }
    }
    wait_for(
        "every order to leave the queue",
        Duration::from_secs(60),
        || async {
            count(&store, Some(ForwardState::Queued)).await == 0
                && count(&store, Some(ForwardState::Sending)).await == 0
        },
    )
    .await;

    // Crash 2: every upstream order turns Partial; kill the gateway while refunds are being paid.
    alpha.sim.advance(Duration::from_secs(7 * 24 * 3600));
    let sent = count(&store, Some(ForwardState::Sent)).await;
    wait_for("refunds to start", Duration::from_secs(60), || async {
        refunds(&store, customer.id).await > 0
    })
    .await;
    gateway.kill();
    let paid_before_restart = refunds(&store, customer.id).await;
    gateway.restart();
    wait_for(
        "every sent order to be refunded",
        Duration::from_secs(60),
        || async { refunds(&store, customer.id).await == sent },
    )
    .await;
    gateway.kill();

    // No order was forwarded twice; every local order is upstream once or flagged.
    let upstream = alpha.sim.orders();
    let mut adds_per_link: HashMap<String, usize> = HashMap::new();
    for order in &upstream {
        *adds_per_link
            .entry(order.link.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(
        adds_per_link.values().all(|n| *n == 1),
        "an order was sent twice"
    );
    let orders = store
        .list_orders(&OrderFilter {
            limit: 10_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    assert_eq!(orders.len(), ORDERS);
    let mut ambiguous = 0;
    for order in &orders {
        match order.forward_state {
            ForwardState::Sent => {
                let up = upstream
                    .iter()
                    .find(|u| Some(u.id.to_string()) == order.upstream_order_id)
                    .expect("a sent order exists upstream");
                assert_eq!(up.link, order.link);
                assert_eq!(order.status, OrderStatus::Partial);
                let remains = i64::try_from(up.remains).expect("fits");
                let owed = refund_due(
                    &OrderStatus::Partial,
                    order.charge,
                    order.units,
                    Some(remains),
                );
                assert_eq!(order.refunded, owed, "order {}", order.id);
            }
            ForwardState::Ambiguous => {
                ambiguous += 1;
                assert!(
                    adds_per_link
                        .get(order.link.as_deref().unwrap_or_default())
                        .copied()
                        .unwrap_or(0)
                        <= 1
                );
                assert_eq!(
                    order.refunded,
                    Money::ZERO,
                    "ambiguous orders are not refunded automatically"
                );
            }
            other => panic!("order {} ended {other:?}", order.id),
        }
    }
    assert_eq!(
        refunds(&store, customer.id).await,
        sent,
        "one refund per sent order"
    );
    let balance = store.customer(customer.id).await.expect("customer").balance;
    assert_eq!(balance, store.ledger_sum(customer.id).await.expect("sum"));
    eprintln!(
        "crash test ({backend}): {ORDERS} orders, {sent} sent, {ambiguous} ambiguous, \
         {paid_before_restart} refunds before the second kill, {sent} after"
    );

    drop(store);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_while_forwarding_and_reconciling() {
    crash_and_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkill_while_forwarding_and_reconciling() {
    crash_and_restart(Backend::Postgres).await;
}
