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

/// Issue #16: the real binary SIGKILLed while `add`s are being committed in groups. Every order
/// a reply promised is placed, as replied; every request left without a reply was placed once
/// or not at all; the books balance; and after a restart every placed order is forwarded, once.
async fn sigkill_during_group_commit(backend: Backend) {
    const CLIENTS: usize = 32;
    const TOKEN: &str = "admin-token-for-the-group-commit-crash";
    let Some(db) = TestDb::create(backend, "groupcrash").await else {
        return;
    };
    let alpha = Sim::spawn(SimConfig::demo()).await.expect("sim");
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let port = free_port();
    let admin_port = free_port();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
rate_limit_per_minute = 1000000

[admin]
listen = "127.0.0.1:{admin_port}"
token_env = "SMM_GROUP_CRASH_TOKEN"

[database]
url = "{url}"

[forwarder]
interval_ms = 20
lease_secs = 5

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
    let store = smm_store::connect(&db.url).await.expect("store");
    let deposit = Money::from_units(100_000 * 100_000);
    let customer = funded_customer(store.as_ref(), "grouped", KEY, deposit, "test", 0).await;
    let env = [ENV[0], ("SMM_GROUP_CRASH_TOKEN", TOKEN)];
    let mut gateway = GatewayProcess::start(&config, &dir.join("gateway.log"), &env);
    let api = format!("http://127.0.0.1:{port}/api/v2");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    wait_for("the gateway to answer", Duration::from_secs(30), || async {
        http.post(&api)
            .form(&[("key", KEY), ("action", "balance")])
            .send()
            .await
            .is_ok()
    })
    .await;

    // What each request got: an order id, an error reply, or no reply at all.
    #[derive(Debug)]
    enum Got {
        Order(i64),
        Error(String),
        Nothing,
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, api) = (http.clone(), api.clone());
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        clients.push(tokio::spawn(async move {
            let mut sent: Vec<(String, Got)> = Vec::new();
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let link = format!("https://instagram.com/p/group-{client}-{n}");
                let reply = http
                    .post(&api)
                    .form(&[
                        ("key", KEY),
                        ("action", "add"),
                        ("service", "1"),
                        ("link", link.as_str()),
                        ("quantity", "1000"),
                    ])
                    .send()
                    .await;
                let got = match reply {
                    Ok(reply) => match reply.json::<serde_json::Value>().await {
                        Ok(body) => match body["order"].as_i64() {
                            Some(id) => Got::Order(id),
                            None => Got::Error(body.to_string()),
                        },
                        Err(_) => Got::Nothing,
                    },
                    Err(_) => Got::Nothing,
                };
                let failed = matches!(got, Got::Nothing);
                if !failed {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                sent.push((link, got));
                if failed {
                    break; // the gateway is gone
                }
            }
            sent
        }));
    }
    // Kill it once groups of several placements are being committed.
    let metrics = format!("http://127.0.0.1:{admin_port}/metrics");
    wait_for(
        "groups of placements under load",
        Duration::from_secs(60),
        || async {
            let Ok(reply) = http.get(&metrics).bearer_auth(TOKEN).send().await else {
                return false;
            };
            let text = reply.text().await.unwrap_or_default();
            let read = |name: &str| -> u64 {
                text.lines()
                    .find(|l| l.starts_with(&format!("{name}{{queue=\"placements\"}}")))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let (groups, items) = (
                read("smm_group_commits_total"),
                read("smm_group_commit_items_total"),
            );
            answered.load(std::sync::atomic::Ordering::SeqCst) >= 300 && items >= 2 * groups
        },
    )
    .await;
    gateway.kill();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut requests = Vec::new();
    for client in clients {
        requests.extend(client.await.expect("client"));
    }

    let orders = store
        .list_orders(&OrderFilter {
            customer_id: Some(customer.id),
            limit: 100_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    let mut by_link: HashMap<String, Vec<&smm_store::Order>> = HashMap::new();
    for order in &orders {
        by_link
            .entry(order.link.clone().unwrap_or_default())
            .or_default()
            .push(order);
    }
    let (mut promised, mut unanswered, mut unanswered_placed) = (0, 0, 0);
    for (link, got) in &requests {
        let placed = by_link.get(link).map_or(&[][..], Vec::as_slice);
        assert!(
            placed.len() <= 1,
            "{link} was placed {} times",
            placed.len()
        );
        match got {
            Got::Order(id) => {
                promised += 1;
                assert_eq!(
                    placed.first().map(|o| o.id.0),
                    Some(*id),
                    "the order replied for {link} is placed"
                );
            }
            Got::Error(reply) => panic!("{link} was refused: {reply}"),
            Got::Nothing => {
                unanswered += 1;
                unanswered_placed += placed.len();
            }
        }
    }
    assert!(
        promised >= 300,
        "{promised} orders promised before the kill"
    );
    assert!(unanswered > 0, "the kill left requests without a reply");
    // Nothing is placed that no request asked for.
    assert_eq!(orders.len(), promised + unanswered_placed);
    let charged = orders.iter().fold(Money::ZERO, |sum, o| {
        sum.checked_add(o.charge).expect("no overflow")
    });
    let balance = store.customer(customer.id).await.expect("customer").balance;
    assert_eq!(balance, store.ledger_sum(customer.id).await.expect("sum"));
    assert_eq!(
        balance,
        deposit.checked_sub(charged).expect("no overflow"),
        "each placed order charged once"
    );

    // Restarted, the gateway forwards every placed order once.
    gateway.restart();
    wait_for(
        "every placed order to be forwarded",
        Duration::from_secs(60),
        || async {
            count(&store, Some(ForwardState::Queued)).await == 0
                && count(&store, Some(ForwardState::Sending)).await == 0
        },
    )
    .await;
    gateway.kill();
    let mut upstream_links: HashMap<String, usize> = HashMap::new();
    for order in alpha.sim.orders() {
        *upstream_links
            .entry(order.link.unwrap_or_default())
            .or_default() += 1;
    }
    assert!(
        upstream_links.values().all(|n| *n == 1),
        "an order was sent twice"
    );
    // Every placed order is upstream, or flagged ambiguous (its call's outcome was lost with the
    // process: upstream or not); nothing is upstream that was not placed.
    let after = store
        .list_orders(&OrderFilter {
            customer_id: Some(customer.id),
            limit: 100_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    let mut ambiguous = 0;
    for order in &after {
        let link = order.link.clone().unwrap_or_default();
        match order.forward_state {
            ForwardState::Sent => assert!(upstream_links.contains_key(&link), "{link}"),
            ForwardState::Ambiguous => ambiguous += 1,
            other => panic!("order {} ended {other:?}", order.id),
        }
    }
    assert!(upstream_links.keys().all(|link| by_link.contains_key(link)));
    eprintln!(
        "group-commit crash ({backend}): {promised} promised, {unanswered} without a reply \
         ({unanswered_placed} of them placed), {} forwarded, {ambiguous} ambiguous",
        upstream_links.len()
    );
    drop(store);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_during_group_commit() {
    sigkill_during_group_commit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkill_during_group_commit() {
    sigkill_during_group_commit(Backend::Postgres).await;
}
