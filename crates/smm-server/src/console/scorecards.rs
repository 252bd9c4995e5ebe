//! `/scorecards`: each provider's and each route's record over the last 7 or 30 days (issue
//! #15), a table per provider: its totals, then a row per route. The figures are
//! [`crate::ops::scorecards`]' (the same as `GET /admin/v1/scorecards` and `smm-gateway
//! providers scorecards`); this page only lays them out.

use askama::Template;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use serde::Deserialize;

use super::session::Session;
use super::view::{Chrome, PageResult, date, duration, percent, render};
use crate::ops::OpError;
use crate::ops::scorecards::{Scorecard, ScorecardQuery};

/// `?days=`, as typed: checked here so that a bad value is the page's message, not a bare
/// rejection.
#[derive(Debug, Default, Deserialize)]
pub struct Window {
    #[serde(default)]
    days: String,
}

/// One row of a provider's table: the provider's totals or a route's, formatted.
#[derive(Debug)]
struct Row {
    /// `all routes`, or the route: `alpha/1`.
    name: String,
    totals: bool,
    orders: i64,
    finished: i64,
    completion: String,
    partial: String,
    undelivered: String,
    cancel: String,
    start_median: String,
    start_p90: String,
    complete_median: String,
    refills: i64,
    refill_success: String,
    acceptance: String,
    ambiguous: String,
    call_errors: String,
    cost: String,
    revenue: String,
    margin: String,
    /// The margin is below zero.
    loss: bool,
}

impl Row {
    fn new(name: String, totals: bool, c: &Scorecard) -> Row {
        Row {
            name,
            totals,
            orders: c.orders,
            finished: c.finished,
            completion: percent(c.completion_percent.as_deref()),
            partial: percent(c.partial_percent.as_deref()),
            undelivered: percent(c.undelivered_percent.as_deref()),
            cancel: percent(c.cancel_percent.as_deref()),
            start_median: duration(c.start_median_secs.as_deref()),
            start_p90: duration(c.start_p90_secs.as_deref()),
            complete_median: duration(c.complete_median_secs.as_deref()),
            refills: c.refills,
            refill_success: percent(c.refill_success_percent.as_deref()),
            acceptance: percent(c.acceptance_percent.as_deref()),
            ambiguous: percent(c.ambiguous_percent.as_deref()),
            call_errors: percent(c.call_error_percent.as_deref()),
            cost: c.cost.clone(),
            revenue: c.revenue.clone(),
            loss: c.margin.starts_with('-'),
            margin: c.margin.clone(),
        }
    }
}

/// A provider's table.
#[derive(Debug)]
struct Table {
    provider: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/scorecards.html")]
struct Page {
    chrome: Chrome,
    /// The window shown (or asked for, when it was refused).
    days: u32,
    /// The first day counted, `2026-12-01`.
    since: String,
    currency: String,
    tables: Vec<Table>,
    /// Why the window asked for was refused.
    error: Option<String>,
}

/// The scorecards over `?days=` (7, the default, or 30); any other window is refused with a
/// message (400) and the page's switch to pick one.
pub async fn page(session: Session, window: Result<Query<Window>, QueryRejection>) -> PageResult {
    let chrome = Chrome::new(&session, "scorecards");
    let Ok(Query(window)) = window else {
        return Ok(refused(
            &session,
            chrome,
            "the window is given once, as days=7 or days=30".to_owned(),
        ));
    };
    let asked = window.days.trim();
    let days = if asked.is_empty() {
        None
    } else {
        match asked.parse::<u32>() {
            Ok(days) => Some(days),
            Err(_) => {
                let shown: String = asked.chars().take(20).collect();
                return Ok(refused(
                    &session,
                    chrome,
                    format!("days must be 7 or 30, not \"{shown}\""),
                ));
            }
        }
    };
    let days = match (ScorecardQuery { days }).days() {
        Ok(days) => days,
        Err(OpError::Invalid(message)) => return Ok(refused(&session, chrome, message)),
        Err(e) => return Err(e.into()),
    };
    let view = session.ops().get().scorecards(days).await?;
    let tables = view
        .providers
        .iter()
        .map(|p| {
            let mut rows = vec![Row::new("all routes".into(), true, &p.card)];
            rows.extend(p.routes.iter().map(|r| {
                Row::new(
                    format!("{}/{}", p.provider, r.upstream_service),
                    false,
                    &r.card,
                )
            }));
            Table {
                provider: p.provider.clone(),
                rows,
            }
        })
        .collect();
    let page = Page {
        chrome,
        days: view.days,
        since: date(view.since),
        currency: view.currency,
        tables,
        error: None,
    };
    Ok(render(&page, &session))
}

/// The page without figures, saying why the window asked for was refused (400).
fn refused(session: &Session, chrome: Chrome, message: String) -> axum::response::Response {
    let page = Page {
        chrome,
        days: 0,
        since: String::new(),
        currency: session.app().settings().server.currency.clone(),
        tables: Vec::new(),
        error: Some(message),
    };
    let mut response = render(&page, session);
    if response.status().is_success() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}
