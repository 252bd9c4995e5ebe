//! `/admin/v1` endpoints of the notifications (issue #14): a customer's webhook (set with a
//! secret shown once, removed, resumed), their low-balance threshold, their events and delivery
//! log, a resend; and the reseller's alert conditions on now.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AdminAuth, ApiJson, ApiPath, ApiQuery, ErrorBody, Paging, Reply, required_nullable};
use crate::app::App;
use crate::ops::notifications::{
    AlertView, WebhookDeliveryView, WebhookEventView, WebhookView, WebhookWithSecret,
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookBody {
    /// Where the customer's events go (http or https); each set makes a new signing secret.
    url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LowBalanceBody {
    /// A positive decimal string; `null` removes it.
    #[serde(deserialize_with = "required_nullable")]
    #[schema(required = true)]
    threshold: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WebhookEvents {
    events: Vec<WebhookEventView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WebhookDeliveries {
    deliveries: Vec<WebhookDeliveryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Alerts {
    alerts: Vec<AlertView>,
}

/// The customer's webhook (never its secret).
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}/webhook",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = WebhookView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn webhook(auth: AdminAuth, ApiPath(id): ApiPath<i64>) -> Reply<WebhookView> {
    Ok(Json(auth.ops().webhook(id).await?))
}

/// Point the customer's events at a URL, with a new signing secret shown only in this reply;
/// lifts a pause. Audited (the URL, never the secret).
#[utoipa::path(
    put,
    path = "/admin/v1/customers/{id}/webhook",
    params(("id" = i64, Path, description = "customer id")),
    request_body = WebhookBody,
    responses(
        (status = 200, description = "the webhook and its secret", body = WebhookWithSecret),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn set_webhook(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Reply<WebhookWithSecret> {
    Ok(Json(auth.ops().set_webhook(id, &body.url).await?))
}

/// Remove the customer's webhook; events not yet delivered are discarded. Audited.
#[utoipa::path(
    delete,
    path = "/admin/v1/customers/{id}/webhook",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = WebhookView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn clear_webhook(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
) -> Reply<WebhookView> {
    Ok(Json(auth.ops().clear_webhook(id).await?))
}

/// Resume paused deliveries: the waiting events go out at once. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/webhook/resume",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = WebhookView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn resume_webhook(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<WebhookView> {
    let view = auth.ops().resume_webhook(id).await?;
    app.notify_wake.notify_one();
    Ok(Json(view))
}

/// Set (or with `null` remove) the balance under which the customer gets `balance.low`.
/// Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/low-balance",
    params(("id" = i64, Path, description = "customer id")),
    request_body = LowBalanceBody,
    responses(
        (status = 200, description = "success", body = WebhookView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn set_low_balance(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<LowBalanceBody>,
) -> Reply<WebhookView> {
    Ok(Json(
        auth.ops()
            .set_low_balance(id, body.threshold.as_deref())
            .await?,
    ))
}

/// The customer's webhook events with their bodies, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}/webhook/events",
    params(("id" = i64, Path, description = "customer id"), Paging),
    responses(
        (status = 200, description = "success", body = WebhookEvents),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn webhook_events(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Reply<WebhookEvents> {
    let events = auth
        .ops()
        .webhook_events(id, paging.before, paging.limit.unwrap_or(100))
        .await?;
    Ok(Json(WebhookEvents { events }))
}

/// The customer's delivery log (every attempt: HTTP status, latency, error), newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}/webhook/deliveries",
    params(("id" = i64, Path, description = "customer id"), Paging),
    responses(
        (status = 200, description = "success", body = WebhookDeliveries),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn webhook_deliveries(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Reply<WebhookDeliveries> {
    let deliveries = auth
        .ops()
        .webhook_deliveries(id, paging.before, paging.limit.unwrap_or(100))
        .await?;
    Ok(Json(WebhookDeliveries { deliveries }))
}

/// Send one event again, under its own event id. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/webhook-events/{id}/resend",
    params(("id" = i64, Path, description = "event id")),
    responses(
        (status = 200, description = "the event, queued", body = WebhookEventView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn resend_event(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<WebhookEventView> {
    let view = auth.ops().resend_webhook_event(id).await?;
    app.notify_wake.notify_one();
    Ok(Json(view))
}

/// The reseller's alert conditions on now (provider down, ambiguous orders, stuck orders, ...).
#[utoipa::path(
    get,
    path = "/admin/v1/alerts",
    responses(
        (status = 200, description = "success", body = Alerts),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn alerts(auth: AdminAuth) -> Reply<Alerts> {
    Ok(Json(Alerts {
        alerts: auth.ops().active_alerts().await?,
    }))
}
