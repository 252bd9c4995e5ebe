//! The configuration loader on arbitrary text: what `smm-gateway serve --config FILE`, `config
//! check` and the admin API's `POST /admin/v1/config/validate` do with a config file.
//!
//! The input, read as UTF-8 (lossily: a config file is text), is layered over the compiled-in
//! defaults exactly as a file would be, both from memory (`Settings::load_str`) and from a real
//! file (`Settings::load`); the two must agree. A loaded config is then validated (every problem
//! printed), redacted as the admin API shows it, turned into provider client configs, and written
//! back as TOML, which must load to the same settings.
//!
//! Paths named by `admin.token_file` and `providers[].key_file` are replaced before validation
//! (by a readable fixture file or a missing one) so the fuzzer never reads `/dev/zero` or blocks
//! on a FIFO. Run it with no `SMM_GATEWAY__*` variables in the environment.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use smm_server::config::{ConfigError, Settings};

/// A token/key file that exists (24 characters, a valid admin token) and one that does not.
fn fixtures() -> &'static (PathBuf, PathBuf, PathBuf) {
    static FIXTURES: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("smm-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let present = dir.join("secret");
        std::fs::write(&present, "fuzz-secret-0123456789ab\n").expect("fixture file");
        (present, dir.join("missing"), dir.join("config.toml"))
    })
}

/// A fixture standing in for a configured path: readable or missing, decided by the path.
fn redirect(path: &mut PathBuf) {
    let (present, missing, _) = fixtures();
    let readable = path.as_os_str().len() % 2 == 0;
    *path = if readable { present.clone() } else { missing.clone() };
}

fn show(error: &ConfigError) {
    let text = error.to_string();
    assert!(!text.is_empty());
    if let ConfigError::Invalid(problems) = error {
        assert!(!problems.is_empty(), "an invalid config names its problems");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let from_text = Settings::load_str(&text);
    let (_, _, file) = fixtures();
    std::fs::write(file, text.as_bytes()).expect("write the config file");
    let from_file = Settings::load(Some(file));
    let mut settings = match (from_text, from_file) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "a file and the same text load alike");
            a
        }
        (Err(a), Err(b)) => {
            show(&a);
            show(&b);
            return;
        }
        (a, b) => panic!("a file and the same text load differently: {a:?} vs {b:?}"),
    };

    // Written back as TOML (where TOML can say it), the settings load the same.
    if let Ok(written) = toml::to_string(&settings) {
        match Settings::load_str(&written) {
            Ok(again) => assert_eq!(again, settings, "round trip through:\n{written}"),
            Err(e) => panic!("own TOML does not load ({e}):\n{written}"),
        }
    }

    if let Some(path) = settings.admin.token_file.as_mut() {
        redirect(path);
    }
    for provider in &mut settings.providers {
        if let Some(path) = provider.key_file.as_mut() {
            redirect(path);
        }
    }
    let problems = settings.validate();
    for problem in &problems {
        assert!(!problem.to_string().is_empty());
    }
    let _ = settings.listen_addr();
    let _ = settings.admin.token();
    let _ = smm_server::app::redacted_sections(&settings);
    let _ = settings.provider_defs();
    for provider in &settings.providers {
        let _ = provider.key();
        let _ = provider.client_config();
    }
    if problems.is_empty() {
        assert!(settings.listen_addr().is_ok(), "a valid config has a listen address");
        for provider in &settings.providers {
            assert!(provider.client_config().is_ok(), "a valid provider has a client config");
        }
    }
});
