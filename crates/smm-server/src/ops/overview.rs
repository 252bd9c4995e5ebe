//! The business at a glance (the console's overview): revenue, upstream cost, profit and margin
//! per period and per day, orders by status, the work lists' sizes and the providers.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use smm_store::{ForwardState, OrderMoney, Timestamp};
use smm_wire::Money;

use super::{OpResult, Ops};
use crate::app::App;

const DAY_MS: i64 = 86_400_000;
/// The longest period shown, in days (the charts cover it too).
pub const DAYS: i64 = 30;

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
    pub revenue: Money,
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
    pub providers: Vec<ProviderLine>,
}

/// The providers as the console and the admin API show them.
pub fn providers(app: &App) -> Vec<ProviderLine> {
    let runtime = app.runtime();
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
            }
        })
        .collect()
}

/// What an order cost upstream in the reseller's currency, net of the refunded share.
fn net_cost(order: &OrderMoney, rate: impl Fn(&str) -> Option<Decimal>) -> Decimal {
    let (Some(provider), Some(cost)) = (&order.provider, order.upstream_cost) else {
        return Decimal::ZERO;
    };
    let Some(rate) = rate(provider) else {
        return Decimal::ZERO;
    };
    let charge = order.charge.to_decimal();
    if charge.is_zero() {
        return Decimal::ZERO;
    }
    let kept = (order.charge.to_decimal() - order.refunded.to_decimal()).max(Decimal::ZERO);
    cost.checked_mul(rate)
        .and_then(|c| c.checked_mul(kept))
        .and_then(|c| c.checked_div(charge))
        .unwrap_or(Decimal::ZERO)
}

fn money(d: Decimal) -> Money {
    Money::from_decimal_round_up(d).unwrap_or(Money::MAX)
}

fn figures(label: &'static str, orders: &[(&OrderMoney, Decimal)]) -> PeriodFigures {
    let mut charged = Money::ZERO;
    let mut refunds = Money::ZERO;
    let mut cost = Decimal::ZERO;
    for (order, net) in orders {
        charged = charged.checked_add(order.charge).unwrap_or(Money::MAX);
        refunds = refunds.checked_add(order.refunded).unwrap_or(Money::MAX);
        cost = cost.checked_add(*net).unwrap_or(Decimal::MAX);
    }
    let revenue = charged.checked_sub(refunds).unwrap_or(Money::ZERO);
    let cost = money(cost);
    let profit = revenue.checked_sub(cost).unwrap_or(Money::ZERO);
    let margin_percent = (revenue > Money::ZERO)
        .then(|| (profit.to_decimal() * Decimal::from(100) / revenue.to_decimal()).round_dp(1));
    PeriodFigures {
        label,
        orders: orders.len() as u64,
        revenue,
        refunds,
        cost,
        profit,
        margin_percent,
    }
}

impl Ops<'_> {
    /// The overview as of `now`. Reads the orders of the last [`DAYS`] days (by the
    /// `orders_created` index) and the work lists' counts.
    pub async fn overview(&self, app: &App, now: Timestamp) -> OpResult<Overview> {
        let today = now - now.rem_euclid(DAY_MS);
        let first_day = today - (DAYS - 1) * DAY_MS;
        let orders = self.store.order_money_since(first_day).await?;
        let rate = |name: &str| self.settings.provider(name).map(|p| p.rate);
        let priced: Vec<(&OrderMoney, Decimal)> =
            orders.iter().map(|o| (o, net_cost(o, rate))).collect();
        let since = |start: Timestamp| -> Vec<(&OrderMoney, Decimal)> {
            priced
                .iter()
                .filter(|(o, _)| o.created_at >= start)
                .copied()
                .collect()
        };
        let periods = vec![
            figures("Today", &since(today)),
            figures("7 days", &since(today - 6 * DAY_MS)),
            figures("30 days", &since(first_day)),
        ];
        let days = (0..DAYS)
            .map(|i| {
                let start = first_day + i * DAY_MS;
                let of_day: Vec<(&OrderMoney, Decimal)> = priced
                    .iter()
                    .filter(|(o, _)| o.created_at >= start && o.created_at < start + DAY_MS)
                    .copied()
                    .collect();
                let f = figures("day", &of_day);
                let mut orders_by_provider = BTreeMap::new();
                for (order, _) in &of_day {
                    if let Some(provider) = &order.provider {
                        *orders_by_provider.entry(provider.clone()).or_insert(0) += 1;
                    }
                }
                Day {
                    start,
                    revenue: f.revenue,
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
            providers: providers(app),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(charge: &str, refunded: &str, cost: Option<&str>) -> OrderMoney {
        OrderMoney {
            created_at: 0,
            charge: charge.parse().expect("money"),
            refunded: refunded.parse().expect("money"),
            provider: cost.map(|_| "alpha".to_owned()),
            upstream_cost: cost.map(|c| c.parse().expect("decimal")),
        }
    }

    #[test]
    fn cost_is_converted_and_net_of_the_refunded_share() {
        let rate = |_: &str| Some(Decimal::new(2, 0));
        // Charged 10, half refunded; cost 3 in the provider's money at rate 2: 6, half of it.
        let half = order("10", "5", Some("3"));
        assert_eq!(net_cost(&half, rate), Decimal::new(3, 0));
        assert_eq!(net_cost(&order("10", "0", None), rate), Decimal::ZERO);
        let f = figures("p", &[(&half, net_cost(&half, rate))]);
        assert_eq!(f.revenue, "5".parse().expect("money"));
        assert_eq!(f.cost, "3".parse().expect("money"));
        assert_eq!(f.profit, "2".parse().expect("money"));
        assert_eq!(f.margin_percent, Some(Decimal::new(400, 1)));
    }
}
