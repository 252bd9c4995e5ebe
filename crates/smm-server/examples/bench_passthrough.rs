//! Baseline B of `bench/run.sh`: the cost of one upstream hop.
//!
//! An axum server on 127.0.0.1 that forwards each `POST /api/v2` body unchanged to an upstream
//! (smm-panel-sim in the benchmark) with a pooled reqwest client — the same HTTP stack the
//! gateway's provider client uses — and relays the upstream's reply. Parses nothing.
//!
//! ```sh
//! cargo run --release -p smm-server --example bench_passthrough -- 8082 http://127.0.0.1:8787/api/v2
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

struct Upstream {
    client: reqwest::Client,
    url: String,
}

async fn v2(State(up): State<Arc<Upstream>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = up.client.post(&up.url).body(body);
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        request = request.header(CONTENT_TYPE, ct);
    }
    let reply = match request.send().await {
        Ok(reply) => reply,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = reply.status();
    match reply.bytes().await {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let Some(url) = args.next() else {
        eprintln!("usage: bench_passthrough PORT UPSTREAM_URL");
        std::process::exit(2);
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "baseline B listening on http://{}/api/v2 -> {url}",
        listener.local_addr()?
    );
    let app = Router::new()
        .route("/api/v2", post(v2))
        .with_state(Arc::new(Upstream { client, url }));
    axum::serve(listener, app).await
}
