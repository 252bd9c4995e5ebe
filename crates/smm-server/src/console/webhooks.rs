//! The Webhook section of a customer's page (issue #14): where their events go, whether
//! deliveries are paused and why, the low-balance threshold, the delivery log and the recent
//! events; setting the URL (its signing secret shown once, on the answer to the POST),
//! removing it, resuming, the threshold, and resending an event.

use askama::Template;
use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;
use smm_store::AdminRole;

use super::session::{Change, CsrfForm, CsrfOnly, Session};
use super::view::{Chrome, ConsoleError, PageResult, render, time};
use crate::ops::notifications::{WebhookDeliveryView, WebhookView, WebhookWithSecret};
use crate::ops::{OpResult, Ops};

/// Rows of the delivery log and of the recent events shown on the page.
const ROWS: u32 = 20;

/// What the customer's page shows of their webhook.
#[derive(Debug, Clone)]
pub struct Section {
    pub view: WebhookView,
    /// When deliveries were paused, as a time.
    pub paused_since: Option<String>,
    /// Why the last attempt failed, when paused.
    pub last_error: Option<String>,
    pub deliveries: Vec<DeliveryRow>,
    pub events: Vec<EventRow>,
}

/// One attempt of the delivery log.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub event: i64,
    /// The event's type (`order.status`, ...), or a dash for an event no longer found.
    pub kind: String,
    pub attempt: i64,
    pub at: String,
    /// `200`, or `no answer`.
    pub answer: String,
    pub ok: bool,
    pub latency_ms: i64,
    pub error: String,
}

/// One event of the outbox.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub order: Option<i64>,
    pub state: String,
    pub attempts: i64,
    pub at: String,
}

/// Why an attempt failed, in a few words: its error, else the status it got.
fn failure(d: &WebhookDeliveryView) -> Option<String> {
    match (&d.error, d.http_status) {
        (Some(error), _) => Some(error.clone()),
        (None, Some(status)) if !(200..300).contains(&status) => Some(format!("HTTP {status}")),
        (None, Some(_)) => None,
        (None, None) => Some("no answer".to_owned()),
    }
}

/// Reads the section of customer `id`.
pub async fn section(ops: &Ops<'_>, id: i64) -> OpResult<Section> {
    let view = ops.webhook(id).await?;
    let events = ops.webhook_events(id, None, ROWS).await?;
    let deliveries = ops.webhook_deliveries(id, None, ROWS).await?;
    let mut kinds: std::collections::BTreeMap<i64, String> =
        events.iter().map(|e| (e.id, e.event.clone())).collect();
    // Attempts of older events than those listed: at most one look-up per row.
    for d in &deliveries {
        if !kinds.contains_key(&d.event)
            && let Ok(event) = ops.webhook_event(d.event).await
        {
            kinds.insert(d.event, event.event);
        }
    }
    let last_error = view
        .paused_at
        .and_then(|_| deliveries.first().and_then(failure));
    Ok(Section {
        paused_since: view.paused_at.map(time),
        last_error,
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryRow {
                event: d.event,
                kind: kinds
                    .get(&d.event)
                    .cloned()
                    .unwrap_or_else(|| "—".to_owned()),
                attempt: d.attempt,
                at: time(d.at),
                answer: d
                    .http_status
                    .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
                ok: d.http_status.is_some_and(|s| (200..300).contains(&s)),
                latency_ms: d.latency_ms,
                error: d.error.clone().unwrap_or_default(),
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| EventRow {
                id: e.id,
                kind: e.event,
                order: e.order,
                state: e.state,
                attempts: e.attempts,
                at: time(e.created_at),
            })
            .collect(),
        view,
    })
}

fn back_to(session: &Session, id: i64, result: Result<String, String>) -> Response {
    session.see_other(&format!("/customers/{id}#webhook"), result)
}

#[derive(Debug, Deserialize)]
pub struct UrlForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
}

impl CsrfForm for UrlForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Template)]
#[template(path = "console/webhook_set.html")]
struct SetPage {
    chrome: Chrome,
    name: String,
    set: WebhookWithSecret,
}

/// Shows the new signing secret on the answer to the POST itself, the only time it is shown.
pub async fn set(Path(id): Path<i64>, change: Change<UrlForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "change webhooks")?;
    let ops = session.ops();
    let customer = ops.get().customer(id).await?;
    let set = match ops.get().set_webhook(id, &change.form.url).await {
        Ok(set) => set,
        Err(error) => return Ok(back_to(session, id, Err(error.to_string()))),
    };
    // Setting lifts a pause: what waited goes out now.
    session.app().notify_wake.notify_one();
    let page = SetPage {
        chrome: Chrome::new(session, "customers"),
        name: customer.name,
        set,
    };
    Ok(render(&page, session))
}

pub async fn remove(Path(id): Path<i64>, change: Change<CsrfOnly>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "change webhooks")?;
    let result = session
        .ops()
        .get()
        .clear_webhook(id)
        .await
        .map(|_| "Webhook removed; events not yet delivered were dropped".to_owned())
        .map_err(|e| e.to_string());
    Ok(back_to(session, id, result))
}

pub async fn resume(Path(id): Path<i64>, change: Change<CsrfOnly>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "change webhooks")?;
    let result = session
        .ops()
        .get()
        .resume_webhook(id)
        .await
        .map(|w| {
            format!(
                "Deliveries resumed: {} waiting events go out now",
                w.pending
            )
        })
        .map_err(|e| e.to_string());
    if result.is_ok() {
        session.app().notify_wake.notify_one();
    }
    Ok(back_to(session, id, result))
}

#[derive(Debug, Deserialize)]
pub struct ThresholdForm {
    #[serde(default)]
    csrf: String,
    /// A positive amount; empty removes the threshold.
    #[serde(default)]
    threshold: String,
}

impl CsrfForm for ThresholdForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn low_balance(Path(id): Path<i64>, change: Change<ThresholdForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "change webhooks")?;
    let threshold = Some(change.form.threshold.trim()).filter(|t| !t.is_empty());
    let result = session
        .ops()
        .get()
        .set_low_balance(id, threshold)
        .await
        .map(|w| match w.low_balance_threshold {
            Some(t) => format!("Low-balance threshold set to {t}"),
            None => "Low-balance threshold removed".to_owned(),
        })
        .map_err(|e| e.to_string());
    Ok(back_to(session, id, result))
}

/// Queues one of the customer's events again, under its own id.
pub async fn resend(Path((id, event)): Path<(i64, i64)>, change: Change<CsrfOnly>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "resend webhook events")?;
    let ops = session.ops();
    if ops.get().webhook_event(event).await?.customer != id {
        return Err(ConsoleError::NotFound(format!(
            "customer {id} has no webhook event {event}"
        )));
    }
    let result = ops
        .get()
        .resend_webhook_event(event)
        .await
        .map(|e| format!("Event {} ({}) queued again", e.id, e.event))
        .map_err(|e| e.to_string());
    if result.is_ok() {
        session.app().notify_wake.notify_one();
    }
    Ok(back_to(session, id, result))
}
