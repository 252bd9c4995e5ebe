//! The downstream API: `/api/v2` exactly as panels serve it. Every reply is
//! `application/json`; every error is HTTP 200 `{"error": "<canonical text>"}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Serialize;
use smm_routing::LocalService;
use smm_store::{
    CancelOutcome, Customer, ForwardState, KeyedOrder, NewOrder, Order, OrderId, OrderStatusView,
    Placed, Refill, RefillId, ServiceId, StoreError,
};
use smm_wire::order::Billing;
use smm_wire::request::Credentials;
use smm_wire::response::{
    AddReply, BalanceReply, CancelReply, ErrorReply, MultiCancelReply, MultiRefillReply,
    MultiRefillStatusReply, MultiStatusReply, RefillReply, RefillStatusReply, ServiceItem,
    StatusItem,
};
use smm_wire::{ApiRequest, ErrorKind, OrderRequest, OrderStatus, Params, ServiceType, Target};
use tracing::Instrument;

use crate::app::{App, ServicesBody, now_ms, unavailable};

/// The v2 routes, answered directly (a redirect would lose a POST body).
pub fn router(app: Arc<App>) -> Router {
    let limit = app.settings().server.body_limit_bytes;
    Router::new()
        .route("/api/v2", any(v2))
        .route("/api/v2/", any(v2))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        // Only on the v2 routes: other paths keep their 404.
        .route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                if announced_too_large(request.headers(), limit) {
                    // Refused before any byte of the body is awaited.
                    return json(StatusCode::OK, &ErrorReply(body_refused()));
                }
                next.run(request).await
            },
        ))
        .with_state(app)
}

/// A `Content-Length` above the limit: no point waiting for that body.
fn announced_too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
}

fn body_refused() -> ErrorKind {
    ErrorKind::Other("Request body too large or unreadable".into())
}

async fn not_found() -> Response {
    json(
        StatusCode::NOT_FOUND,
        &ErrorReply(ErrorKind::IncorrectRequest),
    )
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_vec(body).unwrap_or_else(|_| {
        br#"{"error":"Service temporarily unavailable, please try again later"}"#.to_vec()
    });
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        text,
    )
        .into_response()
}

/// A reply body, already serialised.
type Reply = Result<Bytes, ErrorKind>;

/// What an action answered: a JSON body, or a `services` reply with its gzip copy.
#[derive(Debug)]
enum Answer {
    Json(Bytes),
    Services(Arc<ServicesBody>),
}

impl Answer {
    /// The HTTP response. A `services` reply is sent gzip-compressed when the request accepts
    /// gzip, as is otherwise; either way with `Vary: Accept-Encoding`.
    fn into_response(self, request: &HeaderMap) -> Response {
        let json = (CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let vary = (VARY, HeaderValue::from_static("accept-encoding"));
        match self {
            Answer::Json(body) => ([json], body).into_response(),
            Answer::Services(body) => match &body.gzip {
                Some(gzip) if accepts_gzip(request) => {
                    let encoding = (CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    ([json, vary, encoding], gzip.clone()).into_response()
                }
                _ => ([json, vary], body.identity.clone()).into_response(),
            },
        }
    }
}

/// Whether the request's `Accept-Encoding` accepts gzip (RFC 9110, 12.5.3): `gzip` (or its
/// alias `x-gzip`) with a non-zero weight, else `*` with a non-zero weight when gzip is not
/// named; names are case-insensitive and a header may be repeated. No header, an unreadable
/// one, or an item with an unreadable weight accept nothing but identity.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let mut weight = Some(true);
            for param in parts {
                if let Some((name, value)) = param.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    weight = positive_qvalue(value.trim());
                }
            }
            let Some(accepted) = weight else { continue };
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                // The explicit entry wins; of two, a refusal wins.
                gzip = Some(gzip.unwrap_or(true) && accepted);
            } else if coding == "*" {
                any = Some(any.unwrap_or(true) && accepted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether a qvalue (`0`, `0.5`, `1.000`, ...) is above zero; `None` if it is not one.
fn positive_qvalue(text: &str) -> Option<bool> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !matches!(whole, "0" | "1") || fraction.len() > 3 || !digits(fraction) {
        return None;
    }
    Some(whole == "1" || fraction.bytes().any(|b| b != b'0'))
}

fn to_body(value: &impl Serialize) -> Reply {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| {
        tracing::error!(%e, "cannot serialise a reply");
        ErrorKind::Unavailable
    })
}

async fn v2(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let mut action = "unknown";
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| format!("{:016x}", fastrand::u64(..)), str::to_owned);
    // Every log line of the request carries its id, action, customer and outcome; never the key.
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        action = tracing::field::Empty,
        customer = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let outcome = handle(&app, &headers, query.as_deref(), body, &mut action)
        .instrument(span.clone())
        .await;
    let result = match &outcome {
        Ok(_) => "ok",
        Err(ErrorKind::InvalidKey) => "invalid_key",
        Err(ErrorKind::RateLimited) => "rate_limited",
        Err(ErrorKind::Unavailable) => "unavailable",
        Err(_) => "error",
    };
    span.record("action", action);
    span.record("outcome", result);
    span.in_scope(|| {
        tracing::debug!(
            latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request done"
        );
    });
    app.metrics.request(action, result, started.elapsed());
    let mut response = match outcome {
        Ok(answer) => answer.into_response(&headers),
        Err(kind) => json(StatusCode::OK, &ErrorReply(kind)),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn handle(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Result<Bytes, BytesRejection>,
    action: &mut &'static str,
) -> Result<Answer, ErrorKind> {
    let body = body.map_err(|rejection| {
        tracing::debug!(%rejection, "request body refused");
        body_refused()
    })?;
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body_params = Params::from_body(content_type, &body).map_err(|e| {
        tracing::debug!(%e, "request body not understood");
        ErrorKind::IncorrectRequest
    })?;
    let query_params = Params::from_urlencoded(query.unwrap_or_default().as_bytes());
    let params = Params::merged(query_params, body_params);

    let credentials = Credentials::parse(&params)?;
    *action = credentials.action.as_str();
    tracing::Span::current().record("action", *action);
    let customer = app.authenticate(credentials.key).await?;
    tracing::Span::current().record("customer", customer.id.0);
    app.rate_limit(customer.id)?;
    let request = ApiRequest::parse(credentials.action, &params)?;
    let dispatch = async {
        let reply = match request {
            ApiRequest::Services => return services(app, &customer).await.map(Answer::Services),
            ApiRequest::Balance => balance(app, &customer).await,
            ApiRequest::Add {
                service,
                idempotency_key,
            } => {
                let header_key = idempotency_header(headers)?;
                add(
                    app,
                    &customer,
                    service,
                    header_key.or(idempotency_key),
                    &params,
                )
                .await
            }
            ApiRequest::Status(target) => status(app, &customer, target).await,
            ApiRequest::Refill(target) => refill(app, &customer, target).await,
            ApiRequest::RefillStatus(target) => refill_status(app, &customer, target).await,
            ApiRequest::Cancel(target) => cancel(app, &customer, target).await,
        };
        reply.map(Answer::Json)
    };
    dispatch.await
}

/// The `Idempotency-Key` header, under the same rules as the `idempotency_key` field (trimmed,
/// blank is absent, 1 to 128 printable ASCII characters): a key that breaks them is refused
/// with the field's error, never ignored (ignoring it would make a retry a second order).
/// The header wins over the field.
fn idempotency_header(headers: &HeaderMap) -> Result<Option<String>, ErrorKind> {
    let refused = ErrorKind::IncorrectField("idempotency_key");
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| refused.clone())?.trim();
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > 128 || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(refused);
    }
    Ok(Some(key.to_owned()))
}

/// The answer to an idempotency key reused for a different request.
fn key_reused() -> ErrorKind {
    ErrorKind::Other("Idempotency key already used with different parameters".into())
}

/// What an `add` asked for, canonically: SHA-256 (hex) of the service id and the parsed order
/// (its JSON, the same text stored as the order's `params`). Field order, spelling variants
/// and whitespace the parser normalises do not change it; any parameter that changes the
/// order does.
fn request_fingerprint(service: u64, order: &OrderRequest) -> Result<String, ErrorKind> {
    use sha2::Digest;
    let canonical = serde_json::to_string(order).map_err(|_| ErrorKind::Unavailable)?;
    let mut hash = sha2::Sha256::new();
    hash.update(format!("v1\n{service}\n").as_bytes());
    hash.update(canonical.as_bytes());
    Ok(hex::encode(hash.finalize()))
}

/// A retry of a keyed `add`: the first order's id if this request asks for the same thing,
/// else the key-reused error. Decided before any validation, so a retry gets the first answer
/// even when the service is now disabled, its price changed or the balance no longer covers
/// it. Orders placed before fingerprints were kept are answered with their id, as before.
fn replay(service_id: u64, params: &Params, first: &KeyedOrder) -> Reply {
    let order = &first.order;
    if u64::try_from(order.service_id.0).ok() != Some(service_id) {
        return Err(key_reused());
    }
    if let Some(stored) = &first.request_fingerprint {
        let service_type = ServiceType::parse(&order.service_type);
        let asked = OrderRequest::parse(&service_type, params).map_err(|_| key_reused())?;
        if request_fingerprint(service_id, &asked)? != *stored {
            return Err(key_reused());
        }
    }
    tracing::debug!(
        order = order.id.0,
        "idempotent retry answered with the first order"
    );
    to_body(&AddReply {
        order: u64::try_from(order.id.0).map_err(|_| ErrorKind::Unavailable)?,
    })
}

async fn keyed_order(
    app: &App,
    customer: &Customer,
    key: &str,
) -> Result<Option<KeyedOrder>, ErrorKind> {
    app.store
        .order_by_idempotency_key(customer.id, key)
        .await
        .map_err(|e| unavailable(&e))
}

/// The customer's `services` reply, from the cache when it holds the reply for their price list
/// and the current catalog; otherwise built, compressed and cached.
async fn services(app: &App, customer: &Customer) -> Result<Arc<ServicesBody>, ErrorKind> {
    let pricing = app.pricing(customer).await?;
    let catalog = app.catalog();
    // Most customers pay list prices, and customers on the same terms share a price list: a
    // reply is the same bytes until the catalog changes.
    if let Some(body) = app.cached_services_body(&catalog, &pricing) {
        return Ok(body);
    }
    let items: Vec<ServiceItem> = catalog
        .enabled()
        .map(|s| ServiceItem {
            service: s.id,
            name: s.name.clone(),
            service_type: s.service_type.clone(),
            category: s.category.clone(),
            rate: s.price_for(&pricing),
            min: s.min,
            max: s.max,
            refill: s.refill,
            cancel: s.cancel,
            dripfeed: s.dripfeed,
            desc: s.desc.clone(),
        })
        .collect();
    let body = Arc::new(ServicesBody::new(to_body(&items)?));
    app.cache_services_body(&catalog, &pricing, body.clone());
    Ok(body)
}

async fn balance(app: &App, customer: &Customer) -> Reply {
    let fresh = app
        .store
        .customer(customer.id)
        .await
        .map_err(|e| unavailable(&e))?;
    to_body(&BalanceReply {
        balance: fresh.balance.to_decimal(),
        currency: fresh.currency,
    })
}

fn enabled_service(app: &App, id: u64) -> Result<LocalService, ErrorKind> {
    app.catalog()
        .get(id)
        .filter(|s| s.enabled)
        .cloned()
        .ok_or(ErrorKind::IncorrectServiceId)
}

/// What an order of `service` is placed as (issue #12, 7): its routes and flags now, kept with
/// the order so a later change of what the id means changes nothing for it.
fn placed_as(service: &LocalService) -> smm_store::PlacedAs {
    smm_store::PlacedAs {
        cancel: service.cancel,
        refill: service.refill,
        dripfeed: service.dripfeed,
        routes: service
            .routes
            .iter()
            .map(|r| smm_store::PlacedRoute {
                provider: r.provider.clone(),
                upstream_service: r.upstream_service.as_str().to_owned(),
                upstream_rate: r.upstream_rate,
            })
            .collect(),
    }
}

async fn add(
    app: &App,
    customer: &Customer,
    service_id: u64,
    idempotency_key: Option<String>,
    params: &Params,
) -> Reply {
    if let Some(key) = &idempotency_key
        && let Some(first) = keyed_order(app, customer, key).await?
    {
        return replay(service_id, params, &first);
    }
    let new = new_order(app, customer, service_id, idempotency_key, params).await?;
    let new_key = new.idempotency_key.clone();
    let placed = app
        .group_commit()
        .place(new, now_ms())
        .await
        .map_err(|e| match e {
            StoreError::InsufficientFunds => ErrorKind::NotEnoughFunds,
            StoreError::CustomerSuspended => ErrorKind::AccountSuspended,
            other => unavailable(&other),
        })?;
    if let Placed::Existing(_) = &placed
        && let Some(key) = &new_key
    {
        // A concurrent request with the same key was placed first: answer as its retry would.
        return match keyed_order(app, customer, key).await? {
            Some(first) => replay(service_id, params, &first),
            None => Err(ErrorKind::Unavailable),
        };
    }
    if let Placed::New(order) = &placed {
        tracing::info!(order = order.id.0, service = service_id, charge = %order.charge, "order placed");
        // An order claimed as it was placed is already in the forwarder's hands.
        if order.forward_state == ForwardState::Queued {
            app.forward_wake.notify_one();
        }
        if app.settings().server.add_wait_ms > 0 {
            await_first_outcome(app, order.id).await?;
        }
    }
    let order = placed.order();
    to_body(&AddReply {
        order: u64::try_from(order.id.0).map_err(|_| ErrorKind::Unavailable)?,
    })
}

/// The order an `add` asks for, validated and priced for `customer`: everything but placing it.
pub async fn new_order(
    app: &App,
    customer: &Customer,
    service_id: u64,
    idempotency_key: Option<String>,
    params: &Params,
) -> Result<NewOrder, ErrorKind> {
    let service = enabled_service(app, service_id)?;
    let order = OrderRequest::parse(&service.service_type, params)?;
    let fingerprint = request_fingerprint(service.id, &order)?;
    smm_routing::check_order(&service, &order)?;
    if let OrderRequest::Subscriptions { posts: None, .. } = &order {
        // Unlimited subscriptions would need a charge per new post; until the gateway bills
        // them that way, a subscription must say how many posts it covers (charged up front).
        return Err(ErrorKind::IncorrectField("posts"));
    }
    if let OrderRequest::Subscriptions {
        old_posts: Some(old),
        ..
    } = &order
        && *old > 0
    {
        // Upstreams bill existing posts their own way (each as a child order, or not at all), so
        // no price fixed at `add` could be exact for them: refused, nothing charged.
        return Err(ErrorKind::IncorrectField("old_posts"));
    }
    let pricing = app.pricing(customer).await?;
    let rate = service.price_for(&pricing);
    let billing = order.billing();
    let charge = smm_routing::charge(rate, billing)
        .filter(|charge| charge.is_positive())
        .ok_or(ErrorKind::IncorrectQuantity)?;
    // What a Partial's `remains` is measured against. A Custom Comments Package is priced flat
    // but delivered (and reported) line by line, so a Partial refunds the undelivered lines'
    // share. A plain Package has no such unit: 0 means a Partial pays no automatic refund
    // (Canceled still refunds in full).
    let units = match (&order, billing) {
        (OrderRequest::CustomCommentsPackage { comments, .. }, _) => {
            u64::try_from(comments.len()).unwrap_or(u64::MAX)
        }
        (_, Billing::PerThousand { units }) => units,
        (_, Billing::Flat) => 0,
    };
    let new = NewOrder {
        customer_id: customer.id,
        service_id: ServiceId(
            i64::try_from(service.id).map_err(|_| ErrorKind::IncorrectServiceId)?,
        ),
        service_type: service.service_type.as_str().to_owned(),
        params: serde_json::to_string(&order).map_err(|_| ErrorKind::Unavailable)?,
        link: order.link().map(str::to_owned),
        quantity: order.quantity(),
        units,
        charge,
        request_fingerprint: idempotency_key.is_some().then_some(fingerprint),
        idempotency_key,
        placed_as: Some(placed_as(&service)),
    };
    Ok(new)
}

/// Waits (up to `server.add_wait_ms`) for the forwarder's first outcome. When every route
/// definitively refused, the order has been canceled and refunded and the customer gets the
/// upstream's reason, in canonical words — except reasons about the reseller's own account
/// upstream (its key, its rate limit), which would mislead and become a generic error.
async fn await_first_outcome(app: &App, order: OrderId) -> Result<(), ErrorKind> {
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(app.settings().server.add_wait_ms);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let state = match app.store.order(order).await {
            Ok(order) => order.forward_state,
            // The order is placed and paid for: answer with its id rather than an error a
            // client might retry into a second order.
            Err(e) => {
                tracing::warn!(order = order.0, %e, "cannot follow a placed order; answering with its id");
                return Ok(());
            }
        };
        match state {
            ForwardState::Rejected => {
                return Err(match app.take_rejection(order) {
                    Some(
                        ErrorKind::InvalidKey
                        | ErrorKind::IncorrectRequest
                        | ErrorKind::RateLimited
                        | ErrorKind::AccountSuspended,
                    )
                    | None => ErrorKind::Unavailable,
                    Some(kind) => kind,
                });
            }
            ForwardState::Sent | ForwardState::Ambiguous => return Ok(()),
            ForwardState::Queued | ForwardState::Sending => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
    }
}

/// The customer's orders among `ids`, looked up once.
/// Customer-given ids as order ids (ids beyond `i64` cannot exist and are dropped).
fn order_ids(ids: &[u64]) -> Vec<OrderId> {
    ids.iter()
        .filter_map(|id| i64::try_from(*id).ok().map(OrderId))
        .collect()
}

async fn orders_of(app: &App, customer: &Customer, ids: &[u64]) -> Result<Vec<Order>, ErrorKind> {
    app.store
        .customer_orders(customer.id, &order_ids(ids))
        .await
        .map_err(|e| unavailable(&e))
}

fn find(orders: &[Order], id: u64) -> Option<&Order> {
    orders
        .iter()
        .find(|o| u64::try_from(o.id.0).ok() == Some(id))
}

pub(crate) fn status_item(order: &OrderStatusView, currency: &str) -> StatusItem {
    let extra: Option<serde_json::Value> = order
        .extra
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok());
    let field = |name: &str| extra.as_ref().and_then(|e| e.get(name));
    let remains = order.remains.or_else(|| {
        // Not started, or canceled before anything was reported: everything remains.
        order
            .quantity
            .and_then(|q| i64::try_from(q).ok())
            .filter(|_| {
                matches!(
                    order.status,
                    OrderStatus::Pending | OrderStatus::Canceled | OrderStatus::Refunded
                )
            })
    });
    StatusItem {
        charge: order.net_charge().to_decimal(),
        start_count: Some(order.start_count.unwrap_or(0)),
        status: order.status.clone(),
        remains: Some(remains.unwrap_or(0)),
        currency: currency.to_owned(),
        runs: field("runs")
            .and_then(serde_json::Value::as_u64)
            .and_then(|r| u32::try_from(r).ok()),
        // The upstream's child order ids (subscriptions, drip-feed runs) are left out: they
        // are ids at the provider, which the customer cannot ask about here and must not
        // confuse with the gateway's own order ids, and the gateway has no ids of its own for
        // them. `posts` and `runs` say how far the order got.
        orders: None,
        posts: field("posts").and_then(serde_json::Value::as_u64),
        expiry: field("expiry").and_then(|e| e.as_str().map(str::to_owned)),
    }
}

/// The customer's orders among `ids`, as `status` shows them (others' and unknown ids are
/// absent), sorted by id; recent reads may come from the cache ([`App::order_statuses`], at
/// most [`crate::app::ORDER_VIEW_MAX_AGE`] old).
async fn statuses_of(
    app: &App,
    customer: &Customer,
    ids: &[u64],
) -> Result<Vec<Arc<OrderStatusView>>, ErrorKind> {
    app.order_statuses(customer.id, &order_ids(ids))
        .await
        .map_err(|e| unavailable(&e))
}

async fn status(app: &App, customer: &Customer, target: Target) -> Reply {
    let find = |orders: &[Arc<OrderStatusView>], id: u64| -> Option<usize> {
        let id = i64::try_from(id).ok()?;
        orders.binary_search_by_key(&id, |o| o.id.0).ok()
    };
    match target {
        Target::One(id) => {
            let orders = statuses_of(app, customer, &[id]).await?;
            let order = find(&orders, id).ok_or(ErrorKind::IncorrectOrderId)?;
            to_body(&status_item(&orders[order], &customer.currency))
        }
        Target::Many(ids) => {
            let orders = statuses_of(app, customer, ids.as_slice()).await?;
            let items = ids
                .as_slice()
                .iter()
                .map(|id| {
                    let item = find(&orders, *id)
                        .map(|i| &orders[i])
                        .map(|o| status_item(o, &customer.currency))
                        .ok_or(ErrorKind::IncorrectOrderId);
                    (*id, item)
                })
                .collect();
            to_body(&MultiStatusReply(items))
        }
    }
}

/// Records a refill request for one order, after the rules: the order exists and is the
/// customer's, its service allows refills, and it has finished delivering.
pub(crate) async fn refill_one(
    app: &App,
    customer: &Customer,
    order: Option<&Order>,
) -> Result<u64, ErrorKind> {
    let order = order.ok_or(ErrorKind::IncorrectOrderId)?;
    // What the order was placed as decides (issue #12, 7), not what the id means now.
    let refillable = order.placed_as().map_or_else(
        || {
            u64::try_from(order.service_id.0)
                .ok()
                .and_then(|id| app.catalog().get(id).map(|s| s.refill))
                .unwrap_or(false)
        },
        |placed| placed.refill,
    );
    if !refillable {
        return Err(ErrorKind::RefillDisabled);
    }
    if order.forward_state != ForwardState::Sent
        || !matches!(order.status, OrderStatus::Completed | OrderStatus::Partial)
    {
        return Err(ErrorKind::RefillNotAllowed);
    }
    let refill = app
        .store
        .create_refill(customer.id, order.id, now_ms())
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ErrorKind::IncorrectOrderId,
            other => unavailable(&other),
        })?;
    app.forget_order_views([order.id]);
    u64::try_from(refill.id.0).map_err(|_| ErrorKind::Unavailable)
}

async fn refill(app: &App, customer: &Customer, target: Target) -> Reply {
    match target {
        Target::One(id) => {
            let orders = orders_of(app, customer, &[id]).await?;
            let refill = refill_one(app, customer, find(&orders, id)).await?;
            to_body(&RefillReply { refill })
        }
        Target::Many(ids) => {
            let orders = orders_of(app, customer, ids.as_slice()).await?;
            let mut items = Vec::with_capacity(ids.len());
            // Each id answers for itself: a store failure on one id is that id's error, so the
            // refills already created for earlier ids are still reported (and not asked twice).
            for id in ids.as_slice() {
                let result = refill_one(app, customer, find(&orders, *id)).await;
                items.push((*id, result));
            }
            to_body(&MultiRefillReply(items))
        }
    }
}

async fn refills_of(app: &App, customer: &Customer, ids: &[u64]) -> Result<Vec<Refill>, ErrorKind> {
    let ids: Vec<RefillId> = ids
        .iter()
        .filter_map(|id| i64::try_from(*id).ok().map(RefillId))
        .collect();
    app.store
        .customer_refills(customer.id, &ids)
        .await
        .map_err(|e| unavailable(&e))
}

async fn refill_status(app: &App, customer: &Customer, target: Target) -> Reply {
    let ids: Vec<u64> = match &target {
        Target::One(id) => vec![*id],
        Target::Many(ids) => ids.as_slice().to_vec(),
    };
    let refills = refills_of(app, customer, &ids).await?;
    let lookup = |id: u64| {
        refills
            .iter()
            .find(|r| u64::try_from(r.id.0).ok() == Some(id))
            .map(|r| r.status.clone())
            .ok_or(ErrorKind::RefillNotFound)
    };
    match target {
        Target::One(id) => to_body(&RefillStatusReply {
            status: lookup(id)?,
        }),
        Target::Many(ids) => to_body(&MultiRefillStatusReply(
            ids.as_slice().iter().map(|id| (*id, lookup(*id))).collect(),
        )),
    }
}

/// The answer to a repeated cancel whose request the upstream refused: the refusal, in its
/// canonical text. Only a refusal about the order itself is passed on; anything about the
/// reseller's own account or call (a key, funds, an id the upstream does not know, a transport
/// failure) reads "Order can not be canceled".
fn cancel_refusal(error: Option<&str>) -> ErrorKind {
    let Some(text) = error else {
        return ErrorKind::CancelNotAllowed;
    };
    match ErrorKind::from_upstream(text) {
        kind @ ErrorKind::CancelDisabled => kind,
        ErrorKind::Other(other)
            if ![
                "rejected by the upstream",
                "not sent",
                "not forwarded",
                "provider ",
            ]
            .iter()
            .any(|p| other.starts_with(p)) =>
        {
            ErrorKind::Other(other)
        }
        _ => ErrorKind::CancelNotAllowed,
    }
}

/// Whether the order's service allows cancels.
fn cancellable(app: &App, order: &Order) -> bool {
    // What the order was placed as decides (issue #12, 7), not what the id means now; orders
    // placed before that was recorded fall back to the catalog.
    order.placed_as().map_or_else(
        || {
            u64::try_from(order.service_id.0)
                .ok()
                .and_then(|id| app.catalog().get(id).map(|s| s.cancel))
                .unwrap_or(false)
        },
        |placed| placed.cancel,
    )
}

/// One order's cancel. The service's flag decides, whatever the order's forwarding state,
/// so the same request gets the same answer before and after the forwarder sends it. A
/// cancel of an order on its way (`sending`, `ambiguous`) is accepted and recorded; the
/// store forwards it once the order is upstream, or cancels and refunds the order here if it
/// never gets there.
pub(crate) async fn cancel_one(
    app: &App,
    customer: &Customer,
    order: Option<&Order>,
) -> Result<(), ErrorKind> {
    let order = order.ok_or(ErrorKind::IncorrectOrderId)?;
    if !cancellable(app, order) {
        return Err(ErrorKind::CancelDisabled);
    }
    let outcome = app
        .store
        .request_cancel(customer.id, order.id, now_ms())
        .await;
    // A cancel may have changed the order (canceled and refunded here): `status` reads it anew.
    app.forget_order_views([order.id]);
    match outcome {
        Ok(CancelOutcome::CanceledLocally { refund }) => {
            tracing::info!(order = order.id.0, %refund, "order canceled before forwarding");
            app.metrics.refund("canceled_before_forwarding");
            Ok(())
        }
        Ok(CancelOutcome::Requested(request))
            if request.forward_state == ForwardState::Rejected =>
        {
            Err(cancel_refusal(request.error.as_deref()))
        }
        Ok(CancelOutcome::Requested(_)) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(ErrorKind::IncorrectOrderId),
        Err(StoreError::InvalidState(_)) => Err(ErrorKind::CancelNotAllowed),
        Err(other) => Err(unavailable(&other)),
    }
}

async fn cancel(app: &App, customer: &Customer, target: Target) -> Reply {
    match target {
        Target::One(id) => {
            let orders = orders_of(app, customer, &[id]).await?;
            cancel_one(app, customer, find(&orders, id)).await?;
            to_body(&CancelReply)
        }
        Target::Many(ids) => {
            let orders = orders_of(app, customer, ids.as_slice()).await?;
            let mut items = Vec::with_capacity(ids.len());
            for id in ids.as_slice() {
                // Each id answers for itself: a store failure on one id is that id's error, so
                // the cancels that already took effect for earlier ids are still reported.
                let result = cancel_one(app, customer, find(&orders, *id)).await;
                items.push((*id, result));
            }
            to_body(&MultiCancelReply(items))
        }
    }
}

#[cfg(test)]
mod tests {
    use smm_wire::ErrorKind;

    use super::{accepts_gzip, cancel_refusal};

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        let accepts = |values: &[&str]| {
            let mut headers = axum::http::HeaderMap::new();
            for value in values {
                headers.append(
                    axum::http::header::ACCEPT_ENCODING,
                    axum::http::HeaderValue::from_str(value).expect("header value"),
                );
            }
            accepts_gzip(&headers)
        };
        for yes in [
            &["gzip"][..],
            &["gzip, deflate"],
            &["deflate, GZip"],
            &["br;q=1.0, gzip;q=0.8, *;q=0.1"],
            &["gzip;q=0.001"],
            &["gzip ; q=1"],
            &["x-gzip"],
            &["*"],
            &["deflate, *;q=0.5"],
            &["identity", "gzip"],
        ] {
            assert!(accepts(yes), "{yes:?}");
        }
        for no in [
            &[][..],
            &[""],
            &["identity"],
            &["deflate, br"],
            &["gzip;q=0"],
            &["gzip;Q=0.000"],
            &["gzip;q=0, *"],
            &["*;q=0"],
            &["*, gzip;q=0"],
            &["gzip", "gzip;q=0"],
            &["gzip;q=2"],
            &["gzip;q=0.5000"],
            &["gzip;q=abc"],
            &["gzips"],
        ] {
            assert!(!accepts(no), "{no:?}");
        }
    }

    #[test]
    fn a_refused_cancel_answers_with_the_refusal_about_the_order_only() {
        assert_eq!(
            cancel_refusal(Some("Order can not be canceled")),
            ErrorKind::CancelNotAllowed
        );
        assert_eq!(
            cancel_refusal(Some("Cancel is disabled for this service")),
            ErrorKind::CancelDisabled
        );
        assert_eq!(
            cancel_refusal(Some("Order is already being processed")),
            ErrorKind::Other("Order is already being processed".into())
        );
        // The reseller's own trouble is never the customer's answer.
        for text in [
            "Invalid API key",
            "Not enough funds on balance",
            "Incorrect order ID",
            "rejected by the upstream: Invalid API key",
            "not forwarded: order 7 was refused upstream; canceled and refunded in full locally",
        ] {
            assert_eq!(
                cancel_refusal(Some(text)),
                ErrorKind::CancelNotAllowed,
                "{text}"
            );
        }
        assert_eq!(cancel_refusal(None), ErrorKind::CancelNotAllowed);
    }
}
