//! Providers: health, cooldown, balance, last sync and catalog size; owners add, edit, test
//! ("call it now"), disable and enable them. A key typed here is stored in a file readable by
//! the gateway's user only ([`config_file::store_provider_key`]), referenced from the config
//! by path, and never shown again or logged; `key_env` and `key_file` references keep working.

use std::time::Instant;

use askama::Template;
use axum::extract::Path;
use rust_decimal::Decimal;
use serde::Deserialize;
use smm_store::AdminRole;

use super::config::{finish, save};
use super::session::{Change, CsrfForm, Session, Toggle};
use super::view::{Chrome, PageResult, render, time_or_dash};
use crate::ops::config_file::{self, KeySource, ProviderChange};
use crate::ops::overview::{ProviderLine, providers};

#[derive(Debug)]
struct ProviderCard {
    line: ProviderLine,
    url: String,
    /// Where the key comes from, never the key: `file /path`, `environment VAR`.
    key_source: String,
    rate: String,
    low_balance: String,
    last_sync: String,
    catalog_size: usize,
    retired: bool,
}

#[derive(Template)]
#[template(path = "console/providers.html")]
struct ProvidersPage {
    chrome: Chrome,
    is_owner: bool,
    currency: String,
    cards: Vec<ProviderCard>,
}

/// Every provider with its health and numbers; the forms for owners.
pub async fn list(session: Session) -> PageResult {
    let app = session.app();
    let runtime = app.runtime();
    let settings = &runtime.settings;
    let cards = providers(app)
        .into_iter()
        .map(|line| {
            let configured = settings.provider(&line.name);
            ProviderCard {
                url: configured.map(|p| p.url.clone()).unwrap_or_default(),
                key_source: configured.map_or_else(String::new, |p| {
                    match (&p.key_file, &p.key_env, &p.key_inline) {
                        (Some(file), _, _) => format!("file {}", file.display()),
                        (None, Some(var), _) => format!("environment {var}"),
                        (None, None, Some(_)) => "set at start".into(),
                        (None, None, None) => "none".into(),
                    }
                }),
                rate: configured.map_or_else(String::new, |p| p.rate.normalize().to_string()),
                low_balance: configured
                    .and_then(|p| p.low_balance)
                    .map(|l| l.normalize().to_string())
                    .unwrap_or_default(),
                last_sync: time_or_dash(line.last_sync),
                catalog_size: app.upstream_service_count(&line.name),
                retired: runtime.retired.contains(&line.name),
                line,
            }
        })
        .collect();
    let page = ProvidersPage {
        chrome: Chrome::new(&session, "providers"),
        is_owner: session.user.role.allows(AdminRole::Owner),
        currency: settings.server.currency.clone(),
        cards,
    };
    Ok(render(&page, &session))
}

#[derive(Debug, Deserialize)]
pub struct ProviderForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    /// A key typed in: stored in a file, never shown again. Blank on an edit keeps the key.
    #[serde(default)]
    key: String,
    /// Or the name of an environment variable holding it.
    #[serde(default)]
    key_env: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    rate: String,
    #[serde(default)]
    low_balance: String,
}

impl CsrfForm for ProviderForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl ProviderForm {
    /// The change the form asks for; a typed key is stored first (its file is returned so a
    /// refused change can remove it).
    fn change(
        &self,
        session: &Session,
        name: &str,
    ) -> Result<(ProviderChange, Option<std::path::PathBuf>), String> {
        let decimal = |label: &str, text: &str| -> Result<Option<Decimal>, String> {
            match text.trim() {
                "" => Ok(None),
                text => text
                    .parse::<Decimal>()
                    .map(Some)
                    .map_err(|_| format!("{label} must be a decimal number")),
            }
        };
        let blank = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        config_file::check_provider_name(name)?;
        // The key goes wherever the URL points: a new URL needs the key typed again, so nobody
        // can send the stored key to a server of their own.
        let current = session
            .app()
            .settings()
            .provider(name)
            .map(|p| p.url.clone());
        let new_url = blank(&self.url);
        if let (Some(current), Some(new)) = (&current, &new_url)
            && current != new
            && self.key.trim().is_empty()
            && self.key_env.trim().is_empty()
        {
            return Err(
                "type the provider's key again to change its URL: the key is sent wherever the \
                 URL points"
                    .into(),
            );
        }
        let var = self.key_env.trim();
        if !var.is_empty() && !provider_key_variable(var) {
            return Err(
                "the key's environment variable is 1 to 64 capital letters, digits or _, \
                 starting with a letter, and not one of the gateway's own SMM_GATEWAY__ settings"
                    .into(),
            );
        }
        let mut stored = None;
        let key = match (self.key.trim(), self.key_env.trim()) {
            ("", "") => None,
            ("", var) => Some(KeySource::Env(var.to_owned())),
            (key, _) => {
                let file = config_file::store_provider_key(session.app(), name, key)
                    .map_err(|p| p.join("; "))?;
                stored = Some(file.clone());
                Some(KeySource::File(file))
            }
        };
        Ok((
            ProviderChange {
                url: new_url,
                key,
                currency: blank(&self.currency),
                rate: decimal("rate", &self.rate)?,
                low_balance: Some(decimal("low balance", &self.low_balance)?),
                enabled: None,
            },
            stored,
        ))
    }
}

/// A variable name the console accepts for a provider key: `ALPHA_API_KEY`, never one of the
/// gateway's own settings (`SMM_GATEWAY__DATABASE__URL` holds a password).
fn provider_key_variable(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(crate::config::ENV_PREFIX)
}

/// Adds a provider; its catalog is synced as soon as the reload applied it.
pub async fn add(change: Change<ProviderForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "add providers")?;
    let name = change.form.name.trim().to_owned();
    apply(session, &name, &change.form, true).await
}

/// Changes a provider's URL, key, currency, rate or low-balance warning.
pub async fn edit(Path(name): Path<String>, change: Change<ProviderForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "change providers")?;
    apply(session, &name, &change.form, false).await
}

async fn apply(session: &Session, name: &str, form: &ProviderForm, new: bool) -> PageResult {
    let (provider, stored) = match form.change(session, name) {
        Ok(change) => change,
        Err(e) => return Ok(session.see_other("/providers", Err(e))),
    };
    let plan = config_file::plan(session.app(), |doc| {
        if new {
            config_file::add_provider(doc, name, &provider)
        } else {
            config_file::edit_provider(doc, name, &provider)
        }
    })
    .await;
    let what = format!(
        "provider {name} {}{}",
        if new { "added" } else { "changed" },
        if stored.is_some() {
            " (new key stored)"
        } else {
            ""
        }
    );
    let saved = save(session, &what, plan).await;
    // A refused change leaves no key behind; a change to apply by hand names the stored file,
    // which must stay.
    if let Some(file) = &stored
        && matches!(saved, super::config::Saved::Refused(_))
    {
        config_file::discard_provider_key(file);
    }
    Ok(finish(session, "/providers", saved))
}

/// Disables (no new orders, no syncs; open orders keep reconciling) or enables a provider.
pub async fn enabled(Path(name): Path<String>, change: Change<Toggle>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "disable or enable providers")?;
    let on = change.form.on();
    let plan = config_file::plan(session.app(), |doc| {
        config_file::edit_provider(
            doc,
            &name,
            &ProviderChange {
                enabled: Some(on),
                ..ProviderChange::default()
            },
        )
    })
    .await;
    let what = format!(
        "provider {name} {}",
        if on { "enabled" } else { "disabled" }
    );
    Ok(finish(
        session,
        "/providers",
        save(session, &what, plan).await,
    ))
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    csrf: String,
}

impl CsrfForm for TestForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Calls the provider now (`balance`, then `services`) and reports what it answered; a good
/// answer refreshes the synced catalogs.
pub async fn test(Path(name): Path<String>, change: Change<TestForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Operator, "test providers")?;
    let app = session.app();
    let Some(provider) = app.provider(&name) else {
        return Ok(session.see_other("/providers", Err(format!("no provider {name}"))));
    };
    let started = Instant::now();
    let balance = provider.client.balance().await;
    let services = provider.client.services().await;
    let took = started.elapsed().as_millis();
    let result = match (balance, services) {
        (Ok(balance), Ok(services)) => {
            for issue in app.sync_catalog().await {
                tracing::warn!("{issue}");
            }
            Ok(format!(
                "{name} answered in {took} ms: balance {} {}, {} services",
                balance.balance.normalize(),
                balance.currency.as_deref().unwrap_or(""),
                services.services.len()
            ))
        }
        (Err(e), _) | (_, Err(e)) => Err(format!("{name} failed after {took} ms: {e}")),
    };
    Ok(session.see_other("/providers", result))
}
