//! Configuration, catalog, dialect, fault and record types (the public data model).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

/// Errors of the simulator's library API (configuration loading).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The TOML text could not be parsed into a [`SimConfig`].
    #[error("invalid config file: {0}")]
    Toml(String),
    /// The configuration parsed but is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
}

/// Whole simulator configuration. Every field has a default, so a TOML file may be as short
/// as `seed = 7`; an empty `services` or `accounts` list is filled from [`SimConfig::demo`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Seed of every per-order plan (durations, outcome, start count, partial remains).
    pub seed: u64,
    /// Simulated seconds per real second (1.0 = real time).
    pub speed: f64,
    /// The one currency of this panel (`currency` field of status and balance replies).
    pub currency: String,
    /// The catalog, in the order `services` lists it.
    pub services: Vec<SimService>,
    /// API keys and their opening balances.
    pub accounts: Vec<SimAccount>,
    /// Reply dialect at start (default: canonical Perfect Panel typing).
    pub dialect: Dialect,
    /// Request-log capacity; oldest entries are dropped (and counted) beyond it. 0 disables the log.
    pub max_log: usize,
    /// Id of the first order created (ids then go up by one).
    pub first_order_id: u64,
    /// Duration ranges used by order, refill and subscription plans (a service's `profile` may
    /// override the order ones).
    pub timing: Timing,
    /// Windows of sim time during which the panel is down or answers every request with a fault.
    pub outages: Vec<Outage>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            speed: 1.0,
            currency: "USD".to_owned(),
            services: Vec::new(),
            accounts: Vec::new(),
            dialect: Dialect::default(),
            max_log: DEFAULT_MAX_LOG,
            first_order_id: 10_001,
            timing: Timing::default(),
            outages: Vec::new(),
        }
    }
}

/// Default capacity of the request log.
pub const DEFAULT_MAX_LOG: usize = 1_000_000;

/// The key of the demo account.
pub const DEMO_KEY: &str = "sim-key";

impl SimConfig {
    /// Full demo catalog (one service of every type of the protocol, some with refill, cancel,
    /// drip-feed or link-duplicate rejection) and one account `sim-key` holding 1000.00000 USD.
    pub fn demo() -> SimConfig {
        SimConfig {
            services: demo_services(),
            accounts: vec![SimAccount {
                key: DEMO_KEY.to_owned(),
                balance: Decimal::new(100_000_000, 5),
            }],
            ..SimConfig::default()
        }
    }

    /// A catalog of `count` services for load tests: the demo catalog repeated, ids `1..=count`,
    /// each copy named and categorised apart (`... #2`) so a gateway sees `count` distinct
    /// services of every type with the demo's rates and bounds.
    pub fn scaled_services(count: usize) -> Vec<SimService> {
        let demo = demo_services();
        (0..count)
            .map(|i| {
                let base = &demo[i % demo.len()];
                let copy = i / demo.len() + 1;
                SimService {
                    id: i as u64 + 1,
                    name: format!("{} #{copy}", base.name),
                    category: format!("{} #{copy}", base.category),
                    ..base.clone()
                }
            })
            .collect()
    }

    /// Parses a TOML configuration (same shape as this struct; see the crate README).
    /// Missing `services`/`accounts` are taken from [`SimConfig::demo`].
    pub fn from_toml_str(s: &str) -> Result<SimConfig, SimError> {
        let mut cfg: SimConfig = toml::from_str(s).map_err(|e| SimError::Toml(e.to_string()))?;
        if cfg.services.is_empty() {
            cfg.services = demo_services();
        }
        if cfg.accounts.is_empty() {
            cfg.accounts = SimConfig::demo().accounts;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the configuration for inconsistencies (duplicate ids, unknown types, min > max, ...).
    pub fn validate(&self) -> Result<(), SimError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(SimError::Config(format!(
                "speed must be a positive number, got {}",
                self.speed
            )));
        }
        if self.currency.trim().is_empty() {
            return Err(SimError::Config("currency must not be empty".to_owned()));
        }
        let mut ids = HashSet::new();
        for s in &self.services {
            if !ids.insert(s.id) {
                return Err(SimError::Config(format!("duplicate service id {}", s.id)));
            }
            if ServiceType::parse(&s.service_type).is_none() {
                return Err(SimError::Config(format!(
                    "service {}: unknown type {:?} (expected one of: {})",
                    s.id,
                    s.service_type,
                    ServiceType::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if s.min > s.max {
                return Err(SimError::Config(format!(
                    "service {}: min {} > max {}",
                    s.id, s.min, s.max
                )));
            }
            if s.rate.is_sign_negative() {
                return Err(SimError::Config(format!("service {}: negative rate", s.id)));
            }
            s.profile
                .validate()
                .map_err(|e| SimError::Config(format!("service {}: profile: {e}", s.id)))?;
        }
        for (i, o) in self.outages.iter().enumerate() {
            o.validate()
                .map_err(|e| SimError::Config(format!("outages[{i}]: {e}")))?;
        }
        let mut keys = HashSet::new();
        for a in &self.accounts {
            if a.key.is_empty() || !keys.insert(a.key.as_str()) {
                return Err(SimError::Config(format!(
                    "empty or duplicate account key {:?}",
                    a.key
                )));
            }
        }
        Ok(())
    }
}

/// One service of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimService {
    /// Service id (`service`).
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Exact type string of the protocol, e.g. `Default`, `Custom Comments`, `Subscriptions`.
    #[serde(alias = "type")]
    pub service_type: String,
    /// Category shown in `services`.
    #[serde(default)]
    pub category: String,
    /// Price per 1000 units, or per order for the Package types. Accepts a string or a number.
    #[serde(deserialize_with = "de_decimal")]
    pub rate: Decimal,
    /// Minimal quantity.
    #[serde(default = "one")]
    pub min: u64,
    /// Maximal quantity.
    #[serde(default = "one")]
    pub max: u64,
    /// Refill may be requested for Completed/Partial orders.
    #[serde(default)]
    pub refill: bool,
    /// Cancel may be requested for orders that are not terminal.
    #[serde(default)]
    pub cancel: bool,
    /// `runs`/`interval` are accepted (Default type only).
    #[serde(default)]
    pub dripfeed: bool,
    /// A second active order of the same key on the same link is rejected.
    #[serde(default)]
    pub reject_duplicate_link: bool,
    /// Outcome weights of this service's orders.
    #[serde(default)]
    pub outcomes: Outcomes,
    /// How this panel delivers the service (start delay, speed, Partial shares, drops); unset
    /// fields fall back to `outcomes` and the panel-wide `timing`.
    #[serde(default, skip_serializing_if = "Profile::is_unset")]
    pub profile: Profile,
}

fn one() -> u64 {
    1
}

impl Default for SimService {
    /// A `Default`-type service with id 0, rate 0, min = max = 1, no flags, always Completed.
    fn default() -> Self {
        SimService {
            id: 0,
            name: String::new(),
            service_type: "Default".to_owned(),
            category: String::new(),
            rate: Decimal::ZERO,
            min: 1,
            max: 1,
            refill: false,
            cancel: false,
            dripfeed: false,
            reject_duplicate_link: false,
            outcomes: Outcomes::default(),
            profile: Profile::default(),
        }
    }
}

/// Relative weights of an order's final outcome, and the probability of a refill being rejected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Outcomes {
    /// Weight of Completed.
    pub completed: f64,
    /// Weight of Partial (some units never delivered; refunded pro rata).
    pub partial: f64,
    /// Weight of Canceled (by the panel before start; refunded in full).
    pub canceled: f64,
    /// Probability (0..=1) that a refill ends Rejected instead of Completed.
    pub refill_rejected: f64,
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes {
            completed: 1.0,
            partial: 0.0,
            canceled: 0.0,
            refill_rejected: 0.0,
        }
    }
}

impl Outcomes {
    /// Every order completes.
    pub fn always_completed() -> Outcomes {
        Outcomes::default()
    }

    /// Every order ends Partial.
    pub fn always_partial() -> Outcomes {
        Outcomes {
            completed: 0.0,
            partial: 1.0,
            ..Outcomes::default()
        }
    }

    /// Every order is canceled by the panel before it starts.
    pub fn always_canceled() -> Outcomes {
        Outcomes {
            completed: 0.0,
            canceled: 1.0,
            ..Outcomes::default()
        }
    }

    /// A realistic mix: 80 % Completed, 15 % Partial, 5 % Canceled, 10 % of refills rejected.
    pub fn mixed() -> Outcomes {
        Outcomes {
            completed: 0.80,
            partial: 0.15,
            canceled: 0.05,
            refill_rejected: 0.10,
        }
    }
}

/// Ranges `[min, max]` (seconds of simulated time) the per-order plans are drawn from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Timing {
    /// Time an order stays Pending.
    pub pending_secs: [u64; 2],
    /// Time an order stays In progress (drip-feed adds `interval × (runs − 1)`).
    pub run_secs: [u64; 2],
    /// Time a refill stays Pending.
    pub refill_pending_secs: [u64; 2],
    /// Time a refill stays In progress.
    pub refill_run_secs: [u64; 2],
    /// Time between two new posts of a subscription.
    pub post_every_secs: [u64; 2],
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pending_secs: [5, 30],
            run_secs: [60, 600],
            refill_pending_secs: [5, 30],
            refill_run_secs: [60, 600],
            post_every_secs: [600, 3600],
        }
    }
}

/// A provider's quality profile for one service: how the panel delivers its orders. Every field
/// is optional; an unset one falls back to the service's `outcomes`, the panel-wide `timing`, and
/// no drops, so a service without a profile behaves exactly as before. Plans are drawn when an
/// order is placed, so a changed profile ([`crate::Sim::set_profile`]) applies to orders placed
/// after the change only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Profile {
    /// Start delay: time an order stays Pending, `[min, max]` seconds (default
    /// `timing.pending_secs`).
    pub pending_secs: Option<[u64; 2]>,
    /// Speed: time an order stays In progress, `[min, max]` seconds (default `timing.run_secs`).
    pub run_secs: Option<[u64; 2]>,
    /// Outcome weights and refill rejection (default: the service's `outcomes`).
    pub outcomes: Option<Outcomes>,
    /// Undelivered share of a Partial order, `[min, max]` fractions of its quantity, e.g.
    /// `[0.2, 0.6]` (default: anything from one unit to all but one).
    pub partial_undelivered: Option<[f64; 2]>,
    /// Completed orders that later lose part of what was delivered (default: none).
    pub drops: Option<Drops>,
}

impl Profile {
    /// True when no field is set (the service follows `outcomes` and `timing`).
    pub fn is_unset(&self) -> bool {
        *self == Profile::default()
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(r) = self.partial_undelivered {
            fractions("partial_undelivered", r)?;
        }
        if let Some(d) = &self.drops {
            if !(d.rate.is_finite() && (0.0..=1.0).contains(&d.rate)) {
                return Err(format!("drops.rate must be within 0..=1, got {}", d.rate));
            }
            fractions("drops.share", d.share)?;
        }
        Ok(())
    }
}

fn fractions(name: &str, r: [f64; 2]) -> Result<(), String> {
    if r.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)) && r[0] <= r[1] {
        Ok(())
    } else {
        Err(format!(
            "{name} must be [min, max] with 0 <= min <= max <= 1, got {r:?}"
        ))
    }
}

/// Drops: some time after a Completed order ends, part of what was delivered disappears (the
/// followers unfollow). The API keeps answering Completed, as real panels do; the drop is
/// visible only to a god-view client ([`crate::Sim::dropped_orders`], [`SimOrder::drop`]). A
/// refill asked after the drop that ends Completed restores the units.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Drops {
    /// Probability (0..=1) that a Completed order drops.
    pub rate: f64,
    /// Share of the delivered units lost, `[min, max]` fractions (at least one unit).
    pub share: [f64; 2],
    /// How long after completion the drop happens, `[min, max]` seconds.
    pub after_secs: [u64; 2],
}

impl Default for Drops {
    fn default() -> Self {
        Drops {
            rate: 0.0,
            share: [0.1, 0.3],
            after_secs: [3600, 259_200],
        }
    }
}

/// A window (or a repeating series of windows) of sim time during which the panel is down.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outage {
    /// Sim time the first window opens, seconds since the sim started.
    #[serde(default)]
    pub from_secs: u64,
    /// Length of each window, seconds.
    pub for_secs: u64,
    /// The window repeats this often, e.g. 86400 for a nightly maintenance (once when unset).
    #[serde(default)]
    pub every_secs: Option<u64>,
    /// What happens meanwhile. Unset: the panel is unreachable, connections are refused (the
    /// server stops listening and closes its connections; the whole panel, control endpoints
    /// included). Set: every `/api/v2` request (about `service`, if given) gets this fault,
    /// which is not used up.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Only requests about this service (as [`FaultRule::service`]); only with `fault`.
    #[serde(default)]
    pub service: Option<u64>,
}

impl Outage {
    /// A panel-wide outage refusing connections for `for_secs` from `from_secs`.
    pub fn refused(from_secs: u64, for_secs: u64) -> Outage {
        Outage {
            from_secs,
            for_secs,
            every_secs: None,
            fault: None,
            service: None,
        }
    }

    /// The same window, answering every request with `fault` instead.
    pub fn with_fault(mut self, fault: Fault) -> Outage {
        self.fault = Some(fault);
        self
    }

    /// Repeats the window every `secs`.
    pub fn every(mut self, secs: u64) -> Outage {
        self.every_secs = Some(secs);
        self
    }

    /// Restricts a fault outage to one service.
    pub fn on_service(mut self, service: u64) -> Outage {
        self.service = Some(service);
        self
    }

    /// Whether connections are refused (no `fault`).
    pub fn refuses(&self) -> bool {
        self.fault.is_none()
    }

    /// End (sim ms) of the window open at `now_ms`, if one is.
    pub fn open_until(&self, now_ms: u64) -> Option<u64> {
        let from = self.from_secs.saturating_mul(1000);
        let len = self.for_secs.saturating_mul(1000);
        if now_ms < from || len == 0 {
            return None;
        }
        let start = match self.every_secs {
            Some(every) if every > 0 => {
                let every = every.saturating_mul(1000);
                now_ms - (now_ms - from) % every
            }
            _ => from,
        };
        let end = start.saturating_add(len);
        (now_ms < end).then_some(end)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.for_secs == 0 {
            return Err("for_secs must be at least 1".into());
        }
        if let Some(every) = self.every_secs {
            if every < self.for_secs {
                return Err(format!(
                    "every_secs ({every}) must be at least for_secs ({})",
                    self.for_secs
                ));
            }
        }
        if self.refuses() && self.service.is_some() {
            return Err("a refused-connections outage is panel-wide: set `fault` to restrict one to a service".into());
        }
        Ok(())
    }
}

/// One API key and its balance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimAccount {
    /// The API key (`key` parameter).
    pub key: String,
    /// Balance in the sim's currency. Accepts a string or a number.
    #[serde(deserialize_with = "de_decimal")]
    pub balance: Decimal,
}

/// Reply dialect: each flag switches one deviation from canonical Perfect Panel typing.
/// All false (the default) = canonical.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Dialect {
    /// `rate`/`min`/`max`/`charge`/`start_count`/`remains`/`balance` as JSON numbers
    /// (money as float-looking numbers); a numeric status code becomes a number too.
    pub numbers_as_numbers: bool,
    /// `add` answers `{"order":"23501"}`.
    pub order_id_as_string: bool,
    /// `add` answers `{"order_id":23501}`.
    pub order_id_key: bool,
    /// `Cancelled` instead of `Canceled`.
    pub cancelled_spelling: bool,
    /// Lower-case statuses (`in progress`, `completed`).
    pub lowercase_status: bool,
    /// Snake-case statuses (`in_progress`, `completed`).
    pub snake_status: bool,
    /// Order statuses as codes: 0 Pending, 1 In progress, 2 Completed, 3 Partial, 4 Canceled, 5 Processing.
    pub numeric_status: bool,
    /// Raw Perfect Panel message keys (`neworder.error.not_enough_funds`, ...) instead of English.
    pub raw_error_keys: bool,
    /// `remains` is `"Unknown"` while an order is Pending.
    pub unknown_remains: bool,
    /// `remains` is `"Unknown"` always: the panel tells delivery only by lowering `charge`.
    pub no_remains: bool,
}

/// A fault to inject, and which requests it applies to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// What happens.
    pub fault: Fault,
    /// Only requests with this `action` (any action when `None`).
    #[serde(default)]
    pub action: Option<String>,
    /// Only requests about this service: the `service` parameter, or the service of an order or
    /// refill named by `order`/`orders`/`refill`/`refills` (any service when `None`).
    #[serde(default)]
    pub service: Option<u64>,
    /// Apply to the next N matching requests only (until cleared when `None`).
    #[serde(default)]
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule for every request, until cleared.
    pub fn always(fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            action: None,
            service: None,
            times: None,
        }
    }

    /// Restricts the rule to one action.
    pub fn on_action(mut self, action: &str) -> FaultRule {
        self.action = Some(action.to_owned());
        self
    }

    /// Restricts the rule to one service.
    pub fn on_service(mut self, service: u64) -> FaultRule {
        self.service = Some(service);
        self
    }

    /// Limits the rule to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> FaultRule {
        self.times = Some(n);
        self
    }
}

/// Injectable upstream misbehaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Wait `ms` milliseconds, then process normally.
    Latency {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// Never answer (sleeps about an hour, then closes). Not processed.
    Hang,
    /// HTTP 500 with an HTML body. Not processed.
    Http500,
    /// HTTP 200 with a Cloudflare-like "Just a moment..." page. Not processed.
    Html200,
    /// HTTP 200 with an empty body. Not processed.
    EmptyBody,
    /// HTTP 200 `{"error": text}`. Not processed.
    Error {
        /// The error text.
        text: String,
    },
    /// HTTP 429 with a short text body. Not processed.
    RateLimited,
    /// Processed (an `add` is recorded and charged), then the connection is closed without a reply.
    DropAfterRecord,
    /// Connection closed without a reply. Not processed.
    DropBeforeRecord,
    /// Processed, then HTTP 200 with the real JSON reply cut short (always invalid JSON).
    Garbled,
    /// HTTP 302 to `http://127.0.0.1:1/elsewhere`. Not processed.
    Redirect,
    /// HTTP 503 with an nginx-style maintenance page and `Retry-After`. Not processed.
    Unavailable,
}

impl Fault {
    /// The snake-case name used in the request log (`drop_after_record`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Latency { .. } => "latency",
            Fault::Hang => "hang",
            Fault::Http500 => "http500",
            Fault::Html200 => "html200",
            Fault::EmptyBody => "empty_body",
            Fault::Error { .. } => "error",
            Fault::RateLimited => "rate_limited",
            Fault::DropAfterRecord => "drop_after_record",
            Fault::DropBeforeRecord => "drop_before_record",
            Fault::Garbled => "garbled",
            Fault::Redirect => "redirect",
            Fault::Unavailable => "unavailable",
        }
    }
}

/// How many `/api/v2` requests arrived, by action, whatever the request log keeps. Cheap to
/// read while a load test runs (`GET /control/counts`): a benchmark counts upstream calls with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestCounts {
    /// Requests per `action` parameter (trimmed; `""` when missing), faulted ones included.
    pub actions: BTreeMap<String, u64>,
    /// Order ids named by `status` requests (`order` plus every id of `orders`), so a sweep
    /// can be seen covering its orders.
    pub status_ids: u64,
}

/// One `/api/v2` request as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedRequest {
    /// Arrival sequence number (1, 2, ...; never reused, also not after `clear_requests`).
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `action` parameter, if any.
    pub action: Option<String>,
    /// Every parameter (query merged with body, body wins), including `key` and `action`.
    pub params: BTreeMap<String, String>,
    /// Simulated time of arrival, in milliseconds since the sim started.
    pub sim_time_ms: u64,
    /// Name of the fault applied ([`Fault::name`]), if any.
    pub fault: Option<String>,
}

/// Status of an order (subscriptions use Active/Completed/Expired/Canceled).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Accepted, not started.
    Pending,
    /// Delivering.
    #[serde(rename = "In progress")]
    InProgress,
    /// Fully delivered.
    Completed,
    /// Ended with `remains` undelivered (refunded pro rata).
    Partial,
    /// Ended without delivery (refunded in full).
    Canceled,
    /// A running subscription.
    Active,
    /// A subscription that reached its expiry date.
    Expired,
}

impl OrderStatus {
    /// Canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "Pending",
            OrderStatus::InProgress => "In progress",
            OrderStatus::Completed => "Completed",
            OrderStatus::Partial => "Partial",
            OrderStatus::Canceled => "Canceled",
            OrderStatus::Active => "Active",
            OrderStatus::Expired => "Expired",
        }
    }

    /// Whether the order can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            OrderStatus::Pending | OrderStatus::InProgress | OrderStatus::Active
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Snapshot of one order at the current sim time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimOrder {
    /// Order id.
    pub id: u64,
    /// Service id it was placed on.
    pub service: u64,
    /// Type string of that service when the order was placed.
    pub service_type: String,
    /// API key that placed it.
    pub key: String,
    /// `link` (none for Subscriptions).
    pub link: Option<String>,
    /// Total units: quantity × runs for drip-feed, comment/username lines for list types,
    /// 1 for Package, `max` × reserved posts for Subscriptions.
    pub quantity: u64,
    /// Drip-feed runs.
    pub runs: Option<u64>,
    /// Drip-feed interval in minutes.
    pub interval: Option<u64>,
    /// Every request parameter except `key` and `action`.
    pub params: BTreeMap<String, String>,
    /// Amount debited at `add`.
    pub charge: Decimal,
    /// Amount refunded so far (Partial, Canceled, unused subscription posts).
    pub refunded: Decimal,
    /// Status now.
    pub status: OrderStatus,
    /// Undelivered units now.
    pub remains: u64,
    /// Start count (0 until started).
    pub start_count: u64,
    /// Drip-feed runs done.
    pub runs_done: Option<u64>,
    /// Subscription posts processed.
    pub posts: Option<u64>,
    /// Sim time of creation (ms).
    pub created_ms: u64,
    /// The drop this Completed order suffered, once it happened (see [`Drops`]).
    #[serde(default)]
    pub drop: Option<SimDrop>,
}

/// Units a Completed order lost after it ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimDrop {
    /// Sim time of the drop (ms).
    pub at_ms: u64,
    /// Units lost.
    pub units: u64,
    /// Sim time (ms) a refill asked after the drop ended Completed and restored the units;
    /// `None` while they are missing.
    pub refilled_ms: Option<u64>,
}

/// Snapshot of one refill at the current sim time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimRefill {
    /// Refill id.
    pub id: u64,
    /// Order it refills.
    pub order: u64,
    /// API key that asked for it.
    pub key: String,
    /// `Pending`, `In progress`, `Completed` or `Rejected`.
    pub status: String,
    /// Sim time of creation (ms).
    pub created_ms: u64,
}

/// The service types of the protocol (exact strings of `services`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ServiceType {
    Default,
    Package,
    CustomComments,
    CustomCommentsPackage,
    Mentions,
    MentionsWithHashtags,
    MentionsCustomList,
    MentionsHashtag,
    MentionsUserFollowers,
    MentionsMediaLikers,
    CommentLikes,
    Poll,
    CommentReplies,
    InvitesFromGroups,
    Seo,
    Subscriptions,
    WebTraffic,
}

impl ServiceType {
    pub(crate) const ALL: [ServiceType; 17] = [
        ServiceType::Default,
        ServiceType::Package,
        ServiceType::CustomComments,
        ServiceType::CustomCommentsPackage,
        ServiceType::Mentions,
        ServiceType::MentionsWithHashtags,
        ServiceType::MentionsCustomList,
        ServiceType::MentionsHashtag,
        ServiceType::MentionsUserFollowers,
        ServiceType::MentionsMediaLikers,
        ServiceType::CommentLikes,
        ServiceType::Poll,
        ServiceType::CommentReplies,
        ServiceType::InvitesFromGroups,
        ServiceType::Seo,
        ServiceType::Subscriptions,
        ServiceType::WebTraffic,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ServiceType::Default => "Default",
            ServiceType::Package => "Package",
            ServiceType::CustomComments => "Custom Comments",
            ServiceType::CustomCommentsPackage => "Custom Comments Package",
            ServiceType::Mentions => "Mentions",
            ServiceType::MentionsWithHashtags => "Mentions with Hashtags",
            ServiceType::MentionsCustomList => "Mentions Custom List",
            ServiceType::MentionsHashtag => "Mentions Hashtag",
            ServiceType::MentionsUserFollowers => "Mentions User Followers",
            ServiceType::MentionsMediaLikers => "Mentions Media Likers",
            ServiceType::CommentLikes => "Comment Likes",
            ServiceType::Poll => "Poll",
            ServiceType::CommentReplies => "Comment Replies",
            ServiceType::InvitesFromGroups => "Invites from Groups",
            ServiceType::Seo => "SEO",
            ServiceType::Subscriptions => "Subscriptions",
            ServiceType::WebTraffic => "Web Traffic",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ServiceType> {
        ServiceType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Flat price per order instead of per 1000.
    pub(crate) fn flat_priced(self) -> bool {
        matches!(
            self,
            ServiceType::Package | ServiceType::CustomCommentsPackage
        )
    }
}

/// Deserializes a [`Decimal`] from a string (`"0.90"`) or a number (`0.9`, `12`).
pub(crate) fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal as a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
            Decimal::from_str(v.trim())
                .or_else(|_| Decimal::from_scientific(v.trim()))
                .map_err(|e| E::custom(format!("invalid decimal {v:?}: {e}")))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
            // Through the shortest decimal text of the float, so 0.9 becomes 0.9, not 0.899999...
            self.visit_str(&v.to_string())
        }
    }
    d.deserialize_any(V)
}

fn svc(
    id: u64,
    name: &str,
    ty: ServiceType,
    category: &str,
    rate: Decimal,
    min: u64,
    max: u64,
) -> SimService {
    SimService {
        id,
        name: name.to_owned(),
        service_type: ty.as_str().to_owned(),
        category: category.to_owned(),
        rate,
        min,
        max,
        refill: false,
        cancel: false,
        dripfeed: false,
        reject_duplicate_link: false,
        outcomes: Outcomes::mixed(),
        profile: Profile::default(),
    }
}

/// The demo catalog: every service type, rates with 2 to 5 decimals.
pub(crate) fn demo_services() -> Vec<SimService> {
    use ServiceType as T;
    let d = Decimal::new;
    let mut v = vec![
        SimService {
            refill: true,
            cancel: true,
            dripfeed: true,
            ..svc(
                1,
                "Instagram Followers [Refill 30D]",
                T::Default,
                "Instagram Followers",
                d(90, 2),
                50,
                10_000,
            )
        },
        SimService {
            cancel: true,
            dripfeed: true,
            ..svc(
                2,
                "Instagram Likes",
                T::Default,
                "Instagram Likes",
                d(125, 3),
                10,
                50_000,
            )
        },
        svc(
            3,
            "Instagram Views",
            T::Default,
            "Instagram Views",
            d(125, 4),
            100,
            1_000_000,
        ),
        SimService {
            refill: true,
            reject_duplicate_link: true,
            ..svc(
                4,
                "YouTube Subscribers [Refill 60D]",
                T::Default,
                "YouTube",
                d(1250, 2),
                100,
                5_000,
            )
        },
        svc(
            5,
            "Instagram Starter Package",
            T::Package,
            "Packages",
            d(499, 2),
            1,
            1,
        ),
        SimService {
            cancel: true,
            ..svc(
                6,
                "Instagram Custom Comments",
                T::CustomComments,
                "Instagram Comments",
                d(800, 2),
                10,
                1_500,
            )
        },
        svc(
            7,
            "Instagram Custom Comments Package",
            T::CustomCommentsPackage,
            "Instagram Comments",
            d(1550, 2),
            1,
            50,
        ),
        svc(
            8,
            "Instagram Mentions",
            T::Mentions,
            "Instagram Mentions",
            d(2345, 3),
            100,
            10_000,
        ),
        svc(
            9,
            "Instagram Mentions with Hashtags",
            T::MentionsWithHashtags,
            "Instagram Mentions",
            d(310, 2),
            100,
            10_000,
        ),
        svc(
            10,
            "Instagram Mentions Custom List",
            T::MentionsCustomList,
            "Instagram Mentions",
            d(425, 2),
            10,
            1_000,
        ),
        svc(
            11,
            "Instagram Mentions Hashtag",
            T::MentionsHashtag,
            "Instagram Mentions",
            d(1875, 3),
            100,
            10_000,
        ),
        svc(
            12,
            "Instagram Mentions User Followers",
            T::MentionsUserFollowers,
            "Instagram Mentions",
            d(199, 2),
            100,
            10_000,
        ),
        svc(
            13,
            "Instagram Mentions Media Likers",
            T::MentionsMediaLikers,
            "Instagram Mentions",
            d(210, 2),
            100,
            10_000,
        ),
        SimService {
            cancel: true,
            ..svc(
                14,
                "Instagram Comment Likes",
                T::CommentLikes,
                "Instagram Comments",
                d(75, 2),
                20,
                20_000,
            )
        },
        svc(
            15,
            "Twitter Poll Votes",
            T::Poll,
            "Twitter",
            d(36, 2),
            100,
            100_000,
        ),
        svc(
            16,
            "Instagram Comment Replies",
            T::CommentReplies,
            "Instagram Comments",
            d(999, 2),
            1,
            500,
        ),
        svc(
            17,
            "Telegram Invites from Groups",
            T::InvitesFromGroups,
            "Telegram",
            d(550, 2),
            100,
            50_000,
        ),
        svc(
            18,
            "Google SEO Traffic",
            T::Seo,
            "SEO",
            d(4321, 5),
            1_000,
            1_000_000,
        ),
        SimService {
            cancel: true,
            ..svc(
                19,
                "Instagram Auto Likes",
                T::Subscriptions,
                "Instagram Auto Likes",
                d(22, 2),
                50,
                5_000,
            )
        },
        svc(
            20,
            "Website Traffic [Worldwide]",
            T::WebTraffic,
            "Web Traffic",
            d(3125, 5),
            100,
            100_000,
        ),
    ];
    for s in &mut v {
        if s.service_type == T::Subscriptions.as_str() {
            s.outcomes = Outcomes::default();
        }
    }
    v
}
