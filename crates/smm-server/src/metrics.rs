//! Prometheus metrics on the admin listener, kept and encoded by `prometheus-client`
//! (OpenMetrics text: counters carry the `_total` suffix, the reply ends with `# EOF`).
//!
//! Counters and histograms are kept in memory by this process; gauges about orders and
//! providers are read at scrape time (from the store and the providers' health) into a registry
//! built for that scrape, so every instance reports the same database-wide order figures and a
//! provider removed by a reload leaves no stale series behind.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;
use smm_store::ForwardState;

use crate::app::{App, now_ms};

/// The `/metrics` content type: OpenMetrics text, which Prometheus negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

// Label sets: short, fixed vocabularies (actions, outcomes, provider names), so the series are
// bounded. Field order is label order.

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionOutcome {
    action: String,
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Action {
    action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamCall {
    provider: String,
    action: String,
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamAction {
    provider: String,
    action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderReason {
    provider: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ForwardStateLabel {
    forward_state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

type Latency<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

/// This process's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<ActionOutcome, Counter>,
    request_duration: Latency<Action>,
    upstream_calls: Family<UpstreamCall, Counter>,
    upstream_call_duration: Latency<UpstreamAction>,
    forward_outcomes: Family<Outcome, Counter>,
    forward_held: Family<ProviderReason, Counter>,
    refunds: Family<Reason, Counter>,
    config_reloads: Family<Outcome, Counter>,
    price_change_alerts: Family<ProviderLabel, Counter>,
    unknown_statuses: Family<ProviderLabel, Counter>,
    webhook_deliveries: Family<Outcome, Counter>,
    webhook_delivery_duration: Histogram,
    alerts_sent: Family<ChannelOutcome, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChannelOutcome {
    channel: String,
    outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency),
            upstream_calls: Family::default(),
            upstream_call_duration: Family::new_with_constructor(latency),
            forward_outcomes: Family::default(),
            forward_held: Family::default(),
            refunds: Family::default(),
            config_reloads: Family::default(),
            price_change_alerts: Family::default(),
            unknown_statuses: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_delivery_duration: latency(),
            alerts_sent: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "smm_requests",
            "API v2 requests by action and outcome",
            metrics.requests.clone(),
        );
        registry.register(
            "smm_request_duration_seconds",
            "API v2 request latency by action",
            metrics.request_duration.clone(),
        );
        registry.register(
            "smm_upstream_calls",
            "Calls to upstream panels by provider, action and outcome (status calls per chunk)",
            metrics.upstream_calls.clone(),
        );
        registry.register(
            "smm_upstream_call_duration_seconds",
            "Upstream call latency by provider and action",
            metrics.upstream_call_duration.clone(),
        );
        registry.register(
            "smm_forward_outcomes",
            "Forwarding attempts by outcome",
            metrics.forward_outcomes.clone(),
        );
        registry.register(
            "smm_forward_held",
            "Orders held queued because of the reseller's own trouble at a provider (rate \
             limit, key, funds, a service disabled), by provider and reason",
            metrics.forward_held.clone(),
        );
        registry.register(
            "smm_refunds",
            "Refunds paid by this process, by reason",
            metrics.refunds.clone(),
        );
        registry.register(
            "smm_config_reloads",
            "Configuration reloads by outcome",
            metrics.config_reloads.clone(),
        );
        registry.register(
            "smm_price_change_alerts",
            "Upstream price changes noticed by catalog syncs, by provider",
            metrics.price_change_alerts.clone(),
        );
        registry.register(
            "smm_unknown_statuses",
            "Upstream statuses outside the v2 vocabulary, by provider",
            metrics.unknown_statuses.clone(),
        );
        registry.register(
            "smm_webhook_deliveries",
            "Customer webhook delivery attempts by outcome (delivered, failed_status: the \
             receiver answered non-2xx, failed_call: no answer)",
            metrics.webhook_deliveries.clone(),
        );
        registry.register(
            "smm_webhook_delivery_duration_seconds",
            "Customer webhook delivery latency (answered attempts)",
            metrics.webhook_delivery_duration.clone(),
        );
        registry.register(
            "smm_alerts_sent",
            "Reseller alerts sent to channels, by channel and outcome",
            metrics.alerts_sent.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// An API v2 request answered: `smm_requests_total` and `smm_request_duration_seconds`.
    pub fn request(&self, action: &str, outcome: &str, elapsed: Duration) {
        self.requests
            .get_or_create(&ActionOutcome {
                action: action.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.request_duration
            .get_or_create(&Action {
                action: action.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// `calls` upstream calls that ended in `outcome`: `smm_upstream_calls_total`.
    pub fn upstream_calls(&self, provider: &str, action: &str, outcome: &str, calls: u64) {
        self.upstream_calls
            .get_or_create(&UpstreamCall {
                provider: provider.to_owned(),
                action: action.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(calls);
    }

    /// How long an upstream call took: `smm_upstream_call_duration_seconds`.
    pub fn upstream_call_duration(&self, provider: &str, action: &str, elapsed: Duration) {
        self.upstream_call_duration
            .get_or_create(&UpstreamAction {
                provider: provider.to_owned(),
                action: action.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// `smm_forward_outcomes_total`.
    pub fn forward_outcome(&self, outcome: &str) {
        self.forward_outcomes
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// `smm_forward_held_total`: an order held queued (not refunded) because of `reason`
    /// at `provider` (`"-"` when no provider was asked).
    pub fn forward_held(&self, provider: &str, reason: &str) {
        self.forward_held
            .get_or_create(&ProviderReason {
                provider: provider.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// `smm_refunds_total`.
    pub fn refund(&self, reason: &str) {
        self.refunds
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// `smm_config_reloads_total`.
    pub fn config_reload(&self, outcome: &str) {
        self.config_reloads
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// `smm_price_change_alerts_total`.
    pub fn price_change_alerts(&self, provider: &str, alerts: u64) {
        self.price_change_alerts
            .get_or_create(&ProviderLabel {
                provider: provider.to_owned(),
            })
            .inc_by(alerts);
    }

    /// `smm_webhook_deliveries_total` and, for answered attempts,
    /// `smm_webhook_delivery_duration_seconds`.
    pub fn webhook_delivery(&self, outcome: &str, latency_ms: i64) {
        self.webhook_deliveries
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
        if outcome != "failed_call" {
            self.webhook_delivery_duration.observe(
                Duration::from_millis(u64::try_from(latency_ms).unwrap_or(0)).as_secs_f64(),
            );
        }
    }

    /// `smm_alerts_sent_total`.
    pub fn alert_sent(&self, channel: &str, outcome: &str) {
        self.alerts_sent
            .get_or_create(&ChannelOutcome {
                channel: channel.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// `smm_unknown_statuses_total`.
    pub fn unknown_status(&self, provider: &str) {
        self.unknown_statuses
            .get_or_create(&ProviderLabel {
                provider: provider.to_owned(),
            })
            .inc();
    }
}

/// The whole `/metrics` reply: this process's counters and histograms, then the gauges read
/// now, then `# EOF`.
pub async fn render(app: &App) -> String {
    let gauges = gauges(app).await;
    let mut process = String::new();
    // Writing into a String cannot fail.
    let _ = encode_registry(&mut process, &app.metrics.registry);
    let mut out = le_last(&process);
    let _ = encode_registry(&mut out, &gauges);
    let _ = encode_eof(&mut out);
    out
}

/// Moves each histogram bucket's `le` label behind the others. `prometheus-client` writes it
/// first; the other Prometheus clients, and the queries and tests written against this
/// endpoint, have it last. Prometheus itself ignores label order.
fn le_last(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let moved = line.split_once("_bucket{le=\"").and_then(|(name, rest)| {
            let (le, rest) = rest.split_once('"')?;
            let (labels, value) = rest.strip_prefix(',')?.rsplit_once('}')?;
            Some(format!("{name}_bucket{{{labels},le=\"{le}\"}}{value}"))
        });
        match moved {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
    }
    out
}

/// The scrape-time gauges, in a registry of their own.
async fn gauges(app: &App) -> Registry {
    let mut registry = Registry::default();
    if let Ok(counts) = app.store.count_by_forward_state().await {
        let orders = Family::<ForwardStateLabel, Gauge>::default();
        for (state, n) in &counts {
            orders
                .get_or_create(&ForwardStateLabel {
                    forward_state: state.as_str().to_owned(),
                })
                .set(*n);
        }
        let ambiguous = counts
            .iter()
            .find(|(s, _)| *s == ForwardState::Ambiguous)
            .map_or(0, |(_, n)| *n);
        registry.register("smm_orders", "Orders by forwarding state", orders);
        let gauge = Gauge::<i64>::default();
        gauge.set(ambiguous);
        registry.register(
            "smm_ambiguous_orders",
            "Orders whose upstream outcome is unknown, awaiting reconciliation",
            gauge,
        );
    }
    if let Ok(counts) = app.store.count_by_status().await {
        let by_status = Family::<StatusLabel, Gauge>::default();
        for (status, n) in &counts {
            by_status
                .get_or_create(&StatusLabel {
                    status: status.clone(),
                })
                .set(*n);
        }
        registry.register("smm_orders_by_status", "Orders by status", by_status);
    }
    let services = Gauge::<i64>::default();
    services.set(i64::try_from(app.catalog().enabled().count()).unwrap_or(i64::MAX));
    registry.register(
        "smm_catalog_services",
        "Services the catalog offers to customers",
        services,
    );
    let counts = app.group_commit().counts();
    let groups = Family::<QueueLabel, Counter>::default();
    let items = Family::<QueueLabel, Counter>::default();
    for (queue, written, held) in [
        ("placements", counts.placement_groups, counts.placements),
        ("outcomes", counts.outcome_groups, counts.outcomes),
    ] {
        let labels = QueueLabel {
            queue: queue.to_owned(),
        };
        groups.get_or_create(&labels).inc_by(written);
        items.get_or_create(&labels).inc_by(held);
    }
    registry.register(
        "smm_group_commits",
        "Transactions written by the group-commit queues (placements, forwarding outcomes)",
        groups,
    );
    registry.register(
        "smm_group_commit_items",
        "Items those transactions held: items / commits is the mean group size",
        items,
    );
    let available = Family::<ProviderLabel, Gauge>::default();
    let cooling_down = Family::<ProviderLabel, Gauge>::default();
    let out_of_funds = Family::<ProviderLabel, Gauge>::default();
    let sync_age = Family::<ProviderLabel, Gauge>::default();
    let balance = Family::<ProviderLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let now = now_ms();
    let runtime = app.runtime();
    for (name, provider) in &runtime.providers {
        let labels = ProviderLabel {
            provider: name.clone(),
        };
        let health = provider.health.view();
        available
            .get_or_create(&labels)
            .set(i64::from(app.provider_available(name)));
        cooling_down
            .get_or_create(&labels)
            .set(i64::from(health.cooling_down));
        out_of_funds
            .get_or_create(&labels)
            .set(i64::from(health.out_of_funds));
        if let Some(at) = app.last_sync(name) {
            sync_age
                .get_or_create(&labels)
                .set((now - at).max(0) / 1000);
        }
        if let Some(value) = app.last_balance(name).and_then(|b| b.to_f64()) {
            balance.get_or_create(&labels).set(value);
        }
    }
    registry.register(
        "smm_provider_available",
        "1 when routing may use the provider (configured, enabled, not cooling down, funded)",
        available,
    );
    registry.register(
        "smm_provider_cooling_down",
        "1 while the provider is in a cooldown after failed calls",
        cooling_down,
    );
    registry.register(
        "smm_provider_out_of_funds",
        "1 while the provider reported insufficient funds",
        out_of_funds,
    );
    registry.register(
        "smm_provider_sync_age_seconds",
        "Seconds since the provider's last good catalog sync",
        sync_age,
    );
    registry.register(
        "smm_provider_balance",
        "The reseller's last known balance at the provider",
        balance,
    );
    scorecard_gauges(app, &mut registry);
    if let Ok(backlog) = app.store.webhook_backlog().await {
        let gauge = |value: i64| {
            let g = Gauge::<i64>::default();
            g.set(value);
            g
        };
        registry.register(
            "smm_webhook_backlog",
            "Customer webhook events recorded and not yet delivered (paused customers' too)",
            gauge(backlog.pending),
        );
        registry.register(
            "smm_webhook_oldest_pending_age_seconds",
            "Age of the oldest event waiting for a customer whose deliveries are not paused",
            gauge(
                backlog
                    .oldest_pending_at
                    .map_or(0, |at| now_ms().saturating_sub(at) / 1000),
            ),
        );
        registry.register(
            "smm_webhook_paused_customers",
            "Customers whose webhook deliveries are paused after failing too long",
            gauge(backlog.paused_customers),
        );
    }
    if let Ok(active) = app.store.active_alerts().await {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(active.len()).unwrap_or(i64::MAX));
        registry.register(
            "smm_alert_conditions_active",
            "Alert conditions on now (provider down, ambiguous orders, stuck orders, ...)",
            g,
        );
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_come_last_and_everything_else_is_untouched() {
        let text = "# TYPE x histogram\n\
                    x_sum{a=\"1\"} 0.5\n\
                    x_bucket{le=\"0.5\",a=\"1\",b=\"}\"} 1\n\
                    x_bucket{le=\"+Inf\"} 1\n";
        assert_eq!(
            le_last(text),
            "# TYPE x histogram\n\
             x_sum{a=\"1\"} 0.5\n\
             x_bucket{a=\"1\",b=\"}\",le=\"0.5\"} 1\n\
             x_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn counters_keep_their_names_and_labels() {
        let metrics = Metrics::default();
        metrics.request("add", "ok", Duration::from_millis(3));
        metrics.upstream_calls("alpha", "status", "ok", 2);
        metrics.upstream_call_duration("alpha", "add", Duration::from_millis(1));
        let mut text = String::new();
        encode_registry(&mut text, &metrics.registry).expect("encode");
        let text = le_last(&text);
        for line in [
            "smm_requests_total{action=\"add\",outcome=\"ok\"} 1",
            "smm_request_duration_seconds_bucket{action=\"add\",le=\"0.005\"} 1",
            "smm_upstream_calls_total{provider=\"alpha\",action=\"status\",outcome=\"ok\"} 2",
            "smm_upstream_call_duration_seconds_bucket{provider=\"alpha\",action=\"add\",le=\"+Inf\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderQuantile {
    provider: String,
    quantile: String,
}

/// The providers' scorecards over `routing.window_days` (the snapshot the routing policies
/// read, refreshed every `routing.refresh_secs`), per provider.
fn scorecard_gauges(app: &App, registry: &mut Registry) {
    type Ratio = Gauge<f64, std::sync::atomic::AtomicU64>;
    let cards = app.scorecards();
    let orders = Family::<ProviderLabel, Gauge>::default();
    let completion = Family::<ProviderLabel, Ratio>::default();
    let partial = Family::<ProviderLabel, Ratio>::default();
    let acceptance = Family::<ProviderLabel, Ratio>::default();
    let start = Family::<ProviderQuantile, Ratio>::default();
    let margin = Family::<ProviderLabel, Ratio>::default();
    let settings = app.settings();
    // Computed exactly, then handed to the float gauge.
    let ratio = |part: i64, whole: i64| {
        (whole > 0)
            .then(|| {
                (rust_decimal::Decimal::from(part) / rust_decimal::Decimal::from(whole)).to_f64()
            })
            .flatten()
    };
    for p in smm_store::by_provider(cards.records.values()) {
        let (provider, n, durations) = (p.provider, p.counts, p.durations);
        let labels = ProviderLabel {
            provider: provider.to_owned(),
        };
        orders.get_or_create(&labels).set(n.orders);
        if let Some(r) = ratio(n.completed, n.finished()) {
            completion.get_or_create(&labels).set(r);
        }
        if let Some(r) = ratio(n.partial, n.finished()) {
            partial.get_or_create(&labels).set(r);
        }
        if let Some(r) = ratio(n.accepted, n.accepted + n.refused + n.ambiguous) {
            acceptance.get_or_create(&labels).set(r);
        }
        for (quantile, value) in [
            ("0.5", durations.start.median()),
            ("0.9", durations.start.p90()),
        ] {
            if let Some(secs) = value.and_then(|ms| rust_decimal::Decimal::new(ms, 3).to_f64()) {
                start
                    .get_or_create(&ProviderQuantile {
                        provider: provider.to_owned(),
                        quantile: quantile.to_owned(),
                    })
                    .set(secs);
            }
        }
        let rate = settings
            .provider(provider)
            .map_or(rust_decimal::Decimal::ONE, |p| p.rate);
        let card = crate::ops::scorecards::Scorecard::from_parts(&n, &durations, rate);
        if let Ok(value) = card.margin.parse::<f64>() {
            margin.get_or_create(&labels).set(value);
        }
    }
    registry.register(
        "smm_provider_scorecard_orders",
        "Orders the provider accepted in the scorecard window (routing.window_days)",
        orders,
    );
    registry.register(
        "smm_provider_completion_ratio",
        "Completed, of the provider's finished orders in the scorecard window",
        completion,
    );
    registry.register(
        "smm_provider_partial_ratio",
        "Partial, of the provider's finished orders in the scorecard window",
        partial,
    );
    registry.register(
        "smm_provider_acceptance_ratio",
        "Forwarding attempts accepted, of those that reached the provider, in the window",
        acceptance,
    );
    registry.register(
        "smm_provider_start_seconds",
        "Acceptance to the first start seen, median and p90, in the scorecard window",
        start,
    );
    registry.register(
        "smm_provider_margin",
        "Revenue less upstream cost, net of refunds, in the reseller's currency, in the window",
        margin,
    );
}
