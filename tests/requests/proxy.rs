//! Behind a reverse proxy: with `server.middlewares.remote_ip` on, the forwarded client
//! address is what "My sessions", the audit trail and the throttle see; without it, a
//! client's own `X-Forwarded-For` is ignored.

use serde_json::json;

use crate::support::{csrf_token_of, location, texts, Settings, TestApp};

fn behind_proxy(remote_ip: bool) -> Settings {
    Settings {
        sessions: json!({"throttle": {"account_failures": 100, "ip_failures": 2, "window_secs": 60}}),
        remote_ip,
        ..Settings::default()
    }
}

/// A login form posted with `X-Forwarded-For: forwarded`.
async fn log_in_from(
    browser: &axum_test::TestServer,
    forwarded: &str,
    email: &str,
    password: &str,
) -> axum_test::TestResponse {
    let token = csrf_token_of(browser, "/login").await;
    browser
        .post("/login")
        .add_header("x-forwarded-for", forwarded)
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", email),
            ("password", password),
        ])
        .await
}

/// The IPs the audit trail recorded for `event`.
async fn audited_ips(app: &TestApp, event: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tessera::models::_entities::session_events;
    app.flush_audit().await;
    session_events::Entity::find()
        .filter(session_events::Column::Event.eq(event))
        .all(&app.ctx.db)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.ip)
        .collect()
}

#[tokio::test]
async fn with_remote_ip_the_forwarded_address_is_what_sessions_audit_and_throttle_see() {
    let app = TestApp::with(behind_proxy(true)).await;
    app.create_user("max@example.com", false).await;
    let browser = app.browser();
    let login = log_in_from(
        &browser,
        "10.0.0.1, 198.51.100.7",
        "max@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(location(&login), "/dashboard");
    let page = browser
        .get("/sessions")
        .add_header("x-forwarded-for", "198.51.100.7")
        .await
        .text();
    assert!(page.contains("IP 198.51.100.7"), "{page}");
    assert_eq!(audited_ips(&app, "login").await, vec!["198.51.100.7"]);

    // Two failures from one client block that client, not the proxy's other clients.
    for _ in 0..2 {
        let r = log_in_from(&app.browser(), "203.0.113.5", "nobody@example.com", "x").await;
        assert_eq!(r.status_code(), 422);
    }
    let blocked = log_in_from(
        &app.browser(),
        "203.0.113.5",
        "max@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(blocked.status_code(), 429);
    let other = log_in_from(
        &app.browser(),
        "203.0.113.6",
        "max@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(
        location(&other),
        "/dashboard",
        "another client is not blocked"
    );
    // IPv6 clients are counted per /64: another address of the same network is blocked.
    for address in ["2001:db8:7:1::10", "2001:db8:7:1::11"] {
        let r = log_in_from(&app.browser(), address, "nobody@example.com", "x").await;
        assert_eq!(r.status_code(), 422);
    }
    let same_network = log_in_from(
        &app.browser(),
        "2001:db8:7:1:ffff::1",
        "max@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(same_network.status_code(), 429);
    assert_eq!(
        audited_ips(&app, "login_failed")
            .await
            .first()
            .map(String::as_str),
        Some("203.0.113.5")
    );
}

#[tokio::test]
async fn without_remote_ip_a_forged_forwarded_for_is_ignored() {
    let app = TestApp::with(behind_proxy(false)).await;
    app.create_user("ned@example.com", false).await;
    let browser = app.browser();
    let login = log_in_from(
        &browser,
        "198.51.100.7",
        "ned@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(location(&login), "/dashboard");
    let page = browser.get("/sessions").await.text();
    assert!(!page.contains("198.51.100.7"), "{page}");
    assert!(audited_ips(&app, "login")
        .await
        .iter()
        .all(|ip| ip != "198.51.100.7"));
    // Changing the forged header does not escape the per-IP limit.
    for forged in ["203.0.113.1", "203.0.113.2"] {
        let r = log_in_from(&app.browser(), forged, "nobody@example.com", "x").await;
        assert_eq!(r.status_code(), 422);
    }
    let blocked = log_in_from(
        &app.browser(),
        "203.0.113.3",
        "ned@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(blocked.status_code(), 429);
    assert!(texts(&blocked.text(), "#login-error")
        .concat()
        .starts_with("Too many attempts."));
}
