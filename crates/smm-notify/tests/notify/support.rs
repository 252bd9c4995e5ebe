//! Local fakes on 127.0.0.1: a recording HTTP receiver (axum), raw TCP listeners that never
//! answer or stream a huge body, and a small SMTP sink.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use smm_notify::{OutboundClient, OutboundConfig, TargetPolicy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The Telegram bot token the fake Bot API accepts.
pub const BOT_TOKEN: &str = "123456:ABC-secret-token";
/// The chat the fake Bot API knows.
pub const CHAT_ID: &str = "-10042";

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A recording HTTP receiver on 127.0.0.1:0.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    pub fn url(&self, path: &str) -> url::Url {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, path: &str, headers: HeaderMap, body: Bytes) {
    log.lock().unwrap().push(Seen {
        path: path.to_owned(),
        headers,
        body,
    });
}

/// Routes: `/hook` (200), `/redirect` (302 to `/landing`), `/landing` (200), `/fail` (500),
/// `/slack/...` (200 "ok"), `/{bot<token>}/sendMessage` (a fake Telegram Bot API).
pub async fn receiver() -> Receiver {
    let seen: Log = Arc::default();
    let plain = |path: &'static str, status: StatusCode| {
        post(
            move |State(log): State<Log>, headers: HeaderMap, body: Bytes| async move {
                record(&log, path, headers, body);
                (status, "ok")
            },
        )
    };
    let app = Router::new()
        .route("/hook", plain("/hook", StatusCode::OK))
        .route("/landing", plain("/landing", StatusCode::OK))
        .route("/fail", plain("/fail", StatusCode::INTERNAL_SERVER_ERROR))
        .route(
            "/slack/T0001/B0002/SECRETslack",
            plain("/slack", StatusCode::OK),
        )
        .route(
            "/redirect",
            post(
                |State(log): State<Log>, headers: HeaderMap, body: Bytes| async move {
                    record(&log, "/redirect", headers, body);
                    (StatusCode::FOUND, [(header::LOCATION, "/landing")], "")
                },
            ),
        )
        .route("/{bot}/sendMessage", post(telegram))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { addr, seen }
}

/// A fake Telegram `sendMessage`: checks the token (401 otherwise) and the chat id (400
/// `ok:false` "chat not found" otherwise).
async fn telegram(
    State(log): State<Log>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    record(&log, "/telegram", headers, body.clone());
    if bot.strip_prefix("bot") != Some(BOT_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
        );
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if request["chat_id"] == CHAT_ID && request["text"].is_string() {
        (
            StatusCode::OK,
            r#"{"ok":true,"result":{"message_id":7,"chat":{"id":-10042}}}"#,
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        )
    }
}

/// A listener that accepts connections, counts them, reads what comes and never answers.
pub async fn silent_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, accepted)
}

/// A server that answers 200 with a 100 MB body, written in 64 KiB chunks until the client
/// goes away; the returned counter is how many body bytes it managed to write.
pub async fn huge_body_server() -> (SocketAddr, Arc<AtomicUsize>) {
    const TOTAL: usize = 100 * 1024 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                let mut line = String::new();
                // The request head, then its small body (not needed).
                loop {
                    line.clear();
                    if socket.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {TOTAL}\r\n\r\n"
                );
                let socket = socket.get_mut();
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < TOTAL {
                    if socket.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                    counter.store(sent, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, written)
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// What the SMTP sink received in one session.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1:0 speaking the wire format: 220 greeting, EHLO/HELO 250,
/// MAIL FROM / RCPT TO 250, DATA 354 then lines until ".", 250, QUIT 221, anything else 250.
pub async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut mail = Mail::default();
                write
                    .write_all(b"220 sink.test ESMTP fake\r\n")
                    .await
                    .unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 sink.test\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.mail_from = line["MAIL FROM:".len()..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.rcpt_to
                            .push(line["RCPT TO:".len()..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        write
                            .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                            .await
                            .unwrap();
                        while let Ok(Some(data)) = lines.next_line().await {
                            if data == "." {
                                break;
                            }
                            // Undo dot-stuffing.
                            let data = data.strip_prefix('.').unwrap_or(&data);
                            mail.data.push_str(data);
                            mail.data.push('\n');
                        }
                        store.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 OK queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, mails)
}

/// A client allowed to reach 127.0.0.1, with a short timeout.
pub fn private_client() -> OutboundClient {
    OutboundClient::new(OutboundConfig {
        timeout: Duration::from_secs(2),
        max_response_bytes: 64 * 1024,
        policy: TargetPolicy {
            allow_private: true,
        },
    })
    .unwrap()
}

/// A client with the default policy (public targets only).
pub fn public_client() -> OutboundClient {
    OutboundClient::new(OutboundConfig {
        timeout: Duration::from_secs(2),
        ..OutboundConfig::default()
    })
    .unwrap()
}
