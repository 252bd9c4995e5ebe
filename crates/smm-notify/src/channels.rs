//! The reseller's alert channels: a JSON webhook, Slack, Telegram and e-mail.
//!
//! A [`Channel`] is built from settings whose secrets the caller has already resolved (from
//! the environment, a file, ...); [`Channel::send`] delivers one [`Alert`]. HTTP channels go
//! through the [`OutboundClient`] the caller passes, with the policy the caller chose (alert
//! targets are the reseller's own, so the server may well allow private addresses for them).
//! E-mail follows the same policy: the SMTP host is resolved through [`guard::resolve`] and
//! the connection is made to an address it kept, with TLS checked against the host name.
//!
//! Secrets never print: [`Secret`] shows `***`, [`Channel::name`] is the kind only, and errors
//! never quote a URL (Slack webhook URLs and Telegram bot tokens are secrets in the path).

use std::fmt;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::guard::{self, TargetError};
use crate::http::{OutboundClient, SendError};

/// Telegram refuses messages longer than this many characters.
const TELEGRAM_MAX_CHARS: usize = 4096;

/// A secret (bot token, SMTP password) that prints as `***` in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Whether an alert's condition began, ended, or is a one-off event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition began (e.g. a provider went into cooldown).
    Started,
    /// The condition ended.
    Cleared,
    /// A one-off event with no end.
    Event,
}

impl AlertState {
    /// The plain-text prefix of [`Alert::text`]: `[ALERT]`, `[RESOLVED]` or `[INFO]`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Started => "[ALERT]",
            Self::Cleared => "[RESOLVED]",
            Self::Event => "[INFO]",
        }
    }
}

/// One alert for the reseller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Deduplication key, e.g. `provider.cooldown:alpha`: a `Started` and its `Cleared` share it.
    pub key: String,
    /// Began, ended, or one-off.
    pub state: AlertState,
    /// One line saying what happened.
    pub title: String,
    /// Details, one per line.
    pub lines: Vec<String>,
    /// When it happened, unix seconds.
    pub at_unix: i64,
}

impl Alert {
    /// Plain text (no emoji, no markup): the state's prefix and the title on the first line,
    /// then the lines.
    pub fn text(&self) -> String {
        let mut text = format!("{} {}", self.state.prefix(), self.title);
        for line in &self.lines {
            text.push('\n');
            text.push_str(line);
        }
        text
    }
}

/// The body a [`Channel::Webhook`] receives.
#[derive(Serialize)]
struct WebhookBody<'a> {
    key: &'a str,
    state: AlertState,
    title: &'a str,
    lines: &'a [String],
    at: i64,
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailSecurity {
    /// No TLS at all (a trusted local relay only): the message and any credentials travel in
    /// clear.
    Plain,
    /// Plain connection upgraded with STARTTLS, which is required (port 587 usually).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465 usually).
    Tls,
}

/// One alert channel, with its secrets already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// POST of JSON `{"key","state","title","lines","at"}`.
    Webhook {
        /// Where to POST.
        url: Url,
    },
    /// A Slack incoming webhook: POST of JSON `{"text": ...}` ([`Alert::text`] with `&`, `<`
    /// and `>` escaped as Slack asks).
    Slack {
        /// The incoming webhook's URL (a secret: its path authorises posting).
        webhook_url: Url,
    },
    /// Telegram Bot API `sendMessage`.
    Telegram {
        /// The Bot API's base URL, normally [`Channel::TELEGRAM_API`].
        api_base: Url,
        /// The bot's token.
        bot_token: Secret,
        /// The chat to post in (a numeric id or `@channelname`).
        chat_id: String,
    },
    /// E-mail over SMTP: subject `[smm-gateway] <title>`, body [`Alert::text`] as plain text.
    /// The host is resolved through the guard with the client's policy and the connection made
    /// to the first address kept; TLS (when asked for) checks the certificate against `host`.
    Email {
        /// The SMTP server's host name or address.
        host: String,
        /// The SMTP server's port.
        port: u16,
        /// How the connection is secured.
        security: EmailSecurity,
        /// Login, when the server wants one.
        username: Option<String>,
        /// Password for `username`.
        password: Option<Secret>,
        /// The sender, `addr@example.com` or `Name <addr@example.com>`.
        from: String,
        /// The recipients.
        to: Vec<String>,
    },
}

/// Why an alert was not delivered. Never quotes a URL, token or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The HTTP call failed (refused target, timeout, connection).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The target answered with a non-2xx status.
    #[error("the channel answered HTTP {status}")]
    Status {
        /// The HTTP status code.
        status: u16,
    },
    /// Telegram answered `ok: false` (or no `ok: true`); its description.
    #[error("Telegram refused the message: {description}")]
    Telegram {
        /// Telegram's `description`.
        description: String,
    },
    /// The channel's settings cannot be used (bad address, bad base URL).
    #[error("invalid channel settings: {0}")]
    Config(String),
    /// The SMTP host is not allowed by the policy (never worth a retry).
    #[error("{0}")]
    Refused(TargetError),
    /// The SMTP exchange failed (including a host name that did not resolve).
    #[error("e-mail not sent: {0}")]
    Email(String),
    /// The SMTP exchange did not finish within the client's timeout.
    #[error("e-mail not sent: timed out")]
    EmailTimeout,
}

#[derive(Deserialize)]
struct TelegramReply {
    ok: Option<bool>,
    description: Option<String>,
}

impl Channel {
    /// The Telegram Bot API's usual base URL.
    pub const TELEGRAM_API: &'static str = "https://api.telegram.org";

    /// The channel's kind for logs: `webhook`, `slack`, `telegram` or `email`. Never a secret.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack { .. } => "slack",
            Self::Telegram { .. } => "telegram",
            Self::Email { .. } => "email",
        }
    }

    /// Delivers `alert`. HTTP channels use `client` (its policy, timeout and body limit);
    /// e-mail uses its policy and timeout (the whole SMTP exchange is bounded by it).
    /// A non-2xx status is [`ChannelError::Status`].
    pub async fn send(&self, client: &OutboundClient, alert: &Alert) -> Result<(), ChannelError> {
        match self {
            Self::Webhook { url } => {
                let body = WebhookBody {
                    key: &alert.key,
                    state: alert.state,
                    title: &alert.title,
                    lines: &alert.lines,
                    at: alert.at_unix,
                };
                post_json(client, url, &body).await
            }
            Self::Slack { webhook_url } => {
                let body = serde_json::json!({ "text": slack_escape(&alert.text()) });
                post_json(client, webhook_url, &body).await
            }
            Self::Telegram {
                api_base,
                bot_token,
                chat_id,
            } => send_telegram(client, api_base, bot_token, chat_id, alert).await,
            Self::Email {
                host,
                port,
                security,
                username,
                password,
                from,
                to,
            } => {
                let message = email_message(from, to, alert)?;
                let timeout = client.config().timeout;
                let exchange = send_email(
                    client,
                    host,
                    *port,
                    *security,
                    username.as_deref(),
                    password.as_ref(),
                    message,
                );
                tokio::time::timeout(timeout, exchange)
                    .await
                    .map_err(|_| ChannelError::EmailTimeout)?
            }
        }
    }
}

/// Slack reads `<...>` as links and mentions and `&` as the start of an entity; its docs ask
/// for these three to be escaped in text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn post_json(
    client: &OutboundClient,
    url: &Url,
    body: &impl Serialize,
) -> Result<(), ChannelError> {
    let body = serde_json::to_vec(body).map_err(|e| ChannelError::Config(e.to_string()))?;
    let reply = client.post(url, &[], "application/json", body).await?;
    if reply.is_success() {
        Ok(())
    } else {
        Err(ChannelError::Status {
            status: reply.status,
        })
    }
}

async fn send_telegram(
    client: &OutboundClient,
    api_base: &Url,
    bot_token: &Secret,
    chat_id: &str,
    alert: &Alert,
) -> Result<(), ChannelError> {
    let url = format!(
        "{}/bot{}/sendMessage",
        api_base.as_str().trim_end_matches('/'),
        bot_token.expose()
    );
    // The message names neither the base URL with the token nor the token.
    let url = Url::parse(&url)
        .map_err(|_| ChannelError::Config("Telegram base URL or bot token is invalid".into()))?;
    let text: String = alert.text().chars().take(TELEGRAM_MAX_CHARS).collect();
    let body = serde_json::json!({
        "chat_id": chat_id,
        "text": text,
        "disable_web_page_preview": true,
    });
    let body = serde_json::to_vec(&body).map_err(|e| ChannelError::Config(e.to_string()))?;
    let reply = client.post(&url, &[], "application/json", body).await?;
    // Telegram answers `{"ok":false,"description":...}` with a 4xx too; its description says
    // more than the status.
    match serde_json::from_slice::<TelegramReply>(&reply.body) {
        Ok(TelegramReply { ok: Some(true), .. }) if reply.is_success() => Ok(()),
        Ok(TelegramReply {
            ok: Some(false),
            description,
        }) => Err(ChannelError::Telegram {
            description: description
                .map(|d| d.chars().take(300).collect())
                .unwrap_or_else(|| "no description".to_owned()),
        }),
        _ if !reply.is_success() => Err(ChannelError::Status {
            status: reply.status,
        }),
        _ => Err(ChannelError::Telegram {
            description: "the reply did not say ok: true".to_owned(),
        }),
    }
}

fn email_message(from: &str, to: &[String], alert: &Alert) -> Result<Message, ChannelError> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| ChannelError::Config(format!("e-mail sender {from:?}: {e}")))?;
    if to.is_empty() {
        return Err(ChannelError::Config("e-mail has no recipient".to_owned()));
    }
    let mut builder = Message::builder()
        .from(from)
        .subject(format!("[smm-gateway] {}", alert.title))
        .header(ContentType::TEXT_PLAIN);
    for recipient in to {
        let mailbox: Mailbox = recipient
            .parse()
            .map_err(|e| ChannelError::Config(format!("e-mail recipient {recipient:?}: {e}")))?;
        builder = builder.to(mailbox);
    }
    builder
        .body(alert.text())
        .map_err(|e| ChannelError::Config(format!("e-mail message: {e}")))
}

async fn send_email(
    client: &OutboundClient,
    host: &str,
    port: u16,
    security: EmailSecurity,
    username: Option<&str>,
    password: Option<&Secret>,
    message: Message,
) -> Result<(), ChannelError> {
    // Resolve once through the guard and connect to an address it kept; TLS still checks the
    // certificate against `host`.
    let policy = client.config().policy;
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    if !policy.allow_private && guard::is_local_name(host_only) {
        return Err(ChannelError::Refused(TargetError::PrivateAddress));
    }
    let addrs = guard::resolve(host_only, port, &policy)
        .await
        .map_err(|e| {
            if e.is_refusal() {
                ChannelError::Refused(e)
            } else {
                ChannelError::Email(e.to_string())
            }
        })?;
    let Some(addr) = addrs.first() else {
        return Err(ChannelError::Refused(TargetError::PrivateResolution));
    };
    let tls = match security {
        EmailSecurity::Plain => Tls::None,
        EmailSecurity::StartTls => Tls::Required(tls_parameters(host_only)?),
        EmailSecurity::Tls => Tls::Wrapper(tls_parameters(host_only)?),
    };
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .timeout(Some(client.config().timeout))
            .tls(tls);
    if let Some(username) = username {
        let password = password.map(|p| p.expose().to_owned()).unwrap_or_default();
        transport = transport.credentials(Credentials::new(username.to_owned(), password));
    }
    transport
        .build()
        .send(message)
        .await
        .map(drop)
        .map_err(|e| ChannelError::Email(e.to_string()))
}

fn tls_parameters(host: &str) -> Result<TlsParameters, ChannelError> {
    TlsParameters::new(host.to_owned())
        .map_err(|e| ChannelError::Config(format!("TLS for the SMTP host: {e}")))
}
