//! Who is at the console: login (argon2id passwords, a per-username throttle, a lockout after
//! repeated failures), sessions kept in the database (so they work on every instance) behind an
//! HttpOnly, SameSite=Strict cookie (Secure with `console.secure_cookies`), CSRF tokens on
//! every change, and the one-line flash message a change leaves for the next page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, FromRequest, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use smm_store::{AdminRole, AdminUser, Lockout, NewSession};

use super::view::ConsoleError;
use crate::app::{App, now_ms};
use crate::ops::{LoginRefusal, Ops};

const SESSION_COOKIE: &str = "smm_session";
/// The one answer to a refused login, whether the username, the password or a lock was why.
const WRONG: &str = "Wrong username or password, or the account is locked after repeated \
                     failures (for a while).";
const FLASH_COOKIE: &str = "smm_flash";

/// A logged-in user, from the session cookie. Pages without one redirect to `/login`.
#[derive(Debug)]
pub struct Session {
    pub user: AdminUser,
    pub csrf: String,
    pub flash: Option<Flash>,
    actor: String,
    app: Arc<App>,
}

impl Session {
    /// The operations, audited as `console:USERNAME`.
    pub fn ops(&self) -> OpsHandle<'_> {
        OpsHandle {
            settings: self.app.settings(),
            session: self,
        }
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// `console:USERNAME`, the actor of this user's changes in the audit log.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Refuses unless the user's role includes `needed`; `what` says what was refused.
    pub fn require(&self, needed: AdminRole, what: &'static str) -> Result<(), ConsoleError> {
        if self.user.role.allows(needed) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(what))
        }
    }
}

/// Holds the settings snapshot an [`Ops`] borrows.
#[derive(Debug)]
pub struct OpsHandle<'a> {
    settings: Arc<crate::config::Settings>,
    session: &'a Session,
}

impl OpsHandle<'_> {
    pub fn get(&self) -> Ops<'_> {
        Ops {
            store: self.session.app.store.as_ref(),
            settings: &self.settings,
            actor: &self.session.actor,
        }
    }
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'_>> {
    headers
        .get_all(COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v).filter_map(Result::ok))
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookies(headers)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ConsoleError::Internal)?;
    Ok(hex::encode(bytes))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A store failure as a page: the details go to the log only.
fn unavailable(error: &smm_store::StoreError) -> Response {
    tracing::error!(%error, "console: the database failed");
    ConsoleError::Unavailable("the database is unavailable".into()).into_response()
}

/// Where a missing or expired session goes.
fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

impl FromRequestParts<Arc<App>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let found = app
            .store
            .admin_session(&token_hash(&token), now_ms())
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(session) = found else {
            return Err(to_login());
        };
        Ok(Session {
            actor: format!("console:{}", session.user.username),
            user: session.user,
            csrf: session.csrf_token,
            flash: cookie_value(&parts.headers, FLASH_COOKIE).and_then(|v| Flash::decode(&v)),
            app: app.clone(),
        })
    }
}

/// A form that changes something: the session, the form, and the checks every change passes
/// first (the request comes from the console's own origin, and carries the session's CSRF
/// token). The role check is the handler's, which knows what it changes.
#[derive(Debug)]
pub struct Change<T> {
    pub session: Session,
    pub form: T,
}

/// A form with the CSRF token field (`csrf`, a hidden input in every form).
pub trait CsrfForm {
    fn csrf(&self) -> &str;
}

/// A POST from another site: a browser sends `Origin`; it must name this host.
fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    origin_host != host
}

impl<T> FromRequest<Arc<App>> for Change<T>
where
    T: DeserializeOwned + CsrfForm + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, app).await?;
        if foreign_origin(&parts.headers) {
            return Err(ConsoleError::Csrf.into_response());
        }
        let request = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(request, app)
            .await
            .map_err(|e| ConsoleError::BadRequest(e.body_text()).into_response())?;
        if !constant_time_eq(form.csrf().as_bytes(), session.csrf.as_bytes()) {
            return Err(ConsoleError::Csrf.into_response());
        }
        Ok(Change { session, form })
    }
}

/// A form with nothing but the CSRF token (a button).
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form that switches something on or off (`enabled=true|false`).
#[derive(Debug, Deserialize)]
pub struct Toggle {
    csrf: String,
    enabled: String,
}

impl Toggle {
    pub fn on(&self) -> bool {
        self.enabled == "true"
    }
}

impl CsrfForm for Toggle {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The message a change leaves for the page it redirects to, in a short-lived cookie (never
/// in the URL, where anyone could write one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub error: bool,
    pub text: String,
}

impl Flash {
    fn encode(&self) -> String {
        // Bounded well below a cookie's 4 KB, whatever the message echoes.
        let short: String = self.text.chars().take(300).collect();
        let text: String =
            url::form_urlencoded::byte_serialize(short.as_bytes()).collect::<String>();
        format!("{}{text}", if self.error { "e." } else { "n." })
    }

    fn decode(value: &str) -> Option<Flash> {
        let (kind, text) = value.split_at_checked(2)?;
        let text: String = url::form_urlencoded::parse(format!("t={text}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
        let text: String = text.chars().take(300).collect();
        match kind {
            "n." => Some(Flash { error: false, text }),
            "e." => Some(Flash { error: true, text }),
            _ => None,
        }
    }

    pub fn clear_cookie(secure: bool) -> String {
        format!(
            "{FLASH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            secure_attribute(secure)
        )
    }
}

/// `; Secure` when the console is served over TLS (`console.secure_cookies`).
fn secure_attribute(secure: bool) -> &'static str {
    if secure { "; Secure" } else { "" }
}

impl Session {
    /// Whether the console's cookies are marked `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.app.settings().console.secure_cookies
    }

    /// A 303 to `to` that leaves `message` for it.
    pub fn see_other(&self, to: &str, message: Result<String, String>) -> Response {
        see_other(to, message, self.secure_cookies())
    }
}

/// A 303 to `to` that leaves `message` for it.
fn see_other(to: &str, message: Result<String, String>, secure: bool) -> Response {
    let flash = match message {
        Ok(text) => Flash { error: false, text },
        Err(text) => Flash { error: true, text },
    };
    let cookie = format!(
        "{FLASH_COOKIE}={}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict{}",
        flash.encode(),
        secure_attribute(secure)
    );
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

// ---- login and logout -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    username: &'a str,
    error: Option<String>,
}

pub async fn login_page() -> Response {
    render_login("", None, StatusCode::OK)
}

fn render_login(username: &str, error: Option<String>, status: StatusCode) -> Response {
    match (LoginPage { username, error }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => ConsoleError::Internal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if foreign_origin(&headers) {
        return ConsoleError::Csrf.into_response();
    }
    let settings = app.settings();
    let console = &settings.console;
    let username = form.username.trim().to_owned();
    let refused = |message: String| render_login(&username, Some(message), StatusCode::OK);
    if username.is_empty() || username.len() > 64 {
        return refused(WRONG.into());
    }
    if !app
        .login_limits
        .allow(username.to_lowercase(), console.login_attempts_per_minute)
    {
        return refused("Too many login attempts; wait a minute and try again.".into());
    }
    let lockout = Lockout {
        max_failures: console.max_failed_logins,
        lock_ms: i64::try_from(console.lockout_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX),
    };
    let ops = Ops {
        store: app.store.as_ref(),
        settings: &settings,
        actor: "console",
    };
    let user = match ops.check_login(&username, &form.password, lockout).await {
        Ok(user) => user,
        Err(LoginRefusal::Wrong) => {
            tracing::info!(username = %username, "console login refused: wrong username or password");
            return refused(WRONG.into());
        }
        // The same words as a wrong password: the page never tells which usernames exist.
        Err(LoginRefusal::Locked(until)) => {
            tracing::warn!(username = %username, until, "console login refused: account locked");
            return refused(WRONG.into());
        }
        Err(LoginRefusal::Unavailable(why)) => {
            tracing::error!(%why, "console login: the database failed");
            return ConsoleError::Unavailable("the database is unavailable".into()).into_response();
        }
    };
    let (Ok(token), Ok(csrf)) = (random_token(), random_token()) else {
        return ConsoleError::Internal.into_response();
    };
    let hours = console.session_hours.clamp(1, 24 * 30);
    let max_age = i64::try_from(hours * 3600).unwrap_or(3600);
    let now = now_ms();
    let session = NewSession {
        token_hash: token_hash(&token),
        csrf_token: csrf,
        expires_at: now + max_age * 1000,
    };
    match app.store.login_succeeded(user.id, session, now).await {
        Ok(_) => {}
        // Locked by a concurrent failure since the check: refused like any locked login.
        Err(smm_store::StoreError::InvalidState(_)) => return refused(WRONG.into()),
        Err(error) => return unavailable(&error),
    }
    tracing::info!(username = %user.username, role = user.role.as_str(), "console login");
    let mut cookie = Cookie::new(SESSION_COOKIE, token);
    cookie.set_path("/");
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_secure(console.secure_cookies);
    cookie.set_max_age(cookie::time::Duration::seconds(max_age));
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm for LogoutForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn logout(headers: HeaderMap, change: Change<LogoutForm>) -> Response {
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE)
        && let Err(error) = change
            .session
            .app
            .store
            .end_admin_session(&token_hash(&token), now_ms())
            .await
    {
        return unavailable(&error);
    }
    let mut response = Redirect::to("/login").into_response();
    let clear = format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure_attribute(change.session.secure_cookies())
    );
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_messages_survive_the_cookie() {
        for (error, text) in [(false, "credited 10.00000"), (true, "amount: ; = \"x\" é")] {
            let flash = Flash {
                error,
                text: text.to_owned(),
            };
            let encoded = flash.encode();
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
            );
            assert_eq!(Flash::decode(&encoded), Some(flash));
        }
        assert_eq!(Flash::decode("x.nope"), None);
    }

    #[test]
    fn only_the_console_origin_may_post() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:9090"));
        assert!(
            !foreign_origin(&headers),
            "no Origin: not a browser's cross-site form"
        );
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:9090"));
        assert!(!foreign_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(foreign_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(foreign_origin(&headers));
    }
}
