//! The `smm-gateway` command line.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use smm_store::{CustomerId, LedgerKind, NewCustomer, Store, hash_api_key};
use smm_wire::Money;

use crate::app::now_ms;
use crate::config::{ConfigError, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "smm-gateway",
    version,
    about = "A reseller gateway for SMM panels (API v2)"
)]
pub struct Cli {
    /// Config file layered over the defaults (default: config/local.toml when present).
    #[arg(long, global = true, env = "SMM_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: the v2 API, the forwarder and the background sync.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage customers and their balances.
    Customers {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// Inspect orders and resolve ambiguous ones.
    Orders {
        #[command(subcommand)]
        command: OrderCommand,
    },
    /// Upstream providers.
    Providers {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Start a self-contained demo: two simulated upstream panels, an embedded database, a
    /// funded demo customer, and ready-to-paste curl lines.
    Demo {
        /// Port of the demo gateway on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and report every problem with its location.
    Check,
    /// Print the effective configuration (defaults, file and environment merged).
    Show,
}

#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Orders whose upstream outcome is unknown (a timeout, a lost reply, a crash mid-call),
    /// oldest first, with their age and upstream context. They are never re-sent by the gateway.
    Ambiguous,
    /// One order with its forwarding attempts.
    Show { id: i64 },
    /// An ambiguous order was found upstream: attach its upstream id; it is then polled like any
    /// other order. Audited.
    Attach {
        id: i64,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        upstream: String,
    },
    /// An ambiguous order is not upstream (or is to be given up): cancel it with a full refund.
    /// Audited.
    CancelAmbiguous {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Call every configured provider now: reachability, latency, catalog size, balance.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Create a customer; prints the API key once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// Defaults to the gateway's currency.
        #[arg(long)]
        currency: Option<String>,
    },
    /// List customers.
    List,
    /// Show one customer with recent ledger rows.
    Show { id: i64 },
    /// Add money to a balance (a deposit ledger row).
    Credit {
        id: i64,
        amount: String,
        #[arg(long)]
        reason: String,
    },
    /// Take money from a balance (an adjustment ledger row); never below zero.
    Debit {
        id: i64,
        amount: String,
        #[arg(long)]
        reason: String,
    },
    /// Replace the API key; the old key stops working. Prints the new key once.
    RotateKey { id: i64 },
    /// Suspend a customer: every request is refused until reactivated.
    Suspend { id: i64 },
    /// Reactivate a suspended customer.
    Activate { id: i64 },
}

/// A new random API key: 32 hex characters (128 bits) from the OS generator.
pub fn generate_api_key() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// The display prefix of a key.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(6).collect()
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    smm_store::connect(&settings.database.url)
        .await
        .map_err(|e| format!("database: {e}"))
}

/// Runs a customers command, printing its result.
pub async fn customers(settings: &Settings, command: CustomerCommand) -> Result<(), String> {
    let store = open_store(settings).await?;
    let now = now_ms();
    let actor = actor();
    let print = |c: &smm_store::Customer| {
        println!(
            "{}\t{}\t{}\t{} {}\tkey {}…",
            c.id,
            c.name,
            c.status.as_str(),
            c.balance,
            c.currency,
            c.key_prefix
        );
    };
    match command {
        CustomerCommand::Create { name, currency } => {
            let key = generate_api_key()?;
            let customer = store
                .create_customer(
                    NewCustomer {
                        name,
                        currency: currency.unwrap_or_else(|| settings.server.currency.clone()),
                        key_hash: hash_api_key(&key),
                        key_prefix: key_prefix(&key),
                    },
                    &actor,
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            print(&customer);
            println!("API key (shown once, store it now): {key}");
        }
        CustomerCommand::List => {
            for customer in store.list_customers().await.map_err(|e| e.to_string())? {
                print(&customer);
            }
        }
        CustomerCommand::Show { id } => {
            let customer = store
                .customer(CustomerId(id))
                .await
                .map_err(|e| e.to_string())?;
            print(&customer);
            for entry in store
                .ledger(customer.id, None, 20)
                .await
                .map_err(|e| e.to_string())?
            {
                println!(
                    "  #{}\t{}\t{}\t→ {}\t{}\t{}",
                    entry.id,
                    entry.kind.as_str(),
                    entry.amount,
                    entry.balance_after,
                    entry
                        .order_id
                        .map(|o| format!("order {o}"))
                        .unwrap_or_default(),
                    entry.reason
                );
            }
        }
        CustomerCommand::Credit { id, amount, reason } => {
            let amount: Money = amount.parse().map_err(|e| format!("{e}"))?;
            let entry = store
                .adjust_balance(
                    CustomerId(id),
                    LedgerKind::Deposit,
                    amount,
                    &reason,
                    &actor,
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            println!("credited {amount}; balance now {}", entry.balance_after);
        }
        CustomerCommand::Debit { id, amount, reason } => {
            let amount: Money = amount.parse().map_err(|e| format!("{e}"))?;
            let negative = Money::ZERO
                .checked_sub(amount.abs())
                .ok_or("amount out of range")?;
            let entry = store
                .adjust_balance(
                    CustomerId(id),
                    LedgerKind::Adjustment,
                    negative,
                    &reason,
                    &actor,
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "debited {}; balance now {}",
                amount.abs(),
                entry.balance_after
            );
        }
        CustomerCommand::RotateKey { id } => {
            let key = generate_api_key()?;
            let customer = store
                .rotate_key(
                    CustomerId(id),
                    &hash_api_key(&key),
                    &key_prefix(&key),
                    &actor,
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            print(&customer);
            println!("new API key (shown once, store it now): {key}");
        }
        CustomerCommand::Suspend { id } | CustomerCommand::Activate { id } => {
            let status = if matches!(command, CustomerCommand::Suspend { .. }) {
                smm_store::CustomerStatus::Suspended
            } else {
                smm_store::CustomerStatus::Active
            };
            let customer = store
                .set_customer_status(CustomerId(id), status, &actor, now)
                .await
                .map_err(|e| e.to_string())?;
            print(&customer);
        }
    }
    Ok(())
}

/// `config check`: every problem with its location; an error when there is any.
pub fn config_check(file: Option<&std::path::Path>) -> Result<(), String> {
    match Settings::load_valid(file) {
        Ok(settings) => {
            println!(
                "configuration OK: {} provider(s), {} service(s), {} exposure(s), database {}",
                settings.providers.len(),
                settings.services.len(),
                settings.exposures.len(),
                redact_url(&settings.database.url)
            );
            Ok(())
        }
        Err(ConfigError::Invalid(problems)) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            Err(format!(
                "{} problem(s) in the configuration",
                problems.len()
            ))
        }
        Err(other) => Err(other.to_string()),
    }
}

/// A database URL without its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `providers check`: a live health report, one line per provider. Fails when any enabled
/// provider cannot be reached.
pub async fn providers_check(settings: &Settings) -> Result<(), String> {
    let mut failures = 0;
    for provider in &settings.providers {
        if !provider.enabled {
            println!("{}\tdisabled", provider.name);
            continue;
        }
        let client = provider
            .client_config()
            .and_then(|c| smm_provider_client::ProviderClient::new(c).map_err(|e| e.to_string()));
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                failures += 1;
                println!("{}\tmisconfigured: {e}", provider.name);
                continue;
            }
        };
        let started = std::time::Instant::now();
        let services = client.services().await;
        let latency = started.elapsed().as_millis();
        let balance = client.balance().await;
        match (services, balance) {
            (Ok(services), Ok(balance)) => println!(
                "{}\tok\t{latency} ms\t{} services ({} unreadable)\tbalance {} {}",
                provider.name,
                services.services.len(),
                services.invalid.len(),
                balance.balance,
                balance.currency.unwrap_or_default()
            ),
            (services, balance) => {
                failures += 1;
                let error = services
                    .err()
                    .or(balance.err())
                    .map(|e| format!("{} ({e})", e.class()))
                    .unwrap_or_default();
                println!("{}\tFAILING\t{latency} ms\t{error}", provider.name);
            }
        }
    }
    if failures == 0 {
        Ok(())
    } else {
        Err(format!("{failures} provider(s) failing"))
    }
}

/// Runs an orders command, printing its result.
pub async fn orders(settings: &Settings, command: OrderCommand) -> Result<(), String> {
    let store = open_store(settings).await?;
    let now = now_ms();
    match command {
        OrderCommand::Ambiguous => {
            let mut orders = store
                .list_orders(&smm_store::OrderFilter {
                    forward_state: Some(smm_store::ForwardState::Ambiguous),
                    limit: 10_000,
                    ..smm_store::OrderFilter::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            orders.reverse();
            if orders.is_empty() {
                println!("no ambiguous orders");
            }
            for order in orders {
                let age_min = (now - order.created_at).max(0) / 60_000;
                println!(
                    "order {}\tcustomer {}\tage {age_min} min\tprovider {}\tupstream service {}\tcharge {}\tlink {}\t{}",
                    order.id,
                    order.customer_id,
                    order.provider.as_deref().unwrap_or("-"),
                    order.upstream_service.as_deref().unwrap_or("-"),
                    order.charge,
                    order.link.as_deref().unwrap_or("-"),
                    order.forward_error.as_deref().unwrap_or_default()
                );
            }
        }
        OrderCommand::Show { id } => {
            let order = store
                .order(smm_store::OrderId(id))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "order {}\tcustomer {}\tservice {} ({})\tstatus {}\tforwarding {}\tcharge {} (refunded {})",
                order.id,
                order.customer_id,
                order.service_id,
                order.service_type,
                order.status.as_str(),
                order.forward_state.as_str(),
                order.charge,
                order.refunded
            );
            println!(
                "  upstream: provider {} service {} order {}",
                order.provider.as_deref().unwrap_or("-"),
                order.upstream_service.as_deref().unwrap_or("-"),
                order.upstream_order_id.as_deref().unwrap_or("-")
            );
            for attempt in store.attempts(order.id).await.map_err(|e| e.to_string())? {
                println!(
                    "  attempt at {}: {} service {} → {} {}",
                    attempt.started_at,
                    attempt.provider,
                    attempt.upstream_service,
                    attempt.outcome,
                    attempt.detail.unwrap_or_default()
                );
            }
        }
        OrderCommand::Attach {
            id,
            provider,
            upstream,
        } => {
            if !settings.providers.iter().any(|p| p.name == provider) {
                return Err(format!("no provider named {provider} in the configuration"));
            }
            let order = store
                .attach_upstream_order(
                    smm_store::OrderId(id),
                    &provider,
                    upstream.trim(),
                    &actor(),
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "order {} attached to {} order {}; it will be polled",
                order.id, provider, upstream
            );
        }
        OrderCommand::CancelAmbiguous { id, reason } => {
            let refund = store
                .cancel_ambiguous(smm_store::OrderId(id), &reason, &actor(), now)
                .await
                .map_err(|e| e.to_string())?;
            println!("order {id} canceled; refunded {refund}");
        }
    }
    Ok(())
}
