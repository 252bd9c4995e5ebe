//! What every page shares: the chrome (who is logged in, the CSRF token for the forms, the
//! flash message of the last change), formatting, rendering and the error page.

use askama::Template;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{Html, IntoResponse, Response};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
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

/// `ms` as a date, `2026-12-03` (UTC).
pub fn date(ms: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

/// What a table shows for a figure it does not have.
pub const NO_FIGURE: &str = "–";

/// A percentage as the ops give it (`"97.50"`) as `97.5 %`, without trailing zeros (`"75.00"`
/// as `75 %`); `None` as [`NO_FIGURE`].
pub fn percent(value: Option<&str>) -> String {
    value.map_or_else(
        || NO_FIGURE.to_owned(),
        |v| match v.trim().parse::<Decimal>() {
            Ok(d) => format!("{} %", d.normalize()),
            Err(_) => format!("{v} %"),
        },
    )
}

/// Seconds as the ops give them (`"125.000"`) as a human duration: `350 ms`, `4.2 s`,
/// `2 m 5 s`, `1 h 10 m`, `3 d 4 h` (two units at most, the last one rounded); `None` or
/// text that is not a number of seconds as [`NO_FIGURE`].
pub fn duration(secs: Option<&str>) -> String {
    let Some(secs) = secs.and_then(|s| s.trim().parse::<Decimal>().ok()) else {
        return NO_FIGURE.to_owned();
    };
    if secs.is_sign_negative() {
        return NO_FIGURE.to_owned();
    }
    let two = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    let rounded = |unit: i64| -> i64 {
        (secs / Decimal::from(unit))
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            .to_i64()
            .unwrap_or(i64::MAX)
    };
    if secs < Decimal::ONE {
        let ms = (secs * Decimal::ONE_THOUSAND)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            .normalize();
        return if ms.is_zero() {
            "0 s".to_owned()
        } else if ms < Decimal::ONE_THOUSAND {
            format!("{ms} ms")
        } else {
            "1 s".to_owned()
        };
    }
    if secs < Decimal::TEN {
        let tenths = secs
            .round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero)
            .normalize();
        if tenths < Decimal::TEN {
            return format!("{tenths} s");
        }
    }
    let seconds = rounded(1);
    if seconds < 60 {
        return format!("{seconds} s");
    }
    if seconds < 3600 {
        return two(seconds / 60, "m", seconds % 60, "s");
    }
    let minutes = rounded(60);
    if minutes < 24 * 60 {
        return two(minutes / 60, "h", minutes % 60, "m");
    }
    let hours = rounded(3600);
    two(hours / 24, "d", hours % 24, "h")
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc() {
        assert_eq!(super::time(1_764_781_500_000), "2025-12-03 17:05 UTC");
        assert_eq!(super::day(1_764_781_500_000), "12-03");
        assert_eq!(super::date(1_764_781_500_000), "2025-12-03");
        assert_eq!(super::time_or_dash(None), "—");
    }

    #[test]
    fn figures_read_as_people_say_them() {
        use super::{duration, percent};
        assert_eq!(percent(Some("97.50")), "97.5 %");
        assert_eq!(percent(Some("75.00")), "75 %");
        assert_eq!(percent(Some("0.00")), "0 %");
        assert_eq!(percent(None), "–");
        let cases = [
            ("0.000", "0 s"),
            ("0.0004", "0 s"),
            ("0.012", "12 ms"),
            ("0.350", "350 ms"),
            ("0.9996", "1 s"),
            ("1.000", "1 s"),
            ("4.240", "4.2 s"),
            ("9.960", "10 s"),
            ("59.4", "59 s"),
            ("59.6", "1 m"),
            ("60.000", "1 m"),
            ("125.000", "2 m 5 s"),
            ("3599.6", "1 h"),
            ("4200.000", "1 h 10 m"),
            ("86369.000", "23 h 59 m"),
            ("86399.000", "1 d"),
            ("97200.000", "1 d 3 h"),
            ("2592000.000", "30 d"),
        ];
        for (secs, shown) in cases {
            assert_eq!(duration(Some(secs)), shown, "{secs} s");
        }
        assert_eq!(duration(None), "–");
        assert_eq!(duration(Some("soon")), "–");
        assert_eq!(duration(Some("-1")), "–");
    }
}
