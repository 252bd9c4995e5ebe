//! Order progression, refunds, multi status, cancel, refill, subscriptions, determinism.

use std::time::Duration;

use serde_json::{Value, json};
use smm_panel_sim::{OrderStatus, Outcomes, SimConfig};

use crate::{KEY, dec, env, env_with, error_text, test_config};

fn with_outcomes(service: u64, outcomes: Outcomes) -> SimConfig {
    let mut cfg = test_config();
    for s in &mut cfg.services {
        if s.id == service {
            s.outcomes = outcomes.clone();
        }
    }
    cfg
}

const F1000: [(&str, &str); 3] = [
    ("service", "1"),
    ("link", "https://ig/a"),
    ("quantity", "1000"),
];

#[tokio::test]
async fn progression_pending_in_progress_completed() {
    let e = env().await;
    let id = e.add(&F1000).await;
    assert_eq!(e.status(id).await["status"], "Pending");
    e.advance(60); // 50 s into a 100 s run
    let s = e.status(id).await;
    assert_eq!(s["status"], "In progress");
    let remains: u64 = s["remains"].as_str().unwrap().parse().unwrap();
    assert!((480..=520).contains(&remains), "{s}");
    assert_ne!(s["start_count"], "0");
    e.advance(25);
    let later: u64 = e.status(id).await["remains"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(later < remains);
    e.advance(1000);
    let s = e.status(id).await;
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["remains"], "0");
    assert_eq!(s["charge"], "0.90000");
    let o = e.sim().order(id).unwrap();
    assert_eq!(o.status, OrderStatus::Completed);
    assert_eq!(o.refunded, dec("0"));
    assert_eq!(e.sim().balance(KEY), Some(dec("999.1")));
}

#[tokio::test]
async fn partial_refunds_charge_times_remains_over_quantity() {
    let e = env_with(with_outcomes(1, Outcomes::always_partial())).await;
    let id = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/a"),
            ("quantity", "777"),
        ])
        .await;
    let charge = dec("0.6993"); // 777 × 0.90 / 1000
    e.advance(115);
    let s = e.status(id).await;
    assert_eq!(s["status"], "Partial");
    let remains: u64 = s["remains"].as_str().unwrap().parse().unwrap();
    assert!((1..777).contains(&remains));
    let refund = (charge * rust_decimal::Decimal::from(remains) / rust_decimal::Decimal::from(777))
        .round_dp_with_strategy(5, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let mut shown = charge - refund;
    shown.rescale(5);
    assert_eq!(s["charge"], shown.to_string());
    assert_eq!(e.sim().balance(KEY), Some(dec("1000") - charge + refund));
    // Polling again does not refund twice.
    e.status(id).await;
    e.advance(1000);
    e.status(id).await;
    assert_eq!(e.sim().balance(KEY), Some(dec("1000") - charge + refund));
    assert_eq!(e.sim().order(id).unwrap().refunded, refund);
}

#[tokio::test]
async fn panel_cancel_refunds_in_full_without_polling() {
    let e = env_with(with_outcomes(1, Outcomes::always_canceled())).await;
    let id = e.add(&F1000).await;
    assert_eq!(e.sim().balance(KEY), Some(dec("999.1")));
    e.advance(11);
    // The refund is applied when due, even though nobody polled.
    assert_eq!(e.sim().balance(KEY), Some(dec("1000")));
    let s = e.status(id).await;
    assert_eq!(s["status"], "Canceled");
    assert_eq!(s["charge"], "0.00000");
    assert_eq!(s["remains"], "1000");
    assert_eq!(s["start_count"], "0");
}

#[tokio::test]
async fn multi_status_keyed_by_id_strings() {
    let e = env().await;
    let a = e.add(&F1000).await;
    let b = e.add(&F1000).await;
    e.sim().set_balance("other", dec("10"));
    let foreign = e
        .form(&[
            ("key", "other"),
            ("action", "add"),
            ("service", "1"),
            ("link", "https://x"),
            ("quantity", "100"),
        ])
        .await["order"]
        .as_u64()
        .unwrap();
    let list = format!("{a}, {b},99,{foreign},abc,{a}");
    let (_, body) = e.form_raw(&[("action", "status"), ("orders", &list)]).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 5);
    let pending = json!({"charge":"0.90000","start_count":"0","status":"Pending","remains":"1000","currency":"USD"});
    assert_eq!(v[a.to_string()], pending);
    assert_eq!(v[b.to_string()], pending);
    let bad = json!({"error": "Incorrect order ID"});
    assert_eq!(v["99"], bad);
    assert_eq!(
        v[foreign.to_string()],
        bad,
        "orders of other keys are invisible"
    );
    assert_eq!(v["abc"], bad);
    assert!(
        body.starts_with(&format!("{{\"{a}\":")),
        "request order kept: {body}"
    );
    // Single unknown id: whole-reply error.
    assert_eq!(error_text(&e.status(99).await), "Incorrect order ID");
    assert_eq!(
        error_text(&e.form(&[("action", "status")]).await),
        "Incorrect order ID"
    );
    // More than 100 ids.
    let many = (1..=101)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        error_text(&e.form(&[("action", "status"), ("orders", &many)]).await),
        "Incorrect request"
    );
}

#[tokio::test]
async fn cancel_rules_and_refunds() {
    let e = env().await;
    let pending = e.add(&F1000).await;
    let running = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/b"),
            ("quantity", "1000"),
        ])
        .await;
    let no_cancel = e
        .add(&[
            ("service", "3"),
            ("link", "https://ig/v"),
            ("quantity", "1000"),
        ])
        .await;
    let list = format!("{pending},{no_cancel},424242");
    let (_, body) = e.form_raw(&[("action", "cancel"), ("orders", &list)]).await;
    assert_eq!(
        body,
        format!(
            r#"[{{"order":{pending},"cancel":1}},{{"order":{no_cancel},"cancel":{{"error":"Cancel is disabled for this service"}}}},{{"order":424242,"cancel":{{"error":"Incorrect order ID"}}}}]"#
        )
    );
    // Canceled before start: full refund.
    let s = e.status(pending).await;
    assert_eq!(s["status"], "Canceled");
    assert_eq!(s["charge"], "0.00000");
    // In progress: Partial with the delivered part charged.
    e.advance(60);
    let v = e
        .form(&[("action", "cancel"), ("order", &running.to_string())])
        .await;
    assert_eq!(v, json!({"cancel": 1}));
    let s = e.status(running).await;
    assert_eq!(s["status"], "Partial");
    let remains: u64 = s["remains"].as_str().unwrap().parse().unwrap();
    assert!((1..1000).contains(&remains), "{s}");
    let o = e.sim().order(running).unwrap();
    assert!(o.refunded > dec("0") && o.refunded < dec("0.9"));
    assert_eq!(
        e.sim().balance(KEY),
        Some(dec("1000") - dec("0.0125") - dec("0.9") + o.refunded)
    );
    // Terminal orders cannot be canceled again.
    let v = e
        .form(&[("action", "cancel"), ("order", &running.to_string())])
        .await;
    assert_eq!(error_text(&v), "Order not eligible for cancel");
    let v = e
        .form(&[("action", "cancel"), ("orders", &pending.to_string())])
        .await;
    assert_eq!(v[0]["cancel"]["error"], "Order not eligible for cancel");
    let v = e.form(&[("action", "cancel"), ("order", "1")]).await;
    assert_eq!(error_text(&v), "Incorrect order ID");
}

#[tokio::test]
async fn refill_rules_and_statuses() {
    let mut cfg = test_config();
    for s in &mut cfg.services {
        if s.id == 4 {
            s.outcomes.refill_rejected = 1.0;
        }
    }
    let e = env_with(cfg).await;
    let a = e.add(&F1000).await;
    let b = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/b"),
            ("quantity", "100"),
        ])
        .await;
    let no_refill = e
        .add(&[
            ("service", "2"),
            ("link", "https://ig/l"),
            ("quantity", "100"),
        ])
        .await;
    let rejected = e
        .add(&[
            ("service", "4"),
            ("link", "https://yt/x"),
            ("quantity", "100"),
        ])
        .await;
    let v = e
        .form(&[("action", "refill"), ("order", &a.to_string())])
        .await;
    assert_eq!(error_text(&v), "Order not eligible for refill");
    e.advance(200);
    let (_, body) = e
        .form_raw(&[("action", "refill"), ("order", &a.to_string())])
        .await;
    assert_eq!(body, r#"{"refill":"1"}"#);
    let list = format!("{b},{no_refill},5,{rejected}");
    let (_, body) = e.form_raw(&[("action", "refill"), ("orders", &list)]).await;
    assert_eq!(
        body,
        format!(
            r#"[{{"order":{b},"refill":2}},{{"order":{no_refill},"refill":{{"error":"Refill is disabled for this service"}}}},{{"order":5,"refill":{{"error":"Incorrect order ID"}}}},{{"order":{rejected},"refill":3}}]"#
        )
    );
    let (_, body) = e
        .form_raw(&[("action", "refill_status"), ("refill", "1")])
        .await;
    assert_eq!(body, r#"{"status":"Pending"}"#);
    e.advance(50);
    assert_eq!(
        e.form(&[("action", "refill_status"), ("refill", "1")])
            .await,
        json!({"status": "In progress"})
    );
    e.advance(100);
    let (_, body) = e
        .form_raw(&[("action", "refill_status"), ("refills", "1,3,99")])
        .await;
    assert_eq!(
        body,
        r#"[{"refill":1,"status":"Completed"},{"refill":3,"status":"Rejected"},{"refill":99,"status":{"error":"Refill not found"}}]"#
    );
    assert_eq!(
        error_text(
            &e.form(&[("action", "refill_status"), ("refill", "99")])
                .await
        ),
        "Refill not found"
    );
    let v = e.form(&[("action", "refill"), ("order", "1")]).await;
    assert_eq!(error_text(&v), "Incorrect order ID");
    let refills = e.sim().refills();
    assert_eq!(refills.len(), 3);
    assert_eq!(refills[2].status, "Rejected");
}

#[tokio::test]
async fn subscription_lifecycle() {
    let e = env().await;
    let sub = [
        ("service", "19"),
        ("username", "bob"),
        ("min", "100"),
        ("max", "200"),
        ("delay", "0"),
    ];
    let mut limited = sub.to_vec();
    limited.extend([("posts", "3"), ("expiry", "31/12/2099")]);
    let a = e.add(&limited).await;
    let unlimited = e.add(&sub).await;
    assert_eq!(
        e.status(a).await,
        json!({"status":"Active","expiry":"31/12/2099","posts":"0","orders":[]})
    );
    e.advance(10 + 60); // first post at 10 s, second at 70 s
    let s = e.status(a).await;
    assert_eq!(s["status"], "Active");
    assert_eq!(s["posts"], "2");
    assert_eq!(s["orders"].as_array().unwrap().len(), 2);
    e.advance(60);
    let s = e.status(a).await;
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["posts"], "3");
    let s = e.status(unlimited).await;
    assert_eq!(s["status"], "Active");
    assert_eq!(s["expiry"], Value::Null);
    let v = e
        .form(&[("action", "cancel"), ("order", &unlimited.to_string())])
        .await;
    assert_eq!(v, json!({"cancel": 1}));
    assert_eq!(e.status(unlimited).await["status"], "Canceled");
    let o = e.sim().order(unlimited).unwrap();
    assert_eq!(o.status, OrderStatus::Canceled);
    assert_eq!(o.posts, Some(3));
}

fn mixed_config(seed: u64) -> SimConfig {
    let mut cfg = SimConfig {
        seed,
        ..test_config()
    };
    cfg.timing.pending_secs = [5, 50];
    cfg.timing.run_secs = [50, 500];
    for s in &mut cfg.services {
        s.outcomes = Outcomes::mixed();
    }
    cfg
}

async fn run_plans(seed: u64) -> Vec<(OrderStatus, u64, u64)> {
    let e = env_with(mixed_config(seed)).await;
    for i in 0..20 {
        let link = format!("https://ig/{i}");
        e.add(&[("service", "1"), ("link", &link), ("quantity", "1000")])
            .await;
    }
    e.sim().advance(Duration::from_secs(100));
    e.sim()
        .orders()
        .into_iter()
        .map(|o| (o.status, o.remains, o.start_count))
        .collect()
}

#[tokio::test]
async fn plans_are_deterministic_per_seed() {
    let a = run_plans(7).await;
    let b = run_plans(7).await;
    let c = run_plans(8).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let statuses: std::collections::HashSet<_> = a.iter().map(|x| x.0).collect();
    assert!(statuses.len() >= 2, "a mix of states: {a:?}");
}

/// `d/m/Y` of the UTC day `days` after today.
fn dmy_in(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(now / 86_400 + days).unwrap() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{d:02}/{m:02}/{y}")
}

#[tokio::test]
async fn subscription_expires_at_end_of_expiry_day() {
    let e = env().await;
    let tomorrow = dmy_in(1);
    let id = e
        .add(&[
            ("service", "19"),
            ("username", "bob"),
            ("min", "100"),
            ("max", "200"),
            ("delay", "5"),
            ("expiry", &tomorrow),
        ])
        .await;
    e.advance(3600);
    assert_eq!(e.status(id).await["status"], "Active");
    e.advance(2 * 86_400);
    let s = e.status(id).await;
    assert_eq!(s["status"], "Expired", "{s}");
    assert_eq!(s["expiry"], tomorrow.as_str());
    // Today is accepted (the day ends at midnight UTC).
    let mut p = vec![
        ("service", "19"),
        ("username", "bob"),
        ("min", "100"),
        ("max", "200"),
        ("delay", "5"),
    ];
    let today = dmy_in(0);
    p.push(("expiry", &today));
    let fresh = crate::env().await;
    fresh.add(&p).await;
}
