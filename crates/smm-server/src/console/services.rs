//! Services and pricing: the local catalog with each route's cost, the price, the margin and
//! the route's health; markup rules edited with a preview of every price they change (and a
//! refusal when a price would be clamped to cost); services enabled and disabled; services
//! imported from a provider's synced catalog. Changes go to the config file
//! ([`crate::ops::config_file`]); reading is for every role, changing for owners.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Path, Query};
use rust_decimal::Decimal;
use serde::Deserialize;
use smm_routing::{Catalog, LocalService, Markup};
use smm_store::AdminRole;

use super::config::{Saved, finish, refusal, save};
use super::session::{Change, CsrfForm, Session, Toggle};
use super::view::{Chrome, ConsoleError, PageResult, render};
use crate::app::App;
use crate::ops::config_file::{self, ImportPick, MarkupScope};

/// Upstream services listed at most on the import page (narrow with the search).
const IMPORT_ROWS: usize = 500;

#[derive(Debug)]
struct RouteCell {
    provider: String,
    upstream: String,
    cost: String,
    healthy: bool,
}

#[derive(Debug)]
struct ServiceRow {
    id: u64,
    name: String,
    category: String,
    kind: String,
    routes: Vec<RouteCell>,
    rate: String,
    margin: String,
    /// The price is at or below the primary route's cost.
    thin: bool,
    enabled: bool,
    reason: String,
    explicit: bool,
}

#[derive(Debug)]
struct PreviewRow {
    id: u64,
    name: String,
    cost: String,
    old_rate: String,
    new_rate: String,
    margin: String,
    /// `clamped` (the markup asks for less than cost; priced at cost), `loss` (below cost,
    /// allowed), or empty.
    flag: &'static str,
}

#[derive(Debug, Default)]
struct MarkupFields {
    percent: String,
    fixed: String,
    min_rate: String,
    round_up: String,
    allow_below_cost: bool,
}

impl MarkupFields {
    fn of(markup: &Markup) -> MarkupFields {
        let text = |d: Option<Decimal>| d.map(|d| d.normalize().to_string()).unwrap_or_default();
        MarkupFields {
            percent: text(markup.percent),
            fixed: text(markup.fixed),
            min_rate: text(markup.min_rate),
            round_up: markup.round_up.map(|r| r.to_string()).unwrap_or_default(),
            allow_below_cost: markup.allow_below_cost.unwrap_or(false),
        }
    }
}

#[derive(Template)]
#[template(path = "console/services.html")]
struct ServicesPage {
    chrome: Chrome,
    is_owner: bool,
    currency: String,
    rows: Vec<ServiceRow>,
    /// `(key, label)` of every rule the form can edit.
    scopes: Vec<(String, String)>,
    scope: String,
    scope_label: String,
    fields: MarkupFields,
    /// After "Preview": the prices the rule would change.
    preview: Option<Vec<PreviewRow>>,
    clamped: usize,
    losses: usize,
    providers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ServicesQuery {
    #[serde(default)]
    scope: Option<String>,
}

/// The catalog and the markup editor (prefilled with the rule `?scope=` names).
pub async fn list(session: Session, Query(query): Query<ServicesQuery>) -> PageResult {
    let scope = match query.scope.as_deref().map(MarkupScope::parse) {
        None => MarkupScope::Default,
        Some(Ok(scope)) => scope,
        Some(Err(e)) => return Err(ConsoleError::BadRequest(e)),
    };
    let fields = MarkupFields::of(&scope.current(&session.app().settings()));
    Ok(render(&page(&session, &scope, fields, None), &session))
}

fn page(
    session: &Session,
    scope: &MarkupScope,
    fields: MarkupFields,
    preview: Option<Vec<PreviewRow>>,
) -> ServicesPage {
    let app = session.app();
    let settings = app.settings();
    let catalog = app.catalog();
    let explicit: BTreeSet<u64> = settings.services.iter().map(|s| s.id).collect();
    let rows = catalog
        .iter()
        .map(|s| service_row(app, s, explicit.contains(&s.id)))
        .collect();
    let mut scopes = vec![(
        "default".to_owned(),
        "Everything (pricing.default)".to_owned(),
    )];
    for p in &settings.providers {
        let scope = MarkupScope::Provider(p.name.clone());
        scopes.push((scope.key(), format!("Provider {}", p.name)));
    }
    let categories: BTreeSet<&str> = catalog.iter().map(|s| s.category.trim()).collect();
    for category in categories {
        let scope = MarkupScope::Category(category.to_owned());
        scopes.push((scope.key(), format!("Category {category}")));
    }
    for def in &settings.services {
        let name = catalog.get(def.id).map_or("", |s| s.name.as_str());
        let scope = MarkupScope::Service(def.id);
        scopes.push((scope.key(), format!("Service {} {name}", def.id)));
    }
    let (clamped, losses) = preview.as_ref().map_or((0, 0), |rows| {
        (
            rows.iter().filter(|r| r.flag == "clamped").count(),
            rows.iter().filter(|r| r.flag == "loss").count(),
        )
    });
    ServicesPage {
        chrome: Chrome::new(session, "services"),
        is_owner: session.user.role.allows(AdminRole::Owner),
        currency: settings.server.currency.clone(),
        rows,
        scopes,
        scope: scope.key(),
        scope_label: scope.label(),
        fields,
        preview,
        clamped,
        losses,
        providers: settings.providers.iter().map(|p| p.name.clone()).collect(),
    }
}

fn service_row(app: &App, s: &LocalService, explicit: bool) -> ServiceRow {
    let cost = s.primary_route().map(|r| r.cost);
    ServiceRow {
        id: s.id,
        name: s.name.clone(),
        category: s.category.clone(),
        kind: s.service_type.as_str().to_owned(),
        routes: s
            .routes
            .iter()
            .map(|r| RouteCell {
                provider: r.provider.clone(),
                upstream: r.upstream_service.as_str().to_owned(),
                cost: r.cost.normalize().to_string(),
                healthy: app.provider_available(&r.provider),
            })
            .collect(),
        rate: if s.enabled || s.rate > Decimal::ZERO {
            s.rate.normalize().to_string()
        } else {
            "—".into()
        },
        margin: cost.map_or_else(|| "—".into(), |c| margin(c, s.rate)),
        thin: cost.is_some_and(|c| s.rate <= c),
        enabled: s.enabled,
        reason: s.disabled_reason.clone().unwrap_or_default(),
        explicit,
    }
}

/// `(rate − cost) / rate` as a percentage, one decimal.
fn margin(cost: Decimal, rate: Decimal) -> String {
    if rate <= Decimal::ZERO {
        return "—".into();
    }
    let percent = (rate - cost)
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|m| m.checked_div(rate))
        .map_or(Decimal::ZERO, |m| m.round_dp(1));
    format!("{} %", percent.normalize())
}

/// Every service whose price `next` changes, and every one priced at or below cost.
fn preview(current: &Catalog, next: &Catalog) -> Vec<PreviewRow> {
    next.iter()
        .filter_map(|s| {
            let cost = s.primary_route()?.cost;
            let old = current.get(s.id).map(|o| o.rate);
            let asked = cost
                .checked_mul(s.markup.percent)
                .and_then(|m| m.checked_div(Decimal::ONE_HUNDRED))
                .and_then(|m| m.checked_add(cost))
                .and_then(|m| m.checked_add(s.markup.fixed))
                .unwrap_or(cost);
            let flag = if asked < cost && !s.markup.allow_below_cost {
                "clamped"
            } else if s.rate < cost {
                "loss"
            } else {
                ""
            };
            (old != Some(s.rate) || !flag.is_empty()).then(|| PreviewRow {
                id: s.id,
                name: s.name.clone(),
                cost: cost.normalize().to_string(),
                old_rate: old.map_or_else(|| "—".into(), |r| r.normalize().to_string()),
                new_rate: s.rate.normalize().to_string(),
                margin: margin(cost, s.rate),
                flag,
            })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct MarkupForm {
    csrf: String,
    scope: String,
    #[serde(default)]
    percent: String,
    #[serde(default)]
    fixed: String,
    #[serde(default)]
    min_rate: String,
    #[serde(default)]
    round_up: String,
    #[serde(default)]
    allow_below_cost: Option<String>,
    /// `preview` or `save`.
    #[serde(default)]
    intent: String,
}

impl CsrfForm for MarkupForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl MarkupForm {
    fn fields(&self) -> MarkupFields {
        MarkupFields {
            percent: self.percent.trim().to_owned(),
            fixed: self.fixed.trim().to_owned(),
            min_rate: self.min_rate.trim().to_owned(),
            round_up: self.round_up.trim().to_owned(),
            allow_below_cost: self.allow_below_cost.is_some(),
        }
    }

    fn markup(&self) -> Result<Markup, String> {
        fn amount(name: &str, text: &str) -> Result<Option<Decimal>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse::<Decimal>()
                .map(Some)
                .map_err(|_| format!("{name} must be a decimal number, like 25 or 0.5"))
        }
        let round_up = match self.round_up.trim() {
            "" => None,
            text => Some(
                text.parse::<u32>()
                    .ok()
                    .filter(|r| *r <= 10)
                    .ok_or("round up must be a whole number of decimals from 0 to 10")?,
            ),
        };
        Ok(Markup {
            percent: amount("percent", &self.percent)?,
            fixed: amount("fixed", &self.fixed)?,
            min_rate: amount("minimum rate", &self.min_rate)?,
            round_up,
            allow_below_cost: self.allow_below_cost.is_some().then_some(true),
        })
    }
}

/// Previews a markup rule (every price it changes), or saves it; a rule that would price a
/// service at cost because it asks for less is refused unless "allow below cost" is ticked.
pub async fn markup(change: Change<MarkupForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "change prices")?;
    let form = &change.form;
    let scope = MarkupScope::parse(&form.scope).map_err(ConsoleError::BadRequest)?;
    let back = format!("/services?scope={}", urlencode(&scope.key()));
    let markup = match form.markup() {
        Ok(markup) => markup,
        Err(e) => return Ok(session.see_other(&back, Err(e))),
    };
    let app = session.app();
    let plan = config_file::plan(app, |doc| config_file::set_markup(doc, &scope, &markup)).await;
    let plan = match plan {
        Ok(plan) => plan,
        Err(problems) => return Ok(session.see_other(&back, Err(refusal(&problems)))),
    };
    let next = app
        .preview_catalog(&plan.candidate)
        .await
        .map_err(ConsoleError::Unavailable)?;
    let rows = preview(&app.catalog(), &next);
    let clamped = rows.iter().filter(|r| r.flag == "clamped").count();
    if form.intent != "save" || clamped > 0 {
        let mut page = page(session, &scope, form.fields(), Some(rows));
        if form.intent == "save" {
            page.chrome.flash = Some(super::session::Flash {
                error: true,
                text: format!(
                    "Not saved: {clamped} service(s) would be priced at cost, below what the \
                     rule asks. Raise the markup, or tick \"allow below cost\" to sell at a \
                     loss knowingly."
                ),
            });
        }
        return Ok(render(&page, session));
    }
    let losses = rows.iter().filter(|r| r.flag == "loss").count();
    let changed = rows.len();
    let what = format!("markup {} set ({changed} price(s) changed)", scope.label());
    let saved = save(session, &what, Ok(plan)).await;
    let saved = match saved {
        Saved::Applied(message) if losses > 0 => Saved::Applied(format!(
            "{message}. WARNING: {losses} service(s) now sell below cost"
        )),
        other => other,
    };
    Ok(finish(session, &back, saved))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Enables or disables an explicit service.
pub async fn enabled(Path(id): Path<u64>, change: Change<Toggle>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "enable or disable services")?;
    let on = change.form.on();
    let plan = config_file::plan(session.app(), |doc| {
        config_file::set_service_enabled(doc, id, on)
    })
    .await;
    let what = format!("service {id} {}", if on { "enabled" } else { "disabled" });
    Ok(finish(
        session,
        "/services",
        save(session, &what, plan).await,
    ))
}

#[derive(Debug)]
struct UpstreamRow {
    id: String,
    name: String,
    category: String,
    kind: String,
    rate: String,
    min: u64,
    max: u64,
    /// Local services already routed to it.
    imported_as: String,
}

#[derive(Template)]
#[template(path = "console/import.html")]
struct ImportPage {
    chrome: Chrome,
    providers: Vec<String>,
    provider: String,
    q: String,
    rows: Vec<UpstreamRow>,
    total: usize,
    shown_all: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

/// A provider's synced catalog, to pick services from.
pub async fn import_page(session: Session, Query(query): Query<ImportQuery>) -> PageResult {
    session.require(AdminRole::Owner, "import services")?;
    let app = session.app();
    let settings = app.settings();
    let providers: Vec<String> = settings.providers.iter().map(|p| p.name.clone()).collect();
    let provider = query
        .provider
        .filter(|p| providers.contains(p))
        .or_else(|| providers.first().cloned())
        .unwrap_or_default();
    let q = query.q.unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let mut routed: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for def in &settings.services {
        for route in def.routes.iter().filter(|r| r.provider == provider) {
            routed
                .entry(route.service.clone())
                .or_default()
                .push(def.id);
        }
    }
    let upstream = app.upstream_services(&provider);
    let matching: Vec<_> = upstream
        .iter()
        .filter(|s| {
            needle.is_empty()
                || s.name.to_lowercase().contains(&needle)
                || s.category.to_lowercase().contains(&needle)
                || s.service.as_str() == needle
        })
        .collect();
    let rows = matching
        .iter()
        .take(IMPORT_ROWS)
        .map(|s| UpstreamRow {
            id: s.service.as_str().to_owned(),
            name: s.name.clone(),
            category: s.category.clone(),
            kind: s.service_type.as_str().to_owned(),
            rate: s.rate.normalize().to_string(),
            min: s.min,
            max: s.max,
            imported_as: routed
                .get(s.service.as_str())
                .map(|ids| {
                    ids.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        })
        .collect();
    let page = ImportPage {
        chrome: Chrome::new(&session, "services"),
        providers,
        provider,
        q,
        total: matching.len(),
        shown_all: matching.len() <= IMPORT_ROWS,
        rows,
    };
    Ok(render(&page, &session))
}

/// The import form: repeated `pick` fields, `name.ID` and `category.ID` overrides.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

impl CsrfForm for Pairs {
    fn csrf(&self) -> &str {
        self.get("csrf").unwrap_or("")
    }
}

/// Adds the picked upstream services as explicit local services with their own markup; they
/// are in v2 `services` as soon as the reload rebuilt the catalog.
pub async fn import(change: Change<Pairs>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "import services")?;
    let form = &change.form;
    let provider = form.get("provider").unwrap_or("").to_owned();
    let back = format!("/services/import?provider={}", urlencode(&provider));
    let app = session.app();
    let upstream = app.upstream_services(&provider);
    let mut picks = Vec::new();
    for (key, id) in &form.0 {
        if key != "pick" {
            continue;
        }
        if !upstream.iter().any(|s| s.service.as_str() == id) {
            return Ok(session.see_other(
                &back,
                Err(format!(
                    "provider {provider} has no service {id} in its synced catalog"
                )),
            ));
        }
        picks.push(ImportPick {
            upstream_service: id.clone(),
            name: form.get(&format!("name.{id}")).map(str::to_owned),
            category: form.get(&format!("category.{id}")).map(str::to_owned),
        });
    }
    let markup = match form.get("percent") {
        None => None,
        Some(text) => match text.parse::<Decimal>() {
            Ok(percent) => Some(Markup {
                percent: Some(percent),
                ..Markup::default()
            }),
            Err(_) => {
                return Ok(session.see_other(
                    &back,
                    Err("markup must be a decimal percentage, like 35".into()),
                ));
            }
        },
    };
    let taken: BTreeSet<u64> = app.catalog().iter().map(|s| s.id).collect();
    let mut ids = Vec::new();
    let plan = config_file::plan(app, |doc| {
        ids = config_file::import_services(doc, &provider, &picks, markup.as_ref(), &taken)?;
        Ok(())
    })
    .await;
    let what = format!(
        "imported {} service(s) of {provider} as {}",
        picks.len(),
        ids.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let saved = save(session, &what, plan).await;
    let to = if matches!(saved, Saved::Applied(_)) {
        "/services".to_owned()
    } else {
        back
    };
    Ok(finish(session, &to, saved))
}
