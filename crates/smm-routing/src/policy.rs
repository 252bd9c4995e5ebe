//! Route choice by policy (issue #15): which of a service's routes an order tries first.
//!
//! * [`Policy::Priority`]: the configured order (the behaviour before policies existed).
//! * [`Policy::Cheapest`]: by cost, cheapest first; ties keep the configured order.
//! * [`Policy::Quality`]: the cheapest route whose scorecard meets the service's
//!   [`QualityTargets`], with a share of orders ([`RoutingSettings::explore_percent`]) sent to
//!   a route that has too little data or was demoted, so the gateway keeps learning; a route
//!   whose recent orders degrade ([`RecentWindow`]) is demoted, and promoted back once its
//!   recent orders are good again.
//!
//! Whatever the policy, the rest of the routes follow as fail-over in the same ranking, and a
//! definitive refusal moves to the next exactly as before. The customer's price never depends
//! on the route chosen: it is set by the service's first configured route.
//!
//! The choice is pure: the caller passes each route's [`RouteEvidence`] (from the store's
//! scorecards) and whether the order explores ([`explores`]: decided by the order id, spread
//! by a hash, so the same order always gets the same answer). Every [`Choice`] carries its
//! explanation, kept with the attempt.

use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How a service's routes are ranked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The configured order.
    #[default]
    Priority,
    /// Cheapest first.
    Cheapest,
    /// The cheapest route meeting the targets; exploration, demotion, promotion.
    Quality,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Priority => "priority",
            Policy::Cheapest => "cheapest",
            Policy::Quality => "quality",
        }
    }
}

/// What the quality policy asks of a route, over [`RoutingSettings::window_days`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityTargets {
    /// Share of finished orders (Completed, Partial, Canceled) that completed, in percent.
    /// Default 90.
    pub completion_percent: Decimal,
    /// Median time from the upstream's acceptance to the first start seen, in seconds
    /// (decimals allowed). Default 3600 (an hour).
    pub start_secs: Decimal,
    /// Share of finished refills that completed, in percent; judged once
    /// [`RoutingSettings::min_refills`] have finished. Default 80.
    pub refill_success_percent: Decimal,
}

impl Default for QualityTargets {
    fn default() -> Self {
        QualityTargets {
            completion_percent: Decimal::from(90),
            start_secs: Decimal::from(3600),
            refill_success_percent: Decimal::from(80),
        }
    }
}

impl QualityTargets {
    /// These targets with the fields `overrides` sets replaced.
    pub fn with(&self, overrides: &TargetOverrides) -> QualityTargets {
        QualityTargets {
            completion_percent: overrides
                .completion_percent
                .unwrap_or(self.completion_percent),
            start_secs: overrides.start_secs.unwrap_or(self.start_secs),
            refill_success_percent: overrides
                .refill_success_percent
                .unwrap_or(self.refill_success_percent),
        }
    }

    /// The start target in milliseconds (rounded down; never negative).
    pub fn start_ms(&self) -> i64 {
        self.start_secs
            .checked_mul(Decimal::from(1000))
            .and_then(|ms| i64::try_from(ms.trunc()).ok())
            .unwrap_or(i64::MAX)
            .max(0)
    }
}

/// A service's own targets: each field set replaces the default's (`[routing.targets]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOverrides {
    pub completion_percent: Option<Decimal>,
    pub start_secs: Option<Decimal>,
    pub refill_success_percent: Option<Decimal>,
}

/// `[routing]`: the default policy and the quality policy's knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    /// The policy of services that set none. Default `priority`.
    pub policy: Policy,
    /// Quality: the share of orders, in percent, sent to a route with too little data or a
    /// demoted one (to learn and to notice a recovery). Default 5.
    pub explore_percent: Decimal,
    /// Quality: finished orders a route needs in the window before its scorecard is trusted.
    /// Default 20.
    pub min_finished: u32,
    /// Quality: the days of the scorecard judged against the targets. Default 7.
    pub window_days: u32,
    /// Quality: the recent window, a route's last attempts that reached it. Default 20.
    pub recent: u32,
    /// Quality: a route is demoted while more than this share (percent) of its judged recent
    /// attempts went bad. Default 30.
    pub demote_bad_percent: Decimal,
    /// Quality: judged recent attempts needed before a route can be demoted. Default 10.
    pub demote_min_judged: u32,
    /// Quality: finished refills needed before the refill target is judged. Default 5.
    pub min_refills: u32,
    /// How often the scorecards the policies read are refreshed, in seconds. Default 30.
    pub refresh_secs: u64,
    /// The default targets.
    pub targets: QualityTargets,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            policy: Policy::Priority,
            explore_percent: Decimal::from(5),
            min_finished: 20,
            window_days: 7,
            recent: 20,
            demote_bad_percent: Decimal::from(30),
            demote_min_judged: 10,
            min_refills: 5,
            refresh_secs: 30,
            targets: QualityTargets::default(),
        }
    }
}

/// What became of one of a route's recent attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecentOutcome {
    /// Refused, ambiguous, Partial, Canceled, or not started within the start target.
    Bad,
    /// Started within the start target (and not Partial or Canceled).
    Good,
    /// Too early to tell: accepted, not started, younger than the start target.
    Open,
}

/// A route's recent window: how many judged attempts went bad.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentWindow {
    pub judged: u32,
    pub bad: u32,
}

impl RecentWindow {
    pub fn from_outcomes(outcomes: impl IntoIterator<Item = RecentOutcome>) -> RecentWindow {
        let mut window = RecentWindow::default();
        for outcome in outcomes {
            match outcome {
                RecentOutcome::Bad => {
                    window.judged += 1;
                    window.bad += 1;
                }
                RecentOutcome::Good => window.judged += 1,
                RecentOutcome::Open => {}
            }
        }
        window
    }
}

/// What the quality policy knows of a route: its scorecard over the window and its recent
/// window. `None` fields mean "no data".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteEvidence {
    /// Finished orders (Completed, Partial, Canceled) in the window.
    pub finished: i64,
    pub completed: i64,
    /// Median time to start, in milliseconds.
    pub median_start_ms: Option<i64>,
    /// Refills finished (done + failed) and done.
    pub refills_finished: i64,
    pub refills_done: i64,
    pub recent: RecentWindow,
}

/// One route as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub provider: String,
    pub upstream_service: String,
    /// Cost in the reseller's currency (per 1000, or per order for flat-priced types).
    pub cost: Decimal,
}

/// The policy's ranking of the candidates and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub policy: Policy,
    /// Indexes into the candidates, best first; every candidate appears once.
    pub order: Vec<usize>,
    /// Why the first route was chosen (one line, for the order page and the attempt).
    pub why: String,
    /// The order was sent to learn about a route.
    pub explored: bool,
}

/// How the quality policy judges a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Meets every target.
    Qualified,
    /// Too few finished orders in the window to judge.
    Unproven { finished: i64 },
    /// Misses a target (the reasons, in words).
    Failing(Vec<String>),
    /// Its recent attempts went bad: `bad` of `judged`.
    Demoted { bad: u32, judged: u32 },
}

impl Standing {
    fn rank(&self) -> u8 {
        match self {
            Standing::Qualified => 0,
            Standing::Unproven { .. } => 1,
            Standing::Failing(_) => 2,
            Standing::Demoted { .. } => 3,
        }
    }

    /// A short description: `qualified`, `unproven (3 of 20 finished)`, ...
    pub fn describe(&self, settings: &RoutingSettings) -> String {
        match self {
            Standing::Qualified => "meets the targets".to_owned(),
            Standing::Unproven { finished } => format!(
                "too little data ({finished} of {} finished orders)",
                settings.min_finished
            ),
            Standing::Failing(reasons) => format!("misses {}", reasons.join(", ")),
            Standing::Demoted { bad, judged } => {
                format!("demoted ({bad} of its last {judged} judged attempts bad)")
            }
        }
    }
}

fn percent(part: i64, whole: i64) -> Decimal {
    if whole <= 0 {
        return Decimal::ZERO;
    }
    (Decimal::from(part) * Decimal::from(100) / Decimal::from(whole)).round_dp(1)
}

/// How the quality policy judges a route with `evidence` against `targets`:
///
/// 1. with enough finished orders in the window, a route missing a target is `Failing` (its
///    record, not a passing incident; it gets orders again once the window forgets enough of
///    them to make it `Unproven`);
/// 2. otherwise a route whose recent window went bad is `Demoted` (exploring orders probe it,
///    so a recovery is seen and it is promoted back);
/// 3. otherwise a route with too few finished orders is `Unproven`, and one with enough is
///    `Qualified`.
pub fn standing(
    evidence: &RouteEvidence,
    targets: &QualityTargets,
    settings: &RoutingSettings,
) -> Standing {
    let proven = evidence.finished >= i64::from(settings.min_finished);
    if proven {
        let misses = misses(evidence, targets, settings);
        if !misses.is_empty() {
            return Standing::Failing(misses);
        }
    } else if let Some(miss) = certain_miss(evidence, targets, settings) {
        // Still learning, but already sure to miss: no need to spend the rest of its orders.
        return Standing::Failing(vec![miss]);
    }
    let recent = evidence.recent;
    if recent.judged >= settings.demote_min_judged.max(1)
        && Decimal::from(recent.bad) * Decimal::from(100)
            > settings.demote_bad_percent * Decimal::from(recent.judged)
    {
        return Standing::Demoted {
            bad: recent.bad,
            judged: recent.judged,
        };
    }
    if proven {
        Standing::Qualified
    } else {
        Standing::Unproven {
            finished: evidence.finished,
        }
    }
}

/// For a route with fewer than `min_finished` finished orders: the completion target it will
/// miss even if every order it still needs completes, in words.
fn certain_miss(
    evidence: &RouteEvidence,
    targets: &QualityTargets,
    settings: &RoutingSettings,
) -> Option<String> {
    let needed = i64::from(settings.min_finished);
    let best_case = evidence.completed + (needed - evidence.finished).max(0);
    (Decimal::from(best_case) * Decimal::from(100)
        < targets.completion_percent * Decimal::from(needed))
    .then(|| {
        format!(
            "completion {} % of {} finished, below {} % even if the next {} complete",
            percent(evidence.completed, evidence.finished),
            evidence.finished,
            targets.completion_percent,
            (needed - evidence.finished).max(0)
        )
    })
}

/// The targets `evidence` misses, in words.
fn misses(
    evidence: &RouteEvidence,
    targets: &QualityTargets,
    settings: &RoutingSettings,
) -> Vec<String> {
    let mut misses = Vec::new();
    // Compared exactly (part × 100 < target × whole); the figures in the words are rounded.
    let below = |part: i64, whole: i64, target: Decimal| {
        Decimal::from(part) * Decimal::from(100) < target * Decimal::from(whole)
    };
    if below(
        evidence.completed,
        evidence.finished,
        targets.completion_percent,
    ) {
        misses.push(format!(
            "completion {} % < {} %",
            percent(evidence.completed, evidence.finished),
            targets.completion_percent
        ));
    }
    match evidence.median_start_ms {
        Some(ms) if ms > targets.start_ms() => misses.push(format!(
            "median start {} s > {} s",
            Decimal::new(ms, 3).normalize(),
            targets.start_secs.normalize()
        )),
        _ => {}
    }
    if evidence.refills_finished >= i64::from(settings.min_refills.max(1))
        && below(
            evidence.refills_done,
            evidence.refills_finished,
            targets.refill_success_percent,
        )
    {
        misses.push(format!(
            "refill success {} % < {} %",
            percent(evidence.refills_done, evidence.refills_finished),
            targets.refill_success_percent
        ));
    }
    misses
}

/// Whether the order `ticket` (its id) is one of the `percent` % that explore, and if so a
/// draw that picks which learning route it explores: its id is spread by a multiplicative hash
/// (so consecutive orders do not explore in runs), then compared in hundredths of a percent.
pub fn explores(ticket: u64, percent: Decimal) -> Option<u64> {
    let share: u64 = percent
        .checked_mul(Decimal::from(100))
        .and_then(|s| u64::try_from(s.trunc()).ok())
        .unwrap_or(0);
    let spread = ticket.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    (spread % 10_000 < share).then_some(spread / 10_000)
}

/// Ranks `candidates` (in configured order) by `policy`.
///
/// `evidence(i)` is what is known of candidate `i` (quality only); `explore`: the order is one
/// of those that explore, with its draw ([`explores`]).
pub fn choose(
    policy: Policy,
    candidates: &[Candidate],
    evidence: impl Fn(usize) -> RouteEvidence,
    targets: &QualityTargets,
    settings: &RoutingSettings,
    explore: Option<u64>,
) -> Choice {
    let by_cost = |order: &mut Vec<usize>| {
        // Stable: equal costs keep the configured order.
        order.sort_by(|a, b| candidates[*a].cost.cmp(&candidates[*b].cost));
    };
    let name = |i: usize| {
        format!(
            "{}/{}",
            candidates[i].provider, candidates[i].upstream_service
        )
    };
    match policy {
        Policy::Priority => Choice {
            policy,
            order: (0..candidates.len()).collect(),
            why: match candidates.first() {
                Some(_) => format!("priority: {} is the first route available", name(0)),
                None => "priority: no route available".to_owned(),
            },
            explored: false,
        },
        Policy::Cheapest => {
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            by_cost(&mut order);
            let why = match order.first() {
                Some(&first) => {
                    let mut why = format!(
                        "cheapest: {} costs {}",
                        name(first),
                        candidates[first].cost.normalize()
                    );
                    if let Some(&next) = order.get(1) {
                        let _ = write!(
                            why,
                            " (next: {} at {})",
                            name(next),
                            candidates[next].cost.normalize()
                        );
                    }
                    why
                }
                None => "cheapest: no route available".to_owned(),
            };
            Choice {
                policy,
                order,
                why,
                explored: false,
            }
        }
        Policy::Quality => {
            let standings: Vec<Standing> = (0..candidates.len())
                .map(|i| standing(&evidence(i), targets, settings))
                .collect();
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            by_cost(&mut order);
            order.sort_by_key(|i| standings[*i].rank());
            // To explore: one of the routes still learning (too little data) or demoted, by
            // the order's draw, so each gets its share and none is starved by another.
            let learning: Vec<usize> = order
                .iter()
                .copied()
                .filter(|i| {
                    matches!(
                        standings[*i],
                        Standing::Unproven { .. } | Standing::Demoted { .. }
                    )
                })
                .collect();
            let learn = explore.and_then(|draw| {
                let count = u64::try_from(learning.len()).ok().filter(|n| *n > 0)?;
                learning.get(usize::try_from(draw % count).ok()?).copied()
            });
            let Some(&best) = order.first() else {
                return Choice {
                    policy,
                    order,
                    why: "quality: no route available".to_owned(),
                    explored: false,
                };
            };
            if let Some(learn) = learn
                && learn != best
            {
                order.retain(|i| *i != learn);
                order.insert(0, learn);
                let why = format!(
                    "quality: exploring {} ({}; {} % of orders explore); best otherwise {} ({})",
                    name(learn),
                    standings[learn].describe(settings),
                    settings.explore_percent.normalize(),
                    name(best),
                    standings[best].describe(settings),
                );
                return Choice {
                    policy,
                    order,
                    why,
                    explored: true,
                };
            }
            let mut why = match &standings[best] {
                Standing::Qualified => format!(
                    "quality: {} is the cheapest route meeting the targets (cost {})",
                    name(best),
                    candidates[best].cost.normalize()
                ),
                Standing::Unproven { .. } => format!(
                    "quality: no route meets the targets; {} is the cheapest still learning ({})",
                    name(best),
                    standings[best].describe(settings)
                ),
                other => format!(
                    "quality: no route meets the targets; {} is the cheapest left ({})",
                    name(best),
                    other.describe(settings)
                ),
            };
            let passed: Vec<String> = order
                .iter()
                .copied()
                .filter(|i| *i != best && candidates[*i].cost < candidates[best].cost)
                .map(|i| format!("{}: {}", name(i), standings[i].describe(settings)))
                .collect();
            if !passed.is_empty() {
                let _ = write!(why, "; cheaper: {}", passed.join("; "));
            }
            Choice {
                policy,
                order,
                why,
                explored: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate> {
        [("c", "3.0"), ("a", "1.0"), ("b", "2.0")]
            .into_iter()
            .map(|(p, cost)| Candidate {
                provider: p.into(),
                upstream_service: "1".into(),
                cost: cost.parse().expect("decimal"),
            })
            .collect()
    }

    fn good() -> RouteEvidence {
        RouteEvidence {
            finished: 100,
            completed: 97,
            median_start_ms: Some(600_000),
            refills_finished: 10,
            refills_done: 9,
            recent: RecentWindow { judged: 20, bad: 1 },
        }
    }

    fn poor() -> RouteEvidence {
        RouteEvidence {
            completed: 60,
            ..good()
        }
    }

    fn names(c: &[Candidate], choice: &Choice) -> Vec<String> {
        choice
            .order
            .iter()
            .map(|i| c[*i].provider.clone())
            .collect()
    }

    #[test]
    fn priority_keeps_the_configured_order_and_cheapest_sorts_by_cost() {
        let c = candidates();
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        let p = choose(Policy::Priority, &c, |_| good(), &t, &s, None);
        assert_eq!(names(&c, &p), ["c", "a", "b"]);
        let ch = choose(Policy::Cheapest, &c, |_| good(), &t, &s, None);
        assert_eq!(names(&c, &ch), ["a", "b", "c"]);
        assert_eq!(ch.why, "cheapest: a/1 costs 1 (next: b/1 at 2)");
    }

    #[test]
    fn quality_takes_the_cheapest_route_meeting_the_targets() {
        let c = candidates();
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        // a is cheapest but completes 60 %: b wins, a is last among the judged.
        let ev = |i: usize| if c[i].provider == "a" { poor() } else { good() };
        let q = choose(Policy::Quality, &c, ev, &t, &s, None);
        assert_eq!(names(&c, &q), ["b", "c", "a"]);
        assert!(!q.explored);
        assert_eq!(
            q.why,
            "quality: b/1 is the cheapest route meeting the targets (cost 2); \
             cheaper: a/1: misses completion 60 % < 90 %"
        );
        // A slow start and poor refills fail too.
        let slow = RouteEvidence {
            median_start_ms: Some(7_200_000),
            refills_done: 5,
            ..good()
        };
        assert_eq!(
            standing(&slow, &t, &s),
            Standing::Failing(vec![
                "median start 7200 s > 3600 s".into(),
                "refill success 50 % < 80 %".into()
            ])
        );
    }

    #[test]
    fn too_little_data_is_learned_first_and_explored() {
        let c = candidates();
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        let fresh = |i: usize| {
            if c[i].provider == "a" {
                RouteEvidence::default()
            } else {
                good()
            }
        };
        // b and c qualify; a (unproven) comes after them, and gets the exploring orders.
        let q = choose(Policy::Quality, &c, fresh, &t, &s, None);
        assert_eq!(names(&c, &q), ["b", "c", "a"]);
        let explore = choose(Policy::Quality, &c, fresh, &t, &s, Some(0));
        assert!(explore.explored);
        assert_eq!(names(&c, &explore), ["a", "b", "c"]);
        assert!(
            explore
                .why
                .starts_with("quality: exploring a/1 (too little data (0 of 20")
        );
        // Nothing known at all: the cheapest learns first.
        let none = choose(
            Policy::Quality,
            &c,
            |_| RouteEvidence::default(),
            &t,
            &s,
            Some(0),
        );
        assert_eq!(names(&c, &none), ["a", "b", "c"]);
    }

    #[test]
    fn degraded_routes_are_demoted_and_promoted_back() {
        let c = candidates();
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        let degraded = |bad: u32| {
            let c = &c;
            move |i: usize| {
                if c[i].provider == "b" {
                    RouteEvidence {
                        recent: RecentWindow { judged: 20, bad },
                        ..good()
                    }
                } else if c[i].provider == "a" {
                    poor()
                } else {
                    good()
                }
            }
        };
        let q = choose(Policy::Quality, &c, degraded(7), &t, &s, None);
        assert_eq!(names(&c, &q), ["c", "a", "b"], "b demoted below failing a");
        assert!(
            q.why
                .contains("b/1: demoted (7 of its last 20 judged attempts bad)")
        );
        // Exploring orders probe the demoted route, so a recovery is seen.
        let probe = choose(Policy::Quality, &c, degraded(7), &t, &s, Some(0));
        assert_eq!(names(&c, &probe), ["b", "c", "a"]);
        // 6 of 20 is within 30 %: promoted back.
        let back = choose(Policy::Quality, &c, degraded(6), &t, &s, None);
        assert_eq!(names(&c, &back), ["b", "c", "a"]);
        // Too few judged attempts cannot demote.
        let few = RouteEvidence {
            recent: RecentWindow { judged: 4, bad: 4 },
            ..good()
        };
        assert_eq!(standing(&few, &t, &s), Standing::Qualified);
    }

    #[test]
    fn exploring_orders_share_out_the_learning_routes() {
        let c = candidates();
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        // a (cheapest) demoted, b unproven, c qualified: explorers alternate between a and b.
        let ev = |i: usize| match c[i].provider.as_str() {
            "a" => RouteEvidence {
                recent: RecentWindow { judged: 10, bad: 9 },
                ..good()
            },
            "b" => RouteEvidence::default(),
            _ => good(),
        };
        let first = |draw| names(&c, &choose(Policy::Quality, &c, ev, &t, &s, draw))[0].clone();
        assert_eq!(first(None), "c");
        assert_eq!(first(Some(0)), "b", "unproven first in the ranking");
        assert_eq!(first(Some(1)), "a");
        assert_eq!(first(Some(2)), "b");
    }

    #[test]
    fn a_route_sure_to_miss_fails_before_it_is_proven() {
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        // 20 needed at 90 %: 18 completions. 10 finished with 7 completed can still make it
        // (7 + 10 = 17 < 18: no), 10 with 8 can (8 + 10 = 18).
        let sure = RouteEvidence {
            finished: 10,
            completed: 7,
            ..RouteEvidence::default()
        };
        assert_eq!(
            standing(&sure, &t, &s),
            Standing::Failing(vec![
                "completion 70 % of 10 finished, below 90 % even if the next 10 complete".into()
            ])
        );
        let open = RouteEvidence {
            completed: 8,
            ..sure
        };
        assert_eq!(standing(&open, &t, &s), Standing::Unproven { finished: 10 });
    }

    #[test]
    fn targets_are_compared_exactly() {
        let s = RoutingSettings::default();
        let t = QualityTargets::default();
        // 8,995 of 10,000 is 89.95 %: below 90 % although it shows as 90.0 when rounded.
        let close = RouteEvidence {
            finished: 10_000,
            completed: 8_995,
            ..good()
        };
        assert!(matches!(standing(&close, &t, &s), Standing::Failing(_)));
        let exact = RouteEvidence {
            completed: 9_000,
            ..close
        };
        assert_eq!(standing(&exact, &t, &s), Standing::Qualified);
        let huge = QualityTargets {
            start_secs: Decimal::MAX,
            ..QualityTargets::default()
        };
        assert_eq!(huge.start_ms(), i64::MAX, "no overflow, no panic");
    }

    #[test]
    fn the_exploring_share_is_kept_and_spread() {
        let five = Decimal::from(5);
        let exploring: Vec<u64> = (1..=100_000)
            .filter(|id| explores(*id, five).is_some())
            .collect();
        // 5 % of the ids, within a tenth of a percent, and never two runs of consecutive ids.
        assert!(
            (4_900..=5_100).contains(&exploring.len()),
            "{}",
            exploring.len()
        );
        assert!(exploring.windows(3).all(|w| w[2] - w[0] > 2));
        assert!((1..=1000).all(|id| explores(id, Decimal::ZERO).is_none()));
        assert!((1..=1000).all(|id| explores(id, Decimal::from(100)).is_some()));
    }

    #[test]
    fn targets_and_settings_read_from_toml_with_defaults() {
        let s: RoutingSettings = toml::from_str(
            "policy = \"quality\"\nexplore_percent = \"2.5\"\n[targets]\nstart_secs = \"0.5\"\n",
        )
        .expect("parse");
        assert_eq!(s.policy, Policy::Quality);
        assert_eq!(s.explore_percent, Decimal::new(25, 1));
        assert_eq!(s.targets.start_ms(), 500);
        assert_eq!(s.targets.completion_percent, Decimal::from(90));
        let o = TargetOverrides {
            completion_percent: Some(Decimal::from(75)),
            ..TargetOverrides::default()
        };
        assert_eq!(s.targets.with(&o).completion_percent, Decimal::from(75));
        assert_eq!(s.targets.with(&o).start_ms(), 500);
    }
}
