//! The business at a glance (the console's overview): revenue, upstream cost, profit and margin
//! per period and per day, orders by status, the work lists' sizes and the providers.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use smm_store::{DayTotals, ForwardState, OrderTotals, ProviderDayTotals, Timestamp};
use smm_wire::Money;

use super::{OpResult, Ops};
use crate::app::App;

const DAY_MS: i64 = 86_400_000;
/// The longest period shown, in days (the charts cover it too).
pub const DAYS: i64 = 30;
/// An order not yet accepted upstream this long after it was placed is stuck.
pub const STUCK_MINUTES: i64 = 10;

/// Money earned over one period: what customers paid net of refunds, what the upstreams were
/// expected to cost for it, and the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodFigures {
    pub label: &'static str,
    pub orders: u64,
    /// Charges minus refunds.
    pub revenue: Money,
    pub refunds: Money,
    /// The upstream cost at send, converted with the provider's `rate`, net of the share
    /// refunded (the upstream refunds an undelivered share as the gateway does).
    pub cost: Money,
    pub profit: Money,
    /// Profit as a percent of revenue, one decimal; `None` without revenue.
    pub margin_percent: Option<Decimal>,
}

/// One day of the charts (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// Midnight UTC, ms since the epoch.
    pub start: Timestamp,
    pub orders: u64,
    pub revenue: Money,
    pub refunds: Money,
    pub profit: Money,
    /// Orders sent to each provider that day.
    pub orders_by_provider: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderLine {
    pub name: String,
    pub enabled: bool,
    pub available: bool,
    pub cooling_down: bool,
    pub out_of_funds: bool,
    pub consecutive_failures: u32,
    pub last_sync: Option<Timestamp>,
    /// The last balance seen upstream, in the provider's currency.
    pub balance: Option<Decimal>,
    pub currency: String,
    /// The balance is below the configured `low_balance`.
    pub low_balance: bool,
    /// Enabled, and its catalog not synced for two sync intervals (or never): its prices and
    /// services may be out of date.
    pub sync_stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub currency: String,
    /// Today, 7 days, 30 days.
    pub periods: Vec<PeriodFigures>,
    /// The last [`DAYS`] days, oldest first.
    pub days: Vec<Day>,
    pub by_status: Vec<(String, i64)>,
    pub by_forward_state: Vec<(ForwardState, i64)>,
    /// Orders whose upstream outcome is unknown.
    pub ambiguous: i64,
    /// Orders whose refund share no signal told.
    pub attention: i64,
    /// Orders still on their way upstream [`STUCK_MINUTES`] after they were placed.
    pub stuck: i64,
    pub providers: Vec<ProviderLine>,
}

/// The providers as the console and the admin API show them.
pub fn providers(app: &App) -> Vec<ProviderLine> {
    let runtime = app.runtime();
    let stale_after = i64::try_from(runtime.settings.sync.services_interval_secs)
        .unwrap_or(i64::MAX / 2_000)
        .saturating_mul(2_000);
    runtime
        .providers
        .iter()
        .map(|(name, p)| {
            let health = p.health.view();
            let settings = runtime.settings.provider(name);
            let balance = app.last_balance(name);
            let low = settings.and_then(|s| s.low_balance);
            ProviderLine {
                name: name.clone(),
                enabled: p.enabled,
                available: app.provider_available(name),
                cooling_down: health.cooling_down,
                out_of_funds: health.out_of_funds,
                consecutive_failures: health.consecutive_failures,
                last_sync: app.last_sync(name),
                balance,
                currency: settings
                    .and_then(|s| s.currency.clone())
                    .unwrap_or_else(|| runtime.settings.server.currency.clone()),
                low_balance: matches!((balance, low), (Some(b), Some(l)) if b < l),
                sync_stale: p.enabled
                    && !runtime.retired.contains(name)
                    && app
                        .last_sync(name)
                        .is_none_or(|at| crate::app::now_ms().saturating_sub(at) > stale_after),
            }
        })
        .collect()
}

fn money(d: Decimal) -> Money {
    Money::from_decimal_round_up(d).unwrap_or(Money::MAX)
}

/// One day's or one period's sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    orders: i64,
    charged: Money,
    refunded: Money,
    /// The upstream cost net of refunded shares, in the reseller's currency.
    cost: Decimal,
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.orders += other.orders;
        self.charged = self
            .charged
            .checked_add(other.charged)
            .unwrap_or(Money::MAX);
        self.refunded = self
            .refunded
            .checked_add(other.refunded)
            .unwrap_or(Money::MAX);
        self.cost = self.cost.checked_add(other.cost).unwrap_or(Decimal::MAX);
    }
}

/// Each day's sums, the cost converted with each provider's `rate` (a provider no longer
/// configured counts nothing).
fn per_day(
    totals: &OrderTotals,
    rate: impl Fn(&str) -> Option<Decimal>,
) -> BTreeMap<Timestamp, (Sums, BTreeMap<String, u64>)> {
    let mut days: BTreeMap<Timestamp, (Sums, BTreeMap<String, u64>)> = BTreeMap::new();
    for DayTotals {
        day_start,
        orders,
        charged,
        refunded,
    } in &totals.days
    {
        days.entry(*day_start).or_default().0.add(&Sums {
            orders: *orders,
            charged: *charged,
            refunded: *refunded,
            cost: Decimal::ZERO,
        });
    }
    for ProviderDayTotals {
        day_start,
        provider,
        orders,
        kept_cost,
        ..
    } in &totals.providers
    {
        let day = days.entry(*day_start).or_default();
        let cost = rate(provider)
            .and_then(|r| kept_cost.checked_mul(r))
            .unwrap_or(Decimal::ZERO);
        day.0.cost = day.0.cost.checked_add(cost).unwrap_or(Decimal::MAX);
        *day.1.entry(provider.clone()).or_insert(0) += u64::try_from(*orders).unwrap_or(0);
    }
    days
}

fn figures(label: &'static str, sums: &Sums) -> PeriodFigures {
    let revenue = sums
        .charged
        .checked_sub(sums.refunded)
        .unwrap_or(Money::ZERO);
    let cost = money(sums.cost);
    let profit = revenue.checked_sub(cost).unwrap_or(Money::ZERO);
    let margin_percent = (revenue > Money::ZERO)
        .then(|| (profit.to_decimal() * Decimal::from(100) / revenue.to_decimal()).round_dp(1));
    PeriodFigures {
        label,
        orders: u64::try_from(sums.orders).unwrap_or(0),
        revenue,
        refunds: sums.refunded,
        cost,
        profit,
        margin_percent,
    }
}

impl Ops<'_> {
    /// The overview as of `now`: the kept per-day aggregates of the last [`DAYS`] days and the
    /// kept order counts; a few rows whatever the number of orders.
    pub async fn overview(&self, app: &App, now: Timestamp) -> OpResult<Overview> {
        let today = now - now.rem_euclid(DAY_MS);
        let first_day = today - (DAYS - 1) * DAY_MS;
        let totals = self.store.order_totals_since(first_day).await?;
        let rate = |name: &str| self.settings.provider(name).map(|p| p.rate);
        let by_day = per_day(&totals, rate);
        let since = |start: Timestamp| {
            let mut sums = Sums::default();
            for (_, (day, _)) in by_day.range(start..) {
                sums.add(day);
            }
            sums
        };
        let periods = vec![
            figures("Today", &since(today)),
            figures("7 days", &since(today - 6 * DAY_MS)),
            figures("30 days", &since(first_day)),
        ];
        let days = (0..DAYS)
            .map(|i| {
                let start = first_day + i * DAY_MS;
                let (sums, orders_by_provider) = by_day.get(&start).cloned().unwrap_or_default();
                let f = figures("day", &sums);
                Day {
                    start,
                    orders: f.orders,
                    revenue: f.revenue,
                    refunds: f.refunds,
                    profit: f.profit,
                    orders_by_provider,
                }
            })
            .collect();
        let by_forward_state = self.store.count_by_forward_state().await?;
        let ambiguous = by_forward_state
            .iter()
            .find(|(s, _)| *s == ForwardState::Ambiguous)
            .map_or(0, |(_, n)| *n);
        Ok(Overview {
            currency: self.settings.server.currency.clone(),
            periods,
            days,
            by_status: self.store.count_by_status().await?,
            by_forward_state,
            ambiguous,
            attention: self.store.attention_count().await?,
            stuck: self
                .store
                .stuck_orders_count(now - STUCK_MINUTES * 60_000)
                .await?,
            providers: providers(app),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_converted_and_net_of_the_refunded_share() {
        let money = |m: &str| m.parse::<Money>().expect("money");
        let totals = OrderTotals {
            days: vec![DayTotals {
                day_start: DAY_MS,
                orders: 2,
                charged: money("10"),
                refunded: money("5"),
            }],
            providers: vec![ProviderDayTotals {
                day_start: DAY_MS,
                provider: "alpha".into(),
                orders: 1,
                cost: Decimal::new(3, 0),
                kept_cost: Decimal::new(15, 1),
            }],
        };
        // Kept cost 1.5 in the provider's money at rate 2: 3.
        let days = per_day(&totals, |_| Some(Decimal::new(2, 0)));
        let (sums, by_provider) = &days[&DAY_MS];
        assert_eq!(by_provider["alpha"], 1);
        let f = figures("p", sums);
        assert_eq!(f.orders, 2);
        assert_eq!(f.revenue, money("5"));
        assert_eq!(f.cost, money("3"));
        assert_eq!(f.profit, money("2"));
        assert_eq!(f.margin_percent, Some(Decimal::new(400, 1)));
        // A provider no longer configured counts no cost.
        let days = per_day(&totals, |_| None);
        assert_eq!(figures("p", &days[&DAY_MS].0).cost, Money::ZERO);
    }
}
