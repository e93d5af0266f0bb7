//! `/_health` and `cargo loco doctor` report the database and the session store.

use serde_json::{json, Value};

use crate::support::{redis::RedisServer, Settings, TestApp};

#[tokio::test]
async fn health_is_200_when_all_answer_and_503_naming_the_store_when_it_does_not() {
    let app = TestApp::start().await;
    let response = app.browser().get("/_health").await;
    assert_eq!(response.status_code(), 200);
    let body: Value = response.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["ok"], true);
    assert_eq!(body["session_store"]["ok"], true);
    assert_eq!(body["store"], "memory");
    assert!(body["database"]["latency_ms"].as_f64().is_some());

    let mut server = RedisServer::start();
    let app = TestApp::with(Settings {
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..Settings::default()
    })
    .await;
    assert_eq!(app.browser().get("/_health").await.status_code(), 200);
    server.kill();
    let response = app.browser().get("/_health").await;
    assert_eq!(response.status_code(), 503);
    let body: Value = response.json();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["session_store"]["ok"], false);
    assert_eq!(
        body["database"]["ok"], true,
        "only the store is named as down"
    );
    assert!(body["session_store"]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("Redis"));
}

#[tokio::test]
async fn doctor_reports_the_session_store() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let (_, out, err) = app.cli(&["doctor"]);
    let all = format!("{out}{err}");
    assert!(
        all.contains("Initializer sessions: session store (file): answers"),
        "{all}"
    );
}
