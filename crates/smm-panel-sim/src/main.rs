//! `smm-panel-sim` binary: serves the simulated panel on 127.0.0.1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use smm_panel_sim::{Sim, SimConfig};
use tracing_subscriber::EnvFilter;

/// A simulated upstream SMM panel speaking API v2 (Perfect Panel style).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Port to listen on (127.0.0.1 only; 0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// TOML configuration file (default: the built-in demo catalog and key).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the order plans (overrides the config file).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per real second (overrides the config file).
    #[arg(long)]
    speed: Option<f64>,
    /// Request-log capacity, 0 disables the log (overrides the config file).
    #[arg(long)]
    max_log: Option<usize>,
    /// Replace the catalog with N services: the demo catalog repeated with ids 1..=N (for load
    /// tests of `services`; overrides the config file's services).
    #[arg(long)]
    services: Option<usize>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smm-panel-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            SimConfig::from_toml_str(&text).map_err(|e| e.to_string())?
        }
        None => SimConfig::demo(),
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(speed) = args.speed {
        config.speed = speed;
    }
    if let Some(max_log) = args.max_log {
        config.max_log = max_log;
    }
    if let Some(count) = args.services {
        config.services = SimConfig::scaled_services(count);
    }
    config.validate().map_err(|e| e.to_string())?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    println!("smm-panel-sim API URL: http://{addr}/api/v2");
    if let Some(account) = config.accounts.first() {
        println!("demo key: {} (balance {})", account.key, account.balance);
    }
    println!("control: http://{addr}/control/  (see README)");
    tracing::info!(
        %addr,
        seed = config.seed,
        speed = config.speed,
        services = config.services.len(),
        "smm-panel-sim started"
    );

    let sim = Sim::new(config);
    tokio::select! {
        res = sim.serve(listener) => res.map_err(|e| format!("server error: {e}")),
        res = tokio::signal::ctrl_c() => {
            res.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
            tracing::info!("Ctrl-C received, shutting down");
            Ok(())
        }
    }
}
