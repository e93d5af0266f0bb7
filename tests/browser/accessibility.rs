//! Every page passes axe-core's checks at a desktop's and a phone's width, in the states
//! people meet it in: empty and filled, with a message or with errors, as a visitor, a
//! member and an admin; and every error page that can be reached. Screenshots of each
//! check go to `target/screenshots/a11y-*.png`.

use serial_test::serial;

use super::{log_in, served_app};
use crate::support::{
    chromium::{AccessibilityAudit, Chromium},
    redis::RedisServer,
    Settings, TestApp,
};

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn every_page_passes_axe_at_desktop_and_phone_width() {
    let (app, base, mut chromium) = served_app().await;
    app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    let page = |path: &str| format!("{base}{path}");
    let mut audit = AccessibilityAudit::default();

    // A visitor.
    let visitor = chromium.browser().await;
    visitor.goto(&page("/login")).await;
    audit.check(&visitor, "a11y-login").await;
    visitor.fill("input[name=email]", "root@example.com").await;
    visitor
        .fill("input[name=password]", "not the password")
        .await;
    visitor
        .submit("form[action='/login'] button[type=submit]")
        .await;
    assert!(visitor.has("#login-error").await, "the login was refused");
    audit.check(&visitor, "a11y-login-refused").await;
    visitor.goto(&page("/register")).await;
    audit.check(&visitor, "a11y-register").await;
    visitor.fill("input[name=email]", "not an email").await;
    visitor.fill("input[name=password]", "short").await;
    visitor
        .submit("form[action='/register'] button[type=submit]")
        .await;
    assert!(
        visitor.has(".field-error").await,
        "the form shows its errors"
    );
    audit.check(&visitor, "a11y-register-invalid").await;
    for (path, name) in [
        ("/no/such/page", "a11y-not-found"),
        ("/static/no-such-file.css", "a11y-static-not-found"),
    ] {
        visitor.goto(&page(path)).await;
        assert!(visitor.text("h1").await.contains("Not found"), "{path}");
        audit.check(&visitor, name).await;
    }
    visitor.close().await;

    // An admin, logged in twice (so "my sessions" has two rows and the admin table
    // three, with Ned's), after a failed login (so the charts and the events have
    // something to show).
    let admin = chromium.browser().await;
    let _other_device = app.browser_logged_in_as("root@example.com").await;
    let _neds_laptop = app.browser_logged_in_as("ned@example.com").await;
    log_in(&admin, &base, "root@example.com", false).await;
    app.flush_audit().await;
    audit.check(&admin, "a11y-dashboard").await;
    admin.goto(&page("/platforms")).await;
    audit.check(&admin, "a11y-platforms-empty").await;
    admin.fill("input[name=name]", "Acme CRM").await;
    admin.fill("input[name=url]", "not a url").await;
    admin
        .submit("form[action='/platforms'] button[type=submit]")
        .await;
    assert!(admin.has(".field-error").await, "the form shows its errors");
    audit.check(&admin, "a11y-platforms-invalid").await;
    for (name, url) in [
        ("Acme CRM", "https://crm.example.com"),
        ("Initech Support", "https://support.example.com"),
    ] {
        admin.fill("input[name=name]", name).await;
        admin.fill("input[name=url]", url).await;
        admin
            .submit("form[action='/platforms'] button[type=submit]")
            .await;
    }
    admin
        .submit("form[action$='/activate'] button[type=submit]")
        .await;
    audit.check(&admin, "a11y-platforms").await;
    admin.goto(&page("/sessions")).await;
    audit.check(&admin, "a11y-sessions").await;
    admin.goto(&page("/account")).await;
    audit.check(&admin, "a11y-account").await;
    admin
        .fill("input[name=current_password]", "not the password")
        .await;
    admin.fill("input[name=new_password]", "short").await;
    admin
        .submit("form[action='/account/password'] button[type=submit]")
        .await;
    assert!(admin.has(".field-error").await, "the form shows its errors");
    audit.check(&admin, "a11y-account-invalid").await;
    admin.goto(&page("/admin/sessions")).await;
    audit.check(&admin, "a11y-admin").await;
    admin
        .submit("#live-sessions tr[data-email='ned@example.com'] button[data-action=end-session]")
        .await;
    assert!(
        admin.has("#admin-notice").await,
        "the page says what it did"
    );
    audit.check(&admin, "a11y-admin-ended-one").await;
    admin.goto(&page("/admin/sessions?email=nobody")).await;
    assert!(
        admin.has("#no-sessions").await,
        "nothing matches the filter"
    );
    audit.check(&admin, "a11y-admin-filtered").await;

    // The error pages a member can reach: a form without its token, a request the app
    // refuses (an admin disabling their own account), a page of admins, and a failure
    // inside the app.
    admin.goto(&page("/platforms")).await;
    admin
        .script(
            "document.querySelector(\"form[action='/platforms'] input[name=csrf_token]\").remove()",
        )
        .await;
    admin
        .submit("form[action='/platforms'] button[type=submit]")
        .await;
    assert!(admin.text("h1").await.contains("This form has expired"));
    audit.check(&admin, "a11y-error-csrf").await;
    admin.goto(&page("/admin/sessions")).await;
    admin.fill("#disable-email", "root@example.com").await;
    admin
        .submit("form[action='/admin/users/disable'] button[type=submit]")
        .await;
    assert!(admin.text("h1").await.contains("That did not work"));
    audit.check(&admin, "a11y-error-bad-request").await;
    let ned = chromium.browser().await;
    log_in(&ned, &base, "ned@example.com", false).await;
    ned.goto(&page("/admin/sessions")).await;
    assert!(ned.text("h1").await.contains("Not allowed"));
    audit.check(&ned, "a11y-error-forbidden").await;
    use sea_orm::ConnectionTrait;
    app.ctx
        .db
        .execute_unprepared("DROP TABLE platforms")
        .await
        .expect("the platforms table dropped");
    ned.goto(&page("/platforms")).await;
    assert!(ned.text("h1").await.contains("Something went wrong"));
    audit.check(&ned, "a11y-error-internal").await;
    ned.close().await;
    admin.close().await;
    audit.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn the_pages_shown_while_the_session_store_is_down_pass_axe() {
    let mut redis = RedisServer::start();
    let app = TestApp::with(Settings {
        sessions: serde_json::json!({"store": "redis", "redis": {"url": redis.url()}}),
        ..Settings::default()
    })
    .await;
    let base = app.serve().await;
    let mut chromium = Chromium::start();
    app.create_user("ann@example.com", false).await;
    let browser = chromium.browser().await;
    log_in(&browser, &base, "ann@example.com", false).await;
    let mut audit = AccessibilityAudit::default();

    redis.kill();
    browser.goto(&format!("{base}/dashboard")).await;
    assert!(browser
        .text("h1")
        .await
        .contains("Sessions are unavailable"));
    audit.check(&browser, "a11y-error-store-down").await;
    // The login page still renders, and says why logging in will not work.
    browser.goto(&format!("{base}/login")).await;
    assert!(browser
        .text("main")
        .await
        .contains("Sessions are unavailable"));
    audit.check(&browser, "a11y-login-store-down").await;
    browser.close().await;
    audit.assert_clean();
}
