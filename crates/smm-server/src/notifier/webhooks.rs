//! Customers' status webhooks: what each event's body says, and its delivery from the store's
//! outbox (`docs/notifications.md` is the receiver's side).
//!
//! A round claims due events (an order's next event only once the one before it is
//! delivered), posts each signed over the SSRF-guarded [`OutboundClient`] with bounded
//! concurrency, and records every attempt and its consequence in one transaction: delivered,
//! retried after an exponential backoff with jitter, or (when the receiver still fails an
//! event `retry_window_secs` after it was recorded, or its URL now resolves to an address it
//! may not reach) the customer's deliveries paused and the reseller alerted. A crash between
//! the post and the record leaves the event claimed until its lease ends, then it goes out
//! again: at least once, under the same event id.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use smm_notify::{OutboundClient, SendError, signing};
use smm_store::{
    DeliveryNext, DeliveryOutcome, Timestamp, WebhookEvent, WebhookEventData, WebhookJob,
};
use smm_wire::Money;
use smm_wire::response::StatusItem;

use crate::app::{App, now_ms};
use crate::config::notifications::WebhookDeliverySettings;

/// The JSON body receivers get for `event`, the customer's currency named as `status` names it.
/// Every body has `event_id` (the de-duplication key), `event` and `occurred_at` (Unix
/// seconds); `order.status` adds the order id, its previous status and the same fields as the
/// v2 `status` reply at that moment.
pub fn payload(event: &WebhookEvent, currency: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Head {
        event_id: i64,
        event: &'static str,
        occurred_at: i64,
    }
    #[derive(Serialize)]
    struct OrderStatus<'a> {
        #[serde(flatten)]
        head: Head,
        order: i64,
        previous_status: &'a str,
        #[serde(flatten)]
        item: StatusItem,
    }
    #[derive(Serialize)]
    struct RefillStatus<'a> {
        #[serde(flatten)]
        head: Head,
        refill: i64,
        order: i64,
        previous_status: &'a str,
        status: &'a str,
    }
    #[derive(Serialize)]
    struct RefundPaid<'a> {
        #[serde(flatten)]
        head: Head,
        order: i64,
        amount: String,
        balance: String,
        currency: &'a str,
    }
    #[derive(Serialize)]
    struct BalanceLow<'a> {
        #[serde(flatten)]
        head: Head,
        balance: String,
        threshold: String,
        currency: &'a str,
    }
    let head = Head {
        event_id: event.id,
        event: event.data.kind().as_str(),
        occurred_at: event.created_at.div_euclid(1000),
    };
    let money = |m: &Money| m.to_string();
    let body = match &event.data {
        WebhookEventData::OrderStatus { order, previous } => serde_json::to_vec(&OrderStatus {
            head,
            order: order.id.0,
            previous_status: previous.as_str(),
            item: crate::v2::status_item(order, currency),
        }),
        WebhookEventData::RefillStatus {
            refill,
            order,
            status,
            previous,
        } => serde_json::to_vec(&RefillStatus {
            head,
            refill: refill.0,
            order: order.0,
            previous_status: previous.as_str(),
            status: status.as_str(),
        }),
        WebhookEventData::RefundPaid {
            order,
            amount,
            balance,
        } => serde_json::to_vec(&RefundPaid {
            head,
            order: order.0,
            amount: money(amount),
            balance: money(balance),
            currency,
        }),
        WebhookEventData::BalanceLow { balance, threshold } => serde_json::to_vec(&BalanceLow {
            head,
            balance: money(balance),
            threshold: money(threshold),
            currency,
        }),
    };
    // Serialising these plain structs cannot fail.
    body.unwrap_or_default()
}

/// When to try again after `attempts` failed attempts: `first_retry_secs` doubled per attempt,
/// at most `max_retry_secs`, then ±25 % of jitter so that receivers coming back are not hit
/// by every waiting event at once. Integer arithmetic: `jitter_percent` is 75..=125.
pub fn retry_delay_ms(
    settings: &WebhookDeliverySettings,
    attempts: i64,
    jitter_percent: u64,
) -> i64 {
    let first = settings.first_retry_secs.saturating_mul(1000);
    let cap = settings.max_retry_secs.saturating_mul(1000).max(first);
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    let base = first.saturating_mul(1u64 << doublings.min(40)).min(cap);
    let jittered = base.saturating_mul(jitter_percent.clamp(75, 125)) / 100;
    i64::try_from(jittered).unwrap_or(i64::MAX)
}

/// What to do with an event after a failed attempt (its `attempts` counting this one).
pub fn after_failure(
    settings: &WebhookDeliverySettings,
    event: &WebhookEvent,
    attempts: i64,
    now: Timestamp,
) -> DeliveryNext {
    let window = i64::try_from(settings.retry_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now.saturating_sub(event.created_at) >= window {
        return DeliveryNext::Pause;
    }
    let delay = retry_delay_ms(settings, attempts, fastrand::u64(75..=125));
    DeliveryNext::RetryAt(now.saturating_add(delay))
}

/// Posts one event, signed, and says what became of it.
async fn deliver(
    client: &OutboundClient,
    settings: &WebhookDeliverySettings,
    job: WebhookJob,
) -> DeliveryOutcome {
    let event = &job.event;
    let body = payload(event, &job.currency);
    let headers = signing::signed_headers(
        &job.secret,
        now_ms().div_euclid(1000),
        &event.id.to_string(),
        event.data.kind().as_str(),
        &body,
    );
    let result = match url::Url::parse(&job.url) {
        Ok(url) => client.post(&url, &headers, "application/json", body).await,
        Err(e) => Err(SendError::Other(format!(
            "the webhook URL does not parse: {e}"
        ))),
    };
    let at = now_ms();
    let attempts = event.attempts.saturating_add(1);
    let (http_status, latency_ms, error, next) = match result {
        Ok(reply) if (200..300).contains(&reply.status) => (
            Some(reply.status),
            millis(reply.latency),
            None,
            DeliveryNext::Delivered,
        ),
        Ok(reply) => (
            Some(reply.status),
            millis(reply.latency),
            Some(format!("the receiver answered HTTP {}", reply.status)),
            after_failure(settings, event, attempts, at),
        ),
        // The URL was checked when it was set: one that now resolves to an address the
        // gateway may not reach is someone trying to; stop at once.
        Err(SendError::Refused(why)) => (None, 0, Some(why.to_string()), DeliveryNext::Pause),
        Err(other) => (
            None,
            0,
            Some(other.to_string()),
            after_failure(settings, event, attempts, at),
        ),
    };
    DeliveryOutcome {
        event: event.id,
        customer: event.customer,
        at,
        http_status,
        latency_ms,
        error,
        next,
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One delivery round: claims due events, delivers them, records the outcomes. Returns how
/// many events were claimed (a full batch means more are probably due).
pub async fn round(app: &Arc<App>, client: &OutboundClient) -> usize {
    let settings = app.settings().webhooks.clone();
    let now = now_ms();
    // Long enough for the whole batch at the configured concurrency, each call timing out.
    let waves = u64::from(settings.batch).div_ceil(settings.concurrency.max(1) as u64);
    let lease_ms = waves
        .saturating_mul(settings.timeout_secs.saturating_mul(1000))
        .saturating_add(30_000);
    let lease_until = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX / 2));
    let jobs = match app
        .store
        .claim_webhook_events(settings.batch, lease_until, now)
        .await
    {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::warn!(%error, "cannot claim webhook events");
            return 0;
        }
    };
    let claimed = jobs.len();
    if claimed == 0 {
        return 0;
    }
    let outcomes: Vec<DeliveryOutcome> = futures_util::stream::iter(jobs)
        .map(|job| deliver(client, &settings, job))
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    for outcome in &outcomes {
        let label = match (outcome.next, &outcome.http_status) {
            (DeliveryNext::Delivered, _) => "delivered",
            (_, Some(_)) => "failed_status",
            (_, None) => "failed_call",
        };
        app.metrics.webhook_delivery(label, outcome.latency_ms);
    }
    match app
        .store
        .finish_webhook_deliveries(&outcomes, now_ms())
        .await
    {
        Ok(paused) => {
            for customer in paused {
                let why = outcomes
                    .iter()
                    .rev()
                    .find(|o| o.customer == customer)
                    .and_then(|o| o.error.clone())
                    .unwrap_or_default();
                tracing::warn!(customer = customer.0, %why, "webhook deliveries paused");
                super::alerts::webhook_paused(app, customer, &why).await;
            }
        }
        // The events stay claimed until their lease ends, then go out again: a receiver
        // may see an event twice, never miss one.
        Err(error) => tracing::warn!(%error, "cannot record webhook deliveries"),
    }
    claimed
}
