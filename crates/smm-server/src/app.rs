//! The shared state of a running gateway, and the operations the API, the CLI and the
//! background tasks all use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smm_provider_client::ProviderClient;
use smm_routing::{Catalog, CatalogInput, CustomerPricing, build_catalog};
use smm_store::{
    Customer, CustomerId, OrderId, OrderStatusView, Store, StoreError, Timestamp, hash_api_key,
};
use smm_wire::ErrorKind;
use smm_wire::upstream::UpstreamService;
use tokio::sync::Notify;

use crate::config::Settings;
use crate::health::Health;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One configured upstream panel.
#[derive(Debug)]
pub struct Provider {
    pub client: ProviderClient,
    /// Shared with the provider's next incarnation when a reload keeps its cooldown rules, so a
    /// reload neither forgets nor resets a cooldown.
    pub health: Arc<Health>,
    pub enabled: bool,
}

/// The reloadable part of the state: the settings, one client per provider, the admin token.
/// A reload builds a new one and swaps it in whole; readers hold an `Arc` snapshot, so work in
/// flight finishes on the version it started with.
#[derive(Debug)]
pub struct Runtime {
    pub settings: Arc<Settings>,
    /// Every provider whose orders this process handles: the configured ones, plus providers a
    /// reload removed (listed in `retired`).
    pub providers: BTreeMap<String, Arc<Provider>>,
    /// Providers removed from the configuration by a reload: never routed to or synced, but
    /// their orders, refills and cancels keep reconciling until the process restarts.
    pub retired: BTreeSet<String>,
    /// The admin bearer token (never logged), re-read on every reload.
    pub admin_token: Option<String>,
    /// 1 at start, +1 per successful reload.
    pub version: u64,
    /// Each explicit service's routing policy and quality targets, by local id.
    policies: BTreeMap<u64, (smm_routing::Policy, smm_routing::QualityTargets)>,
}

impl Runtime {
    fn build(
        settings: Settings,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, Vec<smm_routing::ConfigProblem>> {
        let mut providers = BTreeMap::new();
        let mut problems = Vec::new();
        for (index, p) in settings.providers.iter().enumerate() {
            let client = p
                .client_config()
                .and_then(|config| ProviderClient::new(config).map_err(|e| e.to_string()));
            let client = match client {
                Ok(client) => client,
                Err(message) => {
                    problems.push(smm_routing::ConfigProblem {
                        path: format!("providers[{index}]"),
                        message: format!("provider {}: {message}", p.name),
                    });
                    continue;
                }
            };
            // A rebuilt client keeps its predecessor's rate-limit schedule when the limit is
            // unchanged: a reload does not hand the provider a fresh burst.
            let client = match previous.and_then(|r| r.providers.get(&p.name)) {
                Some(old) => client.sharing_rate_limit(&old.client),
                None => client,
            };
            let cooldown = Duration::from_secs(p.cooldown_secs);
            let kept_health = previous
                .and_then(|r| Some((r.providers.get(&p.name)?, r.settings.provider(&p.name)?)))
                .filter(|(_, old)| {
                    old.failures_before_cooldown == p.failures_before_cooldown
                        && old.cooldown_secs == p.cooldown_secs
                })
                .map(|(old, _)| old.health.clone());
            let health = kept_health
                .unwrap_or_else(|| Arc::new(Health::new(p.failures_before_cooldown, cooldown)));
            providers.insert(
                p.name.clone(),
                Arc::new(Provider {
                    client,
                    health,
                    enabled: p.enabled,
                }),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut retired = BTreeSet::new();
        if let Some(previous) = previous {
            for (name, provider) in &previous.providers {
                if !providers.contains_key(name) {
                    providers.insert(name.clone(), provider.clone());
                    retired.insert(name.clone());
                }
            }
        }
        let routing = &settings.routing;
        let policies = settings
            .services
            .iter()
            .map(|s| {
                (
                    s.id,
                    (
                        s.policy.unwrap_or(routing.policy),
                        routing.targets.with(&s.targets),
                    ),
                )
            })
            .collect();
        Ok(Runtime {
            policies,
            admin_token: settings.admin.token(),
            settings: Arc::new(settings),
            providers,
            retired,
            version: previous.map_or(1, |r| r.version + 1),
        })
    }
}

impl Runtime {
    /// How the service `id` ranks its routes, and its quality targets: its own, else
    /// `[routing]`'s (exposed services have one route each and take the default).
    pub fn service_policy(&self, id: u64) -> (smm_routing::Policy, smm_routing::QualityTargets) {
        self.policies.get(&id).cloned().unwrap_or_else(|| {
            (
                self.settings.routing.policy,
                self.settings.routing.targets.clone(),
            )
        })
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    pub version: u64,
    /// Top-level sections whose values changed (`pricing`, `providers`, ...).
    pub changed: Vec<String>,
    pub providers_added: Vec<String>,
    /// Removed from the configuration; their open orders keep reconciling until a restart.
    pub providers_retired: Vec<String>,
    /// Settings that only take effect after a restart, and other things worth knowing.
    pub warnings: Vec<String>,
}

/// Settings a running process cannot change: listeners, the database, the body limit, the client
/// timeouts and the cache lifetime are fixed at start (`Settings` field paths).
const RESTART_ONLY: [&str; 7] = [
    "server.listen",
    "server.body_limit_bytes",
    "server.key_cache_ttl_secs",
    "server.header_read_timeout_secs",
    "server.body_read_timeout_secs",
    "admin.listen",
    "database.url",
];

/// Everything a request handler or a background task needs. Shared as `Arc<App>`.
#[derive(Debug)]
pub struct App {
    runtime: RwLock<Arc<Runtime>>,
    /// Serialises reloads (SIGHUP, the admin API and the file watch may race).
    reloading: tokio::sync::Mutex<()>,
    /// Where `reload` reads the configuration from: set by `serve` (the `--config` file, or the
    /// default lookup); unset for gateways built from in-memory settings (tests, the demo).
    config_source: OnceLock<Option<PathBuf>>,
    /// Serialises the console's edits of the config file (read, change, validate, write,
    /// reload), so two owners saving at once cannot lose one of the changes.
    pub config_edits: tokio::sync::Mutex<()>,
    pub store: Arc<dyn Store>,
    /// The current catalog; replaced whole after every sync.
    catalog: RwLock<Arc<Catalog>>,
    /// The `services` reply at list prices, for the catalog it was built from.
    services_body: RwLock<Option<(Arc<Catalog>, Arc<ServicesBody>)>>,
    /// The `services` replies of other price lists (discounts, custom rates), by
    /// [`PriceListKey`], each for the catalog it was built from; bounded by bytes.
    priced_services_bodies: moka::sync::Cache<PriceListKey, (Arc<Catalog>, Arc<ServicesBody>)>,
    /// Each provider's last good `services` reply.
    upstream: RwLock<BTreeMap<String, Vec<UpstreamService>>>,
    /// Recently read orders as `status` shows them, with their owner, for at most
    /// [`ORDER_VIEW_MAX_AGE`] ([`App::order_statuses`], which checks each view's age itself).
    /// `quick_cache`, not moka: a `status` of 100 ids is 100 lookups, and moka's bookkeeping
    /// per read (its access log, a timestamp) took a quarter of the gateway's CPU under load.
    order_views: quick_cache::sync::Cache<OrderId, CachedView>,
    /// Customer by key hash. Only hits are cached, so a new customer works at once.
    keys: moka::sync::Cache<String, Customer>,
    /// Key hashes that matched no customer, briefly: a flood of wrong keys costs no database
    /// reads. Keys are random 128-bit tokens, so a new customer's key is never in here.
    unknown_keys: moka::sync::Cache<String, ()>,
    /// Customer-specific rates, cached like keys (off the request path's database reads).
    rates: moka::sync::Cache<CustomerId, Arc<BTreeMap<u64, rust_decimal::Decimal>>>,
    /// Per-customer request budgets (`server.rate_limit_per_minute`).
    limits: crate::limits::CustomerLimits,
    /// Console login attempts per username (`console.login_attempts_per_minute`).
    pub login_limits: crate::limits::KeyedLimits<String>,
    /// Wakes the forwarder when an order is placed.
    pub forward_wake: Notify,
    /// Wakes the notifier (a webhook event may be due: a resend, a resume).
    pub notify_wake: Notify,
    /// Why recently rejected orders were refused, for `add` calls waiting on them
    /// (`server.add_wait_ms`).
    rejections: Mutex<HashMap<OrderId, ErrorKind>>,
    /// Names this process in claims (`host-pid-random`).
    pub worker_id: String,
    pub metrics: crate::metrics::Metrics,
    last_sync: Mutex<BTreeMap<String, Timestamp>>,
    last_balance: Mutex<BTreeMap<String, rust_decimal::Decimal>>,
    /// The routes' scorecards the policies and the metrics read (`scorecards::run`).
    scorecards: RwLock<Arc<crate::scorecards::Scorecards>>,
    /// The group-commit queues, started on first use (inside the runtime).
    placements: OnceLock<smm_store::GroupCommit>,
}

impl App {
    /// Builds the state: one client per provider. No I/O besides what the store did already.
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> Result<App, String> {
        let ttl = Duration::from_secs(settings.server.key_cache_ttl_secs.max(1));
        let runtime = Runtime::build(settings, None).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let rates = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .build();
        let unknown_keys = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .build();
        let keys = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .build();
        let priced_services_bodies = moka::sync::Cache::builder()
            .max_capacity(PRICED_SERVICES_BYTES)
            .weigher(
                |_: &PriceListKey, (_, body): &(Arc<Catalog>, Arc<ServicesBody>)| {
                    u32::try_from(body.weight()).unwrap_or(u32::MAX)
                },
            )
            // A stale entry (an older catalog) holds that catalog alive until it goes.
            .time_to_idle(Duration::from_secs(600))
            .build();
        // An entry past its age stays until the capacity pushes it out; it is never served.
        let order_views = quick_cache::sync::Cache::new(ORDER_VIEW_CAPACITY);
        let worker_id = format!(
            "{}-{}-{:04x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "gateway".into()),
            std::process::id(),
            fastrand::u16(..)
        );
        Ok(App {
            runtime: RwLock::new(Arc::new(runtime)),
            reloading: tokio::sync::Mutex::new(()),
            config_source: OnceLock::new(),
            config_edits: tokio::sync::Mutex::new(()),
            store,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            upstream: RwLock::new(BTreeMap::new()),
            services_body: RwLock::new(None),
            priced_services_bodies,
            order_views,
            keys,
            unknown_keys,
            rates,
            limits: crate::limits::CustomerLimits::new(),
            login_limits: crate::limits::KeyedLimits::new(),
            forward_wake: Notify::new(),
            notify_wake: Notify::new(),
            rejections: Mutex::new(HashMap::new()),
            worker_id,
            metrics: crate::metrics::Metrics::default(),
            last_sync: Mutex::new(BTreeMap::new()),
            last_balance: Mutex::new(BTreeMap::new()),
            scorecards: RwLock::new(Arc::default()),
            placements: OnceLock::new(),
        })
    }

    /// The group-commit queues (issue #16) `add` places through and the forwarder records its
    /// outcomes through: what arrives together shares one transaction and one durable commit,
    /// each item checked and answered on its own, only once that commit has returned.
    pub fn group_commit(&self) -> &smm_store::GroupCommit {
        self.placements.get_or_init(|| {
            // SQLite has one writer: one lane commits the placements and the forwarder's
            // outcomes queued together, one commit where two lanes made two. On PostgreSQL
            // lanes run one group's statements while others' commits are flushed; 4 measured
            // best here (`cargo bench -p smm-store --bench placement`, BENCH_PG_LANES). Four
            // lanes taking both together measured slower there (docs/benchmarks.md).
            let store = Arc::clone(&self.store);
            match self.store.backend() {
                smm_store::Backend::Sqlite => smm_store::GroupCommit::start_together(store, 1),
                smm_store::Backend::Postgres => smm_store::GroupCommit::start(store, 4),
            }
        })
    }

    /// The last scorecards read (empty until the first refresh).
    pub fn scorecards(&self) -> Arc<crate::scorecards::Scorecards> {
        self.scorecards
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |s| s.clone())
    }

    pub fn set_scorecards(&self, scorecards: crate::scorecards::Scorecards) {
        let fresh = Arc::new(scorecards);
        match self.scorecards.write() {
            Ok(mut slot) => *slot = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// The current settings, providers and admin token (a snapshot: a reload swaps in a new one).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |r| r.clone())
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.runtime().settings.clone()
    }

    /// The client of `name`, configured or retired.
    pub fn provider(&self, name: &str) -> Option<Arc<Provider>> {
        self.runtime().providers.get(name).cloned()
    }

    /// Tells [`App::reload_from_source`] where the configuration lives (`None`: the default
    /// lookup, `config/local.toml` if present, plus the environment). Set once, by `serve`.
    pub fn set_config_source(&self, file: Option<PathBuf>) {
        let _ = self.config_source.set(file);
    }

    /// The file [`App::reload_from_source`] reads (`config/local.toml` under the default
    /// lookup, even when it does not exist yet); `None` for in-memory settings.
    pub fn config_path(&self) -> Option<PathBuf> {
        match self.config_source.get()? {
            Some(file) => Some(file.clone()),
            None => Some(PathBuf::from(crate::config::LOCAL_CONFIG)),
        }
    }

    /// Re-reads the configuration from where `serve` loaded it and applies it with
    /// [`App::reload`]. Every problem is reported; on any problem nothing changes.
    pub async fn reload_from_source(
        self: &Arc<Self>,
        actor: &str,
    ) -> Result<ReloadReport, Vec<String>> {
        let Some(file) = self.config_source.get() else {
            return Err(vec![
                "this gateway was started from in-memory settings: there is no file to reload"
                    .into(),
            ]);
        };
        let candidate = match Settings::load(file.as_deref()) {
            Ok(candidate) => candidate,
            Err(e) => {
                self.count_reload("invalid");
                let problems = vec![e.to_string()];
                crate::notifier::alerts::reload_refused(self, actor, &problems).await;
                return Err(problems);
            }
        };
        self.reload(candidate, actor).await
    }

    /// Validates `candidate` whole and, when it is valid, swaps it in atomically: new provider
    /// clients (keeping cooldown state), the new pricing and services, rebuilt catalog. Requests
    /// in flight finish on the old version. Providers that disappeared are retired, not dropped:
    /// their orders keep reconciling. Settings fixed at start (listeners, database, body limit)
    /// keep their running values and are reported. An invalid candidate changes nothing and
    /// every problem comes back. Audited with the changed sections before and after.
    pub async fn reload(
        self: &Arc<Self>,
        candidate: Settings,
        actor: &str,
    ) -> Result<ReloadReport, Vec<String>> {
        let result = self.reload_checked(candidate, actor).await;
        if let Err(problems) = &result {
            crate::notifier::alerts::reload_refused(self, actor, problems).await;
        }
        result
    }

    async fn reload_checked(
        self: &Arc<Self>,
        mut candidate: Settings,
        actor: &str,
    ) -> Result<ReloadReport, Vec<String>> {
        let _one_at_a_time = self.reloading.lock().await;
        let problems = candidate.validate();
        if !problems.is_empty() {
            self.count_reload("invalid");
            return Err(problems.iter().map(ToString::to_string).collect());
        }
        let conflicts = self.service_id_conflicts(&candidate).await;
        if !conflicts.is_empty() {
            self.count_reload("invalid");
            return Err(conflicts);
        }
        let old = self.runtime();
        let mut warnings = Vec::new();
        keep_restart_only(&old.settings, &mut candidate, &mut warnings);
        let runtime = match Runtime::build(candidate, Some(&old)) {
            Ok(runtime) => runtime,
            Err(problems) => {
                self.count_reload("invalid");
                return Err(problems.iter().map(ToString::to_string).collect());
            }
        };
        let before = redacted_sections(&old.settings);
        let after = redacted_sections(&runtime.settings);
        let changed: Vec<String> = after
            .iter()
            .filter(|(section, value)| before.get(*section) != Some(value))
            .map(|(section, _)| section.clone())
            .collect();
        let providers_added: Vec<String> = runtime
            .settings
            .providers
            .iter()
            .filter(|p| old.settings.provider(&p.name).is_none())
            .map(|p| p.name.clone())
            .collect();
        let providers_retired: Vec<String> = runtime
            .retired
            .iter()
            .filter(|name| !old.retired.contains(*name))
            .cloned()
            .collect();
        for name in &providers_retired {
            warnings.push(format!(
                "provider {name} removed: no new orders go there; its open orders keep \
                 reconciling until this process restarts (keep it with enabled = false to \
                 reconcile them across restarts)"
            ));
        }
        if runtime.admin_token.is_none() {
            warnings.push(
                "no admin token in the new configuration: the admin API answers 503 until one \
                 is configured (reload with SIGHUP)"
                    .into(),
            );
        }
        let pick = |map: &BTreeMap<String, serde_json::Value>| {
            serde_json::Value::Object(
                changed
                    .iter()
                    .filter_map(|k| Some((k.clone(), map.get(k)?.clone())))
                    .collect(),
            )
            .to_string()
        };
        if let Err(e) = self
            .store
            .audit(
                actor,
                "config.reload",
                "config",
                Some(&pick(&before)),
                Some(&pick(&after)),
                now_ms(),
            )
            .await
        {
            // The audit row is part of the change: no row, no change.
            self.count_reload("failed");
            return Err(vec![format!("cannot write the audit row: {e}")]);
        }
        let version = runtime.version;
        *self
            .runtime
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(runtime);
        self.count_reload("ok");
        tracing::info!(version, ?changed, actor, "configuration reloaded");
        warnings.extend(self.rebuild_catalog().await);
        if !providers_added.is_empty() || changed.iter().any(|s| s == "providers") {
            // New or changed providers need their catalogs: fetch them in the background.
            let app = self.clone();
            tokio::spawn(async move {
                for issue in app.sync_catalog().await {
                    tracing::warn!("{issue}");
                }
            });
        }
        Ok(ReloadReport {
            version,
            changed,
            providers_added,
            providers_retired,
            warnings,
        })
    }

    fn count_reload(&self, outcome: &'static str) {
        self.metrics.config_reload(outcome);
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |c| c.clone())
    }

    /// The `services` reply for `pricing` built from exactly `catalog`, if cached.
    pub fn cached_services_body(
        &self,
        catalog: &Arc<Catalog>,
        pricing: &CustomerPricing,
    ) -> Option<Arc<ServicesBody>> {
        let (built_from, body) = if is_list_price(pricing) {
            self.services_body
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()?
        } else {
            self.priced_services_bodies
                .get(&PriceListKey::of(pricing))?
        };
        // Holding the `Arc` keeps the identity check sound: a rebuilt catalog is a different
        // allocation while this one lives.
        Arc::ptr_eq(&built_from, catalog).then_some(body)
    }

    /// Keeps the `services` reply for `pricing` built from `catalog` (replacing the one of
    /// an older catalog).
    pub fn cache_services_body(
        &self,
        catalog: &Arc<Catalog>,
        pricing: &CustomerPricing,
        body: Arc<ServicesBody>,
    ) {
        if is_list_price(pricing) {
            *self
                .services_body
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((catalog.clone(), body));
        } else {
            self.priced_services_bodies
                .insert(PriceListKey::of(pricing), (catalog.clone(), body));
        }
    }

    /// `customer`'s orders among `ids` as `status` shows them, sorted by id; ids that are not
    /// theirs (someone else's, or no order at all) are absent.
    ///
    /// A view may come from the short-lived cache of recent reads (issue #16): it is served
    /// only to the customer the store said owns it, and at most [`ORDER_VIEW_MAX_AGE`] after
    /// the store read that fetched it began. Every id not cached for this customer is read
    /// from the store, in one query.
    pub async fn order_statuses(
        &self,
        customer: CustomerId,
        ids: &[OrderId],
    ) -> Result<Vec<Arc<OrderStatusView>>, StoreError> {
        let mut views = Vec::with_capacity(ids.len());
        let mut misses = Vec::new();
        for id in ids {
            match self.order_views.get(id) {
                Some(cached)
                    if cached.owner == customer
                        && cached.read_at.elapsed() < ORDER_VIEW_MAX_AGE =>
                {
                    views.push(cached.view);
                }
                _ => misses.push(*id),
            }
        }
        if !misses.is_empty() {
            let read_at = std::time::Instant::now();
            for view in self
                .store
                .customer_order_statuses(customer, &misses)
                .await?
            {
                let view = Arc::new(view);
                self.order_views.insert(
                    view.id,
                    CachedView {
                        owner: customer,
                        read_at,
                        view: view.clone(),
                    },
                );
                views.push(view);
            }
        }
        views.sort_unstable_by_key(|view| view.id);
        views.dedup_by_key(|view| view.id);
        Ok(views)
    }

    /// Drops the cached `status` views of orders this process just changed (a cancel, a
    /// refill, an applied upstream status), so their customers see the change at once rather
    /// than within [`ORDER_VIEW_MAX_AGE`].
    pub fn forget_order_views(&self, ids: impl IntoIterator<Item = OrderId>) {
        for id in ids {
            self.order_views.remove(&id);
        }
    }

    /// When `provider`'s catalog last synced successfully.
    pub fn last_sync(&self, provider: &str) -> Option<Timestamp> {
        self.last_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .copied()
    }

    /// The reseller's balance at `provider` at the last check.
    pub fn last_balance(&self, provider: &str) -> Option<rust_decimal::Decimal> {
        self.last_balance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .copied()
    }

    /// Is `provider` usable for new orders now (configured, enabled, not cooling down)?
    /// Whether `provider`'s last synced catalog offers `upstream_service` with a price (a
    /// service missing there, or priced at zero, is disabled, never sent).
    pub fn upstream_offers(&self, provider: &str, upstream_service: &str) -> bool {
        self.upstream
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .is_some_and(|services| {
                services.iter().any(|s| {
                    s.service.as_str() == upstream_service && s.rate > rust_decimal::Decimal::ZERO
                })
            })
    }

    pub fn provider_available(&self, provider: &str) -> bool {
        let runtime = self.runtime();
        !runtime.retired.contains(provider)
            && runtime
                .providers
                .get(provider)
                .is_some_and(|p| p.enabled && p.health.available())
    }

    /// Serves the catalogs saved by the last successful syncs (used at start-up, so prices are
    /// there before the first sync answers).
    pub async fn load_saved_catalogs(&self) -> Vec<String> {
        let saved = match self.store.provider_catalogs().await {
            Ok(saved) => saved,
            Err(e) => return vec![format!("cannot read saved catalogs: {e}")],
        };
        let mut messages = Vec::new();
        {
            let mut upstream = self
                .upstream
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (provider, json, _synced_at) in saved {
                match serde_json::from_str::<Vec<UpstreamService>>(&json) {
                    Ok(services) => {
                        upstream.insert(provider, services);
                    }
                    Err(e) => messages.push(format!("saved catalog of {provider} unreadable: {e}")),
                }
            }
        }
        messages.extend(self.rebuild_catalog().await);
        messages
    }

    /// Fetches every enabled provider's catalog (concurrently), saves the good ones, and
    /// rebuilds the local catalog. A provider that fails keeps its last good catalog. Rates that
    /// moved by more than `sync.price_change_alert_percent` are reported. Returns the issues.
    pub async fn sync_catalog(&self) -> Vec<String> {
        let runtime = self.runtime();
        let fetches = runtime
            .providers
            .iter()
            .filter(|(name, p)| p.enabled && !runtime.retired.contains(*name))
            .map(|(name, p)| async move { (name.clone(), p.client.services().await) });
        let results = futures_util::future::join_all(fetches).await;
        let mut messages = Vec::new();
        let mut fresh = Vec::new();
        for (name, result) in results {
            match result {
                Ok(reply) => {
                    for (index, why) in &reply.invalid {
                        messages.push(format!(
                            "provider {name}: services entry {index} skipped: {why}"
                        ));
                    }
                    fresh.push((name, reply.services));
                }
                Err(e) => messages.push(format!("provider {name}: services sync failed: {e}")),
            }
        }
        for (name, services) in fresh {
            let previous = self
                .upstream
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&name)
                .cloned();
            if let Some(previous) = previous {
                let changes = self.price_changes(&name, &previous, &services);
                self.metrics
                    .price_change_alerts(&name, changes.len() as u64);
                crate::notifier::alerts::prices_moved(self, &name, &changes).await;
                messages.extend(changes);
            }
            self.last_sync
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.clone(), now_ms());
            match serde_json::to_string(&services) {
                Ok(json) => {
                    if let Err(e) = self
                        .store
                        .save_provider_catalog(&name, &json, now_ms())
                        .await
                    {
                        messages.push(format!("provider {name}: cannot save its catalog: {e}"));
                    }
                }
                Err(e) => messages.push(format!("provider {name}: cannot encode its catalog: {e}")),
            }
            self.upstream
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name, services);
        }
        messages.extend(self.rebuild_catalog().await);
        messages
    }

    /// Rates that moved by more than the configured percentage, and services that vanished.
    fn price_changes(
        &self,
        provider: &str,
        previous: &[UpstreamService],
        current: &[UpstreamService],
    ) -> Vec<String> {
        let threshold = self.settings().sync.price_change_alert_percent;
        let mut messages = Vec::new();
        for old in previous {
            let Some(new) = current.iter().find(|s| s.service == old.service) else {
                messages.push(format!(
                    "provider {provider}: upstream service {} vanished",
                    old.service
                ));
                continue;
            };
            if old.rate.is_zero() || new.rate == old.rate {
                continue;
            }
            let change = (new.rate - old.rate)
                .checked_div(old.rate)
                .and_then(|r| r.checked_mul(rust_decimal::Decimal::ONE_HUNDRED))
                .unwrap_or(rust_decimal::Decimal::MAX);
            if change.abs() > threshold {
                messages.push(format!(
                    "provider {provider}: service {} rate moved {change:.2}% ({} → {})",
                    old.service, old.rate, new.rate
                ));
            }
        }
        messages
    }

    /// Asks every enabled provider for the reseller's balance there: warns when low, and lifts
    /// an out-of-funds pause when money is back.
    pub async fn check_balances(&self) -> Vec<String> {
        let mut messages = Vec::new();
        let runtime = self.runtime();
        let active = runtime
            .providers
            .iter()
            .filter(|(name, p)| p.enabled && !runtime.retired.contains(*name));
        for (name, provider) in active {
            match provider.client.balance().await {
                Ok(balance) => {
                    self.last_balance
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(name.clone(), balance.balance);
                    if balance.balance.is_sign_positive() && !balance.balance.is_zero() {
                        provider.health.record_balance_positive();
                    }
                    let low = runtime.settings.provider(name).and_then(|p| p.low_balance);
                    if low.is_some_and(|low| balance.balance < low) {
                        messages.push(format!(
                            "provider {name}: balance {} {} is below the low-balance threshold",
                            balance.balance,
                            balance.currency.unwrap_or_default()
                        ));
                    }
                }
                Err(e) => messages.push(format!("provider {name}: balance check failed: {e}")),
            }
        }
        messages
    }

    /// Explicit service ids of `settings` that the store has already given to an exposed
    /// upstream service (issue #12, 7): an id, once given, is never re-pointed at another
    /// service, so such a configuration is refused, each problem with its location. (New
    /// exposure ids come from [`smm_routing::EXPOSURE_ID_BASE`] up, which explicit ids stay
    /// below; only ids given before that range existed can collide.)
    pub async fn service_id_conflicts(&self, settings: &Settings) -> Vec<String> {
        let assigned: BTreeMap<i64, (String, String)> = match self.store.service_ids().await {
            Ok(all) => all.into_iter().map(|(id, p, s)| (id.0, (p, s))).collect(),
            Err(e) => return vec![format!("cannot read service ids: {e}")],
        };
        settings
            .services
            .iter()
            .enumerate()
            .filter_map(|(i, def)| {
                let id = i64::try_from(def.id).ok()?;
                let (provider, service) = assigned.get(&id)?;
                Some(format!(
                    "services[{i}].id: {} is already the id of exposed service {service:?} of \
                     provider {provider:?}; an id is never re-pointed at another service: \
                     choose another id",
                    def.id
                ))
            })
            .collect()
    }

    /// `provider`'s last synced catalog (empty before its first sync).
    pub fn upstream_services(&self, provider: &str) -> Vec<UpstreamService> {
        self.upstream
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }

    /// How many services `provider`'s last synced catalog has (0 before its first sync).
    pub fn upstream_service_count(&self, provider: &str) -> usize {
        self.upstream
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .map_or(0, Vec::len)
    }

    /// The catalog `settings` would give with the catalogs synced now, without assigning ids or
    /// changing anything: what the console previews before a price change is saved. Exposed
    /// services that have no id yet are left out.
    pub async fn preview_catalog(&self, settings: &Settings) -> Result<Catalog, String> {
        let ids = self.exposure_ids().await?;
        Ok(self.build_catalog_for(settings, &ids).catalog)
    }

    async fn exposure_ids(&self) -> Result<BTreeMap<(String, String), u64>, String> {
        match self.store.service_ids().await {
            Ok(all) => Ok(all
                .into_iter()
                .filter_map(|(id, p, s)| u64::try_from(id.0).ok().map(|id| ((p, s), id)))
                .collect()),
            Err(e) => Err(format!("cannot read service ids: {e}")),
        }
    }

    fn build_catalog_for(
        &self,
        settings: &Settings,
        ids: &BTreeMap<(String, String), u64>,
    ) -> smm_routing::CatalogBuild {
        let providers = settings.provider_defs();
        let upstream = self
            .upstream
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        build_catalog(&CatalogInput {
            providers: &providers,
            pricing: &settings.pricing,
            services: &settings.services,
            exposures: &settings.exposures,
            upstream: &upstream,
            exposure_ids: ids,
        })
    }

    /// Rebuilds the catalog from the last synced upstream catalogs, assigning stable ids to
    /// newly exposed services.
    pub async fn rebuild_catalog(&self) -> Vec<String> {
        let settings = self.settings();
        let mut ids = match self.exposure_ids().await {
            Ok(ids) => ids,
            Err(e) => return vec![e],
        };
        let mut messages = Vec::new();
        for _ in 0..2 {
            let build = self.build_catalog_for(&settings, &ids);
            if build.missing_ids.is_empty() {
                messages.extend(build.issues.iter().map(ToString::to_string));
                *self
                    .catalog
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(build.catalog);
                return messages;
            }
            for (provider, service) in build.missing_ids {
                match self.store.service_id(&provider, &service).await {
                    Ok(id) => {
                        if let Ok(id) = u64::try_from(id.0) {
                            ids.insert((provider, service), id);
                        }
                    }
                    Err(e) => messages.push(format!("cannot assign a service id: {e}")),
                }
            }
        }
        messages.push("catalog not rebuilt: service ids could not be assigned".into());
        messages
    }

    /// The customer owning `key`, if active. Errors are v2 error kinds.
    pub async fn authenticate(&self, key: &str) -> Result<Customer, ErrorKind> {
        let hash = hash_api_key(key);
        if self.unknown_keys.contains_key(&hash) {
            return Err(ErrorKind::InvalidKey);
        }
        let customer = match self.keys.get(&hash) {
            Some(customer) => customer,
            None => match self.store.customer_by_key_hash(&hash).await {
                Ok(Some(customer)) => {
                    self.keys.insert(hash, customer.clone());
                    customer
                }
                Ok(None) => {
                    self.unknown_keys.insert(hash, ());
                    return Err(ErrorKind::InvalidKey);
                }
                Err(e) => return Err(unavailable(&e)),
            },
        };
        match customer.status {
            smm_store::CustomerStatus::Active => Ok(customer),
            smm_store::CustomerStatus::Suspended => Err(ErrorKind::AccountSuspended),
        }
    }

    /// Forgets what is cached of one customer (their key lookups and custom rates): after a
    /// change to them announced by the database.
    pub fn forget_customer(&self, id: CustomerId) {
        let hashes: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, customer)| customer.id == id)
            .map(|(hash, _)| (*hash).clone())
            .collect();
        for hash in hashes {
            self.keys.invalidate(&hash);
        }
        self.rates.invalidate(&id);
    }

    /// Forgets every cached key lookup and custom rate (after a change made by this process,
    /// or when changes announced by the database may have been missed).
    pub fn invalidate_keys(&self) {
        self.keys.invalidate_all();
        self.unknown_keys.invalidate_all();
        self.rates.invalidate_all();
    }

    /// Counts a request against the customer's per-minute budget.
    pub fn rate_limit(&self, customer: CustomerId) -> Result<(), ErrorKind> {
        let per_minute = self.settings().server.rate_limit_per_minute;
        if self.limits.allow(customer, per_minute) {
            Ok(())
        } else {
            Err(ErrorKind::RateLimited)
        }
    }

    /// Notes why every route refused `order`, when an `add` may be waiting for it.
    pub fn note_rejection(&self, order: OrderId, kind: ErrorKind) {
        if self.settings().server.add_wait_ms == 0 {
            return;
        }
        let mut rejections = self
            .rejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if rejections.len() > 10_000 {
            rejections.clear(); // waiters long gone; they answer with the order id instead
        }
        rejections.insert(order, kind);
    }

    /// Takes the reason noted for `order`, if any.
    pub fn take_rejection(&self, order: OrderId) -> Option<ErrorKind> {
        self.rejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&order)
    }

    /// The customer's price rules.
    pub async fn pricing(&self, customer: &Customer) -> Result<CustomerPricing, ErrorKind> {
        let rates = match self.rates.get(&customer.id) {
            Some(rates) => rates,
            None => {
                let rates: BTreeMap<u64, rust_decimal::Decimal> = self
                    .store
                    .customer_rates(customer.id)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .into_iter()
                    .filter_map(|(service, rate)| u64::try_from(service.0).ok().map(|s| (s, rate)))
                    .collect();
                let rates = Arc::new(rates);
                self.rates.insert(customer.id, rates.clone());
                rates
            }
        };
        Ok(CustomerPricing {
            discount: customer.discount,
            custom_rates: (*rates).clone(),
        })
    }
}

/// How stale a `status` reply may be (issue #16): a view read from the store is served from
/// the cache for at most this long after the read began. Changes this process makes to an order
/// (a v2 cancel or refill, a status the reconciler applies) drop its view at once; changes made
/// elsewhere (another instance, the forwarder, an operator) show within this bound.
pub const ORDER_VIEW_MAX_AGE: Duration = Duration::from_secs(1);

/// Most order views cached: far more than a second's worth of `status` ids at benchmark rates
/// (each view is a few hundred bytes).
const ORDER_VIEW_CAPACITY: usize = 20_000;

/// An order as `status` shows it, the customer the store said owns it, and when the read that
/// fetched it began.
#[derive(Debug, Clone)]
struct CachedView {
    owner: CustomerId,
    read_at: std::time::Instant,
    view: Arc<OrderStatusView>,
}

/// At most this many bytes of `services` replies (both encodings) are kept for price lists
/// other than the list prices (about ten 400 KB catalogs); the list-price reply has a slot of
/// its own and is always kept.
const PRICED_SERVICES_BYTES: u64 = 4 * 1024 * 1024;

/// Whether `pricing` is the list prices (no discount, no custom rate): most customers'.
pub fn is_list_price(pricing: &CustomerPricing) -> bool {
    pricing.discount.is_none() && pricing.custom_rates.is_empty()
}

/// A price list as a cache key: the discount and the custom rates exactly as written (`10` and
/// `10.0` are different keys, since the reply shows a rate's scale), so customers on the same
/// terms share one cached reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PriceListKey(String);

impl PriceListKey {
    pub fn of(pricing: &CustomerPricing) -> PriceListKey {
        use std::fmt::Write;
        let mut key = String::new();
        if let Some(discount) = pricing.discount {
            let _ = write!(key, "d{discount}");
        }
        for (service, rate) in &pricing.custom_rates {
            let _ = write!(key, ";{service}={rate}");
        }
        PriceListKey(key)
    }
}

/// A serialised `services` reply and its gzip copy, compressed once when the reply is built
/// (issue #16): a client that accepts gzip gets the copy, which decompresses to exactly
/// `identity`.
#[derive(Debug)]
pub struct ServicesBody {
    pub identity: axum::body::Bytes,
    /// `None` only if compressing failed (then every client gets `identity`).
    pub gzip: Option<axum::body::Bytes>,
}

impl ServicesBody {
    /// Keeps `identity` and compresses it (gzip, default level: a few milliseconds for a 400 KB
    /// catalog, paid once per catalog and price list).
    pub fn new(identity: axum::body::Bytes) -> ServicesBody {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(identity.len() / 8),
            flate2::Compression::default(),
        );
        let gzip = encoder
            .write_all(&identity)
            .and_then(|()| encoder.finish())
            .map(axum::body::Bytes::from)
            .inspect_err(|e| tracing::error!(%e, "cannot compress the services reply"))
            .ok();
        ServicesBody { identity, gzip }
    }

    /// Bytes held, for the cache's bound.
    fn weight(&self) -> usize {
        self.identity.len() + self.gzip.as_ref().map_or(0, axum::body::Bytes::len)
    }
}

/// A store failure on the request path: logged in full, shown to the client as a generic error.
pub fn unavailable(error: &StoreError) -> ErrorKind {
    tracing::error!(%error, "store error on the request path");
    ErrorKind::Unavailable
}

/// Puts the running values of settings fixed at start back into `candidate`, with a warning for
/// each one the candidate tried to change.
fn keep_restart_only(running: &Settings, candidate: &mut Settings, warnings: &mut Vec<String>) {
    for (name, changed) in RESTART_ONLY.into_iter().zip([
        running.server.listen != candidate.server.listen,
        running.server.body_limit_bytes != candidate.server.body_limit_bytes,
        running.server.key_cache_ttl_secs != candidate.server.key_cache_ttl_secs,
        running.server.header_read_timeout_secs != candidate.server.header_read_timeout_secs,
        running.server.body_read_timeout_secs != candidate.server.body_read_timeout_secs,
        running.admin.listen != candidate.admin.listen,
        running.database.url != candidate.database.url,
    ]) {
        if changed {
            warnings.push(format!(
                "{name} changed: it takes effect after a restart; the running value is kept"
            ));
        }
    }
    candidate.server.listen.clone_from(&running.server.listen);
    candidate.server.body_limit_bytes = running.server.body_limit_bytes;
    candidate.server.key_cache_ttl_secs = running.server.key_cache_ttl_secs;
    candidate.server.header_read_timeout_secs = running.server.header_read_timeout_secs;
    candidate.server.body_read_timeout_secs = running.server.body_read_timeout_secs;
    candidate.admin.listen.clone_from(&running.admin.listen);
    candidate.database.url.clone_from(&running.database.url);
}

/// The settings as JSON sections, the database password masked (provider keys are never part of
/// the settings' serialised form).
pub fn redacted_sections(settings: &Settings) -> BTreeMap<String, serde_json::Value> {
    let mut shown = settings.clone();
    shown.database.url = crate::cli::redact_url(&shown.database.url);
    match serde_json::to_value(&shown) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}
