//! Idle timeout, absolute lifetime and touch throttling, enforced by the server. Time
//! passes by ageing the session's stored timestamps (`TestApp::age_session`), never by
//! sleeping: the timeouts are hours long, and each step lands exactly on or well inside a
//! deadline, so a slow machine cannot change an outcome.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use tessera::models::_entities::user_sessions;
use tower_sessions::session_store::SessionStore;

use crate::support::{location, parse_id, session_id_set, TestApp};

const HOUR: i64 = 3600;

/// A browser logged in as a new user, and its session's cookie ID.
async fn logged_in(app: &TestApp, email: &str) -> (axum_test::TestServer, String) {
    let browser = app.browser();
    app.register(&browser, "Kim", email, "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, email, "correct horse battery", false)
        .await;
    assert_eq!(location(&login), "/dashboard");
    (browser, session_id_set(&login, "session").expect("id"))
}

/// Why the registry says the session `id` ended, if it did.
async fn end_reason(app: &TestApp, id: &str) -> Option<String> {
    let session_ref = app.sessions().session_ref(&parse_id(id));
    user_sessions::Entity::find()
        .filter(user_sessions::Column::SessionRef.eq(session_ref.as_str()))
        .one(&app.ctx.db)
        .await
        .expect("registry answers")
        .and_then(|row| row.end_reason)
}

#[tokio::test]
async fn idle_session_ends() {
    let app = TestApp::with_sessions(
        json!({"idle_timeout_secs": HOUR, "absolute_lifetime_secs": 24 * HOUR}),
    )
    .await;
    let (browser, id) = logged_in(&app, "kim@example.com").await;
    assert_eq!(browser.get("/dashboard").await.status_code(), 200);

    // Half the idle timeout later (the request touches the session), then a full one.
    app.age_session(&id, HOUR / 2).await;
    assert_eq!(
        browser.get("/dashboard").await.status_code(),
        200,
        "used within the idle timeout"
    );
    app.age_session(&id, HOUR).await;
    let response = browser.get("/dashboard").await;
    assert_eq!(response.status_code(), 303);
    assert_eq!(location(&response), "/login");
    assert!(app
        .sessions()
        .store()
        .load(&parse_id(&id))
        .await
        .expect("store")
        .is_none());
    assert_eq!(end_reason(&app, &id).await.as_deref(), Some("idle_expired"));
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_the_absolute_lifetime() {
    let app = TestApp::with_sessions(json!({
        "idle_timeout_secs": HOUR,
        "absolute_lifetime_secs": 3 * HOUR,
        "touch_interval_secs": 60
    }))
    .await;
    let (browser, id) = logged_in(&app, "lee@example.com").await;

    // Used every 40 minutes: alive 2 h 40 min after login, well past the 1 h idle timeout.
    for _ in 0..4 {
        app.age_session(&id, 40 * 60).await;
        assert_eq!(browser.get("/dashboard").await.status_code(), 200);
    }
    // 20 minutes after its last use, 3 h after login: over, however active.
    app.age_session(&id, 20 * 60).await;
    let response = browser.get("/dashboard").await;
    assert_eq!(
        location(&response),
        "/login",
        "3 h after login the session is over, however active"
    );
    assert_eq!(
        end_reason(&app, &id).await.as_deref(),
        Some("absolute_expired")
    );
}

#[tokio::test]
async fn touch_writes_the_store_at_most_once_per_interval() {
    let app = TestApp::with_sessions(json!({
        "idle_timeout_secs": 7 * 24 * HOUR,
        "absolute_lifetime_secs": 30 * 24 * HOUR,
        "touch_interval_secs": 24 * HOUR
    }))
    .await;
    let (browser, id) = logged_in(&app, "max@example.com").await;
    let sessions = app.sessions();

    let before = sessions.store_counts();
    for _ in 0..10 {
        let api: Value = browser.get("/api/session").await.json();
        assert_eq!(api["authenticated"], true);
    }
    let after_burst = sessions.store_counts();
    assert_eq!(
        after_burst.writes(),
        before.writes(),
        "reads within the interval write nothing"
    );
    assert_eq!(
        after_burst.loads,
        before.loads + 10,
        "each request loads once"
    );

    // A day later (ageing works under the counted store: it is not a request's traffic).
    app.age_session(&id, 24 * HOUR).await;
    let first: Value = browser.get("/api/session").await.json();
    for _ in 0..5 {
        browser.get("/api/session").await;
    }
    let after_touch = sessions.store_counts();
    assert_eq!(
        after_touch.writes(),
        before.writes() + 1,
        "one touch after the interval"
    );
    assert_ne!(first["last_activity"], Value::Null);
}

#[tokio::test]
async fn an_open_pages_status_checks_do_not_keep_an_idle_session_alive() {
    let app = TestApp::with_sessions(json!({
        "idle_timeout_secs": HOUR,
        "absolute_lifetime_secs": 24 * HOUR,
        "touch_interval_secs": 60
    }))
    .await;
    let (browser, id) = logged_in(&app, "max@example.com").await;

    // A forgotten tab checks its status; each check comes long after the touch interval,
    // so a check that counted as activity would keep the session alive.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let status: Value = browser.get("/api/session/status").await.json();
        statuses.push(status["authenticated"].as_bool());
        app.age_session(&id, HOUR / 2).await;
    }
    let status: Value = browser.get("/api/session/status").await.json();
    statuses.push(status["authenticated"].as_bool());
    assert_eq!(
        statuses,
        vec![Some(true), Some(true), Some(false)],
        "the session ends an idle timeout after its last use"
    );
    assert_eq!(location(&browser.get("/dashboard").await), "/login");
}
