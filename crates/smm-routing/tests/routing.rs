//! smm-routing end to end: configuration → catalog → prices → charges → order checks.

use std::collections::BTreeMap;
use std::str::FromStr;

use proptest::prelude::*;
use smm_routing::{
    Catalog, CatalogBuild, CatalogInput, CustomerPricing, Decimal, Exposure, LocalService, Markup,
    PricingRules, ProviderDef, RouteDef, ServiceDef, UNPRICED, build_catalog, candidate_routes,
    charge, check_order, validate,
};
use smm_wire::order::{Billing, DripFeed};
use smm_wire::upstream::{UpstreamId, UpstreamService};
use smm_wire::{ErrorKind, Money, OrderRequest, ServiceType};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn money(s: &str) -> Money {
    Money::from_str(s).expect("money")
}

fn provider(name: &str, currency: &str, rate: &str) -> ProviderDef {
    ProviderDef {
        name: name.into(),
        currency: currency.into(),
        rate: d(rate),
        enabled: true,
    }
}

fn up(id: &str, rate: &str, min: u64, max: u64) -> UpstreamService {
    UpstreamService {
        service: UpstreamId::new(id).expect("id"),
        name: format!("Upstream {id}"),
        service_type: ServiceType::Default,
        category: "Instagram Followers".into(),
        rate: d(rate),
        min,
        max,
        refill: true,
        cancel: true,
        dripfeed: true,
        desc: None,
    }
}

fn markup(percent: &str) -> Markup {
    Markup {
        percent: Some(d(percent)),
        ..Markup::default()
    }
}

fn service(id: u64, routes: &[(&str, &str)]) -> ServiceDef {
    ServiceDef {
        id,
        name: None,
        category: None,
        routes: routes
            .iter()
            .map(|(p, s)| RouteDef {
                provider: (*p).into(),
                service: (*s).into(),
            })
            .collect(),
        min: None,
        max: None,
        markup: None,
        desc: None,
        enabled: true,
        policy: None,
        targets: Default::default(),
    }
}

fn expose(provider: &str, categories: Option<&[&str]>, markup: Option<Markup>) -> Exposure {
    Exposure {
        provider: provider.into(),
        categories: categories.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        markup,
    }
}

/// A configuration plus the providers' catalogs, built on demand.
struct World {
    providers: Vec<ProviderDef>,
    pricing: PricingRules,
    services: Vec<ServiceDef>,
    exposures: Vec<Exposure>,
    upstream: BTreeMap<String, Vec<UpstreamService>>,
    ids: BTreeMap<(String, String), u64>,
}

impl World {
    /// alpha (USD): 101 at 0.90, 102 at 2.00, 103 at 0.123451;
    /// beta (EUR at 1.08 USD): 7 at 1.00.
    fn new() -> World {
        World {
            providers: vec![
                provider("alpha", "USD", "1"),
                provider("beta", "EUR", "1.08"),
            ],
            pricing: PricingRules::default(),
            services: Vec::new(),
            exposures: Vec::new(),
            upstream: [
                (
                    "alpha".to_owned(),
                    vec![
                        up("101", "0.90", 10, 10_000),
                        up("102", "2.00", 100, 5_000),
                        up("103", "0.123451", 1, 1_000),
                    ],
                ),
                ("beta".to_owned(), vec![up("7", "1.00", 50, 20_000)]),
            ]
            .into(),
            ids: BTreeMap::new(),
        }
    }

    fn build(&self) -> CatalogBuild {
        build_catalog(&CatalogInput {
            providers: &self.providers,
            pricing: &self.pricing,
            services: &self.services,
            exposures: &self.exposures,
            upstream: &self.upstream,
            exposure_ids: &self.ids,
        })
    }

    fn catalog(&self) -> Catalog {
        self.build().catalog
    }

    fn one(&self, id: u64) -> LocalService {
        self.catalog().get(id).cloned().expect("service in catalog")
    }

    fn upstream_mut(&mut self, provider: &str, id: &str) -> &mut UpstreamService {
        self.upstream
            .get_mut(provider)
            .and_then(|list| list.iter_mut().find(|u| u.service.as_str() == id))
            .expect("upstream service")
    }
}

fn default_order(quantity: u64) -> OrderRequest {
    OrderRequest::Default {
        link: "https://instagram.example/p/1".into(),
        quantity,
        drip_feed: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration read from TOML, validated, built, priced, charged and checked.

#[test]
fn from_toml_config_to_a_charged_order() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        providers: Vec<ProviderDef>,
        pricing: PricingRules,
        services: Vec<ServiceDef>,
        exposures: Vec<Exposure>,
    }
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

        [pricing.default]
        percent = "30"
        round_up = 4

        [[services]]
        id = 1
        name = "IG followers"
        routes = [{ provider = "alpha", service = "101" }, { provider = "beta", service = 7 }]

        [[exposures]]
        provider = "beta"
        markup = { percent = "40" }
        "#,
    )
    .expect("config parses");
    assert_eq!(
        validate(
            &file.providers,
            &file.pricing,
            &file.services,
            &file.exposures
        ),
        Vec::new()
    );

    let mut world = World::new();
    world.providers = file.providers;
    world.pricing = file.pricing;
    world.services = file.services;
    world.exposures = file.exposures;
    world.ids.insert(("beta".into(), "7".into()), 1000);
    let build = world.build();
    assert!(build.missing_ids.is_empty());

    // 0.90 × 1.3 = 1.17; the beta fallback costs 1.08 (below the rate: no issue).
    let svc = build.catalog.get(1).expect("service 1");
    assert!(svc.enabled);
    assert_eq!(svc.rate, d("1.17"));
    assert_eq!(svc.routes.len(), 2);
    assert_eq!(svc.routes[1].cost, d("1.08"));
    assert_eq!((svc.min, svc.max), (50, 10_000));
    assert!(build.issues.is_empty(), "{:#?}", build.issues);

    // Exposed beta 7: 1.00 EUR × 1.08 = 1.08 USD, +40 % = 1.512.
    let exposed = build.catalog.get(1000).expect("exposed");
    assert_eq!(exposed.rate, d("1.512"));
    assert_eq!(exposed.name, "Upstream 7");

    let order = default_order(1000);
    assert_eq!(check_order(svc, &order), Ok(()));
    let price = svc.price_for(&CustomerPricing::default());
    assert_eq!(charge(price, order.billing()), Some(money("1.17")));
}

// ---------------------------------------------------------------------------------------------
// Stacking precedence, level by level.

#[test]
fn stacking_default_applies_when_nothing_else_does() {
    let mut w = World::new();
    w.pricing.default = markup("10");
    w.services.push(service(1, &[("alpha", "101")]));
    let svc = w.one(1);
    assert_eq!(svc.rate, d("0.99"));
    assert_eq!(svc.markup.percent, d("10"));
}

#[test]
fn stacking_provider_beats_default() {
    let mut w = World::new();
    w.pricing.default = markup("10");
    w.pricing.providers.insert("alpha".into(), markup("20"));
    w.services.push(service(1, &[("alpha", "101")]));
    w.services.push(service(2, &[("beta", "7")]));
    assert_eq!(w.one(1).rate, d("1.08"));
    // beta has no provider rule: default 10 % on 1.08.
    assert_eq!(w.one(2).rate, d("1.188"));
}

#[test]
fn stacking_category_beats_provider() {
    let mut w = World::new();
    w.pricing.default = markup("10");
    w.pricing.providers.insert("alpha".into(), markup("20"));
    w.pricing
        .categories
        .insert("Instagram Followers".into(), markup("50"));
    w.services.push(service(1, &[("alpha", "101")]));
    // The configured category decides, not the upstream one.
    w.services.push(ServiceDef {
        category: Some("Mine".into()),
        ..service(2, &[("alpha", "101")])
    });
    assert_eq!(w.one(1).rate, d("1.35"));
    assert_eq!(w.one(2).rate, d("1.08"));
}

#[test]
fn stacking_service_beats_category_for_explicit_and_exposed_services() {
    let mut w = World::new();
    w.pricing.default = markup("10");
    w.pricing.providers.insert("alpha".into(), markup("20"));
    w.pricing
        .categories
        .insert("Instagram Followers".into(), markup("50"));
    w.services.push(ServiceDef {
        markup: Some(markup("100")),
        ..service(1, &[("alpha", "101")])
    });
    w.exposures.push(expose(
        "alpha",
        Some(&["Instagram Followers"]),
        Some(markup("5")),
    ));
    w.ids.insert(("alpha".into(), "101".into()), 500);
    assert_eq!(w.one(1).rate, d("1.8"));
    assert_eq!(w.one(500).rate, d("0.945"));
}

#[test]
fn stacking_resolves_each_field_independently() {
    let mut w = World::new();
    w.pricing.default = Markup {
        percent: Some(d("10")),
        fixed: Some(d("0.01")),
        min_rate: Some(d("0.001")),
        round_up: Some(3),
        allow_below_cost: Some(false),
    };
    w.pricing.providers.insert(
        "alpha".into(),
        Markup {
            fixed: Some(d("0.05")),
            ..Markup::default()
        },
    );
    w.pricing.categories.insert(
        "Instagram Followers".into(),
        Markup {
            round_up: Some(2),
            ..Markup::default()
        },
    );
    w.services.push(ServiceDef {
        markup: Some(markup("20")),
        ..service(1, &[("alpha", "103")])
    });
    let svc = w.one(1);
    // percent from the service, fixed from the provider, round_up from the category,
    // min_rate from the default.
    assert_eq!(svc.markup.percent, d("20"));
    assert_eq!(svc.markup.fixed, d("0.05"));
    assert_eq!(svc.markup.round_up, 2);
    assert_eq!(svc.markup.min_rate, Some(d("0.001")));
    // 0.123451 × 1.2 + 0.05 = 0.1981412 → 0.20
    assert_eq!(svc.rate, d("0.2"));
}

// ---------------------------------------------------------------------------------------------
// Rounding, currency, min_rate, below cost.

#[test]
fn rates_round_up_to_the_configured_decimals() {
    let mut w = World::new();
    w.services.push(service(1, &[("alpha", "103")]));
    w.services.push(ServiceDef {
        markup: Some(Markup {
            round_up: Some(2),
            ..Markup::default()
        }),
        ..service(2, &[("alpha", "103")])
    });
    // cost 0.123451, +0 %, 5 decimals → 0.12346
    assert_eq!(w.one(1).rate, d("0.12346"));
    assert_eq!(w.one(2).rate, d("0.13"));
}

#[test]
fn provider_currency_is_converted_before_the_markup() {
    let mut w = World::new();
    w.pricing.default = markup("30");
    w.providers[1].rate = d("0.0111"); // e.g. 1 RUB in USD
    w.upstream_mut("beta", "7").rate = d("45.5");
    w.services.push(service(1, &[("beta", "7")]));
    let svc = w.one(1);
    // 45.5 × 0.0111 = 0.50505; × 1.3 = 0.656565 → 0.65657
    assert_eq!(svc.routes[0].upstream_rate, d("45.5"));
    assert_eq!(svc.routes[0].cost, d("0.50505"));
    assert_eq!(svc.rate, d("0.65657"));
}

#[test]
fn min_rate_is_a_floor() {
    let mut w = World::new();
    w.pricing.default = Markup {
        percent: Some(d("30")),
        min_rate: Some(d("0.5")),
        ..Markup::default()
    };
    w.services.push(service(1, &[("alpha", "103")]));
    w.services.push(service(2, &[("alpha", "102")]));
    assert_eq!(w.one(1).rate, d("0.5"));
    assert_eq!(w.one(2).rate, d("2.6"));
}

#[test]
fn negative_markups_are_clamped_to_cost_unless_allowed() {
    let mut w = World::new();
    w.services.push(ServiceDef {
        markup: Some(markup("-20")),
        ..service(1, &[("alpha", "103")])
    });
    w.services.push(ServiceDef {
        markup: Some(Markup {
            percent: Some(d("-20")),
            allow_below_cost: Some(true),
            ..Markup::default()
        }),
        ..service(2, &[("alpha", "101")])
    });
    assert_eq!(w.one(1).rate, d("0.12346"));
    assert_eq!(w.one(2).rate, d("0.72"));
}

// ---------------------------------------------------------------------------------------------
// Upstream changes never make a service free.

#[test]
fn a_vanished_upstream_service_disables_the_local_service() {
    let mut w = World::new();
    w.services.push(service(1, &[("alpha", "101")]));
    assert!(w.one(1).enabled);
    w.upstream
        .get_mut("alpha")
        .expect("alpha")
        .retain(|u| u.service.as_str() != "101");
    let build = w.build();
    let svc = build.catalog.get(1).expect("kept in the catalog");
    assert!(!svc.enabled);
    assert!(svc.routes.is_empty());
    assert_ne!(svc.rate, Decimal::ZERO);
    assert!(svc.rate > Decimal::ZERO);
    assert!(
        svc.disabled_reason
            .as_deref()
            .is_some_and(|r| r.contains("no usable route") && r.contains("no longer")),
        "{:?}",
        svc.disabled_reason
    );
    assert_eq!(build.catalog.enabled().count(), 0);
    assert!(build.issues.iter().any(|i| i.service == Some(1)
        && i.provider.as_deref() == Some("alpha")
        && i.message.contains("\"101\"")));
    // Still named after what it was, never orderable, never chargeable.
    assert_eq!(
        check_order(svc, &default_order(100)),
        Err(ErrorKind::IncorrectServiceId)
    );
    assert_eq!(charge(svc.rate, default_order(100).billing()), None);
}

#[test]
fn a_zero_upstream_rate_disables_the_local_service() {
    let mut w = World::new();
    w.upstream_mut("alpha", "101").rate = Decimal::ZERO;
    w.services.push(service(1, &[("alpha", "101")]));
    let svc = w.one(1);
    assert!(!svc.enabled);
    assert_eq!(svc.rate, UNPRICED);
    assert!(
        svc.disabled_reason
            .as_deref()
            .is_some_and(|r| r.contains("no valid rate"))
    );
}

#[test]
fn a_zero_rate_route_falls_through_to_the_next() {
    let mut w = World::new();
    w.upstream_mut("alpha", "101").rate = Decimal::ZERO;
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    let svc = w.one(1);
    assert!(svc.enabled);
    assert_eq!(svc.routes.len(), 1);
    assert_eq!(svc.rate, d("1.08"));
}

#[test]
fn an_unsynced_provider_is_not_a_route() {
    let mut w = World::new();
    w.upstream.remove("alpha");
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    let build = w.build();
    let svc = build.catalog.get(1).expect("1");
    assert_eq!(svc.routes[0].provider, "beta");
    assert!(build.issues[0].message.contains("has not synced"));
}

// ---------------------------------------------------------------------------------------------
// Routes: failover order, availability, bounds, types.

#[test]
fn failover_keeps_priority_order_and_filters_unavailable_providers() {
    let mut w = World::new();
    w.providers.push(provider("gamma", "USD", "1"));
    w.upstream
        .insert("gamma".into(), vec![up("g1", "0.95", 1, 100_000)]);
    w.services.push(service(
        1,
        &[("beta", "7"), ("alpha", "101"), ("gamma", "g1")],
    ));
    let svc = w.one(1);
    let order: Vec<&str> = svc.routes.iter().map(|r| r.provider.as_str()).collect();
    assert_eq!(order, ["beta", "alpha", "gamma"]);
    // The first route sets the price.
    assert_eq!(svc.rate, d("1.08"));

    let names = |routes: Vec<&smm_routing::Route>| -> Vec<String> {
        routes.into_iter().map(|r| r.provider.clone()).collect()
    };
    assert_eq!(
        names(candidate_routes(&svc, |_| true)),
        ["beta", "alpha", "gamma"]
    );
    assert_eq!(
        names(candidate_routes(&svc, |p| p != "beta")),
        ["alpha", "gamma"]
    );
    let cooling = ["alpha", "beta"];
    assert_eq!(
        names(candidate_routes(&svc, |p| !cooling.contains(&p))),
        ["gamma"]
    );
    assert!(candidate_routes(&svc, |_| false).is_empty());
}

#[test]
fn a_disabled_provider_is_skipped_when_building() {
    let mut w = World::new();
    w.providers[0].enabled = false;
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    let svc = w.one(1);
    assert_eq!(svc.routes.len(), 1);
    assert_eq!(svc.routes[0].provider, "beta");
}

#[test]
fn bounds_are_the_intersection_of_routes_and_own_limits() {
    let mut w = World::new();
    // alpha 101: 10..=10000, beta 7: 50..=20000
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    w.services.push(ServiceDef {
        min: Some(100),
        max: Some(5_000),
        ..service(2, &[("alpha", "101"), ("beta", "7")])
    });
    w.services.push(ServiceDef {
        min: Some(1),
        ..service(3, &[("alpha", "101")])
    });
    let one = w.one(1);
    assert_eq!((one.min, one.max), (50, 10_000));
    let two = w.one(2);
    assert_eq!((two.min, two.max), (100, 5_000));
    let three = w.one(3);
    assert_eq!((three.min, three.max), (10, 10_000));
}

#[test]
fn an_empty_intersection_disables_the_service() {
    let mut w = World::new();
    w.upstream_mut("beta", "7").min = 20_000;
    w.upstream_mut("beta", "7").max = 30_000;
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    w.services.push(ServiceDef {
        min: Some(50_000),
        ..service(2, &[("alpha", "101")])
    });
    for id in [1, 2] {
        let svc = w.one(id);
        assert!(!svc.enabled, "{id}");
        assert!(
            svc.disabled_reason
                .as_deref()
                .is_some_and(|r| r.contains("empty quantity range")),
            "{id}: {:?}",
            svc.disabled_reason
        );
        // Still priced: the reason is the range, not the price.
        assert!(svc.rate > Decimal::ZERO && svc.rate != UNPRICED);
    }
}

#[test]
fn routes_of_another_type_are_dropped() {
    let mut w = World::new();
    w.upstream_mut("beta", "7").service_type = ServiceType::Package;
    w.upstream_mut("alpha", "102").service_type = ServiceType::Package;
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    w.services.push(service(
        2,
        &[("beta", "7"), ("alpha", "101"), ("alpha", "102")],
    ));
    let build = w.build();
    let one = build.catalog.get(1).expect("1");
    assert_eq!(one.service_type, ServiceType::Default);
    assert_eq!(one.routes.len(), 1);
    let two = build.catalog.get(2).expect("2");
    assert_eq!(two.service_type, ServiceType::Package);
    let kept: Vec<&str> = two
        .routes
        .iter()
        .map(|r| r.upstream_service.as_str())
        .collect();
    assert_eq!(kept, ["7", "102"]);
    let mismatches = build
        .issues
        .iter()
        .filter(|i| i.message.contains("differs from the first usable route"))
        .count();
    assert_eq!(mismatches, 2, "{:#?}", build.issues);
}

#[test]
fn flags_are_true_only_when_every_route_has_them() {
    let mut w = World::new();
    w.upstream_mut("beta", "7").cancel = false;
    w.upstream_mut("beta", "7").dripfeed = false;
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    w.services.push(service(2, &[("alpha", "101")]));
    let one = w.one(1);
    assert!(one.refill && !one.cancel && !one.dripfeed);
    let two = w.one(2);
    assert!(two.refill && two.cancel && two.dripfeed);
}

// ---------------------------------------------------------------------------------------------
// Exposures.

#[test]
fn exposures_use_stable_ids_and_upstream_details() {
    let mut w = World::new();
    {
        let u = w.upstream_mut("alpha", "102");
        u.category = "YouTube Views".into();
        u.name = "YT views".into();
        u.desc = Some("real views".into());
        u.refill = false;
    }
    w.exposures.push(expose(
        "alpha",
        Some(&["YouTube Views", "Nothing here"]),
        Some(markup("50")),
    ));
    w.ids.insert(("alpha".into(), "102".into()), 7_002);
    w.ids.insert(("alpha".into(), "101".into()), 7_001);
    let build = w.build();
    // Only the filtered category is exposed.
    assert_eq!(build.catalog.len(), 1);
    let svc = build.catalog.get(7_002).expect("exposed");
    assert_eq!(svc.name, "YT views");
    assert_eq!(svc.category, "YouTube Views");
    assert_eq!(svc.desc.as_deref(), Some("real views"));
    assert_eq!((svc.min, svc.max), (100, 5_000));
    assert!(!svc.refill && svc.cancel && svc.dripfeed);
    assert_eq!(svc.rate, d("3"));
    assert_eq!(svc.routes[0].upstream_service.as_str(), "102");
    assert!(build.missing_ids.is_empty());
    assert!(build.issues.iter().any(|i| {
        i.message
            .contains("\"Nothing here\" matches no upstream service")
    }));

    // The same ids on a rebuild, whatever the upstream order.
    w.upstream.get_mut("alpha").expect("alpha").reverse();
    assert_eq!(w.catalog().get(7_002).map(|s| s.rate), Some(d("3")));
}

#[test]
fn exposed_entries_without_ids_are_reported() {
    let mut w = World::new();
    w.exposures.push(expose("alpha", None, None));
    w.ids.insert(("alpha".into(), "101".into()), 9_001);
    let build = w.build();
    assert_eq!(build.catalog.len(), 1);
    assert_eq!(
        build.missing_ids,
        [
            ("alpha".to_owned(), "102".to_owned()),
            ("alpha".to_owned(), "103".to_owned())
        ]
    );
    // The store assigns ids; the rebuild has them all.
    w.ids.insert(("alpha".into(), "102".into()), 9_002);
    w.ids.insert(("alpha".into(), "103".into()), 9_003);
    let build = w.build();
    assert!(build.missing_ids.is_empty());
    let ids: Vec<u64> = build.catalog.iter().map(|s| s.id).collect();
    assert_eq!(ids, [9_001, 9_002, 9_003]);
}

#[test]
fn an_explicit_id_wins_over_an_exposed_one() {
    let mut w = World::new();
    w.services.push(ServiceDef {
        name: Some("Explicit".into()),
        ..service(42, &[("beta", "7")])
    });
    w.exposures.push(expose("alpha", None, None));
    w.ids.insert(("alpha".into(), "101".into()), 42);
    w.ids.insert(("alpha".into(), "102".into()), 43);
    w.ids.insert(("alpha".into(), "103".into()), 44);
    let build = w.build();
    assert_eq!(
        build.catalog.get(42).map(|s| s.name.as_str()),
        Some("Explicit")
    );
    assert_eq!(build.catalog.len(), 3);
    let collision = build
        .issues
        .iter()
        .find(|i| i.service == Some(42))
        .expect("collision reported");
    assert_eq!(collision.provider.as_deref(), Some("alpha"));
    assert!(collision.message.contains("explicit service"));
}

#[test]
fn exposures_of_unusable_providers_are_skipped() {
    let mut w = World::new();
    w.providers[1].enabled = false;
    w.upstream.remove("alpha");
    w.exposures.push(expose("alpha", None, None));
    w.exposures.push(expose("beta", None, None));
    w.exposures.push(expose("nobody", None, None));
    w.ids.insert(("beta".into(), "7".into()), 1);
    let build = w.build();
    assert!(build.catalog.is_empty());
    assert_eq!(build.issues.len(), 3, "{:#?}", build.issues);
}

// ---------------------------------------------------------------------------------------------
// Customer prices.

fn priced_world() -> LocalService {
    let mut w = World::new();
    w.pricing.default = markup("30");
    w.services
        .push(service(1, &[("alpha", "101"), ("beta", "7")]));
    w.one(1) // rate 1.17, first cost 0.90
}

#[test]
fn discounts_apply_and_are_clamped_to_cost() {
    let svc = priced_world();
    let plain = CustomerPricing::default();
    assert_eq!(svc.price_for(&plain), d("1.17"));
    let ten = CustomerPricing {
        discount: Some(d("10")),
        ..CustomerPricing::default()
    };
    // 1.17 × 0.9 = 1.053
    assert_eq!(svc.price_for(&ten), d("1.053"));
    let odd = CustomerPricing {
        discount: Some(d("3.3")),
        ..CustomerPricing::default()
    };
    // 1.17 × 0.967 = 1.13139
    assert_eq!(svc.price_for(&odd), d("1.13139"));
    let deep = CustomerPricing {
        discount: Some(d("50")),
        ..CustomerPricing::default()
    };
    assert_eq!(
        svc.price_for(&deep),
        d("0.9"),
        "clamped to the first route's cost"
    );
    let everything = CustomerPricing {
        discount: Some(d("150")),
        ..CustomerPricing::default()
    };
    assert_eq!(svc.price_for(&everything), d("0.9"));
    let surcharge = CustomerPricing {
        discount: Some(d("-10")),
        ..CustomerPricing::default()
    };
    assert_eq!(svc.price_for(&surcharge), d("1.287"));
}

#[test]
fn custom_rates_replace_the_rate_and_are_clamped_to_cost() {
    let svc = priced_world();
    let custom = |rate: &str| CustomerPricing {
        discount: Some(d("10")),
        custom_rates: [(1, d(rate))].into(),
    };
    assert_eq!(
        svc.price_for(&custom("1.00")),
        d("1"),
        "the discount does not stack"
    );
    assert_eq!(svc.price_for(&custom("2.5")), d("2.5"));
    assert_eq!(svc.price_for(&custom("0.5")), d("0.9"));
    assert_eq!(svc.price_for(&custom("0")), d("0.9"));
    assert_eq!(svc.price_for(&custom("0.9123456")), d("0.91235"));
    // A custom rate for another service changes nothing here.
    let other = CustomerPricing {
        discount: None,
        custom_rates: [(2, d("0.01"))].into(),
    };
    assert_eq!(svc.price_for(&other), d("1.17"));
}

#[test]
fn below_cost_prices_only_when_allowed_and_never_zero() {
    let mut w = World::new();
    w.services.push(ServiceDef {
        markup: Some(Markup {
            percent: Some(d("30")),
            allow_below_cost: Some(true),
            ..Markup::default()
        }),
        ..service(1, &[("alpha", "101")])
    });
    let svc = w.one(1);
    let half = CustomerPricing {
        discount: Some(d("50")),
        ..CustomerPricing::default()
    };
    assert_eq!(svc.price_for(&half), d("0.585"));
    let all = CustomerPricing {
        discount: Some(d("100")),
        ..CustomerPricing::default()
    };
    assert_eq!(svc.price_for(&all), d("0.00001"));
    let free = CustomerPricing {
        discount: None,
        custom_rates: [(1, Decimal::ZERO)].into(),
    };
    assert_eq!(svc.price_for(&free), d("0.00001"));
}

// ---------------------------------------------------------------------------------------------
// Charges.

#[test]
fn charge_maths() {
    let per = |units| Billing::PerThousand { units };
    assert_eq!(
        charge(d("0.90"), default_order(1000).billing()),
        Some(money("0.90000"))
    );
    assert_eq!(
        charge(d("0.90"), per(1000))
            .map(|m| m.to_string())
            .as_deref(),
        Some("0.90000")
    );
    assert_eq!(charge(d("0.90"), per(1)), Some(money("0.00090")));
    assert_eq!(charge(d("0.00001"), per(1)), Some(money("0.00001")));
    assert_eq!(charge(d("1.17"), per(333)), Some(money("0.38961")));
    assert_eq!(charge(d("0.12346"), per(7)), Some(money("0.00087")));
    assert_eq!(charge(d("2.5"), Billing::Flat), Some(money("2.5")));
    assert_eq!(charge(d("2.500001"), Billing::Flat), Some(money("2.50001")));
    let package = OrderRequest::Package {
        link: "https://x.example/p".into(),
    };
    assert_eq!(charge(d("3"), package.billing()), Some(money("3")));
    // Drip-feed charges quantity × runs.
    let drip = OrderRequest::Default {
        link: "https://x.example/p".into(),
        quantity: 100,
        drip_feed: Some(DripFeed {
            runs: 3,
            interval: 10,
        }),
    };
    assert_eq!(charge(d("1.17"), drip.billing()), Some(money("0.351")));
    assert_eq!(charge(Decimal::ZERO, per(1000)), None);
    assert_eq!(charge(UNPRICED, per(1000)), None);
    assert_eq!(charge(d("1000000000"), per(u64::MAX)), None);
}

// ---------------------------------------------------------------------------------------------
// Order checks through a built service.

#[test]
fn check_order_every_branch() {
    let mut w = World::new();
    w.upstream_mut("beta", "7").dripfeed = false;
    w.services.push(service(1, &[("alpha", "101")])); // 10..=10000, drip-feed
    w.services
        .push(service(2, &[("alpha", "101"), ("beta", "7")])); // 50..=10000, no drip-feed
    w.services.push(ServiceDef {
        enabled: false,
        ..service(3, &[("alpha", "101")])
    });
    let catalog = w.catalog();
    let (one, two, three) = (
        catalog.get(1).expect("1"),
        catalog.get(2).expect("2"),
        catalog.get(3).expect("3"),
    );
    let drip = |quantity| OrderRequest::Default {
        link: "https://x.example/p".into(),
        quantity,
        drip_feed: Some(DripFeed {
            runs: 5,
            interval: 30,
        }),
    };

    assert_eq!(check_order(one, &default_order(10)), Ok(()));
    assert_eq!(check_order(one, &default_order(10_000)), Ok(()));
    assert_eq!(
        check_order(one, &default_order(9)),
        Err(ErrorKind::QuantityBelowMin(10))
    );
    assert_eq!(
        check_order(one, &default_order(10_001)),
        Err(ErrorKind::QuantityAboveMax(10_000))
    );
    assert_eq!(
        check_order(two, &default_order(49)).map_err(|e| e.to_string()),
        Err("Quantity less than minimal 50".to_owned())
    );
    assert_eq!(check_order(one, &drip(10_000)), Ok(()));
    assert_eq!(
        check_order(one, &drip(5)),
        Err(ErrorKind::QuantityBelowMin(10))
    );
    assert_eq!(
        check_order(two, &drip(100)),
        Err(ErrorKind::DripFeedDisabled)
    );
    assert_eq!(
        check_order(three, &default_order(100)),
        Err(ErrorKind::IncorrectServiceId)
    );
    let comments = OrderRequest::CustomComments {
        link: "https://x.example/p".into(),
        comments: vec!["nice".into(); 20],
    };
    assert_eq!(
        check_order(one, &comments),
        Err(ErrorKind::IncorrectServiceId)
    );
}

// ---------------------------------------------------------------------------------------------
// Validation.

#[test]
fn validate_reports_every_problem_with_its_path() {
    let providers = vec![
        provider("alpha", "USD", "1"),
        provider("alpha", "", "0"),
        provider("beta", "EUR", "-1"),
    ];
    let pricing = PricingRules {
        default: Markup {
            percent: Some(d("-101")),
            fixed: Some(d("-0.1")),
            min_rate: Some(d("-1")),
            round_up: Some(11),
            allow_below_cost: None,
        },
        providers: [("ghost".to_owned(), markup("10"))].into(),
        categories: [(
            "Instagram Likes".to_owned(),
            Markup {
                round_up: Some(12),
                ..Markup::default()
            },
        )]
        .into(),
    };
    let services = vec![
        service(1, &[("alpha", "101")]),
        service(1, &[("alpha", "102")]),
        service(0, &[("alpha", "103")]),
        ServiceDef {
            min: Some(500),
            max: Some(100),
            markup: Some(markup("-200")),
            ..service(
                4,
                &[
                    ("alpha", "1"),
                    ("gamma", " "),
                    ("alpha", "1"),
                    ("beta", "a b"),
                ],
            )
        },
        service(5, &[]),
    ];
    let exposures = vec![
        expose("alpha", None, None),
        expose("alpha", Some(&[]), Some(markup("-150"))),
        expose("nobody", Some(&["Likes", " "]), None),
    ];
    let problems = validate(&providers, &pricing, &services, &exposures);
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expected = [
        "providers[1].name: duplicate provider name \"alpha\" (first at providers[0])",
        "providers[1].currency: must not be empty",
        "providers[1].rate: must be greater than 0 (got 0)",
        "providers[2].rate: must be greater than 0 (got -1)",
        "pricing.default.percent: must be at least -100 (got -101)",
        "pricing.default.fixed: must not be negative (got -0.1)",
        "pricing.default.min_rate: must not be negative (got -1)",
        "pricing.default.round_up: must be at most 10 decimals (got 11)",
        "pricing.providers.ghost: unknown provider \"ghost\"",
        "pricing.categories.\"Instagram Likes\".round_up: must be at most 10 decimals (got 12)",
        "services[1].id: duplicate service id 1 (first at services[0])",
        "services[2].id: must be at least 1",
        "services[3].routes[1].provider: unknown provider \"gamma\"",
        "services[3].routes[1].service: must not be empty",
        "services[3].routes[2]: repeats services[3].routes[0]",
        "services[3].routes[3].service: \"a b\" is not an upstream service id (1..=64 letters, digits, '-' or '_')",
        "services[3].min: min 500 is greater than max 100",
        "services[3].markup.percent: must be at least -100 (got -200)",
        "services[4].routes: at least one route is needed",
        "exposures[1].provider: provider \"alpha\" is already exposed by exposures[0]",
        "exposures[1].categories: an empty list exposes nothing (omit it to expose every category)",
        "exposures[1].markup.percent: must be at least -100 (got -150)",
        "exposures[2].provider: unknown provider \"nobody\"",
        "exposures[2].categories[1]: must not be empty",
    ];
    assert_eq!(lines, expected);
    assert_eq!(problems[12].path, "services[3].routes[1].provider");
    assert_eq!(problems[12].message, "unknown provider \"gamma\"");
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// A positive decimal with up to `max_scale` decimals.
fn positive_decimal(max_mantissa: i64, max_scale: u32) -> impl Strategy<Value = Decimal> {
    (1..=max_mantissa, 0..=max_scale).prop_map(|(m, s)| Decimal::new(m, s))
}

fn priced(upstream_rate: Decimal, currency_rate: Decimal, rule: Markup) -> Option<LocalService> {
    let mut w = World::new();
    w.providers[0].rate = currency_rate;
    w.upstream_mut("alpha", "101").rate = upstream_rate;
    w.services.push(ServiceDef {
        markup: Some(rule),
        ..service(1, &[("alpha", "101")])
    });
    let svc = w.one(1);
    svc.enabled.then_some(svc)
}

fn markup_strategy() -> impl Strategy<Value = Markup> {
    (
        0_i64..=50_000,
        prop::option::of(0_i64..=100_000),
        prop::option::of(0_i64..=1_000_000),
        0_u32..=10,
        any::<bool>(),
    )
        .prop_map(|(percent, fixed, min_rate, round, allow)| Markup {
            percent: Some(Decimal::new(percent, 2)),
            fixed: fixed.map(|f| Decimal::new(f, 5)),
            min_rate: min_rate.map(|m| Decimal::new(m, 5)),
            round_up: Some(round),
            allow_below_cost: Some(allow),
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn prices_are_positive_and_never_below_cost_unless_allowed(
        upstream_rate in positive_decimal(100_000_000, 8),
        currency_rate in positive_decimal(2_000_000, 6),
        rule in markup_strategy(),
        discount in prop::option::of(-5_000_i64..=15_000),
        custom in prop::option::of(0_i64..=10_000_000),
        units in 0_u64..=10_000_000,
    ) {
        let svc = priced(upstream_rate, currency_rate, rule);
        let Some(svc) = svc else {
            // Only tiny costs rounding away can leave a service unpriced; never with these.
            return Err(TestCaseError::fail("service not priced"));
        };
        let cost = svc.routes[0].cost;
        prop_assert_eq!(cost, upstream_rate * currency_rate);
        prop_assert!(svc.rate > Decimal::ZERO);
        // percent >= 0: the list rate is never below cost, allowed or not.
        prop_assert!(svc.rate >= cost);

        let customer = CustomerPricing {
            discount: discount.map(|v| Decimal::new(v, 2)),
            custom_rates: custom.map(|c| (1, Decimal::new(c, 5))).into_iter().collect(),
        };
        let price = svc.price_for(&customer);
        prop_assert!(price > Decimal::ZERO);
        if !svc.markup.allow_below_cost {
            prop_assert!(price >= cost, "price {} below cost {}", price, cost);
        }
        // Rounded to the service's decimals.
        prop_assert_eq!(price, price.round_dp(svc.markup.round_up));
        // What the customer is charged covers the price, and (unless allowed) the cost.
        let exact = price * Decimal::from(units);
        match charge(price, Billing::PerThousand { units }) {
            Some(charged) => {
                let scaled = charged.to_decimal() * Decimal::ONE_THOUSAND;
                prop_assert!(scaled >= exact);
                if !svc.markup.allow_below_cost {
                    prop_assert!(scaled >= cost * Decimal::from(units));
                }
            }
            // Only amounts beyond a trillion are refused.
            None => prop_assert!(exact / Decimal::ONE_THOUSAND > Money::MAX.to_decimal()),
        }
    }

    #[test]
    fn any_upstream_catalog_builds_without_free_or_broken_services(
        entries in prop::collection::vec(
            (
                0_u8..6,
                -1_000_i64..=100_000_000,
                0_u32..=9,
                0_u64..=2_000,
                0_u64..=2_000,
                0_usize..4,
                0_u8..3,
            ),
            0..12,
        ),
        currency_rate in -2_i64..=3_000_000,
        percent in -12_000_i64..=50_000,
        allow in any::<bool>(),
        own in (prop::option::of(0_u64..=2_000), prop::option::of(0_u64..=2_000)),
    ) {
        let types = [
            ServiceType::Default,
            ServiceType::Package,
            ServiceType::CustomComments,
            ServiceType::Other("Weird".into()),
        ];
        let categories = ["A", "B", "C"];
        let catalog: Vec<UpstreamService> = entries
            .iter()
            .map(|(id, m, s, min, max, ty, cat)| UpstreamService {
                service: UpstreamId::new(&format!("s{id}")).expect("id"),
                name: format!("n{id}"),
                service_type: types[*ty].clone(),
                category: categories[usize::from(*cat)].to_owned(),
                rate: Decimal::new(*m, *s),
                min: *min,
                max: *max,
                refill: m % 2 == 0,
                cancel: m % 3 == 0,
                dripfeed: m % 5 == 0,
                desc: None,
            })
            .collect();
        let mut w = World::new();
        w.providers[0].rate = Decimal::new(currency_rate, 4);
        w.upstream.insert("alpha".into(), catalog);
        w.pricing.default = Markup {
            percent: Some(Decimal::new(percent, 2)),
            allow_below_cost: Some(allow),
            ..Markup::default()
        };
        w.services.push(ServiceDef {
            min: own.0,
            max: own.1,
            ..service(1, &[("alpha", "s0"), ("alpha", "s1"), ("beta", "7"), ("alpha", "s2")])
        });
        w.exposures.push(expose("alpha", Some(&["A", "B"]), None));
        for id in 0..6_u64 {
            w.ids.insert(("alpha".into(), format!("s{id}")), 100 + id);
        }
        let build = w.build();
        prop_assert!(build.missing_ids.is_empty());
        for svc in build.catalog.iter() {
            prop_assert!(svc.rate > Decimal::ZERO, "{:?}", svc);
            prop_assert_eq!(svc.enabled, svc.disabled_reason.is_none());
            if svc.enabled {
                prop_assert!(!svc.routes.is_empty());
                prop_assert!(svc.min <= svc.max);
                prop_assert!(!matches!(svc.service_type, ServiceType::Other(_)));
                prop_assert!(svc.rate != UNPRICED);
                if !svc.markup.allow_below_cost {
                    prop_assert!(svc.rate >= svc.routes[0].cost);
                }
                for route in &svc.routes {
                    prop_assert!(route.cost > Decimal::ZERO);
                    prop_assert!(svc.min >= route.min && svc.max <= route.max);
                }
                prop_assert!(svc.price_for(&CustomerPricing::default()) > Decimal::ZERO);
            }
        }
    }

    #[test]
    fn charges_never_undercharge(
        rate in prop_oneof![
            positive_decimal(1_000_000_000_000, 12),
            (1_i64..=1_000_000).prop_map(Decimal::from),
        ],
        units in 0_u64..=100_000_000,
    ) {
        let exact = rate * Decimal::from(units);
        match charge(rate, Billing::PerThousand { units }) {
            Some(charged) => {
                let scaled = charged.to_decimal() * Decimal::ONE_THOUSAND;
                prop_assert!(scaled >= exact, "{} × 1000 < {} × {}", charged, rate, units);
                // …and by less than one unit of 0.00001.
                let one_unit_more = (charged.to_decimal() - Decimal::new(1, 5)) * Decimal::ONE_THOUSAND;
                prop_assert!(units == 0 || one_unit_more < exact);
            }
            None => prop_assert!(exact / Decimal::ONE_THOUSAND > Money::MAX.to_decimal()),
        }
        let flat = charge(rate, Billing::Flat);
        if let Some(flat) = flat {
            prop_assert!(flat.to_decimal() >= rate);
        }
    }
}
