//! Customers' status webhooks: what each event's body says, and its delivery from the store's
//! outbox (`docs/notifications.md` is the receiver's side).
//!
//! The pipeline ([`run`]) claims due events (an order's next event only once the one before it
//! is delivered), posts each signed over the SSRF-guarded [`OutboundClient`] with bounded
//! concurrency, and records attempts and their consequences in batched transactions: delivered,
//! retried after an exponential backoff with jitter, or (when the receiver still fails an
//! event `retry_window_secs` after it was recorded, or its URL now resolves to an address it
//! may not reach) the customer's deliveries paused and the reseller alerted. A crash between
//! the post and the record leaves the event claimed until its lease ends, then it goes out
//! again: at least once, under the same event id.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use smm_notify::{OutboundClient, SendError, signing};
use smm_store::{
    CustomerId, DeliveryNext, DeliveryOutcome, Timestamp, WebhookClaim, WebhookEvent,
    WebhookEventData, WebhookJob,
};
use smm_wire::Money;
use smm_wire::response::StatusItem;
use tokio::sync::watch;

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

/// What to do with an event after a failed attempt: retried after the backoff of its
/// failures since its retries last started afresh (`tries`, this one included), or, once
/// `retry_window_secs` have passed since then (`retry_from`), its customer paused.
pub fn after_failure(
    settings: &WebhookDeliverySettings,
    event: &WebhookEvent,
    now: Timestamp,
) -> DeliveryNext {
    let window = i64::try_from(settings.retry_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now.saturating_sub(event.retry_from) >= window {
        return DeliveryNext::Pause;
    }
    let tries = event.tries.saturating_add(1);
    let delay = retry_delay_ms(settings, tries, fastrand::u64(75..=125));
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
    let started = std::time::Instant::now();
    let result = match url::Url::parse(&job.url) {
        Ok(url) => client.post(&url, &headers, "application/json", body).await,
        Err(e) => Err(SendError::Other(format!(
            "the webhook URL does not parse: {e}"
        ))),
    };
    let waited = millis(started.elapsed());
    let at = now_ms();
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
            after_failure(settings, event, at),
        ),
        // The URL was checked when it was set: one that now resolves to an address the
        // gateway may not reach is someone trying to; stop at once.
        Err(SendError::Refused(why)) => (None, waited, Some(why.to_string()), DeliveryNext::Pause),
        Err(other) => (
            None,
            waited,
            Some(other.to_string()),
            after_failure(settings, event, at),
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

/// Outcomes are recorded at least this often while deliveries run ...
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// ... or as soon as this many are waiting to be recorded.
const FLUSH_AT: usize = 200;
/// Events of one receiver in hand here (running or waiting) per delivery it may run at once:
/// enough queued behind each running delivery that a fast receiver never waits for a claim.
const QUEUE_PER_SLOT: usize = 4;

/// How long a claim holds its events. A receiver has at most [`QUEUE_PER_SLOT`] waves of
/// events in hand here, so each of them starts within that many delivery timeouts; the lease
/// leaves room for two more and a margin.
fn lease_ms(settings: &WebhookDeliverySettings) -> i64 {
    let waves = QUEUE_PER_SLOT as u64 + 2;
    let ms = settings
        .timeout_secs
        .saturating_mul(1_000)
        .saturating_mul(waves)
        .saturating_add(30_000);
    i64::try_from(ms).unwrap_or(i64::MAX / 2)
}

/// A claimed event is started only while a whole attempt still fits in its lease (the timeout
/// and five seconds); later it is let go and the next claim after the lease takes it, so no
/// two claimers deliver it at once.
fn start_by(settings: &WebhookDeliverySettings, lease_until: Timestamp) -> Timestamp {
    let margin = i64::try_from(settings.timeout_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX / 4)
        .saturating_add(5_000);
    lease_until.saturating_sub(margin)
}

/// The deliveries of this process: what it claimed, what runs, what waits to be recorded.
#[derive(Default)]
struct Pipeline {
    /// Claimed and not started, in claim order, with each one's lease end.
    waiting: VecDeque<(WebhookJob, Timestamp)>,
    /// Deliveries running, per customer.
    running: HashMap<CustomerId, usize>,
    /// Outcomes not yet recorded.
    done: Vec<DeliveryOutcome>,
}

impl Pipeline {
    /// Customers with `limit` events in hand (running or waiting): claims skip them.
    fn busy(&self, limit: usize) -> Vec<CustomerId> {
        let mut in_hand = self.running.clone();
        for (job, _) in &self.waiting {
            *in_hand.entry(job.event.customer).or_default() += 1;
        }
        in_hand
            .into_iter()
            .filter(|(_, n)| *n >= limit)
            .map(|(customer, _)| customer)
            .collect()
    }

    fn finished(&mut self, app: &App, outcome: DeliveryOutcome) {
        if let Some(n) = self.running.get_mut(&outcome.customer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(&outcome.customer);
            }
        }
        let label = match (outcome.next, &outcome.http_status) {
            (DeliveryNext::Delivered, _) => "delivered",
            (_, Some(_)) => "failed_status",
            (_, None) => "failed_call",
        };
        app.metrics.webhook_delivery(label, outcome.latency_ms);
        self.done.push(outcome);
    }
}

/// Delivers customers' webhook events until `shutdown` turns true: a pipeline, so that a slow
/// receiver holds up its own events only.
///
/// * Claims take the oldest due events, at most [`QUEUE_PER_SLOT`] × `per_receiver_concurrency`
///   of one customer, none of the customers whose receivers already have that many in hand
///   here.
/// * At most `concurrency` deliveries run at once, at most `per_receiver_concurrency` to one
///   customer; the others wait their turn in claim order.
/// * Outcomes are recorded in batches (every [`FLUSH_EVERY`], or [`FLUSH_AT`] at once), each
///   batch one transaction. An order's next event is claimable once the one before it is
///   recorded as delivered.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut client: Option<(u64, OutboundClient)> = None;
    let mut pipe = Pipeline::default();
    let mut in_flight = FuturesUnordered::new();
    let mut last_flush = tokio::time::Instant::now();
    let mut claim_now = true;
    loop {
        if *shutdown.borrow() {
            // Deliveries still running are dropped: their events go out again after the lease.
            flush(&app, &mut pipe.done).await;
            return;
        }
        let runtime = app.runtime();
        let settings = &runtime.settings.webhooks;
        if client.as_ref().is_none_or(|(v, _)| *v != runtime.version) {
            match super::webhook_client(&runtime.settings) {
                Ok(fresh) => client = Some((runtime.version, fresh)),
                Err(error) => tracing::error!(%error, "cannot build the webhook client"),
            }
        }
        let Some((_, http)) = &client else {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let per_receiver = settings.per_receiver_concurrency.max(1);
        let concurrency = settings.concurrency.max(1);

        let in_hand = per_receiver.saturating_mul(QUEUE_PER_SLOT);
        if claim_now && pipe.waiting.len() < concurrency.saturating_mul(QUEUE_PER_SLOT) {
            claim_now = false;
            let busy = pipe.busy(in_hand);
            let now = now_ms();
            let lease_until = now.saturating_add(lease_ms(settings));
            let claim = WebhookClaim {
                limit: settings.batch,
                per_customer: u32::try_from(in_hand).unwrap_or(u32::MAX),
                skip: &busy,
            };
            match app
                .store
                .claim_webhook_events(claim, lease_until, now)
                .await
            {
                Ok(jobs) => {
                    // A full claim means more are due: claim again at the next turn.
                    claim_now = jobs.len() >= settings.batch as usize;
                    pipe.waiting
                        .extend(jobs.into_iter().map(|job| (job, lease_until)));
                }
                Err(error) => tracing::warn!(%error, "cannot claim webhook events"),
            }
        }

        // Start what may start, oldest first, skipping receivers at their limit.
        let mut held = VecDeque::new();
        while in_flight.len() < concurrency
            && let Some((job, lease_until)) = pipe.waiting.pop_front()
        {
            if now_ms() > start_by(settings, lease_until) {
                continue;
            }
            let running = pipe.running.entry(job.event.customer).or_default();
            if *running >= per_receiver {
                held.push_back((job, lease_until));
                continue;
            }
            *running += 1;
            let http = http.clone();
            let settings = settings.clone();
            in_flight.push(async move { deliver(&http, &settings, job).await });
        }
        held.extend(pipe.waiting.drain(..));
        pipe.waiting = held;

        let idle = in_flight.is_empty() && pipe.waiting.is_empty() && pipe.done.is_empty();
        let pause = if idle {
            Duration::from_millis(settings.interval_ms.max(10))
        } else {
            FLUSH_EVERY
        };
        tokio::select! {
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                pipe.finished(&app, outcome);
                // Whatever else finished meanwhile.
                while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                    pipe.finished(&app, outcome);
                }
            }
            () = tokio::time::sleep(pause) => claim_now = true,
            () = app.notify_wake.notified(), if idle => claim_now = true,
            _ = shutdown.changed() => {}
        }
        if pipe.done.len() >= FLUSH_AT
            || (!pipe.done.is_empty()
                && (last_flush.elapsed() >= FLUSH_EVERY || in_flight.is_empty()))
        {
            flush(&app, &mut pipe.done).await;
            last_flush = tokio::time::Instant::now();
            // Delivered events may have been holding back their orders' next ones.
            claim_now = true;
        }
    }
}

/// Records the outcomes (one transaction, with the alerts of the customers it pauses). On failure
/// the events stay claimed until their lease ends, then go out again: a receiver may see an
/// event twice, never miss one.
async fn flush(app: &Arc<App>, done: &mut Vec<DeliveryOutcome>) {
    if done.is_empty() {
        return;
    }
    let outcomes = std::mem::take(done);
    let channels: Vec<String> = app
        .settings()
        .alerts
        .channels
        .iter()
        .map(|c| c.name.clone())
        .collect();
    match app
        .store
        .finish_webhook_deliveries(&outcomes, &channels, now_ms())
        .await
    {
        // The store wrote each pause's alert with it.
        Ok(paused) => {
            for customer in paused {
                tracing::warn!(customer = customer.0, "webhook deliveries paused");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot record webhook deliveries"),
    }
}
