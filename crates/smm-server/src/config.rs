//! Layered configuration: `config/default.toml` (compiled in) → an optional local file →
//! environment variables `SMM_GATEWAY__SECTION__KEY`. [`Settings::validate`] reports every
//! problem at once, each with its location; `smm-gateway config check` prints them and start-up
//! refuses an invalid config with the same report.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smm_provider_client::{ProviderConfig, RateLimit, RequestFormat, SecretKey};
use smm_routing::{ConfigProblem, Exposure, PricingRules, ProviderDef, ServiceDef};
use smm_wire::{OrderStatus, StatusCodes};

pub mod notifications;
pub use notifications::{AlertSettings, WebhookDeliverySettings};

/// The compiled-in defaults (`config/default.toml`).
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

/// The local config file read when `--config` is not given, if it exists.
pub const LOCAL_CONFIG: &str = "config/local.toml";

/// The environment prefix: `SMM_GATEWAY__SERVER__LISTEN`.
pub const ENV_PREFIX: &str = "SMM_GATEWAY";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub database: DatabaseSettings,
    pub forwarder: ForwarderSettings,
    pub sync: SyncSettings,
    pub reconciler: ReconcilerSettings,
    #[serde(default)]
    pub console: ConsoleSettings,
    #[serde(default)]
    pub webhooks: WebhookDeliverySettings,
    #[serde(default)]
    pub alerts: AlertSettings,
    /// `[routing]`: the default routing policy and the quality policy's knobs (issue #15).
    #[serde(default)]
    pub routing: smm_routing::RoutingSettings,
    #[serde(default)]
    pub pricing: PricingRules,
    #[serde(default)]
    pub providers: Vec<ProviderSettings>,
    #[serde(default)]
    pub services: Vec<ServiceDef>,
    #[serde(default)]
    pub exposures: Vec<Exposure>,
}

/// The upper bound of `server.key_cache_ttl_secs`: the longest a key rotation, a suspension or
/// a price change can go unseen anywhere.
pub const MAX_KEY_CACHE_TTL_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub currency: String,
    pub body_limit_bytes: usize,
    pub rate_limit_per_minute: u32,
    /// How long an instance may answer from its cache of key lookups and custom rates (0 is
    /// read as 1, at most [`MAX_KEY_CACHE_TTL_SECS`]). On PostgreSQL every instance forgets a
    /// customer as soon as a change to them commits (`LISTEN/NOTIFY`); on SQLite a change made
    /// by another process (the CLI) is seen within this lifetime.
    pub key_cache_ttl_secs: u64,
    /// How long `add` waits for the first forwarding outcome before answering (0 = answer at
    /// once). When every route definitively refuses within that time, the customer gets the
    /// upstream's error instead of an order id (the order is canceled and refunded).
    #[serde(default)]
    pub add_wait_ms: u64,
    /// How long a client may take to send a whole request head (from connecting, or from the
    /// previous reply on a kept-alive connection) before the connection is closed: the bound on
    /// slow-header clients. Both listeners; takes effect at restart.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// How long a client may take to send a request body once its head arrived; after that the
    /// request fails (a v2 error) and the connection is closed. Takes effect at restart.
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
}

fn default_header_read_timeout_secs() -> u64 {
    10
}

fn default_body_read_timeout_secs() -> u64 {
    30
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// The admin listener: health, readiness, metrics, admin API. Keep it private.
    pub listen: String,
    /// Where the bearer token comes from: an environment variable, or a file.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Reload the configuration when its file changes, checking every this many seconds
    /// (0 = only on SIGHUP or `POST /admin/v1/config/reload`).
    #[serde(default)]
    pub watch_config_secs: u64,
}

impl AdminSettings {
    /// The token, if configured and readable. Never logged.
    pub fn token(&self) -> Option<String> {
        let raw = match (&self.token_env, &self.token_file) {
            (Some(var), _) => std::env::var(var).ok()?,
            (None, Some(path)) => std::fs::read_to_string(path).ok()?,
            (None, None) => return None,
        };
        let token = raw.trim().to_owned();
        (token.len() >= 16).then_some(token)
    }
}

/// The web console on the admin listener (`/`): sessions and login protection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Mark the session cookie `Secure`: set it when the console is reached over TLS (behind
    /// the reverse proxy of `deploy/`), so the browser never sends it in clear.
    pub secure_cookies: bool,
    /// A session ends this many hours after login.
    pub session_hours: u64,
    /// This many wrong passwords in a row lock the account ...
    pub max_failed_logins: u32,
    /// ... for this many minutes (on every instance: the count is in the database).
    pub lockout_minutes: u64,
    /// Login attempts allowed per username per minute on one instance, right or wrong (the
    /// lockout above counts wrong ones across instances).
    pub login_attempts_per_minute: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            secure_cookies: false,
            session_hours: 12,
            max_failed_logins: 5,
            lockout_minutes: 15,
            login_attempts_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderSettings {
    pub batch: u32,
    pub concurrency: usize,
    pub interval_ms: u64,
    pub lease_secs: u64,
    pub requeue_after_secs: u64,
    pub first_poll_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerSettings {
    /// Pause between reconciliation rounds (status polls, refills, cancels).
    pub interval_ms: u64,
    /// Shortest time between two polls of one order.
    pub min_poll_secs: u64,
    /// How long a claimed poll belongs to its poller (another instance takes it after this).
    pub poll_lease_secs: u64,
    /// Wait this long before asking again after an upstream failure.
    pub failure_backoff_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    pub services_interval_secs: u64,
    /// How long start-up waits for the first catalog sync before serving what was saved.
    pub startup_timeout_secs: u64,
    /// A synced rate that moves by more than this percentage is logged as a warning.
    pub price_change_alert_percent: Decimal,
}

/// One upstream panel. The key comes from an environment variable or a file, never from the
/// config text itself.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Set by code only (the demo, tests): never read from or written to a config file.
    #[serde(skip)]
    pub key_inline: Option<SecretKey>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default = "one")]
    pub rate: Decimal,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    #[serde(default)]
    pub format: RequestFormat,
    /// Calls per second to this provider, all actions together; none = unlimited.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Warn when the reseller's balance at this provider falls below this.
    #[serde(default)]
    pub low_balance: Option<Decimal>,
    /// This many failed calls in a row (unreachable, timeouts, garbage) put the provider into
    /// a cooldown during which routing skips it; 0 disables cooldowns.
    #[serde(default = "default_failures_before_cooldown")]
    pub failures_before_cooldown: u32,
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    /// Numeric status codes this panel uses, over the common table (0 Pending, 1 In progress,
    /// 2 Completed, 3 Partial, 4 Canceled, 5 Processing, 6 Refunded): e.g.
    /// `status_codes = { "7" = "Completed", "3" = "In progress" }`.
    #[serde(default)]
    pub status_codes: std::collections::BTreeMap<String, String>,
}

fn default_failures_before_cooldown() -> u32 {
    crate::health::FAILURES_BEFORE_COOLDOWN
}

fn default_cooldown_secs() -> u64 {
    crate::health::COOLDOWN.as_secs()
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("key_env", &self.key_env)
            .field("key_file", &self.key_file)
            .field("key_inline", &self.key_inline.as_ref().map(|_| "***"))
            .field("currency", &self.currency)
            .field("rate", &self.rate)
            .field("enabled", &self.enabled)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn one() -> Decimal {
    Decimal::ONE
}

fn yes() -> bool {
    true
}

fn default_timeout_secs() -> u64 {
    30
}

fn default_connect_timeout_secs() -> u64 {
    5
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The files or environment could not be read or do not have the right shape.
    #[error("cannot read the configuration: {0}")]
    Load(String),
    /// The config has the right shape but says something impossible; every problem is listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

impl Settings {
    /// The compiled-in defaults alone (no local file, no environment).
    pub fn defaults() -> Result<Settings, ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_CONFIG,
                config::FileFormat::Toml,
            ))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load(e.to_string()))
    }

    /// Defaults, then `text` (TOML, as a config file would hold it), then the environment: what
    /// `load` would make of a file with this content. Not validated. Used to check a candidate
    /// config sent to the admin API, and by the config-loader fuzz target.
    pub fn load_str(text: &str) -> Result<Settings, ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_CONFIG,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load(e.to_string()))
    }

    /// Defaults, then `file` (or `config/local.toml` if present when `file` is `None`), then the
    /// environment. Not validated: call [`Settings::validate`].
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_CONFIG,
            config::FileFormat::Toml,
        ));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Load(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                builder =
                    builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
            None => {
                builder = builder.add_source(
                    config::File::with_name(LOCAL_CONFIG)
                        .format(config::FileFormat::Toml)
                        .required(false),
                );
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__"),
        );
        builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load(e.to_string()))
    }

    /// These settings as the text of a config file that loads back to them (provider keys set
    /// in code, `key_inline`, are left out: give those providers a `key_file` first).
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| format!("cannot write the settings as TOML: {e}"))
    }

    /// Loads and validates.
    pub fn load_valid(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let settings = Settings::load(file)?;
        let problems = settings.validate();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every problem at once, each with its location.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| {
            problems.push(ConfigProblem { path, message });
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            problem(
                "server.listen".into(),
                format!("not an address:port: {:?}", self.server.listen),
            );
        }
        if self.admin.listen.parse::<SocketAddr>().is_err() {
            problem(
                "admin.listen".into(),
                format!("not an address:port: {:?}", self.admin.listen),
            );
        }
        if (self.admin.token_env.is_some() || self.admin.token_file.is_some())
            && self.admin.token().is_none()
        {
            problem(
                "admin.token_env".into(),
                "the admin token is not set, unreadable, or shorter than 16 characters".into(),
            );
        }
        if self.server.currency.trim().is_empty() {
            problem("server.currency".into(), "must not be empty".into());
        }
        if self.server.key_cache_ttl_secs > MAX_KEY_CACHE_TTL_SECS {
            problem(
                "server.key_cache_ttl_secs".into(),
                format!(
                    "must be at most {MAX_KEY_CACHE_TTL_SECS}: it bounds how long a rotated key, \
                     a suspension or a price change may go unseen by a gateway that cannot be \
                     told at once (SQLite, a lost PostgreSQL listener)"
                ),
            );
        }
        if self.server.body_limit_bytes < 1024 {
            problem(
                "server.body_limit_bytes".into(),
                "must be at least 1024".into(),
            );
        }
        if self.server.rate_limit_per_minute == 0 {
            problem(
                "server.rate_limit_per_minute".into(),
                "must be at least 1".into(),
            );
        }
        for (name, secs) in [
            (
                "header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", self.server.body_read_timeout_secs),
        ] {
            if secs == 0 {
                problem(format!("server.{name}"), "must be at least 1".into());
            }
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres:")
            || db.starts_with("postgresql:"))
        {
            problem(
                "database.url".into(),
                "must start with sqlite: or postgres:".into(),
            );
        }
        routing_problems(self, &mut problem);
        let f = &self.forwarder;
        for (name, value) in [
            ("batch", u64::from(f.batch)),
            ("concurrency", f.concurrency as u64),
            ("interval_ms", f.interval_ms),
            ("lease_secs", f.lease_secs),
        ] {
            if value == 0 {
                problem(format!("forwarder.{name}"), "must be at least 1".into());
            }
        }
        for (i, p) in self.providers.iter().enumerate() {
            let at = |field: &str| format!("providers[{i}].{field}");
            match url::Url::parse(&p.url) {
                Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {}
                Ok(url) => problem(
                    at("url"),
                    format!("must be http or https, not {}", url.scheme()),
                ),
                Err(e) => problem(at("url"), format!("not a URL: {e}")),
            }
            if let Err(message) = p.key() {
                problem(at("key_env"), message);
            }
            if p.timeout_secs == 0 || p.connect_timeout_secs == 0 {
                problem(
                    at("timeout_secs"),
                    "timeouts must be at least 1 second".into(),
                );
            }
            let attempt_secs = p.timeout_secs.saturating_add(p.connect_timeout_secs);
            if self.forwarder.lease_secs <= attempt_secs.saturating_mul(2) {
                problem(
                    "forwarder.lease_secs".into(),
                    format!(
                        "must exceed twice provider {}'s connect + total timeout ({attempt_secs} s), \
                         or live calls would be taken for crashed ones",
                        p.name
                    ),
                );
            }
            if let Err(message) = p.status_code_table() {
                problem(at("status_codes"), message);
            }
            if p.rate_limit_per_second == Some(0) {
                problem(
                    at("rate_limit_per_second"),
                    "must be at least 1 (or unset)".into(),
                );
            }
        }
        problems.extend(smm_routing::validate(
            &self.provider_defs(),
            &self.pricing,
            &self.services,
            &self.exposures,
        ));
        problems.extend(notifications::problems(&self.webhooks, &self.alerts));
        problems
    }

    /// The provider named `name`, if configured.
    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The routing view of the providers.
    pub fn provider_defs(&self) -> Vec<ProviderDef> {
        self.providers
            .iter()
            .map(|p| ProviderDef {
                name: p.name.clone(),
                currency: p
                    .currency
                    .clone()
                    .unwrap_or_else(|| self.server.currency.clone()),
                rate: p.rate,
                enabled: p.enabled,
            })
            .collect()
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::Invalid(vec![ConfigProblem {
                path: "server.listen".into(),
                message: format!("not an address:port: {:?}", self.server.listen),
            }])
        })
    }
}

impl ProviderSettings {
    /// A provider with defaults, for code that builds settings (the demo, tests).
    pub fn new(name: &str, url: &str, key: SecretKey) -> ProviderSettings {
        ProviderSettings {
            name: name.to_owned(),
            url: url.to_owned(),
            key_env: None,
            key_file: None,
            key_inline: Some(key),
            currency: None,
            rate: Decimal::ONE,
            enabled: true,
            timeout_secs: default_timeout_secs(),
            connect_timeout_secs: default_connect_timeout_secs(),
            format: RequestFormat::Form,
            rate_limit_per_second: None,
            low_balance: None,
            failures_before_cooldown: default_failures_before_cooldown(),
            cooldown_secs: default_cooldown_secs(),
            status_codes: std::collections::BTreeMap::new(),
        }
    }

    /// The common status-code table with this provider's codes over it.
    pub fn status_code_table(&self) -> Result<StatusCodes, String> {
        let mut table = StatusCodes::default();
        for (code, name) in &self.status_codes {
            let code: i64 = code
                .trim()
                .parse()
                .map_err(|_| format!("status code {code:?} is not an integer"))?;
            let status = OrderStatus::normalize(name, &table);
            if matches!(status, OrderStatus::Unknown(_)) {
                return Err(format!(
                    "status code {code}: {name:?} is not a status (Pending, In progress, \
                     Processing, Completed, Partial, Canceled, Refunded)"
                ));
            }
            table.0.insert(code, status);
        }
        Ok(table)
    }

    /// The provider's key, from exactly one of `key_env`, `key_file` or (code only) inline.
    /// The error message never contains the key.
    pub fn key(&self) -> Result<SecretKey, String> {
        let sources = usize::from(self.key_env.is_some())
            + usize::from(self.key_file.is_some())
            + usize::from(self.key_inline.is_some());
        if sources != 1 {
            return Err("set exactly one of key_env or key_file".into());
        }
        if let Some(key) = &self.key_inline {
            return Ok(key.clone());
        }
        let key = match (&self.key_env, &self.key_file) {
            (Some(var), _) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
            (None, None) => return Err("set exactly one of key_env or key_file".into()),
        };
        let key = key.trim();
        if key.is_empty() {
            return Err("the provider key is empty".into());
        }
        Ok(SecretKey::new(key))
    }

    /// The client config for this provider.
    pub fn client_config(&self) -> Result<ProviderConfig, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("not a URL: {e}"))?;
        let mut config = ProviderConfig::new(self.name.clone(), url, self.key()?);
        config.timeout = Duration::from_secs(self.timeout_secs);
        config.connect_timeout = Duration::from_secs(self.connect_timeout_secs);
        config.request_format = self.format;
        config.status_codes = self.status_code_table()?;
        config.rate_limit = self.rate_limit_per_second.map(|n| RateLimit {
            requests: n,
            per: Duration::from_secs(1),
            burst: n,
        });
        Ok(config)
    }
}

/// The problems of `[routing]` and of the services' own policies and targets.
fn routing_problems(settings: &Settings, problem: &mut impl FnMut(String, String)) {
    use rust_decimal::Decimal;
    let r = &settings.routing;
    let percent = |value: Decimal| value >= Decimal::ZERO && value <= Decimal::from(100);
    for (name, value) in [
        ("explore_percent", r.explore_percent),
        ("demote_bad_percent", r.demote_bad_percent),
    ] {
        if !percent(value) {
            problem(
                format!("routing.{name}"),
                "must be between 0 and 100".into(),
            );
        }
    }
    for (name, value) in [
        ("window_days", u64::from(r.window_days)),
        ("recent", u64::from(r.recent)),
        ("refresh_secs", r.refresh_secs),
    ] {
        if value == 0 {
            problem(format!("routing.{name}"), "must be at least 1".into());
        }
    }
    if r.window_days > 30 {
        problem(
            "routing.window_days".into(),
            "must be at most 30 (the scorecards keep 30 days in view)".into(),
        );
    }
    let mut targets = |at: String, t: &smm_routing::TargetOverrides| {
        for (name, value) in [
            ("completion_percent", t.completion_percent),
            ("refill_success_percent", t.refill_success_percent),
        ] {
            if value.is_some_and(|v| !percent(v)) {
                problem(format!("{at}.{name}"), "must be between 0 and 100".into());
            }
        }
        if t.start_secs.is_some_and(|v| v < Decimal::ZERO) {
            problem(format!("{at}.start_secs"), "must not be negative".into());
        }
    };
    let defaults = smm_routing::TargetOverrides {
        completion_percent: Some(r.targets.completion_percent),
        start_secs: Some(r.targets.start_secs),
        refill_success_percent: Some(r.targets.refill_success_percent),
    };
    targets("routing.targets".into(), &defaults);
    for (i, service) in settings.services.iter().enumerate() {
        targets(format!("services[{i}].targets"), &service.targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_status_codes_extend_the_common_table_and_are_validated() {
        let mut p = ProviderSettings::new("x", "http://127.0.0.1:1/api/v2", SecretKey::new("k"));
        p.status_codes = [
            ("7".to_owned(), "Completed".to_owned()),
            ("3".to_owned(), "in progress".to_owned()),
        ]
        .into();
        let table = p.status_code_table().expect("valid");
        assert_eq!(table.0.get(&7), Some(&OrderStatus::Completed));
        assert_eq!(
            table.0.get(&3),
            Some(&OrderStatus::InProgress),
            "overrides the default"
        );
        assert_eq!(
            table.0.get(&4),
            Some(&OrderStatus::Canceled),
            "the rest stays"
        );
        let config = p.client_config().expect("client config");
        assert_eq!(config.status_codes, table);

        let mut settings = Settings::defaults().expect("defaults");
        p.status_codes = [("seven".to_owned(), "Completed".to_owned())].into();
        settings.providers = vec![p.clone()];
        let problems = settings.validate();
        assert!(
            problems
                .iter()
                .any(|pr| pr.path == "providers[0].status_codes"),
            "{problems:?}"
        );
        p.status_codes = [("8".to_owned(), "Done-ish".to_owned())].into();
        settings.providers = vec![p];
        assert!(
            settings
                .validate()
                .iter()
                .any(|pr| pr.path == "providers[0].status_codes" && pr.message.contains("Done-ish"))
        );
    }

    #[test]
    fn client_timeouts_must_be_positive() {
        let mut settings = Settings::defaults().expect("defaults");
        settings.server.header_read_timeout_secs = 0;
        settings.server.body_read_timeout_secs = 0;
        let paths: Vec<String> = settings.validate().into_iter().map(|p| p.path).collect();
        assert!(
            paths.contains(&"server.header_read_timeout_secs".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"server.body_read_timeout_secs".to_owned()),
            "{paths:?}"
        );
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings =
            Settings::load(Some(Path::new("../../config/default.toml"))).expect("defaults load");
        assert_eq!(settings.server.listen, "127.0.0.1:8080");
        assert!(settings.validate().is_empty(), "{:?}", settings.validate());
        assert_eq!(settings.pricing.default.percent, Some(Decimal::from(30)));
    }
}
