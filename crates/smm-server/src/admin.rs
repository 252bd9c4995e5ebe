//! The admin listener (default 127.0.0.1:9090): `/healthz` and `/readyz` for orchestrators,
//! and behind a bearer token `/metrics` (Prometheus) and the `/admin/v1` JSON API.
//!
//! The token comes from `admin.token_env` or `admin.token_file`; without one, every protected
//! endpoint answers 503, so a forgotten token never means an open door. Tokens are compared in
//! constant time.
//!
//! Every handler takes [`AdminAuth`] first: axum runs the request-parts extractors in argument
//! order, so the token is checked before a path, query or body is looked at. The path, query and
//! body extractors ([`ApiPath`], [`ApiQuery`], [`ApiJson`], [`ApiText`]) refuse what does not
//! parse with the one error envelope, like every other error ([`ApiError`], [`OpError`]).
//!
//! The route table and the OpenAPI document come from the same `#[utoipa::path]` attributes
//! (`utoipa-axum`'s `routes!`), so they cannot drift apart.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use smm_store::{CustomerStatus, Store};
use smm_wire::Money;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, ReloadReport, redacted_sections};
use crate::config::{ConfigError, Settings};
use crate::ops::{
    AmbiguousOrderView, AuditView, CustomerView, LedgerView, OpError, Ops, OrderDetail,
    OrderSearch, OrderView, PriceLine, PricingView, WithKey,
};

/// The admin listener's routes, documented.
fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .routes(routes!(providers))
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(customer))
        .routes(routes!(ledger))
        .routes(routes!(credit))
        .routes(routes!(debit))
        .routes(routes!(rotate_key))
        .routes(routes!(suspend))
        .routes(routes!(activate))
        .routes(routes!(prices))
        .routes(routes!(pricing))
        .routes(routes!(set_discount))
        .routes(routes!(set_rate))
        .routes(routes!(search_orders))
        .routes(routes!(ambiguous))
        .routes(routes!(attention))
        .routes(routes!(settle))
        .routes(routes!(order))
        .routes(routes!(attach))
        .routes(routes!(cancel_ambiguous))
        .routes(routes!(config_current))
        .routes(routes!(config_validate))
        .routes(routes!(config_reload))
        .routes(routes!(audit))
        .routes(routes!(
            notifications::webhook,
            notifications::set_webhook,
            notifications::clear_webhook
        ))
        .routes(routes!(notifications::resume_webhook))
        .routes(routes!(notifications::set_low_balance))
        .routes(routes!(notifications::webhook_events))
        .routes(routes!(notifications::webhook_deliveries))
        .routes(routes!(notifications::resend_event))
        .routes(routes!(notifications::alerts))
        .routes(routes!(scorecards::scorecards))
}

mod notifications;
mod scorecards;

pub fn router(app: Arc<App>) -> Router {
    let (router, _) = api().split_for_parts();
    router
        .merge(crate::console::router())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "the endpoint does not take this method",
            )
        })
        .with_state(app)
}

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let (_, document) = api().split_for_parts();
    serde_json::to_value(document).unwrap_or_default()
});

/// The OpenAPI 3.1 document of the admin listener, generated from the handlers and their types.
pub fn openapi_document() -> Value {
    DOCUMENT.clone()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "smm-gateway admin API",
        description = "The admin listener of smm-gateway. Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>`. Mutating calls are audited; name yourself with `X-Admin-Actor`. Money, rates and discounts are always decimal strings. Every error, including a malformed path, query or body, is the JSON envelope `{\"error\": {\"code\", \"message\"}}`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

#[derive(Debug)]
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

// ---- errors ---------------------------------------------------------------------------------

/// The stable machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    AdminDisabled,
    NotFound,
    MethodNotAllowed,
    InvalidRequest,
    Conflict,
    Unavailable,
    InvalidConfig,
    Internal,
}

/// Every admin error has one shape: `{"error": {"code": "...", "message": "..."}}` (plus
/// `problems` for a refused configuration).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Every problem of a refused configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

/// An admin API error: a status and the envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    code,
                    message: message.into(),
                    problems: None,
                },
            },
        }
    }

    /// A path, query or body that does not parse: 400 (413 for a body over the limit; a 5xx
    /// rejection, which is a bug of ours, stays one).
    fn rejected(status: StatusCode, what: &str, detail: &str) -> ApiError {
        let (status, code) = if status == StatusCode::PAYLOAD_TOO_LARGE {
            (status, ErrorCode::InvalidRequest)
        } else if status.is_server_error() {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
        } else {
            (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest)
        };
        ApiError::new(status, code, format!("{what}: {detail}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        let (status, code) = match e {
            OpError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            OpError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            OpError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            OpError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

// ---- extractors -----------------------------------------------------------------------------

/// Equal length and equal bytes, without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// A request with the right bearer token (401 otherwise; 503 when no token is configured),
/// and the operations on behalf of its actor. Put it first in a handler's arguments.
#[derive(Debug)]
pub struct AdminAuth {
    actor: String,
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
}

impl AdminAuth {
    /// The operations, audited under this request's actor.
    fn ops(&self) -> Ops<'_> {
        Ops {
            store: self.store.as_ref(),
            settings: &self.settings,
            actor: &self.actor,
        }
    }
}

impl FromRequestParts<Arc<App>> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let runtime = app.runtime();
        let Some(expected) = runtime.admin_token.as_deref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::AdminDisabled,
                "admin token not configured (admin.token_env or admin.token_file)",
            ));
        };
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing or wrong bearer token",
            ));
        }
        Ok(AdminAuth {
            actor: actor(&parts.headers),
            store: app.store.clone(),
            settings: runtime.settings.clone(),
        })
    }
}

/// [`Path`] with the envelope for an id that does not parse.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(r) => Err(ApiError::rejected(r.status(), "path", &r.body_text())),
        }
    }
}

/// [`Query`] with the envelope for a query that does not parse (unknown or malformed fields).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(r) => Err(ApiError::rejected(r.status(), "query", &r.body_text())),
        }
    }
}

/// [`Json`] with the envelope for a body that does not parse (not JSON, unknown fields, a
/// number where a decimal string belongs, ...).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(r) => Err(ApiError::rejected(r.status(), "body", &r.body_text())),
        }
    }
}

/// A UTF-8 text body, with the envelope for one that is not.
#[derive(Debug)]
pub struct ApiText(pub String);

impl<S> FromRequest<S> for ApiText
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match String::from_request(request, state).await {
            Ok(text) => Ok(ApiText(text)),
            Err(r) => Err(ApiError::rejected(r.status(), "body", &r.body_text())),
        }
    }
}

/// Nullable but required: `"field": null` clears, a missing field is refused.
fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

// ---- bodies, queries and replies --------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCustomerBody {
    name: String,
    /// Defaults to the gateway's currency.
    currency: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    /// A positive decimal string (`"12.5"`, at most 5 decimals); numbers are refused so no float
    /// ever carries money.
    amount: String,
    reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    provider: String,
    upstream_order: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    /// The refund, a decimal string (`"0"` for none; at most what is left of the charge).
    refund: String,
    reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DiscountBody {
    /// Percent off, a decimal string strictly between 0 and 100 (`"12.5"`); `null` removes it.
    #[serde(deserialize_with = "required_nullable")]
    #[schema(required = true)]
    discount: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RateBody {
    /// The local service id, as in `services`.
    service: i64,
    /// A positive decimal string (per 1000, or per order for flat-priced types); `null`
    /// removes the custom rate.
    #[serde(deserialize_with = "required_nullable")]
    #[schema(required = true)]
    rate: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Paging {
    /// Only rows with a smaller id (paging backwards).
    before: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Limit {
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    database: bool,
    catalog_loaded: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct ProviderView {
    name: String,
    enabled: bool,
    available: bool,
    consecutive_failures: u32,
    cooling_down: bool,
    out_of_funds: bool,
    last_sync_ms: Option<i64>,
    /// The last balance seen upstream, in the provider's currency.
    balance: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Providers {
    providers: Vec<ProviderView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Customers {
    customers: Vec<CustomerView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Ledger {
    ledger: Vec<LedgerView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct PriceList {
    customer: i64,
    services: Vec<PriceLine>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Orders {
    orders: Vec<OrderView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AmbiguousOrders {
    orders: Vec<AmbiguousOrderView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Refunded {
    order: i64,
    /// The refund, a decimal string.
    refunded: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Audit {
    audit: Vec<AuditView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ConfigView {
    version: u64,
    retired_providers: Vec<String>,
    /// The effective settings by section, the database password masked.
    settings: std::collections::BTreeMap<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Validation {
    valid: bool,
    problems: Vec<String>,
}

type Reply<T> = Result<Json<T>, OpError>;

// ---- handlers -------------------------------------------------------------------------------

/// Alive (no token).
#[utoipa::path(
    get,
    path = "/healthz",
    responses((status = 200, description = "alive", body = String, content_type = "text/plain")),
)]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Database reachable and catalog loaded (no token).
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "not ready", body = Readiness),
    ),
)]
async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Readiness>) {
    let database = app.store.ping().await.is_ok();
    let catalog = !app.catalog().is_empty() || app.settings().providers.is_empty();
    let status = if database && catalog {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            database,
            catalog_loaded: catalog,
        }),
    )
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String, content_type = "application/openmetrics-text"),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn metrics(_: AdminAuth, State(app): State<Arc<App>>) -> Response {
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

/// Providers: health, cooldown, balance, last sync.
#[utoipa::path(
    get,
    path = "/admin/v1/providers",
    responses(
        (status = 200, description = "success", body = Providers),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn providers(_: AdminAuth, State(app): State<Arc<App>>) -> Json<Providers> {
    let providers = crate::ops::overview::providers(&app)
        .into_iter()
        .map(|p| ProviderView {
            name: p.name,
            enabled: p.enabled,
            available: p.available,
            consecutive_failures: p.consecutive_failures,
            cooling_down: p.cooling_down,
            out_of_funds: p.out_of_funds,
            last_sync_ms: p.last_sync,
            balance: p.balance.map(|b| b.to_string()),
        })
        .collect();
    Json(Providers { providers })
}

/// Every customer.
#[utoipa::path(
    get,
    path = "/admin/v1/customers",
    responses(
        (status = 200, description = "success", body = Customers),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn list_customers(auth: AdminAuth) -> Reply<Customers> {
    let customers = auth.ops().list_customers().await?;
    Ok(Json(Customers { customers }))
}

/// Create a customer; the API key is in the reply, once.
#[utoipa::path(
    post,
    path = "/admin/v1/customers",
    request_body = NewCustomerBody,
    responses(
        (status = 201, description = "created", body = WithKey),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn create_customer(
    auth: AdminAuth,
    ApiJson(body): ApiJson<NewCustomerBody>,
) -> Result<(StatusCode, Json<WithKey>), OpError> {
    let created = auth
        .ops()
        .create_customer(&body.name, body.currency.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One customer.
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = CustomerView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn customer(auth: AdminAuth, ApiPath(id): ApiPath<i64>) -> Reply<CustomerView> {
    Ok(Json(auth.ops().customer(id).await?))
}

/// Ledger rows, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}/ledger",
    params(("id" = i64, Path, description = "customer id"), Paging),
    responses(
        (status = 200, description = "success", body = Ledger),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn ledger(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Reply<Ledger> {
    let ledger = auth
        .ops()
        .ledger(id, paging.before, paging.limit.unwrap_or(100))
        .await?;
    Ok(Json(Ledger { ledger }))
}

/// Add money (a deposit ledger row). Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/credit",
    params(("id" = i64, Path, description = "customer id")),
    request_body = AmountBody,
    responses(
        (status = 200, description = "the new ledger row", body = LedgerView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn credit(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AmountBody>,
) -> Reply<LedgerView> {
    let entry = auth
        .ops()
        .change_balance(id, true, &body.amount, &body.reason)
        .await?;
    Ok(Json(entry))
}

/// Take money (an adjustment row), never below zero. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/debit",
    params(("id" = i64, Path, description = "customer id")),
    request_body = AmountBody,
    responses(
        (status = 200, description = "the new ledger row", body = LedgerView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn debit(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AmountBody>,
) -> Reply<LedgerView> {
    let entry = auth
        .ops()
        .change_balance(id, false, &body.amount, &body.reason)
        .await?;
    Ok(Json(entry))
}

/// Replace the API key; the new key is in the reply, once. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/rotate-key",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = WithKey),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn rotate_key(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<WithKey> {
    let rotated = auth.ops().rotate_key(id).await;
    app.invalidate_keys();
    Ok(Json(rotated?))
}

/// Refuse every request of the customer. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/suspend",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = CustomerView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn suspend(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<CustomerView> {
    let changed = auth.ops().set_status(id, CustomerStatus::Suspended).await;
    app.invalidate_keys();
    Ok(Json(changed?))
}

/// Lift a suspension. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/activate",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = CustomerView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn activate(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<CustomerView> {
    let changed = auth.ops().set_status(id, CustomerStatus::Active).await;
    app.invalidate_keys();
    Ok(Json(changed?))
}

/// Preview the customer's price list with costs and disabled services.
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}/prices",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = PriceList),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn prices(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<PriceList> {
    let catalog = app.catalog();
    let services = auth.ops().price_list(id, &catalog).await?;
    Ok(Json(PriceList {
        customer: id,
        services,
    }))
}

/// The customer's own price rules: discount and custom rates.
#[utoipa::path(
    get,
    path = "/admin/v1/customers/{id}/pricing",
    params(("id" = i64, Path, description = "customer id")),
    responses(
        (status = 200, description = "success", body = PricingView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn pricing(auth: AdminAuth, ApiPath(id): ApiPath<i64>) -> Reply<PricingView> {
    Ok(Json(auth.ops().pricing(id).await?))
}

/// Set (or with `null` remove) the customer's discount on every service without a custom rate; effective on the v2 API at once. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/discount",
    params(("id" = i64, Path, description = "customer id")),
    request_body = DiscountBody,
    responses(
        (status = 200, description = "the customer's price rules", body = PricingView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn set_discount(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<DiscountBody>,
) -> Reply<PricingView> {
    let changed = auth
        .ops()
        .set_discount(id, body.discount.as_deref())
        .await?;
    app.invalidate_keys();
    Ok(Json(changed))
}

/// Set (or with `null` remove) the customer's own rate for one service; effective on the v2 API at once. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/customers/{id}/rates",
    params(("id" = i64, Path, description = "customer id")),
    request_body = RateBody,
    responses(
        (status = 200, description = "the customer's price rules", body = PricingView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn set_rate(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RateBody>,
) -> Reply<PricingView> {
    let changed = auth
        .ops()
        .set_rate(id, body.service, body.rate.as_deref())
        .await?;
    app.invalidate_keys();
    Ok(Json(changed))
}

/// Search orders, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/orders",
    params(OrderSearch),
    responses(
        (status = 200, description = "success", body = Orders),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn search_orders(auth: AdminAuth, ApiQuery(search): ApiQuery<OrderSearch>) -> Reply<Orders> {
    let orders = auth.ops().search_orders(&search).await?;
    Ok(Json(Orders { orders }))
}

/// Orders whose upstream outcome is unknown, oldest first.
#[utoipa::path(
    get,
    path = "/admin/v1/orders/ambiguous",
    responses(
        (status = 200, description = "success", body = AmbiguousOrders),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn ambiguous(auth: AdminAuth) -> Reply<AmbiguousOrders> {
    let orders = auth.ops().ambiguous_orders().await?;
    Ok(Json(AmbiguousOrders { orders }))
}

/// Orders that ended upstream without a signal telling their refund, oldest first.
#[utoipa::path(
    get,
    path = "/admin/v1/orders/attention",
    responses(
        (status = 200, description = "success", body = Orders),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn attention(auth: AdminAuth) -> Reply<Orders> {
    let orders = auth.ops().attention_orders().await?;
    Ok(Json(Orders { orders }))
}

/// Settle an order on the attention list with the refund it is owed (0 for none). Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/orders/{id}/settle",
    params(("id" = i64, Path, description = "order id")),
    request_body = SettleBody,
    responses(
        (status = 200, description = "success", body = Refunded),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn settle(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SettleBody>,
) -> Reply<Refunded> {
    let refunded = auth.ops().settle(id, &body.refund, &body.reason).await?;
    if refunded.parse::<Money>().is_ok_and(|m| m.is_positive()) {
        app.metrics.refund("settled");
    }
    Ok(Json(Refunded {
        order: id,
        refunded,
    }))
}

/// One order with its upstream attempts.
#[utoipa::path(
    get,
    path = "/admin/v1/orders/{id}",
    params(("id" = i64, Path, description = "order id")),
    responses(
        (status = 200, description = "success", body = OrderDetail),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn order(auth: AdminAuth, ApiPath(id): ApiPath<i64>) -> Reply<OrderDetail> {
    Ok(Json(auth.ops().order(id).await?))
}

/// Resolve an ambiguous order found upstream. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/orders/{id}/attach",
    params(("id" = i64, Path, description = "order id")),
    request_body = AttachBody,
    responses(
        (status = 200, description = "the order, polled from now on", body = OrderView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn attach(
    auth: AdminAuth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AttachBody>,
) -> Reply<OrderView> {
    let order = auth
        .ops()
        .attach(id, &body.provider, &body.upstream_order)
        .await?;
    Ok(Json(order))
}

/// Resolve an ambiguous order not upstream: cancel with a full refund. Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/orders/{id}/cancel-ambiguous",
    params(("id" = i64, Path, description = "order id")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "success", body = Refunded),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn cancel_ambiguous(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Reply<Refunded> {
    let refunded = auth.ops().cancel_ambiguous(id, &body.reason).await?;
    app.metrics.refund("ambiguous_canceled");
    Ok(Json(Refunded {
        order: id,
        refunded,
    }))
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    params(Limit),
    responses(
        (status = 200, description = "success", body = Audit),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn audit(auth: AdminAuth, ApiQuery(query): ApiQuery<Limit>) -> Reply<Audit> {
    let audit = auth.ops().audit(query.limit.unwrap_or(100)).await?;
    Ok(Json(Audit { audit }))
}

/// The running configuration (secrets masked) and its version.
#[utoipa::path(
    get,
    path = "/admin/v1/config",
    responses(
        (status = 200, description = "success", body = ConfigView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn config_current(_: AdminAuth, State(app): State<Arc<App>>) -> Json<ConfigView> {
    let runtime = app.runtime();
    Json(ConfigView {
        version: runtime.version,
        retired_providers: runtime.retired.iter().cloned().collect(),
        settings: redacted_sections(&runtime.settings),
    })
}

/// Validate a candidate config (TOML body); changes nothing.
///
/// The text of a config file, layered over the defaults and the environment exactly as a
/// reload would read it.
#[utoipa::path(
    post,
    path = "/admin/v1/config/validate",
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "success", body = Validation),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn config_validate(_: AdminAuth, ApiText(body): ApiText) -> Json<Validation> {
    let problems: Vec<String> = match Settings::load_str(&body) {
        Ok(candidate) => candidate
            .validate()
            .iter()
            .map(ToString::to_string)
            .collect(),
        Err(ConfigError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    };
    Json(Validation {
        valid: problems.is_empty(),
        problems,
    })
}

/// Reload the config from its file and environment; 422 with every problem if invalid (nothing changes). Audited.
#[utoipa::path(
    post,
    path = "/admin/v1/config/reload",
    responses(
        (status = 200, description = "what changed", body = ReloadReport),
        (status = 422, description = "refused: the running configuration stays", body = ErrorBody),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn config_reload(
    auth: AdminAuth,
    State(app): State<Arc<App>>,
) -> Result<Json<ReloadReport>, ApiError> {
    match app.reload_from_source(&auth.actor).await {
        Ok(report) => Ok(Json(report)),
        Err(problems) => {
            let mut refused = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidConfig,
                "configuration not reloaded: the running configuration stays",
            );
            refused.body.error.problems = Some(problems);
            Err(refused)
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    responses(
        (status = 200, description = "the OpenAPI 3.1 document", body = Object),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn openapi(_: AdminAuth) -> Json<Value> {
    Json(openapi_document())
}
