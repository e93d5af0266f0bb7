//! Every form POST carries the session's CSRF token; without it: 403 and nothing changes.

use serde_json::Value;

use crate::support::{csrf_token_of, TestApp};

#[tokio::test]
async fn register_without_token_is_refused_and_creates_nobody() {
    let app = TestApp::start().await;
    let browser = app.browser();
    let _ = csrf_token_of(&browser, "/register").await;
    for token in [None, Some(""), Some("forged-token")] {
        let mut form = vec![
            ("name", "Mallory"),
            ("email", "mallory@example.com"),
            ("password", "correct horse battery"),
        ];
        if let Some(token) = token {
            form.push(("csrf_token", token));
        }
        let response = browser.post("/register").form(&form).await;
        assert_eq!(response.status_code(), 403, "token {token:?}");
    }
    // Nobody was created: logging in as Mallory fails.
    let login = app
        .log_in(
            &browser,
            "mallory@example.com",
            "correct horse battery",
            false,
        )
        .await;
    assert_eq!(login.status_code(), 422);
}

#[tokio::test]
async fn logout_and_login_without_token_are_refused() {
    let app = TestApp::start().await;
    let browser = app.logged_in_browser("hal@example.com").await;
    let logout = browser
        .post("/logout")
        .form(&[("csrf_token", "wrong")])
        .await;
    assert_eq!(logout.status_code(), 403);
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(
        api["authenticated"], true,
        "a forged logout changes nothing"
    );

    let other = app.browser();
    let login = other
        .post("/login")
        .form(&[
            ("email", "hal@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(login.status_code(), 403, "login CSRF is refused too");
    let api: Value = other.get("/api/session").await.json();
    assert_eq!(api["authenticated"], false);
}

#[tokio::test]
async fn the_token_of_another_session_does_not_work() {
    let app = TestApp::start().await;
    let victim = app.logged_in_browser("ivy@example.com").await;
    let attacker = app.browser();
    let attackers_token = csrf_token_of(&attacker, "/login").await;
    let response = victim
        .post("/logout")
        .form(&[("csrf_token", attackers_token.as_str())])
        .await;
    assert_eq!(response.status_code(), 403);
}

#[tokio::test]
async fn login_rotates_the_token() {
    let app = TestApp::start().await;
    let browser = app.browser();
    app.register(&browser, "Jo", "jo@example.com", "correct horse battery")
        .await;
    let before = csrf_token_of(&browser, "/login").await;
    app.log_in(&browser, "jo@example.com", "correct horse battery", false)
        .await;
    let after = csrf_token_of(&browser, "/dashboard").await;
    assert_ne!(before, after);
    let stale = browser
        .post("/logout")
        .form(&[("csrf_token", before.as_str())])
        .await;
    assert_eq!(
        stale.status_code(),
        403,
        "the pre-login token died with the old session"
    );
}
