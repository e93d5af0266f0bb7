//! `/metrics`: Prometheus text for admins and token-bearing scrapers; counters move.

use serde_json::json;

use crate::support::{Settings, TestApp};

/// The value of the sample `name` (with its labels, as rendered), or 0.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_are_for_admins_and_scrapers_and_counters_move() {
    let app = TestApp::with(Settings {
        sessions: json!({"metrics_token": "scrape-token-123"}),
        ..Settings::default()
    })
    .await;
    app.create_user("root@example.com", true).await;
    app.create_user("ida@example.com", false).await;

    assert_eq!(
        app.browser().get("/metrics").await.status_code(),
        403,
        "anonymous"
    );
    let (user, _) = app.browser_logged_in_as("ida@example.com").await;
    assert_eq!(
        user.get("/metrics").await.status_code(),
        403,
        "not an admin"
    );
    let wrong = app
        .browser()
        .get("/metrics")
        .add_header("authorization", "Bearer nope")
        .await;
    assert_eq!(wrong.status_code(), 403);

    let scrape = || async {
        let response = app
            .browser()
            .get("/metrics")
            .add_header("authorization", "Bearer scrape-token-123")
            .await;
        assert_eq!(response.status_code(), 200);
        response.text()
    };
    let before = scrape().await;
    let logins = r#"tessera_logins_total{result="ok"}"#;
    app.browser_logged_in_as("ida@example.com").await;
    app.log_in(&app.browser(), "ida@example.com", "wrong password", false)
        .await;
    let after = scrape().await;
    assert!(
        sample(&after, logins) >= sample(&before, logins) + 1.0,
        "{after}"
    );
    let failed = r#"tessera_logins_total{result="failed"}"#;
    assert!(sample(&after, failed) >= sample(&before, failed) + 1.0);
    assert!(
        after.contains("tessera_session_store_operations_total"),
        "{after}"
    );
    assert!(
        after.contains("tessera_session_store_latency_seconds_bucket"),
        "a histogram"
    );
    assert!(
        after.contains(r#"tessera_sessions_live{store="memory"}"#),
        "{after}"
    );

    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    assert_eq!(
        admin.get("/metrics").await.status_code(),
        200,
        "admins see it too"
    );
}
