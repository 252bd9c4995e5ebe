//! The admin listener: health and readiness open, metrics and the admin API behind a bearer
//! token compared in constant time; a missing token configuration closes them (503).

use smm_panel_sim::{Sim, SimConfig};
use smm_server::Gateway;
use smm_wire::Money;

use crate::support::{
    TempDir, funded_customer, one_service_settings, start_gateway, temp_dir, write_file,
};

const TOKEN: &str = "admin-token-for-tests-0123456789";

/// The gateway with its admin listener over a SQLite file in a temp dir of its own (returned:
/// dropping it removes the directory), with the admin token file when `with_token`.
async fn start(with_token: bool) -> (Gateway, smm_panel_sim::SimHandle, TempDir) {
    let sim = Sim::spawn(SimConfig::demo()).await.expect("sim");
    let dir = temp_dir();
    let database = format!("sqlite://{}/admin.db", dir.path().display());
    let mut settings = one_service_settings(&database, &sim.api_url());
    if with_token {
        let file = write_file(dir.path(), "token", &format!("{TOKEN}\n"));
        settings.admin.token_file = Some(file);
    }
    let gateway = start_gateway(settings, true).await;
    (gateway, sim, dir)
}

fn admin_url(gateway: &Gateway, path: &str) -> String {
    let addr = gateway.admin_addr.expect("admin listener");
    format!("http://{addr}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_everything_else_needs_the_token() {
    let (gateway, _sim, dir) = start(true).await;
    let http = reqwest::Client::new();
    let health = http
        .get(admin_url(&gateway, "/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = http
        .get(admin_url(&gateway, "/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(ready["database"], true);
    assert_eq!(ready["catalog_loaded"], true);

    for path in [
        "/metrics",
        "/admin/v1/providers",
        "/admin/v1/orders/ambiguous",
    ] {
        let none = http
            .get(admin_url(&gateway, path))
            .send()
            .await
            .expect("no token");
        assert_eq!(none.status(), 401, "{path}");
        let wrong = http
            .get(admin_url(&gateway, path))
            .bearer_auth("admin-token-for-tests-012345678X")
            .send()
            .await
            .expect("wrong token");
        assert_eq!(wrong.status(), 401, "{path}");
        let short = http
            .get(admin_url(&gateway, path))
            .bearer_auth("admin")
            .send()
            .await
            .expect("short token");
        assert_eq!(short.status(), 401, "{path}");
        let right = http
            .get(admin_url(&gateway, path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("right token");
        assert_eq!(right.status(), 200, "{path}");
    }

    // Traffic shows up in the metrics.
    let store = gateway.app.store.clone();
    funded_customer(
        store.as_ref(),
        "m",
        "metrics-customer-key",
        Money::from_units(10_000_000),
        "test",
        0,
    )
    .await;
    let api = gateway.api_url();
    for form in [
        vec![("key", "metrics-customer-key"), ("action", "balance")],
        vec![("key", "nope"), ("action", "balance")],
        vec![
            ("key", "metrics-customer-key"),
            ("action", "add"),
            ("service", "1"),
            ("link", "https://x.test/p"),
            ("quantity", "100"),
        ],
    ] {
        http.post(&api).form(&form).send().await.expect("v2");
    }
    // The forwarder's call shows up once it has happened.
    let scrape = || async {
        http.get(admin_url(&gateway, "/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut metrics = scrape().await;
    while !metrics.contains("smm_upstream_calls_total{provider=\"alpha\",action=\"add\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "the add was never forwarded:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        metrics = scrape().await;
    }
    for family in [
        "smm_upstream_calls_total{provider=\"alpha\",action=\"add\",outcome=\"ok\"} 1",
        "smm_upstream_call_duration_seconds_bucket{provider=\"alpha\",action=\"add\",le=\"+Inf\"} 1",
        "smm_orders_by_status{status=\"Pending\"} 1",
        "smm_provider_cooling_down{provider=\"alpha\"} 0",
        "smm_provider_out_of_funds{provider=\"alpha\"} 0",
        "smm_requests_total{action=\"balance\",outcome=\"ok\"} 1",
        "smm_requests_total{action=\"balance\",outcome=\"invalid_key\"} 1",
        "smm_requests_total{action=\"add\",outcome=\"ok\"} 1",
        "smm_request_duration_seconds_bucket{action=\"add\",le=\"+Inf\"} 1",
        "smm_orders{forward_state=\"queued\"}",
        "smm_ambiguous_orders 0",
        "smm_catalog_services 1",
        "smm_provider_available{provider=\"alpha\"} 1",
        "smm_provider_sync_age_seconds{provider=\"alpha\"}",
    ] {
        assert!(metrics.contains(family), "missing {family} in:\n{metrics}");
    }
    assert!(!metrics.contains("metrics-customer-key"));
    gateway.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_the_admin_api_is_closed() {
    let (gateway, _sim, dir) = start(false).await;
    let http = reqwest::Client::new();
    let closed = http
        .get(admin_url(&gateway, "/metrics"))
        .bearer_auth("")
        .send()
        .await
        .expect("metrics");
    assert_eq!(closed.status(), 503);
    let closed = http
        .get(admin_url(&gateway, "/admin/v1/providers"))
        .send()
        .await
        .expect("providers");
    assert_eq!(closed.status(), 503);
    assert_eq!(
        http.get(admin_url(&gateway, "/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    gateway.shutdown().await;
    drop(dir);
}

/// The admin API's OpenAPI document is served as generated, matches the committed snapshot
/// (`docs/admin-openapi.json`; `UPDATE_SNAPSHOTS=1` rewrites it), and describes the router
/// exactly: every documented operation exists (never the fallback's 404 or a 405) and refuses
/// a missing or wrong token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_its_snapshot_and_the_router() {
    let document = smm_server::admin::openapi_document();
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&document).expect("json")
    );
    let snapshot =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &text).expect("write the snapshot");
    }
    let committed = std::fs::read_to_string(&snapshot).expect("docs/admin-openapi.json exists");
    assert_eq!(
        committed, text,
        "the admin API changed: review it, then run with UPDATE_SNAPSHOTS=1"
    );

    let (gateway, _sim, dir) = start(true).await;
    let http = reqwest::Client::new();
    let served: serde_json::Value = http
        .get(admin_url(&gateway, "/admin/v1/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert_eq!(served, document);

    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().expect("methods") {
            operations += 1;
            let url = admin_url(&gateway, &path.replace("{id}", "1"));
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let call = |token: Option<&str>| {
                let mut request = http.request(method.clone(), &url);
                if let Some(token) = token {
                    request = request.header("Authorization", token);
                }
                request.send()
            };
            let open = operation.get("security").is_none();
            for token in [
                None,
                Some(String::from("Bearer")),
                Some(format!("Bearer {}", TOKEN.to_uppercase())),
                Some(format!("Bearer {TOKEN}x")),
                Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
                Some(format!("bearer {TOKEN}")),
                Some(format!("Basic {TOKEN}")),
                Some(TOKEN.to_owned()),
            ] {
                let response = call(token.as_deref()).await.expect("call");
                if open {
                    assert_eq!(response.status(), 200, "{method} {path} is open");
                    continue;
                }
                assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
                let body: serde_json::Value = response.json().await.expect("json error");
                assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
            }
            let response = call(Some(&format!("Bearer {TOKEN}"))).await.expect("call");
            let status = response.status();
            let body = response.text().await.expect("body");
            assert_ne!(status, 405, "{method} {path} is routed");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is routed: {body}"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(&body).is_ok()
                    || path == "/metrics"
                    || path == "/healthz",
                "{method} {path} answers JSON: {body}"
            );
        }
    }
    assert!(operations >= 27, "{operations} operations documented");
    gateway.shutdown().await;
    drop(dir);
}

/// One malformed request to a protected admin route.
#[derive(Debug)]
struct Malformed {
    method: reqwest::Method,
    /// Path and query.
    target: String,
    /// Content type and body.
    body: Option<(&'static str, Vec<u8>)>,
    what: String,
}

/// The malformed requests for one documented operation: path ids that are no ids, queries that
/// do not parse (unknown, duplicated or mistyped parameters), bodies that do not parse (not JSON,
/// not an object, unknown or missing fields, every field of the wrong type, no content type,
/// text that is not UTF-8).
fn malformed_requests(
    document: &serde_json::Value,
    path: &str,
    method: &str,
    operation: &serde_json::Value,
) -> Vec<Malformed> {
    use serde_json::{Value, json};
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut out = Vec::new();
    let mut push = |target: String, body: Option<(&'static str, Vec<u8>)>, what: String| {
        out.push(Malformed {
            method: method.clone(),
            target,
            body,
            what,
        });
    };
    let good = path.replace("{id}", "1");
    if path.contains("{id}") {
        for id in ["abc", "1.5", "-", "0x10", "99999999999999999999", "%FF"] {
            push(path.replace("{id}", id), None, format!("path id {id:?}"));
        }
    }
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let query: Vec<&Value> = parameters.iter().filter(|p| p["in"] == "query").collect();
    if !query.is_empty() {
        push(
            format!("{good}?no_such_parameter=1"),
            None,
            "an unknown query parameter".into(),
        );
        for parameter in &query {
            let name = parameter["name"].as_str().expect("name");
            push(
                format!("{good}?{name}=1&{name}=2"),
                None,
                format!("query {name} twice"),
            );
            if parameter["schema"]["type"] == "integer" {
                for value in ["abc", "1.5", "-1%20", "99999999999999999999999"] {
                    push(
                        format!("{good}?{name}={value}"),
                        None,
                        format!("query {name}={value}"),
                    );
                }
            }
        }
    }
    let content = &operation["requestBody"]["content"];
    if let Some(json_body) = content.get("application/json") {
        let reference = json_body["schema"]["$ref"]
            .as_str()
            .expect("a named body schema");
        let name = reference.rsplit('/').next().expect("schema name");
        let schema = &document["components"]["schemas"][name];
        let properties = schema["properties"].as_object().expect("properties");
        let wrong: serde_json::Map<String, Value> = properties
            .iter()
            .map(|(field, property)| {
                let is_string = match &property["type"] {
                    Value::String(t) => t == "string",
                    Value::Array(types) => types.iter().any(|t| t == "string"),
                    _ => false,
                };
                let value = if is_string { json!(12.5) } else { json!("12") };
                (field.clone(), value)
            })
            .collect();
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        assert!(!required.is_empty(), "{name} has required fields");
        for (body, what) in [
            (b"{".to_vec(), "a body that is not JSON"),
            (b"[]".to_vec(), "an array body"),
            (b"\"text\"".to_vec(), "a string body"),
            (b"{}".to_vec(), "a body without its required fields"),
            (
                br#"{"no_such_field": "1"}"#.to_vec(),
                "a body with an unknown field",
            ),
            (
                serde_json::to_vec(&Value::Object(wrong)).expect("json"),
                "a body with every field of the wrong type (a float for a decimal string)",
            ),
        ] {
            push(
                good.clone(),
                Some(("application/json", body)),
                format!("{what} ({name})"),
            );
        }
        push(
            good.clone(),
            Some(("text/plain", b"{}".to_vec())),
            "a JSON body without its content type".into(),
        );
    }
    if content.get("text/plain").is_some() {
        push(
            good,
            Some(("text/plain", vec![0xff, 0xfe, 0x00, 0xc3])),
            "a text body that is not UTF-8".into(),
        );
    }
    out
}

/// Every protected admin route (as documented, so as routed) answers every malformed path, query
/// and body with a 4xx and the JSON envelope `{"error": {"code", "message"}}`, and checks the
/// token first: without it, or with a wrong one, the same malformed request gets the JSON 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_malformed_requests_with_the_envelope_after_the_token() {
    let (gateway, _sim, dir) = start(true).await;
    let http = reqwest::Client::new();
    let document = smm_server::admin::openapi_document();
    let (mut routes, mut with_id, mut with_query, mut with_body, mut cases) = (0, 0, 0, 0, 0);
    for (path, methods) in document["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            if operation.get("security").is_none() {
                continue;
            }
            routes += 1;
            let requests = malformed_requests(&document, path, method, operation);
            with_id += usize::from(requests.iter().any(|r| r.what.starts_with("path")));
            with_query += usize::from(requests.iter().any(|r| r.what.starts_with("query")));
            with_body += usize::from(requests.iter().any(|r| r.body.is_some()));
            for request in requests {
                cases += 1;
                let label = format!("{} {} ({})", request.method, request.target, request.what);
                for token in [
                    None,
                    Some("Bearer nope".to_owned()),
                    Some(format!("Bearer {TOKEN}x")),
                    Some(format!("Bearer {TOKEN}")),
                ] {
                    let mut call =
                        http.request(request.method.clone(), admin_url(&gateway, &request.target));
                    if let Some(token) = &token {
                        call = call.header("Authorization", token);
                    }
                    if let Some((content_type, body)) = &request.body {
                        call = call
                            .header("Content-Type", *content_type)
                            .body(body.clone());
                    }
                    let response = call.send().await.expect("call");
                    let status = response.status().as_u16();
                    let json = response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/json"));
                    let text = response.text().await.expect("body");
                    assert!(json, "{label} with {token:?}: not JSON: {status} {text}");
                    let body: serde_json::Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{label}: {e}: {text}"));
                    let code = body["error"]["code"].as_str().unwrap_or_default();
                    let message = body["error"]["message"].as_str().unwrap_or_default();
                    assert!(!message.is_empty(), "{label}: {text}");
                    if token.as_deref() == Some(&format!("Bearer {TOKEN}")) {
                        assert!((400..500).contains(&status), "{label}: {status} {text}");
                        assert_eq!(code, "invalid_request", "{label}: {text}");
                    } else {
                        assert_eq!(
                            (status, code),
                            (401, "unauthorized"),
                            "{label} with {token:?}: the token comes first: {text}"
                        );
                    }
                }
            }
        }
    }
    // A method no route takes: the envelope too.
    for path in document["paths"].as_object().expect("paths").keys() {
        let response = http
            .patch(admin_url(&gateway, &path.replace("{id}", "1")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("call");
        assert_eq!(response.status(), 405, "PATCH {path}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "method_not_allowed", "PATCH {path}");
    }
    // Every protected route was tried; the counts guard against a document that lost its
    // parameters or bodies.
    assert!(routes >= 25, "{routes} protected routes");
    assert!(with_id >= 14, "{with_id} routes with an id");
    assert!(with_query >= 3, "{with_query} routes with a query");
    assert!(with_body >= 8, "{with_body} routes with a body");
    assert!(cases >= 150, "{cases} malformed requests");
    // Nothing was created or changed by any of them.
    assert!(
        gateway
            .app
            .store
            .list_customers()
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        gateway
            .app
            .store
            .audit_log(10)
            .await
            .expect("audit")
            .is_empty()
    );
    gateway.shutdown().await;
    drop(dir);
}

/// Custom prices through the admin API: a discount and a per-service rate are validated
/// (decimal strings only; a refusal changes nothing), audited with the admin's name, and the
/// v2 API's `services` and `add` follow them at once; removing them restores the list price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_prices_set_through_the_admin_api_reach_services_and_add() {
    use rust_decimal::{Decimal, RoundingStrategy};
    use serde_json::{Value, json};

    let (gateway, _sim, dir) = start(true).await;
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut call = http
            .request(method, admin_url(&gateway, path))
            .bearer_auth(TOKEN)
            .header("X-Admin-Actor", "pricer");
        if let Some(body) = body {
            call = call.json(&body);
        }
        async move {
            let response = call.send().await.expect("admin call");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json reply"))
        }
    };
    let api = gateway.api_url();
    let v2 = |form: Vec<(&'static str, String)>| {
        let call = http.post(&api).form(&form);
        async move {
            call.send()
                .await
                .expect("v2")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let decimal = |v: &Value| -> Decimal {
        v.as_str()
            .unwrap_or_else(|| panic!("a decimal string, got {v}"))
            .parse()
            .expect("decimal")
    };

    let (status, created) = admin(
        reqwest::Method::POST,
        "/admin/v1/customers",
        Some(json!({ "name": "Priced" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["customer"]["id"].as_i64().expect("id");
    let key = created["api_key"].as_str().expect("key").to_owned();
    let path = |action: &str| format!("/admin/v1/customers/{id}/{action}");
    let (status, _) = admin(
        reqwest::Method::POST,
        &path("credit"),
        Some(json!({ "amount": "100", "reason": "prices" })),
    )
    .await;
    assert_eq!(status, 200);

    let (status, preview) = admin(reqwest::Method::GET, &path("prices"), None).await;
    assert_eq!(status, 200, "{preview}");
    let line = preview["services"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["service"] == 1))
        .expect("service 1 in the preview")
        .clone();
    let list = decimal(&line["list_rate"]);
    let cost = decimal(&line["cost"]);
    let up = |d: Decimal| d.round_dp_with_strategy(4, RoundingStrategy::ToPositiveInfinity);
    let services_rate = || {
        let key = key.clone();
        let v2 = &v2;
        async move {
            let reply = v2(vec![("key", key), ("action", "services".into())]).await;
            let service = reply
                .as_array()
                .and_then(|s| s.iter().find(|s| s["service"] == 1))
                .unwrap_or_else(|| panic!("service 1 in {reply}"))
                .clone();
            decimal(&service["rate"])
        }
    };
    assert_eq!(services_rate().await, list, "list price to begin with");
    let pricing = || admin(reqwest::Method::GET, &path("pricing"), None);
    let (status, initial) = pricing().await;
    assert_eq!(status, 200);
    assert_eq!(
        initial,
        json!({ "customer": id, "discount": null, "rates": [] })
    );

    // Refusals change nothing.
    for (action, body, expected) in [
        ("discount", json!({ "discount": 10.5 }), 400),
        ("discount", json!({ "discount": 10 }), 400),
        ("discount", json!({ "discount": "100" }), 400),
        ("discount", json!({ "discount": "0" }), 400),
        ("discount", json!({ "discount": "-5" }), 400),
        ("discount", json!({ "discount": "abc" }), 400),
        ("discount", json!({ "discount": "1e1" }), 400),
        ("discount", json!({ "discount": "1.000001" }), 400),
        ("discount", json!({}), 400),
        ("discount", json!({ "discount": "5", "extra": 1 }), 400),
        ("rates", json!({ "service": 1, "rate": 0.5 }), 400),
        ("rates", json!({ "service": "1", "rate": "0.5" }), 400),
        ("rates", json!({ "service": 1 }), 400),
        ("rates", json!({ "service": 1, "rate": "-1" }), 400),
        ("rates", json!({ "service": 1, "rate": "0" }), 400),
        ("rates", json!({ "service": 1, "rate": "0.000001" }), 400),
        ("rates", json!({ "service": 0, "rate": "1" }), 400),
        ("rates", json!({ "service": 999, "rate": "1" }), 404),
    ] {
        let (status, reply) = admin(reqwest::Method::POST, &path(action), Some(body.clone())).await;
        assert_eq!(status, expected, "{action} {body} → {reply}");
        assert!(reply["error"]["code"].is_string(), "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
    for (method, action, body) in [
        (reqwest::Method::GET, "pricing", None),
        (
            reqwest::Method::POST,
            "discount",
            Some(json!({ "discount": "5" })),
        ),
        (
            reqwest::Method::POST,
            "rates",
            Some(json!({ "service": 1, "rate": "1" })),
        ),
    ] {
        let (status, reply) = admin(
            method,
            &format!("/admin/v1/customers/987654/{action}"),
            body,
        )
        .await;
        assert_eq!(
            (status, &reply["error"]["code"]),
            (404, &json!("not_found")),
            "{action}: {reply}"
        );
    }
    assert_eq!(pricing().await.1, initial, "the refusals changed nothing");
    assert_eq!(services_rate().await, list);

    // A discount: 10 % off (never below cost).
    let (status, set) = admin(
        reqwest::Method::POST,
        &path("discount"),
        Some(json!({ "discount": "10" })),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set,
        json!({ "customer": id, "discount": "10", "rates": [] })
    );
    let discounted = up(list * Decimal::new(9, 1)).max(up(cost));
    assert_eq!(
        services_rate().await,
        discounted,
        "the discount applies at once"
    );
    assert_ne!(
        discounted, list,
        "the demo service leaves room for a discount"
    );

    // A custom rate for service 1 wins over the discount, in services and in add.
    let custom = up(cost) + Decimal::new(1, 4);
    assert_ne!(custom, discounted);
    let (status, set) = admin(
        reqwest::Method::POST,
        &path("rates"),
        Some(json!({ "service": 1, "rate": custom.to_string() })),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set,
        json!({ "customer": id, "discount": "10", "rates": [{ "service": 1, "rate": custom.normalize().to_string() }] })
    );
    assert_eq!(
        services_rate().await,
        custom,
        "the custom rate applies at once"
    );
    let (_, preview) = admin(reqwest::Method::GET, &path("prices"), None).await;
    let previewed = preview["services"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["service"] == 1))
        .map(|l| decimal(&l["rate"]));
    assert_eq!(previewed, Some(custom), "the preview agrees: {preview}");

    let before =
        decimal(&v2(vec![("key", key.clone()), ("action", "balance".into())]).await["balance"]);
    let added = v2(vec![
        ("key", key.clone()),
        ("action", "add".into()),
        ("service", "1".into()),
        ("link", "https://x.test/priced".into()),
        ("quantity", "100".into()),
    ])
    .await;
    let order = added["order"]
        .as_u64()
        .unwrap_or_else(|| panic!("an order: {added}"));
    let charge = (custom * Decimal::from(100) / Decimal::from(1000))
        .round_dp_with_strategy(5, RoundingStrategy::ToPositiveInfinity);
    let after =
        decimal(&v2(vec![("key", key.clone()), ("action", "balance".into())]).await["balance"]);
    assert_eq!(before - after, charge, "add charges the custom rate");
    let (status, detail) = admin(
        reqwest::Method::GET,
        &format!("/admin/v1/orders/{order}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(decimal(&detail["order"]["charge"]), charge);

    // Removing them restores the discount, then the list price.
    let (status, set) = admin(
        reqwest::Method::POST,
        &path("rates"),
        Some(json!({ "service": 1, "rate": null })),
    )
    .await;
    assert_eq!((status, &set["rates"]), (200, &json!([])), "{set}");
    assert_eq!(services_rate().await, discounted);
    let (status, set) = admin(
        reqwest::Method::POST,
        &path("discount"),
        Some(json!({ "discount": null })),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set, initial);
    assert_eq!(services_rate().await, list);

    // Audited under the admin's name, with before and after.
    let (_, audit) = admin(reqwest::Method::GET, "/admin/v1/audit?limit=100", None).await;
    let target = format!("customer:{id}");
    let rows: Vec<&Value> = audit["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["target"] == target.as_str())
        .collect();
    let count = |action: &str| rows.iter().filter(|a| a["action"] == action).count();
    assert_eq!(count("customer.discount"), 2, "{rows:?}");
    assert_eq!(count("customer.rate"), 2, "{rows:?}");
    assert!(
        rows.iter().all(|a| a["actor"] == "admin:pricer"),
        "{rows:?}"
    );
    let discount_set = rows
        .iter()
        .rfind(|a| a["action"] == "customer.discount")
        .expect("the first discount change");
    assert!(
        discount_set["after"]
            .as_str()
            .is_some_and(|a| a.contains("10")),
        "{discount_set}"
    );
    gateway.shutdown().await;
    drop(dir);
}
