//! Provider health: consecutive failures put a provider into cooldown, and routing skips it
//! until the cooldown ends.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that start a cooldown, by default.
pub const FAILURES_BEFORE_COOLDOWN: u32 = 5;
/// How long a cooldown lasts, by default.
pub const COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
    failures_before_cooldown: u32,
    cooldown: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(FAILURES_BEFORE_COOLDOWN, COOLDOWN)
    }
}

/// How long a provider that refused an order for lack of funds is skipped, unless a balance
/// check shows money earlier.
pub const OUT_OF_FUNDS_PAUSE: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone, Copy)]
struct State {
    consecutive_failures: u32,
    cooldown_until: Option<Instant>,
    out_of_funds_until: Option<Instant>,
    /// When the upstream last answered, and when a balance check last showed money there
    /// (wall clock, ms): the evidence that lets this process call a provider's trouble over.
    last_success_at: Option<i64>,
    funds_seen_at: Option<i64>,
}

/// A snapshot for the CLI and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    pub consecutive_failures: u32,
    pub cooling_down: bool,
    pub out_of_funds: bool,
    /// When this process last had an answer from the upstream (ms since the epoch).
    pub last_success_at: Option<i64>,
    /// When a balance check of this process last showed money there (ms since the epoch).
    pub funds_seen_at: Option<i64>,
}

impl Health {
    /// `failures_before_cooldown` failures in a row put the provider into a cooldown of
    /// `cooldown`; 0 never does.
    pub fn new(failures_before_cooldown: u32, cooldown: Duration) -> Health {
        Health {
            state: Mutex::new(State::default()),
            failures_before_cooldown,
            cooldown,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn available(&self) -> bool {
        let state = self.state();
        let now = Instant::now();
        state.cooldown_until.is_none_or(|until| now >= until)
            && state.out_of_funds_until.is_none_or(|until| now >= until)
    }

    /// The upstream answered (even with a definitive error): it is alive.
    pub fn record_success(&self) {
        let mut state = self.state();
        state.consecutive_failures = 0;
        state.cooldown_until = None;
        state.last_success_at = Some(crate::app::now_ms());
    }

    /// The upstream refused an order for lack of the reseller's funds there: skip it until a
    /// balance check shows money, or [`OUT_OF_FUNDS_PAUSE`] passes.
    pub fn record_out_of_funds(&self) {
        self.state().out_of_funds_until = Some(Instant::now() + OUT_OF_FUNDS_PAUSE);
        tracing::warn!("provider out of funds: skipped by routing until its balance recovers");
    }

    /// A balance check: money there lifts an out-of-funds pause.
    pub fn record_balance_positive(&self) {
        let mut state = self.state();
        state.out_of_funds_until = None;
        state.funds_seen_at = Some(crate::app::now_ms());
    }

    /// The upstream could not be reached or answered garbage.
    pub fn record_failure(&self) {
        let mut state = self.state();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if self.failures_before_cooldown > 0
            && state.consecutive_failures >= self.failures_before_cooldown
        {
            state.cooldown_until = Some(Instant::now() + self.cooldown);
            tracing::warn!(
                failures = state.consecutive_failures,
                cooldown_secs = self.cooldown.as_secs(),
                "provider put into cooldown"
            );
        }
    }

    pub fn view(&self) -> HealthView {
        let state = *self.state();
        HealthView {
            consecutive_failures: state.consecutive_failures,
            cooling_down: state
                .cooldown_until
                .is_some_and(|until| Instant::now() < until),
            out_of_funds: state
                .out_of_funds_until
                .is_some_and(|until| Instant::now() < until),
            last_success_at: state.last_success_at,
            funds_seen_at: state.funds_seen_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_start_a_cooldown_and_success_ends_the_count() {
        let health = Health::new(3, Duration::from_secs(60));
        health.record_failure();
        health.record_failure();
        health.record_success();
        health.record_failure();
        health.record_failure();
        assert!(health.available(), "the count restarted after the success");
        health.record_failure();
        assert!(!health.available());
        assert!(health.view().cooling_down);
        let never = Health::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            never.record_failure();
        }
        assert!(never.available());
        let short = Health::new(1, Duration::ZERO);
        short.record_failure();
        assert!(short.available(), "a zero cooldown is over at once");
        health.record_out_of_funds();
        assert!(health.view().out_of_funds);
        health.record_balance_positive();
        assert!(!health.view().out_of_funds);
    }
}
