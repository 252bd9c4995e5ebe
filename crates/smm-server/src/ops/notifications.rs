//! Customers' webhooks and the reseller's alerts, for the CLI, the admin API and the console.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smm_store::{AlertCondition, CustomerId, WebhookDelivery, WebhookEvent, WebhookSettings};
use smm_wire::Money;
use utoipa::ToSchema;

use super::{OpError, OpResult, Ops};
use crate::app::now_ms;

/// A customer's webhook as the admin sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub customer: i64,
    /// Where the customer's events go; `null` for nowhere.
    pub url: Option<String>,
    /// Set when deliveries were paused because the receiver kept failing (ms since the
    /// epoch); events are kept and go out once resumed.
    pub paused_at: Option<i64>,
    /// The balance under which a `balance.low` event is sent, a decimal string.
    pub low_balance_threshold: Option<String>,
    /// Events recorded and not yet delivered.
    pub pending: i64,
}

impl From<&WebhookSettings> for WebhookView {
    fn from(s: &WebhookSettings) -> Self {
        WebhookView {
            customer: s.customer.0,
            url: s.url.clone(),
            paused_at: s.paused_at,
            low_balance_threshold: s.low_balance_threshold.map(|m| m.to_string()),
            pending: s.pending,
        }
    }
}

/// A webhook just set, with its new signing secret: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    pub webhook: WebhookView,
    /// The HMAC-SHA256 key the customer verifies `X-Smm-Signature` with.
    pub secret: String,
}

/// One event of a customer's outbox, with the body receivers get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEventView {
    pub id: i64,
    pub customer: i64,
    /// `order.status`, `refill.status`, `refund.paid` or `balance.low`.
    pub event: String,
    pub order: Option<i64>,
    /// `pending`, `delivered` or `discarded`.
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
    /// The JSON body as posted.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryView {
    pub id: i64,
    pub event: i64,
    pub attempt: i64,
    pub at: i64,
    /// The receiver's HTTP status; `null` when it did not answer.
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

impl From<&WebhookDelivery> for WebhookDeliveryView {
    fn from(d: &WebhookDelivery) -> Self {
        WebhookDeliveryView {
            id: d.id,
            event: d.event,
            attempt: d.attempt,
            at: d.at,
            http_status: d.http_status,
            latency_ms: d.latency_ms,
            error: d.error.clone(),
        }
    }
}

/// An alert condition on now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub key: String,
    /// When it started, ms since the epoch.
    pub since: i64,
    pub detail: Option<String>,
}

impl From<AlertCondition> for AlertView {
    fn from(c: AlertCondition) -> Self {
        AlertView {
            key: c.key,
            since: c.since,
            detail: c.detail,
        }
    }
}

/// The longest webhook URL accepted.
const MAX_URL_LEN: usize = 2_000;

impl Ops<'_> {
    fn event_view(&self, event: &WebhookEvent, currency: &str) -> WebhookEventView {
        let body = crate::notifier::webhooks::payload(event, currency);
        WebhookEventView {
            id: event.id,
            customer: event.customer.0,
            event: event.data.kind().as_str().to_owned(),
            order: event.data.order().map(|o| o.0),
            state: event.state.as_str().to_owned(),
            attempts: event.attempts,
            created_at: event.created_at,
            next_attempt_at: event.next_attempt_at,
            delivered_at: event.delivered_at,
            last_error: event.last_error.clone(),
            payload: serde_json::from_slice(&body).unwrap_or(Value::Null),
        }
    }

    pub async fn webhook(&self, customer: i64) -> OpResult<WebhookView> {
        Ok((&self.store.webhook(CustomerId(customer)).await?).into())
    }

    /// Points the customer's events at `url` with a new signing secret (returned once). The URL
    /// must be http(s), without credentials, and (unless `webhooks.allow_private_targets`)
    /// not name or resolve to a loopback, private or link-local address. Audited.
    pub async fn set_webhook(&self, customer: i64, url: &str) -> OpResult<WebhookWithSecret> {
        let url = url.trim();
        if url.is_empty() || url.len() > MAX_URL_LEN {
            return Err(OpError::Invalid(format!(
                "the webhook URL must be 1 to {MAX_URL_LEN} characters"
            )));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| OpError::Invalid(format!("the webhook URL does not parse: {e}")))?;
        let policy = smm_notify::TargetPolicy {
            allow_private: self.settings.webhooks.allow_private_targets,
        };
        smm_notify::guard::check_url(&parsed, &policy)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        if let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) {
            // A name that resolves to a refused address is refused now; one that does not
            // resolve (yet) is accepted: deliveries check every address again.
            let lookup = smm_notify::guard::resolve(host, port, &policy);
            if let Ok(Err(e)) =
                tokio::time::timeout(std::time::Duration::from_secs(3), lookup).await
                && e.is_refusal()
            {
                return Err(OpError::Invalid(e.to_string()));
            }
        }
        let secret = smm_notify::signing::new_secret();
        let settings = self
            .store
            .set_webhook(
                CustomerId(customer),
                Some((parsed.as_str(), &secret)),
                self.actor,
                now_ms(),
            )
            .await?;
        Ok(WebhookWithSecret {
            webhook: (&settings).into(),
            secret,
        })
    }

    /// Removes the customer's webhook; events not yet delivered are discarded. Audited.
    pub async fn clear_webhook(&self, customer: i64) -> OpResult<WebhookView> {
        Ok((&self
            .store
            .set_webhook(CustomerId(customer), None, self.actor, now_ms())
            .await?)
            .into())
    }

    /// Lifts a pause: the waiting events go out again at once. Audited.
    pub async fn resume_webhook(&self, customer: i64) -> OpResult<WebhookView> {
        Ok((&self
            .store
            .resume_webhook(CustomerId(customer), self.actor, now_ms())
            .await?)
            .into())
    }

    /// Sets (a positive amount) or clears the customer's low-balance threshold. Audited.
    pub async fn set_low_balance(
        &self,
        customer: i64,
        threshold: Option<&str>,
    ) -> OpResult<WebhookView> {
        let threshold = threshold
            .map(|text| {
                let money: Money = text
                    .trim()
                    .parse()
                    .map_err(|e| OpError::Invalid(format!("threshold: {e}")))?;
                if !money.is_positive() {
                    return Err(OpError::Invalid("threshold must be positive".into()));
                }
                Ok(money)
            })
            .transpose()?;
        Ok((&self
            .store
            .set_low_balance_threshold(CustomerId(customer), threshold, self.actor, now_ms())
            .await?)
            .into())
    }

    /// The customer's events, newest first; `before` (an event id) pages backwards.
    pub async fn webhook_events(
        &self,
        customer: i64,
        before: Option<i64>,
        limit: u32,
    ) -> OpResult<Vec<WebhookEventView>> {
        let c = self.store.customer(CustomerId(customer)).await?;
        let events = self
            .store
            .webhook_events(c.id, limit.clamp(1, 500), before)
            .await?;
        Ok(events
            .iter()
            .map(|e| self.event_view(e, &c.currency))
            .collect())
    }

    /// The customer's delivery log, newest first; `before` (an attempt id) pages backwards.
    pub async fn webhook_deliveries(
        &self,
        customer: i64,
        before: Option<i64>,
        limit: u32,
    ) -> OpResult<Vec<WebhookDeliveryView>> {
        self.store.customer(CustomerId(customer)).await?;
        Ok(self
            .store
            .webhook_deliveries(CustomerId(customer), limit.clamp(1, 500), before)
            .await?
            .iter()
            .map(WebhookDeliveryView::from)
            .collect())
    }

    /// One event of any customer's outbox.
    pub async fn webhook_event(&self, event: i64) -> OpResult<WebhookEventView> {
        let found = self.store.webhook_event(event).await?;
        let c = self.store.customer(found.customer).await?;
        Ok(self.event_view(&found, &c.currency))
    }

    /// Sends an event again (under its own id), delivered before or not. Audited.
    pub async fn resend_webhook_event(&self, event: i64) -> OpResult<WebhookEventView> {
        let resent = self
            .store
            .resend_webhook_event(event, self.actor, now_ms())
            .await?;
        let c = self.store.customer(resent.customer).await?;
        Ok(self.event_view(&resent, &c.currency))
    }

    /// The alert conditions on now.
    pub async fn active_alerts(&self) -> OpResult<Vec<AlertView>> {
        Ok(self
            .store
            .active_alerts()
            .await?
            .into_iter()
            .map(AlertView::from)
            .collect())
    }
}
