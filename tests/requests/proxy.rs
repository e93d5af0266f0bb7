//! Behind a reverse proxy: the client's address is the TCP peer's unless the peer is a
//! trusted proxy (`settings.sessions.trusted_proxies`); then it is the rightmost
//! `X-Forwarded-For` entry that is not a trusted proxy. The test's requests come from
//! 127.0.0.1, which plays the proxy when the list trusts it and a direct client when it
//! does not. (The same through a real nginx: `deployed::addresses`.)

use serde_json::json;

use crate::support::{csrf_token_of, location, texts, Settings, TestApp};

/// An app whose `trusted_proxies` is `trusted` (the test config's is `none`).
fn app_trusting(trusted: Option<&str>) -> Settings {
    let mut sessions =
        json!({"throttle": {"account_failures": 100, "ip_failures": 2, "window_secs": 60}});
    if let Some(trusted) = trusted {
        sessions["trusted_proxies"] = json!(trusted);
    }
    Settings {
        sessions,
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

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_what_sessions_audit_and_throttle_see() {
    let app = TestApp::with(app_trusting(Some("127.0.0.1, ::1, 10.0.0.0/8"))).await;
    app.create_user("max@example.com", false).await;
    let browser = app.browser();
    // The proxy's own entries (10.0.0.1 after the client) are skipped.
    let login = log_in_from(
        &browser,
        "198.51.100.7, 10.0.0.1",
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
    assert_eq!(app.audited_ips("login").await, vec!["198.51.100.7"]);

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
    for address in ["2001:db8:7:1::10", "[2001:db8:7:1::11]:443"] {
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
    // An IPv4 client forwarded as IPv4-mapped IPv6 is recorded as IPv4.
    let mapped = log_in_from(
        &app.browser(),
        "::ffff:198.51.100.9",
        "max@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(location(&mapped), "/dashboard");
    let logins = app.audited_ips("login").await;
    assert!(logins.contains(&"198.51.100.9".to_string()), "{logins:?}");
    assert_eq!(
        app.audited_ips("login_failed")
            .await
            .first()
            .map(String::as_str),
        Some("203.0.113.5")
    );
}

/// A direct client (its peer address not in the list) forging `X-Forwarded-For` is
/// recorded and throttled under its own address, with `none` (the test config) and with
/// a list that names other proxies.
async fn a_direct_client_cannot_forge_its_address(trusted: Option<&str>) {
    let app = TestApp::with(app_trusting(trusted)).await;
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
    let page = browser
        .get("/sessions")
        .add_header("x-forwarded-for", "198.51.100.7")
        .await
        .text();
    assert!(!page.contains("198.51.100.7"), "{page}");
    assert!(page.contains("IP 127.0.0.1"), "its own address: {page}");
    assert_eq!(app.audited_ips("login").await, vec!["127.0.0.1"]);
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

#[tokio::test]
async fn trusting_nobody_a_forged_forwarded_for_is_ignored() {
    a_direct_client_cannot_forge_its_address(None).await;
}

#[tokio::test]
async fn a_client_outside_the_trusted_list_cannot_forge_its_address() {
    a_direct_client_cannot_forge_its_address(Some("10.0.0.0/8, fd00::/8")).await;
}

#[tokio::test]
async fn a_bad_trusted_proxies_entry_stops_the_start_naming_the_key() {
    for (list, says) in [
        (
            "10.0.0.0/8, 10.0.0.300",
            "`10.0.0.300` is not an IP address",
        ),
        ("", "is empty"),
        ("none, 127.0.0.1", "`none` cannot be combined"),
    ] {
        let error = TestApp::try_with(app_trusting(Some(list)))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("settings.sessions.trusted_proxies") && error.contains(says),
            "{list:?}: {error}"
        );
    }
}
