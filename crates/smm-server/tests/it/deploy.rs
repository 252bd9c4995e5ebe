//! The `deploy/` directory, checked without a container engine: the example config is valid
//! with exactly the secrets that compose, the Kubernetes Secret and the systemd environment file
//! pass (and names what is missing without them), every file names the same provider key
//! variables as the config's `key_env`, the ConfigMap is the example config, `migrate` works on
//! the example config, and the shutdown grace periods exceed the gateway's drain.
//!
//! The YAML files are read as text (indentation blocks), not parsed: enough for files we write.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use smm_server::config::Settings;

use crate::support::{temp_dir, text};

/// How long `Gateway::shutdown` waits for its tasks after SIGTERM.
const DRAIN_SECS: u64 = 30;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(file: &str) -> String {
    let path = deploy_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn example_config() -> PathBuf {
    deploy_dir().join("config.example.toml")
}

/// Runs `smm-gateway --config deploy/config.example.toml ARGS` in `dir` with exactly `env` as
/// its environment: nothing from the test's own environment leaks in.
fn gateway(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smm-gateway"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("--config")
        .arg(example_config())
        .args(args)
        .output()
        .expect("run smm-gateway")
}

/// The `key_env` names of the example config's providers, read by the gateway's own loader.
fn key_envs() -> BTreeSet<String> {
    let settings = Settings::load(Some(&example_config())).expect("the example config loads");
    assert!(!settings.providers.is_empty());
    settings
        .providers
        .iter()
        .map(|p| {
            assert!(
                p.key_file.is_none(),
                "provider {} should take its key from key_env",
                p.name
            );
            p.key_env
                .clone()
                .unwrap_or_else(|| panic!("provider {} has no key_env", p.name))
        })
        .collect()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The lines nested under the first line whose trimmed text is `header` (e.g. `"environment:"`):
/// every following line indented deeper, blank lines and comments included.
fn block<'a>(lines: &[&'a str], header: &str) -> Vec<&'a str> {
    let start = lines
        .iter()
        .position(|l| !is_blank_or_comment(l) && l.trim() == header)
        .unwrap_or_else(|| panic!("no {header:?} block"));
    let depth = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| is_blank_or_comment(l) || indent(l) > depth)
        .copied()
        .collect()
}

/// `KEY: value` entries of a YAML mapping block (one level), quotes removed.
fn mapping(lines: &[&str]) -> Vec<(String, String)> {
    let depth = lines
        .iter()
        .find(|l| !is_blank_or_comment(l))
        .map_or(0, |l| indent(l));
    lines
        .iter()
        .filter(|l| !is_blank_or_comment(l) && indent(l) == depth)
        .map(|l| {
            let (key, value) = l
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("not a mapping entry: {l:?}"));
            (
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// Replaces every compose interpolation `${NAME}` / `${NAME:?message}` with `value`.
fn interpolate(text: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${...}") + start;
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The names interpolated by compose: `NAME` in `${NAME...}`.
fn interpolated_names(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// `VAR=value` lines of an environment file (comments and blanks skipped).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !is_blank_or_comment(l))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not VAR=value: {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// Every environment-variable-looking word (`ABC_DEF`, upper case with an underscore).
fn variable_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.len() > 2
                && w.contains('_')
                && w.starts_with(|c: char| c.is_ascii_uppercase())
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The gateways' environment in compose.yaml (the `x-gateway` anchor), with every
/// interpolation replaced by a dummy secret.
fn compose_env(dummy: &str) -> Vec<(String, String)> {
    let compose = read("compose.yaml");
    let lines: Vec<&str> = compose.lines().collect();
    let anchor = block(&lines, "x-gateway: &gateway");
    mapping(&block(&anchor, "environment:"))
        .into_iter()
        .map(|(k, v)| (k, interpolate(&v, dummy)))
        .collect()
}

/// The Secret's `stringData` plus the literal `env` entries of the gateway container.
fn kubernetes_env() -> Vec<(String, String)> {
    let secret = read("k8s/secret.yaml");
    let secret_lines: Vec<&str> = secret.lines().collect();
    let mut env = mapping(&block(&secret_lines, "stringData:"));
    let deployment = read("k8s/deployment.yaml");
    let lines: Vec<&str> = deployment.lines().collect();
    let containers = block(&lines, "containers:");
    let literal = block(&containers, "env:");
    let mut name = None;
    for line in literal.iter().map(|l| l.trim()) {
        if let Some(n) = line.strip_prefix("- name:") {
            name = Some(n.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("value:") {
            let n = name.take().expect("value after name");
            env.push((n, v.trim().trim_matches('"').to_owned()));
        }
    }
    env
}

fn systemd_env() -> Vec<(String, String)> {
    env_file(&read("smm-gateway.env.example"))
}

fn names(env: &[(String, String)]) -> BTreeSet<String> {
    env.iter().map(|(k, _)| k.clone()).collect()
}

fn without(env: &[(String, String)], name: &str) -> Vec<(String, String)> {
    env.iter().filter(|(k, _)| k != name).cloned().collect()
}

#[test]
fn config_check_passes_with_exactly_the_deployed_secrets_and_names_missing_ones() {
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let keys = key_envs();
    for (source, env, secret) in [
        (
            "compose.yaml",
            compose_env("dummy-compose-secret"),
            "dummy-compose-secret",
        ),
        (
            "k8s/secret.yaml + deployment.yaml",
            kubernetes_env(),
            "CHANGE-ME",
        ),
        ("smm-gateway.env.example", systemd_env(), "CHANGE-ME"),
    ] {
        let passed = names(&env);
        assert!(
            passed.is_superset(&keys),
            "{source} passes {passed:?}, the config needs {keys:?}"
        );
        assert!(
            passed.contains("SMM_GATEWAY__DATABASE__URL"),
            "{source} sets no database URL"
        );
        let ok = gateway(&dir, &["config", "check"], &env);
        let report = text(&ok);
        assert!(ok.status.success(), "{source}: {report}");
        assert!(
            report.contains(&format!("configuration OK: {} provider(s)", keys.len())),
            "{source}: {report}"
        );
        assert!(
            report.contains("database postgres://"),
            "{source}: {report}"
        );
        assert!(
            !report.contains(secret),
            "{source} leaks a secret: {report}"
        );

        for key in &keys {
            let missing = gateway(&dir, &["config", "check"], &without(&env, key));
            let report = text(&missing);
            assert!(
                !missing.status.success(),
                "{source} without {key}: {report}"
            );
            assert!(
                report.contains(&format!("environment variable {key} is not set"))
                    && report.contains(".key_env"),
                "{source} without {key}: {report}"
            );
        }
    }

    let none = gateway(&dir, &["config", "check"], &[]);
    let report = text(&none);
    assert!(!none.status.success(), "{report}");
    for key in &keys {
        assert!(
            report.contains(key.as_str()),
            "{key} not named in: {report}"
        );
    }
}

#[test]
fn every_file_names_exactly_the_configs_key_env_variables() {
    let keys = key_envs();
    // Variables that are not provider keys and may appear anywhere.
    let known = |name: &str| name.starts_with("SMM_GATEWAY") || name.starts_with("POSTGRES_");

    let systemd_unit = read("smm-gateway.service");
    let unit_comments: String = systemd_unit
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (file, text) in [
        ("compose.yaml", read("compose.yaml")),
        ("compose.env.example", read("compose.env.example")),
        ("k8s/secret.yaml", read("k8s/secret.yaml")),
        ("k8s/deployment.yaml", read("k8s/deployment.yaml")),
        ("k8s/configmap.yaml", read("k8s/configmap.yaml")),
        ("smm-gateway.service (EnvironmentFile docs)", unit_comments),
        ("smm-gateway.env.example", read("smm-gateway.env.example")),
    ] {
        let found = variable_names(&text);
        for key in &keys {
            assert!(found.contains(key), "{file} does not mention {key}");
        }
        let strangers: Vec<_> = found
            .iter()
            .filter(|n| !known(n) && !keys.contains(*n))
            .collect();
        assert!(
            strangers.is_empty(),
            "{file} names variables that are not key_env names of config.example.toml: \
             {strangers:?}"
        );
    }

    // compose: the gateways' environment is exactly the keys and the database URL, and every
    // interpolated variable is in the .env template.
    let mut expected = keys.clone();
    expected.insert("SMM_GATEWAY__DATABASE__URL".into());
    assert_eq!(names(&compose_env("x")), expected, "compose.yaml x-gateway");
    let compose = read("compose.yaml");
    let mut template = keys.clone();
    template.insert("POSTGRES_PASSWORD".into());
    assert_eq!(
        interpolated_names(&compose),
        template,
        "compose.yaml interpolations"
    );
    assert_eq!(
        names(&env_file(&read("compose.env.example"))),
        template,
        "compose.env.example"
    );
    // Each service built on the anchor inherits that environment (an own `environment:` would
    // replace it, not add to it).
    let lines: Vec<&str> = compose.lines().collect();
    let services = block(&lines, "services:");
    for service in ["migrate", "gateway-a", "gateway-b"] {
        let body = block(&services, &format!("{service}:"));
        assert!(
            body.iter().any(|l| l.trim() == "<<: *gateway"),
            "{service} does not use the x-gateway anchor"
        );
        assert!(
            !body.iter().any(|l| l.trim() == "environment:"),
            "{service} replaces the anchor's environment"
        );
    }

    // Kubernetes: the Secret holds exactly the keys and the database URL, and both containers
    // take all of it.
    let secret = read("k8s/secret.yaml");
    let secret_lines: Vec<&str> = secret.lines().collect();
    assert_eq!(
        names(&mapping(&block(&secret_lines, "stringData:"))),
        expected,
        "k8s/secret.yaml stringData"
    );
    let deployment = read("k8s/deployment.yaml");
    let deployment_lines: Vec<&str> = deployment.lines().map(str::trim).collect();
    let takes_secret = deployment_lines
        .windows(2)
        .filter(|w| w[0] == "- secretRef:" && w[1] == "name: smm-gateway")
        .count();
    assert_eq!(
        takes_secret, 2,
        "the migrate initContainer and the gateway container both take the Secret"
    );
    assert!(
        !deployment.contains("postgres://"),
        "no database URL in the Deployment"
    );

    // systemd: the environment file template sets the keys and the database URL.
    assert_eq!(names(&systemd_env()), expected, "smm-gateway.env.example");
    assert!(systemd_unit.contains("EnvironmentFile=/etc/smm-gateway/env"));
}

#[test]
fn configmap_embeds_the_example_config() {
    let configmap = read("k8s/configmap.yaml");
    let lines: Vec<&str> = configmap.lines().collect();
    let body = block(&lines, "config.toml: |");
    let depth = body
        .iter()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| indent(l));
    let embedded: String = body
        .iter()
        .map(|l| format!("{}\n", l.get(depth..).unwrap_or_default()))
        .collect();
    assert_eq!(
        embedded.trim_end(),
        read("config.example.toml").trim_end(),
        "k8s/configmap.yaml differs from config.example.toml"
    );
}

#[test]
fn migrate_creates_the_schema_from_the_example_config() {
    let tmp = temp_dir();
    let dir = tmp.path().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let db = dir.join("gateway.db");
    let mut env: Vec<(String, String)> = key_envs()
        .into_iter()
        .map(|k| (k, "dummy-provider-key".to_owned()))
        .collect();
    env.push((
        "SMM_GATEWAY__SERVER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push((
        "SMM_GATEWAY__DATABASE__URL".into(),
        format!("sqlite://{}", db.display()),
    ));

    let first = gateway(&dir, &["migrate"], &env);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("database schema is up to date"));
    assert!(db.exists(), "no database at {}", db.display());
    let again = gateway(&dir, &["migrate"], &env);
    assert!(again.status.success(), "{}", text(&again));

    // `migrate` validates the whole config first: it needs the provider keys too, which is why
    // compose's migrate service and the k8s initContainer get them.
    let key = key_envs().into_iter().next().expect("a key");
    let without_key = gateway(&dir, &["migrate"], &without(&env, &key));
    assert!(!without_key.status.success());
    assert!(text(&without_key).contains(&key), "{}", text(&without_key));
}

/// The number in `prefix<N>suffix` on the first line that starts with `prefix` (trimmed).
fn number_after(text: &str, prefix: &str, suffix: &str) -> u64 {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"));
    line[prefix.len()..]
        .trim()
        .trim_end_matches(suffix)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn image_user_port_and_grace_periods_agree() {
    let dockerfile = read("Dockerfile");
    for expected in [
        "FROM rust:1-bookworm AS builder",
        // The shipped binary is the stripped `dist` profile (Cargo.toml).
        "cargo build --profile dist --locked -p smm-server",
        "target/dist/smm-gateway",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "--uid 10001",
        "USER 10001:10001",
        "/usr/local/bin/smm-gateway",
        "WORKDIR /var/lib/smm-gateway",
        "SMM_GATEWAY_CONFIG=/etc/smm-gateway/config.toml",
        "SMM_GATEWAY__SERVER__LISTEN=0.0.0.0:8080",
        "EXPOSE 8080",
        "ENTRYPOINT [\"smm-gateway\"]",
        "CMD [\"serve\"]",
    ] {
        assert!(
            dockerfile.contains(expected),
            "Dockerfile lacks {expected:?}"
        );
    }
    // Everything the builder copies exists, and the ignore file lets exactly that through.
    let ignore = read("Dockerfile.dockerignore");
    let root = deploy_dir().join("..");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(root.join(source).exists(), "COPY source {source} missing");
            assert!(
                ignore.lines().any(|l| l.trim() == format!("!{source}")),
                "Dockerfile.dockerignore excludes COPY source {source}"
            );
        }
    }

    let deployment = read("k8s/deployment.yaml");
    assert_eq!(number_after(&deployment, "replicas:", ""), 2);
    assert_eq!(number_after(&deployment, "runAsUser:", ""), 10001);
    assert_eq!(number_after(&deployment, "containerPort:", ""), 8080);
    assert!(deployment.contains("readOnlyRootFilesystem: true"));
    assert!(deployment.contains("mountPath: /var/lib/smm-gateway"));
    let grace = number_after(&deployment, "terminationGracePeriodSeconds:", "");
    let pre_stop = if deployment.contains(r#"command: ["sleep", "5"]"#) {
        5
    } else {
        0
    };
    assert!(
        grace > DRAIN_SECS + pre_stop,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} s + drain {DRAIN_SECS} s"
    );
    assert_eq!(
        number_after(&read("k8s/service.yaml"), "targetPort:", ""),
        8080
    );
    assert_eq!(number_after(&read("k8s/service.yaml"), "port:", ""), 80);

    let unit = read("smm-gateway.service");
    assert!(unit.contains(
        "ExecStart=/usr/local/bin/smm-gateway --config /etc/smm-gateway/config.toml serve"
    ));
    assert!(number_after(&unit, "TimeoutStopSec=", "s") > DRAIN_SECS);
    assert!(number_after(&read("compose.yaml"), "stop_grace_period:", "s") > DRAIN_SECS);
}

/// The example reverse proxy serves every console page (and nothing of `/admin/v1` or
/// `/metrics`): each route of `src/console/mod.rs` matches the Caddyfile's `@console` paths.
#[test]
fn the_caddyfile_serves_every_console_route_and_no_admin_api() {
    let caddy = read("Caddyfile");
    let matcher = caddy
        .lines()
        .find(|l| l.trim_start().starts_with("@console path"))
        .expect("an @console path matcher");
    let patterns: Vec<&str> = matcher.split_whitespace().skip(2).collect();
    let matches = |path: &str| {
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => *p == path,
        })
    };
    let router =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/mod.rs"))
            .expect("console router");
    let routes: Vec<String> = router
        .split("\"/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|path| format!("/{path}").replace('{', "x").replace('}', ""))
        .collect();
    assert!(routes.len() > 20, "routes found: {routes:?}");
    for route in &routes {
        assert!(matches(route), "the Caddyfile does not serve {route}");
    }
    for private in ["/admin/v1/customers", "/metrics", "/healthz"] {
        assert!(!matches(private), "the Caddyfile exposes {private}");
    }
}
