//! Every dialect switch, one at a time, and back to canonical.

use serde_json::{Value, json};
use smm_panel_sim::{Dialect, Outcomes};

use crate::{Env, env, env_with, error_text, test_config};

const ADD: [(&str, &str); 4] = [
    ("action", "add"),
    ("service", "1"),
    ("link", "https://ig/a"),
    ("quantity", "1000"),
];

async fn with(e: &Env, d: Dialect) {
    e.sim().set_dialect(d);
}

#[tokio::test]
async fn numbers_as_numbers() {
    let e = env().await;
    let id = e.add(&ADD[1..]).await;
    with(
        &e,
        Dialect {
            numbers_as_numbers: true,
            ..Dialect::default()
        },
    )
    .await;
    let services = e.form(&[("action", "services")]).await;
    assert_eq!(services[0]["rate"], json!(0.9));
    assert_eq!(services[0]["min"], json!(50));
    assert_eq!(services[0]["max"], json!(10000));
    assert!(services[0]["service"].is_u64());
    e.advance(60);
    let (_, body) = e
        .form_raw(&[("action", "status"), ("order", &id.to_string())])
        .await;
    assert!(
        body.starts_with(r#"{"charge":0.9,"start_count":"#),
        "{body}"
    );
    let s: Value = serde_json::from_str(&body).unwrap();
    assert!(s["start_count"].is_u64() && s["remains"].is_u64(), "{s}");
    assert_eq!(s["status"], "In progress");
    let (_, body) = e.form_raw(&[("action", "balance")]).await;
    assert_eq!(body, r#"{"balance":999.1,"currency":"USD"}"#);
    e.sim().set_balance(crate::KEY, crate::dec("12"));
    let (_, body) = e.form_raw(&[("action", "balance")]).await;
    assert_eq!(
        body, r#"{"balance":12.0,"currency":"USD"}"#,
        "float-looking"
    );
}

#[tokio::test]
async fn order_id_as_string_and_under_order_id() {
    let e = env().await;
    with(
        &e,
        Dialect {
            order_id_as_string: true,
            ..Dialect::default()
        },
    )
    .await;
    assert_eq!(e.form(&ADD).await, json!({"order": "10001"}));
    with(
        &e,
        Dialect {
            order_id_key: true,
            ..Dialect::default()
        },
    )
    .await;
    assert_eq!(e.form(&ADD).await, json!({"order_id": 10002}));
    with(
        &e,
        Dialect {
            order_id_key: true,
            order_id_as_string: true,
            ..Dialect::default()
        },
    )
    .await;
    assert_eq!(e.form(&ADD).await, json!({"order_id": "10003"}));
    with(&e, Dialect::default()).await;
    assert_eq!(e.form(&ADD).await, json!({"order": 10004}));
}

#[tokio::test]
async fn status_spellings() {
    let mut cfg = test_config();
    for s in &mut cfg.services {
        if s.id == 2 {
            s.outcomes = Outcomes::always_canceled();
        }
    }
    let e = env_with(cfg).await;
    let running = e.add(&ADD[1..]).await;
    let canceled = e
        .add(&[
            ("service", "2"),
            ("link", "https://ig/p"),
            ("quantity", "100"),
        ])
        .await;
    e.advance(30);
    let status = |v: Value| v["status"].clone();
    let check = |d: Dialect, want_running: Value, want_canceled: Value| {
        let e = &e;
        async move {
            with(e, d).await;
            assert_eq!(status(e.status(running).await), want_running, "{d:?}");
            assert_eq!(status(e.status(canceled).await), want_canceled, "{d:?}");
        }
    };
    check(Dialect::default(), json!("In progress"), json!("Canceled")).await;
    check(
        Dialect {
            cancelled_spelling: true,
            ..Dialect::default()
        },
        json!("In progress"),
        json!("Cancelled"),
    )
    .await;
    check(
        Dialect {
            lowercase_status: true,
            ..Dialect::default()
        },
        json!("in progress"),
        json!("canceled"),
    )
    .await;
    check(
        Dialect {
            lowercase_status: true,
            cancelled_spelling: true,
            ..Dialect::default()
        },
        json!("in progress"),
        json!("cancelled"),
    )
    .await;
    check(
        Dialect {
            snake_status: true,
            ..Dialect::default()
        },
        json!("in_progress"),
        json!("canceled"),
    )
    .await;
    check(
        Dialect {
            numeric_status: true,
            ..Dialect::default()
        },
        json!("1"),
        json!("4"),
    )
    .await;
    check(
        Dialect {
            numeric_status: true,
            numbers_as_numbers: true,
            ..Dialect::default()
        },
        json!(1),
        json!(4),
    )
    .await;
    // Multi status follows the dialect too.
    with(
        &e,
        Dialect {
            snake_status: true,
            ..Dialect::default()
        },
    )
    .await;
    let v = e
        .form(&[
            ("action", "status"),
            ("orders", &format!("{running},{canceled}")),
        ])
        .await;
    assert_eq!(v[running.to_string()]["status"], "in_progress");
    // Numeric codes for pending and completed/partial.
    with(
        &e,
        Dialect {
            numeric_status: true,
            ..Dialect::default()
        },
    )
    .await;
    let p = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/q"),
            ("quantity", "100"),
        ])
        .await;
    assert_eq!(e.status(p).await["status"], "0");
    e.advance(500);
    assert_eq!(e.status(running).await["status"], "2");
}

#[tokio::test]
async fn raw_error_keys() {
    let e = env().await;
    with(
        &e,
        Dialect {
            raw_error_keys: true,
            ..Dialect::default()
        },
    )
    .await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("service", "1"), ("link", "https://l"), ("quantity", "1")],
            "neworder.error.min_quantity",
        ),
        (
            &[
                ("service", "1"),
                ("link", "https://l"),
                ("quantity", "99999"),
            ],
            "neworder.error.max_quantity",
        ),
        (
            &[
                ("service", "77"),
                ("link", "https://l"),
                ("quantity", "100"),
            ],
            "error.incorrect_service_id",
        ),
        (
            &[("service", "1"), ("quantity", "100")],
            "neworder.error.link",
        ),
        (
            &[
                ("service", "1"),
                ("link", "https://l"),
                ("quantity", "10000"),
            ],
            "neworder.error.not_enough_funds",
        ),
    ];
    e.sim().set_balance(crate::KEY, crate::dec("1"));
    for (params, want) in cases {
        assert_eq!(e.add_err(params).await, want);
    }
    e.sim().set_balance(crate::KEY, crate::dec("100"));
    let p = [
        ("service", "4"),
        ("link", "https://yt/1"),
        ("quantity", "100"),
    ];
    e.add(&p).await;
    assert_eq!(e.add_err(&p).await, "neworder.error.link_duplicate");
    // Other errors stay English.
    assert_eq!(
        error_text(&e.form(&[("key", "x"), ("action", "balance")]).await),
        "Invalid API key"
    );
    with(&e, Dialect::default()).await;
    assert_eq!(
        e.add_err(&[
            ("service", "77"),
            ("link", "https://l"),
            ("quantity", "100")
        ])
        .await,
        "Incorrect service ID"
    );
}

#[tokio::test]
async fn unknown_remains_while_pending() {
    let e = env().await;
    let id = e.add(&ADD[1..]).await;
    with(
        &e,
        Dialect {
            unknown_remains: true,
            ..Dialect::default()
        },
    )
    .await;
    assert_eq!(e.status(id).await["remains"], "Unknown");
    e.advance(60);
    assert_ne!(e.status(id).await["remains"], "Unknown");
    // The control endpoint sets the same thing.
    let (code, _) = e
        .control(
            reqwest::Method::PUT,
            "/control/dialect",
            Some(json!({"unknown_remains": true, "numbers_as_numbers": true})),
        )
        .await;
    assert_eq!(code, 204);
    let d = e.sim().dialect();
    assert!(d.unknown_remains && d.numbers_as_numbers && !d.snake_status);
}
