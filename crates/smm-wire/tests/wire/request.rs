//! Credentials, id lists and per-action arguments.

use smm_wire::request::Credentials;
use smm_wire::{Action, ApiRequest, ErrorKind, IdList, MAX_IDS, Params, Target};

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().copied().collect()
}

fn ids(list: &str) -> Result<Vec<u64>, ErrorKind> {
    IdList::parse(list, ErrorKind::IncorrectOrderId).map(|l| l.as_slice().to_vec())
}

#[test]
fn credentials() {
    let p = params(&[("key", "  abc "), ("action", " balance ")]);
    let c = Credentials::parse(&p).unwrap();
    assert_eq!((c.key, c.action), ("abc", Action::Balance));
    assert_eq!(
        Credentials::parse(&params(&[("action", "balance")])),
        Err(ErrorKind::InvalidKey)
    );
    assert_eq!(
        Credentials::parse(&params(&[("key", " "), ("action", "nope")])),
        Err(ErrorKind::InvalidKey),
        "a bad key wins over a bad action"
    );
    assert_eq!(
        Credentials::parse(&params(&[("key", "k")])),
        Err(ErrorKind::IncorrectRequest)
    );
    assert_eq!(
        Credentials::parse(&params(&[("key", "k"), ("action", "Balance")])),
        Err(ErrorKind::IncorrectRequest)
    );
    for action in Action::ALL {
        assert_eq!(Action::parse(action.as_str()), Some(action));
    }
}

#[test]
fn id_lists() {
    assert_eq!(ids("1,2, 3"), Ok(vec![1, 2, 3]));
    assert_eq!(ids(" 1 , 2 ,3 , "), Ok(vec![1, 2, 3]));
    assert_eq!(ids("5"), Ok(vec![5]));
    assert_eq!(ids("007,7,8"), Ok(vec![7, 8]));
    assert_eq!(ids("3,1,3,2,1"), Ok(vec![3, 1, 2]));
    assert_eq!(ids("18446744073709551615"), Ok(vec![u64::MAX]));
    for bad in [
        "",
        " ",
        ",",
        "1,,2",
        "1,2,,",
        ",1",
        "+1",
        "-1",
        "1.0",
        "0",
        "00",
        "1e3",
        "a",
        "1;2",
        "1 2",
        "18446744073709551616",
        "１",
    ] {
        assert_eq!(ids(bad), Err(ErrorKind::IncorrectOrderId), "{bad:?}");
    }
    let hundred: Vec<String> = (1..=MAX_IDS as u64).map(|i| i.to_string()).collect();
    assert_eq!(ids(&hundred.join(",")).unwrap().len(), MAX_IDS);
    let mut with_dups = hundred.clone();
    with_dups.extend(["1".to_owned(), "50".to_owned()]);
    assert_eq!(ids(&with_dups.join(",")).unwrap().len(), MAX_IDS);
    let mut too_many = hundred.clone();
    too_many.push("101".into());
    assert_eq!(ids(&too_many.join(",")), Err(ErrorKind::TooManyIds));
    too_many.push("x".into());
    assert_eq!(
        ids(&too_many.join(",")),
        Err(ErrorKind::IncorrectOrderId),
        "malformed wins over too long"
    );
    assert_eq!(
        IdList::parse("x", ErrorKind::RefillNotFound),
        Err(ErrorKind::RefillNotFound)
    );
}

#[test]
fn simple_actions() {
    let p = Params::new();
    assert_eq!(
        ApiRequest::parse(Action::Services, &p),
        Ok(ApiRequest::Services)
    );
    assert_eq!(
        ApiRequest::parse(Action::Balance, &p),
        Ok(ApiRequest::Balance)
    );
}

#[test]
fn add() {
    let add = |pairs: &[(&str, &str)]| ApiRequest::parse(Action::Add, &params(pairs));
    assert_eq!(
        add(&[("service", " 12 ")]),
        Ok(ApiRequest::Add {
            service: 12,
            idempotency_key: None
        })
    );
    for bad in ["", "0", "-1", "1.0", "x", "1,2"] {
        assert_eq!(
            add(&[("service", bad)]),
            Err(ErrorKind::IncorrectServiceId),
            "{bad:?}"
        );
    }
    assert_eq!(add(&[]), Err(ErrorKind::IncorrectServiceId));
    assert_eq!(
        add(&[("service", "1"), ("idempotency_key", "  order-42 abc ")]),
        Ok(ApiRequest::Add {
            service: 1,
            idempotency_key: Some("order-42 abc".into())
        })
    );
    assert_eq!(
        add(&[("service", "1"), ("idempotency_key", "   ")]),
        Ok(ApiRequest::Add {
            service: 1,
            idempotency_key: None
        })
    );
    let long = "k".repeat(129);
    for bad in [long.as_str(), "é", "a\tb"] {
        assert_eq!(
            add(&[("service", "1"), ("idempotency_key", bad)]),
            Err(ErrorKind::IncorrectField("idempotency_key")),
            "{bad:?}"
        );
    }
    let max = "k".repeat(128);
    assert!(add(&[("service", "1"), ("idempotency_key", &max)]).is_ok());
}

#[test]
fn targets() {
    for (action, wrap) in [
        (
            Action::Status,
            ApiRequest::Status as fn(Target) -> ApiRequest,
        ),
        (Action::Refill, ApiRequest::Refill),
        (Action::Cancel, ApiRequest::Cancel),
    ] {
        let parse = |pairs: &[(&str, &str)]| ApiRequest::parse(action, &params(pairs));
        assert_eq!(parse(&[("order", " 5 ")]), Ok(wrap(Target::One(5))));
        assert_eq!(
            parse(&[("orders", "1,2")]),
            Ok(wrap(Target::Many(IdList::from_vec(vec![1, 2]))))
        );
        assert_eq!(
            parse(&[("order", "1,2")]),
            Ok(wrap(Target::Many(IdList::from_vec(vec![1, 2]))))
        );
        assert_eq!(
            parse(&[("orders", "3"), ("order", "4")]),
            Ok(wrap(Target::Many(IdList::from_vec(vec![3]))))
        );
        assert_eq!(
            parse(&[("orders", " "), ("order", "4")]),
            Ok(wrap(Target::One(4)))
        );
        assert_eq!(parse(&[]), Err(ErrorKind::IncorrectOrderId));
        assert_eq!(
            parse(&[("orders", "x"), ("order", "4")]),
            Err(ErrorKind::IncorrectOrderId)
        );
        assert_eq!(parse(&[("order", "0")]), Err(ErrorKind::IncorrectOrderId));
        assert_eq!(parse(&[("refill", "1")]), Err(ErrorKind::IncorrectOrderId));
    }
    let parse = |pairs: &[(&str, &str)]| ApiRequest::parse(Action::RefillStatus, &params(pairs));
    assert_eq!(
        parse(&[("refill", "9")]),
        Ok(ApiRequest::RefillStatus(Target::One(9)))
    );
    assert_eq!(
        parse(&[("refills", "9, 8"), ("refill", "1")]),
        Ok(ApiRequest::RefillStatus(Target::Many(IdList::from_vec(
            vec![9, 8]
        ))))
    );
    assert_eq!(parse(&[("order", "1")]), Err(ErrorKind::RefillNotFound));
    assert_eq!(parse(&[("refill", "1.5")]), Err(ErrorKind::RefillNotFound));
    let long: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
    assert_eq!(
        parse(&[("refills", &long.join(","))]),
        Err(ErrorKind::TooManyIds)
    );
}
