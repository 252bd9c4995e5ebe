//! The one row shape only PostgreSQL reads: `claim_polls` returns when each order was due, so
//! that the claimed batch can be put back in order. Every other row is in `crate::rows`.

use crate::rows::{corrupt, order_status_from_text};
use crate::{OrderId, PollItem, StoreError, StoreResult};

/// What `claim_polls` reads of an order (plus when it was due, for the ordering).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct PollRow {
    pub id: i64,
    pub provider: Option<String>,
    pub upstream_order_id: Option<String>,
    pub status: String,
    pub status_raw: Option<String>,
    pub created_at: i64,
    pub due_at: Option<i64>,
}

impl TryFrom<PollRow> for PollItem {
    type Error = StoreError;

    fn try_from(row: PollRow) -> StoreResult<PollItem> {
        Ok(PollItem {
            order_id: OrderId(row.id),
            provider: row
                .provider
                .ok_or_else(|| corrupt("sent order without provider", row.id))?,
            upstream_order_id: row
                .upstream_order_id
                .ok_or_else(|| corrupt("sent order without upstream id", row.id))?,
            status: order_status_from_text(&row.status, row.status_raw)?,
            created_at: row.created_at,
        })
    }
}
