//! Order and refill status vocabularies.
//!
//! Upstreams spell statuses many ways (`Cancelled`, `canceled`, `In Progress`, `in_progress`,
//! numeric codes). Normalisation is case-insensitive, collapses `_`, `-` and spaces, maps
//! `cancel*` to [`OrderStatus::Canceled`] and `refund*` to [`OrderStatus::Refunded`], reads digits
//! through a per-provider [`StatusCodes`] table, and puts anything else into an explicit
//! `Unknown` bucket: never silently into `Pending`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The status of an order, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    Pending,
    InProgress,
    Processing,
    Completed,
    Partial,
    Canceled,
    Refunded,
    /// Subscriptions and drip-feed parents.
    Active,
    /// Subscriptions.
    Paused,
    /// Subscriptions.
    Expired,
    /// A spelling no table knows, kept verbatim (trimmed) so it can be logged and alerted on.
    Unknown(String),
}

impl OrderStatus {
    /// The canonical spelling shown downstream: `Pending`, `In progress`, `Processing`,
    /// `Completed`, `Partial`, `Canceled`, `Refunded`, `Active`, `Paused`, `Expired`.
    /// `Unknown(_)` shows as `In progress` downstream: the order is still being looked after,
    /// which is the truth, and clients know no other word.
    pub fn as_str(&self) -> &str {
        match self {
            OrderStatus::Pending => "Pending",
            OrderStatus::InProgress | OrderStatus::Unknown(_) => "In progress",
            OrderStatus::Processing => "Processing",
            OrderStatus::Completed => "Completed",
            OrderStatus::Partial => "Partial",
            OrderStatus::Canceled => "Canceled",
            OrderStatus::Refunded => "Refunded",
            OrderStatus::Active => "Active",
            OrderStatus::Paused => "Paused",
            OrderStatus::Expired => "Expired",
        }
    }

    /// Completed, Partial, Canceled, Refunded and Expired: nothing will change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OrderStatus::Completed
                | OrderStatus::Partial
                | OrderStatus::Canceled
                | OrderStatus::Refunded
                | OrderStatus::Expired
        )
    }

    /// Normalises an upstream spelling; digits go through `codes`.
    ///
    /// A string of digits (optionally signed, or a JSON number's text such as `4` or `4.0`) is
    /// looked up in `codes`; a code the table lacks is `Unknown`.
    pub fn normalize(raw: &str, codes: &StatusCodes) -> OrderStatus {
        let trimmed = raw.trim();
        if let Some(code) = status_code(trimmed) {
            return codes
                .0
                .get(&code)
                .cloned()
                .unwrap_or_else(|| OrderStatus::Unknown(trimmed.to_owned()));
        }
        let key = collapse(trimmed);
        match key.as_str() {
            "pending" => OrderStatus::Pending,
            "inprogress" => OrderStatus::InProgress,
            "processing" => OrderStatus::Processing,
            "completed" | "complete" => OrderStatus::Completed,
            "partial" => OrderStatus::Partial,
            "active" => OrderStatus::Active,
            "paused" => OrderStatus::Paused,
            "expired" => OrderStatus::Expired,
            k if is_canceled(k) => OrderStatus::Canceled,
            k if k.starts_with("refund") => OrderStatus::Refunded,
            _ => OrderStatus::Unknown(trimmed.to_owned()),
        }
    }
}

/// A provider's numeric status codes. The default table is the common one
/// (0 Pending, 1 In progress, 2 Completed, 3 Partial, 4 Canceled, 5 Processing, 6 Refunded);
/// a provider config can replace it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCodes(pub BTreeMap<i64, OrderStatus>);

impl Default for StatusCodes {
    fn default() -> Self {
        StatusCodes(BTreeMap::from([
            (0, OrderStatus::Pending),
            (1, OrderStatus::InProgress),
            (2, OrderStatus::Completed),
            (3, OrderStatus::Partial),
            (4, OrderStatus::Canceled),
            (5, OrderStatus::Processing),
            (6, OrderStatus::Refunded),
        ]))
    }
}

/// The status of a refill, normalised the same way as order statuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefillStatus {
    Pending,
    InProgress,
    Completed,
    Rejected,
    Canceled,
    Unknown(String),
}

impl RefillStatus {
    /// `Pending`, `In progress`, `Completed`, `Rejected`, `Canceled`; `Unknown(_)` shows as
    /// `In progress`.
    pub fn as_str(&self) -> &str {
        match self {
            RefillStatus::Pending => "Pending",
            RefillStatus::InProgress | RefillStatus::Unknown(_) => "In progress",
            RefillStatus::Completed => "Completed",
            RefillStatus::Rejected => "Rejected",
            RefillStatus::Canceled => "Canceled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RefillStatus::Completed | RefillStatus::Rejected | RefillStatus::Canceled
        )
    }

    /// Case-insensitive, `_`/`-`/whitespace collapsed: `pending`, `in progress`, `processing`
    /// (→ `InProgress`), `completed`, `rejected`, `cancel*`; anything else is `Unknown` (trimmed).
    pub fn normalize(raw: &str) -> RefillStatus {
        let trimmed = raw.trim();
        let key = collapse(trimmed);
        match key.as_str() {
            "pending" => RefillStatus::Pending,
            "inprogress" | "processing" => RefillStatus::InProgress,
            "completed" | "complete" => RefillStatus::Completed,
            "rejected" => RefillStatus::Rejected,
            k if is_canceled(k) => RefillStatus::Canceled,
            _ => RefillStatus::Unknown(trimmed.to_owned()),
        }
    }
}

/// Lower-case with `_`, `-` and whitespace removed: `In_Progress` → `inprogress`.
fn collapse(raw: &str) -> String {
    raw.chars()
        .filter(|c| !(c.is_whitespace() || *c == '_' || *c == '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `cancel`, `canceled`, `cancelled`, and the `canelled` typo seen in the wild.
fn is_canceled(key: &str) -> bool {
    key.starts_with("cancel") || key == "canelled"
}

/// A numeric status code: optional `-`, digits, optionally `.` and zeros (`4`, `4.0`).
fn status_code(raw: &str) -> Option<i64> {
    let (int_part, frac) = match raw.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (raw, None),
    };
    let digits = int_part.strip_prefix('-').unwrap_or(int_part);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(frac) = frac
        && (frac.is_empty() || !frac.bytes().all(|b| b == b'0'))
    {
        return None;
    }
    int_part.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_collapsing() {
        assert_eq!(status_code("4"), Some(4));
        assert_eq!(status_code("-1"), Some(-1));
        assert_eq!(status_code("4.00"), Some(4));
        for bad in ["", "-", "4.", "4.5", "+4", "4a", "99999999999999999999"] {
            assert_eq!(status_code(bad), None, "{bad:?}");
        }
        assert_eq!(collapse(" In_Pro-gress \t"), "inprogress");
        let codes = StatusCodes::default();
        assert_eq!(OrderStatus::normalize("6", &codes), OrderStatus::Refunded);
        assert_eq!(
            OrderStatus::normalize(" -1 ", &codes),
            OrderStatus::Unknown("-1".into())
        );
        assert_eq!(
            RefillStatus::normalize("4"),
            RefillStatus::Unknown("4".into())
        );
        assert!(OrderStatus::Expired.is_terminal() && !OrderStatus::Active.is_terminal());
    }
}
