//! `/`: revenue, cost, profit and margin; charts per day (SVG drawn here, no script); orders by
//! status; the work lists with the alert conditions on now; the providers.

use std::collections::BTreeSet;

use askama::Template;
use smm_wire::Money;

use super::session::Session;
use super::view::{Chrome, PageResult, day, render, time, time_or_dash};
use crate::app::now_ms;
use crate::ops::notifications::AlertView;
use crate::ops::overview::{Day, Overview};

/// One bar of a chart: its box and its label.
#[derive(Debug, Clone)]
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub class: String,
    pub title: String,
}

/// A bar chart, drawn as SVG rectangles (the numbers are in the table beside it too).
#[derive(Debug, Clone)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    pub legend: Vec<(String, String)>,
    pub first: String,
    pub last: String,
    pub max: String,
}

const W: u32 = 600;
const H: u32 = 160;

fn units(m: Money) -> u64 {
    u64::try_from(m.units()).unwrap_or(0)
}

/// Bars per day: `series` gives each day's values (one bar each, side by side).
fn chart(
    days: &[Day],
    series: &[(&str, &str)],
    values: impl Fn(&Day) -> Vec<(u64, String)>,
) -> Chart {
    let all: Vec<Vec<(u64, String)>> = days.iter().map(&values).collect();
    let max = all
        .iter()
        .flat_map(|v| v.iter().map(|(n, _)| *n))
        .max()
        .unwrap_or(0)
        .max(1);
    let per_day = W / u32::try_from(days.len().max(1)).unwrap_or(1);
    let n = u32::try_from(series.len().max(1)).unwrap_or(1);
    let bar = (per_day.saturating_sub(2) / n).max(1);
    let mut bars = Vec::new();
    for (i, (d, vals)) in days.iter().zip(&all).enumerate() {
        let i = u32::try_from(i).unwrap_or(0);
        for (k, (value, label)) in vals.iter().enumerate() {
            let k = u32::try_from(k).unwrap_or(0);
            let height = u32::try_from(u128::from(*value) * u128::from(H) / u128::from(max))
                .unwrap_or(H)
                .min(H);
            bars.push(Bar {
                x: i * per_day + 1 + k * bar,
                y: H - height,
                width: bar,
                height,
                class: format!("s{}", k % 4),
                title: format!("{}: {label}", day(d.start)),
            });
        }
    }
    Chart {
        width: W,
        height: H,
        bars,
        legend: series
            .iter()
            .enumerate()
            .map(|(k, (name, _))| (format!("s{}", k % 4), (*name).to_owned()))
            .collect(),
        first: days.first().map(|d| day(d.start)).unwrap_or_default(),
        last: days.last().map(|d| day(d.start)).unwrap_or_default(),
        max: String::new(),
    }
}

/// Alert conditions listed on the overview; more are counted.
const ALERTS_SHOWN: usize = 10;

/// An alert condition on now, as the work list shows it.
#[derive(Debug, Clone)]
pub struct AlertLine {
    pub key: String,
    pub since: String,
    /// Its detail on one line.
    pub detail: String,
    /// Where to look: the order or the providers.
    pub href: Option<String>,
}

impl From<AlertView> for AlertLine {
    fn from(a: AlertView) -> Self {
        let href = match a.key.split_once(':') {
            Some((kind, id)) if kind.starts_with("order.") && id.parse::<i64>().is_ok() => {
                Some(format!("/orders/{id}"))
            }
            Some((kind, _)) if kind.starts_with("provider.") => Some("/providers".to_owned()),
            _ => None,
        };
        AlertLine {
            since: time(a.since),
            detail: a
                .detail
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            key: a.key,
            href,
        }
    }
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Page {
    chrome: Chrome,
    o: Overview,
    alerts: Vec<AlertLine>,
    more_alerts: usize,
    money_chart: Chart,
    provider_chart: Chart,
    syncs: Vec<String>,
    stuck_minutes: i64,
}

pub async fn page(session: Session) -> PageResult {
    let ops = session.ops();
    let o = ops.get().overview(session.app(), now_ms()).await?;
    let mut alerts = ops.get().active_alerts().await?;
    let more_alerts = alerts.len().saturating_sub(ALERTS_SHOWN);
    alerts.truncate(ALERTS_SHOWN);
    let mut money_chart = chart(&o.days, &[("revenue", ""), ("profit", "")], |d| {
        vec![
            (units(d.revenue), format!("revenue {}", d.revenue)),
            (
                units(d.profit.max(Money::ZERO)),
                format!("profit {}", d.profit),
            ),
        ]
    });
    money_chart.max = o
        .days
        .iter()
        .map(|d| d.revenue)
        .max()
        .unwrap_or(Money::ZERO)
        .to_string();
    let providers: BTreeSet<String> = o
        .days
        .iter()
        .flat_map(|d| d.orders_by_provider.keys().cloned())
        .collect();
    let names: Vec<(&str, &str)> = providers.iter().map(|p| (p.as_str(), "")).collect();
    let mut provider_chart = chart(&o.days, &names, |d| {
        providers
            .iter()
            .map(|p| {
                let n = d.orders_by_provider.get(p).copied().unwrap_or(0);
                (n, format!("{p} {n} orders"))
            })
            .collect()
    });
    provider_chart.max = o
        .days
        .iter()
        .flat_map(|d| d.orders_by_provider.values().copied())
        .max()
        .unwrap_or(0)
        .to_string();
    let syncs = o
        .providers
        .iter()
        .map(|p| time_or_dash(p.last_sync))
        .collect();
    let page = Page {
        chrome: Chrome::new(&session, "overview"),
        o,
        alerts: alerts.into_iter().map(AlertLine::from).collect(),
        more_alerts,
        money_chart,
        provider_chart,
        syncs,
        stuck_minutes: crate::ops::overview::STUCK_MINUTES,
    };
    Ok(render(&page, &session))
}
