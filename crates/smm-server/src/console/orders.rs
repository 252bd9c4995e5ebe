//! `/orders`: search and filter with keyset paging, the two work lists (ambiguous orders and
//! orders whose refund no signal told), an order's page with its attempts (each with the routing
//! policy's reason for its route), and the actions
//! that resolve it: attach the upstream id, cancel with a full refund, settle a refund; and a
//! refill or a cancel asked for on the customer's behalf.

use askama::Template;
use axum::extract::{Path, Query};
use serde::Deserialize;
use smm_store::AdminRole;

use super::session::{Change, CsrfForm, CsrfOnly, Session};
use super::view::{Chrome, PageResult, render, time, time_or_dash};
use crate::ops::{AttemptView, OrderSearch, OrderView};

/// The filters, as the form sends them (empty means any).
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    customer: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    forward_state: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    link: String,
    #[serde(default)]
    service: String,
    /// Placed on or after this day (`YYYY-MM-DD`).
    #[serde(default)]
    from: String,
    /// Placed on or before this day.
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
    /// `attention`: the orders waiting for a person to settle their refund.
    #[serde(default)]
    list: String,
}

fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn number(field: &str, text: &str) -> Result<Option<i64>, String> {
    given(text)
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| format!("{field} must be a number"))
        })
        .transpose()
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct ListPage {
    chrome: Chrome,
    filter: Filter,
    orders: Vec<(OrderView, String)>,
    error: Option<String>,
    /// The query string of the next (older) page.
    older: Option<String>,
    title: &'static str,
}

const PAGE: u32 = 50;

pub async fn list(session: Session, Query(filter): Query<Filter>) -> PageResult {
    let ops = session.ops();
    let attention = filter.list == "attention";
    let mut error = None;
    let orders = if attention {
        ops.get().attention_orders().await?
    } else {
        let search = (|| -> Result<OrderSearch, String> {
            Ok(OrderSearch {
                customer: number("customer", &filter.customer)?,
                status: given(&filter.status),
                forward_state: given(&filter.forward_state),
                provider: given(&filter.provider),
                link: given(&filter.link),
                service: number("service", &filter.service)?,
                from: given(&filter.from),
                to: given(&filter.to),
                before: number("before", &filter.before)?,
                limit: Some(PAGE),
            })
        })();
        match search {
            Ok(search) => match ops.get().search_orders(&search).await {
                Ok(found) => found,
                Err(e) => {
                    error = Some(e.to_string());
                    Vec::new()
                }
            },
            Err(e) => {
                error = Some(e);
                Vec::new()
            }
        }
    };
    let older = (!attention && orders.len() == PAGE as usize)
        .then(|| orders.last().map(|o| o.id))
        .flatten()
        .map(|last| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("customer", &filter.customer)
                .append_pair("status", &filter.status)
                .append_pair("forward_state", &filter.forward_state)
                .append_pair("provider", &filter.provider)
                .append_pair("link", &filter.link)
                .append_pair("service", &filter.service)
                .append_pair("from", &filter.from)
                .append_pair("to", &filter.to)
                .append_pair("before", &last.to_string())
                .finish()
        });
    let orders = orders
        .into_iter()
        .map(|o| {
            let at = time(o.created_at);
            (o, at)
        })
        .collect();
    let page = ListPage {
        chrome: Chrome::new(&session, "orders"),
        title: if attention {
            "Orders waiting for a refund decision"
        } else {
            "Orders"
        },
        filter,
        orders,
        error,
        older,
    };
    Ok(render(&page, &session))
}

#[derive(Template)]
#[template(path = "console/order.html")]
struct ShowPage {
    chrome: Chrome,
    order: OrderView,
    params: String,
    attempts: Vec<(AttemptView, String, String)>,
    times: Vec<(&'static str, String)>,
    timeline: Vec<(String, String)>,
    providers: Vec<String>,
}

pub async fn show(session: Session, Path(id): Path<i64>) -> PageResult {
    let ops = session.ops();
    let detail = ops.get().order(id).await?;
    let order = detail.order;
    let timeline = detail
        .timeline
        .into_iter()
        .map(|e| (time(e.at), e.what))
        .collect();
    let attempts = detail
        .attempts
        .into_iter()
        .map(|a| {
            let (started, finished) = (time(a.started_at), time_or_dash(a.finished_at));
            (a, started, finished)
        })
        .collect();
    let times = vec![
        ("Placed", time(order.created_at)),
        ("Sent upstream", time_or_dash(order.forwarded_at)),
        ("Last change", time(order.updated_at)),
        ("Next status poll", time_or_dash(order.next_poll_at)),
    ];
    let providers = session
        .app()
        .settings()
        .providers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let page = ShowPage {
        chrome: Chrome::new(&session, "orders"),
        params: serde_json::to_string_pretty(&order.params).unwrap_or_default(),
        order,
        attempts,
        times,
        timeline,
        providers,
    };
    Ok(render(&page, &session))
}

#[derive(Debug, Deserialize)]
pub struct AttachForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    upstream: String,
}

impl CsrfForm for AttachForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn attach(Path(id): Path<i64>, change: Change<AttachForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "resolve orders")?;
    let ops = session.ops();
    let result = ops
        .get()
        .attach(id, change.form.provider.trim(), &change.form.upstream)
        .await
        .map(|o| {
            format!(
                "Attached upstream order {} at {}; it is polled from now on",
                o.upstream_order.unwrap_or_default(),
                o.provider.unwrap_or_default()
            )
        })
        .map_err(|e| e.to_string());
    Ok(session.see_other(&format!("/orders/{id}"), result))
}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    refund: String,
}

impl CsrfForm for ReasonForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn cancel_ambiguous(Path(id): Path<i64>, change: Change<ReasonForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "resolve orders")?;
    let ops = session.ops();
    let result = ops
        .get()
        .cancel_ambiguous(id, &change.form.reason)
        .await
        .map(|refund| {
            session.app().metrics.refund("ambiguous_canceled");
            format!("Canceled; refunded {refund}")
        })
        .map_err(|e| e.to_string());
    Ok(session.see_other(&format!("/orders/{id}"), result))
}

pub async fn settle(Path(id): Path<i64>, change: Change<ReasonForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "settle refunds")?;
    let ops = session.ops();
    let result = ops
        .get()
        .settle(id, &change.form.refund, &change.form.reason)
        .await
        .map(|refund| {
            if refund
                .parse::<smm_wire::Money>()
                .is_ok_and(|m| m.is_positive())
            {
                session.app().metrics.refund("settled");
            }
            format!("Settled; refunded {refund}")
        })
        .map_err(|e| e.to_string());
    Ok(session.see_other(&format!("/orders/{id}"), result))
}

/// A refill asked for on the customer's behalf (the v2 rules decide, the v2 errors answer).
pub async fn refill(Path(id): Path<i64>, change: Change<CsrfOnly>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "ask for refills")?;
    let result = crate::ops::on_behalf::refill(session.app(), session.actor(), id)
        .await
        .map(|refill| format!("Refill {refill} requested"))
        .map_err(|e| format!("Refill refused: {e}"));
    Ok(session.see_other(&format!("/orders/{id}"), result))
}

/// A cancel asked for on the customer's behalf (the v2 rules decide, the v2 errors answer).
pub async fn cancel(Path(id): Path<i64>, change: Change<CsrfOnly>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "cancel orders")?;
    let result = crate::ops::on_behalf::cancel(session.app(), session.actor(), id)
        .await
        .map(|()| "Cancel requested".to_owned())
        .map_err(|e| format!("Cancel refused: {e}"));
    Ok(session.see_other(&format!("/orders/{id}"), result))
}
