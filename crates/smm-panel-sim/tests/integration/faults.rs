//! Every fault mode, fault scoping, connection drops seen on a raw socket, keep-alive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use smm_panel_sim::{Fault, FaultRule};

use crate::{Env, KEY, dec, env};

const ADD: [(&str, &str); 4] = [
    ("action", "add"),
    ("service", "1"),
    ("link", "https://ig/a"),
    ("quantity", "1000"),
];

fn faults_logged(e: &Env) -> Vec<Option<String>> {
    e.sim().requests().into_iter().map(|r| r.fault).collect()
}

#[tokio::test]
async fn latency_then_normal_processing() {
    let e = env().await;
    e.sim().add_fault(
        FaultRule::always(Fault::Latency { ms: 300 })
            .on_action("add")
            .times(1),
    );
    let t = Instant::now();
    let id = e.add(&ADD[1..]).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(e.sim().order(id).unwrap().charge, dec("0.9"));
    let t = Instant::now();
    e.add(&ADD[1..]).await;
    assert!(t.elapsed() < Duration::from_millis(300));
    assert_eq!(faults_logged(&e), vec![Some("latency".to_owned()), None]);
}

#[tokio::test]
async fn hang_is_not_processed_and_never_answers() {
    let e = env().await;
    e.sim()
        .add_fault(FaultRule::always(Fault::Hang).on_action("add").times(1));
    let short = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = short
        .post(e.h.api_url())
        .form(&[
            ("key", KEY),
            ("action", "add"),
            ("service", "1"),
            ("link", "https://ig/a"),
            ("quantity", "1000"),
        ])
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err:?}");
    assert!(e.sim().orders().is_empty());
    assert_eq!(e.sim().balance(KEY), Some(dec("1000")));
    assert_eq!(faults_logged(&e), vec![Some("hang".to_owned())]);
    // Only once: the next add goes through.
    e.add(&ADD[1..]).await;
}

#[tokio::test]
async fn unprocessed_reply_faults() {
    let e = env().await;
    let cases: Vec<(Fault, u16, &str)> = vec![
        (Fault::Http500, 500, "500 Internal Server Error"),
        (Fault::Html200, 200, "Just a moment..."),
        (Fault::EmptyBody, 200, ""),
        (
            Fault::Error {
                text: "Service temporarily unavailable".into(),
            },
            200,
            r#"{"error":"Service temporarily unavailable"}"#,
        ),
        (Fault::RateLimited, 429, "Too Many Requests"),
        (Fault::Redirect, 302, ""),
        (
            Fault::Unavailable,
            503,
            "503 Service Temporarily Unavailable",
        ),
    ];
    for (fault, code, needle) in cases {
        let name = fault.name();
        e.sim().clear_requests();
        e.sim()
            .add_fault(FaultRule::always(fault.clone()).on_action("add").times(1));
        let r =
            e.c.post(e.h.api_url())
                .form(&[
                    ("key", KEY),
                    ("action", "add"),
                    ("service", "1"),
                    ("link", "https://ig/a"),
                    ("quantity", "1000"),
                ])
                .send()
                .await
                .unwrap();
        assert_eq!(r.status().as_u16(), code, "{name}");
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        if needle.is_empty() {
            assert!(body.is_empty(), "{name}: {body}");
        } else {
            assert!(body.contains(needle), "{name}: {body}");
        }
        match fault {
            Fault::Html200 | Fault::Http500 | Fault::Unavailable => {
                assert!(
                    headers["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("text/html")
                );
                assert!(serde_json::from_str::<Value>(&body).is_err());
            }
            Fault::Redirect => assert_eq!(headers["location"], "http://127.0.0.1:1/elsewhere"),
            Fault::RateLimited => assert_eq!(headers["retry-after"], "1"),
            _ => {}
        }
        if fault == Fault::Unavailable {
            assert_eq!(headers["retry-after"], "60");
        }
        assert!(e.sim().orders().is_empty(), "{name} must not process");
        assert_eq!(faults_logged(&e), vec![Some(name.to_owned())]);
    }
    assert_eq!(e.sim().balance(KEY), Some(dec("1000")));
    assert!(e.sim().faults().is_empty(), "times(1) rules are used up");
}

#[tokio::test]
async fn drop_after_record_records_exactly_once() {
    let e = env().await;
    e.sim().add_fault(
        FaultRule::always(Fault::DropAfterRecord)
            .on_action("add")
            .times(1),
    );
    let t = Instant::now();
    let err =
        e.c.post(e.h.api_url())
            .form(&[
                ("key", KEY),
                ("action", "add"),
                ("service", "1"),
                ("link", "https://ig/a"),
                ("quantity", "1000"),
            ])
            .send()
            .await
            .expect_err("connection dropped");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let orders = e.sim().orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].params["link"], "https://ig/a");
    assert_eq!(e.sim().balance(KEY), Some(dec("999.1")));
    assert_eq!(
        faults_logged(&e),
        vec![Some("drop_after_record".to_owned())]
    );
    // The order exists upstream and can be polled; the sim keeps serving.
    assert_eq!(e.status(orders[0].id).await["status"], "Pending");
}

#[tokio::test]
async fn drop_before_record_processes_nothing() {
    let e = env().await;
    e.sim()
        .add_fault(FaultRule::always(Fault::DropBeforeRecord).on_action("add"));
    for _ in 0..2 {
        let err =
            e.c.post(e.h.api_url())
                .form(&[
                    ("key", KEY),
                    ("action", "add"),
                    ("service", "1"),
                    ("link", "https://ig/a"),
                    ("quantity", "1000"),
                ])
                .send()
                .await
                .expect_err("connection dropped");
        assert!(!err.is_timeout());
    }
    assert!(e.sim().orders().is_empty());
    assert_eq!(e.sim().balance(KEY), Some(dec("1000")));
    assert_eq!(e.sim().faults().len(), 1, "no count: stays until cleared");
    e.sim().clear_faults();
    e.add(&ADD[1..]).await;
}

#[tokio::test]
async fn garbled_reply_but_order_recorded() {
    let e = env().await;
    e.sim()
        .add_fault(FaultRule::always(Fault::Garbled).on_action("add").times(1));
    let (code, body) = e.form_raw(&ADD).await;
    assert_eq!(code, 200);
    assert!(body.starts_with(r#"{"order":1"#), "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_err());
    assert_eq!(e.sim().orders().len(), 1);
    assert_eq!(e.sim().balance(KEY), Some(dec("999.1")));
    // Garbled status replies too.
    e.sim().add_fault(
        FaultRule::always(Fault::Garbled)
            .on_action("status")
            .times(1),
    );
    let (_, body) = e
        .form_raw(&[("action", "status"), ("order", "10001")])
        .await;
    assert!(
        body.starts_with(r#"{"charge":"0.90000""#) && serde_json::from_str::<Value>(&body).is_err()
    );
}

#[tokio::test]
async fn fault_scoping_by_action_service_and_count() {
    let e = env().await;
    let on1 = e.add(&ADD[1..]).await;
    let on2 = e
        .add(&[
            ("service", "2"),
            ("link", "https://ig/b"),
            ("quantity", "100"),
        ])
        .await;
    e.sim().clear_requests();
    e.sim().add_fault(
        FaultRule::always(Fault::Error {
            text: "svc1 down".into(),
        })
        .on_service(1)
        .times(3),
    );
    // Another action without service: unaffected.
    assert_eq!(e.balance().await["balance"], "999.08750");
    // add on service 2: unaffected; status of an order on service 2: unaffected.
    e.add(&[
        ("service", "2"),
        ("link", "https://ig/c"),
        ("quantity", "100"),
    ])
    .await;
    assert_eq!(e.status(on2).await["status"], "Pending");
    // Requests about service 1: add, status of its order, a multi list containing it.
    assert_eq!(e.add_err(&ADD[1..]).await, "svc1 down");
    assert_eq!(crate::error_text(&e.status(on1).await), "svc1 down");
    let v = e
        .form(&[("action", "status"), ("orders", &format!("{on2},{on1}"))])
        .await;
    assert_eq!(v["error"], "svc1 down");
    // Count used up.
    assert_eq!(e.status(on1).await["status"], "Pending");
    assert!(e.sim().faults().is_empty());
    // Action-scoped rule with an explicit action match only.
    e.sim()
        .add_fault(FaultRule::always(Fault::RateLimited).on_action("status"));
    let (code, _) = e
        .form_raw(&[("action", "status"), ("order", &on1.to_string())])
        .await;
    assert_eq!(code, 429);
    let (code, _) = e.form_raw(&[("action", "balance")]).await;
    assert_eq!(code, 200);
    // First matching rule wins.
    e.sim().clear_faults();
    e.sim().add_fault(
        FaultRule::always(Fault::Error {
            text: "first".into(),
        })
        .times(1),
    );
    e.sim().add_fault(
        FaultRule::always(Fault::Error {
            text: "second".into(),
        })
        .times(1),
    );
    assert_eq!(crate::error_text(&e.balance().await), "first");
    assert_eq!(crate::error_text(&e.balance().await), "second");
    assert_eq!(e.balance().await["currency"], "USD");
}

/// Sends one HTTP/1.1 request on a raw socket and reads one reply; `None` if the server
/// closed the connection without sending a byte.
/// (head, body) of one raw HTTP reply.
type Reply = (String, String);

fn raw_roundtrip(s: &mut TcpStream, body: &str) -> Option<Reply> {
    let req = format!(
        "POST /api/v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Some((head, body));
            }
        }
    }
}

fn raw_session(addr: SocketAddr) -> (Vec<Option<Reply>>, Option<Reply>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Keep-alive: two replies on one connection.
    let first = raw_roundtrip(&mut s, &format!("key={KEY}&action=balance"));
    let second = raw_roundtrip(&mut s, &format!("key={KEY}&action=services"));
    // Third request on the same connection hits DropAfterRecord (set by the caller for add).
    let third = raw_roundtrip(
        &mut s,
        &format!("key={KEY}&action=add&service=1&link=https%3A%2F%2Fig%2Fz&quantity=100"),
    );
    (vec![first, second], third)
}

#[tokio::test]
async fn raw_socket_keep_alive_and_silent_drop() {
    let e = env().await;
    e.sim().add_fault(
        FaultRule::always(Fault::DropAfterRecord)
            .on_action("add")
            .times(1),
    );
    let addr = e.h.addr;
    let (ok, dropped) = tokio::task::spawn_blocking(move || raw_session(addr))
        .await
        .unwrap();
    for r in &ok {
        let (head, body) = r.as_ref().expect("reply on the kept-alive connection");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.starts_with('{') || body.starts_with('['));
    }
    assert!(
        dropped.is_none(),
        "no byte after DropAfterRecord: {dropped:?}"
    );
    assert_eq!(e.sim().orders().len(), 1);
    assert_eq!(e.sim().requests().len(), 3);
}
