//! Receivers on 127.0.0.1 for the notification tests: an HTTP endpoint that records every
//! request and answers as scripted (a customer's webhook receiver, a generic alert webhook, a
//! fake Slack incoming webhook, a fake Telegram Bot API), and an SMTP sink speaking enough of
//! the wire format for one client.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The HTTP status it was answered with (200 for a slow answer, whether or not the sender
    /// waited for it).
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Answer 200, after this long (longer than the sender's timeout: a timeout).
    Slow(Duration),
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    default: Option<Answer>,
    /// Answer 500 to this share (percent) of the requests the script leaves to the default.
    fail_percent: u8,
    rng: Option<fastrand::Rng>,
}

/// An HTTP receiver on 127.0.0.1: every path, every method; Telegram's `sendMessage` gets a
/// Bot API reply.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let router = Router::new().fallback(record).with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { base, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next answers, in order; after them, the default (200 unless set).
    pub fn script(&self, answers: &[Answer]) {
        self.lock().script.extend(answers.iter().copied());
    }

    pub fn answer_always(&self, answer: Answer) {
        let mut inner = self.lock();
        inner.script.clear();
        inner.default = Some(answer);
    }

    /// From now on, answer 500 to a seeded random `percent` of the requests not scripted.
    pub fn fail_share(&self, percent: u8, seed: u64) {
        let mut inner = self.lock();
        inner.fail_percent = percent.min(100);
        inner.rng = Some(fastrand::Rng::with_seed(seed));
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Waits (up to `timeout`) until `done` holds for what was received; returns it.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {} request(s): {:?}",
                received.len(),
                received
                    .iter()
                    .map(|r| (r.path.clone(), r.json()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let answer = {
        let mut inner = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fail_percent = inner.fail_percent;
        let scripted = inner.script.pop_front();
        let fails = scripted.is_none()
            && fail_percent > 0
            && inner
                .rng
                .as_mut()
                .is_some_and(|rng| rng.u8(..100) < fail_percent);
        let answer = match scripted {
            Some(answer) => answer,
            None if fails => Answer::Status(500),
            None => inner.default.unwrap_or(Answer::Status(200)),
        };
        inner.received.push(Received {
            path: path.clone(),
            headers,
            body,
            status: match answer {
                Answer::Status(code) => code,
                Answer::Slow(_) => 200,
            },
        });
        answer
    };
    let status = match answer {
        Answer::Status(code) => code,
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            200
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if path.ends_with("/sendMessage") {
        let ok = status.is_success();
        let body = if ok {
            r#"{"ok":true,"result":{"message_id":1}}"#
        } else {
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
        };
        return (status, [("content-type", "application/json")], body).into_response();
    }
    (status, "ok").into_response()
}

/// One mail an [`SmtpSink`] accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// An SMTP server on 127.0.0.1 that accepts every mail (no TLS, no auth).
#[derive(Debug, Clone)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, sink).await;
                });
            }
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    sink: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().trim_matches(['<', '>']).to_owned();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            mail.to
                .push(line[8..].trim().trim_matches(['<', '>']).to_owned());
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            while let Some(data) = lines.next_line().await? {
                if data == "." {
                    break;
                }
                mail.data.push_str(&data);
                mail.data.push('\n');
            }
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(std::mem::replace(
                    &mut mail,
                    Mail {
                        from: String::new(),
                        to: Vec::new(),
                        data: String::new(),
                    },
                ));
            write.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
    Ok(())
}
