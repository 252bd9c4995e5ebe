//! Every seed example parses with its upstream parser, and the matching canonical reply
//! serialises to exactly the example.

use serde_json::json;
use smm_wire::response::{
    AddReply, BalanceReply, CancelReply, ErrorReply, MultiCancelReply, MultiRefillReply,
    MultiRefillStatusReply, MultiStatusReply, RefillReply, RefillStatusReply, ServiceItem,
    StatusItem,
};
use smm_wire::upstream::{self, UpstreamStatus};
use smm_wire::{ErrorKind, OrderStatus, RefillStatus, ServiceType, StatusCodes};

use crate::{dec, fixture, fixture_json, id, to_json};

fn status_item(up: &UpstreamStatus) -> StatusItem {
    StatusItem {
        charge: up.charge.expect("charge"),
        start_count: up.start_count,
        status: up.status.clone(),
        remains: up.remains,
        currency: up.currency.clone().expect("currency"),
        runs: None,
        orders: None,
        posts: None,
        expiry: None,
    }
}

#[test]
fn services() {
    let reply = upstream::parse_services(&fixture("services")).unwrap();
    assert!(reply.invalid.is_empty(), "{:?}", reply.invalid);
    assert_eq!(reply.services.len(), 2);
    let first = &reply.services[0];
    assert_eq!(first.service, id("1"));
    assert_eq!(first.name, "Followers");
    assert_eq!(first.service_type, ServiceType::Default);
    assert_eq!(first.category, "First Category");
    assert_eq!(first.rate.to_string(), "0.90");
    assert_eq!((first.min, first.max), (50, 10000));
    assert!(first.refill && first.cancel && !first.dripfeed);
    assert_eq!(first.desc, None);
    let second = &reply.services[1];
    assert_eq!(second.service_type, ServiceType::CustomComments);
    assert_eq!(second.rate, dec("8"));
    assert!(!second.refill && second.cancel);

    let items: Vec<ServiceItem> = reply
        .services
        .iter()
        .map(|s| ServiceItem {
            service: s.service.as_str().parse().unwrap(),
            name: s.name.clone(),
            service_type: s.service_type.clone(),
            category: s.category.clone(),
            rate: s.rate,
            min: s.min,
            max: s.max,
            refill: s.refill,
            cancel: s.cancel,
            dripfeed: s.dripfeed,
            desc: s.desc.clone(),
        })
        .collect();
    // The seed has no `dripfeed`; the gateway always sends it.
    let mut expected = fixture_json("services");
    for entry in expected.as_array_mut().unwrap() {
        entry
            .as_object_mut()
            .unwrap()
            .insert("dripfeed".into(), json!(false));
    }
    assert_eq!(to_json(&items), expected);
}

#[test]
fn service_item_desc_only_when_set() {
    let mut item = ServiceItem {
        service: 7,
        name: "Views".into(),
        service_type: ServiceType::Package,
        category: "C".into(),
        rate: dec("1.500"),
        min: 1,
        max: 1,
        refill: false,
        cancel: false,
        dripfeed: true,
        desc: None,
    };
    let value = to_json(&item);
    assert!(value.get("desc").is_none());
    assert_eq!(value["type"], "Package");
    assert_eq!(value["rate"], "1.500");
    assert_eq!(value["dripfeed"], true);
    item.desc = Some("Fast".into());
    item.service_type = ServiceType::Other("Custom Thing".into());
    let value = to_json(&item);
    assert_eq!(value["desc"], "Fast");
    assert_eq!(value["type"], "Custom Thing");
}

#[test]
fn add() {
    assert_eq!(upstream::parse_add(&fixture("add")).unwrap(), id("23501"));
    assert_eq!(to_json(&AddReply { order: 23501 }), fixture_json("add"));
}

#[test]
fn status() {
    let up = upstream::parse_status(&fixture("status"), &StatusCodes::default()).unwrap();
    assert_eq!(up.status, OrderStatus::Partial);
    assert_eq!(up.charge, Some(dec("0.27819")));
    assert_eq!(up.start_count, Some(3572));
    assert_eq!(up.remains, Some(157));
    assert_eq!(up.currency.as_deref(), Some("USD"));
    assert_eq!(to_json(&status_item(&up)), fixture_json("status"));
}

#[test]
fn status_many() {
    let batch =
        upstream::parse_status_many(&fixture("status_many"), &StatusCodes::default()).unwrap();
    assert_eq!(batch.len(), 3);
    let reply = MultiStatusReply(
        batch
            .iter()
            .map(|(k, r)| {
                (
                    k.as_str().parse().unwrap(),
                    r.as_ref().map(status_item).map_err(Clone::clone),
                )
            })
            .collect(),
    );
    assert_eq!(reply.0[1].1, Err(ErrorKind::IncorrectOrderId));
    assert_eq!(
        reply.0[2].1.as_ref().unwrap().status,
        OrderStatus::InProgress
    );
    assert_eq!(to_json(&reply), fixture_json("status_many"));
}

#[test]
fn multi_status_keeps_the_given_order() {
    let item = StatusItem {
        charge: dec("1"),
        start_count: None,
        status: OrderStatus::Pending,
        remains: None,
        currency: "USD".into(),
        runs: None,
        orders: None,
        posts: None,
        expiry: None,
    };
    let reply = MultiStatusReply(vec![
        (100, Ok(item.clone())),
        (2, Err(ErrorKind::IncorrectOrderId)),
        (10, Ok(item)),
    ]);
    let text = serde_json::to_string(&reply).unwrap();
    let (a, b, c) = (
        text.find("\"100\"").unwrap(),
        text.find("\"2\"").unwrap(),
        text.find("\"10\"").unwrap(),
    );
    assert!(a < b && b < c, "{text}");
    assert!(
        text.contains(r#""2":{"error":"Incorrect order ID"}"#),
        "{text}"
    );
    assert!(text.contains(r#""start_count":"0""#) && text.contains(r#""remains":"0""#));
}

#[test]
fn status_item_optional_fields() {
    let item = StatusItem {
        charge: dec("0.50"),
        start_count: Some(10),
        status: OrderStatus::Active,
        remains: Some(-5),
        currency: "EUR".into(),
        runs: Some(3),
        orders: Some(vec![11, 12]),
        posts: Some(4),
        expiry: Some("25/12/2026".into()),
    };
    assert_eq!(
        to_json(&item),
        json!({"charge":"0.50","start_count":"10","status":"Active","remains":"-5",
               "currency":"EUR","runs":"3","orders":[11,12],"posts":"4","expiry":"25/12/2026"})
    );
    let unknown = StatusItem {
        status: OrderStatus::Unknown("Awaiting".into()),
        ..item
    };
    assert_eq!(to_json(&unknown)["status"], "In progress");
}

#[test]
fn refill() {
    assert_eq!(upstream::parse_refill(&fixture("refill")).unwrap(), id("1"));
    assert_eq!(to_json(&RefillReply { refill: 1 }), fixture_json("refill"));
}

#[test]
fn refill_many() {
    let batch = upstream::parse_refill_many(&fixture("refill_many")).unwrap();
    assert_eq!(
        batch,
        vec![
            (id("1"), Ok(id("1"))),
            (id("2"), Ok(id("2"))),
            (id("3"), Err(ErrorKind::IncorrectOrderId)),
        ]
    );
    let reply = MultiRefillReply(
        batch
            .iter()
            .map(|(k, r)| {
                (
                    k.as_str().parse().unwrap(),
                    r.as_ref()
                        .map(|v| v.as_str().parse().unwrap())
                        .map_err(Clone::clone),
                )
            })
            .collect(),
    );
    assert_eq!(to_json(&reply), fixture_json("refill_many"));
}

#[test]
fn refill_status() {
    let status = upstream::parse_refill_status(&fixture("refill_status")).unwrap();
    assert_eq!(status, RefillStatus::Completed);
    assert_eq!(
        to_json(&RefillStatusReply { status }),
        fixture_json("refill_status")
    );
}

#[test]
fn refill_status_many() {
    let batch = upstream::parse_refill_status_many(&fixture("refill_status_many")).unwrap();
    assert_eq!(
        batch,
        vec![
            (id("1"), Ok(RefillStatus::Completed)),
            (id("2"), Ok(RefillStatus::Rejected)),
            (id("3"), Err(ErrorKind::RefillNotFound)),
        ]
    );
    let reply = MultiRefillStatusReply(
        batch
            .into_iter()
            .map(|(k, r)| (k.as_str().parse().unwrap(), r))
            .collect(),
    );
    assert_eq!(to_json(&reply), fixture_json("refill_status_many"));
}

#[test]
fn cancel_many() {
    let batch = upstream::parse_cancel_many(&fixture("cancel_many")).unwrap();
    assert_eq!(
        batch,
        vec![
            (id("9"), Err(ErrorKind::IncorrectOrderId)),
            (id("2"), Ok(())),
        ]
    );
    let reply = MultiCancelReply(
        batch
            .into_iter()
            .map(|(k, r)| (k.as_str().parse().unwrap(), r))
            .collect(),
    );
    assert_eq!(to_json(&reply), fixture_json("cancel_many"));
}

#[test]
fn balance() {
    let up = upstream::parse_balance(&fixture("balance")).unwrap();
    assert_eq!(up.balance, dec("100.84292"));
    assert_eq!(up.balance.to_string(), "100.84292");
    assert_eq!(up.currency.as_deref(), Some("USD"));
    let reply = BalanceReply {
        balance: up.balance,
        currency: "USD".into(),
    };
    assert_eq!(to_json(&reply), fixture_json("balance"));
}

#[test]
fn small_replies() {
    assert_eq!(to_json(&CancelReply), json!({"cancel": 1}));
    assert_eq!(
        to_json(&ErrorReply(ErrorKind::InvalidKey)),
        json!({"error": "Invalid API key"})
    );
    assert_eq!(
        serde_json::to_string(&ErrorReply(ErrorKind::QuantityBelowMin(200))).unwrap(),
        r#"{"error":"Quantity less than minimal 200"}"#
    );
    assert_eq!(
        serde_json::to_string(&RefillReply { refill: 42 }).unwrap(),
        r#"{"refill":"42"}"#
    );
}
