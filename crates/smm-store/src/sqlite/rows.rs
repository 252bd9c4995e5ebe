//! The one row shape only SQLite reads: `claim_polls` filters out orders without a provider or an
//! upstream id in SQL, so both are plain `String`s here. Every other row is in `crate::rows`.

use crate::rows::order_status_from_text;
use crate::{OrderId, PollItem, StoreError, StoreResult};

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PollRow {
    pub id: i64,
    pub provider: String,
    pub upstream_order_id: String,
    pub status: String,
    pub status_raw: Option<String>,
    pub created_at: i64,
}

impl TryFrom<PollRow> for PollItem {
    type Error = StoreError;

    fn try_from(row: PollRow) -> StoreResult<PollItem> {
        Ok(PollItem {
            order_id: OrderId(row.id),
            provider: row.provider,
            upstream_order_id: row.upstream_order_id,
            status: order_status_from_text(&row.status, row.status_raw)?,
            created_at: row.created_at,
        })
    }
}
