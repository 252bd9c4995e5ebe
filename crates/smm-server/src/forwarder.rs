//! The forwarder: sends placed orders upstream exactly once, or flags them.
//!
//! A durable outbox. `add` only places the order (debit, ledger row, order `queued`) and wakes
//! this task. The forwarder claims queued orders (`sending`, committed), and for each one walks
//! its routes in priority order, noting every attempt durably *before* the call leaves:
//!
//! * the upstream accepts → `sent`, polled from then on;
//! * the upstream definitively refuses (`Rejected`) or the call never left (`NotSent`) → the next
//!   route; when none is left the order is rejected with a full refund only if every refusal was
//!   about the order itself (bad link, below min, ...). If some route was only unreachable, or
//!   refused for the reseller's own trouble there ([`held_reason`]: HTTP 429, the reseller's key,
//!   the reseller's funds, a disabled service), the order is held: queued again with backoff,
//!   logged at warn and counted in `smm_forward_held_total{provider,reason}`, never refunded;
//! * anything that may have reached the upstream (`Ambiguous`, `Protocol`) → `ambiguous`: never
//!   re-sent automatically, left to reconciliation and the admin.
//!
//! On SQLite a new order is usually claimed in the very transaction that places it
//! ([`PlacementClaims`]): written `sending` with its first attempt noted, and handed to this
//! task once that commit has returned, so it costs no claim of its own (issue #16).
//!
//! A crash between "sending" and the outcome leaves the order `sending`; [`recover`] turns such
//! claims into `ambiguous` once their lease has expired.
//!
//! The per-provider rate limit is waited for *before* an attempt is noted: the slot is taken
//! with `ProviderClient::ready` (or `try_ready` for the batch's one commit), the attempt noted,
//! and the request leaves at once with `add_ready`. While an order waits for its slot its claim
//! is renewed ([`smm_store::Store::renew_claim`]), so a long queue behind a tight limit never
//! ages a claim into `ambiguous`: the lease only ever measures a call in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rust_decimal::Decimal;
use smm_provider_client::{ProviderError, Ready};
use smm_store::{AttemptStart, ClaimOnPlacement, ForwardOutcome, Order, OrderId};
use smm_wire::OrderRequest;
use smm_wire::upstream::UpstreamId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use smm_routing::Candidate;

use crate::app::{App, Provider, now_ms};

/// Runs until `shutdown` turns true, finishing the orders in hand first.
///
/// Up to `forwarder.concurrency` orders are in flight at once, and the queue is claimed again
/// as soon as half of them have finished (issue #16): no round waits for its slowest call
/// before the next orders are claimed, so the outbox drains as fast as calls come back. Each
/// order is forwarded by a task of its own, so orders in flight keep going (and release the
/// database connections they hold) while the next claim waits for one.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut in_flight = JoinSet::new();
    let (handoff, mut handed) = mpsc::unbounded_channel();
    let claims = Arc::new(PlacementClaims {
        app: Arc::downgrade(&app),
        worker: app.worker_id.clone(),
        in_hand: Arc::default(),
        open: AtomicBool::new(false),
        stash: Mutex::default(),
        handoff,
    });
    // On SQLite only: its one writer pays a commit for each claim. On PostgreSQL the claims
    // from the queue measured faster (1,852 placements/s against 1,267-1,485 with claims at
    // placement, bench/run.sh's `add`; docs/benchmarks.md).
    if app.store.backend() == smm_store::Backend::Sqlite {
        let _ = app
            .group_commit()
            .claim_on_placement(Some(Arc::clone(&claims) as Arc<dyn ClaimOnPlacement>));
    }
    // Whether the last claim filled every slot it was offered: more may be waiting.
    let mut more = true;
    // When the last claim was made, if it found fewer orders than it could take.
    let mut last_short_claim: Option<Instant> = None;
    loop {
        let settings = app.settings();
        let interval = Duration::from_millis(settings.forwarder.interval_ms);
        let concurrency = settings.forwarder.concurrency.max(1);
        let stopping = *shutdown.borrow();
        if stopping {
            // No new claims at placement; those under way are handed over (or released) by
            // their group before `in_hand` can reach zero.
            claims.open.store(false, Ordering::SeqCst);
            if claims.in_hand.load(Ordering::SeqCst) == 0 && in_flight.is_empty() {
                app.group_commit().claim_on_placement(None);
                return;
            }
        }
        let in_hand = claims.in_hand.load(Ordering::SeqCst);
        let free = concurrency.saturating_sub(in_hand);
        // A claim that found fewer orders than it could take is not repeated before
        // CLAIM_GAP: placements arriving in the meantime are claimed together.
        let gap_ends = last_short_claim
            .map(|at| at + CLAIM_GAP)
            .filter(|&end| end > Instant::now());
        if !stopping
            && more
            && gap_ends.is_none()
            && (in_hand == 0 || free >= concurrency.div_ceil(2))
        {
            let limit = settings
                .forwarder
                .batch
                .min(u32::try_from(free).unwrap_or(u32::MAX));
            let claimed = claim(&app, limit).await;
            more = claimed.len() == limit as usize && limit > 0;
            last_short_claim = (!more).then(Instant::now);
            // New orders are claimed as they are placed only while the queue has no backlog:
            // none jumps ahead of an order already waiting.
            claims.open.store(!more, Ordering::SeqCst);
            if !claimed.is_empty() {
                for (order, plan, slot) in claimed {
                    let held = claims.hold();
                    let app = Arc::clone(&app);
                    in_flight.spawn(async move {
                        forward(&app, order, plan, slot).await;
                        drop(held);
                    });
                }
                continue;
            }
        }
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = done {
                    // A panic is a bug; the order stays `sending` and its lease recovers it.
                    tracing::error!(%error, "a forwarding task failed");
                }
                more = true;
            }
            Some(Handoff { order, plan, slot, held }) = handed.recv() => {
                let app = Arc::clone(&app);
                in_flight.spawn(async move {
                    forward(&app, order, plan, Some(slot)).await;
                    drop(held);
                });
            }
            () = app.forward_wake.notified(), if !stopping => more = true,
            () = tokio::time::sleep_until(gap_ends.unwrap_or_else(Instant::now)),
                if !stopping && more && gap_ends.is_some() => {}
            () = tokio::time::sleep(interval) => more = !stopping,
            _ = shutdown.changed(), if !stopping => {}
        }
    }
}

/// The forwarder's side of claiming orders in the transaction that places them (issue #16,
/// SQLite only):
/// a new order whose first route has a free rate-limit slot, placed while the queue has no
/// backlog and the forwarder has room, is written `sending` with its first attempt noted,
/// and handed to the forwarder once that commit has returned. It costs no claim of its own:
/// one row version and one commit fewer per order. Anything else (no slot, no route, a
/// backlog) is placed queued and claimed from the queue as before.
struct PlacementClaims {
    app: Weak<App>,
    /// [`App::worker_id`].
    worker: String,
    /// Orders the forwarder has in hand: being claimed at placement, handed over, or claimed
    /// from the queue, until their forwarding ends. Bounded by `forwarder.concurrency`.
    in_hand: Arc<AtomicUsize>,
    /// Whether new orders may be claimed at placement (no backlog, not stopping).
    open: AtomicBool,
    /// What `first_attempts` decided for each order picked, until its group settles.
    stash: Mutex<HashMap<OrderId, (Plan, Ready, Held)>>,
    handoff: mpsc::UnboundedSender<Handoff>,
}

/// An order claimed at placement, on its way to the forwarder.
struct Handoff {
    order: Order,
    plan: Plan,
    slot: Ready,
    held: Held,
}

/// One order in the forwarder's hands ([`PlacementClaims::in_hand`]), released when dropped.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PlacementClaims {
    /// Counts one more order in hand, whatever the limit (an order claimed from the queue).
    fn hold(&self) -> Held {
        self.in_hand.fetch_add(1, Ordering::SeqCst);
        Held(Arc::clone(&self.in_hand))
    }

    /// Counts one more order in hand if that stays within `limit`.
    fn try_hold(&self, limit: usize) -> Option<Held> {
        self.in_hand
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Held(Arc::clone(&self.in_hand)))
    }

    fn stash(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, (Plan, Ready, Held)>> {
        self.stash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClaimOnPlacement for PlacementClaims {
    fn worker(&self) -> &str {
        &self.worker
    }

    fn first_attempts(&self, orders: &[Order]) -> Vec<AttemptStart> {
        let Some(app) = self.app.upgrade() else {
            return Vec::new();
        };
        let concurrency = app.settings().forwarder.concurrency.max(1);
        let mut attempts = Vec::new();
        let mut stash = self.stash();
        for order in orders {
            // Counted first, then checked open: once the forwarder has closed and seen nothing
            // in hand, no claim can slip in behind its back.
            let Some(held) = self.try_hold(concurrency) else {
                // A full forwarder: this order waits in the queue, and later ones must not
                // overtake it (the next claim from the queue that comes back short reopens).
                self.open.store(false, Ordering::SeqCst);
                break;
            };
            if !self.open.load(Ordering::SeqCst) {
                break;
            }
            let plan = plan(&app, order);
            // Held, rejected or requeued: that is for the claim from the queue to do.
            let Plan::Send { routes, why, .. } = &plan else {
                continue;
            };
            let Some((route, provider)) = routes.first() else {
                continue;
            };
            let Some(slot) = provider.client.try_ready() else {
                // Its provider's rate limit is spent: as for a full forwarder.
                self.open.store(false, Ordering::SeqCst);
                break;
            };
            attempts.push(AttemptStart {
                order: order.id,
                provider: route.provider.clone(),
                upstream_service: route.upstream_service.as_str().to_owned(),
                why: Some(why.clone()),
            });
            stash.insert(order.id, (plan, slot, held));
        }
        attempts
    }

    fn settle(&self, picked: &[OrderId], claimed: Vec<Order>) {
        let mut stash = self.stash();
        let mut handed: Vec<Handoff> = Vec::with_capacity(claimed.len());
        for order in claimed {
            if let Some((plan, slot, held)) = stash.remove(&order.id) {
                handed.push(Handoff {
                    order,
                    plan,
                    slot,
                    held,
                });
            } else {
                // Cannot happen with one lane (`GroupCommit::claim_on_placement`); should it,
                // the order stays `sending` and its lease turns it ambiguous.
                tracing::error!(
                    order = order.id.0,
                    "an order claimed at placement has no plan to forward it with"
                );
            }
        }
        // Not claimed after all: their places in hand are given back (a rate-limit slot taken
        // for them is spent: the limiter has no way to return one).
        for id in picked {
            stash.remove(id);
        }
        drop(stash);
        for handoff in handed {
            let id = handoff.order.id;
            if self.handoff.send(handoff).is_err() {
                // The forwarder has stopped without waiting for what it had in hand (a bug):
                // the order stays `sending`, and its lease turns it ambiguous.
                tracing::error!(
                    order = id.0,
                    "an order claimed at placement found no forwarder"
                );
            }
        }
    }
}

/// The shortest time between two claims when the first found fewer orders than it could take
/// (issue #16). Under a burst of `add`s every placement wakes the forwarder, and claiming at
/// each wake made claims of a few orders: each is a transaction of its own (two with the
/// attempts noted), taking SQLite's one writer from the placements between them. Waiting this
/// long lets a burst's orders be claimed, noted and recorded in larger groups; an order waits
/// at most this much more before its call, and a full claim (a backlog) is followed at once.
const CLAIM_GAP: Duration = Duration::from_millis(20);

/// Claims up to `limit` queued orders and plans each. Each order's first slot is taken now if
/// its provider's rate limit has one free: those orders' first attempts are noted with the
/// claim, in its one commit, before any call. The others wait for their slot in `forward`,
/// and note their attempt once they have it. Should the claim fail, nothing was claimed.
async fn claim(app: &App, limit: u32) -> Vec<(Order, Plan, Option<Ready>)> {
    if limit == 0 {
        return Vec::new();
    }
    // Filled by `first_attempts`, in the claim's order.
    let mut planned: Vec<(Plan, Option<Ready>)> = Vec::new();
    let mut first_attempts = |orders: &[Order]| -> Vec<AttemptStart> {
        planned = orders
            .iter()
            .map(|order| {
                let plan = plan(app, order);
                let slot = match &plan {
                    Plan::Send { routes, .. } => {
                        routes.first().and_then(|(_, p)| p.client.try_ready())
                    }
                    _ => None,
                };
                (plan, slot)
            })
            .collect();
        orders
            .iter()
            .zip(&planned)
            .filter_map(|(order, (plan, slot))| match (plan, slot) {
                (Plan::Send { routes, why, .. }, Some(_)) => {
                    routes.first().map(|(route, _)| AttemptStart {
                        order: order.id,
                        provider: route.provider.clone(),
                        upstream_service: route.upstream_service.as_str().to_owned(),
                        why: Some(why.clone()),
                    })
                }
                _ => None,
            })
            .collect()
    };
    let claimed = match app
        .store
        .claim_and_begin(&app.worker_id, limit, now_ms(), &mut first_attempts)
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::error!(%error, "cannot claim orders to forward");
            return Vec::new();
        }
    };
    claimed
        .into_iter()
        .zip(planned)
        .map(|(order, (plan, slot))| (order, plan, slot))
        .collect()
}

/// What to do with a claimed order.
enum Plan {
    Reject(&'static str),
    Requeue(&'static str),
    /// Held queued for the reseller's own trouble (`reason` is a metric label).
    Hold {
        reason: &'static str,
        why: &'static str,
    },
    /// Send through these routes in turn (each with its provider's client), ranked by the
    /// service's routing policy, which says why in `why`.
    Send {
        request: OrderRequest,
        routes: Vec<(Target, Arc<Provider>)>,
        flat_priced: bool,
        why: String,
    },
}

/// One route an order is sent through.
struct Target {
    provider: String,
    upstream_service: UpstreamId,
    upstream_rate: Decimal,
}

/// Decides whether and where to send the order: through the routes it was placed with
/// ([`Order::placed_as`], issue #12, 7), whatever its service id means in the catalog now; for
/// orders placed before the gateway kept them, through the catalog's current routes.
fn plan(app: &App, order: &Order) -> Plan {
    let request: OrderRequest = match serde_json::from_str(&order.params) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(order = order.id.0, %error, "stored order parameters unreadable; rejecting");
            return Plan::Reject("stored order parameters unreadable");
        }
    };
    // A service disabled for a moment by a reload (an upstream catalog without it, a price not
    // synced yet) is the reseller's trouble, not the order's: held.
    let disabled = Plan::Hold {
        reason: "service_disabled",
        why: "the service is disabled",
    };
    let (targets, flat_priced): (Vec<Target>, bool) = if let Some(placed) = order.placed_as() {
        let offered: Vec<Target> = placed
            .routes
            .iter()
            .filter(|r| app.upstream_offers(&r.provider, &r.upstream_service))
            .filter_map(|r| {
                Some(Target {
                    provider: r.provider.clone(),
                    upstream_service: UpstreamId::new(&r.upstream_service)?,
                    upstream_rate: r.upstream_rate,
                })
            })
            .collect();
        if offered.is_empty() {
            return disabled;
        }
        let flat = smm_wire::ServiceType::parse(&order.service_type).is_flat_priced();
        (offered, flat)
    } else {
        let catalog = app.catalog();
        let Some(service) = u64::try_from(order.service_id.0)
            .ok()
            .and_then(|s| catalog.get(s))
        else {
            return Plan::Reject("the service no longer exists");
        };
        if !service.enabled {
            return disabled;
        }
        let targets = service
            .routes
            .iter()
            .map(|r| Target {
                provider: r.provider.clone(),
                upstream_service: r.upstream_service.clone(),
                upstream_rate: r.upstream_rate,
            })
            .collect();
        (targets, service.service_type.is_flat_priced())
    };
    let routes: Vec<_> = targets
        .into_iter()
        .filter(|t| app.provider_available(&t.provider))
        .filter_map(|t| app.provider(&t.provider).map(|p| (t, p)))
        .collect();
    if routes.is_empty() {
        return Plan::Requeue("no provider available");
    }
    let (routes, why) = rank(app, order, routes);
    Plan::Send {
        request,
        routes,
        flat_priced,
        why,
    }
}

/// Orders the available routes by the service's routing policy (issue #15); the customer's
/// price was fixed at placement and does not depend on the route. Returns the ranking and why.
fn rank(
    app: &App,
    order: &Order,
    routes: Vec<(Target, Arc<Provider>)>,
) -> (Vec<(Target, Arc<Provider>)>, String) {
    let runtime = app.runtime();
    let service = u64::try_from(order.service_id.0).unwrap_or(0);
    let (policy, targets) = runtime.service_policy(service);
    let settings = &runtime.settings;
    let candidates: Vec<Candidate> = routes
        .iter()
        .map(|(t, _)| Candidate {
            provider: t.provider.clone(),
            upstream_service: t.upstream_service.as_str().to_owned(),
            // The upstream rate the order was placed with, at the provider's rate today.
            cost: settings
                .provider(&t.provider)
                .and_then(|p| t.upstream_rate.checked_mul(p.rate))
                .unwrap_or(t.upstream_rate),
        })
        .collect();
    let scorecards = app.scorecards();
    let now = now_ms();
    let choice = smm_routing::choose(
        policy,
        &candidates,
        |i| {
            let c = &candidates[i];
            scorecards.evidence(
                &(c.provider.clone(), c.upstream_service.clone()),
                &targets,
                now,
            )
        },
        &targets,
        &settings.routing,
        smm_routing::explores(
            u64::try_from(order.id.0).unwrap_or(0),
            settings.routing.explore_percent,
        ),
    );
    let mut slots: Vec<Option<(Target, Arc<Provider>)>> = routes.into_iter().map(Some).collect();
    let ranked = choice
        .order
        .iter()
        .filter_map(|i| slots.get_mut(*i).and_then(Option::take))
        .collect();
    (ranked, choice.why)
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

/// Why a refusal is the reseller's own trouble at that provider, not the order's: the order is
/// then held (failed over, else queued again), never rejected and refunded. `None` for a refusal
/// about the order itself (bad link, below min, a busy link, ...), which is final.
pub fn held_reason(kind: &smm_wire::ErrorKind) -> Option<&'static str> {
    use smm_wire::ErrorKind as K;
    Some(match kind {
        K::RateLimited => "rate_limited",
        K::InvalidKey => "invalid_key",
        K::NotEnoughFunds => "no_funds",
        K::AccountSuspended => "account_suspended",
        K::IncorrectServiceId => "service_unknown",
        K::Unavailable => "unavailable",
        _ => return None,
    })
}

/// Waits for a slot in `provider`'s rate limit, renewing `order`'s claim meanwhile so the wait
/// never counts against the lease. `None` when the claim was lost (nothing may be sent).
async fn wait_for_slot(app: &App, order: &Order, provider: &Provider) -> Option<Ready> {
    let lease = Duration::from_secs(app.settings().forwarder.lease_secs);
    let beat = (lease / 4).max(Duration::from_millis(100));
    let ready = provider.client.ready();
    tokio::pin!(ready);
    loop {
        tokio::select! {
            slot = &mut ready => return Some(slot),
            () = tokio::time::sleep(beat) => {
                match app.store.renew_claim(order.id, &app.worker_id, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(order = order.id.0, "claim lost while waiting for the rate limit; not sending");
                        return None;
                    }
                    // Not renewed: should the lease run out, the attempt cannot be noted (the
                    // order is no longer `sending`), so nothing is sent. Keep waiting.
                    Err(error) => tracing::error!(order = order.id.0, %error, "cannot renew a claim"),
                }
            }
        }
    }
}

/// Forwards one claimed order through its routes. `noted_slot`: the first route's attempt is
/// already durably noted (by the batch) in this rate-limit slot, so it is not noted again.
async fn forward(app: &App, order: Order, plan: Plan, mut noted_slot: Option<Ready>) {
    let id = order.id;
    let (request, routes, flat_priced, mut why) = match plan {
        Plan::Reject(why) => {
            reject(app, &order, why).await;
            return;
        }
        Plan::Requeue(why) => {
            requeue(app, &order, why).await;
            return;
        }
        Plan::Hold { reason, why } => {
            hold(app, &order, "-", reason, why).await;
            return;
        }
        Plan::Send {
            request,
            routes,
            flat_priced,
            why,
        } => (request, routes, flat_priced, why),
    };
    let mut unreachable = false;
    let mut held: Option<(String, &'static str)> = None;
    let mut last_refusal = String::new();
    let mut last_kind = None;
    for (route, provider) in routes {
        let slot = if let Some(slot) = noted_slot.take() {
            slot
        } else {
            // The rate-limit wait comes first, then the attempt is noted, then the call
            // leaves at once: only the call itself runs against the lease.
            let Some(slot) = wait_for_slot(app, &order, &provider).await else {
                return;
            };
            let noted = app
                .store
                .begin_attempts(
                    &[AttemptStart {
                        order: id,
                        provider: route.provider.clone(),
                        upstream_service: route.upstream_service.as_str().to_owned(),
                        why: Some(why.clone()),
                    }],
                    now_ms(),
                )
                .await;
            if let Err(error) = noted {
                // Not durably noted: do not send. The claim's lease turns it ambiguous if we
                // are the ones who lost track; otherwise it is still `sending` and safe.
                tracing::error!(order = id.0, %error, "cannot record a forwarding attempt; not sending");
                return;
            }
            slot
        };
        let call_started = std::time::Instant::now();
        let result = provider
            .client
            .add_ready(slot, &route.upstream_service, &request)
            .await;
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
                    if let Some(reason) = held_reason(kind) {
                        held = Some((route.provider.clone(), reason));
                    } else {
                        last_kind = Some(kind.clone());
                    }
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
        match app
            .group_commit()
            .finish_attempt(id, outcome, now_ms())
            .await
        {
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
        why = format!("fail-over: {last_refusal}");
    }
    if let Some((provider, reason)) = held {
        let why = format!("held: the reseller's trouble at a provider ({last_refusal})");
        hold(app, &order, &provider, reason, &why).await;
    } else if unreachable {
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

/// Holds an order queued for the reseller's own trouble (`reason` at `provider`), with backoff:
/// `requeue_after_secs` doubled per claim so far, at most 16 times that. Alerts: a warn line
/// and `smm_forward_held_total`. Never refunds.
async fn hold(app: &App, order: &Order, provider: &str, reason: &'static str, why: &str) {
    app.metrics.forward_held(provider, reason);
    tracing::warn!(
        order = order.id.0,
        provider,
        reason,
        why,
        "order held queued: the reseller's own trouble at the provider, not refunded"
    );
    let base = app.settings().forwarder.requeue_after_secs.max(1);
    let doublings = order.forward_attempts.saturating_sub(1).min(4);
    let delay = base.saturating_mul(1 << doublings);
    let later = now_ms().saturating_add(secs_ms(delay));
    match app.store.requeue(order.id, later, why, now_ms()).await {
        Ok(()) => {}
        Err(error) => tracing::error!(order = order.id.0, %error, "cannot requeue a held order"),
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
