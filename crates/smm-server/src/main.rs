//! The `smm-gateway` binary.

use std::process::ExitCode;

use clap::Parser;
use smm_server::Gateway;
use smm_server::cli::{Cli, Command, ConfigCommand, LogFormat, ProviderCommand};
use smm_server::config::Settings;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // One JSON object per line, with the current span's fields (request id, action,
        // customer, outcome) for log shippers.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config_file = cli.config.clone();
    let file = config_file.as_deref();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => smm_server::cli::config_check(file),
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            let settings = Settings::load(file).map_err(|e| e.to_string())?;
            let mut shown = settings.clone();
            shown.database.url = smm_server::cli::redact_url(&shown.database.url);
            println!(
                "{}",
                toml_like(&shown).map_err(|e| format!("cannot print the configuration: {e}"))?
            );
            Ok(())
        }
        Command::Migrate => {
            let settings = Settings::load_valid(file).map_err(|e| e.to_string())?;
            smm_server::cli::open_store(&settings).await?;
            println!("database schema is up to date");
            Ok(())
        }
        Command::Providers {
            command: ProviderCommand::Check,
        } => {
            let settings = Settings::load_valid(file).map_err(|e| e.to_string())?;
            smm_server::cli::providers_check(&settings).await
        }
        Command::Providers {
            command: ProviderCommand::Scorecards { days, json },
        } => {
            let settings = Settings::load(file).map_err(|e| e.to_string())?;
            smm_server::cli::scorecards(&settings, days, json).await
        }
        Command::Orders { command } => {
            let settings = Settings::load(file).map_err(|e| e.to_string())?;
            smm_server::cli::orders(&settings, command).await
        }
        Command::Customers { command } => {
            let settings = Settings::load(file).map_err(|e| e.to_string())?;
            smm_server::cli::customers(&settings, command).await
        }
        Command::Alerts { command } => {
            let settings = Settings::load_valid(file).map_err(|e| e.to_string())?;
            smm_server::cli::alerts(&settings, command).await
        }
        Command::Admins { command } => {
            let settings = Settings::load(file).map_err(|e| e.to_string())?;
            smm_server::cli::admins(&settings, command).await
        }
        Command::Serve => {
            let settings = Settings::load_valid(file).map_err(|e| e.to_string())?;
            let addr = settings.listen_addr().map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let admin_addr: std::net::SocketAddr = settings
                .admin
                .listen
                .parse()
                .map_err(|_| "admin.listen is not an address".to_owned())?;
            let admin = tokio::net::TcpListener::bind(admin_addr)
                .await
                .map_err(|e| format!("cannot listen on {admin_addr}: {e}"))?;
            let watch_every = settings.admin.watch_config_secs;
            let gateway = Gateway::start_with_admin(settings, listener, Some(admin)).await?;
            gateway.app.set_config_source(cli.config.clone());
            tokio::spawn(smm_server::reload::on_sighup(gateway.app.clone()));
            let watched = cli
                .config
                .clone()
                .or_else(|| Some(std::path::PathBuf::from(smm_server::config::LOCAL_CONFIG)))
                .filter(|path| watch_every > 0 && path.exists());
            if let Some(path) = watched {
                tokio::spawn(smm_server::reload::watch_file(
                    gateway.app.clone(),
                    path,
                    std::time::Duration::from_secs(watch_every),
                ));
            }
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight work");
            gateway.shutdown().await;
            Ok(())
        }
        Command::Demo { port, data } => smm_server::demo::run(port, &data, shutdown_signal()).await,
    }
}

fn toml_like(settings: &Settings) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(settings)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
