//! The provider client over real HTTP on 127.0.0.1 against smm-panel-sim: every action, every
//! request format, every dialect and every fault mode, asserting the error class and that no
//! write was ever sent twice.

use std::time::Duration;

use rust_decimal::Decimal;
use smm_panel_sim::{Dialect, Fault, FaultRule, Sim, SimConfig, SimHandle};
use smm_provider_client::{
    ProviderClient, ProviderConfig, ProviderError, RateLimit, RequestFormat, RetryPolicy, SecretKey,
};
use smm_wire::order::DripFeed;
use smm_wire::upstream::UpstreamId;
use smm_wire::{ErrorKind, OrderRequest, OrderStatus, RefillStatus, ServiceType};

const KEY: &str = "sim-key";

async fn sim() -> SimHandle {
    Sim::spawn(SimConfig::demo()).await.expect("sim starts")
}

fn config(sim: &SimHandle) -> ProviderConfig {
    let mut config = ProviderConfig::new(
        "sim",
        sim.api_url().parse().expect("valid url"),
        SecretKey::new(KEY),
    );
    config.timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    config
}

fn client(sim: &SimHandle) -> ProviderClient {
    ProviderClient::new(config(sim)).expect("client builds")
}

fn id(s: &str) -> UpstreamId {
    UpstreamId::new(s).expect("valid id")
}

/// The id of the first demo service of `ty`, with its min quantity.
async fn service_of(client: &ProviderClient, ty: ServiceType) -> (UpstreamId, u64) {
    let catalog = client.services().await.expect("services");
    let service = catalog
        .services
        .iter()
        .find(|s| s.service_type == ty)
        .unwrap_or_else(|| panic!("the demo catalog has a {ty:?} service"));
    (service.service.clone(), service.min)
}

fn default_order(quantity: u64) -> OrderRequest {
    OrderRequest::Default {
        link: "https://instagram.com/p/abc".into(),
        quantity,
        drip_feed: None,
    }
}

fn requests_for(sim: &SimHandle, action: &str) -> usize {
    sim.sim
        .requests()
        .iter()
        .filter(|r| r.action.as_deref() == Some(action))
        .count()
}

async fn place(client: &ProviderClient) -> UpstreamId {
    let (service, min) = service_of(client, ServiceType::Default).await;
    client
        .add(&service, &default_order(min))
        .await
        .expect("add succeeds")
}

#[tokio::test]
async fn services_and_balance() {
    let sim = sim().await;
    let client = client(&sim);
    let catalog = client.services().await.expect("services");
    assert!(catalog.invalid.is_empty(), "{:?}", catalog.invalid);
    for ty in ServiceType::KNOWN {
        assert!(
            catalog.services.iter().any(|s| s.service_type == ty),
            "demo catalog lacks {ty:?}"
        );
    }
    assert!(catalog.services.iter().all(|s| s.rate > Decimal::ZERO));
    let balance = client.balance().await.expect("balance");
    assert_eq!(Some(balance.balance), sim.sim.balance(KEY));
}

#[tokio::test]
async fn add_sends_exact_parameters_once_and_charges() {
    let sim = sim().await;
    let client = client(&sim);
    let (service, min) = service_of(&client, ServiceType::Default).await;
    let before = sim.sim.balance(KEY).expect("account");
    let order = client
        .add(&service, &default_order(min))
        .await
        .expect("add");
    assert_eq!(requests_for(&sim, "add"), 1);
    let request = sim
        .sim
        .requests()
        .into_iter()
        .find(|r| r.action.as_deref() == Some("add"))
        .expect("recorded");
    assert_eq!(
        request.params.get("service").map(String::as_str),
        Some(service.as_str())
    );
    assert_eq!(request.params.get("quantity"), Some(&min.to_string()));
    assert_eq!(
        request.params.get("link").map(String::as_str),
        Some("https://instagram.com/p/abc")
    );
    assert_eq!(request.params.get("key").map(String::as_str), Some(KEY));
    assert_eq!(sim.sim.orders().len(), 1);
    assert!(sim.sim.balance(KEY).expect("account") < before);

    let status = client.status(&order).await.expect("status");
    assert!(!matches!(status.status, OrderStatus::Unknown(_)));
    assert!(status.charge.is_some_and(|c| c > Decimal::ZERO));
}

#[tokio::test]
async fn every_order_type_is_accepted_upstream() {
    let sim = sim().await;
    let client = client(&sim);
    let catalog = client.services().await.expect("services").services;
    let link = || "https://example.com/p/1".to_owned();
    let lines = |n: u64| (0..n).map(|i| format!("line {i}")).collect::<Vec<_>>();
    for service in &catalog {
        let q = service.min;
        let order = match service.service_type {
            ServiceType::Default if service.dripfeed => OrderRequest::Default {
                link: link(),
                quantity: q,
                drip_feed: Some(DripFeed {
                    runs: 3,
                    interval: 10,
                }),
            },
            ServiceType::Default => default_order(q),
            ServiceType::Package => OrderRequest::Package { link: link() },
            ServiceType::CustomComments => OrderRequest::CustomComments {
                link: link(),
                comments: lines(q),
            },
            ServiceType::CustomCommentsPackage => OrderRequest::CustomCommentsPackage {
                link: link(),
                comments: lines(3),
            },
            ServiceType::Mentions => OrderRequest::Mentions {
                link: link(),
                quantity: q,
                usernames: lines(2),
            },
            ServiceType::MentionsWithHashtags => OrderRequest::MentionsWithHashtags {
                link: link(),
                quantity: q,
                usernames: lines(2),
                hashtags: vec!["#a".into(), "#b".into()],
            },
            ServiceType::MentionsCustomList => OrderRequest::MentionsCustomList {
                link: link(),
                usernames: lines(q),
            },
            ServiceType::MentionsHashtag => OrderRequest::MentionsHashtag {
                link: link(),
                quantity: q,
                hashtag: "#tag".into(),
            },
            ServiceType::MentionsUserFollowers => OrderRequest::MentionsUserFollowers {
                link: link(),
                quantity: q,
                username: "someone".into(),
            },
            ServiceType::MentionsMediaLikers => OrderRequest::MentionsMediaLikers {
                link: link(),
                quantity: q,
                media: "https://example.com/p/2".into(),
            },
            ServiceType::CommentLikes => OrderRequest::CommentLikes {
                link: link(),
                quantity: q,
                username: "owner".into(),
            },
            ServiceType::Poll => OrderRequest::Poll {
                link: link(),
                quantity: q,
                answer_number: 2,
            },
            ServiceType::CommentReplies => OrderRequest::CommentReplies {
                link: link(),
                username: "owner".into(),
                comments: lines(q),
            },
            ServiceType::InvitesFromGroups => OrderRequest::InvitesFromGroups {
                link: link(),
                quantity: q,
                groups: lines(2),
            },
            ServiceType::Seo => OrderRequest::Seo {
                link: link(),
                quantity: q,
                keywords: lines(2),
            },
            ServiceType::Subscriptions => OrderRequest::Subscriptions {
                username: "someone".into(),
                min: service.min,
                max: service.min,
                delay: 30,
                posts: Some(5),
                old_posts: None,
                expiry: Some("31/12/2030".into()),
            },
            ServiceType::WebTraffic => OrderRequest::WebTraffic {
                link: link(),
                quantity: q,
                country: "US".into(),
                device: 1,
                type_of_traffic: 1,
                google_keyword: Some("smm panel".into()),
                referring_url: None,
            },
            ServiceType::Other(_) => continue,
        };
        let placed = client.add(&service.service, &order).await;
        assert!(
            placed.is_ok(),
            "{:?} ({}): {placed:?}",
            service.service_type,
            service.service
        );
    }
    let subscription = sim
        .sim
        .requests()
        .into_iter()
        .find(|r| {
            r.action.as_deref() == Some("add")
                && r.params.contains_key("username")
                && r.params.contains_key("delay")
        })
        .expect("a subscription was sent");
    assert!(!subscription.params.contains_key("link"));
    assert!(!subscription.params.contains_key("quantity"));
    assert_eq!(
        subscription.params.get("expiry").map(String::as_str),
        Some("31/12/2030")
    );
}

#[tokio::test]
async fn request_formats_reach_the_panel() {
    let sim = sim().await;
    for (format, method) in [
        (RequestFormat::Form, "POST"),
        (RequestFormat::Query, "GET"),
        (RequestFormat::Json, "POST"),
    ] {
        sim.sim.clear_requests();
        let mut config = config(&sim);
        config.request_format = format;
        let client = ProviderClient::new(config).expect("client");
        let balance = client.balance().await.expect("balance");
        assert_eq!(Some(balance.balance), sim.sim.balance(KEY));
        let order = place(&client).await;
        client.status(&order).await.expect("status");
        let requests = sim.sim.requests();
        assert!(requests.iter().all(|r| r.method == method), "{format:?}");
        if format == RequestFormat::Json {
            assert!(requests.iter().all(|r| {
                r.content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("application/json"))
            }));
        }
    }
}

#[tokio::test]
async fn many_id_calls_chunk_at_100_and_merge() {
    let sim = sim().await;
    let client = client(&sim);
    let mut ids = Vec::new();
    for _ in 0..150 {
        ids.push(place(&client).await);
    }
    ids.push(id("99999999"));
    ids.push(ids[0].clone()); // a repeat is asked once
    sim.sim.clear_requests();
    let outcome = client.statuses(&ids).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(
        requests_for(&sim, "status"),
        2,
        "151 distinct ids = 2 calls"
    );
    assert_eq!(outcome.items.len() + outcome.missing.len(), 151);
    let unknown = outcome
        .items
        .iter()
        .find(|(i, _)| i.as_str() == "99999999")
        .map(|(_, r)| r.clone());
    assert_eq!(unknown, Some(Err(ErrorKind::IncorrectOrderId)));
    assert_eq!(outcome.items.iter().filter(|(_, r)| r.is_ok()).count(), 150);
    for request in sim.sim.requests() {
        let n = request
            .params
            .get("orders")
            .map_or(0, |o| o.split(',').count());
        assert!(n <= 100);
    }
}

#[tokio::test]
async fn refill_and_cancel_round_trip() {
    let sim = sim().await;
    let client = client(&sim);
    let catalog = client.services().await.expect("services").services;
    let refillable = catalog
        .iter()
        .find(|s| s.refill && s.service_type == ServiceType::Default)
        .expect("a refill-enabled service");
    let cancellable = catalog
        .iter()
        .find(|s| s.cancel && s.service_type == ServiceType::Default)
        .expect("a cancel-enabled service");

    let to_refill = client
        .add(&refillable.service, &default_order(refillable.min))
        .await
        .expect("add");
    let to_cancel = client
        .add(&cancellable.service, &default_order(cancellable.min))
        .await
        .expect("add");
    let cancelled = client.cancels(&[to_cancel.clone(), id("424242")]).await;
    assert!(cancelled.failed.is_empty());
    assert!(cancelled.items.contains(&(to_cancel.clone(), Ok(()))));
    assert!(
        cancelled
            .items
            .contains(&(id("424242"), Err(ErrorKind::IncorrectOrderId)))
    );

    // Let every order finish, then refill.
    sim.sim.advance(Duration::from_secs(30 * 24 * 3600));
    let finished = client.status(&to_refill).await.expect("status");
    assert!(finished.status.is_terminal(), "{:?}", finished.status);
    let status = client.status(&to_cancel).await.expect("status");
    assert!(
        matches!(status.status, OrderStatus::Canceled | OrderStatus::Partial),
        "{:?}",
        status.status
    );
    if matches!(
        finished.status,
        OrderStatus::Completed | OrderStatus::Partial
    ) {
        let refill = client.refill(&to_refill).await.expect("refill");
        let many = client.refills(&[to_refill.clone(), id("424242")]).await;
        assert!(many.failed.is_empty());
        assert_eq!(many.items.len(), 2);
        assert!(
            many.items
                .contains(&(id("424242"), Err(ErrorKind::IncorrectOrderId)))
        );
        client.refill_status(&refill).await.expect("refill status");
        let statuses = client
            .refill_statuses(&[refill.clone(), id("777777")])
            .await;
        assert!(
            statuses
                .items
                .contains(&(id("777777"), Err(ErrorKind::RefillNotFound)))
        );
        sim.sim.advance(Duration::from_secs(30 * 24 * 3600));
        let done = client.refill_status(&refill).await.expect("refill status");
        assert!(
            matches!(done, RefillStatus::Completed | RefillStatus::Rejected),
            "{done:?}"
        );
    }
    assert_eq!(requests_for(&sim, "cancel"), 1);
}

#[tokio::test]
async fn single_order_cancel_variant() {
    let sim = sim().await;
    let client = client(&sim);
    let catalog = client.services().await.expect("services").services;
    let cancellable = catalog
        .iter()
        .find(|s| s.cancel && s.service_type == ServiceType::Default)
        .expect("a cancel-enabled service");
    let order = client
        .add(&cancellable.service, &default_order(cancellable.min))
        .await
        .expect("add");
    client.cancel(&order).await.expect("cancel accepted");
    assert_eq!(
        client.cancel(&id("31337")).await,
        Err(ProviderError::Rejected {
            kind: ErrorKind::IncorrectOrderId
        })
    );
}

fn fault(fault: Fault, action: &str) -> FaultRule {
    FaultRule {
        fault,
        action: Some(action.to_owned()),
        service: None,
        times: None,
    }
}

/// Every fault mode on `add`: the right class, exactly one request, and the order recorded
/// upstream only where the fault lets it through.
#[tokio::test]
async fn add_faults_are_classified_and_never_retried() {
    let cases: Vec<(Fault, &str, usize)> = vec![
        (Fault::Hang, "ambiguous", 0),
        (Fault::Http500, "ambiguous", 0),
        (Fault::Html200, "protocol", 0),
        (Fault::EmptyBody, "protocol", 0),
        (
            Fault::Error {
                text: "neworder.error.not_enough_funds".into(),
            },
            "rejected",
            0,
        ),
        (Fault::RateLimited, "rejected", 0),
        (Fault::DropAfterRecord, "ambiguous", 1),
        (Fault::DropBeforeRecord, "ambiguous", 0),
        (Fault::Garbled, "protocol", 1),
        (Fault::Redirect, "protocol", 0),
        (Fault::Latency { ms: 50 }, "ok", 1),
    ];
    for (f, class, recorded) in cases {
        let sim = sim().await;
        let mut config = config(&sim);
        config.timeout = Duration::from_millis(500);
        let client = ProviderClient::new(config).expect("client");
        let (service, min) = service_of(&client, ServiceType::Default).await;
        sim.sim.add_fault(fault(f.clone(), "add"));
        let result = client.add(&service, &default_order(min)).await;
        let got = match &result {
            Ok(_) => "ok",
            Err(e) => e.class(),
        };
        assert_eq!(got, class, "{f:?}: {result:?}");
        assert_eq!(requests_for(&sim, "add"), 1, "{f:?} sent once");
        assert_eq!(sim.sim.orders().len(), recorded, "{f:?}");
        match f {
            Fault::Error { .. } => assert_eq!(
                result,
                Err(ProviderError::Rejected {
                    kind: ErrorKind::NotEnoughFunds
                })
            ),
            Fault::RateLimited => assert_eq!(
                result,
                Err(ProviderError::Rejected {
                    kind: ErrorKind::RateLimited
                })
            ),
            _ => {}
        }
        if let Err(e) = &result {
            assert_eq!(
                e.is_definitive_no(),
                class == "rejected",
                "{f:?} must not allow fail-over unless definitive"
            );
        }
    }
}

#[tokio::test]
async fn refused_connection_is_not_sent() {
    // Bind and drop a listener: the port is then (almost certainly) closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut config = ProviderConfig::new(
        "down",
        format!("http://127.0.0.1:{port}/api/v2")
            .parse()
            .expect("url"),
        SecretKey::new(KEY),
    );
    config.retry.base_delay = Duration::from_millis(1);
    let client = ProviderClient::new(config).expect("client");
    let order = default_order(100);
    let error = client
        .add(&id("1"), &order)
        .await
        .expect_err("nothing listens");
    assert_eq!(error.class(), "not_sent", "{error}");
    assert!(error.is_definitive_no());
    let error = client.balance().await.expect_err("nothing listens");
    assert_eq!(error.class(), "not_sent");
}

/// Reads retry through transient faults and give up with the right class on lasting ones.
#[tokio::test]
async fn reads_retry_with_backoff() {
    let transient: Vec<Fault> = vec![
        Fault::Http500,
        Fault::Html200,
        Fault::EmptyBody,
        Fault::RateLimited,
        Fault::DropBeforeRecord,
        Fault::Garbled,
        Fault::Hang,
    ];
    for f in transient {
        let sim = sim().await;
        let mut config = config(&sim);
        config.timeout = Duration::from_millis(300);
        let client = ProviderClient::new(config).expect("client");
        sim.sim.add_fault(FaultRule {
            times: Some(2),
            ..fault(f.clone(), "balance")
        });
        let balance = client.balance().await;
        assert!(balance.is_ok(), "{f:?}: {balance:?}");
        assert_eq!(
            requests_for(&sim, "balance"),
            3,
            "{f:?}: two failures, one success"
        );
    }

    let sim = sim().await;
    let client = client(&sim);
    sim.sim.add_fault(fault(Fault::Http500, "balance"));
    let error = client.balance().await.expect_err("lasting fault");
    assert_eq!(error.class(), "ambiguous");
    assert_eq!(requests_for(&sim, "balance"), 3, "max_attempts");

    // A definitive rejection of a read is not retried.
    sim.sim.clear_faults();
    sim.sim.clear_requests();
    sim.sim.add_fault(fault(
        Fault::Error {
            text: "Invalid API key".into(),
        },
        "balance",
    ));
    let error = client.balance().await.expect_err("rejected");
    assert_eq!(
        error,
        ProviderError::Rejected {
            kind: ErrorKind::InvalidKey
        }
    );
    assert_eq!(requests_for(&sim, "balance"), 1);
}

#[tokio::test]
async fn batch_chunk_failures_are_reported_per_chunk() {
    let sim = sim().await;
    let client = client(&sim);
    let mut ids = Vec::new();
    for _ in 0..120 {
        ids.push(place(&client).await);
    }
    // Writes: the first cancel chunk hits a dropped connection, the second goes through.
    sim.sim.clear_requests();
    sim.sim.add_fault(FaultRule {
        times: Some(1),
        ..fault(Fault::DropAfterRecord, "cancel")
    });
    let outcome = client.cancels(&ids).await;
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].ids.len(), 100);
    assert_eq!(outcome.failed[0].error.class(), "ambiguous");
    assert_eq!(outcome.items.len() + outcome.missing.len(), 20);
    assert_eq!(requests_for(&sim, "cancel"), 2, "no chunk sent twice");
}

#[tokio::test]
async fn dialects_are_understood() {
    let dialects = [
        Dialect {
            numbers_as_numbers: true,
            ..Dialect::default()
        },
        Dialect {
            order_id_as_string: true,
            ..Dialect::default()
        },
        Dialect {
            order_id_key: true,
            ..Dialect::default()
        },
        Dialect {
            cancelled_spelling: true,
            ..Dialect::default()
        },
        Dialect {
            lowercase_status: true,
            ..Dialect::default()
        },
        Dialect {
            snake_status: true,
            ..Dialect::default()
        },
        Dialect {
            numeric_status: true,
            ..Dialect::default()
        },
        Dialect {
            unknown_remains: true,
            ..Dialect::default()
        },
    ];
    for dialect in dialects {
        let sim = sim().await;
        sim.sim.set_dialect(dialect);
        let client = client(&sim);
        let catalog = client.services().await.expect("services");
        assert!(
            catalog.invalid.is_empty(),
            "{dialect:?}: {:?}",
            catalog.invalid
        );
        let cancellable = catalog
            .services
            .iter()
            .find(|s| s.cancel && s.service_type == ServiceType::Default)
            .expect("a cancel-enabled service");
        let fresh = client
            .add(&cancellable.service, &default_order(cancellable.min))
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {e}"));
        let status = client.status(&fresh).await.expect("status");
        assert!(
            !matches!(status.status, OrderStatus::Unknown(_)),
            "{dialect:?}: {:?}",
            status.status
        );
        let cancel = client.cancels(std::slice::from_ref(&fresh)).await;
        assert!(cancel.failed.is_empty(), "{dialect:?}");
        sim.sim.advance(Duration::from_secs(30 * 24 * 3600));
        let many = client.statuses(std::slice::from_ref(&fresh)).await;
        let (_, item) = many.items.first().expect("one status");
        let item = item.as_ref().expect("known order");
        assert!(
            matches!(item.status, OrderStatus::Canceled | OrderStatus::Partial),
            "{dialect:?}: {:?}",
            item.status
        );
        let balance = client.balance().await.expect("balance");
        assert_eq!(Some(balance.balance), sim.sim.balance(KEY), "{dialect:?}");
    }

    // Raw Perfect Panel keys map to the same kinds as their English texts.
    let sim = sim().await;
    sim.sim.set_dialect(Dialect {
        raw_error_keys: true,
        ..Dialect::default()
    });
    sim.sim.set_balance(KEY, Decimal::ZERO);
    let client = client(&sim);
    let (service, min) = service_of(&client, ServiceType::Default).await;
    assert_eq!(
        client.add(&service, &default_order(min)).await,
        Err(ProviderError::Rejected {
            kind: ErrorKind::NotEnoughFunds
        })
    );
}

#[tokio::test]
async fn rate_limit_spaces_calls() {
    let sim = sim().await;
    let mut config = config(&sim);
    config.rate_limit = Some(RateLimit {
        requests: 20,
        per: Duration::from_secs(1),
        burst: 1,
    });
    let client = ProviderClient::new(config).expect("client");
    let started = std::time::Instant::now();
    for _ in 0..5 {
        client.balance().await.expect("balance");
    }
    // 5 calls at 20/s with no burst: at least 4 gaps of 50 ms.
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn an_add_in_a_slot_taken_with_ready_does_not_wait_again() {
    let sim = sim().await;
    let mut config = config(&sim);
    config.rate_limit = Some(RateLimit {
        requests: 2,
        per: Duration::from_secs(1),
        burst: 1,
    });
    let client = ProviderClient::new(config).expect("client");
    // `service_of` spends the only slot of the burst: the next one is 500 ms away.
    let (service, min) = service_of(&client, ServiceType::Default).await;
    let ready = client.ready().await;
    let sent = std::time::Instant::now();
    client
        .add_ready(ready, &service, &default_order(min))
        .await
        .expect("add");
    // Another wait for a slot of its own would have taken 500 ms.
    assert!(
        sent.elapsed() < Duration::from_millis(250),
        "the add left in its slot, not after another wait: {:?}",
        sent.elapsed()
    );
    assert_eq!(requests_for(&sim, "add"), 1);
}

#[tokio::test]
async fn the_key_never_prints() {
    let sim = sim().await;
    let config = config(&sim);
    let client = ProviderClient::new(config.clone()).expect("client");
    assert!(!format!("{config:?}").contains(KEY));
    assert!(!format!("{client:?}").contains(KEY));
    assert!(!config.key.to_string().contains(KEY));
    // Errors from a query-string provider (key in the URL) do not carry the URL.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut down = ProviderConfig::new(
        "down",
        format!("http://127.0.0.1:{port}/api/v2")
            .parse()
            .expect("url"),
        SecretKey::new(KEY),
    );
    down.request_format = RequestFormat::Query;
    down.retry.max_attempts = 1;
    let error = ProviderClient::new(down)
        .expect("client")
        .balance()
        .await
        .expect_err("nothing listens");
    assert!(!format!("{error} {error:?}").contains(KEY), "{error:?}");
}
