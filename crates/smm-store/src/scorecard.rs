//! Provider scorecards (issue #15): what each route (provider, upstream service) did over a
//! window of days, from the per-day aggregates the triggers of migration 0013 keep. Reading a
//! scorecard reads a few rows per route and day, never the orders.
//!
//! # What each figure counts
//!
//! * **By the day of the attempt**: `attempts` (forwarding calls finished), `accepted`,
//!   `refused` (a definitive no), `not_sent` (the call never left), `ambiguous` (may have
//!   reached the upstream), `call_ms` (their summed duration).
//! * **By the day the upstream accepted the order** (the order's cohort): `orders`, `started`
//!   (a start seen), `completed` (`Completed`, `Expired`), `partial`, `canceled` (`Canceled`,
//!   `Refunded`), `undelivered_ppm` (Partial orders' refunded share of their charge, in
//!   millionths, summed), `cost_nanos` and `kept_cost_nanos` (upstream cost in 1e-8 of the
//!   provider's money, in full and net of the refunded share), `charged` and `refunded` (the
//!   customer's side, in [`smm_wire::Money`] units), `refills`, `refills_done`,
//!   `refills_failed`.
//! * **Durations** ([`Durations`]), per kind: `start` (acceptance to the first start seen),
//!   `complete` (acceptance to `Completed`), `refill` (a completed refill's request to its
//!   completion), `call` (an attempt's upstream call). Each is truncated to two significant
//!   digits of milliseconds before it is counted (1,234 ms counts as 1,200 ms): medians and
//!   p90s are exact figures of the truncated durations. Times are seen when the gateway sees
//!   them: a start is dated by the poll that found it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Timestamp;

/// Milliseconds in a UTC day: the aggregates' day is `timestamp / DAY_MS`.
pub const DAY_MS: i64 = 86_400_000;

/// The counters of one route over a window (sums of the per-day rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RouteCounts {
    pub attempts: i64,
    pub accepted: i64,
    pub refused: i64,
    pub not_sent: i64,
    pub ambiguous: i64,
    pub call_ms: i64,
    pub orders: i64,
    pub started: i64,
    pub completed: i64,
    pub partial: i64,
    pub canceled: i64,
    pub undelivered_ppm: i64,
    pub cost_nanos: i64,
    pub kept_cost_nanos: i64,
    pub charged: i64,
    pub refunded: i64,
    pub refills: i64,
    pub refills_done: i64,
    pub refills_failed: i64,
}

impl RouteCounts {
    /// Adds `other` field by field (saturating: the sums cannot realistically overflow).
    pub fn add(&mut self, other: &RouteCounts) {
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f = self.$f.saturating_add(other.$f); )* };
        }
        add!(
            attempts,
            accepted,
            refused,
            not_sent,
            ambiguous,
            call_ms,
            orders,
            started,
            completed,
            partial,
            canceled,
            undelivered_ppm,
            cost_nanos,
            kept_cost_nanos,
            charged,
            refunded,
            refills,
            refills_done,
            refills_failed
        );
    }

    /// Orders with an outcome: completed, partial or canceled.
    pub fn finished(&self) -> i64 {
        self.completed + self.partial + self.canceled
    }
}

/// A histogram of durations: how many fell in each bucket (milliseconds, two significant
/// digits), by bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    buckets: BTreeMap<i64, i64>,
}

impl Durations {
    /// Counts `n` durations in `bucket` (`n` may be negative while folding deltas).
    pub fn add(&mut self, bucket: i64, n: i64) {
        let count = self.buckets.entry(bucket).or_insert(0);
        *count += n;
        if *count == 0 {
            self.buckets.remove(&bucket);
        }
    }

    /// Adds every bucket of `other`.
    pub fn merge(&mut self, other: &Durations) {
        for (bucket, n) in &other.buckets {
            self.add(*bucket, *n);
        }
    }

    /// How many durations were counted.
    pub fn count(&self) -> i64 {
        self.buckets.values().filter(|n| **n > 0).sum()
    }

    /// The duration at `per_mille` ‰ of the sorted durations: the smallest bucket at or below
    /// which at least `ceil(count × per_mille / 1000)` durations fall (the lower median for
    /// 500). `None` without durations.
    pub fn quantile(&self, per_mille: i64) -> Option<i64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let product = count * per_mille.clamp(1, 1000);
        let rank = (product / 1000 + i64::from(product % 1000 != 0)).max(1);
        let mut seen = 0;
        for (bucket, n) in &self.buckets {
            if *n <= 0 {
                continue;
            }
            seen += n;
            if seen >= rank {
                return Some(*bucket);
            }
        }
        self.buckets.keys().next_back().copied()
    }

    /// The median (lower median).
    pub fn median(&self) -> Option<i64> {
        self.quantile(500)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Option<i64> {
        self.quantile(900)
    }
}

/// The four kinds of durations a route keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDurations {
    pub start: Durations,
    pub complete: Durations,
    pub refill: Durations,
    pub call: Durations,
}

impl RouteDurations {
    /// The histogram of `kind` (`start`, `complete`, `refill`, `call`); `None` for another word.
    pub fn kind_mut(&mut self, kind: &str) -> Option<&mut Durations> {
        Some(match kind {
            "start" => &mut self.start,
            "complete" => &mut self.complete,
            "refill" => &mut self.refill,
            "call" => &mut self.call,
            _ => return None,
        })
    }

    pub fn merge(&mut self, other: &RouteDurations) {
        self.start.merge(&other.start);
        self.complete.merge(&other.complete);
        self.refill.merge(&other.refill);
        self.call.merge(&other.call);
    }
}

/// One route's record over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRecord {
    pub provider: String,
    pub upstream_service: String,
    pub counts: RouteCounts,
    pub durations: RouteDurations,
}

/// A provider's routes taken together: their counts and durations summed, and each route's
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecord<'a> {
    pub provider: &'a str,
    pub counts: RouteCounts,
    pub durations: RouteDurations,
    pub routes: Vec<&'a RouteRecord>,
}

/// `records` grouped by provider, in provider order (routes in the order given).
pub fn by_provider<'a>(
    records: impl IntoIterator<Item = &'a RouteRecord>,
) -> Vec<ProviderRecord<'a>> {
    let mut providers: BTreeMap<&'a str, ProviderRecord<'a>> = BTreeMap::new();
    for record in records {
        let entry = providers
            .entry(record.provider.as_str())
            .or_insert_with(|| ProviderRecord {
                provider: record.provider.as_str(),
                counts: RouteCounts::default(),
                durations: RouteDurations::default(),
                routes: Vec::new(),
            });
        entry.counts.add(&record.counts);
        entry.durations.merge(&record.durations);
        entry.routes.push(record);
    }
    providers.into_values().collect()
}

/// The window a scorecard covers: the `days` UTC days ending with the day of `now` (so 7 is
/// today and the six days before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreWindow {
    pub now: Timestamp,
    pub days: u32,
}

impl ScoreWindow {
    /// The first day counted (`timestamp / DAY_MS`).
    pub fn first_day(&self) -> i64 {
        self.now.div_euclid(DAY_MS) - i64::from(self.days.max(1)) + 1
    }
}

/// Which of a route's attempts the quality policy's recent window judges: the last `limit`
/// made since `since` that say something about the route:
///
/// * ambiguous calls;
/// * refusals of orders another route then accepted (the order was fine; a refusal every route
///   shares is about the order, and is not counted);
/// * accepted orders that started or finished, or were accepted before `open_after` (older
///   than the start target: not started by then is stuck).
///
/// Orders the customer asked to cancel are left out: their end says nothing of the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentQuery {
    pub limit: u32,
    pub since: Timestamp,
    pub open_after: Timestamp,
}

/// One of a route's last forwarding attempts, for the quality policy's recent window: its
/// outcome and, when the upstream accepted it, what became of the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentAttempt {
    pub order_id: crate::OrderId,
    /// `sent`, `rejected`, `not_sent`, `ambiguous` (never `pending`).
    pub outcome: String,
    pub at: Timestamp,
    /// The order's status now (for an accepted attempt).
    pub status: String,
    pub forwarded_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
}
