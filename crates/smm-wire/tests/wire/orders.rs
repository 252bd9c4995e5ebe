//! Every `add` variant: parsing, exact upstream parameters, billing and quantity.

use smm_wire::order::{Billing, DripFeed};
use smm_wire::{ErrorKind, OrderRequest, Params, ServiceType};

const LINK: &str = "https://instagram.com/p/abc?x=1";

fn params(pairs: &[(&str, &str)]) -> Params {
    let mut p: Params = pairs.iter().copied().collect();
    // Always present, never forwarded.
    p.insert("key", "secret");
    p.insert("action", "add");
    p.insert("service", "1");
    p.insert("unknown_extra", "must not be forwarded");
    p
}

fn parse(ty: ServiceType, pairs: &[(&str, &str)]) -> Result<OrderRequest, ErrorKind> {
    OrderRequest::parse(&ty, &params(pairs))
}

fn names(order: &OrderRequest) -> Vec<&'static str> {
    order
        .upstream_params()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn value<'a>(up: &'a [(&'static str, String)], name: &str) -> &'a str {
    up.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn service_type_strings() {
    let expected = [
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
    for (ty, text) in ServiceType::KNOWN.iter().zip(expected) {
        assert_eq!(ty.as_str(), text);
        assert_eq!(&ServiceType::parse(text), ty);
        assert_eq!(
            &ServiceType::parse(&format!("  {} ", text.to_uppercase())),
            ty
        );
    }
    assert_eq!(
        ServiceType::parse("custom   comments\tpackage"),
        ServiceType::CustomCommentsPackage
    );
    assert_eq!(ServiceType::parse(" seo "), ServiceType::Seo);
    assert_eq!(
        ServiceType::parse(" Custom Data "),
        ServiceType::Other("Custom Data".into())
    );
    assert_eq!(
        ServiceType::parse("Custom"),
        ServiceType::Other("Custom".into())
    );
    assert_eq!(ServiceType::Other("X y".into()).as_str(), "X y");
    assert!(ServiceType::Package.is_flat_priced());
    assert!(ServiceType::CustomCommentsPackage.is_flat_priced());
    assert!(!ServiceType::CustomComments.is_flat_priced());
}

#[test]
fn default_plain_and_drip_feed() {
    let o = parse(
        ServiceType::Default,
        &[("link", &format!("  {LINK} ")), ("quantity", "100")],
    )
    .unwrap();
    assert_eq!(
        o,
        OrderRequest::Default {
            link: LINK.into(),
            quantity: 100,
            drip_feed: None
        }
    );
    assert_eq!(o.service_type(), ServiceType::Default);
    assert_eq!(o.link(), Some(LINK));
    assert_eq!(o.quantity(), Some(100));
    assert_eq!(o.billing(), Billing::PerThousand { units: 100 });
    assert_eq!(
        o.upstream_params(),
        vec![("link", LINK.to_owned()), ("quantity", "100".to_owned())]
    );

    let o = parse(
        ServiceType::Default,
        &[
            ("link", LINK),
            ("quantity", "100"),
            ("runs", "3"),
            ("interval", "10"),
        ],
    )
    .unwrap();
    assert_eq!(
        o,
        OrderRequest::Default {
            link: LINK.into(),
            quantity: 100,
            drip_feed: Some(DripFeed {
                runs: 3,
                interval: 10
            })
        }
    );
    assert_eq!(o.quantity(), Some(100), "per run");
    assert_eq!(o.billing(), Billing::PerThousand { units: 300 });
    assert_eq!(names(&o), ["link", "quantity", "runs", "interval"]);
    let up = o.upstream_params();
    assert_eq!(value(&up, "runs"), "3");
    assert_eq!(value(&up, "interval"), "10");

    // Blank runs and interval are no drip-feed.
    let o = parse(
        ServiceType::Default,
        &[
            ("link", LINK),
            ("quantity", "5"),
            ("runs", ""),
            ("interval", " "),
        ],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity"]);
}

#[test]
fn quantity_rules() {
    let q = |v: &str| {
        parse(ServiceType::Default, &[("link", LINK), ("quantity", v)]).map(|o| o.quantity())
    };
    assert_eq!(q("100"), Ok(Some(100)));
    assert_eq!(q(" 0100 "), Ok(Some(100)));
    assert_eq!(q("100.0"), Ok(Some(100)), "JSON 100.0");
    assert_eq!(q(""), Ok(Some(0)), "blank is 0, refused later by min");
    assert_eq!(
        parse(ServiceType::Default, &[("link", LINK)]).map(|o| o.quantity()),
        Ok(Some(0))
    );
    for bad in [
        "-1",
        "+1",
        "1.5",
        "1e3",
        "abc",
        "100.",
        "18446744073709551616",
        "1 000",
    ] {
        assert_eq!(q(bad), Err(ErrorKind::IncorrectQuantity), "{bad:?}");
    }
}

#[test]
fn drip_feed_errors() {
    let d = |runs: &str, interval: &str| {
        parse(
            ServiceType::Default,
            &[
                ("link", LINK),
                ("quantity", "10"),
                ("runs", runs),
                ("interval", interval),
            ],
        )
    };
    assert!(d("2", "1").is_ok());
    assert!(d("1000", "1440").is_ok());
    assert_eq!(d("1", "10"), Err(ErrorKind::IncorrectField("runs")));
    assert_eq!(d("1001", "10"), Err(ErrorKind::IncorrectField("runs")));
    assert_eq!(d("x", "10"), Err(ErrorKind::IncorrectField("runs")));
    assert_eq!(d("", "10"), Err(ErrorKind::IncorrectField("runs")));
    assert_eq!(d("3", ""), Err(ErrorKind::IncorrectField("interval")));
    assert_eq!(d("3", "0"), Err(ErrorKind::IncorrectField("interval")));
    assert_eq!(d("3", "1441"), Err(ErrorKind::IncorrectField("interval")));
}

#[test]
fn link_rules() {
    let l = |v: &str| parse(ServiceType::Package, &[("link", v)]);
    assert!(l("x").is_ok());
    assert!(l(&"a".repeat(2048)).is_ok());
    for bad in [
        "".to_owned(),
        "   ".to_owned(),
        "https://a.com/ b".to_owned(),
        "https://a.com/\tb".to_owned(),
        "https://a.com/\u{7}".to_owned(),
        "https://a.com/\u{a0}x".to_owned(),
        "a".repeat(2049),
    ] {
        assert_eq!(l(&bad), Err(ErrorKind::IncorrectLink), "{bad:?}");
    }
    assert_eq!(
        parse(ServiceType::Package, &[]),
        Err(ErrorKind::IncorrectLink)
    );
    // Multi-byte characters count as one.
    assert!(l(&"é".repeat(2048)).is_ok());
}

#[test]
fn package() {
    let o = parse(ServiceType::Package, &[("link", LINK), ("quantity", "500")]).unwrap();
    assert_eq!(o, OrderRequest::Package { link: LINK.into() });
    assert_eq!(o.quantity(), None);
    assert_eq!(o.billing(), Billing::Flat);
    assert_eq!(names(&o), ["link"]);
}

#[test]
fn custom_comments_mixed_line_ends() {
    let comments = "Nice!\r\nGreat post\n\n  \r\nWow 🔥\r\n  spaced  \n";
    let o = parse(
        ServiceType::CustomComments,
        &[("link", LINK), ("comments", comments), ("quantity", "999")],
    )
    .unwrap();
    assert_eq!(
        o,
        OrderRequest::CustomComments {
            link: LINK.into(),
            comments: vec![
                "Nice!".into(),
                "Great post".into(),
                "Wow 🔥".into(),
                "  spaced  ".into()
            ]
        }
    );
    assert_eq!(o.quantity(), Some(4), "the sent quantity is ignored");
    assert_eq!(o.billing(), Billing::PerThousand { units: 4 });
    assert_eq!(
        o.upstream_params(),
        vec![
            ("link", LINK.to_owned()),
            (
                "comments",
                "Nice!\nGreat post\nWow 🔥\n  spaced  ".to_owned()
            )
        ]
    );
    for bad in ["", "\n\r\n  \n"] {
        assert_eq!(
            parse(
                ServiceType::CustomComments,
                &[("link", LINK), ("comments", bad)]
            ),
            Err(ErrorKind::IncorrectField("comments"))
        );
    }
    assert_eq!(
        parse(ServiceType::CustomComments, &[("link", LINK)]),
        Err(ErrorKind::IncorrectField("comments"))
    );
}

#[test]
fn custom_comments_package() {
    let o = parse(
        ServiceType::CustomCommentsPackage,
        &[("link", LINK), ("comments", "a\nb")],
    )
    .unwrap();
    assert_eq!(o.quantity(), None);
    assert_eq!(o.billing(), Billing::Flat);
    assert_eq!(names(&o), ["link", "comments"]);
    assert_eq!(value(&o.upstream_params(), "comments"), "a\nb");
}

#[test]
fn list_caps() {
    let many = "x\n".repeat(10_000);
    assert!(
        parse(
            ServiceType::CustomComments,
            &[("link", LINK), ("comments", &many)]
        )
        .is_ok()
    );
    let too_many = "x\n".repeat(10_001);
    assert_eq!(
        parse(
            ServiceType::CustomComments,
            &[("link", LINK), ("comments", &too_many)]
        ),
        Err(ErrorKind::IncorrectField("comments"))
    );
    let too_long = "y".repeat(64 * 1024 + 1);
    assert_eq!(
        parse(
            ServiceType::Seo,
            &[("link", LINK), ("quantity", "1"), ("keywords", &too_long)]
        ),
        Err(ErrorKind::IncorrectField("keywords"))
    );
    assert_eq!(
        parse(
            ServiceType::CommentLikes,
            &[("link", LINK), ("quantity", "1"), ("username", &too_long)]
        ),
        Err(ErrorKind::IncorrectField("username"))
    );
    assert_eq!(
        parse(ServiceType::Package, &[("link", &too_long)]),
        Err(ErrorKind::IncorrectLink)
    );
}

#[test]
fn mentions_family() {
    let o = parse(
        ServiceType::Mentions,
        &[("link", LINK), ("quantity", "50"), ("usernames", "a\r\nb")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "usernames"]);
    assert_eq!(o.quantity(), Some(50));
    assert_eq!(o.billing(), Billing::PerThousand { units: 50 });

    let o = parse(
        ServiceType::MentionsWithHashtags,
        &[
            ("link", LINK),
            ("quantity", "50"),
            ("usernames", "a\nb"),
            ("hashtags", "#x\n#y\n"),
        ],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "usernames", "hashtags"]);
    assert_eq!(value(&o.upstream_params(), "hashtags"), "#x\n#y");
    assert_eq!(
        parse(
            ServiceType::MentionsWithHashtags,
            &[("link", LINK), ("quantity", "50"), ("usernames", "a")]
        ),
        Err(ErrorKind::IncorrectField("hashtags"))
    );

    let o = parse(
        ServiceType::MentionsCustomList,
        &[("link", LINK), ("usernames", "a\nb\nc"), ("quantity", "1")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "usernames"]);
    assert_eq!(o.quantity(), Some(3));
    assert_eq!(o.billing(), Billing::PerThousand { units: 3 });

    let o = parse(
        ServiceType::MentionsHashtag,
        &[("link", LINK), ("quantity", "10"), ("hashtag", " fitness ")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "hashtag"]);
    assert_eq!(value(&o.upstream_params(), "hashtag"), "fitness");
    assert_eq!(
        parse(
            ServiceType::MentionsHashtag,
            &[("link", LINK), ("quantity", "10")]
        ),
        Err(ErrorKind::IncorrectField("hashtag"))
    );

    let o = parse(
        ServiceType::MentionsUserFollowers,
        &[("link", LINK), ("quantity", "10"), ("username", "bob")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "username"]);

    let o = parse(
        ServiceType::MentionsMediaLikers,
        &[
            ("link", LINK),
            ("quantity", "10"),
            ("media", "https://x/p/1"),
        ],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "media"]);
    assert_eq!(
        parse(
            ServiceType::MentionsMediaLikers,
            &[("link", LINK), ("quantity", "10"), ("media", " ")]
        ),
        Err(ErrorKind::IncorrectField("media"))
    );
}

#[test]
fn comment_likes_poll_replies_groups_seo() {
    let o = parse(
        ServiceType::CommentLikes,
        &[("link", LINK), ("quantity", "20"), ("username", "owner")],
    )
    .unwrap();
    assert_eq!(
        o.upstream_params(),
        vec![
            ("link", LINK.to_owned()),
            ("quantity", "20".to_owned()),
            ("username", "owner".to_owned())
        ]
    );

    let o = parse(
        ServiceType::Poll,
        &[("link", LINK), ("quantity", "20"), ("answer_number", "2")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "answer_number"]);
    assert_eq!(value(&o.upstream_params(), "answer_number"), "2");
    for bad in ["0", "x", "", "4294967296"] {
        assert_eq!(
            parse(
                ServiceType::Poll,
                &[("link", LINK), ("quantity", "20"), ("answer_number", bad)]
            ),
            Err(ErrorKind::IncorrectField("answer_number")),
            "{bad:?}"
        );
    }

    let o = parse(
        ServiceType::CommentReplies,
        &[
            ("link", LINK),
            ("username", "owner"),
            ("comments", "r1\r\nr2\r\n"),
        ],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "username", "comments"]);
    assert_eq!(o.quantity(), Some(2));
    assert_eq!(o.billing(), Billing::PerThousand { units: 2 });
    assert_eq!(
        parse(
            ServiceType::CommentReplies,
            &[("link", LINK), ("comments", "r1")]
        ),
        Err(ErrorKind::IncorrectField("username"))
    );

    let o = parse(
        ServiceType::InvitesFromGroups,
        &[("link", LINK), ("quantity", "30"), ("groups", "g1\ng2")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "groups"]);
    assert_eq!(o.billing(), Billing::PerThousand { units: 30 });

    let o = parse(
        ServiceType::Seo,
        &[("link", LINK), ("quantity", "40"), ("keywords", "k1\nk2")],
    )
    .unwrap();
    assert_eq!(names(&o), ["link", "quantity", "keywords"]);
    assert_eq!(o.quantity(), Some(40));
}

#[test]
fn subscriptions() {
    let o = parse(
        ServiceType::Subscriptions,
        &[
            ("username", " @star "),
            ("min", "100"),
            ("max", "200"),
            ("delay", "30"),
            ("posts", "5"),
            ("old_posts", "2"),
            ("expiry", "5/1/2027"),
            ("link", LINK),
            ("quantity", "1000"),
        ],
    )
    .unwrap();
    assert_eq!(
        o,
        OrderRequest::Subscriptions {
            username: "@star".into(),
            min: 100,
            max: 200,
            delay: 30,
            posts: Some(5),
            old_posts: Some(2),
            expiry: Some("05/01/2027".into()),
        }
    );
    assert_eq!(o.link(), None);
    assert_eq!(o.quantity(), None);
    assert_eq!(o.billing(), Billing::PerThousand { units: 1000 });
    assert_eq!(
        o.upstream_params(),
        vec![
            ("username", "@star".to_owned()),
            ("min", "100".to_owned()),
            ("max", "200".to_owned()),
            ("posts", "5".to_owned()),
            ("old_posts", "2".to_owned()),
            ("delay", "30".to_owned()),
            ("expiry", "05/01/2027".to_owned()),
        ]
    );

    // Minimal: delay defaults to 0, posts 0 → unlimited (not sent), no expiry.
    let o = parse(
        ServiceType::Subscriptions,
        &[
            ("username", "u"),
            ("min", "10"),
            ("max", "10"),
            ("posts", "0"),
        ],
    )
    .unwrap();
    assert_eq!(names(&o), ["username", "min", "max", "delay"]);
    assert_eq!(value(&o.upstream_params(), "delay"), "0");
    assert_eq!(o.billing(), Billing::PerThousand { units: 10 });

    let sub = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("username", "u"), ("min", "10"), ("max", "20")];
        pairs.extend_from_slice(extra);
        parse(ServiceType::Subscriptions, &pairs)
    };
    assert_eq!(
        parse(ServiceType::Subscriptions, &[("min", "1"), ("max", "2")]),
        Err(ErrorKind::IncorrectField("username"))
    );
    assert_eq!(
        parse(
            ServiceType::Subscriptions,
            &[("username", "u"), ("max", "2")]
        ),
        Err(ErrorKind::IncorrectField("min"))
    );
    assert_eq!(
        parse(
            ServiceType::Subscriptions,
            &[("username", "u"), ("min", "2")]
        ),
        Err(ErrorKind::IncorrectField("max"))
    );
    assert_eq!(
        sub(&[("max", "5")]),
        Err(ErrorKind::IncorrectField("max")),
        "max < min"
    );
    assert_eq!(
        sub(&[("delay", "-5")]),
        Err(ErrorKind::IncorrectField("delay"))
    );
    assert_eq!(
        sub(&[("posts", "x")]),
        Err(ErrorKind::IncorrectField("posts"))
    );

    let expiry = |e: &str| {
        sub(&[("expiry", e)]).map(|o| match o {
            OrderRequest::Subscriptions { expiry, .. } => expiry,
            _ => unreachable!(),
        })
    };
    assert_eq!(expiry("25/12/2026"), Ok(Some("25/12/2026".into())));
    assert_eq!(expiry("2026-12-25"), Ok(Some("25/12/2026".into())));
    assert_eq!(expiry("2028-2-29"), Ok(Some("29/02/2028".into())));
    assert_eq!(expiry("29/2/2000"), Ok(Some("29/02/2000".into())));
    assert_eq!(expiry(" "), Ok(None));
    for bad in [
        "29/02/2027",
        "29/02/1900",
        "31/04/2026",
        "32/01/2026",
        "00/01/2026",
        "01/13/2026",
        "1/1/26",
        "2026/12/25",
        "25-12-2026",
        "2026-12-25T00:00",
        "25/12/2026/1",
        "tomorrow",
        "001/01/2026",
    ] {
        assert_eq!(
            expiry(bad),
            Err(ErrorKind::IncorrectField("expiry")),
            "{bad:?}"
        );
    }
}

#[test]
fn web_traffic() {
    let base = [
        ("link", LINK),
        ("quantity", "1000"),
        ("country", "US"),
        ("device", "5"),
    ];
    let wt = |extra: &[(&str, &str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        parse(ServiceType::WebTraffic, &pairs)
    };
    let o = wt(&[("type_of_traffic", "1"), ("google_keyword", "buy shoes")]).unwrap();
    assert_eq!(
        o.upstream_params(),
        vec![
            ("link", LINK.to_owned()),
            ("quantity", "1000".to_owned()),
            ("country", "US".to_owned()),
            ("device", "5".to_owned()),
            ("type_of_traffic", "1".to_owned()),
            ("google_keyword", "buy shoes".to_owned()),
        ]
    );
    assert_eq!(o.billing(), Billing::PerThousand { units: 1000 });
    let o = wt(&[
        ("type_of_traffic", "2"),
        ("referring_url", "https://ref.example"),
    ])
    .unwrap();
    assert_eq!(
        names(&o),
        [
            "link",
            "quantity",
            "country",
            "device",
            "type_of_traffic",
            "referring_url"
        ]
    );
    let o = wt(&[("type_of_traffic", "3")]).unwrap();
    assert_eq!(
        names(&o),
        ["link", "quantity", "country", "device", "type_of_traffic"]
    );

    assert_eq!(
        wt(&[("type_of_traffic", "1")]),
        Err(ErrorKind::IncorrectField("google_keyword"))
    );
    assert_eq!(
        wt(&[("type_of_traffic", "2")]),
        Err(ErrorKind::IncorrectField("referring_url"))
    );
    assert_eq!(
        wt(&[("type_of_traffic", "4")]),
        Err(ErrorKind::IncorrectField("type_of_traffic"))
    );
    assert_eq!(wt(&[]), Err(ErrorKind::IncorrectField("type_of_traffic")));
    for device in ["0", "6", "x", "256"] {
        assert_eq!(
            parse(
                ServiceType::WebTraffic,
                &[
                    ("link", LINK),
                    ("quantity", "1"),
                    ("country", "US"),
                    ("device", device),
                    ("type_of_traffic", "3")
                ]
            ),
            Err(ErrorKind::IncorrectField("device")),
            "{device:?}"
        );
    }
    assert_eq!(
        parse(
            ServiceType::WebTraffic,
            &[
                ("link", LINK),
                ("quantity", "1"),
                ("device", "1"),
                ("type_of_traffic", "3")
            ]
        ),
        Err(ErrorKind::IncorrectField("country"))
    );
}

#[test]
fn other_types_are_not_orderable() {
    assert_eq!(
        parse(ServiceType::Other("Custom Data".into()), &[("link", LINK)]),
        Err(ErrorKind::IncorrectServiceId)
    );
}

#[test]
fn upstream_params_never_carry_request_plumbing() {
    let every = [
        ("link", LINK),
        ("quantity", "100"),
        ("comments", "a\nb"),
        ("usernames", "a\nb"),
        ("hashtags", "a"),
        ("hashtag", "a"),
        ("username", "a"),
        ("media", "m"),
        ("answer_number", "1"),
        ("groups", "g"),
        ("keywords", "k"),
        ("min", "1"),
        ("max", "2"),
        ("country", "US"),
        ("device", "1"),
        ("type_of_traffic", "3"),
    ];
    for ty in ServiceType::KNOWN {
        let o = parse(ty.clone(), &every).unwrap_or_else(|e| panic!("{ty:?}: {e}"));
        assert_eq!(o.service_type(), ty);
        for (name, _) in o.upstream_params() {
            assert!(
                !["key", "action", "service", "unknown_extra"].contains(&name),
                "{ty:?} forwards {name}"
            );
        }
        // Types without a quantity never forward one.
        if matches!(
            ty,
            ServiceType::Package
                | ServiceType::CustomComments
                | ServiceType::CustomCommentsPackage
                | ServiceType::MentionsCustomList
                | ServiceType::CommentReplies
                | ServiceType::Subscriptions
        ) {
            assert!(!names(&o).contains(&"quantity"), "{ty:?}");
        }
    }
}
