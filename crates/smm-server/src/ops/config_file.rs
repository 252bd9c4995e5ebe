//! Changes to the configuration file, for the console (issue #13): pricing rules, services,
//! imports from a provider's catalog, providers, or the whole text.
//!
//! A change is made in two steps. [`plan`] reads the file the gateway was started from, applies
//! the change to its TOML document with `toml_edit` (comments, order and layout of everything
//! else stay as the reseller wrote them), and checks the result exactly as a reload would (the
//! defaults, then the new text, then the environment; every problem at once). The plan's
//! candidate settings feed previews. [`commit`] then writes the new text atomically (a temporary
//! file in the same directory, synced, renamed over the old one, permissions kept) and applies
//! it through the existing reload path, which audits it; if the reload still refuses it, the old
//! text is put back. A file that changed since it was read is not overwritten. A file that
//! cannot be written (a read-only ConfigMap, a file without write permission) changes nothing:
//! the caller gets the new text to apply by hand.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_decimal::Decimal;
use smm_routing::{EXPOSURE_ID_BASE, Markup};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::app::{App, ReloadReport, now_ms};
use crate::config::Settings;

/// A checked change, not written yet.
#[derive(Debug)]
pub struct Plan {
    pub path: PathBuf,
    /// The file's text when it was read (empty when it did not exist).
    pub old_text: String,
    pub text: String,
    /// What the gateway would run with: defaults, `text`, the environment. Valid.
    pub candidate: Settings,
}

/// What [`commit`] did.
#[derive(Debug)]
pub enum Committed {
    /// Written and reloaded.
    Applied { path: PathBuf, report: ReloadReport },
    /// Valid, but the file cannot be written here: nothing changed; apply `text` to `path`.
    NotWritable {
        path: PathBuf,
        reason: String,
        text: String,
    },
}

/// Every problem of a refused change: nothing was written.
pub type Problems = Vec<String>;

/// The config file's path and text (empty when it does not exist yet), and whether this
/// process may write it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
    /// `Err(why)` when the console's changes cannot be written back.
    pub writable: Result<(), String>,
}

/// The file the running configuration came from.
pub fn read(app: &App) -> Result<ConfigFile, Problems> {
    let path = source(app)?;
    let text = read_text(&path)?;
    let writable = writable(&path);
    Ok(ConfigFile {
        path,
        text,
        writable,
    })
}

fn source(app: &App) -> Result<PathBuf, Problems> {
    let path = app.config_path().ok_or_else(|| {
        vec![
            "this gateway runs from in-memory settings (the demo, a test): there is no config \
             file to change; start it with `smm-gateway serve --config FILE`"
                .to_owned(),
        ]
    })?;
    // A symlinked file (a ConfigMap's ..data link) is written where it points, not replaced.
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

fn read_text(path: &Path) -> Result<String, Problems> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(vec![format!("cannot read {}: {e}", path.display())]),
    }
}

/// Applies `change` to the config file's document and checks the result.
pub async fn plan(
    app: &App,
    change: impl FnOnce(&mut DocumentMut) -> Result<(), String>,
) -> Result<Plan, Problems> {
    let path = source(app)?;
    let old_text = read_text(&path)?;
    let mut doc = parse(&path, &old_text)?;
    change(&mut doc).map_err(|e| vec![e])?;
    check(app, path, old_text, doc.to_string()).await
}

/// The whole file replaced by `text` (the configuration page), checked.
pub async fn plan_text(app: &App, text: String) -> Result<Plan, Problems> {
    let path = source(app)?;
    let old_text = read_text(&path)?;
    parse(&path, &text)?;
    check(app, path, old_text, text).await
}

fn parse(path: &Path, text: &str) -> Result<DocumentMut, Problems> {
    text.parse::<DocumentMut>()
        .map_err(|e| vec![format!("{} is not valid TOML: {e}", path.display())])
}

async fn check(app: &App, path: PathBuf, old_text: String, text: String) -> Result<Plan, Problems> {
    let candidate = Settings::load_str(&text).map_err(|e| vec![e.to_string()])?;
    let mut problems: Problems = candidate
        .validate()
        .iter()
        .map(ToString::to_string)
        .collect();
    problems.extend(app.service_id_conflicts(&candidate).await);
    if problems.is_empty() {
        Ok(Plan {
            path,
            old_text,
            text,
            candidate,
        })
    } else {
        Err(problems)
    }
}

/// Writes `plan` and reloads; audited as `config.edit` (what) and `config.reload` (the
/// sections before and after). `what` says what the change was, for the audit log.
pub async fn commit(
    app: &Arc<App>,
    actor: &str,
    what: &str,
    plan: Plan,
) -> Result<Committed, Problems> {
    let _one_at_a_time = app.config_edits.lock().await;
    let Plan {
        path,
        old_text,
        text,
        ..
    } = plan;
    if read_text(&path)? != old_text {
        return Err(vec![format!(
            "{} changed since it was read: look at it again and redo the change",
            path.display()
        )]);
    }
    if let Err(reason) = writable(&path) {
        return Ok(Committed::NotWritable { path, reason, text });
    }
    let path_existed = path.exists();
    if let Err(e) = write_atomically(&path, &text) {
        return match e.kind() {
            // A file bind-mounted on its own cannot be renamed over (busy, another device).
            std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::ReadOnlyFilesystem
            | std::io::ErrorKind::ResourceBusy
            | std::io::ErrorKind::CrossesDevices => Ok(Committed::NotWritable {
                path,
                reason: e.to_string(),
                text,
            }),
            _ => Err(vec![format!("cannot write {}: {e}", path.display())]),
        };
    }
    match app.reload_from_source(actor).await {
        Ok(report) => {
            if let Err(e) = app
                .store
                .audit(
                    actor,
                    "config.edit",
                    &path.display().to_string(),
                    None,
                    Some(what),
                    now_ms(),
                )
                .await
            {
                tracing::error!(error = %e, "config edit applied but its audit row failed");
            }
            Ok(Committed::Applied { path, report })
        }
        Err(problems) => {
            let restored = if old_text.is_empty() && !path_existed {
                std::fs::remove_file(&path)
            } else {
                write_atomically(&path, &old_text)
            };
            if let Err(e) = restored {
                tracing::error!(file = %path.display(), error = %e, "cannot restore the config file after a refused reload");
            }
            Err(problems)
        }
    }
}

/// `Err(why)` when the file (or, for a new file, its directory) cannot be written.
fn writable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().readonly() => Err(format!(
            "{} is read-only (a ConfigMap or a file without write permission)",
            path.display()
        )),
        Ok(_) => Ok(()),
        Err(_) => match std::fs::metadata(directory(path)) {
            Ok(meta) if meta.permissions().readonly() => {
                Err(format!("{} is read-only", directory(path).display()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{}: {e}", directory(path).display())),
        },
    }
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A temporary file next to `path`, synced, then renamed over it: a crash leaves the old file
/// or the new one, never half of one. The old file's permissions are kept.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = directory(path);
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Stores a provider key typed into the console: a new file `secrets/NAME-MILLIS.key` next to
/// the config file, readable by this user only (directory 0700, file 0600). The config then
/// points at it with `key_file`; the key itself is never in the config, never logged, never
/// shown again. Returns the file's absolute path.
pub fn store_provider_key(app: &App, provider: &str, key: &str) -> Result<PathBuf, Problems> {
    let path = source(app)?;
    let dir = std::path::absolute(directory(&path))
        .map_err(|e| vec![format!("cannot locate the config directory: {e}")])?
        .join("secrets");
    let file = dir.join(format!("{provider}-{}.key", now_ms()));
    let written = (|| {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&file)?;
        out.write_all(key.as_bytes())?;
        out.sync_all()
    })();
    written.map_err(|e| vec![format!("cannot store the key under {}: {e}", dir.display())])?;
    Ok(file)
}

/// Removes a key file [`store_provider_key`] wrote for a change that did not go through.
pub fn discard_provider_key(file: &Path) {
    let _ = std::fs::remove_file(file);
}

// ---- the changes -------------------------------------------------------------------------

/// Which markup rule a change sets: `pricing.default`, `pricing.providers.NAME`,
/// `pricing.categories.NAME` or an explicit service's own `markup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkupScope {
    Default,
    Provider(String),
    Category(String),
    Service(u64),
}

impl MarkupScope {
    /// `default`, `provider:NAME`, `category:NAME` or `service:ID`.
    pub fn parse(text: &str) -> Result<MarkupScope, String> {
        let text = text.trim();
        if text == "default" {
            return Ok(MarkupScope::Default);
        }
        let (kind, name) = text
            .split_once(':')
            .ok_or_else(|| format!("unknown markup scope {text:?}"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err("the markup scope needs a name".into());
        }
        match kind {
            "provider" => Ok(MarkupScope::Provider(name.into())),
            "category" => Ok(MarkupScope::Category(name.into())),
            "service" => name
                .parse()
                .map(MarkupScope::Service)
                .map_err(|_| format!("{name:?} is not a service id")),
            _ => Err(format!("unknown markup scope {text:?}")),
        }
    }

    pub fn key(&self) -> String {
        match self {
            MarkupScope::Default => "default".into(),
            MarkupScope::Provider(name) => format!("provider:{name}"),
            MarkupScope::Category(name) => format!("category:{name}"),
            MarkupScope::Service(id) => format!("service:{id}"),
        }
    }

    /// Where it lives in the config file, for messages and the audit log.
    pub fn label(&self) -> String {
        match self {
            MarkupScope::Default => "pricing.default".into(),
            MarkupScope::Provider(name) => format!("pricing.providers.{name}"),
            MarkupScope::Category(name) => format!("pricing.categories.{name:?}"),
            MarkupScope::Service(id) => format!("the markup of service {id}"),
        }
    }

    /// The rule as the running settings have it (empty when none).
    pub fn current(&self, settings: &Settings) -> Markup {
        match self {
            MarkupScope::Default => Some(settings.pricing.default.clone()),
            MarkupScope::Provider(name) => settings.pricing.providers.get(name).cloned(),
            MarkupScope::Category(name) => settings.pricing.categories.get(name).cloned(),
            MarkupScope::Service(id) => settings
                .services
                .iter()
                .find(|s| s.id == *id)
                .and_then(|s| s.markup.clone()),
        }
        .unwrap_or_default()
    }
}

/// Sets the markup rule at `scope` to exactly `markup` (unset fields are removed, so they fall
/// back to the less specific rules).
pub fn set_markup(
    doc: &mut DocumentMut,
    scope: &MarkupScope,
    markup: &Markup,
) -> Result<(), String> {
    let rule: &mut dyn TableLike = match scope {
        MarkupScope::Default => table_at(doc.as_table_mut(), &["pricing", "default"])?,
        MarkupScope::Provider(name) => {
            table_at(doc.as_table_mut(), &["pricing", "providers", name])?
        }
        MarkupScope::Category(name) => {
            table_at(doc.as_table_mut(), &["pricing", "categories", name])?
        }
        MarkupScope::Service(id) => {
            let service = explicit_service(doc, *id)?;
            let item = service
                .entry("markup")
                .or_insert(Item::Value(Value::InlineTable(InlineTable::new())));
            item.as_table_like_mut()
                .ok_or_else(|| format!("service {id}: markup is not a table"))?
        }
    };
    let fields: [(&str, Option<Value>); 5] = [
        ("percent", markup.percent.map(decimal)),
        ("fixed", markup.fixed.map(decimal)),
        ("min_rate", markup.min_rate.map(decimal)),
        (
            "round_up",
            markup.round_up.map(|r| Value::from(i64::from(r))),
        ),
        ("allow_below_cost", markup.allow_below_cost.map(Value::from)),
    ];
    for (key, value) in fields {
        match value {
            Some(value) => {
                rule.insert(key, Item::Value(value));
            }
            None => {
                rule.remove(key);
            }
        }
    }
    Ok(())
}

/// Enables or disables an explicit service (`enabled = false`; enabling removes the line).
pub fn set_service_enabled(doc: &mut DocumentMut, id: u64, enabled: bool) -> Result<(), String> {
    let service = explicit_service(doc, id)?;
    if enabled {
        service.remove("enabled");
    } else {
        service.insert("enabled", Item::Value(Value::from(false)));
    }
    Ok(())
}

/// One upstream service to import as a local service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPick {
    pub upstream_service: String,
    /// Shown name; `None`: the upstream's.
    pub name: Option<String>,
    /// Category; `None`: the upstream's.
    pub category: Option<String>,
}

/// Appends one explicit `[[services]]` entry per pick, routed to `provider`, with `markup`
/// (when given) as the services' own markup. Ids are the next free ones above every id in
/// `taken` and in the file (below [`EXPOSURE_ID_BASE`]). Returns the new ids, in pick order.
pub fn import_services(
    doc: &mut DocumentMut,
    provider: &str,
    picks: &[ImportPick],
    markup: Option<&Markup>,
    taken: &BTreeSet<u64>,
) -> Result<Vec<u64>, String> {
    if picks.is_empty() {
        return Err("pick at least one service to import".into());
    }
    let mut used = taken.clone();
    used.extend(service_ids_in(doc));
    let mut next = used
        .iter()
        .copied()
        .filter(|id| *id < EXPOSURE_ID_BASE)
        .max()
        .unwrap_or(0)
        + 1;
    let mut ids = Vec::with_capacity(picks.len());
    let services = doc
        .as_table_mut()
        .entry("services")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    for pick in picks {
        while used.contains(&next) {
            next += 1;
        }
        if next >= EXPOSURE_ID_BASE {
            return Err("no explicit service id is left below 1000000".into());
        }
        let mut entry = InlineTable::new();
        entry.insert(
            "id",
            Value::from(i64::try_from(next).map_err(|e| e.to_string())?),
        );
        if let Some(name) = &pick.name {
            entry.insert("name", Value::from(name.as_str()));
        }
        if let Some(category) = &pick.category {
            entry.insert("category", Value::from(category.as_str()));
        }
        let mut route = InlineTable::new();
        route.insert("provider", Value::from(provider));
        route.insert("service", Value::from(pick.upstream_service.as_str()));
        let mut routes = Array::new();
        routes.push(Value::InlineTable(route));
        entry.insert("routes", Value::Array(routes));
        if let Some(markup) = markup {
            entry.insert("markup", Value::InlineTable(markup_inline(markup)));
        }
        match services {
            Item::ArrayOfTables(tables) => tables.push(entry.into_table()),
            Item::Value(Value::Array(array)) => array.push(Value::InlineTable(entry)),
            _ => return Err("`services` in the config file is not a list of services".into()),
        }
        used.insert(next);
        ids.push(next);
    }
    Ok(ids)
}

/// Where a provider's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file (the console stores typed keys as one, see [`store_provider_key`]).
    File(PathBuf),
    /// An environment variable's name.
    Env(String),
}

/// A provider as the console's form describes it. For an edit, `None` keeps a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderChange {
    pub url: Option<String>,
    pub key: Option<KeySource>,
    pub currency: Option<String>,
    pub rate: Option<Decimal>,
    /// `Some(None)` removes the warning.
    pub low_balance: Option<Option<Decimal>>,
    pub enabled: Option<bool>,
}

/// Adds `[[providers]]` entry `name` (refused when it exists; `url` and `key` are needed).
pub fn add_provider(
    doc: &mut DocumentMut,
    name: &str,
    change: &ProviderChange,
) -> Result<(), String> {
    check_provider_name(name)?;
    if provider_entry(doc, name).is_some() {
        return Err(format!("a provider named {name:?} exists already"));
    }
    if change.url.is_none() || change.key.is_none() {
        return Err("a new provider needs its API URL and its key".into());
    }
    let mut entry = Table::new();
    entry.insert("name", toml_edit::value(name));
    apply_provider(&mut entry, change);
    let providers = doc
        .as_table_mut()
        .entry("providers")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    match providers {
        Item::ArrayOfTables(tables) => tables.push(entry),
        Item::Value(Value::Array(array)) => {
            array.push(Value::InlineTable(entry.into_inline_table()))
        }
        _ => return Err("`providers` in the config file is not a list of providers".into()),
    }
    Ok(())
}

/// Changes `[[providers]]` entry `name` as `change` says.
pub fn edit_provider(
    doc: &mut DocumentMut,
    name: &str,
    change: &ProviderChange,
) -> Result<(), String> {
    let entry = provider_entry(doc, name).ok_or_else(|| {
        format!("provider {name:?} is not in the config file (it may come from the environment)")
    })?;
    apply_provider(entry, change);
    Ok(())
}

fn apply_provider(entry: &mut dyn TableLike, change: &ProviderChange) {
    if let Some(url) = &change.url {
        entry.insert("url", toml_edit::value(url.as_str()));
    }
    match &change.key {
        Some(KeySource::File(file)) => {
            entry.remove("key_env");
            entry.insert("key_file", toml_edit::value(file.display().to_string()));
        }
        Some(KeySource::Env(var)) => {
            entry.remove("key_file");
            entry.insert("key_env", toml_edit::value(var.as_str()));
        }
        None => {}
    }
    if let Some(currency) = &change.currency {
        entry.insert("currency", toml_edit::value(currency.as_str()));
    }
    if let Some(rate) = change.rate {
        entry.insert("rate", Item::Value(decimal(rate)));
    }
    match change.low_balance {
        Some(Some(low)) => {
            entry.insert("low_balance", Item::Value(decimal(low)));
        }
        Some(None) => {
            entry.remove("low_balance");
        }
        None => {}
    }
    match change.enabled {
        Some(true) => {
            entry.remove("enabled");
        }
        Some(false) => {
            entry.insert("enabled", toml_edit::value(false));
        }
        None => {}
    }
}

/// Provider names go into file names and URLs: letters, digits, `-` and `_`, 1 to 32.
pub fn check_provider_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("a provider name is 1 to 32 letters, digits, - or _".into())
    }
}

fn decimal(d: Decimal) -> Value {
    // Strings, as config/default.toml writes them: exact, whatever the TOML reader does with
    // floats.
    Value::from(d.normalize().to_string())
}

fn markup_inline(markup: &Markup) -> InlineTable {
    let mut table = InlineTable::new();
    if let Some(p) = markup.percent {
        table.insert("percent", decimal(p));
    }
    if let Some(f) = markup.fixed {
        table.insert("fixed", decimal(f));
    }
    if let Some(m) = markup.min_rate {
        table.insert("min_rate", decimal(m));
    }
    if let Some(r) = markup.round_up {
        table.insert("round_up", Value::from(i64::from(r)));
    }
    if let Some(a) = markup.allow_below_cost {
        table.insert("allow_below_cost", Value::from(a));
    }
    table
}

/// The table at `path` under `root`, created (as an implicit table) where missing.
fn table_at<'d>(root: &'d mut Table, path: &[&str]) -> Result<&'d mut dyn TableLike, String> {
    let mut here: &mut dyn TableLike = root;
    for (depth, key) in path.iter().enumerate() {
        let item = here.entry(key).or_insert_with(|| {
            let mut table = Table::new();
            table.set_implicit(depth + 1 < path.len());
            Item::Table(table)
        });
        here = item.as_table_like_mut().ok_or_else(|| {
            format!(
                "{} in the config file is not a table",
                path[..=depth].join(".")
            )
        })?;
    }
    Ok(here)
}

/// Entries of a list of tables (`[[key]]` or `key = [{...}]`).
fn entries<'d>(doc: &'d mut DocumentMut, key: &str) -> Vec<&'d mut dyn TableLike> {
    match doc.as_table_mut().get_mut(key) {
        Some(Item::ArrayOfTables(tables)) => {
            tables.iter_mut().map(|t| t as &mut dyn TableLike).collect()
        }
        Some(Item::Value(Value::Array(array))) => array
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut().map(|t| t as &mut dyn TableLike))
            .collect(),
        _ => Vec::new(),
    }
}

fn explicit_service(doc: &mut DocumentMut, id: u64) -> Result<&mut dyn TableLike, String> {
    entries(doc, "services")
        .into_iter()
        .find(|s| {
            s.get("id")
                .and_then(Item::as_integer)
                .and_then(|i| u64::try_from(i).ok())
                == Some(id)
        })
        .ok_or_else(|| {
            format!(
                "service {id} is not an explicit service of the config file: an exposed \
                 service takes its exposure's and provider's markup, and is enabled with them"
            )
        })
}

fn service_ids_in(doc: &mut DocumentMut) -> Vec<u64> {
    entries(doc, "services")
        .into_iter()
        .filter_map(|s| s.get("id").and_then(Item::as_integer))
        .filter_map(|i| u64::try_from(i).ok())
        .collect()
}

fn provider_entry<'d>(doc: &'d mut DocumentMut, name: &str) -> Option<&'d mut dyn TableLike> {
    entries(doc, "providers")
        .into_iter()
        .find(|p| p.get("name").and_then(Item::as_str) == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# the reseller's own notes
[pricing.default]
percent = "30"   # thirty
round_up = 4

[[providers]]
name = "alpha"   # the cheap one
url = "http://127.0.0.1:1/api/v2"
key_env = "ALPHA_KEY"

[[services]]
id = 7
routes = [{ provider = "alpha", service = "1" }]
"#;

    fn doc() -> DocumentMut {
        FILE.parse().expect("test file parses")
    }

    #[test]
    fn markup_changes_keep_comments_and_remove_cleared_fields() {
        let mut doc = doc();
        let markup = Markup {
            percent: Some(Decimal::new(45, 0)),
            ..Markup::default()
        };
        set_markup(&mut doc, &MarkupScope::Default, &markup).expect("default");
        set_markup(&mut doc, &MarkupScope::Service(7), &markup).expect("service");
        set_markup(
            &mut doc,
            &MarkupScope::Category("Instagram Likes".into()),
            &markup,
        )
        .expect("category");
        let text = doc.to_string();
        assert!(text.contains("# the reseller's own notes"), "{text}");
        assert!(text.contains("# the cheap one"), "{text}");
        assert!(text.contains("percent = \"45\""), "{text}");
        assert!(
            !text.contains("round_up = 4"),
            "cleared field removed: {text}"
        );
        let settings = Settings::load_str(&text).expect("loads");
        assert_eq!(settings.pricing.default.percent, Some(Decimal::new(45, 0)));
        // Removed from the file, the field falls back to the compiled-in defaults.
        assert_eq!(settings.pricing.default.round_up, Some(4));
        assert_eq!(
            settings.pricing.categories["Instagram Likes"].percent,
            Some(Decimal::new(45, 0))
        );
        assert_eq!(
            settings.services[0].markup.as_ref().and_then(|m| m.percent),
            Some(Decimal::new(45, 0))
        );
        assert!(
            set_markup(&mut doc, &MarkupScope::Service(8), &markup)
                .unwrap_err()
                .contains("not an explicit service")
        );
    }

    #[test]
    fn imports_take_the_next_free_ids_and_disable_round_trips() {
        let mut doc = doc();
        let taken: BTreeSet<u64> = [7, 9, EXPOSURE_ID_BASE + 3].into();
        let picks = [
            ImportPick {
                upstream_service: "4".into(),
                name: Some("Likes \"fast\"".into()),
                category: None,
            },
            ImportPick {
                upstream_service: "5".into(),
                name: None,
                category: Some("Views".into()),
            },
        ];
        let markup = Markup {
            percent: Some(Decimal::new(125, 1)),
            ..Markup::default()
        };
        let ids =
            import_services(&mut doc, "alpha", &picks, Some(&markup), &taken).expect("import");
        assert_eq!(ids, [10, 11]);
        set_service_enabled(&mut doc, 10, false).expect("disable");
        let settings = Settings::load_str(&doc.to_string()).expect("loads");
        let imported = &settings.services[1];
        assert_eq!(imported.id, 10);
        assert_eq!(imported.name.as_deref(), Some("Likes \"fast\""));
        assert_eq!(imported.routes[0].service, "4");
        assert_eq!(
            imported.markup.as_ref().and_then(|m| m.percent),
            Some(Decimal::new(125, 1))
        );
        assert!(!imported.enabled);
        assert_eq!(settings.services[2].category.as_deref(), Some("Views"));
        set_service_enabled(&mut doc, 10, true).expect("enable");
        assert!(
            Settings::load_str(&doc.to_string())
                .expect("loads")
                .services[1]
                .enabled
        );
        assert!(import_services(&mut doc, "alpha", &[], None, &taken).is_err());
    }

    #[test]
    fn providers_are_added_and_edited_with_key_references_only() {
        let mut doc = doc();
        let change = ProviderChange {
            url: Some("http://127.0.0.1:2/api/v2".into()),
            key: Some(KeySource::File("/etc/smm/secrets/beta.key".into())),
            rate: Some(Decimal::new(9, 1)),
            low_balance: Some(Some(Decimal::new(50, 0))),
            ..ProviderChange::default()
        };
        add_provider(&mut doc, "beta", &change).expect("add");
        assert!(
            add_provider(&mut doc, "beta", &change)
                .unwrap_err()
                .contains("exists")
        );
        assert!(add_provider(&mut doc, "no/slash", &change).is_err());
        edit_provider(
            &mut doc,
            "alpha",
            &ProviderChange {
                key: Some(KeySource::File("/k".into())),
                enabled: Some(false),
                ..ProviderChange::default()
            },
        )
        .expect("edit");
        let text = doc.to_string();
        assert!(text.contains("# the cheap one"), "{text}");
        assert!(
            !text.contains("ALPHA_KEY"),
            "the env reference is replaced: {text}"
        );
        let settings = Settings::load_str(&text).expect("loads");
        let beta = settings.provider("beta").expect("beta");
        assert_eq!(beta.rate, Decimal::new(9, 1));
        assert_eq!(beta.low_balance, Some(Decimal::new(50, 0)));
        let alpha = settings.provider("alpha").expect("alpha");
        assert!(!alpha.enabled);
        assert_eq!(alpha.key_file.as_deref(), Some(Path::new("/k")));
        assert!(edit_provider(&mut doc, "gamma", &change).is_err());
    }

    #[test]
    fn scopes_parse_and_print() {
        for scope in [
            MarkupScope::Default,
            MarkupScope::Provider("alpha".into()),
            MarkupScope::Category("Instagram Likes".into()),
            MarkupScope::Service(12),
        ] {
            assert_eq!(MarkupScope::parse(&scope.key()), Ok(scope));
        }
        assert!(MarkupScope::parse("service:x").is_err());
        assert!(MarkupScope::parse("provider:").is_err());
        assert!(MarkupScope::parse("whatever").is_err());
    }
}
