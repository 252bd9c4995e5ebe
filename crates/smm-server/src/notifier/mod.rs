//! The notifier: the background job that pushes what happened instead of making people poll
//! (issue #14). Customers' status webhooks ([`webhooks`]) and the reseller's alerts
//! ([`alerts`]) both go out from durable outboxes in the store, so order processing never
//! waits on a receiver and a crash loses nothing.

pub mod alerts;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use smm_notify::{OutboundClient, OutboundConfig, TargetPolicy};
use tokio::sync::watch;

use crate::app::App;
use crate::config::Settings;

/// The client customer webhooks go out with: the customers chose the URLs, so non-public
/// addresses are refused unless `webhooks.allow_private_targets`.
pub fn webhook_client(settings: &Settings) -> Result<OutboundClient, String> {
    let hooks = &settings.webhooks;
    OutboundClient::new(OutboundConfig {
        timeout: Duration::from_secs(hooks.timeout_secs.max(1)),
        max_response_bytes: hooks.max_response_bytes,
        policy: TargetPolicy {
            allow_private: hooks.allow_private_targets,
        },
    })
    .map_err(|e| e.to_string())
}

/// Runs until `shutdown` turns true: the webhook delivery pipeline ([`webhooks::run`]) beside
/// the alerts: conditions checked every `alerts.interval_secs`, the alert outbox sent as it
/// fills.
pub async fn run(app: Arc<App>, shutdown: watch::Receiver<bool>) {
    let deliveries = tokio::spawn(webhooks::run(app.clone(), shutdown.clone()));
    run_alerts(app, shutdown).await;
    let _ = deliveries.await;
}

/// How often what notifications no longer need is deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Deletes webhook events and alerts past `webhooks.keep_days` and `alerts.keep_days`.
async fn prune(app: &App, settings: &Settings) {
    let days = |n: u64| i64::try_from(n.saturating_mul(86_400_000)).unwrap_or(i64::MAX / 2);
    let now = crate::app::now_ms();
    match app
        .store
        .prune_notifications(
            now.saturating_sub(days(settings.webhooks.keep_days)),
            now.saturating_sub(days(settings.alerts.keep_days)),
        )
        .await
    {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "old notifications deleted"),
        Err(error) => tracing::warn!(%error, "cannot delete old notifications"),
    }
}

async fn run_alerts(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut client: Option<(u64, OutboundClient)> = None;
    let mut last_check: Option<tokio::time::Instant> = None;
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let runtime = app.runtime();
        if client.as_ref().is_none_or(|(v, _)| *v != runtime.version) {
            match alerts::client(&runtime.settings) {
                Ok(fresh) => client = Some((runtime.version, fresh)),
                Err(error) => tracing::error!(%error, "cannot build the alert client"),
            }
        }
        let every = Duration::from_secs(runtime.settings.alerts.interval_secs.max(1));
        if last_check.is_none_or(|at| at.elapsed() >= every) {
            last_check = Some(tokio::time::Instant::now());
            alerts::evaluate(&app).await;
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            prune(&app, &runtime.settings).await;
        }
        let mut busy = false;
        if let Some((_, http)) = &client {
            busy = alerts::send_round(&app, http).await > 0;
        }
        if busy {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
