//! The whole journey in a real headless Chromium against the app served on 127.0.0.1,
//! and axe-core's accessibility checks on every page (`accessibility.rs`). One browser
//! test at a time: each starts its own chromedriver and browsers, and two Chromiums at
//! once would only slow each other down. Every page visited is saved as
//! `target/screenshots/*.png`.

mod accessibility;
mod admin;
mod journey;
mod tabs;

use crate::support::{
    chromium::{Browser, Chromium},
    TestApp,
};

const PASSWORD: &str = "correct horse battery";

/// An app served over HTTP, a chromedriver, and the app's base URL.
async fn served_app() -> (TestApp, String, Chromium) {
    let app = TestApp::start().await;
    let base = app.serve().await;
    (app, base, Chromium::start())
}

/// Logs in through the form, as a person would.
async fn log_in(browser: &Browser, base: &str, email: &str, remember: bool) {
    browser.goto(&format!("{base}/login")).await;
    browser.fill("input[name=email]", email).await;
    browser.fill("input[name=password]", PASSWORD).await;
    if remember {
        browser.click("input[name=remember]").await;
    }
    browser
        .submit("form[action='/login'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/dashboard", "logged in as {email}");
}

/// The text of the page's flash region.
async fn flash(browser: &Browser) -> String {
    browser.text("#flash").await
}
