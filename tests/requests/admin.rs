//! The admin monitoring page: 403 for others, numbers that match what happened, and the
//! levers that end sessions.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

use crate::support::{
    attrs, clock::words_during, csrf_token_of, location, texts, Database, Settings, TestApp,
};

fn chart_total(html: &str, id: &str) -> u64 {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(&format!("#chart-{id}")).expect("selector");
    document
        .select(&selector)
        .next()
        .and_then(|figure| figure.value().attr("data-total"))
        .and_then(|total| total.parse().ok())
        .unwrap_or_else(|| panic!("chart {id} present"))
}

#[tokio::test]
async fn non_admins_get_403_and_visitors_the_login_page() {
    let app = TestApp::start().await;
    app.create_user("max@example.com", false).await;
    let (user, _) = app.browser_logged_in_as("max@example.com").await;
    assert_eq!(user.get("/admin/sessions").await.status_code(), 403);
    let token = csrf_token_of(&user, "/dashboard").await;
    let post = user
        .post("/admin/sessions/revoke-all")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(post.status_code(), 403);
    assert_eq!(
        location(&app.browser().get("/admin/sessions").await),
        "/login"
    );
}

#[tokio::test]
async fn the_page_counts_what_happened() {
    the_page_counts_what_happened_on(Database::Sqlite).await;
}

#[tokio::test]
async fn the_page_counts_what_happened_postgres() {
    the_page_counts_what_happened_on(Database::Postgres).await;
}

async fn the_page_counts_what_happened_on(database: Database) {
    let app = TestApp::with(Settings {
        database,
        ..Settings::default()
    })
    .await;
    app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    app.create_user("ola@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (ned, _) = app.browser_logged_in_as("ned@example.com").await;
    let (_ola, _) = app.browser_logged_in_as("ola@example.com").await;
    let failed = app
        .log_in(&app.browser(), "ned@example.com", "wrong password!", false)
        .await;
    assert_eq!(failed.status_code(), 422);

    // The admin ends Ned's sessions.
    let token = csrf_token_of(&admin, "/admin/sessions").await;
    let response = admin
        .post("/admin/sessions/revoke-user")
        .form(&[("csrf_token", token.as_str()), ("email", "ned@example.com")])
        .await;
    assert_eq!(location(&response), "/admin/sessions?ended=1");
    assert_eq!(location(&ned.get("/dashboard").await), "/login");

    app.flush_audit().await;
    let html = admin.get("/admin/sessions").await.text();
    assert_eq!(
        texts(&html, "#live-total"),
        vec!["2"],
        "admin and Ola remain"
    );
    assert_eq!(texts(&html, "[data-store=memory]"), vec!["2"]);
    assert_eq!(chart_total(&html, "logins"), 3);
    assert_eq!(chart_total(&html, "failed"), 1);
    assert_eq!(chart_total(&html, "revoked"), 1);
    assert_eq!(chart_total(&html, "expired"), 0);
    assert_eq!(texts(&html, "#store-health"), vec!["up"]);
    assert!(html.contains("<svg"), "charts are pictures");
    let events = texts(&html, "#recent-events tbody tr td:nth-child(2)");
    assert_eq!(
        events.first().map(String::as_str),
        Some("revoked"),
        "newest first: {events:?}"
    );
    assert!(events.iter().any(|e| e == "login_failed"));
}

#[tokio::test]
async fn disabling_an_account_ends_its_sessions_and_bars_login() {
    let app = TestApp::start().await;
    app.create_user("boss@example.com", true).await;
    app.create_user("pia@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("boss@example.com").await;
    let (pia, _) = app.browser_logged_in_as("pia@example.com").await;

    let token = csrf_token_of(&admin, "/admin/sessions").await;
    let response = admin
        .post("/admin/users/disable")
        .form(&[("csrf_token", token.as_str()), ("email", "pia@example.com")])
        .await;
    assert_eq!(location(&response), "/admin/sessions?ended=1");
    assert_eq!(location(&pia.get("/dashboard").await), "/login");
    let again = app
        .log_in(
            &app.browser(),
            "pia@example.com",
            "correct horse battery",
            false,
        )
        .await;
    assert_eq!(again.status_code(), 422, "a disabled account cannot log in");
}

#[tokio::test]
async fn ending_everyones_sessions_keeps_the_admins() {
    let app = TestApp::start().await;
    app.create_user("chief@example.com", true).await;
    app.create_user("quy@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("chief@example.com").await;
    let (quy, _) = app.browser_logged_in_as("quy@example.com").await;
    let token = csrf_token_of(&admin, "/admin/sessions").await;
    let response = admin
        .post("/admin/sessions/revoke-all")
        .form(&[("csrf_token", token.as_str())])
        .await;
    // The job runs in the background: the answer comes at once.
    assert_eq!(location(&response), "/admin/sessions?job=started");
    let finished = crate::support::clock::eventually(crate::support::clock::PATIENCE, || async {
        texts(
            &admin.get("/admin/sessions").await.text(),
            "#end-everyone-job",
        ) == ["Ending all sessions: finished, 1 ended"]
    })
    .await;
    assert!(finished, "the page shows the job finished");
    assert_eq!(location(&quy.get("/dashboard").await), "/login");
    assert_eq!(admin.get("/admin/sessions").await.status_code(), 200);
}

/// A user agent of a real browser, so the table can name the device.
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

#[tokio::test]
async fn the_live_sessions_table_names_users_and_devices_and_filters_by_email() {
    let app = TestApp::start().await;
    app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    app.create_user("ola@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let mut ned = app.browser();
    ned.add_header("user-agent", FIREFOX);
    let before_login = Utc::now().trunc_subsecs(0);
    let login = app
        .log_in(&ned, "ned@example.com", "correct horse battery", false)
        .await;
    assert_eq!(login.status_code(), 303);
    let (_ola, _) = app.browser_logged_in_as("ola@example.com").await;

    let before_page = Utc::now();
    let html = admin.get("/admin/sessions").await.text();
    let rendered = (before_page, Utc::now());
    let emails = attrs(&html, "#live-sessions tbody tr", "data-email");
    assert_eq!(emails.len(), 3, "{emails:?}");
    for email in ["root@example.com", "ned@example.com", "ola@example.com"] {
        assert!(emails.iter().any(|e| e == email), "{email} in {emails:?}");
    }
    let ned_row = texts(&html, "#live-sessions tr[data-email='ned@example.com'] td");
    assert!(
        ned_row[0].contains("Some Body") && ned_row[0].contains("ned@example.com"),
        "{ned_row:?}"
    );
    assert_eq!(ned_row[1], "Firefox on Linux");
    assert!(!ned_row[2].is_empty(), "an IP: {ned_row:?}");
    // Created and last seen at the login, in words relative to when the page rendered.
    let times = attrs(
        &html,
        "#live-sessions tr[data-email='ned@example.com'] time",
        "datetime",
    );
    assert_eq!(times.len(), 2, "{times:?}");
    for (cell, (what, at)) in [&ned_row[3], &ned_row[4]]
        .into_iter()
        .zip(["created", "last seen"].into_iter().zip(&times))
    {
        let when = DateTime::parse_from_rfc3339(at).expect("RFC 3339");
        assert!(
            when >= before_login && when <= rendered.0,
            "{what} at the login: {at}"
        );
        assert!(
            words_during(at, rendered).contains(cell),
            "{what}: {cell:?} for {at}"
        );
    }
    assert_eq!(ned_row[5], "memory");

    let filtered = admin.get("/admin/sessions?email=NED@").await.text();
    assert_eq!(
        attrs(&filtered, "#live-sessions tbody tr", "data-email"),
        vec!["ned@example.com"]
    );
    let none = admin.get("/admin/sessions?email=nobody").await.text();
    assert!(texts(&none, "#no-sessions")
        .concat()
        .contains("No live sessions"));
}

#[tokio::test]
async fn an_admin_ends_one_session_or_all_of_a_users_from_the_table() {
    let app = TestApp::start().await;
    app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (laptop, laptop_id) = app.browser_logged_in_as("ned@example.com").await;
    let (phone, _) = app.browser_logged_in_as("ned@example.com").await;
    let (tablet, _) = app.browser_logged_in_as("ned@example.com").await;

    // The row's button ends that session and no other.
    let laptop_ref = app
        .sessions()
        .session_ref(&crate::support::parse_id(&laptop_id));
    let html = admin.get("/admin/sessions").await.text();
    let token = csrf_token_of(&admin, "/admin/sessions").await;
    let action = format!("/admin/sessions/{}/revoke", laptop_ref.as_str());
    assert_eq!(
        attrs(&html, &format!("form[action='{action}']"), "method"),
        vec!["post"],
        "a button per row"
    );
    let response = admin
        .post(&action)
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(location(&response), "/admin/sessions?ended=1");
    assert_eq!(location(&laptop.get("/dashboard").await), "/login");
    assert_eq!(phone.get("/dashboard").await.status_code(), 200);
    assert_eq!(tablet.get("/dashboard").await.status_code(), 200);
    // Ending it again finds nothing to end.
    let again = admin
        .post(&action)
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(location(&again), "/admin/sessions?error=unknown_session");
    // Without the token nothing happens.
    let html = admin.get("/admin/sessions").await.text();
    let phone_ref = attrs(
        &html,
        "#live-sessions tr[data-email='ned@example.com']",
        "data-session-ref",
    );
    assert_eq!(phone_ref.len(), 2);
    let forged = admin
        .post(&format!("/admin/sessions/{}/revoke", phone_ref[0]))
        .await;
    assert_eq!(forged.status_code(), 403);

    // The user's button ends all of theirs, not the admin's.
    let response = admin
        .post("/admin/sessions/revoke-user")
        .form(&[("csrf_token", token.as_str()), ("email", "ned@example.com")])
        .await;
    assert_eq!(location(&response), "/admin/sessions?ended=2");
    assert_eq!(location(&phone.get("/dashboard").await), "/login");
    assert_eq!(location(&tablet.get("/dashboard").await), "/login");
    let html = admin.get("/admin/sessions").await.text();
    assert_eq!(
        attrs(&html, "#live-sessions tbody tr", "data-email"),
        vec!["root@example.com"]
    );
    let notice = admin.get("/admin/sessions?ended=2").await.text();
    assert_eq!(texts(&notice, "#admin-notice"), vec!["2 sessions ended."]);
}

#[tokio::test]
async fn events_name_users_and_the_acting_admin_and_page_by_25() {
    // Refused attempts are one row per throttle counter and window: the failures that make
    // the pages are spread over accounts, each within its limit (the address's is raised).
    let app = TestApp::with_sessions(json!({"throttle": {"ip_failures": 100}})).await;
    app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (_ned, _) = app.browser_logged_in_as("ned@example.com").await;
    // 30 failed logins, 5 for each of 6 accounts that do not exist: 30 more events.
    let stranger = app.browser();
    for account in 0..6 {
        for _ in 0..5 {
            let failed = app
                .log_in(
                    &stranger,
                    &format!("nobody{account}@example.com"),
                    "wrong password!",
                    false,
                )
                .await;
            assert_eq!(failed.status_code(), 422);
        }
    }
    let token = csrf_token_of(&admin, "/admin/sessions").await;
    admin
        .post("/admin/sessions/revoke-user")
        .form(&[("csrf_token", token.as_str()), ("email", "ned@example.com")])
        .await;
    app.flush_audit().await;

    let first = admin.get("/admin/sessions").await.text();
    let rows = texts(&first, "#recent-events tbody tr");
    assert_eq!(rows.len(), 25, "25 a page");
    let newest = texts(&first, "#recent-events tbody tr:first-child td");
    assert_eq!(newest[1], "revoked");
    assert_eq!(newest[2], "ned@example.com", "the user by email");
    assert_eq!(newest[3], "root@example.com", "who did it");
    let own_login = texts(&first, "#recent-events tr[data-event=login] td[data-actor]");
    assert!(
        own_login.iter().all(String::is_empty),
        "nobody else acted on a login"
    );
    // Newest first, by event ID: the "Older events" link carries the last one shown.
    let ids = attrs(&first, "#recent-events tbody tr", "data-event-id");
    let older = attrs(&first, ".pager a[rel=next]", "href");
    assert_eq!(older, vec![format!("/admin/sessions?before={}", ids[24])]);
    assert!(attrs(&first, ".pager a[rel=first]", "href").is_empty());

    let events_in_all = {
        let mut all = rows.len();
        let mut next = older[0].clone();
        loop {
            let html = admin.get(&next).await.text();
            let n = texts(&html, "#recent-events tbody tr").len();
            all += n;
            assert_eq!(
                attrs(&html, ".pager a[rel=first]", "href"),
                vec!["/admin/sessions"]
            );
            match attrs(&html, ".pager a[rel=next]", "href").pop() {
                None => {
                    assert!(n <= 25 && n > 0);
                    break all;
                }
                Some(href) => {
                    assert_eq!(n, 25);
                    next = href;
                }
            }
        }
    };
    // 2 logins (+ created), 30 failures, 1 revocation: at least 33 events, on 2 pages.
    assert!(events_in_all >= 33, "{events_in_all}");
}

/// The admin page after three failed logins, and the UTC hour (`HH:00`) in which both
/// the failures and the page happened.
async fn page_after_three_failed_logins() -> (String, String) {
    // The chart counts per clock hour: when the hour turns in the middle of the
    // scenario, the failures are split between two bars. Run it again then.
    loop {
        let hour = || Utc::now().format("%H:00").to_string();
        let started = hour();
        let app = TestApp::start().await;
        app.create_user("root@example.com", true).await;
        let (admin, _) = app.browser_logged_in_as("root@example.com").await;
        for _ in 0..3 {
            app.log_in(&app.browser(), "root@example.com", "wrong password!", false)
                .await;
        }
        app.flush_audit().await;
        let html = admin.get("/admin/sessions").await.text();
        if hour() == started {
            return (html, started);
        }
    }
}

#[tokio::test]
async fn charts_have_an_hour_axis_a_labelled_maximum_and_bar_tooltips() {
    let (html, now) = page_after_three_failed_logins().await;

    let failed = "#chart-failed svg";
    let ticks = texts(&html, &format!("{failed} text.axis-label:not([data-max])"));
    assert!(ticks.len() >= 5, "0 and the hour labels: {ticks:?}");
    assert!(ticks.iter().any(|t| t.ends_with(":00")), "{ticks:?}");
    assert_eq!(texts(&html, &format!("{failed} text[data-max]")), vec!["3"]);
    let tooltips = texts(&html, &format!("{failed} rect title"));
    assert_eq!(tooltips.len(), 24);
    assert!(
        tooltips
            .last()
            .is_some_and(|t| t.starts_with(&now) && t.ends_with("UTC: 3 failed logins")),
        "the current hour's bar: {:?}",
        tooltips.last()
    );
    assert!(
        tooltips[0].ends_with(": 0 failed logins"),
        "{:?}",
        tooltips[0]
    );
    // Nothing expired: a sentence, not an empty box.
    assert_eq!(
        texts(&html, "#chart-expired [data-empty]"),
        vec!["No events"]
    );
    assert!(texts(&html, "#chart-expired svg").is_empty());
}

#[tokio::test]
async fn the_filter_keeps_pages_and_is_escaped() {
    let app = TestApp::with_sessions(json!({})).await;
    app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let html = admin
        .get("/admin/sessions?email=%3Cscript%3Ex%3C%2Fscript%3E")
        .await
        .text();
    assert!(
        !html.contains("<script>x</script>"),
        "the filter is escaped"
    );
    assert_eq!(
        attrs(&html, "#filter-email", "value"),
        vec!["<script>x</script>"]
    );
}
