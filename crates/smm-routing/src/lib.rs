//! smm-gateway's catalog, markup and route choice.
//!
//! The gateway re-sells the services of several upstream panels. This crate turns the
//! configuration ([`ProviderDef`], [`PricingRules`], [`ServiceDef`], [`Exposure`]) and the
//! providers' last synced catalogs into the local [`Catalog`] customers see
//! ([`build_catalog`]), prices it for each customer ([`LocalService::price_for`], [`charge`]),
//! checks orders against it ([`check_order`]) and lists the routes an order may take
//! ([`candidate_routes`]). [`validate()`] checks a configuration and reports every problem at once.
//!
//! The crate is pure: no I/O, no async, no clock, no randomness. Money is exact ([`Decimal`]
//! and [`smm_wire::Money`]); nothing goes through floating point.
//!
//! # Pricing
//!
//! ## Stacking rule
//!
//! Each [`Markup`] field (`percent`, `fixed`, `min_rate`, `round_up`, `allow_below_cost`) is
//! resolved **independently**: the most specific rule that sets the field wins.
//!
//! 1. **service**: [`ServiceDef::markup`], or [`Exposure::markup`] for exposed services;
//! 2. **category**: `pricing.categories[<the local service's category>]` (the configured
//!    category, else the upstream one; keys match exactly after trimming);
//! 3. **provider**: `pricing.providers[<the route's provider>]` (the first usable route's);
//! 4. **default**: `pricing.default`;
//! 5. built-in: `percent` 0, `fixed` 0, no `min_rate`, `round_up` 5, `allow_below_cost` false.
//!
//! So a category rule setting only `percent = "50"` over a provider rule with `fixed = "0.1"`
//! gives +50 % and +0.1. The result is kept in [`LocalService::markup`].
//!
//! ## Rate
//!
//! ```text
//! cost = upstream rate × provider rate            (exact, reseller currency)
//! rate = round_up(cost × (1 + percent/100) + fixed, round_up decimals)
//! rate = max(rate, round_up(min_rate, round_up decimals))
//! rate = max(rate, round_up(cost, round_up decimals))   unless allow_below_cost
//! ```
//!
//! Rates are per 1000 units, or per order for flat-priced types (`Package`,
//! `Custom Comments Package`); `fixed` adds to that rate either way. Rounding is always
//! upward (towards +∞). A rate ≤ 0 (only possible with `allow_below_cost`) disables the
//! service: nothing is ever priced at zero. A service that cannot be priced at all carries
//! the [`UNPRICED`] sentinel and is disabled.
//!
//! The displayed rate comes from the **first usable route**: customers pay it whichever route
//! serves them. Each [`Route`] carries its own `cost`, so margins are visible; a fallback route
//! costing more than the rate is reported as a [`CatalogIssue`].
//!
//! ## Customer prices
//!
//! [`LocalService::price_for`]: a custom rate replaces the rate; otherwise a discount applies,
//! `round_up(rate × (1 − discount/100))`. Either is clamped to at least the first route's cost
//! (rounded up) unless `allow_below_cost`, and is never ≤ 0. [`charge`] turns a rate and a
//! [`smm_wire::order::Billing`] into the amount debited, rounded up to 0.00001.

/// Exposed services get their ids (assigned once by the store, never re-pointed) from
/// `EXPOSURE_ID_BASE` up; explicit `[[services]]` ids must be below it, so the two never
/// collide (issue #12, 7). Ids given to exposures before this range existed keep their
/// service; an explicit id equal to one of them is refused at catalog build.
pub const EXPOSURE_ID_BASE: u64 = 1_000_000;

pub mod catalog;
pub mod config;
pub mod order;
pub mod policy;
pub mod pricing;
pub mod validate;

pub use catalog::{
    Catalog, CatalogBuild, CatalogInput, CatalogIssue, LocalService, Route, build_catalog,
};
pub use config::{Exposure, Markup, PricingRules, ProviderDef, RouteDef, ServiceDef};
pub use order::{candidate_routes, check_order};
pub use policy::{
    Candidate, Choice, Policy, QualityTargets, RecentOutcome, RecentWindow, RouteEvidence,
    RoutingSettings, Standing, TargetOverrides, choose, explores, standing,
};
pub use pricing::{
    CustomerPricing, DEFAULT_ROUND_UP, MAX_ROUND_UP, ResolvedMarkup, UNPRICED, charge, round_up,
};
pub use validate::{ConfigProblem, validate};

pub use rust_decimal::Decimal;
