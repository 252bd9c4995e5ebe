//! The console's changes to the config file (issue #13) in headless Chromium, against the real
//! gateway started from a config file, both simulators and a real database: a markup
//! previewed, then saved and seen in v2 `services` (a below-cost rule refused); a service
//! disabled; a provider service imported and ordered through v2; a provider added (its key
//! stored owner-only, never shown), its catalog synced, called and disabled; the file edited as
//! text, every problem shown, written back with its comments, and a read-only file left alone
//! with the change shown instead. Every change is audited with the console user as actor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::{Decimal, RoundingStrategy};
use smm_panel_sim::{DEMO_KEY, Sim, SimConfig};

use crate::console::{gateway, logged_in, screenshot_dir, shoot};
use crate::support::browser::Browser;
use crate::support::gateway::{TestGateway, order_id_of};
use crate::support::{Backend, TempDir, temp_dir, wait_for, write_file};

both_backends!(
    a_markup_is_previewed_then_saved_and_priced_in_v2,
    a_provider_service_is_imported_and_ordered_through_v2,
    a_provider_is_added_synced_called_and_disabled,
    the_config_file_is_checked_written_back_or_left_alone,
);

const HEADER: &str = "# The reseller's own notes: kept by every console change.\n";

/// The test gateway, switched to reading its configuration from a file: its running settings
/// written out as TOML (the simulators' key in a key file), so a console change is a change of
/// that file.
struct FileGateway {
    gw: TestGateway,
    file: PathBuf,
    _dir: TempDir,
}

async fn file_gateway(backend: Backend) -> FileGateway {
    let gw = gateway(backend).await;
    let dir = temp_dir();
    let key = write_file(dir.path(), "sims.key", DEMO_KEY);
    let mut settings = (*gw.app().settings()).clone();
    for provider in &mut settings.providers {
        provider.key_file = Some(key.clone());
    }
    let text = settings.to_toml().expect("settings serialise");
    let file = write_file(dir.path(), "gateway.toml", &format!("{HEADER}{text}"));
    gw.app().set_config_source(Some(file.clone()));
    // The file says what the gateway runs: a reload from it changes no section.
    let report = gw.app().reload_from_source("test").await.expect("reloads");
    assert!(
        report.changed.iter().all(|s| s == "providers"),
        "only the key source differs: {:?}",
        report.changed
    );
    FileGateway {
        gw,
        file,
        _dir: dir,
    }
}

fn file_text(file: &Path) -> String {
    std::fs::read_to_string(file).expect("config file")
}

fn round_up(value: Decimal, decimals: u32) -> Decimal {
    value
        .round_dp_with_strategy(decimals, RoundingStrategy::ToPositiveInfinity)
        .normalize()
}

/// The upstream rate of `provider`'s service `id`, as last synced.
fn upstream_rate(gw: &TestGateway, provider: &str, id: &str) -> Decimal {
    gw.app()
        .upstream_services(provider)
        .iter()
        .find(|s| s.service.as_str() == id)
        .unwrap_or_else(|| panic!("{provider} has service {id}"))
        .rate
}

async fn audit_actions(gw: &TestGateway, actor: &str) -> Vec<String> {
    gw.store()
        .audit_log(200)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.actor == actor)
        .map(|e| e.action)
        .collect()
}

async fn a_markup_is_previewed_then_saved_and_priced_in_v2(backend: Backend) {
    let FileGateway { gw, file, _dir } = file_gateway(backend).await;
    let Some(browser) = logged_in(&gw, "owner").await else {
        return;
    };
    let cost = upstream_rate(&gw, "alpha", "1");
    let before = gw.rate(1).await;

    // Preview: the page lists the new prices; nothing changes yet.
    browser.goto(&format!("{}/services", gw.admin_url)).await;
    assert!(
        browser
            .text("#services")
            .await
            .contains(&before.to_string())
    );
    browser.fill("#percent", "50").await;
    browser.press("#preview-button").await;
    let expected = round_up(cost * Decimal::new(150, 2), 4);
    let preview = browser.text("#preview").await;
    assert!(
        preview.contains(&expected.to_string()),
        "preview shows {expected}: {preview}"
    );
    assert_eq!(gw.rate(1).await, before, "a preview changes nothing");
    assert!(!file_text(&file).contains("percent = \"50\""));
    if let Some(dir) = screenshot_dir(backend) {
        shoot(&browser, &dir, "services").await;
    }

    // Save: v2 `services` has the new price, the file the new rule and still its comments.
    browser.press("#save-button").await;
    assert!(
        browser.text(".flash.notice").await.contains("Saved"),
        "{}",
        browser.text("main").await
    );
    assert_eq!(gw.rate(1).await, expected);
    let text = file_text(&file);
    assert!(text.starts_with(HEADER), "comments kept: {text}");
    assert!(text.contains("percent = \"50\""), "{text}");

    // A rule asking for less than cost is refused, and changes nothing.
    browser
        .goto(&format!("{}/services?scope=provider%3Aalpha", gw.admin_url))
        .await;
    browser.fill("#percent", "-20").await;
    browser.press("#save-button").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains("priced at cost"),
        "{}",
        browser.text("main").await
    );
    assert!(browser.text("#preview").await.contains("at cost"));
    assert_eq!(gw.rate(1).await, expected, "refused: the price stays");
    assert!(!file_text(&file).contains("-20"));

    // Disabling a service takes it out of v2 `services`.
    browser.goto(&format!("{}/services", gw.admin_url)).await;
    browser.submit("#service-3 form").await;
    assert!(browser.text(".flash.notice").await.contains("disabled"));
    let listed = gw.api("services", &[]).await;
    assert!(
        !listed
            .as_array()
            .expect("array")
            .iter()
            .any(|s| s["service"].as_u64() == Some(3)),
        "service 3 is off sale"
    );
    let actions = audit_actions(&gw, "console:owner").await;
    assert_eq!(
        actions.iter().filter(|a| *a == "config.edit").count(),
        2,
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "config.reload"), "{actions:?}");

    // A viewer sees prices, not the editor.
    browser.close().await;
    let Some(viewer) = logged_in(&gw, "viewer").await else {
        return;
    };
    viewer.goto(&format!("{}/services", gw.admin_url)).await;
    assert!(viewer.page_source().await.contains("id=\"services\""));
    assert!(!viewer.page_source().await.contains("markup-form"));
    viewer.close().await;
    gw.finish().await;
}

async fn a_provider_service_is_imported_and_ordered_through_v2(backend: Backend) {
    let FileGateway { gw, file, _dir } = file_gateway(backend).await;
    let Some(browser) = logged_in(&gw, "owner").await else {
        return;
    };
    browser
        .goto(&format!("{}/services/import?provider=beta", gw.admin_url))
        .await;
    assert!(browser.text("#upstream").await.contains("Default"));
    browser.click("#pick-2").await;
    browser.fill("input[name='name.2']", "Imported likes").await;
    browser.fill("#import-percent", "10").await;
    browser.press("#import-button").await;
    assert!(
        browser.text(".flash.notice").await.contains("imported 1"),
        "{}",
        browser.text("main").await
    );
    // The next free id after the harness's 1..=22.
    let id = 23;
    let expected = round_up(upstream_rate(&gw, "beta", "2") * Decimal::new(110, 2), 4);
    assert_eq!(gw.rate(id).await, expected);
    let listed = gw.api("services", &[]).await;
    let entry = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["service"].as_u64() == Some(id))
        .expect("imported service listed")
        .clone();
    assert_eq!(entry["name"], "Imported likes");
    assert!(file_text(&file).contains("Imported likes"));

    // Ordered through v2, it goes to beta's service 2.
    let reply = gw
        .add(&[
            ("service", &id.to_string()),
            ("link", "https://instagram.com/p/imported"),
            ("quantity", "100"),
        ])
        .await;
    let order = gw.wait_forwarded(order_id_of(&reply)).await;
    assert_eq!(order.provider.as_deref(), Some("beta"));
    assert_eq!(order.upstream_service.as_deref(), Some("2"));
    browser.close().await;
    gw.finish().await;
}

async fn a_provider_is_added_synced_called_and_disabled(backend: Backend) {
    let FileGateway { gw, file, _dir } = file_gateway(backend).await;
    let mut config = SimConfig::demo();
    config.seed = config.seed.wrapping_add(7);
    let gamma = Sim::spawn(config).await.expect("gamma starts");
    let Some(browser) = logged_in(&gw, "owner").await else {
        return;
    };
    browser.goto(&format!("{}/providers", gw.admin_url)).await;
    browser.fill("#p-name", "gamma").await;
    browser.fill("#p-url", &gamma.api_url()).await;
    browser.fill("#p-key", DEMO_KEY).await;
    browser.fill("#p-low", "5").await;
    browser.submit("#provider-form").await;
    assert!(
        browser.text(".flash.notice").await.contains("gamma added"),
        "{}",
        browser.text("main").await
    );
    // Its catalog is synced in the background.
    wait_for("gamma's catalog", Duration::from_secs(20), || async {
        gw.app().upstream_service_count("gamma") == 20
    })
    .await;
    browser.goto(&format!("{}/providers", gw.admin_url)).await;
    assert!(
        browser
            .text("#provider-gamma .catalog-size")
            .await
            .contains("20 services")
    );
    // The key is in a file of its own, readable by this user only, never in the config or
    // on a page.
    let text = file_text(&file);
    assert!(text.contains("name = \"gamma\""), "{text}");
    let key_file = gw
        .app()
        .settings()
        .provider("gamma")
        .and_then(|p| p.key_file.clone())
        .expect("gamma's key file");
    assert_eq!(std::fs::read_to_string(&key_file).expect("key"), DEMO_KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only key file");
    }
    assert!(!text.contains(DEMO_KEY), "no key in the config file");
    assert!(!browser.page_source().await.contains(DEMO_KEY));

    // Edit its rate: the config file and the running settings follow; the key stays.
    browser.click("#provider-gamma summary").await;
    browser.fill("#rate-gamma", "2").await;
    browser.submit("#provider-gamma .edit-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("gamma changed"),
        "{}",
        browser.text("main").await
    );
    let gamma_now = gw
        .app()
        .settings()
        .provider("gamma")
        .cloned()
        .expect("gamma");
    assert_eq!(gamma_now.rate, Decimal::new(2, 0));
    assert_eq!(
        gamma_now.key_file.as_ref(),
        Some(&key_file),
        "the key is kept"
    );
    assert!(file_text(&file).contains("rate = \"2\""));

    // A new URL without the key typed again is refused: the stored key would go there.
    browser.click("#provider-gamma summary").await;
    browser
        .execute(
            "document.querySelector('#url-gamma').value = 'http://127.0.0.1:9/api/v2';",
            vec![],
        )
        .await;
    browser.submit("#provider-gamma .edit-form").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains("type the provider's key again"),
        "{}",
        browser.text("main").await
    );
    assert_eq!(
        gw.app().settings().provider("gamma").map(|p| p.url.clone()),
        Some(gamma.api_url())
    );

    // "Call it now", then disable it.
    browser.submit("#provider-gamma .test-form").await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("gamma answered"),
        "{}",
        browser.text("main").await
    );
    assert!(browser.text(".flash.notice").await.contains("20 services"));
    browser
        .submit("#provider-gamma form[action='/providers/gamma/enabled']")
        .await;
    assert!(
        browser
            .text(".flash.notice")
            .await
            .contains("gamma disabled")
    );
    assert!(!gw.app().provider("gamma").expect("gamma").enabled);
    assert!(
        browser
            .text("#provider-gamma h2")
            .await
            .contains("disabled")
    );
    // A bad URL is refused with the config's own message, and nothing changes.
    browser.goto(&format!("{}/providers", gw.admin_url)).await;
    browser.fill("#p-name", "delta").await;
    browser
        .execute(
            "document.querySelector('#p-url').type = 'text';\
             document.querySelector('#p-url').value = 'not a url';",
            vec![],
        )
        .await;
    // The gateway's own settings are no provider key.
    browser
        .fill("#p-key-env", "SMM_GATEWAY__DATABASE__URL")
        .await;
    browser.submit("#provider-form").await;
    assert!(
        browser
            .text(".flash.error")
            .await
            .contains("environment variable"),
        "{}",
        browser.text("main").await
    );
    browser.fill("#p-name", "delta").await;
    browser
        .execute(
            "document.querySelector('#p-url').type = 'text';\
             document.querySelector('#p-url').value = 'not a url';",
            vec![],
        )
        .await;
    browser.fill("#p-key-env", "DELTA_KEY").await;
    browser.submit("#provider-form").await;
    assert!(
        browser.text(".flash.error").await.contains("Not saved"),
        "{}",
        browser.text("main").await
    );
    assert!(gw.app().provider("delta").is_none());
    assert!(!file_text(&file).contains("delta"));
    if let Some(dir) = screenshot_dir(backend) {
        shoot(&browser, &dir, "providers").await;
    }
    browser.close().await;
    gw.finish().await;
}

async fn set_editor(browser: &Browser, text: &str) {
    browser
        .execute(
            "document.querySelector('#config-text').value = arguments[0];",
            vec![serde_json::json!(text)],
        )
        .await;
}

async fn the_config_file_is_checked_written_back_or_left_alone(backend: Backend) {
    let FileGateway { gw, file, _dir } = file_gateway(backend).await;
    let Some(browser) = logged_in(&gw, "owner").await else {
        return;
    };
    let original = file_text(&file);
    let limit = gw.app().settings().server.rate_limit_per_minute;
    browser.goto(&format!("{}/config", gw.admin_url)).await;
    let shown: String = browser
        .execute(
            "return document.querySelector('#config-text').value;",
            vec![],
        )
        .await
        .as_str()
        .expect("text")
        .to_owned();
    assert_eq!(shown, original, "the editor holds the file");

    // Two problems at once, each shown; nothing written.
    let line = format!("rate_limit_per_minute = {limit}");
    assert!(original.contains(&line), "{original}");
    let batch = format!("batch = {}", gw.app().settings().forwarder.batch);
    assert!(original.contains(&batch), "{original}");
    let broken = original
        .replace(&line, "rate_limit_per_minute = 0")
        .replace(&batch, "batch = 0");
    set_editor(&browser, &broken).await;
    browser.press("button[value=check]").await;
    let problems = browser.text("#config-problems").await;
    assert!(
        problems.contains("server.rate_limit_per_minute"),
        "{problems}"
    );
    assert!(problems.contains("forwarder.batch"), "{problems}");
    assert_eq!(file_text(&file), original);

    // A valid change: written back with its comments, applied without a restart.
    let changed = original.replace(&line, "rate_limit_per_minute = 900");
    set_editor(&browser, &changed).await;
    browser.press("button[value=check]").await;
    assert!(browser.text("#config-valid").await.contains("valid"));
    assert_eq!(file_text(&file), original, "a check writes nothing");
    browser.press("button[value=save]").await;
    assert!(
        browser.text(".flash.notice").await.contains("Saved"),
        "{}",
        browser.text("main").await
    );
    assert_eq!(file_text(&file), changed);
    assert_eq!(gw.app().settings().server.rate_limit_per_minute, 900);
    assert!(browser.text("#running").await.contains("900"));
    if let Some(dir) = screenshot_dir(backend) {
        shoot(&browser, &dir, "config").await;
    }

    // A read-only file (a ConfigMap) is left alone: the page shows the change to apply.
    let mut permissions = std::fs::metadata(&file).expect("file").permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&file, permissions.clone()).expect("chmod");
    browser.goto(&format!("{}/config", gw.admin_url)).await;
    assert!(
        browser
            .text("#not-writable")
            .await
            .contains("cannot be written")
    );
    set_editor(
        &browser,
        &changed.replace("rate_limit_per_minute = 900", "rate_limit_per_minute = 800"),
    )
    .await;
    browser.press("button[value=save]").await;
    assert!(
        browser.text("#manual").await.contains("cannot be written"),
        "{}",
        browser.text("main").await
    );
    let manual: String = browser
        .execute(
            "return document.querySelector('#manual-text').value;",
            vec![],
        )
        .await
        .as_str()
        .expect("text")
        .to_owned();
    assert!(manual.contains("rate_limit_per_minute = 800"));
    assert_eq!(file_text(&file), changed, "nothing written");
    assert_eq!(gw.app().settings().server.rate_limit_per_minute, 900);
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&file, permissions).expect("chmod back");

    // An operator sees the running configuration, not the file.
    browser.close().await;
    let Some(operator) = logged_in(&gw, "operator").await else {
        return;
    };
    operator.goto(&format!("{}/config", gw.admin_url)).await;
    assert!(
        operator
            .text("#running")
            .await
            .contains("rate_limit_per_minute")
    );
    assert!(!operator.page_source().await.contains("config-form"));
    operator.close().await;
    gw.finish().await;
}
