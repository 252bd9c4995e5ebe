//! The scorecards the routing policies read (issue #15), refreshed in the background.
//!
//! Every `routing.refresh_secs` this job reads each route's record over
//! `routing.window_days` from the store (a few rows per route and day, kept by the database as
//! orders change) and, for the routes of services under the `quality` policy, their last
//! `routing.recent` attempts. The forwarder ranks routes from this snapshot without touching
//! the database; the metrics read it too. Several instances each keep their own snapshot of the
//! same database.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use smm_routing::{Policy, QualityTargets, RecentOutcome, RecentWindow, RouteEvidence};
use smm_store::{RecentAttempt, RouteRecord, ScoreWindow, Timestamp};
use tokio::sync::watch;

use crate::app::{App, now_ms};

/// A route: (provider, upstream service id).
pub type RouteKey = (String, String);

/// What the gateway knows of its routes at one moment.
#[derive(Debug, Clone, Default)]
pub struct Scorecards {
    /// When it was read (0: never).
    pub at: Timestamp,
    /// The days its records cover.
    pub window_days: u32,
    pub records: BTreeMap<RouteKey, RouteRecord>,
    /// The recent attempts of the routes quality-ranked services use, newest first.
    pub recent: BTreeMap<RouteKey, Vec<RecentAttempt>>,
}

impl Scorecards {
    /// What the quality policy knows of `route`, judging its recent attempts against
    /// `targets` at `now`.
    pub fn evidence(
        &self,
        route: &RouteKey,
        targets: &QualityTargets,
        now: Timestamp,
    ) -> RouteEvidence {
        let mut evidence = RouteEvidence::default();
        if let Some(record) = self.records.get(route) {
            let n = &record.counts;
            evidence.finished = n.finished();
            evidence.completed = n.completed;
            evidence.median_start_ms = record.durations.start.median();
            evidence.refills_finished = n.refills_done + n.refills_failed;
            evidence.refills_done = n.refills_done;
        }
        if let Some(recent) = self.recent.get(route) {
            let start_ms = targets.start_ms();
            evidence.recent =
                RecentWindow::from_outcomes(recent.iter().map(|a| judge(a, start_ms, now)));
        }
        evidence
    }
}

/// What became of one recent attempt, against a start target of `start_ms`: refused,
/// ambiguous, Partial, Canceled or not started within the target is bad; started within it is
/// good; accepted and younger than the target is too early to tell.
pub fn judge(attempt: &RecentAttempt, start_ms: i64, now: Timestamp) -> RecentOutcome {
    if attempt.outcome != "sent" {
        return RecentOutcome::Bad;
    }
    if matches!(attempt.status.as_str(), "Partial" | "Canceled" | "Refunded") {
        return RecentOutcome::Bad;
    }
    let accepted = attempt.forwarded_at.unwrap_or(attempt.at);
    match attempt.started_at {
        Some(started) if started.saturating_sub(accepted) <= start_ms => RecentOutcome::Good,
        Some(_) => RecentOutcome::Bad,
        None if now.saturating_sub(accepted) > start_ms => RecentOutcome::Bad,
        None => RecentOutcome::Open,
    }
}

/// Runs until `shutdown` turns true: a refresh at once, then every `routing.refresh_secs`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        refresh(&app).await;
        let every = Duration::from_secs(app.settings().routing.refresh_secs.max(1));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Reads a new snapshot and swaps it in; on a store error the last one stays.
pub async fn refresh(app: &App) {
    let settings = app.settings();
    let now = now_ms();
    let window = ScoreWindow {
        now,
        days: settings.routing.window_days.max(1),
    };
    let records = match app.store.route_records(window).await {
        Ok(records) => records,
        Err(error) => {
            tracing::error!(%error, "cannot read the route scorecards");
            return;
        }
    };
    // The routes whose recent window matters: those of services ranked by quality.
    let catalog = app.catalog();
    let runtime = app.runtime();
    let mut watched: BTreeSet<RouteKey> = BTreeSet::new();
    for service in catalog.iter().filter(|s| s.routes.len() > 1) {
        if runtime.service_policy(service.id).0 == Policy::Quality {
            watched.extend(
                service
                    .routes
                    .iter()
                    .map(|r| (r.provider.clone(), r.upstream_service.as_str().to_owned())),
            );
        }
    }
    let mut recent = BTreeMap::new();
    for route in watched {
        match app
            .store
            .recent_attempts(&route.0, &route.1, settings.routing.recent.max(1))
            .await
        {
            Ok(attempts) => {
                recent.insert(route, attempts);
            }
            Err(error) => {
                tracing::error!(%error, provider = %route.0, service = %route.1, "cannot read a route's recent attempts");
                return;
            }
        }
    }
    app.set_scorecards(Scorecards {
        at: now,
        window_days: window.days,
        records: records
            .into_iter()
            .map(|r| ((r.provider.clone(), r.upstream_service.clone()), r))
            .collect(),
        recent,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use smm_store::OrderId;

    fn attempt(outcome: &str, status: &str, started: Option<i64>) -> RecentAttempt {
        RecentAttempt {
            order_id: OrderId(1),
            outcome: outcome.into(),
            at: 1_000,
            status: status.into(),
            forwarded_at: Some(1_000),
            started_at: started,
        }
    }

    #[test]
    fn recent_attempts_are_judged_against_the_start_target() {
        let now = 10_000;
        assert_eq!(
            judge(&attempt("rejected", "Canceled", None), 5_000, now),
            RecentOutcome::Bad
        );
        assert_eq!(
            judge(&attempt("ambiguous", "Pending", None), 5_000, now),
            RecentOutcome::Bad
        );
        assert_eq!(
            judge(&attempt("sent", "Partial", Some(2_000)), 5_000, now),
            RecentOutcome::Bad
        );
        assert_eq!(
            judge(&attempt("sent", "Completed", Some(6_000)), 5_000, now),
            RecentOutcome::Good
        );
        assert_eq!(
            judge(&attempt("sent", "Completed", Some(6_001)), 5_000, now),
            RecentOutcome::Bad
        );
        assert_eq!(
            judge(&attempt("sent", "Pending", None), 9_000, now),
            RecentOutcome::Open
        );
        assert_eq!(
            judge(&attempt("sent", "Pending", None), 8_999, now),
            RecentOutcome::Bad,
            "stuck"
        );
    }
}
