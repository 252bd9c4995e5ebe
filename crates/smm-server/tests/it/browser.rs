//! The browser harness itself ([`crate::support::browser`]), against a page served by the test:
//! headless Chromium fills and posts a form and shows what the server got back, takes
//! screenshots at a desktop and a phone size, and sends a form with a field taken out.

use std::collections::HashMap;
use std::path::Path;

use axum::Router;
use axum::http::header::SET_COOKIE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::support::browser::Browser;
use crate::support::temp_dir;

/// `&`, `<`, `>` and `"` as entities.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Greeting</title></head>
<body>
  <form id="greet" method="post" action="/greet">
    <input type="hidden" name="token" value="t0k3n">
    <label for="name">Your name</label>
    <input id="name" name="name" type="text">
    <button type="submit">Send</button>
  </form>
</body></html>"#;

/// What was posted, each field shown or marked missing; sets a cookie.
async fn greet(axum::Form(fields): axum::Form<HashMap<String, String>>) -> impl IntoResponse {
    let show = |name: &str| {
        fields
            .get(name)
            .map_or_else(|| "(missing)".to_owned(), |value| escape(value))
    };
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Posted</title></head>
<body>
  <p id="posted">Hello, {}!</p>
  <p id="token">{}</p>
  <a id="again" href="/">again</a>
</body></html>"#,
        show("name"),
        show("token")
    );
    ([(SET_COOKIE, "greeted=yes; Path=/; HttpOnly")], Html(page))
}

/// The page's address (`http://127.0.0.1:PORT`), served until the test ends.
async fn serve_form() -> String {
    let app = Router::new()
        .route("/", get(|| async { Html(FORM) }))
        .route("/greet", axum::routing::post(greet));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A PNG's width and height from its header; fails the test when `path` holds no PNG.
fn png_size(path: &Path) -> (u32, u32) {
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "{} is not a PNG ({} bytes)",
        path.display(),
        png.len()
    );
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_drives_a_form_in_headless_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = serve_form().await;
    let tmp = temp_dir();

    browser.goto(&format!("{base}/")).await;
    browser.wait_for("form#greet").await;
    assert_eq!(browser.text("label[for=name]").await, "Your name");
    assert!(browser.cookie("greeted").await.is_none());
    let name = "Ada <Lovelace> & co";
    browser.fill("#name", name).await;
    browser.submit("#greet").await;

    assert_eq!(browser.current_url().await.path(), "/greet");
    let title = browser.client().title().await.expect("the page title");
    assert_eq!(title, "Posted");
    assert_eq!(browser.text("#posted").await, format!("Hello, {name}!"));
    assert_eq!(browser.text("#token").await, "t0k3n");
    assert!(
        browser
            .page_source()
            .await
            .contains("Hello, Ada &lt;Lovelace&gt; &amp; co!"),
        "the posted name is shown escaped"
    );
    let cookie = browser.cookie("greeted").await.expect("the greeted cookie");
    assert_eq!(cookie.value(), "yes");

    let desktop = tmp.path().join("desktop.png");
    browser.screenshot(&desktop).await;
    let (width, height) = png_size(&desktop);
    assert!(
        width > 0 && height > 0,
        "desktop screenshot {width}x{height}"
    );

    // A phone-sized window, then a phone-sized viewport (the window less the toolbar room).
    browser.set_window_size(390, 844).await;
    let phone_window = tmp.path().join("phone-window.png");
    browser.screenshot(&phone_window).await;
    let (phone_width, phone_height) = png_size(&phone_window);
    assert!(
        phone_width == 390 && phone_height > 0 && phone_height <= 844,
        "phone window screenshot {phone_width}x{phone_height}"
    );
    browser.set_viewport_size(390, 844).await;
    let phone = tmp.path().join("phone.png");
    browser.screenshot(&phone).await;
    assert_eq!(png_size(&phone), (390, 844), "phone viewport screenshot");

    // A form sent without one of its fields (as a forged one would be): the server sees it
    // missing.
    browser.click("#again").await;
    browser.wait_for("form#greet").await;
    browser.fill("#name", "Grace").await;
    browser.submit_without("#greet", "token").await;
    assert_eq!(browser.text("#posted").await, "Hello, Grace!");
    assert_eq!(browser.text("#token").await, "(missing)");

    browser.close().await;
}
