//! Exact money in integer minor units.
//!
//! Panels show money with 5 decimals (`"charge": "0.27819"`, `"balance": "100.84292"`), so the
//! gateway keeps every customer amount as an integer count of 0.00001: a charge of 0.00001 is one
//! unit, and sums are exact. Conversions from [`Decimal`] say which way they round; the rules are:
//!
//! * a **charge** rounds **up** (the reseller never undercharges by a fraction);
//! * a **refund** rounds **down**, and never exceeds the charge it refunds.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An exact amount: a signed count of 0.00001 (see the module docs).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

/// A text that is not an exact amount with at most 5 decimals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an amount with at most 5 decimals: {0:?}")]
pub struct MoneyParseError(pub String);

impl Money {
    /// Decimal places of a unit.
    pub const SCALE: u32 = 5;
    pub const ZERO: Money = Money(0);
    /// The largest amount any operation accepts: 10^12 (a trillion), far below `i64::MAX`
    /// units, so sums of many amounts cannot overflow.
    pub const MAX: Money = Money(1_000_000_000_000 * 100_000);

    pub const fn from_units(units: i64) -> Money {
        Money(units)
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    /// `Some` only when `value` has at most 5 significant decimals and fits.
    pub fn from_decimal_exact(value: Decimal) -> Option<Money> {
        let rounded = value.round_dp_with_strategy(Self::SCALE, RoundingStrategy::ToZero);
        if rounded != value {
            return None;
        }
        Self::from_rounded(rounded)
    }

    /// Rounds towards positive infinity to whole units: for charges.
    pub fn from_decimal_round_up(value: Decimal) -> Option<Money> {
        Self::from_rounded(
            value.round_dp_with_strategy(Self::SCALE, RoundingStrategy::ToPositiveInfinity),
        )
    }

    /// Rounds towards negative infinity to whole units: for refunds.
    pub fn from_decimal_round_down(value: Decimal) -> Option<Money> {
        Self::from_rounded(
            value.round_dp_with_strategy(Self::SCALE, RoundingStrategy::ToNegativeInfinity),
        )
    }

    fn from_rounded(value: Decimal) -> Option<Money> {
        let units = value.checked_mul(Decimal::from(100_000_i64))?;
        let units = i64::try_from(units.trunc()).ok()?;
        (units.checked_abs()? <= Self::MAX.0).then_some(Money(units))
    }

    /// The exact value, with scale 5 (`1.5` → `1.50000`).
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, Self::SCALE)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self × numerator / denominator`, rounded down (towards negative infinity), exact on
    /// integers. `None` when `denominator` is 0 or the result does not fit. For a refund of
    /// `charge × remains / quantity`, clamp `remains` to `0..=quantity` first.
    pub fn mul_div_floor(self, numerator: u64, denominator: u64) -> Option<Money> {
        if denominator == 0 {
            return None;
        }
        let product = i128::from(self.0).checked_mul(i128::from(numerator))?;
        let quotient = product.div_euclid(i128::from(denominator));
        i64::try_from(quotient).ok().map(Money)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn abs(self) -> Money {
        Money(self.0.saturating_abs())
    }
}

impl fmt::Display for Money {
    /// Always 5 decimals: `100.84292`, `0.00001`, `-2.50000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_decimal(), f)
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    /// Exact: `12.5`, `0.00001`, `-3`; refuses `0.000001`, `1e3`, `abc`.
    fn from_str(s: &str) -> Result<Money, MoneyParseError> {
        let err = || MoneyParseError(s.to_owned());
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.contains(['e', 'E']) {
            return Err(err());
        }
        let value = Decimal::from_str(trimmed).map_err(|_| err())?;
        Money::from_decimal_exact(value).ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    #[test]
    fn charges_round_up_and_refunds_round_down() {
        assert_eq!(Money::from_decimal_round_up(d("0.000001")), Some(Money(1)));
        assert_eq!(
            Money::from_decimal_round_up(d("0.27819")),
            Some(Money(27_819))
        );
        assert_eq!(
            Money::from_decimal_round_up(d("0.278191")),
            Some(Money(27_820))
        );
        assert_eq!(
            Money::from_decimal_round_down(d("0.278199")),
            Some(Money(27_819))
        );
        assert_eq!(
            Money::from_decimal_round_down(d("-0.000001")),
            Some(Money(-1))
        );
        assert_eq!(Money::from_decimal_exact(d("0.278191")), None);
        assert_eq!(
            Money::from_decimal_exact(d("100.84292")),
            Some(Money(10_084_292))
        );
    }

    #[test]
    fn refund_share_never_exceeds_the_charge() {
        let charge = Money(27_819);
        assert_eq!(charge.mul_div_floor(157, 1000), Some(Money(4_367)));
        assert_eq!(charge.mul_div_floor(1000, 1000), Some(charge));
        assert_eq!(charge.mul_div_floor(1, 0), None);
        assert_eq!(Money(1).mul_div_floor(1, 3), Some(Money::ZERO));
    }

    #[test]
    fn text_round_trips_with_five_decimals() {
        assert_eq!(Money(10_084_292).to_string(), "100.84292");
        assert_eq!(Money(1).to_string(), "0.00001");
        assert_eq!(Money(-250_000).to_string(), "-2.50000");
        assert_eq!(Money::ZERO.to_string(), "0.00000");
        assert_eq!("100.84292".parse::<Money>(), Ok(Money(10_084_292)));
        assert_eq!(" 12.5 ".parse::<Money>(), Ok(Money(1_250_000)));
        assert!("0.000001".parse::<Money>().is_err());
        assert!("1e3".parse::<Money>().is_err());
        assert!("".parse::<Money>().is_err());
        assert!("99999999999999999999".parse::<Money>().is_err());
    }
}
