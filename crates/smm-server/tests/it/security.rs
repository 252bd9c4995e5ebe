//! Security tests (issue #7): secrets never reach the logs, the admin API refuses anything but
//! its token, customers never touch each other's orders, size limits hold, slow clients are cut
//! off, and the rate limit answers at once with a v2 error.
//!
//! Most cases run the in-process gateway of the end-to-end harness (`support::gateway`: the real
//! server on `127.0.0.1:0`, two simulated panels) on SQLite and, with `TEST_DATABASE_URL`, on
//! PostgreSQL; the log case runs the real `smm-gateway` binary at `RUST_LOG=trace`/`debug` and
//! searches everything it wrote.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use smm_panel_sim::{Fault, FaultRule, Outcomes, Sim, SimAccount, SimConfig};
use smm_store::{CustomerId, ForwardState, OrderFilter};
use smm_wire::Money;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    ADMIN_TOKEN, Backend, KEY, TestDb, TestGateway, error_reply, free_port, funded_customer, json,
    now_ms, send_raw, status_of, temp_dir, wait_for,
};

both_backends!(
    secrets_never_reach_the_logs,
    customers_cannot_touch_each_others_orders,
    size_limits_hold_and_change_nothing,
    rate_limit_answers_at_once_with_a_v2_error,
);

// ---- shared helpers --------------------------------------------------------------------------

/// Everything that can change when a request is accepted: every customer's balance and ledger
/// length, and every order, refill and cancel request.
#[derive(Debug, PartialEq)]
struct Books {
    customers: Vec<(CustomerId, Money, usize)>,
    orders: Vec<smm_store::Order>,
    refills: Vec<smm_store::Refill>,
    cancels: Vec<smm_store::CancelRequest>,
}

async fn books(gw: &TestGateway) -> Books {
    let store = gw.store();
    let mut customers = Vec::new();
    for c in store.list_customers().await.expect("customers") {
        let ledger = store.ledger(c.id, None, 100_000).await.expect("ledger");
        customers.push((c.id, c.balance, ledger.len()));
    }
    let orders = store
        .list_orders(&OrderFilter {
            limit: 100_000,
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    let mut refills = Vec::new();
    let mut cancels = Vec::new();
    for state in ForwardState::ALL {
        refills.extend(
            store
                .refills_in_state(state, 100_000)
                .await
                .expect("refills"),
        );
        cancels.extend(
            store
                .cancels_in_state(state, 100_000)
                .await
                .expect("cancels"),
        );
    }
    Books {
        customers,
        orders,
        refills,
        cancels,
    }
}

/// The body of a raw HTTP reply with a `Content-Length` (what the gateway sends).
fn body_of(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

// ---- 1. secrets never reach the logs ------------------------------------------------------------

const CUSTOMER_A_KEY: &str = "custA-7f3a9c2e1b5d4f60a8e2c6d1";
const CUSTOMER_B_KEY: &str = "custB-09d8c7b6a5f4e3d2c1b0a9f8";
/// A key nobody owns, sent with requests that must fail: also never logged.
const WRONG_KEY: &str = "nokey-5e4d3c2b1a0f9e8d7c6b5a4f";
const PROVIDER_FORM_KEY: &str = "provF-a1b2c3d4e5f60718293a4b5c";
const PROVIDER_QUERY_KEY: &str = "provQ-0f1e2d3c4b5a69788796a5b4";
const ADMIN_SECRET: &str = "admin-3c9e1f7a5b2d8c4e6f0a1b3d";
const WRONG_ADMIN_SECRET: &str = "admin-3c9e1f7a5b2d8c4e6f0a1b3X";

/// Every occurrence of `secret`, or of any 12-character piece of it, in `log`.
fn leaks(log: &str, secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    let mut found = Vec::new();
    for window in chars.windows(12) {
        let piece: String = window.iter().collect();
        if let Some(at) = log.find(&piece) {
            let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = log[at..].find('\n').map_or(log.len(), |i| at + i);
            found.push(format!("{piece:?} in: {}", &log[start..end]));
            break;
        }
    }
    found
}

/// Runs the real binary at `RUST_LOG=trace` with text logs, then at `debug` with JSON logs,
/// through every action and failure; neither run's output holds a secret.
async fn secrets_never_reach_the_logs(backend: Backend) {
    for (level, format) in [("trace", "text"), ("debug", "json")] {
        log_scenario(backend, level, format).await;
    }
}

async fn log_scenario(backend: Backend, level: &str, format: &str) {
    // One simulated panel, two accounts: "form" (a POST-form provider) and "query" (a provider
    // that takes its key in the URL, where transport errors would show it).
    let mut sim_config = SimConfig::demo();
    sim_config.accounts = [PROVIDER_FORM_KEY, PROVIDER_QUERY_KEY]
        .into_iter()
        .map(|key| SimAccount {
            key: key.into(),
            balance: rust_decimal::Decimal::new(100_000_000, 5),
        })
        .collect();
    for service in &mut sim_config.services {
        service.outcomes = Outcomes::always_completed();
    }
    let sim = Sim::spawn(sim_config).await.expect("sim");
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let db = TestDb::create(backend, "security")
        .await
        .expect("TEST_DATABASE_URL");
    let db_url = db.url.clone();
    let port = free_port();
    let admin_port = free_port();
    let config = dir.join("gateway.toml");
    let config_text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"
token_env = "SMM_SECURITY_ADMIN_TOKEN"

[database]
url = "{db_url}"

[forwarder]
interval_ms = 20
first_poll_secs = 0
requeue_after_secs = 1

[reconciler]
interval_ms = 50
min_poll_secs = 1
failure_backoff_secs = 1

[[providers]]
name = "form"
url = "{sim}"
key_env = "SMM_SECURITY_FORM_KEY"
timeout_secs = 1
connect_timeout_secs = 1
failures_before_cooldown = 0

[[providers]]
name = "query"
url = "{sim}"
key_env = "SMM_SECURITY_QUERY_KEY"
format = "query"
timeout_secs = 1
connect_timeout_secs = 1
failures_before_cooldown = 0

[[services]]
id = 1
routes = [{{ provider = "form", service = "1" }}]

[[services]]
id = 2
routes = [{{ provider = "query", service = "1" }}]
"#,
        sim = sim.api_url(),
    );
    std::fs::write(&config, &config_text).expect("config");

    // Two funded customers, made before the start (which migrates a fresh database first).
    let store = smm_store::connect(&db_url).await.expect("store");
    let mut customers = Vec::new();
    for (name, key) in [("a", CUSTOMER_A_KEY), ("b", CUSTOMER_B_KEY)] {
        let customer = funded_customer(
            store.as_ref(),
            name,
            key,
            Money::from_units(100 * 100_000),
            "test",
            0,
        )
        .await;
        customers.push(customer.id);
    }

    let log_path = dir.join("gateway.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let stdout_file = log_file.try_clone().expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smm-gateway"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "--log-format",
            format,
            "serve",
        ])
        .env("RUST_LOG", level)
        .env("SMM_SECURITY_FORM_KEY", PROVIDER_FORM_KEY)
        .env("SMM_SECURITY_QUERY_KEY", PROVIDER_QUERY_KEY)
        .env("SMM_SECURITY_ADMIN_TOKEN", ADMIN_SECRET)
        .stdout(stdout_file)
        .stderr(log_file)
        .spawn()
        .expect("start smm-gateway");

    let api = format!("http://127.0.0.1:{port}/api/v2");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    wait_for("the gateway to answer", Duration::from_secs(60), || async {
        http.get(format!("{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let post = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let api = api.clone();
        async move {
            let text = http
                .post(&api)
                .form(&form)
                .send()
                .await
                .expect("v2")
                .text()
                .await
                .expect("body");
            json(&text)
        }
    };
    let key_a = || ("key", CUSTOMER_A_KEY.to_owned());
    let add = |service: &str, link: &str| {
        vec![
            key_a(),
            ("action", "add".into()),
            ("service", service.into()),
            ("link", link.into()),
            ("quantity", "100".into()),
        ]
    };

    // Whether the forwarder is done with every order.
    let unforwarded = || {
        let store = store.clone();
        async move {
            let mut left = 0;
            for state in [ForwardState::Queued, ForwardState::Sending] {
                left += store
                    .list_orders(&OrderFilter {
                        forward_state: Some(state),
                        limit: 1000,
                        ..OrderFilter::default()
                    })
                    .await
                    .expect("orders")
                    .len();
            }
            left == 0
        }
    };
    // Every action, successes first.
    assert!(post(vec![key_a(), ("action", "balance".into())]).await["balance"].is_string());
    assert!(
        post(vec![key_a(), ("action", "services".into())])
            .await
            .is_array()
    );
    let mut orders = Vec::new();
    for (service, link) in [("1", "https://x.test/a1"), ("2", "https://x.test/a2")] {
        let reply = post(add(service, link)).await;
        orders.push(reply["order"].as_u64().expect("order id"));
    }
    wait_for(
        "the first orders forwarded",
        Duration::from_secs(30),
        unforwarded,
    )
    .await;
    // Upstream failures on both providers: an error reply, a 500, garbage, a dropped
    // connection, a redirect, a hang past the timeout.
    for fault in [
        Fault::Error {
            text: "Incorrect link".into(),
        },
        Fault::Http500,
        Fault::Garbled,
        Fault::DropBeforeRecord,
        Fault::Redirect,
        Fault::Hang,
    ] {
        sim.sim
            .add_fault(FaultRule::always(fault.clone()).on_action("add").times(2));
        for service in ["1", "2"] {
            let link = format!("https://x.test/{}-{service}", fault.name());
            let reply = post(add(service, &link)).await;
            orders.push(reply["order"].as_u64().expect("order id"));
        }
        // The hangs time out after 1 s each.
        wait_for(
            "the faulted orders forwarded",
            Duration::from_secs(30),
            unforwarded,
        )
        .await;
        sim.sim.clear_faults();
    }
    sim.sim.clear_faults();
    // Status polls fail on both providers for a while.
    sim.sim
        .add_fault(FaultRule::always(Fault::DropBeforeRecord).on_action("status"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.sim.clear_faults();
    // Cancels of pending orders on both providers.
    let mut cancel = Vec::new();
    for service in ["1", "2"] {
        let reply = post(add(service, &format!("https://x.test/cancel-{service}"))).await;
        cancel.push(reply["order"].as_u64().expect("order id").to_string());
    }
    wait_for(
        "the new orders forwarded",
        Duration::from_secs(30),
        unforwarded,
    )
    .await;
    let reply = post(vec![
        key_a(),
        ("action", "cancel".into()),
        ("orders", cancel.join(",")),
    ])
    .await;
    assert!(reply.is_array(), "{reply}");
    post(vec![
        key_a(),
        ("action", "cancel".into()),
        ("order", orders[2].to_string()),
    ])
    .await;
    // Everything completes upstream; refills of the first two orders (one of them failing once).
    sim.sim.advance(Duration::from_secs(7 * 24 * 3600));
    let first = orders[0].to_string();
    let second = orders[1].to_string();
    wait_for("the first orders complete", Duration::from_secs(30), || {
        let ids = format!("{first},{second}");
        async move {
            let reply = post(vec![key_a(), ("action", "status".into()), ("orders", ids)]).await;
            reply.to_string().matches("Completed").count() == 2
        }
    })
    .await;
    assert_eq!(
        post(vec![
            key_a(),
            ("action", "status".into()),
            ("order", first.clone())
        ])
        .await["status"],
        "Completed"
    );
    sim.sim.add_fault(
        FaultRule::always(Fault::DropBeforeRecord)
            .on_action("refill")
            .times(1),
    );
    for order in [&first, &second] {
        let refill = post(vec![
            key_a(),
            ("action", "refill".into()),
            ("order", order.clone()),
        ])
        .await;
        let refill = refill["refill"].as_str().expect("refill id").to_owned();
        post(vec![
            key_a(),
            ("action", "refill_status".into()),
            ("refill", refill.clone()),
        ])
        .await;
        post(vec![
            key_a(),
            ("action", "refill_status".into()),
            ("refills", format!("{refill},77")),
        ])
        .await;
    }
    // Both providers were really used for every kind of call, the query one with its key in
    // the URL.
    wait_for(
        "calls of every kind upstream",
        Duration::from_secs(30),
        || {
            let requests = sim.sim.requests();
            let used = |key: &str, action: &str| {
                requests.iter().any(|r| {
                    r.params.get("key").map(String::as_str) == Some(key)
                        && r.action.as_deref() == Some(action)
                })
            };
            let all = [PROVIDER_FORM_KEY, PROVIDER_QUERY_KEY].iter().all(|key| {
                ["add", "status", "refill", "cancel"]
                    .iter()
                    .all(|action| used(key, action))
            });
            let in_url = requests.iter().any(|r| {
                r.method == "GET"
                    && r.params.get("key").map(String::as_str) == Some(PROVIDER_QUERY_KEY)
            });
            async move { all && in_url }
        },
    )
    .await;

    // Failures: a wrong key, no key, an unknown action, the key in the query string and in a
    // JSON and a multipart body, a bad body.
    assert_eq!(
        post(vec![
            ("key", WRONG_KEY.into()),
            ("action", "balance".into())
        ])
        .await,
        error_reply("Invalid API key")
    );
    post(vec![("action", "balance".into())]).await;
    post(vec![key_a(), ("action", "steal".into())]).await;
    let query = http
        .get(&api)
        .query(&[("key", CUSTOMER_A_KEY), ("action", "balance")])
        .send()
        .await
        .expect("GET");
    assert_eq!(query.status(), 200);
    http.get(&api)
        .query(&[("key", WRONG_KEY), ("action", "status"), ("order", "1")])
        .send()
        .await
        .expect("GET");
    http.post(&api)
        .json(&json!({"key": CUSTOMER_B_KEY, "action": "balance"}))
        .send()
        .await
        .expect("JSON");
    http.post(&api)
        .multipart(
            reqwest::multipart::Form::new()
                .text("key", CUSTOMER_B_KEY)
                .text("action", "add")
                .text("service", "1"),
        )
        .send()
        .await
        .expect("multipart");
    http.post(&api)
        .header("content-type", "application/json")
        .body(format!("{{\"key\":\"{WRONG_KEY}\",\"action\":"))
        .send()
        .await
        .expect("bad JSON");
    http.post(&api)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={CUSTOMER_A_KEY}&action=balance&%FF%FE=\u{0}"))
        .send()
        .await
        .expect("odd form");

    // The admin API: wrong tokens, then every kind of call with the right one.
    for token in [WRONG_ADMIN_SECRET, &ADMIN_SECRET[..20]] {
        let refused = http
            .get(format!("{admin}/admin/v1/customers"))
            .bearer_auth(token)
            .send()
            .await
            .expect("admin");
        assert_eq!(refused.status(), 401);
    }
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{admin}{path}"))
            .bearer_auth(ADMIN_SECRET)
            .header("X-Admin-Actor", "security");
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("admin call");
            let status = response.status();
            let text = response.text().await.expect("body");
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let (status, created) = call(
        Method::POST,
        "/admin/v1/customers",
        Some(json!({"name": "c"})),
    )
    .await;
    assert!(status.is_success(), "{status}: {created}");
    let key_c = created["api_key"].as_str().expect("a new key").to_owned();
    let b = customers[1].0;
    let (status, rotated) = call(
        Method::POST,
        &format!("/admin/v1/customers/{b}/rotate-key"),
        None,
    )
    .await;
    assert!(status.is_success(), "{status}: {rotated}");
    let key_b2 = rotated["api_key"].as_str().expect("a new key").to_owned();
    for (method, path, body) in [
        (Method::GET, "/admin/v1/customers".to_owned(), None),
        (Method::GET, format!("/admin/v1/customers/{b}"), None),
        (Method::GET, format!("/admin/v1/customers/{b}/ledger"), None),
        (Method::GET, format!("/admin/v1/customers/{b}/prices"), None),
        (
            Method::POST,
            format!("/admin/v1/customers/{b}/credit"),
            Some(json!({"amount": "1.5", "reason": "security test"})),
        ),
        (Method::GET, "/admin/v1/orders".to_owned(), None),
        (Method::GET, format!("/admin/v1/orders/{first}"), None),
        (Method::GET, "/admin/v1/orders/ambiguous".to_owned(), None),
        (Method::GET, "/admin/v1/providers".to_owned(), None),
        (Method::GET, "/admin/v1/config".to_owned(), None),
        (Method::GET, "/admin/v1/audit".to_owned(), None),
        (Method::POST, "/admin/v1/config/reload".to_owned(), None),
        (Method::GET, "/metrics".to_owned(), None),
    ] {
        let (status, reply) = call(method.clone(), &path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {reply}");
        let text = reply.to_string();
        for secret in [PROVIDER_FORM_KEY, PROVIDER_QUERY_KEY, ADMIN_SECRET] {
            assert!(!text.contains(secret), "{path} shows a secret: {text}");
        }
    }
    let validate = http
        .post(format!("{admin}/admin/v1/config/validate"))
        .bearer_auth(ADMIN_SECRET)
        .body(config_text.replace("format = \"query\"", "format = \"nope\""))
        .send()
        .await
        .expect("validate");
    assert_eq!(validate.status(), 200);
    // The new keys work, and fail where they should.
    for key in [&key_c, &key_b2] {
        assert!(
            post(vec![("key", key.clone()), ("action", "balance".into())]).await["balance"]
                .is_string()
        );
        post(vec![
            ("key", key.clone()),
            ("action", "refill".into()),
            ("order", first.clone()),
        ])
        .await;
    }

    let _ = child.kill();
    let _ = child.wait();
    drop(store);
    drop(db);
    let log = std::fs::read_to_string(&log_path).expect("log");
    // The capture worked: the level is what was asked, the requests and failures are there.
    assert!(log.contains("smm-gateway listening"), "log:\n{log}");
    assert!(log.contains("request done"), "request spans at {level}");
    if level == "trace" {
        assert!(log.contains("TRACE"), "trace lines captured");
    }
    // The search itself finds a piece of a secret anywhere in a line.
    assert!(!leaks("a\nkey=xcustA-7f3a9c2e1b5y\n", CUSTOMER_A_KEY).is_empty());
    assert!(leaks("a\nkey=custA-7f3a9 c2e1b5d4f60\n", CUSTOMER_A_KEY).is_empty());
    let mut found = Vec::new();
    for (name, secret) in [
        ("customer A's key", CUSTOMER_A_KEY),
        ("customer B's key", CUSTOMER_B_KEY),
        ("customer B's rotated key", key_b2.as_str()),
        ("customer C's key", key_c.as_str()),
        ("an unknown key", WRONG_KEY),
        ("the form provider's key", PROVIDER_FORM_KEY),
        ("the query provider's key", PROVIDER_QUERY_KEY),
        ("the admin token", ADMIN_SECRET),
        ("a wrong admin token", WRONG_ADMIN_SECRET),
    ] {
        for leak in leaks(&log, secret) {
            found.push(format!("{name}: {leak}"));
        }
    }
    assert!(
        found.is_empty(),
        "secrets in the {level}/{format} log ({} bytes):\n{}",
        log.len(),
        found.join("\n")
    );
    eprintln!(
        "log scenario {backend:?} {level}/{format}: {} bytes, {} lines, no secret",
        log.len(),
        log.lines().count()
    );
}

// ---- 2. the admin token -------------------------------------------------------------------------

/// Routes checked even if the OpenAPI document forgot them.
const ADMIN_ROUTES: [(&str, &str); 4] = [
    ("GET", "/metrics"),
    ("GET", "/admin/v1/openapi.json"),
    ("GET", "/admin/v1/customers"),
    ("POST", "/admin/v1/config/reload"),
];

/// Every admin operation (the served OpenAPI document's, plus [`ADMIN_ROUTES`]) refuses every
/// near-miss of the token with a JSON 401 and never runs; health and readiness stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_refuse_anything_but_the_token() {
    let gw = TestGateway::start(Backend::Sqlite).await;
    let url = |path: &str| format!("{}{path}", gw.admin_url);
    for open in ["/healthz", "/readyz"] {
        let response = gw.http.get(url(open)).send().await.expect("open");
        assert_eq!(response.status(), 200, "{open} is open");
    }
    let document: Value = gw
        .http
        .get(url("/admin/v1/openapi.json"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let mut routes: Vec<(String, String)> = ADMIN_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    for (path, methods) in document["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            if operation.get("security").is_some() || path.starts_with("/admin") {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes.sort();
    routes.dedup();
    assert!(routes.len() >= 20, "{} admin operations", routes.len());
    assert!(
        !routes
            .iter()
            .any(|(_, p)| p == "/healthz" || p == "/readyz")
    );

    let t = ADMIN_TOKEN;
    let basic = format!("admin:{t}");
    let refusals: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", String::new())],
        vec![("authorization", "Bearer".into())],
        vec![("authorization", "Bearer ".into())],
        vec![("authorization", t.into())],
        vec![("authorization", format!("bearer {t}"))],
        vec![("authorization", format!("BEARER {t}"))],
        vec![("authorization", format!("Bearer {}", t.to_uppercase()))],
        vec![("authorization", format!("Bearer  {t}"))],
        vec![("authorization", format!("Bearer\t{t}"))],
        vec![("authorization", format!("Bearer x{t}"))],
        vec![("authorization", format!("Bearer {t}x"))],
        vec![("authorization", format!("Bearer {}", &t[..t.len() - 1]))],
        vec![("authorization", format!("Bearer {}", &t[1..]))],
        vec![("authorization", format!("Bearer {}X", &t[..t.len() - 1]))],
        vec![("authorization", format!("Bearer {t}{t}"))],
        vec![("authorization", format!("Basic {t}"))],
        vec![(
            "authorization",
            format!("Basic {}", base64(basic.as_bytes())),
        )],
        vec![("authorization", format!("Token {t}"))],
        vec![("x-admin-token", t.into())],
        vec![("cookie", format!("token={t}"))],
    ];
    let mut checked = 0;
    for (method, path) in &routes {
        let concrete = path.replace("{id}", "1");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        for headers in &refusals {
            for query in ["", "?token=", "?access_token="] {
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("{query}{t}")
                };
                let mut request = gw
                    .http
                    .request(method.clone(), url(&format!("{concrete}{query}")));
                for (name, value) in headers {
                    request = request.header(*name, value);
                }
                if method == Method::POST {
                    request = request
                        .header("content-type", "application/json")
                        .body("{}");
                }
                let response = request.send().await.expect("admin call");
                let status = response.status();
                let body = response.text().await.expect("body");
                assert_eq!(
                    status, 401,
                    "{method} {path}{query} with {headers:?}: {body}"
                );
                let body: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{method} {path}: a JSON refusal ({e}): {body}"));
                assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
                assert!(
                    !body.to_string().contains(t),
                    "the refusal never echoes the token"
                );
                checked += 1;
            }
        }
    }
    // Nothing ran: no customer, credit or reload happened.
    let books = books(&gw).await;
    assert_eq!(books.customers.len(), 1, "only the harness customer exists");
    assert_eq!(books.customers[0].2, 1, "only its deposit is in the ledger");
    let audit = gw.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(audit.0, 200);
    assert!(
        !audit.1.to_string().contains("reload"),
        "no reload was audited: {}",
        audit.1
    );
    // The right token is accepted on every route (it may then refuse the fake input).
    for (method, path) in &routes {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let response = gw
            .http
            .request(method.clone(), url(&path.replace("{id}", "1")))
            .bearer_auth(t)
            .send()
            .await
            .expect("admin call");
        assert_ne!(response.status(), 401, "{method} {path} with the token");
        assert_ne!(response.status(), 405, "{method} {path} is routed");
    }
    eprintln!(
        "admin token: {} routes, {checked} refused calls",
        routes.len()
    );
    gw.finish().await;
}

/// RFC 4648 base64, for a `Basic` header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- 3. isolation -------------------------------------------------------------------------------

const OTHER_KEY: &str = "security-other-customer-key-01";

/// The item about `id` in a multi reply (an array of `{"order"|"refill": id, ...}`, or multi
/// status's `{"<id>": item}`), with the id itself set aside.
fn item_for(reply: &Value, id: u64) -> Value {
    match reply {
        Value::Array(items) => {
            let names_id =
                |v: &Value| v.as_u64() == Some(id) || v.as_str() == Some(&id.to_string());
            let mut item = items
                .iter()
                .find(|item| names_id(&item["order"]) || names_id(&item["refill"]))
                .unwrap_or_else(|| panic!("an item for {id} in {reply}"))
                .clone();
            if let Some(object) = item.as_object_mut() {
                object.retain(|_, value| !names_id(value));
            }
            item
        }
        Value::Object(map) => map
            .get(&id.to_string())
            .unwrap_or_else(|| panic!("an item for {id} in {reply}"))
            .clone(),
        other => panic!("not a multi reply: {other}"),
    }
}

/// Customer A (the harness customer) names customer B's orders and refills in every action,
/// single and multi: every answer is exactly the answer for an id that does not exist, and
/// nothing of B's changes, locally or upstream.
async fn customers_cannot_touch_each_others_orders(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    gw.set_outcomes("alpha", 1, Outcomes::always_completed());
    let b = gw
        .create_customer("b", OTHER_KEY, Money::from_units(100 * 100_000))
        .await;
    let add_b = |link: &'static str| {
        let gw = &gw;
        async move {
            let reply = gw
                .call(
                    OTHER_KEY,
                    "add",
                    &[("service", "1"), ("link", link), ("quantity", "1000")],
                )
                .await;
            reply["order"].as_u64().expect("B's order")
        }
    };
    // B: one order completed (and refilled), one still pending upstream (cancelable).
    let done = add_b("https://instagram.com/p/b-done").await;
    let _ = gw.wait_forwarded(smm_store::OrderId(done as i64)).await;
    gw.alpha().advance(Duration::from_secs(7 * 24 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    let status = gw
        .call(OTHER_KEY, "status", &[("order", &done.to_string())])
        .await;
    assert_eq!(status["status"], "Completed", "{status}");
    let refill = gw
        .call(OTHER_KEY, "refill", &[("order", &done.to_string())])
        .await;
    let refill: u64 = refill["refill"]
        .as_str()
        .expect("B's refill")
        .parse()
        .expect("digits");
    let pending = add_b("https://instagram.com/p/b-pending").await;
    let _ = gw.wait_forwarded(smm_store::OrderId(pending as i64)).await;
    // And one of A's own, so A's multi replies mix found and not found.
    let own = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/a-own"),
            ("quantity", "1000"),
        ])
        .await
        .0 as u64;

    // B's own refill goes upstream now, before the attempts.
    gw.reconcile().await;
    let before = books(&gw).await;
    let upstream_before = gw.alpha().requests().len();
    let missing_order: u64 = 999_999_999;
    let missing_refill: u64 = 888_888_888;
    let mut compared = 0;
    for (action, field, victims, missing) in [
        ("status", "order", vec![done, pending], missing_order),
        ("refill", "order", vec![done, pending], missing_order),
        ("cancel", "order", vec![done, pending], missing_order),
        ("refill_status", "refill", vec![refill], missing_refill),
    ] {
        let multi_field = format!("{field}s");
        for victim in victims {
            // Single.
            let theirs = gw.api(action, &[(field, &victim.to_string())]).await;
            let nobodys = gw.api(action, &[(field, &missing.to_string())]).await;
            assert_eq!(theirs, nobodys, "{action} {field}={victim} (B's)");
            assert!(theirs["error"].is_string(), "{action}: {theirs}");
            // Multi, alone and among A's own order (whose item may differ between calls: a
            // cancel is requested once).
            let theirs = gw.api(action, &[(&multi_field, &victim.to_string())]).await;
            let nobodys = gw
                .api(action, &[(&multi_field, &missing.to_string())])
                .await;
            assert_eq!(
                item_for(&theirs, victim),
                item_for(&nobodys, missing),
                "{action} {multi_field}={victim}"
            );
            let mixed = gw
                .api(action, &[(&multi_field, &format!("{own},{victim}"))])
                .await;
            let mixed_missing = gw
                .api(action, &[(&multi_field, &format!("{own},{missing}"))])
                .await;
            assert_eq!(
                item_for(&mixed, victim),
                item_for(&mixed_missing, missing),
                "{action} {multi_field}={own},{victim}"
            );
            assert!(
                item_for(&mixed, victim).to_string().contains("error"),
                "{mixed}"
            );
            compared += 3;
        }
    }
    let after = books(&gw).await;
    // A's own order may have gained a cancel request or a refill; B's things are untouched.
    let of_b = |books: &Books| {
        (
            books
                .customers
                .iter()
                .find(|c| c.0 == b)
                .cloned()
                .expect("B"),
            books
                .orders
                .iter()
                .filter(|o| o.customer_id == b)
                .cloned()
                .collect::<Vec<_>>(),
            books
                .refills
                .iter()
                .filter(|r| r.customer_id == b)
                .cloned()
                .collect::<Vec<_>>(),
            books
                .cancels
                .iter()
                .filter(|c| c.customer_id == b)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        of_b(&before),
        of_b(&after),
        "B's books and orders are untouched"
    );
    // Only A's own order was acted on upstream, never B's.
    gw.reconcile().await;
    let b_upstream: Vec<String> = after
        .orders
        .iter()
        .filter(|o| o.customer_id == b)
        .filter_map(|o| o.upstream_order_id.clone())
        .collect();
    for request in &gw.alpha().requests()[upstream_before..] {
        if matches!(request.action.as_deref(), Some("refill" | "cancel")) {
            let named: Vec<&str> = ["order", "orders"]
                .iter()
                .filter_map(|k| request.params.get(*k))
                .flat_map(|v| v.split(','))
                .collect();
            assert!(
                !named.iter().any(|id| b_upstream.iter().any(|u| u == id)),
                "B's order reached the upstream: {request:?}"
            );
        }
    }
    eprintln!("isolation {backend:?}: {compared} replies compared");
    gw.assert_ledger_consistent(b).await;
    gw.finish().await;
}

// ---- 4. limits ----------------------------------------------------------------------------------

/// Bodies over `server.body_limit_bytes` (announced or chunked) get a v2 error at once; too many
/// or too large headers get a 431 and the server stays up; more than 100 ids is a v2 error. None
/// of it writes anything.
async fn size_limits_hold_and_change_nothing(backend: Backend) {
    let gw = TestGateway::start_with(backend, |s| s.server.body_read_timeout_secs = 2).await;
    let addr = gw.gateway().addr;
    let limit = gw.app().settings().server.body_limit_bytes;
    let before = books(&gw).await;
    let too_large = error_reply("Request body too large or unreadable");

    // An add just over the limit: form, then chunked (no length announced).
    let big_link = format!("https://instagram.com/p/{}", "a".repeat(limit));
    let form = [
        ("key", KEY),
        ("action", "add"),
        ("service", "1"),
        ("link", big_link.as_str()),
        ("quantity", "100"),
    ];
    let (status, _, body) = gw.post_form(&form).await;
    assert_eq!((status.as_u16(), json(&body)), (200, too_large.clone()));
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut chunked = b"POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for chunk in encoded.as_bytes().chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (reply, _) = send_raw(addr, &chunked, Duration::from_secs(10)).await;
    assert_eq!(
        status_of(&reply),
        Some(200),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        body_of(&reply).contains("Request body too large or unreadable"),
        "chunked: {}",
        String::from_utf8_lossy(&reply)
    );
    // A length far over the limit, with the body never sent: refused on the announced length
    // alone, without waiting for the body.
    let started = Instant::now();
    let (reply, _) = send_raw(
        addr,
        b"POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999999999\r\n\r\nkey=x",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        status_of(&reply),
        Some(200),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(json(&body_of(&reply)), too_large);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once, not after the 2 s body deadline: {:?}",
        started.elapsed()
    );

    // Headers: too many, one too large, all too large together.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let large = format!("X-Big: {}\r\n", "b".repeat(70 * 1024));
    let several: String = (0..20)
        .map(|i| format!("X-S{i}: {}\r\n", "s".repeat(4000)))
        .collect();
    for (what, headers) in [
        ("150 headers", many),
        ("a 70 KiB header", large),
        ("80 KB of headers", several),
    ] {
        let request = format!(
            "POST /api/v2 HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 25\r\n\r\nkey={KEY}&action=balance"
        );
        let (reply, closed) = send_raw(addr, request.as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(
            status_of(&reply),
            Some(431),
            "{what}: {}",
            String::from_utf8_lossy(&reply)
        );
        assert!(closed, "{what}: the connection is closed after a 431");
    }
    // Still serving.
    assert!(gw.api("balance", &[]).await["balance"].is_string());

    // Ids: 100 are fine, 101 are a v2 error for every action that takes a list.
    let hundred: Vec<String> = (1..=100).map(|i| (900_000 + i).to_string()).collect();
    let hundred_one: Vec<String> = (1..=101).map(|i| (900_000 + i).to_string()).collect();
    for (action, field) in [
        ("status", "orders"),
        ("refill", "orders"),
        ("cancel", "orders"),
        ("refill_status", "refills"),
    ] {
        let ok = gw.api(action, &[(field, &hundred.join(","))]).await;
        assert!(ok.get("error").is_none(), "{action} with 100 ids: {ok}");
        let too_many = gw.api(action, &[(field, &hundred_one.join(","))]).await;
        assert_eq!(
            too_many,
            error_reply("Too many IDs: at most 100 per request"),
            "{action} with 101 ids"
        );
        // 101 ids of which one repeats are 100 distinct ids: fine.
        let mut repeated = hundred.clone();
        repeated.push(hundred[0].clone());
        let ok = gw.api(action, &[(field, &repeated.join(","))]).await;
        assert!(
            ok.get("error").is_none(),
            "{action} with a repeated id: {ok}"
        );
    }

    assert_eq!(books(&gw).await, before, "nothing was written");
    gw.finish().await;
}

/// Over `server.rate_limit_per_minute`, a customer gets the v2 rate-limit error at once (an
/// `add` among them places nothing); another customer is served meanwhile.
async fn rate_limit_answers_at_once_with_a_v2_error(backend: Backend) {
    const LIMIT: u32 = 20;
    let gw = TestGateway::start_with(backend, |s| s.server.rate_limit_per_minute = LIMIT).await;
    gw.create_customer("other", OTHER_KEY, Money::from_units(100_000))
        .await;
    let mut served = 0;
    let mut limited_at = None;
    // A minute boundary may reset the window once: at most 2 × LIMIT requests get through.
    for i in 0..(2 * LIMIT + 1) {
        let started = Instant::now();
        let reply = gw.api("balance", &[]).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered at once"
        );
        if reply == error_reply("Too many requests, please slow down") {
            limited_at = Some(i);
            break;
        }
        assert!(reply["balance"].is_string(), "{reply}");
        served += 1;
    }
    let limited_at = limited_at.expect("the limit answered with a v2 error");
    assert!(served >= LIMIT, "{served} served before the limit");
    let before = books(&gw).await;
    let started = Instant::now();
    let reply = gw
        .add(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/limited"),
            ("quantity", "100"),
        ])
        .await;
    if reply != error_reply("Too many requests, please slow down") {
        // Only if the minute just turned: then the order is real; nothing to check here.
        assert!(
            now_ms() % 60_000 < 5_000,
            "an add past the limit was served: {reply}"
        );
    } else {
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(books(&gw).await, before, "a limited add places nothing");
    }
    let other = gw.call(OTHER_KEY, "balance", &[]).await;
    assert!(
        other["balance"].is_string(),
        "another customer is served: {other}"
    );
    eprintln!("rate limit {backend:?}: limited after {limited_at} requests");
    gw.finish().await;
}

// ---- 5. slow clients ----------------------------------------------------------------------------

/// How long until the server closes `stream` (reading and discarding what it sends), while
/// `trickle` is written one byte every `every`; `None` if still open after `limit`.
async fn time_to_close(
    mut stream: TcpStream,
    trickle: &[u8],
    every: Duration,
    limit: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let write = async {
        for byte in trickle.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                // Written into a closed connection: wait for the read side to see it.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(every).await;
        }
    };
    let outcome = tokio::time::timeout(limit, async {
        tokio::select! {
            () = read => {}
            () = write => {}
        }
    })
    .await;
    (outcome.ok().map(|()| started.elapsed()), received)
}

/// With 2 s header and body timeouts: clients trickling headers, sending nothing, idling on a
/// kept-alive connection or trickling a body are all cut off within the bound (the body one with
/// a v2 error), on both listeners, while other clients are served at once meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_are_served() {
    const BOUND: Duration = Duration::from_secs(2);
    const SLACK: Duration = Duration::from_secs(4);
    let gw = TestGateway::start_with(Backend::Sqlite, |s| {
        s.server.header_read_timeout_secs = 2;
        s.server.body_read_timeout_secs = 2;
    })
    .await;
    let addr = gw.gateway().addr;
    let admin_addr = gw.gateway().admin_addr.expect("admin");
    let before = books(&gw).await;
    let head_trickle = b"POST /api/v2 HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let every = Duration::from_millis(100);

    // 40 slow-header clients on the API, 5 on the admin listener, 5 silent ones.
    let mut slow = Vec::new();
    for i in 0..50 {
        let target = if i % 10 == 9 { admin_addr } else { addr };
        let stream = TcpStream::connect(target).await.expect("connect");
        let trickle: &'static [u8] = if i % 10 == 8 { b"" } else { head_trickle };
        slow.push(tokio::spawn(async move {
            if trickle.is_empty() {
                let started = Instant::now();
                let mut stream = stream;
                let mut buf = Vec::new();
                let closed =
                    tokio::time::timeout(BOUND + SLACK, stream.read_to_end(&mut buf)).await;
                (closed.ok().map(|_| started.elapsed()), buf)
            } else {
                time_to_close(stream, trickle, every, BOUND + SLACK).await
            }
        }));
    }
    // Meanwhile, ordinary requests are answered at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        assert!(gw.api("balance", &[]).await["balance"].is_string());
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "served at once meanwhile: {took:?}"
        );
        slowest = slowest.max(took);
        let health = gw
            .http
            .get(format!("{}/healthz", gw.admin_url))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
    }
    let mut cut = Vec::new();
    for task in slow {
        let (closed, received) = task.await.expect("slow client");
        let closed = closed.expect("a slow client is cut off within the bound");
        assert!(
            closed >= BOUND - Duration::from_millis(200),
            "not before the bound: {closed:?}"
        );
        assert!(
            received.is_empty() || status_of(&received) == Some(408),
            "a slow head gets no reply (or a 408): {}",
            String::from_utf8_lossy(&received)
        );
        cut.push(closed);
    }

    // A kept-alive connection that goes quiet after its first request is closed too.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = format!("key={KEY}&action=balance");
    stream
        .write_all(
            format!(
                "POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let started = Instant::now();
    let mut reply = Vec::new();
    let closed = tokio::time::timeout(BOUND + SLACK, stream.read_to_end(&mut reply)).await;
    assert!(closed.is_ok(), "the idle kept-alive connection is closed");
    assert_eq!(status_of(&reply), Some(200));
    assert!(
        body_of(&reply).contains("balance"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(started.elapsed() >= BOUND - Duration::from_millis(200));

    // A body trickled byte by byte: a v2 error once the body deadline passes, then closed.
    let stream = TcpStream::connect(addr).await.expect("connect");
    let head = "POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n";
    let mut trickle = head.as_bytes().to_vec();
    trickle
        .extend_from_slice(format!("key={KEY}&action=add&service=1&quantity=100&link=").as_bytes());
    trickle.extend(std::iter::repeat_n(b'a', 1000));
    let (writer_stream, started) = (stream, Instant::now());
    let (closed, received) = {
        // The head goes at once, the body one byte every 100 ms.
        let mut stream = writer_stream;
        stream.write_all(head.as_bytes()).await.expect("head");
        time_to_close(stream, &trickle[head.len()..], every, BOUND + SLACK).await
    };
    let closed = closed.expect("a slow body is cut off");
    assert!(
        started.elapsed() >= BOUND - Duration::from_millis(200),
        "{closed:?}"
    );
    assert_eq!(
        status_of(&received),
        Some(200),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(
        json(&body_of(&received)),
        error_reply("Request body too large or unreadable")
    );

    assert_eq!(books(&gw).await, before, "nothing was written");
    cut.sort();
    eprintln!(
        "slow clients: {} cut off after {:?}..{:?}; ordinary requests took at most {slowest:?}",
        cut.len(),
        cut.first().expect("some"),
        cut.last().expect("some")
    );
    gw.finish().await;
}
