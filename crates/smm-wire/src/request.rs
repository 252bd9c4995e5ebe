//! The downstream request: who asks ([`key`](Credentials)), for what ([`Action`]), with which
//! arguments ([`ApiRequest`]).
//!
//! Parsing is two-stage so the server can authenticate before it looks at an action's arguments:
//! a request with a bad key is answered `Invalid API key` whatever else is wrong with it.

use std::collections::HashSet;

use crate::{ErrorKind, MAX_IDS, Params};

/// The seven v2 actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Services,
    Add,
    Status,
    Refill,
    RefillStatus,
    Cancel,
    Balance,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Services,
        Action::Add,
        Action::Status,
        Action::Refill,
        Action::RefillStatus,
        Action::Cancel,
        Action::Balance,
    ];

    /// Exact, case-sensitive names as panels use them (`refill_status`); surrounding whitespace
    /// is ignored.
    pub fn parse(name: &str) -> Option<Action> {
        match name.trim() {
            "services" => Some(Action::Services),
            "add" => Some(Action::Add),
            "status" => Some(Action::Status),
            "refill" => Some(Action::Refill),
            "refill_status" => Some(Action::RefillStatus),
            "cancel" => Some(Action::Cancel),
            "balance" => Some(Action::Balance),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Services => "services",
            Action::Add => "add",
            Action::Status => "status",
            Action::Refill => "refill",
            Action::RefillStatus => "refill_status",
            Action::Cancel => "cancel",
            Action::Balance => "balance",
        }
    }
}

/// The first stage: the key and the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub key: &'a str,
    pub action: Action,
}

impl<'a> Credentials<'a> {
    /// A missing or blank `key` is `InvalidKey`; then a missing or unknown `action` is
    /// `IncorrectRequest`. The key is trimmed.
    pub fn parse(params: &'a Params) -> Result<Credentials<'a>, ErrorKind> {
        let key = params.get_trimmed("key").ok_or(ErrorKind::InvalidKey)?;
        let action = params
            .get("action")
            .and_then(Action::parse)
            .ok_or(ErrorKind::IncorrectRequest)?;
        Ok(Credentials { key, action })
    }
}

/// A comma list of 1 to [`MAX_IDS`] positive integer ids, in the order given, duplicates
/// removed (first occurrence kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdList(Vec<u64>);

impl IdList {
    /// `1,2, 3` → [1, 2, 3]. Spaces around ids are tolerated, and so is one trailing comma.
    /// Empty items, non-digits, zero, or more than [`MAX_IDS`] ids (counted after de-duplication)
    /// are errors: `missing` (the action's "not found" kind) for malformed lists, `TooManyIds`
    /// for long ones.
    ///
    /// An id is ASCII digits with a value from 1 to `u64::MAX`; leading zeros are accepted
    /// (`007` is 7). `+1`, `-1`, `1.0`, `0` and `1e3` are malformed. Every item is
    /// checked, so a malformed list is `missing` even when it is also too long.
    pub fn parse(input: &str, missing: ErrorKind) -> Result<IdList, ErrorKind> {
        let trimmed = input.trim();
        let list = trimmed.strip_suffix(',').unwrap_or(trimmed);
        if list.trim().is_empty() {
            return Err(missing);
        }
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let mut too_many = false;
        for item in list.split(',') {
            let Some(id) = parse_id(item) else {
                return Err(missing);
            };
            if too_many || !seen.insert(id) {
                continue;
            }
            if ids.len() >= MAX_IDS {
                too_many = true;
                continue;
            }
            ids.push(id);
        }
        if too_many {
            return Err(ErrorKind::TooManyIds);
        }
        Ok(IdList(ids))
    }

    /// Up to [`MAX_IDS`] ids; panics in debug builds on an empty or longer list.
    pub fn from_vec(ids: Vec<u64>) -> IdList {
        debug_assert!(!ids.is_empty() && ids.len() <= MAX_IDS);
        IdList(ids)
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One id (`order=5`, `refill=5`) or many (`orders=1,2`, `refills=1,2`): the reply shapes differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    One(u64),
    Many(IdList),
}

/// The second stage: the action with its arguments. `add` carries only the service id here; its
/// type-specific fields are read by [`crate::OrderRequest::parse`] once the service's type is
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    Services,
    Balance,
    Add {
        service: u64,
        /// From the `idempotency_key` field (the server also accepts an `Idempotency-Key`
        /// header). Trimmed, 1 to 128 printable ASCII characters, else `IncorrectField`.
        idempotency_key: Option<String>,
    },
    Status(Target),
    Refill(Target),
    RefillStatus(Target),
    Cancel(Target),
}

impl ApiRequest {
    /// Reads the arguments of `action`.
    ///
    /// * `add`: `service` must be a positive integer, else `IncorrectServiceId`.
    /// * `status`, `refill`, `cancel`: `orders` (a list) wins over `order` (one id); missing or
    ///   malformed → `IncorrectOrderId`.
    /// * `refill_status`: `refills` wins over `refill`; missing or malformed → `RefillNotFound`.
    /// * A single id also accepts surrounding whitespace; `order=1,2` is read as a list.
    ///
    /// `add` accepts `service` as strict digits (like an id; `1.0` is `IncorrectServiceId`).
    /// A blank `orders`/`refills` counts as absent, so `order` is then used. A blank
    /// `idempotency_key` counts as absent.
    pub fn parse(action: Action, params: &Params) -> Result<ApiRequest, ErrorKind> {
        match action {
            Action::Services => Ok(ApiRequest::Services),
            Action::Balance => Ok(ApiRequest::Balance),
            Action::Add => {
                let service = params
                    .get("service")
                    .and_then(parse_id)
                    .ok_or(ErrorKind::IncorrectServiceId)?;
                let idempotency_key = match params.get_trimmed("idempotency_key") {
                    None => None,
                    Some(key)
                        if key.len() <= 128 && key.bytes().all(|b| (0x20..=0x7e).contains(&b)) =>
                    {
                        Some(key.to_owned())
                    }
                    Some(_) => return Err(ErrorKind::IncorrectField("idempotency_key")),
                };
                Ok(ApiRequest::Add {
                    service,
                    idempotency_key,
                })
            }
            Action::Status => {
                target(params, "orders", "order", ErrorKind::IncorrectOrderId).map(Self::Status)
            }
            Action::Refill => {
                target(params, "orders", "order", ErrorKind::IncorrectOrderId).map(Self::Refill)
            }
            Action::Cancel => {
                target(params, "orders", "order", ErrorKind::IncorrectOrderId).map(Self::Cancel)
            }
            Action::RefillStatus => target(params, "refills", "refill", ErrorKind::RefillNotFound)
                .map(Self::RefillStatus),
        }
    }
}

/// One id: surrounding whitespace, then ASCII digits (leading zeros allowed) with a value from
/// 1 to `u64::MAX`.
pub(crate) fn parse_id(input: &str) -> Option<u64> {
    let digits = input.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 20 {
        return None;
    }
    significant.parse().ok().filter(|id| *id >= 1)
}

/// `many` (a list) wins over `one`; `one` holding a comma is read as a list.
fn target(params: &Params, many: &str, one: &str, missing: ErrorKind) -> Result<Target, ErrorKind> {
    if let Some(list) = params.get_trimmed(many) {
        return IdList::parse(list, missing).map(Target::Many);
    }
    let Some(single) = params.get_trimmed(one) else {
        return Err(missing);
    };
    if single.contains(',') {
        return IdList::parse(single, missing).map(Target::Many);
    }
    parse_id(single).map(Target::One).ok_or(missing)
}
