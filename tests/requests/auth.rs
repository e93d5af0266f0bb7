//! Register, log in, see the dashboard, log out: the walking skeleton as a user lives it.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;

use crate::support::{attrs, clock::words_during, csrf_token_of, location, texts, TestApp};

#[tokio::test]
async fn register_login_dashboard_logout() {
    let app = TestApp::start().await;
    let browser = app.browser();

    let root = browser.get("/").await;
    assert_eq!(root.status_code(), 303);
    assert_eq!(location(&root), "/login");

    app.register(
        &browser,
        "Ann Example",
        "Ann@Example.com",
        "correct horse battery",
    )
    .await;
    // The email was normalized: the lower-case form logs in.
    let before_login = Utc::now();
    let login = app
        .log_in(&browser, "ann@example.com", "correct horse battery", false)
        .await;
    assert_eq!(login.status_code(), 303);
    assert_eq!(location(&login), "/dashboard");

    let before_page = Utc::now();
    let dashboard = browser.get("/dashboard").await;
    let rendered = (before_page, Utc::now());
    assert_eq!(dashboard.status_code(), 200);
    let html = dashboard.text();
    assert!(texts(&html, "h1").iter().any(|h| h.contains("Ann Example")));
    assert_eq!(texts(&html, "[data-field=store]"), vec!["memory"]);
    // Times read as words, with the exact time (to the second) in the element.
    let at = |field: &str| {
        let at = attrs(&html, &format!("[data-field={field}] time"), "datetime").concat();
        assert!(!at.contains('.'), "{field}: datetime={at:?}");
        let parsed = DateTime::parse_from_rfc3339(&at)
            .unwrap_or_else(|e| panic!("{field}: datetime={at:?}: {e}"));
        (at, parsed.with_timezone(&Utc))
    };
    let (created, created_at) = at("created_at");
    let (_, last_activity) = at("last_activity");
    let (expires, expires_at) = at("expires_at");
    assert!(
        created_at >= before_login.trunc_subsecs(0) && created_at <= rendered.0,
        "created at login: {created}"
    );
    assert_eq!(
        expires_at - last_activity,
        chrono::Duration::hours(2),
        "expires after the idle timeout"
    );
    for (field, at) in [("created_at", created), ("expires_at", expires)] {
        let shown = texts(&html, &format!("[data-field={field}]")).concat();
        assert!(
            words_during(&at, rendered).contains(&shown),
            "{field}: {shown:?} for {at}"
        );
    }
    assert_eq!(location(&browser.get("/").await), "/dashboard");

    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["authenticated"], true);
    assert_eq!(api["store"], "memory");
    assert!(api["user_id"].as_i64().is_some());
    assert!(api["expires_at"].as_str().is_some());

    let token = csrf_token_of(&browser, "/dashboard").await;
    let logout = browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(logout.status_code(), 303);
    assert_eq!(location(&logout), "/login");
    // The fixed notice a page may link to; never text taken from the request.
    let notice = browser.get("/login?notice=logged_out").await;
    assert_eq!(
        texts(&notice.text(), "#login-notice"),
        vec!["You are logged out."]
    );

    let after = browser.get("/dashboard").await;
    assert_eq!(after.status_code(), 303);
    assert_eq!(location(&after), "/login");
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["authenticated"], false);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::start().await;
    let browser = app.browser();
    app.register(&browser, "Bob", "bob@example.com", "correct horse battery")
        .await;

    let wrong_password = app
        .log_in(&browser, "bob@example.com", "nope nope nope", false)
        .await;
    let unknown_email = app
        .log_in(&browser, "nobody@example.com", "nope nope nope", false)
        .await;
    for response in [&wrong_password, &unknown_email] {
        assert_eq!(response.status_code(), 422);
        assert_eq!(
            texts(&response.text(), "#login-error"),
            vec!["Email or password is incorrect."]
        );
    }
    assert_eq!(browser.get("/dashboard").await.status_code(), 303);
}

#[tokio::test]
async fn registration_explains_what_is_wrong_and_keeps_input() {
    let app = TestApp::start().await;
    let browser = app.browser();
    let token = csrf_token_of(&browser, "/register").await;
    let response = browser
        .post("/register")
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "C"),
            ("email", "not-an-email"),
            ("password", "short"),
        ])
        .await;
    assert_eq!(response.status_code(), 422);
    let html = response.text();
    assert_eq!(
        texts(&html, "#name-error"),
        vec!["Enter a name between 2 and 100 characters."]
    );
    assert_eq!(
        texts(&html, "#email-error"),
        vec!["Enter a valid email address, like name@example.com."]
    );
    assert_eq!(
        texts(&html, "#password-error"),
        vec!["Use at least 8 characters."]
    );
    assert!(html.contains(r#"value="not-an-email""#));
}

/// What a stranger sees after registering an email: the same answer whether it has an
/// account or not, and the account's password is untouched.
#[tokio::test]
async fn registration_answers_the_same_for_a_taken_and_a_free_email() {
    let app = TestApp::start().await;
    app.create_user("carol@example.com", false).await;
    let mut answers = Vec::new();
    for email in [" CAROL@example.com", "dora@example.com"] {
        let browser = app.browser();
        let token = csrf_token_of(&browser, "/register").await;
        let response = browser
            .post("/register")
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", "Carol Two"),
                ("email", email),
                ("password", "another password"),
            ])
            .await;
        let notice = browser.get(&location(&response)).await.text();
        answers.push((
            response.status_code(),
            location(&response),
            texts(&notice, "#login-notice"),
        ));
    }
    assert_eq!(answers[0], answers[1], "{answers:?}");
    assert_eq!(answers[0].1, "/login?notice=registered");
    let browser = app.browser();
    assert_eq!(
        location(
            &app.log_in(&browser, "carol@example.com", "another password", false)
                .await
        ),
        "",
        "the taken account kept its password"
    );
    assert_eq!(
        location(
            &app.log_in(
                &browser,
                "carol@example.com",
                "correct horse battery",
                false
            )
            .await
        ),
        "/dashboard"
    );
    assert_eq!(
        location(
            &app.log_in(
                &app.browser(),
                "dora@example.com",
                "another password",
                false
            )
            .await
        ),
        "/dashboard",
        "the free email got its account"
    );
}

#[tokio::test]
async fn pages_behind_login_redirect_to_login() {
    let app = TestApp::start().await;
    let browser = app.browser();
    for path in ["/dashboard"] {
        let response = browser.get(path).await;
        assert_eq!(response.status_code(), 303, "{path}");
        assert_eq!(location(&response), "/login", "{path}");
    }
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["authenticated"], false);
    assert_eq!(api["user_id"], Value::Null);
}

#[tokio::test]
async fn every_page_behind_login_offers_logout() {
    let app = TestApp::start().await;
    let browser = app.logged_in_browser("lou@example.com").await;
    for path in ["/dashboard", "/platforms", "/sessions", "/account"] {
        let html = browser.get(path).await.text();
        let document = scraper::Html::parse_document(&html);
        let selector =
            scraper::Selector::parse(r#"header form[action="/logout"][method="post"] button"#)
                .expect("selector");
        assert_eq!(
            document.select(&selector).count(),
            1,
            "{path} has a logout button in its header"
        );
    }
}
