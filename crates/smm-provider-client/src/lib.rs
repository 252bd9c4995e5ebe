//! An async client for one upstream SMM panel speaking API v2.
//!
//! One [`ProviderClient`] per configured provider: its base URL, its key (a [`SecretKey`] that
//! never prints), timeouts, request format, rate limit and retry policy. Every v2 action is a
//! method; many-id calls are chunked at [`smm_wire::MAX_IDS`] and merged.
//!
//! # Errors: what the upstream may have done
//!
//! The crux of forwarding orders is knowing, after a failure, whether the upstream acted. Every
//! failure is one of four classes ([`ProviderError`]):
//!
//! | class | what happened | did the upstream act? | what a caller may do |
//! |---|---|---|---|
//! | [`Rejected`](ProviderError::Rejected) | the upstream answered with an error (`{"error": ...}`, a `fail` shape, HTTP 4xx, 429) | no | fail over to another provider |
//! | [`NotSent`](ProviderError::NotSent) | connect refused, DNS, TLS or connect timeout: the request never left | no | retry, here or elsewhere |
//! | [`Ambiguous`](ProviderError::Ambiguous) | timeout, reset or broken body after the request may have arrived; HTTP 5xx | **maybe** | for `add`, `refill`, `cancel`: record as ambiguous and reconcile; never re-send blindly |
//! | [`Protocol`](ProviderError::Protocol) | a complete reply that is not the expected one: HTML with 200, an empty body, an unknown JSON shape, a redirect | **maybe** (treat a write like `Ambiguous`) | for reads: retry later; for writes: reconcile |
//!
//! [`ProviderError::is_definitive_no`] is true exactly for the first two: only then is it safe to
//! place the same order at another provider.
//!
//! # Retries
//!
//! Reads (`services`, `status`, `refill_status`, `balance`) retry with exponential backoff and
//! full jitter on `NotSent`, `Ambiguous`, `Protocol` and rate limiting, up to
//! [`RetryPolicy::max_attempts`]. Writes (`add`, `refill`, `cancel`) are sent exactly once: this
//! crate never retries them.
//!
//! # Secrets
//!
//! The key travels only in the request (form body, JSON body, or the query string for providers
//! configured that way). It is never logged: spans carry provider, action, outcome and latency;
//! transport errors are stripped of their URL. Redirects are never followed, so the key is never
//! sent to another host.

mod client;
mod config;
mod error;
mod rate;

pub use client::{BatchOutcome, ChunkFailure, ProviderClient, Ready};
pub use config::{ProviderConfig, RateLimit, RequestFormat, RetryPolicy, SecretKey};
pub use error::{BuildError, ProviderError};
