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

/// Clients rebuilt when a reload changed the settings they are made from.
struct Clients {
    version: u64,
    webhooks: OutboundClient,
    alerts: OutboundClient,
}

impl Clients {
    fn current(app: &App, held: &mut Option<Clients>) -> Option<()> {
        let runtime = app.runtime();
        if held.as_ref().is_some_and(|c| c.version == runtime.version) {
            return Some(());
        }
        match (
            webhook_client(&runtime.settings),
            alerts::client(&runtime.settings),
        ) {
            (Ok(webhooks), Ok(alerts)) => {
                *held = Some(Clients {
                    version: runtime.version,
                    webhooks,
                    alerts,
                });
                Some(())
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot build the notification clients");
                held.is_some().then_some(())
            }
        }
    }
}

/// Runs until `shutdown` turns true: webhook deliveries as fast as they are due, alert
/// sending, and the alert conditions every `alerts.interval_secs`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut clients: Option<Clients> = None;
    let mut last_check = tokio::time::Instant::now()
        .checked_sub(Duration::from_secs(3_600))
        .unwrap_or_else(tokio::time::Instant::now);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let settings = app.settings();
        let mut busy = false;
        if Clients::current(&app, &mut clients).is_some()
            && let Some(c) = &clients
        {
            let delivered = webhooks::round(&app, &c.webhooks).await;
            busy = delivered >= settings.webhooks.batch as usize;
            let every = Duration::from_secs(settings.alerts.interval_secs.max(1));
            if last_check.elapsed() >= every {
                last_check = tokio::time::Instant::now();
                alerts::evaluate(&app).await;
            }
            busy |= alerts::send_round(&app, &c.alerts).await > 0;
        }
        if busy {
            continue;
        }
        let pause = Duration::from_millis(settings.webhooks.interval_ms.max(10));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = app.notify_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
