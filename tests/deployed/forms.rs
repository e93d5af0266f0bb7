//! The anonymous forms and `/_health` through nginx and TLS: an expired form is shown
//! again with a fresh `__Host-` cookie, and strangers learn only the status.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    attrs,
    nginx::{ip, DeployOptions, DeployedApp},
    texts,
};

#[tokio::test]
async fn an_expired_login_form_is_shown_again_through_the_proxy_and_then_works() {
    let deployed = DeployedApp::start(DeployOptions::default()).await;
    deployed.app.create_user("dee@example.com", false).await;
    let dee = deployed.client(ip("127.0.0.2"));
    // The browser holds a form cookie issued more than two hours ago, and its token.
    let sessions = deployed.app.sessions();
    let tokens = sessions.form_tokens();
    let issued_at = tessera::sessions::clock::now() - 7201;
    let old = tokens.issue(issued_at);
    let set = tokens.set_cookie(&old, issued_at);
    dee.add_cookie(&format!("{}={}; Secure; Path=/", set.name(), set.value()));
    assert!(dee.cookie_header().contains("__Host-csrf="));

    let stale = dee
        .post(
            "/login",
            &[
                ("csrf_token", tokens.token(&old).as_str()),
                ("email", "dee@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    assert!(
        texts(&stale.body, "#login-error")
            .concat()
            .starts_with("This form expired"),
        "{}",
        stale.body
    );
    assert_eq!(
        attrs(&stale.body, "input#email", "value"),
        ["dee@example.com"]
    );
    let fresh_cookie = stale
        .set_cookie("__Host-csrf")
        .expect("a fresh form cookie");
    assert!(
        fresh_cookie.contains("Secure") && fresh_cookie.contains("Max-Age=7200"),
        "{fresh_cookie}"
    );
    assert!(deployed.redis.keys().is_empty(), "nobody logged in");

    let fresh = stale.hidden_field("csrf_token").expect("a fresh token");
    let login = dee
        .post(
            "/login",
            &[
                ("csrf_token", fresh.as_str()),
                ("email", "dee@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(login.location(), "/dashboard", "{}", login.body);
}

#[tokio::test]
async fn health_through_the_proxy_tells_strangers_only_the_status() {
    let deployed = DeployedApp::start(DeployOptions {
        sessions: json!({"metrics_token": "scrape-me-0123456789"}),
    })
    .await;
    deployed.app.create_user("root@example.com", true).await;
    let stranger = deployed.client(ip("127.0.0.2"));
    let reply = stranger.get("/_health").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"status": "ok"}));

    let scraper = deployed.client(ip("127.0.0.3"));
    let reply = scraper
        .get_with(
            "/_health",
            &[("authorization", "Bearer scrape-me-0123456789")],
        )
        .await;
    assert_eq!(reply.json()["session_store"]["ok"], true);
    assert_eq!(reply.json()["store"], "redis");

    let admin = deployed.client(ip("127.0.0.4"));
    let login = admin
        .login("root@example.com", "correct horse battery", false)
        .await;
    assert_eq!(login.location(), "/dashboard");
    let reply = admin.get("/_health").await;
    assert_eq!(reply.json()["database"]["ok"], true);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}
