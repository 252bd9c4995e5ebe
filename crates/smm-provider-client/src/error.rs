use smm_wire::ErrorKind;
use smm_wire::upstream::ProtocolError;

/// Why a call to a provider failed, classified by what the upstream may have done. See the crate
/// docs for the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The upstream answered with an error: definitive, it did not act.
    #[error("rejected by the upstream: {kind}")]
    Rejected { kind: ErrorKind },
    /// The request never left (connect refused, DNS, TLS, connect timeout).
    #[error("not sent: {reason}")]
    NotSent { reason: String },
    /// The request may have arrived and been acted on (timeout, reset, 5xx, broken body).
    #[error("ambiguous: {reason}")]
    Ambiguous { reason: String },
    /// A complete reply that is not the expected one (HTML, empty, unknown shape, redirect).
    #[error("protocol error: {reason}")]
    Protocol { reason: String },
}

impl ProviderError {
    /// True when the upstream certainly did not act (`Rejected`, `NotSent`): the only cases in
    /// which an order may be placed at another provider.
    pub fn is_definitive_no(&self) -> bool {
        matches!(
            self,
            ProviderError::Rejected { .. } | ProviderError::NotSent { .. }
        )
    }

    /// A short stable label for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::NotSent { .. } => "not_sent",
            ProviderError::Ambiguous { .. } => "ambiguous",
            ProviderError::Protocol { .. } => "protocol",
        }
    }

    /// Whether a read should be tried again after this.
    pub(crate) fn is_retryable_read(&self) -> bool {
        match self {
            ProviderError::Rejected { kind } => *kind == ErrorKind::RateLimited,
            ProviderError::NotSent { .. }
            | ProviderError::Ambiguous { .. }
            | ProviderError::Protocol { .. } => true,
        }
    }

    pub(crate) fn protocol(error: &ProtocolError) -> ProviderError {
        ProviderError::Protocol {
            reason: error.to_string(),
        }
    }
}

/// The client could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("provider {name}: base URL must be http or https, got {scheme}")]
    Scheme { name: String, scheme: String },
    #[error("provider {name}: rate limit must allow at least one request in a non-zero period")]
    RateLimit { name: String },
    #[error("provider {name}: cannot build the HTTP client: {source}")]
    Http {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}
