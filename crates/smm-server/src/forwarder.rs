//! The forwarder: sends placed orders upstream exactly once, or flags them.
//!
//! A durable outbox. `add` only places the order (debit, ledger row, order `queued`) and wakes
//! this task. The forwarder claims queued orders (`sending`, committed), and for each one walks
//! its routes in priority order, noting every attempt durably *before* the call leaves:
//!
//! * the upstream accepts → `sent`, polled from then on;
//! * the upstream definitively refuses (`Rejected`) or the call never left (`NotSent`) → the next
//!   route; when none is left the order is rejected with a full refund, or — if some route was
//!   only unreachable — queued again for later;
//! * anything that may have reached the upstream (`Ambiguous`, `Protocol`) → `ambiguous`: never
//!   re-sent automatically, left to reconciliation and the admin.
//!
//! A crash between "sending" and the outcome leaves the order `sending`; [`recover`] turns such
//! claims into `ambiguous` once their lease has expired.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rust_decimal::Decimal;
use smm_provider_client::ProviderError;
use smm_store::{AttemptStart, ForwardOutcome, Order};
use smm_wire::OrderRequest;
use tokio::sync::watch;

use crate::app::{App, Provider, now_ms};

/// Runs until `shutdown` turns true, finishing the order in hand first.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let interval = Duration::from_millis(app.settings().forwarder.interval_ms);
        if *shutdown.borrow() {
            return;
        }
        let handled = round(&app).await;
        if handled > 0 {
            continue; // more may be waiting
        }
        tokio::select! {
            () = app.forward_wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Claims one batch and forwards it; returns how many orders were handled.
pub async fn round(app: &App) -> usize {
    let settings = app.settings();
    let settings = &settings.forwarder;
    // Claim no more than can be sent at once: a claimed order waiting its turn would age
    // towards the lease and be parked as ambiguous without ever having been sent.
    let limit = settings
        .batch
        .min(u32::try_from(settings.concurrency).unwrap_or(u32::MAX))
        .max(1);
    let claimed = match app
        .store
        .claim_for_forwarding(&app.worker_id, limit, now_ms())
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::error!(%error, "cannot claim orders to forward");
            return 0;
        }
    };
    let count = claimed.len();
    let planned: Vec<(Order, Plan)> = claimed
        .into_iter()
        .map(|order| {
            let plan = plan(app, &order);
            (order, plan)
        })
        .collect();
    // The first attempt of every order in the batch is noted in one commit, before any call.
    let firsts: Vec<AttemptStart> = planned
        .iter()
        .filter_map(|(order, plan)| match plan {
            Plan::Send { routes, .. } => routes.first().map(|(route, _)| AttemptStart {
                order: order.id,
                provider: route.provider.clone(),
                upstream_service: route.upstream_service.as_str().to_owned(),
            }),
            _ => None,
        })
        .collect();
    let first_noted = match app.store.begin_attempts(&firsts, now_ms()).await {
        Ok(()) => true,
        Err(error) => {
            // Nothing was noted: each order notes its own attempt before its call instead.
            tracing::error!(%error, orders = firsts.len(), "cannot note the batch's attempts; noting them one by one");
            false
        }
    };
    futures_util::stream::iter(planned)
        .for_each_concurrent(settings.concurrency, |(order, plan)| {
            forward(app, order, plan, first_noted)
        })
        .await;
    count
}

/// What to do with a claimed order.
enum Plan {
    Reject(&'static str),
    Requeue(&'static str),
    /// Send through these routes in turn (each with its provider's client).
    Send {
        request: OrderRequest,
        routes: Vec<(smm_routing::Route, Arc<Provider>)>,
        flat_priced: bool,
    },
}

/// Decides, from the order and the current catalog, whether and where to send it.
fn plan(app: &App, order: &Order) -> Plan {
    let request: OrderRequest = match serde_json::from_str(&order.params) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(order = order.id.0, %error, "stored order parameters unreadable; rejecting");
            return Plan::Reject("stored order parameters unreadable");
        }
    };
    let catalog = app.catalog();
    let Some(service) = u64::try_from(order.service_id.0)
        .ok()
        .and_then(|s| catalog.get(s))
    else {
        return Plan::Reject("the service no longer exists");
    };
    if !service.enabled {
        return Plan::Reject("the service is disabled");
    }
    let routes: Vec<_> = smm_routing::candidate_routes(service, |p| app.provider_available(p))
        .into_iter()
        .filter_map(|route| app.provider(&route.provider).map(|p| (route.clone(), p)))
        .collect();
    if routes.is_empty() {
        return Plan::Requeue("no provider available");
    }
    Plan::Send {
        request,
        routes,
        flat_priced: service.service_type.is_flat_priced(),
    }
}

/// Turns claims older than the lease into `ambiguous` (their worker died mid-call).
pub async fn recover(app: &App, lease: Duration) {
    let cutoff = now_ms().saturating_sub(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    match app.store.recover_sending(cutoff, now_ms()).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(
                count = ids.len(),
                ?ids,
                "orders found in sending after a lost claim: now ambiguous"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "cannot recover stale claims"),
    }
    // Refills and cancels claimed by a dead worker may have reached the upstream too: flagged,
    // never re-sent.
    match app.store.recover_sending_refills(cutoff, now_ms()).await {
        Ok(ids) if !ids.is_empty() => tracing::warn!(
            count = ids.len(),
            ?ids,
            "refills found in sending after a lost claim: now ambiguous"
        ),
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "cannot recover stale refill claims"),
    }
    match app.store.recover_sending_cancels(cutoff, now_ms()).await {
        Ok(ids) if !ids.is_empty() => tracing::warn!(
            count = ids.len(),
            ?ids,
            "cancel requests found in sending after a lost claim: now ambiguous"
        ),
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "cannot recover stale cancel claims"),
    }
}

/// Forwards one claimed order through its routes. `first_noted`: the first route's attempt is
/// already durably noted (by the batch), so it is not noted again.
async fn forward(app: &App, order: Order, plan: Plan, first_noted: bool) {
    let id = order.id;
    let (request, routes, flat_priced) = match plan {
        Plan::Reject(why) => {
            reject(app, &order, why).await;
            return;
        }
        Plan::Requeue(why) => {
            requeue(app, &order, why).await;
            return;
        }
        Plan::Send {
            request,
            routes,
            flat_priced,
        } => (request, routes, flat_priced),
    };
    let mut unreachable = false;
    let mut last_refusal = String::new();
    let mut last_kind = None;
    for (index, (route, provider)) in routes.into_iter().enumerate() {
        let noted = if index == 0 && first_noted {
            Ok(())
        } else {
            app.store
                .begin_attempt(
                    id,
                    &route.provider,
                    route.upstream_service.as_str(),
                    now_ms(),
                )
                .await
        };
        if let Err(error) = noted {
            // Not durably noted: do not send. The claim's lease turns it ambiguous if we are
            // the ones who lost track; otherwise it is still `sending` and safe.
            tracing::error!(order = id.0, %error, "cannot record a forwarding attempt; not sending");
            return;
        }
        let call_started = std::time::Instant::now();
        let result = provider.client.add(&route.upstream_service, &request).await;
        let class = match &result {
            Ok(_) => "ok",
            Err(e) => e.class(),
        };
        app.metrics.upstream_calls(&route.provider, "add", class, 1);
        app.metrics
            .upstream_call_duration(&route.provider, "add", call_started.elapsed());
        if let Ok(upstream_id) = &result {
            // Before any database write: should recording fail, the log still links them.
            tracing::info!(order = id.0, provider = %route.provider, upstream_order = %upstream_id, "upstream accepted the order");
        }
        let outcome = match &result {
            Ok(upstream_id) => {
                provider.health.record_success();
                let units = Decimal::from(order.units);
                let cost = if flat_priced {
                    Some(route.upstream_rate)
                } else {
                    route
                        .upstream_rate
                        .checked_mul(units)
                        .and_then(|c| c.checked_div(Decimal::from(1000)))
                };
                ForwardOutcome::Sent {
                    upstream_order_id: upstream_id.as_str().to_owned(),
                    upstream_cost: cost,
                    next_poll_at: now_ms()
                        .saturating_add(secs_ms(app.settings().forwarder.first_poll_secs)),
                }
            }
            Err(error) if error.is_definitive_no() => {
                if matches!(error, ProviderError::NotSent { .. }) {
                    provider.health.record_failure();
                    unreachable = true;
                } else {
                    provider.health.record_success();
                }
                last_refusal = format!("{}: {error}", route.provider);
                if let ProviderError::Rejected { kind } = error {
                    if *kind == smm_wire::ErrorKind::NotEnoughFunds {
                        provider.health.record_out_of_funds();
                    }
                    last_kind = Some(kind.clone());
                }
                ForwardOutcome::Failed {
                    not_sent: matches!(error, ProviderError::NotSent { .. }),
                    detail: error.to_string(),
                }
            }
            Err(error) => {
                provider.health.record_failure();
                ForwardOutcome::Ambiguous {
                    detail: format!("{}: {error}", route.provider),
                }
            }
        };
        let done = !matches!(outcome, ForwardOutcome::Failed { .. });
        let state = match &outcome {
            ForwardOutcome::Sent { .. } => "sent",
            ForwardOutcome::Ambiguous { .. } => "ambiguous",
            ForwardOutcome::Failed { .. } => "route_failed",
        };
        app.metrics.forward_outcome(state);
        match app.store.finish_attempt(id, outcome, now_ms()).await {
            Ok(updated) => match &result {
                Ok(upstream_id) => tracing::info!(
                    order = id.0,
                    provider = %route.provider,
                    upstream_order = %upstream_id,
                    "order forwarded"
                ),
                Err(error) if done => tracing::warn!(
                    order = id.0,
                    provider = %route.provider,
                    class = error.class(),
                    %error,
                    state = updated.forward_state.as_str(),
                    "order outcome ambiguous: parked for reconciliation, never re-sent"
                ),
                Err(error) => tracing::info!(
                    order = id.0,
                    provider = %route.provider,
                    %error,
                    "route refused the order; trying the next"
                ),
            },
            Err(error) => {
                tracing::error!(order = id.0, %error, "cannot record a forwarding outcome");
                return;
            }
        }
        if done {
            return;
        }
    }
    if unreachable {
        requeue(app, &order, &format!("no route reachable ({last_refusal})")).await;
    } else {
        if let Some(kind) = last_kind {
            app.note_rejection(id, kind);
        }
        reject(
            app,
            &order,
            &format!("rejected by every route ({last_refusal})"),
        )
        .await;
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

async fn requeue(app: &App, order: &Order, why: &str) {
    let later = now_ms().saturating_add(secs_ms(app.settings().forwarder.requeue_after_secs));
    match app.store.requeue(order.id, later, why, now_ms()).await {
        Ok(()) => tracing::info!(order = order.id.0, why, "order queued again for later"),
        Err(error) => tracing::error!(order = order.id.0, %error, "cannot requeue"),
    }
}

async fn reject(app: &App, order: &Order, why: &str) {
    match app.store.reject_order(order.id, why, now_ms()).await {
        Ok(refund) => {
            tracing::info!(order = order.id.0, why, %refund, "order rejected and refunded");
            app.metrics.refund("rejected");
        }
        Err(error) => tracing::error!(order = order.id.0, %error, "cannot reject"),
    }
}
