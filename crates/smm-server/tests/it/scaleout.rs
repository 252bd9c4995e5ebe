//! Scale-out on PostgreSQL: three `smm-gateway serve` processes (the real binary) on one
//! database and one simulated upstream behave as one gateway.
//!
//! * [`three_gateways_one_sigkilled_forward_each_order_once`]: 2,000 orders from concurrent
//!   clients, round-robin over the three; one process is SIGKILLed half-way and the clients go
//!   on with the other two. Afterwards, from the simulator's request log and the database: no
//!   order was forwarded twice, no upstream order lacks a local one, every acknowledged order
//!   exists and ended `sent`, `rejected` or `ambiguous` (the dead process's claims are recovered
//!   after the lease), refunds are exactly what the upstream's final status owes and paid once,
//!   and every customer's balance equals their ledger.
//! * [`refills_and_cancels_are_forwarded_once_across_gateways`]: cancel and refill requests for
//!   100 orders each, made through different processes, reach the upstream exactly once each.
//!
//! PostgreSQL only (SQLite is one process's database); under `CI` a missing `TEST_DATABASE_URL`
//! fails instead of skipping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smm_panel_sim::{Fault, FaultRule, Outcomes, RecordedRequest, Sim, SimConfig, SimHandle};
use smm_store::{CustomerId, ForwardState, LedgerKind, Order, OrderFilter, Store, refund_due};
use smm_wire::{Money, OrderStatus};
use tokio::sync::Mutex;

use crate::support::{
    self, Backend, GatewayProcess, TempDir, TestDb, free_port, funded_customer, temp_dir,
};

const INSTANCES: usize = 3;
const CUSTOMERS: usize = 6;
const PROVIDER_KEY_ENV: &str = "SMM_SCALEOUT_ALPHA_KEY";
/// The claim lease: the dead process's `sending` orders are parked this long after its claim.
const LEASE_SECS: u64 = 5;

/// The requests the simulator acted on (recorded the order, the cancel, the refill): no fault,
/// or a fault that lets the request through. Every other fault answers before anything is done.
fn processed(request: &RecordedRequest) -> bool {
    matches!(
        request.fault.as_deref(),
        None | Some("latency" | "garbled" | "drop_after_record")
    )
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("fits")
}

/// Three gateway processes on one PostgreSQL database, one simulated upstream, funded customers.
struct Cluster {
    sim: SimHandle,
    store: Arc<dyn Store>,
    /// `None` once killed; the others are SIGKILLed when dropped.
    gateways: Vec<Arc<Mutex<Option<GatewayProcess>>>>,
    apis: Vec<String>,
    customers: Vec<(CustomerId, String)>,
    dir: TempDir,
    /// Declared last, so dropped last: after the processes and the store let go of it.
    _db: TestDb,
}

impl Cluster {
    async fn start(label: &str, sim: SimConfig) -> Option<Cluster> {
        let db = TestDb::create(Backend::Postgres, label).await?;
        let sim = Sim::spawn(sim).await.expect("simulator");
        let dir = temp_dir();

        // Migrations run here, before three processes race to run them.
        let store = smm_store::connect(&db.url).await.expect("store");
        let mut customers = Vec::new();
        for n in 0..CUSTOMERS {
            let key = format!("scaleout-customer-key-{n}");
            let customer = funded_customer(
                store.as_ref(),
                &format!("customer {n}"),
                &key,
                Money::from_units(1_000 * 100_000),
                "test",
                0,
            )
            .await;
            customers.push((customer.id, key));
        }

        let mut gateways = Vec::new();
        let mut apis = Vec::new();
        for n in 0..INSTANCES {
            let port = free_port();
            let config = dir.path().join(format!("gw{n}.toml"));
            std::fs::write(&config, gateway_config(port, &db.url, &sim.api_url())).expect("config");
            // HOSTNAME starts the worker id (`gw1-PID-xxxx`): claims show which process made them.
            let process = GatewayProcess::start(
                &config,
                &dir.path().join(format!("gw{n}.log")),
                &[
                    (PROVIDER_KEY_ENV, smm_panel_sim::DEMO_KEY),
                    ("HOSTNAME", &format!("gw{n}")),
                ],
            );
            gateways.push(Arc::new(Mutex::new(Some(process))));
            apis.push(format!("http://127.0.0.1:{port}/api/v2"));
        }
        let cluster = Cluster {
            sim,
            store,
            gateways,
            apis,
            customers,
            dir,
            _db: db,
        };
        let http = reqwest::Client::new();
        for api in &cluster.apis {
            support::wait_for("a gateway to answer", Duration::from_secs(30), || async {
                http.post(api)
                    .form(&[
                        ("key", cluster.customers[0].1.as_str()),
                        ("action", "balance"),
                    ])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
        }
        Some(cluster)
    }

    /// SIGKILLs gateway `n` (no shutdown code runs: its claims stay behind).
    async fn kill(&self, n: usize) {
        if let Some(mut process) = self.gateways[n].lock().await.take() {
            process.kill();
        }
    }

    /// SIGKILLs gateway `n` in the middle of forwarding: as soon as one of its claims was made
    /// or renewed (an attempt begun) less than `fresh` ago, so that with upstream calls slower
    /// than `fresh` the call is certainly still in flight when the signal lands.
    async fn kill_mid_forwarding(&self, n: usize, fresh: Duration) {
        let worker = format!("gw{n}-");
        let fresh = i64::try_from(fresh.as_millis()).expect("fits");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sending = self
                .store
                .list_orders(&OrderFilter {
                    forward_state: Some(ForwardState::Sending),
                    limit: 1_000,
                    ..OrderFilter::default()
                })
                .await
                .expect("orders");
            let now = now_ms();
            if sending.iter().any(|o| {
                o.claimed_by
                    .as_deref()
                    .is_some_and(|w| w.starts_with(&worker))
                    && o.claimed_at.is_some_and(|at| at >= now - fresh)
            }) {
                self.kill(n).await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gw{n} never had an order in flight"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Polls (every 200 ms) until `check` holds; fails after `timeout` pointing at the logs.
    async fn wait<F, Fut>(&self, what: &str, timeout: Duration, check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        if !support::poll(timeout, Duration::from_millis(200), check).await {
            let logs: Vec<String> = (0..INSTANCES)
                .map(|n| {
                    let log = self.dir.path().join(format!("gw{n}.log"));
                    format!("gw{n}.log:\n{}", support::log_tail(&log, 20))
                })
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}; the gateways' logs end:\n{}",
                logs.join("\n")
            );
        }
    }

    async fn forward_states(&self) -> HashMap<ForwardState, i64> {
        self.store
            .count_by_forward_state()
            .await
            .expect("counts")
            .into_iter()
            .collect()
    }

    /// Orders still on their way: `queued` or `sending`.
    async fn in_flight(&self) -> i64 {
        let states = self.forward_states().await;
        states.get(&ForwardState::Queued).copied().unwrap_or(0)
            + states.get(&ForwardState::Sending).copied().unwrap_or(0)
    }

    /// Sent orders whose status is not terminal yet.
    async fn sent_unfinished(&self) -> usize {
        self.orders()
            .await
            .iter()
            .filter(|o| o.forward_state == ForwardState::Sent && !o.status.is_terminal())
            .count()
    }

    async fn orders(&self) -> Vec<Order> {
        self.store
            .list_orders(&OrderFilter {
                limit: 100_000,
                ..OrderFilter::default()
            })
            .await
            .expect("orders")
    }

    /// Balance = ledger sum and never negative for every customer; at most one refund row per
    /// order, equal to what the order says was refunded.
    async fn assert_books(&self, orders: &[Order]) {
        let by_id: HashMap<i64, &Order> = orders.iter().map(|o| (o.id.0, o)).collect();
        for (customer, _) in &self.customers {
            let balance = self
                .store
                .customer(*customer)
                .await
                .expect("customer")
                .balance;
            let sum = self.store.ledger_sum(*customer).await.expect("sum");
            assert_eq!(balance, sum, "customer {customer}: balance != ledger sum");
            assert!(
                !balance.is_negative(),
                "customer {customer}: negative balance"
            );
            let ledger = self
                .store
                .ledger(*customer, None, 100_000)
                .await
                .expect("ledger");
            let mut refunds: HashMap<i64, Vec<Money>> = HashMap::new();
            for entry in ledger.iter().filter(|e| e.kind == LedgerKind::Refund) {
                let order = entry.order_id.expect("a refund names its order").0;
                refunds.entry(order).or_default().push(entry.amount);
            }
            for (order, amounts) in &refunds {
                assert_eq!(amounts.len(), 1, "order {order} was refunded twice");
                assert_eq!(
                    Some(amounts[0]),
                    by_id.get(order).map(|o| o.refunded),
                    "order {order}: refund row != refunded"
                );
            }
            for order in orders.iter().filter(|o| o.customer_id == *customer) {
                if order.refunded.is_positive() {
                    assert!(
                        refunds.contains_key(&order.id.0),
                        "order {} refunded without a ledger row",
                        order.id
                    );
                }
            }
        }
    }
}

fn gateway_config(port: u16, database: &str, upstream: &str) -> String {
    let admin_port = free_port();
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
rate_limit_per_minute = 1000000

[admin]
listen = "127.0.0.1:{admin_port}"

[database]
url = "{database}"

[forwarder]
interval_ms = 50
concurrency = 8
batch = 8
lease_secs = {LEASE_SECS}
requeue_after_secs = 1
first_poll_secs = 1

[reconciler]
interval_ms = 20
min_poll_secs = 1
poll_lease_secs = 5
failure_backoff_secs = 1

[[providers]]
name = "alpha"
url = "{upstream}"
key_env = "{PROVIDER_KEY_ENV}"
timeout_secs = 1
connect_timeout_secs = 1
# Injected faults must not put the only provider in cooldown for the rest of the test.
failures_before_cooldown = 1000

[[services]]
id = 1
routes = [{{ provider = "alpha", service = "1" }}]
"#
    )
}

/// The simulator: service 1 (refill and cancel enabled) with a mix of outcomes; orders stay
/// Pending until the test advances the clock, so nothing finishes while orders arrive.
fn sim_config(outcomes: Outcomes) -> SimConfig {
    let mut sim = SimConfig::demo();
    sim.timing.pending_secs = [3_600, 3_600];
    for service in &mut sim.services {
        service.outcomes = outcomes.clone();
    }
    sim.accounts[0].balance = rust_decimal::Decimal::new(1_000_000, 0);
    sim
}

/// What a client learned from one `add`.
#[derive(Debug, Clone)]
enum Reply {
    /// An order id.
    Placed(i64),
    /// The request left but no reply came back (the gateway died under it): the order may or
    /// may not exist, and the client has no id for it.
    Lost,
}

/// Sends one `add`; a connection that was never made is retried on the next live gateway
/// (nothing reached a server), anything else is final.
async fn add(
    http: &reqwest::Client,
    apis: &[String],
    alive: impl Fn() -> Vec<usize>,
    first: usize,
    key: &str,
    link: &str,
    quantity: u64,
) -> (usize, Reply) {
    let quantity = quantity.to_string();
    let mut instance = first;
    for _ in 0..10 {
        let sent = http
            .post(&apis[instance])
            .form(&[
                ("key", key),
                ("action", "add"),
                ("service", "1"),
                ("link", link),
                ("quantity", quantity.as_str()),
            ])
            .send()
            .await;
        match sent {
            Ok(response) => {
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    return (instance, Reply::Lost);
                };
                let id = body["order"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("add {link} via gw{instance} refused: {body}"));
                return (instance, Reply::Placed(id));
            }
            Err(error) if error.is_connect() => {
                let live = alive();
                instance =
                    live[(live.iter().position(|&n| n == instance).unwrap_or(0) + 1) % live.len()];
            }
            Err(_) => return (instance, Reply::Lost),
        }
    }
    panic!("no gateway accepted a connection for {link}");
}

/// How many times the simulator was asked to `action` (`cancel`, `refill`) each upstream order
/// id, through `order` or the comma-separated `orders`.
fn upstream_calls(requests: &[RecordedRequest], action: &str) -> HashMap<String, usize> {
    let mut calls: HashMap<String, usize> = HashMap::new();
    for request in requests
        .iter()
        .filter(|r| r.action.as_deref() == Some(action) && processed(r))
    {
        for key in ["order", "orders"] {
            if let Some(ids) = request.params.get(key) {
                for id in ids.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                    *calls.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_one_sigkilled_forward_each_order_once() {
    const ORDERS: usize = 2_000;
    const CLIENTS: usize = 12;
    const KILL_AT: usize = ORDERS / 2;
    /// Every upstream `add` takes this long, and the kill lands within a fifth of it after one
    /// of the victim's attempts began.
    const ADD_LATENCY_MS: u64 = 100;
    const VICTIM: usize = 1;
    const FAULTS: u32 = 5;

    let started = Instant::now();
    let outcomes = Outcomes {
        completed: 0.5,
        partial: 0.3,
        canceled: 0.2,
        refill_rejected: 0.0,
    };
    let Some(cluster) = Cluster::start("scaleout", sim_config(outcomes)).await else {
        return;
    };
    let cluster = Arc::new(cluster);
    // A few upstream surprises at the start: replies cut short after the order was recorded
    // and connections dropped before it was (the gateway cannot tell: both ambiguous, never
    // re-sent), and refusals (rejected, refunded in full). After them every add takes ADD_LATENCY_MS
    // upstream, so that the SIGKILL can land while the victim has calls in flight.
    let sim = &cluster.sim.sim;
    sim.add_fault(
        FaultRule::always(Fault::Garbled)
            .on_action("add")
            .times(FAULTS),
    );
    sim.add_fault(
        FaultRule::always(Fault::DropBeforeRecord)
            .on_action("add")
            .times(FAULTS),
    );
    sim.add_fault(
        FaultRule::always(Fault::Error {
            text: "Incorrect link".into(),
        })
        .on_action("add")
        .times(FAULTS),
    );

    sim.add_fault(FaultRule::always(Fault::Latency { ms: ADD_LATENCY_MS }).on_action("add"));

    // Concurrent clients, round-robin over the live gateways; the one that draws order
    // KILL_AT SIGKILLs a gateway first.
    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let killed_after = Arc::new(std::sync::Mutex::new(None));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (cluster, next, killed, killed_after, http) = (
            cluster.clone(),
            next.clone(),
            killed.clone(),
            killed_after.clone(),
            http.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ORDERS {
                    return mine;
                }
                if i == KILL_AT {
                    cluster
                        .kill_mid_forwarding(VICTIM, Duration::from_millis(ADD_LATENCY_MS / 5))
                        .await;
                    killed.store(true, Ordering::SeqCst);
                    *killed_after.lock().expect("lock") = Some(started.elapsed());
                }
                let alive = || -> Vec<usize> {
                    (0..INSTANCES)
                        .filter(|&n| n != VICTIM || !killed.load(Ordering::SeqCst))
                        .collect()
                };
                let live = alive();
                let first = live[i % live.len()];
                let (customer, key) = &cluster.customers[i % CUSTOMERS];
                let link = format!("https://instagram.com/p/scaleout-{i}");
                let quantity = 100 + (i as u64 % 10) * 100;
                let (instance, reply) =
                    add(&http, &cluster.apis, alive, first, key, &link, quantity).await;
                mine.push((i, *customer, link, instance, reply));
            }
        }));
    }
    let mut sent_by_client = Vec::new();
    for client in clients {
        sent_by_client.extend(client.await.expect("client"));
    }
    let placing = started.elapsed();
    assert_eq!(sent_by_client.len(), ORDERS);

    // Everything leaves the queue: forwarded, refused, or — the dead process's claims, after
    // the lease — parked as ambiguous.
    cluster
        .wait(
            "every order to leave queued/sending",
            Duration::from_secs(40),
            || async { cluster.in_flight().await == 0 },
        )
        .await;

    // Every upstream order reaches its final status; the live gateways poll and refund.
    sim.advance(Duration::from_secs(7 * 24 * 3600));
    cluster
        .wait(
            "every sent order to reach a final status",
            Duration::from_secs(40),
            || async { cluster.sent_unfinished().await == 0 },
        )
        .await;

    // ---- the simulator's view -------------------------------------------------------------
    let requests = sim.requests();
    assert_eq!(sim.log_dropped(), 0, "the request log must be complete");
    let mut adds_per_link: HashMap<String, usize> = HashMap::new();
    for request in requests
        .iter()
        .filter(|r| r.action.as_deref() == Some("add") && processed(r))
    {
        let link = request.params.get("link").cloned().unwrap_or_default();
        *adds_per_link.entry(link).or_default() += 1;
    }
    let twice: Vec<_> = adds_per_link.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "orders forwarded more than once: {twice:?}"
    );
    let upstream: HashMap<String, smm_panel_sim::SimOrder> = sim
        .orders()
        .into_iter()
        .map(|o| (o.link.clone().unwrap_or_default(), o))
        .collect();
    assert_eq!(
        upstream.len(),
        sim.orders().len(),
        "two upstream orders share a link"
    );

    // ---- the database's view --------------------------------------------------------------
    let orders = cluster.orders().await;
    let by_link: HashMap<&str, &Order> = orders
        .iter()
        .map(|o| (o.link.as_deref().unwrap_or_default(), o))
        .collect();
    assert_eq!(by_link.len(), orders.len(), "two local orders share a link");
    let links: HashSet<&str> = sent_by_client
        .iter()
        .map(|(_, _, l, _, _)| l.as_str())
        .collect();
    for link in by_link.keys() {
        assert!(links.contains(link), "a local order nobody placed: {link}");
    }
    for link in upstream.keys() {
        assert!(
            by_link.contains_key(link.as_str()),
            "an upstream order without a local order: {link}"
        );
    }

    // Every acknowledged order exists, once, as the client placed it.
    let mut per_instance = [0usize; INSTANCES];
    let (mut acknowledged, mut lost, mut lost_but_placed) = (0, 0, 0);
    for (_, customer, link, instance, reply) in &sent_by_client {
        match reply {
            Reply::Placed(id) => {
                acknowledged += 1;
                per_instance[*instance] += 1;
                let order = by_link
                    .get(link.as_str())
                    .unwrap_or_else(|| panic!("acknowledged order {id} ({link}) is lost"));
                assert_eq!(order.id.0, *id, "{link}: the client got another order's id");
                assert_eq!(order.customer_id, *customer);
            }
            Reply::Lost => {
                lost += 1;
                lost_but_placed += usize::from(by_link.contains_key(link.as_str()));
            }
        }
    }
    assert_eq!(orders.len(), acknowledged + lost_but_placed);

    // Every order ended sent (final status, exact refund), rejected (refunded in full, never
    // upstream) or ambiguous (never re-sent, not refunded automatically).
    let (mut sent, mut ambiguous, mut rejected, mut refunded) = (0, 0, 0, 0);
    for order in &orders {
        let link = order.link.as_deref().unwrap_or_default();
        let adds = adds_per_link.get(link).copied().unwrap_or(0);
        match order.forward_state {
            ForwardState::Sent => {
                sent += 1;
                assert_eq!(
                    adds, 1,
                    "order {} is sent: exactly one add upstream",
                    order.id
                );
                let up = &upstream[link];
                assert_eq!(order.upstream_order_id, Some(up.id.to_string()));
                assert_eq!(
                    order.status.as_str(),
                    up.status.as_str(),
                    "order {}",
                    order.id
                );
                let remains = i64::try_from(up.remains).expect("remains fit");
                let owed = refund_due(&order.status, order.charge, order.units, Some(remains));
                assert_eq!(order.refunded, owed, "order {}: refund", order.id);
                refunded += usize::from(owed.is_positive());
            }
            ForwardState::Ambiguous => {
                ambiguous += 1;
                assert!(adds <= 1);
                assert_eq!(order.refunded, Money::ZERO, "order {}", order.id);
                assert_eq!(order.status, OrderStatus::Pending, "order {}", order.id);
            }
            ForwardState::Rejected => {
                rejected += 1;
                assert_eq!(
                    adds, 0,
                    "order {} is rejected but upstream has it",
                    order.id
                );
                assert_eq!(order.refunded, order.charge, "order {}", order.id);
            }
            other => panic!("order {} ended {other:?}", order.id),
        }
    }
    // The injected faults: the garbled replies and dropped connections are ambiguous (the kill
    // may add more), the refusals rejected.
    assert!(ambiguous >= 2 * FAULTS as usize, "{ambiguous} ambiguous");
    // The dead process's claims were recovered by the others, after the lease.
    let victim = format!("claim by gw{VICTIM}-");
    let recovered = orders
        .iter()
        .filter(|o| {
            o.forward_state == ForwardState::Ambiguous
                && o.forward_error
                    .as_deref()
                    .is_some_and(|e| e.contains(&victim))
        })
        .count();
    assert!(
        recovered > 0,
        "no claim of the killed gateway was recovered; ambiguous: {:?}",
        orders
            .iter()
            .filter(|o| o.forward_state == ForwardState::Ambiguous)
            .map(|o| o.forward_error.as_deref().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    assert_eq!(rejected, FAULTS as usize);
    assert!(refunded > 0, "the mix must owe some refunds");
    cluster.assert_books(&orders).await;

    // Which process forwarded what (the last claimer of each order).
    let mut claims: BTreeMap<String, usize> = BTreeMap::new();
    for order in orders
        .iter()
        .filter(|o| o.forward_state == ForwardState::Sent)
    {
        let worker = order.claimed_by.as_deref().unwrap_or("?");
        let process = worker.split('-').next().unwrap_or("?").to_owned();
        *claims.entry(process).or_default() += 1;
    }
    assert!(
        claims.len() == INSTANCES,
        "every process forwarded some orders: {claims:?}"
    );
    let killed_after = killed_after
        .lock()
        .expect("lock")
        .expect("the kill happened");
    eprintln!(
        "scaleout: {ORDERS} orders via {per_instance:?} (acknowledged per gateway; gw{VICTIM} \
         SIGKILLed at order {KILL_AT}, {:.1?} in), {lost} replies lost ({lost_but_placed} of \
         them placed), forwarded by {claims:?}; {sent} sent, {ambiguous} ambiguous, {rejected} \
         rejected ({recovered} ambiguous recovered from gw{VICTIM}'s claims), {refunded} refunds; \
         placing took {placing:.1?}, total {:.1?}",
        killed_after,
        started.elapsed()
    );
}

/// Sends `action` (`cancel` or `refill`) for `orders` (customer index, order id): one multi-id
/// request per customer, customer `n` through gateway `n % INSTANCES`, all concurrently. Every
/// item must be accepted.
async fn burst(cluster: &Cluster, action: &str, orders: &[(usize, i64)]) {
    let http = reqwest::Client::new();
    let requests = (0..CUSTOMERS).map(|n| {
        let mine: Vec<String> = orders
            .iter()
            .filter(|(customer, _)| *customer == n)
            .map(|(_, id)| id.to_string())
            .collect();
        let form = [
            ("key", cluster.customers[n].1.clone()),
            ("action", action.to_owned()),
            ("orders", mine.join(",")),
        ];
        let request = http.post(&cluster.apis[n % INSTANCES]).form(&form);
        async move {
            let reply: serde_json::Value = request
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            let items = reply
                .as_array()
                .unwrap_or_else(|| panic!("{action}: {reply}"));
            assert_eq!(items.len(), mine.len(), "{action}: {reply}");
            for item in items {
                assert!(item[action].get("error").is_none(), "{action}: {item}");
            }
        }
    });
    futures_util::future::join_all(requests).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refills_and_cancels_are_forwarded_once_across_gateways() {
    const ORDERS: usize = 200;
    const CANCELED: usize = 100;

    let started = Instant::now();
    let Some(cluster) =
        Cluster::start("scaleout_rc", sim_config(Outcomes::always_completed())).await
    else {
        return;
    };
    let cluster = &cluster;
    let http = reqwest::Client::new();
    let post = |instance: usize, form: Vec<(&'static str, String)>| {
        let request = http.post(&cluster.apis[instance % INSTANCES]).form(&form);
        async move {
            request
                .send()
                .await
                .expect("request")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    let key = |i: usize| cluster.customers[i % CUSTOMERS].1.clone();

    let mut ids = Vec::new();
    for i in 0..ORDERS {
        let reply = post(
            i,
            vec![
                ("key", key(i)),
                ("action", "add".into()),
                ("service", "1".into()),
                ("link", format!("https://instagram.com/p/rc-{i}")),
                ("quantity", "100".into()),
            ],
        )
        .await;
        ids.push((i % CUSTOMERS, reply["order"].as_i64().expect("an order id")));
    }
    cluster
        .wait(
            "every order to be sent",
            Duration::from_secs(30),
            || async { cluster.in_flight().await == 0 },
        )
        .await;
    let upstream_id = |id: i64| async move {
        cluster
            .store
            .order(smm_store::OrderId(id))
            .await
            .expect("order")
            .upstream_order_id
            .expect("sent")
    };

    // Cancels for the first 100 orders: each customer's in one multi-id request, through every
    // gateway in turn, all at once, so that the requests land in a burst that the three
    // reconcilers race for.
    burst(cluster, "cancel", &ids[..CANCELED]).await;
    cluster
        .wait(
            "every cancel to be forwarded",
            Duration::from_secs(30),
            || async {
                let mut open = 0;
                for state in [ForwardState::Queued, ForwardState::Sending] {
                    open += cluster
                        .store
                        .cancels_in_state(state, 1_000)
                        .await
                        .expect("cancels")
                        .len();
                }
                open == 0
            },
        )
        .await;
    let cancels = upstream_calls(&cluster.sim.sim.requests(), "cancel");
    for (_, id) in &ids[..CANCELED] {
        let upstream = upstream_id(*id).await;
        assert_eq!(
            cancels.get(&upstream).copied(),
            Some(1),
            "order {id} (upstream {upstream}): cancel sent upstream exactly once"
        );
    }
    assert_eq!(
        cancels.len(),
        CANCELED,
        "cancels for orders nobody canceled"
    );

    // Everything finishes (the canceled ones Canceled and refunded); then refills for the rest.
    cluster.sim.sim.advance(Duration::from_secs(7 * 24 * 3600));
    cluster
        .wait("every order to finish", Duration::from_secs(30), || async {
            cluster.sent_unfinished().await == 0
        })
        .await;
    burst(cluster, "refill", &ids[CANCELED..]).await;
    cluster
        .wait(
            "every refill to be forwarded",
            Duration::from_secs(30),
            || async {
                let mut open = 0;
                for state in [ForwardState::Queued, ForwardState::Sending] {
                    open += cluster
                        .store
                        .refills_in_state(state, 1_000)
                        .await
                        .expect("refills")
                        .len();
                }
                open == 0
            },
        )
        .await;
    let refills = upstream_calls(&cluster.sim.sim.requests(), "refill");
    for (_, id) in &ids[CANCELED..] {
        let upstream = upstream_id(*id).await;
        assert_eq!(
            refills.get(&upstream).copied(),
            Some(1),
            "order {id} (upstream {upstream}): refill sent upstream exactly once"
        );
    }
    assert_eq!(refills.len(), ORDERS - CANCELED);

    let orders = cluster.orders().await;
    for order in &orders[..] {
        let canceled = ids[..CANCELED].iter().any(|(_, id)| *id == order.id.0);
        let expected = if canceled {
            OrderStatus::Canceled
        } else {
            OrderStatus::Completed
        };
        assert_eq!(order.status, expected, "order {}", order.id);
        let refund = if canceled { order.charge } else { Money::ZERO };
        assert_eq!(order.refunded, refund, "order {}", order.id);
    }
    cluster.assert_books(&orders).await;
    eprintln!(
        "scaleout refills/cancels: {CANCELED} cancels and {} refills through {INSTANCES} \
         gateways, each sent upstream once; {:.1?}",
        ORDERS - CANCELED,
        started.elapsed()
    );
}
