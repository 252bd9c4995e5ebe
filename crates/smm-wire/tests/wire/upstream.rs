//! Upstream dialects.

use smm_wire::status::{OrderStatus, RefillStatus, StatusCodes};
use smm_wire::upstream::{self, ProtocolError, ReplyError};
use smm_wire::{ErrorKind, ServiceType, UpstreamId};

use crate::{dec, id};

fn codes() -> StatusCodes {
    StatusCodes::default()
}

fn protocol(e: ProtocolError) -> ReplyError {
    ReplyError::Protocol(e)
}

fn rejected(kind: ErrorKind) -> ReplyError {
    ReplyError::Rejected(kind)
}

fn is_shape<T: std::fmt::Debug>(r: Result<T, ReplyError>) -> bool {
    matches!(r, Err(ReplyError::Protocol(ProtocolError::Shape(_))))
}

#[test]
fn upstream_id_rules() {
    assert_eq!(UpstreamId::new(" ab-C_9 ").unwrap().as_str(), "ab-C_9");
    assert!(UpstreamId::new(&"9".repeat(64)).is_some());
    for bad in ["", " ", "1.5", "a b", "é", "1/2"] {
        assert_eq!(UpstreamId::new(bad), None, "{bad:?}");
    }
    assert_eq!(UpstreamId::new(&"9".repeat(65)), None);
    assert_eq!(id("42").to_string(), "42");
}

#[test]
fn add_dialects() {
    let ok = [
        &br#"{"order":23501}"#[..],
        br#"{"order":"23501"}"#,
        br#"{"order_id":23501}"#,
        br#"{"order_id":" 23501 "}"#,
        br#"{"status":"success","order":23501,"charge":"0.5","error":null}"#,
        br#"{"order":null,"order_id":23501}"#,
        b"\xEF\xBB\xBF  {\"order\":23501}\n",
        b"\n\t{\"order\":23501,\"error\":\"\"}  ",
    ];
    for body in ok {
        assert_eq!(
            upstream::parse_add(body),
            Ok(id("23501")),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let no_id = [
        &br#"{"order":0}"#[..],
        br#"{"order":"0"}"#,
        br#"{"order":null}"#,
        br#"{"order":""}"#,
        br#"{"order":1.5}"#,
        br#"{"order":-3}"#,
        br#"{"order":"-3"}"#,
        br#"{"order":"null"}"#,
        br#"{"order":true}"#,
        br#"{"order":[1]}"#,
        br#"{"status":"ok"}"#,
        br#"{}"#,
        br#"[]"#,
        br#"23501"#,
        br#""23501""#,
        br#"{"order":23501,"error":"Not enough funds on balance"}"#,
    ];
    for body in no_id {
        assert!(
            is_shape(upstream::parse_add(body)),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn whole_reply_errors() {
    let cases = [
        (
            &br#"{"error":"neworder.error.not_enough_funds"}"#[..],
            ErrorKind::NotEnoughFunds,
        ),
        (
            br#"{"error":"neworder.error.link_duplicate"}"#,
            ErrorKind::LinkDuplicate,
        ),
        (
            br#"{"error":"Incorrect service ID"}"#,
            ErrorKind::IncorrectServiceId,
        ),
        (
            br#"{"error":"Quantity less than minimal 200"}"#,
            ErrorKind::QuantityBelowMin(200),
        ),
        (
            br#"{"error":{"message":"Invalid API key"}}"#,
            ErrorKind::InvalidKey,
        ),
        (
            br#"{"error":{"code":5}}"#,
            ErrorKind::Other("Unknown error".into()),
        ),
        (
            br#"{"error":true,"message":"Bad link"}"#,
            ErrorKind::IncorrectLink,
        ),
        (
            br#"{"error":1,"msg":"Too many requests"}"#,
            ErrorKind::RateLimited,
        ),
        (
            br#"{"error":["Incorrect request"]}"#,
            ErrorKind::IncorrectRequest,
        ),
        (
            br#"{"status":"fail","message":"Invalid API key"}"#,
            ErrorKind::InvalidKey,
        ),
        (
            br#"{"status":"Error","msg":"IP not allowed"}"#,
            ErrorKind::Other("IP not allowed".into()),
        ),
        (
            br#"{"success":false,"msg":"IP not allowed"}"#,
            ErrorKind::Other("IP not allowed".into()),
        ),
        (
            br#"{"success":false,"message":"Incorrect order ID"}"#,
            ErrorKind::IncorrectOrderId,
        ),
        (
            br#"{"success":"false","error":"Not enough funds"}"#,
            ErrorKind::NotEnoughFunds,
        ),
        (
            br#"{"success":0}"#,
            ErrorKind::Other("Unknown error".into()),
        ),
    ];
    for (body, kind) in cases {
        let want = Err(rejected(kind));
        let text = String::from_utf8_lossy(body);
        assert_eq!(
            upstream::parse_add(body),
            want.clone().map(|()| id("1")),
            "{text}"
        );
        assert_eq!(upstream::parse_balance(body).map(|_| ()), want, "{text}");
        assert_eq!(upstream::parse_services(body).map(|_| ()), want, "{text}");
        assert_eq!(
            upstream::parse_status(body, &codes()).map(|_| ()),
            want,
            "{text}"
        );
        assert_eq!(
            upstream::parse_status_many(body, &codes()).map(|_| ()),
            want,
            "{text}"
        );
        assert_eq!(upstream::parse_refill(body).map(|_| ()), want, "{text}");
        assert_eq!(
            upstream::parse_refill_many(body).map(|_| ()),
            want,
            "{text}"
        );
        assert_eq!(
            upstream::parse_refill_status(body).map(|_| ()),
            want,
            "{text}"
        );
        assert_eq!(
            upstream::parse_refill_status_many(body).map(|_| ()),
            want,
            "{text}"
        );
        assert_eq!(
            upstream::parse_cancel_many(body).map(|_| ()),
            want,
            "{text}"
        );
        assert_eq!(upstream::parse_cancel(body), want, "{text}");
    }
}

#[test]
fn non_json_bodies() {
    let html = b"  <!DOCTYPE html><html><title>Just a moment...</title></html>";
    let long_text = "Fatal error: ".repeat(20);
    let cases: Vec<(&[u8], ReplyError)> = vec![
        (b"", protocol(ProtocolError::Empty)),
        (b" \r\n\t", protocol(ProtocolError::Empty)),
        (b"\xEF\xBB\xBF \n", protocol(ProtocolError::Empty)),
        (html, protocol(ProtocolError::Html)),
        (
            b"<br />\n<b>Warning</b>: {\"order\":1}",
            protocol(ProtocolError::Html),
        ),
        (b"OK", protocol(ProtocolError::NotJson("OK".into()))),
        (
            b"{\"order\":1} trailing",
            protocol(ProtocolError::NotJson("{\"order\":1} trailing".into())),
        ),
        (
            b"\xff\xfe",
            protocol(ProtocolError::NotJson("\u{FFFD}\u{FFFD}".into())),
        ),
        (
            long_text.as_bytes(),
            protocol(ProtocolError::NotJson(long_text.chars().take(80).collect())),
        ),
    ];
    for (body, err) in cases {
        let text = String::from_utf8_lossy(body);
        assert_eq!(upstream::parse_add(body), Err(err.clone()), "{text}");
        assert_eq!(upstream::parse_balance(body).map(|_| ()), Err(err.clone()));
        assert_eq!(upstream::parse_services(body).map(|_| ()), Err(err.clone()));
        assert_eq!(
            upstream::parse_status(body, &codes()).map(|_| ()),
            Err(err.clone())
        );
        assert_eq!(upstream::parse_cancel(body), Err(err.clone()));
    }
}

#[test]
fn unknown_shapes() {
    assert!(is_shape(upstream::parse_balance(br#"{"funds":"1"}"#)));
    assert!(is_shape(upstream::parse_balance(br#"{"balance":"lots"}"#)));
    assert!(is_shape(upstream::parse_balance(br#"[1]"#)));
    assert!(is_shape(upstream::parse_status(
        br#"{"charge":"1"}"#,
        &codes()
    )));
    assert!(is_shape(upstream::parse_status(br#"[]"#, &codes())));
    assert!(is_shape(upstream::parse_services(br#"{"services":[]}"#)));
    assert!(is_shape(upstream::parse_refill(br#"{"ok":1}"#)));
    assert!(is_shape(upstream::parse_refill_many(br#"{"1":1}"#)));
    assert!(is_shape(upstream::parse_refill_status(br#"{"state":"x"}"#)));
    assert!(is_shape(upstream::parse_refill_status_many(br#"{}"#)));
    assert!(is_shape(upstream::parse_cancel_many(br#"{"cancel":1}"#)));
    assert!(is_shape(upstream::parse_cancel(br#"{"done":1}"#)));
    assert!(is_shape(upstream::parse_cancel(
        br#"[{"order":1,"cancel":1},{"order":2,"cancel":1}]"#
    )));
    assert!(is_shape(upstream::parse_status_many(br#""x""#, &codes())));
    assert!(is_shape(upstream::parse_status_many(
        br#"{"charge":"1","status":"Completed"}"#,
        &codes()
    )));
}

#[test]
fn status_dialects() {
    let st = |body: &str| upstream::parse_status(body.as_bytes(), &codes()).unwrap();
    let s = st(
        r#"{"charge":0.27819,"start_count":3572,"status":"Cancelled","remains":-5,"currency":"USD"}"#,
    );
    assert_eq!(s.status, OrderStatus::Canceled);
    assert_eq!(s.charge, Some(dec("0.27819")));
    assert_eq!(s.charge.unwrap().to_string(), "0.27819");
    assert_eq!(s.start_count, Some(3572));
    assert_eq!(s.remains, Some(-5));

    let s =
        st(r#"{"charge":"1.4421900","status":"in_progress","remains":"Unknown","start_count":""}"#);
    assert_eq!(s.status, OrderStatus::InProgress);
    assert_eq!(s.charge.unwrap().to_string(), "1.4421900", "scale kept");
    assert_eq!(s.remains, None);
    assert_eq!(s.start_count, None);
    assert_eq!(s.currency, None);

    let spellings = [
        ("In Progress", OrderStatus::InProgress),
        ("in progress", OrderStatus::InProgress),
        ("IN-PROGRESS", OrderStatus::InProgress),
        ("inprogress", OrderStatus::InProgress),
        ("processing", OrderStatus::Processing),
        ("completed", OrderStatus::Completed),
        ("Complete", OrderStatus::Completed),
        ("canceled", OrderStatus::Canceled),
        ("canelled", OrderStatus::Canceled),
        ("Refunded", OrderStatus::Refunded),
        ("refunds", OrderStatus::Refunded),
        ("Partial", OrderStatus::Partial),
        ("Pending", OrderStatus::Pending),
        ("Active", OrderStatus::Active),
        ("paused", OrderStatus::Paused),
        ("Expired", OrderStatus::Expired),
        ("Awaiting", OrderStatus::Unknown("Awaiting".into())),
        (" Fail ", OrderStatus::Unknown("Fail".into())),
        ("", OrderStatus::Unknown(String::new())),
    ];
    for (raw, want) in spellings {
        let body = serde_json::json!({"status": raw, "charge": "1"}).to_string();
        assert_eq!(st(&body).status, want, "{raw:?}");
    }
    // Numeric codes, as text and as numbers.
    assert_eq!(st(r#"{"status":"4"}"#).status, OrderStatus::Canceled);
    assert_eq!(st(r#"{"status":4}"#).status, OrderStatus::Canceled);
    assert_eq!(st(r#"{"status":2.0}"#).status, OrderStatus::Completed);
    assert_eq!(st(r#"{"status":"0"}"#).status, OrderStatus::Pending);
    assert_eq!(
        st(r#"{"status":99}"#).status,
        OrderStatus::Unknown("99".into())
    );

    // Drip-feed parent and subscription extras.
    let s = st(
        r#"{"charge":"3","status":"In progress","runs":"2","orders":[11,"12",0,"x y"],"remains":"0"}"#,
    );
    assert_eq!(s.runs, Some(2));
    assert_eq!(s.orders, vec![id("11"), id("12")]);
    let s = st(r#"{"status":"Active","posts":"3","expiry":"25/12/2026","orders":"5, 6"}"#);
    assert_eq!(s.posts, Some(3));
    assert_eq!(s.expiry.as_deref(), Some("25/12/2026"));
    assert_eq!(s.orders, vec![id("5"), id("6")]);
    let s = st(r#"{"status":"Active","expiry":null,"charge":null,"remains":null}"#);
    assert_eq!((s.expiry, s.charge, s.remains), (None, None, None));

    // Float money, exactly.
    for (json, text) in [
        ("0.9", "0.9"),
        ("0.27819", "0.27819"),
        ("12.3456789", "12.3456789"),
        ("100", "100"),
        ("1e-7", "0.0000001"),
        ("2.5E3", "2500"),
        ("-0.5", "-0.5"),
    ] {
        let s = st(&format!(r#"{{"status":"Completed","charge":{json}}}"#));
        assert_eq!(s.charge, Some(dec(text)), "{json}");
    }
    assert_eq!(st(r#"{"status":"Completed","charge":"abc"}"#).charge, None);
    assert_eq!(
        st(r#"{"status":"Completed","remains":"12.0"}"#).remains,
        Some(12)
    );
    assert_eq!(
        st(r#"{"status":"Completed","remains":"12.5"}"#).remains,
        None
    );

    // Custom numeric table.
    let custom = StatusCodes([(7, OrderStatus::Completed)].into_iter().collect());
    assert_eq!(
        upstream::parse_status(br#"{"status":7}"#, &custom)
            .unwrap()
            .status,
        OrderStatus::Completed
    );
    assert_eq!(
        upstream::parse_status(br#"{"status":2}"#, &custom)
            .unwrap()
            .status,
        OrderStatus::Unknown("2".into())
    );
}

#[test]
fn status_many_dialects() {
    let body = br#"{
        "1": {"charge": 0.5, "status": "Cancelled", "remains": "-3"},
        "2": {"error": "neworder.error.not_found"},
        "3": {"error": {"message": "Incorrect order ID"}},
        "bad key!": {"status": "Completed"},
        "0": {"status": "Completed"},
        "4": "garbage",
        "5": {"no": "status"},
        "6": {"status": 3}
    }"#;
    let batch = upstream::parse_status_many(body, &codes()).unwrap();
    let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["1", "2", "3", "6"]);
    let first = batch[0].1.as_ref().unwrap();
    assert_eq!(first.status, OrderStatus::Canceled);
    assert_eq!(first.remains, Some(-3));
    assert_eq!(
        batch[1].1,
        Err(ErrorKind::Other("neworder.error.not_found".into()))
    );
    assert_eq!(batch[2].1, Err(ErrorKind::IncorrectOrderId));
    assert_eq!(batch[3].1.as_ref().unwrap().status, OrderStatus::Partial);

    // The array shape, ids under `order`, `id` or `order_id`.
    let body = br#"[
        {"order": 7, "status": "completed", "charge": "1"},
        {"id": "8", "error": "Incorrect order ID"},
        {"order_id": 9, "status": "In Progress"},
        {"status": "Completed"},
        5
    ]"#;
    let batch = upstream::parse_status_many(body, &codes()).unwrap();
    let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["7", "8", "9"]);
    assert_eq!(batch[1].1, Err(ErrorKind::IncorrectOrderId));
    assert_eq!(batch[2].1.as_ref().unwrap().status, OrderStatus::InProgress);

    assert_eq!(upstream::parse_status_many(b"[]", &codes()), Ok(vec![]));
    assert_eq!(upstream::parse_status_many(b"{}", &codes()), Ok(vec![]));
}

#[test]
fn services_dialects() {
    let body = br#"[
        {"service":"5","name":"Likes","type":"custom comments package","category":"IG",
         "rate":0.9,"min":10,"max":"1000","refill":"1","cancel":0,"dripfeed":"yes",
         "description":"Fast likes"},
        {"service":6,"name":"X","type":"Brand New Type","category":"C","rate":"1.00000001",
         "min":"1","max":"2","refill":"true","cancel":"no","dripfeed":"false","desc":"d"},
        {"service":7,"name":"NoType","rate":"3","min":"1","max":"2"},
        {"name":"no id","rate":"1","min":1,"max":2},
        {"service":8,"rate":"-1","min":1,"max":2},
        {"service":9,"rate":"abc","min":1,"max":2},
        {"service":10,"rate":"1","max":2},
        {"service":11,"rate":"1","min":5,"max":2},
        {"service":1.5,"rate":"1","min":1,"max":2},
        "not an object"
    ]"#;
    let reply = upstream::parse_services(body).unwrap();
    assert_eq!(reply.services.len(), 3);
    let invalid: Vec<usize> = reply.invalid.iter().map(|(i, _)| *i).collect();
    assert_eq!(invalid, [3, 4, 5, 6, 7, 8, 9]);
    let a = &reply.services[0];
    assert_eq!(a.service, id("5"));
    assert_eq!(a.service_type, ServiceType::CustomCommentsPackage);
    assert_eq!(a.rate.to_string(), "0.9");
    assert_eq!((a.min, a.max), (10, 1000));
    assert!(a.refill && !a.cancel && a.dripfeed);
    assert_eq!(a.desc.as_deref(), Some("Fast likes"));
    let b = &reply.services[1];
    assert_eq!(b.service_type, ServiceType::Other("Brand New Type".into()));
    assert_eq!(b.rate, dec("1.00000001"));
    assert!(b.refill && !b.cancel && !b.dripfeed);
    assert_eq!(b.desc.as_deref(), Some("d"));
    let c = &reply.services[2];
    assert_eq!(c.service_type, ServiceType::Default);
    assert!(!c.refill && !c.cancel && !c.dripfeed);
    assert_eq!(c.category, "");
    assert_eq!(upstream::parse_services(b"[]").unwrap().services.len(), 0);
}

#[test]
fn refill_dialects() {
    assert_eq!(upstream::parse_refill(br#"{"refill":1}"#), Ok(id("1")));
    assert_eq!(
        upstream::parse_refill(br#"{"refill":"77","success":"Refill request sent"}"#),
        Ok(id("77"))
    );
    assert_eq!(
        upstream::parse_refill(br#"{"refill_id":"78"}"#),
        Ok(id("78"))
    );
    assert_eq!(
        upstream::parse_refill(br#"{"refill":{"error":"Order not eligible for refill."}}"#),
        Err(rejected(ErrorKind::RefillNotAllowed))
    );
    assert!(is_shape(upstream::parse_refill(br#"{"refill":0}"#)));

    let batch = upstream::parse_refill_many(
        br#"[{"order":"1","refill":"10"},{"order_id":2,"refill":{"error":"neworder.error.x"}},
            {"order":3,"refill":"Order not eligible for refill"},{"order":4,"error":"Incorrect order ID"},
            {"order":5,"refill":0},{"refill":6},{"order":0,"refill":7}]"#,
    )
    .unwrap();
    assert_eq!(
        batch,
        vec![
            (id("1"), Ok(id("10"))),
            (id("2"), Err(ErrorKind::Other("neworder.error.x".into()))),
            (id("3"), Err(ErrorKind::RefillNotAllowed)),
            (id("4"), Err(ErrorKind::IncorrectOrderId)),
        ]
    );
}

#[test]
fn refill_status_dialects() {
    let rs = |b: &[u8]| upstream::parse_refill_status(b);
    assert_eq!(
        rs(br#"{"status":"completed"}"#),
        Ok(RefillStatus::Completed)
    );
    assert_eq!(
        rs(br#"{"status":"In_Progress"}"#),
        Ok(RefillStatus::InProgress)
    );
    assert_eq!(
        rs(br#"{"status":"Processing"}"#),
        Ok(RefillStatus::InProgress)
    );
    assert_eq!(rs(br#"{"status":"Cancelled"}"#), Ok(RefillStatus::Canceled));
    assert_eq!(rs(br#"{"status":"rejected"}"#), Ok(RefillStatus::Rejected));
    assert_eq!(rs(br#"{"status":"pending"}"#), Ok(RefillStatus::Pending));
    assert_eq!(
        rs(br#"{"status":"Weird"}"#),
        Ok(RefillStatus::Unknown("Weird".into()))
    );
    assert_eq!(
        rs(br#"{"status":{"error":"Refill not found"}}"#),
        Err(rejected(ErrorKind::RefillNotFound))
    );

    let batch = upstream::parse_refill_status_many(
        br#"[{"refill":"1","status":"Cancelled"},{"id":2,"status":"Rejected"},
            {"refill":3,"error":"Refill not found"},{"refill":4},{"status":"Completed"}]"#,
    )
    .unwrap();
    assert_eq!(
        batch,
        vec![
            (id("1"), Ok(RefillStatus::Canceled)),
            (id("2"), Ok(RefillStatus::Rejected)),
            (id("3"), Err(ErrorKind::RefillNotFound)),
        ]
    );
}

#[test]
fn cancel_dialects() {
    let batch = upstream::parse_cancel_many(
        br#"[{"order":1,"cancel":1},{"order":"2","cancel":"1"},{"order":3,"cancel":true},
            {"order":4,"cancel":"Cancel request accepted"},{"order":5,"cancel":0},
            {"order":6,"cancel":{"error":"neworder.error.cancel"}},{"order":7,"cancel":"Incorrect order ID"},
            {"order":8,"error":"Incorrect order ID"},{"order":9},{"cancel":1}]"#,
    )
    .unwrap();
    assert_eq!(
        batch,
        vec![
            (id("1"), Ok(())),
            (id("2"), Ok(())),
            (id("3"), Ok(())),
            (id("4"), Ok(())),
            (id("5"), Err(ErrorKind::CancelNotAllowed)),
            (
                id("6"),
                Err(ErrorKind::Other("neworder.error.cancel".into()))
            ),
            (id("7"), Err(ErrorKind::IncorrectOrderId)),
            (id("8"), Err(ErrorKind::IncorrectOrderId)),
        ]
    );
    for ok in [
        &br#"{"cancel":1}"#[..],
        br#"{"cancel":"1"}"#,
        br#"{"success":"Order cancellation requested"}"#,
        br#"{"success":true}"#,
        br#"{"ok":"true"}"#,
        br#"[{"order":2,"cancel":1}]"#,
    ] {
        assert_eq!(
            upstream::parse_cancel(ok),
            Ok(()),
            "{}",
            String::from_utf8_lossy(ok)
        );
    }
    assert_eq!(
        upstream::parse_cancel(br#"{"cancel":0}"#),
        Err(rejected(ErrorKind::CancelNotAllowed))
    );
    assert_eq!(
        upstream::parse_cancel(br#"{"cancel":{"error":"Incorrect order ID"}}"#),
        Err(rejected(ErrorKind::IncorrectOrderId))
    );
    assert_eq!(
        upstream::parse_cancel(br#"[{"order":2,"cancel":{"error":"Incorrect order ID"}}]"#),
        Err(rejected(ErrorKind::IncorrectOrderId))
    );
}

#[test]
fn balance_dialects() {
    let b = upstream::parse_balance(br#"{"balance":100.84292,"currency":"USD"}"#).unwrap();
    assert_eq!(b.balance.to_string(), "100.84292");
    let b = upstream::parse_balance(br#"{"balance":"  -2.50 "}"#).unwrap();
    assert_eq!(b.balance.to_string(), "-2.50");
    assert_eq!(b.currency, None);
    let b = upstream::parse_balance(br#"{"balance":"0","currency":" EUR "}"#).unwrap();
    assert_eq!(b.currency.as_deref(), Some("EUR"));
    assert!(is_shape(upstream::parse_balance(
        br#"{"balance":"Unknown"}"#
    )));
    assert!(is_shape(upstream::parse_balance(br#"{"balance":null}"#)));
    assert!(is_shape(upstream::parse_balance(
        br#"{"balance":"1,000.00"}"#
    )));
}
