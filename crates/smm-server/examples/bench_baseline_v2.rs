//! Baseline A of `bench/run.sh`: the least any v2 server can do per request on this machine.
//!
//! An axum server on 127.0.0.1 that reads a v2 body with smm-wire's own parameter parsing and
//! credential check (the first steps of the gateway's handler), then answers a fixed JSON reply.
//! No authentication lookup, no database, no upstream: the ceiling for the gateway's cheap
//! actions, against which `services` and `status` are reported as ratios.
//!
//! With a second argument, the reply is that file's content instead (`bench/run.sh` passes the
//! gateway's own `services` reply): the same ceiling for a reply of that size, which shows how
//! much of a large reply's cost is only moving its bytes.
//!
//! ```sh
//! cargo run --release -p smm-server --example bench_baseline_v2 -- 8081 [REPLY_FILE]
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use smm_wire::params::Params;
use smm_wire::request::Credentials;

/// A `balance` reply: the shape of a small v2 answer.
const REPLY: &str = r#"{"balance":"100.84292","currency":"USD"}"#;

async fn v2(State(reply): State<Bytes>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let reply = match Params::from_body(content_type, &body) {
        Ok(params) => match Credentials::parse(&params) {
            Ok(_) => reply,
            Err(_) => Bytes::from_static(br#"{"error":"Invalid API key"}"#),
        },
        Err(_) => Bytes::from_static(br#"{"error":"Incorrect request"}"#),
    };
    let mut response = reply.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let reply = match args.next() {
        Some(path) => Bytes::from(std::fs::read(path)?),
        None => Bytes::from_static(REPLY.as_bytes()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "baseline A listening on http://{}/api/v2",
        listener.local_addr()?
    );
    let app = Router::new().route("/api/v2", post(v2)).with_state(reply);
    axum::serve(listener, app).await
}
