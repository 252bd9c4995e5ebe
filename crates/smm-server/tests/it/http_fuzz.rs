//! HTTP-level fuzzing of the running gateway (issue #7): seeded random requests, sent as raw
//! bytes over TCP so that anything can be expressed — form, JSON, multipart and query
//! parameters with random, huge, non-UTF-8 and duplicated values, 101-id lists, wrong content
//! types and encodings, odd methods and paths, and broken HTTP framing.
//!
//! For every request:
//! * never a 5xx, and never a panic anywhere in the process (a panic hook counts them);
//! * well-formed HTTP gets a reply, JSON with an `application/json` content type: HTTP 200 on
//!   `/api/v2` (errors are `{"error": ...}`), 404 elsewhere; `HEAD` gets the same status with no
//!   body, as HTTP requires;
//! * broken framing (a bad request line, header or length) gets a 4xx from the HTTP layer or
//!   the connection closed without a reply: hyper refuses such requests before the router ever
//!   sees them, so there is no v2 request to answer;
//! * a request answered with a v2 error wrote nothing: no order, refill or cancel request, no
//!   ledger row other than a refund the forwarder pays in the background for earlier orders;
//! * the server still answers afterwards, and every balance equals its ledger at the end.
//!
//! `HTTP_FUZZ_SECS` sets the duration per backend (default 10), `HTTP_FUZZ_SEED` the seed (default
//! random; printed, with the case, on failure).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fastrand::Rng;
use serde_json::Value;
use smm_store::{ForwardState, LedgerKind};

use crate::support::{Backend, KEY, TestGateway, postgres_available, send_raw, status_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_random_requests_never_break_the_gateway() {
    fuzz(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_random_requests_never_break_the_gateway() {
    if !postgres_available() {
        return;
    }
    fuzz(Backend::Postgres).await;
}

/// Panics anywhere in this process (the gateway runs in it), counted by a hook — except the
/// failed assertions of test code (`tests/it/`): under plain `cargo test` every test shares this
/// process, and another test's failure is not the gateway's panic.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info
                .location()
                .is_some_and(|at| at.file().contains("tests/it/"));
            if !in_tests {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// One generated request.
#[derive(Debug)]
struct Case {
    bytes: Vec<u8>,
    /// Well-formed HTTP: the router sees it and must answer with JSON.
    well_formed: bool,
    method: String,
    /// Whether the path routes to the v2 handler.
    v2_path: bool,
    what: String,
}

/// What could change when a request is accepted. Refund rows are left out: the forwarder pays
/// them in the background for orders placed by earlier (accepted) requests.
#[derive(Debug, PartialEq, Eq)]
struct Writes {
    ledger_rows: usize,
    orders: i64,
    refills: usize,
    cancels: usize,
}

async fn writes(gw: &TestGateway) -> Writes {
    let store = gw.store();
    let ledger_rows = store
        .ledger(gw.customer, None, 1_000_000)
        .await
        .expect("ledger")
        .iter()
        .filter(|row| row.kind != LedgerKind::Refund)
        .count();
    let orders = store
        .count_by_forward_state()
        .await
        .expect("counts")
        .iter()
        .map(|(_, n)| n)
        .sum();
    let mut refills = 0;
    let mut cancels = 0;
    for state in ForwardState::ALL {
        refills += store
            .refills_in_state(state, 1_000_000)
            .await
            .expect("refills")
            .len();
        cancels += store
            .cancels_in_state(state, 1_000_000)
            .await
            .expect("cancels")
            .len();
    }
    Writes {
        ledger_rows,
        orders,
        refills,
        cancels,
    }
}

async fn fuzz(backend: Backend) {
    count_panics();
    let secs: u64 = std::env::var("HTTP_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("HTTP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let gw = TestGateway::start_with(backend, |s| {
        s.server.rate_limit_per_minute = u32::MAX;
        // Bodies shorter than announced are cut off quickly.
        s.server.body_read_timeout_secs = 1;
        s.server.header_read_timeout_secs = 2;
    })
    .await;
    let addr = gw.gateway().addr;
    let mut rng = Rng::with_seed(seed);
    let started = Instant::now();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let mut stats: BTreeMap<String, u64> = BTreeMap::new();
    let mut cases = 0u64;
    let mut nothing_written_checks = 0u64;
    let mut last = writes(&gw).await;
    while started.elapsed() < Duration::from_secs(secs) {
        let case = generate(&mut rng);
        cases += 1;
        let reply = exchange(addr, &case.bytes).await;
        let context = {
            format!(
                "seed {seed}, case {cases} ({}): {:?}\nreply: {:?}",
                case.what,
                String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(2000)]),
                reply
                    .as_ref()
                    .map(|r| String::from_utf8_lossy(&r.raw[..r.raw.len().min(2000)]).into_owned())
            )
        };
        let status = reply.as_ref().and_then(|r| r.status);
        *stats
            .entry(match status {
                Some(code) => format!("status {code}"),
                None => "closed without a reply".to_owned(),
            })
            .or_default() += 1;
        if let Some(code) = status {
            assert!(code < 500, "a 5xx: {}", context);
        }
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            panics_before,
            "a panic: {}",
            context
        );
        if !case.well_formed {
            *stats.entry("malformed".into()).or_default() += 1;
            match status {
                // A broken head never reaches the router.
                None => continue,
                Some(code) if (400..500).contains(&code) => continue,
                // A good head with a broken body (a bad chunk) does: the v2 handler answers it
                // like any unreadable body, which is checked below as a v2 error.
                Some(200) if case.v2_path => {}
                Some(_) => panic!("broken framing gets a 4xx or a v2 error: {context}"),
            }
        }
        let reply =
            reply.unwrap_or_else(|| panic!("no reply to a well-formed request: {}", context));
        let expected = if case.v2_path { 200 } else { 404 };
        assert_eq!(reply.status, Some(expected), "{}", context);
        if case.method == "HEAD" {
            continue;
        }
        assert!(
            reply
                .content_type
                .as_deref()
                .is_some_and(|ct| ct.starts_with("application/json")),
            "a JSON content type: {}",
            context
        );
        let body: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("a JSON reply ({e}): {}", context));
        let refused = body.as_object().is_some_and(|o| o.contains_key("error"));
        assert!(
            refused || case.well_formed,
            "a broken body is refused: {context}"
        );
        let now = writes(&gw).await;
        if refused {
            *stats
                .entry(format!(
                    "v2 error: {}",
                    body["error"].as_str().unwrap_or("?")
                ))
                .or_default() += 1;
            assert_eq!(now, last, "a refused request wrote something: {}", context);
            nothing_written_checks += 1;
        } else {
            *stats.entry("v2 answer".into()).or_default() += 1;
        }
        last = now;
        if cases % 500 == 0 {
            assert!(
                gw.api("balance", &[]).await["balance"].is_string(),
                "still serving"
            );
        }
    }
    // Still serving, and the books balance.
    assert!(gw.api("balance", &[]).await["balance"].is_string());
    for customer in gw.store().list_customers().await.expect("customers") {
        gw.assert_ledger_consistent(customer.id).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "http fuzz {backend:?}: seed {seed}, {cases} cases in {elapsed:.1?}, \
         {nothing_written_checks} refusals checked to write nothing, no 5xx, no panic"
    );
    for (what, n) in &stats {
        eprintln!("  {n:>8}  {what}");
    }
    gw.finish().await;
}

#[derive(Debug)]
struct Reply {
    raw: Vec<u8>,
    status: Option<u16>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Sends `bytes` on a fresh connection (every generated request asks for `Connection: close`)
/// and reads until the server closes it; `None` when it closed without a byte.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<Reply> {
    let (raw, closed) = send_raw(addr, bytes, Duration::from_secs(10)).await;
    assert!(closed, "the server closes the connection within 10 s");
    if raw.is_empty() {
        return None;
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let head = String::from_utf8_lossy(&raw[..split.unwrap_or(raw.len())]).into_owned();
    let body = split.map(|at| raw[at + 4..].to_vec()).unwrap_or_default();
    let status = status_of(&raw);
    let content_type = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_owned())
    });
    Some(Reply {
        raw: raw.clone(),
        status,
        content_type,
        body,
    })
}

// ---- the generator ----------------------------------------------------------------------------

const ACTIONS: [&str; 7] = [
    "services",
    "add",
    "status",
    "refill",
    "refill_status",
    "cancel",
    "balance",
];

const FIELDS: [&str; 30] = [
    "service",
    "link",
    "quantity",
    "runs",
    "interval",
    "comments",
    "usernames",
    "hashtags",
    "hashtag",
    "username",
    "media",
    "answer_number",
    "groups",
    "min",
    "max",
    "posts",
    "old_posts",
    "delay",
    "expiry",
    "country",
    "device",
    "type_of_traffic",
    "google_keyword",
    "order",
    "orders",
    "refill",
    "refills",
    "idempotency_key",
    "keywords",
    "currency",
];

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// A random parameter value as bytes: numbers of every shape, id lists (up to 150 ids), text,
/// non-UTF-8, huge.
fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.u8(..20) {
        0..=2 => rng.u64(1..40).to_string().into_bytes(),
        3 | 4 => pick(rng, &["10", "100", "500", "1000", "5000"])
            .as_bytes()
            .to_vec(),
        5 => rng.u64(..).to_string().into_bytes(),
        6 => pick(
            rng,
            &[
                "0",
                "-1",
                "1.5",
                "1e3",
                "+5",
                "18446744073709551616",
                "99999999999999999999999999",
                "",
                " ",
                "NaN",
                "0x10",
                "007",
                "1,",
                ",",
            ],
        )
        .as_bytes()
        .to_vec(),
        7 | 8 => {
            let n = *pick(rng, &[1, 2, 3, 99, 100, 101, 150]);
            (0..n)
                .map(|_| {
                    if rng.u8(..20) == 0 {
                        "x".to_owned()
                    } else {
                        rng.u64(1..60).to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(if rng.bool() { "," } else { ", " })
                .into_bytes()
        }
        9 | 10 => format!("https://instagram.com/p/fuzz{}", rng.u32(..)).into_bytes(),
        11 => (0..rng.usize(1..6))
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join(*pick(rng, &["\n", "\r\n", "\\n"]))
            .into_bytes(),
        12 => (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect(),
        13 => "é€😀\u{0}\u{202e}".as_bytes().to_vec(),
        14 => {
            // Huge: around the 256 KiB body limit.
            let n = *pick(rng, &[1_000, 70_000, 250_000, 300_000]);
            vec![b'a'; n]
        }
        _ => (0..rng.usize(0..20))
            .map(|_| rng.alphanumeric() as u8)
            .collect(),
    }
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                char::from(*b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The parameters of one request: a key and an action (usually good ones) and random fields,
/// sometimes repeated.
fn params(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut params = Vec::new();
    match rng.u8(..10) {
        0..=6 => params.push((b"key".to_vec(), KEY.as_bytes().to_vec())),
        7 => params.push((b"key".to_vec(), value(rng))),
        8 => {}
        _ => {
            params.push((b"key".to_vec(), b"wrong".to_vec()));
            params.push((b"key".to_vec(), KEY.as_bytes().to_vec()));
        }
    }
    match rng.u8(..10) {
        0..=7 => params.push((b"action".to_vec(), pick(rng, &ACTIONS).as_bytes().to_vec())),
        8 => params.push((
            b"action".to_vec(),
            pick(
                rng,
                &[
                    "ADD",
                    " add",
                    "add\0",
                    "Status",
                    "delete",
                    "",
                    "refill-status",
                ],
            )
            .as_bytes()
            .to_vec(),
        )),
        _ => {}
    }
    for _ in 0..rng.usize(0..8) {
        let name = if rng.u8(..10) == 0 {
            value(rng)
        } else {
            pick(rng, &FIELDS).as_bytes().to_vec()
        };
        params.push((name, value(rng)));
    }
    if rng.u8(..5) == 0 && !params.is_empty() {
        // A repeated parameter with another value.
        let (name, _) = params[rng.usize(..params.len())].clone();
        params.push((name, value(rng)));
    }
    rng.shuffle(&mut params);
    params
}

fn urlencoded(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    params
        .iter()
        .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn json_body(rng: &mut Rng, params: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    for (name, value) in params {
        let text = String::from_utf8_lossy(value).into_owned();
        let v = match rng.u8(..8) {
            0 => text
                .parse::<i64>()
                .map_or(Value::String(text.clone()), Value::from),
            1 => Value::Null,
            2 => Value::Bool(rng.bool()),
            3 => Value::Array(vec![Value::String(text.clone()), Value::from(1)]),
            4 => serde_json::json!({ "nested": text }),
            5 => Value::from(rng.f64()),
            _ => Value::String(text),
        };
        object.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    let mut bytes = serde_json::to_vec(&Value::Object(object)).expect("json");
    match rng.u8(..10) {
        0 => bytes.truncate(rng.usize(..=bytes.len())),
        1 => bytes = b"[1,2,3]".to_vec(),
        2 => bytes.extend_from_slice(b"garbage"),
        _ => {}
    }
    bytes
}

fn multipart(rng: &mut Rng, params: &[(Vec<u8>, Vec<u8>)], boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in params {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"");
        body.extend_from_slice(name);
        body.extend_from_slice(b"\"");
        if rng.u8(..8) == 0 {
            body.extend_from_slice(b"; filename=\"x.txt\"\r\nContent-Type: text/plain");
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    if rng.u8(..6) != 0 {
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    body
}

/// A request: well-formed HTTP carrying random v2 parameters (most of the time), or broken
/// framing.
fn generate(rng: &mut Rng) -> Case {
    if rng.u8(..8) == 0 {
        return malformed(rng);
    }
    let method = pick(
        rng,
        &[
            "POST", "POST", "POST", "POST", "GET", "GET", "PUT", "DELETE", "PATCH", "OPTIONS",
            "HEAD", "FUZZ",
        ],
    )
    .to_string();
    let (path, v2_path) = if rng.u8(..8) != 0 {
        *pick(rng, &[("/api/v2", true), ("/api/v2/", true)])
    } else {
        *pick(
            rng,
            &[
                ("/API/V2", false),
                ("/api/v2/x", false),
                ("/api/v2/../v2", false),
                ("/", false),
                ("/api/v3", false),
                ("/api/v2%00", false),
            ],
        )
    };
    let params = params(rng);
    let (query_params, body_params): (Vec<_>, Vec<_>) =
        params.into_iter().partition(|_| rng.u8(..4) == 0);
    let mut target = path.to_owned();
    if !query_params.is_empty() || rng.u8(..10) == 0 {
        target.push('?');
        target.push_str(&String::from_utf8_lossy(&urlencoded(&query_params)));
    }
    let boundary = format!("fuzz{}", rng.u32(..));
    let (kind, mut body) = match rng.u8(..10) {
        0..=4 => ("form", urlencoded(&body_params)),
        5 | 6 => ("json", json_body(rng, &body_params)),
        7 | 8 => ("multipart", multipart(rng, &body_params, &boundary)),
        _ => ("raw", value(rng)),
    };
    let content_type: Option<String> = match rng.u8(..12) {
        0..=7 => Some(match kind {
            "form" => "application/x-www-form-urlencoded".into(),
            "json" => "application/json".into(),
            "multipart" => format!("multipart/form-data; boundary={boundary}"),
            _ => "application/octet-stream".into(),
        }),
        8 => None,
        9 => Some(
            pick(
                rng,
                &[
                    "application/json; charset=latin1",
                    "multipart/form-data",
                    "multipart/form-data; boundary=",
                    "text/plain",
                    "application/x-www-form-urlencoded; charset=utf-16",
                    "application/json",
                    "application/x-www-form-urlencoded",
                ],
            )
            .to_string(),
        ),
        // Any text a header value may carry (control characters would be broken framing).
        _ => Some(
            String::from_utf8_lossy(&value(rng))
                .chars()
                .map(|c| {
                    if c == '\t' || (c >= ' ' && c != '\u{7f}') {
                        c
                    } else {
                        ' '
                    }
                })
                .collect(),
        ),
    };
    let mut headers = vec!["Host: 127.0.0.1".to_owned(), "Connection: close".to_owned()];
    if let Some(ct) = &content_type {
        headers.push(format!("Content-Type: {ct}"));
    }
    if rng.u8(..8) == 0 {
        headers.push("Content-Encoding: gzip".into());
        if rng.bool() {
            body = [&[0x1f, 0x8b, 0x08, 0x00][..], &body].concat();
        }
    }
    if rng.u8(..8) == 0 {
        let id: String = (0..rng.usize(0..100)).map(|_| rng.alphanumeric()).collect();
        headers.push(format!("X-Request-Id: {id}"));
    }
    if rng.u8(..10) == 0 {
        headers.push(format!("Idempotency-Key: {}", rng.u32(..)));
    }
    if rng.u8(..10) == 0 {
        headers.push("Content-Type: text/html".into());
    }
    if rng.u8(..10) == 0 {
        // Header values may carry obs-text (bytes ≥ 0x80): legal, if unusual.
        headers.push("X-Odd: caf\u{e9}".into());
    }
    let chunked = rng.u8(..8) == 0;
    if chunked {
        headers.push("Transfer-Encoding: chunked".into());
    } else if method != "GET" || !body.is_empty() {
        headers.push(format!("Content-Length: {}", body.len()));
    }
    let mut bytes = format!(
        "{method} {target} HTTP/1.1\r\n{}\r\n\r\n",
        headers.join("\r\n")
    )
    .into_bytes();
    if chunked {
        for chunk in body.chunks(rng.usize(1..=body.len().max(1))) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(&body);
    }
    // A head over the server's 64 KiB limit (a huge query value or content type) is refused
    // by the HTTP layer (431 or 414) before any router sees it.
    let head_len = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let well_formed = head_len < 60 * 1024;
    Case {
        bytes,
        well_formed,
        what: format!("{method} {path} {kind} ct={content_type:?} chunked={chunked}"),
        method,
        v2_path,
    }
}

/// Broken HTTP: the server must refuse it at the HTTP layer or close.
fn malformed(rng: &mut Rng) -> Case {
    let body = format!("key={KEY}&action=balance");
    if rng.u8(..12) == 0 {
        // Framed correctly but the body never completes: the body deadline passes and the v2
        // handler answers, like for any unreadable body.
        return Case {
            bytes: format!(
                "POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len() + 10
            )
            .into_bytes(),
            well_formed: true,
            method: "POST".into(),
            v2_path: true,
            what: "body shorter than announced".into(),
        };
    }
    let (what, bytes): (&str, Vec<u8>) = match rng.u8(..11) {
        0 => ("random bytes", (0..rng.usize(1..2000)).map(|_| rng.u8(..)).collect()),
        1 => ("no version", b"POST /api/v2\r\n\r\n".to_vec()),
        2 => ("HTTP/2.0", format!("POST /api/v2 HTTP/2.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()),
        3 => ("header without a colon", b"POST /api/v2 HTTP/1.1\r\nHost x\r\nConnection: close\r\n\r\n".to_vec()),
        4 => ("space in a header name", b"POST /api/v2 HTTP/1.1\r\nHo st: x\r\nConnection: close\r\n\r\n".to_vec()),
        5 => ("bad length", b"POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n".to_vec()),
        6 => ("two lengths", format!("POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()),
        7 => ("bad chunk size", b"POST /api/v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec()),
        8 => ("NUL in a header", b"POST /api/v2 HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\nConnection: close\r\n\r\n".to_vec()),
        9 => ("huge request line", format!("GET /api/v2?key={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "k".repeat(rng.usize(70_000..200_000))).into_bytes()),
        _ => ("truncated request", {
            let full = format!("POST /api/v2 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            full.as_bytes()[..rng.usize(1..full.len() - body.len() - 4)].to_vec()
        }),
    };
    Case {
        bytes,
        well_formed: false,
        method: "POST".into(),
        // Only framing errors in the body let the request reach the v2 handler.
        v2_path: what == "bad chunk size",
        what: what.to_owned(),
    }
}
