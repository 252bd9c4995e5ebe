//! `/admins`: the console's users, and an owner creating one (the password typed by the owner,
//! hashed with argon2id by `ops`).

use askama::Template;
use serde::Deserialize;
use smm_store::AdminRole;

use super::session::{Change, CsrfForm, Session};
use super::view::{Chrome, PageResult, render, time_or_dash};
use crate::ops::AdminView;

#[derive(Template)]
#[template(path = "console/admins.html")]
struct Page {
    chrome: Chrome,
    admins: Vec<(AdminView, String)>,
    can_create: bool,
}

pub async fn list(session: Session) -> PageResult {
    session.require(AdminRole::Owner, "see the console's users")?;
    let ops = session.ops();
    let admins = ops
        .get()
        .list_admins()
        .await?
        .into_iter()
        .map(|a| {
            let last = time_or_dash(a.last_login_at);
            (a, last)
        })
        .collect();
    let page = Page {
        chrome: Chrome::new(&session, "admins"),
        admins,
        can_create: session.user.role.allows(AdminRole::Owner),
    };
    Ok(render(&page, &session))
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

impl CsrfForm for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn create(change: Change<CreateForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "create console users")?;
    let form = &change.form;
    let ops = session.ops();
    let result = ops
        .get()
        .create_admin(&form.username, &form.password, &form.role)
        .await
        .map(|a| format!("Created {} ({})", a.username, a.role))
        .map_err(|e| e.to_string());
    Ok(session.see_other("/admins", result))
}
