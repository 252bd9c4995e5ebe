//! What every page shares: the chrome (who is logged in, the CSRF token for the forms, the
//! flash message of the last change), formatting, rendering and the error page.

use askama::Template;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{Html, IntoResponse, Response};
use smm_store::AdminRole;

use super::session::{Flash, Session};
use crate::ops::OpError;

/// The frame around every page.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    /// Which navigation entry is current.
    pub nav: &'static str,
    pub flash: Option<Flash>,
    /// The user may change customers and orders.
    pub can_operate: bool,
}

impl Chrome {
    pub fn new(session: &Session, nav: &'static str) -> Chrome {
        Chrome {
            user: session.user.username.clone(),
            role: session.user.role.as_str(),
            csrf: session.csrf.clone(),
            nav,
            flash: session.flash.clone(),
            can_operate: session.user.role.allows(AdminRole::Operator),
        }
    }
}

/// Renders a page; clears the flash cookie once its message was shown.
pub fn render(template: &impl Template, session: &Session) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = Html(html).into_response();
            if session.flash.is_some()
                && let Ok(value) = Flash::clear_cookie(session.secure_cookies()).parse()
            {
                response.headers_mut().append(SET_COOKIE, value);
            }
            response
        }
        Err(error) => {
            tracing::error!(%error, "a console template failed to render");
            ConsoleError::Internal.into_response()
        }
    }
}

/// Why a console request failed, as a page.
#[derive(Debug)]
pub enum ConsoleError {
    /// The role may not do this.
    Forbidden(&'static str),
    /// The form did not carry this session's CSRF token, or came from another site.
    Csrf,
    NotFound(String),
    BadRequest(String),
    Unavailable(String),
    Internal,
}

impl From<OpError> for ConsoleError {
    fn from(error: OpError) -> Self {
        match error {
            OpError::NotFound(m) => ConsoleError::NotFound(m),
            OpError::Invalid(m) | OpError::Conflict(m) => ConsoleError::BadRequest(m),
            OpError::Unavailable(m) => ConsoleError::Unavailable(m),
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            ConsoleError::Forbidden(what) => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("Your role may not {what}."),
            ),
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused",
                "The form was not sent from this console session (its CSRF token is missing \
                 or out of date). Go back, reload the page and try again."
                    .to_owned(),
            ),
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.clone()),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Refused", m.clone()),
            ConsoleError::Unavailable(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m.clone())
            }
            ConsoleError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "Something went wrong; the details are in the gateway's log.".to_owned(),
            ),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            message: &message,
        };
        let body = page.render().unwrap_or_else(|_| message.clone());
        (status, Html(body)).into_response()
    }
}

pub type PageResult = Result<Response, ConsoleError>;

/// `ms` since the epoch as `2026-12-03 17:05 UTC`.
pub fn time(ms: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// `Some(ms)` as a time, `None` as a dash.
pub fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_owned(), time)
}

/// `ms` as a day, `12-03`.
pub fn day(ms: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return String::new();
    };
    format!("{:02}-{:02}", u8::from(at.month()), at.day())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc() {
        assert_eq!(super::time(1_764_781_500_000), "2025-12-03 17:05 UTC");
        assert_eq!(super::day(1_764_781_500_000), "12-03");
        assert_eq!(super::time_or_dash(None), "—");
    }
}
