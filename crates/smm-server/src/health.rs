//! Provider health: consecutive failures put a provider into cooldown, and routing skips it
//! until the cooldown ends.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that start a cooldown.
pub const FAILURES_BEFORE_COOLDOWN: u32 = 5;
/// How long a cooldown lasts.
pub const COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    consecutive_failures: u32,
    cooldown_until: Option<Instant>,
}

/// A snapshot for the CLI and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    pub consecutive_failures: u32,
    pub cooling_down: bool,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn available(&self) -> bool {
        self.state()
            .cooldown_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// The upstream answered (even with a definitive error): it is alive.
    pub fn record_success(&self) {
        *self.state() = State::default();
    }

    /// The upstream could not be reached or answered garbage.
    pub fn record_failure(&self) {
        let mut state = self.state();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= FAILURES_BEFORE_COOLDOWN {
            state.cooldown_until = Some(Instant::now() + COOLDOWN);
            tracing::warn!(
                failures = state.consecutive_failures,
                cooldown_secs = COOLDOWN.as_secs(),
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
        }
    }
}
