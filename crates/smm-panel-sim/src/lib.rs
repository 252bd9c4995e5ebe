//! `smm-panel-sim`: an in-memory upstream SMM panel speaking "API v2" (Perfect Panel style),
//! with accelerated, seed-deterministic order progression, switchable reply dialects and
//! injectable transport faults. It is an independent re-implementation of an upstream panel (it
//! does not share parsing code with the gateway), used by tests, demos and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use smm_panel_sim::{Fault, FaultRule, Sim, SimConfig};
//! let handle = Sim::spawn(SimConfig::demo()).await?;
//! println!("POST form to {} with key=sim-key", handle.api_url());
//! handle.sim.add_fault(FaultRule::always(Fault::DropAfterRecord).on_action("add").times(1));
//! handle.sim.advance(std::time::Duration::from_secs(3600));
//! # Ok(()) }
//! ```
//!
//! Time: the sim clock is real elapsed time × `speed` plus a manual offset moved by
//! [`Sim::advance`]; order status is computed lazily from it, so no background task runs.
//!
//! Provider profiles: each service may carry a [`Profile`] (start delay, speed, outcome mix,
//! undelivered share of a Partial, [`Drops`] after completion, refill success) over the
//! panel-wide [`Timing`], changed at run time with [`Sim::set_profile`]; [`Outage`] windows of
//! sim time refuse connections or fault every request. A client holding the `Sim` sees drops
//! through [`Sim::dropped_orders`]. The TOML fields are described in the crate README.

#![forbid(unsafe_code)]

mod config;
mod engine;
mod json;
mod params;
mod server;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;

pub use config::{
    DEFAULT_MAX_LOG, DEMO_KEY, Dialect, Drops, Fault, FaultRule, OrderStatus, Outage, Outcomes,
    Profile, RecordedRequest, RequestCounts, SimAccount, SimConfig, SimDrop, SimError, SimOrder,
    SimRefill, SimService, Timing,
};

use engine::State;

/// A running (or ready to run) simulated panel. Cheap to clone; clones share all state.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    /// `max_log > 0` (fixed at creation), read without the lock.
    log_enabled: bool,
    /// Some outage refuses connections: the server watches the clock for it.
    may_refuse: AtomicBool,
    state: Mutex<State>,
}

struct Clock {
    start: Instant,
    speed: f64,
    offset_ms: AtomicU64,
}

impl Clock {
    #[allow(clippy::float_arithmetic)] // `speed` is a float scale factor by design; no money here
    fn now_ms(&self) -> u64 {
        let real = self.start.elapsed().as_secs_f64();
        // `as` saturates (and maps NaN to 0): no overflow panic possible.
        let scaled = (real * self.speed * 1000.0) as u64;
        scaled.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("speed", &self.inner.clock.speed)
            .field("sim_time_ms", &self.inner.clock.now_ms())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Builds a simulator from a configuration (an invalid `speed` falls back to 1.0).
    pub fn new(config: SimConfig) -> Sim {
        let speed = if config.speed.is_finite() && config.speed > 0.0 {
            config.speed
        } else {
            1.0
        };
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Sim {
            inner: Arc::new(Inner {
                clock: Clock {
                    start: Instant::now(),
                    speed,
                    offset_ms: AtomicU64::new(0),
                },
                log_enabled: config.max_log > 0,
                may_refuse: AtomicBool::new(config.outages.iter().any(Outage::refuses)),
                state: Mutex::new(State::new(&config, start_unix_ms)),
            }),
        }
    }

    /// Serves HTTP on `listener` (API under `/api/v2`, control under `/control/...`) until the
    /// future is dropped or its task aborted. Every connection task ends with it.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        server::serve(self, listener).await
    }

    /// Binds `127.0.0.1:0`, spawns [`Sim::serve`] and returns a handle that stops it on drop.
    pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let sim = Sim::new(config);
        let task = tokio::spawn(sim.clone().serve(listener));
        Ok(SimHandle { sim, addr, task })
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn log_enabled(&self) -> bool {
        self.inner.log_enabled
    }

    /// Whether some outage refuses connections (cheap: no lock).
    pub(crate) fn may_refuse(&self) -> bool {
        self.inner.may_refuse.load(Ordering::Relaxed)
    }

    /// End (sim ms) of the refused-connections window open now, if one is.
    pub(crate) fn refused_until(&self) -> Option<u64> {
        let now = self.now_ms();
        self.lock().refused_until(now)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Current simulated time since the sim started.
    pub fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms())
    }

    /// Moves the sim clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ =
            self.inner
                .clock
                .offset_ms
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                    Some(o.saturating_add(ms))
                });
    }

    /// Adds a fault rule (rules are tried in the order they were added; the first match wins).
    pub fn add_fault(&self, rule: FaultRule) {
        self.lock().add_fault(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.lock().clear_faults();
    }

    /// Active fault rules (with their remaining `times`).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.lock().faults()
    }

    /// Adds an outage window (see [`Outage`]); a refused-connections outage needs the sim served
    /// by [`Sim::serve`] or [`Sim::spawn`].
    pub fn add_outage(&self, outage: Outage) {
        let mut st = self.lock();
        st.add_outage(outage);
        self.inner
            .may_refuse
            .store(st.may_refuse(), Ordering::Relaxed);
    }

    /// Removes every outage (a refused panel listens again within a few milliseconds).
    pub fn clear_outages(&self) {
        let mut st = self.lock();
        st.clear_outages();
        self.inner.may_refuse.store(false, Ordering::Relaxed);
    }

    /// The outages configured.
    pub fn outages(&self) -> Vec<Outage> {
        self.lock().outages()
    }

    /// Replaces one service's quality profile (start delay, speed, outcomes, Partial shares,
    /// drops): orders placed from now on follow it, earlier ones keep their plans. False when
    /// the service is unknown.
    pub fn set_profile(&self, service: u64, profile: Profile) -> bool {
        self.lock().set_profile(service, profile)
    }

    /// Completed orders whose drop happened by now ([`SimOrder::drop`] set), refilled or not:
    /// what a god-view client asks to know which orders need a refill.
    pub fn dropped_orders(&self) -> Vec<SimOrder> {
        let now = self.now_ms();
        let mut st = self.lock();
        st.settle(now);
        st.dropped_orders(now)
    }

    /// Switches the reply dialect (applies to the next request).
    pub fn set_dialect(&self, d: Dialect) {
        self.lock().dialect = d;
    }

    /// The reply dialect in force.
    pub fn dialect(&self) -> Dialect {
        self.lock().dialect
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests()
    }

    /// Empties the request log (sequence numbers keep counting).
    pub fn clear_requests(&self) {
        self.lock().clear_requests();
    }

    /// How many log entries were dropped because the log was full (`max_log`).
    pub fn log_dropped(&self) -> u64 {
        self.lock().log_dropped()
    }

    /// Requests received so far, by action (kept even when the request log is off).
    pub fn counts(&self) -> RequestCounts {
        self.lock().request_counts()
    }

    /// Places `count` orders at once with the parameters of one `add` request (without `action`;
    /// `key` included), exactly as `count` such requests would, but without HTTP or the request
    /// log: for seeding a benchmark with many upstream orders. Returns the ids of the first and
    /// the last order. Stops at the first refusal (e.g. `Not enough funds on balance`) and
    /// reports its text; orders placed before it stay.
    pub fn add_orders(
        &self,
        params: &std::collections::BTreeMap<String, String>,
        count: u64,
    ) -> Result<Option<(u64, u64)>, String> {
        let now = self.now_ms();
        let mut st = self.lock();
        st.settle(now);
        st.add_many(params, count, now)
    }

    /// Snapshot of every order at the current sim time (refunds due by now are applied first).
    pub fn orders(&self) -> Vec<SimOrder> {
        let now = self.now_ms();
        let mut st = self.lock();
        st.settle(now);
        st.orders(now)
    }

    /// Snapshot of one order.
    pub fn order(&self, id: u64) -> Option<SimOrder> {
        let now = self.now_ms();
        let mut st = self.lock();
        st.settle(now);
        st.order(id, now)
    }

    /// Snapshot of every refill.
    pub fn refills(&self) -> Vec<SimRefill> {
        let now = self.now_ms();
        self.lock().refills(now)
    }

    /// Sets (or creates) an account's balance.
    pub fn set_balance(&self, key: &str, balance: Decimal) {
        self.lock().set_balance(key, balance);
    }

    /// An account's balance now (refunds due by now applied), `None` for an unknown key.
    pub fn balance(&self, key: &str) -> Option<Decimal> {
        let now = self.now_ms();
        let mut st = self.lock();
        st.settle(now);
        st.balance(key)
    }

    /// Replaces the catalog (existing orders keep their charge and progress).
    pub fn set_services(&self, services: Vec<SimService>) {
        self.lock().set_services(services);
    }

    /// The catalog.
    pub fn services(&self) -> Vec<SimService> {
        self.lock().services()
    }
}

/// A simulator serving on `127.0.0.1`; the server task is aborted when the handle is dropped.
#[derive(Debug)]
pub struct SimHandle {
    /// The simulator (shared state with the server).
    pub sim: Sim,
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT/api/v2`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    /// `http://127.0.0.1:PORT` (control endpoints live under `/control/`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
