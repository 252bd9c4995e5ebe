//! `/audit`: every audited change, newest first, searched in the database by actor, action
//! and target (prefixes) and by the days recorded.

use askama::Template;
use axum::extract::Query;
use serde::Deserialize;

use super::session::Session;
use super::view::{Chrome, PageResult, render, time};
use crate::ops::AuditView;

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Page {
    chrome: Chrome,
    filter: Filter,
    rows: Vec<(AuditView, String)>,
    error: Option<String>,
}

pub async fn page(session: Session, Query(filter): Query<Filter>) -> PageResult {
    let ops = session.ops();
    let some = |t: &str| Some(t.to_owned()).filter(|t| !t.trim().is_empty());
    let (actor, action, target) = (
        some(&filter.actor),
        some(&filter.action),
        some(&filter.target),
    );
    let (from, to) = (some(&filter.from), some(&filter.to));
    let (rows, error) = match ops
        .get()
        .search_audit(
            actor.as_deref(),
            action.as_deref(),
            target.as_deref(),
            from.as_deref(),
            to.as_deref(),
            300,
        )
        .await
    {
        Ok(entries) => (
            entries
                .into_iter()
                .map(|e| {
                    let at = time(e.created_at);
                    (e, at)
                })
                .collect(),
            None,
        ),
        Err(crate::ops::OpError::Invalid(e)) => (Vec::new(), Some(e)),
        Err(e) => return Err(e.into()),
    };
    let page = Page {
        chrome: Chrome::new(&session, "audit"),
        filter,
        rows,
        error,
    };
    Ok(render(&page, &session))
}
