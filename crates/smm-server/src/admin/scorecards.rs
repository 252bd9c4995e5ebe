//! `/admin/v1/scorecards`: the providers' and routes' records (issue #15).

use axum::Json;

use super::{AdminAuth, ApiQuery, ErrorBody, Reply};
use crate::ops::scorecards::{ScorecardQuery, ScorecardsView};

/// Every provider's scorecard over the last 7 or 30 days, each with its routes' (issue #15).
#[utoipa::path(
    get,
    path = "/admin/v1/scorecards",
    params(ScorecardQuery),
    responses(
        (status = 200, description = "success", body = ScorecardsView),
        (status = "default", description = "error", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn scorecards(
    auth: AdminAuth,
    ApiQuery(query): ApiQuery<ScorecardQuery>,
) -> Reply<ScorecardsView> {
    Ok(Json(auth.ops().scorecards(query.days()?).await?))
}
