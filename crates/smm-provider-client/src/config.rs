use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smm_wire::StatusCodes;
use url::Url;

/// A provider's API key. `Debug` and `Display` never show it; only [`SecretKey::expose`] does,
/// and only the request builder calls that.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: impl Into<String>) -> SecretKey {
        SecretKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the parameters travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestFormat {
    /// `POST`, `application/x-www-form-urlencoded` (what every panel's docs show).
    #[default]
    Form,
    /// `GET` with everything in the query string (some panels only read `$_GET`).
    Query,
    /// `POST`, `application/json`, every value a string.
    Json,
}

/// At most `requests` calls per `per`, with bursts of up to `burst` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
}

/// Retries for reads. Writes are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time, with full jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Everything needed to talk to one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Short name, used in logs and metrics (`provider-a`).
    pub name: String,
    /// The API endpoint, `https://panel.example/api/v2`.
    pub base_url: Url,
    pub key: SecretKey,
    pub connect_timeout: Duration,
    /// Whole call, from sending to the last byte of the reply.
    pub timeout: Duration,
    pub request_format: RequestFormat,
    pub rate_limit: Option<RateLimit>,
    pub user_agent: String,
    pub retry: RetryPolicy,
    /// The provider's numeric status codes, if it uses any.
    pub status_codes: StatusCodes,
    /// Replies longer than this are a protocol error (a big catalog is a few MB).
    pub max_reply_bytes: usize,
}

impl ProviderConfig {
    /// A config with the defaults: form requests, 5 s connect and 30 s total timeouts, no rate
    /// limit, 3 attempts for reads, 16 MiB replies at most.
    pub fn new(name: impl Into<String>, base_url: Url, key: SecretKey) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            base_url,
            key,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            request_format: RequestFormat::Form,
            rate_limit: None,
            user_agent: concat!("smm-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy::default(),
            status_codes: StatusCodes::default(),
            max_reply_bytes: 16 * 1024 * 1024,
        }
    }
}
