//! Register, log in, connect a platform, look at the sessions, log out; with and without
//! "remember me"; cookies out of reach of scripts; forms without their CSRF token refused.

use serial_test::serial;

use super::{flash, log_in, served_app, PASSWORD};
use crate::support::chromium::PHONE;

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn a_new_user_registers_logs_in_connects_a_platform_and_logs_out() {
    let (_app, base, mut chromium) = served_app().await;
    let browser = chromium.browser().await;

    browser.goto(&format!("{base}/register")).await;
    browser.screenshot("journey-01-register").await;
    browser.fill("input[name=name]", "Ann Example").await;
    browser.fill("input[name=email]", "ann@example.com").await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser
        .submit("form[action='/register'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/login");
    assert!(browser.text("main").await.contains("Your account is ready"));
    browser.screenshot("journey-02-login").await;

    log_in(&browser, &base, "ann@example.com", false).await;
    assert_eq!(flash(&browser).await, "Welcome back, Ann Example.");
    let cookie = browser
        .client
        .get_named_cookie("session")
        .await
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax));
    assert!(
        cookie.expires().is_none(),
        "without remember me the cookie ends with the browser"
    );
    let visible = browser.script("return document.cookie").await;
    assert!(
        !visible
            .as_str()
            .unwrap_or_default()
            .contains(cookie.value()),
        "page scripts can read the session ID: {visible}"
    );
    browser.screenshot("journey-03-dashboard").await;

    browser.goto(&format!("{base}/platforms")).await;
    browser.fill("input[name=name]", "Acme CRM").await;
    browser
        .fill("input[name=url]", "https://crm.example.com")
        .await;
    browser
        .submit("form[action='/platforms'] button[type=submit]")
        .await;
    assert_eq!(flash(&browser).await, "Added Acme CRM.");
    browser
        .submit("form[action$='/activate'] button[type=submit]")
        .await;
    assert_eq!(
        flash(&browser).await,
        "Acme CRM is now your active platform."
    );
    assert_eq!(browser.text("#active-platform").await, "Acme CRM");
    browser.screenshot("journey-04-platforms").await;
    browser.goto(&format!("{base}/dashboard")).await;
    assert!(browser
        .text("[data-field=active_platform]")
        .await
        .contains("Acme CRM"));
    assert_eq!(flash(&browser).await, "", "a flash shows once");

    browser.goto(&format!("{base}/sessions")).await;
    assert!(browser.has("[data-session-ref] [data-current]").await);
    browser.screenshot("journey-05-sessions").await;
    browser.goto(&format!("{base}/account")).await;
    browser.screenshot("journey-06-account").await;

    browser
        .submit("form[action='/logout'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/login");
    assert!(
        browser
            .eventually_text("#flash", |t| t == "You are logged out.")
            .await,
        "{:?}",
        flash(&browser).await
    );
    browser.screenshot("journey-07-logged-out").await;
    browser.goto(&format!("{base}/dashboard")).await;
    assert_eq!(browser.path().await, "/login", "the session is gone");

    log_in(&browser, &base, "ann@example.com", true).await;
    let remembered = browser
        .client
        .get_named_cookie("session")
        .await
        .expect("a session cookie");
    assert!(
        remembered.expires().is_some(),
        "remember me keeps the cookie past the browser"
    );

    // A phone: the page fits the width, nothing scrolls sideways.
    browser.resize(PHONE).await;
    for (page, shot) in [
        ("dashboard", "journey-08-phone-dashboard"),
        ("sessions", "journey-09-phone-sessions"),
        ("platforms", "journey-10-phone-platforms"),
    ] {
        browser.goto(&format!("{base}/{page}")).await;
        assert!(browser.fits_its_width().await, "{page} overflows a phone");
        browser.screenshot(shot).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn a_form_sent_without_its_csrf_token_is_refused_and_changes_nothing() {
    let (app, base, mut chromium) = served_app().await;
    app.create_user("ann@example.com", false).await;
    let browser = chromium.browser().await;
    log_in(&browser, &base, "ann@example.com", false).await;

    browser.goto(&format!("{base}/platforms")).await;
    browser
        .script(
            "document.querySelector(\"form[action='/platforms'] input[name=csrf_token]\").remove()",
        )
        .await;
    browser.fill("input[name=name]", "Forged").await;
    browser
        .fill("input[name=url]", "https://forged.example.com")
        .await;
    browser
        .submit("form[action='/platforms'] button[type=submit]")
        .await;
    assert!(browser.text("h1").await.contains("This form has expired"));
    browser.screenshot("csrf-01-refused").await;
    browser.goto(&format!("{base}/platforms")).await;
    assert!(
        !browser.text("main").await.contains("Forged"),
        "the forged form added a platform"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn unknown_pages_and_pages_of_others_get_friendly_error_pages() {
    let (app, base, mut chromium) = served_app().await;
    app.create_user("ann@example.com", false).await;
    let browser = chromium.browser().await;
    log_in(&browser, &base, "ann@example.com", false).await;

    browser.goto(&format!("{base}/no/such/page")).await;
    browser.screenshot("errors-01-not-found").await;
    assert!(browser.has("a[href='/']").await, "a way back");
    browser.goto(&format!("{base}/admin/sessions")).await;
    assert!(browser.text("h1").await.contains("Not allowed"));
    browser.screenshot("errors-02-forbidden").await;
    browser.close().await;
}
