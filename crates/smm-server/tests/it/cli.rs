//! The `smm-gateway` binary as an operator runs it: config check reports every problem with
//! its location, the environment overrides files, and customer commands keep exact books.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{funded_customer, temp_dir, text};

fn gateway(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smm-gateway"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("SMM_GATEWAY_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run smm-gateway")
}

#[test]
fn config_check_reports_every_problem_with_its_location() {
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        r#"
[server]
listen = "not an address"

[[providers]]
name = "alpha"
url = "ftp://alpha.example/api/v2"
key_env = "SMM_TEST_SURELY_UNSET_KEY"

[[services]]
id = 1
routes = [{ provider = "nowhere", service = "5" }]

[[services]]
id = 1
routes = [{ provider = "alpha", service = "6" }]
"#,
    )
    .expect("write config");
    let output = gateway(
        &dir,
        &["--config", file.to_str().expect("utf-8"), "config", "check"],
        &[],
    );
    let report = text(&output);
    assert!(!output.status.success(), "{report}");
    for expected in [
        "server.listen",
        "providers[0].url",
        "providers[0].key_env",
        "SMM_TEST_SURELY_UNSET_KEY",
        "services[0].routes[0].provider",
        "services[1]",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    // The same report refuses start-up.
    let serve = gateway(
        &dir,
        &["--config", file.to_str().expect("utf-8"), "serve"],
        &[],
    );
    assert!(!serve.status.success());
    assert!(text(&serve).contains("server.listen"));
}

#[test]
fn environment_overrides_files_and_keys_come_from_env() {
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let file = dir.join("ok.toml");
    std::fs::write(
        &file,
        r#"
[server]
listen = "127.0.0.1:1"

[[providers]]
name = "alpha"
url = "https://alpha.example/api/v2"
key_env = "SMM_TEST_ALPHA_KEY"
"#,
    )
    .expect("write config");
    let path = file.to_str().expect("utf-8");
    let without_key = gateway(&dir, &["--config", path, "config", "check"], &[]);
    assert!(!without_key.status.success());
    let ok = gateway(
        &dir,
        &["--config", path, "config", "check"],
        &[("SMM_TEST_ALPHA_KEY", "secret-provider-key")],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(!text(&ok).contains("secret-provider-key"));
    let shown = gateway(
        &dir,
        &["--config", path, "config", "show"],
        &[
            ("SMM_TEST_ALPHA_KEY", "secret-provider-key"),
            ("SMM_GATEWAY__SERVER__LISTEN", "127.0.0.1:9999"),
        ],
    );
    let shown = text(&shown);
    assert!(shown.contains("127.0.0.1:9999"), "{shown}");
    assert!(!shown.contains("secret-provider-key"));
}

#[test]
fn customer_commands_keep_exact_books() {
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let db = format!("sqlite://{}/cli.db", dir.display());
    let env = [("SMM_GATEWAY__DATABASE__URL", db.as_str())];
    let created = gateway(&dir, &["customers", "create", "--name", "Acme"], &env);
    let created_text = text(&created);
    assert!(created.status.success(), "{created_text}");
    let key = created_text
        .lines()
        .find_map(|l| l.strip_prefix("API key (shown once, store it now): "))
        .expect("the key is printed once")
        .trim()
        .to_owned();
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));

    let credit = gateway(
        &dir,
        &["customers", "credit", "1", "25.00001", "--reason", "wire"],
        &env,
    );
    assert!(
        text(&credit).contains("balance now 25.00001"),
        "{}",
        text(&credit)
    );
    let debit = gateway(
        &dir,
        &["customers", "debit", "1", "0.00001", "--reason", "fix"],
        &env,
    );
    assert!(
        text(&debit).contains("balance now 25.00000"),
        "{}",
        text(&debit)
    );
    let overdraw = gateway(
        &dir,
        &["customers", "debit", "1", "30", "--reason", "x"],
        &env,
    );
    assert!(!overdraw.status.success());
    let inexact = gateway(
        &dir,
        &["customers", "credit", "1", "0.000001", "--reason", "x"],
        &env,
    );
    assert!(!inexact.status.success());
    let show = text(&gateway(&dir, &["customers", "show", "1"], &env));
    assert!(show.contains("25.00000"), "{show}");
    assert!(show.contains("wire") && show.contains("fix"), "{show}");
    assert!(!show.contains(&key), "the key is never shown again");

    let rotated = text(&gateway(&dir, &["customers", "rotate-key", "1"], &env));
    let new_key = rotated
        .lines()
        .find_map(|l| l.strip_prefix("new API key (shown once, store it now): "))
        .expect("new key printed")
        .trim()
        .to_owned();
    assert_ne!(new_key, key);
    let listed = text(&gateway(&dir, &["customers", "list"], &env));
    assert!(
        listed.contains("Acme") && listed.contains(&new_key[..6]),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_orders_are_listed_attached_or_canceled_and_audited() {
    use smm_store::{ForwardOutcome, ForwardState, NewOrder, Placed, ServiceId};
    use smm_wire::Money;

    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let url = format!("sqlite://{}/cli.db", dir.display());
    let store = smm_store::connect(&url).await.expect("store");
    let customer = funded_customer(
        store.as_ref(),
        "amb",
        "amb-key",
        Money::from_units(500_000),
        "test",
        0,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let placed = store
            .place_order(
                NewOrder {
                    customer_id: customer.id,
                    service_id: ServiceId(1),
                    service_type: "Default".into(),
                    params: "{}".into(),
                    link: Some("https://x.test/p".into()),
                    quantity: Some(100),
                    units: 100,
                    charge: Money::from_units(100_000),
                    idempotency_key: None,
                    placed_as: None,
                    request_fingerprint: None,
                },
                1,
            )
            .await
            .expect("place");
        let Placed::New(order) = placed else {
            panic!("new order expected")
        };
        ids.push(order.id);
    }
    store.claim_for_forwarding("w", 10, 2).await.expect("claim");
    for id in &ids {
        store
            .begin_attempt(*id, "alpha", "1", 3)
            .await
            .expect("begin");
        store
            .finish_attempt(
                *id,
                ForwardOutcome::Ambiguous {
                    detail: "timeout".into(),
                },
                4,
            )
            .await
            .expect("ambiguous");
    }
    let file = dir.join("gw.toml");
    std::fs::write(
        &file,
        format!(
            "[database]\nurl = \"{url}\"\n\n[[providers]]\nname = \"alpha\"\nurl = \"https://alpha.example/api/v2\"\nkey_env = \"SMM_TEST_ALPHA_KEY\"\n"
        ),
    )
    .expect("config");
    let config = file.to_str().expect("utf-8");
    let env = [("SMM_TEST_ALPHA_KEY", "k")];

    let listed = text(&gateway(
        &dir,
        &["--config", config, "orders", "ambiguous"],
        &env,
    ));
    assert!(listed.contains(&format!("order {}", ids[0])), "{listed}");
    assert!(listed.contains(&format!("order {}", ids[1])), "{listed}");
    assert!(
        listed.contains("timeout") && listed.contains("provider alpha"),
        "{listed}"
    );

    let attach = gateway(
        &dir,
        &[
            "--config",
            config,
            "orders",
            "attach",
            &ids[0].to_string(),
            "--provider",
            "alpha",
            "--upstream",
            "777",
        ],
        &env,
    );
    assert!(attach.status.success(), "{}", text(&attach));
    let cancel = gateway(
        &dir,
        &[
            "--config",
            config,
            "orders",
            "cancel-ambiguous",
            &ids[1].to_string(),
            "--reason",
            "not upstream",
        ],
        &env,
    );
    assert!(
        text(&cancel).contains("refunded 1.00000"),
        "{}",
        text(&cancel)
    );
    // A second resolution is refused.
    let again = gateway(
        &dir,
        &[
            "--config",
            config,
            "orders",
            "cancel-ambiguous",
            &ids[1].to_string(),
            "--reason",
            "x",
        ],
        &env,
    );
    assert!(!again.status.success());

    let attached = store.order(ids[0]).await.expect("order");
    assert_eq!(attached.forward_state, ForwardState::Sent);
    assert_eq!(attached.upstream_order_id.as_deref(), Some("777"));
    let canceled = store.order(ids[1]).await.expect("order");
    assert_eq!(canceled.forward_state, ForwardState::Rejected);
    assert_eq!(canceled.refunded, canceled.charge);
    let after = store.customer(customer.id).await.expect("customer");
    assert_eq!(
        after.balance,
        store.ledger_sum(customer.id).await.expect("sum")
    );
    assert_eq!(after.balance, Money::from_units(400_000));
    let audit = store.audit_log(10).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "order.attach_upstream" && a.actor.starts_with("cli:"))
    );
    assert!(
        audit
            .iter()
            .any(|a| a.action == "order.cancel_ambiguous" && a.actor.starts_with("cli:"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_prices_are_set_shown_refused_and_cleared_from_the_cli() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let url = format!("sqlite://{}/cli.db", dir.display());
    let file = dir.join("gw.toml");
    std::fs::write(
        &file,
        format!(
            "[database]\nurl = \"{url}\"\n\n[[providers]]\nname = \"alpha\"\nurl = \"https://alpha.example/api/v2\"\nkey_env = \"SMM_TEST_ALPHA_KEY\"\n\n[[services]]\nid = 1\nroutes = [{{ provider = \"alpha\", service = \"1\" }}]\n"
        ),
    )
    .expect("config");
    let config = file.to_str().expect("utf-8");
    let env = [("SMM_TEST_ALPHA_KEY", "k")];
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config, "customers"];
        all.extend_from_slice(args);
        gateway(dir, &all, &env)
    };
    let created = run(&["create", "--name", "Priced"]);
    assert!(created.status.success(), "{}", text(&created));

    let discount = run(&["discount", "1", "12.5"]);
    assert!(discount.status.success(), "{}", text(&discount));
    assert!(
        text(&discount).contains("discount 12.5%"),
        "{}",
        text(&discount)
    );
    let rate = run(&["rate", "1", "1", "0.4321"]);
    assert!(rate.status.success(), "{}", text(&rate));
    assert!(
        text(&rate).contains("service 1\trate 0.4321"),
        "{}",
        text(&rate)
    );
    // Refused, and nothing changes: out of range, not a decimal, too precise, an unknown
    // service, an unknown customer, neither a value nor --clear, both.
    for args in [
        &["discount", "1", "100"][..],
        &["discount", "1", "0"],
        &["discount", "1", "ten"],
        &["discount", "1", "1e1"],
        &["rate", "1", "1", "-1"],
        &["rate", "1", "1", "0.000001"],
        &["rate", "1", "2", "1"],
        &["rate", "9", "1", "1"],
        &["discount", "1"],
        &["rate", "1", "1"],
        &["rate", "1", "1", "1", "--clear"],
    ] {
        let refused = run(args);
        assert!(!refused.status.success(), "{args:?}: {}", text(&refused));
    }
    let shown = text(&run(&["pricing", "1"]));
    assert!(
        shown.contains("discount 12.5%") && shown.contains("service 1\trate 0.4321"),
        "{shown}"
    );

    let cleared = run(&["rate", "1", "1", "--clear"]);
    assert!(cleared.status.success(), "{}", text(&cleared));
    let cleared = run(&["discount", "1", "--clear"]);
    assert!(
        text(&cleared).contains("no discount") && !text(&cleared).contains("rate"),
        "{}",
        text(&cleared)
    );

    let store = smm_store::connect(&url).await.expect("store");
    let customer = store
        .customer(smm_store::CustomerId(1))
        .await
        .expect("customer");
    assert_eq!(customer.discount, None);
    assert!(
        store
            .customer_rates(customer.id)
            .await
            .expect("rates")
            .is_empty()
    );
    let audit = store.audit_log(20).await.expect("audit");
    let count = |action: &str| {
        audit
            .iter()
            .filter(|a| a.action == action && a.actor.starts_with("cli:"))
            .count()
    };
    assert_eq!(count("customer.discount"), 2, "{audit:?}");
    assert_eq!(count("customer.rate"), 2, "{audit:?}");
}

/// Issue #12, defect 13: the key cache's lifetime is the stated bound on how long a change can
/// go unseen where the database cannot announce it: the configuration refuses more than 60 s,
/// and on SQLite a suspension and a rotation made by the CLI (another process) are seen by a
/// running gateway within its lifetime (2 s here), on every action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_changes_reach_a_running_gateway_within_the_cache_lifetime() {
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let over = gateway(
        &dir,
        &["config", "check"],
        &[("SMM_GATEWAY__SERVER__KEY_CACHE_TTL_SECS", "61")],
    );
    assert!(!over.status.success(), "{}", text(&over));
    assert!(
        text(&over).contains("server.key_cache_ttl_secs"),
        "{}",
        text(&over)
    );
    let at_limit = gateway(
        &dir,
        &["config", "check"],
        &[("SMM_GATEWAY__SERVER__KEY_CACHE_TTL_SECS", "60")],
    );
    assert!(
        !text(&at_limit).contains("server.key_cache_ttl_secs"),
        "{}",
        text(&at_limit)
    );

    let url = format!("sqlite://{}/ttl.db", dir.display());
    let sim = smm_panel_sim::Sim::spawn(smm_panel_sim::SimConfig::demo())
        .await
        .expect("sim");
    let mut settings = crate::support::one_service_settings(&url, &sim.api_url());
    settings.server.key_cache_ttl_secs = 2;
    let gw = crate::support::start_gateway(settings, false).await;
    let key = "cli-ttl-customer-key-0001";
    let customer = funded_customer(
        gw.app.store.as_ref(),
        "ttl",
        key,
        smm_wire::Money::from_units(1_000_000),
        "test",
        0,
    )
    .await;
    let http = reqwest::Client::new();
    let call = async |key: &str, action: &str| -> serde_json::Value {
        http.post(gw.api_url())
            .form(&[("key", key), ("action", action), ("order", "1")])
            .send()
            .await
            .expect("v2")
            .json()
            .await
            .expect("json")
    };
    assert_eq!(call(key, "balance").await["balance"], "10.00000");
    let env = [("SMM_GATEWAY__DATABASE__URL", url.as_str())];
    let id = customer.id.0.to_string();
    let bound = std::time::Duration::from_millis(2_000 + 1_500); // the lifetime + slack

    let suspended = serde_json::json!({ "error": "Your account is suspended" });
    let out = gateway(&dir, &["customers", "suspend", &id], &env);
    assert!(out.status.success(), "{}", text(&out));
    let since = std::time::Instant::now();
    while call(key, "balance").await != suspended {
        assert!(since.elapsed() < bound, "suspension unseen after {bound:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for action in ["services", "status", "cancel", "refill", "add"] {
        assert_eq!(call(key, action).await, suspended, "{action}");
    }
    let out = gateway(&dir, &["customers", "activate", &id], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = gateway(&dir, &["customers", "rotate-key", &id], &env);
    assert!(out.status.success(), "{}", text(&out));
    let since = std::time::Instant::now();
    while call(key, "balance").await != serde_json::json!({ "error": "Invalid API key" }) {
        assert!(since.elapsed() < bound, "rotation unseen after {bound:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_scorecards_show_each_route_exactly() {
    use rust_decimal::Decimal;
    use smm_store::{ForwardOutcome, NewOrder, Placed, ServiceId, StatusUpdate};
    use smm_wire::{Money, OrderStatus};

    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let url = format!("sqlite://{}/cards.db", dir.display());
    let store = smm_store::connect(&url).await.expect("store");
    let now = crate::support::now_ms();
    let customer = funded_customer(
        store.as_ref(),
        "cards",
        "cards-key",
        Money::from_units(1_000_000),
        "test",
        now,
    )
    .await;
    // Two orders at alpha/7 (charged 1.00 each, cost 0.40 each): one Completed, one Partial
    // with a quarter undelivered (refunded 0.25, and a quarter of its cost).
    for (upstream, status, remains) in [
        ("u1", OrderStatus::Completed, 0),
        ("u2", OrderStatus::Partial, 25),
    ] {
        let Placed::New(order) = store
            .place_order(
                NewOrder {
                    customer_id: customer.id,
                    service_id: ServiceId(1),
                    service_type: "Default".into(),
                    params: "{}".into(),
                    link: Some("https://x.test/p".into()),
                    quantity: Some(100),
                    units: 100,
                    charge: Money::from_units(100_000),
                    idempotency_key: None,
                    placed_as: None,
                    request_fingerprint: None,
                },
                now,
            )
            .await
            .expect("place")
        else {
            panic!("new order expected")
        };
        store
            .claim_for_forwarding("w", 10, now)
            .await
            .expect("claim");
        store
            .begin_attempt(order.id, "alpha", "7", now)
            .await
            .expect("begin");
        store
            .finish_attempt(
                order.id,
                ForwardOutcome::Sent {
                    upstream_order_id: upstream.into(),
                    upstream_cost: Some(Decimal::new(4, 1)),
                    next_poll_at: now,
                },
                now + 200,
            )
            .await
            .expect("sent");
        store
            .apply_status(
                "alpha",
                upstream,
                StatusUpdate {
                    delivery: Default::default(),
                    status,
                    start_count: Some(0),
                    remains: Some(remains),
                    extra: None,
                    next_poll_at: now,
                },
                now + 200 + 90_000,
            )
            .await
            .expect("status");
    }
    let file = dir.join("gw.toml");
    std::fs::write(
        &file,
        format!(
            "[database]\nurl = \"{url}\"\n\n[[providers]]\nname = \"alpha\"\nurl = \"https://alpha.example/api/v2\"\nkey_env = \"SMM_TEST_ALPHA_KEY\"\n"
        ),
    )
    .expect("config");
    let config = file.to_str().expect("utf-8");
    let env = [("SMM_TEST_ALPHA_KEY", "k")];
    let shown = gateway(&dir, &["--config", config, "providers", "scorecards"], &env);
    let out = text(&shown);
    assert!(shown.status.success(), "{out}");
    // orders, finished, completed %, Partial %, undelivered %, start p50, start p90,
    // complete p50, refill ok %, accepted %, call errors %, cost, revenue, margin.
    let expected =
        "alpha\t2\t2\t50.00\t50.00\t25.00\t90\t90\t90\t-\t100.00\t0.00\t0.70000\t1.75000\t1.05000";
    assert!(out.lines().any(|l| l == expected), "{out}");
    assert!(
        out.lines()
            .any(|l| l == format!("  alpha/7\t{}", &expected["alpha\t".len()..])),
        "{out}"
    );
    let json = gateway(
        &dir,
        &[
            "--config",
            config,
            "providers",
            "scorecards",
            "--days",
            "30",
            "--json",
        ],
        &env,
    );
    let view: serde_json::Value = serde_json::from_str(&text(&json)).expect("json");
    assert_eq!(view["days"], 30);
    assert_eq!(view["providers"][0]["completion_percent"], "50.00");
    assert_eq!(view["providers"][0]["routes"][0]["margin"], "1.05000");
    let refused = gateway(
        &dir,
        &["--config", config, "providers", "scorecards", "--days", "5"],
        &env,
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("days must be 7 or 30, not 5"),
        "{}",
        text(&refused)
    );
}
