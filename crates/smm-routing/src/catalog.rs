//! The local catalog: explicit services and exposed upstream catalogs, priced.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smm_wire::ServiceType;
use smm_wire::upstream::{UpstreamId, UpstreamService};

use crate::config::{Exposure, Markup, PricingRules, ProviderDef, ServiceDef};
use crate::pricing::{ResolvedMarkup, UNPRICED};

/// Everything [`build_catalog`] reads.
#[derive(Debug, Clone, Copy)]
pub struct CatalogInput<'a> {
    pub providers: &'a [ProviderDef],
    pub pricing: &'a PricingRules,
    pub services: &'a [ServiceDef],
    pub exposures: &'a [Exposure],
    /// Each provider's last synced catalog, by provider name; a provider missing from the map
    /// has not synced yet.
    pub upstream: &'a BTreeMap<String, Vec<UpstreamService>>,
    /// Stable local ids the store assigned to `(provider, upstream service id)` pairs of
    /// exposed catalogs.
    pub exposure_ids: &'a BTreeMap<(String, String), u64>,
}

/// What [`build_catalog`] produced.
#[derive(Debug, Clone, Default)]
pub struct CatalogBuild {
    pub catalog: Catalog,
    /// Everything dropped, disabled or suspicious, for the log and the admin.
    pub issues: Vec<CatalogIssue>,
    /// `(provider, upstream service id)` pairs of exposed catalogs with no local id yet: have
    /// the store assign ids, then build again. They are not in `catalog`.
    pub missing_ids: Vec<(String, String)>,
}

/// One problem met while building the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogIssue {
    /// The local service concerned, if any.
    pub service: Option<u64>,
    /// The provider concerned, if any.
    pub provider: Option<String>,
    pub message: String,
}

impl fmt::Display for CatalogIssue {
    /// `service 12 (provider alpha): message`, `service 12: message`, `provider alpha: message`
    /// or just the message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.service, &self.provider) {
            (Some(id), Some(p)) => write!(f, "service {id} (provider {p}): {}", self.message),
            (Some(id), None) => write!(f, "service {id}: {}", self.message),
            (None, Some(p)) => write!(f, "provider {p}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// One way to serve a local service: an upstream service at a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub provider: String,
    pub upstream_service: UpstreamId,
    /// The upstream rate, in the provider's currency.
    pub upstream_rate: Decimal,
    /// `upstream_rate × provider rate`, exact, in the reseller's currency; per 1000 units, or per
    /// order for flat-priced types.
    pub cost: Decimal,
    pub min: u64,
    pub max: u64,
    pub refill: bool,
    pub cancel: bool,
    pub dripfeed: bool,
}

/// A service customers see and order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalService {
    pub id: u64,
    pub name: String,
    pub category: String,
    pub service_type: ServiceType,
    /// The list rate (per 1000 units, or per order for flat-priced types), from the first
    /// route's cost; [`UNPRICED`] when the service cannot be priced (then it is disabled).
    pub rate: Decimal,
    pub min: u64,
    pub max: u64,
    pub refill: bool,
    pub cancel: bool,
    pub dripfeed: bool,
    pub desc: Option<String>,
    /// Usable routes in priority order (dropped ones are reported as issues).
    pub routes: Vec<Route>,
    /// The markup the rate was computed with (resolved for the first route's provider).
    pub markup: ResolvedMarkup,
    pub enabled: bool,
    /// Why the service is disabled; `None` when enabled.
    pub disabled_reason: Option<String>,
}

impl LocalService {
    /// The route that sets the price: the first one.
    pub fn primary_route(&self) -> Option<&Route> {
        self.routes.first()
    }

    /// The route through `provider` to `upstream_service`, if the service has it.
    pub fn route(&self, provider: &str, upstream_service: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.provider == provider && r.upstream_service.as_str() == upstream_service)
    }
}

/// Local services by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    services: BTreeMap<u64, LocalService>,
}

impl Catalog {
    pub fn get(&self, id: u64) -> Option<&LocalService> {
        self.services.get(&id)
    }

    /// Every service, enabled or not, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &LocalService> + '_ {
        self.services.values()
    }

    /// The enabled services, in id order (what the `services` action lists).
    pub fn enabled(&self) -> impl Iterator<Item = &LocalService> + '_ {
        self.services.values().filter(|s| s.enabled)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.services.contains_key(&id)
    }
}

impl FromIterator<LocalService> for Catalog {
    /// Services by their id; a later service with the same id replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = LocalService>>(iter: I) -> Self {
        Catalog {
            services: iter.into_iter().map(|s| (s.id, s)).collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Catalog {
    type Item = &'a LocalService;
    type IntoIter = std::collections::btree_map::Values<'a, u64, LocalService>;

    fn into_iter(self) -> Self::IntoIter {
        self.services.values()
    }
}

/// Builds the local catalog from the configuration and the providers' last synced catalogs.
///
/// Explicit services ([`ServiceDef`]):
/// * routes are resolved in priority order; a route whose provider is unknown, disabled, has a
///   rate ≤ 0 or has not synced, or whose upstream service vanished or has no positive rate, is
///   dropped with an issue, and so is a route repeating an earlier one;
/// * the first usable route sets the service type; a later route of another type is dropped
///   with an issue;
/// * name and category default to the first usable route's upstream ones; `desc` is only the
///   configured one (an upstream description may name the upstream panel);
/// * min/max = the intersection of the usable routes' bounds and the service's own; an empty
///   intersection disables the service;
/// * refill/cancel/dripfeed only when every usable route supports it;
/// * the rate is the first usable route's cost with the resolved markup; a later route that
///   costs more than the rate is kept but reported (orders served through it lose money);
/// * a service with no usable route, of a type the gateway cannot take orders for
///   (`ServiceType::Other`), with an empty quantity range or whose markup gives no positive
///   rate is kept but disabled (`enabled = false`, `disabled_reason`, an issue); its rate is
///   [`UNPRICED`] when it has none, never 0;
/// * id 0 and a repeated id are dropped with an issue (the first definition wins).
///
/// Exposures ([`Exposure`]):
/// * every upstream service of the provider (only the listed categories when given, matched
///   exactly after trimming) becomes a local service with the id the store assigned to
///   `(provider, upstream service id)`, with the upstream name, category, type, min, max,
///   refill, cancel, dripfeed and desc, and one route;
/// * pairs without an id go to [`CatalogBuild::missing_ids`]; an id taken by an explicit
///   service (which always wins) or by an earlier exposed entry drops the entry with an issue;
/// * an exposure of an unknown, disabled or not yet synced provider, or repeating an earlier
///   exposure of the same provider, is skipped with an issue; so is an upstream service listed
///   twice in one catalog (the first is kept); a listed category matching nothing is reported;
/// * an upstream service with no positive rate is kept, disabled.
pub fn build_catalog(input: &CatalogInput<'_>) -> CatalogBuild {
    let mut builder = Builder::new(input);
    builder.explicit_services();
    builder.exposures();
    CatalogBuild {
        catalog: Catalog {
            services: builder.services,
        },
        issues: builder.issues,
        missing_ids: builder.missing_ids,
    }
}

/// A service before its bounds, flags, markup and rate are decided.
struct Draft<'a> {
    id: u64,
    name: String,
    category: String,
    service_type: ServiceType,
    desc: Option<String>,
    routes: Vec<Route>,
    /// The service's own bounds (explicit services) or the upstream ones (exposures).
    own_min: Option<u64>,
    own_max: Option<u64>,
    markup: Option<&'a Markup>,
    /// The provider whose markup applies when no route is usable.
    fallback_provider: Option<String>,
    config_enabled: bool,
    /// Why no route is usable, when none is.
    no_route_reason: Option<String>,
}

struct Builder<'a> {
    input: &'a CatalogInput<'a>,
    providers: BTreeMap<&'a str, &'a ProviderDef>,
    services: BTreeMap<u64, LocalService>,
    explicit_ids: BTreeSet<u64>,
    issues: Vec<CatalogIssue>,
    missing_ids: Vec<(String, String)>,
}

impl<'a> Builder<'a> {
    fn new(input: &'a CatalogInput<'a>) -> Self {
        let mut providers = BTreeMap::new();
        for p in input.providers {
            // The first definition of a name wins (`validate` reports duplicates).
            providers.entry(p.name.as_str()).or_insert(p);
        }
        Builder {
            input,
            providers,
            services: BTreeMap::new(),
            explicit_ids: BTreeSet::new(),
            issues: Vec::new(),
            missing_ids: Vec::new(),
        }
    }

    fn issue(&mut self, service: Option<u64>, provider: Option<&str>, message: String) {
        self.issues.push(CatalogIssue {
            service,
            provider: provider.map(str::to_owned),
            message,
        });
    }

    /// The provider if it may route: known, enabled, with a positive rate, synced.
    fn usable_provider(
        &self,
        name: &str,
    ) -> Result<(&'a ProviderDef, &'a [UpstreamService]), String> {
        let provider = self
            .providers
            .get(name)
            .copied()
            .ok_or_else(|| format!("unknown provider {name:?}"))?;
        if !provider.enabled {
            return Err(format!("provider {name:?} is disabled"));
        }
        if provider.rate <= Decimal::ZERO {
            return Err(format!(
                "provider {name:?} has an invalid currency rate {}",
                provider.rate
            ));
        }
        let catalog = self
            .input
            .upstream
            .get(name)
            .ok_or_else(|| format!("provider {name:?} has not synced its catalog yet"))?;
        Ok((provider, catalog.as_slice()))
    }

    /// Any upstream entry for the pair, whatever the provider's state (for names and types of
    /// services with no usable route).
    fn find_upstream(&self, provider: &str, service: &str) -> Option<&'a UpstreamService> {
        let service = service.trim();
        self.input
            .upstream
            .get(provider)?
            .iter()
            .find(|u| u.service.as_str() == service)
    }

    fn explicit_services(&mut self) {
        let defs = self.input.services;
        for def in defs {
            if def.id == 0 {
                self.issue(
                    None,
                    None,
                    "a service with id 0 was skipped: ids start at 1".to_owned(),
                );
                continue;
            }
            if !self.explicit_ids.insert(def.id) {
                self.issue(
                    Some(def.id),
                    None,
                    "defined more than once: the first definition is kept".to_owned(),
                );
                continue;
            }
            let service = self.explicit_service(def);
            self.services.insert(def.id, service);
        }
    }

    fn explicit_service(&mut self, def: &'a ServiceDef) -> LocalService {
        let mut routes: Vec<Route> = Vec::new();
        let mut first: Option<&'a UpstreamService> = None;
        let mut reasons: Vec<String> = Vec::new();
        for (index, rd) in def.routes.iter().enumerate() {
            let label = format!("route {} ({}/{})", index + 1, rd.provider, rd.service);
            let resolved = self.usable_provider(&rd.provider).and_then(|(p, catalog)| {
                let wanted = rd.service.trim();
                let up = catalog
                    .iter()
                    .find(|u| u.service.as_str() == wanted)
                    .ok_or_else(|| {
                        format!(
                            "upstream service {wanted:?} is no longer in {:?}'s catalog",
                            rd.provider
                        )
                    })?;
                make_route(p, up).map(|route| (route, up))
            });
            let (route, up) = match resolved {
                Ok(found) => found,
                Err(why) => {
                    self.issue(
                        Some(def.id),
                        Some(&rd.provider),
                        format!("{label} dropped: {why}"),
                    );
                    reasons.push(why);
                    continue;
                }
            };
            if routes.iter().any(|r| {
                r.provider == route.provider && r.upstream_service == route.upstream_service
            }) {
                self.issue(
                    Some(def.id),
                    Some(&rd.provider),
                    format!("{label} dropped: it repeats an earlier route"),
                );
                continue;
            }
            if let Some(first) = first
                && up.service_type != first.service_type
            {
                let why = format!(
                    "its type {:?} differs from the first usable route's {:?}",
                    up.service_type.as_str(),
                    first.service_type.as_str()
                );
                self.issue(
                    Some(def.id),
                    Some(&rd.provider),
                    format!("{label} dropped: {why}"),
                );
                reasons.push(why);
                continue;
            }
            first.get_or_insert(up);
            routes.push(route);
        }

        let known = first.or_else(|| {
            def.routes
                .iter()
                .find_map(|rd| self.find_upstream(&rd.provider, &rd.service))
        });
        let no_route_reason = routes.is_empty().then(|| {
            if def.routes.is_empty() {
                "no routes configured".to_owned()
            } else {
                format!("no usable route ({})", reasons.join("; "))
            }
        });
        self.finish(Draft {
            id: def.id,
            name: def
                .name
                .clone()
                .or_else(|| known.map(|u| u.name.clone()))
                .unwrap_or_default(),
            category: def
                .category
                .clone()
                .or_else(|| known.map(|u| u.category.clone()))
                .unwrap_or_default(),
            service_type: known.map_or(ServiceType::Default, |u| u.service_type.clone()),
            desc: def.desc.clone(),
            routes,
            own_min: def.min,
            own_max: def.max,
            markup: def.markup.as_ref(),
            fallback_provider: def.routes.first().map(|r| r.provider.clone()),
            config_enabled: def.enabled,
            no_route_reason,
        })
    }

    fn exposures(&mut self) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, exposure) in self.input.exposures.iter().enumerate() {
            let name = exposure.provider.as_str();
            if let Some(earlier) = seen.get(name) {
                self.issue(
                    None,
                    Some(name),
                    format!(
                        "exposures[{index}] skipped: the provider is already exposed by exposures[{earlier}]"
                    ),
                );
                continue;
            }
            seen.insert(name, index);
            match self.usable_provider(name) {
                Ok((provider, catalog)) => self.exposure(exposure, provider, catalog),
                Err(why) => self.issue(None, Some(name), format!("exposure skipped: {why}")),
            }
        }
    }

    fn exposure(
        &mut self,
        exposure: &'a Exposure,
        provider: &'a ProviderDef,
        catalog: &'a [UpstreamService],
    ) {
        let name = provider.name.as_str();
        let filter: Option<Vec<&str>> = exposure
            .categories
            .as_ref()
            .map(|cats| cats.iter().map(|c| c.trim()).collect());
        let mut matched: BTreeSet<&str> = BTreeSet::new();
        let mut listed: BTreeSet<&str> = BTreeSet::new();
        for up in catalog {
            let category = up.category.trim();
            if let Some(filter) = &filter {
                if !filter.contains(&category) {
                    continue;
                }
                matched.insert(category);
            }
            if !listed.insert(up.service.as_str()) {
                self.issue(
                    None,
                    Some(name),
                    format!(
                        "upstream service {:?} is listed twice in the catalog: the first entry is kept",
                        up.service.as_str()
                    ),
                );
                continue;
            }
            let key = (name.to_owned(), up.service.as_str().to_owned());
            let Some(&id) = self.input.exposure_ids.get(&key) else {
                self.missing_ids.push(key);
                continue;
            };
            let label = format!("exposed upstream service {:?}", up.service.as_str());
            if id == 0 {
                self.issue(
                    None,
                    Some(name),
                    format!("{label} skipped: its assigned id is 0"),
                );
                continue;
            }
            if self.explicit_ids.contains(&id) {
                self.issue(
                    Some(id),
                    Some(name),
                    format!("{label} dropped: id {id} belongs to an explicit service"),
                );
                continue;
            }
            if self.services.contains_key(&id) {
                self.issue(
                    Some(id),
                    Some(name),
                    format!("{label} dropped: id {id} is already used by another exposed service"),
                );
                continue;
            }
            let (routes, no_route_reason) = match make_route(provider, up) {
                Ok(route) => (vec![route], None),
                Err(why) => (Vec::new(), Some(why)),
            };
            let service = self.finish(Draft {
                id,
                name: up.name.clone(),
                category: up.category.clone(),
                service_type: up.service_type.clone(),
                desc: up.desc.clone(),
                routes,
                own_min: Some(up.min),
                own_max: Some(up.max),
                markup: exposure.markup.as_ref(),
                fallback_provider: Some(name.to_owned()),
                config_enabled: true,
                no_route_reason,
            });
            self.services.insert(id, service);
        }
        if let Some(filter) = &filter {
            for category in filter {
                if !matched.contains(category) {
                    self.issue(
                        None,
                        Some(name),
                        format!("exposed category {category:?} matches no upstream service"),
                    );
                }
            }
        }
    }

    fn finish(&mut self, draft: Draft<'_>) -> LocalService {
        let provider = draft
            .routes
            .first()
            .map(|r| r.provider.clone())
            .or(draft.fallback_provider);
        let markup =
            self.input
                .pricing
                .resolve(provider.as_deref(), Some(&draft.category), draft.markup);
        let routes = draft.routes;
        let min = routes
            .iter()
            .map(|r| r.min)
            .chain(draft.own_min)
            .max()
            .unwrap_or(0);
        let max = routes
            .iter()
            .map(|r| r.max)
            .chain(draft.own_max)
            .min()
            .unwrap_or(0);
        // No order is placed for nothing (`docs/billing.md`): an upstream listing `min = 0`
        // is shown as 1, the least `add` accepts, so `services` never invites a refused order.
        let min = if max > 0 { min.max(1) } else { min };
        let all = |f: fn(&Route) -> bool| !routes.is_empty() && routes.iter().all(f);
        let (refill, cancel, dripfeed) =
            (all(|r| r.refill), all(|r| r.cancel), all(|r| r.dripfeed));
        let rate = routes.first().and_then(|r| markup.apply(r.cost));

        let reason = if !draft.config_enabled {
            Some("disabled in config".to_owned())
        } else if let Some(why) = draft.no_route_reason {
            Some(why)
        } else if let ServiceType::Other(other) = &draft.service_type {
            Some(format!("service type {other:?} is not supported"))
        } else if min > max {
            Some(format!("empty quantity range: min {min} > max {max}"))
        } else if rate.is_none() {
            Some("the markup gives no positive rate".to_owned())
        } else {
            None
        };
        if let Some(why) = &reason
            && draft.config_enabled
        {
            self.issue(
                Some(draft.id),
                provider.as_deref(),
                format!("disabled: {why}"),
            );
        }
        let rate = rate.unwrap_or(UNPRICED);
        if reason.is_none() && !markup.allow_below_cost {
            for (index, route) in routes.iter().enumerate().skip(1) {
                if route.cost > rate {
                    self.issue(
                        Some(draft.id),
                        Some(&route.provider),
                        format!(
                            "route {} ({}/{}) costs {}, more than the rate {}: orders served through it lose money",
                            index + 1,
                            route.provider,
                            route.upstream_service,
                            route.cost,
                            rate
                        ),
                    );
                }
            }
        }
        LocalService {
            id: draft.id,
            name: draft.name,
            category: draft.category,
            service_type: draft.service_type,
            rate,
            min,
            max,
            refill,
            cancel,
            dripfeed,
            desc: draft.desc,
            routes,
            markup,
            enabled: reason.is_none(),
            disabled_reason: reason,
        }
    }
}

/// The route to `up` at `provider`, or why it is not usable (no positive rate, overflow).
fn make_route(provider: &ProviderDef, up: &UpstreamService) -> Result<Route, String> {
    if up.rate <= Decimal::ZERO {
        return Err(format!(
            "upstream service {:?} has no valid rate ({})",
            up.service.as_str(),
            up.rate
        ));
    }
    let cost = up
        .rate
        .checked_mul(provider.rate)
        .filter(|c| *c > Decimal::ZERO)
        .ok_or_else(|| {
            format!(
                "upstream service {:?}: rate {} × currency rate {} is out of range",
                up.service.as_str(),
                up.rate,
                provider.rate
            )
        })?;
    Ok(Route {
        provider: provider.name.clone(),
        upstream_service: up.service.clone(),
        upstream_rate: up.rate,
        cost: cost.normalize(),
        min: up.min,
        max: up.max,
        refill: up.refill,
        cancel: up.cancel,
        dripfeed: up.dripfeed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteDef;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn provider(name: &str) -> ProviderDef {
        ProviderDef {
            name: name.into(),
            currency: "USD".into(),
            rate: Decimal::ONE,
            enabled: true,
        }
    }

    fn up(id: &str, rate: &str) -> UpstreamService {
        UpstreamService {
            service: UpstreamId::new(id).expect("id"),
            name: format!("Upstream {id}"),
            service_type: ServiceType::Default,
            category: "Cat".into(),
            rate: d(rate),
            min: 10,
            max: 1000,
            refill: true,
            cancel: true,
            dripfeed: true,
            desc: Some("upstream desc".into()),
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

    struct World {
        providers: Vec<ProviderDef>,
        pricing: PricingRules,
        services: Vec<ServiceDef>,
        exposures: Vec<Exposure>,
        upstream: BTreeMap<String, Vec<UpstreamService>>,
        ids: BTreeMap<(String, String), u64>,
    }

    impl World {
        fn new() -> Self {
            World {
                providers: vec![provider("alpha"), provider("beta")],
                pricing: PricingRules::default(),
                services: Vec::new(),
                exposures: Vec::new(),
                upstream: [
                    ("alpha".to_owned(), vec![up("1", "1.00"), up("2", "2.00")]),
                    ("beta".to_owned(), vec![up("7", "0.50")]),
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
    }

    #[test]
    fn an_upstream_min_of_zero_is_listed_as_one() {
        let mut world = World::new();
        for up in world.upstream.get_mut("alpha").expect("alpha") {
            up.min = 0;
        }
        world.services.push(service(5, &[("alpha", "1")]));
        let built = world.build();
        let listed = built.catalog.get(5).expect("service 5");
        assert_eq!((listed.min, listed.max), (1, 1000));
    }

    #[test]
    fn issue_display() {
        let mut issue = CatalogIssue {
            service: Some(12),
            provider: Some("alpha".into()),
            message: "m".into(),
        };
        assert_eq!(issue.to_string(), "service 12 (provider alpha): m");
        issue.provider = None;
        assert_eq!(issue.to_string(), "service 12: m");
        issue.service = None;
        assert_eq!(issue.to_string(), "m");
        issue.provider = Some("beta".into());
        assert_eq!(issue.to_string(), "provider beta: m");
    }

    #[test]
    fn every_kind_of_unusable_provider_drops_the_route() {
        let mut w = World::new();
        w.providers.push(ProviderDef {
            enabled: false,
            ..provider("off")
        });
        w.providers.push(provider("unsynced"));
        w.providers.push(ProviderDef {
            rate: Decimal::ZERO,
            ..provider("zero")
        });
        w.upstream.insert("off".into(), vec![up("1", "1")]);
        w.upstream.insert("zero".into(), vec![up("1", "1")]);
        w.services.push(service(
            5,
            &[
                ("off", "1"),
                ("unsynced", "1"),
                ("ghost", "1"),
                ("zero", "1"),
                ("beta", "7"),
            ],
        ));
        let build = w.build();
        let svc = build.catalog.get(5).expect("kept");
        assert!(svc.enabled, "{:?}", svc.disabled_reason);
        assert_eq!(svc.routes.len(), 1);
        assert_eq!(svc.routes[0].provider, "beta");
        let texts: Vec<String> = build.issues.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 4, "{texts:#?}");
        assert!(texts[0].contains("\"off\" is disabled"), "{texts:#?}");
        assert!(texts[1].contains("has not synced"), "{texts:#?}");
        assert!(
            texts[2].contains("unknown provider \"ghost\""),
            "{texts:#?}"
        );
        assert!(texts[3].contains("invalid currency rate"), "{texts:#?}");
        assert!(texts.iter().all(|t| t.starts_with("service 5 (provider ")));
    }

    #[test]
    fn names_categories_and_flags_follow_the_usable_routes() {
        let mut w = World::new();
        if let Some(list) = w.upstream.get_mut("beta") {
            list[0].refill = false;
            list[0].name = "Beta seven".into();
        }
        w.services.push(service(
            1,
            &[("alpha", "404"), ("beta", "7"), ("alpha", "1")],
        ));
        w.services.push(ServiceDef {
            name: Some("Mine".into()),
            category: Some("My cat".into()),
            desc: Some("my desc".into()),
            ..service(2, &[("alpha", "1")])
        });
        let build = w.build();
        let one = build.catalog.get(1).expect("one");
        assert_eq!(one.name, "Beta seven");
        assert_eq!(one.category, "Cat");
        assert_eq!(one.desc, None, "upstream descriptions are not copied");
        assert!(!one.refill && one.cancel && one.dripfeed);
        assert_eq!(one.rate, d("0.5"));
        let two = build.catalog.get(2).expect("two");
        assert_eq!(
            (
                two.name.as_str(),
                two.category.as_str(),
                two.desc.as_deref()
            ),
            ("Mine", "My cat", Some("my desc"))
        );
        assert!(two.refill && two.cancel && two.dripfeed);
    }

    #[test]
    fn disabled_services_keep_their_place_and_never_price_at_zero() {
        let mut w = World::new();
        w.services.push(ServiceDef {
            enabled: false,
            ..service(1, &[("alpha", "1")])
        });
        w.services.push(service(2, &[]));
        if let Some(list) = w.upstream.get_mut("alpha") {
            list[1].service_type = ServiceType::Other("Fancy".into());
        }
        w.services.push(service(3, &[("alpha", "2")]));
        w.services.push(ServiceDef {
            markup: Some(Markup {
                percent: Some(d("-100")),
                allow_below_cost: Some(true),
                ..Markup::default()
            }),
            ..service(4, &[("alpha", "1")])
        });
        let build = w.build();
        let c = &build.catalog;
        let one = c.get(1).expect("1");
        assert!(!one.enabled);
        assert_eq!(one.disabled_reason.as_deref(), Some("disabled in config"));
        assert_eq!(
            one.rate,
            d("1"),
            "a config-disabled service is still priced"
        );
        let two = c.get(2).expect("2");
        assert_eq!(two.disabled_reason.as_deref(), Some("no routes configured"));
        assert_eq!(two.rate, UNPRICED);
        let three = c.get(3).expect("3");
        assert!(
            three
                .disabled_reason
                .as_deref()
                .is_some_and(|r| r.contains("\"Fancy\" is not supported"))
        );
        let four = c.get(4).expect("4");
        assert_eq!(
            four.disabled_reason.as_deref(),
            Some("the markup gives no positive rate")
        );
        assert_eq!(four.rate, UNPRICED);
        assert!(c.iter().all(|s| s.rate > Decimal::ZERO));
        assert_eq!(c.enabled().count(), 0);
        // Config-disabled services raise no issue; the others one each.
        assert_eq!(build.issues.len(), 3, "{:#?}", build.issues);
    }

    #[test]
    fn bad_ids_and_repeated_routes() {
        let mut w = World::new();
        w.services.push(service(0, &[("alpha", "1")]));
        w.services
            .push(service(3, &[("alpha", "1"), ("alpha", "1")]));
        w.services.push(ServiceDef {
            name: Some("second".into()),
            ..service(3, &[("alpha", "2")])
        });
        let build = w.build();
        assert_eq!(build.catalog.len(), 1);
        let three = build.catalog.get(3).expect("3");
        assert_eq!(three.routes.len(), 1);
        assert_eq!(three.routes[0].upstream_service.as_str(), "1");
        assert_eq!(build.issues.len(), 3, "{:#?}", build.issues);
    }

    #[test]
    fn losing_fallback_routes_are_reported() {
        let mut w = World::new();
        w.services
            .push(service(1, &[("beta", "7"), ("alpha", "2")]));
        let build = w.build();
        let svc = build.catalog.get(1).expect("1");
        assert!(svc.enabled);
        assert_eq!(svc.rate, d("0.5"));
        assert_eq!(svc.routes[1].cost, d("2"));
        assert_eq!(build.issues.len(), 1);
        assert!(build.issues[0].message.contains("lose money"));
    }

    #[test]
    fn catalog_collections() {
        let mut w = World::new();
        w.services.push(service(9, &[("alpha", "1")]));
        w.services.push(service(4, &[("ghost", "1")]));
        let catalog = w.build().catalog;
        assert_eq!(catalog.len(), 2);
        assert!(!catalog.is_empty());
        assert!(catalog.contains(4) && !catalog.contains(5));
        let ids: Vec<u64> = catalog.iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 9]);
        let ids: Vec<u64> = (&catalog).into_iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 9]);
        let enabled: Vec<u64> = catalog.enabled().map(|s| s.id).collect();
        assert_eq!(enabled, [9]);
        let again: Catalog = catalog.iter().cloned().collect();
        assert_eq!(again, catalog);
        assert!(Catalog::default().is_empty());
        let svc = catalog.get(9).expect("9");
        assert!(svc.route("alpha", "1").is_some());
        assert!(svc.route("alpha", "2").is_none());
        assert_eq!(
            svc.primary_route().map(|r| r.provider.as_str()),
            Some("alpha")
        );
    }

    #[test]
    fn exposure_edge_cases() {
        let mut w = World::new();
        if let Some(list) = w.upstream.get_mut("alpha") {
            list.push(up("1", "9.99")); // listed twice
            list.push(up("3", "0")); // no rate
        }
        w.exposures = vec![
            Exposure {
                provider: "alpha".into(),
                categories: None,
                markup: None,
            },
            Exposure {
                provider: "alpha".into(),
                categories: None,
                markup: None,
            },
            Exposure {
                provider: "ghost".into(),
                categories: None,
                markup: None,
            },
        ];
        w.ids = [
            (("alpha".to_owned(), "1".to_owned()), 100),
            (("alpha".to_owned(), "2".to_owned()), 0),
            (("alpha".to_owned(), "3".to_owned()), 102),
        ]
        .into();
        let build = w.build();
        let c = &build.catalog;
        assert_eq!(c.get(100).map(|s| s.rate), Some(d("1")));
        let zero = c.get(102).expect("zero-rate service kept");
        assert!(!zero.enabled);
        assert_eq!(zero.rate, UNPRICED);
        assert_eq!(c.len(), 2);
        assert!(build.missing_ids.is_empty());
        let texts: Vec<String> = build.issues.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 5, "{texts:#?}");
        assert!(texts[0].contains("assigned id is 0"));
        assert!(texts[1].contains("listed twice"));
        assert!(texts[2].contains("no valid rate"));
        assert!(texts[3].contains("already exposed by exposures[0]"));
        assert!(texts[4].contains("unknown provider"));
    }
}
