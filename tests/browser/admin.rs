//! The admin page in a real browser: the live sessions table, ending someone's session
//! from it (their browser follows), the charts, and a phone's width.

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use serial_test::serial;

use super::{flash, log_in, served_app};
use crate::support::{chromium::PHONE, clock::words_during};

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

    let before_page = Utc::now();
    admin.goto(&format!("{base}/admin/sessions")).await;
    let rendered = (before_page, Utc::now());
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
    let created = admin
        .script(
            "const t = document.querySelector(\"#live-sessions tr[data-email='ned@example.com'] time\");
            return [t.dateTime, t.textContent, t.title];",
        )
        .await;
    let [at, words, hover] = [0, 1, 2].map(|n| created[n].as_str().unwrap_or_default().to_string());
    assert!(
        words_during(&at, rendered).contains(&words) && ned_row.contains(&words),
        "when Ned logged in, in words: {words:?} for {at}"
    );
    let year_in_kolkata = DateTime::parse_from_rfc3339(&at)
        .expect("RFC 3339")
        .with_timezone(&FixedOffset::east_opt(5 * 3600 + 1800).expect("+05:30"))
        .year();
    assert!(
        hover.contains(&year_in_kolkata.to_string()) && hover.ends_with("GMT+5:30"),
        "the exact time on hover, in the reader's zone (Asia/Kolkata): {hover}"
    );
    // Whichever hour it fell in: the bar of the failed login tells its count.
    let tooltip = admin
        .script(
            "return [...document.querySelectorAll('#chart-failed rect:not(.empty) title')].map((t) => t.textContent)",
        )
        .await;
    assert!(
        tooltip.as_array().is_some_and(|bars| bars.len() == 1
            && bars[0]
                .as_str()
                .is_some_and(|t| t.ends_with("UTC: 1 failed login"))),
        "{tooltip}"
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
        ned.eventually_at("/login").await,
        "Ned's browser stayed on {}",
        ned.path().await
    );
    assert!(
        ned.eventually_text("#flash", |t| t.contains("Your session has ended"))
            .await,
        "{:?}",
        flash(&ned).await
    );
    admin.screenshot("admin-02-ended-one").await;

    admin.resize(PHONE).await;
    admin.goto(&format!("{base}/admin/sessions")).await;
    admin.screenshot("admin-03-phone").await;
    assert!(
        admin.fits_its_width().await,
        "the admin page overflows a phone"
    );
    admin.close().await;
    ned.close().await;
}
