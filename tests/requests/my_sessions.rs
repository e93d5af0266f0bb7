//! "My sessions": what a user sees of their sessions and how ending one is felt by the
//! other browser.

use serde_json::Value;

use crate::support::{csrf_token_of, location, texts, Database, Settings, TestApp};

async fn authenticated(browser: &axum_test::TestServer) -> bool {
    let api: Value = browser.get("/api/session").await.json();
    api["authenticated"] == true
}

async fn revocation_is_seen_by_the_other_browser(database: Database) {
    let app = TestApp::with(Settings {
        database,
        ..Settings::default()
    })
    .await;
    app.create_user("ann@example.com", false).await;
    let (laptop, laptop_id) = app.browser_logged_in_as("ann@example.com").await;
    let (phone, phone_id) = app.browser_logged_in_as("ann@example.com").await;

    let page = laptop.get("/sessions").await;
    assert_eq!(page.status_code(), 200);
    let html = page.text();
    let document = scraper::Html::parse_document(&html);
    let rows = scraper::Selector::parse("#sessions li").expect("selector");
    let listed: Vec<(String, bool)> = document
        .select(&rows)
        .map(|li| {
            let session_ref = li
                .value()
                .attr("data-session-ref")
                .unwrap_or_default()
                .to_string();
            let current = li
                .select(&scraper::Selector::parse("[data-current]").expect("selector"))
                .next()
                .is_some();
            (session_ref, current)
        })
        .collect();
    assert_eq!(listed.len(), 2, "both sessions listed: {listed:?}");
    assert_eq!(
        listed.iter().filter(|(_, current)| *current).count(),
        1,
        "one marked current"
    );
    let phone_ref = app
        .sessions()
        .session_ref(&crate::support::parse_id(&phone_id));
    let (other_ref, _) = listed
        .iter()
        .find(|(_, current)| !current)
        .expect("the other session");
    assert_eq!(other_ref, phone_ref.as_str());
    assert!(
        !html.contains(&laptop_id) && !html.contains(&phone_id),
        "the page shows refs, never IDs"
    );

    let token = csrf_token_of(&laptop, "/sessions").await;
    let revoke = laptop
        .post(&format!("/sessions/{other_ref}/revoke"))
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(revoke.status_code(), 303);
    assert_eq!(location(&revoke), "/sessions");

    let next = phone.get("/dashboard").await;
    assert_eq!(
        location(&next),
        "/login",
        "the phone's next request lands on /login"
    );
    assert!(
        !app.store_has(&phone_id).await,
        "its record is gone from the store"
    );
    assert!(authenticated(&laptop).await, "the laptop is untouched");
    app.flush_audit().await;
}

#[tokio::test]
async fn revocation_is_seen_by_the_other_browser_sqlite() {
    revocation_is_seen_by_the_other_browser(Database::Sqlite).await;
}

#[tokio::test]
async fn revocation_is_seen_by_the_other_browser_postgres() {
    revocation_is_seen_by_the_other_browser(Database::Postgres).await;
}

#[tokio::test]
async fn revoke_others_keeps_the_current_session() {
    let app = TestApp::start().await;
    app.create_user("bea@example.com", false).await;
    let (main, _) = app.browser_logged_in_as("bea@example.com").await;
    let (second, _) = app.browser_logged_in_as("bea@example.com").await;
    let (third, _) = app.browser_logged_in_as("bea@example.com").await;

    let token = csrf_token_of(&main, "/sessions").await;
    let response = main
        .post("/sessions/revoke-others")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(response.status_code(), 303);
    assert!(authenticated(&main).await);
    assert!(!authenticated(&second).await);
    assert!(!authenticated(&third).await);
    let html = main.get("/sessions").await.text();
    assert_eq!(texts(&html, "#sessions li").len(), 1);
}

#[tokio::test]
async fn another_users_session_ref_is_not_found() {
    let app = TestApp::start().await;
    app.create_user("cat@example.com", false).await;
    app.create_user("dan@example.com", false).await;
    let (cat, _) = app.browser_logged_in_as("cat@example.com").await;
    let (dan, dan_id) = app.browser_logged_in_as("dan@example.com").await;
    let dan_ref = app
        .sessions()
        .session_ref(&crate::support::parse_id(&dan_id));

    let token = csrf_token_of(&cat, "/sessions").await;
    for path in [
        format!("/sessions/{dan_ref}/revoke"),
        "/sessions/..%2F..%2Fetc/revoke".to_string(),
    ] {
        let response = cat
            .post(&path)
            .form(&[("csrf_token", token.as_str())])
            .await;
        assert_eq!(response.status_code(), 404, "{path}");
    }
    assert!(authenticated(&dan).await, "Dan's session was not touched");
}

#[tokio::test]
async fn changing_the_password_ends_the_others_and_rotates_this_one() {
    let app = TestApp::start().await;
    app.create_user("eli@example.com", false).await;
    let (main, main_id) = app.browser_logged_in_as("eli@example.com").await;
    let (other, _) = app.browser_logged_in_as("eli@example.com").await;

    let token = csrf_token_of(&main, "/account").await;
    let wrong = main
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", "nope"),
            ("new_password", "a brand new secret"),
        ])
        .await;
    assert_eq!(wrong.status_code(), 422);
    assert_eq!(
        texts(&wrong.text(), "#current-error"),
        vec!["That is not your current password."]
    );
    assert!(authenticated(&other).await, "a failed change ends nothing");

    let response = main
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", "correct horse battery"),
            ("new_password", "a brand new secret"),
        ])
        .await;
    assert_eq!(response.status_code(), 303);
    let new_id = crate::support::session_id_set(&response, "session").expect("a new session ID");
    assert_ne!(new_id, main_id);
    assert!(!app.store_has(&main_id).await, "the old ID is dead at once");
    assert!(
        authenticated(&main).await,
        "still logged in, under the new ID"
    );
    assert!(!authenticated(&other).await, "the other session ended");

    let old = app
        .log_in(
            &app.browser(),
            "eli@example.com",
            "correct horse battery",
            false,
        )
        .await;
    assert_eq!(old.status_code(), 422);
    let new = app
        .log_in(
            &app.browser(),
            "eli@example.com",
            "a brand new secret",
            false,
        )
        .await;
    assert_eq!(location(&new), "/dashboard");
}

#[tokio::test]
async fn a_logged_out_session_leaves_the_list() {
    let app = TestApp::start().await;
    app.create_user("fox@example.com", false).await;
    let (main, _) = app.browser_logged_in_as("fox@example.com").await;
    let (other, _) = app.browser_logged_in_as("fox@example.com").await;
    assert_eq!(
        texts(&main.get("/sessions").await.text(), "#sessions li").len(),
        2
    );
    let token = csrf_token_of(&other, "/dashboard").await;
    other
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(
        texts(&main.get("/sessions").await.text(), "#sessions li").len(),
        1
    );
}
