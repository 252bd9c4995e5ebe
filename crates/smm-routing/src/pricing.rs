//! Markup stacking, rates, customer prices and charges. All exact: [`Decimal`] and [`Money`].

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use smm_wire::Money;
use smm_wire::order::Billing;

use crate::catalog::LocalService;
use crate::config::{Markup, PricingRules};

/// Decimals a rate is rounded up to when no rule sets `round_up`.
pub const DEFAULT_ROUND_UP: u32 = 5;

/// Largest `round_up` the configuration accepts ([`crate::validate()`]).
pub const MAX_ROUND_UP: u32 = 10;

/// The `rate` of a local service that cannot be priced (no usable route, or a markup that comes
/// to nothing): such a service is always disabled, and the sentinel keeps it from ever looking
/// free. [`charge`] refuses it for any quantity of 1 or more (the amount overflows [`Money`]).
/// Do not do arithmetic on it with the panicking operators; test [`LocalService::enabled`].
pub const UNPRICED: Decimal = Decimal::MAX;

/// A [`Markup`] with every field decided (see the crate docs for the stacking rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedMarkup {
    pub percent: Decimal,
    pub fixed: Decimal,
    pub min_rate: Option<Decimal>,
    pub round_up: u32,
    pub allow_below_cost: bool,
}

impl Default for ResolvedMarkup {
    /// No markup: +0 %, +0, no floor, 5 decimals, never below cost.
    fn default() -> Self {
        ResolvedMarkup {
            percent: Decimal::ZERO,
            fixed: Decimal::ZERO,
            min_rate: None,
            round_up: DEFAULT_ROUND_UP,
            allow_below_cost: false,
        }
    }
}

impl PricingRules {
    /// Resolves every field independently; the most specific rule that sets it wins:
    /// `service` > category (`category`, matched exactly after trimming) > provider (`provider`)
    /// > `default` > the built-in default ([`ResolvedMarkup::default`]).
    pub fn resolve(
        &self,
        provider: Option<&str>,
        category: Option<&str>,
        service: Option<&Markup>,
    ) -> ResolvedMarkup {
        let by_category = category.and_then(|cat| {
            let cat = cat.trim();
            self.categories.get(cat).or_else(|| {
                self.categories
                    .iter()
                    .find(|(key, _)| key.trim() == cat)
                    .map(|(_, markup)| markup)
            })
        });
        let by_provider = provider.and_then(|p| self.providers.get(p));
        // Most specific first.
        let levels: Vec<&Markup> = [service, by_category, by_provider, Some(&self.default)]
            .into_iter()
            .flatten()
            .collect();
        fn pick<T: Copy>(levels: &[&Markup], field: impl Fn(&Markup) -> Option<T>) -> Option<T> {
            levels.iter().find_map(|m| field(m))
        }
        let builtin = ResolvedMarkup::default();
        ResolvedMarkup {
            percent: pick(&levels, |m| m.percent).unwrap_or(builtin.percent),
            fixed: pick(&levels, |m| m.fixed).unwrap_or(builtin.fixed),
            min_rate: pick(&levels, |m| m.min_rate),
            round_up: pick(&levels, |m| m.round_up).unwrap_or(builtin.round_up),
            allow_below_cost: pick(&levels, |m| m.allow_below_cost)
                .unwrap_or(builtin.allow_below_cost),
        }
    }
}

/// Rounds towards positive infinity to `decimals` places (a no-op beyond 28).
pub fn round_up(value: Decimal, decimals: u32) -> Decimal {
    value
        .round_dp_with_strategy(decimals, RoundingStrategy::ToPositiveInfinity)
        .normalize()
}

impl ResolvedMarkup {
    /// The rate for a cost (per 1000 units, or per order for flat-priced types, in the
    /// reseller's currency):
    ///
    /// 1. `round_up(cost × (1 + percent/100) + fixed, round_up decimals)`;
    /// 2. at least `min_rate` (itself rounded up to the same decimals, so every rate has at most
    ///    `round_up` decimals);
    /// 3. at least `cost` rounded up, unless `allow_below_cost`.
    ///
    /// `None` when the result is not positive (such a service is disabled, never priced at
    /// zero), when `cost` is not positive, or on overflow.
    pub fn apply(&self, cost: Decimal) -> Option<Decimal> {
        if cost <= Decimal::ZERO {
            return None;
        }
        // cost + cost × percent / 100 + fixed: with percent 0 the cost is kept exactly.
        let marked = cost
            .checked_mul(self.percent)?
            .checked_div(Decimal::ONE_HUNDRED)?
            .checked_add(cost)?
            .checked_add(self.fixed)?;
        let mut rate = round_up(marked, self.round_up);
        if let Some(floor) = self.min_rate {
            rate = rate.max(round_up(floor, self.round_up));
        }
        if !self.allow_below_cost {
            rate = rate.max(round_up(cost, self.round_up));
        }
        (rate > Decimal::ZERO).then(|| rate.normalize())
    }

    /// The smallest positive amount with `round_up` decimals (`0.00001` for 5).
    pub fn smallest_unit(&self) -> Decimal {
        Decimal::new(1, self.round_up.min(28))
    }
}

/// A customer's prices: a custom rate per local service id, else a percentage discount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerPricing {
    /// Percent off every service without a custom rate (`10` = 10 % off). A negative value is
    /// a surcharge.
    pub discount: Option<Decimal>,
    /// Local service id → rate replacing the service's rate.
    pub custom_rates: BTreeMap<u64, Decimal>,
}

impl LocalService {
    /// This customer's rate for the service (per 1000 units, or per order for flat types).
    ///
    /// * A custom rate for the service replaces the rate (rounded up to the service's decimals);
    /// * otherwise the discount applies: `round_up(rate × (1 − discount/100))`;
    /// * then, unless the service's markup has `allow_below_cost`, the price is at least the
    ///   first route's cost rounded up to the service's decimals;
    /// * the price is never ≤ 0: it is at least the smallest unit at the service's decimals.
    ///
    /// `min_rate` is a floor on the list rate, not on customer prices. A discount whose maths
    /// overflows leaves the rate undiscounted.
    pub fn price_for(&self, customer: &CustomerPricing) -> Decimal {
        let decimals = self.markup.round_up;
        let mut price = if let Some(custom) = customer.custom_rates.get(&self.id) {
            round_up(*custom, decimals)
        } else if let Some(discount) = customer.discount {
            // rate − rate × discount / 100: a zero discount keeps the rate exactly.
            self.rate
                .checked_mul(discount)
                .and_then(|off| off.checked_div(Decimal::ONE_HUNDRED))
                .and_then(|off| self.rate.checked_sub(off))
                .map_or(self.rate, |v| round_up(v, decimals))
        } else {
            self.rate
        };
        if !self.markup.allow_below_cost
            && let Some(first) = self.routes.first()
        {
            price = price.max(round_up(first.cost, decimals));
        }
        if price <= Decimal::ZERO {
            price = self.markup.smallest_unit();
        }
        price.normalize()
    }
}

/// What an order costs the customer at `rate`:
///
/// * `PerThousand { units }` → `rate × units / 1000`, rounded UP to whole [`Money`] units
///   (0.00001), computed on integers so nothing is lost;
/// * `Flat` → `rate`, rounded up.
///
/// `None` when `rate` is not positive (nothing is ever charged at a zero price) or the amount
/// exceeds [`Money::MAX`].
pub fn charge(rate: Decimal, billing: Billing) -> Option<Money> {
    if rate <= Decimal::ZERO {
        return None;
    }
    match billing {
        Billing::Flat => Money::from_decimal_round_up(rate),
        Billing::PerThousand { units } => {
            // rate = mantissa / 10^scale; charge in money units (1e-5) is
            // ceil(mantissa × units × 10^5 / (10^scale × 1000)) = ceil(mantissa × units × 100 / 10^scale).
            let product = rate.mantissa().checked_mul(i128::from(units))?;
            let scale = rate.scale();
            let money_units = if scale <= 2 {
                product.checked_mul(10_i128.checked_pow(2 - scale)?)?
            } else {
                let divisor = 10_i128.checked_pow(scale - 2)?;
                let quotient = product.div_euclid(divisor);
                if product.rem_euclid(divisor) == 0 {
                    quotient
                } else {
                    quotient.checked_add(1)?
                }
            };
            let money_units = i64::try_from(money_units).ok()?;
            (money_units <= Money::MAX.units()).then(|| Money::from_units(money_units))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn markup(percent: &str) -> Markup {
        Markup {
            percent: Some(d(percent)),
            ..Markup::default()
        }
    }

    #[test]
    fn each_field_resolves_at_its_most_specific_level() {
        let rules = PricingRules {
            default: Markup {
                percent: Some(d("10")),
                fixed: Some(d("0.1")),
                min_rate: Some(d("0.5")),
                round_up: Some(4),
                allow_below_cost: Some(false),
            },
            providers: [(
                "alpha".to_owned(),
                Markup {
                    percent: Some(d("20")),
                    fixed: Some(d("0.2")),
                    min_rate: Some(d("0.6")),
                    round_up: None,
                    allow_below_cost: None,
                },
            )]
            .into(),
            categories: [(
                "Likes".to_owned(),
                Markup {
                    percent: Some(d("30")),
                    fixed: Some(d("0.3")),
                    min_rate: None,
                    round_up: None,
                    allow_below_cost: None,
                },
            )]
            .into(),
        };
        let service = markup("40");

        // default only
        let r = rules.resolve(None, None, None);
        assert_eq!(
            r,
            ResolvedMarkup {
                percent: d("10"),
                fixed: d("0.1"),
                min_rate: Some(d("0.5")),
                round_up: 4,
                allow_below_cost: false,
            }
        );
        // provider over default; unknown names fall through
        let r = rules.resolve(Some("alpha"), Some("Other"), None);
        assert_eq!(
            (r.percent, r.fixed, r.min_rate, r.round_up),
            (d("20"), d("0.2"), Some(d("0.6")), 4)
        );
        let r = rules.resolve(Some("beta"), None, None);
        assert_eq!(r.percent, d("10"));
        // category over provider, per field
        let r = rules.resolve(Some("alpha"), Some("Likes"), None);
        assert_eq!(
            (r.percent, r.fixed, r.min_rate, r.round_up),
            (d("30"), d("0.3"), Some(d("0.6")), 4)
        );
        // service over category, per field
        let r = rules.resolve(Some("alpha"), Some("Likes"), Some(&service));
        assert_eq!(
            (r.percent, r.fixed, r.min_rate, r.round_up),
            (d("40"), d("0.3"), Some(d("0.6")), 4)
        );
        // category matching trims
        let r = rules.resolve(None, Some("  Likes "), None);
        assert_eq!(r.percent, d("30"));
        // nothing set at all
        assert_eq!(
            PricingRules::default().resolve(Some("x"), Some("y"), None),
            ResolvedMarkup::default()
        );
    }

    #[test]
    fn rates_round_up() {
        let plain = ResolvedMarkup::default();
        assert_eq!(plain.apply(d("0.123451")), Some(d("0.12346")));
        assert_eq!(plain.apply(d("0.12345")), Some(d("0.12345")));
        let four = ResolvedMarkup {
            percent: d("30"),
            round_up: 4,
            ..ResolvedMarkup::default()
        };
        // 0.9 × 1.3 = 1.17
        assert_eq!(four.apply(d("0.9")), Some(d("1.17")));
        // 0.12345 × 1.3 = 0.160485 → 0.1605
        assert_eq!(four.apply(d("0.12345")), Some(d("0.1605")));
        let zero_dp = ResolvedMarkup {
            round_up: 0,
            ..ResolvedMarkup::default()
        };
        assert_eq!(zero_dp.apply(d("1.01")), Some(d("2")));
    }

    #[test]
    fn fixed_min_rate_and_cost_floor() {
        let m = ResolvedMarkup {
            percent: d("10"),
            fixed: d("0.05"),
            ..ResolvedMarkup::default()
        };
        // 1 × 1.1 + 0.05
        assert_eq!(m.apply(d("1")), Some(d("1.15")));
        let floor = ResolvedMarkup {
            min_rate: Some(d("2")),
            ..m.clone()
        };
        assert_eq!(floor.apply(d("1")), Some(d("2")));
        assert_eq!(floor.apply(d("10")), Some(d("11.05")));
        let coarse = ResolvedMarkup {
            min_rate: Some(d("0.10001")),
            round_up: 2,
            ..ResolvedMarkup::default()
        };
        assert_eq!(coarse.apply(d("0.01")), Some(d("0.11")));

        let loss = ResolvedMarkup {
            percent: d("-50"),
            ..ResolvedMarkup::default()
        };
        assert_eq!(loss.apply(d("1.000001")), Some(d("1.00001")));
        let allowed = ResolvedMarkup {
            allow_below_cost: true,
            ..loss.clone()
        };
        assert_eq!(allowed.apply(d("1")), Some(d("0.5")));
        let free = ResolvedMarkup {
            percent: d("-100"),
            allow_below_cost: true,
            ..ResolvedMarkup::default()
        };
        assert_eq!(free.apply(d("1")), None);
        assert_eq!(ResolvedMarkup::default().apply(Decimal::ZERO), None);
        assert_eq!(ResolvedMarkup::default().apply(d("-1")), None);
        assert_eq!(
            ResolvedMarkup {
                percent: d("1000"),
                ..ResolvedMarkup::default()
            }
            .apply(Decimal::MAX),
            None
        );
    }

    #[test]
    fn charges() {
        let m = |s: &str| Money::from_str(s).expect("money");
        let per = |units| Billing::PerThousand { units };
        assert_eq!(charge(d("0.90"), per(1000)), Some(m("0.90000")));
        assert_eq!(
            charge(d("0.90"), per(1000)).map(|c| c.to_string()),
            Some("0.90000".into())
        );
        assert_eq!(charge(d("0.90"), per(1)), Some(m("0.00090")));
        assert_eq!(charge(d("0.00001"), per(1)), Some(m("0.00001")));
        assert_eq!(charge(d("0.0000000001"), per(1)), Some(m("0.00001")));
        assert_eq!(charge(d("1.23456"), per(0)), Some(Money::ZERO));
        assert_eq!(charge(d("12"), per(3)), Some(m("0.036")));
        assert_eq!(charge(d("7.5"), per(2_500)), Some(m("18.75")));
        assert_eq!(charge(d("2.50"), Billing::Flat), Some(m("2.5")));
        assert_eq!(charge(d("2.500001"), Billing::Flat), Some(m("2.50001")));
        assert_eq!(charge(Decimal::ZERO, per(1000)), None);
        assert_eq!(charge(d("-1"), Billing::Flat), None);
        assert_eq!(charge(UNPRICED, per(1)), None);
        assert_eq!(charge(UNPRICED, Billing::Flat), None);
        assert_eq!(charge(d("1000000"), per(u64::MAX)), None);
        assert_eq!(charge(d("1000000000000"), per(1000)), Some(Money::MAX));
        assert_eq!(charge(d("1000000000000.00001"), per(1000)), None);
    }
}
