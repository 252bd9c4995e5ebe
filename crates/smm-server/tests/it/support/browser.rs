//! Headless Chromium for the web console's tests, driven over WebDriver ([`fantoccini`]).
//!
//! [`Browser::start`] runs ChromeDriver (`$CHROMEDRIVER`, else `/usr/bin/chromedriver`) on a
//! free port of 127.0.0.1 and opens one session of Chromium (`$CHROMIUM`, else
//! `/usr/bin/chromium`): headless, sandbox off (the tests may run as root, where Chromium's
//! sandbox refuses to start), a fresh profile in a temp dir of its own, a 1280x900 window.
//! `scripts/with-chromium.sh` sets both variables (installing Debian's packages when it can).
//! Without the two binaries the browser tests are skipped with a note — and fail under
//! `CI=true`, like the PostgreSQL variants.
//!
//! The helpers panic with what they were doing, the current URL and the end of the page, so a
//! test reads as a list of steps. Only `http://127.0.0.1` pages are ever opened. Forms are
//! server-rendered: [`Browser::submit`] waits for the page the form navigates to.
//!
//! The driver runs in a process group of its own, SIGKILLed with every Chromium process it
//! started when the [`Browser`] is dropped (also when the test fails); [`Browser::close`] ends
//! the session first, the polite way.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use smm_test_db::in_ci;

use super::{TempDir, free_port, log_tail, temp_dir};

/// How long [`Browser::wait_for`] and [`Browser::submit`] wait for a page.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long ChromeDriver gets to answer after it was started.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);

/// One ChromeDriver process and one headless Chromium session on it.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    driver: Driver,
    /// The driver's log and the browser profile, removed last.
    _dir: TempDir,
}

/// The ChromeDriver process, in a process group of its own that Chromium's processes join.
/// SIGKILLs the whole group when dropped: the driver alone would leave its browser running.
#[derive(Debug)]
struct Driver {
    child: tokio::process::Child,
    group: Option<u32>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// `$var` when set and not empty, else `default`.
fn binary(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(default),
    }
}

impl Browser {
    /// ChromeDriver and a headless Chromium session, or `None` (with a note on stderr) when
    /// either binary is missing outside CI.
    ///
    /// # Panics
    /// When a binary is missing under `CI=true` (the browser tests must run there), and when
    /// the driver or the browser does not start.
    pub async fn start() -> Option<Browser> {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let missing: Vec<String> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            assert!(
                !in_ci(),
                "no {} in CI: the browser tests must run, not pass silently (run them through \
                 scripts/test.sh or scripts/with-chromium.sh, or set CHROMIUM and CHROMEDRIVER)",
                missing.join(" or ")
            );
            eprintln!(
                "note: skipping a browser test: no {} (see scripts/with-chromium.sh)",
                missing.join(" or ")
            );
            return None;
        }

        let dir = temp_dir();
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let child = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let mut driver = Driver {
            group: child.id(),
            child,
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_for_driver(&url, &mut driver.child, &log).await;

        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,900",
                ],
            }),
        );
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await;
        let browser = Browser {
            client: match connected {
                Ok(client) => client,
                Err(e) => panic!(
                    "ChromeDriver did not start {}: {e}\n{}",
                    chromium.display(),
                    log_tail(&log, 30)
                ),
            },
            driver,
            _dir: dir,
        };
        browser.set_window_size(1280, 900).await;
        Some(browser)
    }

    /// The fantoccini client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url`, an `http://127.0.0.1:` address, and waits for it to load.
    pub async fn goto(&self, url: &str) {
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "the browser tests open 127.0.0.1 pages only, not {url}"
        );
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css` names (the first match); fails the test when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => self.fail(&format!("find {css:?}: {e}")).await,
        }
    }

    /// Types `text` into the field `css` names, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        if let Err(e) = field.clear().await {
            self.fail(&format!("clear {css:?}: {e}")).await;
        }
        if let Err(e) = field.send_keys(text).await {
            self.fail(&format!("type into {css:?}: {e}")).await;
        }
    }

    /// Clicks the element `css` names (a link or button that navigates: then see
    /// [`Browser::wait_for`]).
    pub async fn click(&self, css: &str) {
        if let Err(e) = self.find(css).await.click().await {
            self.fail(&format!("click {css:?}: {e}")).await;
        }
    }

    /// Submits the form `form` names with its first submit button, as a user would, and
    /// waits for the page it leads to (a new document, loaded).
    pub async fn submit(&self, form: &str) {
        self.mark_document().await;
        let button = format!("{form} button[type=submit], {form} input[type=submit]");
        self.click(&button).await;
        self.wait_for_new_document(&format!("the page after submitting {form:?}"))
            .await;
    }

    /// Clicks the submit button `button` (a form with several, like Preview and Save) and waits
    /// for the page it leads to.
    pub async fn press(&self, button: &str) {
        self.mark_document().await;
        self.click(button).await;
        self.wait_for_new_document(&format!("the page after pressing {button:?}"))
            .await;
    }

    /// Like [`Browser::submit`], with the form's fields named `field` (hidden or not) taken out
    /// first: the request a forged or tampered form would send (a missing CSRF token, say).
    pub async fn submit_without(&self, form: &str, field: &str) {
        let removed = self
            .execute(
                "const form = document.querySelector(arguments[0]);
                 if (!form) { return -1; }
                 const fields = Array.from(form.elements).filter(e => e.name === arguments[1]);
                 fields.forEach(e => e.remove());
                 return fields.length;",
                vec![json!(form), json!(field)],
            )
            .await;
        match removed.as_i64() {
            Some(-1) => self.fail(&format!("no form {form:?}")).await,
            Some(0) => {
                self.fail(&format!("form {form:?} has no field {field:?}"))
                    .await
            }
            _ => {}
        }
        self.submit(form).await;
    }

    /// The rendered text of the element `css` names (what a user sees, whitespace collapsed).
    pub async fn text(&self, css: &str) -> String {
        match self.find(css).await.text().await {
            Ok(text) => text,
            Err(e) => self.fail(&format!("text of {css:?}: {e}")).await,
        }
    }

    /// Waits up to [`PAGE_TIMEOUT`] for an element `css` names; fails the test without one.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                self.fail(&format!("wait {PAGE_TIMEOUT:?} for {css:?}: {e}"))
                    .await
            }
        }
    }

    /// The current document's HTML, as the browser holds it now (after scripts ran).
    pub async fn page_source(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("page source: {e}"))
    }

    /// The address of the page shown.
    pub async fn current_url(&self) -> url::Url {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("current URL: {e}"))
    }

    /// Writes a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Resizes the browser window to `width` x `height` CSS pixels (its viewport is smaller:
    /// see [`Browser::set_viewport_size`]).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("set the window to {width}x{height}: {e}"));
    }

    /// Resizes the window so that the page's viewport (`innerWidth` x `innerHeight`, what a
    /// screenshot shows) is `width` x `height`: headless Chromium keeps room for a toolbar it
    /// does not draw, so a window of a phone's size shows less than a phone would.
    pub async fn set_viewport_size(&self, width: u32, height: u32) {
        self.set_window_size(width, height).await;
        let inner = self
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let side = |i: usize| inner[i].as_u64().and_then(|v| u32::try_from(v).ok());
        let (Some(inner_width), Some(inner_height)) = (side(0), side(1)) else {
            panic!("the viewport's size: {inner}");
        };
        self.set_window_size(
            (2 * width).saturating_sub(inner_width),
            (2 * height).saturating_sub(inner_height),
        )
        .await;
    }

    /// The cookie `name` the current page's site has set, if any (`HttpOnly` ones included).
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        match self.client.get_named_cookie(name).await {
            Ok(cookie) => Some(cookie),
            Err(e) if e.is_no_such_cookie() => None,
            Err(e) => panic!("cookie {name:?}: {e}"),
        }
    }

    /// Runs `script` (a function body: `arguments[i]` are `args`, `return` gives the result)
    /// in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("run a script: {e}\n{script}"))
    }

    /// Ends the session (Chromium quits), then the driver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if let Err(e) = client.close().await {
            eprintln!("note: closing the browser session: {e}");
        }
        let _ = self.driver.child.kill().await;
    }

    /// Tags the current document, so that [`Browser::wait_for_new_document`] can tell it from
    /// the next one.
    async fn mark_document(&self) {
        self.execute("window.__smmOldDocument = true;", vec![])
            .await;
    }

    async fn wait_for_new_document(&self, what: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            // A navigation in progress may fail a script; that is "not yet".
            let loaded = self
                .client
                .execute(
                    "return window.__smmOldDocument !== true && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            if matches!(loaded, Ok(Value::Bool(true))) {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("wait {PAGE_TIMEOUT:?} for {what}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails the test with `what`, the current URL and the end of the page.
    async fn fail(&self, what: &str) -> ! {
        let url = self
            .client
            .current_url()
            .await
            .map_or_else(|e| format!("(unknown: {e})"), |url| url.to_string());
        let source = self.client.source().await.unwrap_or_default();
        let tail: String = {
            let chars: Vec<char> = source.chars().collect();
            chars[chars.len().saturating_sub(2000)..].iter().collect()
        };
        panic!("browser: {what}\nat {url}, page ends:\n{tail}");
    }
}

/// Polls the driver's `/status` until it reports ready; fails the test (with its log) when it
/// exits or stays silent for [`DRIVER_TIMEOUT`].
async fn wait_for_driver(url: &str, driver: &mut tokio::process::Child, log: &Path) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let deadline = Instant::now() + DRIVER_TIMEOUT;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited ({status}):\n{}", log_tail(log, 30));
        }
        if let Ok(response) = http.get(format!("{url}/status")).send().await {
            if let Ok(body) = response.json::<Value>().await {
                if body["value"]["ready"] == json!(true) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer at {url} within {DRIVER_TIMEOUT:?}:\n{}",
            log_tail(log, 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
