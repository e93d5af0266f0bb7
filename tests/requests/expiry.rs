//! Idle timeout, absolute lifetime and touch throttling, enforced by the server. Short
//! configured timeouts keep the sleeps to a few seconds.

use std::time::Duration;

use serde_json::{json, Value};
use tower_sessions::session_store::SessionStore;

use crate::support::{location, parse_id, session_id_set, TestApp};

async fn sleep_secs(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test]
async fn idle_session_ends() {
    let app = TestApp::with_sessions(
        json!({"idle_timeout_secs": 2, "absolute_lifetime_secs": 60, "touch_interval_secs": 1}),
    )
    .await;
    let browser = app.browser();
    app.register(&browser, "Kim", "kim@example.com", "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, "kim@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, "session").expect("id");
    assert_eq!(browser.get("/dashboard").await.status_code(), 200);

    sleep_secs(2.2).await;
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
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_the_absolute_lifetime() {
    // Timestamps have one-second resolution; the margins below allow for it.
    let app = TestApp::with_sessions(
        json!({"idle_timeout_secs": 4, "absolute_lifetime_secs": 6, "touch_interval_secs": 1}),
    )
    .await;
    let browser = app.browser();
    app.register(&browser, "Lee", "lee@example.com", "correct horse battery")
        .await;
    app.log_in(&browser, "lee@example.com", "correct horse battery", false)
        .await;

    // Active every 1.5 s: alive 4.5 s after login, past the 4 s idle timeout.
    for _ in 0..3 {
        sleep_secs(1.5).await;
        assert_eq!(browser.get("/dashboard").await.status_code(), 200);
    }
    sleep_secs(1.7).await;
    let response = browser.get("/dashboard").await;
    assert_eq!(
        location(&response),
        "/login",
        "6 s after login the session is over, however active"
    );
}

#[tokio::test]
async fn touch_writes_the_store_at_most_once_per_interval() {
    let app =
        TestApp::with_sessions(json!({"idle_timeout_secs": 60, "touch_interval_secs": 2})).await;
    let browser = app.logged_in_browser("max@example.com").await;
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

    sleep_secs(2.1).await;
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
    let app = TestApp::with_sessions(
        json!({"idle_timeout_secs": 3, "absolute_lifetime_secs": 60, "touch_interval_secs": 1}),
    )
    .await;
    let browser = app.browser();
    app.register(&browser, "Max", "max@example.com", "correct horse battery")
        .await;
    app.log_in(&browser, "max@example.com", "correct horse battery", false)
        .await;

    // A forgotten tab checks every half second; the session still ends when idle.
    let mut statuses = Vec::new();
    for _ in 0..9 {
        sleep_secs(0.5).await;
        let status: Value = browser.get("/api/session/status").await.json();
        statuses.push(status["authenticated"].as_bool());
    }
    assert_eq!(statuses.first(), Some(&Some(true)), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&Some(false)), "{statuses:?}");
    assert_eq!(location(&browser.get("/dashboard").await), "/login");
}
