//! The routing-relevant part of the gateway's configuration, as read from TOML.
//!
//! Every type refuses unknown fields (a typo such as `precent` is an error, not a silently
//! ignored rule). Money-like values are [`Decimal`]s and are best written as strings
//! (`percent = "30"`); whole numbers are accepted too. [`crate::validate()`] checks the values
//! against each other and reports every problem at once.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::policy::{Policy, TargetOverrides};

fn yes() -> bool {
    true
}

/// One upstream panel, as far as routing cares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// Unique name, referenced by routes, exposures and pricing rules.
    pub name: String,
    /// The provider's currency code (`USD`, `EUR`, ...): informative; conversion uses `rate`.
    pub currency: String,
    /// Value of 1 unit of the provider's currency in the reseller's currency; `1` when they are
    /// the same. Must be greater than 0.
    pub rate: Decimal,
    /// A disabled provider routes nothing. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A markup rule. Every field is optional: an unset field falls through to the next, less
/// specific rule (see the crate docs for the stacking rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Markup {
    /// Percent added on cost: `30` = +30 %. May be negative down to -100 (a loss leader only
    /// with `allow_below_cost`, otherwise the rate is clamped to cost).
    pub percent: Option<Decimal>,
    /// Added to the rate after the percent: per 1000 units, or per order for flat-priced types.
    pub fixed: Option<Decimal>,
    /// Floor on the resulting rate (rounded up to `round_up` decimals like the rate).
    pub min_rate: Option<Decimal>,
    /// Round the rate UP to this many decimals (0..=10); default 5.
    pub round_up: Option<u32>,
    /// Allow a rate (or a customer's price) below cost; default `false`.
    pub allow_below_cost: Option<bool>,
}

/// Markup rules at three levels of specificity below the per-service one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingRules {
    /// Applies to everything.
    pub default: Markup,
    /// By provider name (the route's provider).
    pub providers: BTreeMap<String, Markup>,
    /// By the local service's category (matched exactly, after trimming surrounding whitespace
    /// on both sides).
    pub categories: BTreeMap<String, Markup>,
}

/// One upstream route of an explicit local service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    /// Provider name.
    pub provider: String,
    /// The upstream service id. Accepted as a string (`"101"`) or a whole number (`101`).
    #[serde(deserialize_with = "upstream_service_id")]
    pub service: String,
}

/// An explicit local service: one id customers order, one or more upstream routes in priority
/// order (the first usable route is tried first and sets the price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// The local service id (>= 1), unique among explicit services; it wins over an exposure id.
    pub id: u64,
    /// Shown name; default: the first usable route's upstream name.
    #[serde(default)]
    pub name: Option<String>,
    /// Category; default: the first usable route's upstream category.
    #[serde(default)]
    pub category: Option<String>,
    /// Upstream routes in priority order.
    #[serde(default)]
    pub routes: Vec<RouteDef>,
    /// Own lower bound on the quantity, intersected with the routes' bounds.
    #[serde(default)]
    pub min: Option<u64>,
    /// Own upper bound on the quantity, intersected with the routes' bounds.
    #[serde(default)]
    pub max: Option<u64>,
    /// Service-level markup: the most specific rule.
    #[serde(default)]
    pub markup: Option<Markup>,
    /// Description shown to customers (never taken from upstream for explicit services).
    #[serde(default)]
    pub desc: Option<String>,
    /// Default `true`; a disabled service stays in the catalog with `enabled = false`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How this service's routes are ranked; default: `[routing] policy`.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The quality policy's targets for this service: each field set replaces the default's.
    #[serde(default)]
    pub targets: TargetOverrides,
}

/// "Expose provider X's whole catalog (optionally only some categories) with markup Y."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exposure {
    /// Provider name.
    pub provider: String,
    /// Only these upstream categories (matched exactly after trimming); `None` = all.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Service-level markup for every exposed service.
    #[serde(default)]
    pub markup: Option<Markup>,
}

/// Reads an upstream service id written as a string or as a whole number.
fn upstream_service_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct IdVisitor;

    impl Visitor<'_> for IdVisitor {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an upstream service id (a string or a whole number)")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    deserializer.deserialize_any(IdVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        providers: Vec<ProviderDef>,
        #[serde(default)]
        pricing: PricingRules,
        #[serde(default)]
        services: Vec<ServiceDef>,
        #[serde(default)]
        exposures: Vec<Exposure>,
    }

    #[test]
    fn reads_a_full_toml_config() {
        let file: File = toml::from_str(
            r#"
            [[providers]]
            name = "alpha"
            currency = "USD"
            rate = "1"

            [[providers]]
            name = "beta"
            currency = "EUR"
            rate = "1.08"
            enabled = false

            [pricing.default]
            percent = "30"
            round_up = 4

            [pricing.providers.beta]
            fixed = "0.05"

            [pricing.categories."Instagram Followers"]
            percent = 50
            min_rate = "0.01"
            allow_below_cost = true

            [[services]]
            id = 1
            routes = [{ provider = "alpha", service = "101" }, { provider = "beta", service = 7 }]

            [[services]]
            id = 2
            name = "Likes"
            category = "Instagram"
            routes = [{ provider = "alpha", service = "5" }]
            min = 100
            max = 5000
            markup = { percent = "-10", allow_below_cost = true }
            desc = "fast"
            enabled = false

            [[exposures]]
            provider = "alpha"
            categories = ["YouTube Views"]
            markup = { percent = "40" }

            [[exposures]]
            provider = "beta"
            "#,
        )
        .expect("parses");

        assert_eq!(file.providers.len(), 2);
        assert!(file.providers[0].enabled);
        assert!(!file.providers[1].enabled);
        assert_eq!(file.providers[1].rate, d("1.08"));
        assert_eq!(file.pricing.default.percent, Some(d("30")));
        assert_eq!(file.pricing.default.round_up, Some(4));
        assert_eq!(file.pricing.default.fixed, None);
        assert_eq!(file.pricing.providers["beta"].fixed, Some(d("0.05")));
        let cat = &file.pricing.categories["Instagram Followers"];
        assert_eq!(cat.percent, Some(d("50")));
        assert_eq!(cat.allow_below_cost, Some(true));
        assert_eq!(
            file.services[0].routes[1],
            RouteDef {
                provider: "beta".into(),
                service: "7".into()
            }
        );
        assert!(file.services[0].enabled);
        assert_eq!(file.services[0].markup, None);
        let s2 = &file.services[1];
        assert_eq!((s2.min, s2.max), (Some(100), Some(5000)));
        assert!(!s2.enabled);
        assert_eq!(s2.markup.as_ref().and_then(|m| m.percent), Some(d("-10")));
        assert_eq!(
            file.exposures[0].categories,
            Some(vec!["YouTube Views".to_owned()])
        );
        assert_eq!(file.exposures[1].categories, None);
        assert_eq!(file.exposures[1].markup, None);
    }

    #[test]
    fn unknown_fields_are_refused() {
        for bad in [
            "[pricing.default]\nprecent = \"30\"",
            "[[providers]]\nname = \"a\"\ncurrency = \"USD\"\nrate = \"1\"\nurl = \"x\"",
            "[[services]]\nid = 1\nroutes = [{ provider = \"a\", service = \"1\", extra = 1 }]",
            "[[exposures]]\nprovider = \"a\"\ncategory = \"x\"",
        ] {
            assert!(toml::from_str::<File>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_pricing_and_missing_routes_default() {
        let file: File = toml::from_str("[[services]]\nid = 3").expect("parses");
        assert_eq!(file.pricing, PricingRules::default());
        assert!(file.services[0].routes.is_empty());
        assert!(file.services[0].enabled);
    }

    #[test]
    fn json_round_trip() {
        let def = ServiceDef {
            id: 9,
            name: Some("n".into()),
            category: None,
            routes: vec![RouteDef {
                provider: "alpha".into(),
                service: "12".into(),
            }],
            min: Some(1),
            max: None,
            markup: Some(Markup {
                percent: Some(d("12.5")),
                ..Markup::default()
            }),
            desc: None,
            enabled: true,
            policy: None,
            targets: Default::default(),
        };
        let text = serde_json::to_string(&def).expect("serialises");
        assert!(text.contains(r#""percent":"12.5""#), "{text}");
        let back: ServiceDef = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, def);
    }
}
