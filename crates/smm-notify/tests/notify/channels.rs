//! The alert channels against fakes: Slack, the Telegram Bot API, a JSON webhook, SMTP.

use std::sync::atomic::Ordering;
use std::time::Duration;

use smm_notify::guard::TargetError;
use smm_notify::{Alert, AlertState, Channel, ChannelError, EmailSecurity, Secret, SendError};

use crate::support::{
    BOT_TOKEN, CHAT_ID, private_client, public_client, receiver, silent_listener, smtp_sink,
};

fn alert() -> Alert {
    Alert {
        key: "provider.cooldown:alpha".to_owned(),
        state: AlertState::Started,
        title: "Provider alpha is cooling down".to_owned(),
        lines: vec![
            "5 failures in a row".to_owned(),
            "orders route to beta meanwhile".to_owned(),
        ],
        at_unix: 1_700_000_000,
    }
}

#[test]
fn alert_text_is_plain() {
    assert_eq!(
        alert().text(),
        "[ALERT] Provider alpha is cooling down\n5 failures in a row\norders route to beta meanwhile"
    );
    let cleared = Alert {
        state: AlertState::Cleared,
        lines: Vec::new(),
        ..alert()
    };
    assert_eq!(cleared.text(), "[RESOLVED] Provider alpha is cooling down");
    let event = Alert {
        state: AlertState::Event,
        ..cleared
    };
    assert!(event.text().starts_with("[INFO] "));
}

#[test]
fn secrets_and_names_never_print_secrets() {
    let secret = Secret::new("123456:ABC");
    assert_eq!(format!("{secret}"), "***");
    assert_eq!(format!("{secret:?}"), "***");
    let telegram = Channel::Telegram {
        api_base: Channel::TELEGRAM_API.parse().unwrap(),
        bot_token: secret,
        chat_id: "1".to_owned(),
    };
    assert_eq!(telegram.name(), "telegram");
    assert!(!format!("{telegram:?}").contains("ABC"));
    let email = Channel::Email {
        host: "smtp.example.com".to_owned(),
        port: 587,
        security: EmailSecurity::StartTls,
        username: Some("alerts".to_owned()),
        password: Some(Secret::new("hunter2")),
        from: "gateway@example.com".to_owned(),
        to: vec!["ops@example.com".to_owned()],
    };
    assert_eq!(email.name(), "email");
    assert!(!format!("{email:?}").contains("hunter2"));
}

#[tokio::test]
async fn webhook_receives_the_alert_as_json() {
    let rx = receiver().await;
    let channel = Channel::Webhook {
        url: rx.url("/hook"),
    };
    assert_eq!(channel.name(), "webhook");
    channel.send(&private_client(), &alert()).await.unwrap();
    let seen = rx.seen_at("/hook");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("content-type"), "application/json");
    assert_eq!(
        seen[0].json(),
        serde_json::json!({
            "key": "provider.cooldown:alpha",
            "state": "started",
            "title": "Provider alpha is cooling down",
            "lines": ["5 failures in a row", "orders route to beta meanwhile"],
            "at": 1_700_000_000,
        })
    );
}

#[tokio::test]
async fn a_non_2xx_status_is_an_error() {
    let rx = receiver().await;
    let channel = Channel::Webhook {
        url: rx.url("/fail"),
    };
    let err = channel.send(&private_client(), &alert()).await.unwrap_err();
    assert_eq!(err, ChannelError::Status { status: 500 });
    assert_eq!(rx.seen_at("/fail").len(), 1);

    let redirect = Channel::Webhook {
        url: rx.url("/redirect"),
    };
    let err = redirect
        .send(&private_client(), &alert())
        .await
        .unwrap_err();
    assert_eq!(err, ChannelError::Status { status: 302 });
    assert!(rx.seen_at("/landing").is_empty());
}

#[tokio::test]
async fn the_callers_policy_applies() {
    let rx = receiver().await;
    let channel = Channel::Webhook {
        url: rx.url("/hook"),
    };
    let err = channel.send(&public_client(), &alert()).await.unwrap_err();
    assert_eq!(
        err,
        ChannelError::Send(SendError::Refused(TargetError::PrivateAddress))
    );
    assert!(rx.seen().is_empty());
}

#[tokio::test]
async fn slack_receives_text() {
    let rx = receiver().await;
    let channel = Channel::Slack {
        webhook_url: rx.url("/slack/T0001/B0002/SECRETslack"),
    };
    assert_eq!(channel.name(), "slack");
    channel.send(&private_client(), &alert()).await.unwrap();
    let seen = rx.seen_at("/slack");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].json(),
        serde_json::json!({ "text": alert().text() })
    );

    // Slack's control characters are escaped.
    let odd = Alert {
        title: "Provider <b> & co".to_owned(),
        lines: vec!["balance < 5".to_owned()],
        ..alert()
    };
    channel.send(&private_client(), &odd).await.unwrap();
    let seen = rx.seen_at("/slack");
    assert_eq!(
        seen[1].json()["text"],
        "[ALERT] Provider &lt;b&gt; &amp; co\nbalance &lt; 5"
    );
}

fn telegram(rx: &crate::support::Receiver, token: &str, chat_id: &str) -> Channel {
    Channel::Telegram {
        api_base: rx.url("/"),
        bot_token: Secret::new(token),
        chat_id: chat_id.to_owned(),
    }
}

#[tokio::test]
async fn telegram_sends_with_token_and_chat_id() {
    let rx = receiver().await;
    telegram(&rx, BOT_TOKEN, CHAT_ID)
        .send(&private_client(), &alert())
        .await
        .unwrap();
    let seen = rx.seen_at("/telegram");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].json(),
        serde_json::json!({
            "chat_id": CHAT_ID,
            "text": alert().text(),
            "disable_web_page_preview": true,
        })
    );
}

#[tokio::test]
async fn telegram_ok_false_fails_with_the_description() {
    let rx = receiver().await;
    let err = telegram(&rx, BOT_TOKEN, "-999")
        .send(&private_client(), &alert())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChannelError::Telegram {
            description: "Bad Request: chat not found".to_owned()
        }
    );

    let err = telegram(&rx, "999:WRONG-secret", CHAT_ID)
        .send(&private_client(), &alert())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChannelError::Telegram {
            description: "Unauthorized".to_owned()
        }
    );
    assert!(!err.to_string().contains("WRONG"), "{err}");
}

#[tokio::test]
async fn telegram_errors_never_show_the_token() {
    let (addr, _) = silent_listener().await;
    let client = smm_notify::OutboundClient::new(smm_notify::OutboundConfig {
        timeout: Duration::from_millis(200),
        max_response_bytes: 1024,
        policy: smm_notify::TargetPolicy {
            allow_private: true,
        },
    })
    .unwrap();
    let channel = Channel::Telegram {
        api_base: format!("http://{addr}").parse().unwrap(),
        bot_token: Secret::new(BOT_TOKEN),
        chat_id: CHAT_ID.to_owned(),
    };
    let err = channel.send(&client, &alert()).await.unwrap_err();
    assert!(
        matches!(err, ChannelError::Send(SendError::Timeout(_))),
        "{err:?}"
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("ABC-secret"), "{text}");
    }
}

#[tokio::test]
async fn email_reaches_an_smtp_server() {
    let (addr, mails) = smtp_sink().await;
    let channel = Channel::Email {
        host: "127.0.0.1".to_owned(),
        port: addr.port(),
        security: EmailSecurity::Plain,
        username: None,
        password: None,
        from: "Gateway <gateway@example.com>".to_owned(),
        to: vec!["ops@example.com".to_owned(), "owner@example.org".to_owned()],
    };
    channel.send(&private_client(), &alert()).await.unwrap();
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "<gateway@example.com>");
    assert_eq!(
        mail.rcpt_to,
        vec![
            "<ops@example.com>".to_owned(),
            "<owner@example.org>".to_owned()
        ]
    );
    let (head, body) = mail
        .data
        .split_once("\n\n")
        .expect("headers, blank line, body");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("From"), "Gateway <gateway@example.com>");
    assert_eq!(header("To"), "ops@example.com, owner@example.org");
    assert_eq!(
        header("Subject"),
        "[smm-gateway] Provider alpha is cooling down"
    );
    assert_eq!(body.trim_end(), alert().text());
}

#[tokio::test]
async fn email_follows_the_policy() {
    let (addr, accepted) = silent_listener().await;
    for host in ["127.0.0.1", "localhost"] {
        let channel = Channel::Email {
            host: host.to_owned(),
            port: addr.port(),
            security: EmailSecurity::Plain,
            username: None,
            password: None,
            from: "gateway@example.com".to_owned(),
            to: vec!["ops@example.com".to_owned()],
        };
        let err = channel.send(&public_client(), &alert()).await.unwrap_err();
        assert!(matches!(err, ChannelError::Refused(_)), "{host}: {err:?}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn email_to_a_silent_server_is_bounded_by_the_timeout() {
    let (addr, _) = silent_listener().await;
    let client = smm_notify::OutboundClient::new(smm_notify::OutboundConfig {
        timeout: Duration::from_millis(300),
        max_response_bytes: 1024,
        policy: smm_notify::TargetPolicy {
            allow_private: true,
        },
    })
    .unwrap();
    let channel = Channel::Email {
        host: "127.0.0.1".to_owned(),
        port: addr.port(),
        security: EmailSecurity::Plain,
        username: None,
        password: None,
        from: "gateway@example.com".to_owned(),
        to: vec!["ops@example.com".to_owned()],
    };
    let started = std::time::Instant::now();
    let err = channel.send(&client, &alert()).await.unwrap_err();
    assert_eq!(err, ChannelError::EmailTimeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}
