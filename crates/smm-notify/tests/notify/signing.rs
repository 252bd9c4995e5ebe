//! Webhook signatures, checked as a receiver would.

use smm_notify::signing::{VerifyError, new_secret, sign, verify};

const SECRET: &str = "whsec_test";
const BODY: &[u8] = br#"{"event":"order.completed","order":42}"#;
const T: i64 = 1_700_000_000;

#[test]
fn known_answer() {
    // Computed independently:
    // printf '%s' '1700000000.{"event":"order.completed","order":42}' \
    //   | openssl dgst -sha256 -hmac 'whsec_test'
    assert_eq!(
        sign(SECRET, T, BODY),
        "t=1700000000,v1=7b636d9b1950d3b8610ac74f1313a764359104c6c3865634a091489d5ad321c4"
    );
}

#[test]
fn round_trip() {
    let header = sign(SECRET, T, BODY);
    assert_eq!(verify(SECRET, &header, BODY, T, 300), Ok(()));
    assert_eq!(verify(SECRET, &header, BODY, T + 300, 300), Ok(()));
    assert_eq!(verify(SECRET, &header, BODY, T - 300, 300), Ok(()));
}

#[test]
fn a_changed_body_fails() {
    let header = sign(SECRET, T, BODY);
    let changed = br#"{"event":"order.completed","order":43}"#;
    assert_eq!(
        verify(SECRET, &header, changed, T, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn a_wrong_secret_fails() {
    let header = sign(SECRET, T, BODY);
    assert_eq!(
        verify("whsec_wrong", &header, BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn an_old_timestamp_fails() {
    let header = sign(SECRET, T, BODY);
    assert_eq!(
        verify(SECRET, &header, BODY, T + 301, 300),
        Err(VerifyError::TooOld)
    );
}

#[test]
fn a_future_timestamp_fails() {
    let header = sign(SECRET, T, BODY);
    assert_eq!(
        verify(SECRET, &header, BODY, T - 301, 300),
        Err(VerifyError::TooNew)
    );
}

#[test]
fn a_changed_timestamp_fails() {
    let header = sign(SECRET, T, BODY).replace("t=1700000000", "t=1700000001");
    assert_eq!(
        verify(SECRET, &header, BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn several_v1_entries_for_rotation() {
    let old = sign("whsec_old", T, BODY);
    let new = sign("whsec_new", T, BODY);
    let v1_new = new.split_once(',').unwrap().1;
    let header = format!("{old},{v1_new}");
    assert_eq!(verify("whsec_old", &header, BODY, T, 300), Ok(()));
    assert_eq!(verify("whsec_new", &header, BODY, T, 300), Ok(()));
    assert_eq!(
        verify("whsec_gone", &header, BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
    // Unknown schemes are ignored, spaces after commas tolerated.
    let header = format!("t={T}, v0=abcd, {v1_new}");
    assert_eq!(verify("whsec_new", &header, BODY, T, 300), Ok(()));
}

#[test]
fn malformed_headers() {
    for header in [
        "",
        "v1=00",
        "t=1700000000",
        "t=abc,v1=00",
        "t=-5,v1=00",
        "t=1700000000,t=1700000000,v1=00",
        "garbage",
    ] {
        assert_eq!(
            verify(SECRET, header, BODY, T, 300),
            Err(VerifyError::Malformed),
            "{header:?}"
        );
    }
    // A v1 that is not hex simply does not match.
    assert_eq!(
        verify(SECRET, "t=1700000000,v1=zz", BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn new_secrets_are_random_hex() {
    let a = new_secret();
    let b = new_secret();
    assert_ne!(a, b);
    for s in [&a, &b] {
        let hex = s.strip_prefix("whsec_").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
    }
}
