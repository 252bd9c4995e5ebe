//! Integration tests: the simulator over real HTTP on 127.0.0.1 (one test binary).

mod api;
mod control;
mod dialects;
mod faults;
mod lifecycle;
mod profiles;

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use smm_panel_sim::{Outcomes, Sim, SimConfig, SimHandle, Timing};

pub const KEY: &str = "sim-key";

/// A sim whose clock barely moves on its own (speed 1e-6) with fixed plan durations:
/// Pending 10 s, In progress 100 s; refills 10 s + 100 s; subscription posts every 60 s.
/// Every service completes unless a test changes its outcomes.
pub fn test_config() -> SimConfig {
    let mut cfg = SimConfig {
        seed: 1,
        speed: 1e-6,
        timing: Timing {
            pending_secs: [10, 10],
            run_secs: [100, 100],
            refill_pending_secs: [10, 10],
            refill_run_secs: [100, 100],
            post_every_secs: [60, 60],
        },
        ..SimConfig::demo()
    };
    for s in &mut cfg.services {
        s.outcomes = Outcomes::always_completed();
    }
    cfg
}

#[derive(Debug)]
pub struct Env {
    pub h: SimHandle,
    pub c: reqwest::Client,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub async fn env() -> Env {
    env_with(test_config()).await
}

pub async fn env_with(cfg: SimConfig) -> Env {
    let h = Sim::spawn(cfg).await.expect("spawn sim");
    Env { h, c: client() }
}

pub fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

impl Env {
    pub fn sim(&self) -> &Sim {
        &self.h.sim
    }

    /// POSTs a form (key added unless given) and returns (HTTP status, body text).
    pub async fn form_raw(&self, params: &[(&str, &str)]) -> (u16, String) {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !params.iter().any(|(k, _)| *k == "key") {
            all.push(("key", KEY));
        }
        all.extend_from_slice(params);
        let r = self
            .c
            .post(self.h.api_url())
            .form(&all)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// POSTs a form and parses the JSON reply (asserting HTTP 200).
    pub async fn form(&self, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.form_raw(params).await;
        assert_eq!(status, 200, "body: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("invalid JSON {body:?}: {e}"))
    }

    /// Places an order and returns its id (panics on an error reply).
    pub async fn add(&self, params: &[(&str, &str)]) -> u64 {
        let mut all = vec![("action", "add")];
        all.extend_from_slice(params);
        let v = self.form(&all).await;
        v["order"]
            .as_u64()
            .unwrap_or_else(|| panic!("add failed: {v}"))
    }

    /// Places an order expecting `{"error": ...}` and returns the text.
    pub async fn add_err(&self, params: &[(&str, &str)]) -> String {
        let mut all = vec![("action", "add")];
        all.extend_from_slice(params);
        let v = self.form(&all).await;
        error_text(&v)
    }

    pub async fn status(&self, id: u64) -> Value {
        self.form(&[("action", "status"), ("order", &id.to_string())])
            .await
    }

    pub async fn balance(&self) -> Value {
        self.form(&[("action", "balance")]).await
    }

    pub fn advance(&self, secs: u64) {
        self.sim().advance(Duration::from_secs(secs));
    }

    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut rb = self
            .c
            .request(method, format!("{}{}", self.h.base_url(), path));
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = rb.send().await.expect("control send");
        let status = r.status().as_u16();
        (status, r.text().await.expect("control body"))
    }
}

/// The text of a whole-reply error, asserting the object has only the `error` key.
pub fn error_text(v: &Value) -> String {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.len(), 1, "error reply with extra keys: {v}");
    obj["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {v}"))
        .to_owned()
}
