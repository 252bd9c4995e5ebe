use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use smm_wire::upstream::{self, Batch, ServicesReply, UpstreamBalance, UpstreamId, UpstreamStatus};
use smm_wire::{ErrorKind, MAX_IDS, OrderRequest, RefillStatus, ReplyError};
use tokio::time::Instant;
use tracing::Instrument;

use crate::rate::RateLimiter;
use crate::{BuildError, ProviderConfig, ProviderError, RequestFormat, RetryPolicy};

/// A client for one upstream panel. Cheap to clone; clones share the connection pool and the
/// rate limiter.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ProviderConfig,
    http: reqwest::Client,
    limiter: Option<Arc<RateLimiter>>,
}

/// One call's slot under a provider's rate limit, taken by [`ProviderClient::ready`] and spent
/// by the call made with it.
#[derive(Debug)]
#[must_use = "the slot is spent by the call made with it (`add_ready`)"]
pub struct Ready {
    _slot: (),
}

/// The result of a many-id call: per-item results for the ids the upstream answered about,
/// the ids it did not mention, and the chunks that failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome<T> {
    pub items: Batch<T>,
    /// Asked about, but absent from an otherwise good reply.
    pub missing: Vec<UpstreamId>,
    pub failed: Vec<ChunkFailure>,
}

impl<T> Default for BatchOutcome<T> {
    fn default() -> Self {
        BatchOutcome {
            items: Vec::new(),
            missing: Vec::new(),
            failed: Vec::new(),
        }
    }
}

/// One chunk of at most [`MAX_IDS`] ids whose call failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkFailure {
    pub ids: Vec<UpstreamId>,
    pub error: ProviderError,
}

/// Whether a call may be repeated when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Nothing changes upstream: retried per the policy.
    Read,
    /// The upstream may act: sent exactly once.
    Write,
}

impl ProviderClient {
    pub fn new(config: ProviderConfig) -> Result<ProviderClient, BuildError> {
        let scheme = config.base_url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(BuildError::Scheme {
                name: config.name.clone(),
                scheme: scheme.to_owned(),
            });
        }
        let limiter = match config.rate_limit {
            Some(limit) => Some(RateLimiter::new(limit).map(Arc::new).ok_or_else(|| {
                BuildError::RateLimit {
                    name: config.name.clone(),
                }
            })?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            // The key travels in the request: never follow a redirect anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone())
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| BuildError::Http {
                name: config.name.clone(),
                source,
            })?;
        Ok(ProviderClient {
            inner: Arc::new(Inner {
                config,
                http,
                limiter,
            }),
        })
    }

    /// This client with `previous`'s rate limiter when both enforce the same limit, so that a
    /// rebuilt client (a configuration reload) keeps the schedule instead of starting with a
    /// fresh burst. Otherwise unchanged.
    #[must_use]
    pub fn sharing_rate_limit(self, previous: &ProviderClient) -> ProviderClient {
        let Some(kept) = previous
            .inner
            .limiter
            .as_ref()
            .filter(|old| Some(old.limit()) == self.inner.config.rate_limit)
        else {
            return self;
        };
        let inner = Inner {
            config: self.inner.config.clone(),
            http: self.inner.http.clone(),
            limiter: Some(kept.clone()),
        };
        ProviderClient {
            inner: Arc::new(inner),
        }
    }

    /// Waits until the provider's rate limit allows one more call and takes that call's slot
    /// (at once without a limit). Every HTTP exchange this client makes waits here first,
    /// retries included; a caller that must do the waiting apart from the call (before it
    /// records that the call is about to leave) waits here itself and spends the slot with
    /// [`add_ready`](Self::add_ready).
    pub async fn ready(&self) -> Ready {
        if let Some(limiter) = &self.inner.limiter {
            limiter.acquire().await;
        }
        Ready { _slot: () }
    }

    /// [`ready`](Self::ready) without the wait: the slot if the rate limit has one free now.
    pub fn try_ready(&self) -> Option<Ready> {
        match &self.inner.limiter {
            Some(limiter) if !limiter.try_acquire() => None,
            _ => Some(Ready { _slot: () }),
        }
    }

    /// The provider's configured name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// The provider's catalog.
    pub async fn services(&self) -> Result<ServicesReply, ProviderError> {
        self.call("services", Vec::new(), Call::Read, upstream::parse_services)
            .await
    }

    /// Places one order of upstream service `service`. Sent exactly once.
    pub async fn add(
        &self,
        service: &UpstreamId,
        order: &OrderRequest,
    ) -> Result<UpstreamId, ProviderError> {
        let ready = self.ready().await;
        self.add_ready(ready, service, order).await
    }

    /// [`add`](Self::add) in a slot already taken with [`ready`](Self::ready) on this client:
    /// the request leaves at once. Sent exactly once.
    pub async fn add_ready(
        &self,
        ready: Ready,
        service: &UpstreamId,
        order: &OrderRequest,
    ) -> Result<UpstreamId, ProviderError> {
        let mut params = vec![("service", service.as_str().to_owned())];
        params.extend(order.upstream_params());
        self.call_in("add", params, Call::Write, upstream::parse_add, Some(ready))
            .await
    }

    /// One order's status.
    pub async fn status(&self, order: &UpstreamId) -> Result<UpstreamStatus, ProviderError> {
        let codes = &self.inner.config.status_codes;
        self.call(
            "status",
            vec![("order", order.as_str().to_owned())],
            Call::Read,
            |body| upstream::parse_status(body, codes),
        )
        .await
    }

    /// Many orders' statuses, in chunks of at most 100 ids.
    pub async fn statuses(&self, orders: &[UpstreamId]) -> BatchOutcome<UpstreamStatus> {
        let codes = &self.inner.config.status_codes;
        self.batch("status", "orders", orders, Call::Read, |body| {
            upstream::parse_status_many(body, codes)
        })
        .await
    }

    /// Asks for a refill of one order. Sent exactly once.
    pub async fn refill(&self, order: &UpstreamId) -> Result<UpstreamId, ProviderError> {
        self.call(
            "refill",
            vec![("order", order.as_str().to_owned())],
            Call::Write,
            upstream::parse_refill,
        )
        .await
    }

    /// Asks for refills of many orders, in chunks of at most 100. Each chunk is sent once.
    pub async fn refills(&self, orders: &[UpstreamId]) -> BatchOutcome<UpstreamId> {
        self.batch(
            "refill",
            "orders",
            orders,
            Call::Write,
            upstream::parse_refill_many,
        )
        .await
    }

    pub async fn refill_status(&self, refill: &UpstreamId) -> Result<RefillStatus, ProviderError> {
        self.call(
            "refill_status",
            vec![("refill", refill.as_str().to_owned())],
            Call::Read,
            upstream::parse_refill_status,
        )
        .await
    }

    pub async fn refill_statuses(&self, refills: &[UpstreamId]) -> BatchOutcome<RefillStatus> {
        self.batch(
            "refill_status",
            "refills",
            refills,
            Call::Read,
            upstream::parse_refill_status_many,
        )
        .await
    }

    /// The single-`order` cancel variant some panels offer. Sent exactly once.
    pub async fn cancel(&self, order: &UpstreamId) -> Result<(), ProviderError> {
        self.call(
            "cancel",
            vec![("order", order.as_str().to_owned())],
            Call::Write,
            upstream::parse_cancel,
        )
        .await
    }

    /// Asks to cancel many orders, in chunks of at most 100. Each chunk is sent once. `Ok(())`
    /// for an item means "requested", not "canceled".
    pub async fn cancels(&self, orders: &[UpstreamId]) -> BatchOutcome<()> {
        self.batch(
            "cancel",
            "orders",
            orders,
            Call::Write,
            upstream::parse_cancel_many,
        )
        .await
    }

    /// The reseller's balance at this provider.
    pub async fn balance(&self) -> Result<UpstreamBalance, ProviderError> {
        self.call("balance", Vec::new(), Call::Read, upstream::parse_balance)
            .await
    }

    /// Chunks `ids` (de-duplicated, order kept) and merges the replies.
    async fn batch<T>(
        &self,
        action: &'static str,
        param: &'static str,
        ids: &[UpstreamId],
        call: Call,
        parse: impl Fn(&[u8]) -> Result<Batch<T>, ReplyError>,
    ) -> BatchOutcome<T> {
        let mut seen = HashSet::new();
        let unique: Vec<&UpstreamId> = ids.iter().filter(|id| seen.insert(*id)).collect();
        let mut outcome = BatchOutcome::default();
        for chunk in unique.chunks(MAX_IDS) {
            let joined = chunk
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(",");
            match self.call(action, vec![(param, joined)], call, &parse).await {
                Ok(items) => {
                    let asked: HashSet<&UpstreamId> = chunk.iter().copied().collect();
                    let mut answered = HashSet::new();
                    for (id, item) in items {
                        // Ignore ids we did not ask about, and repeats.
                        if asked.contains(&id) && answered.insert(id.clone()) {
                            outcome.items.push((id, item));
                        }
                    }
                    outcome.missing.extend(
                        chunk
                            .iter()
                            .filter(|id| !answered.contains(**id))
                            .map(|id| (*id).clone()),
                    );
                }
                Err(error) => outcome.failed.push(ChunkFailure {
                    ids: chunk.iter().map(|id| (*id).clone()).collect(),
                    error,
                }),
            }
        }
        outcome
    }

    /// One logical call: a single attempt for writes, retries with backoff for reads.
    async fn call<T>(
        &self,
        action: &'static str,
        params: Vec<(&'static str, String)>,
        call: Call,
        parse: impl Fn(&[u8]) -> Result<T, ReplyError>,
    ) -> Result<T, ProviderError> {
        self.call_in(action, params, call, parse, None).await
    }

    /// [`call`](Self::call), its first attempt in `ready` when given.
    async fn call_in<T>(
        &self,
        action: &'static str,
        params: Vec<(&'static str, String)>,
        call: Call,
        parse: impl Fn(&[u8]) -> Result<T, ReplyError>,
        mut ready: Option<Ready>,
    ) -> Result<T, ProviderError> {
        let policy = self.inner.config.retry;
        let attempts = match call {
            Call::Read => policy.max_attempts.max(1),
            Call::Write => 1,
        };
        let mut attempt = 1;
        loop {
            let span = tracing::debug_span!(
                "upstream",
                provider = %self.inner.config.name,
                action,
                attempt,
                outcome = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
            );
            let started = Instant::now();
            let result = self
                .attempt(ready.take(), action, &params, &parse)
                .instrument(span.clone())
                .await;
            let latency_ms = started.elapsed().as_millis();
            let outcome = match &result {
                Ok(_) => "ok",
                Err(error) => error.class(),
            };
            span.record("outcome", outcome);
            span.record("latency_ms", latency_ms);
            match result {
                Err(error) if attempt < attempts && error.is_retryable_read() => {
                    let delay = backoff(&policy, attempt);
                    tracing::debug!(
                        parent: &span,
                        %error,
                        retry_in_ms = delay.as_millis(),
                        "upstream read failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => {
                    tracing::warn!(parent: &span, %error, latency_ms, "upstream call failed");
                    return Err(error);
                }
                Ok(value) => {
                    tracing::debug!(parent: &span, latency_ms, "upstream call ok");
                    return Ok(value);
                }
            }
        }
    }

    /// One HTTP exchange in its rate-limit slot (taken now unless given), classified.
    async fn attempt<T>(
        &self,
        ready: Option<Ready>,
        action: &'static str,
        params: &[(&'static str, String)],
        parse: impl Fn(&[u8]) -> Result<T, ReplyError>,
    ) -> Result<T, ProviderError> {
        let _slot = match ready {
            Some(ready) => ready,
            None => self.ready().await,
        };
        let response = self
            .request(action, params)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(ProviderError::Protocol {
                reason: format!("redirect (HTTP {}) not followed", status.as_u16()),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::Rejected {
                kind: ErrorKind::RateLimited,
            });
        }
        if status.is_server_error() {
            return Err(ProviderError::Ambiguous {
                reason: format!("HTTP {}", status.as_u16()),
            });
        }
        let body = self.read_body(response).await?;
        if status.is_client_error() {
            // A 4xx is a refusal; keep the upstream's own words when it gave some. A 4xx whose
            // body reads as a success (an order id) is contradictory: the upstream may have
            // acted, so it is a protocol error, never a refusal that would allow fail-over.
            let kind = match parse(&body) {
                Err(ReplyError::Rejected(kind)) => kind,
                Ok(_) => {
                    return Err(ProviderError::Protocol {
                        reason: format!("HTTP {} with a success body", status.as_u16()),
                    });
                }
                Err(ReplyError::Protocol(_)) => {
                    ErrorKind::Other(format!("HTTP {}", status.as_u16()))
                }
            };
            return Err(ProviderError::Rejected { kind });
        }
        parse(&body).map_err(|error| match error {
            ReplyError::Rejected(kind) => ProviderError::Rejected { kind },
            ReplyError::Protocol(protocol) => ProviderError::protocol(&protocol),
        })
    }

    fn request(
        &self,
        action: &'static str,
        params: &[(&'static str, String)],
    ) -> reqwest::RequestBuilder {
        let config = &self.inner.config;
        let pairs = [("key", config.key.expose()), ("action", action)]
            .into_iter()
            .chain(params.iter().map(|(name, value)| (*name, value.as_str())));
        match config.request_format {
            RequestFormat::Form => {
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish();
                self.inner
                    .http
                    .post(config.base_url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            RequestFormat::Query => {
                let mut url = config.base_url.clone();
                url.query_pairs_mut().extend_pairs(pairs);
                self.inner.http.get(url)
            }
            RequestFormat::Json => {
                let object: serde_json::Map<String, serde_json::Value> = pairs
                    .map(|(name, value)| (name.to_owned(), serde_json::Value::from(value)))
                    .collect();
                self.inner
                    .http
                    .post(config.base_url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(serde_json::Value::Object(object).to_string())
            }
        }
    }

    /// Reads the whole body, refusing replies over the configured size.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        let limit = self.inner.config.max_reply_bytes;
        let too_large = || ProviderError::Protocol {
            reason: format!("reply larger than {limit} bytes"),
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Classifies a transport failure. The URL is stripped first: with query-string requests it
/// carries the key.
fn transport_error(error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    let reason = error_chain(&error);
    if error.is_connect() || error.is_builder() {
        ProviderError::NotSent { reason }
    } else {
        // Timeouts, resets, a body cut short: the request may have arrived.
        ProviderError::Ambiguous { reason }
    }
}

/// `error: cause: cause`, so a log says "connection refused" rather than "error sending request".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Exponential backoff with equal jitter: a random delay between half and all of
/// `base × 2^(attempt-1)`, capped at `max_delay`.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let ceiling = policy
        .base_delay
        .saturating_mul(1 << exponent)
        .min(policy.max_delay);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(nanos / 2..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = backoff(&policy, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(&policy, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(&policy, 30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
    }
}
