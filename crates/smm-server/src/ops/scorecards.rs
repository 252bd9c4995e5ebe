//! Provider scorecards (issue #15): each provider's and each route's record over the last 7
//! or 30 days, as figures, for the admin API, the CLI and the console. Read from the per-day
//! aggregates the database keeps (see `smm_store::scorecard` for what each counter counts);
//! never a scan of the orders.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smm_store::{Durations, RouteCounts, RouteDurations, RouteRecord, ScoreWindow};
use utoipa::{IntoParams, ToSchema};

use super::OpError;
use crate::app::now_ms;
use crate::config::Settings;

/// `?days=`: the window, 7 (the default) or 30.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct ScorecardQuery {
    /// 7 or 30 (UTC days, today included). Default 7.
    pub days: Option<u32>,
}

impl ScorecardQuery {
    pub fn days(&self) -> Result<u32, OpError> {
        match self.days.unwrap_or(7) {
            days @ (7 | 30) => Ok(days),
            other => Err(OpError::Invalid(format!(
                "days must be 7 or 30, not {other}"
            ))),
        }
    }
}

/// Every provider's scorecard, each with its routes'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScorecardsView {
    pub days: u32,
    /// The first day counted, as milliseconds since the epoch (00:00 UTC).
    pub since: i64,
    /// The reseller's currency (of `cost`, `revenue` and `margin`).
    pub currency: String,
    pub providers: Vec<ProviderScorecard>,
}

/// A provider's figures (all its routes together) and each route's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderScorecard {
    pub provider: String,
    #[serde(flatten)]
    pub card: Scorecard,
    pub routes: Vec<RouteScorecard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteScorecard {
    pub upstream_service: String,
    #[serde(flatten)]
    pub card: Scorecard,
}

/// The figures of a scorecard. Shares are percentages with two decimals (`"97.50"`), `null`
/// when there is nothing to divide by; durations are seconds, exact to the millisecond
/// (`"90"`, `"1.25"`), `null` without data; money is exact decimal text in the reseller's
/// currency, with five decimals like every amount of the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Scorecard {
    /// Orders the upstream accepted in the window.
    pub orders: i64,
    /// Of them, finished: Completed (or Expired), Partial, or Canceled (or Refunded).
    pub finished: i64,
    /// Forwarding attempts made.
    pub attempts: i64,
    /// Attempts accepted, of those that reached the upstream (accepted, refused, ambiguous).
    pub acceptance_percent: Option<String>,
    /// Attempts whose outcome was unknown, of those that reached the upstream.
    pub ambiguous_percent: Option<String>,
    /// Acceptance to the first start seen.
    pub start_median_secs: Option<String>,
    pub start_p90_secs: Option<String>,
    /// Acceptance to Completed.
    pub complete_median_secs: Option<String>,
    pub complete_p90_secs: Option<String>,
    /// Completed, of the finished orders.
    pub completion_percent: Option<String>,
    /// Partial, of the finished orders.
    pub partial_percent: Option<String>,
    /// The mean undelivered share of the Partial orders (their refunded share).
    pub undelivered_percent: Option<String>,
    /// Canceled (or refunded by the upstream), of the finished orders.
    pub cancel_percent: Option<String>,
    /// Refills requested.
    pub refills: i64,
    /// Refills requested per hundred orders.
    pub refill_percent: Option<String>,
    /// Completed, of the finished refills.
    pub refill_success_percent: Option<String>,
    /// Request to completion of the completed refills.
    pub refill_median_secs: Option<String>,
    /// Forwarding calls that failed (never left, or outcome unknown), of all attempts.
    pub call_error_percent: Option<String>,
    pub call_median_secs: Option<String>,
    pub call_p90_secs: Option<String>,
    /// Upstream cost of the accepted orders, less the share of it the customers' refunds stand
    /// for (an order refunded a quarter of its charge keeps three quarters of its cost).
    pub cost: String,
    /// What customers paid for them, net of their refunds.
    pub revenue: String,
    /// `revenue - cost`.
    pub margin: String,
}

/// A percentage with two decimals, rounded half to even (`"97.50"`).
fn percent(value: Decimal) -> String {
    format!("{:.2}", value.round_dp(2))
}

fn share(part: i64, whole: i64) -> Option<String> {
    (whole > 0).then(|| percent(Decimal::from(part) * Decimal::from(100) / Decimal::from(whole)))
}

/// Seconds, exact to the millisecond, without trailing zeros (`"90"`, `"1.25"`).
fn secs(ms: Option<i64>) -> Option<String> {
    ms.map(|ms| Decimal::new(ms, 3).normalize().to_string())
}

/// Money with five decimals (`"0.70000"`, `"0.00000"`).
fn money(value: Decimal) -> String {
    format!("{:.5}", value.round_dp(5))
}

impl Scorecard {
    /// The figures of `counts` and `durations`; upstream money converted with `rate` (the
    /// provider's, today).
    pub fn from_parts(
        counts: &RouteCounts,
        durations: &RouteDurations,
        rate: Decimal,
    ) -> Scorecard {
        let n = counts;
        let reached = n.accepted + n.refused + n.ambiguous;
        let finished = n.finished();
        let cost = Decimal::new(n.kept_cost_nanos, 8)
            .checked_mul(rate)
            .unwrap_or(Decimal::MAX);
        let revenue = Decimal::new(n.charged - n.refunded, 5);
        let undelivered = (n.partial > 0)
            .then(|| percent(Decimal::new(n.undelivered_ppm, 4) / Decimal::from(n.partial)));
        let median = |d: &Durations| secs(d.median());
        let p90 = |d: &Durations| secs(d.p90());
        Scorecard {
            orders: n.orders,
            finished,
            attempts: n.attempts,
            acceptance_percent: share(n.accepted, reached),
            ambiguous_percent: share(n.ambiguous, reached),
            start_median_secs: median(&durations.start),
            start_p90_secs: p90(&durations.start),
            complete_median_secs: median(&durations.complete),
            complete_p90_secs: p90(&durations.complete),
            completion_percent: share(n.completed, finished),
            partial_percent: share(n.partial, finished),
            undelivered_percent: undelivered,
            cancel_percent: share(n.canceled, finished),
            refills: n.refills,
            refill_percent: share(n.refills, n.orders),
            refill_success_percent: share(n.refills_done, n.refills_done + n.refills_failed),
            refill_median_secs: median(&durations.refill),
            call_error_percent: share(n.not_sent + n.ambiguous, n.attempts),
            call_median_secs: median(&durations.call),
            call_p90_secs: p90(&durations.call),
            cost: money(cost),
            revenue: money(revenue),
            margin: money(revenue.checked_sub(cost).unwrap_or(Decimal::MIN)),
        }
    }
}

impl super::Ops<'_> {
    /// Every provider's and route's scorecard over the last `days` (7 or 30) days.
    pub async fn scorecards(&self, days: u32) -> Result<ScorecardsView, OpError> {
        let days = ScorecardQuery { days: Some(days) }.days()?;
        let window = ScoreWindow {
            now: now_ms(),
            days,
        };
        let records = self.store.route_records(window).await?;
        Ok(view(self.settings, window, &records))
    }
}

/// The view of `records` (sorted by provider, then route).
pub fn view(settings: &Settings, window: ScoreWindow, records: &[RouteRecord]) -> ScorecardsView {
    let providers = smm_store::by_provider(records)
        .into_iter()
        .map(|p| {
            let rate = settings
                .provider(p.provider)
                .map_or(Decimal::ONE, |s| s.rate);
            ProviderScorecard {
                provider: p.provider.to_owned(),
                card: Scorecard::from_parts(&p.counts, &p.durations, rate),
                routes: p
                    .routes
                    .iter()
                    .map(|r| RouteScorecard {
                        upstream_service: r.upstream_service.clone(),
                        card: Scorecard::from_parts(&r.counts, &r.durations, rate),
                    })
                    .collect(),
            }
        })
        .collect();
    ScorecardsView {
        days: window.days,
        since: window.first_day() * smm_store::DAY_MS,
        currency: settings.server.currency.clone(),
        providers,
    }
}
