//! Settings of the notifications (issue #14): how customers' webhooks are delivered
//! (`[webhooks]`), and the reseller's alert channels and conditions (`[alerts]`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use smm_routing::ConfigProblem;

/// How customers' status webhooks are delivered. The URLs and secrets are the customers'
/// (set through the admin API, the CLI or the console), not the config's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDeliverySettings {
    /// A delivery that has not been answered in this long has failed.
    pub timeout_secs: u64,
    /// Deliveries in flight at once, all customers together ...
    pub concurrency: usize,
    /// ... and to one customer's receiver: a slow or dead receiver holds up its own events
    /// only.
    pub per_receiver_concurrency: usize,
    /// Events claimed per round.
    pub batch: u32,
    /// Pause between rounds when nothing is due.
    pub interval_ms: u64,
    /// The first retry waits this long; each next one twice as long (with jitter) ...
    pub first_retry_secs: u64,
    /// ... up to this long.
    pub max_retry_secs: u64,
    /// A receiver that still fails an event this long after it was recorded is paused (and
    /// the reseller alerted). At least a day, so a receiver down overnight misses nothing.
    pub retry_window_secs: u64,
    /// Bytes of a receiver's reply read (for the delivery log); the rest is not read.
    pub max_response_bytes: usize,
    /// Deliver to URLs that resolve to loopback, private, link-local or other non-public
    /// addresses. Off: a customer cannot make the gateway call into the reseller's network.
    pub allow_private_targets: bool,
    /// Delivered and discarded events, and their delivery log, are deleted this many days
    /// after they ended (events still waiting are kept).
    pub keep_days: u64,
}

impl Default for WebhookDeliverySettings {
    fn default() -> Self {
        WebhookDeliverySettings {
            timeout_secs: 10,
            concurrency: 32,
            per_receiver_concurrency: 16,
            batch: 200,
            interval_ms: 500,
            first_retry_secs: 10,
            max_retry_secs: 3_600,
            retry_window_secs: 86_400,
            max_response_bytes: 4_096,
            allow_private_targets: false,
            keep_days: 30,
        }
    }
}

/// The reseller's alerts: where they go, and the thresholds of the conditions watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Where alerts go; none means alerts are recorded (the console lists the conditions on)
    /// but sent nowhere.
    pub channels: Vec<AlertChannelSettings>,
    /// How often the conditions are checked.
    pub interval_secs: u64,
    /// A condition that starts again within this long of its last alert is not sent again
    /// (nor is its clear): a flapping provider sends one alert, not dozens.
    pub cooldown_secs: u64,
    /// An order still not started (queued, on its way, or Pending upstream) this long after it
    /// was placed is stuck ...
    pub stuck_after_secs: u64,
    /// ... or after this long for the services named (local service id → seconds).
    pub stuck_after_secs_by_service: BTreeMap<String, u64>,
    /// The oldest order waiting to be forwarded has waited longer than this.
    pub forwarding_lag_secs: u64,
    /// The hour (UTC, 0–23) the daily summary of the day before is sent; none for no summary.
    pub daily_summary_hour: Option<u8>,
    /// A channel call that has not been answered in this long has failed.
    pub timeout_secs: u64,
    /// An alert a channel kept refusing for this long is given up on (it stays in the log).
    pub give_up_after_secs: u64,
    /// Alerts sent or given up, and conditions that are off, are deleted this many days later.
    pub keep_days: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            channels: Vec::new(),
            interval_secs: 30,
            cooldown_secs: 900,
            stuck_after_secs: 3_600,
            stuck_after_secs_by_service: BTreeMap::new(),
            forwarding_lag_secs: 300,
            daily_summary_hour: None,
            timeout_secs: 10,
            give_up_after_secs: 86_400,
            keep_days: 90,
        }
    }
}

/// Which service an alert channel speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertChannelKind {
    /// A JSON `POST` of the alert to `url`.
    Webhook,
    /// A Slack incoming webhook; its URL is the secret.
    Slack,
    /// Telegram's Bot API `sendMessage` to `chat_id`; the bot token is the secret.
    Telegram,
    /// E-mail over SMTP to `to`; the secret is the SMTP password, if any.
    Email,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// STARTTLS after connecting (port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or network.
    Plain,
}

/// One alert channel. Secrets (a Slack webhook URL, a bot token, an SMTP password) come from
/// `secret_env` or `secret_file`, never from the config text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertChannelSettings {
    /// How the reseller names it (alerts are kept per channel).
    pub name: String,
    pub kind: AlertChannelKind,
    /// `webhook`: where to post. `telegram`: the Bot API's base URL (default
    /// `https://api.telegram.org`).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `telegram`: the chat (or channel, `@name`) to write to.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// `email`: the SMTP server.
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_security: SmtpSecurity,
    #[serde(default)]
    pub smtp_username: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
}

impl std::fmt::Debug for AlertChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertChannelSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

impl AlertChannelSettings {
    /// The channel's secret, from exactly one of `secret_env` or `secret_file`, if it has
    /// one. Never logged.
    pub fn secret(&self) -> Result<Option<String>, String> {
        let raw = match (&self.secret_env, &self.secret_file) {
            (Some(_), Some(_)) => return Err("set at most one of secret_env or secret_file".into()),
            (Some(var), None) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            (None, None) => return Ok(None),
        };
        let secret = raw.trim().to_owned();
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Some(secret))
    }

    fn problems(&self, at: &str, problems: &mut Vec<ConfigProblem>) {
        let mut problem = |field: &str, message: String| {
            problems.push(ConfigProblem {
                path: format!("{at}.{field}"),
                message,
            });
        };
        if self.name.trim().is_empty() {
            problem("name", "must not be empty".into());
        }
        let secret = match self.secret() {
            Ok(secret) => secret,
            Err(message) => {
                problem("secret_env", message);
                None
            }
        };
        let url_ok = |url: &str| {
            url::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .is_some()
        };
        match self.kind {
            AlertChannelKind::Webhook => match &self.url {
                Some(url) if url_ok(url) => {}
                Some(_) => problem("url", "not an http(s) URL".into()),
                None => problem("url", "a webhook channel needs a url".into()),
            },
            AlertChannelKind::Slack => {
                if self.secret_env.is_none() && self.secret_file.is_none() {
                    problem(
                        "secret_env",
                        "a slack channel takes its webhook URL (a secret) from secret_env or \
                         secret_file"
                            .into(),
                    );
                } else if secret.as_deref().is_some_and(|s| !url_ok(s)) {
                    problem(
                        "secret_env",
                        "the Slack webhook URL is not an http(s) URL".into(),
                    );
                }
            }
            AlertChannelKind::Telegram => {
                if self.secret_env.is_none() && self.secret_file.is_none() {
                    problem(
                        "secret_env",
                        "a telegram channel takes its bot token from secret_env or secret_file"
                            .into(),
                    );
                }
                if self.chat_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    problem("chat_id", "a telegram channel needs a chat_id".into());
                }
                if let Some(url) = &self.url
                    && !url_ok(url)
                {
                    problem("url", "not an http(s) URL".into());
                }
            }
            AlertChannelKind::Email => {
                if self
                    .smtp_host
                    .as_deref()
                    .is_none_or(|h| h.trim().is_empty())
                {
                    problem("smtp_host", "an email channel needs an smtp_host".into());
                }
                if self.from.as_deref().is_none_or(|f| !f.contains('@')) {
                    problem("from", "an email channel needs a from address".into());
                }
                if self.to.is_empty() || self.to.iter().any(|t| !t.contains('@')) {
                    problem("to", "an email channel needs one or more addresses".into());
                }
            }
        }
    }
}

/// Every problem of the two sections, each with its location.
pub fn problems(webhooks: &WebhookDeliverySettings, alerts: &AlertSettings) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut at_least_one = |path: &str, value: u64| {
        if value == 0 {
            problems.push(ConfigProblem {
                path: path.into(),
                message: "must be at least 1".into(),
            });
        }
    };
    at_least_one("webhooks.timeout_secs", webhooks.timeout_secs);
    at_least_one("webhooks.concurrency", webhooks.concurrency as u64);
    at_least_one(
        "webhooks.per_receiver_concurrency",
        webhooks.per_receiver_concurrency as u64,
    );
    at_least_one("webhooks.batch", u64::from(webhooks.batch));
    at_least_one("webhooks.first_retry_secs", webhooks.first_retry_secs);
    at_least_one("webhooks.retry_window_secs", webhooks.retry_window_secs);
    at_least_one("alerts.interval_secs", alerts.interval_secs);
    at_least_one("alerts.timeout_secs", alerts.timeout_secs);
    at_least_one("alerts.stuck_after_secs", alerts.stuck_after_secs);
    at_least_one("alerts.forwarding_lag_secs", alerts.forwarding_lag_secs);
    at_least_one("alerts.give_up_after_secs", alerts.give_up_after_secs);
    at_least_one("webhooks.keep_days", webhooks.keep_days);
    at_least_one("alerts.keep_days", alerts.keep_days);
    if webhooks.max_retry_secs < webhooks.first_retry_secs {
        problems.push(ConfigProblem {
            path: "webhooks.max_retry_secs".into(),
            message: "must be at least first_retry_secs".into(),
        });
    }
    if alerts.daily_summary_hour.is_some_and(|h| h > 23) {
        problems.push(ConfigProblem {
            path: "alerts.daily_summary_hour".into(),
            message: "an hour of the day, 0 to 23 (UTC)".into(),
        });
    }
    for (service, secs) in &alerts.stuck_after_secs_by_service {
        let at = format!("alerts.stuck_after_secs_by_service.{service}");
        if service.parse::<i64>().is_err() {
            problems.push(ConfigProblem {
                path: at,
                message: "keys are local service ids".into(),
            });
        } else if *secs == 0 {
            problems.push(ConfigProblem {
                path: at,
                message: "must be at least 1".into(),
            });
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, channel) in alerts.channels.iter().enumerate() {
        let at = format!("alerts.channels[{i}]");
        if !names.insert(channel.name.as_str()) {
            problems.push(ConfigProblem {
                path: format!("{at}.name"),
                message: format!("another channel is named {:?}", channel.name),
            });
        }
        channel.problems(&at, &mut problems);
    }
    problems
}
