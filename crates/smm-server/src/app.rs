//! The shared state of a running gateway, and the operations the API, the CLI and the
//! background tasks all use.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smm_provider_client::ProviderClient;
use smm_routing::{Catalog, CatalogInput, CustomerPricing, build_catalog};
use smm_store::{Customer, CustomerId, OrderId, Store, StoreError, Timestamp, hash_api_key};
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
    pub health: Health,
    pub enabled: bool,
}

/// Everything a request handler or a background task needs. Shared as `Arc<App>`.
#[derive(Debug)]
pub struct App {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub providers: BTreeMap<String, Provider>,
    /// The current catalog; replaced whole after every sync.
    catalog: RwLock<Arc<Catalog>>,
    /// Each provider's last good `services` reply.
    upstream: RwLock<BTreeMap<String, Vec<UpstreamService>>>,
    /// Customer by key hash. Only hits are cached, so a new customer works at once.
    keys: moka::sync::Cache<String, Customer>,
    /// Customer-specific rates, cached like keys (off the request path's database reads).
    rates: moka::sync::Cache<CustomerId, Arc<BTreeMap<u64, rust_decimal::Decimal>>>,
    limiter: Mutex<HashMap<CustomerId, (u64, u32)>>,
    /// Wakes the forwarder when an order is placed.
    pub forward_wake: Notify,
    /// Why recently rejected orders were refused, for `add` calls waiting on them
    /// (`server.add_wait_ms`).
    rejections: Mutex<HashMap<OrderId, ErrorKind>>,
    /// Names this process in claims (`host-pid-random`).
    pub worker_id: String,
    pub metrics: crate::metrics::Metrics,
    /// The admin bearer token, read once at start.
    pub admin_token: Option<String>,
    last_sync: Mutex<BTreeMap<String, Timestamp>>,
    last_balance: Mutex<BTreeMap<String, rust_decimal::Decimal>>,
}

impl App {
    /// Builds the state: one client per provider. No I/O besides what the store did already.
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> Result<App, String> {
        let mut providers = BTreeMap::new();
        for p in &settings.providers {
            let config = p
                .client_config()
                .map_err(|e| format!("provider {}: {e}", p.name))?;
            let client = ProviderClient::new(config).map_err(|e| e.to_string())?;
            providers.insert(
                p.name.clone(),
                Provider {
                    client,
                    health: Health::new(
                        p.failures_before_cooldown,
                        Duration::from_secs(p.cooldown_secs),
                    ),
                    enabled: p.enabled,
                },
            );
        }
        let rates = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(
                settings.server.key_cache_ttl_secs.max(1),
            ))
            .build();
        let keys = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(
                settings.server.key_cache_ttl_secs.max(1),
            ))
            .build();
        let settings_admin_token = settings.admin.token();
        let worker_id = format!(
            "{}-{}-{:04x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "gateway".into()),
            std::process::id(),
            fastrand::u16(..)
        );
        Ok(App {
            settings,
            store,
            providers,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            upstream: RwLock::new(BTreeMap::new()),
            keys,
            rates,
            limiter: Mutex::new(HashMap::new()),
            forward_wake: Notify::new(),
            rejections: Mutex::new(HashMap::new()),
            worker_id,
            metrics: crate::metrics::Metrics::default(),
            admin_token: settings_admin_token,
            last_sync: Mutex::new(BTreeMap::new()),
            last_balance: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |c| c.clone())
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
    pub fn provider_available(&self, provider: &str) -> bool {
        self.providers
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
        let fetches = self
            .providers
            .iter()
            .filter(|(_, p)| p.enabled)
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
                self.metrics.add(
                    "smm_price_change_alerts_total",
                    vec![("provider", name.clone())],
                    changes.len() as u64,
                );
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
        let threshold = self.settings.sync.price_change_alert_percent;
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
        for (name, provider) in self.providers.iter().filter(|(_, p)| p.enabled) {
            match provider.client.balance().await {
                Ok(balance) => {
                    self.last_balance
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(name.clone(), balance.balance);
                    if balance.balance.is_sign_positive() && !balance.balance.is_zero() {
                        provider.health.record_balance_positive();
                    }
                    let low = self
                        .settings
                        .providers
                        .iter()
                        .find(|p| &p.name == name)
                        .and_then(|p| p.low_balance);
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

    /// Rebuilds the catalog from the last synced upstream catalogs, assigning stable ids to
    /// newly exposed services.
    pub async fn rebuild_catalog(&self) -> Vec<String> {
        let providers = self.settings.provider_defs();
        let upstream = self
            .upstream
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut ids: BTreeMap<(String, String), u64> = match self.store.service_ids().await {
            Ok(all) => all
                .into_iter()
                .filter_map(|(id, p, s)| u64::try_from(id.0).ok().map(|id| ((p, s), id)))
                .collect(),
            Err(e) => return vec![format!("cannot read service ids: {e}")],
        };
        let mut messages = Vec::new();
        for _ in 0..2 {
            let build = build_catalog(&CatalogInput {
                providers: &providers,
                pricing: &self.settings.pricing,
                services: &self.settings.services,
                exposures: &self.settings.exposures,
                upstream: &upstream,
                exposure_ids: &ids,
            });
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
        let customer = match self.keys.get(&hash) {
            Some(customer) => customer,
            None => match self.store.customer_by_key_hash(&hash).await {
                Ok(Some(customer)) => {
                    self.keys.insert(hash, customer.clone());
                    customer
                }
                Ok(None) => return Err(ErrorKind::InvalidKey),
                Err(e) => return Err(unavailable(&e)),
            },
        };
        match customer.status {
            smm_store::CustomerStatus::Active => Ok(customer),
            smm_store::CustomerStatus::Suspended => Err(ErrorKind::AccountSuspended),
        }
    }

    /// Forgets cached key lookups (after a rotation or a suspension made by this process).
    pub fn invalidate_keys(&self) {
        self.keys.invalidate_all();
        self.rates.invalidate_all();
    }

    /// Counts a request against the customer's per-minute budget.
    pub fn rate_limit(&self, customer: CustomerId) -> Result<(), ErrorKind> {
        let minute = u64::try_from(now_ms() / 60_000).unwrap_or(0);
        let limit = self.settings.server.rate_limit_per_minute;
        let mut windows = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 100_000 {
            windows.retain(|_, (window, _)| *window == minute);
        }
        let entry = windows.entry(customer).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            return Err(ErrorKind::RateLimited);
        }
        entry.1 += 1;
        Ok(())
    }

    /// Notes why every route refused `order`, when an `add` may be waiting for it.
    pub fn note_rejection(&self, order: OrderId, kind: ErrorKind) {
        if self.settings.server.add_wait_ms == 0 {
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

/// A store failure on the request path: logged in full, shown to the client as a generic error.
pub fn unavailable(error: &StoreError) -> ErrorKind {
    tracing::error!(%error, "store error on the request path");
    ErrorKind::Unavailable
}
