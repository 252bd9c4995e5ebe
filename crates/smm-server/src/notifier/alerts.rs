//! The reseller's alerts: conditions watched every `alerts.interval_secs`, one-off events
//! (a refused reload, a price that moved, a paused customer webhook, the daily summary), and
//! their delivery to the configured channels from the store's alert outbox.
//!
//! A condition is a key (`provider.down:alpha`, `order.ambiguous:12`). Every instance checks
//! the conditions, and the store lets only the one whose write changed a condition's state
//! send the alert ([`smm_store::Store::alert_condition`]): each condition alerts once when it
//! starts and once when it clears, with `alerts.cooldown_secs` against flapping. One-offs go
//! out once per key ([`smm_store::Store::alert_event`]). The outbox row is written with the
//! state change, so a crash loses no alert; each channel is retried with backoff until
//! `alerts.give_up_after_secs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use smm_notify::{Alert, AlertState, Channel, EmailSecurity, OutboundClient, Secret};
use smm_store::{AlertCondition, AlertOutcome, ForwardState, NewAlert, OrderFilter, Timestamp};

use crate::app::{App, now_ms};
use crate::config::Settings;
use crate::config::notifications::{AlertChannelKind, AlertChannelSettings, SmtpSecurity};

const DAY_MS: i64 = 86_400_000;

/// Orders of one kind (ambiguous, on the attention list) alerted one by one per round; more
/// wait for the next round.
const ORDERS_PER_ROUND: u32 = 50;

/// The channel a configured entry describes, its secret resolved. Never logged.
pub fn channel(settings: &AlertChannelSettings) -> Result<Channel, String> {
    let secret = settings.secret()?;
    let parse = |text: &str| url::Url::parse(text).map_err(|e| format!("not a URL: {e}"));
    Ok(match settings.kind {
        AlertChannelKind::Webhook => Channel::Webhook {
            url: parse(settings.url.as_deref().ok_or("no url")?)?,
        },
        AlertChannelKind::Slack => Channel::Slack {
            webhook_url: parse(&secret.ok_or("no Slack webhook URL (secret_env or secret_file)")?)
                .map_err(|_| "the Slack webhook URL does not parse".to_owned())?,
        },
        AlertChannelKind::Telegram => Channel::Telegram {
            api_base: parse(settings.url.as_deref().unwrap_or(Channel::TELEGRAM_API))?,
            bot_token: Secret::new(secret.ok_or("no bot token (secret_env or secret_file)")?),
            chat_id: settings.chat_id.clone().ok_or("no chat_id")?,
        },
        AlertChannelKind::Email => {
            let security = match settings.smtp_security {
                SmtpSecurity::Starttls => EmailSecurity::StartTls,
                SmtpSecurity::Tls => EmailSecurity::Tls,
                SmtpSecurity::Plain => EmailSecurity::Plain,
            };
            let default_port = match security {
                EmailSecurity::Tls => 465,
                EmailSecurity::StartTls => 587,
                EmailSecurity::Plain => 25,
            };
            Channel::Email {
                host: settings.smtp_host.clone().ok_or("no smtp_host")?,
                port: settings.smtp_port.unwrap_or(default_port),
                security,
                username: settings.smtp_username.clone(),
                password: secret.map(Secret::new),
                from: settings.from.clone().ok_or("no from address")?,
                to: settings.to.clone(),
            }
        }
    })
}

/// The client alerts go out with. The reseller configured the targets, so private addresses
/// (a relay, an internal chat bridge) are allowed.
pub fn client(settings: &Settings) -> Result<OutboundClient, String> {
    OutboundClient::new(smm_notify::OutboundConfig {
        timeout: std::time::Duration::from_secs(settings.alerts.timeout_secs.max(1)),
        max_response_bytes: 4_096,
        policy: smm_notify::TargetPolicy {
            allow_private: true,
        },
    })
    .map_err(|e| e.to_string())
}

fn channel_names(settings: &Settings) -> Vec<String> {
    settings
        .alerts
        .channels
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

/// Turns condition `key` on or off; logs the start and the clear on this instance too.
async fn condition(
    app: &App,
    known: &[AlertCondition],
    key: &str,
    active: bool,
    title: &str,
    lines: &[String],
) {
    // What the round's one read of the conditions already says needs no write (another
    // instance's change since is seen next round).
    let on = known.iter().find(|c| c.key == key);
    if (active && on.is_some_and(|c| c.notified)) || (!active && on.is_none()) {
        return;
    }
    let settings = app.settings();
    let channels = channel_names(&settings);
    let alert = NewAlert {
        key,
        title,
        lines,
        channels: &channels,
    };
    let cooldown =
        i64::try_from(settings.alerts.cooldown_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    match app
        .store
        .alert_condition(&alert, active, cooldown, now_ms())
        .await
    {
        Ok(true) if active => tracing::warn!(key, title, "alert"),
        Ok(true) => tracing::info!(key, "alert cleared"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, key, "cannot record an alert condition"),
    }
}

/// A one-off alert, sent once per `key` whichever instance records it first.
pub async fn event(app: &App, key: &str, title: &str, lines: &[String]) {
    let channels = channel_names(&app.settings());
    let alert = NewAlert {
        key,
        title,
        lines,
        channels: &channels,
    };
    match app.store.alert_event(&alert, now_ms()).await {
        Ok(true) => tracing::warn!(key, title, "alert"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, key, "cannot record an alert"),
    }
}

/// A configuration reload was refused (its problems listed).
pub async fn reload_refused(app: &App, actor: &str, problems: &[String]) {
    let mut lines: Vec<String> = problems.iter().take(10).cloned().collect();
    lines.push(format!(
        "asked by {actor}; the running configuration is unchanged"
    ));
    // Keyed by the problems and the day: instances refusing the same file alert once.
    let digest = hex::encode(&Sha256::digest(problems.join("\n").as_bytes())[..8]);
    let day = now_ms().div_euclid(DAY_MS);
    event(
        app,
        &format!("config.reload_refused:{day}:{digest}"),
        "A configuration reload was refused",
        &lines,
    )
    .await;
}

/// A catalog sync found upstream prices that moved beyond `sync.price_change_alert_percent`.
/// The key is the change itself, so instances syncing the same move alert once.
pub async fn prices_moved(app: &App, provider: &str, changes: &[String]) {
    if changes.is_empty() {
        return;
    }
    let digest = hex::encode(&Sha256::digest(changes.join("\n").as_bytes())[..8]);
    let day = now_ms().div_euclid(DAY_MS);
    event(
        app,
        &format!("price.moved:{provider}:{day}:{digest}"),
        &format!("Upstream prices moved at {provider}"),
        changes,
    )
    .await;
}

/// Checks every condition once.
pub async fn evaluate(app: &App) {
    let now = now_ms();
    // One read of the conditions on serves the whole round.
    let Ok(known) = app.store.active_alerts().await else {
        return;
    };
    providers(app, &known).await;
    services(app, &known).await;
    orders(app, &known, now).await;
    summary(app, now).await;
}

/// Provider conditions come from what this process saw (its calls, its balance checks), and
/// instances see different things: an instance turns a condition on when it sees the trouble,
/// and off only with evidence it is over (an answer, or money seen there, after the condition
/// started); seeing nothing either way is no opinion. Conditions of providers no longer
/// enabled are cleared.
async fn providers(app: &App, known: &[AlertCondition]) {
    let since = |key: &str| known.iter().find(|c| c.key == key).map(|c| c.since);
    let runtime = app.runtime();
    let lines = crate::ops::overview::providers(app);
    let watched: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.enabled && !runtime.retired.contains(&l.name))
        .map(|l| l.name.as_str())
        .collect();
    for line in lines.iter().filter(|l| watched.contains(l.name.as_str())) {
        let name = &line.name;
        let health = runtime.providers.get(name).map(|p| p.health.view());
        let seen_after = |at: Option<i64>, key: &str| matches!((at, since(key)), (Some(at), Some(since)) if at >= since);
        let key = format!("provider.down:{name}");
        let recovered = seen_after(health.and_then(|h| h.last_success_at), &key);
        if line.cooling_down || recovered {
            condition(
                app,
                known,
                &key,
                line.cooling_down,
                &if line.cooling_down {
                    format!("Provider {name} is unreachable: cooling down")
                } else {
                    format!("Provider {name} answers again")
                },
                &[format!(
                    "{} failed calls in a row; routing skips it while it cools down",
                    line.consecutive_failures
                )],
            )
            .await;
        }
        let key = format!("provider.out_of_funds:{name}");
        let funded = seen_after(health.and_then(|h| h.funds_seen_at), &key);
        if line.out_of_funds || funded {
            condition(
                app,
                known,
                &key,
                line.out_of_funds,
                &if line.out_of_funds {
                    format!("Provider {name} refused an order for lack of funds")
                } else {
                    format!("Provider {name} takes orders again")
                },
                &["routing skips it until a balance check shows money there".into()],
            )
            .await;
        }
        // An unknown balance is no opinion.
        if let Some(balance) = line.balance {
            condition(
                app,
                known,
                &format!("provider.low_balance:{name}"),
                line.low_balance,
                &if line.low_balance {
                    format!("Provider {name}: balance below low_balance")
                } else {
                    format!("Provider {name}: balance back above low_balance")
                },
                &[format!("balance {balance} {}", line.currency)],
            )
            .await;
        }
    }
    for c in known {
        let provider = c
            .key
            .split_once(':')
            .and_then(|(kind, name)| kind.starts_with("provider.").then_some(name));
        if let Some(name) = provider
            && !watched.contains(name)
        {
            condition(
                app,
                known,
                &c.key,
                false,
                &format!("Provider {name} is no longer in use"),
                &["it was disabled or removed from the configuration".into()],
            )
            .await;
        }
    }
}

/// Routes that cost more than the service's price: every order through them loses money.
async fn services(app: &App, known: &[AlertCondition]) {
    let catalog = app.catalog();
    let mut losing = BTreeSet::new();
    for service in catalog.iter().filter(|s| s.enabled) {
        if service.markup.allow_below_cost {
            continue;
        }
        for route in &service.routes {
            if route.cost > service.rate {
                let key = format!(
                    "service.below_cost:{}:{}/{}",
                    service.id, route.provider, route.upstream_service
                );
                condition(
                    app,
                    known,
                    &key,
                    true,
                    &format!(
                        "Service {} ({}) costs more than its price through {}",
                        service.id, service.name, route.provider
                    ),
                    &[
                        format!(
                            "cost {} at {}/{}, price {}",
                            route.cost, route.provider, route.upstream_service, service.rate
                        ),
                        "every order served through that route loses money: raise the markup, \
                         put another route first, or disable the service"
                            .into(),
                    ],
                )
                .await;
                losing.insert(key);
            }
        }
    }
    clear_missing(
        app,
        known,
        "service.below_cost:",
        &losing,
        "A service's cost is back under its price",
    )
    .await;
}

/// Clears the conditions under `prefix` that are on but no longer seen.
async fn clear_missing(
    app: &App,
    known: &[AlertCondition],
    prefix: &str,
    seen: &BTreeSet<String>,
    title: &str,
) {
    for c in known {
        if c.key.starts_with(prefix) && !seen.contains(&c.key) {
            condition(
                app,
                known,
                &c.key,
                false,
                title,
                std::slice::from_ref(&c.key),
            )
            .await;
        }
    }
}

async fn orders(app: &App, known: &[AlertCondition], now: Timestamp) {
    let settings = app.settings();
    // Ambiguous orders, one condition each, cleared when a person resolved them.
    let ambiguous = app
        .store
        .list_orders(&OrderFilter {
            forward_state: Some(ForwardState::Ambiguous),
            limit: ORDERS_PER_ROUND,
            ..OrderFilter::default()
        })
        .await
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for order in &ambiguous {
        let key = format!("order.ambiguous:{}", order.id.0);
        condition(
            app,
            known,
            &key,
            true,
            &format!("Order {} is ambiguous: a person must look", order.id.0),
            &[
                format!(
                    "sent to {} and the answer was lost: {}",
                    order.provider.as_deref().unwrap_or("?"),
                    order.forward_error.as_deref().unwrap_or("no detail")
                ),
                "find it upstream and attach it, or cancel it with a refund".into(),
            ],
        )
        .await;
        seen.insert(key);
    }
    if ambiguous.len() < ORDERS_PER_ROUND as usize {
        clear_missing(
            app,
            known,
            "order.ambiguous:",
            &seen,
            "An ambiguous order was resolved",
        )
        .await;
    }
    let attention = app
        .store
        .attention_orders(ORDERS_PER_ROUND)
        .await
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for order in &attention {
        let key = format!("order.attention:{}", order.id.0);
        condition(
            app,
            known,
            &key,
            true,
            &format!("Order {} waits for a refund decision", order.id.0),
            &[order.attention.clone().unwrap_or_default()],
        )
        .await;
        seen.insert(key);
    }
    if attention.len() < ORDERS_PER_ROUND as usize {
        clear_missing(
            app,
            known,
            "order.attention:",
            &seen,
            "An order was settled",
        )
        .await;
    }

    // Stuck orders, per service threshold.
    let alerts = &settings.alerts;
    let by_service: BTreeMap<i64, i64> = alerts
        .stuck_after_secs_by_service
        .iter()
        .filter_map(|(id, secs)| Some((id.parse().ok()?, i64::try_from(*secs).ok()?)))
        .collect();
    let shortest = by_service
        .values()
        .copied()
        .chain([i64::try_from(alerts.stuck_after_secs).unwrap_or(i64::MAX / 1000)])
        .min()
        .unwrap_or(3_600);
    const CANDIDATES: u32 = 5_000;
    let candidates = app
        .store
        .unstarted_orders(
            now.saturating_sub(shortest.saturating_mul(1000)),
            CANDIDATES,
        )
        .await
        .unwrap_or_default();
    // A full list may have left services out: nothing is cleared on it.
    let complete = candidates.len() < CANDIDATES as usize;
    let default_secs = i64::try_from(alerts.stuck_after_secs).unwrap_or(i64::MAX / 1000);
    let mut stuck: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for (order, service, placed) in candidates {
        let secs = by_service.get(&service.0).copied().unwrap_or(default_secs);
        if now.saturating_sub(placed) >= secs.saturating_mul(1000) {
            let entry = stuck.entry(service.0).or_insert((0, order.0));
            entry.0 += 1;
        }
    }
    let mut seen = BTreeSet::new();
    for (service, (count, first)) in &stuck {
        let key = format!("orders.stuck:{service}");
        condition(
            app,
            known,
            &key,
            true,
            &format!("{count} order(s) of service {service} not started"),
            &[format!(
                "the oldest is order {first}; each has waited longer than its threshold"
            )],
        )
        .await;
        seen.insert(key);
    }
    if complete {
        clear_missing(app, known, "orders.stuck:", &seen, "Stuck orders started").await;
    }

    // Forwarding lag: the oldest order waiting to be sent.
    if let Ok(oldest) = app.store.oldest_queued_at().await {
        let lag_ms = oldest.map_or(0, |at| now.saturating_sub(at));
        let limit =
            i64::try_from(alerts.forwarding_lag_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let lagging = lag_ms > limit;
        condition(
            app,
            known,
            "forwarding.lag",
            lagging,
            &if lagging {
                format!(
                    "Forwarding lags: the oldest queued order waits {} s",
                    lag_ms / 1000
                )
            } else {
                "Forwarding keeps pace again".into()
            },
            &[format!("threshold {} s", alerts.forwarding_lag_secs)],
        )
        .await;
    }
}

/// The daily summary of the day before, once, at `alerts.daily_summary_hour` (UTC).
async fn summary(app: &App, now: Timestamp) {
    let settings = app.settings();
    let Some(hour) = settings.alerts.daily_summary_hour else {
        return;
    };
    let today = now - now.rem_euclid(DAY_MS);
    if now - today < i64::from(hour) * 3_600_000 {
        return;
    }
    let ops = crate::ops::Ops {
        store: app.store.as_ref(),
        settings: &settings,
        actor: "notifier",
    };
    let Ok(overview) = ops.overview(app, now).await else {
        return;
    };
    let Some(day) = overview.days.iter().rev().nth(1) else {
        return;
    };
    let date = time::OffsetDateTime::from_unix_timestamp(day.start / 1000)
        .map(|d| d.date().to_string())
        .unwrap_or_default();
    let currency = &overview.currency;
    let mut lines = vec![
        format!("orders: {}", day.orders),
        format!("revenue: {} {currency}", day.revenue),
        format!("refunds: {} {currency}", day.refunds),
        format!("profit: {} {currency}", day.profit),
    ];
    for (provider, n) in &day.orders_by_provider {
        lines.push(format!("  {provider}: {n} orders"));
    }
    let active = app.store.active_alerts().await.unwrap_or_default();
    lines.push(format!(
        "open problems: {} (ambiguous orders {}, refund decisions {}, stuck {})",
        active.len(),
        overview.ambiguous,
        overview.attention,
        overview.stuck
    ));
    for c in active.iter().take(5) {
        lines.push(format!("  {}", c.key));
    }
    event(
        app,
        &format!("summary:{date}"),
        &format!("Daily summary for {date}"),
        &lines,
    )
    .await;
}

/// One sending round: claims due alerts and sends each to its channel. Returns how many were
/// claimed.
pub async fn send_round(app: &Arc<App>, client: &OutboundClient) -> usize {
    let settings = app.settings();
    let now = now_ms();
    // Sent one after another, each bounded by the timeout: the lease covers them all.
    const CLAIM: u32 = 10;
    let lease = now.saturating_add(
        i64::try_from(settings.alerts.timeout_secs.saturating_mul(1000))
            .unwrap_or(60_000)
            .saturating_mul(i64::from(CLAIM) + 1)
            .saturating_add(30_000),
    );
    let claimed = match app.store.claim_alerts(CLAIM, lease, now).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, "cannot claim alerts");
            return 0;
        }
    };
    let count = claimed.len();
    let give_up =
        i64::try_from(settings.alerts.give_up_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut outcomes = Vec::with_capacity(count);
    for message in claimed {
        let configured = settings
            .alerts
            .channels
            .iter()
            .find(|c| c.name == message.channel);
        let result = match configured.map(channel) {
            None => Err("the channel is no longer configured".to_owned()),
            Some(Err(e)) => Err(e),
            Some(Ok(target)) => {
                let alert = Alert {
                    key: message.key.clone(),
                    state: match message.state {
                        smm_store::AlertState::Started => AlertState::Started,
                        smm_store::AlertState::Cleared => AlertState::Cleared,
                        smm_store::AlertState::Event => AlertState::Event,
                    },
                    title: message.title.clone(),
                    lines: message.lines.clone(),
                    at_unix: message.created_at / 1000,
                };
                target.send(client, &alert).await.map_err(|e| e.to_string())
            }
        };
        let at = now_ms();
        app.metrics.alert_sent(
            &message.channel,
            if result.is_ok() { "sent" } else { "failed" },
        );
        outcomes.push(match result {
            Ok(()) => AlertOutcome {
                id: message.id,
                error: None,
                retry_at: None,
                gave_up: false,
            },
            Err(error) => {
                tracing::warn!(channel = %message.channel, %error, "an alert was not sent");
                let gave_up =
                    configured.is_none() || at.saturating_sub(message.created_at) >= give_up;
                // 30 s doubled per attempt, at most 30 minutes.
                let doublings = u32::try_from(message.attempts.clamp(0, 6)).unwrap_or(6);
                let delay = (30_000_i64 << doublings).min(1_800_000);
                AlertOutcome {
                    id: message.id,
                    error: Some(error),
                    retry_at: Some(at.saturating_add(delay)),
                    gave_up,
                }
            }
        });
    }
    if let Err(error) = app.store.finish_alerts(&outcomes, now_ms()).await {
        tracing::warn!(%error, "cannot record sent alerts");
    }
    count
}

/// Sends a test message to every configured channel (`smm-gateway alerts test`): each
/// channel's name and what happened.
pub async fn test_all(settings: &Settings) -> Vec<(String, Result<(), String>)> {
    let client = match client(settings) {
        Ok(client) => client,
        Err(e) => {
            return settings
                .alerts
                .channels
                .iter()
                .map(|c| (c.name.clone(), Err(e.clone())))
                .collect();
        }
    };
    let alert = Alert {
        key: "test".into(),
        state: AlertState::Event,
        title: "smm-gateway test alert".into(),
        lines: vec!["If you can read this, this channel works.".into()],
        at_unix: now_ms() / 1000,
    };
    let mut results = Vec::new();
    for configured in &settings.alerts.channels {
        let result = match channel(configured) {
            Ok(target) => target
                .send(&client, &alert)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        results.push((configured.name.clone(), result));
    }
    results
}
