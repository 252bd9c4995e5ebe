//! HTTP side: own accept loop (so a handler can drop its connection on purpose), the `/api/v2`
//! handler with fault injection, and the `/control/...` endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, SERVER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::Service;

use crate::config::{Dialect, Fault, FaultRule, Outage, Profile, SimService, de_decimal};
use crate::json::{self, J};
use crate::params::{self, Params};
use crate::{Sim, engine};

/// Largest request body read (bigger ones get HTTP 413).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a `Hang` fault holds the request.
const HANG: Duration = Duration::from_secs(3600);
/// Where a `Redirect` fault points (a closed port).
pub(crate) const REDIRECT_TO: &str = "http://127.0.0.1:1/elsewhere";

/// Per-connection context put into every request's extensions.
#[derive(Clone, Debug)]
struct ConnCtx {
    /// Notified by a handler that wants its connection closed without a reply.
    kill: Arc<Notify>,
    peer: SocketAddr,
}

/// How often the clock is checked for a refused-connections outage (only when one exists).
const OUTAGE_TICK: Duration = Duration::from_millis(5);

pub(crate) async fn serve(sim: Sim, mut listener: TcpListener) -> std::io::Result<()> {
    let app = router(sim.clone());
    let addr = listener.local_addr()?;
    // Connection tasks live in this set, so aborting `serve` aborts them all.
    let mut conns = JoinSet::new();
    loop {
        if sim.may_refuse() && sim.refused_until().is_some() {
            // The panel is down: nothing listens, every connection is closed.
            drop(listener);
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            tracing::debug!(%addr, "outage: refusing connections");
            while sim.may_refuse() && sim.refused_until().is_some() {
                tokio::time::sleep(OUTAGE_TICK).await;
            }
            listener = rebind(addr).await;
            tracing::debug!(%addr, "outage over: listening again");
        }
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(app.clone(), stream, peer));
                }
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            // Watching the clock for a refused-connections window.
            () = tokio::time::sleep(OUTAGE_TICK), if sim.may_refuse() => {}
        }
    }
}

/// Listens on `addr` again after an outage (retrying while the port is busy).
async fn rebind(addr: SocketAddr) -> TcpListener {
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot listen again after an outage; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(app: Router, stream: TcpStream, peer: SocketAddr) {
    let kill = Arc::new(Notify::new());
    let ctx = ConnCtx {
        kill: kill.clone(),
        peer,
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ctx.clone());
        let mut app = app.clone();
        async move { Ok::<_, Infallible>(app.call(req).await.into_response()) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = kill.notified() => {
            tracing::debug!(%peer, "connection dropped on purpose (fault)");
        }
    }
}

fn router(sim: Sim) -> Router {
    let control = Router::new()
        .route(
            "/control/requests",
            get(get_requests).delete(delete_requests),
        )
        .route("/control/orders", get(get_orders).post(post_orders))
        .route("/control/counts", get(get_counts))
        .route("/control/refills", get(get_refills))
        .route(
            "/control/faults",
            get(get_faults).post(post_fault).delete(delete_faults),
        )
        .route("/control/dialect", get(get_dialect).put(put_dialect))
        .route("/control/advance", post(post_advance))
        .route("/control/balance", get(get_balance).put(put_balance))
        .route("/control/services", get(get_services).put(put_services))
        .route("/control/profile", put(put_profile))
        .route("/control/dropped", get(get_dropped))
        .route(
            "/control/outages",
            get(get_outages).post(post_outage).delete(delete_outages),
        )
        .route_layer(middleware::from_fn(loopback_only));
    Router::new()
        .route("/api/v2", get(api).post(api))
        .route("/api/v2/", get(api).post(api))
        .merge(control)
        .with_state(sim)
}

// ----- /api/v2 ------------------------------------------------------------------------------

async fn api(State(sim): State<Sim>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = parts.extensions.get::<ConnCtx>().cloned();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let p = params::collect(parts.uri.query(), content_type.as_deref(), &bytes);
    sim.api_request(parts.method.as_str(), content_type.as_deref(), p, ctx)
        .await
}

impl Sim {
    async fn api_request(
        &self,
        method: &str,
        content_type: Option<&str>,
        p: Params,
        ctx: Option<ConnCtx>,
    ) -> Response {
        let now = self.now_ms();
        // Everything that allocates is done outside the lock.
        let rec = self
            .log_enabled()
            .then(|| engine::LogEntry::new(method, content_type, &p, now));
        let (fault, reply) = {
            let mut st = self.lock();
            let fault = st.take_fault(&p, now);
            st.count_request(&p);
            st.record(rec, fault.as_ref());
            let process_now = matches!(
                fault,
                None | Some(Fault::DropAfterRecord) | Some(Fault::Garbled)
            );
            let reply = process_now.then(|| st.handle(&p, now));
            (fault, reply)
        };
        let reply = reply.map(|j| j.to_bytes());
        let Some(fault) = fault else {
            return json_response(StatusCode::OK, reply.unwrap_or_default());
        };
        tracing::debug!(fault = fault.name(), action = ?p.get("action"), "fault injected");
        match fault {
            Fault::Latency { ms } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let now = self.now_ms();
                let body = self.lock().handle(&p, now).to_bytes();
                json_response(StatusCode::OK, body)
            }
            Fault::Hang => {
                tokio::time::sleep(HANG).await;
                drop_connection(ctx).await
            }
            Fault::Http500 => html_response(StatusCode::INTERNAL_SERVER_ERROR, HTTP500_PAGE),
            Fault::Html200 => {
                let mut r = html_response(StatusCode::OK, CLOUDFLARE_PAGE);
                r.headers_mut()
                    .insert(SERVER, HeaderValue::from_static("cloudflare"));
                r
            }
            Fault::EmptyBody => json_response(StatusCode::OK, Vec::new()),
            Fault::Error { text } => json_response(StatusCode::OK, J::error(text).to_bytes()),
            Fault::RateLimited => {
                let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Fault::DropAfterRecord | Fault::DropBeforeRecord => drop_connection(ctx).await,
            Fault::Garbled => {
                json_response(StatusCode::OK, json::garble(&reply.unwrap_or_default()))
            }
            Fault::Unavailable => {
                let mut r = html_response(StatusCode::SERVICE_UNAVAILABLE, HTTP503_PAGE);
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("60"));
                r
            }
            Fault::Redirect => {
                let mut r = (StatusCode::FOUND, "").into_response();
                r.headers_mut()
                    .insert(LOCATION, HeaderValue::from_static(REDIRECT_TO));
                r
            }
        }
    }
}

/// Closes the request's connection without writing a reply; never returns while the
/// connection task is alive (the task drops this future together with the connection).
async fn drop_connection(ctx: Option<ConnCtx>) -> Response {
    match ctx {
        Some(c) => {
            c.kill.notify_one();
            std::future::pending::<Response>().await
        }
        // Outside our accept loop there is no connection to drop: an empty reply is closest.
        None => StatusCode::OK.into_response(),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, Body::from(body)).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn html_response(status: StatusCode, page: &'static str) -> Response {
    let mut r = (status, page).into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    r
}

const HTTP500_PAGE: &str = "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n\
<body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n\
</body>\r\n</html>\r\n";

const HTTP503_PAGE: &str = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n\
</body>\r\n</html>\r\n";

const CLOUDFLARE_PAGE: &str = r#"<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"><meta http-equiv="X-UA-Compatible" content="IE=Edge"><meta name="robots" content="noindex,nofollow"><meta name="viewport" content="width=device-width,initial-scale=1"><style>*{box-sizing:border-box;margin:0;padding:0}html{line-height:1.15}body{display:flex;flex-direction:column;height:100vh;min-height:100vh}</style></head><body><div class="main-wrapper" role="main"><div class="main-content"><noscript><div class="h2"><span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></noscript></div></div><script>(function(){window._cf_chl_opt={cvId: '3',cZone: "panel.example",cType: 'managed',cRay: '8a1b2c3d4e5f6a7b',cH: 'sim',cUPMDTk: "\/api\/v2?__cf_chl_tk=sim",cFPWv: 'b',cITimeS: '1700000000',cTplV: 5,cTplB: 'cf',cK: "",fa: "\/api\/v2?__cf_chl_f_tk=sim",md: "sim",mdrd: "sim",cRq: {ru: 'aHR0cHM6Ly9wYW5lbC5leGFtcGxlL2FwaS92Mg==',ra: 'TW96aWxsYS81LjA=',rm: 'UE9TVA==',d: 'sim',t: 'MTcwMDAwMDAwMC4wMDAwMDA=',cT: Math.floor(Date.now() / 1000),m: 'sim',i1: 'sim',i2: 'sim',zh: 'sim',uh: 'sim',hh: 'sim',}};var cpo = document.createElement('script');cpo.src = '/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1?ray=8a1b2c3d4e5f6a7b';window._cf_chl_opt.cOgUHash = location.hash === '' && location.href.indexOf('#') !== -1 ? '#' : location.hash;if (window.history && window.history.replaceState) {var ogU = location.pathname + window._cf_chl_opt.cOgUQuery + window._cf_chl_opt.cOgUHash;history.replaceState(null, null, "\/api\/v2?__cf_chl_rt_tk=sim" + window._cf_chl_opt.cOgUHash);cpo.onload = function() {history.replaceState(null, null, ogU);}}document.getElementsByTagName('head')[0].appendChild(cpo);}());</script></body></html>"#;

// ----- /control ------------------------------------------------------------------------------

async fn loopback_only(req: Request, next: Next) -> Response {
    let peer_ok = req
        .extensions()
        .get::<ConnCtx>()
        .is_none_or(|c| c.peer.ip().is_loopback());
    if peer_ok {
        next.run(req).await
    } else {
        control_error(StatusCode::FORBIDDEN, "control endpoints are loopback-only")
    }
}

fn control_error(status: StatusCode, msg: &str) -> Response {
    json_response(status, J::error(msg).to_bytes())
}

fn json_of<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => json_response(StatusCode::OK, b),
        Err(e) => control_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Parses a JSON control body; the error is the ready 400 reply (boxed: it is large).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(control_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
        ))
    })
}

async fn get_requests(State(sim): State<Sim>) -> Response {
    json_of(&sim.requests())
}

async fn delete_requests(State(sim): State<Sim>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn get_orders(State(sim): State<Sim>) -> Response {
    json_of(&sim.orders())
}

/// Body of `POST /control/orders`: `count` orders placed as `add` requests with `params`.
#[derive(Deserialize)]
struct BulkOrders {
    count: u64,
    params: std::collections::BTreeMap<String, String>,
}

async fn post_orders(State(sim): State<Sim>, body: Bytes) -> Response {
    let bulk = match parse::<BulkOrders>(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match sim.add_orders(&bulk.params, bulk.count) {
        Ok(range) => {
            let (first, last) = range.map_or((J::Null, J::Null), |(f, l)| (J::UInt(f), J::UInt(l)));
            json_response(
                StatusCode::OK,
                J::obj([("first", first), ("last", last)]).to_bytes(),
            )
        }
        Err(text) => control_error(StatusCode::UNPROCESSABLE_ENTITY, &text),
    }
}

async fn get_counts(State(sim): State<Sim>) -> Response {
    json_of(&sim.counts())
}

async fn get_refills(State(sim): State<Sim>) -> Response {
    json_of(&sim.refills())
}

async fn get_faults(State(sim): State<Sim>) -> Response {
    json_of(&sim.faults())
}

async fn post_fault(State(sim): State<Sim>, body: Bytes) -> Response {
    match parse::<FaultRule>(&body) {
        Ok(rule) => {
            sim.add_fault(rule);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => *r,
    }
}

async fn delete_faults(State(sim): State<Sim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn get_dialect(State(sim): State<Sim>) -> Response {
    json_of(&sim.dialect())
}

async fn put_dialect(State(sim): State<Sim>, body: Bytes) -> Response {
    match parse::<Dialect>(&body) {
        Ok(d) => {
            sim.set_dialect(d);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn post_advance(State(sim): State<Sim>, body: Bytes) -> Response {
    let a = match parse::<Advance>(&body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Ok(by) = Duration::try_from_secs_f64(a.seconds) else {
        return control_error(
            StatusCode::BAD_REQUEST,
            "seconds must be a non-negative number",
        );
    };
    sim.advance(by);
    json_response(
        StatusCode::OK,
        J::obj([("sim_time_ms", J::UInt(sim.now_ms()))]).to_bytes(),
    )
}

#[derive(Deserialize)]
struct BalanceBody {
    key: String,
    #[serde(deserialize_with = "de_decimal")]
    balance: Decimal,
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

async fn get_balance(State(sim): State<Sim>, Query(q): Query<KeyQuery>) -> Response {
    match sim.balance(&q.key) {
        Some(b) => json_response(
            StatusCode::OK,
            J::obj([
                ("key", J::Str(q.key)),
                ("balance", J::Str(engine::money_text(b))),
            ])
            .to_bytes(),
        ),
        None => control_error(StatusCode::NOT_FOUND, "unknown key"),
    }
}

async fn put_balance(State(sim): State<Sim>, body: Bytes) -> Response {
    match parse::<BalanceBody>(&body) {
        Ok(b) => {
            sim.set_balance(&b.key, b.balance);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => *r,
    }
}

async fn get_services(State(sim): State<Sim>) -> Response {
    json_of(&sim.services())
}

async fn put_services(State(sim): State<Sim>, body: Bytes) -> Response {
    match parse::<Vec<SimService>>(&body) {
        Ok(services) => {
            sim.set_services(services);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => *r,
    }
}

/// Body of `PUT /control/profile`.
#[derive(Deserialize)]
struct ProfileBody {
    service: u64,
    #[serde(default)]
    profile: Profile,
}

async fn put_profile(State(sim): State<Sim>, body: Bytes) -> Response {
    let b = match parse::<ProfileBody>(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(e) = b.profile.validate() {
        return control_error(StatusCode::BAD_REQUEST, &format!("invalid profile: {e}"));
    }
    if sim.set_profile(b.service, b.profile) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        control_error(StatusCode::NOT_FOUND, "unknown service")
    }
}

async fn get_dropped(State(sim): State<Sim>) -> Response {
    json_of(&sim.dropped_orders())
}

async fn get_outages(State(sim): State<Sim>) -> Response {
    json_of(&sim.outages())
}

async fn post_outage(State(sim): State<Sim>, body: Bytes) -> Response {
    let outage = match parse::<Outage>(&body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = outage.validate() {
        return control_error(StatusCode::BAD_REQUEST, &format!("invalid outage: {e}"));
    }
    sim.add_outage(outage);
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_outages(State(sim): State<Sim>) -> StatusCode {
    sim.clear_outages();
    StatusCode::NO_CONTENT
}
