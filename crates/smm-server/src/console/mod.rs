//! The reseller's web console, served on the admin listener at `/` (issue #13).
//!
//! Server-rendered pages (askama templates in `templates/console/`, one stylesheet in
//! `assets/`, no JavaScript), driven by the same [`crate::ops`] as the CLI and the admin API:
//! no rule is written here a second time. Every page needs a session ([`session::Session`]);
//! every change is a POST form that carries the session's CSRF token ([`session::Change`]),
//! is refused for a role that may not make it, and is audited with `console:USERNAME` as
//! actor. Responses carry a strict Content-Security-Policy and are never cached.
//!
//! Layout: `session` (login, logout, sessions, CSRF, flash messages), `view` (formatting and
//! the page chrome), one module per page group (`overview`, `customers` with `webhooks` for the
//! customer page's Webhook section, `orders`, `services`, `providers`, `scorecards`, `config`,
//! `audit`, `admins`). Changes to services, prices and providers are
//! changes to the config file, made through [`crate::ops::config_file`].

use std::sync::Arc;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::App;

mod admins;
mod audit;
mod config;
mod customers;
mod orders;
mod overview;
mod providers;
mod scorecards;
mod services;
mod session;
mod view;
mod webhooks;

/// The console's routes (merged into the admin listener's router).
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/customers", get(customers::list).post(customers::create))
        .route("/customers/{id}", get(customers::show))
        .route("/customers/{id}/balance", post(customers::balance))
        .route("/customers/{id}/status", post(customers::status))
        .route("/customers/{id}/rotate-key", post(customers::rotate_key))
        .route("/customers/{id}/pricing", post(customers::pricing))
        .route("/customers/{id}/webhook", post(webhooks::set))
        .route("/customers/{id}/webhook/remove", post(webhooks::remove))
        .route("/customers/{id}/webhook/resume", post(webhooks::resume))
        .route(
            "/customers/{id}/webhook/events/{event}/resend",
            post(webhooks::resend),
        )
        .route("/customers/{id}/low-balance", post(webhooks::low_balance))
        .route("/admins", get(admins::list).post(admins::create))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/attach", post(orders::attach))
        .route(
            "/orders/{id}/cancel-ambiguous",
            post(orders::cancel_ambiguous),
        )
        .route("/orders/{id}/settle", post(orders::settle))
        .route("/orders/{id}/refill", post(orders::refill))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/services", get(services::list))
        .route("/services/markup", post(services::markup))
        .route(
            "/services/import",
            get(services::import_page).post(services::import),
        )
        .route("/services/{id}/enabled", post(services::enabled))
        .route("/providers", get(providers::list).post(providers::add))
        .route("/providers/{name}", post(providers::edit))
        .route("/providers/{name}/enabled", post(providers::enabled))
        .route("/providers/{name}/test", post(providers::test))
        .route("/scorecards", get(scorecards::page))
        .route("/config", get(config::page).post(config::update))
        .route("/audit", get(audit::page))
        .route("/assets/console.css", get(stylesheet))
        .layer(axum::middleware::map_response(harden))
}

/// What every console response carries: no framing, no foreign scripts or styles, no caching
/// of pages that show money and keys, no referrer leaving the console.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let css = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/css"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !css {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The stylesheet, compiled in. Versioned by the binary: cached for an hour.
async fn stylesheet() -> Response {
    (
        StatusCode::OK,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        include_str!("../../assets/console.css"),
    )
        .into_response()
}
