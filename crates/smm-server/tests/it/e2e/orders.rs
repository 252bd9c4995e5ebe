//! Placing orders: exact charges and ledger rows, bounds, funds (also under concurrency),
//! drip-feed, comment counting, flat prices, and the exact parameters forwarded per type.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use smm_store::{ForwardState, LedgerKind, OrderId};
use smm_wire::Money;

use crate::support::{
    Backend, KEY, LINK, NARROW, NARROW_MAX, NARROW_MIN, START_BALANCE, TestGateway, adds,
    error_reply, flat, forwarded_params, json, money_sub, order_id_of, per_thousand,
};

fn params_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// (f) 4: `add` on a Default service answers `{"order": <int>}`, debits rate × qty / 1000
/// (rounded up to 0.00001) exactly once with one ledger row, and is forwarded exactly once.
pub async fn add_default_charges_once_and_forwards(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let rate = gw.rate(3).await;
    assert_eq!(rate, "0.0163".parse::<Decimal>().expect("decimal"));
    // 0.0163 × 777 / 1000 = 0.0126651 → 0.01267
    let charge = per_thousand(rate, 777);
    assert_eq!(charge, Money::from_units(1_267));

    let reply = gw
        .add(&[("service", "3"), ("link", LINK), ("quantity", "777")])
        .await;
    let id = order_id_of(&reply);
    let expected_balance = money_sub(START_BALANCE, charge);
    assert_eq!(gw.balance().await, expected_balance, "debited exactly once");
    assert_eq!(
        gw.api("balance", &[]).await,
        json!({"balance": expected_balance.to_string(), "currency": "USD"})
    );
    assert_eq!(expected_balance.to_string(), "999.98733");

    let ledger = gw.ledger_of(gw.customer).await;
    let charges: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == LedgerKind::Charge)
        .collect();
    assert_eq!(charges.len(), 1, "one charge row: {ledger:?}");
    assert_eq!(charges[0].amount, Money::from_units(-charge.units()));
    assert_eq!(charges[0].order_id, Some(id));
    assert_eq!(charges[0].balance_after, expected_balance);
    assert!(
        ledger
            .iter()
            .all(|e| matches!(e.kind, LedgerKind::Charge | LedgerKind::Deposit)),
        "{ledger:?}"
    );
    gw.assert_ledger_consistent(gw.customer).await;

    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.charge, charge);
    assert_eq!(order.provider.as_deref(), Some("alpha"));
    assert_eq!(order.upstream_service.as_deref(), Some("3"));
    assert_eq!(order.upstream_order_id.as_deref(), Some("10001"));

    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 1, "exactly one upstream add: {sent:?}");
    assert_eq!(sent[0].params.get("service").map(String::as_str), Some("3"));
    assert_eq!(
        sent[0].params.get("key").map(String::as_str),
        Some(smm_panel_sim::DEMO_KEY)
    );
    assert_eq!(
        forwarded_params(&sent[0]),
        params_map(&[("link", LINK), ("quantity", "777")])
    );
    assert!(adds(gw.beta()).is_empty(), "nothing went to beta");
    let upstream = gw.alpha().orders();
    assert_eq!(upstream.len(), 1);
    assert_eq!((upstream[0].id, upstream[0].quantity), (10001, 777));

    // Still exactly once after many more forwarder rounds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(adds(gw.alpha()).len(), 1);
    assert_eq!(gw.balance().await, expected_balance);
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1);

    // The same order as a JSON body with numbers, and as a GET query: same charge, same
    // upstream parameters.
    let (_, _, body) = gw
        .post_json(&json!({
            "key": KEY, "action": "add", "service": 3, "link": LINK, "quantity": 777
        }))
        .await;
    let by_json = order_id_of(&json(&body));
    let (_, _, body) = gw
        .get_query(&[
            ("key", KEY),
            ("action", "add"),
            ("service", "3"),
            ("link", LINK),
            ("quantity", "777"),
        ])
        .await;
    let by_query = order_id_of(&json(&body));
    for id in [by_json, by_query] {
        let order = gw.wait_state(id, ForwardState::Sent).await;
        assert_eq!(order.charge, charge);
    }
    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 3);
    for request in &sent[1..] {
        assert_eq!(request.params.get("service").map(String::as_str), Some("3"));
        assert_eq!(
            forwarded_params(request),
            params_map(&[("link", LINK), ("quantity", "777")])
        );
    }
    assert_eq!(
        gw.balance().await,
        money_sub(START_BALANCE, Money::from_units(3 * charge.units()))
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 5: quantities outside the LOCAL bounds are refused with the local bounds in the text; no
/// debit, no order. The bounds themselves are inclusive.
pub async fn quantity_bounds_are_local(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let narrow = NARROW.to_string();
    let (below, above) = ((NARROW_MIN - 1).to_string(), (NARROW_MAX + 1).to_string());
    let cases: [(&str, &str, String); 5] = [
        (
            narrow.as_str(),
            below.as_str(),
            format!("Quantity less than minimal {NARROW_MIN}"),
        ),
        (
            narrow.as_str(),
            above.as_str(),
            format!("Quantity more than maximal {NARROW_MAX}"),
        ),
        ("1", "49", "Quantity less than minimal 50".to_owned()),
        ("1", "10001", "Quantity more than maximal 10000".to_owned()),
        ("999", "100", "Incorrect service ID".to_owned()),
    ];
    for (service, quantity, expected) in &cases {
        let reply = gw
            .add(&[("service", service), ("link", LINK), ("quantity", quantity)])
            .await;
        assert_eq!(
            reply,
            error_reply(expected),
            "service {service} quantity {quantity}"
        );
    }
    assert_eq!(gw.balance().await, START_BALANCE, "nothing debited");
    assert!(gw.orders_of(gw.customer).await.is_empty(), "no order");
    assert_eq!(gw.ledger_of(gw.customer).await.len(), 1, "only the deposit");

    // The bounds are inclusive.
    let rate = gw.rate(NARROW).await;
    let mut expected = START_BALANCE;
    for quantity in [NARROW_MIN, NARROW_MAX] {
        let id = gw
            .add_ok(&[
                ("service", &narrow),
                ("link", LINK),
                ("quantity", &quantity.to_string()),
            ])
            .await;
        expected = money_sub(expected, per_thousand(rate, quantity));
        gw.wait_state(id, ForwardState::Sent).await;
    }
    assert_eq!(gw.balance().await, expected);
    assert!(
        adds(gw.alpha())
            .iter()
            .all(|r| r.params.get("service").map(String::as_str) == Some("3")),
        "the narrow service is alpha's service 3"
    );
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 6: not enough funds → the canonical error and nothing changes.
pub async fn insufficient_funds_change_nothing(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let rate = gw.rate(1).await;
    let charge = per_thousand(rate, 100);
    // One unit short.
    let short = Money::from_units(charge.units() - 1);
    let poor_key = "e2e-poor-customer-key";
    let poor = gw.create_customer("poor", poor_key, short).await;
    let broke_key = "e2e-broke-customer-key";
    let broke = gw.create_customer("broke", broke_key, Money::ZERO).await;
    for (key, customer, balance) in [(poor_key, poor, short), (broke_key, broke, Money::ZERO)] {
        let reply = gw
            .call(
                key,
                "add",
                &[("service", "1"), ("link", LINK), ("quantity", "100")],
            )
            .await;
        assert_eq!(reply, error_reply("Not enough funds on balance"));
        assert_eq!(gw.balance_of(customer).await, balance);
        assert!(gw.orders_of(customer).await.is_empty());
        assert!(
            gw.ledger_of(customer)
                .await
                .iter()
                .all(|e| e.kind == LedgerKind::Deposit)
        );
        gw.assert_ledger_consistent(customer).await;
        assert_eq!(
            gw.call(key, "balance", &[]).await,
            json!({"balance": balance.to_string(), "currency": "USD"})
        );
    }
    // Exactly enough works, to the last unit.
    let exact_key = "e2e-exact-customer-key";
    let exact = gw.create_customer("exact", exact_key, charge).await;
    let reply = gw
        .call(
            exact_key,
            "add",
            &[("service", "1"), ("link", LINK), ("quantity", "100")],
        )
        .await;
    let id = order_id_of(&reply);
    assert_eq!(gw.balance_of(exact).await, Money::ZERO);
    gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(
        adds(gw.alpha()).len(),
        1,
        "only the funded order is forwarded"
    );
    assert!(adds(gw.beta()).is_empty());
    gw.assert_ledger_consistent(exact).await;
    gw.finish().await;
}

/// (f) 6: 200 concurrent `add`s against a balance that covers exactly 100 of them.
pub async fn concurrent_adds_spend_exactly_the_balance(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let rate = gw.rate(1).await;
    let charge = per_thousand(rate, 100);
    let key = "e2e-concurrent-customer-key";
    let funds = Money::from_units(charge.units() * 100);
    let customer = gw.create_customer("concurrent", key, funds).await;

    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = gw.http.clone();
        let url = gw.url.clone();
        tasks.push(tokio::spawn(async move {
            let link = format!("https://instagram.com/p/concurrent-{i}");
            let response = http
                .post(&url)
                .form(&[
                    ("key", key),
                    ("action", "add"),
                    ("service", "1"),
                    ("link", link.as_str()),
                    ("quantity", "100"),
                ])
                .send()
                .await
                .expect("add");
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            response.text().await.expect("body")
        }));
    }
    let mut ids = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let body = task.await.expect("task");
        let reply = json(&body);
        if reply.get("order").is_some() {
            ids.push(order_id_of(&reply));
        } else {
            assert_eq!(
                reply,
                error_reply("Not enough funds on balance"),
                "the only refusal is lack of funds"
            );
            refused += 1;
        }
    }
    assert_eq!(ids.len(), 100, "exactly 100 orders accepted");
    assert_eq!(refused, 100, "exactly 100 refused");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 100, "100 distinct order ids");

    assert_eq!(
        gw.balance_of(customer).await,
        Money::ZERO,
        "balance exactly 0"
    );
    gw.assert_ledger_consistent(customer).await;
    let orders = gw.orders_of(customer).await;
    assert_eq!(orders.len(), 100);
    assert!(orders.iter().all(|o| o.charge == charge));
    let ledger = gw.ledger_of(customer).await;
    assert_eq!(
        ledger
            .iter()
            .filter(|e| e.kind == LedgerKind::Charge)
            .count(),
        100
    );
    assert!(ledger.iter().all(|e| !e.balance_after.is_negative()));
    assert_eq!(
        gw.call(key, "balance", &[]).await,
        json!({"balance": "0.00000", "currency": "USD"})
    );
    gw.finish().await;
}

/// (f) 7: drip-feed is charged for quantity × runs and forwarded as quantity/runs/interval;
/// drip-feed on a service without it is refused without a charge.
pub async fn drip_feed_is_charged_per_run_and_forwarded(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let rate = gw.rate(1).await;
    let charge = per_thousand(rate, 300);
    let id = gw
        .add_ok(&[
            ("service", "1"),
            ("link", LINK),
            ("quantity", "100"),
            ("runs", "3"),
            ("interval", "10"),
        ])
        .await;
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.charge, charge, "charged for 300 units");
    assert_eq!(order.units, 300);
    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].params.get("service").map(String::as_str), Some("1"));
    assert_eq!(
        forwarded_params(&sent[0]),
        params_map(&[
            ("link", LINK),
            ("quantity", "100"),
            ("runs", "3"),
            ("interval", "10"),
        ])
    );
    let upstream = gw.alpha().orders();
    assert_eq!(
        (upstream[0].quantity, upstream[0].runs, upstream[0].interval),
        (300, Some(3), Some(10)),
        "the upstream takes 3 runs of 100"
    );

    let before = gw.balance().await;
    let reply = gw
        .add(&[
            ("service", "3"),
            ("link", LINK),
            ("quantity", "100"),
            ("runs", "3"),
            ("interval", "10"),
        ])
        .await;
    assert_eq!(reply, error_reply("Drip-feed is disabled for this service"));
    assert_eq!(gw.balance().await, before, "no charge");
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1, "no new order");
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// (f) 8: Custom Comments count the non-empty lines (mixed line ends, blank lines) and forward
/// exactly them; Package and Custom Comments Package are charged their flat rate.
pub async fn comments_are_counted_and_packages_are_flat(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let comments = "first\r\nsecond\nthird\r\n\r\nfourth\n  \nfifth\r\nsixth\nseventh\r\n\
                    eighth\nninth\r\ntenth\neleventh\r\n\r\n";
    let expected_lines = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth", "eleventh",
    ];
    let rate = gw.rate(6).await;
    let charge = per_thousand(rate, 11);
    let id = gw
        .add_ok(&[("service", "6"), ("link", LINK), ("comments", comments)])
        .await;
    assert_eq!(gw.balance().await, money_sub(START_BALANCE, charge));
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.charge, charge, "11 non-empty lines");
    assert_eq!(order.units, 11);
    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 1);
    let forwarded = forwarded_params(&sent[0]);
    assert_eq!(
        forwarded.keys().map(String::as_str).collect::<Vec<_>>(),
        ["comments", "link"]
    );
    let lines: Vec<&str> = forwarded["comments"].lines().collect();
    assert_eq!(lines, expected_lines, "forwarded comments");
    assert_eq!(
        gw.alpha().orders()[0].quantity,
        11,
        "upstream counts 11 too"
    );

    // The same comments in a multipart body.
    let (_, _, body) = gw
        .post_multipart(&[
            ("key", KEY),
            ("action", "add"),
            ("service", "6"),
            ("link", LINK),
            ("comments", comments),
        ])
        .await;
    let id = order_id_of(&json(&body));
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.charge, charge, "multipart: 11 non-empty lines");
    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 2);
    assert_eq!(
        forwarded_params(&sent[1])["comments"]
            .lines()
            .collect::<Vec<_>>(),
        expected_lines
    );

    // Package: flat, whatever quantity is sent along.
    let mut expected_balance = gw.balance().await;
    let package_rate = gw.rate(5).await;
    let id = gw
        .add_ok(&[("service", "5"), ("link", LINK), ("quantity", "1000")])
        .await;
    expected_balance = money_sub(expected_balance, flat(package_rate));
    assert_eq!(gw.balance().await, expected_balance);
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.charge, flat(package_rate));
    assert_eq!(order.charge, Money::from_units(648_700));
    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 3);
    assert_eq!(forwarded_params(&sent[2]), params_map(&[("link", LINK)]));

    // Custom Comments Package: flat too.
    let ccp_rate = gw.rate(7).await;
    let id = gw
        .add_ok(&[
            ("service", "7"),
            ("link", LINK),
            ("comments", "great\r\nlove it\n\nwow\n"),
        ])
        .await;
    expected_balance = money_sub(expected_balance, flat(ccp_rate));
    assert_eq!(gw.balance().await, expected_balance);
    let order = gw.wait_state(id, ForwardState::Sent).await;
    assert_eq!(order.charge, flat(ccp_rate));
    assert_eq!(order.charge, Money::from_units(2_015_000));
    let sent = adds(gw.alpha());
    assert_eq!(sent.len(), 4);
    let forwarded = forwarded_params(&sent[3]);
    assert_eq!(forwarded["link"], LINK);
    assert_eq!(
        forwarded["comments"].lines().collect::<Vec<_>>(),
        ["great", "love it", "wow"]
    );
    assert_eq!(forwarded.len(), 2);
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}

/// How a type is charged in [`every_type_forwards_exactly_its_parameters`].
enum Units {
    PerThousand(u64),
    Flat,
}

/// (f) 9: every type forwards exactly its own parameter names (and values) upstream, never the
/// unknown extras a client sends along; each is charged by its own rule.
pub async fn every_type_forwards_exactly_its_parameters(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    // An unlimited subscription (no `posts`) would need per-post billing: refused, nothing
    // charged.
    let unlimited = gw
        .add(&[
            ("service", "19"),
            ("username", "subscriber"),
            ("min", "60"),
            ("max", "80"),
            ("delay", "0"),
        ])
        .await;
    assert_eq!(unlimited, serde_json::json!({"error": "Incorrect posts"}));
    let ten_lines = "c1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nc9\nc10";
    let ten_users = "@u1\n@u2\n@u3\n@u4\n@u5\n@u6\n@u7\n@u8\n@u9\n@u10";
    // (service, what the client sends besides key/action/service, what must arrive upstream
    // besides key/action/service, charge rule)
    type Case<'a> = (u64, Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, Units);
    let cases: Vec<Case<'_>> = vec![
        (
            1,
            vec![("link", LINK), ("quantity", "100")],
            vec![("link", LINK), ("quantity", "100")],
            Units::PerThousand(100),
        ),
        (5, vec![("link", LINK)], vec![("link", LINK)], Units::Flat),
        (
            6,
            vec![("link", LINK), ("comments", ten_lines)],
            vec![("link", LINK), ("comments", ten_lines)],
            Units::PerThousand(10),
        ),
        (
            7,
            vec![("link", LINK), ("comments", "nice\nsuper")],
            vec![("link", LINK), ("comments", "nice\nsuper")],
            Units::Flat,
        ),
        (
            8,
            vec![("link", LINK), ("quantity", "100"), ("usernames", "@a\n@b")],
            vec![("link", LINK), ("quantity", "100"), ("usernames", "@a\n@b")],
            Units::PerThousand(100),
        ),
        (
            9,
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("usernames", "@a\n@b"),
                ("hashtags", "#x\n#y"),
            ],
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("usernames", "@a\n@b"),
                ("hashtags", "#x\n#y"),
            ],
            Units::PerThousand(100),
        ),
        (
            10,
            vec![("link", LINK), ("usernames", ten_users)],
            vec![("link", LINK), ("usernames", ten_users)],
            Units::PerThousand(10),
        ),
        (
            11,
            vec![("link", LINK), ("quantity", "100"), ("hashtag", "#travel")],
            vec![("link", LINK), ("quantity", "100"), ("hashtag", "#travel")],
            Units::PerThousand(100),
        ),
        (
            12,
            vec![("link", LINK), ("quantity", "100"), ("username", "famous")],
            vec![("link", LINK), ("quantity", "100"), ("username", "famous")],
            Units::PerThousand(100),
        ),
        (
            13,
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("media", "https://instagram.com/p/liked"),
            ],
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("media", "https://instagram.com/p/liked"),
            ],
            Units::PerThousand(100),
        ),
        (
            14,
            vec![
                ("link", LINK),
                ("quantity", "20"),
                ("username", "commenter"),
            ],
            vec![
                ("link", LINK),
                ("quantity", "20"),
                ("username", "commenter"),
            ],
            Units::PerThousand(20),
        ),
        (
            15,
            vec![("link", LINK), ("quantity", "100"), ("answer_number", "2")],
            vec![("link", LINK), ("quantity", "100"), ("answer_number", "2")],
            Units::PerThousand(100),
        ),
        (
            16,
            vec![
                ("link", LINK),
                ("username", "author"),
                ("comments", "r1\nr2\nr3"),
            ],
            vec![
                ("link", LINK),
                ("username", "author"),
                ("comments", "r1\nr2\nr3"),
            ],
            Units::PerThousand(3),
        ),
        (
            17,
            vec![("link", LINK), ("quantity", "100"), ("groups", "g1\ng2")],
            vec![("link", LINK), ("quantity", "100"), ("groups", "g1\ng2")],
            Units::PerThousand(100),
        ),
        (
            18,
            vec![("link", LINK), ("quantity", "1000"), ("keywords", "k1\nk2")],
            vec![("link", LINK), ("quantity", "1000"), ("keywords", "k1\nk2")],
            Units::PerThousand(1000),
        ),
        (
            19,
            // A client sending link and quantity anyway: neither goes upstream.
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("username", "subscriber"),
                ("min", "50"),
                ("max", "100"),
                ("delay", "30"),
                ("posts", "2"),
                ("expiry", "2030-12-31"),
            ],
            vec![
                ("username", "subscriber"),
                ("min", "50"),
                ("max", "100"),
                ("delay", "30"),
                ("posts", "2"),
                ("expiry", "31/12/2030"),
            ],
            // max × posts
            Units::PerThousand(200),
        ),
        (
            19,
            // One post (unlimited subscriptions are refused: see below).
            vec![
                ("username", "subscriber2"),
                ("min", "60"),
                ("max", "80"),
                ("delay", "0"),
                ("posts", "1"),
                ("expiry", "5/1/2031"),
            ],
            vec![
                ("username", "subscriber2"),
                ("min", "60"),
                ("max", "80"),
                ("delay", "0"),
                ("posts", "1"),
                ("expiry", "05/01/2031"),
            ],
            Units::PerThousand(80),
        ),
        (
            20,
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("country", "US"),
                ("device", "1"),
                ("type_of_traffic", "1"),
                ("google_keyword", "buy shoes"),
            ],
            vec![
                ("link", LINK),
                ("quantity", "100"),
                ("country", "US"),
                ("device", "1"),
                ("type_of_traffic", "1"),
                ("google_keyword", "buy shoes"),
            ],
            Units::PerThousand(100),
        ),
        (
            20,
            vec![
                ("link", LINK),
                ("quantity", "200"),
                ("country", "DE"),
                ("device", "4"),
                ("type_of_traffic", "2"),
                ("referring_url", "https://referrer.example/page"),
            ],
            vec![
                ("link", LINK),
                ("quantity", "200"),
                ("country", "DE"),
                ("device", "4"),
                ("type_of_traffic", "2"),
                ("referring_url", "https://referrer.example/page"),
            ],
            Units::PerThousand(200),
        ),
        (
            20,
            vec![
                ("link", LINK),
                ("quantity", "300"),
                ("country", "FR"),
                ("device", "5"),
                ("type_of_traffic", "3"),
            ],
            vec![
                ("link", LINK),
                ("quantity", "300"),
                ("country", "FR"),
                ("device", "5"),
                ("type_of_traffic", "3"),
            ],
            Units::PerThousand(300),
        ),
    ];

    let services = gw.api("services", &[]).await;
    let rate_of = |service: u64| -> Decimal {
        let item = services
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["service"].as_u64() == Some(service))
            .expect("listed");
        crate::support::decimal(&item["rate"])
    };
    let extras = [
        ("foo", "bar"),
        ("api", "1"),
        ("apiKey", "x"),
        ("currency", "EUR"),
    ];
    let mut expected_balance = START_BALANCE;
    let mut ids: Vec<OrderId> = Vec::new();
    for (index, (service, sent, expected, units)) in cases.iter().enumerate() {
        let service_text = service.to_string();
        let mut request: Vec<(&str, &str)> = vec![("service", service_text.as_str())];
        request.extend_from_slice(sent);
        request.extend_from_slice(&extras);
        let reply: Value = gw.add(&request).await;
        let id = order_id_of(&reply);
        ids.push(id);
        let charge = match units {
            Units::PerThousand(n) => per_thousand(rate_of(*service), *n),
            Units::Flat => flat(rate_of(*service)),
        };
        expected_balance = money_sub(expected_balance, charge);

        let order = gw.wait_state(id, ForwardState::Sent).await;
        assert_eq!(
            order.charge, charge,
            "case {index} (service {service}) charge"
        );
        let log = adds(gw.alpha());
        assert_eq!(log.len(), index + 1, "one upstream add per order");
        let last = log.last().expect("an add");
        assert_eq!(
            last.params.get("service").map(String::as_str),
            Some(service_text.as_str()),
            "case {index}"
        );
        assert_eq!(
            forwarded_params(last),
            params_map(expected),
            "case {index} (service {service}): exactly the type's parameters"
        );
        assert!(last.fault.is_none());
    }
    assert_eq!(gw.alpha().orders().len(), cases.len());
    assert!(adds(gw.beta()).is_empty());
    assert_eq!(gw.balance().await, expected_balance);
    gw.assert_ledger_consistent(gw.customer).await;
    assert_eq!(gw.orders_of(gw.customer).await.len(), ids.len());
    gw.finish().await;
}

/// An `add` as the funded customer with an `Idempotency-Key` header: the parsed reply.
async fn add_with_header(gw: &TestGateway, header: &str, extra: &[(&str, &str)]) -> Value {
    let mut params = vec![("key", KEY), ("action", "add")];
    params.extend_from_slice(extra);
    let response = gw
        .http
        .post(&gw.url)
        .header("Idempotency-Key", header)
        .form(&params)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    json(&response.text().await.expect("body"))
}

/// Issue #12, defect 11: an idempotency key names one request. A retry with the same key and
/// the same parameters (in any order, by field or header) gets the first order even when
/// placing it again would now fail (price changed, funds gone, service disabled); the same key
/// with other parameters is refused with a clear error and changes nothing; an
/// `Idempotency-Key` header longer than the limit is refused like the field, never ignored.
pub async fn idempotency_keys_name_one_request(backend: Backend) {
    let gw = TestGateway::start(backend).await;
    let reused = error_reply("Idempotency key already used with different parameters");
    let rate = gw.rate(1).await;
    let charge = per_thousand(rate, 100);
    let first = gw
        .add_ok(&[
            ("service", "1"),
            ("link", LINK),
            ("quantity", "100"),
            ("idempotency_key", "k-1"),
        ])
        .await;
    let paid = money_sub(START_BALANCE, charge);
    assert_eq!(gw.balance().await, paid);
    // The same request, fields in another order: the first order, nothing charged again.
    let retry = [
        ("idempotency_key", "k-1"),
        ("quantity", "100"),
        ("link", LINK),
        ("service", "1"),
    ];
    assert_eq!(gw.add_ok(&retry).await, first);
    // Other parameters under the same key: refused, nothing placed or charged.
    for changed in [
        [("service", "1"), ("link", LINK), ("quantity", "200")],
        [
            ("service", "1"),
            ("link", "https://instagram.com/p/other"),
            ("quantity", "100"),
        ],
        [("service", "3"), ("link", LINK), ("quantity", "100")],
    ] {
        let mut params = changed.to_vec();
        params.push(("idempotency_key", "k-1"));
        assert_eq!(gw.add(&params).await, reused, "{changed:?}");
        // The same through the header.
        assert_eq!(add_with_header(&gw, "k-1", &changed).await, reused);
    }
    assert_eq!(gw.balance().await, paid);
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1);

    // The header names the same request as the field.
    assert_eq!(
        order_id_of(
            &add_with_header(
                &gw,
                "k-1",
                &[("service", "1"), ("link", LINK), ("quantity", "100")]
            )
            .await
        ),
        first
    );

    // A price change: the retry still answers the first order, at the first price.
    let app = gw.app().clone();
    let mut dearer = (*app.settings()).clone();
    dearer.pricing.default.percent = Some(Decimal::from(90));
    app.reload(dearer, "test").await.expect("reload");
    assert_ne!(gw.rate(1).await, rate);
    assert_eq!(gw.add_ok(&retry).await, first);
    assert_eq!(gw.balance().await, paid);

    // The balance no longer covers it: a new order is refused, the retry is answered.
    let balance = gw.balance().await;
    gw.store()
        .adjust_balance(
            gw.customer,
            LedgerKind::Adjustment,
            money_sub(Money::ZERO, balance),
            "drain",
            "test",
            crate::support::now_ms(),
        )
        .await
        .expect("drain");
    assert_eq!(
        gw.add(&[
            ("service", "1"),
            ("link", LINK),
            ("quantity", "100"),
            ("idempotency_key", "k-2"),
        ])
        .await,
        error_reply("Not enough funds on balance")
    );
    assert_eq!(gw.add_ok(&retry).await, first);

    // The service is gone from the catalog: a new order is refused, the retry is answered.
    let mut without = (*app.settings()).clone();
    without.services.retain(|s| s.id != 1);
    app.reload(without, "test").await.expect("reload");
    assert_eq!(
        gw.add(&[("service", "1"), ("link", LINK), ("quantity", "100")])
            .await,
        error_reply("Incorrect service ID")
    );
    assert_eq!(gw.add_ok(&retry).await, first);
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1);
    gw.assert_ledger_consistent(gw.customer).await;

    // A header over the limit is refused as the field is; nothing is placed.
    let credit = gw
        .store()
        .adjust_balance(
            gw.customer,
            LedgerKind::Deposit,
            START_BALANCE,
            "refill",
            "test",
            crate::support::now_ms(),
        )
        .await
        .expect("credit");
    let too_long = "x".repeat(129);
    let wanted = [("service", "3"), ("link", LINK), ("quantity", "100")];
    assert_eq!(
        add_with_header(&gw, &too_long, &wanted).await,
        error_reply("Incorrect idempotency_key")
    );
    let mut field = wanted.to_vec();
    field.push(("idempotency_key", &too_long));
    assert_eq!(
        gw.add(&field).await,
        error_reply("Incorrect idempotency_key")
    );
    assert_eq!(gw.orders_of(gw.customer).await.len(), 1);
    assert_eq!(gw.balance().await, credit.balance_after);
    // At the limit it names a request: placed once, retried once.
    let longest = "y".repeat(128);
    let placed = order_id_of(&add_with_header(&gw, &longest, &wanted).await);
    assert_eq!(
        order_id_of(&add_with_header(&gw, &longest, &wanted).await),
        placed
    );
    assert_eq!(gw.orders_of(gw.customer).await.len(), 2);
    gw.assert_ledger_consistent(gw.customer).await;
    gw.finish().await;
}
