//! The admin monitoring page: 403 for others, numbers that match what happened, and the
//! levers that end sessions.

use crate::support::{csrf_token_of, location, texts, TestApp};

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
    let app = TestApp::start().await;
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
    assert_eq!(location(&response), "/admin/sessions?ended=1");
    assert_eq!(location(&quy.get("/dashboard").await), "/login");
    assert_eq!(admin.get("/admin/sessions").await.status_code(), 200);
}
