//! Configuration checks: every problem at once, each with the path of the value at fault.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use smm_wire::UpstreamId;

use crate::config::{Exposure, Markup, PricingRules, ProviderDef, ServiceDef};
use crate::pricing::MAX_ROUND_UP;

/// One configuration problem. `Display`: `path: message`, e.g.
/// `services[3].routes[1].provider: unknown provider "gamma"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigProblem {
    /// Where the value sits, in TOML terms: `providers[0].rate`, `services[3].routes[1].provider`,
    /// `pricing.categories."Instagram Likes".percent`. Indexes count from 0.
    pub path: String,
    pub message: String,
}

/// Checks the routing configuration and returns every problem found (empty = valid):
///
/// * providers: empty or duplicate names, empty currency, rate ≤ 0;
/// * markups (default, per provider, per category, per service, per exposure): percent below
///   -100, negative fixed or min_rate, round_up above 10; per-provider rules naming an unknown
///   provider;
/// * services: id 0, duplicate ids, no routes, unknown route providers, empty or malformed
///   upstream service ids, a route repeated within a service, min > max;
/// * exposures: unknown providers, a provider exposed twice, an empty category list.
pub fn validate(
    providers: &[ProviderDef],
    pricing: &PricingRules,
    services: &[ServiceDef],
    exposures: &[Exposure],
) -> Vec<ConfigProblem> {
    let mut out = Problems(Vec::new());

    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if p.name.trim().is_empty() {
            out.push(format!("{at}.name"), "must not be empty");
        } else if let Some(first) = names.get(p.name.as_str()) {
            out.push(
                format!("{at}.name"),
                format!(
                    "duplicate provider name {:?} (first at providers[{first}])",
                    p.name
                ),
            );
        } else {
            names.insert(&p.name, i);
        }
        if p.currency.trim().is_empty() {
            out.push(format!("{at}.currency"), "must not be empty");
        }
        if p.rate <= Decimal::ZERO {
            out.push(
                format!("{at}.rate"),
                format!("must be greater than 0 (got {})", p.rate),
            );
        }
    }
    let known = |name: &str| names.contains_key(name);

    markup(&mut out, "pricing.default", &pricing.default);
    for (name, m) in &pricing.providers {
        let at = format!("pricing.providers.{}", key(name));
        if !known(name) {
            out.push(at.clone(), format!("unknown provider {name:?}"));
        }
        markup(&mut out, &at, m);
    }
    for (name, m) in &pricing.categories {
        markup(&mut out, &format!("pricing.categories.{}", key(name)), m);
    }

    let mut ids: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        if s.id == 0 {
            out.push(format!("{at}.id"), "must be at least 1");
        } else if s.id >= crate::EXPOSURE_ID_BASE {
            out.push(
                format!("{at}.id"),
                format!(
                    "{} is in the range of exposed services' ids ({} and up): explicit ids \
                     must be below it",
                    s.id,
                    crate::EXPOSURE_ID_BASE
                ),
            );
        } else if let Some(first) = ids.get(&s.id) {
            out.push(
                format!("{at}.id"),
                format!("duplicate service id {} (first at services[{first}])", s.id),
            );
        } else {
            ids.insert(s.id, i);
        }
        if s.routes.is_empty() {
            out.push(format!("{at}.routes"), "at least one route is needed");
        }
        let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (j, r) in s.routes.iter().enumerate() {
            let rat = format!("{at}.routes[{j}]");
            if !known(&r.provider) {
                out.push(
                    format!("{rat}.provider"),
                    format!("unknown provider {:?}", r.provider),
                );
            }
            let service = r.service.trim();
            if service.is_empty() {
                out.push(format!("{rat}.service"), "must not be empty");
            } else if UpstreamId::new(service).is_none() {
                out.push(
                    format!("{rat}.service"),
                    format!(
                        "{:?} is not an upstream service id (1..=64 letters, digits, '-' or '_')",
                        r.service
                    ),
                );
            } else if let Some(first) = seen.get(&(r.provider.as_str(), service)) {
                out.push(rat.clone(), format!("repeats {at}.routes[{first}]"));
            } else {
                seen.insert((&r.provider, service), j);
            }
        }
        if let (Some(min), Some(max)) = (s.min, s.max)
            && min > max
        {
            out.push(
                format!("{at}.min"),
                format!("min {min} is greater than max {max}"),
            );
        }
        if let Some(m) = &s.markup {
            markup(&mut out, &format!("{at}.markup"), m);
        }
    }

    let mut exposed: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in exposures.iter().enumerate() {
        let at = format!("exposures[{i}]");
        if !known(&e.provider) {
            out.push(
                format!("{at}.provider"),
                format!("unknown provider {:?}", e.provider),
            );
        }
        if let Some(first) = exposed.get(e.provider.as_str()) {
            out.push(
                format!("{at}.provider"),
                format!(
                    "provider {:?} is already exposed by exposures[{first}]",
                    e.provider
                ),
            );
        } else {
            exposed.insert(&e.provider, i);
        }
        if let Some(categories) = &e.categories {
            if categories.is_empty() {
                out.push(
                    format!("{at}.categories"),
                    "an empty list exposes nothing (omit it to expose every category)",
                );
            }
            for (j, c) in categories.iter().enumerate() {
                if c.trim().is_empty() {
                    out.push(format!("{at}.categories[{j}]"), "must not be empty");
                }
            }
        }
        if let Some(m) = &e.markup {
            markup(&mut out, &format!("{at}.markup"), m);
        }
    }

    out.0
}

struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, path: String, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path,
            message: message.into(),
        });
    }
}

fn markup(out: &mut Problems, at: &str, m: &Markup) {
    if let Some(percent) = m.percent
        && percent < -Decimal::ONE_HUNDRED
    {
        out.push(
            format!("{at}.percent"),
            format!("must be at least -100 (got {percent})"),
        );
    }
    if let Some(fixed) = m.fixed
        && fixed < Decimal::ZERO
    {
        out.push(
            format!("{at}.fixed"),
            format!("must not be negative (got {fixed})"),
        );
    }
    if let Some(min_rate) = m.min_rate
        && min_rate < Decimal::ZERO
    {
        out.push(
            format!("{at}.min_rate"),
            format!("must not be negative (got {min_rate})"),
        );
    }
    if let Some(decimals) = m.round_up
        && decimals > MAX_ROUND_UP
    {
        out.push(
            format!("{at}.round_up"),
            format!("must be at most {MAX_ROUND_UP} decimals (got {decimals})"),
        );
    }
}

/// A map key as TOML writes it: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteDef;

    fn provider(name: &str) -> ProviderDef {
        ProviderDef {
            name: name.into(),
            currency: "USD".into(),
            rate: Decimal::ONE,
            enabled: true,
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

    #[test]
    fn a_valid_config_has_no_problems() {
        let providers = [provider("alpha"), provider("beta")];
        let pricing = PricingRules {
            default: Markup {
                percent: Some(Decimal::from(30)),
                round_up: Some(10),
                ..Markup::default()
            },
            providers: [("beta".to_owned(), Markup::default())].into(),
            categories: [("Any thing".to_owned(), Markup::default())].into(),
        };
        let services = [
            service(1, &[("alpha", "1"), ("beta", "1")]),
            ServiceDef {
                min: Some(5),
                max: Some(5),
                markup: Some(Markup {
                    percent: Some(-Decimal::ONE_HUNDRED),
                    ..Markup::default()
                }),
                ..service(2, &[("alpha", "x_2-b")])
            },
        ];
        let exposures = [Exposure {
            provider: "beta".into(),
            categories: Some(vec!["Likes".into()]),
            markup: None,
        }];
        assert_eq!(
            validate(&providers, &pricing, &services, &exposures),
            Vec::new()
        );
    }

    #[test]
    fn explicit_ids_stay_below_the_exposure_range() {
        // Issue #12 (7): exposures get ids from EXPOSURE_ID_BASE up; an explicit id there is
        // refused with its location instead of colliding with one later.
        let providers = [provider("alpha")];
        let services = [
            service(999_999, &[("alpha", "1")]),
            service(crate::EXPOSURE_ID_BASE, &[("alpha", "2")]),
        ];
        let problems = validate(&providers, &PricingRules::default(), &services, &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "services[1].id");
        assert!(
            problems[0].message.contains("1000000 and up"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn keys_are_quoted_when_toml_would() {
        assert_eq!(key("alpha-1_x"), "alpha-1_x");
        assert_eq!(key("Instagram Likes"), "\"Instagram Likes\"");
        assert_eq!(key("a.b"), "\"a.b\"");
        assert_eq!(key(""), "\"\"");
    }

    #[test]
    fn display_is_path_colon_message() {
        let p = ConfigProblem {
            path: "providers[0].rate".into(),
            message: "must be greater than 0 (got 0)".into(),
        };
        assert_eq!(
            p.to_string(),
            "providers[0].rate: must be greater than 0 (got 0)"
        );
    }
}
