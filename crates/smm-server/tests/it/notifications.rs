//! Notifications end to end (issue #14): customers' webhooks pushed from the outbox to a
//! receiver on 127.0.0.1 (signed, in order per order, retried after 500s and timeouts,
//! paused and resumed, refused towards private addresses), and the reseller's alerts on
//! every channel kind (generic webhook, Slack, Telegram, e-mail) against local fakes.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use smm_notify::signing;
use smm_panel_sim::{Fault, FaultRule};
use smm_server::config::Settings;
use smm_server::config::notifications::{AlertChannelKind, AlertChannelSettings, SmtpSecurity};
use smm_store::{ForwardState, WebhookEventState};

use crate::support::{
    Answer, Backend, LINK, Receiver, SmtpSink, TestGateway, now_ms, temp_dir, wait_for, write_file,
};

both_backends!(
    webhooks_push_every_status_change_signed_and_in_order,
    failing_receivers_are_retried_then_paused_and_resumed,
    webhook_urls_may_not_reach_private_addresses,
    alert_conditions_alert_once_when_they_start_and_once_when_they_clear,
    price_moves_and_the_daily_summary_are_told_once,
);

/// Past the end of every order plan of the simulators.
const LONG: Duration = Duration::from_secs(4 * 3600);

fn quick_webhooks(settings: &mut Settings) {
    settings.webhooks.allow_private_targets = true;
    settings.webhooks.interval_ms = 20;
    settings.webhooks.timeout_secs = 1;
    settings.webhooks.first_retry_secs = 1;
    settings.webhooks.max_retry_secs = 1;
}

fn alert_webhook(name: &str, url: &str) -> AlertChannelSettings {
    AlertChannelSettings {
        name: name.into(),
        kind: AlertChannelKind::Webhook,
        url: Some(url.into()),
        secret_env: None,
        secret_file: None,
        chat_id: None,
        smtp_host: None,
        smtp_port: None,
        smtp_security: SmtpSecurity::Plain,
        smtp_username: None,
        from: None,
        to: Vec::new(),
    }
}

/// Sets the test customer's webhook through the admin API; returns the secret shown once.
async fn set_webhook(gw: &TestGateway, url: &str) -> String {
    let (status, body) = gw
        .admin(
            Method::PUT,
            &format!("/admin/v1/customers/{}/webhook", gw.customer.0),
            Some(&json!({ "url": url })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook"]["url"], url);
    let secret = body["secret"].as_str().expect("the secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    // Never shown again.
    let (_, shown) = gw
        .admin(
            Method::GET,
            &format!("/admin/v1/customers/{}/webhook", gw.customer.0),
            None,
        )
        .await;
    assert!(!shown.to_string().contains(&secret));
    secret
}

/// Every request the receiver got verifies with `secret` now, and its event id header
/// matches its body.
fn assert_signed(received: &[crate::support::receiver::Received], secret: &str) {
    for r in received {
        let header = r.header(signing::SIGNATURE_HEADER).expect("signed");
        signing::verify(secret, &header, &r.body, now_ms() / 1000, 300)
            .unwrap_or_else(|e| panic!("signature of {:?} fails: {e:?}", r.json()));
        assert!(
            signing::verify("whsec_wrong", &header, &r.body, now_ms() / 1000, 300).is_err(),
            "another secret does not verify"
        );
        let body = r.json();
        assert_eq!(
            r.header(signing::EVENT_ID_HEADER).as_deref(),
            Some(body["event_id"].to_string().as_str())
        );
        assert_eq!(
            r.header(signing::EVENT_TYPE_HEADER).as_deref(),
            body["event"].as_str()
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
    }
}

/// Orders placed, forwarded and polled to their ends: the receiver gets every status change
/// and refund of each order at least once, in order, signed, with `status`'s own fields; none
/// is invented.
pub async fn webhooks_push_every_status_change_signed_and_in_order(backend: Backend) {
    let gw = TestGateway::start_polling(backend, quick_webhooks).await;
    let receiver = Receiver::start().await;
    let secret = set_webhook(&gw, &format!("{}/hooks/smm", receiver.base)).await;

    let mut ids = Vec::new();
    for (service, quantity) in [(1, 100), (2, 250), (3, 400), (1, 120), (2, 500), (3, 300)] {
        let service = service.to_string();
        let quantity = quantity.to_string();
        ids.push(
            gw.add_ok(&[
                ("service", &service),
                ("link", LINK),
                ("quantity", &quantity),
            ])
            .await,
        );
    }
    for id in &ids {
        gw.wait_forwarded(*id).await;
    }
    // Two polls: part of the way, then to the end.
    gw.advance_sims(Duration::from_secs(90));
    gw.make_polls_due().await;
    gw.reconcile().await;
    gw.advance_sims(LONG);
    for _ in 0..3 {
        gw.make_polls_due().await;
        gw.reconcile().await;
    }
    let orders: Vec<_> = futures_util::future::join_all(ids.iter().map(|id| gw.order(*id))).await;
    assert!(
        orders.iter().all(|o| o.status.is_terminal()),
        "every order ended: {:?}",
        orders.iter().map(|o| &o.status).collect::<Vec<_>>()
    );

    // What the store recorded is what must arrive.
    let recorded = gw
        .store()
        .webhook_events(gw.customer, 1000, None)
        .await
        .expect("events");
    assert!(!recorded.is_empty());
    let received = receiver
        .wait_until(Duration::from_secs(20), "every event", |r| {
            let ids: std::collections::BTreeSet<i64> = r
                .iter()
                .filter_map(|r| r.json()["event_id"].as_i64())
                .collect();
            recorded.iter().all(|e| ids.contains(&e.id))
        })
        .await;
    assert!(received.iter().all(|r| r.path == "/hooks/smm"));
    assert_signed(&received, &secret);
    // None invented: every event id received was recorded, with the same body each time.
    let mut bodies: BTreeMap<i64, Value> = BTreeMap::new();
    for r in &received {
        let body = r.json();
        let id = body["event_id"].as_i64().expect("event id");
        assert!(recorded.iter().any(|e| e.id == id), "invented event {body}");
        if let Some(first) = bodies.insert(id, body.clone()) {
            assert_eq!(first, body, "a repeated event carries the same body");
        }
    }
    // Per order, in order: each status change continues from the one before, from Pending to
    // what `status` shows now, with the same fields.
    for order in &orders {
        let changes: Vec<Value> = received
            .iter()
            .map(|r| r.json())
            .filter(|b| b["event"] == "order.status" && b["order"] == json!(order.id.0))
            .fold(Vec::new(), |mut seen: Vec<Value>, b| {
                // A redelivery repeats an event; keep the first arrival.
                if !seen.iter().any(|s| s["event_id"] == b["event_id"]) {
                    seen.push(b);
                }
                seen
            });
        assert!(!changes.is_empty(), "order {} told of", order.id);
        let ids: Vec<i64> = changes
            .iter()
            .filter_map(|c| c["event_id"].as_i64())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
        assert_eq!(changes[0]["previous_status"], "Pending");
        for pair in changes.windows(2) {
            assert_eq!(pair[1]["previous_status"], pair[0]["status"], "{changes:?}");
        }
        let last = changes.last().expect("a change");
        let status = gw
            .api("status", &[("order", &order.id.0.to_string())])
            .await;
        for field in ["charge", "start_count", "status", "remains", "currency"] {
            assert_eq!(
                last[field], status[field],
                "order {} field {field}",
                order.id
            );
        }
        // A refund is told with the status change that pays it.
        if order.refunded.is_positive() {
            let refund = received
                .iter()
                .map(|r| r.json())
                .find(|b| b["event"] == "refund.paid" && b["order"] == json!(order.id.0))
                .expect("refund told");
            assert_eq!(refund["amount"], order.refunded.to_string());
            assert_eq!(refund["currency"], "USD");
        }
    }
    // The delivery log shows each attempt.
    let (status, log) = gw
        .admin(
            Method::GET,
            &format!(
                "/admin/v1/customers/{}/webhook/deliveries?limit=1000",
                gw.customer.0
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let log = log["deliveries"].as_array().expect("deliveries").clone();
    assert_eq!(log.len(), received.len(), "one log row per attempt");
    assert!(log.iter().all(|d| d["http_status"] == 200));
    gw.finish().await;
}

/// A receiver answering 500 twice, then too slowly, gets the event again each time under the
/// same id until it answers 200; one that keeps failing past the retry window is paused, the
/// reseller is alerted, and resuming delivers what waited.
pub async fn failing_receivers_are_retried_then_paused_and_resumed(backend: Backend) {
    let alerts = Receiver::start().await;
    let alerts_url = format!("{}/ops", alerts.base);
    let gw = TestGateway::start_polling(backend, |s| {
        quick_webhooks(s);
        s.webhooks.retry_window_secs = 4;
        s.alerts.channels = vec![alert_webhook("ops", &alerts_url)];
        s.alerts.interval_secs = 1;
    })
    .await;
    let receiver = Receiver::start().await;
    let secret = set_webhook(&gw, &format!("{}/hook", receiver.base)).await;
    let id = gw.customer.0;
    let (status, _) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/customers/{id}/low-balance"),
            Some(&json!({ "threshold": "900" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // 500, 500, a reply after the 1 s timeout, then 200.
    receiver.script(&[
        Answer::Status(500),
        Answer::Status(500),
        Answer::Slow(Duration::from_secs(3)),
    ]);
    let debit = |amount: &'static str| {
        let gw = &gw;
        async move {
            let (status, body) = gw
                .admin(
                    Method::POST,
                    &format!("/admin/v1/customers/{id}/debit"),
                    Some(&json!({ "amount": amount, "reason": "test" })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    debit("200").await;
    let received = receiver
        .wait_until(Duration::from_secs(20), "the fourth attempt", |r| {
            r.len() >= 4
        })
        .await;
    assert_signed(&received, &secret);
    let first = received[0].json();
    assert_eq!(first["event"], "balance.low");
    assert_eq!(first["balance"], "800.00000");
    assert_eq!(first["threshold"], "900.00000");
    assert!(
        received.iter().all(|r| r.json() == first),
        "the same event each time"
    );
    let event_id = first["event_id"].as_i64().expect("id");
    wait_for("the event delivered", Duration::from_secs(10), || async {
        gw.store()
            .webhook_event(event_id)
            .await
            .is_ok_and(|e| e.state == WebhookEventState::Delivered)
    })
    .await;
    let (_, log) = gw
        .admin(
            Method::GET,
            &format!("/admin/v1/customers/{id}/webhook/deliveries"),
            None,
        )
        .await;
    let statuses: Vec<Value> = log["deliveries"]
        .as_array()
        .expect("log")
        .iter()
        .rev()
        .map(|d| d["http_status"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(500), Value::Null, json!(200)]);

    // Now it fails for good: paused once the window passes, the reseller alerted.
    receiver.answer_always(Answer::Status(503));
    // Back above the threshold, and below again: a second crossing, a second event.
    let (status, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/customers/{id}/credit"),
            Some(&json!({ "amount": "300", "reason": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    debit("300").await;
    wait_for("the webhook paused", Duration::from_secs(20), || async {
        gw.store()
            .webhook(gw.customer)
            .await
            .is_ok_and(|w| w.paused_at.is_some())
    })
    .await;
    let told = alerts
        .wait_until(Duration::from_secs(20), "the pause alert", |r| {
            r.iter().any(|r| {
                r.json()["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("webhook.paused:"))
            })
        })
        .await;
    let alert = told
        .iter()
        .map(|r| r.json())
        .find(|b| {
            b["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("webhook.paused:"))
        })
        .expect("alert");
    assert_eq!(alert["state"], "event");
    assert!(alert["title"].as_str().expect("title").contains("paused"));
    // Paused: nothing more is tried.
    let tried = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        tried,
        "a paused receiver gets nothing"
    );
    let (_, view) = gw
        .admin(
            Method::GET,
            &format!("/admin/v1/customers/{id}/webhook"),
            None,
        )
        .await;
    assert_eq!(view["pending"], 1);

    // Resumed: what waited goes out.
    receiver.answer_always(Answer::Status(200));
    let (status, view) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/customers/{id}/webhook/resume"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["paused_at"], Value::Null);
    wait_for(
        "the waiting event delivered",
        Duration::from_secs(10),
        || async {
            gw.store()
                .webhook(gw.customer)
                .await
                .is_ok_and(|w| w.pending == 0)
        },
    )
    .await;

    // A resend goes out again under the same id.
    let before = receiver.received().len();
    let (status, resent) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/webhook-events/{event_id}/resend"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resent}");
    let received = receiver
        .wait_until(Duration::from_secs(10), "the resend", |r| r.len() > before)
        .await;
    assert_eq!(received.last().expect("resent").json(), first);
    gw.finish().await;
}

/// URLs naming or resolving to loopback, private or link-local addresses are refused when set
/// (nothing is sent), and an event whose URL points there at delivery is not sent: the
/// customer's deliveries are paused at once.
pub async fn webhook_urls_may_not_reach_private_addresses(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |s| {
        s.webhooks.interval_ms = 20;
    })
    .await;
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().expect("port").to_owned();
    let id = gw.customer.0;
    for url in [
        receiver.base.clone(),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://10.1.2.3/hook".into(),
        "http://192.168.1.1/hook".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://0.0.0.0/".into(),
        "ftp://example.com/hook".into(),
        "https://user:pass@example.com/hook".into(),
        "not a url".into(),
    ] {
        let (status, body) = gw
            .admin(
                Method::PUT,
                &format!("/admin/v1/customers/{id}/webhook"),
                Some(&json!({ "url": url })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{url}");
    }
    let (_, view) = gw
        .admin(
            Method::GET,
            &format!("/admin/v1/customers/{id}/webhook"),
            None,
        )
        .await;
    assert_eq!(view["url"], Value::Null, "nothing was set");

    // As if a public name now resolved to loopback: the URL is in the store, unchecked.
    gw.store()
        .set_webhook(
            gw.customer,
            Some((&format!("{}/hook", receiver.base), "whsec_x")),
            "test",
            now_ms(),
        )
        .await
        .expect("set directly");
    let (status, _) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/customers/{id}/low-balance"),
            Some(&json!({ "threshold": "999" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/customers/{id}/debit"),
            Some(&json!({ "amount": "5", "reason": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for("the webhook paused", Duration::from_secs(10), || async {
        gw.store()
            .webhook(gw.customer)
            .await
            .is_ok_and(|w| w.paused_at.is_some())
    })
    .await;
    assert!(receiver.received().is_empty(), "nothing reached 127.0.0.1");
    let log = gw
        .store()
        .webhook_deliveries(gw.customer, 10, None)
        .await
        .expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].http_status, None);
    assert!(
        log[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("private")),
        "{log:?}"
    );
    gw.finish().await;
}

/// A provider cooling down, an ambiguous order and a refused reload each alert once (however
/// many rounds see them) and the conditions clear once when they end.
pub async fn alert_conditions_alert_once_when_they_start_and_once_when_they_clear(
    backend: Backend,
) {
    let alerts = Receiver::start().await;
    let url = format!("{}/ops", alerts.base);
    let gw = TestGateway::start_polling(backend, |s| {
        s.alerts.channels = vec![alert_webhook("ops", &url)];
        s.alerts.interval_secs = 1;
        s.alerts.cooldown_secs = 0;
        s.webhooks.interval_ms = 20;
    })
    .await;
    let alpha = gw.app().provider("alpha").expect("alpha");
    for _ in 0..10 {
        alpha.health.record_failure();
    }
    let keyed = |key: &'static str| {
        move |r: &[crate::support::receiver::Received]| {
            r.iter().filter(|r| r.json()["key"] == key).count()
        }
    };
    alerts
        .wait_until(Duration::from_secs(15), "the cooldown alert", |r| {
            keyed("provider.down:alpha")(r) >= 1
        })
        .await;
    // More rounds see it; no second alert.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let received = alerts.received();
    assert_eq!(keyed("provider.down:alpha")(&received), 1);
    let started = received
        .iter()
        .map(|r| r.json())
        .find(|b| b["key"] == "provider.down:alpha")
        .expect("alert");
    assert_eq!(started["state"], "started");
    let (status, active) = gw.admin(Method::GET, "/admin/v1/alerts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        active["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["key"] == "provider.down:alpha"),
        "{active}"
    );
    alpha.health.record_success();
    let received = alerts
        .wait_until(Duration::from_secs(15), "the clear", |r| {
            keyed("provider.down:alpha")(r) >= 2
        })
        .await;
    let cleared = received
        .iter()
        .map(|r| r.json())
        .filter(|b| b["key"] == "provider.down:alpha")
        .nth(1)
        .expect("clear");
    assert_eq!(cleared["state"], "cleared");

    // An order whose send was lost: ambiguous, alerted by id; resolved, cleared.
    gw.alpha().add_fault(
        FaultRule::always(Fault::DropAfterRecord)
            .on_action("add")
            .times(1),
    );
    let order = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    gw.wait_state(order, ForwardState::Ambiguous).await;
    let key = format!("order.ambiguous:{}", order.0);
    let received = alerts
        .wait_until(Duration::from_secs(15), "the ambiguous alert", |r| {
            r.iter().any(|r| r.json()["key"] == key.as_str())
        })
        .await;
    let told = received
        .iter()
        .map(|r| r.json())
        .find(|b| b["key"] == key.as_str())
        .expect("alert");
    assert_eq!(told["state"], "started");
    assert!(told["title"].as_str().expect("title").contains("ambiguous"));
    let (status, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{}/cancel-ambiguous", order.0),
            Some(&json!({ "reason": "not found upstream" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alerts
        .wait_until(Duration::from_secs(15), "the ambiguous clear", |r| {
            r.iter()
                .filter(|r| r.json()["key"] == key.as_str())
                .any(|r| r.json()["state"] == "cleared")
        })
        .await;
    let once = alerts
        .received()
        .iter()
        .filter(|r| r.json()["key"] == key.as_str())
        .count();
    assert_eq!(once, 2, "one start, one clear");

    // A refused reload.
    let mut bad = (*gw.app().settings()).clone();
    bad.server.currency = String::new();
    assert!(gw.app().reload(bad, "test").await.is_err());
    let received = alerts
        .wait_until(Duration::from_secs(15), "the reload alert", |r| {
            r.iter().any(|r| {
                r.json()["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("config.reload_refused:"))
            })
        })
        .await;
    let refused = received
        .iter()
        .map(|r| r.json())
        .find(|b| {
            b["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("config.reload_refused:"))
        })
        .expect("alert");
    assert!(
        refused["lines"].to_string().contains("server.currency"),
        "{refused}"
    );
    gw.finish().await;
}

/// `smm-gateway alerts test` reaches every channel kind: a JSON webhook, Slack, Telegram's
/// Bot API and an SMTP server, each a fake on 127.0.0.1 speaking that wire format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_test_reaches_every_channel_kind() {
    let web = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let dir = temp_dir();
    let slack_url = write_file(
        dir.path(),
        "slack",
        &format!("{}/services/T0/B0/XYZ", web.base),
    );
    let token = write_file(dir.path(), "bot", "123456:TEST-token");
    let config = write_file(
        dir.path(),
        "gateway.toml",
        &format!(
            r#"
[database]
url = "sqlite://{db}"

[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{base}/ops"

[[alerts.channels]]
name = "slack"
kind = "slack"
secret_file = "{slack}"

[[alerts.channels]]
name = "telegram"
kind = "telegram"
url = "{base}"
secret_file = "{token}"
chat_id = "-100777"

[[alerts.channels]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_security = "plain"
from = "gateway@example.com"
to = ["owner@example.com", "ops@example.com"]
"#,
            db = dir.path().join("gw.db").display(),
            base = web.base,
            slack = slack_url.display(),
            token = token.display(),
            port = smtp.port,
        ),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_smm-gateway"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "alerts",
            "test",
        ])
        .output()
        .expect("run smm-gateway");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for name in ["hook", "slack", "telegram", "mail"] {
        assert!(stdout.contains(&format!("{name}\tsent")), "{stdout}");
    }
    let received = web.received();
    let by_path = |path: &str| {
        received
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("nothing at {path}: {received:?}"))
            .json()
    };
    assert_eq!(by_path("/ops")["title"], "smm-gateway test alert");
    assert!(
        by_path("/services/T0/B0/XYZ")["text"]
            .as_str()
            .expect("slack text")
            .contains("smm-gateway test alert")
    );
    let telegram = by_path("/bot123456:TEST-token/sendMessage");
    assert_eq!(telegram["chat_id"], "-100777");
    assert!(
        telegram["text"]
            .as_str()
            .expect("text")
            .contains("test alert")
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "gateway@example.com");
    assert_eq!(mails[0].to, ["owner@example.com", "ops@example.com"]);
    assert!(
        mails[0]
            .data
            .contains("Subject: [smm-gateway] smm-gateway test alert")
    );
    assert!(!stdout.contains("TEST-token") && !stderr.contains("TEST-token"));

    // A channel that refuses makes the command fail, naming it.
    web.answer_always(Answer::Status(500));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_smm-gateway"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "alerts",
            "test",
        ])
        .output()
        .expect("run smm-gateway");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("hook\tFAILED"), "{stdout}");
    assert!(stdout.contains("mail\tsent"), "{stdout}");
    assert!(!stdout.contains("TEST-token"));
}

/// An upstream price that moved beyond `sync.price_change_alert_percent` is told once,
/// however many syncs see the move; the daily summary goes out once a day.
pub async fn price_moves_and_the_daily_summary_are_told_once(backend: Backend) {
    let alerts = Receiver::start().await;
    let url = format!("{}/ops", alerts.base);
    let gw = TestGateway::start_polling(backend, |s| {
        s.alerts.channels = vec![alert_webhook("ops", &url)];
        s.alerts.interval_secs = 1;
        s.alerts.daily_summary_hour = Some(0);
        s.webhooks.interval_ms = 20;
    })
    .await;
    let summary = alerts
        .wait_until(Duration::from_secs(15), "the daily summary", |r| {
            r.iter().any(|r| {
                r.json()["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("summary:"))
            })
        })
        .await
        .iter()
        .map(|r| r.json())
        .find(|b| b["key"].as_str().is_some_and(|k| k.starts_with("summary:")))
        .expect("summary");
    assert_eq!(summary["state"], "event");
    let lines = summary["lines"].to_string();
    for figure in [
        "orders:",
        "revenue:",
        "refunds:",
        "profit:",
        "open problems:",
    ] {
        assert!(lines.contains(figure), "{figure} in {lines}");
    }

    // Alpha's service 1 costs 50 % more from now on.
    let mut services = gw.alpha().services();
    let one = services.iter_mut().find(|s| s.id == 1).expect("service 1");
    let old = one.rate;
    one.rate = old * rust_decimal::Decimal::new(15, 1);
    gw.alpha().set_services(services);
    for _ in 0..3 {
        gw.app().sync_catalog().await;
    }
    alerts
        .wait_until(Duration::from_secs(15), "the price alert", |r| {
            r.iter().any(|r| {
                r.json()["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("price.moved:alpha:"))
            })
        })
        .await;
    // Later rounds and syncs add nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = alerts.received();
    let moves: Vec<Value> = all
        .iter()
        .map(|r| r.json())
        .filter(|b| {
            b["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("price.moved:alpha:"))
        })
        .collect();
    assert_eq!(
        moves.len(),
        1,
        "one alert for one move, three syncs: {moves:?}"
    );
    assert!(
        moves[0]["lines"].to_string().contains("rate moved"),
        "{}",
        moves[0]
    );
    let summaries = all
        .iter()
        .filter(|r| {
            r.json()["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("summary:"))
        })
        .count();
    assert_eq!(summaries, 1, "one summary a day");
    gw.finish().await;
}
