//! The same parameters through every body a client may send.

use smm_wire::params::ParamsError;
use smm_wire::request::Credentials;
use smm_wire::{ApiRequest, Params};

const FIELDS: [(&str, &str); 6] = [
    ("key", "k3y+/=%"),
    ("action", "add"),
    ("service", "12"),
    ("link", "https://example.com/p?a=1&b=%20x+y"),
    ("quantity", "100"),
    ("comments", "first é\r\nsecond \"quoted\"\nthird;x=1\r\n"),
];

fn expected() -> Params {
    FIELDS.iter().copied().collect()
}

fn form() -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in FIELDS {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

fn multipart(boundary: &str, newline: &str, with_file: bool) -> Vec<u8> {
    let mut body = String::from("preamble to ignore");
    body.push_str(newline);
    for (i, (k, v)) in FIELDS.iter().enumerate() {
        body.push_str(&format!("--{boundary}{newline}"));
        if with_file && i == 5 {
            body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{k}\"; filename=\"c.txt\"{newline}\
                 Content-Type: text/plain{newline}"
            ));
        } else {
            body.push_str(&format!(
                "content-disposition: form-data; name=\"{k}\"{newline}"
            ));
        }
        body.push_str(newline);
        body.push_str(v);
        body.push_str(newline);
    }
    body.push_str(&format!("--{boundary}--{newline}epilogue"));
    body.into_bytes()
}

fn json_strings() -> Vec<u8> {
    let map: serde_json::Map<String, serde_json::Value> = FIELDS
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::to_vec(&map).unwrap()
}

fn json_numbers() -> Vec<u8> {
    let mut value = serde_json::from_slice::<serde_json::Value>(&json_strings()).unwrap();
    value["service"] = serde_json::json!(12);
    value["quantity"] = serde_json::json!(100);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn every_encoding_gives_the_same_params_and_request() {
    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("form", Some("application/x-www-form-urlencoded"), form()),
        (
            "form+charset",
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            form(),
        ),
        (
            "form upper-case",
            Some("Application/X-WWW-Form-URLEncoded ;Charset=utf-8"),
            form(),
        ),
        ("form without content type", None, form()),
        (
            "multipart crlf",
            Some("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            multipart("----WebKitFormBoundary7MA4YWxkTrZu0gW", "\r\n", true),
        ),
        (
            "multipart lf, quoted boundary",
            Some("Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\""),
            multipart("a b;c", "\n", false),
        ),
        ("json strings", Some("application/json"), json_strings()),
        (
            "json numbers",
            Some("application/json; charset=utf-8"),
            json_numbers(),
        ),
        (
            "vendor json",
            Some("application/vnd.api+json"),
            json_numbers(),
        ),
        ("json without content type", None, json_numbers()),
        ("json as text/plain", Some("text/plain"), json_strings()),
    ];
    let want = expected();
    let want_request = ApiRequest::Add {
        service: 12,
        idempotency_key: None,
    };
    for (name, ct, body) in bodies {
        let params = Params::from_body(ct, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(params, want, "{name}");
        let creds = Credentials::parse(&params).unwrap();
        assert_eq!(creds.key, "k3y+/=%");
        assert_eq!(
            ApiRequest::parse(creds.action, &params).unwrap(),
            want_request,
            "{name}"
        );
    }
    // The query string, alone or merged under an empty body.
    let query = Params::from_urlencoded(&form());
    assert_eq!(query, want);
    assert_eq!(Params::merged(query, Params::new()), want);
}

#[test]
fn merged_body_wins() {
    let query = Params::from_urlencoded(b"key=q&action=balance&extra=1");
    let body = Params::from_urlencoded(b"key=b");
    let merged = Params::merged(query, body);
    assert_eq!(merged.get("key"), Some("b"));
    assert_eq!(merged.get("action"), Some("balance"));
    assert_eq!(merged.get("extra"), Some("1"));
}

#[test]
fn urlencoded_details() {
    let p = Params::from_urlencoded(b"a=1&a=2&b=x+y%2Bz&c=%FF%FE&d&=e&&");
    assert_eq!(p.get("a"), Some("2"), "last value wins");
    assert_eq!(p.get("b"), Some("x y+z"));
    assert_eq!(p.get("c"), Some("\u{FFFD}\u{FFFD}"));
    assert_eq!(p.get("d"), Some(""));
    assert_eq!(p.get(""), Some("e"));
    assert_eq!(p.get_trimmed("d"), None);
}

#[test]
fn json_details() {
    let p = Params::from_json(
        br#"{"a":null,"b":true,"c":false,"d":[1,"2",3.5,null],"e":0.5,"f":1e2,"g":-7}"#,
    )
    .unwrap();
    assert_eq!(p.get("a"), None);
    assert_eq!(p.get("b"), Some("1"));
    assert_eq!(p.get("c"), Some("0"));
    assert_eq!(p.get("d"), Some("1,2,3.5"));
    assert_eq!(p.get("e"), Some("0.5"));
    assert_eq!(p.get("f"), Some("100.0"));
    assert_eq!(p.get("g"), Some("-7"));
    // A BOM is fine.
    assert!(Params::from_json(b"\xEF\xBB\xBF{\"a\":\"1\"}").is_ok());
    for bad in [
        &b"[1,2]"[..],
        b"\"x\"",
        b"{\"a\":{\"b\":1}}",
        b"{\"a\":[[1]]}",
        b"{\"a\":[{}]}",
        b"{",
        b"",
    ] {
        assert!(
            matches!(Params::from_json(bad), Err(ParamsError::Json(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn from_body_blank_and_fallbacks() {
    for ct in [
        None,
        Some("application/json"),
        Some("multipart/form-data"),
        Some("application/x-www-form-urlencoded"),
    ] {
        assert_eq!(Params::from_body(ct, b"  \r\n").unwrap(), Params::new());
    }
    assert_eq!(
        Params::from_body(Some("multipart/form-data"), b"--x--"),
        Err(ParamsError::NoBoundary)
    );
    assert_eq!(
        Params::from_body(Some("multipart/form-data; boundary="), b"--x--"),
        Err(ParamsError::NoBoundary)
    );
    let p = Params::from_body(Some("text/html"), b"key=1&action=balance").unwrap();
    assert_eq!(p.get("action"), Some("balance"));
    let p = Params::from_body(None, b"  \n{\"key\":\"1\"}").unwrap();
    assert_eq!(p.get("key"), Some("1"));
    assert!(Params::from_body(None, b"{not json").is_err());
}

#[test]
fn multipart_edge_cases() {
    // Only the closing delimiter: no parameters.
    assert_eq!(
        Params::from_multipart(b"--b--\r\n", "b").unwrap(),
        Params::new()
    );
    // A missing final `--`.
    let p = Params::from_multipart(
        b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nabc\r\n--b\r\n",
        "b",
    )
    .unwrap();
    assert_eq!(p.get("key"), Some("abc"));
    let p = Params::from_multipart(
        b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nabc\r\n--b",
        "b",
    )
    .unwrap();
    assert_eq!(p.get("key"), Some("abc"));
    // No closing delimiter at all: the value runs to the end, less one line break.
    let p = Params::from_multipart(
        b"--b\nContent-Disposition: form-data; name=key\n\nabc\n",
        "b",
    )
    .unwrap();
    assert_eq!(p.get("key"), Some("abc"));
    // Values may contain the boundary text when it is not at a line start, and empty values.
    let p = Params::from_multipart(
        b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx--b y\r\n--bz\r\n--b\r\n\
          Content-Disposition: form-data;\r\n name=\"e\"\r\n\r\n\r\n--b--",
        "b",
    )
    .unwrap();
    assert_eq!(p.get("a"), Some("x--b y\r\n--bz"));
    assert_eq!(p.get("e"), Some(""), "folded header, empty value");
    // Escaped quote in a name.
    let p = Params::from_multipart(
        b"--b\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\n1\r\n--b--",
        "b",
    )
    .unwrap();
    assert_eq!(p.get("a\"b"), Some("1"));
    // Errors.
    assert!(matches!(
        Params::from_multipart(b"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--", "b"),
        Err(ParamsError::Multipart(_))
    ));
    assert!(matches!(
        Params::from_multipart(b"--b\r\nContent-Disposition: form-data; name=\"a\"", "b"),
        Err(ParamsError::Multipart(_))
    ));
    assert!(matches!(
        Params::from_multipart(b"key=1&action=2", "b"),
        Err(ParamsError::Multipart(_))
    ));
    assert_eq!(
        Params::from_multipart(b"--b--", ""),
        Err(ParamsError::NoBoundary)
    );
    assert_eq!(Params::from_multipart(b"", "b").unwrap(), Params::new());
}
