//! The store's business rules, once, with no SQL and no I/O: what an operation accepts, what a
//! state change decides, and the texts a reseller reads in the ledger and the audit log.
//!
//! [`crate::sql`] reads rows, asks a function here what to do, and writes what it decided; the
//! SQLite and PostgreSQL backends only supply connections and a few dialect words. A rule that
//! changes, changes here, for both databases at once.

use rust_decimal::Decimal;
use serde_json::json;
use smm_wire::{Money, OrderStatus};

use crate::rows::order_status_text;
use crate::{
    CancelRequest, CustomerId, ForwardState, LedgerKind, Order, OrderId, StatusUpdate, StoreError,
};

// ---- input checks ----------------------------------------------------------------------------

/// A balance adjustment by an admin: a positive deposit, or a non-zero adjustment either way,
/// within [`Money::MAX`].
pub(crate) fn check_adjustment(kind: LedgerKind, amount: Money) -> Result<(), StoreError> {
    match kind {
        LedgerKind::Deposit | LedgerKind::Adjustment => {}
        other => {
            return Err(StoreError::Invalid(format!(
                "a balance adjustment is a deposit or an adjustment, not a {}",
                other.as_str()
            )));
        }
    }
    if amount == Money::ZERO {
        return Err(StoreError::Invalid("the amount is zero".to_owned()));
    }
    if amount.abs() > Money::MAX {
        return Err(StoreError::Invalid(format!(
            "the amount exceeds the maximum of {}",
            Money::MAX
        )));
    }
    if kind == LedgerKind::Deposit && amount.is_negative() {
        return Err(StoreError::Invalid(
            "a deposit must be positive (use an adjustment to debit)".to_owned(),
        ));
    }
    Ok(())
}

/// A customer's discount: a percent strictly between 0 and 100, or none.
pub(crate) fn check_discount(discount: Option<Decimal>) -> Result<(), StoreError> {
    match discount {
        Some(d) if d <= Decimal::ZERO || d >= Decimal::ONE_HUNDRED => Err(StoreError::Invalid(
            format!("a discount is a percent strictly between 0 and 100, not {d}"),
        )),
        _ => Ok(()),
    }
}

/// A customer's own rate for a service: zero or more, or none. `-0` is refused like any other
/// negative spelling: a price list never shows a minus sign.
pub(crate) fn check_rate(rate: Option<Decimal>) -> Result<(), StoreError> {
    match rate {
        Some(r) if r.is_sign_negative() => Err(StoreError::Invalid(format!(
            "a rate cannot be negative: {r}"
        ))),
        _ => Ok(()),
    }
}

/// An order's charge, computed by the caller: more than zero (no order is ever placed for
/// nothing) and at most [`Money::MAX`].
pub(crate) fn check_charge(charge: Money) -> Result<(), StoreError> {
    if !charge.is_positive() || charge > Money::MAX {
        return Err(StoreError::Invalid(format!(
            "a charge must be more than 0 and at most {}, not {charge}",
            Money::MAX
        )));
    }
    Ok(())
}

/// A ledger row's amount: not zero, and within [`Money::MAX`] either way.
pub(crate) fn check_ledger_amount(amount: Money) -> Result<(), StoreError> {
    if amount == Money::ZERO || amount.abs() > Money::MAX {
        return Err(StoreError::Invalid(format!(
            "ledger amount out of range: {amount}"
        )));
    }
    Ok(())
}

/// The refusal of a posting that would take a balance past [`Money::MAX`].
pub(crate) fn balance_past_max() -> StoreError {
    StoreError::Invalid(format!(
        "the balance would exceed the maximum of {}",
        Money::MAX
    ))
}

/// An upstream order an admin attaches to an ambiguous order: both parts present.
pub(crate) fn check_attach(provider: &str, upstream_order_id: &str) -> Result<(), StoreError> {
    if provider.trim().is_empty() || upstream_order_id.trim().is_empty() {
        return Err(StoreError::Invalid(
            "a provider and an upstream order id are required".to_owned(),
        ));
    }
    Ok(())
}

pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} is too large: {value}")))
}

/// What a `limit` of 0 means in every listing and claim.
pub(crate) const DEFAULT_LIMIT: i64 = 100;

pub(crate) fn limit_or_default(limit: u32) -> i64 {
    match limit {
        0 => DEFAULT_LIMIT,
        n => i64::from(n),
    }
}

// ---- order states ----------------------------------------------------------------------------

/// The order's forwarding state, if it is one of `allowed`; `InvalidState` naming `action`
/// otherwise.
pub(crate) fn require_state(
    order: &Order,
    allowed: &[ForwardState],
    action: &str,
) -> Result<(), StoreError> {
    if allowed.contains(&order.forward_state) {
        Ok(())
    } else {
        Err(StoreError::InvalidState(format!(
            "cannot {action} order {}: it is {}",
            order.id,
            order.forward_state.as_str()
        )))
    }
}

/// Giving up on an order (requeue, reject) while an attempt is `pending` could send it twice or
/// refund an order that is in fact running.
pub(crate) fn attempt_in_flight(order: OrderId) -> StoreError {
    StoreError::InvalidState(format!(
        "order {order} has an attempt in flight; finish it first"
    ))
}

/// How an attempt is closed for each forwarding outcome: the attempt's outcome word and detail.
pub(crate) fn attempt_outcome(outcome: &crate::ForwardOutcome) -> (&'static str, Option<&str>) {
    use crate::ForwardOutcome;
    match outcome {
        ForwardOutcome::Sent { .. } => ("sent", None),
        ForwardOutcome::Ambiguous { detail } => ("ambiguous", Some(detail)),
        ForwardOutcome::Failed {
            not_sent: true,
            detail,
        } => ("not_sent", Some(detail)),
        ForwardOutcome::Failed {
            not_sent: false,
            detail,
        } => ("rejected", Some(detail)),
    }
}

/// Whether an order in `status` has started (its scorecard's `started_at` is set the first
/// time): some of it is, or was, being delivered.
pub(crate) fn status_started(status: &OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::InProgress
            | OrderStatus::Processing
            | OrderStatus::Completed
            | OrderStatus::Partial
            | OrderStatus::Active
            | OrderStatus::Expired
    )
}

/// Whether `status` is an end (its scorecard's `finished_at` is set the first time).
pub(crate) fn status_finished(status: &OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Completed
            | OrderStatus::Partial
            | OrderStatus::Canceled
            | OrderStatus::Refunded
            | OrderStatus::Expired
    )
}

/// The message for a `Sent` outcome (or an attach) whose upstream id another order holds.
pub(crate) fn upstream_clash(
    provider: &str,
    upstream_order_id: &str,
    holder: Option<i64>,
) -> String {
    let holder = holder.map_or_else(|| "another order".to_owned(), |id| format!("order {id}"));
    format!("upstream order id {upstream_order_id} at {provider} is already held by {holder}")
}

// ---- refunds ---------------------------------------------------------------------------------

/// The refund an upstream status owes on an order measured in units, before what was already
/// refunded:
///
/// * `Partial`: `charge × remains / units`, rounded down, `remains` clamped to `0..=units`;
///   nothing when `remains` is unknown (see [`plan_status`] for the other signals);
/// * `Canceled`, `Refunded`: the whole charge;
/// * anything else: nothing.
pub fn refund_due(status: &OrderStatus, charge: Money, units: u64, remains: Option<i64>) -> Money {
    match status {
        OrderStatus::Canceled | OrderStatus::Refunded => charge,
        OrderStatus::Partial => {
            let Some(remains) = remains else {
                return Money::ZERO;
            };
            if units == 0 {
                return Money::ZERO;
            }
            let remains = u64::try_from(remains.max(0)).unwrap_or(0).min(units);
            share(charge, remains, units)
        }
        _ => Money::ZERO,
    }
}

/// `charge × part / whole`, rounded down, never more than `charge`.
fn share(charge: Money, part: u64, whole: u64) -> Money {
    if whole == 0 {
        return Money::ZERO;
    }
    charge
        .mul_div_floor(part.min(whole), whole)
        .map_or(Money::ZERO, |refund| refund.min(charge))
}

/// What an order was placed as, for its refund rule (`docs/billing.md` has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Charged per unit (`units` of them), `remains` counts undelivered units.
    Units,
    /// A drip-feed parent: `runs` runs of `units / runs` each.
    DripFeed { runs: u32 },
    /// A subscription paid for `posts` posts up front.
    Subscription { posts: u64 },
    /// Charged flat, with no unit `remains` could count (a plain Package).
    Flat,
}

/// What a status report is judged against: what the order was sold as, what it cost, what was
/// paid back, and where it stands. A poll batch reads only these columns of its orders (issue
/// #16: the whole rows, `placed_as` parsed, took a third of SQLite's sweep).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderTerms {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub params: String,
    pub units: u64,
    pub charge: Money,
    pub refunded: Money,
    pub upstream_cost: Option<Decimal>,
    pub status: OrderStatus,
}

impl From<&Order> for OrderTerms {
    fn from(order: &Order) -> OrderTerms {
        OrderTerms {
            id: order.id,
            customer_id: order.customer_id,
            params: order.params.clone(),
            units: order.units,
            charge: order.charge,
            refunded: order.refunded,
            upstream_cost: order.upstream_cost,
            status: order.status.clone(),
        }
    }
}

pub(crate) fn shape(order: &OrderTerms) -> Shape {
    use smm_wire::order::OrderRequest;
    match serde_json::from_str::<OrderRequest>(&order.params) {
        Ok(OrderRequest::Default {
            drip_feed: Some(drip),
            ..
        }) => Shape::DripFeed { runs: drip.runs },
        Ok(OrderRequest::Subscriptions {
            posts: Some(posts), ..
        }) => Shape::Subscription { posts },
        _ if order.units == 0 => Shape::Flat,
        _ => Shape::Units,
    }
}

/// What an upstream status report does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatusPlan {
    /// The order is already terminal: nothing changes, ever.
    Settled,
    /// Record the status; pay `refund` (the part of the refund due not yet paid) with `reason`;
    /// or, when no signal tells the refund a terminal status owes, put the order on the
    /// attention list with `attention` saying why.
    Apply {
        terminal: bool,
        refund: Option<(Money, String)>,
        attention: Option<String>,
    },
}

/// The undelivered share of a terminal order, as `(part, whole)`, from every signal the upstream
/// gave; `Err` says why none told it.
fn undelivered(
    order: &OrderTerms,
    update: &StatusUpdate,
) -> Result<Option<(u64, u64)>, &'static str> {
    let status = &update.status;
    let from_charge = || -> Option<(u64, u64)> {
        // The upstream's own charge, lowered by its partial refund, against what the order was
        // expected to cost there: the undelivered share, in units of 0.00001.
        let now = update.delivery.charge?;
        let expected = order
            .upstream_cost
            .filter(|c| c.is_sign_positive() && !c.is_zero())?;
        let now = Money::from_decimal_round_down(now)?.units();
        let expected = Money::from_decimal_round_down(expected)?.units();
        let refunded = expected.checked_sub(now).filter(|r| *r >= 0)?;
        Some((u64::try_from(refunded).ok()?, u64::try_from(expected).ok()?))
    };
    let remains = || -> Option<(u64, u64)> {
        let remains = update.remains?;
        (order.units > 0).then(|| {
            let remains = u64::try_from(remains.max(0)).unwrap_or(0);
            (remains.min(order.units), order.units)
        })
    };
    match (shape(order), status) {
        (_, OrderStatus::Refunded) => Ok(Some((1, 1))),
        (Shape::Subscription { posts }, _) => match update.delivery.posts {
            Some(done) => Ok(Some((posts.saturating_sub(done), posts))),
            None if *status == OrderStatus::Completed => Ok(None),
            None => Err("the subscription ended without a count of the posts served"),
        },
        (_, OrderStatus::Completed | OrderStatus::Expired) => Ok(None),
        (Shape::DripFeed { runs }, OrderStatus::Canceled) => match update.delivery.runs {
            Some(done) if done > 0 => Ok(Some((
                u64::from(runs.saturating_sub(done)),
                u64::from(runs),
            ))),
            _ => Ok(Some((1, 1))),
        },
        (_, OrderStatus::Canceled) => Ok(Some((1, 1))),
        (Shape::DripFeed { runs }, OrderStatus::Partial) => remains()
            .or_else(|| {
                update
                    .delivery
                    .runs
                    .map(|done| (u64::from(runs.saturating_sub(done)), u64::from(runs)))
            })
            .or_else(from_charge)
            .map(Some)
            .ok_or("a drip-feed Partial without remains, runs or charge"),
        (Shape::Units, OrderStatus::Partial) => remains()
            .or_else(from_charge)
            .map(Some)
            .ok_or("a Partial without remains or charge"),
        (Shape::Flat, OrderStatus::Partial) => from_charge()
            .map(Some)
            .ok_or("a Partial of a flat-priced order without the upstream's charge"),
        _ => Ok(None),
    }
}

/// Given an order and an upstream report, what happens. Only this report's signals count:
/// `remains` only shrink, so a stale value from an earlier poll would overpay.
pub(crate) fn plan_status(order: &OrderTerms, update: &StatusUpdate) -> StatusPlan {
    if order.status.is_terminal() {
        return StatusPlan::Settled;
    }
    let terminal = update.status.is_terminal();
    if !terminal {
        return StatusPlan::Apply {
            terminal,
            refund: None,
            attention: None,
        };
    }
    match undelivered(order, update) {
        Ok(due) => {
            let due = due.map_or(Money::ZERO, |(part, whole)| {
                share(order.charge, part, whole)
            });
            let refund = due
                .checked_sub(order.refunded)
                .filter(|owed| owed.is_positive())
                .map(|owed| (owed, status_refund_reason(order, update)));
            StatusPlan::Apply {
                terminal,
                refund,
                attention: None,
            }
        }
        Err(why) => {
            tracing::warn!(
                order = order.id.0,
                why,
                "no refund computed: the order needs a person"
            );
            StatusPlan::Apply {
                terminal,
                refund: None,
                attention: Some(format!("{} upstream: {why}", update.status.as_str())),
            }
        }
    }
}

fn status_refund_reason(order: &OrderTerms, update: &StatusUpdate) -> String {
    let status = update.status.as_str();
    let id = order.id;
    match (shape(order), update) {
        (Shape::Subscription { posts }, StatusUpdate { delivery, .. })
            if delivery.posts.is_some() =>
        {
            let done = delivery.posts.unwrap_or_default();
            format!("refund: {status}, {done} of {posts} posts served (order {id})")
        }
        (
            _,
            StatusUpdate {
                remains: Some(remains),
                ..
            },
        ) if order.units > 0 && update.status == OrderStatus::Partial => {
            format!(
                "refund: Partial, remains {remains} of {} (order {id})",
                order.units
            )
        }
        (Shape::DripFeed { runs }, StatusUpdate { delivery, .. }) if delivery.runs.is_some() => {
            let done = delivery.runs.unwrap_or_default();
            format!("refund: {status}, {done} of {runs} runs done (order {id})")
        }
        (_, StatusUpdate { delivery, .. })
            if delivery.charge.is_some() && update.status == OrderStatus::Partial =>
        {
            format!("refund: Partial, by the upstream's charge (order {id})")
        }
        _ => format!("refund: {status} (order {id})"),
    }
}

/// An admin's settlement of an order on the attention list: at most what is left of its charge.
pub(crate) fn check_settlement(order: &Order, refund: Money) -> Result<(), StoreError> {
    if order.attention.is_none() {
        return Err(StoreError::InvalidState(format!(
            "order {} is not waiting for a settlement",
            order.id
        )));
    }
    let left = order
        .charge
        .checked_sub(order.refunded)
        .unwrap_or(Money::ZERO);
    if refund.is_negative() || refund > left {
        return Err(StoreError::Invalid(format!(
            "a settlement refunds between 0 and what is left of the charge ({left}), not {refund}"
        )));
    }
    Ok(())
}

pub(crate) fn settlement_reason(order: OrderId, actor: &str, why: &str) -> String {
    format!("refund: order {order} settled by {actor}: {why}")
}

/// What a customer's cancel does to their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CancelPlan {
    /// Not sent yet: canceled here, the whole charge refunded.
    Locally,
    /// At the upstream and still running, or on its way there (`sending`, `ambiguous`): a
    /// cancel request is recorded, forwarded once the order is known to be upstream.
    Request,
    /// The order's one cancel request already exists: the answer is that request's (a
    /// repeat after the upstream refused it gets the refusal, not a new "accepted").
    Existing,
    /// None of these: refused with this message.
    Refuse(String),
}

/// The cancel of `order`, given its cancel request if one exists. Whether the service allows
/// cancels at all is the front end's check (the service's flag, whatever the order's state).
pub(crate) fn plan_cancel(order: &Order, existing: Option<&CancelRequest>) -> CancelPlan {
    let refused_upstream = existing.is_some_and(|r| r.forward_state == ForwardState::Rejected);
    match order.forward_state {
        ForwardState::Queued => CancelPlan::Locally,
        ForwardState::Sending | ForwardState::Ambiguous if existing.is_some() => {
            CancelPlan::Existing
        }
        ForwardState::Sending | ForwardState::Ambiguous => CancelPlan::Request,
        ForwardState::Sent if existing.is_some() && !order.status.is_terminal() => {
            CancelPlan::Existing
        }
        ForwardState::Sent if !order.status.is_terminal() => CancelPlan::Request,
        // Finished since: a refusal stays the answer; an accepted cancel is done.
        ForwardState::Sent if refused_upstream => CancelPlan::Existing,
        state => CancelPlan::Refuse(format!(
            "order {} cannot be canceled now ({}, {})",
            order.id,
            state.as_str(),
            order.status.as_str()
        )),
    }
}

/// The note on a cancel request that was never forwarded because its order never reached the
/// upstream: the order was canceled and refunded in full here instead.
pub(crate) fn cancel_closed_locally(order: OrderId, why: &str) -> String {
    format!("not forwarded: order {order} {why}; canceled and refunded in full locally")
}

/// Why an order was given up locally, with the texts the order and the ledger carry.
pub(crate) struct LocalCancel {
    /// Stored as the order's `forward_error`.
    pub forward_error: String,
    /// The refund's ledger reason.
    pub reason: String,
    pub actor: String,
}

impl LocalCancel {
    pub(crate) fn by_customer(order: OrderId) -> LocalCancel {
        LocalCancel {
            forward_error: "canceled by the customer before forwarding".to_owned(),
            reason: format!("refund: order {order} canceled before forwarding"),
            actor: "customer".to_owned(),
        }
    }

    pub(crate) fn rejected(order: OrderId, detail: &str) -> LocalCancel {
        LocalCancel {
            forward_error: detail.to_owned(),
            reason: format!("refund: order {order} rejected: {detail}"),
            actor: "forwarder".to_owned(),
        }
    }

    pub(crate) fn ambiguous_canceled(order: OrderId, actor: &str, why: &str) -> LocalCancel {
        LocalCancel {
            forward_error: format!("canceled by {actor}: {why}"),
            reason: format!("refund: order {order} canceled by {actor}: {why}"),
            actor: actor.to_owned(),
        }
    }
}

/// The rest of the charge, refunded when an order is given up locally. Every refund is the
/// order's one refund row, so an order that already got one cannot be given up this way.
pub(crate) fn local_cancel_refund(order: &Order) -> Result<Money, StoreError> {
    if order.refunded != Money::ZERO {
        return Err(StoreError::InvalidState(format!(
            "order {} was already refunded",
            order.id
        )));
    }
    Ok(order.charge)
}

pub(crate) fn charge_reason(order: OrderId) -> String {
    format!("order {order}")
}

// ---- audit -----------------------------------------------------------------------------------

pub(crate) fn customer_target(id: CustomerId) -> String {
    format!("customer:{id}")
}

pub(crate) fn order_target(id: OrderId) -> String {
    format!("order:{id}")
}

/// An order as the audit log shows it before and after an admin's change.
pub(crate) fn order_summary(order: &Order) -> serde_json::Value {
    json!({
        "forward_state": order.forward_state.as_str(),
        "status": order_status_text(&order.status).0,
        "provider": order.provider,
        "upstream_order_id": order.upstream_order_id,
        "charge": order.charge.to_string(),
        "refunded": order.refunded.to_string(),
    })
}

/// The audit action of a balance adjustment.
pub(crate) fn adjustment_action(amount: Money) -> &'static str {
    if amount.is_positive() {
        "customer.credit"
    } else {
        "customer.debit"
    }
}

// ---- console users ---------------------------------------------------------------------------

/// A username is 1 to 64 characters of letters, digits, `.`, `_`, `-` and `@`.
pub(crate) fn check_username(username: &str) -> Result<(), StoreError> {
    let ok = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "username {username:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

/// After one more failed login: `(failed_logins, locked_until)`. The failure that reaches the
/// limit locks the account and starts the count again.
pub(crate) fn after_failed_login(
    failed_before: u32,
    lockout: crate::Lockout,
    now: crate::Timestamp,
) -> (u32, Option<crate::Timestamp>) {
    let failed = failed_before.saturating_add(1);
    if failed >= lockout.max_failures.max(1) {
        (0, Some(now.saturating_add(lockout.lock_ms.max(0))))
    } else {
        (failed, None)
    }
}

pub(crate) fn admin_target(id: i64) -> String {
    format!("admin:{id}")
}
