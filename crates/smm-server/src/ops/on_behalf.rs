//! Refills and cancels asked for by the reseller's staff on a customer's behalf: the same rules
//! and the same store paths as the customer's own v2 `refill` and `cancel` (the service's
//! flags, the order's state, the forwarding of the request), answered with the same v2 error
//! strings, and audited with the staff member as actor.

use smm_store::OrderId;

use super::{OpError, OpResult};
use crate::app::{App, now_ms};

impl From<smm_wire::ErrorKind> for OpError {
    fn from(kind: smm_wire::ErrorKind) -> Self {
        OpError::Conflict(kind.to_string())
    }
}

/// Asks for a refill of order `id` as its customer would; returns the refill's id.
pub async fn refill(app: &App, actor: &str, id: i64) -> OpResult<i64> {
    let order = app.store.order(OrderId(id)).await?;
    let customer = app.store.customer(order.customer_id).await?;
    let refill = crate::v2::refill_one(app, &customer, Some(&order)).await?;
    let refill = i64::try_from(refill).map_err(|_| OpError::Invalid("refill id".into()))?;
    app.store
        .audit(
            actor,
            "order.refill",
            &format!("order:{id}"),
            None,
            Some(&format!(
                "refill {refill} requested on the customer's behalf"
            )),
            now_ms(),
        )
        .await?;
    Ok(refill)
}

/// Asks for the cancel of order `id` as its customer would.
pub async fn cancel(app: &App, actor: &str, id: i64) -> OpResult<()> {
    let order = app.store.order(OrderId(id)).await?;
    let customer = app.store.customer(order.customer_id).await?;
    crate::v2::cancel_one(app, &customer, Some(&order)).await?;
    app.store
        .audit(
            actor,
            "order.cancel",
            &format!("order:{id}"),
            None,
            Some("cancel requested on the customer's behalf"),
            now_ms(),
        )
        .await?;
    Ok(())
}
