//! Downstream replies in the canonical typing of the panels' own API pages (the seed docs):
//! `service`/`order` JSON numbers; `rate`, `min`, `max`, `charge`, `start_count`, `remains`,
//! `balance` strings; `refill`/`cancel`/`dripfeed` booleans in `services`; a single refill id a
//! string, multi refill ids numbers; multi-status an object keyed by id strings; per-item
//! `{"error": ...}` inside batch replies.
//!
//! Every type here implements `Serialize` by hand or by derive so that `serde_json::to_string`
//! gives exactly that shape; the fixtures in `tests/fixtures` pin it.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::{ErrorKind, OrderStatus, RefillStatus, ServiceType};

/// `{"error": "<canonical text>"}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply(pub ErrorKind);

/// One entry of a `services` reply:
/// `{"service":1,"name":"Followers","type":"Default","category":"First Category","rate":"0.90",
/// "min":"50","max":"10000","refill":true,"cancel":true,"dripfeed":false}` (+ `"desc"` when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceItem {
    pub service: u64,
    pub name: String,
    pub service_type: ServiceType,
    pub category: String,
    /// Per 1000 units, or per order for Package types. Serialised with its scale as stored
    /// (`0.90` stays `"0.90"`).
    pub rate: Decimal,
    pub min: u64,
    pub max: u64,
    pub refill: bool,
    pub cancel: bool,
    pub dripfeed: bool,
    pub desc: Option<String>,
}

/// `{"order": 23501}`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AddReply {
    pub order: u64,
}

/// One order's status:
/// `{"charge":"0.27819","start_count":"3572","status":"Partial","remains":"157","currency":"USD"}`.
/// Drip-feed parents add `"runs"` (string) and `"orders"` (array of numbers); subscriptions add
/// `"posts"` (string), `"expiry"` (string) and `"orders"`. Optional fields are omitted when
/// `None` (so no `"expiry": null`). `start_count` and `remains` show `"0"` when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusItem {
    pub charge: Decimal,
    pub start_count: Option<i64>,
    pub status: OrderStatus,
    pub remains: Option<i64>,
    pub currency: String,
    pub runs: Option<u32>,
    pub orders: Option<Vec<u64>>,
    pub posts: Option<u64>,
    pub expiry: Option<String>,
}

/// `{"1": {...}, "10": {"error": "Incorrect order ID"}}`, keys in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiStatusReply(pub Vec<(u64, Result<StatusItem, ErrorKind>)>);

/// `{"refill": "1"}` (the id as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefillReply {
    pub refill: u64,
}

/// `[{"order":1,"refill":1},{"order":3,"refill":{"error":"Incorrect order ID"}}]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiRefillReply(pub Vec<(u64, Result<u64, ErrorKind>)>);

/// `{"status": "Completed"}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefillStatusReply {
    pub status: RefillStatus,
}

/// `[{"refill":1,"status":"Completed"},{"refill":3,"status":{"error":"Refill not found"}}]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiRefillStatusReply(pub Vec<(u64, Result<RefillStatus, ErrorKind>)>);

/// `{"cancel": 1}` (the single-`order` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelReply;

/// `[{"order":9,"cancel":{"error":"Incorrect order ID"}},{"order":2,"cancel":1}]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiCancelReply(pub Vec<(u64, Result<(), ErrorKind>)>);

/// `{"balance": "100.84292", "currency": "USD"}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceReply {
    pub balance: Decimal,
    pub currency: String,
}

// Serialize impls: manual, with serialize_map / serialize_seq, so the key order and typing are
// exactly the seed docs'.

use serde::ser::{SerializeMap, SerializeSeq, Serializer};

/// `{"error": "<canonical text>"}` for a borrowed kind, used inside batch replies.
#[derive(Debug, Clone, Copy)]
struct ErrorObject<'a>(&'a ErrorKind);

impl Serialize for ErrorObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("error", &self.0.to_string())?;
        map.end()
    }
}

impl Serialize for ErrorReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ErrorObject(&self.0).serialize(serializer)
    }
}

impl Serialize for ServiceItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 10 + usize::from(self.desc.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("service", &self.service)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("type", self.service_type.as_str())?;
        map.serialize_entry("category", &self.category)?;
        map.serialize_entry("rate", &self.rate.to_string())?;
        map.serialize_entry("min", &self.min.to_string())?;
        map.serialize_entry("max", &self.max.to_string())?;
        map.serialize_entry("refill", &self.refill)?;
        map.serialize_entry("cancel", &self.cancel)?;
        map.serialize_entry("dripfeed", &self.dripfeed)?;
        if let Some(desc) = &self.desc {
            map.serialize_entry("desc", desc)?;
        }
        map.end()
    }
}

impl Serialize for StatusItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 5
            + usize::from(self.runs.is_some())
            + usize::from(self.orders.is_some())
            + usize::from(self.posts.is_some())
            + usize::from(self.expiry.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("charge", &self.charge.to_string())?;
        map.serialize_entry("start_count", &self.start_count.unwrap_or(0).to_string())?;
        map.serialize_entry("status", self.status.as_str())?;
        map.serialize_entry("remains", &self.remains.unwrap_or(0).to_string())?;
        map.serialize_entry("currency", &self.currency)?;
        if let Some(runs) = self.runs {
            map.serialize_entry("runs", &runs.to_string())?;
        }
        if let Some(orders) = &self.orders {
            map.serialize_entry("orders", orders)?;
        }
        if let Some(posts) = self.posts {
            map.serialize_entry("posts", &posts.to_string())?;
        }
        if let Some(expiry) = &self.expiry {
            map.serialize_entry("expiry", expiry)?;
        }
        map.end()
    }
}

/// A per-item result: the value itself, or `{"error": ...}`.
#[derive(Debug, Clone, Copy)]
enum ItemResult<'a, T> {
    Ok(T),
    Err(&'a ErrorKind),
}

impl<'a, T> ItemResult<'a, T> {
    fn of<U>(result: &'a Result<U, ErrorKind>, f: impl FnOnce(&'a U) -> T) -> Self {
        match result {
            Ok(value) => ItemResult::Ok(f(value)),
            Err(kind) => ItemResult::Err(kind),
        }
    }
}

impl<T: Serialize> Serialize for ItemResult<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ItemResult::Ok(value) => value.serialize(serializer),
            ItemResult::Err(kind) => ErrorObject(kind).serialize(serializer),
        }
    }
}

impl Serialize for MultiStatusReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, item) in &self.0 {
            map.serialize_entry(&id.to_string(), &ItemResult::of(item, |v| v))?;
        }
        map.end()
    }
}

impl Serialize for RefillReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("refill", &self.refill.to_string())?;
        map.end()
    }
}

/// `{"<id_key>": id, "<value_key>": value | {"error": ...}}`, one item of a batch array.
#[derive(Debug, Clone, Copy)]
struct BatchItem<'a, T> {
    id_key: &'static str,
    id: u64,
    value_key: &'static str,
    value: ItemResult<'a, T>,
}

impl<T: Serialize> Serialize for BatchItem<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.id_key, &self.id)?;
        map.serialize_entry(self.value_key, &self.value)?;
        map.end()
    }
}

/// A batch array: `[{"<id_key>": id, "<value_key>": f(value) | {"error": ...}}, ...]`.
fn serialize_batch<'a, S, U, T>(
    serializer: S,
    items: &'a [(u64, Result<U, ErrorKind>)],
    id_key: &'static str,
    value_key: &'static str,
    f: impl Fn(&'a U) -> T,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: Serialize,
{
    let mut seq = serializer.serialize_seq(Some(items.len()))?;
    for (id, result) in items {
        seq.serialize_element(&BatchItem {
            id_key,
            id: *id,
            value_key,
            value: ItemResult::of(result, &f),
        })?;
    }
    seq.end()
}

impl Serialize for MultiRefillReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_batch(serializer, &self.0, "order", "refill", |id| *id)
    }
}

impl Serialize for RefillStatusReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("status", self.status.as_str())?;
        map.end()
    }
}

impl Serialize for MultiRefillStatusReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_batch(
            serializer,
            &self.0,
            "refill",
            "status",
            RefillStatus::as_str,
        )
    }
}

impl Serialize for CancelReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("cancel", &1u8)?;
        map.end()
    }
}

impl Serialize for MultiCancelReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_batch(serializer, &self.0, "order", "cancel", |()| 1u8)
    }
}

impl Serialize for BalanceReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("balance", &self.balance.to_string())?;
        map.serialize_entry("currency", &self.currency)?;
        map.end()
    }
}
