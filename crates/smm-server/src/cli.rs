//! The `smm-gateway` command line.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use smm_store::{CustomerStatus, Store};

use crate::config::{ConfigError, Settings};
use crate::ops::notifications::WebhookView;
use crate::ops::{AmbiguousOrderView, CustomerView, OpError, Ops, OrderSearch, PricingView};

impl From<OpError> for String {
    fn from(error: OpError) -> String {
        error.to_string()
    }
}

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
    /// Log lines as text (for people) or one JSON object per line (for log shippers). The level
    /// comes from RUST_LOG (default info).
    #[arg(long, global = true, env = "SMM_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Console users (the web console on the admin listener).
    Admins {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Upstream providers.
    Providers {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// The reseller's alerts.
    Alerts {
        #[command(subcommand)]
        command: AlertCommand,
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
    /// Orders matching every given criterion, newest first.
    Search {
        #[arg(long)]
        customer: Option<i64>,
        /// Pending, "In progress", Processing, Completed, Partial, Canceled, Refunded.
        #[arg(long)]
        status: Option<String>,
        /// queued, sending, sent, ambiguous, rejected.
        #[arg(long)]
        forward_state: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        link: Option<String>,
        /// The local service id ordered.
        #[arg(long)]
        service: Option<i64>,
        /// Placed on or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Placed on or before this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
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
    /// Orders that ended upstream without a signal telling the refund they are owed (a Partial
    /// without remains, a subscription stopped without a post count), oldest first.
    Attention,
    /// Settle an order on the attention list: pay REFUND (0 for none; at most what is left of
    /// its charge) as its one refund. Audited.
    Settle {
        id: i64,
        #[arg(long)]
        refund: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a console user. The password is read from SMM_ADMIN_PASSWORD when set, else as
    /// the first line of standard input; never from an argument (arguments show in `ps`).
    /// Audited.
    Create {
        username: String,
        /// owner (everything), operator (customers, orders, money) or viewer (read only).
        #[arg(long, default_value = "owner")]
        role: String,
    },
    /// List console users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Call every configured provider now: reachability, latency, catalog size, balance.
    Check,
    /// Each provider's scorecard and its routes': orders, completion, Partial, start times,
    /// refills, call errors, margin.
    Scorecards {
        /// The window: 7 or 30 days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Print the whole view as JSON (every figure), as the admin API returns it.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test message to every configured alert channel and report each one.
    Test,
    /// The alert conditions on now.
    List,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Show the customer's webhook (never its secret).
    Show { id: i64 },
    /// Point the customer's events at URL with a new signing secret, printed once.
    Set { id: i64, url: String },
    /// Remove the webhook; events not yet delivered are discarded.
    Clear { id: i64 },
    /// Resume deliveries paused after the receiver kept failing.
    Resume { id: i64 },
    /// Tell the customer (`balance.low`) when their balance falls below AMOUNT, or stop with
    /// --clear.
    LowBalance {
        id: i64,
        #[arg(required_unless_present = "clear")]
        amount: Option<String>,
        #[arg(long, conflicts_with = "amount")]
        clear: bool,
    },
    /// The customer's events, newest first.
    Events {
        id: i64,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The customer's delivery log (every attempt), newest first.
    Deliveries {
        id: i64,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Send one event again under its own event id.
    Resend { event: i64 },
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
    /// Show the customer's discount and custom rates.
    Pricing { id: i64 },
    /// Set the customer's discount: a percent off every service without a custom rate
    /// (strictly between 0 and 100, e.g. 12.5), or remove it with --clear. Audited.
    Discount {
        id: i64,
        #[arg(required_unless_present = "clear")]
        percent: Option<String>,
        #[arg(long, conflicts_with = "percent")]
        clear: bool,
    },
    /// The customer's status webhook: events, signatures, delivery log.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Set the customer's own rate for one service (per 1000, or per order for flat-priced
    /// types, like the list rate), or remove it with --clear. Audited.
    Rate {
        id: i64,
        /// The local service id, as in `services`.
        service: i64,
        #[arg(required_unless_present = "clear")]
        rate: Option<String>,
        #[arg(long, conflicts_with = "rate")]
        clear: bool,
    },
}

pub use crate::ops::{generate_api_key, key_prefix};

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

fn print_customer(c: &CustomerView) {
    println!(
        "{}\t{}\t{}\t{} {}\tkey {}…",
        c.id, c.name, c.status, c.balance, c.currency, c.key_prefix
    );
}

fn print_pricing(pricing: &PricingView) {
    match &pricing.discount {
        Some(discount) => println!("customer {}\tdiscount {discount}%", pricing.customer),
        None => println!("customer {}\tno discount", pricing.customer),
    }
    for rate in &pricing.rates {
        println!("  service {}\trate {}", rate.service, rate.rate);
    }
}

/// Runs a customers command (through [`crate::ops`], like the admin API), printing its result.
pub async fn customers(settings: &Settings, command: CustomerCommand) -> Result<(), String> {
    let store = open_store(settings).await?;
    let actor = actor();
    let ops = Ops {
        store: store.as_ref(),
        settings,
        actor: &actor,
    };
    match command {
        CustomerCommand::Create { name, currency } => {
            let created = ops.create_customer(&name, currency.as_deref()).await?;
            print_customer(&created.customer);
            println!("API key (shown once, store it now): {}", created.api_key);
        }
        CustomerCommand::List => {
            for customer in ops.list_customers().await? {
                print_customer(&customer);
            }
        }
        CustomerCommand::Show { id } => {
            print_customer(&ops.customer(id).await?);
            for entry in ops.ledger(id, None, 20).await? {
                println!(
                    "  #{}\t{}\t{}\t→ {}\t{}\t{}",
                    entry.id,
                    entry.kind,
                    entry.amount,
                    entry.balance_after,
                    entry
                        .order
                        .map(|o| format!("order {o}"))
                        .unwrap_or_default(),
                    entry.reason
                );
            }
        }
        CustomerCommand::Credit { id, amount, reason } => {
            let entry = ops.change_balance(id, true, &amount, &reason).await?;
            println!(
                "credited {}; balance now {}",
                entry.amount, entry.balance_after
            );
        }
        CustomerCommand::Debit { id, amount, reason } => {
            let entry = ops.change_balance(id, false, &amount, &reason).await?;
            println!(
                "debited {}; balance now {}",
                entry.amount.trim_start_matches('-'),
                entry.balance_after
            );
        }
        CustomerCommand::RotateKey { id } => {
            let rotated = ops.rotate_key(id).await?;
            print_customer(&rotated.customer);
            println!(
                "new API key (shown once, store it now): {}",
                rotated.api_key
            );
        }
        CustomerCommand::Suspend { id } => {
            print_customer(&ops.set_status(id, CustomerStatus::Suspended).await?);
        }
        CustomerCommand::Activate { id } => {
            print_customer(&ops.set_status(id, CustomerStatus::Active).await?);
        }
        CustomerCommand::Pricing { id } => print_pricing(&ops.pricing(id).await?),
        CustomerCommand::Discount { id, percent, .. } => {
            print_pricing(&ops.set_discount(id, percent.as_deref()).await?);
        }
        CustomerCommand::Rate {
            id, service, rate, ..
        } => {
            print_pricing(&ops.set_rate(id, service, rate.as_deref()).await?);
        }
        CustomerCommand::Webhook { command } => webhook(&ops, command).await?,
    }
    Ok(())
}

fn print_webhook(w: &WebhookView) {
    println!(
        "customer {}	webhook {}	{}	low balance {}	pending {}",
        w.customer,
        w.url.as_deref().unwrap_or("-"),
        w.paused_at
            .map_or_else(|| "active".to_owned(), |at| format!("PAUSED since {at}")),
        w.low_balance_threshold.as_deref().unwrap_or("-"),
        w.pending
    );
}

async fn webhook(ops: &Ops<'_>, command: WebhookCommand) -> Result<(), String> {
    match command {
        WebhookCommand::Show { id } => print_webhook(&ops.webhook(id).await?),
        WebhookCommand::Set { id, url } => {
            let set = ops.set_webhook(id, &url).await?;
            print_webhook(&set.webhook);
            println!(
                "signing secret (shown once, give it to the customer): {}",
                set.secret
            );
        }
        WebhookCommand::Clear { id } => print_webhook(&ops.clear_webhook(id).await?),
        WebhookCommand::Resume { id } => print_webhook(&ops.resume_webhook(id).await?),
        WebhookCommand::LowBalance { id, amount, .. } => {
            print_webhook(&ops.set_low_balance(id, amount.as_deref()).await?);
        }
        WebhookCommand::Events { id, limit } => {
            for e in ops.webhook_events(id, None, limit).await? {
                println!(
                    "#{}	{}	{}	attempts {}	{}	{}",
                    e.id,
                    e.event,
                    e.state,
                    e.attempts,
                    e.last_error.as_deref().unwrap_or("-"),
                    e.payload
                );
            }
        }
        WebhookCommand::Deliveries { id, limit } => {
            for d in ops.webhook_deliveries(id, None, limit).await? {
                println!(
                    "#{}	event {}	attempt {}	at {}	{}	{} ms	{}",
                    d.id,
                    d.event,
                    d.attempt,
                    d.at,
                    d.http_status
                        .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}")),
                    d.latency_ms,
                    d.error.as_deref().unwrap_or("")
                );
            }
        }
        WebhookCommand::Resend { event } => {
            let e = ops.resend_webhook_event(event).await?;
            println!("event #{} queued again ({})", e.id, e.event);
        }
    }
    Ok(())
}

/// Runs an alerts command: `test` calls every channel now; `list` shows the conditions on.
pub async fn alerts(settings: &Settings, command: AlertCommand) -> Result<(), String> {
    match command {
        AlertCommand::Test => {
            if settings.alerts.channels.is_empty() {
                return Err("no alert channels are configured ([[alerts.channels]])".into());
            }
            let mut failed = 0;
            for (name, result) in crate::notifier::alerts::test_all(settings).await {
                match result {
                    Ok(()) => println!("{name}	sent"),
                    Err(e) => {
                        failed += 1;
                        println!("{name}	FAILED: {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} channel(s) failed"));
            }
        }
        AlertCommand::List => {
            let store = open_store(settings).await?;
            let actor = actor();
            let ops = Ops {
                store: store.as_ref(),
                settings,
                actor: &actor,
            };
            for alert in ops.active_alerts().await? {
                println!(
                    "{}	since {}	{}",
                    alert.key,
                    alert.since,
                    alert.detail.unwrap_or_default().replace('\n', " / ")
                );
            }
        }
    }
    Ok(())
}

/// Prints the providers' scorecards: a line per provider, then one per route.
pub async fn scorecards(settings: &Settings, days: u32, json: bool) -> Result<(), String> {
    let store = open_store(settings).await?;
    let actor = actor();
    let ops = Ops {
        store: store.as_ref(),
        settings,
        actor: &actor,
    };
    let view = ops.scorecards(days).await?;
    if json {
        let text = serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "last {} days, money in {}\nroute\torders\tfinished\tcompleted%\tpartial%\t\
         undelivered%\tstart p50 s\tstart p90 s\tcomplete p50 s\trefill ok%\taccepted%\t\
         call errors%\tcost\trevenue\tmargin",
        view.days, view.currency
    );
    let line = |name: String, c: &crate::ops::scorecards::Scorecard| {
        println!(
            "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            c.orders,
            c.finished,
            dash(&c.completion_percent),
            dash(&c.partial_percent),
            dash(&c.undelivered_percent),
            dash(&c.start_median_secs),
            dash(&c.start_p90_secs),
            dash(&c.complete_median_secs),
            dash(&c.refill_success_percent),
            dash(&c.acceptance_percent),
            dash(&c.call_error_percent),
            c.cost,
            c.revenue,
            c.margin
        );
    };
    for p in &view.providers {
        line(p.provider.clone(), &p.card);
        for r in &p.routes {
            line(format!("  {}/{}", p.provider, r.upstream_service), &r.card);
        }
    }
    Ok(())
}

/// Runs an admins command.
pub async fn admins(settings: &Settings, command: AdminCommand) -> Result<(), String> {
    let store = open_store(settings).await?;
    let actor = actor();
    let ops = Ops {
        store: store.as_ref(),
        settings,
        actor: &actor,
    };
    match command {
        AdminCommand::Create { username, role } => {
            let password = match std::env::var("SMM_ADMIN_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let admin = ops.create_admin(&username, &password, &role).await?;
            println!("{}\t{}\t{}", admin.id, admin.username, admin.role);
        }
        AdminCommand::List => {
            for admin in ops.list_admins().await? {
                println!("{}\t{}\t{}", admin.id, admin.username, admin.role);
            }
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

/// An optional field for a person: `-` when absent.
fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// Runs an orders command (through [`crate::ops`], like the admin API), printing its result.
pub async fn orders(settings: &Settings, command: OrderCommand) -> Result<(), String> {
    let store = open_store(settings).await?;
    let actor = actor();
    let ops = Ops {
        store: store.as_ref(),
        settings,
        actor: &actor,
    };
    match command {
        OrderCommand::Ambiguous => {
            let orders = ops.ambiguous_orders().await?;
            if orders.is_empty() {
                println!("no ambiguous orders");
            }
            for AmbiguousOrderView {
                order: o,
                age_seconds,
            } in orders
            {
                println!(
                    "order {}\tcustomer {}\tage {} min\tprovider {}\tupstream service {}\tcharge {}\tlink {}\t{}",
                    o.id,
                    o.customer,
                    age_seconds / 60,
                    or_dash(o.provider.as_deref()),
                    or_dash(o.upstream_service.as_deref()),
                    o.charge,
                    or_dash(o.link.as_deref()),
                    o.forward_error.as_deref().unwrap_or_default()
                );
            }
        }
        OrderCommand::Search {
            customer,
            status,
            forward_state,
            provider,
            link,
            service,
            from,
            to,
            limit,
        } => {
            let orders = ops
                .search_orders(&OrderSearch {
                    customer,
                    status,
                    forward_state,
                    provider,
                    link,
                    service,
                    from,
                    to,
                    before: None,
                    limit: Some(limit),
                })
                .await?;
            for o in orders {
                println!(
                    "order {}\tcustomer {}\tservice {}\t{}\t{}\tcharge {} (refunded {})\tprovider {}\tupstream {}\tlink {}",
                    o.id,
                    o.customer,
                    o.service,
                    o.status,
                    o.forward_state,
                    o.charge,
                    o.refunded,
                    or_dash(o.provider.as_deref()),
                    or_dash(o.upstream_order.as_deref()),
                    or_dash(o.link.as_deref()),
                );
            }
        }
        OrderCommand::Show { id } => {
            let detail = ops.order(id).await?;
            let o = &detail.order;
            println!(
                "order {}\tcustomer {}\tservice {} ({})\tstatus {}\tforwarding {}\tcharge {} (refunded {})",
                o.id,
                o.customer,
                o.service,
                o.service_type,
                o.status,
                o.forward_state,
                o.charge,
                o.refunded,
            );
            println!(
                "  upstream: provider {} service {} order {}",
                or_dash(o.provider.as_deref()),
                or_dash(o.upstream_service.as_deref()),
                or_dash(o.upstream_order.as_deref()),
            );
            for attempt in detail.attempts {
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
            ops.attach(id, &provider, &upstream).await?;
            println!(
                "order {id} attached to {provider} order {}; it will be polled",
                upstream.trim()
            );
        }
        OrderCommand::CancelAmbiguous { id, reason } => {
            let refund = ops.cancel_ambiguous(id, &reason).await?;
            println!("order {id} canceled; refunded {refund}");
        }
        OrderCommand::Attention => {
            let orders = ops.attention_orders().await?;
            if orders.is_empty() {
                println!("no orders need attention");
            }
            for o in orders {
                println!(
                    "order {}	customer {}	{}	status {}	charge {}	refunded {}	{}",
                    o.id,
                    o.customer,
                    o.service_type,
                    o.status,
                    o.charge,
                    o.refunded,
                    o.attention.as_deref().unwrap_or_default()
                );
            }
        }
        OrderCommand::Settle { id, refund, reason } => {
            let paid = ops.settle(id, &refund, &reason).await?;
            println!("order {id} settled; refunded {paid}");
        }
    }
    Ok(())
}
