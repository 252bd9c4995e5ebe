//! The admin listener (default 127.0.0.1:9090): `/healthz` and `/readyz` for orchestrators,
//! and behind a bearer token `/metrics` (Prometheus) and the `/admin/v1` JSON API.
//!
//! The token comes from `admin.token_env` or `admin.token_file`; without one, every protected
//! endpoint answers 503, so a forgotten token never means an open door. Tokens are compared in
//! constant time.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use smm_store::CustomerStatus;

use crate::app::{App, redacted_sections};
use crate::config::{ConfigError, Settings};
use crate::ops::{OpError, Ops, OrderSearch};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/admin/v1/providers", get(providers))
        .route(
            "/admin/v1/customers",
            get(list_customers).post(create_customer),
        )
        .route("/admin/v1/customers/{id}", get(customer))
        .route("/admin/v1/customers/{id}/ledger", get(ledger))
        .route("/admin/v1/customers/{id}/credit", post(credit))
        .route("/admin/v1/customers/{id}/debit", post(debit))
        .route("/admin/v1/customers/{id}/rotate-key", post(rotate_key))
        .route("/admin/v1/customers/{id}/suspend", post(suspend))
        .route("/admin/v1/customers/{id}/activate", post(activate))
        .route("/admin/v1/customers/{id}/prices", get(prices))
        .route("/admin/v1/orders", get(search_orders))
        .route("/admin/v1/orders/ambiguous", get(ambiguous))
        .route("/admin/v1/orders/{id}", get(order))
        .route("/admin/v1/orders/{id}/attach", post(attach))
        .route(
            "/admin/v1/orders/{id}/cancel-ambiguous",
            post(cancel_ambiguous),
        )
        .route("/admin/v1/config", get(config_current))
        .route("/admin/v1/config/validate", post(config_validate))
        .route("/admin/v1/config/reload", post(config_reload))
        .route("/admin/v1/audit", get(audit))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(app)
}

/// Every admin error has one shape: `{"error": {"code": "...", "message": "..."}}` (plus
/// `problems` for a refused configuration).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

fn op_error(e: &OpError) -> Response {
    let status = match e {
        OpError::NotFound(_) => StatusCode::NOT_FOUND,
        OpError::Invalid(_) => StatusCode::BAD_REQUEST,
        OpError::Conflict(_) => StatusCode::CONFLICT,
        OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.code(), &e.to_string())
}

fn reply<T: serde::Serialize>(result: Result<T, OpError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => op_error(&e),
    }
}

/// The extracted value, or a return with the envelope's 400 for a body or query that does not
/// parse (unknown fields, a number where a decimal string belongs, ...).
macro_rules! accepted {
    ($extracted:expr) => {
        match $extracted {
            Ok(value) => value,
            Err(rejection) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &rejection.body_text(),
                );
            }
        }
    };
}

/// Equal length and equal bytes, without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Some(refusal)` unless the request carries the right token.
fn authorize(app: &App, headers: &HeaderMap) -> Option<Response> {
    let runtime = app.runtime();
    let Some(expected) = runtime.admin_token.as_deref() else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_disabled",
            "admin token not configured (admin.token_env or admin.token_file)",
        ));
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ))
    }
}

/// Who did it, for the audit log: `admin:` and the `X-Admin-Actor` header (a person's name;
/// the token itself has no identity), or `admin:api`.
fn actor(headers: &HeaderMap) -> String {
    let name: String = headers
        .get("x-admin-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("api")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        .take(64)
        .collect();
    format!("admin:{}", if name.is_empty() { "api" } else { &name })
}

/// Checks the token, then runs `f` with the operations bound to this request's actor.
macro_rules! with_ops {
    ($app:expr, $headers:expr, |$ops:ident| $body:expr) => {{
        if let Some(denied) = authorize(&$app, &$headers) {
            return denied;
        }
        let settings = $app.settings();
        let actor = actor(&$headers);
        let $ops = Ops {
            store: $app.store.as_ref(),
            settings: &settings,
            actor: &actor,
        };
        $body
    }};
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and a catalog is loaded.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let database = app.store.ping().await.is_ok();
    let catalog = !app.catalog().is_empty() || app.settings().providers.is_empty();
    let status = if database && catalog {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "database": database, "catalog_loaded": catalog })),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    let out = crate::metrics::render(&app).await;
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        out,
    )
        .into_response()
}

async fn providers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    let runtime = app.runtime();
    let list: Vec<_> = runtime
        .providers
        .iter()
        .map(|(name, p)| {
            let health = p.health.view();
            json!({
                "name": name,
                "enabled": p.enabled,
                "available": app.provider_available(name),
                "consecutive_failures": health.consecutive_failures,
                "cooling_down": health.cooling_down,
                "out_of_funds": health.out_of_funds,
                "last_sync_ms": app.last_sync(name),
                "balance": app.last_balance(name).map(|b| b.to_string()),
            })
        })
        .collect();
    axum::Json(json!({ "providers": list })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomerBody {
    name: String,
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    /// A decimal string (`"12.5"`); numbers are refused so no float ever carries money.
    amount: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    provider: String,
    upstream_order: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Paging {
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list_customers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    with_ops!(app, headers, |ops| reply(
        ops.list_customers()
            .await
            .map(|list| json!({ "customers": list }))
    ))
}

async fn create_customer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<axum::Json<NewCustomerBody>, JsonRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let axum::Json(body) = accepted!(body);
        match ops
            .create_customer(&body.name, body.currency.as_deref())
            .await
        {
            Ok(created) => (StatusCode::CREATED, axum::Json(created)).into_response(),
            Err(e) => op_error(&e),
        }
    })
}

async fn customer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    with_ops!(app, headers, |ops| reply(ops.customer(id).await))
}

async fn ledger(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let Query(paging) = accepted!(paging);
        reply(
            ops.ledger(id, paging.before, paging.limit.unwrap_or(100))
                .await
                .map(|entries| json!({ "ledger": entries })),
        )
    })
}

async fn change_balance(
    app: Arc<App>,
    headers: HeaderMap,
    id: i64,
    credit: bool,
    body: Result<axum::Json<AmountBody>, JsonRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let axum::Json(body) = accepted!(body);
        reply(
            ops.change_balance(id, credit, &body.amount, &body.reason)
                .await,
        )
    })
}

async fn credit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<axum::Json<AmountBody>, JsonRejection>,
) -> Response {
    change_balance(app, headers, id, true, body).await
}

async fn debit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<axum::Json<AmountBody>, JsonRejection>,
) -> Response {
    change_balance(app, headers, id, false, body).await
}

async fn rotate_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let response = with_ops!(app, headers, |ops| reply(ops.rotate_key(id).await));
    app.invalidate_keys();
    response
}

async fn set_status(
    app: Arc<App>,
    headers: HeaderMap,
    id: i64,
    status: CustomerStatus,
) -> Response {
    let response = with_ops!(app, headers, |ops| reply(ops.set_status(id, status).await));
    app.invalidate_keys();
    response
}

async fn suspend(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    set_status(app, headers, id, CustomerStatus::Suspended).await
}

async fn activate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    set_status(app, headers, id, CustomerStatus::Active).await
}

async fn prices(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    with_ops!(app, headers, |ops| {
        let catalog = app.catalog();
        reply(
            ops.price_list(id, &catalog)
                .await
                .map(|lines| json!({ "customer": id, "services": lines })),
        )
    })
}

async fn search_orders(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    search: Result<Query<OrderSearch>, QueryRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let Query(search) = accepted!(search);
        reply(
            ops.search_orders(&search)
                .await
                .map(|orders| json!({ "orders": orders })),
        )
    })
}

async fn ambiguous(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    with_ops!(app, headers, |ops| reply(
        ops.ambiguous_orders()
            .await
            .map(|orders| json!({ "orders": orders }))
    ))
}

async fn order(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    with_ops!(app, headers, |ops| reply(ops.order(id).await))
}

async fn attach(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<axum::Json<AttachBody>, JsonRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let axum::Json(body) = accepted!(body);
        reply(ops.attach(id, &body.provider, &body.upstream_order).await)
    })
}

async fn cancel_ambiguous(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<axum::Json<ReasonBody>, JsonRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let axum::Json(body) = accepted!(body);
        let result = ops.cancel_ambiguous(id, &body.reason).await;
        if result.is_ok() {
            app.metrics.refund("ambiguous_canceled");
        }
        reply(result.map(|refund| json!({ "order": id, "refunded": refund })))
    })
}

async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Response {
    with_ops!(app, headers, |ops| {
        let limit = paging.ok().and_then(|Query(p)| p.limit).unwrap_or(100);
        reply(
            ops.audit(limit)
                .await
                .map(|entries| json!({ "audit": entries })),
        )
    })
}

/// The running configuration (database password masked; provider keys are never in it).
async fn config_current(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    let runtime = app.runtime();
    axum::Json(json!({
        "version": runtime.version,
        "retired_providers": runtime.retired,
        "settings": redacted_sections(&runtime.settings),
    }))
    .into_response()
}

fn problems_json(problems: &[String]) -> Value {
    json!(problems)
}

/// Checks a candidate config (the TOML text of a config file, layered over the defaults and the
/// environment exactly as a reload would read it). Changes nothing.
async fn config_validate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    let problems: Vec<String> = match Settings::load_str(&body) {
        Ok(candidate) => candidate
            .validate()
            .iter()
            .map(ToString::to_string)
            .collect(),
        Err(ConfigError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    };
    axum::Json(json!({ "valid": problems.is_empty(), "problems": problems_json(&problems) }))
        .into_response()
}

/// Re-reads the configuration from its file and environment and swaps it in, or changes
/// nothing and lists every problem (422).
async fn config_reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    match app.reload_from_source(&actor(&headers)).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "error": {
                    "code": "invalid_config",
                    "message": "configuration not reloaded: the running configuration stays",
                    "problems": problems_json(&problems),
                }
            })),
        )
            .into_response(),
    }
}

async fn openapi(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    axum::Json(openapi_document()).into_response()
}

/// One documented endpoint.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    /// The JSON request body's fields (`name: type`), or `text` for a raw body.
    body: &'static [&'static str],
    query: &'static [&'static str],
    /// Success status.
    status: u16,
}

/// Every endpoint of the admin listener: the router and this table are checked against each
/// other by the OpenAPI snapshot test (`tests/admin.rs`).
const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "get",
        path: "/healthz",
        summary: "Alive (no token).",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/readyz",
        summary: "Database reachable and catalog loaded (no token).",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/openapi.json",
        summary: "This document.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/providers",
        summary: "Providers: health, cooldown, balance, last sync.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/customers",
        summary: "Every customer.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/customers",
        summary: "Create a customer; the API key is in the reply, once.",
        body: &["name: string", "currency: string?"],
        query: &[],
        status: 201,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/customers/{id}",
        summary: "One customer.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/customers/{id}/ledger",
        summary: "Ledger rows, newest first.",
        body: &[],
        query: &["before: integer", "limit: integer"],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/customers/{id}/credit",
        summary: "Add money (a deposit ledger row). Audited.",
        body: &["amount: string", "reason: string"],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/customers/{id}/debit",
        summary: "Take money (an adjustment row), never below zero. Audited.",
        body: &["amount: string", "reason: string"],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/customers/{id}/rotate-key",
        summary: "Replace the API key; the new key is in the reply, once. Audited.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/customers/{id}/suspend",
        summary: "Refuse every request of the customer. Audited.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/customers/{id}/activate",
        summary: "Lift a suspension. Audited.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/customers/{id}/prices",
        summary: "Preview the customer's price list with costs and disabled services.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/orders",
        summary: "Search orders, newest first.",
        body: &[],
        query: &[
            "customer: integer",
            "status: string",
            "forward_state: string",
            "provider: string",
            "link: string",
            "before: integer",
            "limit: integer",
        ],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/orders/ambiguous",
        summary: "Orders whose upstream outcome is unknown, oldest first.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/orders/{id}",
        summary: "One order with its upstream attempts.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/orders/{id}/attach",
        summary: "Resolve an ambiguous order found upstream. Audited.",
        body: &["provider: string", "upstream_order: string"],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/orders/{id}/cancel-ambiguous",
        summary: "Resolve an ambiguous order not upstream: cancel with a full refund. Audited.",
        body: &["reason: string"],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/config",
        summary: "The running configuration (secrets masked) and its version.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/config/validate",
        summary: "Validate a candidate config (TOML body); changes nothing.",
        body: &["text"],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "post",
        path: "/admin/v1/config/reload",
        summary: "Reload the config from its file and environment; 422 with every problem if invalid (nothing changes). Audited.",
        body: &[],
        query: &[],
        status: 200,
    },
    Endpoint {
        method: "get",
        path: "/admin/v1/audit",
        summary: "The audit log, newest first.",
        body: &[],
        query: &["limit: integer"],
        status: 200,
    },
];

fn schema_of(ty: &str) -> (Value, bool) {
    let (ty, required) = match ty.strip_suffix('?') {
        Some(ty) => (ty, false),
        None => (ty, true),
    };
    (json!({ "type": ty }), required)
}

/// The OpenAPI 3.1 document of the admin listener, generated from [`ENDPOINTS`].
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for e in ENDPOINTS {
        let mut parameters: Vec<Value> = e
            .query
            .iter()
            .map(|q| {
                let (name, ty) = q.split_once(": ").unwrap_or((q, "string"));
                json!({ "name": name, "in": "query", "required": false, "schema": schema_of(ty).0 })
            })
            .collect();
        if e.path.contains("{id}") {
            parameters.insert(
                0,
                json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }),
            );
        }
        let mut operation = json!({
            "summary": e.summary,
            "responses": {
                e.status.to_string(): { "description": "success", "content": { "application/json": {} } },
                "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if e.body == ["text"] {
            operation["requestBody"] = json!({ "required": true, "content": { "text/plain": { "schema": { "type": "string" } } } });
        } else if !e.body.is_empty() {
            let mut properties = serde_json::Map::new();
            let mut required = Vec::new();
            for field in e.body {
                let (name, ty) = field.split_once(": ").unwrap_or((field, "string"));
                let (schema, needed) = schema_of(ty);
                properties.insert(name.to_owned(), schema);
                if needed {
                    required.push(name);
                }
            }
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": {
                    "type": "object", "properties": properties, "required": required,
                    "additionalProperties": false,
                } } },
            });
        }
        if !matches!(e.path, "/healthz" | "/readyz") {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        let entry = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        entry[e.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "smm-gateway admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin listener of smm-gateway. Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>`. Mutating calls are audited; name yourself with `X-Admin-Actor`. Money is always a decimal string.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": { "type": "string", "enum": ["unauthorized", "admin_disabled", "not_found", "invalid_request", "conflict", "unavailable", "invalid_config"] },
                            "message": { "type": "string" },
                            "problems": { "type": "array", "items": { "type": "string" } },
                        },
                    } },
                },
            },
        },
    })
}
