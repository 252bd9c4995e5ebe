//! The outbound HTTP client: one `reqwest` client behind the SSRF guard.
//!
//! Every call checks its URL ([`check_url`]) and resolves host names through
//! [`GuardResolver`]; redirects are never followed (a 3xx is returned as it is, so a public
//! host cannot bounce the call to a private one); proxies from the environment are ignored;
//! connect and total timeouts come from [`OutboundConfig`]; a reply's body is read chunk by
//! chunk and only up to [`OutboundConfig::max_response_bytes`].
//!
//! Errors never carry the URL's path or query: Telegram bot tokens and Slack webhook URLs are
//! secrets in the path.

use std::error::Error as _;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::guard::{GuardResolver, TargetError, TargetPolicy, check_url};

/// Settings of an [`OutboundClient`].
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Bound on a whole exchange (connect, send, reply and its body read); also the connect
    /// timeout.
    pub timeout: Duration,
    /// At most this many bytes of a reply's body are read; the rest is never read.
    pub max_response_bytes: usize,
    /// Which targets may be reached.
    pub policy: TargetPolicy,
}

impl Default for OutboundConfig {
    /// 10 s, 64 KiB, public targets only.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
            policy: TargetPolicy::default(),
        }
    }
}

/// A reply to an outbound call, whatever its status (3xx included: redirects are not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Time from sending the request to the end of the body read.
    pub latency: Duration,
    /// The start of the body: at most `max_response_bytes`, the rest not read.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why an outbound call failed. Messages never include the URL's path or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The target is not allowed by the policy (checked before sending, or at resolution).
    /// Never worth a retry.
    #[error("{0}")]
    Refused(TargetError),
    /// The call did not finish within the timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// No connection could be made (refused, unreachable, TLS handshake, a host name that did
    /// not resolve).
    #[error("could not connect: {0}")]
    Connect(String),
    /// Anything else (the connection dropped mid-exchange, an invalid header, ...).
    #[error("{0}")]
    Other(String),
}

/// The one HTTP client for outbound notifications (see the module docs).
#[derive(Debug, Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    config: OutboundConfig,
}

impl OutboundClient {
    /// Builds the client. Fails only if the TLS backend cannot be set up.
    pub fn new(config: OutboundConfig) -> Result<Self, SendError> {
        let client = reqwest::Client::builder()
            .dns_resolver(GuardResolver::new(config.policy))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent("smm-gateway")
            .build()
            .map_err(|e| SendError::Other(chain(&e.without_url())))?;
        Ok(Self { client, config })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// POSTs `body` to `url` with the given extra headers and content type, and reads the
    /// reply (status, latency, at most `max_response_bytes` of its body).
    ///
    /// The URL is checked first ([`check_url`]); a refused target gets
    /// [`SendError::Refused`] without any traffic. Redirects come back as their 3xx status.
    pub async fn post(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response, SendError> {
        check_url(url, &self.config.policy).map_err(SendError::Refused)?;
        let mut map = HeaderMap::with_capacity(headers.len() + 1);
        map.insert(CONTENT_TYPE, header_value("Content-Type", content_type)?);
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::Other(format!("invalid header name {name:?}")))?;
            let value = header_value(name.as_str(), value)?;
            map.insert(name, value);
        }
        let started = Instant::now();
        let mut reply = self
            .client
            .post(url.clone())
            .headers(map)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(e, url))?;
        let status = reply.status().as_u16();
        let limit = self.config.max_response_bytes;
        let mut body = Vec::with_capacity(
            reply
                .content_length()
                .map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit)),
        );
        while body.len() < limit {
            match reply.chunk().await.map_err(|e| classify(e, url))? {
                Some(chunk) => {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                None => break,
            }
        }
        // Dropping `reply` here closes the connection if the body was not read to its end.
        Ok(Response {
            status,
            latency: started.elapsed(),
            body,
        })
    }
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, SendError> {
    // The value is not quoted in the message: it may be a signature or a token.
    HeaderValue::from_str(value)
        .map_err(|_| SendError::Other(format!("invalid value for header {name}")))
}

/// Turns a reqwest error into a [`SendError`] whose message holds no part of the URL.
fn classify(error: reqwest::Error, url: &Url) -> SendError {
    // A refusal by the resolver travels up as the source of a connect error.
    let mut source = error.source();
    while let Some(err) = source {
        if let Some(target) = err.downcast_ref::<TargetError>() {
            return if target.is_refusal() {
                SendError::Refused(target.clone())
            } else {
                // A failed lookup may well succeed later: not a refusal.
                SendError::Connect(target.to_string())
            };
        }
        source = err.source();
    }
    let error = error.without_url();
    let message = scrub(chain(&error), url);
    if error.is_timeout() {
        SendError::Timeout(message)
    } else if error.is_connect() {
        SendError::Connect(message)
    } else {
        SendError::Other(message)
    }
}

/// An error and its sources, joined with ": ".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = err.source();
    }
    message
}

/// Belt and braces behind `without_url`: removes the URL, its path and its query should any
/// inner error have quoted them.
fn scrub(mut message: String, url: &Url) -> String {
    message = message.replace(url.as_str(), "<url>");
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        message = message.replace(query, "<query>");
    }
    let path = url.path();
    if path.len() > 1 {
        message = message.replace(path, "/<path>");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard resolver sits in the client's connect path: a host name that resolves to
    /// loopback is refused at connect time even when `check_url` is bypassed, and nothing
    /// reaches the listener.
    #[tokio::test]
    async fn the_resolver_refuses_loopback_names_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(300), listener.accept())
                .await
                .is_ok()
        });
        let client = OutboundClient::new(OutboundConfig::default()).unwrap();
        let url: Url = format!("http://localhost:{port}/hook").parse().unwrap();
        let err = client.client.post(url.clone()).send().await.unwrap_err();
        assert_eq!(
            classify(err, &url),
            SendError::Refused(TargetError::PrivateResolution)
        );
        assert!(!accepted.await.unwrap(), "the listener saw a connection");
    }

    #[test]
    fn scrub_removes_path_and_query() {
        let url: Url = "https://api.example.com/bot123:SECRET/sendMessage?k=SECRET2"
            .parse()
            .unwrap();
        let scrubbed = scrub(
            "failed for /bot123:SECRET/sendMessage and k=SECRET2".to_owned(),
            &url,
        );
        assert!(!scrubbed.contains("SECRET"), "{scrubbed}");
    }
}
