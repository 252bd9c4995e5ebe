//! The in-process gateway (the end-to-end harness): two simulated upstream panels (`alpha`,
//! `beta`), the real gateway on `127.0.0.1:0` over a fresh database ([`TestDb`]), a funded
//! customer, and helpers to talk to all three.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use smm_panel_sim::{Outcomes, RecordedRequest, Sim, SimConfig, SimHandle};
use smm_provider_client::SecretKey;
use smm_routing::ServiceDef;
use smm_server::Gateway;
use smm_server::app::App;
use smm_server::config::{ProviderSettings, Settings};
use smm_store::{CustomerId, ForwardState, LedgerEntry, Order, OrderFilter, OrderId, Store};
use smm_wire::Money;

use super::{
    Backend, TempDir, TestDb, funded_customer, route, service_def, start_gateway, temp_dir,
    wait_for, write_file,
};

/// The funded test customer's API key.
pub const KEY: &str = "e2e-customer-key-0001";
/// What the test customer starts with.
pub const START_BALANCE: Money = Money::from_units(1000 * 100_000);
/// The link most orders use.
pub const LINK: &str = "https://instagram.com/p/e2e-test";

/// Local services whose first route is alpha's service of the same id and whose second route is
/// beta's: failover cases.
pub const WITH_BETA_FALLBACK: [u64; 5] = [1, 2, 4, 5, 6];
/// A local service whose only route is beta's service 1 (Default, like alpha's).
pub const BETA_ONLY: u64 = 21;
/// A local service on alpha's service 3 (upstream bounds 100..=1000000) with its own, narrower
/// bounds.
pub const NARROW: u64 = 22;
pub const NARROW_MIN: u64 = 500;
pub const NARROW_MAX: u64 = 2000;
/// Every local service id the harness configures.
pub const ALL_SERVICES: std::ops::RangeInclusive<u64> = 1..=22;

/// The exact `type` strings of the protocol's table (b).
pub const PROTOCOL_TYPES: [&str; 17] = [
    "Default",
    "Package",
    "Custom Comments",
    "Custom Comments Package",
    "Mentions",
    "Mentions with Hashtags",
    "Mentions Custom List",
    "Mentions Hashtag",
    "Mentions User Followers",
    "Mentions Media Likers",
    "Comment Likes",
    "Poll",
    "Comment Replies",
    "Invites from Groups",
    "SEO",
    "Subscriptions",
    "Web Traffic",
];

/// Alpha's catalog is the simulator's full demo catalog (one service per type, ids 1–20); beta is
/// a copy (same ids, same prices, another seed), so both number their orders from 10001.
fn sim_configs() -> (SimConfig, SimConfig) {
    let alpha = SimConfig::demo();
    let mut beta = alpha.clone();
    beta.seed = alpha.seed.wrapping_add(1);
    (alpha, beta)
}

/// The local catalog: 1..=20 → alpha's service of the same id (some with beta's as the second
/// route), [`BETA_ONLY`] and [`NARROW`].
pub fn service_defs() -> Vec<ServiceDef> {
    let mut defs: Vec<ServiceDef> = (1..=20)
        .map(|id| {
            let mut routes = vec![route("alpha", id)];
            if WITH_BETA_FALLBACK.contains(&id) {
                routes.push(route("beta", id));
            }
            service_def(id, routes)
        })
        .collect();
    defs.push(service_def(BETA_ONLY, vec![route("beta", 1)]));
    defs.push(ServiceDef {
        min: Some(NARROW_MIN),
        max: Some(NARROW_MAX),
        ..service_def(NARROW, vec![route("alpha", 3)])
    });
    defs
}

/// The expected upstream service behind a local one (its first route): `(provider, id)`.
pub fn first_route(local: u64) -> (&'static str, u64) {
    match local {
        BETA_ONLY => ("beta", 1),
        NARROW => ("alpha", 3),
        id => ("alpha", id),
    }
}

/// The admin API token of every test gateway.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// A running gateway with its two upstream simulators, its database and a funded customer.
#[derive(Debug)]
pub struct TestGateway {
    gateway: Option<Gateway>,
    pub alpha: SimHandle,
    beta: Option<SimHandle>,
    pub http: reqwest::Client,
    pub url: String,
    /// The admin listener's base URL (`http://127.0.0.1:PORT`); its token is [`ADMIN_TOKEN`].
    pub admin_url: String,
    /// The funded customer owning [`KEY`].
    pub customer: CustomerId,
    /// Dropped last: removes the database, then the temp dir (the admin token file).
    _db: TestDb,
    _dir: TempDir,
}

impl TestGateway {
    pub async fn start(backend: Backend) -> TestGateway {
        TestGateway::start_with(backend, |_| {}).await
    }

    /// Starts everything; `adjust` may change the settings (a provider timeout, ...) before the
    /// gateway starts.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestGateway {
        let (alpha_config, beta_config) = sim_configs();
        let alpha = Sim::spawn(alpha_config).await.expect("alpha starts");
        let beta = Sim::spawn(beta_config).await.expect("beta starts");
        let db = TestDb::create(backend, "e2e")
            .await
            .expect("the PostgreSQL variant runs only with TEST_DATABASE_URL");
        let dir = temp_dir();

        let mut settings = Settings::defaults().expect("default settings load");
        settings.server.listen = "127.0.0.1:0".into();
        settings.database.url = db.url.clone();
        settings.forwarder.interval_ms = 50;
        // Nothing is re-queued or polled behind a test's back.
        settings.forwarder.requeue_after_secs = 3600;
        settings.forwarder.first_poll_secs = 3600;
        settings.sync.services_interval_secs = 3600;
        settings.providers = vec![
            ProviderSettings::new(
                "alpha",
                &alpha.api_url(),
                SecretKey::new(smm_panel_sim::DEMO_KEY),
            ),
            ProviderSettings::new(
                "beta",
                &beta.api_url(),
                SecretKey::new(smm_panel_sim::DEMO_KEY),
            ),
        ];
        settings.exposures = Vec::new();
        settings.services = service_defs();
        settings.admin.token_file = Some(write_file(dir.path(), "admin-token", ADMIN_TOKEN));
        adjust(&mut settings);
        let problems = settings.validate();
        assert!(problems.is_empty(), "test settings invalid: {problems:?}");

        let gateway = start_gateway(settings, true).await;
        let url = gateway.api_url();
        let admin_url = format!("http://{}", gateway.admin_addr.expect("admin listener"));
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert_eq!(
            gateway.app.catalog().enabled().count(),
            service_defs().len(),
            "every configured service is enabled after the first sync"
        );

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let mut gw = TestGateway {
            gateway: Some(gateway),
            alpha,
            beta: Some(beta),
            http,
            url,
            admin_url,
            customer: CustomerId(0),
            _db: db,
            _dir: dir,
        };
        gw.customer = gw.create_customer("e2e", KEY, START_BALANCE).await;
        gw
    }

    /// Like [`TestGateway::start_with`], for the reconciler's tests: orders are due for their
    /// first status poll as soon as they are forwarded, the background reconciler waits an hour
    /// between rounds (after its start-up round, before any order exists) so the test drives
    /// every round itself ([`TestGateway::reconcile`]), and the per-key request budget is out
    /// of the way of bulk tests.
    pub async fn start_polling(
        backend: Backend,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestGateway {
        TestGateway::start_with(backend, |settings| {
            settings.forwarder.first_poll_secs = 0;
            settings.reconciler.interval_ms = 3_600_000;
            settings.server.rate_limit_per_minute = 1_000_000;
            adjust(settings);
        })
        .await
    }

    /// Stops the gateway (bounded), then the simulators; the database goes with `self`.
    pub async fn finish(mut self) {
        if let Some(gateway) = self.gateway.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), gateway.shutdown()).await;
        }
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("the gateway is running")
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.gateway().app.store
    }

    /// The gateway's shared state (for `reconciler::round`, `sync_catalog`, ...).
    pub fn app(&self) -> &Arc<App> {
        &self.gateway().app
    }

    /// One reconciliation pass, exactly as the background task runs it.
    pub async fn reconcile(&self) {
        smm_server::reconciler::round(self.app()).await;
    }

    /// Makes every forwarded, non-terminal order (of any customer) due for a status poll now,
    /// undoing the lease or back-off of earlier polls. Returns those orders, oldest first.
    pub async fn make_polls_due(&self) -> Vec<Order> {
        let mut watched: Vec<Order> = self
            .store()
            .list_orders(&OrderFilter {
                forward_state: Some(ForwardState::Sent),
                limit: 100_000,
                ..OrderFilter::default()
            })
            .await
            .expect("list orders")
            .into_iter()
            .filter(|order| !order.status.is_terminal())
            .collect();
        watched.reverse();
        let ids: Vec<OrderId> = watched.iter().map(|order| order.id).collect();
        self.store()
            .defer_polls(&ids, now_ms() - 1)
            .await
            .expect("make polls due");
        watched
    }

    /// Sets the outcome weights of one upstream service at `provider`'s simulator; orders
    /// placed from now on draw their plan from them.
    pub fn set_outcomes(&self, provider: &str, service: u64, outcomes: Outcomes) {
        let sim = self.sim(provider);
        let mut services = sim.services();
        let entry = services
            .iter_mut()
            .find(|s| s.id == service)
            .unwrap_or_else(|| panic!("{provider} has a service {service}"));
        entry.outcomes = outcomes;
        sim.set_services(services);
    }

    /// Moves both simulators' clocks forward.
    pub fn advance_sims(&self, by: Duration) {
        self.alpha().advance(by);
        self.beta().advance(by);
    }

    pub fn alpha(&self) -> &Sim {
        &self.alpha.sim
    }

    pub fn beta(&self) -> &Sim {
        &self.beta.as_ref().expect("beta is running").sim
    }

    /// Beta's API URL.
    pub fn beta_url(&self) -> String {
        self.beta.as_ref().expect("beta is running").api_url()
    }

    pub fn sim(&self, provider: &str) -> &Sim {
        match provider {
            "alpha" => self.alpha(),
            "beta" => self.beta(),
            other => panic!("no simulator named {other}"),
        }
    }

    /// Stops beta: its port refuses connections from now on.
    pub fn stop_beta(&mut self) -> Sim {
        let handle = self.beta.take().expect("beta is running");
        let sim = handle.sim.clone();
        drop(handle);
        sim
    }

    // ---- customers and money ---------------------------------------------------------------

    /// A new customer owning `key`, funded with `deposit` (nothing when zero).
    /// Calls the admin API with the right token, as `X-Admin-Actor: e2e`; returns the status
    /// and the JSON body (`Null` when the body is not JSON).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .header("X-Admin-Actor", "e2e");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("admin call");
        let status = response.status();
        let text = response.text().await.expect("admin body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_customer(&self, name: &str, key: &str, deposit: Money) -> CustomerId {
        funded_customer(self.store().as_ref(), name, key, deposit, "e2e", now_ms())
            .await
            .id
    }

    pub async fn balance_of(&self, customer: CustomerId) -> Money {
        self.store()
            .customer(customer)
            .await
            .expect("customer")
            .balance
    }

    pub async fn balance(&self) -> Money {
        self.balance_of(self.customer).await
    }

    /// Newest first.
    pub async fn ledger_of(&self, customer: CustomerId) -> Vec<LedgerEntry> {
        self.store()
            .ledger(customer, None, 10_000)
            .await
            .expect("ledger")
    }

    /// The balance equals the ledger's sum and is not negative.
    pub async fn assert_ledger_consistent(&self, customer: CustomerId) {
        let balance = self.balance_of(customer).await;
        let sum = self.store().ledger_sum(customer).await.expect("ledger sum");
        assert_eq!(sum, balance, "ledger sum == balance");
        assert!(!balance.is_negative(), "balance never negative: {balance}");
    }

    pub async fn orders_of(&self, customer: CustomerId) -> Vec<Order> {
        self.store()
            .list_orders(&OrderFilter {
                customer_id: Some(customer),
                limit: 10_000,
                ..OrderFilter::default()
            })
            .await
            .expect("list orders")
    }

    pub async fn order(&self, id: OrderId) -> Order {
        self.store().order(id).await.expect("order exists")
    }

    /// Waits until the forwarder is done with the order (neither queued nor sending).
    pub async fn wait_forwarded(&self, id: OrderId) -> Order {
        wait_for(
            &format!("order {id} to leave queued/sending"),
            Duration::from_secs(10),
            || async move {
                let order = self.order(id).await;
                !matches!(
                    order.forward_state,
                    ForwardState::Queued | ForwardState::Sending
                )
            },
        )
        .await;
        self.order(id).await
    }

    /// Waits until the order reaches `state`; fails at once if it reaches another final state.
    pub async fn wait_state(&self, id: OrderId, state: ForwardState) -> Order {
        let order = self.wait_forwarded(id).await;
        assert_eq!(
            order.forward_state, state,
            "order {id} forward state (error: {:?})",
            order.forward_error
        );
        order
    }

    // ---- HTTP ------------------------------------------------------------------------------

    async fn reply(response: reqwest::Response) -> (StatusCode, HeaderMap, String) {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("reply body");
        (status, headers, body)
    }

    /// A form POST to `/api/v2` (`key` included only when given in `params`).
    pub async fn post_form(&self, params: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        self.post_form_to(&self.url, params).await
    }

    pub async fn post_form_to(
        &self,
        url: &str,
        params: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let response = self
            .http
            .post(url)
            .form(params)
            .send()
            .await
            .expect("form POST");
        Self::reply(response).await
    }

    /// A form body sent with an explicit `Content-Type` header.
    pub async fn post_form_typed(
        &self,
        content_type: &str,
        params: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("form POST");
        Self::reply(response).await
    }

    pub async fn get_query(&self, params: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let response = self
            .http
            .get(&self.url)
            .query(params)
            .send()
            .await
            .expect("GET");
        Self::reply(response).await
    }

    pub async fn post_json(&self, body: &Value) -> (StatusCode, HeaderMap, String) {
        let response = self
            .http
            .post(&self.url)
            .json(body)
            .send()
            .await
            .expect("JSON POST");
        Self::reply(response).await
    }

    pub async fn post_multipart(&self, params: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in params {
            form = form.text((*name).to_owned(), (*value).to_owned());
        }
        let response = self
            .http
            .post(&self.url)
            .multipart(form)
            .send()
            .await
            .expect("multipart POST");
        Self::reply(response).await
    }

    /// One raw HTTP exchange on a fresh TCP connection that the server must close after the reply
    /// (`HTTP/1.0`, or `Connection: close`): returns the status line, the header block and the
    /// body.
    pub async fn raw_exchange(&self, request: &str) -> (String, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.gateway().addr;
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the gateway");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("the server closes the connection after the reply")
            .expect("read the reply");
        let text = String::from_utf8(raw).expect("UTF-8 reply");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("a header block and a body");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status_line.to_owned(), headers.to_owned(), body.to_owned())
    }

    /// A form POST with `key`, `action` and `extra`: asserts HTTP 200 and a JSON content type,
    /// returns the parsed reply.
    pub async fn call(&self, key: &str, action: &str, extra: &[(&str, &str)]) -> Value {
        let mut params = vec![("key", key), ("action", action)];
        params.extend_from_slice(extra);
        let (status, headers, body) = self.post_form(&params).await;
        assert_eq!(status, StatusCode::OK, "HTTP status of {action}: {body}");
        assert_json_content_type(&headers);
        json(&body)
    }

    /// [`TestGateway::call`] as the funded customer.
    pub async fn api(&self, action: &str, extra: &[(&str, &str)]) -> Value {
        self.call(KEY, action, extra).await
    }

    /// `add` as the funded customer: the raw reply.
    pub async fn add(&self, extra: &[(&str, &str)]) -> Value {
        self.api("add", extra).await
    }

    /// `add` that must succeed with `{"order": <int>}` (and nothing else).
    pub async fn add_ok(&self, extra: &[(&str, &str)]) -> OrderId {
        order_id_of(&self.add(extra).await)
    }

    /// The customer's rate for a local service, from the `services` reply.
    pub async fn rate(&self, service: u64) -> Decimal {
        let services = self.api("services", &[]).await;
        let item = services
            .as_array()
            .expect("services is an array")
            .iter()
            .find(|s| s["service"].as_u64() == Some(service))
            .unwrap_or_else(|| panic!("service {service} listed"));
        decimal(&item["rate"])
    }
}

/// `{"order": <int>}` → the id; anything else fails the test.
pub fn order_id_of(reply: &Value) -> OrderId {
    let object = reply.as_object().expect("add reply is an object");
    assert_eq!(object.len(), 1, "add reply has only `order`: {reply}");
    let id = reply["order"]
        .as_u64()
        .unwrap_or_else(|| panic!("add reply is {{\"order\": <int>}}: {reply}"));
    OrderId(i64::try_from(id).expect("order id fits i64"))
}

pub fn assert_json_content_type(headers: &HeaderMap) {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type is application/json, got {content_type:?}"
    );
}

/// Parses a reply body.
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("reply is JSON ({e}): {body:?}"))
}

/// A JSON string holding an exact decimal.
pub fn decimal(value: &Value) -> Decimal {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a decimal string, got {value}"));
    text.parse()
        .unwrap_or_else(|e| panic!("a decimal string ({e}), got {text:?}"))
}

/// `{"error": text}` exactly.
pub fn error_reply(text: &str) -> Value {
    serde_json::json!({ "error": text })
}

/// What `rate × units / 1000` costs, rounded up to whole 0.00001.
pub fn per_thousand(rate: Decimal, units: u64) -> Money {
    let amount = rate * Decimal::from(units) / Decimal::from(1000);
    Money::from_decimal_round_up(amount).expect("charge fits")
}

/// A flat-priced order's charge.
pub fn flat(rate: Decimal) -> Money {
    Money::from_decimal_round_up(rate).expect("charge fits")
}

/// The markup of the default config: +30 %, rounded up to 4 decimals.
pub fn marked_up(upstream: Decimal) -> Decimal {
    (upstream * Decimal::new(130, 2))
        .round_dp_with_strategy(4, RoundingStrategy::ToPositiveInfinity)
        .normalize()
}

pub fn money_sub(a: Money, b: Money) -> Money {
    a.checked_sub(b).expect("no overflow")
}

pub fn money_add(a: Money, b: Money) -> Money {
    a.checked_add(b).expect("no overflow")
}

/// The `add` requests a simulator received, oldest first.
pub fn adds(sim: &Sim) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.action.as_deref() == Some("add"))
        .collect()
}

/// The requests of one `action` a simulator received, oldest first.
pub fn requests_for(sim: &Sim, action: &str) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.action.as_deref() == Some(action))
        .collect()
}

/// The parameters of an upstream request besides `key`, `action` and `service`.
pub fn forwarded_params(request: &RecordedRequest) -> BTreeMap<String, String> {
    request
        .params
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "key" | "action" | "service"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

pub fn now_ms() -> i64 {
    smm_server::app::now_ms()
}
