//! Property tests: round trips and "never panics".

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rust_decimal::Decimal;
use smm_wire::request::Credentials;
use smm_wire::response::{MultiStatusReply, StatusItem};
use smm_wire::{
    Action, ApiRequest, ErrorKind, IdList, MAX_IDS, OrderRequest, OrderStatus, Params, ServiceType,
    StatusCodes, upstream,
};

fn known_status() -> impl Strategy<Value = OrderStatus> {
    prop_oneof![
        Just(OrderStatus::Pending),
        Just(OrderStatus::InProgress),
        Just(OrderStatus::Processing),
        Just(OrderStatus::Completed),
        Just(OrderStatus::Partial),
        Just(OrderStatus::Canceled),
        Just(OrderStatus::Refunded),
        Just(OrderStatus::Active),
        Just(OrderStatus::Paused),
        Just(OrderStatus::Expired),
    ]
}

fn status_item() -> impl Strategy<Value = StatusItem> {
    (
        (0i64..=i64::MAX, 0u32..=10),
        proptest::option::of(any::<i64>()),
        known_status(),
        proptest::option::of(any::<i64>()),
        "[A-Z]{3}",
        proptest::option::of(any::<u32>()),
        proptest::option::of(proptest::collection::vec(1u64..=u64::MAX, 0..5)),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |((mantissa, scale), start_count, status, remains, currency, runs, orders, posts)| {
                StatusItem {
                    charge: Decimal::new(mantissa, scale),
                    start_count,
                    status,
                    remains,
                    currency,
                    runs,
                    orders,
                    posts,
                    expiry: None,
                }
            },
        )
}

fn check_same(item: &StatusItem, up: &upstream::UpstreamStatus) {
    assert_eq!(up.status, item.status);
    assert_eq!(up.charge, Some(item.charge));
    assert_eq!(
        up.charge.map(|c| c.to_string()),
        Some(item.charge.to_string())
    );
    assert_eq!(up.start_count, Some(item.start_count.unwrap_or(0)));
    assert_eq!(up.remains, Some(item.remains.unwrap_or(0)));
    assert_eq!(up.currency.as_deref(), Some(item.currency.as_str()));
    assert_eq!(up.runs, item.runs);
    assert_eq!(up.posts, item.posts);
    let orders: Vec<String> = up.orders.iter().map(|o| o.to_string()).collect();
    let want: Vec<String> = item.orders.iter().flatten().map(u64::to_string).collect();
    assert_eq!(orders, want);
}

fn all_parsers(body: &[u8]) {
    let codes = StatusCodes::default();
    let _ = upstream::parse_services(body);
    let _ = upstream::parse_add(body);
    let _ = upstream::parse_status(body, &codes);
    let _ = upstream::parse_status_many(body, &codes);
    let _ = upstream::parse_refill(body);
    let _ = upstream::parse_refill_many(body);
    let _ = upstream::parse_refill_status(body);
    let _ = upstream::parse_refill_status_many(body);
    let _ = upstream::parse_cancel_many(body);
    let _ = upstream::parse_cancel(body);
    let _ = upstream::parse_balance(body);
}

fn request_side(content_type: Option<&str>, body: &[u8]) {
    let Ok(params) = Params::from_body(content_type, body) else {
        return;
    };
    let _ = Credentials::parse(&params);
    for action in Action::ALL {
        let _ = ApiRequest::parse(action, &params);
    }
    for ty in ServiceType::KNOWN {
        if let Ok(order) = OrderRequest::parse(&ty, &params) {
            let _ = order.upstream_params();
            let _ = order.billing();
            let _ = order.quantity();
        }
    }
}

/// JSON-ish and multipart-ish fragments so random bodies reach deep into the parsers.
fn structured_body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"error\"".to_owned()),
        Just("\"order\"".to_owned()),
        Just("\"status\"".to_owned()),
        Just("\"charge\"".to_owned()),
        Just("\"refill\"".to_owned()),
        Just("\"cancel\"".to_owned()),
        Just("\"success\"".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
        Just("1e-7".to_owned()),
        Just("-5".to_owned()),
        Just("0.27819".to_owned()),
        Just("\"Cancelled\"".to_owned()),
        Just("--b".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just("Content-Disposition: form-data; name=\"key\"".to_owned()),
        "[a-z0-9 =&%+.]{0,8}",
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat().into_bytes())
}

proptest! {
    #[test]
    fn urlencoded_round_trip(map in proptest::collection::btree_map(".*", ".*", 0..8)) {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &map {
            ser.append_pair(k, v);
        }
        let encoded = ser.finish();
        let params = Params::from_urlencoded(encoded.as_bytes());
        let back: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        prop_assert_eq!(back, map);
    }

    #[test]
    fn id_list_round_trip(
        ids in proptest::collection::btree_set(1u64..=u64::MAX, 1..=MAX_IDS),
        seps in proptest::collection::vec(
            prop_oneof![Just(","), Just(", "), Just(" ,"), Just(" , "), Just(",  ")],
            MAX_IDS,
        ),
        trailing in any::<bool>(),
        zeros in 0usize..3,
    ) {
        let ids: Vec<u64> = ids.into_iter().collect();
        let mut text = String::from(" ");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                text.push_str(seps[i % seps.len()]);
            }
            text.push_str(&"0".repeat(zeros));
            text.push_str(&id.to_string());
        }
        if trailing {
            text.push_str(", ");
        }
        let parsed = IdList::parse(&text, ErrorKind::IncorrectOrderId).unwrap();
        prop_assert_eq!(parsed.as_slice(), ids.as_slice());
    }

    #[test]
    fn id_list_too_many(ids in proptest::collection::btree_set(1u64..=u64::MAX, MAX_IDS + 1..=MAX_IDS + 30)) {
        let text: Vec<String> = ids.iter().map(u64::to_string).collect();
        prop_assert_eq!(
            IdList::parse(&text.join(","), ErrorKind::IncorrectOrderId),
            Err(ErrorKind::TooManyIds)
        );
    }

    #[test]
    fn request_parsers_never_panic(
        content_type in proptest::option::of(prop_oneof![
            Just("application/x-www-form-urlencoded".to_owned()),
            Just("multipart/form-data; boundary=b".to_owned()),
            Just("multipart/form-data; boundary=\"b".to_owned()),
            Just("application/json".to_owned()),
            ".*",
        ]),
        body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), structured_body()],
    ) {
        request_side(content_type.as_deref(), &body);
    }

    #[test]
    fn upstream_parsers_never_panic(
        body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), structured_body()],
    ) {
        all_parsers(&body);
    }

    #[test]
    fn order_params_never_panic(
        pairs in proptest::collection::vec(
            (
                prop_oneof![
                    Just("link"), Just("quantity"), Just("runs"), Just("interval"),
                    Just("comments"), Just("usernames"), Just("username"), Just("min"),
                    Just("max"), Just("expiry"), Just("device"), Just("type_of_traffic"),
                    Just("country"), Just("answer_number"), Just("posts"),
                ],
                "[0-9a-z/ .\\-\r\n]{0,12}",
            ),
            0..12,
        )
    ) {
        let params: Params = pairs.into_iter().collect();
        for ty in ServiceType::KNOWN {
            if let Ok(order) = OrderRequest::parse(&ty, &params) {
                prop_assert_eq!(order.service_type(), ty);
                for (name, value) in order.upstream_params() {
                    prop_assert!(!name.is_empty());
                    let _ = value;
                }
            }
        }
    }

    #[test]
    fn status_reply_round_trip(item in status_item()) {
        let body = serde_json::to_vec(&item).unwrap();
        let up = upstream::parse_status(&body, &StatusCodes::default()).unwrap();
        check_same(&item, &up);
    }

    #[test]
    fn multi_status_reply_round_trip(
        entries in proptest::collection::btree_map(
            1u64..=u64::MAX,
            prop_oneof![
                status_item().prop_map(Ok),
                Just(Err(ErrorKind::IncorrectOrderId)),
            ],
            0..8,
        ),
    ) {
        let reply = MultiStatusReply(entries.into_iter().collect());
        let body = serde_json::to_vec(&reply).unwrap();
        let batch = upstream::parse_status_many(&body, &StatusCodes::default()).unwrap();
        prop_assert_eq!(batch.len(), reply.0.len());
        let by_id: BTreeMap<String, _> = batch
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let ids: BTreeSet<String> = reply.0.iter().map(|(id, _)| id.to_string()).collect();
        prop_assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), ids);
        for (id, item) in &reply.0 {
            let got = &by_id[&id.to_string()];
            match (item, got) {
                (Ok(item), Ok(up)) => check_same(item, up),
                (Err(want), Err(got)) => prop_assert_eq!(want, got),
                other => prop_assert!(false, "mismatch {:?}", other),
            }
        }
    }
}
