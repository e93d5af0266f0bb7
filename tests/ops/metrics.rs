//! `/metrics`: Prometheus text for admins and token-bearing scrapers; counters move, and
//! the readings taken at scrape time say what the store and Redis are doing.

use serde_json::json;

use crate::support::{metrics, redis::RedisServer, Settings, TestApp};

/// The value of the sample `name` (with its labels, as rendered), or 0.
fn sample(text: &str, name: &str) -> f64 {
    metrics::value(text, name).unwrap_or(0.0)
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

/// With sessions in Redis: the store's ping, Redis's memory and keys, live sessions, the
/// audit queue and answers by status class are served; when Redis dies the session pages
/// answer 503, and `/metrics` still answers, saying the store is down.
#[tokio::test]
async fn metrics_read_the_store_and_redis_and_count_answers_by_class_while_redis_is_down_too() {
    let mut server = RedisServer::start();
    let app = TestApp::with(Settings {
        sessions: json!({
            "store": "redis",
            "redis": {"url": server.url()},
            "metrics_token": metrics::TOKEN,
        }),
        ..Settings::default()
    })
    .await;
    app.create_user("ida@example.com", false).await;
    let (browser, _) = app.browser_logged_in_as("ida@example.com").await;

    let up = metrics::scrape(&app).await;
    assert_eq!(
        metrics::value(&up, r#"tessera_session_store_up{store="redis"}"#),
        Some(1.0),
        "{up}"
    );
    assert!(
        metrics::value(&up, r#"tessera_session_store_ping_seconds{store="redis"}"#)
            .is_some_and(|seconds| seconds >= 0.0),
        "{up}"
    );
    assert_eq!(
        metrics::value(&up, r#"tessera_sessions_live{store="redis"}"#),
        Some(1.0)
    );
    // Nothing writes between the scrape and this question: the same count.
    let dbsize: f64 = server
        .cli(&["DBSIZE"])
        .and_then(|n| n.parse().ok())
        .expect("DBSIZE");
    assert!(dbsize >= 1.0, "the session's key at least");
    assert_eq!(metrics::value(&up, "tessera_redis_keys"), Some(dbsize));
    assert!(
        metrics::value(&up, "tessera_redis_used_memory_bytes").is_some_and(|bytes| bytes > 0.0),
        "{up}"
    );
    assert_eq!(
        metrics::value(&up, "tessera_audit_queue_capacity"),
        Some(10_000.0)
    );
    assert!(metrics::value(&up, "tessera_audit_queue_depth").is_some());
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        let series = format!(r#"tessera_http_responses_total{{class="{class}"}}"#);
        assert!(metrics::value(&up, &series).is_some(), "{class}: {up}");
    }
    let five_xx = r#"tessera_http_responses_total{class="5xx"}"#;

    server.kill();
    assert_eq!(browser.get("/dashboard").await.status_code(), 503);
    let down = metrics::scrape(&app).await;
    assert_eq!(
        metrics::value(&down, r#"tessera_session_store_up{store="redis"}"#),
        Some(0.0),
        "{down}"
    );
    assert!(
        !down.contains("tessera_redis_used_memory_bytes") && !down.contains("tessera_redis_keys"),
        "no Redis figures from a Redis that does not answer: {down}"
    );
    assert!(
        metrics::value(&down, five_xx).unwrap_or(0.0)
            >= metrics::value(&up, five_xx).unwrap_or(0.0) + 1.0,
        "the 503 is counted: {down}"
    );
}
