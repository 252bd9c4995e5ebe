//! The admin listener (default 127.0.0.1:9090): `/healthz` and `/readyz` for orchestrators,
//! and behind a bearer token `/metrics` (Prometheus) and the `/admin/v1` JSON API.
//!
//! The token comes from `admin.token_env` or `admin.token_file`; without one, every protected
//! endpoint answers 503, so a forgotten token never means an open door. Tokens are compared in
//! constant time.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use smm_store::{ForwardState, OrderFilter};

use crate::app::{App, now_ms};
use crate::metrics::label_text;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/providers", get(providers))
        .route("/admin/v1/orders/ambiguous", get(ambiguous))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .with_state(app)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
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
    let Some(expected) = app.admin_token.as_deref() else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
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
            "missing or wrong bearer token",
        ))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and a catalog is loaded.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let database = app.store.ping().await.is_ok();
    let catalog = !app.catalog().is_empty() || app.settings.providers.is_empty();
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
    let mut out = String::new();
    app.metrics.render(&mut out);
    if let Ok(counts) = app.store.count_by_forward_state().await {
        let _ = writeln!(out, "# TYPE smm_orders gauge");
        for (state, n) in &counts {
            let labels = vec![("forward_state", state.as_str().to_owned())];
            let _ = writeln!(out, "smm_orders{} {n}", label_text(&labels, None));
        }
        let ambiguous = counts
            .iter()
            .find(|(s, _)| *s == ForwardState::Ambiguous)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(
            out,
            "# TYPE smm_ambiguous_orders gauge\nsmm_ambiguous_orders {ambiguous}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE smm_catalog_services gauge\nsmm_catalog_services {}",
        app.catalog().enabled().count()
    );
    let now = now_ms();
    for (family, help) in [
        ("smm_provider_available", "gauge"),
        ("smm_provider_cooling_down", "gauge"),
        ("smm_provider_out_of_funds", "gauge"),
        ("smm_provider_sync_age_seconds", "gauge"),
        ("smm_provider_balance", "gauge"),
    ] {
        let _ = writeln!(out, "# TYPE {family} {help}");
        for (name, provider) in &app.providers {
            let labels = vec![("provider", name.clone())];
            let health = provider.health.view();
            let value = match family {
                "smm_provider_available" => u8::from(app.provider_available(name)).to_string(),
                "smm_provider_cooling_down" => u8::from(health.cooling_down).to_string(),
                "smm_provider_out_of_funds" => u8::from(health.out_of_funds).to_string(),
                "smm_provider_sync_age_seconds" => match app.last_sync(name) {
                    Some(at) => ((now - at).max(0) / 1000).to_string(),
                    None => continue,
                },
                _ => match app.last_balance(name) {
                    Some(balance) => balance.to_string(),
                    None => continue,
                },
            };
            let _ = writeln!(out, "{family}{} {value}", label_text(&labels, None));
        }
    }
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}

async fn providers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    let list: Vec<_> = app
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

async fn ambiguous(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&app, &headers) {
        return denied;
    }
    match app
        .store
        .list_orders(&OrderFilter {
            forward_state: Some(ForwardState::Ambiguous),
            limit: 1000,
            ..OrderFilter::default()
        })
        .await
    {
        Ok(orders) => {
            let now = now_ms();
            let list: Vec<_> = orders
                .iter()
                .map(|o| {
                    json!({
                        "order": o.id,
                        "customer": o.customer_id,
                        "age_seconds": (now - o.created_at).max(0) / 1000,
                        "provider": o.provider,
                        "upstream_service": o.upstream_service,
                        "charge": o.charge.to_string(),
                        "link": o.link,
                        "error": o.forward_error,
                    })
                })
                .collect();
            axum::Json(json!({ "orders": list })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
