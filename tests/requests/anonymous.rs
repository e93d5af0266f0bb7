//! Anonymous visitors cost the store nothing: viewing pages writes no session record in
//! any store, while the forms stay CSRF-protected by a signed double-submit cookie and a
//! full register → login → logout still works.

use serde_json::{json, Value};

use crate::support::{
    csrf_token_of, listed_keys, location, redis::RedisServer, set_cookie_header, texts, TestApp,
};

/// How many records the app's store holds.
async fn records(app: &TestApp) -> usize {
    listed_keys(app.sessions().backend())
        .await
        .expect("keys")
        .len()
}

async fn anonymous_views_write_nothing(app: TestApp) {
    let before = records(&app).await;
    let paths = [
        "/",
        "/login",
        "/register",
        "/no/such/page",
        "/static/session-sync.js",
        "/login?notice=logged_out",
        "/api/session",
    ];
    // A crawler: some requests with a cookie jar, some without, all 1,000 anonymous.
    let crawler = app.browser();
    for i in 0..1000 {
        let path = paths[i % paths.len()];
        let response = if i % 2 == 0 {
            crawler.get(path).await
        } else {
            app.browser().get(path).await
        };
        assert!(response.status_code().as_u16() < 500, "{path}");
        assert!(
            set_cookie_header(&response, "session").is_none(),
            "{path} sets no session cookie"
        );
    }
    assert_eq!(records(&app).await, before, "no record was written");

    // The forms still work end to end, and still refuse a POST without the token.
    let forged = app
        .browser()
        .post("/register")
        .form(&[
            ("name", "Mallory"),
            ("email", "mallory@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(forged.status_code(), 403);
    let browser = app.browser();
    app.register(&browser, "Kim", "kim@example.com", "correct horse battery")
        .await;
    assert_eq!(records(&app).await, before, "registering writes no record");
    let login = app
        .log_in(&browser, "kim@example.com", "correct horse battery", false)
        .await;
    assert_eq!(location(&login), "/dashboard");
    assert_eq!(records(&app).await, before + 1, "the login writes one");
    let token = csrf_token_of(&browser, "/dashboard").await;
    let logout = browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(location(&logout), "/login");
    assert_eq!(records(&app).await, before, "the logout removes it");
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["authenticated"], false);
    let mallory = app
        .log_in(
            &app.browser(),
            "mallory@example.com",
            "correct horse battery",
            false,
        )
        .await;
    assert_eq!(
        mallory.status_code(),
        422,
        "the forged registration created nobody"
    );
}

#[tokio::test]
async fn anonymous_page_views_write_no_record_file() {
    let app = TestApp::with_sessions(json!({"store": "file"})).await;
    anonymous_views_write_nothing(app).await;
}

#[tokio::test]
async fn anonymous_page_views_write_no_record_database() {
    let app = TestApp::with_sessions(json!({"store": "database"})).await;
    anonymous_views_write_nothing(app).await;
}

#[tokio::test]
async fn anonymous_page_views_write_no_record_redis() {
    let server = RedisServer::start();
    let app =
        TestApp::with_sessions(json!({"store": "redis", "redis": {"url": server.url()}})).await;
    anonymous_views_write_nothing(app).await;
}

#[tokio::test]
async fn the_form_cookie_is_httponly_strict_and_its_token_is_bound_to_it() {
    let app = TestApp::start().await;
    let browser = app.browser();
    let page = browser.get("/login").await;
    let header = set_cookie_header(&page, "csrf").expect("the form cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains("Domain"), "{header}");
    assert!(
        header.contains("Max-Age=7200"),
        "the browser drops it when its token expires: {header}"
    );
    assert_eq!(
        page.maybe_header("cache-control")
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .as_deref(),
        Some("no-store"),
        "a page with a per-browser token is never cached"
    );
    let token = crate::support::hidden_field(&page.text(), "csrf_token").expect("token");
    // The same browser keeps its cookie: a second tab's form carries the same token.
    assert_eq!(csrf_token_of(&browser, "/register").await, token);

    // Another browser's token does not fit this browser's cookie, and vice versa.
    let other = app.browser();
    let other_token = csrf_token_of(&other, "/login").await;
    assert_ne!(other_token, token);
    let response = browser
        .post("/login")
        .form(&[
            ("csrf_token", other_token.as_str()),
            ("email", "x@example.com"),
            ("password", "whatever"),
        ])
        .await;
    assert_eq!(response.status_code(), 403);
    // The token without its cookie is refused too.
    let bare = app
        .browser()
        .post("/login")
        .add_header("cookie", "csrf=AAAAAAAAAAAAAAAAAAAAAA")
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "x@example.com"),
            ("password", "whatever"),
        ])
        .await;
    assert_eq!(bare.status_code(), 403);
}

#[tokio::test]
async fn a_logged_in_session_does_not_accept_an_anonymous_form_token() {
    let app = TestApp::start().await;
    let browser = app.logged_in_browser("lee@example.com").await;
    // A double-submit pair is only for anonymous forms: with a session, its own token.
    let anonymous = app.browser();
    let page = anonymous.get("/login").await;
    let nonce = set_cookie_header(&page, "csrf")
        .and_then(|h| cookie::Cookie::parse(h).ok().map(|c| c.value().to_string()))
        .expect("nonce");
    let token = crate::support::hidden_field(&page.text(), "csrf_token").expect("token");
    let response = browser
        .post("/logout")
        .add_header("cookie", format!("csrf={nonce}"))
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(response.status_code(), 403);
    assert_eq!(
        browser.get("/api/session").await.json::<Value>()["authenticated"],
        true
    );
    let notice = app.browser().get("/login?notice=%3Cscript%3E").await.text();
    assert!(
        texts(&notice, "#login-notice").is_empty(),
        "unknown notices show nothing"
    );
}

#[tokio::test]
async fn in_production_the_form_cookie_has_the_host_prefix_and_is_secure() {
    let server = RedisServer::start();
    let app = TestApp::with(crate::support::Settings {
        environment: loco_rs::environment::Environment::Production,
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..crate::support::Settings::default()
    })
    .await;
    let browser = app.browser();
    let page = browser.get("/register").await;
    let header = set_cookie_header(&page, "__Host-csrf").expect("the __Host- form cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains("Domain"), "{header}");
    assert!(
        server.keys().is_empty(),
        "no key for a visitor: {:?}",
        server.keys()
    );
    app.register(&browser, "Pia", "pia@example.com", "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, "pia@example.com", "correct horse battery", false)
        .await;
    assert_eq!(location(&login), "/dashboard");
}

#[tokio::test]
async fn a_secure_session_cookie_of_any_name_gets_a_host_prefixed_form_cookie() {
    let app =
        TestApp::with_sessions(json!({"cookie": {"name": "tessera_sid", "secure": true}})).await;
    let page = app.browser().get("/login").await;
    let header = set_cookie_header(&page, "__Host-csrf").expect("the __Host- form cookie");
    assert!(
        header.contains("Secure") && header.contains("Path=/") && !header.contains("Domain"),
        "{header}"
    );
    assert!(
        set_cookie_header(&page, "csrf").is_none(),
        "no unprefixed twin"
    );
}
