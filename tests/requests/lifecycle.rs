//! The lifecycle leaves no half state: when the registry refuses a step, the browser gets
//! no cookie for a session the registry does not know, and no record is left behind.

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::support::{csrf_token_of, location, session_id_set, Settings, TestApp};

async fn file_app() -> TestApp {
    TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await
}

fn session_files(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.session_dir())
        .expect("session dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| !name.starts_with('.'))
        .collect()
}

async fn sql(app: &TestApp, statement: &str) {
    app.ctx
        .db
        .execute_unprepared(statement)
        .await
        .expect(statement);
}

async fn live_rows(app: &TestApp, user_id: i64) -> usize {
    app.sessions()
        .live_sessions_of(user_id)
        .await
        .expect("registry")
        .len()
}

#[tokio::test]
async fn a_login_the_registry_refuses_sets_no_cookie_and_keeps_no_record() {
    let app = file_app().await;
    let user = app.create_user("uma@example.com", false).await;
    sql(
        &app,
        "CREATE TRIGGER registry_down BEFORE INSERT ON user_sessions \
         BEGIN SELECT RAISE(ABORT, 'registry down'); END",
    )
    .await;
    let browser = app.browser();
    let response = app
        .log_in(&browser, "uma@example.com", "correct horse battery", false)
        .await;
    assert!(
        response.status_code().is_server_error(),
        "{}",
        response.status_code()
    );
    assert_eq!(
        session_id_set(&response, "session"),
        None,
        "no cookie for a session the registry does not know"
    );
    assert_eq!(session_files(&app), Vec::<String>::new(), "no record left");
    assert_eq!(browser.get("/dashboard").await.status_code(), 303);

    sql(&app, "DROP TRIGGER registry_down").await;
    let response = app
        .log_in(&browser, "uma@example.com", "correct horse battery", false)
        .await;
    assert_eq!(
        location(&response),
        "/dashboard",
        "works again once it is back"
    );
    assert_eq!(live_rows(&app, user.id).await, 1);
    assert_eq!(session_files(&app).len(), 1);
}

#[tokio::test]
async fn a_rotation_the_registry_refuses_ends_the_session_instead_of_hiding_it() {
    let app = file_app().await;
    let user = app.create_user("vic@example.com", false).await;
    let (browser, id) = app.browser_logged_in_as("vic@example.com").await;
    sql(
        &app,
        "CREATE TRIGGER rotation_down BEFORE UPDATE OF session_ref ON user_sessions \
         BEGIN SELECT RAISE(ABORT, 'registry down'); END",
    )
    .await;
    let token = csrf_token_of(&browser, "/account").await;
    let response = browser
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", "correct horse battery"),
            ("new_password", "a brand new passphrase"),
        ])
        .await;
    assert!(
        response.status_code().is_server_error(),
        "{}",
        response.status_code()
    );
    assert_eq!(session_id_set(&response, "session"), None, "no new cookie");
    assert_eq!(session_files(&app), Vec::<String>::new(), "no record left");
    let old = app
        .browser()
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    assert_eq!(location(&old), "/login", "the old ID is dead");
    assert_eq!(live_rows(&app, user.id).await, 0, "and its row says so");
}

/// A session whose registry row has ended (by whatever path) is over: its next touch of
/// the row finds nothing live, and the session ends there instead of going on unlisted.
#[tokio::test]
async fn a_touch_that_finds_its_row_ended_ends_the_session() {
    let app = TestApp::with(Settings {
        // Every request records its activity.
        sessions: json!({"store": "file", "touch_interval_secs": 0}),
        ..Settings::default()
    })
    .await;
    let user = app.create_user("wes@example.com", false).await;
    let (browser, id) = app.browser_logged_in_as("wes@example.com").await;
    assert_eq!(browser.get("/dashboard").await.status_code(), 200);
    sql(
        &app,
        "UPDATE user_sessions SET ended_at = CURRENT_TIMESTAMP, end_reason = 'revoked_by_admin'",
    )
    .await;
    assert_eq!(location(&browser.get("/dashboard").await), "/login");
    assert!(!app.store_has(&id).await, "the record is gone");
    assert_eq!(session_files(&app), Vec::<String>::new());
    assert_eq!(live_rows(&app, user.id).await, 0);
}

/// A rotation renames only a live row: when the row has ended meanwhile, the session has
/// ended, and the request gets the login page instead of a new ID.
#[tokio::test]
async fn a_rotation_of_an_ended_row_ends_the_session() {
    let app = file_app().await;
    let user = app.create_user("xia@example.com", false).await;
    let (browser, _) = app.browser_logged_in_as("xia@example.com").await;
    let token = csrf_token_of(&browser, "/account").await;
    // The row ends while the request runs (an admin's revoke, whose store delete has not
    // landed yet): the trigger ends it just before the password is written.
    sql(
        &app,
        "CREATE TRIGGER revoked_meanwhile AFTER UPDATE OF password ON users \
         BEGIN UPDATE user_sessions SET ended_at = CURRENT_TIMESTAMP, \
         end_reason = 'revoked_by_admin' WHERE user_id = NEW.id; END",
    )
    .await;
    let response = browser
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", "correct horse battery"),
            ("new_password", "a brand new passphrase"),
        ])
        .await;
    assert_eq!(location(&response), "/login");
    assert_eq!(session_id_set(&response, "session"), None, "no new cookie");
    assert_eq!(session_files(&app), Vec::<String>::new(), "no record left");
    assert_eq!(location(&browser.get("/dashboard").await), "/login");
    assert_eq!(live_rows(&app, user.id).await, 0);
}
