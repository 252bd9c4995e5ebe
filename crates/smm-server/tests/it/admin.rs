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
    let _ = std::fs::remove_dir_all(&dir);
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
    let _ = std::fs::remove_dir_all(&dir);
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
    assert!(operations >= 24, "{operations} operations documented");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
