//! Client addresses behind nginx: each client is recorded under its own address, never
//! the proxy's, and a client that skips the proxy cannot name an address of its choice
//! unless it connects from a trusted range (which the operator can narrow).

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use tessera::models::_entities::user_sessions;

use crate::support::nginx::{ip, Client, DeployOptions, DeployedApp};

const PASSWORD: &str = "correct horse battery";

/// The addresses the registry holds for `user_id`'s sessions.
async fn registry_ips(deployed: &DeployedApp, user_id: i64) -> Vec<String> {
    let mut ips: Vec<String> = user_sessions::Entity::find()
        .filter(user_sessions::Column::UserId.eq(user_id))
        .all(&deployed.app.ctx.db)
        .await
        .expect("registry rows")
        .into_iter()
        .filter_map(|row| row.ip)
        .collect();
    ips.sort();
    ips
}

async fn logged_in(client: &Client, email: &str) {
    let login = client.login(email, PASSWORD, false).await;
    assert_eq!(login.location(), "/dashboard", "{}", login.body);
}

#[tokio::test]
async fn each_client_behind_the_proxy_is_recorded_under_its_own_address() {
    // The shipped default list: loopback and the private ranges.
    let deployed = DeployedApp::start(DeployOptions::default()).await;
    let user = deployed.app.create_user("ann@example.com", false).await;
    let laptop = deployed.client(ip("127.0.0.2"));
    let phone = deployed.client(ip("127.0.0.3"));
    logged_in(&laptop, "ann@example.com").await;
    logged_in(&phone, "ann@example.com").await;

    let page = laptop.get("/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("IP 127.0.0.2"), "{}", page.body);
    assert!(page.body.contains("IP 127.0.0.3"), "{}", page.body);
    assert!(!page.body.contains("IP 127.0.0.1"), "{}", page.body);
    let mut logins = deployed.app.audited_ips("login").await;
    logins.sort();
    assert_eq!(logins, ["127.0.0.2", "127.0.0.3"]);
    assert_eq!(
        registry_ips(&deployed, user.id).await,
        ["127.0.0.2", "127.0.0.3"]
    );
    // nginx saw the same two clients.
    let access = deployed.nginx_log("access.log");
    assert!(
        access.contains("127.0.0.2 ") && access.contains("127.0.0.3 "),
        "{access}"
    );

    let failed = deployed
        .client(ip("127.0.0.4"))
        .login("ann@example.com", "wrong", false)
        .await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        deployed.app.audited_ips("login_failed").await,
        ["127.0.0.4"]
    );
}

#[tokio::test]
async fn with_the_list_narrowed_to_the_proxy_nobody_else_names_an_address() {
    // Only nginx (which connects from 127.0.0.1) is trusted.
    let deployed = DeployedApp::start(DeployOptions {
        sessions: json!({"trusted_proxies": "127.0.0.1"}),
    })
    .await;
    let user = deployed.app.create_user("bob@example.com", false).await;

    // Straight to the app's port, past nginx, with a forged header.
    let direct = deployed.direct_client(ip("127.0.0.9"));
    let token = direct.csrf_token("/login").await;
    let login = direct
        .send(
            direct
                .request(reqwest::Method::POST, "/login")
                .header("x-forwarded-for", "203.0.113.66")
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("email", "bob@example.com"),
                    ("password", PASSWORD),
                ]),
        )
        .await;
    assert_eq!(login.location(), "/dashboard", "{}", login.body);

    // Through nginx with a forged header: nginx appends the client's address, and the
    // client is not a trusted proxy, so its own entry is ignored.
    let through = deployed.client(ip("127.0.0.2"));
    let token = through.csrf_token("/login").await;
    let login = through
        .send(
            through
                .request(reqwest::Method::POST, "/login")
                .header("x-forwarded-for", "198.51.100.77")
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("email", "bob@example.com"),
                    ("password", PASSWORD),
                ]),
        )
        .await;
    assert_eq!(login.location(), "/dashboard", "{}", login.body);

    let mut logins = deployed.app.audited_ips("login").await;
    logins.sort();
    assert_eq!(logins, ["127.0.0.2", "127.0.0.9"]);
    assert_eq!(
        registry_ips(&deployed, user.id).await,
        ["127.0.0.2", "127.0.0.9"]
    );
    let page = through.get("/sessions").await.body;
    assert!(
        !page.contains("203.0.113.66") && !page.contains("198.51.100.77"),
        "{page}"
    );
}

#[tokio::test]
async fn a_direct_client_inside_a_trusted_range_can_name_any_address() {
    // What SECURITY.md warns about: with the default list, a client that reaches the
    // app's port from loopback or the LAN is taken for a proxy.
    let deployed = DeployedApp::start(DeployOptions::default()).await;
    deployed.app.create_user("cy@example.com", false).await;
    let direct = deployed.direct_client(ip("127.0.0.9"));
    let token = direct.csrf_token("/login").await;
    let login = direct
        .send(
            direct
                .request(reqwest::Method::POST, "/login")
                .header("x-forwarded-for", "203.0.113.66")
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("email", "cy@example.com"),
                    ("password", PASSWORD),
                ]),
        )
        .await;
    assert_eq!(login.location(), "/dashboard", "{}", login.body);
    assert_eq!(deployed.app.audited_ips("login").await, ["203.0.113.66"]);
}
