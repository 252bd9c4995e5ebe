//! A per-provider rate limiter (GCRA: evenly spaced calls with a burst allowance).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::RateLimit;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Spacing between calls at the sustained rate.
    interval: Duration,
    /// How far ahead of the schedule a burst may run.
    tolerance: Duration,
    /// Theoretical arrival time of the next call.
    tat: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `None` when the limit is unusable (zero requests or zero period).
    pub(crate) fn new(limit: RateLimit) -> Option<RateLimiter> {
        if limit.requests == 0 || limit.per.is_zero() {
            return None;
        }
        let interval = limit.per / limit.requests;
        let tolerance = interval.saturating_mul(limit.burst.max(1) - 1);
        Some(RateLimiter {
            interval,
            tolerance,
            tat: Mutex::new(None),
        })
    }

    /// Waits until a call is allowed and reserves it.
    pub(crate) async fn acquire(&self) {
        let allowed_at = {
            let mut tat = self.tat.lock().await;
            let now = Instant::now();
            let start = tat.map_or(now, |t| t.max(now));
            *tat = Some(start + self.interval);
            start.checked_sub(self.tolerance).unwrap_or(now).max(now)
        };
        tokio::time::sleep_until(allowed_at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_after_the_burst() {
        let limiter = RateLimiter::new(RateLimit {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 3,
        })
        .expect("valid limit");
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a burst of 3 passes at once"
        );
        limiter.acquire().await;
        limiter.acquire().await;
        // The 4th and 5th calls wait for the schedule: 10/s after the burst.
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(start.elapsed() < Duration::from_millis(300));
    }

    #[test]
    fn unusable_limits_are_refused() {
        let zero = RateLimit {
            requests: 0,
            per: Duration::from_secs(1),
            burst: 1,
        };
        assert!(RateLimiter::new(zero).is_none());
    }
}
