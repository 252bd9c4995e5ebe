//! Helpers shared by the tests that run the real `smm-gateway` binary (`crash`, `soak`): a fresh
//! database per test, free ports on 127.0.0.1, starting, SIGKILLing and restarting the binary,
//! running its CLI, and bounded waits.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// A database for one test: a SQLite file in its own temp directory, or a new database on the
/// PostgreSQL server named by `TEST_DATABASE_URL`. Removed (dropped) when this goes out of
/// scope, also when the test fails.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDb {
    /// `backend` is `"sqlite"` or `"postgres"`; `label` names the file or database. `None` (with a
    /// note) when PostgreSQL is asked for and `TEST_DATABASE_URL` is not set — outside CI only:
    /// in CI a missing database fails the test, the PostgreSQL variant must never be skipped.
    pub async fn create(backend: &str, label: &str) -> Option<TestDb> {
        let name = format!("smm_{label}_{}_{}", std::process::id(), fastrand::u32(..));
        if backend == "sqlite" {
            let dir = std::env::temp_dir().join(&name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            return Some(TestDb {
                url: format!("sqlite://{}/gateway.db", dir.display()),
                cleanup: Cleanup::Dir(dir),
            });
        }
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "TEST_DATABASE_URL must be set in CI: the PostgreSQL variant must run \
                     (use scripts/test.sh)"
                );
                eprintln!("skipping the PostgreSQL variant: TEST_DATABASE_URL is not set");
                return None;
            }
        };
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let _ = conn.close().await;
        Some(TestDb {
            url: with_database(&admin_url, &name),
            cleanup: Cleanup::Database { admin_url, name },
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                // Drop cannot await: a thread with its own runtime, joined.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// `postgres://user@host:port/db?params` with the database replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// A port on 127.0.0.1 that was free a moment ago (the binary binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `smm-gateway` binary run as `serve` with a config file and environment; its log is
/// appended to one file across restarts. SIGKILLed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Starts `smm-gateway --config CONFIG serve` (without waiting for it to listen).
    pub fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> GatewayProcess {
        let mut process = GatewayProcess {
            config: config.to_owned(),
            log: log.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        };
        process.spawn();
        process
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_smm-gateway"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start smm-gateway");
        self.child = Some(child);
    }

    /// Fails the test when the process has exited on its own (a refused config, a crash),
    /// with the end of its log.
    pub fn assert_running(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("smm-gateway is not running");
        };
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("smm-gateway exited ({status}):\n{}", tail.join("\n"));
        }
    }

    /// SIGKILL (no shutdown code runs) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// SIGKILL, then start again with the same config, environment and log.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a CLI command (`orders attach ...`) with the same config and environment; returns
    /// its output whatever the exit status.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .env("RUST_LOG", "warn")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run smm-gateway")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
