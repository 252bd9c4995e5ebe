//! The outbound client against real servers on 127.0.0.1.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use smm_notify::guard::TargetError;
use smm_notify::{OutboundClient, OutboundConfig, SendError, TargetPolicy, signing};

use crate::support::{
    closed_port, huge_body_server, private_client, public_client, receiver, silent_listener,
};

#[tokio::test]
async fn loopback_is_refused_by_default_and_nothing_is_sent() {
    let (addr, accepted) = silent_listener().await;
    let url = format!("http://{addr}/hook").parse().unwrap();
    let err = public_client()
        .post(&url, &[], "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err, SendError::Refused(TargetError::PrivateAddress));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection was made");

    // `localhost` by name too.
    let url = format!("http://localhost:{}/hook", addr.port())
        .parse()
        .unwrap();
    let err = public_client()
        .post(&url, &[], "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused(_)), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection was made");
}

#[tokio::test]
async fn with_allow_private_the_post_arrives_with_its_headers() {
    let rx = receiver().await;
    let reply = private_client()
        .post(
            &rx.url("/hook"),
            &[("X-Custom", "yes".to_owned())],
            "application/json",
            br#"{"a":1}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.is_success());
    assert_eq!(reply.body, b"ok");
    let seen = rx.seen_at("/hook");
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], br#"{"a":1}"#);
    assert_eq!(seen[0].header("content-type"), "application/json");
    assert_eq!(seen[0].header("user-agent"), "smm-gateway");
    assert_eq!(seen[0].header("x-custom"), "yes");
}

#[tokio::test]
async fn a_signed_delivery_verifies_at_the_receiver() {
    let rx = receiver().await;
    let secret = signing::new_secret();
    let body = br#"{"event":"order.completed","order":42}"#.to_vec();
    let now = 1_700_000_000;
    let headers = signing::signed_headers(&secret, now, "evt_1", "order.completed", &body);
    let reply = private_client()
        .post(&rx.url("/hook"), &headers, "application/json", body)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let seen = &rx.seen_at("/hook")[0];
    assert_eq!(seen.header("x-smm-event-id"), "evt_1");
    assert_eq!(seen.header("x-smm-event"), "order.completed");
    let signature = seen.header(signing::SIGNATURE_HEADER);
    assert_eq!(
        signing::verify(&secret, signature, &seen.body, now + 5, 300),
        Ok(())
    );
    assert!(signing::verify("whsec_other", signature, &seen.body, now + 5, 300).is_err());
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let rx = receiver().await;
    let reply = private_client()
        .post(
            &rx.url("/redirect"),
            &[],
            "application/json",
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 302);
    assert!(!reply.is_success());
    assert_eq!(rx.seen_at("/redirect").len(), 1);
    assert_eq!(rx.seen_at("/landing").len(), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_silent_server_times_out_quickly() {
    let (addr, accepted) = silent_listener().await;
    let client = OutboundClient::new(OutboundConfig {
        timeout: Duration::from_millis(300),
        max_response_bytes: 1024,
        policy: TargetPolicy {
            allow_private: true,
        },
    })
    .unwrap();
    let url = format!("http://{addr}/bot123456:SECRET-TOKEN/sendMessage?key=SECRET-QUERY")
        .parse()
        .unwrap();
    let started = Instant::now();
    let err = client
        .post(&url, &[], "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains("sendMessage"), "{text}");
    }
}

#[tokio::test]
async fn a_huge_body_is_cut_at_the_limit_and_not_read_further() {
    let (addr, written) = huge_body_server().await;
    let client = OutboundClient::new(OutboundConfig {
        timeout: Duration::from_secs(2),
        max_response_bytes: 1000,
        policy: TargetPolicy {
            allow_private: true,
        },
    })
    .unwrap();
    let url = format!("http://{addr}/hook").parse().unwrap();
    let reply = client
        .post(&url, &[], "application/json", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 1000);
    assert!(reply.body.iter().all(|&b| b == b'x'));
    // The server stops when the client hangs up, far short of its 100 MB.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 50 * 1024 * 1024, "the client read {sent} bytes");
}

#[tokio::test]
async fn connect_errors_never_show_the_path_or_query() {
    let addr = closed_port().await;
    let url = format!("http://{addr}/bot123456:SECRET-TOKEN/sendMessage?key=SECRET-QUERY")
        .parse()
        .unwrap();
    let err = private_client()
        .post(&url, &[], "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Connect(_)), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains("bot123456"), "{text}");
    }
}

#[tokio::test]
async fn bad_schemes_and_headers_are_refused_before_sending() {
    let client = private_client();
    let url = "ftp://127.0.0.1/x".parse().unwrap();
    let err = client
        .post(&url, &[], "text/plain", Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err, SendError::Refused(TargetError::Scheme));

    let rx = receiver().await;
    let err = client
        .post(
            &rx.url("/hook"),
            &[("X-Sig", "secret\nvalue".to_owned())],
            "text/plain",
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Other(_)), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(rx.seen().is_empty());
}
