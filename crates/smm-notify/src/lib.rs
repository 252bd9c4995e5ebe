//! Outbound notifications for smm-gateway: signed webhook delivery over an SSRF-guarded HTTP
//! client, and the reseller's alert channels (JSON webhook, Slack, Telegram, e-mail over SMTP).
//!
//! - [`guard`]: which targets an outbound call may reach ([`guard::check_url`] before sending,
//!   [`guard::GuardResolver`] at connect time, so a host name resolving to a private address is
//!   refused with no DNS-rebinding window).
//! - [`http`]: [`OutboundClient`], the one HTTP client: the guard, no redirects followed, no
//!   proxy from the environment, bounded time and reply size, errors without URLs.
//! - [`signing`]: the `X-Smm-Signature` HMAC-SHA256 scheme of customer webhooks, and how a
//!   receiver verifies it (Python and Rust examples).
//! - [`channels`]: [`Channel`] and [`Alert`]: the reseller's alerts to a JSON webhook, Slack,
//!   Telegram or e-mail.
//!
//! The crate depends on no other smm-* crate. Secrets (webhook secrets, bot tokens, SMTP
//! passwords, Slack URLs) never appear in `Debug`, `Display` or error messages.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smm_notify::{OutboundClient, OutboundConfig, signing};
//!
//! let client = OutboundClient::new(OutboundConfig::default())?;
//! let body = br#"{"event":"order.completed","order":42}"#.to_vec();
//! let headers = signing::signed_headers("whsec_...", 1_700_000_000, "evt_1", "order.completed", &body);
//! let url = "https://customer.example.com/hooks/smm".parse()?;
//! let reply = client.post(&url, &headers, "application/json", body).await?;
//! println!("HTTP {} in {:?}", reply.status, reply.latency);
//! # Ok(())
//! # }
//! ```

pub mod channels;
pub mod guard;
pub mod http;
pub mod signing;

pub use channels::{Alert, AlertState, Channel, ChannelError, EmailSecurity, Secret};
pub use guard::{TargetError, TargetPolicy};
pub use http::{OutboundClient, OutboundConfig, Response, SendError};
