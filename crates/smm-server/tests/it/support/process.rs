//! The real `smm-gateway` binary: started with a config file and environment, SIGKILLed,
//! restarted, and its CLI run with the same config.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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
            panic!(
                "smm-gateway exited ({status}):\n{}",
                super::log_tail(&self.log, 20)
            );
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("smm-gateway is running").id()
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
