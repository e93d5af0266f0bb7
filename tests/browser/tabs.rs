//! Tabs of one browser agree about the session, and a session ended from elsewhere is
//! noticed by the page showing it (pages check once a second; the tests wait for what
//! the page shows, not for a time).

use serial_test::serial;

use super::{flash, log_in, served_app};

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn a_platform_switch_and_a_logout_in_one_tab_show_in_the_other() {
    let (app, base, mut chromium) = served_app().await;
    let user = app.create_user("ann@example.com", false).await;
    let new = tessera::models::platforms::NewPlatform::parse("Acme CRM", "https://crm.example.com")
        .expect("valid platform");
    tessera::models::platforms::Model::create_for(&app.ctx.db, user.id, &new)
        .await
        .expect("platform");
    let browser = chromium.browser().await;
    log_in(&browser, &base, "ann@example.com", false).await;
    browser.goto(&format!("{base}/platforms")).await;
    let first = browser.client.window().await.expect("this tab");
    let second = browser.client.new_window(true).await.expect("a second tab");
    browser
        .client
        .switch_to_window(second.handle.clone())
        .await
        .expect("to the second tab");
    browser.goto(&format!("{base}/dashboard")).await;
    assert_eq!(browser.text("#active-platform").await, "No platform");

    browser
        .client
        .switch_to_window(first.clone())
        .await
        .expect("back");
    browser
        .submit("form[action$='/activate'] button[type=submit]")
        .await;
    browser
        .client
        .switch_to_window(second.handle.clone())
        .await
        .expect("to the second tab");
    assert!(
        browser
            .eventually_text("#active-platform", |t| t == "Acme CRM")
            .await,
        "the second tab still shows {:?}",
        browser.text_if_any("#active-platform").await
    );
    browser.screenshot("tabs-01-platform-followed").await;

    browser.client.switch_to_window(first).await.expect("back");
    browser
        .submit("form[action='/logout'] button[type=submit]")
        .await;
    browser
        .client
        .switch_to_window(second.handle)
        .await
        .expect("to the second tab");
    assert!(
        browser.eventually_at("/login").await,
        "the second tab stayed on {}",
        browser.path().await
    );
    assert!(
        browser
            .eventually_text("#flash", |t| t == "You logged out in another tab.")
            .await,
        "{:?}",
        flash(&browser).await
    );
    browser.screenshot("tabs-02-logout-followed").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn a_browser_whose_session_is_ended_from_another_lands_on_the_login_page() {
    let (app, base, mut chromium) = served_app().await;
    app.create_user("ann@example.com", false).await;
    let laptop = chromium.browser().await;
    let phone = chromium.browser().await;
    log_in(&laptop, &base, "ann@example.com", false).await;
    log_in(&phone, &base, "ann@example.com", false).await;

    laptop.goto(&format!("{base}/sessions")).await;
    assert_eq!(
        laptop
            .client
            .find_all(fantoccini::Locator::Css("[data-session-ref]"))
            .await
            .expect("rows")
            .len(),
        2
    );
    laptop
        .submit("form[action='/sessions/revoke-others'] button[type=submit]")
        .await;
    assert_eq!(flash(&laptop).await, "Your other session was ended.");
    laptop.screenshot("revoke-01-ended-others").await;

    assert!(
        phone.eventually_at("/login").await,
        "the revoked browser stayed on {}",
        phone.path().await
    );
    assert!(
        phone
            .eventually_text("#flash", |t| t.contains("Your session has ended"))
            .await,
        "{:?}",
        flash(&phone).await
    );
    phone.screenshot("revoke-02-revoked-browser").await;
    phone.goto(&format!("{base}/dashboard")).await;
    assert_eq!(phone.path().await, "/login", "the session is really gone");
    laptop.close().await;
    phone.close().await;
}
