//! Notifications in the database (issue #14): customers' webhook settings, their event outbox
//! (filled by the triggers of migration 0012) and delivery log, and the reseller's alert
//! conditions and alert outbox. The [`Store`] methods of the same names call these.

use serde_json::json;
use sqlx::Executor;

use super::{Dialect, SqlStore, int_list, settle, sql};
use crate::rows::{
    AdminRow, AlertRow, AttemptRow, AuditRow, CancelRow, CustomerRow, LedgerRow, OrderRow,
    OrderStatusRow, OrderTermsRow, PollRow, RefillRow, SessionRow, WebhookDeliveryRow,
    WebhookEventRow, convert_all,
};
use crate::rules::{customer_target, limit_or_default};
use crate::*;

/// `next_attempt_at` of a paused customer's events: never due until resumed.
const PAUSED_UNTIL: Timestamp = i64::MAX / 2;

/// The customer columns behind [`WebhookSettings`].
type SettingsRow = (Option<String>, Option<i64>, Option<i64>);

#[allow(private_bounds)]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: sqlx::IntoArguments<D>,
    usize: sqlx::ColumnIndex<D::Row>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> bool: sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> &'q str: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<i64>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<String>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'r> CustomerRow: sqlx::FromRow<'r, D::Row>,
    for<'r> LedgerRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderTermsRow: sqlx::FromRow<'r, D::Row>,
    for<'r> OrderStatusRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AttemptRow: sqlx::FromRow<'r, D::Row>,
    for<'r> RefillRow: sqlx::FromRow<'r, D::Row>,
    for<'r> CancelRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AuditRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AdminRow: sqlx::FromRow<'r, D::Row>,
    for<'r> SessionRow: sqlx::FromRow<'r, D::Row>,
    for<'r> PollRow: sqlx::FromRow<'r, D::Row>,
    for<'r> WebhookEventRow: sqlx::FromRow<'r, D::Row>,
    for<'r> WebhookDeliveryRow: sqlx::FromRow<'r, D::Row>,
    for<'r> AlertRow: sqlx::FromRow<'r, D::Row>,
{
    async fn webhook_settings_in(
        conn: &mut D::Connection,
        customer: CustomerId,
    ) -> StoreResult<WebhookSettings> {
        let (url, paused_at, threshold): SettingsRow = sqlx::query_as::<D, SettingsRow>(
            "SELECT webhook_url, webhook_paused_at, low_balance_threshold FROM customers \
             WHERE id = $1",
        )
        .bind(customer.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("customer"))?;
        let pending: i64 = sqlx::query_scalar::<D, i64>(
            "SELECT COUNT(*) FROM webhook_events WHERE customer_id = $1 AND state = 'pending'",
        )
        .bind(customer.0)
        .fetch_one(conn)
        .await?;
        Ok(WebhookSettings {
            customer,
            url,
            paused_at,
            low_balance_threshold: threshold.map(Money::from_units),
            pending,
        })
    }

    pub(crate) async fn webhook_impl(&self, customer: CustomerId) -> StoreResult<WebhookSettings> {
        let mut conn = self.reader.acquire().await?;
        Self::webhook_settings_in(&mut conn, customer).await
    }

    pub(crate) async fn set_webhook_impl(
        &self,
        customer: CustomerId,
        target: Option<(&str, &str)>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings> {
        let mut tx = self.begin().await?;
        let result = async {
            Self::lock_customer(&mut tx, customer).await?;
            let before = Self::webhook_settings_in(&mut tx, customer).await?;
            let (url, secret) = match target {
                Some((url, secret)) => (Some(url), Some(secret)),
                None => (None, None),
            };
            sqlx::query::<D>(
                "UPDATE customers SET webhook_url = $2, webhook_secret = $3, \
                 webhook_paused_at = NULL WHERE id = $1",
            )
            .bind(customer.0)
            .bind(url)
            .bind(secret)
            .execute(&mut *tx)
            .await?;
            if url.is_none() || before.url.is_none() {
                // Removed: what waits is discarded. Set where there was none: anything left
                // waiting from before (recorded as the last one was being removed) is too.
                sqlx::query::<D>(
                    "UPDATE webhook_events SET state = 'discarded', claimed_until = 0 \
                     WHERE customer_id = $1 AND state = 'pending'",
                )
                .bind(customer.0)
                .execute(&mut *tx)
                .await?;
            } else {
                // A new URL: what waits goes there now, with a fresh retry window.
                sqlx::query::<D>(
                    "UPDATE webhook_events SET next_attempt_at = $2, retry_from = $2, \
                     tries = 0 WHERE customer_id = $1 AND state = 'pending'",
                )
                .bind(customer.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            // The URL only: the secret never goes into the audit log.
            Self::write_audit(
                &mut tx,
                actor,
                "customer.webhook",
                &customer_target(customer),
                Some(&json!({ "webhook_url": before.url }).to_string()),
                Some(&json!({ "webhook_url": url, "new_secret": secret.is_some() }).to_string()),
                now,
            )
            .await?;
            Self::webhook_settings_in(&mut tx, customer).await
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn set_low_balance_threshold_impl(
        &self,
        customer: CustomerId,
        threshold: Option<Money>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings> {
        if threshold.is_some_and(|t| !t.is_positive()) {
            return Err(StoreError::Invalid(
                "a low-balance threshold must be more than zero".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let result = async {
            Self::lock_customer(&mut tx, customer).await?;
            let before = Self::webhook_settings_in(&mut tx, customer).await?;
            sqlx::query::<D>("UPDATE customers SET low_balance_threshold = $2 WHERE id = $1")
                .bind(customer.0)
                .bind(threshold.map(Money::units))
                .execute(&mut *tx)
                .await?;
            Self::write_audit(
                &mut tx,
                actor,
                "customer.low_balance",
                &customer_target(customer),
                Some(
                    &json!({ "low_balance_threshold": before.low_balance_threshold.map(|m| m.to_string()) })
                        .to_string(),
                ),
                Some(&json!({ "low_balance_threshold": threshold.map(|m| m.to_string()) }).to_string()),
                now,
            )
            .await?;
            Self::webhook_settings_in(&mut tx, customer).await
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn resume_webhook_impl(
        &self,
        customer: CustomerId,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings> {
        let mut tx = self.begin().await?;
        let result = async {
            Self::lock_customer(&mut tx, customer).await?;
            let before = Self::webhook_settings_in(&mut tx, customer).await?;
            let Some(paused_at) = before.paused_at else {
                return Err(StoreError::InvalidState(
                    "the customer's webhook deliveries are not paused".into(),
                ));
            };
            sqlx::query::<D>("UPDATE customers SET webhook_paused_at = NULL WHERE id = $1")
                .bind(customer.0)
                .execute(&mut *tx)
                .await?;
            // Everything waiting goes out again now, with a fresh retry window.
            sqlx::query::<D>(
                "UPDATE webhook_events SET next_attempt_at = $2, retry_from = $2, tries = 0 \
                 WHERE customer_id = $1 AND state = 'pending'",
            )
            .bind(customer.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Self::write_audit(
                &mut tx,
                actor,
                "customer.webhook_resume",
                &customer_target(customer),
                Some(&json!({ "paused_at": paused_at }).to_string()),
                Some(&json!({ "paused_at": null }).to_string()),
                now,
            )
            .await?;
            Self::webhook_settings_in(&mut tx, customer).await
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn claim_webhook_events_impl(
        &self,
        claim: WebhookClaim<'_>,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<WebhookJob>> {
        let mut tx = self.begin().await?;
        let result = async {
            // The oldest due events (a bounded window), ranked per customer; then the first
            // `per_customer` of each are locked and leased. Window functions cannot take row
            // locks, hence the two steps; the second re-checks what the first read.
            let mut rows = sqlx::query_as::<D, WebhookEventRow>(sql::<D>(concat!(
                "WITH due AS ( \
                     SELECT e.id, e.customer_id FROM webhook_events e \
                     WHERE e.state = 'pending' AND e.next_attempt_at <= $1 \
                     AND e.claimed_until <= $1 \
                     AND e.customer_id IN (SELECT c.id FROM customers c \
                         WHERE c.webhook_url IS NOT NULL AND c.webhook_paused_at IS NULL) \
                     AND e.customer_id NOT IN {int_list:$5} \
                     AND (e.order_id IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_events p \
                         WHERE p.order_id = e.order_id AND p.state = 'pending' \
                         AND p.id < e.id)) \
                     ORDER BY e.id LIMIT 5000), \
                 ranked AS ( \
                     SELECT id AS ranked_id, ROW_NUMBER() OVER ( \
                         PARTITION BY customer_id ORDER BY id) AS place FROM due), \
                 picked AS MATERIALIZED ( \
                     SELECT w.id AS picked_id FROM webhook_events w \
                     WHERE w.id IN (SELECT ranked_id FROM ranked WHERE place <= $4) \
                     AND w.state = 'pending' AND w.claimed_until <= $1 \
                     ORDER BY w.id {limit:$3}{skip_locked}) \
                 UPDATE webhook_events SET claimed_until = $2 FROM picked \
                 WHERE id = picked_id RETURNING ",
                webhook_event_columns!()
            )))
            .bind(now)
            .bind(lease_until)
            .bind(limit_or_default(claim.limit))
            .bind(i64::from(claim.per_customer.max(1)))
            .bind(int_list(claim.skip.iter().map(|c| c.0)))
            .fetch_all(&mut *tx)
            .await?;
            rows.sort_by_key(|row| row.id);
            let customers: Vec<(i64, Option<String>, Option<String>, String)> =
                sqlx::query_as::<D, (i64, Option<String>, Option<String>, String)>(sql::<D>(
                    "SELECT id, webhook_url, webhook_secret, currency FROM customers \
                     WHERE id IN {int_list:$1}",
                ))
                .bind(int_list(rows.iter().map(|row| row.customer_id)))
                .fetch_all(&mut *tx)
                .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.id;
                let event = match WebhookEvent::try_from(row) {
                    Ok(event) => event,
                    // One row this code cannot read (a hand edit, a newer version's kind) must
                    // not stop every customer's deliveries: it is set aside, with the reason.
                    Err(e) => {
                        tracing::error!(event = id, error = %e, "webhook event set aside");
                        sqlx::query::<D>(
                            "UPDATE webhook_events SET state = 'discarded', claimed_until = 0, \
                             last_error = $2 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(format!("set aside, unreadable: {e}"))
                        .execute(&mut *tx)
                        .await?;
                        continue;
                    }
                };
                let Some((_, Some(url), Some(secret), currency)) =
                    customers.iter().find(|(id, ..)| *id == event.customer.0)
                else {
                    continue;
                };
                jobs.push(WebhookJob {
                    event,
                    url: url.clone(),
                    secret: secret.clone(),
                    currency: currency.clone(),
                });
            }
            Ok(jobs)
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn finish_webhook_deliveries_impl(
        &self,
        outcomes: &[DeliveryOutcome],
        alert_channels: &[String],
        now: Timestamp,
    ) -> StoreResult<Vec<CustomerId>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let result = async {
            let mut pausing: Vec<(CustomerId, Option<&str>)> = Vec::new();
            for outcome in outcomes {
                sqlx::query::<D>(
                    "INSERT INTO webhook_deliveries (event_id, customer_id, attempt, at, \
                     http_status, latency_ms, error) \
                     SELECT id, customer_id, attempts + 1, $2, $3, $4, $5 FROM webhook_events \
                     WHERE id = $1",
                )
                .bind(outcome.event)
                .bind(outcome.at)
                .bind(outcome.http_status.map(i64::from))
                .bind(outcome.latency_ms)
                .bind(outcome.error.as_deref())
                .execute(&mut *tx)
                .await?;
                let (state, next_attempt_at, delivered_at, failed) = match outcome.next {
                    DeliveryNext::Delivered => ("delivered", now, Some(outcome.at), 0_i64),
                    DeliveryNext::RetryAt(at) => ("pending", at, None, 1),
                    DeliveryNext::Pause => ("pending", now, None, 1),
                };
                // A discarded event stays discarded; the attempt is in the log all the same.
                sqlx::query::<D>(
                    "UPDATE webhook_events SET state = $2, attempts = attempts + 1, \
                     tries = tries + $6, next_attempt_at = $3, delivered_at = $4, \
                     last_error = $5, claimed_until = 0 WHERE id = $1 AND state = 'pending'",
                )
                .bind(outcome.event)
                .bind(state)
                .bind(next_attempt_at)
                .bind(delivered_at)
                .bind(outcome.error.as_deref())
                .bind(failed)
                .execute(&mut *tx)
                .await?;
                if outcome.next == DeliveryNext::Pause
                    && !pausing.iter().any(|(c, _)| *c == outcome.customer)
                {
                    pausing.push((outcome.customer, outcome.error.as_deref()));
                }
            }
            // Customers' rows in id order, as every multi-row lock here.
            pausing.sort_by_key(|(customer, _)| customer.0);
            let mut paused = Vec::new();
            for (customer, why) in pausing {
                let newly: Option<String> = sqlx::query_scalar::<D, String>(
                    "UPDATE customers SET webhook_paused_at = $2 WHERE id = $1 \
                     AND webhook_paused_at IS NULL AND webhook_url IS NOT NULL \
                     RETURNING name",
                )
                .bind(customer.0)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(name) = newly else { continue };
                // Out of the claims' way until resumed (resuming makes them due at once).
                sqlx::query::<D>(
                    "UPDATE webhook_events SET next_attempt_at = $2 \
                     WHERE customer_id = $1 AND state = 'pending'",
                )
                .bind(customer.0)
                .bind(PAUSED_UNTIL)
                .execute(&mut *tx)
                .await?;
                // The reseller is told in the transaction that pauses: never one without the
                // other.
                let key = format!("webhook.paused:{}:{now}", customer.0);
                let title = format!(
                    "Webhook deliveries to customer {} ({name}) paused",
                    customer.0
                );
                let lines = [
                    format!("last error: {}", why.unwrap_or("none recorded")),
                    "their events are kept; resume with `smm-gateway customers webhook resume \
                     ID`, the admin API or the console"
                        .to_owned(),
                ];
                Self::write_alert(
                    &mut tx,
                    &NewAlert {
                        key: &key,
                        title: &title,
                        lines: &lines,
                        channels: alert_channels,
                    },
                    AlertState::Event,
                    now,
                )
                .await?;
                paused.push(customer);
            }
            Ok(paused)
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn webhook_events_impl(
        &self,
        customer: CustomerId,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<WebhookEvent>> {
        let rows = sqlx::query_as::<D, WebhookEventRow>(concat!(
            "SELECT ",
            webhook_event_columns!(),
            " FROM webhook_events WHERE customer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(customer.0)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    pub(crate) async fn webhook_event_impl(&self, id: i64) -> StoreResult<WebhookEvent> {
        sqlx::query_as::<D, WebhookEventRow>(concat!(
            "SELECT ",
            webhook_event_columns!(),
            " FROM webhook_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound("webhook event"))?
        .try_into()
    }

    pub(crate) async fn webhook_deliveries_impl(
        &self,
        customer: CustomerId,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query_as::<D, WebhookDeliveryRow>(concat!(
            "SELECT ",
            webhook_delivery_columns!(),
            " FROM webhook_deliveries WHERE customer_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(customer.0)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        convert_all(rows)
    }

    pub(crate) async fn resend_webhook_event_impl(
        &self,
        event: i64,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookEvent> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = sqlx::query_as::<D, WebhookEventRow>(sql::<D>(concat!(
                "SELECT ",
                webhook_event_columns!(),
                " FROM webhook_events WHERE id = $1{for_update}"
            )))
            .bind(event)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("webhook event"))?;
            let before = WebhookEvent::try_from(row)?;
            let settings = Self::webhook_settings_in(&mut tx, before.customer).await?;
            if settings.url.is_none() {
                return Err(StoreError::InvalidState(
                    "the customer has no webhook to send it to".into(),
                ));
            }
            // A lease still running stays: the attempt in flight finishes first.
            sqlx::query::<D>(
                "UPDATE webhook_events SET state = 'pending', next_attempt_at = $2, \
                 retry_from = $2, tries = 0, delivered_at = NULL WHERE id = $1",
            )
            .bind(event)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Self::write_audit(
                &mut tx,
                actor,
                "webhook.resend",
                &format!("webhook_event:{event}"),
                Some(&json!({ "state": before.state.as_str() }).to_string()),
                Some(&json!({ "state": "pending" }).to_string()),
                now,
            )
            .await?;
            let row = sqlx::query_as::<D, WebhookEventRow>(concat!(
                "SELECT ",
                webhook_event_columns!(),
                " FROM webhook_events WHERE id = $1"
            ))
            .bind(event)
            .fetch_one(&mut *tx)
            .await?;
            WebhookEvent::try_from(row)
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn prune_notifications_impl(
        &self,
        webhooks_before: Timestamp,
        alerts_before: Timestamp,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let result = async {
            let mut gone = 0_u64;
            // The log first: its rows name the events.
            for (statement, before) in [
                (
                    "DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id \
                     FROM webhook_events WHERE state IN ('delivered', 'discarded') \
                     AND COALESCE(delivered_at, created_at) < $1) RETURNING id",
                    webhooks_before,
                ),
                (
                    "DELETE FROM webhook_events WHERE state IN ('delivered', 'discarded') \
                     AND COALESCE(delivered_at, created_at) < $1 RETURNING id",
                    webhooks_before,
                ),
                (
                    "DELETE FROM alert_outbox WHERE (delivered_at IS NOT NULL \
                     OR gave_up_at IS NOT NULL) AND created_at < $1 RETURNING id",
                    alerts_before,
                ),
            ] {
                let ids: Vec<i64> = sqlx::query_scalar::<D, i64>(statement)
                    .bind(before)
                    .fetch_all(&mut *tx)
                    .await?;
                gone = gone.saturating_add(ids.len() as u64);
            }
            let keys: Vec<String> = sqlx::query_scalar::<D, String>(
                "DELETE FROM alert_conditions WHERE active = 0 AND changed_at < $1 \
                 RETURNING key",
            )
            .bind(alerts_before)
            .fetch_all(&mut *tx)
            .await?;
            Ok(gone.saturating_add(keys.len() as u64))
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn release_notification_claims_impl(&self) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let result = async {
            let events: Vec<i64> = sqlx::query_scalar::<D, i64>(
                "UPDATE webhook_events SET claimed_until = 0 \
                 WHERE state = 'pending' AND claimed_until > 0 RETURNING id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let alerts: Vec<i64> = sqlx::query_scalar::<D, i64>(
                "UPDATE alert_outbox SET claimed_until = 0 \
                 WHERE delivered_at IS NULL AND gave_up_at IS NULL AND claimed_until > 0 \
                 RETURNING id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let (events, alerts) = (events.len() as u64, alerts.len() as u64);
            Ok(events.saturating_add(alerts))
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn webhook_backlog_impl(&self) -> StoreResult<WebhookBacklog> {
        let (pending, oldest, paused): (i64, Option<i64>, i64) =
            sqlx::query_as::<D, (i64, Option<i64>, i64)>(
                "SELECT \
                 (SELECT COUNT(*) FROM webhook_events WHERE state = 'pending'), \
                 (SELECT MIN(e.created_at) FROM webhook_events e WHERE e.state = 'pending' \
                  AND e.customer_id IN (SELECT c.id FROM customers c \
                      WHERE c.webhook_url IS NOT NULL AND c.webhook_paused_at IS NULL)), \
                 (SELECT COUNT(*) FROM customers WHERE webhook_paused_at IS NOT NULL)",
            )
            .fetch_one(&self.reader)
            .await?;
        Ok(WebhookBacklog {
            pending,
            oldest_pending_at: oldest,
            paused_customers: paused,
        })
    }

    // ---- alerts ---------------------------------------------------------------------------

    async fn write_alert(
        conn: &mut D::Connection,
        alert: &NewAlert<'_>,
        state: AlertState,
        now: Timestamp,
    ) -> StoreResult<()> {
        let lines = serde_json::Value::from(alert.lines.to_vec()).to_string();
        for channel in alert.channels {
            sqlx::query::<D>(
                "INSERT INTO alert_outbox (channel, key, state, title, lines, created_at, \
                 next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(channel.as_str())
            .bind(alert.key)
            .bind(state.as_str())
            .bind(alert.title)
            .bind(lines.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn alert_condition_impl(
        &self,
        alert: &NewAlert<'_>,
        active: bool,
        cooldown_ms: i64,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let detail = alert.lines.join("\n");
        let mut tx = self.begin().await?;
        let result = async {
            if active {
                // A row comes back only when this statement turned the condition on.
                let started: Option<(Option<i64>,)> = sqlx::query_as::<D, (Option<i64>,)>(
                    "INSERT INTO alert_conditions (key, active, since, changed_at, detail) \
                     VALUES ($1, 1, $2, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET active = 1, since = excluded.since, \
                     changed_at = excluded.changed_at, detail = excluded.detail \
                     WHERE alert_conditions.active = 0 RETURNING notified_at",
                )
                .bind(alert.key)
                .bind(now)
                .bind(detail.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let due = match started {
                    // It just started: told unless its last alert is within the cooldown.
                    Some((notified_at,)) => {
                        notified_at.is_none_or(|at| now.saturating_sub(at) >= cooldown_ms)
                    }
                    // Already on. A start the cooldown held back is told once the cooldown
                    // has passed and it is still on: held back, never dropped.
                    None => sqlx::query_scalar::<D, String>(sql::<D>(
                        "SELECT key FROM alert_conditions WHERE key = $1 AND active = 1 \
                         AND (notified_at IS NULL OR notified_at < since) \
                         AND (notified_at IS NULL OR notified_at <= $2){for_update}",
                    ))
                    .bind(alert.key)
                    .bind(now.saturating_sub(cooldown_ms))
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some(),
                };
                if !due {
                    return Ok(false);
                }
                sqlx::query::<D>("UPDATE alert_conditions SET notified_at = $2 WHERE key = $1")
                    .bind(alert.key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                Self::write_alert(&mut tx, alert, AlertState::Started, now).await?;
                Ok(true)
            } else {
                let cleared: Option<(i64, Option<i64>)> = sqlx::query_as::<D, (i64, Option<i64>)>(
                    "UPDATE alert_conditions SET active = 0, changed_at = $2 \
                         WHERE key = $1 AND active = 1 RETURNING since, notified_at",
                )
                .bind(alert.key)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                // The clear is told only when the start was.
                match cleared {
                    Some((since, Some(notified_at))) if notified_at >= since => {
                        Self::write_alert(&mut tx, alert, AlertState::Cleared, now).await?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn alert_event_impl(
        &self,
        alert: &NewAlert<'_>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let result = async {
            let first: Option<String> = sqlx::query_scalar::<D, String>(
                "INSERT INTO alert_conditions (key, active, since, changed_at, notified_at, \
                 detail) VALUES ($1, 0, $2, $2, $2, NULL) ON CONFLICT (key) DO NOTHING \
                 RETURNING key",
            )
            .bind(alert.key)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if first.is_none() {
                return Ok(false);
            }
            Self::write_alert(&mut tx, alert, AlertState::Event, now).await?;
            Ok(true)
        }
        .await;
        settle(tx, result).await
    }

    pub(crate) async fn unstarted_orders_impl(
        &self,
        placed_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrderId, ServiceId, Timestamp)>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as::<D, (i64, i64, i64)>(
            "SELECT id, service_id, created_at FROM orders WHERE status = 'Pending' \
             AND forward_state IN ('queued', 'sending', 'sent') AND created_at < $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(placed_before)
        .bind(limit_or_default(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, service, at)| (OrderId(id), ServiceId(service), at))
            .collect())
    }

    pub(crate) async fn oldest_queued_at_impl(&self) -> StoreResult<Option<Timestamp>> {
        Ok(sqlx::query_scalar::<D, Option<i64>>(
            "SELECT MIN(created_at) FROM orders WHERE forward_state = 'queued'",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    pub(crate) async fn active_alerts_impl(&self) -> StoreResult<Vec<AlertCondition>> {
        let rows: Vec<(String, i64, Option<String>, Option<i64>)> =
            sqlx::query_as::<D, (String, i64, Option<String>, Option<i64>)>(
                "SELECT key, since, detail, notified_at FROM alert_conditions WHERE active = 1 \
                 ORDER BY key",
            )
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, since, detail, notified_at)| AlertCondition {
                key,
                since,
                detail,
                notified: notified_at.is_some_and(|at| at >= since),
            })
            .collect())
    }

    pub(crate) async fn claim_alerts_impl(
        &self,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertMessage>> {
        let mut tx = self.begin().await?;
        let result = sqlx::query_as::<D, AlertRow>(sql::<D>(concat!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id AS picked_id FROM alert_outbox \
                 WHERE delivered_at IS NULL AND gave_up_at IS NULL \
                 AND next_attempt_at <= $1 AND claimed_until <= $1 \
                 ORDER BY id {limit:$3}{skip_locked}) \
             UPDATE alert_outbox SET claimed_until = $2 FROM picked WHERE id = picked_id \
             RETURNING ",
            alert_columns!()
        )))
        .bind(now)
        .bind(lease_until)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from);
        let mut rows = settle(tx, result).await?;
        rows.sort_by_key(|row| row.id);
        let mut alerts = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
            let id = row.id;
            match AlertMessage::try_from(row) {
                Ok(alert) => alerts.push(alert),
                Err(e) => {
                    tracing::error!(alert = id, error = %e, "alert set aside");
                    unreadable.push(AlertOutcome {
                        id,
                        error: Some(format!("set aside, unreadable: {e}")),
                        retry_at: None,
                        gave_up: true,
                    });
                }
            }
        }
        // One row this code cannot read must not block the rest: given up, with the reason.
        self.finish_alerts_impl(&unreadable, now).await?;
        Ok(alerts)
    }

    pub(crate) async fn finish_alerts_impl(
        &self,
        outcomes: &[AlertOutcome],
        now: Timestamp,
    ) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let result = async {
            for outcome in outcomes {
                let (delivered_at, gave_up_at, next) = match (&outcome.error, outcome.retry_at) {
                    (None, _) => (Some(now), None, now),
                    (Some(_), Some(at)) if !outcome.gave_up => (None, None, at),
                    (Some(_), _) => (None, Some(now), now),
                };
                sqlx::query::<D>(
                    "UPDATE alert_outbox SET attempts = attempts + 1, delivered_at = $2, \
                     gave_up_at = $3, next_attempt_at = $4, last_error = $5, \
                     claimed_until = 0 WHERE id = $1",
                )
                .bind(outcome.id)
                .bind(delivered_at)
                .bind(gave_up_at)
                .bind(next)
                .bind(outcome.error.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        }
        .await;
        settle(tx, result).await
    }
}
