//! The per-provider rate limit: `governor`'s GCRA (evenly spaced calls with a burst allowance),
//! waited on with tokio's timer.
//!
//! The limiter runs on a clock read from [`tokio::time::Instant`], so it waits with
//! `tokio::time::sleep` and follows tokio's paused time in tests; `governor`'s own
//! `until_ready` would wait on `futures-timer` and the wall clock instead.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter as Gcra};
use tokio::time::Instant;

use crate::RateLimit;

/// Time since the limiter was built, on tokio's clock.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    clock: TokioClock,
    gcra: Gcra<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
}

impl RateLimiter {
    /// `None` when the limit is unusable (zero requests or zero period).
    pub(crate) fn new(limit: RateLimit) -> Option<RateLimiter> {
        let requests = NonZeroU32::new(limit.requests)?;
        let interval = limit.per / requests.get();
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Some(RateLimiter {
            limit,
            clock,
            gcra: Gcra::direct_with_clock(quota, clock),
        })
    }

    /// The limit this limiter enforces.
    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a call's slot if one is free now, without waiting.
    pub(crate) fn try_acquire(&self) -> bool {
        self.gcra.check().is_ok()
    }

    /// Waits until a call is allowed and takes its slot.
    pub(crate) async fn acquire(&self) {
        while let Err(not_until) = self.gcra.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
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

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_schedule() {
        let limiter = std::sync::Arc::new(
            RateLimiter::new(RateLimit {
                requests: 20,
                per: Duration::from_secs(1),
                burst: 1,
            })
            .expect("valid limit"),
        );
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        // 5 calls at 20/s with no burst: 4 gaps of 50 ms.
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
        let no_period = RateLimit {
            requests: 5,
            per: Duration::ZERO,
            burst: 1,
        };
        assert!(RateLimiter::new(no_period).is_none());
    }
}
