//! Tessera in production mode against a private Redis: the `__Host-` cookie, one key per
//! session with a TTL, shared sessions between instances, and an outage.

use loco_rs::environment::Environment;
use serde_json::{json, Value};

use crate::support::{
    clock::{eventually, PATIENCE},
    csrf_token_of, location, parse_id,
    redis::RedisServer,
    session_id_set, set_cookie_header, Settings, TestApp,
};

fn production(server: &RedisServer) -> Settings {
    Settings {
        environment: Environment::Production,
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..Settings::default()
    }
}

#[tokio::test]
async fn production_login_sets_a_host_cookie_and_one_redis_key_with_a_ttl() {
    let server = RedisServer::start();
    let app = TestApp::with(production(&server)).await;
    let browser = app.browser();
    app.register(&browser, "Oz", "oz@example.com", "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, "oz@example.com", "correct horse battery", false)
        .await;
    assert_eq!(location(&login), "/dashboard");

    let header = set_cookie_header(&login, "__Host-session").expect("the __Host- cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains("Domain"), "{header}");
    let id = session_id_set(&login, "__Host-session").expect("id");
    assert_eq!(id.len(), 22);

    let key = app
        .sessions()
        .hasher()
        .store_key(&parse_id(&id))
        .to_string();
    assert_eq!(
        server.session_keys(),
        vec![key.clone()],
        "exactly one session key: the session, by its hash"
    );
    assert_ne!(key, id, "the cookie's ID is not a Redis key");
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["authenticated"], true);
    assert_eq!(api["store"], "redis");
    let expires: i64 = server
        .cli(&["EXPIRETIME", &key])
        .and_then(|t| t.parse().ok())
        .expect("EXPIRETIME");
    let last_activity =
        chrono::DateTime::parse_from_rfc3339(api["last_activity"].as_str().expect("last_activity"))
            .expect("RFC 3339")
            .timestamp();
    assert_eq!(
        expires,
        last_activity + 7200 + tessera::sessions::lifecycle::STORE_GRACE_SECS,
        "the key expires an idle timeout, plus the grace, after the last activity"
    );

    let token = csrf_token_of(&browser, "/dashboard").await;
    browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert!(server.session_keys().is_empty(), "logout deleted the key");
}

#[tokio::test]
async fn two_instances_share_sessions_through_redis() {
    let server = RedisServer::start();
    let a = TestApp::with(production(&server)).await;
    let b = TestApp::with(Settings {
        share_with: Some(a.scratch()),
        ..production(&server)
    })
    .await;
    let browser = a.browser();
    a.register(&browser, "Pat", "pat@example.com", "correct horse battery")
        .await;
    let login = a
        .log_in(&browser, "pat@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, "__Host-session").expect("id");

    let on_b = b
        .browser()
        .get("/dashboard")
        .add_header("cookie", format!("__Host-session={id}"))
        .await;
    assert_eq!(
        on_b.status_code(),
        200,
        "instance B knows the session A created"
    );
}

#[tokio::test]
async fn redis_outage_gives_503_pages_and_service_resumes_without_restart() {
    let mut server = RedisServer::start();
    let app = TestApp::with(production(&server)).await;
    let browser = app.browser();
    app.register(
        &browser,
        "Quinn",
        "quinn@example.com",
        "correct horse battery",
    )
    .await;
    app.log_in(
        &browser,
        "quinn@example.com",
        "correct horse battery",
        false,
    )
    .await;
    assert_eq!(browser.get("/dashboard").await.status_code(), 200);

    server.kill();
    let down = tokio::time::timeout(PATIENCE, browser.get("/dashboard"))
        .await
        .expect("answered, not hung");
    assert_eq!(down.status_code(), 503);
    assert!(
        down.text().contains("Sessions are unavailable"),
        "a clear page, not an empty 500"
    );
    let login_page = tokio::time::timeout(PATIENCE, app.browser().get("/login"))
        .await
        .expect("answered");
    assert_eq!(
        login_page.status_code(),
        200,
        "the login page still renders"
    );

    server.restart();
    assert!(
        eventually(PATIENCE, || async {
            browser.get("/dashboard").await.status_code() == 200
        })
        .await,
        "still {} after Redis came back",
        browser.get("/dashboard").await.status_code()
    );
}
