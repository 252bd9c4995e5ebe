//! Customer webhook signatures: HMAC-SHA256, in the style of Stripe's.
//!
//! Every webhook the gateway delivers carries three headers:
//!
//! - [`SIGNATURE_HEADER`] `X-Smm-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the
//!   lowercase hex of HMAC-SHA256, keyed with the webhook's secret, over the bytes
//!   `"<unix seconds>." + body` (the timestamp in decimal, a dot, then the raw body as sent).
//!   While a secret is being rotated the header may carry several `v1=` entries, one per
//!   secret; a receiver accepts the delivery when any of them matches.
//! - [`EVENT_ID_HEADER`] `X-Smm-Event-Id`: the event's id, the same on every retry of it; a
//!   receiver that has seen it already can answer 2xx and do nothing.
//! - [`EVENT_TYPE_HEADER`] `X-Smm-Event`: the event's type.
//!
//! # Verifying a delivery (receiver side)
//!
//! Check the signature over the **raw** body, before parsing it (a re-serialised JSON body is
//! not the same bytes), compare in constant time, and refuse timestamps more than a few minutes
//! away from your clock (a replayed old delivery then fails).
//!
//! Python:
//!
//! ```python
//! import hmac, hashlib, time
//!
//! def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
//!     items = [part.split("=", 1) for part in header.split(",") if "=" in part]
//!     timestamps = [v for k, v in items if k == "t"]
//!     signatures = [v for k, v in items if k == "v1"]
//!     if len(timestamps) != 1 or not signatures:
//!         return False
//!     t = timestamps[0]
//!     if not t.isdigit() or abs(time.time() - int(t)) > tolerance:
//!         return False
//!     expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
//!     return any(hmac.compare_digest(expected, s) for s in signatures)
//! ```
//!
//! Rust, with the RustCrypto crates `hmac` 0.12 and `sha2` 0.10 (and `hex`):
//!
//! ```
//! use hmac::{Hmac, Mac};
//! use sha2::Sha256;
//!
//! fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
//!     let mut t = None;
//!     let mut signatures = Vec::new();
//!     for part in header.split(',') {
//!         match part.trim().split_once('=') {
//!             Some(("t", v)) => t = v.parse::<i64>().ok(),
//!             Some(("v1", v)) => signatures.push(v),
//!             _ => {}
//!         }
//!     }
//!     let Some(t) = t else { return false };
//!     if (now - t).abs() > tolerance {
//!         return false;
//!     }
//!     signatures.iter().any(|sig| {
//!         let Ok(sig) = hex::decode(sig) else { return false };
//!         let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
//!         mac.update(t.to_string().as_bytes());
//!         mac.update(b".");
//!         mac.update(body);
//!         mac.verify_slice(&sig).is_ok() // constant time
//!     })
//! }
//!
//! let body = br#"{"event":"order.completed","order":42}"#;
//! let header = smm_notify::signing::sign("whsec_test", 1_700_000_000, body);
//! assert!(verify("whsec_test", &header, body, 1_700_000_010, 300));
//! assert!(!verify("whsec_other", &header, body, 1_700_000_010, 300));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Smm-Signature";
/// The header carrying the event's id (the same on every retry of the event).
pub const EVENT_ID_HEADER: &str = "X-Smm-Event-Id";
/// The header carrying the event's type.
pub const EVENT_TYPE_HEADER: &str = "X-Smm-Event";

type HmacSha256 = Hmac<Sha256>;

/// Why a signature header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=<digits>,v1=<hex>[,v1=<hex>...]`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further in the past than the tolerance allows (a replay, or a very
    /// late delivery).
    #[error("signature timestamp is too old")]
    TooOld,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("signature timestamp is in the future")]
    TooNew,
    /// No `v1` entry matches the body and the secret.
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<lowercase hex of HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Checks a [`SIGNATURE_HEADER`] value as a receiver would: the timestamp within
/// `tolerance_secs` of `now` (both ways), and at least one `v1` entry equal, in constant time,
/// to the HMAC of `body` under `secret`. Several `v1` entries are accepted (secret rotation);
/// unknown entries (a future `v2`) are ignored.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match key {
            "t" => {
                if timestamp.is_some()
                    || value.is_empty()
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(VerifyError::Malformed);
                }
                timestamp = Some(value.parse::<i64>().map_err(|_| VerifyError::Malformed)?);
            }
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let age = now.saturating_sub(timestamp);
    if age > tolerance_secs {
        return Err(VerifyError::TooOld);
    }
    if age < tolerance_secs.saturating_neg() {
        return Err(VerifyError::TooNew);
    }
    let expected = mac(secret, timestamp, body);
    let matched = signatures
        .iter()
        .any(|sig| hex::decode(sig).is_ok_and(|sig| expected.clone().verify_slice(&sig).is_ok()));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// A new webhook secret: `whsec_` and 32 bytes from the OS random source, in lowercase hex.
///
/// # Panics
///
/// If the operating system has no random source to read (then nothing secret can be made).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("the OS random source is unavailable: {e}");
    }
    format!("whsec_{}", hex::encode(bytes))
}

/// The headers of a signed delivery: [`SIGNATURE_HEADER`] (see [`sign`]),
/// [`EVENT_ID_HEADER`] and [`EVENT_TYPE_HEADER`], ready for
/// [`OutboundClient::post`](crate::http::OutboundClient::post).
pub fn signed_headers(
    secret: &str,
    timestamp: i64,
    event_id: &str,
    event_type: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        (SIGNATURE_HEADER, sign(secret, timestamp, body)),
        (EVENT_ID_HEADER, event_id.to_owned()),
        (EVENT_TYPE_HEADER, event_type.to_owned()),
    ]
}
