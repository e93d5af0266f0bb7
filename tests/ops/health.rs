//! `/_health` and `cargo loco doctor` report the database and the session store: the
//! status to anyone, the details only to admins and the metrics token.

use axum_test::{TestResponse, TestServer};
use serde_json::{json, Value};

use crate::support::{redis::RedisServer, Settings, TestApp};

const METRICS_TOKEN: &str = "scrape-me-0123456789";

fn on_redis(server: &RedisServer) -> Settings {
    Settings {
        sessions: json!({
            "store": "redis",
            "redis": {"url": server.url()},
            "metrics_token": METRICS_TOKEN,
        }),
        ..Settings::default()
    }
}

async fn health(browser: &TestServer, bearer: Option<&str>) -> TestResponse {
    let request = browser.get("/_health");
    match bearer {
        Some(token) => request.authorization_bearer(token).await,
        None => request.await,
    }
}

/// An anonymous caller learns the status and nothing else.
fn assert_status_only(response: &TestResponse, status: u16, says: &str) {
    assert_eq!(response.status_code(), status);
    assert_eq!(response.json::<Value>(), json!({"status": says}));
}

#[tokio::test]
async fn anyone_gets_the_status_and_only_admins_and_the_metrics_token_get_the_details() {
    let mut server = RedisServer::start();
    let app = TestApp::with(on_redis(&server)).await;
    app.create_user("root@example.com", true).await;
    app.create_user("user@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (user, _) = app.browser_logged_in_as("user@example.com").await;

    assert_status_only(&health(&app.browser(), None).await, 200, "ok");
    assert_status_only(&health(&user, None).await, 200, "ok");
    assert_status_only(
        &health(&app.browser(), Some("wrong-token")).await,
        200,
        "ok",
    );
    for response in [
        health(&admin, None).await,
        health(&app.browser(), Some(METRICS_TOKEN)).await,
    ] {
        assert_eq!(response.status_code(), 200);
        let body: Value = response.json();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["database"]["ok"], true);
        assert_eq!(body["session_store"]["ok"], true);
        assert_eq!(body["store"], "redis");
        assert!(body["database"]["latency_ms"].as_f64().is_some());
    }

    server.kill();
    let anonymous = health(&app.browser(), None).await;
    assert_status_only(&anonymous, 503, "unavailable");
    assert!(
        !anonymous.text().contains("Redis"),
        "no error text for strangers"
    );
    let response = health(&app.browser(), Some(METRICS_TOKEN)).await;
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
    // The admin's session lives in the dead store: the admin is a stranger until it
    // is back, and learns only the status.
    assert_status_only(&health(&admin, None).await, 503, "unavailable");
}

#[tokio::test]
async fn doctor_reports_the_session_store() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let (_, out, err) = app.cli(&["doctor"]).await;
    let all = format!("{out}{err}");
    assert!(
        all.contains("Initializer sessions: session store (file): answers"),
        "{all}"
    );
}
