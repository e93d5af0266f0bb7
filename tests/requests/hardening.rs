//! Login throttling, fingerprint binding and security headers.

use serde_json::{json, Value};

use crate::support::{csrf_token_of, location, redis::RedisServer, texts, Settings, TestApp};

fn throttled(limits: Value) -> Settings {
    Settings {
        sessions: json!({ "throttle": limits }),
        ..Settings::default()
    }
}

async fn attempt(app: &TestApp, email: &str, password: &str) -> (u16, String) {
    let response = app.log_in(&app.browser(), email, password, false).await;
    let error = texts(&response.text(), "#login-error").concat();
    (response.status_code().as_u16(), error)
}

#[tokio::test]
async fn an_account_is_throttled_after_repeated_failures_known_or_not() {
    let app = TestApp::with(throttled(
        json!({"account_failures": 3, "ip_failures": 100, "window_secs": 60}),
    ))
    .await;
    app.create_user("sam@example.com", false).await;
    for email in ["sam@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            assert_eq!(attempt(&app, email, "wrong password").await.0, 422);
        }
        let (status, message) = attempt(&app, email, "correct horse battery").await;
        assert_eq!(status, 429, "{email}: even the right password waits");
        assert_eq!(
            message, "Too many attempts. Try again in 1 minute.",
            "{email}: the same words, account or not"
        );
    }
    // Other accounts are not affected by Sam's.
    app.create_user("tia@example.com", false).await;
    assert_eq!(
        attempt(&app, "tia@example.com", "correct horse battery")
            .await
            .0,
        303
    );

    app.flush_audit().await;
    let html = {
        app.create_user("admin@example.com", true).await;
        let (admin, _) = app.browser_logged_in_as("admin@example.com").await;
        admin.get("/admin/sessions").await.text()
    };
    assert!(html.contains("login_throttled"), "throttling is audited");
}

#[tokio::test]
async fn an_ip_is_throttled_across_accounts_and_the_window_ends() {
    let app = TestApp::with(throttled(
        json!({"account_failures": 100, "ip_failures": 4, "window_secs": 3600}),
    ))
    .await;
    app.create_user("uma@example.com", false).await;
    for i in 0..4 {
        assert_eq!(
            attempt(&app, &format!("guess{i}@example.com"), "wrong")
                .await
                .0,
            422
        );
    }
    let (status, message) = attempt(&app, "uma@example.com", "correct horse battery").await;
    assert_eq!(status, 429, "the IP is blocked for every account");
    assert!(message.starts_with("Too many attempts."), "{message}");

    app.end_throttle_windows().await;
    assert_eq!(
        attempt(&app, "uma@example.com", "correct horse battery")
            .await
            .0,
        303,
        "the window ended"
    );
}

#[tokio::test]
async fn throttle_counters_are_shared_by_instances_through_redis() {
    let server = RedisServer::start();
    let settings = || Settings {
        sessions: json!({"store": "redis", "redis": {"url": server.url()}, "throttle": {"account_failures": 2, "window_secs": 60}}),
        ..Settings::default()
    };
    let a = TestApp::with(settings()).await;
    let b = TestApp::with(Settings {
        share_with: Some(a.scratch()),
        ..settings()
    })
    .await;
    a.create_user("vic@example.com", false).await;
    assert_eq!(attempt(&a, "vic@example.com", "wrong").await.0, 422);
    assert_eq!(attempt(&b, "vic@example.com", "wrong").await.0, 422);
    assert_eq!(
        attempt(&a, "vic@example.com", "correct horse battery")
            .await
            .0,
        429,
        "A saw B's failure"
    );
    let keys = server.keys();
    assert!(
        keys.iter().any(|k| k.starts_with("tessera:throttle:")),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| !k.contains("vic")),
        "no email in clear: {keys:?}"
    );
}

#[tokio::test]
async fn a_session_used_from_another_browser_ends() {
    let app = TestApp::start().await;
    app.create_user("wes@example.com", false).await;
    let browser = app.browser();
    let token = csrf_token_of(&browser, "/login").await;
    let login = browser
        .post("/login")
        .add_header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        )
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "wes@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    let id = crate::support::session_id_set(&login, "session").expect("logged in");
    let same = browser
        .get("/dashboard")
        .add_header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        )
        .await;
    assert_eq!(same.status_code(), 200);

    let thief = app.browser();
    let stolen = thief
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .add_header("user-agent", "curl/8.0")
        .await;
    assert_eq!(location(&stolen), "/login");
    assert!(
        !app.store_has(&id).await,
        "the session ended, for the thief and the owner"
    );
    app.flush_audit().await;
    let events: Vec<String> = {
        use sea_orm::{EntityTrait, QuerySelect};
        tessera::models::_entities::session_events::Entity::find()
            .select_only()
            .column(tessera::models::_entities::session_events::Column::Event)
            .into_tuple()
            .all(&app.ctx.db)
            .await
            .expect("events")
    };
    assert!(
        events.iter().any(|e| e == "fingerprint_mismatch"),
        "{events:?}"
    );
}

#[tokio::test]
async fn headers_protect_pages_behind_login_and_logout_clears_site_data() {
    let app = TestApp::start().await;
    let browser = app.logged_in_browser("xia@example.com").await;
    for path in [
        "/dashboard",
        "/sessions",
        "/platforms",
        "/account",
        "/api/session",
    ] {
        let response = browser.get(path).await;
        assert_eq!(response.status_code(), 200, "{path}");
        let cache = response
            .maybe_header("cache-control")
            .and_then(|v| v.to_str().ok().map(str::to_string));
        assert_eq!(cache.as_deref(), Some("no-store"), "{path}");
    }
    let page = browser.get("/dashboard").await;
    for header in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
        "strict-transport-security",
    ] {
        assert!(page.maybe_header(header).is_some(), "{header} missing");
    }
    let token = csrf_token_of(&browser, "/dashboard").await;
    let logout = browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    // The cache goes; the cookies stay but the session's, which its own `Set-Cookie`
    // expires: "cookies" would also wipe the device cookie and sibling apps' cookies.
    assert_eq!(
        logout
            .maybe_header("clear-site-data")
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .as_deref(),
        Some("\"cache\"")
    );
    let set_cookies: Vec<String> = logout
        .iter_headers_by_name("set-cookie")
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with("session=;") && c.contains("Max-Age=0")),
        "the session cookie is expired: {set_cookies:?}"
    );
    assert!(
        set_cookies.iter().all(|c| !c.starts_with("device=")),
        "the device cookie is kept: {set_cookies:?}"
    );
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["authenticated"], false);
}

/// Loco's stack is applied once around the router (src/middleware/mod.rs), and the busiest
/// routes carry their own state (none, or `Shared`): every kind of route must still pass
/// through the whole stack.
#[tokio::test]
async fn every_kind_of_route_gets_the_middleware_stack() {
    let app = TestApp::start().await;
    app.create_user("sam@example.com", false).await;
    let (browser, _) = app.browser_logged_in_as("sam@example.com").await;
    for path in ["/api/session", "/dashboard", "/sessions", "/static/app.css"] {
        let response = browser.get(path).await;
        assert_eq!(response.status_code(), 200, "{path}");
        let headers = response.headers();
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "x-request-id",
        ] {
            assert!(headers.contains_key(name), "{path}: no {name}");
        }
    }
    let response = browser.get("/api/session").await;
    assert_eq!(response.json::<Value>()["authenticated"], json!(true));
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "the session layer still wraps the state-less API route"
    );
}

#[tokio::test]
async fn an_unknown_address_gets_the_404_page_with_the_security_headers() {
    let app = TestApp::start().await;
    let response = app.browser().get("/no/such/page").await;
    assert_eq!(response.status_code(), 404);
    assert!(response.text().contains("Not found"), "{}", response.text());
    assert!(
        response.headers().contains_key("content-security-policy"),
        "the 404 page goes through the middleware"
    );
}

/// `x-request-id`: a client's own ID comes back (cleaned of anything but letters, digits,
/// `_`, `-` and `@`); without one, every response gets a new UUID.
#[tokio::test]
async fn every_response_names_its_request() {
    let app = TestApp::start().await;
    let browser = app.browser();
    let id_of = |response: &axum_test::TestResponse| {
        response
            .maybe_header("x-request-id")
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .expect("an x-request-id")
    };
    let first = id_of(&browser.get("/login").await);
    let second = id_of(&browser.get("/login").await);
    assert_ne!(first, second);
    for id in [&first, &second] {
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
    }
    let own = browser
        .get("/login")
        .add_header("x-request-id", "trace-42@edge")
        .await;
    assert_eq!(id_of(&own), "trace-42@edge");
    let dirty = browser
        .get("/no/such/page")
        .add_header("x-request-id", "abc\"; drop=1 <x>")
        .await;
    assert_eq!(dirty.status_code(), 404);
    assert_eq!(id_of(&dirty), "abcdrop1x");
}
