//! Error kinds and their canonical texts.
//!
//! Clients string-match these texts, so they are part of the protocol: change none of them.
//! Upstream panels also leak Perfect Panel's raw message keys (`neworder.error.not_enough_funds`)
//! and SmartPanel's own wordings; [`ErrorKind::from_upstream`] maps all of them to one kind.

use std::fmt;

/// Every error the gateway can put in a `{"error": ...}` reply, downstream or per item.
///
/// `Display` gives the canonical text, which is never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `Invalid API key`
    InvalidKey,
    /// `Incorrect request` (unknown or missing action, unparseable body)
    IncorrectRequest,
    /// `Incorrect service ID`
    IncorrectServiceId,
    /// `Quantity less than minimal {min}`
    QuantityBelowMin(u64),
    /// `Quantity more than maximal {max}`
    QuantityAboveMax(u64),
    /// `Incorrect quantity` (present but not a non-negative whole number)
    IncorrectQuantity,
    /// `Not enough funds on balance`
    NotEnoughFunds,
    /// `Incorrect order ID`
    IncorrectOrderId,
    /// `Refill not found`
    RefillNotFound,
    /// `Incorrect link`
    IncorrectLink,
    /// `You have active order with this link. Please wait until order being completed.`
    LinkDuplicate,
    /// `Incorrect {field}`: a type-specific field is missing or malformed
    /// (`comments`, `usernames`, `runs`, `interval`, `expiry`, ...).
    IncorrectField(&'static str),
    /// `Too many IDs: at most 100 per request`
    TooManyIds,
    /// `Drip-feed is disabled for this service`
    DripFeedDisabled,
    /// `Refill is disabled for this service`
    RefillDisabled,
    /// `Cancel is disabled for this service`
    CancelDisabled,
    /// `Order is not eligible for refill`
    RefillNotAllowed,
    /// `Order can not be canceled`
    CancelNotAllowed,
    /// `Your account is suspended`
    AccountSuspended,
    /// `Too many requests, please slow down`
    RateLimited,
    /// `Service temporarily unavailable, please try again later` (the gateway's own trouble;
    /// details go to the log, never to the client)
    Unavailable,
    /// Any other text an upstream sent, kept verbatim (trimmed, never empty).
    Other(String),
}

impl ErrorKind {
    /// Maps an upstream error text, English or a raw Perfect Panel key, to a kind.
    ///
    /// Matching is case-insensitive and ignores surrounding whitespace and a trailing full stop.
    /// Unknown texts become [`ErrorKind::Other`]; an empty text becomes `Other("Unknown error")`.
    pub fn from_upstream(text: &str) -> ErrorKind {
        let trimmed = text.trim();
        let norm = normalize_text(trimmed);
        if norm.is_empty() {
            return ErrorKind::Other("Unknown error".to_owned());
        }
        if let Some(kind) = from_raw_key(&norm) {
            return kind;
        }
        if let Some(kind) = from_english(&norm) {
            return kind;
        }
        ErrorKind::Other(trimmed.to_owned())
    }

    /// True for kinds that say the upstream refused the order itself, so the same order may be
    /// tried at another provider (a bad key, lack of funds at the provider, a disabled service).
    pub fn is_provider_side(&self) -> bool {
        matches!(
            self,
            ErrorKind::InvalidKey
                | ErrorKind::NotEnoughFunds
                | ErrorKind::IncorrectServiceId
                | ErrorKind::RateLimited
                | ErrorKind::Unavailable
                | ErrorKind::AccountSuspended
                | ErrorKind::DripFeedDisabled
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::InvalidKey => f.write_str("Invalid API key"),
            ErrorKind::IncorrectRequest => f.write_str("Incorrect request"),
            ErrorKind::IncorrectServiceId => f.write_str("Incorrect service ID"),
            ErrorKind::QuantityBelowMin(min) => write!(f, "Quantity less than minimal {min}"),
            ErrorKind::QuantityAboveMax(max) => write!(f, "Quantity more than maximal {max}"),
            ErrorKind::IncorrectQuantity => f.write_str("Incorrect quantity"),
            ErrorKind::NotEnoughFunds => f.write_str("Not enough funds on balance"),
            ErrorKind::IncorrectOrderId => f.write_str("Incorrect order ID"),
            ErrorKind::RefillNotFound => f.write_str("Refill not found"),
            ErrorKind::IncorrectLink => f.write_str("Incorrect link"),
            ErrorKind::LinkDuplicate => f.write_str(
                "You have active order with this link. Please wait until order being completed.",
            ),
            ErrorKind::IncorrectField(field) => write!(f, "Incorrect {field}"),
            ErrorKind::TooManyIds => f.write_str("Too many IDs: at most 100 per request"),
            ErrorKind::DripFeedDisabled => f.write_str("Drip-feed is disabled for this service"),
            ErrorKind::RefillDisabled => f.write_str("Refill is disabled for this service"),
            ErrorKind::CancelDisabled => f.write_str("Cancel is disabled for this service"),
            ErrorKind::RefillNotAllowed => f.write_str("Order is not eligible for refill"),
            ErrorKind::CancelNotAllowed => f.write_str("Order can not be canceled"),
            ErrorKind::AccountSuspended => f.write_str("Your account is suspended"),
            ErrorKind::RateLimited => f.write_str("Too many requests, please slow down"),
            ErrorKind::Unavailable => {
                f.write_str("Service temporarily unavailable, please try again later")
            }
            ErrorKind::Other(text) => f.write_str(text),
        }
    }
}

/// Lower-cases, collapses runs of whitespace into one space and drops trailing full stops.
fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    while out.ends_with('.') || out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The first run of digits (thousands commas allowed inside) in `text`, as a number; 0 when there
/// is none or it does not fit.
fn first_number(text: &str) -> u64 {
    let Some(start) = text.find(|c: char| c.is_ascii_digit()) else {
        return 0;
    };
    let digits: String = text
        .get(start..)
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// Field names `Incorrect {field}` may carry; anything else stays `Other`.
const FIELDS: [&str; 23] = [
    "comments",
    "usernames",
    "hashtags",
    "hashtag",
    "username",
    "media",
    "answer_number",
    "groups",
    "keywords",
    "min",
    "max",
    "delay",
    "posts",
    "old_posts",
    "expiry",
    "country",
    "device",
    "type_of_traffic",
    "google_keyword",
    "referring_url",
    "runs",
    "interval",
    "idempotency_key",
];

/// Perfect Panel's untranslated message keys (`neworder.error.not_enough_funds`), possibly
/// followed by a number (`neworder.error.min_quantity 100`).
fn from_raw_key(norm: &str) -> Option<ErrorKind> {
    let key_end = norm
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(norm.len());
    let key = norm.get(..key_end)?;
    if !key.contains('.') || !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let rest = norm.get(key_end..).unwrap_or_default();
    let kind = match key {
        "neworder.error.not_enough_funds" | "error.not_enough_funds" => ErrorKind::NotEnoughFunds,
        "neworder.error.link_duplicate" | "neworder.error.active_order" => ErrorKind::LinkDuplicate,
        "neworder.error.link" | "neworder.error.incorrect_link" | "error.incorrect_link" => {
            ErrorKind::IncorrectLink
        }
        "neworder.error.min_quantity" => ErrorKind::QuantityBelowMin(first_number(rest)),
        "neworder.error.max_quantity" => ErrorKind::QuantityAboveMax(first_number(rest)),
        "neworder.error.quantity" | "error.incorrect_quantity" => ErrorKind::IncorrectQuantity,
        "error.incorrect_service_id"
        | "neworder.error.service"
        | "neworder.error.service_id"
        | "neworder.error.incorrect_service_id" => ErrorKind::IncorrectServiceId,
        "error.incorrect_key" | "error.invalid_key" | "error.key" => ErrorKind::InvalidKey,
        "error.incorrect_request" | "error.invalid_request" | "error.incorrect_action" => {
            ErrorKind::IncorrectRequest
        }
        "error.incorrect_order_id" | "error.order_id" | "error.incorrect_order" => {
            ErrorKind::IncorrectOrderId
        }
        "error.refill_not_found" | "error.incorrect_refill_id" => ErrorKind::RefillNotFound,
        "error.too_many_requests" | "error.rate_limit" => ErrorKind::RateLimited,
        "neworder.error.dripfeed" | "neworder.error.drip_feed" => ErrorKind::DripFeedDisabled,
        _ => return None,
    };
    Some(kind)
}

/// English texts (the gateway's own canonical ones included, so `Display` round-trips) and
/// SmartPanel wordings. `norm` is lower-case, whitespace-collapsed, without a trailing `.`.
fn from_english(norm: &str) -> Option<ErrorKind> {
    let kind = match norm {
        "invalid api key"
        | "incorrect api key"
        | "invalid key"
        | "incorrect key"
        | "wrong api key"
        | "api key is invalid"
        | "api is disable for this user or user not found! contact the support"
        | "api is disabled for this user or user not found! contact the support" => {
            ErrorKind::InvalidKey
        }
        "incorrect request"
        | "invalid request"
        | "invalid action"
        | "incorrect action"
        | "this action is invalid"
        | "there are missing required parameters. please check your api manual" => {
            ErrorKind::IncorrectRequest
        }
        "incorrect service id"
        | "invalid service id"
        | "incorrect service"
        | "invalid service"
        | "service id does not exists"
        | "service id does not exist"
        | "service not found" => ErrorKind::IncorrectServiceId,
        "incorrect quantity" | "invalid quantity" => ErrorKind::IncorrectQuantity,
        "not enough funds on balance"
        | "not enough funds"
        | "insufficient funds"
        | "insufficient balance"
        | "not enough balance" => ErrorKind::NotEnoughFunds,
        "incorrect order id" | "invalid order id" | "order not found" => {
            ErrorKind::IncorrectOrderId
        }
        "refill not found" => ErrorKind::RefillNotFound,
        "incorrect link" | "bad link" | "invalid link" => ErrorKind::IncorrectLink,
        "too many ids: at most 100 per request" => ErrorKind::TooManyIds,
        "drip-feed is disabled for this service" => ErrorKind::DripFeedDisabled,
        "refill is disabled for this service" => ErrorKind::RefillDisabled,
        "cancel is disabled for this service" => ErrorKind::CancelDisabled,
        "order is not eligible for refill" | "order not eligible for refill" => {
            ErrorKind::RefillNotAllowed
        }
        "order can not be canceled"
        | "order cannot be canceled"
        | "order cannot be cancelled"
        | "order can not be cancelled" => ErrorKind::CancelNotAllowed,
        "your account is suspended" | "account suspended" | "your account is banned" => {
            ErrorKind::AccountSuspended
        }
        "service temporarily unavailable, please try again later" => ErrorKind::Unavailable,
        _ => {
            if let Some(rest) = norm
                .strip_prefix("quantity less than minimal")
                .or_else(|| norm.strip_prefix("quantity less than minimum"))
            {
                ErrorKind::QuantityBelowMin(first_number(rest))
            } else if let Some(rest) = norm
                .strip_prefix("quantity more than maximal")
                .or_else(|| norm.strip_prefix("quantity more than maximum"))
            {
                ErrorKind::QuantityAboveMax(first_number(rest))
            } else if norm.starts_with("you have active order with this link") {
                ErrorKind::LinkDuplicate
            } else if norm.starts_with("too many requests") || norm.contains("rate limit") {
                ErrorKind::RateLimited
            } else if let Some(field) = norm
                .strip_prefix("incorrect ")
                .and_then(|f| FIELDS.iter().copied().find(|known| *known == f))
            {
                ErrorKind::IncorrectField(field)
            } else {
                return None;
            }
        }
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(normalize_text("  Bad \t LINK.. "), "bad link");
        assert_eq!(normalize_text(" . . "), "");
        assert_eq!(first_number("minimal 1,000 units"), 1000);
        assert_eq!(first_number("none"), 0);
        assert_eq!(first_number("99999999999999999999999"), 0);
        assert_eq!(
            ErrorKind::from_upstream("Incorrect comments"),
            ErrorKind::IncorrectField("comments")
        );
        assert_eq!(
            ErrorKind::from_upstream("Incorrect thing"),
            ErrorKind::Other("Incorrect thing".into())
        );
    }
}
