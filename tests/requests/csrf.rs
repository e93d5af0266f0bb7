//! Every form POST carries the session's CSRF token; without it: 403 and nothing changes.

use serde_json::Value;

use crate::support::{
    attrs, csrf_token_of, hidden_field, location, set_cookie_header, texts, TestApp,
};

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

/// A form cookie and its token as this app issued them at `issued_at`.
fn form_pair(app: &TestApp, issued_at: i64) -> (String, String) {
    let sessions = app.sessions();
    let tokens = sessions.form_tokens();
    let cookie = tokens.issue(issued_at);
    let set = tokens.set_cookie(&cookie, issued_at);
    (
        format!("{}={}", set.name(), set.value()),
        tokens.token(&cookie),
    )
}

fn two_hours_and_a_second_ago() -> i64 {
    tessera::sessions::clock::now() - 7201
}

#[tokio::test]
async fn an_expired_login_form_is_shown_again_with_a_fresh_token_and_the_email_kept() {
    let app = TestApp::start().await;
    app.create_user("kim@example.com", false).await;
    let browser = app.browser();
    // A form loaded more than two hours ago: its cookie and token were issued then.
    let (old_cookie, old_token) = form_pair(&app, two_hours_and_a_second_ago());
    let stale = browser
        .post("/login")
        .add_header("cookie", old_cookie)
        .form(&[
            ("csrf_token", old_token.as_str()),
            ("email", "kim@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(stale.status_code(), 403, "nothing happened");
    let page = stale.text();
    assert!(
        texts(&page, "#login-error")
            .concat()
            .starts_with("This form expired"),
        "{page}"
    );
    assert_eq!(
        attrs(&page, "input#email", "value"),
        ["kim@example.com"],
        "what was typed is kept"
    );
    assert!(
        attrs(&page, "input#password", "value").is_empty(),
        "never the password"
    );
    assert!(
        set_cookie_header(&stale, "csrf").is_some(),
        "a fresh form cookie"
    );
    let fresh = hidden_field(&page, "csrf_token").expect("a fresh token");
    assert_ne!(fresh, old_token);
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(
        api["authenticated"], false,
        "the stale form logged nobody in"
    );
    assert!(app.audited_ips("login").await.is_empty());

    // Sent again from the page shown, it works.
    let login = browser
        .post("/login")
        .form(&[
            ("csrf_token", fresh.as_str()),
            ("email", "kim@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(location(&login), "/dashboard");
}

#[tokio::test]
async fn an_expired_register_form_creates_nobody_and_is_shown_again() {
    let app = TestApp::start().await;
    let browser = app.browser();
    let (old_cookie, old_token) = form_pair(&app, two_hours_and_a_second_ago());
    let stale = browser
        .post("/register")
        .add_header("cookie", old_cookie)
        .form(&[
            ("csrf_token", old_token.as_str()),
            ("name", "Lou"),
            ("email", "lou@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(stale.status_code(), 403);
    let page = stale.text();
    assert!(
        texts(&page, "#register-error")
            .concat()
            .starts_with("This form expired"),
        "{page}"
    );
    assert_eq!(attrs(&page, "input#name", "value"), ["Lou"]);
    assert_eq!(attrs(&page, "input#email", "value"), ["lou@example.com"]);
    assert!(attrs(&page, "input#password", "value").is_empty());
    let login = app
        .log_in(&browser, "lou@example.com", "correct horse battery", false)
        .await;
    assert_eq!(login.status_code(), 422, "nobody was created");

    let fresh = hidden_field(&page, "csrf_token").expect("a fresh token");
    let register = browser
        .post("/register")
        .form(&[
            ("csrf_token", fresh.as_str()),
            ("name", "Lou"),
            ("email", "lou@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(location(&register), "/login?notice=registered");
}

#[tokio::test]
async fn only_a_live_form_cookie_the_server_issued_is_honoured() {
    let app = TestApp::start().await;
    let browser = app.browser();
    let (live_cookie, live_token) = form_pair(&app, tessera::sessions::clock::now() - 60);
    // A page view with a live cookie keeps it: same token, no new cookie.
    let page = browser
        .get("/login")
        .add_header("cookie", live_cookie.clone())
        .await;
    assert!(set_cookie_header(&page, "csrf").is_none());
    assert_eq!(hidden_field(&page.text(), "csrf_token"), Some(live_token));

    // Expired, or signed by someone else (another secret, or a bare nonce as a sibling
    // host could plant): a new cookie and another token.
    let other_secret = tessera::sessions::csrf::FormTokens::new(
        b"another-secret-0123456789abcdef0123456789",
        7200,
        false,
    );
    let planted = other_secret.issue(tessera::sessions::clock::now());
    let planted_value = other_secret
        .set_cookie(&planted, tessera::sessions::clock::now())
        .value()
        .to_string();
    let (expired, expired_token) = form_pair(&app, two_hours_and_a_second_ago());
    for (cookie, its_token) in [
        (expired, expired_token),
        (
            format!("csrf={planted_value}"),
            other_secret.token(&planted),
        ),
        (
            "csrf=AAAAAAAAAAAAAAAAAAAAAA".to_string(),
            "AAAAAAAAAAAAAAAAAAAAAA".to_string(),
        ),
    ] {
        let page = app
            .browser()
            .get("/login")
            .add_header("cookie", cookie.clone())
            .await;
        assert!(set_cookie_header(&page, "csrf").is_some(), "{cookie}");
        assert_ne!(
            hidden_field(&page.text(), "csrf_token"),
            Some(its_token.clone()),
            "{cookie}"
        );
        let post = app
            .browser()
            .post("/login")
            .add_header("cookie", cookie.clone())
            .form(&[
                ("csrf_token", its_token.as_str()),
                ("email", "x@example.com"),
                ("password", "whatever"),
            ])
            .await;
        assert_eq!(post.status_code(), 403, "{cookie}");
    }
}
