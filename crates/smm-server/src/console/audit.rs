//! `/audit`: every audited change, newest first, filterable by actor, action and target.

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
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Page {
    chrome: Chrome,
    filter: Filter,
    rows: Vec<(AuditView, String)>,
}

pub async fn page(session: Session, Query(filter): Query<Filter>) -> PageResult {
    let ops = session.ops();
    let entries = ops.get().audit(1000).await?;
    let has = |field: &str, wanted: &str| wanted.is_empty() || field.contains(wanted.trim());
    let rows = entries
        .into_iter()
        .filter(|e| {
            has(&e.actor, &filter.actor)
                && has(&e.action, &filter.action)
                && has(&e.target, &filter.target)
        })
        .take(300)
        .map(|e| {
            let at = time(e.created_at);
            (e, at)
        })
        .collect();
    let page = Page {
        chrome: Chrome::new(&session, "audit"),
        filter,
        rows,
    };
    Ok(render(&page, &session))
}
