//! The simulated market of `bench/routing/run.sh` (issue #15): the real `smm-gateway serve` in
//! front of three simulated providers, once per routing policy, with a population of customers
//! ordering through the v2 API for several simulated weeks; then the policies side by side.
//!
//! For each policy (`priority`, `cheapest`, `quality`; concurrently) the driver
//!
//! * starts three in-process simulators from `bench/routing/provider-{a,b,c}.toml` (same seeds
//!   for every policy, accelerated to `speed` simulated seconds per real second);
//! * writes the policy's gateway config from `bench/routing/gateway.toml` and starts the release
//!   gateway binary on it, with its own SQLite file; creates the customers through the admin
//!   API and credits them;
//! * runs the customers: orders arrive as a Poisson process in simulated time (the same demand
//!   for every policy until customers leave), each order is polled with `status` until it ends,
//!   and when the simulator that took it says it dropped (the customers' god view: `Sim` handles
//!   in this process), the customer asks the gateway for a refill and follows it; a customer let
//!   down by an order may leave for good (`market.toml`, `[customers]`);
//! * degrades provider B mid-run (`[degrade]`: `Sim::set_profile`) and restores it later;
//! * at the end polls every order once more, reads every customer's balance, and every
//!   simulator's account and orders, and reports: profit after refunds (customers' charges net
//!   of refunds, from the v2 replies, minus upstream charges net of upstream refunds, from the
//!   simulators' accounts; exact decimals), refunds, the customer-visible completion rate, the
//!   median time to complete, refills, the share of orders per provider, and B's share before,
//!   during and after its bad days.
//!
//! ```sh
//! bench/routing/run.sh [--quick]          # builds, then runs this
//! market --config bench/routing/market.toml --gateway target/release/smm-gateway
//! ```

#![allow(clippy::float_arithmetic)] // simulated time, shares and probabilities only; money is Decimal

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use smm_panel_sim::{Profile, Sim, SimConfig, SimHandle};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: f64 = 3_600_000.0;

#[derive(Debug, Parser)]
#[command(about = "The simulated market of bench/routing/run.sh (issue #15)")]
struct Args {
    /// The market definition; provider files and the gateway template are read beside it.
    #[arg(long, default_value = "bench/routing/market.toml")]
    config: PathBuf,
    /// The release `smm-gateway` binary.
    #[arg(long)]
    gateway: PathBuf,
    /// Where the gateways' configs, databases and logs go (default: a new temp dir).
    #[arg(long)]
    work: Option<PathBuf>,
    /// The shorter market of `[quick]`.
    #[arg(long)]
    quick: bool,
    /// Only these policies (comma-separated; default: `policies` of the market file).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Leave the `[routing]` tables out of the gateway configs, for a gateway that has none
    /// yet: every gateway then routes by priority, whatever its column says.
    #[arg(long)]
    omit_routing: bool,
    /// Overrides `[customers] leave_after_bad` (0: nobody ever leaves, only margins count).
    #[arg(long)]
    leave_after_bad: Option<f64>,
}

// ----- market.toml ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Market {
    seed: u64,
    speed: f64,
    days: f64,
    drain_days: f64,
    policies: Vec<String>,
    start_target_secs: u64,
    customers: Customers,
    services: Vec<MarketService>,
    providers: Vec<ProviderFile>,
    degrade: Degrade,
    quick: Quick,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Customers {
    count: usize,
    deposit: Decimal,
    orders_per_day: f64,
    poll_ms: u64,
    patience_hours: f64,
    partial_tolerance: f64,
    leave_after_bad: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketService {
    id: u64,
    weight: f64,
    quantity: [u64; 2],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Degrade {
    provider: String,
    from_day: f64,
    for_days: f64,
    profile: Profile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quick {
    days: f64,
    drain_days: f64,
    from_day: f64,
    for_days: f64,
}

fn days_ms(days: f64) -> u64 {
    (days * DAY_MS as f64).max(0.0) as u64
}

/// `fields` of `over` replace those of `base`; the rest stay.
fn overlay(base: &Profile, over: &Profile) -> Profile {
    Profile {
        pending_secs: over.pending_secs.or(base.pending_secs),
        run_secs: over.run_secs.or(base.run_secs),
        outcomes: over.outcomes.clone().or_else(|| base.outcomes.clone()),
        partial_undelivered: over.partial_undelivered.or(base.partial_undelivered),
        drops: over.drops.clone().or_else(|| base.drops.clone()),
    }
}

// ----- one policy's market --------------------------------------------------------------------

/// A simulated provider of one policy's market.
struct Provider {
    name: String,
    handle: SimHandle,
    key: String,
    opening: Decimal,
}

impl Provider {
    fn sim(&self) -> &Sim {
        &self.handle.sim
    }
}

/// The gateway process; killed when dropped.
struct Gateway {
    child: tokio::process::Child,
    v2: String,
    admin: String,
    token: String,
    dir: PathBuf,
}

#[derive(Debug, Clone)]
struct LocalService {
    id: u64,
    price: Decimal,
    refill: bool,
    weight: f64,
    quantity: [u64; 2],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RefillState {
    /// Asked; the gateway's refill id.
    Asked(u64),
    /// Completed, Rejected, Canceled, or the gateway's refusal text.
    Ended(String),
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    service: u64,
    link: String,
    quantity: u64,
    remains: u64,
    gross: Decimal,
    placed_ms: u64,
    started_ms: Option<u64>,
    ended_ms: Option<u64>,
    status: String,
    charge: Option<Decimal>,
    /// The charge shown while not yet ended (the full price), for the gross check.
    open_charge: Option<Decimal>,
    dropped: bool,
    refill: Option<RefillState>,
    letdown: bool,
}

impl Track {
    fn ended(&self) -> bool {
        self.ended_ms.is_some()
    }

    fn settled(&self) -> bool {
        self.ended() && !matches!(self.refill, Some(RefillState::Asked(_)))
    }
}

struct Customer {
    index: usize,
    key: String,
    demand: fastrand::Rng,
    mood: fastrand::Rng,
    active: bool,
    next_order_ms: u64,
    orders: Vec<Track>,
    refused: BTreeMap<String, u64>,
    letdowns: u64,
}

/// What every customer of a policy shares.
struct Ctx<'a> {
    http: &'a reqwest::Client,
    v2: &'a str,
    market: &'a Market,
    services: &'a [LocalService],
}

fn terminal(status: &str) -> bool {
    matches!(status, "Completed" | "Partial" | "Canceled" | "Refunded")
}

fn dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

async fn v2(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Result<Value, BoxError> {
    let reply = http.post(url).form(form).send().await?;
    let status = reply.status();
    let body = reply.text().await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}").into());
    }
    Ok(serde_json::from_str(&body)?)
}

fn error_of(v: &Value) -> Option<String> {
    v.get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|_| v.as_object().is_some_and(|o| o.len() == 1))
}

impl Customer {
    fn new(index: usize, key: String, market: &Market) -> Customer {
        let mut demand =
            fastrand::Rng::with_seed(market.seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
        let mood =
            fastrand::Rng::with_seed(!market.seed ^ (index as u64).wrapping_mul(0x85EB_CA6B));
        let first = gap_ms(&mut demand, market.customers.orders_per_day);
        Customer {
            index,
            key,
            demand,
            mood,
            active: true,
            next_order_ms: first,
            orders: Vec::new(),
            refused: BTreeMap::new(),
            letdowns: 0,
        }
    }

    fn busy(&self) -> bool {
        self.orders.iter().any(|o| !o.settled())
    }

    /// A letdown: the customer may leave (stop ordering) for good.
    fn let_down(&mut self, market: &Market) {
        self.letdowns += 1;
        if self.active && self.mood.f64() < market.customers.leave_after_bad {
            self.active = false;
        }
    }

    async fn tick(&mut self, ctx: &Ctx<'_>, now: u64, ordering: bool) {
        while ordering && self.active && self.next_order_ms <= now {
            self.place(ctx, now).await;
            self.next_order_ms += gap_ms(&mut self.demand, ctx.market.customers.orders_per_day);
        }
        self.poll_orders(ctx, now, false).await;
        self.refills(ctx).await;
        let patience = (ctx.market.customers.patience_hours * HOUR_MS) as u64;
        let tolerance = ctx.market.customers.partial_tolerance;
        for i in 0..self.orders.len() {
            let o = &self.orders[i];
            let stuck = o.started_ms.is_none() && !o.ended() && now > o.placed_ms + patience;
            let short = o.remains as f64 > o.quantity as f64 * tolerance;
            let failed = o.ended() && o.status != "Completed" && (o.status != "Partial" || short);
            let unrefilled = matches!(&o.refill, Some(RefillState::Ended(s)) if s != "Completed");
            if !o.letdown && (stuck || failed || unrefilled) {
                self.orders[i].letdown = true;
                self.let_down(ctx.market);
            }
        }
    }

    async fn place(&mut self, ctx: &Ctx<'_>, now: u64) {
        let total: f64 = ctx.services.iter().map(|s| s.weight).sum();
        let mut pick = self.demand.f64() * total;
        let mut service = &ctx.services[0];
        for s in ctx.services {
            if pick < s.weight {
                service = s;
                break;
            }
            pick -= s.weight;
        }
        let [lo, hi] = service.quantity;
        let quantity = self.demand.u64(lo / 100..=hi / 100) * 100;
        let link = format!(
            "https://example.test/c{}/o{}",
            self.index,
            self.orders.len() + 1
        );
        let (sid, qty) = (service.id.to_string(), quantity.to_string());
        let form = [
            ("key", self.key.as_str()),
            ("action", "add"),
            ("service", &sid),
            ("link", &link),
            ("quantity", &qty),
        ];
        let reply = match v2(ctx.http, ctx.v2, &form).await {
            Ok(v) => v,
            Err(e) => {
                *self.refused.entry(format!("transport: {e}")).or_default() += 1;
                self.let_down(ctx.market);
                return;
            }
        };
        match reply.get("order").and_then(id_of) {
            Some(id) => self.orders.push(Track {
                id,
                service: service.id,
                link,
                quantity,
                remains: quantity,
                gross: service.price * Decimal::from(quantity) / Decimal::from(1000),
                placed_ms: now,
                started_ms: None,
                ended_ms: None,
                status: "Pending".into(),
                charge: None,
                open_charge: None,
                dropped: false,
                refill: None,
                letdown: false,
            }),
            None => {
                let text = error_of(&reply).unwrap_or_else(|| reply.to_string());
                *self.refused.entry(text).or_default() += 1;
                self.let_down(ctx.market);
            }
        }
    }

    /// `status` of every order not yet ended (or all of them with `all`).
    async fn poll_orders(&mut self, ctx: &Ctx<'_>, now: u64, all: bool) {
        let ids: Vec<u64> = self
            .orders
            .iter()
            .filter(|o| all || !o.ended())
            .map(|o| o.id)
            .collect();
        for chunk in ids.chunks(100) {
            let list = chunk
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let form = [
                ("key", self.key.as_str()),
                ("action", "status"),
                ("orders", &list),
            ];
            let Ok(reply) = v2(ctx.http, ctx.v2, &form).await else {
                continue;
            };
            for o in self.orders.iter_mut().filter(|o| chunk.contains(&o.id)) {
                let Some(item) = reply.get(o.id.to_string()) else {
                    continue;
                };
                let Some(status) = item.get("status").and_then(Value::as_str) else {
                    continue;
                };
                o.status = status.to_owned();
                o.charge = item.get("charge").and_then(dec);
                if let Some(remains) = item.get("remains").and_then(id_of) {
                    o.remains = remains;
                }
                if status != "Pending" && o.started_ms.is_none() {
                    o.started_ms = Some(now);
                }
                if terminal(status) {
                    o.ended_ms.get_or_insert(now);
                } else if o.open_charge.is_none() {
                    o.open_charge = o.charge;
                }
            }
        }
    }

    /// Asks a refill for every dropped Completed order of a refillable service, and follows the
    /// refills asked.
    async fn refills(&mut self, ctx: &Ctx<'_>) {
        let refillable = |sid: u64| ctx.services.iter().any(|s| s.id == sid && s.refill);
        for i in 0..self.orders.len() {
            let o = &self.orders[i];
            if !(o.dropped
                && o.refill.is_none()
                && o.status == "Completed"
                && refillable(o.service))
            {
                continue;
            }
            let id = o.id.to_string();
            let form = [
                ("key", self.key.as_str()),
                ("action", "refill"),
                ("order", &id),
            ];
            let Ok(reply) = v2(ctx.http, ctx.v2, &form).await else {
                continue;
            };
            self.orders[i].refill = Some(match reply.get("refill").and_then(id_of) {
                Some(rid) => RefillState::Asked(rid),
                None => RefillState::Ended(error_of(&reply).unwrap_or_else(|| reply.to_string())),
            });
        }
        let asked: Vec<(usize, u64)> = self
            .orders
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o.refill {
                Some(RefillState::Asked(rid)) => Some((i, rid)),
                _ => None,
            })
            .collect();
        for chunk in asked.chunks(100) {
            let list = chunk
                .iter()
                .map(|(_, r)| r.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let form = [
                ("key", self.key.as_str()),
                ("action", "refill_status"),
                ("refills", &list),
            ];
            let Ok(Value::Array(items)) = v2(ctx.http, ctx.v2, &form).await else {
                continue;
            };
            for item in items {
                let (Some(rid), Some(status)) = (
                    item.get("refill").and_then(id_of),
                    item.get("status").and_then(Value::as_str),
                ) else {
                    continue;
                };
                if matches!(status, "Completed" | "Rejected" | "Canceled") {
                    if let Some((i, _)) = chunk.iter().find(|(_, r)| *r == rid) {
                        self.orders[*i].refill = Some(RefillState::Ended(status.to_owned()));
                    }
                }
            }
        }
    }
}

/// The next gap of a Poisson process of `per_day` events a simulated day, in ms.
fn gap_ms(rng: &mut fastrand::Rng, per_day: f64) -> u64 {
    let u = rng.f64();
    let days = -(1.0 - u).ln() / per_day.max(1e-9);
    days_ms(days).max(1)
}

// ----- starting things -------------------------------------------------------------------------

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The gateway template with `@NAME@`s filled; without the `[routing]` tables when `omit`.
fn gateway_config(template: &str, fill: &BTreeMap<String, String>, omit: bool) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in template.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            skipping = omit && trimmed.starts_with("[routing");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (name, value) in fill {
        out = out.replace(&format!("@{name}@"), value);
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn start_gateway(
    binary: &Path,
    dir: &Path,
    template: &str,
    policy: &str,
    providers: &[Provider],
    market: &Market,
    omit_routing: bool,
    http: &reqwest::Client,
) -> Result<Gateway, BoxError> {
    std::fs::create_dir_all(dir)?;
    let (port, admin_port) = (free_port()?, free_port()?);
    let start_secs =
        Decimal::from(market.start_target_secs) / Decimal::from_str(&market.speed.to_string())?;
    let mut fill = BTreeMap::from([
        ("PORT".to_owned(), port.to_string()),
        ("ADMIN_PORT".to_owned(), admin_port.to_string()),
        ("DIR".to_owned(), dir.display().to_string()),
        ("POLICY".to_owned(), policy.to_owned()),
        (
            "START_SECS".to_owned(),
            start_secs.round_dp(6).normalize().to_string(),
        ),
    ]);
    for p in providers {
        fill.insert(format!("URL_{}", p.name.to_uppercase()), p.handle.api_url());
    }
    let config = gateway_config(template, &fill, omit_routing);
    if let Some(line) = config
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.contains('@'))
    {
        return Err(format!("unfilled placeholder in the gateway config: {line}").into());
    }
    let path = dir.join("gateway.toml");
    std::fs::write(&path, &config)?;
    let token = format!(
        "market-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    );
    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .env("MARKET_ADMIN_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    for p in providers {
        command.env(format!("MARKET_KEY_{}", p.name.to_uppercase()), &p.key);
    }
    let child = command.spawn()?;
    let gateway = Gateway {
        child,
        v2: format!("http://127.0.0.1:{port}/api/v2"),
        admin: format!("http://127.0.0.1:{admin_port}"),
        token,
        dir: dir.to_owned(),
    };
    for _ in 0..600 {
        let ready = http
            .get(format!("{}/readyz", gateway.admin))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(gateway);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the {policy} gateway did not become ready; see {}",
        dir.join("gateway.log").display()
    )
    .into())
}

async fn admin_post(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    body: Value,
) -> Result<Value, BoxError> {
    let reply = http
        .post(format!("{}/admin/v1{path}", gw.admin))
        .bearer_auth(&gw.token)
        .json(&body)
        .send()
        .await?;
    let status = reply.status();
    let text = reply.text().await?;
    if !status.is_success() {
        return Err(format!("admin {path}: HTTP {status}: {text}").into());
    }
    Ok(serde_json::from_str(&text)?)
}

// ----- one policy, start to end ---------------------------------------------------------------

/// Everything measured for one policy.
#[derive(Debug, Default)]
struct Outcome {
    policy: String,
    prices: BTreeMap<u64, Decimal>,
    placed: u64,
    refused: u64,
    refusals: BTreeMap<String, u64>,
    completed: u64,
    partial: u64,
    canceled: u64,
    unfinished: u64,
    complete_hours: Vec<f64>,
    gross: Decimal,
    net: Decimal,
    deposits: Decimal,
    balances: Decimal,
    gross_mismatches: u64,
    upstream_gross: Decimal,
    upstream_refunds: Decimal,
    upstream_net_by_balance: Decimal,
    drops_seen: u64,
    refills_asked: u64,
    refills_completed: u64,
    refills_failed: u64,
    per_provider: BTreeMap<String, u64>,
    window_before: BTreeMap<String, u64>,
    window_first_day: BTreeMap<String, u64>,
    window_after: BTreeMap<String, u64>,
    customers: usize,
    customers_left: usize,
    letdowns: u64,
    sim_days: f64,
}

impl Outcome {
    fn upstream_net(&self) -> Decimal {
        self.upstream_gross - self.upstream_refunds
    }

    fn profit(&self) -> Decimal {
        self.net - self.upstream_net()
    }
}

async fn run_policy(
    policy: String,
    market: Market,
    base: PathBuf,
    work: PathBuf,
    binary: PathBuf,
    omit_routing: bool,
) -> Result<Outcome, BoxError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()?;

    // Three simulators, the same ones for every policy.
    let mut providers = Vec::new();
    for p in &market.providers {
        let text = std::fs::read_to_string(base.join(&p.file))
            .map_err(|e| format!("{}: {e}", base.join(&p.file).display()))?;
        let mut config =
            SimConfig::from_toml_str(&text).map_err(|e| format!("{}: {e}", p.file.display()))?;
        config.speed = market.speed;
        config.max_log = 0;
        let account = config
            .accounts
            .first()
            .cloned()
            .ok_or_else(|| format!("{}: no [[accounts]]", p.file.display()))?;
        let handle = Sim::spawn(config).await?;
        providers.push(Provider {
            name: p.name.clone(),
            handle,
            key: account.key,
            opening: account.balance,
        });
    }
    let template = std::fs::read_to_string(base.join("gateway.toml"))?;
    let dir = work.join(&policy);
    let mut gateway = start_gateway(
        &binary,
        &dir,
        &template,
        &policy,
        &providers,
        &market,
        omit_routing,
        &http,
    )
    .await?;

    // Customers, through the admin API.
    let mut customers = Vec::new();
    for i in 0..market.customers.count {
        let created = admin_post(
            &http,
            &gateway,
            "/customers",
            serde_json::json!({"name": format!("customer {i}")}),
        )
        .await?;
        let id = created["customer"]["id"].as_i64().ok_or("no customer id")?;
        let key = created["api_key"].as_str().ok_or("no api key")?.to_owned();
        admin_post(
            &http,
            &gateway,
            &format!("/customers/{id}/credit"),
            serde_json::json!({"amount": market.customers.deposit.to_string(), "reason": "market deposit"}),
        )
        .await?;
        customers.push(Customer::new(i, key, &market));
    }

    // The catalog as customers see it: one price per service whatever the route.
    let listed = v2(
        &http,
        &gateway.v2,
        &[("key", customers[0].key.as_str()), ("action", "services")],
    )
    .await?;
    let mut services = Vec::new();
    for s in &market.services {
        let item = listed
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|i| i.get("service").and_then(id_of) == Some(s.id))
            })
            .ok_or_else(|| {
                format!(
                    "{policy}: the gateway does not list service {}: {listed}",
                    s.id
                )
            })?;
        services.push(LocalService {
            id: s.id,
            price: item.get("rate").and_then(dec).ok_or("no rate")?,
            refill: item.get("refill").and_then(Value::as_bool).unwrap_or(false),
            weight: s.weight,
            quantity: s.quantity,
        });
    }

    // The market clock: simulated time since the customers started.
    let clock = providers[0].sim().clone();
    let t0 = clock.now().as_millis() as u64;
    let market_now = || (clock.now().as_millis() as u64).saturating_sub(t0);
    let end_ms = days_ms(market.days);
    let drain_end = end_ms + days_ms(market.drain_days);
    let (degrade_from, degrade_until) = (
        days_ms(market.degrade.from_day),
        days_ms(market.degrade.from_day + market.degrade.for_days),
    );
    let degraded = providers
        .iter()
        .find(|p| p.name == market.degrade.provider)
        .ok_or("[degrade] names no provider")?;
    let own_profiles: Vec<(u64, Profile)> = degraded
        .sim()
        .services()
        .into_iter()
        .map(|s| (s.id, s.profile))
        .collect();
    let mut phase = 0; // 0 before, 1 degraded, 2 recovered
    let mut links: HashMap<String, (usize, usize)> = HashMap::new();
    let mut linked = vec![0usize; customers.len()];
    let mut drops_seen = 0u64;
    let ctx = Ctx {
        http: &http,
        v2: &gateway.v2,
        market: &market,
        services: &services,
    };
    eprintln!(
        "[{policy}] gateway up ({}); {} customers; day 0 at sim time {:.1} h",
        gateway.v2,
        customers.len(),
        t0 as f64 / HOUR_MS
    );
    let mut last_day = 0;
    loop {
        let now = market_now();
        if phase == 0 && now >= degrade_from {
            for (sid, own) in &own_profiles {
                degraded
                    .sim()
                    .set_profile(*sid, overlay(own, &market.degrade.profile));
            }
            phase = 1;
            eprintln!(
                "[{policy}] day {:.2}: provider {} degraded",
                now as f64 / DAY_MS as f64,
                degraded.name
            );
        } else if phase == 1 && now >= degrade_until {
            for (sid, own) in &own_profiles {
                degraded.sim().set_profile(*sid, own.clone());
            }
            phase = 2;
            eprintln!(
                "[{policy}] day {:.2}: provider {} recovered",
                now as f64 / DAY_MS as f64,
                degraded.name
            );
        }
        let ordering = now < end_ms;
        futures_util::future::join_all(customers.iter_mut().map(|c| c.tick(&ctx, now, ordering)))
            .await;
        // God view: which orders dropped, found by their links.
        for (c, seen) in customers.iter().zip(linked.iter_mut()) {
            for (i, o) in c.orders.iter().enumerate().skip(*seen) {
                links.insert(o.link.clone(), (c.index, i));
            }
            *seen = c.orders.len();
        }
        for p in &providers {
            for o in p.sim().dropped_orders() {
                let Some(&(ci, oi)) = o.link.as_ref().and_then(|l| links.get(l)) else {
                    continue;
                };
                let track = &mut customers[ci].orders[oi];
                if !track.dropped {
                    track.dropped = true;
                    drops_seen += 1;
                }
            }
        }
        let day = (now / DAY_MS) as usize;
        if day > last_day {
            last_day = day;
            let placed: usize = customers.iter().map(|c| c.orders.len()).sum();
            let active = customers.iter().filter(|c| c.active).count();
            eprintln!("[{policy}] day {day}: {placed} orders placed, {active} customers active");
        }
        if !ordering && (now >= drain_end || !customers.iter().any(Customer::busy)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(market.customers.poll_ms)).await;
    }
    let sim_days = market_now() as f64 / DAY_MS as f64;

    // The final reading: every order once more, every balance, every simulator.
    let now = market_now();
    let mut out = Outcome {
        policy: policy.clone(),
        customers: customers.len(),
        drops_seen,
        sim_days,
        ..Outcome::default()
    };
    for c in &mut customers {
        c.poll_orders(&ctx, now, true).await;
        let balance = v2(
            &http,
            &gateway.v2,
            &[("key", c.key.as_str()), ("action", "balance")],
        )
        .await?;
        out.balances += balance.get("balance").and_then(dec).ok_or("no balance")?;
        out.deposits += market.customers.deposit;
        out.customers_left += usize::from(!c.active);
        out.letdowns += c.letdowns;
        for (text, n) in &c.refused {
            out.refused += n;
            *out.refusals.entry(text.clone()).or_default() += n;
        }
        for o in &c.orders {
            out.placed += 1;
            out.gross += o.gross;
            out.net += o.charge.unwrap_or(o.gross);
            if o.open_charge.is_some_and(|charge| charge != o.gross) {
                out.gross_mismatches += 1;
            }
            match (o.status.as_str(), o.ended()) {
                ("Completed", true) => {
                    out.completed += 1;
                    let ended = o.ended_ms.unwrap_or(now);
                    out.complete_hours
                        .push((ended - o.placed_ms) as f64 / HOUR_MS);
                }
                ("Partial", true) => out.partial += 1,
                (_, true) => out.canceled += 1,
                _ => out.unfinished += 1,
            }
            match &o.refill {
                Some(RefillState::Ended(s)) if s == "Completed" => {
                    out.refills_asked += 1;
                    out.refills_completed += 1;
                }
                Some(RefillState::Ended(_)) => {
                    out.refills_asked += 1;
                    out.refills_failed += 1;
                }
                Some(RefillState::Asked(_)) => out.refills_asked += 1,
                None => {}
            }
        }
    }
    for s in &services {
        out.prices.insert(s.id, s.price);
    }
    let windows = [
        (degrade_from.saturating_sub(DAY_MS), degrade_from),
        (degrade_from, degrade_from + DAY_MS),
        (degrade_until, end_ms),
    ];
    for p in &providers {
        let orders = p.sim().orders();
        let mine: Vec<_> = orders.iter().filter(|o| o.key == p.key).collect();
        out.upstream_gross += mine.iter().map(|o| o.charge).sum::<Decimal>();
        out.upstream_refunds += mine.iter().map(|o| o.refunded).sum::<Decimal>();
        out.upstream_net_by_balance += p.opening - p.sim().balance(&p.key).unwrap_or_default();
        out.per_provider.insert(p.name.clone(), mine.len() as u64);
        for (w, counts) in windows.iter().zip([
            &mut out.window_before,
            &mut out.window_first_day,
            &mut out.window_after,
        ]) {
            let n = mine
                .iter()
                .filter(|o| {
                    let at = o.created_ms.saturating_sub(t0);
                    at >= w.0 && at < w.1
                })
                .count();
            counts.insert(p.name.clone(), n as u64);
        }
    }
    let _ = gateway.child.start_kill();
    let _ = gateway.child.wait().await;
    eprintln!(
        "[{policy}] done; gateway files in {}",
        gateway.dir.display()
    );
    Ok(out)
}

// ----- the report -------------------------------------------------------------------------------

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| {
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    })
}

fn money(d: Decimal) -> String {
    let mut r = d.round_dp(2);
    r.rescale(2);
    r.to_string()
}

fn provider_shares(counts: &BTreeMap<String, u64>) -> String {
    let total: u64 = counts.values().sum();
    counts
        .iter()
        .map(|(name, n)| format!("{} {}", name.to_uppercase(), share(*n, total)))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn provider_share(counts: &BTreeMap<String, u64>, name: &str) -> String {
    let total: u64 = counts.values().sum();
    format!(
        "{} ({} of {})",
        share(counts.get(name).copied().unwrap_or(0), total),
        counts.get(name).copied().unwrap_or(0),
        total
    )
}

/// A row of the report: its name, and its cell for one policy.
type Row<'a> = (&'a str, Box<dyn Fn(&Outcome) -> String + 'a>);

fn report(market: &Market, outcomes: &[Outcome], omit_routing: bool) {
    let b = market.degrade.provider.as_str();
    let rows: Vec<Row<'_>> = vec![
        ("profit after refunds", Box::new(|o| money(o.profit()))),
        (
            "  customers' charges, net of refunds",
            Box::new(|o| money(o.net)),
        ),
        (
            "  upstream costs, net of upstream refunds",
            Box::new(|o| money(o.upstream_net())),
        ),
        (
            "  margin on net charges",
            Box::new(|o| {
                if o.net.is_zero() {
                    "–".into()
                } else {
                    format!(
                        "{} %",
                        (o.profit() * Decimal::from(100) / o.net).round_dp(1)
                    )
                }
            }),
        ),
        ("refunds to customers", Box::new(|o| money(o.gross - o.net))),
        (
            "  upstream refunds to the reseller",
            Box::new(|o| money(o.upstream_refunds)),
        ),
        ("orders placed", Box::new(|o| o.placed.to_string())),
        (
            "completion rate (Completed of finished, customer-visible)",
            Box::new(|o| share(o.completed, o.placed - o.unfinished)),
        ),
        (
            "  Partial / Canceled / unfinished",
            Box::new(|o| format!("{} / {} / {}", o.partial, o.canceled, o.unfinished)),
        ),
        (
            "median time to complete (sim hours)",
            Box::new(|o| median(&o.complete_hours).map_or("–".into(), |m| format!("{m:.1}"))),
        ),
        (
            "refills needed (drops seen / refills asked)",
            Box::new(|o| format!("{} / {}", o.drops_seen, o.refills_asked)),
        ),
        (
            "  refills Completed / not",
            Box::new(|o| format!("{} / {}", o.refills_completed, o.refills_failed)),
        ),
        (
            "orders per provider",
            Box::new(|o| provider_shares(&o.per_provider)),
        ),
        (
            "B's share, the day before it degrades",
            Box::new(move |o| provider_share(&o.window_before, b)),
        ),
        (
            "B's share, its first degraded day",
            Box::new(move |o| provider_share(&o.window_first_day, b)),
        ),
        (
            "B's share, after recovery",
            Box::new(move |o| provider_share(&o.window_after, b)),
        ),
        (
            "add refused by the gateway",
            Box::new(|o| o.refused.to_string()),
        ),
        (
            "customers who left (letdowns)",
            Box::new(|o| format!("{} of {} ({})", o.customers_left, o.customers, o.letdowns)),
        ),
        (
            "prices (services 1, 2, 3)",
            Box::new(|o| {
                o.prices
                    .values()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        ),
    ];
    println!();
    println!(
        "Simulated market: {} days of orders at {}x ({} customers per policy, {} orders a day each, leaving after a letdown with probability {}), B degraded days {}–{}{}",
        market.days,
        market.speed,
        market.customers.count,
        market.customers.orders_per_day,
        market.customers.leave_after_bad,
        market.degrade.from_day,
        market.degrade.from_day + market.degrade.for_days,
        if omit_routing {
            "; NO [routing] SECTION: every gateway routed by priority"
        } else {
            ""
        },
    );
    println!();
    let header: Vec<&str> = outcomes.iter().map(|o| o.policy.as_str()).collect();
    println!("| | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    for (name, f) in &rows {
        println!(
            "| {name} | {} |",
            outcomes.iter().map(f).collect::<Vec<_>>().join(" | ")
        );
    }
    println!();
    for o in outcomes {
        let customers_ok = o.deposits - o.balances == o.net;
        let upstream_ok = o.upstream_net_by_balance == o.upstream_net();
        println!(
            "{}: checks: customers' balances {} the v2 charges ({} spent); simulators' balances {} their orders ({}); {} orders whose open charge differed from price × quantity; ran {:.2} simulated days{}",
            o.policy,
            if customers_ok {
                "match"
            } else {
                "DO NOT match"
            },
            money(o.deposits - o.balances),
            if upstream_ok { "match" } else { "DO NOT match" },
            money(o.upstream_net_by_balance),
            o.gross_mismatches,
            o.sim_days,
            if o.refusals.is_empty() {
                String::new()
            } else {
                format!("; refusals: {:?}", o.refusals)
            },
        );
    }
    let by: HashMap<&str, &Outcome> = outcomes.iter().map(|o| (o.policy.as_str(), o)).collect();
    if let (Some(q), Some(p), Some(c)) = (by.get("quality"), by.get("priority"), by.get("cheapest"))
    {
        let rate = |o: &Outcome| o.completed as f64 / (o.placed - o.unfinished).max(1) as f64;
        let b_first = |o: &Outcome| {
            let total: u64 = o.window_first_day.values().sum();
            o.window_first_day.get(b).copied().unwrap_or(0) as f64 / total.max(1) as f64
        };
        let b_before = |o: &Outcome| {
            let total: u64 = o.window_before.values().sum();
            o.window_before.get(b).copied().unwrap_or(0) as f64 / total.max(1) as f64
        };
        println!();
        println!(
            "issue #15 targets: quality's profit above priority's: {}; above cheapest's: {}; completion rate at least theirs: {}; B's share in its first bad day below half its share the day before: {}",
            yes(q.profit() > p.profit()),
            yes(q.profit() > c.profit()),
            yes(rate(q) >= rate(p) && rate(q) >= rate(c)),
            yes(b_first(q) < b_before(q) / 2.0),
        );
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    let mut market: Market =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", args.config.display()))?;
    if args.quick {
        market.days = market.quick.days;
        market.drain_days = market.quick.drain_days;
        market.degrade.from_day = market.quick.from_day;
        market.degrade.for_days = market.quick.for_days;
    }
    if !args.policies.is_empty() {
        market.policies = args.policies.clone();
    }
    if let Some(p) = args.leave_after_bad {
        market.customers.leave_after_bad = p;
    }
    let base = args
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("smm-market.{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let binary = std::fs::canonicalize(&args.gateway)
        .map_err(|e| format!("{}: {e}", args.gateway.display()))?;
    eprintln!(
        "market: {} simulated days at {}x (about {:.0} s), policies {:?}; work dir {}",
        market.days,
        market.speed,
        (market.days + market.drain_days.min(0.5)) * 86_400.0 / market.speed,
        market.policies,
        work.display()
    );
    let runs = market.policies.iter().map(|policy| {
        tokio::spawn(run_policy(
            policy.clone(),
            market.clone(),
            base.clone(),
            work.clone(),
            binary.clone(),
            args.omit_routing,
        ))
    });
    let mut outcomes = Vec::new();
    for joined in futures_util::future::join_all(runs).await {
        outcomes.push(joined??);
    }
    report(&market, &outcomes, args.omit_routing);
    Ok(())
}
