//! The admin page in a real browser: the live sessions table, ending someone's session
//! from it (their browser follows within two seconds), the charts, and a phone's width.

use std::time::Duration;

use serial_test::serial;

use super::{flash, log_in, served_app};
use crate::support::chromium::eventually;

#[tokio::test(flavor = "multi_thread")]
#[serial(browser)]
async fn an_admin_sees_live_sessions_and_ends_one_from_the_table() {
    let (app, base, mut chromium) = served_app().await;
    app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    let admin = chromium.browser().await;
    let ned = chromium.browser().await;
    log_in(&admin, &base, "root@example.com", false).await;
    log_in(&ned, &base, "ned@example.com", false).await;
    // A failed login, so one chart has a bar to point at.
    let _ = app
        .log_in(&app.browser(), "ned@example.com", "wrong password!", false)
        .await;
    app.flush_audit().await;

    admin.goto(&format!("{base}/admin/sessions")).await;
    let rows = admin
        .client
        .find_all(fantoccini::Locator::Css("#live-sessions tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    let ned_row = admin
        .text("#live-sessions tr[data-email='ned@example.com']")
        .await;
    assert!(ned_row.contains("Chrome"), "the device in words: {ned_row}");
    assert!(ned_row.contains("just now"), "{ned_row}");
    let tooltip = admin
        .script(
            "return document.querySelector('#chart-failed rect:last-of-type title').textContent",
        )
        .await;
    assert!(
        tooltip
            .as_str()
            .is_some_and(|t| t.ends_with("UTC: 1 failed login")),
        "{tooltip}"
    );
    let hover = admin
        .script("return document.querySelector('#live-sessions time').title")
        .await;
    assert!(
        hover
            .as_str()
            .is_some_and(|t| t.contains("2026") && t.ends_with("GMT+5:30")),
        "the exact time on hover, in the reader's zone (Asia/Kolkata): {hover}"
    );
    admin.screenshot("admin-01-monitoring").await;
    admin
        .script("document.querySelector('.charts').scrollIntoView()")
        .await;
    admin.screenshot("admin-01-charts-and-events").await;

    admin
        .submit("#live-sessions tr[data-email='ned@example.com'] button[data-action=end-session]")
        .await;
    assert_eq!(admin.text("#admin-notice").await, "1 session ended.");
    assert!(
        eventually(Duration::from_secs(2), || async {
            ned.path().await == "/login"
        })
        .await,
        "Ned's browser stayed on {}",
        ned.path().await
    );
    assert!(flash(&ned).await.contains("Your session has ended"));
    admin.screenshot("admin-02-ended-one").await;

    admin
        .client
        .set_window_size(390, 844)
        .await
        .expect("resize");
    admin.goto(&format!("{base}/admin/sessions")).await;
    admin.screenshot("admin-03-phone").await;
    assert!(
        admin.fits_its_width().await,
        "the admin page overflows a phone"
    );
    admin.close().await;
    ned.close().await;
}
