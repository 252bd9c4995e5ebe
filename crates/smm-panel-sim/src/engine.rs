//! The panel itself: accounts, catalog, orders, refills, faults and the request log, all behind
//! one mutex held by the caller. Every function here is synchronous and never blocks.
//!
//! Time is simulated milliseconds (`now`), computed by the caller from the sim clock. Order
//! progress is derived lazily from a plan drawn at creation from (seed, order id); refunds of
//! orders that reached Partial/Canceled are applied by [`State::settle`], which every entry
//! point calls first, using a min-heap of terminal times.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::{
    Dialect, Fault, FaultRule, OrderStatus, Outage, Outcomes, Profile, RecordedRequest,
    RequestCounts, ServiceType, SimConfig, SimDrop, SimOrder, SimRefill, SimService, Timing,
};
use crate::json::J;
use crate::params::{self, Packed, Params};

/// Max ids in one `orders`/`refills` list.
const MAX_IDS: usize = 100;
/// Synthetic child-order ids of subscriptions start here.
const CHILD_ORDER_BASE: u64 = 9_000_000_000_000;
/// At most this many child ids are listed in a subscription status.
const MAX_CHILD_IDS: u64 = 100;
const DAY_MS: u64 = 86_400_000;

/// Errors of the API, with their Perfect Panel texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiError {
    InvalidKey,
    IncorrectRequest,
    IncorrectService,
    MinQuantity(u64),
    MaxQuantity(u64),
    NotEnoughFunds,
    IncorrectOrder,
    RefillNotFound,
    IncorrectLink,
    LinkDuplicate,
    DripfeedDisabled,
    RefillDisabled,
    RefillNotEligible,
    CancelDisabled,
    CancelNotEligible,
}

impl ApiError {
    pub(crate) fn text(self, raw_keys: bool) -> Cow<'static, str> {
        use ApiError as E;
        if raw_keys {
            let raw = match self {
                E::NotEnoughFunds => Some("neworder.error.not_enough_funds"),
                E::LinkDuplicate => Some("neworder.error.link_duplicate"),
                E::MinQuantity(_) => Some("neworder.error.min_quantity"),
                E::MaxQuantity(_) => Some("neworder.error.max_quantity"),
                E::IncorrectService => Some("error.incorrect_service_id"),
                E::IncorrectLink => Some("neworder.error.link"),
                _ => None,
            };
            if let Some(r) = raw {
                return Cow::Borrowed(r);
            }
        }
        Cow::Borrowed(match self {
            E::InvalidKey => "Invalid API key",
            E::IncorrectRequest => "Incorrect request",
            E::IncorrectService => "Incorrect service ID",
            E::MinQuantity(n) => return Cow::Owned(format!("Quantity less than minimal {n}")),
            E::MaxQuantity(n) => return Cow::Owned(format!("Quantity more than maximal {n}")),
            E::NotEnoughFunds => "Not enough funds on balance",
            E::IncorrectOrder => "Incorrect order ID",
            E::RefillNotFound => "Refill not found",
            E::IncorrectLink => "Incorrect link",
            E::LinkDuplicate => {
                "You have active order with this link. Please wait until order being completed."
            }
            E::DripfeedDisabled => "Drip-feed is disabled for this service",
            E::RefillDisabled => "Refill is disabled for this service",
            E::RefillNotEligible => "Order not eligible for refill",
            E::CancelDisabled => "Cancel is disabled for this service",
            E::CancelNotEligible => "Order not eligible for cancel",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Partial,
    Canceled,
}

#[derive(Debug, Clone)]
struct Plan {
    pending: u64,
    run: u64,
    outcome: Outcome,
    start_count: u64,
    partial_remains: u64,
    /// (ms after completion, units lost) when a Completed order is to drop.
    drop: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct Sub {
    /// Posts paid for at `add` (`posts`, or 1 when unlimited).
    reserved: u64,
    /// `posts` limit, 0 = unlimited.
    limit: u64,
    post_every: u64,
    expiry_ms: Option<u64>,
    expiry: Option<String>,
}

#[derive(Debug, Clone)]
struct Order {
    id: u64,
    service: u64,
    ty: ServiceType,
    key: Arc<str>,
    link: Option<String>,
    quantity: u64,
    runs: Option<u64>,
    interval: Option<u64>,
    params: Packed,
    charge: Decimal,
    refunded: Decimal,
    created: u64,
    plan: Plan,
    cancel_at: Option<u64>,
    sub: Option<Sub>,
    /// Refills asked for this order, in order (ids).
    refills: Vec<u64>,
}

/// An order's state at one instant.
#[derive(Debug, Clone)]
struct Eval {
    status: OrderStatus,
    remains: u64,
    start_count: u64,
    runs_done: Option<u64>,
    posts: Option<u64>,
    /// Total refund owed once terminal.
    refund: Decimal,
}

impl Order {
    fn start(&self) -> u64 {
        self.created.saturating_add(self.plan.pending)
    }

    fn end(&self) -> u64 {
        let drip = match (self.runs, self.interval) {
            (Some(r), Some(i)) => i.saturating_mul(60_000).saturating_mul(r.saturating_sub(1)),
            _ => 0,
        };
        self.start()
            .saturating_add(self.plan.run)
            .saturating_add(drip)
    }

    fn target_remains(&self) -> u64 {
        if self.plan.outcome == Outcome::Partial {
            self.plan.partial_remains
        } else {
            0
        }
    }

    /// Remains while In progress (linear delivery from `quantity` down to the target).
    fn remains_at(&self, t: u64) -> u64 {
        let (start, end) = (self.start(), self.end());
        let target = self.target_remains().min(self.quantity);
        if end <= start || t >= end {
            return target;
        }
        let todo = u128::from(self.quantity - target);
        let delivered = todo * u128::from(t.saturating_sub(start)) / u128::from(end - start);
        self.quantity
            - u64::try_from(delivered)
                .unwrap_or(0)
                .min(self.quantity - target)
    }

    /// When and how many units the order loses: only an order that ran to its planned
    /// Completed end (not canceled, not a subscription).
    fn drop_plan(&self) -> Option<(u64, u64)> {
        if self.sub.is_some() || self.cancel_at.is_some() || self.plan.outcome != Outcome::Completed
        {
            return None;
        }
        let (after, units) = self.plan.drop?;
        Some((self.end().saturating_add(after), units))
    }

    fn first_post(&self) -> u64 {
        self.start()
    }

    fn posts_at(&self, sub: &Sub, t: u64) -> u64 {
        if t < self.first_post() || sub.post_every == 0 {
            return 0;
        }
        let n = (t - self.first_post()) / sub.post_every + 1;
        if sub.limit > 0 { n.min(sub.limit) } else { n }
    }

    /// When and how the order ends (None: an unlimited subscription that is still running).
    fn resolution(&self) -> Option<(u64, OrderStatus, u64)> {
        if let Some(sub) = &self.sub {
            let mut best: Option<(u64, OrderStatus)> = None;
            let mut consider = |t: u64, s: OrderStatus| {
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, s));
                }
            };
            if let Some(tc) = self.cancel_at {
                consider(tc, OrderStatus::Canceled);
            }
            if let Some(e) = sub.expiry_ms {
                consider(e, OrderStatus::Expired);
            }
            if sub.limit > 0 && sub.post_every > 0 {
                let done = self
                    .first_post()
                    .saturating_add(sub.post_every.saturating_mul(sub.limit - 1));
                consider(done, OrderStatus::Completed);
            }
            return best.map(|(t, s)| (t, s, 0));
        }
        let start = self.start();
        if let Some(tc) = self.cancel_at {
            if tc < start {
                return Some((tc, OrderStatus::Canceled, self.quantity));
            }
            let rem = self.remains_at(tc);
            let status = if rem >= self.quantity {
                OrderStatus::Canceled
            } else if rem == 0 {
                OrderStatus::Completed
            } else {
                OrderStatus::Partial
            };
            return Some((tc, status, rem));
        }
        Some(match self.plan.outcome {
            Outcome::Completed => (self.end(), OrderStatus::Completed, 0),
            Outcome::Partial => (
                self.end(),
                OrderStatus::Partial,
                self.plan.partial_remains.min(self.quantity),
            ),
            Outcome::Canceled => (start, OrderStatus::Canceled, self.quantity),
        })
    }

    fn eval(&self, t: u64) -> Eval {
        let res = self.resolution();
        if let Some(sub) = &self.sub {
            let (status, at) = match res {
                Some((rt, s, _)) if t >= rt => (s, rt),
                _ => (OrderStatus::Active, t),
            };
            let posts = self.posts_at(sub, at);
            let refund = if status.is_terminal() && posts < sub.reserved {
                pro_rata(self.charge, sub.reserved - posts, sub.reserved)
            } else {
                Decimal::ZERO
            };
            return Eval {
                status,
                remains: 0,
                start_count: 0,
                runs_done: None,
                posts: Some(posts),
                refund,
            };
        }
        let (status, remains) = match res {
            Some((rt, s, rem)) if t >= rt => (s, rem),
            _ if t < self.start() => (OrderStatus::Pending, self.quantity),
            _ => (OrderStatus::InProgress, self.remains_at(t)),
        };
        let refund = match status {
            OrderStatus::Canceled => self.charge,
            OrderStatus::Partial => pro_rata(self.charge, remains, self.quantity),
            _ => Decimal::ZERO,
        };
        let untouched = remains >= self.quantity
            && matches!(status, OrderStatus::Pending | OrderStatus::Canceled);
        let runs_done = self.runs.map(|runs| {
            let delivered = self.quantity.saturating_sub(remains);
            if self.quantity == 0 {
                0
            } else {
                u64::try_from(u128::from(runs) * u128::from(delivered) / u128::from(self.quantity))
                    .unwrap_or(runs)
            }
        });
        Eval {
            status,
            remains,
            start_count: if untouched { 0 } else { self.plan.start_count },
            runs_done,
            posts: None,
            refund,
        }
    }
}

/// `charge × part / whole`, rounded to 5 decimals, never more than `charge`.
fn pro_rata(charge: Decimal, part: u64, whole: u64) -> Decimal {
    if whole == 0 || part == 0 {
        return Decimal::ZERO;
    }
    if part >= whole {
        return charge;
    }
    let (p, w) = (Decimal::from(part), Decimal::from(whole));
    let v = charge
        .checked_mul(p)
        .and_then(|x| x.checked_div(w))
        .or_else(|| charge.checked_div(w).and_then(|x| x.checked_mul(p)))
        .unwrap_or(charge);
    round5(v).min(charge)
}

/// Money rounding: 5 decimals, half away from zero.
pub(crate) fn round5(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(5, RoundingStrategy::MidpointAwayFromZero)
}

/// Money as the panel prints it: always 5 decimals.
pub(crate) fn money_text(d: Decimal) -> String {
    let mut r = round5(d);
    r.rescale(5);
    r.to_string()
}

/// One request-log entry, kept compact (the log may hold a million of them).
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    seq: u64,
    method: Cow<'static, str>,
    content_type: Option<Box<str>>,
    params: Packed,
    sim_time_ms: u64,
    fault: Option<&'static str>,
}

impl LogEntry {
    pub(crate) fn new(method: &str, content_type: Option<&str>, p: &Params, now: u64) -> LogEntry {
        let method = match method {
            "GET" => Cow::Borrowed("GET"),
            "POST" => Cow::Borrowed("POST"),
            "HEAD" => Cow::Borrowed("HEAD"),
            other => Cow::Owned(other.to_owned()),
        };
        LogEntry {
            seq: 0,
            method,
            content_type: content_type.map(Box::from),
            params: Packed::new(p, &[]),
            sim_time_ms: now,
            fault: None,
        }
    }

    fn to_record(&self) -> RecordedRequest {
        RecordedRequest {
            seq: self.seq,
            method: self.method.to_string(),
            content_type: self.content_type.as_deref().map(str::to_owned),
            action: self.params.get("action").map(str::to_owned),
            params: self.params.to_map(),
            sim_time_ms: self.sim_time_ms,
            fault: self.fault.map(str::to_owned),
        }
    }
}

#[derive(Debug, Clone)]
struct Refill {
    id: u64,
    order: u64,
    key: Arc<str>,
    created: u64,
    pending: u64,
    run: u64,
    rejected: bool,
}

impl Refill {
    fn end(&self) -> u64 {
        self.created
            .saturating_add(self.pending)
            .saturating_add(self.run)
    }

    fn status_at(&self, t: u64) -> &'static str {
        let start = self.created.saturating_add(self.pending);
        if t < start {
            "Pending"
        } else if t < self.end() {
            "In progress"
        } else if self.rejected {
            "Rejected"
        } else {
            "Completed"
        }
    }
}

/// SplitMix64 finaliser: decorrelates (seed, id, salt) into an RNG seed.
fn mix(seed: u64, id: u64, salt: u64) -> u64 {
    let mut z =
        seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn secs_range(rng: &mut fastrand::Rng, r: [u64; 2]) -> u64 {
    let (a, b) = (r[0].min(r[1]), r[0].max(r[1]));
    rng.u64(a.saturating_mul(1000)..=b.saturating_mul(1000))
}

/// Draws an order's plan. Floats only pick the outcome by weight and the shares of a Partial
/// or a drop; money is not touched. The profile's ranges replace the panel-wide timing; its
/// Partial share and drop are drawn from generators of their own, so a profile without them
/// draws exactly what the panel always drew.
#[allow(clippy::float_arithmetic)] // outcome weights and shares are probabilities by design
fn make_plan(
    seed: u64,
    id: u64,
    outcomes: &Outcomes,
    timing: &Timing,
    profile: &Profile,
    quantity: u64,
) -> Plan {
    let mut rng = fastrand::Rng::with_seed(mix(seed, id, 1));
    let pending = secs_range(
        &mut rng,
        profile.pending_secs.unwrap_or(timing.pending_secs),
    );
    let run = secs_range(&mut rng, profile.run_secs.unwrap_or(timing.run_secs));
    let w = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let (wc, wp, wx) = (
        w(outcomes.completed),
        w(outcomes.partial),
        w(outcomes.canceled),
    );
    let total = wc + wp + wx;
    let roll = rng.f64() * total;
    let mut outcome = if total <= 0.0 || roll < wc {
        Outcome::Completed
    } else if roll < wc + wp {
        Outcome::Partial
    } else {
        Outcome::Canceled
    };
    let start_count = rng.u64(0..=50_000);
    let mut partial_remains = if quantity >= 2 {
        rng.u64(1..quantity)
    } else {
        0
    };
    if outcome == Outcome::Partial && quantity < 2 {
        outcome = Outcome::Completed;
    }
    if let (Some(range), true) = (profile.partial_undelivered, quantity >= 2) {
        let mut rng = fastrand::Rng::with_seed(mix(seed, id, 4));
        partial_remains = share_of(&mut rng, range, quantity).clamp(1, quantity - 1);
    }
    let drop = profile.drops.as_ref().and_then(|d| {
        let mut rng = fastrand::Rng::with_seed(mix(seed, id, 5));
        let hit = d.rate.is_finite() && rng.f64() < d.rate;
        let after = secs_range(&mut rng, d.after_secs);
        let units = share_of(&mut rng, d.share, quantity).clamp(1, quantity.max(1));
        (hit && outcome == Outcome::Completed && quantity >= 1).then_some((after, units))
    });
    Plan {
        pending,
        run,
        outcome,
        start_count,
        partial_remains,
        drop,
    }
}

/// `quantity × u` rounded, for `u` drawn uniformly from the `[min, max]` fractions.
#[allow(clippy::float_arithmetic)] // a share of units, not money
fn share_of(rng: &mut fastrand::Rng, range: [f64; 2], quantity: u64) -> u64 {
    let (a, b) = (range[0].min(range[1]), range[0].max(range[1]));
    let u = (a + (b - a) * rng.f64()).clamp(0.0, 1.0);
    // `as` saturates; the product is at most `quantity`.
    ((quantity as f64) * u).round() as u64
}

#[allow(clippy::float_arithmetic)] // rejection probability is a float by design
fn make_refill(seed: u64, id: u64, reject_p: f64, timing: &Timing) -> (u64, u64, bool) {
    let mut rng = fastrand::Rng::with_seed(mix(seed, id, 2));
    let pending = secs_range(&mut rng, timing.refill_pending_secs);
    let run = secs_range(&mut rng, timing.refill_run_secs);
    let rejected = reject_p.is_finite() && rng.f64() < reject_p;
    (pending, run, rejected)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `d/m/Y` into Unix milliseconds at 00:00 UTC of that day.
pub(crate) fn parse_dmy(s: &str) -> Option<u64> {
    let mut it = s.trim().split('/');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 {
        return None;
    }
    let (d, m, y) = (
        u32::try_from(params::parse_uint(d)?).ok()?,
        u32::try_from(params::parse_uint(m)?).ok()?,
        i64::try_from(params::parse_uint(y)?).ok()?,
    );
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=dim).contains(&d) {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    days.checked_mul(DAY_MS)
}

/// All mutable state of one simulator.
#[derive(Debug)]
pub(crate) struct State {
    seed: u64,
    currency: String,
    timing: Timing,
    pub(crate) dialect: Dialect,
    services: HashMap<u64, SimService>,
    catalog: Vec<u64>,
    accounts: HashMap<Arc<str>, Decimal>,
    first_order_id: u64,
    orders: Vec<Order>,
    refills: Vec<Refill>,
    settle_heap: BinaryHeap<Reverse<(u64, u64)>>,
    active_links: HashMap<String, Vec<u64>>,
    faults: Vec<FaultRule>,
    log: VecDeque<LogEntry>,
    max_log: usize,
    log_dropped: u64,
    next_seq: u64,
    start_unix_ms: u64,
    counts: RequestCounts,
    outages: Vec<Outage>,
}

impl State {
    pub(crate) fn new(cfg: &SimConfig, start_unix_ms: u64) -> State {
        let mut st = State {
            seed: cfg.seed,
            currency: cfg.currency.clone(),
            timing: cfg.timing.clone(),
            dialect: cfg.dialect,
            services: HashMap::new(),
            catalog: Vec::new(),
            accounts: cfg
                .accounts
                .iter()
                .map(|a| (Arc::from(a.key.as_str()), a.balance))
                .collect(),
            first_order_id: cfg.first_order_id.max(1),
            orders: Vec::new(),
            refills: Vec::new(),
            settle_heap: BinaryHeap::new(),
            active_links: HashMap::new(),
            faults: Vec::new(),
            log: VecDeque::new(),
            max_log: cfg.max_log,
            log_dropped: 0,
            next_seq: 0,
            start_unix_ms,
            counts: RequestCounts::default(),
            outages: cfg.outages.clone(),
        };
        st.set_services(cfg.services.clone());
        st
    }

    // ----- library-facing operations -------------------------------------------------------

    pub(crate) fn set_services(&mut self, services: Vec<SimService>) {
        self.services.clear();
        self.catalog.clear();
        for s in services {
            if self.services.insert(s.id, s.clone()).is_none() {
                self.catalog.push(s.id);
            }
        }
    }

    pub(crate) fn services(&self) -> Vec<SimService> {
        self.catalog
            .iter()
            .filter_map(|id| self.services.get(id).cloned())
            .collect()
    }

    pub(crate) fn set_balance(&mut self, key: &str, balance: Decimal) {
        match self.accounts.get_mut(key) {
            Some(b) => *b = balance,
            None => {
                self.accounts.insert(Arc::from(key), balance);
            }
        }
    }

    pub(crate) fn balance(&self, key: &str) -> Option<Decimal> {
        self.accounts.get(key).copied()
    }

    pub(crate) fn add_fault(&mut self, rule: FaultRule) {
        if rule.times != Some(0) {
            self.faults.push(rule);
        }
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub(crate) fn faults(&self) -> Vec<FaultRule> {
        self.faults.clone()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.log.iter().map(LogEntry::to_record).collect()
    }

    pub(crate) fn clear_requests(&mut self) {
        self.log.clear();
    }

    pub(crate) fn log_dropped(&self) -> u64 {
        self.log_dropped
    }

    pub(crate) fn orders(&self, now: u64) -> Vec<SimOrder> {
        self.orders
            .iter()
            .map(|o| snapshot(o, self.drop_of(o, now), now))
            .collect()
    }

    pub(crate) fn order(&self, id: u64, now: u64) -> Option<SimOrder> {
        self.order_ref(id)
            .map(|o| snapshot(o, self.drop_of(o, now), now))
    }

    /// Orders whose drop happened by `now` (refilled or not).
    pub(crate) fn dropped_orders(&self, now: u64) -> Vec<SimOrder> {
        self.orders
            .iter()
            .filter_map(|o| {
                let drop = self.drop_of(o, now)?;
                Some(snapshot(o, Some(drop), now))
            })
            .collect()
    }

    /// The drop `o` suffered by `now`, with the first refill asked after it that ended
    /// Completed by `now`.
    fn drop_of(&self, o: &Order, now: u64) -> Option<SimDrop> {
        let (at, units) = o.drop_plan().filter(|(at, _)| *at <= now)?;
        let refilled_ms = o
            .refills
            .iter()
            .filter_map(|id| self.refill_ref(*id))
            .filter(|r| r.created >= at && !r.rejected && r.end() <= now)
            .map(Refill::end)
            .min();
        Some(SimDrop {
            at_ms: at,
            units,
            refilled_ms,
        })
    }

    /// Replaces one service's profile; false when the service is unknown.
    pub(crate) fn set_profile(&mut self, service: u64, profile: Profile) -> bool {
        match self.services.get_mut(&service) {
            Some(s) => {
                s.profile = profile;
                true
            }
            None => false,
        }
    }

    pub(crate) fn add_outage(&mut self, outage: Outage) {
        self.outages.push(outage);
    }

    pub(crate) fn clear_outages(&mut self) {
        self.outages.clear();
    }

    pub(crate) fn outages(&self) -> Vec<Outage> {
        self.outages.clone()
    }

    /// Whether some outage refuses connections (at any time).
    pub(crate) fn may_refuse(&self) -> bool {
        self.outages.iter().any(Outage::refuses)
    }

    /// End (sim ms) of the refused-connections window open at `now`, if one is.
    pub(crate) fn refused_until(&self, now: u64) -> Option<u64> {
        self.outages
            .iter()
            .filter(|o| o.refuses())
            .filter_map(|o| o.open_until(now))
            .max()
    }

    pub(crate) fn refills(&self, now: u64) -> Vec<SimRefill> {
        self.refills
            .iter()
            .map(|r| SimRefill {
                id: r.id,
                order: r.order,
                key: r.key.to_string(),
                status: r.status_at(now).to_owned(),
                created_ms: r.created,
            })
            .collect()
    }

    // ----- request path ---------------------------------------------------------------------

    /// Applies every refund that became due by `now`.
    pub(crate) fn settle(&mut self, now: u64) {
        while let Some(&Reverse((t, id))) = self.settle_heap.peek() {
            if t > now {
                break;
            }
            self.settle_heap.pop();
            let Some(idx) = self.index(id) else { continue };
            let Some(o) = self.orders.get(idx) else {
                continue;
            };
            match o.resolution() {
                Some((rt, _, _)) if rt <= now => {
                    let owed = o.eval(now).refund;
                    let delta = owed - o.refunded;
                    if delta > Decimal::ZERO {
                        let key = o.key.clone();
                        if let Some(o) = self.orders.get_mut(idx) {
                            o.refunded = owed;
                        }
                        if let Some(b) = self.accounts.get_mut(&*key) {
                            *b = b.saturating_add(delta);
                        }
                    }
                }
                Some((rt, _, _)) => self.settle_heap.push(Reverse((rt, id))),
                None => {}
            }
        }
    }

    /// Picks the fault for this request: an outage's open at `now` (never used up), else the
    /// first matching rule, consuming one of its uses.
    pub(crate) fn take_fault(&mut self, p: &Params, now: u64) -> Option<Fault> {
        if self.faults.is_empty() && self.outages.is_empty() {
            return None;
        }
        let action = p.get("action").map(|s| s.trim());
        let services = if self.faults.iter().any(|r| r.service.is_some())
            || self.outages.iter().any(|o| o.service.is_some())
        {
            self.request_services(p)
        } else {
            Vec::new()
        };
        let outage = self.outages.iter().find(|o| {
            o.fault.is_some()
                && o.service.is_none_or(|s| services.contains(&s))
                && o.open_until(now).is_some()
        });
        if let Some(fault) = outage.and_then(|o| o.fault.clone()) {
            return Some(fault);
        }
        let idx = self.faults.iter().position(|r| {
            r.action.as_deref().is_none_or(|a| Some(a) == action)
                && r.service.is_none_or(|s| services.contains(&s))
        })?;
        let rule = self.faults.get_mut(idx)?;
        let fault = rule.fault.clone();
        if let Some(n) = rule.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.remove(idx);
            }
        }
        Some(fault)
    }

    /// Services a request is about: its `service`, and those of the orders/refills it names.
    fn request_services(&self, p: &Params) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some(s) = params::uint(p, "service") {
            out.push(s);
        }
        let mut orders: Vec<u64> = Vec::new();
        for name in ["order", "orders"] {
            if let Some(v) = p.get(name) {
                orders.extend(
                    params::csv(v)
                        .into_iter()
                        .take(MAX_IDS)
                        .filter_map(params::parse_uint),
                );
            }
        }
        for name in ["refill", "refills"] {
            if let Some(v) = p.get(name) {
                orders.extend(
                    params::csv(v)
                        .into_iter()
                        .take(MAX_IDS)
                        .filter_map(params::parse_uint)
                        .filter_map(|r| self.refill_ref(r).map(|r| r.order)),
                );
            }
        }
        out.extend(
            orders
                .into_iter()
                .filter_map(|id| self.order_ref(id).map(|o| o.service)),
        );
        out
    }

    /// Counts one API request by action (and the ids a `status` names).
    pub(crate) fn count_request(&mut self, p: &Params) {
        let action = p.get("action").map_or("", |a| a.trim());
        if action == "status" {
            let ids = p.get("order").map_or(0, |_| 1)
                + p.get("orders").map_or(0, |v| params::csv(v).len());
            self.counts.status_ids += ids as u64;
        }
        match self.counts.actions.get_mut(action) {
            Some(n) => *n += 1,
            None => {
                self.counts.actions.insert(action.to_owned(), 1);
            }
        }
    }

    pub(crate) fn request_counts(&self) -> RequestCounts {
        self.counts.clone()
    }

    /// `count` `add`s with the same parameters; see [`crate::Sim::add_orders`].
    pub(crate) fn add_many(
        &mut self,
        p: &Params,
        count: u64,
        now: u64,
    ) -> Result<Option<(u64, u64)>, String> {
        let key = p
            .get("key")
            .and_then(|k| self.accounts.get_key_value(k.as_str()))
            .map(|(k, _)| k.clone())
            .ok_or_else(|| ApiError::InvalidKey.text(false).into_owned())?;
        let mut range: Option<(u64, u64)> = None;
        for _ in 0..count {
            let id = self.next_order_id();
            self.add(&key, p, now)
                .map_err(|e| e.text(self.dialect.raw_error_keys).into_owned())?;
            range = Some((range.map_or(id, |(first, _)| first), id));
        }
        Ok(range)
    }

    fn next_order_id(&self) -> u64 {
        self.first_order_id.saturating_add(self.orders.len() as u64)
    }

    /// Appends a request to the log (built outside the lock; `seq` and `fault` are set here).
    pub(crate) fn record(&mut self, rec: Option<LogEntry>, fault: Option<&Fault>) {
        self.next_seq += 1;
        let Some(mut rec) = rec else { return };
        if self.max_log == 0 {
            return;
        }
        while self.log.len() >= self.max_log {
            self.log.pop_front();
            self.log_dropped += 1;
        }
        rec.seq = self.next_seq;
        rec.fault = fault.map(Fault::name);
        self.log.push_back(rec);
    }

    /// Answers one API request (always an HTTP 200 JSON body).
    pub(crate) fn handle(&mut self, p: &Params, now: u64) -> J {
        self.settle(now);
        match self.dispatch(p, now) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(error = ?e, action = ?p.get("action"), "api error");
                J::error(e.text(self.dialect.raw_error_keys))
            }
        }
    }

    fn dispatch(&mut self, p: &Params, now: u64) -> Result<J, ApiError> {
        let key = p
            .get("key")
            .and_then(|k| self.accounts.get_key_value(k.as_str()))
            .map(|(k, _)| k.clone())
            .ok_or(ApiError::InvalidKey)?;
        match p.get("action").map(|a| a.trim()) {
            Some("services") => Ok(self.services_reply()),
            Some("add") => self.add(&key, p, now),
            Some("status") => self.status(&key, p, now),
            Some("refill") => self.refill(&key, p, now),
            Some("refill_status") => self.refill_status(&key, p, now),
            Some("cancel") => self.cancel(&key, p, now),
            Some("balance") => Ok(J::obj([
                (
                    "balance",
                    self.money(self.accounts.get(&key).copied().unwrap_or_default()),
                ),
                ("currency", J::s(self.currency.as_str())),
            ])),
            _ => Err(ApiError::IncorrectRequest),
        }
    }

    // ----- typing helpers -------------------------------------------------------------------

    fn money(&self, d: Decimal) -> J {
        if self.dialect.numbers_as_numbers {
            J::Float(round5(d).to_f64().unwrap_or(0.0))
        } else {
            J::Str(money_text(d))
        }
    }

    fn count(&self, n: u64) -> J {
        if self.dialect.numbers_as_numbers {
            J::UInt(n)
        } else {
            J::Str(n.to_string())
        }
    }

    fn status_word(&self, canonical: &str) -> String {
        let d = &self.dialect;
        let s = if canonical == "Canceled" && d.cancelled_spelling {
            "Cancelled"
        } else {
            canonical
        };
        if d.snake_status {
            s.to_lowercase().replace(' ', "_")
        } else if d.lowercase_status {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    }

    fn order_status_value(&self, s: OrderStatus) -> J {
        if self.dialect.numeric_status {
            let code = match s {
                OrderStatus::Pending => Some(0),
                OrderStatus::InProgress => Some(1),
                OrderStatus::Completed => Some(2),
                OrderStatus::Partial => Some(3),
                OrderStatus::Canceled => Some(4),
                OrderStatus::Active | OrderStatus::Expired => None,
            };
            if let Some(c) = code {
                return if self.dialect.numbers_as_numbers {
                    J::UInt(c)
                } else {
                    J::Str(c.to_string())
                };
            }
        }
        J::Str(self.status_word(s.as_str()))
    }

    fn services_reply(&self) -> J {
        let nums = self.dialect.numbers_as_numbers;
        J::Arr(
            self.catalog
                .iter()
                .filter_map(|id| self.services.get(id))
                .map(|s| {
                    J::obj([
                        ("service", J::UInt(s.id)),
                        ("name", J::s(s.name.as_str())),
                        ("type", J::s(s.service_type.as_str())),
                        ("category", J::s(s.category.as_str())),
                        (
                            "rate",
                            if nums {
                                J::Float(s.rate.to_f64().unwrap_or(0.0))
                            } else {
                                J::Str(s.rate.to_string())
                            },
                        ),
                        ("min", self.count(s.min)),
                        ("max", self.count(s.max)),
                        ("refill", J::Bool(s.refill)),
                        ("cancel", J::Bool(s.cancel)),
                        ("dripfeed", J::Bool(s.dripfeed)),
                    ])
                })
                .collect(),
        )
    }

    // ----- orders ---------------------------------------------------------------------------

    fn index(&self, id: u64) -> Option<usize> {
        usize::try_from(id.checked_sub(self.first_order_id)?).ok()
    }

    fn order_ref(&self, id: u64) -> Option<&Order> {
        self.orders.get(self.index(id)?)
    }

    fn own_order(&self, key: &str, id: u64) -> Option<&Order> {
        self.order_ref(id).filter(|o| &*o.key == key)
    }

    fn refill_ref(&self, id: u64) -> Option<&Refill> {
        self.refills.get(usize::try_from(id.checked_sub(1)?).ok()?)
    }

    fn add(&mut self, key: &Arc<str>, p: &Params, now: u64) -> Result<J, ApiError> {
        use ServiceType as T;
        let sid = params::uint(p, "service").ok_or(ApiError::IncorrectService)?;
        let svc = self.services.get(&sid).ok_or(ApiError::IncorrectService)?;
        let ty = ServiceType::parse(&svc.service_type).unwrap_or(T::Default);
        let (rate, min, max) = (svc.rate, svc.min, svc.max);
        let (dripfeed_ok, reject_dup) = (svc.dripfeed, svc.reject_duplicate_link);
        let outcomes = svc
            .profile
            .outcomes
            .clone()
            .unwrap_or_else(|| svc.outcomes.clone());
        let profile = svc.profile.clone();

        let link = if ty == T::Subscriptions {
            None
        } else {
            Some(valid_link(p)?)
        };
        let mut sub = None;
        let quantity = match ty {
            T::Package => 1,
            T::CustomComments | T::CustomCommentsPackage => params::lines(p, "comments"),
            T::MentionsCustomList => params::lines(p, "usernames"),
            T::CommentReplies => {
                need(p, "username")?;
                params::lines(p, "comments")
            }
            T::Subscriptions => {
                let (s, q) = self.subscription(p, min, max, now)?;
                sub = Some(s);
                q
            }
            _ => {
                match ty {
                    T::Mentions => {
                        need(p, "usernames")?;
                    }
                    T::MentionsWithHashtags => {
                        need(p, "usernames")?;
                        need(p, "hashtags")?;
                    }
                    T::MentionsHashtag => {
                        need(p, "hashtag")?;
                    }
                    T::MentionsUserFollowers | T::CommentLikes => {
                        need(p, "username")?;
                    }
                    T::MentionsMediaLikers => {
                        need(p, "media")?;
                    }
                    T::Poll => {
                        params::uint(p, "answer_number")
                            .filter(|n| *n >= 1)
                            .ok_or(ApiError::IncorrectRequest)?;
                    }
                    T::InvitesFromGroups => {
                        need(p, "groups")?;
                    }
                    T::Seo => {
                        need(p, "keywords")?;
                    }
                    T::WebTraffic => {
                        need(p, "country")?;
                        params::uint(p, "device")
                            .filter(|d| (1..=5).contains(d))
                            .ok_or(ApiError::IncorrectRequest)?;
                        let traffic = params::uint(p, "type_of_traffic")
                            .filter(|d| (1..=3).contains(d))
                            .ok_or(ApiError::IncorrectRequest)?;
                        if traffic == 1 {
                            need(p, "google_keyword")?;
                        }
                        if traffic == 2 {
                            need(p, "referring_url")?;
                        }
                    }
                    _ => {}
                }
                params::uint(p, "quantity").unwrap_or(0)
            }
        };
        if !matches!(ty, T::Package | T::Subscriptions) {
            if quantity < min {
                return Err(ApiError::MinQuantity(min));
            }
            if quantity > max {
                return Err(ApiError::MaxQuantity(max));
            }
        }
        let (mut runs, mut interval) = (None, None);
        if ty == T::Default && params::text(p, "runs").is_some() {
            if !dripfeed_ok {
                return Err(ApiError::DripfeedDisabled);
            }
            runs = Some(
                params::uint(p, "runs")
                    .filter(|r| *r >= 1)
                    .ok_or(ApiError::IncorrectRequest)?,
            );
            interval = Some(
                params::uint(p, "interval")
                    .filter(|i| *i >= 1)
                    .ok_or(ApiError::IncorrectRequest)?,
            );
        }
        let total = quantity
            .checked_mul(runs.unwrap_or(1))
            .ok_or(ApiError::MaxQuantity(max))?;
        let charge = if ty.flat_priced() {
            round5(rate)
        } else {
            rate.checked_mul(Decimal::from(total))
                .and_then(|x| x.checked_div(Decimal::from(1000)))
                .map(round5)
                .ok_or(ApiError::NotEnoughFunds)?
        };

        let dup_key = match (&link, reject_dup) {
            (Some(l), true) => {
                let k = format!("{key}\u{0}{sid}\u{0}{l}");
                if let Some(ids) = self.active_links.get(&k) {
                    let active: Vec<u64> = ids
                        .iter()
                        .copied()
                        .filter(|id| {
                            self.order_ref(*id)
                                .is_some_and(|o| !o.eval(now).status.is_terminal())
                        })
                        .collect();
                    let busy = !active.is_empty();
                    self.active_links.insert(k.clone(), active);
                    if busy {
                        return Err(ApiError::LinkDuplicate);
                    }
                }
                Some(k)
            }
            _ => None,
        };

        let balance = self.accounts.get_mut(&**key).ok_or(ApiError::InvalidKey)?;
        if *balance < charge {
            return Err(ApiError::NotEnoughFunds);
        }
        *balance -= charge;

        let id = self.next_order_id();
        let mut plan = make_plan(self.seed, id, &outcomes, &self.timing, &profile, total);
        if let Some(s) = &mut sub {
            let mut rng = fastrand::Rng::with_seed(mix(self.seed, id, 3));
            s.post_every = secs_range(&mut rng, self.timing.post_every_secs).max(1);
            plan.outcome = Outcome::Completed;
        }
        let stored = Packed::new(p, &["key", "action"]);
        let order = Order {
            id,
            service: sid,
            ty,
            key: key.clone(),
            link,
            quantity: total,
            runs,
            interval,
            params: stored,
            charge,
            refunded: Decimal::ZERO,
            created: now,
            plan,
            cancel_at: None,
            sub,
            refills: Vec::new(),
        };
        if let Some((t, status, _)) = order.resolution() {
            if status != OrderStatus::Completed || order.sub.is_some() {
                self.settle_heap.push(Reverse((t, id)));
            }
        }
        self.orders.push(order);
        if let Some(k) = dup_key {
            self.active_links.entry(k).or_default().push(id);
        }

        let d = self.dialect;
        let idv = if d.order_id_as_string {
            J::Str(id.to_string())
        } else {
            J::UInt(id)
        };
        Ok(J::obj([(
            if d.order_id_key { "order_id" } else { "order" },
            idv,
        )]))
    }

    /// Validates a Subscriptions `add`; returns the plan part and the reserved quantity.
    fn subscription(
        &self,
        p: &Params,
        min: u64,
        max: u64,
        now: u64,
    ) -> Result<(Sub, u64), ApiError> {
        need(p, "username")?;
        let smin = params::uint(p, "min").ok_or(ApiError::IncorrectRequest)?;
        let smax = params::uint(p, "max").ok_or(ApiError::IncorrectRequest)?;
        if smin < min {
            return Err(ApiError::MinQuantity(min));
        }
        if smax > max {
            return Err(ApiError::MaxQuantity(max));
        }
        if smin > smax {
            return Err(ApiError::IncorrectRequest);
        }
        params::uint(p, "delay").ok_or(ApiError::IncorrectRequest)?;
        let optional = |name: &str| -> Result<u64, ApiError> {
            match params::text(p, name) {
                None => Ok(0),
                Some(s) => params::parse_uint(s).ok_or(ApiError::IncorrectRequest),
            }
        };
        let limit = optional("posts")?;
        optional("old_posts")?;
        let (expiry_ms, expiry) = match params::text(p, "expiry") {
            None => (None, None),
            Some(s) => {
                let day = parse_dmy(s).ok_or(ApiError::IncorrectRequest)?;
                let end_unix = day.saturating_add(DAY_MS);
                let now_unix = self.start_unix_ms.saturating_add(now);
                if end_unix <= now_unix {
                    return Err(ApiError::IncorrectRequest);
                }
                (
                    Some(end_unix - self.start_unix_ms.min(end_unix)),
                    Some(s.to_owned()),
                )
            }
        };
        let reserved = limit.max(1);
        let quantity = smax
            .checked_mul(reserved)
            .ok_or(ApiError::MaxQuantity(max))?;
        Ok((
            Sub {
                reserved,
                limit,
                post_every: 0,
                expiry_ms,
                expiry,
            },
            quantity,
        ))
    }

    fn status_reply(&self, o: &Order, now: u64) -> J {
        let e = o.eval(now);
        if let Some(sub) = &o.sub {
            let posts = e.posts.unwrap_or(0);
            let first = posts.saturating_sub(MAX_CHILD_IDS) + 1;
            let base = CHILD_ORDER_BASE.saturating_add(o.id.saturating_mul(10_000));
            let children = (first..=posts)
                .map(|k| J::UInt(base.saturating_add(k)))
                .collect();
            return J::obj([
                ("status", J::Str(self.status_word(e.status.as_str()))),
                ("expiry", sub.expiry.clone().map_or(J::Null, J::Str)),
                ("posts", J::Str(posts.to_string())),
                ("orders", J::Arr(children)),
            ]);
        }
        let shown_charge = o.charge
            - if e.status.is_terminal() {
                e.refund
            } else {
                Decimal::ZERO
            };
        let remains = if self.dialect.no_remains
            || (self.dialect.unknown_remains && e.status == OrderStatus::Pending)
        {
            J::s("Unknown")
        } else {
            self.count(e.remains)
        };
        let mut fields = vec![
            (Cow::Borrowed("charge"), self.money(shown_charge)),
            (Cow::Borrowed("start_count"), self.count(e.start_count)),
            (Cow::Borrowed("status"), self.order_status_value(e.status)),
            (Cow::Borrowed("remains"), remains),
            (Cow::Borrowed("currency"), J::s(self.currency.as_str())),
        ];
        if let Some(r) = e.runs_done {
            fields.push((Cow::Borrowed("runs"), J::Str(r.to_string())));
        }
        J::Obj(fields)
    }

    fn status(&self, key: &str, p: &Params, now: u64) -> Result<J, ApiError> {
        if let Some(list) = params::text(p, "orders") {
            let ids = params::csv(list);
            if ids.len() > MAX_IDS {
                return Err(ApiError::IncorrectRequest);
            }
            let mut out: Vec<(Cow<'static, str>, J)> = Vec::with_capacity(ids.len());
            for tok in ids {
                if out.iter().any(|(k, _)| k == tok) {
                    continue;
                }
                let v = match params::parse_uint(tok).and_then(|id| self.own_order(key, id)) {
                    Some(o) => self.status_reply(o, now),
                    None => J::error(ApiError::IncorrectOrder.text(false)),
                };
                out.push((Cow::Owned(tok.to_owned()), v));
            }
            return Ok(J::Obj(out));
        }
        let id = params::uint(p, "order").ok_or(ApiError::IncorrectOrder)?;
        let o = self.own_order(key, id).ok_or(ApiError::IncorrectOrder)?;
        Ok(self.status_reply(o, now))
    }

    fn id_value(tok: &str) -> J {
        match params::parse_uint(tok) {
            Some(n) => J::UInt(n),
            None => J::s(tok),
        }
    }

    fn create_refill(&mut self, key: &Arc<str>, id: u64, now: u64) -> Result<u64, ApiError> {
        let o = self.own_order(key, id).ok_or(ApiError::IncorrectOrder)?;
        let svc = self.services.get(&o.service);
        if !svc.is_some_and(|s| s.refill) {
            return Err(ApiError::RefillDisabled);
        }
        if !matches!(
            o.eval(now).status,
            OrderStatus::Completed | OrderStatus::Partial
        ) {
            return Err(ApiError::RefillNotEligible);
        }
        let reject_p = svc.map_or(0.0, |s| {
            s.profile
                .outcomes
                .as_ref()
                .unwrap_or(&s.outcomes)
                .refill_rejected
        });
        let rid = self.refills.len() as u64 + 1;
        let (pending, run, rejected) = make_refill(self.seed, rid, reject_p, &self.timing);
        if let Some(o) = self.index(id).and_then(|i| self.orders.get_mut(i)) {
            o.refills.push(rid);
        }
        self.refills.push(Refill {
            id: rid,
            order: id,
            key: key.clone(),
            created: now,
            pending,
            run,
            rejected,
        });
        Ok(rid)
    }

    fn refill(&mut self, key: &Arc<str>, p: &Params, now: u64) -> Result<J, ApiError> {
        let raw = self.dialect.raw_error_keys;
        if let Some(list) = params::text(p, "orders") {
            let ids = params::csv(list);
            if ids.len() > MAX_IDS {
                return Err(ApiError::IncorrectRequest);
            }
            let mut out = Vec::with_capacity(ids.len());
            for tok in ids {
                let res = params::parse_uint(tok)
                    .ok_or(ApiError::IncorrectOrder)
                    .and_then(|id| self.create_refill(key, id, now));
                let v = match res {
                    Ok(rid) => J::UInt(rid),
                    Err(e) => J::error(e.text(raw)),
                };
                out.push(J::obj([("order", Self::id_value(tok)), ("refill", v)]));
            }
            return Ok(J::Arr(out));
        }
        let id = params::uint(p, "order").ok_or(ApiError::IncorrectOrder)?;
        let rid = self.create_refill(key, id, now)?;
        Ok(J::obj([("refill", J::Str(rid.to_string()))]))
    }

    fn refill_status(&self, key: &str, p: &Params, now: u64) -> Result<J, ApiError> {
        let find = |tok: &str| {
            params::parse_uint(tok)
                .and_then(|id| self.refill_ref(id))
                .filter(|r| &*r.key == key)
        };
        if let Some(list) = params::text(p, "refills") {
            let ids = params::csv(list);
            if ids.len() > MAX_IDS {
                return Err(ApiError::IncorrectRequest);
            }
            let out = ids
                .into_iter()
                .map(|tok| {
                    let st = match find(tok) {
                        Some(r) => J::Str(self.status_word(r.status_at(now))),
                        None => J::error(ApiError::RefillNotFound.text(false)),
                    };
                    J::obj([("refill", Self::id_value(tok)), ("status", st)])
                })
                .collect();
            return Ok(J::Arr(out));
        }
        let r = params::text(p, "refill")
            .and_then(find)
            .ok_or(ApiError::RefillNotFound)?;
        Ok(J::obj([(
            "status",
            J::Str(self.status_word(r.status_at(now))),
        )]))
    }

    fn cancel_one(&mut self, key: &str, id: u64, now: u64) -> Result<(), ApiError> {
        let idx = self.index(id).ok_or(ApiError::IncorrectOrder)?;
        let o = self.own_order(key, id).ok_or(ApiError::IncorrectOrder)?;
        if !self.services.get(&o.service).is_some_and(|s| s.cancel) {
            return Err(ApiError::CancelDisabled);
        }
        if o.eval(now).status.is_terminal() {
            return Err(ApiError::CancelNotEligible);
        }
        if let Some(o) = self.orders.get_mut(idx) {
            o.cancel_at = Some(now);
        }
        self.settle_heap.push(Reverse((now, id)));
        self.settle(now);
        Ok(())
    }

    fn cancel(&mut self, key: &Arc<str>, p: &Params, now: u64) -> Result<J, ApiError> {
        let raw = self.dialect.raw_error_keys;
        if let Some(list) = params::text(p, "orders") {
            let ids = params::csv(list);
            if ids.len() > MAX_IDS {
                return Err(ApiError::IncorrectRequest);
            }
            let mut out = Vec::with_capacity(ids.len());
            for tok in ids {
                let res = params::parse_uint(tok)
                    .ok_or(ApiError::IncorrectOrder)
                    .and_then(|id| self.cancel_one(key, id, now));
                let v = match res {
                    Ok(()) => J::UInt(1),
                    Err(e) => J::error(e.text(raw)),
                };
                out.push(J::obj([("order", Self::id_value(tok)), ("cancel", v)]));
            }
            return Ok(J::Arr(out));
        }
        let id = params::uint(p, "order").ok_or(ApiError::IncorrectOrder)?;
        self.cancel_one(key, id, now)?;
        Ok(J::obj([("cancel", J::UInt(1))]))
    }
}

fn need<'a>(p: &'a Params, name: &'static str) -> Result<&'a str, ApiError> {
    params::text(p, name).ok_or_else(|| {
        tracing::debug!(param = name, "add: missing required parameter");
        ApiError::IncorrectRequest
    })
}

fn valid_link(p: &Params) -> Result<String, ApiError> {
    let link = params::text(p, "link").ok_or(ApiError::IncorrectLink)?;
    if link.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::IncorrectLink);
    }
    Ok(link.to_owned())
}

fn snapshot(o: &Order, drop: Option<SimDrop>, now: u64) -> SimOrder {
    let e = o.eval(now);
    SimOrder {
        id: o.id,
        service: o.service,
        service_type: o.ty.as_str().to_owned(),
        key: o.key.to_string(),
        link: o.link.clone(),
        quantity: o.quantity,
        runs: o.runs,
        interval: o.interval,
        params: o.params.to_map(),
        charge: o.charge,
        refunded: o.refunded,
        status: e.status,
        remains: e.remains,
        start_count: e.start_count,
        runs_done: e.runs_done,
        posts: e.posts,
        created_ms: o.created,
        drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_dmy("01/01/1970"), Some(0));
        assert_eq!(parse_dmy("02/01/1970"), Some(DAY_MS));
        assert_eq!(parse_dmy("29/02/2024").map(|m| m / DAY_MS), Some(19_782));
        assert_eq!(parse_dmy("29/02/2023"), None);
        assert_eq!(parse_dmy("31/04/2030"), None);
        assert_eq!(parse_dmy("12/31/2030"), None);
        assert_eq!(parse_dmy("2030-12-31"), None);
        assert_eq!(parse_dmy("1/1/30"), None);
    }

    #[test]
    fn money_rounding() {
        assert_eq!(money_text(Decimal::new(1_234_565, 7)), "0.12346");
        assert_eq!(money_text(Decimal::new(5, 1)), "0.50000");
        assert_eq!(pro_rata(Decimal::new(1, 0), 1, 3), Decimal::new(33_333, 5));
        assert_eq!(pro_rata(Decimal::new(1, 0), 3, 3), Decimal::ONE);
        assert_eq!(
            pro_rata(Decimal::MAX, 1, 3),
            round5(Decimal::MAX / Decimal::from(3))
        );
    }

    #[test]
    fn plans_are_deterministic() {
        let t = Timing::default();
        let o = Outcomes::mixed();
        let a = make_plan(7, 10_001, &o, &t, &Profile::default(), 1000);
        let b = make_plan(7, 10_001, &o, &t, &Profile::default(), 1000);
        assert_eq!(
            (
                a.pending,
                a.run,
                a.outcome,
                a.start_count,
                a.partial_remains
            ),
            (
                b.pending,
                b.run,
                b.outcome,
                b.start_count,
                b.partial_remains
            )
        );
        let c = make_plan(8, 10_001, &o, &t, &Profile::default(), 1000);
        assert_ne!((a.pending, a.start_count), (c.pending, c.start_count));
    }

    #[test]
    fn partial_shares_and_drops_leave_the_other_draws_alone() {
        let t = Timing::default();
        let o = Outcomes::mixed();
        let shaped = Profile {
            partial_undelivered: Some([0.5, 0.5]),
            drops: Some(crate::config::Drops {
                rate: 1.0,
                ..crate::config::Drops::default()
            }),
            ..Profile::default()
        };
        let mut seen = (false, false);
        for id in 10_001..10_200 {
            let a = make_plan(7, id, &o, &t, &Profile::default(), 1000);
            let b = make_plan(7, id, &o, &t, &shaped, 1000);
            assert_eq!(
                (a.pending, a.run, a.outcome, a.start_count),
                (b.pending, b.run, b.outcome, b.start_count)
            );
            assert_eq!(a.drop, None);
            match b.outcome {
                Outcome::Partial => {
                    assert_eq!(b.partial_remains, 500);
                    seen.0 = true;
                }
                Outcome::Completed => {
                    let (after, units) = b.drop.expect("rate 1: every Completed order drops");
                    assert!((3_600_000..=259_200_000).contains(&after));
                    assert!((100..=300).contains(&units));
                    seen.1 = true;
                }
                Outcome::Canceled => assert_eq!(b.drop, None),
            }
        }
        assert_eq!(seen, (true, true));
    }
}
