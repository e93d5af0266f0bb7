//! Cookies through TLS: what a browser gets from the production config behind nginx.

use reqwest::StatusCode;

use crate::support::nginx::{ip, DeployOptions, DeployedApp};

#[tokio::test]
async fn through_tls_every_cookie_is_secure_and_host_prefixed_and_a_session_lives_in_redis() {
    let deployed = DeployedApp::start(DeployOptions::default()).await;
    deployed.app.create_user("ann@example.com", false).await;
    let ann = deployed.client(ip("127.0.0.2"));

    let page = ann.get("/login").await;
    assert_eq!(page.status, StatusCode::OK);
    let form_cookie = page.set_cookie("__Host-csrf").expect("the form cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            form_cookie.contains(attribute),
            "{attribute}: {form_cookie}"
        );
    }
    assert!(!form_cookie.contains("Domain"), "{form_cookie}");
    assert!(
        deployed.redis.keys().is_empty(),
        "an anonymous visitor writes nothing"
    );

    let login = ann
        .login("ann@example.com", "correct horse battery", false)
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    assert_eq!(login.location(), "/dashboard");
    let session_cookie = login
        .set_cookie("__Host-session")
        .expect("the session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            session_cookie.contains(attribute),
            "{attribute}: {session_cookie}"
        );
    }
    assert!(!session_cookie.contains("Domain"), "{session_cookie}");
    assert_eq!(
        deployed.redis.keys().len(),
        1,
        "one record, in the app's Redis"
    );

    let dashboard = ann.get("/dashboard").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.header("strict-transport-security").is_some(),
        "HSTS through the proxy"
    );
    let logout = ann.logout().await;
    assert_eq!(logout.location(), "/login");
    assert!(
        deployed.redis.keys().is_empty(),
        "logout deletes the record"
    );
}
