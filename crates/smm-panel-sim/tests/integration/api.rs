//! Reply shapes of every action, errors, charges, every add variant, input encodings.

use serde_json::{Value, json};

use crate::{KEY, dec, env, error_text};

const ALL_TYPES: [&str; 17] = [
    "Default",
    "Package",
    "Custom Comments",
    "Custom Comments Package",
    "Mentions",
    "Mentions with Hashtags",
    "Mentions Custom List",
    "Mentions Hashtag",
    "Mentions User Followers",
    "Mentions Media Likers",
    "Comment Likes",
    "Poll",
    "Comment Replies",
    "Invites from Groups",
    "SEO",
    "Subscriptions",
    "Web Traffic",
];

#[tokio::test]
async fn services_shape_matches_seed_docs() {
    let e = env().await;
    let (status, body) = e.form_raw(&[("action", "services")]).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with(r#"[{"service":1,"name":"#),
        "field order as in the docs: {body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 20);
    let mut types = Vec::new();
    for s in list {
        let o = s.as_object().unwrap();
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        for k in [
            "service", "name", "type", "category", "rate", "min", "max", "refill", "cancel",
            "dripfeed",
        ] {
            assert!(keys.contains(&k), "{k} missing in {s}");
        }
        assert!(s["service"].is_u64());
        assert!(s["name"].is_string() && s["category"].is_string());
        let rate = s["rate"].as_str().expect("rate is a string");
        let decimals = rate.split('.').nth(1).map_or(0, str::len);
        assert!((2..=5).contains(&decimals), "rate {rate}");
        assert!(s["min"].as_str().unwrap().parse::<u64>().is_ok());
        assert!(s["max"].as_str().unwrap().parse::<u64>().is_ok());
        assert!(s["refill"].is_boolean() && s["cancel"].is_boolean() && s["dripfeed"].is_boolean());
        types.push(s["type"].as_str().unwrap().to_owned());
    }
    for t in ALL_TYPES {
        assert!(types.iter().any(|x| x == t), "type {t} missing");
    }
    assert!(list.iter().any(|s| s["refill"] == true));
    assert!(list.iter().any(|s| s["cancel"] == true));
    assert!(list.iter().any(|s| s["dripfeed"] == true));
    assert_eq!(list[0]["rate"], "0.90");
    assert_eq!(list[0]["min"], "50");
    assert_eq!(list[0]["max"], "10000");
}

#[tokio::test]
async fn balance_same_via_form_query_json() {
    let e = env().await;
    let url = e.h.api_url();
    let expected = r#"{"balance":"1000.00000","currency":"USD"}"#;

    let (_, form) = e.form_raw(&[("action", "balance")]).await;
    assert_eq!(form, expected);

    let charset =
        e.c.post(&url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(format!("key={KEY}&action=balance"))
            .send()
            .await
            .unwrap();
    assert_eq!(charset.headers()["content-type"], "application/json");
    assert_eq!(charset.text().await.unwrap(), expected);

    let get =
        e.c.get(format!("{url}?key={KEY}&action=balance"))
            .send()
            .await
            .unwrap();
    assert_eq!(get.text().await.unwrap(), expected);

    let slash =
        e.c.get(format!("{url}/?key={KEY}&action=balance"))
            .send()
            .await
            .unwrap();
    assert_eq!(slash.text().await.unwrap(), expected);

    let js =
        e.c.post(&url)
            .header("content-type", "application/json")
            .body(json!({"key": KEY, "action": "balance"}).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(js.text().await.unwrap(), expected);

    // Query merged with the body: key in the query, action in the body.
    let merged =
        e.c.post(format!("{url}?key={KEY}&action=services"))
            .form(&[("action", "balance")])
            .send()
            .await
            .unwrap();
    assert_eq!(
        merged.text().await.unwrap(),
        expected,
        "body wins over query"
    );
}

#[tokio::test]
async fn add_same_via_form_query_json() {
    let e = env().await;
    let url = e.h.api_url();
    let a = e
        .add(&[
            ("service", "1"),
            ("link", "https://x.test/a"),
            ("quantity", "100"),
        ])
        .await;
    let q =
        e.c.get(format!(
            "{url}?key={KEY}&action=add&service=1&link=https%3A%2F%2Fx.test%2Fa&quantity=100"
        ))
        .send()
        .await
        .unwrap();
    let q: Value = serde_json::from_str(&q.text().await.unwrap()).unwrap();
    let j = e
        .c
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .body(
            json!({"key": KEY, "action": "add", "service": 1, "link": "https://x.test/a", "quantity": 100})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let j: Value = serde_json::from_str(&j.text().await.unwrap()).unwrap();
    let ids = [
        a,
        q["order"].as_u64().unwrap(),
        j["order"].as_u64().unwrap(),
    ];
    assert_eq!(ids[1], ids[0] + 1);
    assert_eq!(ids[2], ids[0] + 2);
    let orders = e.sim().orders();
    assert_eq!(orders.len(), 3);
    for o in &orders {
        assert_eq!(o.charge, dec("0.09"));
        assert_eq!(
            o.params, orders[0].params,
            "same params whatever the encoding"
        );
        assert_eq!(o.params["service"], "1");
        assert_eq!(o.params["quantity"], "100");
    }
    let log = e.sim().requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].content_type, None);
    assert_eq!(
        log[2].content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(log[2].params["key"], KEY);
}

#[tokio::test]
async fn key_and_action_errors() {
    let e = env().await;
    let v = e.form(&[("key", "nope"), ("action", "balance")]).await;
    assert_eq!(error_text(&v), "Invalid API key");
    let v = e.form(&[("key", ""), ("action", "services")]).await;
    assert_eq!(error_text(&v), "Invalid API key");
    let (status, body) = e.form_raw(&[("key", "nope")]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"error":"Invalid API key"}"#)
    );
    let v = e.form(&[("action", "fly")]).await;
    assert_eq!(error_text(&v), "Incorrect request");
    let v = e.form(&[]).await;
    assert_eq!(error_text(&v), "Incorrect request");
    // A form body without a form content type is not read (as PHP would not).
    let r =
        e.c.post(e.h.api_url())
            .body(format!("key={KEY}&action=balance"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"error":"Invalid API key"}"#);
    // Unknown paths and methods.
    let r =
        e.c.get(format!("{}/api/v1", e.h.base_url()))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
    let r = e.c.delete(e.h.api_url()).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn add_default_charges_exactly_once() {
    let e = env().await;
    let id = e
        .add(&[
            ("service", "1"),
            ("link", "https://instagram.com/a"),
            ("quantity", "1000"),
        ])
        .await;
    assert_eq!(id, 10_001);
    assert_eq!(e.sim().balance(KEY), Some(dec("999.1")));
    let (_, body) = e
        .form_raw(&[("action", "status"), ("order", "10001")])
        .await;
    assert_eq!(
        body,
        r#"{"charge":"0.90000","start_count":"0","status":"Pending","remains":"1000","currency":"USD"}"#
    );
    // 333 × 0.90 / 1000 = 0.2997; 1234 × 0.04321 / 1000 = 0.05332114 → 0.05332.
    e.add(&[
        ("service", "1"),
        ("link", "https://instagram.com/b"),
        ("quantity", "333"),
    ])
    .await;
    let seo = e
        .add(&[
            ("service", "18"),
            ("link", "https://site.test"),
            ("quantity", "1234"),
            ("keywords", "buy shoes\ncheap shoes"),
        ])
        .await;
    assert_eq!(e.status(seo).await["charge"], "0.05332");
    let expected = dec("1000") - dec("0.9") - dec("0.2997") - dec("0.05332");
    assert_eq!(e.sim().balance(KEY), Some(expected));
    assert_eq!(
        e.balance().await["balance"],
        expected.round_dp(5).to_string()
    );
    let v = e.balance().await;
    assert_eq!(v["balance"], "998.74698");
}

#[tokio::test]
async fn add_errors_do_not_debit() {
    let e = env().await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("link", "https://l"), ("quantity", "100")],
            "Incorrect service ID",
        ),
        (
            vec![
                ("service", "999"),
                ("link", "https://l"),
                ("quantity", "100"),
            ],
            "Incorrect service ID",
        ),
        (
            vec![
                ("service", "abc"),
                ("link", "https://l"),
                ("quantity", "100"),
            ],
            "Incorrect service ID",
        ),
        (
            vec![("service", "1"), ("link", "https://l"), ("quantity", "49")],
            "Quantity less than minimal 50",
        ),
        (
            vec![
                ("service", "1"),
                ("link", "https://l"),
                ("quantity", "10001"),
            ],
            "Quantity more than maximal 10000",
        ),
        (
            vec![("service", "1"), ("link", "https://l")],
            "Quantity less than minimal 50",
        ),
        (
            vec![("service", "1"), ("link", "https://l"), ("quantity", "1e3")],
            "Quantity less than minimal 50",
        ),
        (
            vec![("service", "1"), ("quantity", "100")],
            "Incorrect link",
        ),
        (
            vec![("service", "1"), ("link", "  "), ("quantity", "100")],
            "Incorrect link",
        ),
        (
            vec![
                ("service", "1"),
                ("link", "https://a b"),
                ("quantity", "100"),
            ],
            "Incorrect link",
        ),
        (
            vec![
                ("service", "3"),
                ("link", "https://l"),
                ("quantity", "100"),
                ("runs", "2"),
                ("interval", "5"),
            ],
            "Drip-feed is disabled for this service",
        ),
        (
            vec![
                ("service", "1"),
                ("link", "https://l"),
                ("quantity", "100"),
                ("runs", "x"),
                ("interval", "5"),
            ],
            "Incorrect request",
        ),
        (
            vec![
                ("service", "1"),
                ("link", "https://l"),
                ("quantity", "100"),
                ("runs", "3"),
            ],
            "Incorrect request",
        ),
    ];
    for (params, want) in cases {
        assert_eq!(e.add_err(&params).await, want, "{params:?}");
    }
    e.sim().set_balance(KEY, dec("0.08999"));
    let err = e
        .add_err(&[("service", "1"), ("link", "https://l"), ("quantity", "100")])
        .await;
    assert_eq!(err, "Not enough funds on balance");
    assert_eq!(e.sim().balance(KEY), Some(dec("0.08999")));
    assert!(e.sim().orders().is_empty());
    // Exactly enough is fine and leaves zero.
    e.sim().set_balance(KEY, dec("0.09"));
    e.add(&[("service", "1"), ("link", "https://l"), ("quantity", "100")])
        .await;
    assert_eq!(e.balance().await["balance"], "0.00000");
}

#[tokio::test]
async fn concurrent_adds_never_overdraw() {
    let e = env().await;
    e.sim().set_balance(KEY, dec("1.5"));
    let add = || {
        e.form_raw(&[
            ("action", "add"),
            ("service", "1"),
            ("link", "https://l"),
            ("quantity", "1000"),
        ])
    };
    let (a, b) = tokio::join!(add(), add());
    let ok = [&a.1, &b.1]
        .iter()
        .filter(|b| b.contains("\"order\""))
        .count();
    assert_eq!(ok, 1, "{a:?} {b:?}");
    assert_eq!(e.sim().balance(KEY), Some(dec("0.6")));
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn add_every_type_with_its_parameters() {
    let e = env().await;
    let comments12 = format!("{}\n\n  \n{}\r\n", lines(6), lines(6));
    let users10 = lines(10);
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        u64,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        ("5", vec![("link", "https://l/p")], 1, "4.99", None),
        (
            "6",
            vec![("link", "https://l/c"), ("comments", &comments12)],
            12,
            "0.096",
            Some("comments"),
        ),
        (
            "7",
            vec![("link", "https://l/cp"), ("comments", "a\nb\nc")],
            3,
            "15.5",
            Some("comments"),
        ),
        (
            "8",
            vec![
                ("link", "https://l/m"),
                ("quantity", "100"),
                ("usernames", "a\nb"),
            ],
            100,
            "0.2345",
            Some("usernames"),
        ),
        (
            "9",
            vec![
                ("link", "https://l/mh"),
                ("quantity", "100"),
                ("usernames", "a\nb"),
                ("hashtags", "#x\n#y"),
            ],
            100,
            "0.31",
            Some("hashtags"),
        ),
        (
            "10",
            vec![("link", "https://l/mcl"), ("usernames", &users10)],
            10,
            "0.0425",
            Some("usernames"),
        ),
        (
            "11",
            vec![
                ("link", "https://l/mht"),
                ("quantity", "200"),
                ("hashtag", "cats"),
            ],
            200,
            "0.375",
            Some("hashtag"),
        ),
        (
            "12",
            vec![
                ("link", "https://l/muf"),
                ("quantity", "100"),
                ("username", "bob"),
            ],
            100,
            "0.199",
            Some("username"),
        ),
        (
            "13",
            vec![
                ("link", "https://l/mml"),
                ("quantity", "100"),
                ("media", "https://ig/p/1"),
            ],
            100,
            "0.21",
            Some("media"),
        ),
        (
            "14",
            vec![
                ("link", "https://l/cl"),
                ("quantity", "20"),
                ("username", "bob"),
            ],
            20,
            "0.015",
            Some("username"),
        ),
        (
            "15",
            vec![
                ("link", "https://l/poll"),
                ("quantity", "100"),
                ("answer_number", "2"),
            ],
            100,
            "0.036",
            Some("answer_number"),
        ),
        (
            "16",
            vec![
                ("link", "https://l/cr"),
                ("username", "bob"),
                ("comments", "hi\nyo"),
            ],
            2,
            "0.01998",
            Some("username"),
        ),
        (
            "17",
            vec![
                ("link", "https://t.me/g"),
                ("quantity", "100"),
                ("groups", "g1\ng2"),
            ],
            100,
            "0.55",
            Some("groups"),
        ),
        (
            "18",
            vec![
                ("link", "https://s.test"),
                ("quantity", "1000"),
                ("keywords", "k1\nk2"),
            ],
            1000,
            "0.04321",
            Some("keywords"),
        ),
        (
            "19",
            vec![
                ("username", "bob"),
                ("min", "100"),
                ("max", "200"),
                ("delay", "30"),
                ("posts", "5"),
                ("old_posts", "2"),
                ("expiry", "31/12/2099"),
            ],
            1000,
            "0.22",
            Some("username"),
        ),
        (
            "20",
            vec![
                ("link", "https://s.test"),
                ("quantity", "1000"),
                ("country", "US"),
                ("device", "5"),
                ("type_of_traffic", "1"),
                ("google_keyword", "shoes"),
            ],
            1000,
            "0.03125",
            Some("google_keyword"),
        ),
    ];
    let mut spent = dec("0");
    for (service, params, quantity, charge, drop_field) in cases {
        let mut all = vec![("service", service)];
        all.extend(params.iter().copied());
        let id = e.add(&all).await;
        let o = e.sim().order(id).unwrap();
        assert_eq!(o.quantity, quantity, "service {service}");
        assert_eq!(o.charge, dec(charge), "service {service}");
        assert!(!o.params.contains_key("key") && !o.params.contains_key("action"));
        spent += dec(charge);
        if let Some(field) = drop_field {
            let without: Vec<(&str, &str)> =
                all.iter().copied().filter(|(k, _)| *k != field).collect();
            let err = e.add_err(&without).await;
            assert!(
                err == "Incorrect request" || err.starts_with("Quantity less than minimal"),
                "service {service} without {field}: {err}"
            );
        }
    }
    assert_eq!(e.sim().balance(KEY), Some(dec("1000") - spent));
    let sub = e
        .sim()
        .orders()
        .into_iter()
        .find(|o| o.service == 19)
        .unwrap();
    assert_eq!(sub.link, None);
    assert_eq!(sub.service_type, "Subscriptions");
}

#[tokio::test]
async fn add_type_specific_validation() {
    let e = env().await;
    let sub = |extra: &'static [(&'static str, &'static str)]| {
        let mut v = vec![
            ("service", "19"),
            ("username", "bob"),
            ("min", "100"),
            ("max", "200"),
            ("delay", "0"),
        ];
        v.extend_from_slice(extra);
        v
    };
    // Subscriptions need no link and no quantity.
    e.add(&sub(&[])).await;
    for (extra, want) in [
        (&[("expiry", "12/31/2099")][..], "Incorrect request"),
        (&[("expiry", "2099-12-31")][..], "Incorrect request"),
        (&[("expiry", "01/01/2001")][..], "Incorrect request"),
        (&[("posts", "-1")][..], "Incorrect request"),
    ] {
        assert_eq!(e.add_err(&sub(extra)).await, want, "{extra:?}");
    }
    let base = [("service", "19"), ("username", "bob"), ("delay", "0")];
    let with = |min: &'static str, max: &'static str| {
        let mut v = base.to_vec();
        v.push(("min", min));
        v.push(("max", max));
        v
    };
    assert_eq!(
        e.add_err(&with("10", "200")).await,
        "Quantity less than minimal 50"
    );
    assert_eq!(
        e.add_err(&with("100", "9000")).await,
        "Quantity more than maximal 5000"
    );
    assert_eq!(e.add_err(&with("300", "200")).await, "Incorrect request");
    assert_eq!(e.add_err(&base).await, "Incorrect request");

    // Web Traffic: referrer type needs referring_url; codes are range-checked.
    let wt = |t: &'static str, extra: Option<(&'static str, &'static str)>| {
        let mut v = vec![
            ("service", "20"),
            ("link", "https://s.test"),
            ("quantity", "100"),
            ("country", "DE"),
            ("device", "1"),
            ("type_of_traffic", t),
        ];
        v.extend(extra);
        v
    };
    e.add(&wt("2", Some(("referring_url", "https://ref.test"))))
        .await;
    e.add(&wt("3", None)).await;
    assert_eq!(e.add_err(&wt("2", None)).await, "Incorrect request");
    assert_eq!(e.add_err(&wt("4", None)).await, "Incorrect request");
    assert_eq!(e.add_err(&wt("1", None)).await, "Incorrect request");
    // Poll answer must be a positive integer.
    assert_eq!(
        e.add_err(&[
            ("service", "15"),
            ("link", "https://p"),
            ("quantity", "100"),
            ("answer_number", "0")
        ])
        .await,
        "Incorrect request"
    );
    // Custom Comments below minimal by lines (blank lines do not count).
    assert_eq!(
        e.add_err(&[
            ("service", "6"),
            ("link", "https://c"),
            ("comments", "a\n\nb\n")
        ])
        .await,
        "Quantity less than minimal 10"
    );
    // Package ignores quantity; flat price.
    let id = e
        .add(&[
            ("service", "5"),
            ("link", "https://p"),
            ("quantity", "5000"),
        ])
        .await;
    assert_eq!(e.sim().order(id).unwrap().charge, dec("4.99"));
}

#[tokio::test]
async fn dripfeed_charges_quantity_times_runs() {
    let e = env().await;
    let id = e
        .add(&[
            ("service", "1"),
            ("link", "https://l"),
            ("quantity", "100"),
            ("runs", "3"),
            ("interval", "10"),
        ])
        .await;
    let o = e.sim().order(id).unwrap();
    assert_eq!((o.quantity, o.runs, o.interval), (300, Some(3), Some(10)));
    assert_eq!(o.charge, dec("0.27"));
    let s = e.status(id).await;
    assert_eq!(s["runs"], "0");
    assert_eq!(s["remains"], "300");
    // Pending 10 s + run 100 s + 2 intervals of 10 min.
    e.advance(10 + 100 + 1200);
    let s = e.status(id).await;
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["runs"], "3");
    assert_eq!(s["remains"], "0");
}

#[tokio::test]
async fn duplicate_link_rejected_while_active() {
    let e = env().await;
    let p = [
        ("service", "4"),
        ("link", "https://yt/c1"),
        ("quantity", "100"),
    ];
    e.add(&p).await;
    assert_eq!(
        e.add_err(&p).await,
        "You have active order with this link. Please wait until order being completed."
    );
    // Other link, or another service without the flag, is fine.
    e.add(&[
        ("service", "4"),
        ("link", "https://yt/c2"),
        ("quantity", "100"),
    ])
    .await;
    e.add(&[
        ("service", "1"),
        ("link", "https://yt/c1"),
        ("quantity", "100"),
    ])
    .await;
    e.advance(200);
    e.add(&p).await;
    assert_eq!(e.sim().orders().len(), 4);
}
