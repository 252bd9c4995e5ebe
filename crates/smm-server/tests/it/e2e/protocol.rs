//! The protocol surface: transports and typing of `balance`, exact errors, `services`,
//! `status`, and the seed shapes of `refill`, `refill_status` and `cancel`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use smm_store::{ForwardState, StatusUpdate};
use smm_wire::{Money, OrderStatus};

use crate::support::{
    ALL_SERVICES, Backend, KEY, LINK, NARROW, NARROW_MAX, NARROW_MIN, PROTOCOL_TYPES,
    START_BALANCE, TestGateway, assert_json_content_type, decimal, error_reply, first_route, json,
    marked_up, money_add, money_sub, now_ms, order_id_of, per_thousand, wait_for,
};

const OTHER_KEY: &str = "e2e-other-customer-key-0002";

/// (f) 1: `balance` by form POST, GET query, JSON body, multipart, with a trailing slash, with a
/// charset, over HTTP/1.0 and with `Connection: close` — one identical body, typed as the panels
/// type it.
pub async fn balance_is_the_same_however_it_is_asked(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let params = [("key", KEY), ("action", "balance")];
    let mut bodies: Vec<(&str, String)> = Vec::new();
    let mut record = |how: &'static str, (status, headers, body): (StatusCode, _, String)| {
        assert_eq!(status, StatusCode::OK, "{how}: HTTP status ({body})");
        assert_json_content_type(&headers);
        bodies.push((how, body));
    };
    record("form POST", gw.post_form(&params).await);
    record("GET query", gw.get_query(&params).await);
    record(
        "JSON body",
        gw.post_json(&json!({"key": KEY, "action": "balance"}))
            .await,
    );
    record(
        "trailing slash",
        gw.post_form_to(&format!("{}/", gw.url), &params).await,
    );
    record(
        "form with charset",
        gw.post_form_typed("application/x-www-form-urlencoded; charset=UTF-8", &params)
            .await,
    );
    record("multipart", gw.post_multipart(&params).await);

    let form_body = format!("key={KEY}&action=balance");
    let host = gw.gateway().addr;
    for (how, version, connection) in [
        ("HTTP/1.0", "HTTP/1.0", ""),
        ("Connection: close", "HTTP/1.1", "Connection: close\r\n"),
    ] {
        let request = format!(
            "POST /api/v2 {version}\r\nHost: {host}\r\nUser-Agent: Mozilla/4.0 (compatible; \
             MSIE 5.01; Windows NT 5.0)\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n{connection}\r\n{form_body}",
            form_body.len()
        );
        let (status_line, headers, body) = gw.raw_exchange(&request).await;
        assert!(
            status_line.starts_with("HTTP/1.") && status_line.contains(" 200 "),
            "{how}: status line {status_line:?}"
        );
        assert!(
            headers.lines().any(|line| {
                let lower = line.to_ascii_lowercase();
                lower.starts_with("content-type:") && lower.contains("application/json")
            }),
            "{how}: Content-Type application/json in {headers:?}"
        );
        bodies.push((how, body));
    }

    let (_, first) = &bodies[0];
    for (how, body) in &bodies {
        assert_eq!(body, first, "{how} gives the same body as a form POST");
    }
    let reply = json(first);
    assert_eq!(
        reply,
        json!({"balance": "1000.00000", "currency": "USD"}),
        "balance reply"
    );
    let balance = reply["balance"].as_str().expect("balance is a string");
    let (units, decimals) = balance.split_once('.').expect("a decimal point");
    assert!(
        !units.is_empty() && units.bytes().all(|b| b.is_ascii_digit()),
        "{balance}"
    );
    assert!(
        decimals.len() == 5 && decimals.bytes().all(|b| b.is_ascii_digit()),
        "balance has exactly 5 decimals: {balance}"
    );
    gw.finish().await;
}

/// (f) 2: errors are HTTP 200 with exactly `{"error": "..."}`.
pub async fn errors_are_exact_and_http_200(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let invalid_key = r#"{"error":"Invalid API key"}"#;
    let incorrect_request = r#"{"error":"Incorrect request"}"#;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong key",
            vec![("key", "not-a-key"), ("action", "balance")],
            invalid_key,
        ),
        (
            "wrong key, services",
            vec![("key", "not-a-key"), ("action", "services")],
            invalid_key,
        ),
        (
            "wrong key, add",
            vec![
                ("key", "not-a-key"),
                ("action", "add"),
                ("service", "1"),
                ("link", LINK),
                ("quantity", "100"),
            ],
            invalid_key,
        ),
        ("missing key", vec![("action", "balance")], invalid_key),
        (
            "blank key",
            vec![("key", ""), ("action", "balance")],
            invalid_key,
        ),
        (
            "unknown action",
            vec![("key", KEY), ("action", "withdraw")],
            incorrect_request,
        ),
        ("missing action", vec![("key", KEY)], incorrect_request),
        (
            "blank action",
            vec![("key", KEY), ("action", "")],
            incorrect_request,
        ),
    ];
    for (what, params, expected) in &cases {
        for (transport, (status, headers, body)) in [
            ("form", gw.post_form(params).await),
            ("query", gw.get_query(params).await),
        ] {
            assert_eq!(status, StatusCode::OK, "{what} ({transport}): HTTP 200");
            assert_json_content_type(&headers);
            assert_eq!(body, *expected, "{what} ({transport}): exact body");
        }
    }
    let (status, headers, body) = gw
        .post_json(&json!({"key": "not-a-key", "action": "balance"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_json_content_type(&headers);
    assert_eq!(body, invalid_key, "wrong key in a JSON body");

    // Nothing happened to anybody's money.
    assert_eq!(gw.balance().await, START_BALANCE);
    assert!(gw.orders_of(gw.customer).await.is_empty());
    gw.finish().await;
}

/// (f) 3: `services` is an array typed like the panels' docs, with exact type strings and rates
/// marked up 30 % and rounded up to 4 decimals.
///
/// Beta is configured as a EUR provider worth 1.1 USD: a service whose first route is beta's is
/// priced from the converted cost.
pub async fn services_are_typed_and_marked_up(backend: Backend) {
    let beta_rate = Decimal::new(11, 1);
    let gw = TestGateway::start_with(backend, |settings| {
        let beta = settings
            .providers
            .iter_mut()
            .find(|p| p.name == "beta")
            .expect("beta configured");
        beta.currency = Some("EUR".into());
        beta.rate = beta_rate;
    })
    .await;
    let (status, headers, body) = gw.post_form(&[("key", KEY), ("action", "services")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_json_content_type(&headers);
    let services = json(&body);
    let items = services.as_array().expect("services is a JSON array");

    let ids: Vec<u64> = items
        .iter()
        .map(|s| s["service"].as_u64().expect("`service` is a JSON integer"))
        .collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "service ids are unique: {ids:?}");
    assert_eq!(
        unique,
        ALL_SERVICES.collect::<BTreeSet<u64>>(),
        "exactly the configured services are listed"
    );

    let mut types_seen = BTreeSet::new();
    for item in items {
        let object = item.as_object().expect("each service is an object");
        let id = item["service"].as_u64().expect("service id");
        for field in ["name", "type", "category", "rate", "min", "max"] {
            assert!(
                object.get(field).is_some_and(Value::is_string),
                "service {id}: `{field}` is a string: {item}"
            );
        }
        for field in ["refill", "cancel", "dripfeed"] {
            assert!(
                object.get(field).is_some_and(Value::is_boolean),
                "service {id}: `{field}` is a boolean: {item}"
            );
        }
        let (provider, upstream_id) = first_route(id);
        let upstream = gw
            .sim(provider)
            .services()
            .into_iter()
            .find(|s| s.id == upstream_id)
            .expect("upstream service");

        let service_type = item["type"].as_str().expect("type");
        assert!(
            PROTOCOL_TYPES.contains(&service_type),
            "service {id}: type {service_type:?} is one of table (b)"
        );
        assert_eq!(
            service_type, upstream.service_type,
            "service {id}: the upstream type"
        );
        types_seen.insert(service_type.to_owned());

        let rate_text = item["rate"].as_str().expect("rate");
        let rate = decimal(&item["rate"]);
        assert!(rate > Decimal::ZERO, "service {id}: rate {rate_text} > 0");
        assert!(
            rate.normalize().scale() <= 4,
            "service {id}: rate {rate_text} has at most 4 decimals"
        );
        let cost = if provider == "beta" {
            upstream.rate * beta_rate
        } else {
            upstream.rate
        };
        assert_eq!(
            rate,
            marked_up(cost),
            "service {id}: rate = upstream cost {cost} × 1.30 rounded up to 4 decimals",
        );

        let bound = |field: &str| -> u64 {
            let text = item[field].as_str().expect("bound");
            assert!(
                !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
                "service {id}: `{field}` is an integer string, got {text:?}"
            );
            text.parse().expect("bound fits u64")
        };
        let (min, max) = if id == NARROW {
            (NARROW_MIN, NARROW_MAX)
        } else {
            (upstream.min, upstream.max)
        };
        assert_eq!((bound("min"), bound("max")), (min, max), "service {id}");
        assert_eq!(
            item["refill"],
            json!(upstream.refill),
            "service {id} refill"
        );
        assert_eq!(
            item["cancel"],
            json!(upstream.cancel),
            "service {id} cancel"
        );
        assert_eq!(
            item["dripfeed"],
            json!(upstream.dripfeed),
            "service {id} dripfeed"
        );
    }
    assert_eq!(
        types_seen,
        PROTOCOL_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect::<BTreeSet<_>>(),
        "every type of table (b) is offered"
    );

    // A few rates worked out by hand: rounding is upward, never to nearest.
    for (service, expected) in [
        (1, "1.17"),
        (3, "0.0163"),
        (5, "6.487"),
        (8, "3.0485"),
        (18, "0.0562"),
        (20, "0.0407"),
        // 0.90 EUR × 1.1 × 1.3 = 1.287 USD
        (crate::support::BETA_ONLY, "1.287"),
    ] {
        assert_eq!(
            gw.rate(service).await,
            expected.parse::<Decimal>().expect("decimal"),
            "service {service}"
        );
    }

    // A tiny upstream price never becomes a zero rate: 0.00001 × 1.3 rounds UP to 0.0001.
    let mut catalog = gw.alpha().services();
    let seo = catalog.iter_mut().find(|s| s.id == 18).expect("service 18");
    seo.rate = Decimal::new(1, 5);
    gw.alpha().set_services(catalog);
    gw.gateway().app.sync_catalog().await;
    let reply = gw.api("services", &[]).await;
    let seo = reply
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["service"] == json!(18))
        .expect("service 18 still listed")
        .clone();
    assert_eq!(seo["rate"], json!("0.0001"), "{seo}");
    gw.finish().await;
}

/// A form POST of `key` and `action` with an optional `Accept-Encoding`: the status, headers
/// and the body's bytes exactly as sent (this client decompresses nothing).
async fn post_raw(
    gw: &TestGateway,
    key: &str,
    action: &str,
    accept_encoding: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = gw
        .http
        .post(&gw.url)
        .form(&[("key", key), ("action", action)]);
    if let Some(value) = accept_encoding {
        request = request.header(reqwest::header::ACCEPT_ENCODING, value);
    }
    let response = request.send().await.expect("form POST");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("reply body").to_vec();
    (status, headers, body)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip stream");
    out
}

/// The `services` reply of `key` as identity and as gzip, checked against each other: the
/// gzip copy is announced, varies by `Accept-Encoding`, and decompresses to exactly the
/// identity bytes. Returns the identity bytes.
async fn services_both_ways(gw: &TestGateway, key: &str) -> Vec<u8> {
    let header = |headers: &reqwest::header::HeaderMap, name| {
        headers
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().expect("ASCII").to_owned())
    };
    let mut identity = None;
    for accept in [
        None,
        Some("gzip;q=0"),
        Some("identity"),
        Some("*;q=0, deflate"),
    ] {
        let (status, headers, body) = post_raw(gw, key, "services", accept).await;
        assert_eq!(status, StatusCode::OK);
        assert_json_content_type(&headers);
        assert_eq!(header(&headers, "content-encoding"), None, "{accept:?}");
        assert_eq!(
            header(&headers, "vary").as_deref(),
            Some("accept-encoding"),
            "{accept:?}"
        );
        assert!(json(std::str::from_utf8(&body).expect("UTF-8")).is_array());
        match &identity {
            None => identity = Some(body),
            Some(first) => assert_eq!(&body, first, "identity replies are the same bytes"),
        }
    }
    let identity = identity.expect("an identity reply");
    for accept in ["gzip, deflate", "GZIP;q=0.5", "br, *"] {
        let (status, headers, body) = post_raw(gw, key, "services", Some(accept)).await;
        assert_eq!(status, StatusCode::OK);
        assert_json_content_type(&headers);
        assert_eq!(
            header(&headers, "content-encoding").as_deref(),
            Some("gzip"),
            "{accept}"
        );
        assert_eq!(header(&headers, "vary").as_deref(), Some("accept-encoding"));
        assert!(body.len() < identity.len() / 2, "{accept}: compressed");
        assert!(
            gunzip(&body) == identity,
            "{accept}: the same bytes once decompressed"
        );
    }
    identity
}

/// Issue #16: a client accepting gzip gets the cached `services` reply compressed, byte-identical
/// once decompressed, for list prices and a discounted price list alike, and a new one after the
/// catalog changes; identity for everyone else; errors and other actions are as before.
pub async fn services_are_gzipped_for_clients_that_accept_it(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let list = services_both_ways(&gw, KEY).await;
    // Served from the cache the second time: still the same bytes.
    assert_eq!(services_both_ways(&gw, KEY).await, list);

    let discounted = gw
        .create_customer("discounted", OTHER_KEY, Money::ZERO)
        .await;
    gw.store()
        .set_discount(discounted, Some(Decimal::from(10)), "test", 0)
        .await
        .expect("discount");
    let theirs = services_both_ways(&gw, OTHER_KEY).await;
    assert_ne!(theirs, list, "a discount is a price list of its own");
    assert_eq!(services_both_ways(&gw, OTHER_KEY).await, theirs);

    // A price change upstream, synced: new bodies, compressed anew.
    let mut catalog = gw.alpha().services();
    let service = catalog.iter_mut().find(|s| s.id == 1).expect("service 1");
    service.rate += Decimal::ONE;
    gw.alpha().set_services(catalog);
    gw.app().sync_catalog().await;
    let new_list = services_both_ways(&gw, KEY).await;
    assert_ne!(new_list, list, "the synced price is served");
    let rate_of = |body: &[u8]| {
        json(std::str::from_utf8(body).expect("UTF-8"))
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["service"] == json!(1))
            .map(|s| decimal(&s["rate"]))
            .expect("service 1")
    };
    assert!(rate_of(&new_list) > rate_of(&list));
    let new_theirs = services_both_ways(&gw, OTHER_KEY).await;
    assert!(rate_of(&new_theirs) > rate_of(&theirs));

    // Errors and other actions are never compressed and do not vary.
    for (key, action) in [("not-a-key", "services"), (KEY, "balance"), (KEY, "nope")] {
        let (status, headers, body) = post_raw(&gw, key, action, Some("gzip")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("content-encoding").is_none(), "{action}");
        assert!(headers.get("vary").is_none(), "{action}");
        json(std::str::from_utf8(&body).expect("an uncompressed reply"));
    }
    gw.finish().await;
}

/// Issue #16: `status` may answer from a cache of recent reads, but never more than a second
/// behind the store, at once after a change this process made (the reconciler applying an
/// upstream status), and never to a customer who does not own the order: for them an existing
/// order is exactly as unknown as a missing one.
pub async fn status_is_at_most_a_second_stale_and_never_anothers(backend: Backend) {
    let gw = TestGateway::start_polling(backend, |_| {}).await;
    let id = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let sent = gw.wait_state(id, ForwardState::Sent).await;
    let id_s = id.to_string();
    let status_word = |reply: &Value| reply["status"].as_str().map(str::to_owned);
    assert_eq!(
        status_word(&gw.api("status", &[("order", &id_s)]).await).as_deref(),
        Some("Pending")
    );

    // Another customer, right after the owner's read: the same answer as for no order at all.
    gw.create_customer("other", OTHER_KEY, Money::ZERO).await;
    let incorrect = error_reply("Incorrect order ID");
    let missing = "999999999";
    for asked in [id_s.as_str(), missing] {
        assert_eq!(
            gw.call(OTHER_KEY, "status", &[("order", asked)]).await,
            incorrect,
            "order {asked}"
        );
    }
    let both = format!("{id},{missing}");
    assert_eq!(
        gw.call(OTHER_KEY, "status", &[("orders", &both)]).await,
        json!({ id_s.as_str(): incorrect.clone(), missing: incorrect.clone() })
    );
    let mine = gw.api("status", &[("orders", &both)]).await;
    assert_eq!(mine[id_s.as_str()]["status"], "Pending", "{mine}");
    assert_eq!(mine[missing], incorrect, "{mine}");

    // A change made behind this process's back (here: straight in the store) shows within the
    // bound.
    let changed_at = std::time::Instant::now();
    gw.store()
        .apply_status(
            "alpha",
            sent.upstream_order_id.as_deref().expect("upstream id"),
            StatusUpdate {
                delivery: Default::default(),
                status: OrderStatus::InProgress,
                start_count: Some(5),
                remains: Some(50),
                extra: None,
                next_poll_at: now_ms(),
            },
            now_ms(),
        )
        .await
        .expect("apply a status")
        .expect("the order is known at alpha");
    wait_for(
        "the new status through v2",
        Duration::from_secs(5),
        || async {
            status_word(&gw.api("status", &[("order", &id_s)]).await).as_deref()
                == Some("In progress")
        },
    )
    .await;
    let seen_after = changed_at.elapsed();
    assert!(
        seen_after <= smm_server::app::ORDER_VIEW_MAX_AGE + Duration::from_millis(500),
        "the change showed after {seen_after:?}"
    );

    // A change this process makes (the reconciler applying the upstream's status) shows at once.
    assert_eq!(
        gw.api("status", &[("orders", &both)]).await[id_s.as_str()]["status"],
        "In progress"
    );
    gw.advance_sims(Duration::from_secs(4 * 3600));
    gw.make_polls_due().await;
    gw.reconcile().await;
    assert_eq!(gw.order(id).await.status, OrderStatus::Completed);
    assert_eq!(
        status_word(&gw.api("status", &[("order", &id_s)]).await).as_deref(),
        Some("Completed")
    );
    assert_eq!(
        gw.call(OTHER_KEY, "status", &[("order", &id_s)]).await,
        incorrect
    );
    gw.finish().await;
}

fn status_object(charge: Money, remains: u64) -> Value {
    json!({
        "charge": charge.to_string(),
        "start_count": "0",
        "status": "Pending",
        "remains": remains.to_string(),
        "currency": "USD",
    })
}

/// (f) 13: `status` of one order, of many (keyed by id strings in request order, per-item
/// errors for unknown ids and other customers' orders), and more than 100 ids.
pub async fn status_single_and_multi(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let other = gw
        .create_customer("other", OTHER_KEY, Money::from_units(100 * 100_000))
        .await;
    let rate = gw.rate(1).await;
    let own1 = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let own2 = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/second"),
            ("quantity", "250"),
        ])
        .await;
    let theirs = order_id_of(
        &gw.call(
            OTHER_KEY,
            "add",
            &[("service", "1"), ("link", LINK), ("quantity", "300")],
        )
        .await,
    );
    for id in [own1, own2, theirs] {
        gw.wait_state(id, ForwardState::Sent).await;
    }
    assert_eq!(gw.orders_of(other).await.len(), 1);

    let expected1 = status_object(per_thousand(rate, 100), 100);
    let expected2 = status_object(per_thousand(rate, 250), 250);
    let (own1_s, own2_s, theirs_s) = (own1.to_string(), own2.to_string(), theirs.to_string());

    assert_eq!(gw.api("status", &[("order", &own1_s)]).await, expected1);
    assert_eq!(gw.api("status", &[("order", &own2_s)]).await, expected2);
    let incorrect = error_reply("Incorrect order ID");
    assert_eq!(gw.api("status", &[("order", "999999")]).await, incorrect);
    assert_eq!(
        gw.api("status", &[("order", &theirs_s)]).await,
        incorrect,
        "another customer's order is unknown"
    );

    // Mixed ids, in an order that is neither numeric nor lexicographic.
    let ids = [
        own2_s.as_str(),
        "999999",
        own1_s.as_str(),
        theirs_s.as_str(),
    ];
    let list = ids.join(",");
    let (status, headers, body) = gw
        .post_form(&[("key", KEY), ("action", "status"), ("orders", &list)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_json_content_type(&headers);
    assert_eq!(
        json(&body),
        json!({
            own2_s.clone(): expected2,
            "999999": incorrect,
            own1_s.clone(): expected1,
            theirs_s.clone(): incorrect,
        }),
        "multi status: {body}"
    );
    let positions: Vec<usize> = ids
        .iter()
        .map(|id| {
            body.find(&format!("\"{id}\":"))
                .unwrap_or_else(|| panic!("key {id:?} in {body}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys in request order ({list}): {body}"
    );

    // 100 ids are fine, 101 are an error.
    let hundred: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    let reply = gw.api("status", &[("orders", &hundred.join(","))]).await;
    let object = reply.as_object().expect("multi status is an object");
    assert_eq!(object.len(), 100, "100 ids → 100 items");
    assert_eq!(object[&own1_s], expected1);
    assert_eq!(object["100"], incorrect);
    let too_many: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
    let reply = gw.api("status", &[("orders", &too_many.join(","))]).await;
    let object = reply.as_object().expect("an error object");
    assert_eq!(object.len(), 1, "101 ids → only an error: {reply}");
    assert!(
        object
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty()),
        "101 ids → {{\"error\": ...}}: {reply}"
    );
    gw.finish().await;
}

/// The seed shapes of `refill` and `refill_status`, before any reconciler exists: errors for
/// unknown orders and refills, per-item errors in arrays, a string id for a single refill.
pub async fn refill_and_refill_status_seed_shapes(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let incorrect = error_reply("Incorrect order ID");
    let not_found = error_reply("Refill not found");

    assert_eq!(gw.api("refill", &[("order", "999999")]).await, incorrect);
    assert_eq!(
        gw.api("refill", &[("orders", "999999,888888")]).await,
        json!([
            {"order": 999999, "refill": incorrect},
            {"order": 888888, "refill": incorrect},
        ])
    );
    assert_eq!(gw.api("refill_status", &[("refill", "1")]).await, not_found);
    assert_eq!(
        gw.api("refill_status", &[("refills", "1,2")]).await,
        json!([
            {"refill": 1, "status": not_found},
            {"refill": 2, "status": not_found},
        ])
    );

    // A refill-capable order still pending, and an order of a service without refill.
    let pending = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let no_refill = gw
        .add_ok(&[("service", "3"), ("link", LINK), ("quantity", "100")])
        .await;
    let sent = gw.wait_state(pending, ForwardState::Sent).await;
    gw.wait_state(no_refill, ForwardState::Sent).await;
    let (pending_s, no_refill_s) = (pending.to_string(), no_refill.to_string());

    let reply = gw.api("refill", &[("order", &pending_s)]).await;
    assert_error_object(&reply, "refill of a pending order");
    assert_eq!(
        gw.api("refill", &[("order", &no_refill_s)]).await,
        error_reply("Refill is disabled for this service")
    );
    let list = format!("{no_refill},999999");
    assert_eq!(
        gw.api("refill", &[("orders", &list)]).await,
        json!([
            {"order": no_refill.0, "refill": error_reply("Refill is disabled for this service")},
            {"order": 999999, "refill": incorrect},
        ])
    );

    // Once the upstream reports it Completed, a refill is accepted: a string id alone.
    let applied = gw
        .store()
        .apply_status(
            "alpha",
            sent.upstream_order_id.as_deref().expect("upstream id"),
            StatusUpdate {
                delivery: Default::default(),
                status: OrderStatus::Completed,
                start_count: Some(10),
                remains: Some(0),
                extra: None,
                next_poll_at: now_ms() + 3_600_000,
            },
            now_ms(),
        )
        .await
        .expect("apply a status")
        .expect("the order is known at alpha");
    assert_eq!(applied.order_id, pending);
    let reply = gw.api("refill", &[("order", &pending_s)]).await;
    let object = reply.as_object().expect("refill reply is an object");
    assert_eq!(object.len(), 1, "{reply}");
    let refill_id = reply["refill"]
        .as_str()
        .unwrap_or_else(|| panic!("a single refill id is a string: {reply}"));
    assert!(
        !refill_id.is_empty() && refill_id.bytes().all(|b| b.is_ascii_digit()),
        "{reply}"
    );
    // The reconciler may already have forwarded the refill: any refill status word will do.
    let refill_words = [
        "Pending",
        "In progress",
        "Completed",
        "Rejected",
        "Canceled",
    ];
    let reply = gw.api("refill_status", &[("refill", refill_id)]).await;
    let object = reply.as_object().expect("refill_status reply is an object");
    assert!(
        object.len() == 1
            && reply["status"]
                .as_str()
                .is_some_and(|w| refill_words.contains(&w)),
        "{{\"status\": <word>}}, got {reply}"
    );
    let refill_num: u64 = refill_id.parse().expect("numeric refill id");
    let refills = format!("{refill_id},999999");
    let reply = gw.api("refill_status", &[("refills", &refills)]).await;
    let items = reply.as_array().expect("multi refill_status is an array");
    assert_eq!(items.len(), 2, "{reply}");
    assert_eq!(items[0].as_object().map(serde_json::Map::len), Some(2));
    assert_eq!(items[0]["refill"], json!(refill_num), "an int id: {reply}");
    assert!(
        items[0]["status"]
            .as_str()
            .is_some_and(|w| refill_words.contains(&w)),
        "{reply}"
    );
    assert_eq!(items[1], json!({"refill": 999999, "status": not_found}));
    // The refill is this customer's only.
    gw.create_customer("other", OTHER_KEY, Money::ZERO).await;
    assert_eq!(
        gw.call(OTHER_KEY, "refill_status", &[("refill", refill_id)])
            .await,
        not_found
    );
    gw.finish().await;
}

fn assert_error_object(reply: &Value, what: &str) {
    let object = reply
        .as_object()
        .unwrap_or_else(|| panic!("{what}: an object, got {reply}"));
    assert!(
        object.len() == 1 && object.get("error").and_then(Value::as_str).is_some(),
        "{what}: {{\"error\": text}}, got {reply}"
    );
}

/// The seed shapes of `cancel`: `orders` → `[{"order": N, "cancel": 1 | {"error": ...}}]`,
/// the single-`order` variant → `{"cancel": 1}` or an error. A still-queued order is canceled
/// and refunded at once; a forwarded one is only asked for (no refund yet).
pub async fn cancel_seed_shapes(backend: Backend) {
    let mut gw = TestGateway::start(backend).await;
    let incorrect = error_reply("Incorrect order ID");
    let rate1 = gw.rate(1).await;
    let rate3 = gw.rate(3).await;

    // Forwarded orders: service 1 allows cancel, service 3 does not.
    let cancelable = gw
        .add_ok(&[("service", "1"), ("link", LINK), ("quantity", "100")])
        .await;
    let cancelable2 = gw
        .add_ok(&[
            ("service", "1"),
            ("link", "https://instagram.com/p/other"),
            ("quantity", "100"),
        ])
        .await;
    let fixed = gw
        .add_ok(&[("service", "3"), ("link", LINK), ("quantity", "100")])
        .await;
    for id in [cancelable, cancelable2, fixed] {
        gw.wait_state(id, ForwardState::Sent).await;
    }
    let after_orders = gw.balance().await;
    assert_eq!(
        after_orders,
        money_sub(
            START_BALANCE,
            money_add(
                money_add(per_thousand(rate1, 100), per_thousand(rate1, 100)),
                per_thousand(rate3, 100)
            )
        )
    );

    let list = format!("{cancelable},999999,{fixed}");
    assert_eq!(
        gw.api("cancel", &[("orders", &list)]).await,
        json!([
            {"order": cancelable.0, "cancel": 1},
            {"order": 999999, "cancel": incorrect},
            {"order": fixed.0, "cancel": error_reply("Cancel is disabled for this service")},
        ])
    );
    assert_eq!(
        gw.api("cancel", &[("order", &cancelable2.to_string())])
            .await,
        json!({"cancel": 1}),
        "single-order variant"
    );
    assert_eq!(gw.api("cancel", &[("order", "999999")]).await, incorrect);
    assert_eq!(
        gw.balance().await,
        after_orders,
        "cancel 1 means asked, not refunded"
    );
    for id in [cancelable, cancelable2] {
        let order = gw.order(id).await;
        assert_eq!(order.forward_state, ForwardState::Sent);
        assert_eq!(order.refunded, Money::ZERO);
    }

    // A still-queued order: beta is down, so the order routed only there waits in the queue.
    let beta = gw.stop_beta();
    let rate_beta = gw.rate(crate::support::BETA_ONLY).await;
    let queued = gw
        .add_ok(&[
            ("service", &crate::support::BETA_ONLY.to_string()),
            ("link", LINK),
            ("quantity", "100"),
        ])
        .await;
    let charge = per_thousand(rate_beta, 100);
    assert_eq!(gw.balance().await, money_sub(after_orders, charge));
    wait_for(
        "the order routed to the stopped beta to be queued again",
        Duration::from_secs(10),
        || async {
            let order = gw.order(queued).await;
            order.forward_attempts >= 1 && order.forward_state == ForwardState::Queued
        },
    )
    .await;
    assert!(beta.orders().is_empty());
    assert_eq!(
        gw.api("cancel", &[("orders", &queued.to_string())]).await,
        json!([{"order": queued.0, "cancel": 1}])
    );
    assert_eq!(
        gw.balance().await,
        after_orders,
        "a queued order is refunded at once"
    );
    let order = gw.order(queued).await;
    assert_eq!(order.status, OrderStatus::Canceled);
    assert_eq!(order.refunded, charge);
    let again = gw.api("cancel", &[("orders", &queued.to_string())]).await;
    let items = again.as_array().expect("an array");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["order"], json!(queued.0));
    assert_error_object(&items[0]["cancel"], "cancel of a canceled order");
    assert_eq!(gw.balance().await, after_orders, "refunded once only");
    gw.assert_ledger_consistent(gw.customer).await;
    assert_eq!(
        gw.api("status", &[("order", &queued.to_string())]).await["status"],
        json!("Canceled")
    );
    gw.finish().await;
}
