//! `smm-gateway demo`: the whole gateway on one machine with nothing installed — two simulated
//! upstream panels in-process, the embedded SQLite database, a funded demo customer — and the
//! curl lines to try every action.

use std::future::Future;
use std::path::Path;

use rust_decimal::Decimal;
use smm_panel_sim::{Sim, SimConfig, SimHandle};
use smm_provider_client::SecretKey;
use smm_routing::{Exposure, RouteDef, ServiceDef};
use smm_store::{LedgerKind, NewCustomer, hash_api_key};
use smm_wire::Money;

use crate::Gateway;
use crate::app::now_ms;
use crate::config::{ProviderSettings, Settings};

/// The demo customer's API key (a demo only: real keys are random, see `customers create`).
pub const DEMO_KEY: &str = "demo-key";

/// Starts the two simulated providers: `alpha` with the simulator's full catalog, `beta` with
/// the first six services at 20 % higher prices (a second route for failover).
pub async fn start_providers() -> Result<(SimHandle, SimHandle), String> {
    let mut alpha = SimConfig::demo();
    alpha.speed = 60.0; // one real minute is an hour upstream
    alpha.max_log = 10_000;
    let mut beta = alpha.clone();
    beta.seed = alpha.seed.wrapping_add(1);
    beta.services.retain(|s| s.id <= 6);
    for service in &mut beta.services {
        service.rate = (service.rate * Decimal::new(12, 1)).round_dp(5);
    }
    let alpha = Sim::spawn(alpha)
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    let beta = Sim::spawn(beta)
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    Ok((alpha, beta))
}

/// The demo settings: defaults, both providers, alpha's whole catalog exposed with the default
/// markup, and one explicit service that fails over from alpha to beta.
pub fn settings(
    port: u16,
    data: &Path,
    alpha: &SimHandle,
    beta: &SimHandle,
) -> Result<Settings, String> {
    let mut settings = Settings::defaults().map_err(|e| e.to_string())?;
    settings.server.listen = format!("127.0.0.1:{port}");
    settings.database.url = format!("sqlite://{}/demo.db", data.display());
    settings.forwarder.first_poll_secs = 5;
    settings.providers = vec![
        ProviderSettings::new(
            "alpha",
            &alpha.api_url(),
            SecretKey::new(smm_panel_sim::DEMO_KEY),
        ),
        ProviderSettings::new(
            "beta",
            &beta.api_url(),
            SecretKey::new(smm_panel_sim::DEMO_KEY),
        ),
    ];
    settings.exposures = vec![Exposure {
        provider: "alpha".into(),
        categories: None,
        markup: None,
    }];
    settings.services = vec![ServiceDef {
        id: 1000,
        name: Some("Instagram Followers (alpha, fails over to beta)".into()),
        category: None,
        routes: vec![
            RouteDef {
                provider: "alpha".into(),
                service: "1".into(),
            },
            RouteDef {
                provider: "beta".into(),
                service: "1".into(),
            },
        ],
        min: None,
        max: None,
        markup: None,
        desc: None,
        enabled: true,
        policy: None,
        targets: Default::default(),
    }];
    Ok(settings)
}

/// Writes `settings` as `demo.toml` in the data directory, the simulators' key next to it (the
/// providers are switched to that file), so the demo runs from a config file like a real
/// gateway and the console can change it.
fn write_config(data: &Path, settings: &mut Settings) -> Result<std::path::PathBuf, String> {
    let key = data.join("demo-sims.key");
    std::fs::write(&key, smm_panel_sim::DEMO_KEY)
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    for provider in &mut settings.providers {
        provider.key_inline = None;
        provider.key_file = Some(std::path::absolute(&key).unwrap_or_else(|_| key.clone()));
    }
    let file = data.join("demo.toml");
    let text = format!(
        "# The demo's configuration, written afresh at every `smm-gateway demo` start (the\n\
         # simulated providers get new ports). The console's changes land here.\n{}",
        settings.to_toml()?
    );
    std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(file)
}

/// A month of orders for the console's charts and lists, once, on a fresh demo database:
/// a few orders a day over the last 30 days, placed (and charged) at those times through the
/// same validation and pricing as `add`. The forwarder sends them to the simulators at once,
/// where they run, complete, or end Partial or Canceled (refunds); the first send to alpha gets
/// a garbled reply, so one order is ambiguous, waiting on the console's work list.
async fn seed_history(
    gateway: &Gateway,
    customer: &smm_store::Customer,
    alpha: &SimHandle,
) -> Result<(), String> {
    let store = &gateway.app.store;
    let counts = store.count_by_status().await.map_err(|e| e.to_string())?;
    if counts.iter().any(|(_, n)| *n > 0) {
        return Ok(());
    }
    let now = now_ms();
    store
        .adjust_balance(
            customer.id,
            LedgerKind::Deposit,
            Money::from_units(500 * 100_000),
            "demo opening deposit",
            "demo",
            now - 31 * 86_400_000,
        )
        .await
        .map_err(|e| e.to_string())?;
    alpha.sim.add_fault(
        smm_panel_sim::FaultRule::always(smm_panel_sim::Fault::Garbled)
            .on_action("add")
            .times(1),
    );
    let mut rng = fastrand::Rng::with_seed(7);
    // Services of the plain type (link and quantity), in catalog order.
    let catalog = gateway.app.catalog();
    let services: Vec<u64> = catalog
        .enabled()
        .filter(|s| s.service_type == smm_wire::ServiceType::Default)
        .map(|s| s.id)
        .take(4)
        .collect();
    if services.is_empty() {
        return Ok(());
    }
    for day in (0..30_i64).rev() {
        for n in 0..rng.u32(1..=4) {
            let service = services[rng.usize(0..services.len())];
            let params = smm_wire::Params::from_urlencoded(
                format!(
                    "link=https://instagram.com/p/seed-{day}-{n}&quantity={}",
                    rng.u32(1..=10) * 100
                )
                .as_bytes(),
            );
            let new =
                match crate::v2::new_order(&gateway.app, customer, service, None, &params).await {
                    Ok(new) => new,
                    Err(why) => {
                        tracing::debug!(service, %why, "demo history: order skipped");
                        continue;
                    }
                };
            let at =
                now - day * 86_400_000 - i64::from(rng.u32(0..80_000_000)).min(day * 86_400_000);
            match store.place_order(new, at).await {
                Ok(_) | Err(smm_store::StoreError::InsufficientFunds) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    gateway.app.forward_wake.notify_one();
    Ok(())
}

/// The demo's console login (an owner).
pub const DEMO_ADMIN: &str = "demo";
const DEMO_ADMIN_PASSWORD: &str = "demo-console-password";

/// Creates the demo's console user once; returns its password.
async fn demo_console_user(gateway: &Gateway) -> Result<&'static str, String> {
    let store = &gateway.app.store;
    if store
        .admin_by_username(DEMO_ADMIN)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let settings = gateway.app.settings();
        let ops = crate::ops::Ops {
            store: store.as_ref(),
            settings: &settings,
            actor: "demo",
        };
        ops.create_admin(DEMO_ADMIN, DEMO_ADMIN_PASSWORD, "owner")
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(DEMO_ADMIN_PASSWORD)
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(port: u16, data: &Path, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let (alpha, beta) = start_providers().await?;
    let mut settings = settings(port, data, &alpha, &beta)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (try --port)"))?;
    let console_port = port.checked_add(1).ok_or("--port must be below 65535")?;
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", console_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{console_port}: {e} (try --port)"))?;
    let config_file = write_config(data, &mut settings)?;
    let gateway = Gateway::start_with_admin(settings, listener, Some(admin)).await?;
    // The console's changes to prices, services and providers go to this file (and are gone
    // at the next start, which writes it afresh for the new simulators).
    gateway.app.set_config_source(Some(config_file.clone()));
    let console_login = demo_console_user(&gateway).await?;

    // The demo customer, created once and topped up to 100 when poorer.
    let store = &gateway.app.store;
    let customer = match store
        .customer_by_key_hash(&hash_api_key(DEMO_KEY))
        .await
        .map_err(|e| e.to_string())?
    {
        Some(customer) => customer,
        None => store
            .create_customer(
                NewCustomer {
                    name: "demo".into(),
                    currency: gateway.app.settings().server.currency.clone(),
                    key_hash: hash_api_key(DEMO_KEY),
                    key_prefix: "demo-k".into(),
                },
                "demo",
                now_ms(),
            )
            .await
            .map_err(|e| e.to_string())?,
    };
    seed_history(&gateway, &customer, &alpha).await?;
    let hundred = Money::from_units(100 * 100_000);
    if customer.balance < hundred {
        let top_up = hundred.checked_sub(customer.balance).unwrap_or(hundred);
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Deposit,
                top_up,
                "demo top-up",
                "demo",
                now_ms(),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let balance = store
        .customer(customer.id)
        .await
        .map_err(|e| e.to_string())?
        .balance;

    let url = gateway.api_url();
    let k = DEMO_KEY;
    println!(
        "\nsmm-gateway demo is running (Ctrl-C stops it)\n\
         \n  console   http://127.0.0.1:{console_port}/  (log in as {DEMO_ADMIN} / {console_login})\
         \n  API       {url}\
         \n  key       {k}  (customer \"demo\", balance {balance} {currency})\
         \n  upstream  alpha {a} and beta {b} (simulated panels, 1 min = 1 h)\
         \n  database  {db}\
         \n  config    {config} (the console edits it; written afresh at every start)\
         \n  catalog   {n} services\n\
         \nTry every action:\n\
         \n  curl -s -d key={k} -d action=balance {url}\
         \n  curl -s -d key={k} -d action=services {url}\
         \n  curl -s -d key={k} -d action=add -d service=1 -d link=https://instagram.com/p/demo -d quantity=100 {url}\
         \n  curl -s -d key={k} -d action=add -d service=1000 -d link=https://instagram.com/p/demo -d quantity=100 -d runs=3 -d interval=10 {url}\
         \n  curl -s -d key={k} -d action=status -d order=1 {url}\
         \n  curl -s -d key={k} -d action=status -d orders=1,2,3 {url}\
         \n  curl -s -d key={k} -d action=refill -d order=1 {url}\
         \n  curl -s -d key={k} -d action=refill_status -d refill=1 {url}\
         \n  curl -s -d key={k} -d action=cancel -d orders=2 {url}\
         \n  curl -s '{url}?key={k}&action=balance'\
         \n  curl -s -H 'Content-Type: application/json' -d '{{\"key\":\"{k}\",\"action\":\"balance\"}}' {url}\n",
        currency = gateway.app.settings().server.currency,
        a = alpha.api_url(),
        b = beta.api_url(),
        db = gateway.app.settings().database.url,
        config = config_file.display(),
        n = gateway.app.catalog().len(),
    );
    shutdown.await;
    gateway.shutdown().await;
    drop((alpha, beta));
    Ok(())
}
