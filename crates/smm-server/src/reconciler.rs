//! The reconciler: keeps every forwarded order, refill and cancel request in step with the
//! upstream panels.
//!
//! * **Status polling.** Due orders are claimed per provider (a lease hides them from other
//!   claims until their status is applied, their poll deferred or the lease runs out, so two
//!   pollers never ask for the same order; the lease is a row of its own, not a new version of
//!   the order), asked about in batches of at most 100
//!   ids, and each answer is applied by the store, which pays a Partial or Canceled refund at
//!   most once. An upstream failure (HTML, 429, timeout) changes nothing but the schedule.
//!   New orders are polled soon, old ones less often, terminal ones never.
//! * **Refills** queued by customers are forwarded once each; their statuses are polled.
//! * **Cancel requests** are forwarded once each; money moves only when the order's status
//!   turns Canceled or Partial.
//!
//! Everything is keyed by (provider, upstream id): upstream ids are unique per provider only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use smm_provider_client::ProviderError;
use smm_store::{ForwardState, PollItem, RefillUpdate, StatusUpdate, Timestamp};
use smm_wire::upstream::{UpstreamId, UpstreamStatus};
use smm_wire::{MAX_IDS, OrderStatus};
use tokio::sync::watch;

use crate::app::{App, now_ms};

/// Orders claimed per poll batch.
const POLL_BATCH: u32 = 1_000;

/// Batches one provider polls in a round while each comes back full (a backlog), one after
/// another. In step with the other providers' single batches (issue #16), every provider's
/// upstream calls came at once and then every apply, so the database waited on the upstreams
/// and then the upstreams on it, and a round lasted as long as its slowest provider. Bounded so
/// that refills and cancels still get their turn every few seconds of a sweep.
const BATCHES_PER_ROUND: usize = 8;

/// Refills claimed per round. Each is one upstream call, made in turn: a small claim keeps the
/// last one well inside its lease even when the upstream is slow (a claim that outlives its
/// lease is flagged ambiguous rather than risk a second send).
const REFILL_CLAIM: u32 = 10;

/// How often the order aggregates' deltas are folded (PostgreSQL): often enough to keep them
/// few, seldom enough that a sweep does not pay for a fold and its VACUUM after every round.
const COMPACT_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let backlog = round(&app).await;
        if backlog {
            // A full batch was due somewhere: more are probably waiting (a backlog after an
            // outage, a large sweep). Go on at once, unless asked to stop.
            if *shutdown.borrow() {
                return;
            }
            continue;
        }
        let every = Duration::from_millis(app.settings().reconciler.interval_ms.max(10));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: polls, refills, cancels. True when some provider had a full batch of polls due.
pub async fn round(app: &App) -> bool {
    // Retired providers included: their orders keep reconciling.
    let runtime = app.runtime();
    let polls = runtime
        .providers
        .keys()
        .map(|provider| poll_backlog(app, provider));
    let backlogs = futures_util::future::join_all(polls).await;
    forward_refills(app).await;
    poll_refills(app).await;
    forward_cancels(app).await;
    backlogs.into_iter().any(|backlog| backlog)
}

/// Polls `provider`'s due orders, batch after batch while they come back full and go through
/// (every call answered, the statuses applied), at most [`BATCHES_PER_ROUND`]. A provider
/// that is down is asked once a round, as before, so the other providers' refills and
/// cancels do not wait on its timeouts. True when the last batch was full: more are probably
/// due.
async fn poll_backlog(app: &App, provider: &str) -> bool {
    for _ in 0..BATCHES_PER_ROUND {
        let batch = poll_provider(app, provider).await;
        let full = batch.claimed >= POLL_BATCH as usize;
        if !full || !batch.clean {
            return full;
        }
    }
    true
}

/// What one poll batch did.
struct PollBatch {
    /// Orders claimed.
    claimed: usize,
    /// Every status call answered and the statuses applied.
    clean: bool,
}

/// Keeps the console's order aggregates' pending deltas few (PostgreSQL; readers add them up),
/// until `shutdown` turns true. A task of its own: a fold after a sweep's rounds took up to 2 s
/// on PostgreSQL, and the polls need not wait for it (the triggers append deltas while it runs).
/// The pause is counted from the end of a fold, so a long fold is not followed by another.
pub async fn fold_aggregates(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(COMPACT_EVERY) => {
                if let Err(error) = app.store.compact_aggregates().await {
                    tracing::warn!(%error, "cannot fold the order aggregates' deltas");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// When to poll an order next: a tenth of its age, between `min_ms` and 30 minutes — soon
/// while young, less often as it ages. An unknown status is watched every 5 minutes at most.
pub fn next_poll(
    now: Timestamp,
    created_at: Timestamp,
    status: &OrderStatus,
    min_ms: i64,
) -> Timestamp {
    let age = (now - created_at).max(0);
    let max_ms = (30 * 60_000).max(min_ms);
    let delay = match status {
        OrderStatus::Unknown(_) => (5 * 60_000_i64).clamp(min_ms, max_ms),
        _ => (age / 10).clamp(min_ms, max_ms),
    };
    now + delay
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Polls `provider`'s due orders; returns how many were claimed.
async fn poll_provider(app: &App, provider: &str) -> PollBatch {
    let Some(provider_state) = app.provider(provider) else {
        return PollBatch {
            claimed: 0,
            clean: false,
        };
    };
    let client = &provider_state.client;
    let settings = app.settings();
    let now = now_ms();
    let due = match app
        .store
        .claim_polls(
            Some(provider),
            POLL_BATCH,
            now + ms(settings.reconciler.poll_lease_secs),
            now,
        )
        .await
    {
        Ok(due) => due,
        Err(error) => {
            tracing::error!(provider, %error, "cannot claim orders to poll");
            return PollBatch {
                claimed: 0,
                clean: false,
            };
        }
    };
    if due.is_empty() {
        return PollBatch {
            claimed: 0,
            clean: true,
        };
    }
    let by_id: BTreeMap<UpstreamId, &PollItem> = due
        .iter()
        .filter_map(|item| UpstreamId::new(&item.upstream_order_id).map(|id| (id, item)))
        .collect();
    let ids: Vec<UpstreamId> = by_id.keys().cloned().collect();
    // Chunks of 100 inside; chunk failures are reported per chunk.
    let call_started = std::time::Instant::now();
    let outcome = client.statuses(&ids).await;
    app.metrics
        .upstream_call_duration(provider, "status", call_started.elapsed());
    let chunks = ids.len().div_ceil(MAX_IDS) as u64;
    let failed_chunks = outcome.failed.len() as u64;
    app.metrics.upstream_calls(
        provider,
        "status",
        "ok",
        chunks.saturating_sub(failed_chunks),
    );
    for chunk in &outcome.failed {
        app.metrics
            .upstream_calls(provider, "status", chunk.error.class(), 1);
    }
    let mut updates = Vec::new();
    let mut polled = Vec::new();
    for (id, result) in outcome.items {
        let Some(item) = by_id.get(&id) else { continue };
        match result {
            Ok(status) => {
                updates.push((
                    item.upstream_order_id.clone(),
                    status_update(app, provider, item, status),
                ));
                polled.push(*item);
            }
            Err(kind) => {
                // The upstream does not know the order (yet, or any more): keep asking, slowly.
                tracing::warn!(provider, upstream_order = %id, order = item.order_id.0, error = %kind, "upstream has no status for an order");
                defer(
                    app,
                    &[item.order_id],
                    now + ms(settings.reconciler.failure_backoff_secs),
                )
                .await;
            }
        }
    }
    // One transaction for the batch, its refunds included.
    let mut clean = outcome.failed.is_empty();
    let applied = match app.store.apply_statuses(provider, updates, now_ms()).await {
        Ok(results) => record_applied(provider, &polled, &results, app),
        Err(error) => {
            clean = false;
            tracing::error!(provider, orders = polled.len(), %error, "cannot apply statuses; they are polled again after the lease");
            0
        }
    };
    let mut failed = Vec::new();
    for chunk in &outcome.failed {
        tracing::warn!(provider, ids = chunk.ids.len(), error = %chunk.error, "status poll failed; backing off");
        failed.extend(
            chunk
                .ids
                .iter()
                .filter_map(|id| by_id.get(id).map(|i| i.order_id)),
        );
    }
    failed.extend(
        outcome
            .missing
            .iter()
            .filter_map(|id| by_id.get(id).map(|i| i.order_id)),
    );
    if !failed.is_empty() {
        defer(
            app,
            &failed,
            now + ms(settings.reconciler.failure_backoff_secs),
        )
        .await;
    }
    tracing::debug!(provider, polled = due.len(), applied, "status poll round");
    PollBatch {
        claimed: due.len(),
        clean,
    }
}

/// The store update for one polled status (unknown statuses are counted and logged).
fn status_update(
    app: &App,
    provider: &str,
    item: &PollItem,
    status: UpstreamStatus,
) -> StatusUpdate {
    if let OrderStatus::Unknown(raw) = &status.status {
        app.metrics.unknown_status(provider);
        tracing::warn!(provider, order = item.order_id.0, status = %raw, "unknown upstream status: order kept under watch");
    }
    let extra = extra_json(&status);
    StatusUpdate {
        delivery: smm_store::Delivery {
            runs: status.runs,
            posts: status.posts,
            charge: status.charge,
        },
        next_poll_at: next_poll(
            now_ms(),
            item.created_at,
            &status.status,
            ms(app.settings().reconciler.min_poll_secs),
        ),
        status: status.status,
        start_count: status.start_count,
        remains: status.remains,
        extra,
    }
}

/// Counts and logs what a batch did; returns how many statuses were recorded.
fn record_applied(
    provider: &str,
    polled: &[&PollItem],
    results: &[Option<smm_store::StatusApplied>],
    app: &App,
) -> usize {
    let mut applied = 0;
    for (item, result) in polled.iter().zip(results) {
        let Some(result) = result else {
            tracing::warn!(
                provider,
                order = item.order_id.0,
                "polled order no longer matches its upstream id"
            );
            continue;
        };
        applied += 1;
        app.forget_order_views([result.order_id]);
        if let Some(refund) = result.refund {
            app.metrics.refund("status");
            tracing::info!(provider, order = result.order_id.0, %refund, "refund paid");
        }
    }
    applied
}

/// Drip-feed and subscription extras, passed through to the customer's `status`.
fn extra_json(status: &UpstreamStatus) -> Option<String> {
    let mut extra = serde_json::Map::new();
    if let Some(runs) = status.runs {
        extra.insert("runs".into(), runs.into());
    }
    let children: Vec<u64> = status
        .orders
        .iter()
        .filter_map(|id| id.as_str().parse().ok())
        .collect();
    if !children.is_empty() {
        extra.insert("orders".into(), children.into());
    }
    if let Some(posts) = status.posts {
        extra.insert("posts".into(), posts.into());
    }
    if let Some(expiry) = &status.expiry {
        extra.insert("expiry".into(), expiry.clone().into());
    }
    (!extra.is_empty()).then(|| serde_json::Value::Object(extra).to_string())
}

async fn defer(app: &App, orders: &[smm_store::OrderId], until: Timestamp) {
    if let Err(error) = app.store.defer_polls(orders, until).await {
        tracing::error!(%error, "cannot defer polls");
    }
}

/// Sends queued refills upstream, each exactly once.
async fn forward_refills(app: &App) {
    // Claimed = marked `sending` by this worker, committed before any call leaves: another
    // instance never gets the same refill, and a crash after the call never sends it twice.
    let queued = match app
        .store
        .claim_refills(&app.worker_id, REFILL_CLAIM, now_ms())
        .await
    {
        Ok(queued) => queued,
        Err(error) => {
            tracing::error!(%error, "cannot claim queued refills");
            return;
        }
    };
    // Sent concurrently: the whole claim finishes within one call's timeout, well inside its
    // lease (config validation keeps the lease above twice a call's timeouts).
    futures_util::future::join_all(queued.into_iter().map(|refill| forward_refill(app, refill)))
        .await;
}

/// Sends one claimed refill, or settles it without a call when it cannot be sent.
async fn forward_refill(app: &App, refill: smm_store::Refill) {
    let settle = |state: ForwardState, error: String| RefillUpdate {
        forward_state: Some(state),
        status: (state == ForwardState::Rejected).then_some(smm_wire::RefillStatus::Rejected),
        error: Some(error),
        ..RefillUpdate::default()
    };
    let order = match app.store.order(refill.order_id).await {
        Ok(order) => order,
        Err(error) => {
            // Not sent: back in the queue for the next round.
            tracing::error!(refill = refill.id.0, %error, "refill of an unreadable order");
            let back = RefillUpdate {
                forward_state: Some(ForwardState::Queued),
                ..RefillUpdate::default()
            };
            set_refill(app, refill.id, back).await;
            return;
        }
    };
    let (Some(provider), Some(upstream)) = (
        order.provider.as_deref(),
        order.upstream_order_id.as_deref(),
    ) else {
        let update = settle(
            ForwardState::Rejected,
            "the order was never accepted upstream".into(),
        );
        set_refill(app, refill.id, update).await;
        return;
    };
    let Some(upstream) = UpstreamId::new(upstream) else {
        let update = settle(
            ForwardState::Rejected,
            format!("the upstream order id {upstream:?} cannot be sent"),
        );
        set_refill(app, refill.id, update).await;
        return;
    };
    let Some(provider_state) = app.provider(provider) else {
        // Provider gone from the config (after a restart without it): refused rather than
        // queued forever ahead of every newer refill.
        tracing::warn!(
            refill = refill.id.0,
            provider,
            "refill for an unconfigured provider refused"
        );
        let update = settle(
            ForwardState::Rejected,
            format!("provider {provider} is no longer configured"),
        );
        set_refill(app, refill.id, update).await;
        return;
    };
    let update = match provider_state.client.refill(&upstream).await {
        Ok(upstream_refill) => RefillUpdate {
            provider: Some(provider.to_owned()),
            upstream_refill_id: Some(upstream_refill.as_str().to_owned()),
            forward_state: Some(ForwardState::Sent),
            ..RefillUpdate::default()
        },
        Err(error) if error.is_definitive_no() => settle(ForwardState::Rejected, error.to_string()),
        Err(error) => settle(ForwardState::Ambiguous, error.to_string()),
    };
    set_refill(app, refill.id, update).await;
}

/// Refreshes the statuses of refills that are upstream and not finished.
async fn poll_refills(app: &App) {
    let sent = match app.store.unfinished_refills(1_000).await {
        Ok(sent) => sent,
        Err(error) => {
            tracing::error!(%error, "cannot list sent refills");
            return;
        }
    };
    let mut by_provider: BTreeMap<String, Vec<(UpstreamId, smm_store::RefillId)>> = BTreeMap::new();
    for refill in sent.iter().filter(|r| !r.status.is_terminal()) {
        if let (Some(provider), Some(id)) = (
            &refill.provider,
            refill
                .upstream_refill_id
                .as_deref()
                .and_then(UpstreamId::new),
        ) {
            by_provider
                .entry(provider.clone())
                .or_default()
                .push((id, refill.id));
        }
    }
    for (provider, refills) in by_provider {
        let Some(provider_state) = app.provider(&provider) else {
            continue;
        };
        let client = &provider_state.client;
        let ids: Vec<UpstreamId> = refills.iter().map(|(id, _)| id.clone()).collect();
        let outcome = client.refill_statuses(&ids).await;
        for (id, result) in outcome.items {
            let Ok(status) = result else { continue };
            if let Some((_, local)) = refills.iter().find(|(u, _)| *u == id) {
                set_refill(
                    app,
                    *local,
                    RefillUpdate {
                        status: Some(status),
                        ..RefillUpdate::default()
                    },
                )
                .await;
            }
        }
    }
}

async fn set_refill(app: &App, id: smm_store::RefillId, update: RefillUpdate) -> bool {
    match app.store.update_refill(id, update, now_ms()).await {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(refill = id.0, %error, "cannot update a refill");
            false
        }
    }
}

/// Sends queued cancel requests upstream, each exactly once, grouped per provider.
async fn forward_cancels(app: &App) {
    // First the requests whose order will never be upstream: refused everywhere (already
    // refunded) or queued again (canceled and refunded now, as a cancel of a queued order is).
    match app
        .store
        .close_unsendable_cancels(MAX_IDS as u32, now_ms())
        .await
    {
        Ok(closed) => {
            for (order, refund) in closed {
                if let Some(refund) = refund {
                    tracing::info!(order = order.0, %refund, "order canceled before forwarding");
                    app.metrics.refund("canceled_before_forwarding");
                } else {
                    tracing::info!(
                        order = order.0,
                        "cancel of an order refused upstream closed"
                    );
                }
            }
        }
        Err(error) => tracing::error!(%error, "cannot close cancels of orders not upstream"),
    }
    // Claimed (`sending`, committed) before any call: never twice, across instances or a crash.
    let queued = match app
        .store
        .claim_cancels(&app.worker_id, MAX_IDS as u32, now_ms())
        .await
    {
        Ok(queued) => queued,
        Err(error) => {
            tracing::error!(%error, "cannot claim queued cancels");
            return;
        }
    };
    let mut by_provider: BTreeMap<String, Vec<(UpstreamId, i64)>> = BTreeMap::new();
    for request in queued {
        let order = match app.store.order(request.order_id).await {
            Ok(order) => order,
            Err(error) => {
                // Not sent: back in the queue for the next round.
                tracing::error!(cancel = request.id, %error, "cancel of an unreadable order");
                let _ = app
                    .store
                    .update_cancel(request.id, ForwardState::Queued, None, now_ms())
                    .await;
                continue;
            }
        };
        match (
            order.provider,
            order.upstream_order_id.as_deref().and_then(UpstreamId::new),
        ) {
            (Some(provider), Some(id)) => by_provider
                .entry(provider)
                .or_default()
                .push((id, request.id)),
            _ => {
                let _ = app
                    .store
                    .update_cancel(
                        request.id,
                        ForwardState::Rejected,
                        Some("the order is not upstream"),
                        now_ms(),
                    )
                    .await;
            }
        }
    }
    // One call per provider (a claim is at most one chunk), all at once: the claim ends within
    // one call's timeout, inside its lease.
    let sends = by_provider
        .into_iter()
        .map(|(provider, requests)| send_cancels(app, provider, requests));
    futures_util::future::join_all(sends).await;
}

/// Sends one provider's claimed cancel requests and records each outcome.
async fn send_cancels(app: &App, provider: String, requests: Vec<(UpstreamId, i64)>) {
    let Some(provider_state) = app.provider(&provider) else {
        // Provider gone from the config (after a restart without it): refused rather than
        // queued forever ahead of every newer cancel.
        tracing::warn!(
            provider,
            cancels = requests.len(),
            "cancels for an unconfigured provider refused"
        );
        let why = format!("provider {provider} is no longer configured");
        for (_, request) in &requests {
            let _ = app
                .store
                .update_cancel(*request, ForwardState::Rejected, Some(&why), now_ms())
                .await;
        }
        return;
    };
    let client = &provider_state.client;
    for chunk in requests.chunks(MAX_IDS) {
        let ids: Vec<UpstreamId> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let outcome = client.cancels(&ids).await;
        for (id, result) in &outcome.items {
            let Some((_, request)) = chunk.iter().find(|(u, _)| u == id) else {
                continue;
            };
            let (state, error) = match result {
                Ok(()) => (ForwardState::Sent, None),
                Err(kind) => (ForwardState::Rejected, Some(kind.to_string())),
            };
            let _ = app
                .store
                .update_cancel(*request, state, error.as_deref(), now_ms())
                .await;
        }
        for failure in &outcome.failed {
            // Certainly not received (`NotSent`): back in the queue for the next round, as a
            // transport failure says nothing about the order.
            let (state, error) = match &failure.error {
                ProviderError::NotSent { .. } => (ForwardState::Queued, None),
                e if e.is_definitive_no() => (ForwardState::Rejected, Some(e.to_string())),
                e => (ForwardState::Ambiguous, Some(e.to_string())),
            };
            for id in &failure.ids {
                if let Some((_, request)) = chunk.iter().find(|(u, _)| u == id) {
                    let _ = app
                        .store
                        .update_cancel(*request, state, error.as_deref(), now_ms())
                        .await;
                }
            }
        }
        for id in &outcome.missing {
            if let Some((_, request)) = chunk.iter().find(|(u, _)| u == id) {
                let _ = app
                    .store
                    .update_cancel(
                        *request,
                        ForwardState::Ambiguous,
                        Some("no answer for this order"),
                        now_ms(),
                    )
                    .await;
            }
        }
    }
}
