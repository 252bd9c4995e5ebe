//! Hot reload of the real binary (`smm-gateway serve --config FILE`): the admin API, `SIGHUP`
//! and the file watch re-read the file; an invalid file changes nothing and every problem is
//! reported; a valid one changes prices without a restart.

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use smm_panel_sim::{Sim, SimConfig};

use crate::support::{GatewayProcess, free_port, temp_dir};

const TOKEN: &str = "reload-admin-token-0123456789";

struct Setup<'a> {
    port: u16,
    admin_port: u16,
    db: &'a Path,
    token: &'a Path,
    sim_url: &'a str,
}

/// The config file with the given default markup and extra TOML at the end.
fn config(setup: &Setup<'_>, percent: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "{token}"
watch_config_secs = 1

[database]
url = "sqlite://{db}"

[pricing.default]
percent = "{percent}"
round_up = 4

[[providers]]
name = "alpha"
url = "{sim}"
key_env = "SMM_RELOAD_ALPHA_KEY"

[[services]]
id = 1
routes = [{{ provider = "alpha", service = "1" }}]
{extra}
"#,
        port = setup.port,
        admin_port = setup.admin_port,
        token = setup.token.display(),
        db = setup.db.display(),
        sim = setup.sim_url,
    )
}

/// Rewrites `file` so its modification time surely changes (the watch compares mtimes).
fn rewrite(file: &Path, text: &str) {
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(file, text).expect("write config");
}

async fn wait_for<F: FnMut() -> Fut, Fut: Future<Output = bool>>(what: &str, check: F) {
    crate::support::wait_for(what, Duration::from_secs(20), check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_admin_api_sighup_and_file_watch() {
    let sim = Sim::spawn(SimConfig::demo()).await.expect("sim");
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let token = dir.join("admin-token");
    std::fs::write(&token, TOKEN).expect("token");
    let sim_url = sim.api_url();
    let db = dir.join("gateway.db");
    let setup = Setup {
        port: free_port(),
        admin_port: free_port(),
        db: &db,
        token: &token,
        sim_url: &sim_url,
    };
    let file = dir.join("gateway.toml");
    std::fs::write(&file, config(&setup, "30", "")).expect("config");
    let gateway = GatewayProcess::start(
        &file,
        &dir.join("gateway.log"),
        &[
            ("SMM_RELOAD_ALPHA_KEY", smm_panel_sim::DEMO_KEY),
            ("SMM_GATEWAY_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,smm_server=debug"),
        ],
    );
    let pid = gateway.pid().to_string();

    let http = reqwest::Client::new();
    let admin = format!("http://127.0.0.1:{}", setup.admin_port);
    let api = format!("http://127.0.0.1:{}/api/v2", setup.port);
    wait_for("the admin listener", || {
        let http = http.clone();
        let url = format!("{admin}/readyz");
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let created: Value = http
        .post(format!("{admin}/admin/v1/customers"))
        .bearer_auth(TOKEN)
        .json(&json!({ "name": "reload" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let key = created["api_key"].as_str().expect("key").to_owned();
    let rate = || {
        let http = http.clone();
        let api = api.clone();
        let key = key.clone();
        async move {
            let services: Value = http
                .post(&api)
                .form(&[("key", key.as_str()), ("action", "services")])
                .send()
                .await
                .expect("services")
                .json()
                .await
                .expect("json");
            services[0]["rate"]
                .as_str()
                .expect("rate")
                .parse::<Decimal>()
                .expect("decimal")
        }
    };
    let version = || {
        let http = http.clone();
        let admin = admin.clone();
        async move {
            let current: Value = http
                .get(format!("{admin}/admin/v1/config"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("config")
                .json()
                .await
                .expect("json");
            current["version"].as_u64().expect("version")
        }
    };
    // The sim's service 1 costs 0.90 per 1000: +30 % → 1.17.
    let cost = sim
        .sim
        .services()
        .iter()
        .find(|s| s.id == 1)
        .expect("service 1")
        .rate;
    let priced = |percent: i64| cost + cost * Decimal::from(percent) / Decimal::ONE_HUNDRED;
    assert_eq!(rate().await, priced(30));
    assert_eq!(version().await, 1);

    // A candidate is validated without being applied.
    let broken = config(&setup, "-500", "").replace(
        "provider = \"alpha\", service",
        "provider = \"nowhere\", service",
    );
    let checked: Value = http
        .post(format!("{admin}/admin/v1/config/validate"))
        .bearer_auth(TOKEN)
        .body(broken.clone())
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(checked["valid"], false, "{checked}");
    assert!(
        checked["problems"].as_array().is_some_and(|p| p.len() >= 2),
        "{checked}"
    );
    let fine: Value = http
        .post(format!("{admin}/admin/v1/config/validate"))
        .bearer_auth(TOKEN)
        .body(config(&setup, "40", ""))
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(fine["valid"], true, "{fine}");
    assert_eq!(rate().await, priced(30), "validation applies nothing");

    // An invalid file: the admin reload refuses with every problem; SIGHUP changes nothing.
    rewrite(&file, &broken);
    let refused = http
        .post(format!("{admin}/admin/v1/config/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("reload");
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["error"]["code"], "invalid_config");
    let problems = refused["error"]["problems"].as_array().expect("problems");
    assert!(problems.len() >= 2, "{refused}");
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(1500)).await; // the watch saw it too
    assert_eq!(
        rate().await,
        priced(30),
        "an invalid config changes nothing"
    );
    assert_eq!(version().await, 1);

    // A valid file, by SIGHUP: +50 %.
    std::fs::write(&file, config(&setup, "50", "")).expect("config");
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let expected = priced(50);
    wait_for("the SIGHUP reload", || {
        let rate = rate();
        async move { rate.await == expected }
    })
    .await;
    assert!(version().await >= 2);

    // By the file watch alone: +70 %.
    let before = version().await;
    rewrite(&file, &config(&setup, "70", ""));
    let expected = priced(70);
    wait_for("the file-watch reload", || {
        let rate = rate();
        async move { rate.await == expected }
    })
    .await;
    assert!(version().await > before);

    // By the admin API: +20 %, with a report.
    rewrite(&file, &config(&setup, "20", ""));
    let report = http
        .post(format!("{admin}/admin/v1/config/reload"))
        .bearer_auth(TOKEN)
        .header("X-Admin-Actor", "ops")
        .send()
        .await
        .expect("reload");
    assert_eq!(report.status(), 200);
    let report: Value = report.json().await.expect("json");
    assert!(report["version"].as_u64().is_some(), "{report}");
    wait_for("the admin reload", || {
        let rate = rate();
        let expected = priced(20);
        async move { rate.await == expected }
    })
    .await;
    let audit: Value = http
        .get(format!("{admin}/admin/v1/audit"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let actors: Vec<&str> = audit["audit"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|a| a["action"] == "config.reload")
        .filter_map(|a| a["actor"].as_str())
        .collect();
    assert!(actors.contains(&"signal:SIGHUP"), "{actors:?}");
    assert!(actors.contains(&"admin:ops"), "{actors:?}");
    assert!(gateway_alive(&pid));
    drop(gateway);

    // JSON logs: one object per line; requests carry their span (id, action, customer,
    // outcome); the customer's key never appears.
    let log = std::fs::read_to_string(dir.join("gateway.log")).expect("log");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(lines.len() > 10, "{} log lines", lines.len());
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request done" && l["span"]["action"] == "services")
        .unwrap_or_else(|| panic!("a services request logged with its span:\n{log}"));
    assert_eq!(done["span"]["outcome"], "ok");
    assert!(done["span"]["customer"].is_number() || done["span"]["customer"].is_string());
    assert!(done["span"]["id"].as_str().is_some_and(|id| id.len() == 16));
    assert!(!log.contains(&key), "the API key is in the log");
    assert!(!log.contains(TOKEN), "the admin token is in the log");
}

fn gateway_alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .status()
        .is_ok_and(|s| s.success())
}
