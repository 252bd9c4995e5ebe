//! `ErrorKind::from_upstream`: raw keys, English texts, SmartPanel wordings.

use smm_wire::ErrorKind::{self, *};

#[test]
fn raw_perfect_panel_keys() {
    let cases = [
        ("neworder.error.not_enough_funds", NotEnoughFunds),
        ("neworder.error.link_duplicate", LinkDuplicate),
        ("neworder.error.link", IncorrectLink),
        ("neworder.error.min_quantity", QuantityBelowMin(0)),
        ("neworder.error.max_quantity", QuantityAboveMax(0)),
        ("neworder.error.min_quantity 100", QuantityBelowMin(100)),
        ("error.incorrect_service_id", IncorrectServiceId),
        ("neworder.error.service", IncorrectServiceId),
        ("error.incorrect_key", InvalidKey),
        ("error.invalid_key", InvalidKey),
        ("  NEWORDER.ERROR.NOT_ENOUGH_FUNDS. ", NotEnoughFunds),
    ];
    for (text, kind) in cases {
        assert_eq!(ErrorKind::from_upstream(text), kind, "{text:?}");
    }
}

#[test]
fn english_texts() {
    let cases = [
        ("Invalid API key", InvalidKey),
        ("invalid api key.", InvalidKey),
        ("Incorrect request", IncorrectRequest),
        ("Incorrect service ID", IncorrectServiceId),
        ("Quantity less than minimal 200", QuantityBelowMin(200)),
        ("Quantity less than minimal 1,000.", QuantityBelowMin(1000)),
        ("Quantity more than maximal 5000", QuantityAboveMax(5000)),
        ("Quantity more than maximum 5000", QuantityAboveMax(5000)),
        ("Not enough funds on balance", NotEnoughFunds),
        ("Incorrect order ID", IncorrectOrderId),
        ("Refill not found", RefillNotFound),
        ("Incorrect link", IncorrectLink),
        ("Bad link", IncorrectLink),
        (
            "You have active order with this link. Please wait until order being completed.",
            LinkDuplicate,
        ),
        (
            "you have active order with this link.  please wait until order being completed",
            LinkDuplicate,
        ),
        ("Too many requests", RateLimited),
        ("Rate limit exceeded, try later", RateLimited),
        ("\tINCORRECT   ORDER ID\n", IncorrectOrderId),
    ];
    for (text, kind) in cases {
        assert_eq!(ErrorKind::from_upstream(text), kind, "{text:?}");
    }
}

#[test]
fn smartpanel_wordings() {
    let cases = [
        (
            "API is Disable for this user or User Not Found! Contact the Support",
            InvalidKey,
        ),
        ("This action is Invalid", IncorrectRequest),
        ("Service ID does not exists", IncorrectServiceId),
        (
            "There are missing required parameters. Please check your API Manual",
            IncorrectRequest,
        ),
    ];
    for (text, kind) in cases {
        assert_eq!(ErrorKind::from_upstream(text), kind, "{text:?}");
    }
}

#[test]
fn unknown_and_empty() {
    assert_eq!(
        ErrorKind::from_upstream("  IP not allowed. "),
        Other("IP not allowed.".into())
    );
    assert_eq!(ErrorKind::from_upstream(""), Other("Unknown error".into()));
    assert_eq!(
        ErrorKind::from_upstream(" \n"),
        Other("Unknown error".into())
    );
    assert_eq!(
        ErrorKind::from_upstream("..."),
        Other("Unknown error".into())
    );
    assert_eq!(
        ErrorKind::from_upstream("neworder.error.something_new"),
        Other("neworder.error.something_new".into())
    );
}

#[test]
fn canonical_texts_round_trip() {
    let kinds = [
        InvalidKey,
        IncorrectRequest,
        IncorrectServiceId,
        QuantityBelowMin(50),
        QuantityAboveMax(10000),
        IncorrectQuantity,
        NotEnoughFunds,
        IncorrectOrderId,
        RefillNotFound,
        IncorrectLink,
        LinkDuplicate,
        IncorrectField("comments"),
        IncorrectField("expiry"),
        IncorrectField("type_of_traffic"),
        TooManyIds,
        DripFeedDisabled,
        RefillDisabled,
        CancelDisabled,
        RefillNotAllowed,
        CancelNotAllowed,
        AccountSuspended,
        RateLimited,
        Unavailable,
        Other("Something else entirely".into()),
    ];
    for kind in kinds {
        let text = kind.to_string();
        assert!(!text.is_empty());
        assert_eq!(ErrorKind::from_upstream(&text), kind, "{text:?}");
    }
}
