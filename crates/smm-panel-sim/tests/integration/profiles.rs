//! Provider profiles: per-service start delay and speed, Partial shares, drops and their
//! refills, run-time profile changes, and outage windows (faults and refused connections).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use smm_panel_sim::{
    Drops, Fault, OrderStatus, Outage, Outcomes, Profile, Sim, SimConfig, SimOrder,
};

use crate::{KEY, client, dec, env, env_with, error_text, test_config};

fn bulk(service: u64, quantity: u64) -> BTreeMap<String, String> {
    [
        ("key", KEY.to_owned()),
        ("service", service.to_string()),
        ("link", "https://ig/p".to_owned()),
        ("quantity", quantity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn with_profile(service: u64, profile: Profile) -> SimConfig {
    let mut cfg = test_config();
    for s in &mut cfg.services {
        if s.id == service {
            s.profile = profile.clone();
        }
    }
    for a in &mut cfg.accounts {
        a.balance = dec("1000000");
    }
    cfg
}

fn drops(rate: f64, share: [f64; 2], after_secs: [u64; 2]) -> Option<Drops> {
    Some(Drops {
        rate,
        share,
        after_secs,
    })
}

const F1000: [(&str, &str); 3] = [
    ("service", "1"),
    ("link", "https://ig/a"),
    ("quantity", "1000"),
];

#[tokio::test]
async fn profile_sets_start_delay_and_speed_of_its_service_only() {
    let e = env_with(with_profile(
        1,
        Profile {
            pending_secs: Some([500, 500]),
            run_secs: Some([1000, 1000]),
            ..Profile::default()
        },
    ))
    .await;
    let slow = e.add(&F1000).await;
    let other = e
        .add(&[
            ("service", "2"),
            ("link", "https://ig/b"),
            ("quantity", "1000"),
        ])
        .await;
    e.advance(20); // the panel-wide timing: Pending 10 s, then 100 s
    assert_eq!(e.status(slow).await["status"], "Pending");
    assert_eq!(e.status(other).await["status"], "In progress");
    e.advance(100);
    assert_eq!(e.status(other).await["status"], "Completed");
    assert_eq!(e.status(slow).await["status"], "Pending");
    e.advance(390); // 510 s
    assert_eq!(e.status(slow).await["status"], "In progress");
    e.advance(980); // 1490 s
    assert_eq!(e.status(slow).await["status"], "In progress");
    e.advance(20);
    assert_eq!(e.status(slow).await["status"], "Completed");
}

#[tokio::test]
async fn partial_undelivered_share_follows_the_profile() {
    let profile = Profile {
        outcomes: Some(Outcomes::always_partial()),
        partial_undelivered: Some([0.2, 0.6]),
        ..Profile::default()
    };
    let e = env_with(with_profile(1, profile)).await;
    e.sim().add_orders(&bulk(1, 1000), 400).unwrap();
    e.advance(200);
    let orders = e.sim().orders();
    assert!(orders.iter().all(|o| o.status == OrderStatus::Partial));
    assert!(
        orders.iter().all(|o| (200..=600).contains(&o.remains)),
        "{:?}",
        orders.iter().map(|o| o.remains).collect::<Vec<_>>()
    );
    let mean = orders.iter().map(|o| o.remains).sum::<u64>() / orders.len() as u64;
    assert!((350..=450).contains(&mean), "mean undelivered {mean}");
    // Refunded pro rata like any Partial: 0.90 per 1000.
    let o = &orders[0];
    assert_eq!(
        o.refunded,
        (dec("0.9") * rust_decimal::Decimal::from(o.remains) / dec("1000")).round_dp(5)
    );

    // Without a Partial share the panel spreads remains over 1..quantity as before.
    let mut cfg = test_config();
    cfg.services[0].outcomes = Outcomes::always_partial();
    cfg.accounts[0].balance = dec("1000000");
    let plain = Sim::new(cfg);
    plain.add_orders(&bulk(1, 1000), 400).unwrap();
    plain.advance(Duration::from_secs(200));
    let outside = plain
        .orders()
        .iter()
        .filter(|o| !(200..=600).contains(&o.remains))
        .count();
    assert!(outside > 100, "{outside} of 400 outside [200, 600]");
}

#[tokio::test]
async fn completed_orders_drop_later_and_a_refill_after_the_drop_restores_them() {
    let e = env_with(with_profile(
        1,
        Profile {
            drops: drops(1.0, [0.1, 0.1], [3600, 3600]),
            ..Profile::default()
        },
    ))
    .await;
    let id = e.add(&F1000).await;
    let early = e.add(&F1000).await;
    e.advance(110);
    assert_eq!(e.status(id).await["status"], "Completed");
    assert!(e.sim().dropped_orders().is_empty());
    assert_eq!(e.sim().order(id).unwrap().drop, None);
    // A refill asked before the drop cannot restore what is lost later.
    let r_early = e
        .form(&[("action", "refill"), ("order", &early.to_string())])
        .await;
    assert!(r_early["refill"].is_string(), "{r_early}");
    e.advance(3600);
    let dropped = e.sim().dropped_orders();
    assert_eq!(
        dropped.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![id, early]
    );
    let d = dropped[0].drop.unwrap();
    assert_eq!((d.units, d.refilled_ms), (100, None));
    assert_eq!(d.at_ms, dropped[0].created_ms + 110_000 + 3_600_000);
    // The API does not tell: still Completed with nothing remaining.
    let s = e.status(id).await;
    assert_eq!(
        (s["status"].as_str(), s["remains"].as_str()),
        (Some("Completed"), Some("0"))
    );

    e.form(&[("action", "refill"), ("order", &id.to_string())])
        .await;
    e.advance(50);
    assert_eq!(
        e.sim().order(id).unwrap().drop.unwrap().refilled_ms,
        None,
        "refill running"
    );
    e.advance(60);
    let restored = e.sim().order(id).unwrap().drop.unwrap();
    assert!(
        restored.refilled_ms.is_some_and(|t| t > d.at_ms),
        "{restored:?}"
    );
    assert_eq!(
        e.sim().order(early).unwrap().drop.unwrap().refilled_ms,
        None
    );
    assert_eq!(
        e.sim().dropped_orders().len(),
        2,
        "refilled drops stay listed"
    );
}

#[tokio::test]
async fn a_rejected_refill_does_not_restore_a_drop() {
    let e = env_with(with_profile(
        1,
        Profile {
            outcomes: Some(Outcomes {
                refill_rejected: 1.0,
                ..Outcomes::always_completed()
            }),
            drops: drops(1.0, [0.5, 0.5], [10, 10]),
            ..Profile::default()
        },
    ))
    .await;
    let id = e.add(&F1000).await;
    e.advance(120);
    assert_eq!(e.sim().order(id).unwrap().drop.unwrap().units, 500);
    let r = e
        .form(&[("action", "refill"), ("order", &id.to_string())])
        .await;
    e.advance(200);
    let rid = r["refill"].as_str().unwrap();
    let st = e
        .form(&[("action", "refill_status"), ("refill", rid)])
        .await;
    assert_eq!(st["status"], "Rejected");
    assert_eq!(e.sim().order(id).unwrap().drop.unwrap().refilled_ms, None);
}

#[tokio::test]
async fn drop_rate_is_a_probability_and_only_completed_orders_drop() {
    let e = env_with(with_profile(
        1,
        Profile {
            outcomes: Some(Outcomes {
                completed: 0.5,
                partial: 0.5,
                ..Outcomes::default()
            }),
            drops: drops(0.3, [0.05, 0.4], [0, 86_400]),
            ..Profile::default()
        },
    ))
    .await;
    e.sim().add_orders(&bulk(1, 1000), 1000).unwrap();
    e.advance(200);
    let some = e.sim().dropped_orders().len();
    e.advance(86_400);
    let orders = e.sim().orders();
    let completed = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Completed)
        .count();
    let dropped: Vec<&SimOrder> = orders.iter().filter(|o| o.drop.is_some()).collect();
    assert!((400..=600).contains(&completed), "{completed}");
    assert!(dropped.iter().all(|o| o.status == OrderStatus::Completed));
    let share = dropped.len() as f64 / completed as f64;
    assert!((0.24..=0.36).contains(&share), "{share}");
    assert!(
        some < dropped.len(),
        "drops spread over [0, 1 day] after completion"
    );
    assert!(
        dropped
            .iter()
            .all(|o| (50..=400).contains(&o.drop.unwrap().units))
    );
}

#[tokio::test]
async fn set_profile_applies_to_orders_placed_after_the_change() {
    let e = env().await;
    let before = e.add(&F1000).await;
    assert!(e.sim().set_profile(
        1,
        Profile {
            pending_secs: Some([1000, 1000]),
            outcomes: Some(Outcomes::always_canceled()),
            ..Profile::default()
        }
    ));
    assert!(!e.sim().set_profile(999, Profile::default()));
    let after = e.add(&F1000).await;
    e.advance(500);
    assert_eq!(e.status(before).await["status"], "Completed");
    assert_eq!(e.status(after).await["status"], "Pending");
    e.advance(600);
    assert_eq!(e.status(after).await["status"], "Canceled");
    // Back to the service's own outcomes and the panel's timing.
    assert!(e.sim().set_profile(1, Profile::default()));
    let recovered = e.add(&F1000).await;
    e.advance(110);
    assert_eq!(e.status(recovered).await["status"], "Completed");

    // The same over the control API.
    let (code, body) = e
        .control(
            Method::PUT,
            "/control/profile",
            Some(json!({"service": 1, "profile": {"pending_secs": [300, 300]}})),
        )
        .await;
    assert_eq!(code, 204, "{body}");
    assert_eq!(e.sim().services()[0].profile.pending_secs, Some([300, 300]));
    let (code, _) = e
        .control(
            Method::PUT,
            "/control/profile",
            Some(json!({"service": 999, "profile": {}})),
        )
        .await;
    assert_eq!(code, 404);
    let (code, body) = e
        .control(
            Method::PUT,
            "/control/profile",
            Some(json!({"service": 1, "profile": {"partial_undelivered": [0.5, 1.5]}})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(e.sim().services()[0].profile.pending_secs, Some([300, 300]));
}

#[tokio::test]
async fn fault_outages_open_and_repeat_on_the_sim_clock() {
    let e = env_with(SimConfig {
        outages: vec![
            Outage::refused(100, 50)
                .with_fault(Fault::Unavailable)
                .every(1000),
        ],
        ..test_config()
    })
    .await;
    let balance = [("action", "balance")];
    assert_eq!(e.form_raw(&balance).await.0, 200);
    e.advance(120);
    let (code, body) = e.form_raw(&balance).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        e.sim().requests().last().unwrap().fault.as_deref(),
        Some("unavailable")
    );
    e.advance(40); // 160 s: closed
    assert_eq!(e.form_raw(&balance).await.0, 200);
    e.advance(960); // 1120 s: the next window
    assert_eq!(e.form_raw(&balance).await.0, 503);
    e.advance(40);
    assert_eq!(e.form_raw(&balance).await.0, 200);
    assert!(e.sim().faults().is_empty(), "outages are not fault rules");
}

#[tokio::test]
async fn a_fault_outage_can_hit_one_service() {
    let e = env().await;
    let id2 = e
        .add(&[
            ("service", "2"),
            ("link", "https://ig/b"),
            ("quantity", "100"),
        ])
        .await;
    let (code, body) = e
        .control(
            Method::POST,
            "/control/outages",
            Some(json!({"from_secs": 0, "for_secs": 3600,
                        "fault": {"kind": "error", "text": "Service under maintenance"},
                        "service": 2})),
        )
        .await;
    assert_eq!(code, 204, "{body}");
    e.add(&F1000).await;
    let v = e
        .form(&[
            ("action", "add"),
            ("service", "2"),
            ("link", "https://ig/c"),
            ("quantity", "100"),
        ])
        .await;
    assert_eq!(error_text(&v), "Service under maintenance");
    let v = e.status(id2).await;
    assert_eq!(error_text(&v), "Service under maintenance");
    let (_, body) = e.control(Method::GET, "/control/outages", None).await;
    assert!(body.contains(r#""for_secs":3600"#), "{body}");
    let (code, _) = e
        .control(
            Method::POST,
            "/control/outages",
            Some(json!({"from_secs": 0, "for_secs": 60, "service": 2})),
        )
        .await;
    assert_eq!(code, 400, "refusing connections is panel-wide");
    e.control(Method::DELETE, "/control/outages", None).await;
    assert_eq!(e.status(id2).await["status"], "Pending");
}

/// Polls until `ok(result of a balance request)` holds, for up to 3 s.
async fn until<F: Fn(&Result<reqwest::Response, reqwest::Error>) -> bool>(
    url: &str,
    ok: F,
) -> bool {
    for _ in 0..300 {
        // A fresh client each time: no pooled connection hides the listener's state.
        let r = client()
            .post(url)
            .form(&[("key", KEY), ("action", "balance")])
            .send()
            .await;
        if ok(&r) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_refused_outage_stops_listening_then_listens_again_on_the_same_port() {
    let e = env_with(SimConfig {
        outages: vec![Outage::refused(100, 50)],
        ..test_config()
    })
    .await;
    let url = e.h.api_url();
    let pooled = client();
    assert_eq!(e.balance().await["currency"], "USD");
    let kept = pooled
        .post(&url)
        .form(&[("key", KEY), ("action", "balance")])
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    e.advance(120);
    assert!(
        until(&url, |r| r.as_ref().is_err_and(|e| e.is_connect())).await,
        "connections refused during the outage"
    );
    // The kept-alive connection was closed too: the pooled client cannot get through either.
    assert!(
        pooled
            .post(&url)
            .form(&[("key", KEY), ("action", "balance")])
            .send()
            .await
            .is_err()
    );
    assert_eq!(e.sim().counts().actions.get("balance"), Some(&2));
    e.advance(40);
    assert!(
        until(&url, |r| r.as_ref().is_ok_and(|r| r.status() == 200)).await,
        "listening again after the outage"
    );
    // A runtime outage, cleared early.
    e.sim().add_outage(Outage::refused(150, 10_000));
    assert!(until(&url, |r| r.is_err()).await);
    e.sim().clear_outages();
    assert!(until(&url, |r| r.is_ok()).await);
}

#[test]
fn profiles_and_outages_from_toml_and_their_validation() {
    let cfg = SimConfig::from_toml_str(
        r#"
        seed = 3
        [[outages]]
        from_secs = 3600
        for_secs = 1800
        every_secs = 86400

        [[outages]]
        for_secs = 60
        fault = { kind = "unavailable" }
        service = 1

        [[services]]
        id = 1
        name = "Followers"
        type = "Default"
        rate = "1.10"
        min = 100
        max = 10000
        refill = true
        outcomes = { completed = 0.55, partial = 0.35, canceled = 0.1, refill_rejected = 0.5 }
        [services.profile]
        pending_secs = [1800, 36000]
        run_secs = [7200, 86400]
        partial_undelivered = [0.2, 0.7]
        drops = { rate = 0.3, share = [0.1, 0.4], after_secs = [43200, 604800] }

        [[services]]
        id = 2
        name = "Likes"
        type = "Default"
        rate = "0.12"
        "#,
    )
    .unwrap();
    let p = &cfg.services[0].profile;
    assert_eq!(p.pending_secs, Some([1800, 36_000]));
    assert_eq!(p.partial_undelivered, Some([0.2, 0.7]));
    assert_eq!(p.drops.as_ref().unwrap().after_secs, [43_200, 604_800]);
    assert!(cfg.services[1].profile.is_unset());
    assert!(cfg.outages[0].refuses());
    assert_eq!(cfg.outages[1].fault, Some(Fault::Unavailable));
    assert_eq!(
        cfg.outages[0].open_until(3_600_000 + 86_400_000),
        Some(91_800_000)
    );
    assert_eq!(cfg.outages[0].open_until(3_599_999), None);
    assert_eq!(cfg.outages[0].open_until(5_400_000), None);

    for (bad, needle) in [
        (
            "[[services]]\nid=1\nname=\"x\"\ntype=\"Default\"\nrate=1\nprofile = { partial_undelivered = [0.7, 0.2] }",
            "partial_undelivered",
        ),
        (
            "[[services]]\nid=1\nname=\"x\"\ntype=\"Default\"\nrate=1\nprofile = { drops = { rate = 1.5 } }",
            "drops.rate",
        ),
        ("[[outages]]\nfor_secs = 0", "for_secs"),
        ("[[outages]]\nfor_secs = 60\nevery_secs = 30", "every_secs"),
        ("[[outages]]\nfor_secs = 60\nservice = 1", "panel-wide"),
    ] {
        let err = SimConfig::from_toml_str(bad).unwrap_err().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn profiles_are_deterministic_per_seed() {
    let run = |seed: u64| {
        let sim = Sim::new(SimConfig {
            seed,
            ..with_profile(
                1,
                Profile {
                    outcomes: Some(Outcomes::mixed()),
                    partial_undelivered: Some([0.1, 0.9]),
                    drops: drops(0.5, [0.1, 0.5], [0, 3600]),
                    ..Profile::default()
                },
            )
        });
        sim.add_orders(&bulk(1, 1000), 200).unwrap();
        sim.advance(Duration::from_secs(10_000));
        sim.orders()
            .into_iter()
            .map(|o| (o.status, o.remains, o.refunded, o.drop))
            .collect::<Vec<_>>()
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
    assert!(a.iter().any(|o| o.3.is_some()) && a.iter().any(|o| o.1 > 0));
}
