//! Tolerant parsing of upstream replies.
//!
//! Real panels reply in many dialects: ids as numbers, strings, or under `order_id`; money as
//! strings or floats (parsed exactly from the JSON text, never through `f64`); `remains`
//! negative or `"Unknown"`; statuses in any spelling; errors as `{"error": ...}` (English or raw
//! `neworder.error.*` keys), `{"status":"fail","message":...}` or `{"success":false,"msg":...}`;
//! HTML pages, empty bodies and other non-JSON text with HTTP 200. Every parser here takes the
//! raw body and either understands it or says precisely why not ([`ReplyError`]).
//!
//! HTTP status codes are the transport's business (the provider client); these functions see
//! bodies only.
//!
//! Common rules:
//!
//! * The body is trimmed of whitespace and a UTF-8 BOM. Empty → [`ProtocolError::Empty`];
//!   starting with `<` → [`ProtocolError::Html`]; not JSON → [`ProtocolError::NotJson`].
//! * A whole-reply object with a non-blank `error` (a string, an object with `message`/`msg`,
//!   `true` or a list of texts), `{"status":"fail"|"error","message"|"msg":...}` or
//!   `{"success":false,...}` → [`ReplyError::Rejected`] through [`ErrorKind::from_upstream`].
//!   `"error": null`, `false`, `0` or `""` beside a success is not an error.
//! * Ids are JSON integers >= 1 or strings valid as [`UpstreamId`]; `0`, `"0"`, negative
//!   numbers, floats (`1.5`), `null`, `""` and the texts `null`/`undefined`/`false`/`true`/`none`/
//!   `nan` are not ids.
//! * Money arrives as a string or a JSON number. A JSON number is converted from the text
//!   serde_json keeps for it: integers exactly; non-integers are held as `f64` (serde_json
//!   without `arbitrary_precision`), whose shortest round-trip text is the decimal the panel
//!   wrote for every value with up to 15 significant digits, so `0.27819` stays exactly
//!   `0.27819`. Scientific notation (`1e-7`) is accepted. Nothing goes through `f64` arithmetic.
//! * Whole numbers (`start_count`, `remains`, `min`, ...) are numbers or strings, also `"12.0"`;
//!   `"Unknown"`, `""`, `null` or anything unparseable are `None`.

use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ErrorKind, OrderStatus, RefillStatus, ServiceType, StatusCodes};

/// An id as the upstream gave it (order, refill or service id): unique per provider only.
/// Numbers and strings are both accepted and kept as their decimal text; the id must be
/// 1..=64 characters of ASCII letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UpstreamId(String);

impl UpstreamId {
    /// Validates and wraps; `None` for anything that is not a plausible id. Surrounding
    /// whitespace is trimmed.
    pub fn new(id: &str) -> Option<UpstreamId> {
        let id = id.trim();
        let valid = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| UpstreamId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UpstreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a reply body is not the expected success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The upstream said no, definitively (a whole-reply `error`, or a `fail`/`success:false`
    /// shape).
    #[error("rejected: {0}")]
    Rejected(ErrorKind),
    /// The body is complete but not understood.
    #[error("protocol: {0}")]
    Protocol(ProtocolError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("empty body")]
    Empty,
    /// Starts with `<` after whitespace (a Cloudflare challenge, a login page, a PHP error).
    #[error("HTML instead of JSON")]
    Html,
    /// Not JSON at all; carries at most the first 80 characters, for logs.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not the shape this action replies with; says what was expected.
    #[error("unexpected reply shape: expected {0}")]
    Shape(&'static str),
}

/// One entry of an upstream `services` reply. Optional fields missing upstream (`dripfeed`,
/// `desc`, `refill`, `cancel`) default to `false`/`None`; booleans also arrive as `1`/`0` or
/// `"1"`/`"0"`. `rate` is exact whether sent as `"0.90"` or `0.9`; a rate that does not parse, a
/// negative rate, or a missing id makes the entry invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamService {
    pub service: UpstreamId,
    pub name: String,
    pub service_type: ServiceType,
    pub category: String,
    pub rate: Decimal,
    pub min: u64,
    pub max: u64,
    pub refill: bool,
    pub cancel: bool,
    pub dripfeed: bool,
    pub desc: Option<String>,
}

/// A `services` reply: the entries understood, and for each entry that was not, its index and
/// why (a missing id or an unparseable rate, say) so the caller can log and skip it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicesReply {
    pub services: Vec<UpstreamService>,
    pub invalid: Vec<(usize, String)>,
}

/// One order's upstream status. `remains` is `None` when the upstream says `"Unknown"` or
/// nothing; it may be negative (over-delivery). `charge` is in the provider's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub status: OrderStatus,
    pub charge: Option<Decimal>,
    pub start_count: Option<i64>,
    pub remains: Option<i64>,
    pub currency: Option<String>,
    /// Drip-feed parents: runs done.
    pub runs: Option<u32>,
    /// Drip-feed parents and subscriptions: child order ids.
    pub orders: Vec<UpstreamId>,
    /// Subscriptions.
    pub posts: Option<u64>,
    /// Subscriptions, as sent.
    pub expiry: Option<String>,
}

/// A provider balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamBalance {
    pub balance: Decimal,
    pub currency: Option<String>,
}

/// Per-item results of a batch call, keyed by the id the item is about.
pub type Batch<T> = Vec<(UpstreamId, Result<T, ErrorKind>)>;

/// `[{...}, ...]` of services. A whole-reply `{"error": ...}` is `Rejected`.
///
/// An entry also needs `min` and `max` (whole numbers, `min <= max`) to be valid; a missing
/// `type` is `Default`, a missing `name` or `category` is empty, `description` is read when
/// `desc` is absent.
pub fn parse_services(body: &[u8]) -> Result<ServicesReply, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let Value::Array(items) = value else {
        return Err(shape("an array of services"));
    };
    let mut reply = ServicesReply::default();
    for (index, item) in items.iter().enumerate() {
        match service_entry(item) {
            Ok(service) => reply.services.push(service),
            Err(why) => reply.invalid.push((index, why.to_owned())),
        }
    }
    Ok(reply)
}

/// `{"order": 23501}`, `{"order": "23501"}`, `{"order_id": ...}`, also with extra keys.
/// No id and no error → `Protocol(Shape)`: never a made-up id. An id *and* an error in one reply
/// is ambiguous (the order may exist) and also `Protocol(Shape)`, so the caller treats the order
/// as unconfirmed rather than refused.
pub fn parse_add(body: &[u8]) -> Result<UpstreamId, ReplyError> {
    let value = decode(body)?;
    let rejection = rejection(&value);
    let id = value
        .as_object()
        .and_then(|obj| first_id(obj, &["order", "order_id"]));
    match (rejection, id) {
        (None, Some(id)) => Ok(id),
        (Some(kind), None) => Err(ReplyError::Rejected(kind)),
        (Some(_), Some(_)) => Err(shape("either an order id or an error, not both")),
        (None, None) => Err(shape("an object with an order id")),
    }
}

/// One order's status object.
pub fn parse_status(body: &[u8], codes: &StatusCodes) -> Result<UpstreamStatus, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let Value::Object(obj) = &value else {
        return Err(shape("a status object"));
    };
    status_object(obj, codes).ok_or_else(|| shape("a status object with a status"))
}

/// Object keyed by id strings → per-item status or error (`{"error": ...}` items).
/// Also accepts an array of objects each carrying `order`/`id`. Items whose key is not a valid
/// id are skipped, and so are items that are neither an error nor a status object (the caller
/// sees no result for that id, never a made-up one). A single status object (with a top-level
/// `status` text) is `Protocol(Shape)`.
pub fn parse_status_many(
    body: &[u8],
    codes: &StatusCodes,
) -> Result<Batch<UpstreamStatus>, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let item = |obj: &Map<String, Value>| -> Option<Result<UpstreamStatus, ErrorKind>> {
        match item_error(obj) {
            Some(kind) => Some(Err(kind)),
            None => status_object(obj, codes).map(Ok),
        }
    };
    let mut batch = Vec::new();
    match &value {
        Value::Object(obj) => {
            if obj
                .get("status")
                .is_some_and(|s| s.is_string() || s.is_number())
            {
                return Err(shape("an object keyed by order id"));
            }
            for (key, entry) in obj {
                let (Some(id), Value::Object(entry)) = (string_id(key), entry) else {
                    continue;
                };
                if let Some(result) = item(entry) {
                    batch.push((id, result));
                }
            }
        }
        Value::Array(items) => {
            for entry in items {
                let Value::Object(entry) = entry else {
                    continue;
                };
                let Some(id) = first_id(entry, &["order", "id", "order_id"]) else {
                    continue;
                };
                if let Some(result) = item(entry) {
                    batch.push((id, result));
                }
            }
        }
        _ => return Err(shape("an object keyed by order id")),
    }
    Ok(batch)
}

/// `{"refill": "1"}` or `{"refill": 1}` (some add `success`) → the upstream refill id.
/// `{"refill": {"error": ...}}` is `Rejected`; `refill_id` is read when `refill` is absent.
pub fn parse_refill(body: &[u8]) -> Result<UpstreamId, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let Value::Object(obj) = &value else {
        return Err(shape("an object with a refill id"));
    };
    if let Some(Value::Object(nested)) = obj.get("refill")
        && let Some(kind) = item_error(nested)
    {
        return Err(ReplyError::Rejected(kind));
    }
    first_id(obj, &["refill", "refill_id"]).ok_or_else(|| shape("an object with a refill id"))
}

/// `[{"order":1,"refill":1},{"order":3,"refill":{"error":"Incorrect order ID"}}]`, keyed by order.
///
/// A `refill` that is a text but not an id is that item's error; an item with an `error` key
/// instead of `refill` is an error too; items with no usable order id or refill are skipped.
pub fn parse_refill_many(body: &[u8]) -> Result<Batch<UpstreamId>, ReplyError> {
    batch_array(
        body,
        "an array of refill results",
        &["order", "order_id"],
        |item| match item.get("refill") {
            Some(Value::Object(nested)) => Some(Err(
                item_error(nested).unwrap_or_else(|| ErrorKind::from_upstream(""))
            )),
            Some(v @ Value::Number(_)) => id_value(v).map(Ok),
            Some(Value::String(text)) => match string_id(text) {
                Some(id) => Some(Ok(id)),
                None if text.trim().is_empty() || text.trim() == "0" => None,
                None => Some(Err(ErrorKind::from_upstream(text))),
            },
            _ => item_error(item).map(Err),
        },
    )
}

/// `{"status": "Completed"}`
pub fn parse_refill_status(body: &[u8]) -> Result<RefillStatus, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let Value::Object(obj) = &value else {
        return Err(shape("an object with a refill status"));
    };
    match obj.get("status") {
        Some(Value::Object(nested)) => Err(ReplyError::Rejected(
            item_error(nested).unwrap_or_else(|| ErrorKind::from_upstream("")),
        )),
        Some(v) => scalar_text(v)
            .map(|text| RefillStatus::normalize(&text))
            .ok_or_else(|| shape("an object with a refill status")),
        None => Err(shape("an object with a refill status")),
    }
}

/// `[{"refill":1,"status":"Completed"},{"refill":3,"status":{"error":"Refill not found"}}]`,
/// keyed by refill id.
pub fn parse_refill_status_many(body: &[u8]) -> Result<Batch<RefillStatus>, ReplyError> {
    batch_array(
        body,
        "an array of refill statuses",
        &["refill", "id", "refill_id"],
        |item| match item.get("status") {
            Some(Value::Object(nested)) => Some(Err(
                item_error(nested).unwrap_or_else(|| ErrorKind::from_upstream(""))
            )),
            Some(v) => match item_error(item) {
                Some(kind) => Some(Err(kind)),
                None => scalar_text(v).map(|text| Ok(RefillStatus::normalize(&text))),
            },
            None => item_error(item).map(Err),
        },
    )
}

/// `[{"order":2,"cancel":1},{"order":9,"cancel":{"error":"Incorrect order ID"}}]`, keyed by order.
/// `cancel` values `1`, `"1"`, `true` and a success text all mean "requested".
///
/// `0`, `"0"` and `false` are that item's `CancelNotAllowed`; a text that
/// [`ErrorKind::from_upstream`] recognises as an error is that error.
pub fn parse_cancel_many(body: &[u8]) -> Result<Batch<()>, ReplyError> {
    batch_array(
        body,
        "an array of cancel results",
        &["order", "order_id"],
        |item| match item.get("cancel") {
            Some(v) => cancel_value(v),
            None => item_error(item).map(Err),
        },
    )
}

/// The single-`order` cancel variant: `{"cancel":1}`, `{"success":"..."}`, `{"ok":"true"}`.
///
/// Also accepted: the batch shape with exactly one item. `{"cancel":0}` is
/// `Rejected(CancelNotAllowed)`, `{"cancel":{"error":...}}` is `Rejected` with that error.
pub fn parse_cancel(body: &[u8]) -> Result<(), ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let found = match &value {
        Value::Array(items) => match items.as_slice() {
            [Value::Object(item)] => match item.get("cancel") {
                Some(v) => cancel_value(v),
                None => item_error(item).map(Err),
            },
            _ => None,
        },
        Value::Object(obj) => {
            if let Some(v) = obj.get("cancel") {
                cancel_value(v)
            } else if obj.get("success").is_some_and(is_truthy)
                || obj.get("ok").is_some_and(is_truthy)
            {
                Some(Ok(()))
            } else {
                None
            }
        }
        _ => None,
    };
    match found {
        Some(Ok(())) => Ok(()),
        Some(Err(kind)) => Err(ReplyError::Rejected(kind)),
        None => Err(shape("a cancel result")),
    }
}

/// `{"balance": "100.84292", "currency": "USD"}`, balance as string or number.
pub fn parse_balance(body: &[u8]) -> Result<UpstreamBalance, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let Value::Object(obj) = &value else {
        return Err(shape("a balance object"));
    };
    let balance = obj
        .get("balance")
        .and_then(money)
        .ok_or_else(|| shape("a balance object with a balance"))?;
    Ok(UpstreamBalance {
        balance,
        currency: obj.get("currency").and_then(text_field),
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Most characters of a non-JSON body kept for the log.
const PREVIEW_CHARS: usize = 80;

fn shape(expected: &'static str) -> ReplyError {
    ReplyError::Protocol(ProtocolError::Shape(expected))
}

/// The body without surrounding whitespace and BOMs.
fn trim_body(mut body: &[u8]) -> &[u8] {
    loop {
        let trimmed = body.trim_ascii();
        let trimmed = trimmed.strip_prefix(BOM).unwrap_or(trimmed);
        if trimmed.len() == body.len() {
            return trimmed;
        }
        body = trimmed;
    }
}

/// The checks every reply shares, then the JSON value.
fn decode(body: &[u8]) -> Result<Value, ReplyError> {
    let body = trim_body(body);
    match body.first() {
        None => return Err(ReplyError::Protocol(ProtocolError::Empty)),
        Some(b'<') => return Err(ReplyError::Protocol(ProtocolError::Html)),
        Some(_) => {}
    }
    serde_json::from_slice(body).map_err(|_| {
        // 4 bytes per char at most: this prefix holds the first PREVIEW_CHARS characters.
        let prefix = body.get(..PREVIEW_CHARS * 4).unwrap_or(body);
        let preview = String::from_utf8_lossy(prefix)
            .chars()
            .take(PREVIEW_CHARS)
            .collect();
        ReplyError::Protocol(ProtocolError::NotJson(preview))
    })
}

fn reject(value: &Value) -> Result<(), ReplyError> {
    match rejection(value) {
        Some(kind) => Err(ReplyError::Rejected(kind)),
        None => Ok(()),
    }
}

/// A whole-reply refusal, if `value` is one.
fn rejection(value: &Value) -> Option<ErrorKind> {
    let Value::Object(obj) = value else {
        return None;
    };
    if let Some(kind) = item_error(obj) {
        return Some(kind);
    }
    if let Some(Value::String(status)) = obj.get("status") {
        let status = status.trim();
        if status.eq_ignore_ascii_case("fail")
            || status.eq_ignore_ascii_case("failed")
            || status.eq_ignore_ascii_case("error")
        {
            if let Some(message) = ["message", "msg"].iter().find_map(|k| obj.get(*k)) {
                return Some(ErrorKind::from_upstream(
                    &scalar_text(message).unwrap_or_default(),
                ));
            }
        }
    }
    if obj.get("success").is_some_and(is_false) {
        let message = ["msg", "message", "error"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(scalar_text))
            .unwrap_or_default();
        return Some(ErrorKind::from_upstream(&message));
    }
    None
}

/// The error an object carries under `error`, if any: a non-blank text, an object with a
/// message, `true`/non-zero (the message then under `message`/`msg`), or a list of texts.
fn item_error(obj: &Map<String, Value>) -> Option<ErrorKind> {
    let message_of = |o: &Map<String, Value>| {
        ["message", "msg", "error", "text", "description"]
            .iter()
            .find_map(|k| match o.get(*k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    match obj.get("error")? {
        Value::String(text) if !text.trim().is_empty() => Some(ErrorKind::from_upstream(text)),
        Value::Object(nested) => Some(ErrorKind::from_upstream(&message_of(nested))),
        Value::Bool(true) => Some(ErrorKind::from_upstream(&message_of(obj))),
        Value::Number(n) if n.as_u64() != Some(0) => {
            Some(ErrorKind::from_upstream(&message_of(obj)))
        }
        Value::Array(items) => {
            let first = items.iter().find_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.as_str()),
                _ => None,
            })?;
            Some(ErrorKind::from_upstream(first))
        }
        _ => None,
    }
}

/// A batch reply that is an array of objects, each keyed by one of `id_keys`; `item` gives
/// that item's result, or `None` to skip it.
fn batch_array<T>(
    body: &[u8],
    expected: &'static str,
    id_keys: &[&str],
    item: impl Fn(&Map<String, Value>) -> Option<Result<T, ErrorKind>>,
) -> Result<Batch<T>, ReplyError> {
    let value = decode(body)?;
    reject(&value)?;
    let Value::Array(items) = &value else {
        return Err(shape(expected));
    };
    let mut batch = Vec::new();
    for entry in items {
        let Value::Object(entry) = entry else {
            continue;
        };
        let Some(id) = first_id(entry, id_keys) else {
            continue;
        };
        if let Some(result) = item(entry) {
            batch.push((id, result));
        }
    }
    Ok(batch)
}

fn cancel_value(value: &Value) -> Option<Result<(), ErrorKind>> {
    match value {
        Value::Object(nested) => Some(Err(
            item_error(nested).unwrap_or_else(|| ErrorKind::from_upstream(""))
        )),
        Value::Bool(true) => Some(Ok(())),
        Value::Bool(false) => Some(Err(ErrorKind::CancelNotAllowed)),
        Value::Number(_) => Some(if money(value).is_some_and(|d| d.is_zero()) {
            Err(ErrorKind::CancelNotAllowed)
        } else {
            Ok(())
        }),
        Value::String(text) => {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            if ["0", "false", "no"]
                .iter()
                .any(|f| text.eq_ignore_ascii_case(f))
            {
                return Some(Err(ErrorKind::CancelNotAllowed));
            }
            if ["1", "true", "yes", "ok"]
                .iter()
                .any(|t| text.eq_ignore_ascii_case(t))
            {
                return Some(Ok(()));
            }
            match ErrorKind::from_upstream(text) {
                ErrorKind::Other(_) => Some(Ok(())),
                kind => Some(Err(kind)),
            }
        }
        Value::Null | Value::Array(_) => None,
    }
}

/// The first valid id under one of `keys`.
fn first_id(obj: &Map<String, Value>, keys: &[&str]) -> Option<UpstreamId> {
    keys.iter().find_map(|k| obj.get(*k).and_then(id_value))
}

/// An id: a JSON integer >= 1, or a string valid as an id (see [`string_id`]).
fn id_value(value: &Value) -> Option<UpstreamId> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .filter(|id| *id >= 1)
            .and_then(|id| UpstreamId::new(&id.to_string())),
        Value::String(s) => string_id(s),
        _ => None,
    }
}

/// A string id: valid as [`UpstreamId`], not zero, not a negative number, not a placeholder
/// word.
fn string_id(text: &str) -> Option<UpstreamId> {
    let id = UpstreamId::new(text)?;
    let s = id.as_str();
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if s.bytes().all(|b| b == b'0')
        || s.strip_prefix('-').is_some_and(all_digits)
        || ["null", "none", "undefined", "false", "true", "nan"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w))
    {
        return None;
    }
    Some(id)
}

/// Strings as they are, numbers as their text, booleans as `1`/`0`; `None` otherwise.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// A non-blank text (trimmed), or a number's text.
fn text_field(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim()).filter(|t| !t.is_empty()).map(str::to_owned),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_false(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !*b,
        Value::Number(n) => n.as_u64() == Some(0),
        Value::String(s) => {
            let s = s.trim();
            s == "0" || s.eq_ignore_ascii_case("false")
        }
        _ => false,
    }
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64().is_some_and(|n| n != 0),
        Value::String(s) => {
            let s = s.trim();
            !(s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false"))
        }
        _ => false,
    }
}

/// Booleans as panels send them: `true`/`false`, `1`/`0`, `"1"`/`"0"`, `"true"`/`"false"`,
/// `"yes"`/`"no"`. Anything else is `None`.
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => {
            let s = s.trim();
            if ["1", "true", "yes"]
                .iter()
                .any(|t| s.eq_ignore_ascii_case(t))
            {
                Some(true)
            } else if ["0", "false", "no", ""]
                .iter()
                .any(|f| s.eq_ignore_ascii_case(f))
            {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Exact decimal text: optional sign, digits with at most one `.`, optional exponent.
fn decimal_text(text: &str) -> Option<Decimal> {
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (text.get(..at)?, Some(text.get(at + 1..)?)),
        None => (text, None),
    };
    let unsigned = mantissa
        .strip_prefix('-')
        .or_else(|| mantissa.strip_prefix('+'))
        .unwrap_or(mantissa);
    let digits = unsigned.bytes().filter(u8::is_ascii_digit).count();
    let dots = unsigned.bytes().filter(|b| *b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != unsigned.len() {
        return None;
    }
    let mantissa = mantissa.strip_prefix('+').unwrap_or(mantissa);
    match exponent {
        None => Decimal::from_str(mantissa).ok(),
        Some(exp) => {
            let exp_digits = exp
                .strip_prefix('-')
                .or_else(|| exp.strip_prefix('+'))
                .unwrap_or(exp);
            if exp_digits.is_empty()
                || exp_digits.len() > 3
                || !exp_digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let exp = exp.strip_prefix('+').unwrap_or(exp);
            Decimal::from_scientific(&format!("{mantissa}e{exp}")).ok()
        }
    }
}

/// Money: a decimal string or a JSON number (see the module docs). Blank, `"Unknown"`, `null`
/// or unparseable → `None`.
fn money(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => decimal_text(s),
        Value::Number(n) => decimal_text(&n.to_string()),
        _ => None,
    }
}

/// A whole number from a number or a string (`12`, `"12"`, `"-5"`, `"12.0"`).
fn whole(value: &Value) -> Option<Decimal> {
    money(value).filter(|d| d.fract().is_zero())
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| whole(value)?.to_i64()),
        _ => whole(value)?.to_i64(),
    }
}

fn uint(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| whole(value)?.to_u64()),
        _ => whole(value)?.to_u64(),
    }
}

fn service_entry(value: &Value) -> Result<UpstreamService, &'static str> {
    let Value::Object(obj) = value else {
        return Err("not an object");
    };
    let service = obj
        .get("service")
        .and_then(id_value)
        .ok_or("missing or invalid service id")?;
    let rate = obj
        .get("rate")
        .and_then(money)
        .ok_or("missing or unparseable rate")?;
    if rate.is_sign_negative() && !rate.is_zero() {
        return Err("negative rate");
    }
    let min = obj
        .get("min")
        .and_then(uint)
        .ok_or("missing or invalid min")?;
    let max = obj
        .get("max")
        .and_then(uint)
        .ok_or("missing or invalid max")?;
    if min > max {
        return Err("min greater than max");
    }
    let text = |key: &str| match obj.get(key) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let service_type = match obj.get("type") {
        Some(Value::String(t)) if !t.trim().is_empty() => ServiceType::parse(t),
        _ => ServiceType::Default,
    };
    let flag_of = |key: &str| obj.get(key).and_then(flag).unwrap_or(false);
    let desc = ["desc", "description"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(text_field));
    Ok(UpstreamService {
        service,
        name: text("name"),
        service_type,
        category: text("category"),
        rate,
        min,
        max,
        refill: flag_of("refill"),
        cancel: flag_of("cancel"),
        dripfeed: flag_of("dripfeed"),
        desc,
    })
}

/// An order status object; `None` when it has no `status` text or number.
fn status_object(obj: &Map<String, Value>, codes: &StatusCodes) -> Option<UpstreamStatus> {
    let status = match obj.get("status")? {
        Value::String(s) => OrderStatus::normalize(s, codes),
        Value::Number(n) => OrderStatus::normalize(&n.to_string(), codes),
        _ => return None,
    };
    let orders = match obj.get("orders") {
        Some(Value::Array(items)) => items.iter().filter_map(id_value).collect(),
        Some(Value::String(list)) => list.split(',').filter_map(string_id).collect(),
        _ => Vec::new(),
    };
    Some(UpstreamStatus {
        status,
        charge: obj.get("charge").and_then(money),
        start_count: obj.get("start_count").and_then(int),
        remains: obj.get("remains").and_then(int),
        currency: obj.get("currency").and_then(text_field),
        runs: obj
            .get("runs")
            .and_then(uint)
            .and_then(|r| u32::try_from(r).ok()),
        orders,
        posts: obj.get("posts").and_then(uint),
        expiry: obj.get("expiry").and_then(text_field),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_texts() {
        let d = |s: &str| decimal_text(s).map(|d| d.to_string());
        assert_eq!(d(" 0.90 ").as_deref(), Some("0.90"));
        assert_eq!(d("+1.5").as_deref(), Some("1.5"));
        assert_eq!(d("-5").as_deref(), Some("-5"));
        assert_eq!(d("1e-7").as_deref(), Some("0.0000001"));
        assert_eq!(d("1.5E+3").as_deref(), Some("1500"));
        for bad in [
            "", "Unknown", "1,5", "1_000", "1.2.3", "--1", "e5", "1e", "1e1000", "1e-29", "NaN",
            "0x10",
        ] {
            assert_eq!(decimal_text(bad), None, "{bad:?}");
        }
        // Far too many digits: an error or a rounded value, never a panic.
        let _ = decimal_text(&"9".repeat(10_000));
        let _ = decimal_text(&format!("0.{}", "1".repeat(10_000)));
    }

    #[test]
    fn ids_and_bodies() {
        assert!(string_id("abc-1").is_some());
        for bad in ["0", "000", "-1", "null", "Undefined", "", "1.5"] {
            assert_eq!(string_id(bad), None, "{bad:?}");
        }
        assert_eq!(trim_body(b" \xEF\xBB\xBF \xEF\xBB\xBF{}\n"), b"{}");
        assert_eq!(trim_body(b"\xEF\xBB"), b"\xEF\xBB");
    }
}
