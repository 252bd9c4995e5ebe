//! The configuration page (owners edit the config file's text; everyone sees the running
//! configuration, secrets masked), and how every console change to the config file ends:
//! applied, refused with every problem, or valid but not writable here.

use askama::Template;
use axum::response::Response;
use serde::Deserialize;
use smm_store::AdminRole;

use super::session::{Change, CsrfForm, Session};
use super::view::{Chrome, PageResult, render};
use crate::app::redacted_sections;
use crate::ops::config_file::{self, Committed, Plan, Problems};

/// How a console change to the config file ended.
#[derive(Debug)]
pub enum Saved {
    /// Written and reloaded: the message for the next page.
    Applied(String),
    Refused(Problems),
    /// Valid, but the file cannot be written here: the page to show instead.
    Manual(Response),
}

/// Commits `plan` (when it was made), audited as `what`.
pub async fn save(session: &Session, what: &str, plan: Result<Plan, Problems>) -> Saved {
    let plan = match plan {
        Ok(plan) => plan,
        Err(problems) => return Saved::Refused(problems),
    };
    match config_file::commit(session.app(), session.actor(), what, plan).await {
        Ok(Committed::Applied { report, .. }) => {
            let mut message = format!("Saved: {what} (configuration version {})", report.version);
            for warning in report.warnings.iter().take(3) {
                message.push_str("; ");
                message.push_str(warning);
            }
            Saved::Applied(message)
        }
        Ok(Committed::NotWritable { path, reason, text }) => {
            let page = ManualPage {
                chrome: Chrome::new(session, "config"),
                what,
                path: path.display().to_string(),
                reason,
                text,
            };
            Saved::Manual(render(&page, session))
        }
        Err(problems) => Saved::Refused(problems),
    }
}

/// Redirects to `to` with the outcome as the flash message (problems joined), or shows the
/// change to apply by hand.
pub fn finish(session: &Session, to: &str, saved: Saved) -> Response {
    match saved {
        Saved::Applied(message) => session.see_other(to, Ok(message)),
        Saved::Refused(problems) => session.see_other(to, Err(refusal(&problems))),
        Saved::Manual(page) => page,
    }
}

/// Problems as one line: `Not saved: a; b`.
pub fn refusal(problems: &[String]) -> String {
    format!("Not saved: {}", problems.join("; "))
}

#[derive(Template)]
#[template(path = "console/config_manual.html")]
struct ManualPage<'a> {
    chrome: Chrome,
    what: &'a str,
    path: String,
    reason: String,
    text: String,
}

#[derive(Template)]
#[template(path = "console/config.html")]
struct ConfigPage {
    chrome: Chrome,
    is_owner: bool,
    /// The file's path, or why there is none.
    path: Result<String, String>,
    writable: Result<(), String>,
    /// What the editor holds: the file, or the text just checked.
    text: String,
    /// Problems of the text just checked; empty when it was valid.
    problems: Problems,
    checked: bool,
    running: String,
}

/// The running configuration, and the file's text for owners.
pub async fn page(session: Session) -> PageResult {
    show(&session, None, Vec::new())
}

fn show(session: &Session, text: Option<String>, problems: Problems) -> PageResult {
    let is_owner = session.user.role.allows(AdminRole::Owner);
    let file = config_file::read(session.app());
    let (path, writable, file_text) = match file {
        Ok(file) => (
            Ok(file.path.display().to_string()),
            file.writable,
            file.text,
        ),
        Err(problems) => {
            let why = problems.join("; ");
            (Err(why.clone()), Err(why), String::new())
        }
    };
    let running = serde_json::to_string_pretty(&redacted_sections(&session.app().settings()))
        .unwrap_or_default();
    let checked = text.is_some();
    let page = ConfigPage {
        chrome: Chrome::new(session, "config"),
        is_owner,
        path,
        writable,
        text: if is_owner {
            text.unwrap_or(file_text)
        } else {
            String::new()
        },
        problems,
        checked,
        running,
    };
    Ok(render(&page, session))
}

#[derive(Debug, Deserialize)]
pub struct ConfigForm {
    csrf: String,
    text: String,
    /// `check` or `save`.
    #[serde(default)]
    intent: String,
}

impl CsrfForm for ConfigForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Checks the edited text (every problem shown next to it) and, with `intent=save`, writes it
/// back and reloads.
pub async fn update(change: Change<ConfigForm>) -> PageResult {
    let session = &change.session;
    session.require(AdminRole::Owner, "change the configuration")?;
    let text = change.form.text.replace("\r\n", "\n");
    let plan = config_file::plan_text(session.app(), text.clone()).await;
    if change.form.intent != "save" {
        let problems = plan.err().unwrap_or_default();
        return show(session, Some(text), problems);
    }
    match save(session, "the config file edited as text", plan).await {
        Saved::Applied(message) => Ok(session.see_other("/config", Ok(message))),
        Saved::Refused(problems) => show(session, Some(text), problems),
        Saved::Manual(page) => Ok(page),
    }
}
