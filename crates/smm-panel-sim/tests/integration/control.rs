//! Control endpoints, the request log, configuration files.

use reqwest::Method;
use serde_json::{Value, json};
use smm_panel_sim::{Fault, FaultRule, RecordedRequest, SimConfig, SimError, SimOrder, SimService};

use crate::{KEY, dec, env, env_with, test_config};

#[tokio::test]
async fn control_endpoints() {
    let e = env().await;
    let id = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/a"),
            ("quantity", "1000"),
        ])
        .await;

    // Requests log.
    let (code, body) = e.control(Method::GET, "/control/requests", None).await;
    assert_eq!(code, 200);
    let log: Vec<RecordedRequest> = serde_json::from_str(&body).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].params["quantity"], "1000");
    let (code, _) = e.control(Method::DELETE, "/control/requests", None).await;
    assert_eq!(code, 204);
    assert!(e.sim().requests().is_empty());

    // Orders.
    let (code, body) = e.control(Method::GET, "/control/orders", None).await;
    assert_eq!(code, 200);
    let orders: Vec<SimOrder> = serde_json::from_str(&body).unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].id, id);
    let raw: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(raw[0]["status"], "Pending");
    assert_eq!(dec(raw[0]["charge"].as_str().unwrap()), dec("0.9"));

    // Faults.
    let (code, _) = e
        .control(
            Method::POST,
            "/control/faults",
            Some(json!({"fault": {"kind": "error", "text": "boom"}, "action": "balance", "times": 1})),
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        e.sim().faults(),
        vec![
            FaultRule::always(Fault::Error {
                text: "boom".into()
            })
            .on_action("balance")
            .times(1)
        ]
    );
    let (_, body) = e.control(Method::GET, "/control/faults", None).await;
    assert!(body.contains(r#""kind":"error""#), "{body}");
    let (code, _) = e
        .control(
            Method::POST,
            "/control/faults",
            Some(json!({"fault": {"kind": "hang"}})),
        )
        .await;
    assert_eq!(code, 204);
    let (code, _) = e
        .control(
            Method::POST,
            "/control/faults",
            Some(json!({"fault": {"kind": "explode"}})),
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = e.control(Method::DELETE, "/control/faults", None).await;
    assert_eq!(code, 204);
    assert!(e.sim().faults().is_empty());

    // Advance.
    let (code, body) = e
        .control(
            Method::POST,
            "/control/advance",
            Some(json!({"seconds": 200})),
        )
        .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["sim_time_ms"].as_u64().unwrap() >= 200_000);
    assert_eq!(e.status(id).await["status"], "Completed");
    let (code, _) = e
        .control(
            Method::POST,
            "/control/advance",
            Some(json!({"seconds": -1})),
        )
        .await;
    assert_eq!(code, 400);

    // Balance.
    let (code, _) = e
        .control(
            Method::PUT,
            "/control/balance",
            Some(json!({"key": KEY, "balance": "5.5"})),
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(e.balance().await["balance"], "5.50000");
    let (code, _) = e
        .control(
            Method::PUT,
            "/control/balance",
            Some(json!({"key": "new-key", "balance": 2})),
        )
        .await;
    assert_eq!(code, 204);
    let v = e.form(&[("key", "new-key"), ("action", "balance")]).await;
    assert_eq!(v["balance"], "2.00000");
    let (code, body) = e
        .control(Method::GET, "/control/balance?key=new-key", None)
        .await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"key":"new-key","balance":"2.00000"}"#)
    );
    let (code, _) = e
        .control(Method::GET, "/control/balance?key=nobody", None)
        .await;
    assert_eq!(code, 404);

    // Services.
    let mut svc = e.sim().services()[0].clone();
    svc.rate = dec("1.23456");
    svc.name = "Repriced".into();
    let (code, _) = e
        .control(
            Method::PUT,
            "/control/services",
            Some(serde_json::to_value(vec![svc]).unwrap()),
        )
        .await;
    assert_eq!(code, 204);
    let v = e.form(&[("action", "services")]).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["rate"], "1.23456");
    assert_eq!(v[0]["name"], "Repriced");
    // Numbers are accepted for rates on input, `type` as an alias of `service_type`.
    let (code, _) = e
        .control(
            Method::PUT,
            "/control/services",
            Some(
                json!([{"id": 9, "name": "N", "type": "Package", "rate": 2.5, "min": 1, "max": 1}]),
            ),
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(e.sim().services()[0].rate, dec("2.5"));
    let (_, body) = e.control(Method::GET, "/control/services", None).await;
    let list: Vec<SimService> = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0].service_type, "Package");

    // Dialect round trip.
    let (code, body) = e.control(Method::GET, "/control/dialect", None).await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""numeric_status":false"#));
    let (code, _) = e
        .control(
            Method::PUT,
            "/control/dialect",
            Some(json!({"oops": 1, "numeric_status": true})),
        )
        .await;
    assert_eq!(code, 204, "unknown fields ignored");
    assert!(e.sim().dialect().numeric_status);
}

#[tokio::test]
async fn set_services_reprices_new_orders_only() {
    let e = env().await;
    let first = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/a"),
            ("quantity", "1000"),
        ])
        .await;
    let mut services = e.sim().services();
    services[0].rate = dec("2.00");
    e.sim().set_services(services);
    let second = e
        .add(&[
            ("service", "1"),
            ("link", "https://ig/b"),
            ("quantity", "1000"),
        ])
        .await;
    assert_eq!(e.status(first).await["charge"], "0.90000");
    assert_eq!(e.status(second).await["charge"], "2.00000");
    e.sim().set_services(vec![]);
    assert_eq!(
        e.add_err(&[
            ("service", "1"),
            ("link", "https://ig/c"),
            ("quantity", "1000")
        ])
        .await,
        "Incorrect service ID"
    );
    // Existing orders still answer.
    assert_eq!(e.status(first).await["status"], "Pending");
}

#[tokio::test]
async fn request_log_records_everything_in_order() {
    let e = env().await;
    let url = e.h.api_url();
    e.c.post(format!("{url}?via=query"))
        .form(&[("key", KEY), ("action", "balance"), ("via", "body")])
        .send()
        .await
        .unwrap();
    e.c.get(format!("{url}?key=bad&action=services"))
        .send()
        .await
        .unwrap();
    e.sim()
        .add_fault(FaultRule::always(Fault::EmptyBody).times(1));
    e.form_raw(&[("action", "status"), ("order", "1")]).await;
    e.advance(5);
    e.form_raw(&[("action", "nonsense")]).await;
    let log = e.sim().requests();
    assert_eq!(
        log.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(log[0].method, "POST");
    assert_eq!(
        log[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(log[0].action.as_deref(), Some("balance"));
    assert_eq!(log[0].params["via"], "body");
    assert_eq!(log[0].params["key"], KEY);
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].params["key"], "bad");
    assert_eq!(log[2].fault.as_deref(), Some("empty_body"));
    assert_eq!(log[3].action.as_deref(), Some("nonsense"));
    assert!(log[3].sim_time_ms >= log[2].sim_time_ms + 5000);
    e.sim().clear_requests();
    e.balance().await;
    assert_eq!(e.sim().requests()[0].seq, 5, "sequence keeps counting");
}

#[tokio::test]
async fn request_log_is_capped_and_can_be_disabled() {
    let e = env_with(SimConfig {
        max_log: 3,
        ..test_config()
    })
    .await;
    for _ in 0..5 {
        e.balance().await;
    }
    let log = e.sim().requests();
    assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(e.sim().log_dropped(), 2);

    let e = env_with(SimConfig {
        max_log: 0,
        ..test_config()
    })
    .await;
    e.balance().await;
    assert!(e.sim().requests().is_empty());
}

#[test]
fn config_from_toml() {
    let cfg = SimConfig::from_toml_str("seed = 3").unwrap();
    assert_eq!(cfg.seed, 3);
    assert_eq!(cfg.speed, 1.0);
    assert_eq!(cfg.services.len(), 20, "demo catalog by default");
    assert_eq!(cfg.accounts[0].key, "sim-key");
    assert_eq!(cfg.max_log, 1_000_000);

    let err = SimConfig::from_toml_str(
        r#"
[[services]]
id = 1
name = "x"
type = "Nonsense"
rate = "1"
"#,
    )
    .unwrap_err();
    assert!(matches!(err, SimError::Config(_)), "{err}");
    assert!(matches!(
        SimConfig::from_toml_str("seed = ["),
        Err(SimError::Toml(_))
    ));
    assert!(SimConfig::from_toml_str("speed = 0.0").is_err());
    let dup = r#"
[[services]]
id = 1
name = "a"
type = "Default"
rate = 1
[[services]]
id = 1
name = "b"
type = "Default"
rate = 1
"#;
    assert!(SimConfig::from_toml_str(dup).is_err());
}

#[test]
fn readme_example_config_parses() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n").expect("toml block in README") + "```toml\n".len();
    let len = readme[start..].find("```").unwrap();
    let cfg = SimConfig::from_toml_str(&readme[start..start + len]).unwrap();
    assert_eq!(cfg.services.len(), 3);
    assert_eq!(cfg.accounts.len(), 2);
    assert_eq!(cfg.services[0].rate, dec("0.90"));
    assert_eq!(cfg.services[0].rate.to_string(), "0.90");
    assert!(cfg.dialect.cancelled_spelling);
    assert_eq!(cfg.outages.len(), 2);
    assert_eq!(
        cfg.services[0].profile.partial_undelivered,
        Some([0.2, 0.6])
    );
    assert!(cfg.services[1].profile.is_unset());
}

#[test]
fn types_round_trip_through_serde() {
    let rule = FaultRule::always(Fault::Latency { ms: 5 }).on_service(3);
    let text = serde_json::to_string(&rule).unwrap();
    assert_eq!(
        text,
        r#"{"fault":{"kind":"latency","ms":5},"action":null,"service":3,"times":null}"#
    );
    assert_eq!(serde_json::from_str::<FaultRule>(&text).unwrap(), rule);
    for f in [
        Fault::Hang,
        Fault::Http500,
        Fault::Html200,
        Fault::EmptyBody,
        Fault::RateLimited,
        Fault::DropAfterRecord,
        Fault::DropBeforeRecord,
        Fault::Garbled,
        Fault::Redirect,
        Fault::Unavailable,
    ] {
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["kind"], f.name());
    }
    let cfg = SimConfig::demo();
    let back: SimConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back.services, cfg.services);
    assert_eq!(back.accounts, cfg.accounts);
}

#[tokio::test]
async fn bulk_orders_and_request_counts() {
    let e = env().await;
    let before = e.balance().await;
    let (code, body) = e
        .control(
            Method::POST,
            "/control/orders",
            Some(json!({"count": 3, "params": {
                "key": KEY, "service": "1", "link": "https://ig/bulk", "quantity": "100"}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let range: Value = serde_json::from_str(&body).unwrap();
    let (first, last) = (
        range["first"].as_u64().unwrap(),
        range["last"].as_u64().unwrap(),
    );
    assert_eq!(last, first + 2);
    // Real orders: charged like three `add`s, queryable, and absent from the request log.
    let orders = e.sim().orders();
    assert_eq!(
        orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![first, first + 1, first + 2]
    );
    let spent = dec(before["balance"].as_str().unwrap())
        - dec(e.balance().await["balance"].as_str().unwrap());
    assert_eq!(spent, dec("0.27"));
    assert!(
        e.sim()
            .requests()
            .iter()
            .all(|r| r.action.as_deref() != Some("add"))
    );
    // A refusal stops the batch and says why.
    let (code, body) = e
        .control(
            Method::POST,
            "/control/orders",
            Some(json!({"count": 2, "params": {"key": KEY, "service": "999", "link": "x"}})),
        )
        .await;
    assert_eq!(code, 422);
    assert!(body.contains("Incorrect service ID"), "{body}");

    // Counts by action, status ids included; the bulk endpoint is not an API request.
    let ids = format!("{first},{},{last}", first + 1);
    e.form(&[("action", "status"), ("orders", &ids)]).await;
    e.status(first).await;
    let (code, body) = e.control(Method::GET, "/control/counts", None).await;
    assert_eq!(code, 200);
    let counts: smm_panel_sim::RequestCounts = serde_json::from_str(&body).unwrap();
    assert_eq!(counts.actions.get("status"), Some(&2));
    assert_eq!(counts.actions.get("add"), None);
    assert_eq!(counts.status_ids, 4);
}

#[test]
fn scaled_catalog_has_distinct_ids_and_names() {
    let services = SimConfig::scaled_services(2_000);
    assert_eq!(services.len(), 2_000);
    assert_eq!(services[1_999].id, 2_000);
    let names: std::collections::HashSet<_> = services.iter().map(|s| &s.name).collect();
    assert_eq!(names.len(), 2_000);
    let cfg = SimConfig {
        services,
        ..SimConfig::demo()
    };
    cfg.validate().unwrap();
}
