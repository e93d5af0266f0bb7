//! The cookie: what it carries (only the ID), how it is marked, how IDs change at login
//! and logout, and what happens to IDs the server did not issue.

use axum::http::HeaderValue;
use tessera::sessions::data::SessionData;
use tower_sessions::session_store::SessionStore;

use crate::support::{
    csrf_token_of, location, parse_id, session_id_set, set_cookie_header, TestApp,
};

#[tokio::test]
async fn cookie_is_an_opaque_id_marked_httponly_lax_path_root() {
    let app = TestApp::start().await;
    let browser = app.browser();
    // A fixated ID planted before login (here: one the server never issued).
    let anonymous_id = tower_sessions::session::Id::default().to_string();
    app.register(&browser, "Dee", "dee@example.com", "correct horse battery")
        .await;
    let token = csrf_token_of(&browser, "/login").await;
    let login = browser
        .post("/login")
        .add_header("cookie", format!("session={anonymous_id}"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "dee@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    let logged_in_id = session_id_set(&login, "session").expect("login sets a new cookie");
    let header = set_cookie_header(&login, "session").expect("set-cookie");
    assert_eq!(
        logged_in_id.len(),
        22,
        "the value is only the 128-bit ID: {header}"
    );
    assert!(logged_in_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            header.contains(attribute),
            "{attribute} missing in {header}"
        );
    }
    assert!(!header.contains("Secure"), "plain http in tests: {header}");
    assert!(!header.contains("Domain"), "host-only cookie: {header}");
    assert!(
        !header.contains("Expires") && !header.contains("Max-Age"),
        "browser-session cookie: {header}"
    );
    assert_eq!(
        login
            .maybe_header("cache-control")
            .as_ref()
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_ne!(logged_in_id, anonymous_id, "login issues a new ID");

    let store = app.sessions().store();
    assert!(
        store
            .load(&parse_id(&anonymous_id))
            .await
            .expect("store answers")
            .is_none(),
        "the planted ID was never adopted"
    );
    let record = store
        .load(&parse_id(&logged_in_id))
        .await
        .expect("store answers")
        .expect("the session lives on the server");
    let data: SessionData =
        serde_json::from_value(record.data["tessera"].clone()).expect("a session record");
    assert!(
        data.user_id.is_some(),
        "the user id is in the server-side record"
    );
    assert!(!data.csrf_token.is_empty(), "and the CSRF token");
}

#[tokio::test]
async fn remember_me_makes_the_cookie_persistent_until_the_absolute_deadline() {
    let app = TestApp::start().await;
    let browser = app.browser();
    app.register(&browser, "Eve", "eve@example.com", "correct horse battery")
        .await;

    let session_cookie = app
        .log_in(&browser, "eve@example.com", "correct horse battery", false)
        .await;
    let header = set_cookie_header(&session_cookie, "session").expect("set-cookie");
    assert!(
        !header.contains("Expires"),
        "unchecked: a browser-session cookie: {header}"
    );

    let other_device = app.browser();
    // Whole seconds, as session timestamps are.
    let before = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("valid");
    let persistent = app
        .log_in(
            &other_device,
            "eve@example.com",
            "correct horse battery",
            true,
        )
        .await;
    let after = time::OffsetDateTime::now_utc();
    let header = set_cookie_header(&persistent, "session").expect("set-cookie");
    let cookie = cookie::Cookie::parse(header.clone()).expect("cookie parses");
    let expires = cookie
        .expires_datetime()
        .expect("checked: a persistent cookie");
    let week = time::Duration::days(7);
    assert!(
        expires >= before + week && expires <= after + week,
        "the absolute lifetime (a week) after the login: {header}"
    );
}

#[tokio::test]
async fn logout_clears_the_cookie_and_reads_between_touches_set_none() {
    let app = TestApp::start().await;
    let browser = app.logged_in_browser("fay@example.com").await;
    let visit = browser.get("/login").await;
    assert_eq!(
        location(&visit),
        "/dashboard",
        "logged in: /login sends to the dashboard"
    );
    assert!(
        set_cookie_header(&visit, "session").is_none(),
        "a read sets no cookie"
    );

    let token = csrf_token_of(&browser, "/dashboard").await;
    let logout = browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(logout.status_code(), 303);
    assert_eq!(location(&logout), "/login");
    let removal = set_cookie_header(&logout, "session").expect("logout clears the cookie");
    assert!(removal.starts_with("session=;"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");
}

#[tokio::test]
async fn replayed_cookie_after_logout_is_refused() {
    let app = TestApp::start().await;
    let browser = app.browser();
    app.register(&browser, "Gus", "gus@example.com", "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, "gus@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, "session").expect("session id");

    let token = csrf_token_of(&browser, "/dashboard").await;
    browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert!(app
        .sessions()
        .store()
        .load(&parse_id(&id))
        .await
        .expect("store")
        .is_none());

    // An attacker who copied the cookie before logout replays it.
    let attacker = app.browser();
    let replay = attacker
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    assert_eq!(replay.status_code(), 303);
    assert_eq!(location(&replay), "/login");
}

#[tokio::test]
async fn unknown_and_malformed_cookies_are_anonymous_never_errors() {
    let app = TestApp::start().await;
    let unknown = tower_sessions::session::Id::default().to_string();
    let long = "A".repeat(4096);
    let values: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&format!("session={unknown}")).expect("header"),
        HeaderValue::from_static("session=../../../../etc/passwd"),
        HeaderValue::from_static("session=..%2F..%2Fetc"),
        HeaderValue::from_static("session="),
        HeaderValue::from_static("session=\"quoted\""),
        HeaderValue::from_str(&format!("session={long}")).expect("header"),
        HeaderValue::from_bytes(b"session=\xff\xfe\xfd").expect("obs-text header"),
        HeaderValue::from_static("session=a; session=b; =; ;;"),
    ];
    for value in values {
        let browser = app.browser();
        for path in ["/", "/login", "/register", "/dashboard", "/api/session"] {
            let response = browser.get(path).add_header("cookie", value.clone()).await;
            let status = response.status_code().as_u16();
            assert!(status < 500, "{path} with {value:?}: {status}");
            if path == "/dashboard" {
                assert_eq!(location(&response), "/login");
            }
            if path == "/login" {
                // The server never adopts an ID it did not issue, and an anonymous visitor
                // gets no session at all.
                assert_eq!(session_id_set(&response, "session"), None);
            }
        }
    }
    let store = app.sessions().store();
    assert!(store
        .load(&crate::support::parse_id(&unknown))
        .await
        .expect("store")
        .is_none());
}
