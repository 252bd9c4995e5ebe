//! Per-key request limits: one `governor` GCRA limiter per key, a burst of the whole minute's
//! budget refilled evenly over the minute. Keyed by customer for `server.rate_limit_per_minute`
//! and by username for the console's `console.login_attempts_per_minute`.
//!
//! The limiters live in a bounded `moka` cache rather than `governor`'s keyed limiter: entries
//! expire after a minute without requests, which forgets nothing (by then a customer's budget
//! is full again), and the capacity bounds memory however many customers there are, without a
//! sweeping task and without `dashmap`. Past the capacity the least used limiters are dropped,
//! and those customers start again from a full budget.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use smm_store::CustomerId;

/// Keys whose limiters are kept at once.
const CAPACITY: u64 = 100_000;

/// What a customer's budget takes to refill completely.
const REFILL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct KeyedLimits<K: Hash + Eq + Send + Sync + 'static> {
    /// The per-minute limit the limiters were built for, and the limiters.
    current: RwLock<(u32, Limiters<K>)>,
}

/// The v2 API's per-customer limit.
pub type CustomerLimits = KeyedLimits<CustomerId>;

type Limiters<K> = moka::sync::Cache<K, Arc<DefaultDirectRateLimiter>>;

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedLimits<K> {
    pub fn new() -> KeyedLimits<K> {
        KeyedLimits {
            current: RwLock::new((0, limiters())),
        }
    }

    /// Takes one request from `customer`'s budget of `per_minute`; false when it is spent.
    /// A changed `per_minute` (a reload) starts every key again from a full budget.
    pub fn allow(&self, customer: K, per_minute: u32) -> bool {
        let Some(burst) = NonZeroU32::new(per_minute) else {
            return false;
        };
        let limiter = {
            let current = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (current.0 == per_minute)
                .then(|| current.1.get_with(customer.clone(), || new_limiter(burst)))
        };
        let limiter = limiter.unwrap_or_else(|| {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.0 != per_minute {
                *current = (per_minute, limiters());
            }
            current.1.get_with(customer, || new_limiter(burst))
        });
        limiter.check().is_ok()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Default for KeyedLimits<K> {
    fn default() -> Self {
        KeyedLimits::new()
    }
}

fn limiters<K: Hash + Eq + Send + Sync + 'static>() -> Limiters<K> {
    moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_idle(REFILL)
        .build()
}

fn new_limiter(per_minute: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
    Arc::new(DefaultDirectRateLimiter::direct(Quota::per_minute(
        per_minute,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_gets_the_minute_budget_then_is_refused() {
        let limits = CustomerLimits::new();
        let alice = CustomerId(1);
        for _ in 0..5 {
            assert!(limits.allow(alice, 5));
        }
        assert!(!limits.allow(alice, 5), "the sixth request in the minute");
        assert!(
            limits.allow(CustomerId(2), 5),
            "another customer is unaffected"
        );
    }

    #[test]
    fn a_new_limit_starts_from_a_full_budget() {
        let limits = CustomerLimits::new();
        let alice = CustomerId(1);
        assert!(limits.allow(alice, 1));
        assert!(!limits.allow(alice, 1));
        assert!(limits.allow(alice, 2));
        assert!(limits.allow(alice, 2));
        assert!(!limits.allow(alice, 2));
    }
}
