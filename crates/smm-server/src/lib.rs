//! smm-gateway: the reseller's server.
//!
//! * [`v2`] answers the customers' API v2, byte-compatible with what panels serve;
//! * [`forwarder`] sends placed orders upstream exactly once (a durable outbox);
//! * [`reconciler`] polls statuses (refunds paid by the store, once), forwards refills and
//!   cancels;
//! * [`app`] holds the shared state: settings, store, provider clients, the catalog;
//! * [`config`] loads and validates layered settings;
//! * [`cli`] is the `smm-gateway` command line, [`demo`] its one-command demo;
//! * [`admin`] is the admin listener: probes, [`metrics`], and the `/admin/v1` API over [`ops`];
//! * [`limits`] holds the per-customer request limit, [`health`] the providers' cooldowns;
//! * [`reload`] triggers configuration reloads, [`serve`] serves both listeners with client
//!   timeouts.
//!
//! [`Gateway::start`] wires them together on a listener of the caller's choosing, so tests run
//! the real server on port 0.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod forwarder;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod notifier;
pub mod ops;
pub mod reconciler;
pub mod reload;
pub mod scorecards;
pub mod serve;
pub mod v2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::config::Settings;

/// A running gateway: the v2 listener and its background tasks.
#[derive(Debug)]
pub struct Gateway {
    pub app: Arc<App>,
    pub addr: SocketAddr,
    /// The admin listener's address, when one was given.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Opens the store (running migrations), syncs the providers' catalogs, recovers orders a
    /// previous process left mid-forwarding, and starts serving on `listener`.
    pub async fn start(settings: Settings, listener: TcpListener) -> Result<Gateway, String> {
        Gateway::start_with_admin(settings, listener, None).await
    }

    /// [`Gateway::start`] plus the admin listener (health, metrics, admin API) on `admin`.
    pub async fn start_with_admin(
        settings: Settings,
        listener: TcpListener,
        admin: Option<TcpListener>,
    ) -> Result<Gateway, String> {
        let store = smm_store::connect(&settings.database.url)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let app = Arc::new(App::new(settings, store)?);
        let conflicts = app.service_id_conflicts(&app.settings()).await;
        if !conflicts.is_empty() {
            return Err(conflicts.join("; "));
        }
        for issue in app.load_saved_catalogs().await {
            tracing::warn!("{issue}");
        }
        let startup = Duration::from_secs(app.settings().sync.startup_timeout_secs);
        match tokio::time::timeout(startup, app.sync_catalog()).await {
            Ok(issues) => {
                for issue in issues {
                    tracing::warn!("{issue}");
                }
            }
            Err(_) => tracing::warn!(
                "first catalog sync still running after {startup:?}: serving the saved catalog"
            ),
        }
        tracing::info!(services = app.catalog().len(), "catalog ready");

        // Orders a dead process left in `sending` may have reached the upstream: park them.
        // With SQLite only this process uses the database, so every claim is stale now; with
        // PostgreSQL other instances may be mid-call, so only expired leases are taken.
        let lease = Duration::from_secs(app.settings().forwarder.lease_secs);
        let startup_lease = match app.store.backend() {
            smm_store::Backend::Sqlite => Duration::ZERO,
            smm_store::Backend::Postgres => lease,
        };
        forwarder::recover(&app, startup_lease).await;
        if app.store.backend() == smm_store::Backend::Sqlite {
            // The one process on this database: what a killed one held goes out now.
            match app.store.release_notification_claims().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "notification claims of a previous run released"),
                Err(error) => tracing::warn!(%error, "cannot release notification claims"),
            }
        }

        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (shutdown, signal) = watch::channel(false);
        let mut tasks = Vec::new();

        let router = v2::router(app.clone());
        let timeouts = serve::Timeouts::from_settings(&app.settings().server);
        let mut http_signal = signal.clone();
        tasks.push(tokio::spawn(serve::serve(
            listener,
            router,
            async move {
                let _ = http_signal.wait_for(|stop| *stop).await;
            },
            timeouts,
        )));
        let admin_addr = admin.as_ref().and_then(|a| a.local_addr().ok());
        if let Some(admin) = admin {
            let router = admin::router(app.clone());
            let mut admin_signal = signal.clone();
            let admin_addr = admin.local_addr().ok();
            tasks.push(tokio::spawn(serve::serve(
                admin,
                router,
                async move {
                    let _ = admin_signal.wait_for(|stop| *stop).await;
                },
                timeouts,
            )));
            tracing::info!(addr = ?admin_addr, "admin listener (healthz, readyz, metrics, admin API)");
        }
        if let Some(events) = app.store.customer_events() {
            tasks.push(tokio::spawn(forget_changed_customers(
                app.clone(),
                events,
                signal.clone(),
            )));
        }
        tasks.push(tokio::spawn(forwarder::run(app.clone(), signal.clone())));
        tasks.push(tokio::spawn(reconciler::run(app.clone(), signal.clone())));
        tasks.push(tokio::spawn(reconciler::fold_aggregates(
            app.clone(),
            signal.clone(),
        )));
        tasks.push(tokio::spawn(notifier::run(app.clone(), signal.clone())));
        tasks.push(tokio::spawn(scorecards::run(app.clone(), signal.clone())));
        tasks.push(tokio::spawn(periodic(app.clone(), signal.clone(), lease)));
        tracing::info!(%addr, worker = %app.worker_id, "smm-gateway listening");
        Ok(Gateway {
            app,
            addr,
            admin_addr,
            shutdown,
            tasks,
        })
    }

    /// The v2 endpoint, `http://ADDR/api/v2`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    /// Stops accepting, lets in-flight requests and the order in hand finish, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // One bound for everything together: in-flight requests, the order in hand.
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .is_err()
        {
            tracing::warn!("shutdown: work still running after 30 s; stopping anyway");
        }
    }
}

/// Forgets a customer's cached key lookups and rates as soon as the database announces a
/// change to them (PostgreSQL: a rotation, suspension or price change by any instance or the
/// CLI), and everything cached when announcements may have been missed.
async fn forget_changed_customers(
    app: Arc<App>,
    mut events: tokio::sync::mpsc::Receiver<smm_store::CustomerEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(smm_store::CustomerEvent::Changed(id)) => {
                    tracing::debug!(customer = id.0, "customer changed; cache entries dropped");
                    app.forget_customer(id);
                }
                Some(smm_store::CustomerEvent::Resync) => app.invalidate_keys(),
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Catalog re-sync and stale-claim recovery on their intervals.
async fn periodic(app: Arc<App>, mut shutdown: watch::Receiver<bool>, lease: Duration) {
    let sync_every = Duration::from_secs(app.settings().sync.services_interval_secs.max(1));
    let mut sync = tokio::time::interval(sync_every);
    let mut recover = tokio::time::interval(lease.max(Duration::from_secs(1)));
    sync.tick().await;
    recover.tick().await;
    loop {
        tokio::select! {
            _ = sync.tick() => {
                for issue in app.sync_catalog().await {
                    tracing::warn!("{issue}");
                }
                for issue in app.check_balances().await {
                    tracing::warn!("{issue}");
                }
            }
            _ = recover.tick() => forwarder::recover(&app, lease).await,
            _ = shutdown.changed() => return,
        }
    }
}
