//! What triggers a configuration reload besides the admin API: `SIGHUP`, and optionally a
//! watch on the config file's modification time (`admin.watch_config_secs`). Both call
//! [`App::reload_from_source`]; the outcome is logged (and audited when it applies).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::app::App;

/// Reloads on every `SIGHUP` until the process ends.
#[cfg(unix)]
pub async fn on_sighup(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP: reload through the admin API");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        log_outcome("SIGHUP", app.reload_from_source("signal:SIGHUP").await);
    }
}

#[cfg(not(unix))]
pub async fn on_sighup(_app: Arc<App>) {}

/// Polls `file`'s modification time every `every` and reloads when it changes. A file that
/// cannot be read is reported once per change of its state, and the running config stays.
pub async fn watch_file(app: Arc<App>, file: PathBuf, every: Duration) {
    let mut seen = modified(&file);
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = modified(&file);
        if now == seen {
            continue;
        }
        seen = now;
        if now.is_none() {
            tracing::warn!(file = %file.display(), "config file unreadable: the running configuration stays");
            continue;
        }
        log_outcome(
            "file watch",
            app.reload_from_source("watch:config-file").await,
        );
    }
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

fn log_outcome(trigger: &str, outcome: Result<crate::app::ReloadReport, Vec<String>>) {
    match outcome {
        Ok(report) => {
            for warning in &report.warnings {
                tracing::warn!(trigger, "reload: {warning}");
            }
            tracing::info!(
                trigger,
                version = report.version,
                changed = ?report.changed,
                "configuration reloaded"
            );
        }
        Err(problems) => {
            for problem in &problems {
                tracing::error!(trigger, "reload refused: {problem}");
            }
            tracing::error!(
                trigger,
                problems = problems.len(),
                "configuration NOT reloaded: the running configuration stays"
            );
        }
    }
}
