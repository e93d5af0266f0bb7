//! The throttle behind nginx, as deployed: every client is counted under its own address,
//! so one client's guesses never lock out another; the owner's known browser (its
//! `__Host-device` cookie) logs in while strangers from a dozen addresses hammer the
//! account; and a burst of sign-ups from many addresses gets only the answers it should.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::nginx::{loopback, DeployOptions, DeployedApp};

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_guesses_never_lock_out_another_client() {
    let deployed = DeployedApp::start(DeployOptions {
        sessions: json!({"throttle": {"ip_failures": 4, "account_failures": 100}}),
    })
    .await;
    deployed.app.create_user("ann@example.com", false).await;
    // One client guesses at several accounts until its address is refused...
    let guesser = deployed.client(loopback(1));
    let mut statuses = Vec::new();
    for n in 0..6 {
        let reply = guesser
            .login(&format!("victim{n}@example.com"), "a guess", false)
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [422, 422, 422, 422, 429, 429]);
    // ...and every other client, behind the same proxy, is untouched.
    let other = deployed.client(loopback(2));
    let login = other.login("ann@example.com", PASSWORD, false).await;
    assert_eq!(login.location(), "/dashboard", "{}", login.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_known_browser_logs_in_while_a_dozen_addresses_hammer_the_account() {
    let deployed = DeployedApp::start(DeployOptions::default()).await;
    deployed.app.create_user("max@example.com", false).await;
    let owner = deployed.client(loopback(1));
    let first = owner.login("max@example.com", PASSWORD, false).await;
    assert_eq!(first.location(), "/dashboard", "{}", first.body);
    let device = first.set_cookie("__Host-device").expect("a device cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(device.contains(attribute), "{attribute}: {device}");
    }
    assert!(!device.contains("Domain"), "{device}");
    let logout = owner.logout().await;
    assert_eq!(logout.header("clear-site-data"), Some("\"cache\""));
    assert!(
        owner.cookie_header().contains("__Host-device="),
        "the device cookie survives the logout: {}",
        owner.cookie_header()
    );

    // Twelve wrong passwords from twelve addresses: the unknown clients' budget (5) goes.
    let mut statuses = Vec::new();
    for n in 2..14 {
        let reply = deployed
            .client(loopback(n))
            .login("max@example.com", "a guess", false)
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses[..5], [422; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // An unknown browser with the right password waits with the rest...
    let stranger = deployed
        .client(loopback(20))
        .login("max@example.com", PASSWORD, false)
        .await;
    assert_eq!(stranger.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(stranger.header("retry-after").is_some());
    // ...and the owner, in the very browser they used before, gets in.
    let again = owner.login("max@example.com", PASSWORD, false).await;
    assert_eq!(again.location(), "/dashboard", "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_are_counted_per_address_and_a_burst_gets_only_known_answers() {
    const BURST: u32 = 16;
    let deployed = DeployedApp::start(DeployOptions {
        sessions: json!({
            "throttle": {"registration_attempts": 2},
            "password_hashing": {"concurrency": 1, "queue": 3},
        }),
    })
    .await;
    // One address: two attempts an hour, whatever they were.
    let eager = deployed.client(loopback(1));
    let first = eager.register("Eve", "eve@example.com", PASSWORD).await;
    assert_eq!(first.location(), "/login?notice=registered");
    let mistake = eager.register("Eve", "not an email", PASSWORD).await;
    assert_eq!(mistake.status, StatusCode::UNPROCESSABLE_ENTITY);
    let third = eager.register("Eve", "eve2@example.com", PASSWORD).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(third.header("retry-after").is_some());

    // Many addresses at once, each within its own limit: a created account (303) or "too
    // busy" (503, with Retry-After) and nothing else; never more than one hash at a time.
    let clients: Vec<_> = (0..BURST)
        .map(|n| deployed.client(loopback(10 + n)))
        .collect();
    let mut tokens = Vec::new();
    for client in &clients {
        tokens.push(client.csrf_token("/register").await);
    }
    let sign_ups = clients
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(n, (client, token))| {
            let email = format!("burst{n}@example.com");
            async move {
                client
                    .post(
                        "/register",
                        &[
                            ("csrf_token", token.as_str()),
                            ("name", "Some Body"),
                            ("email", email.as_str()),
                            ("password", PASSWORD),
                        ],
                    )
                    .await
            }
        });
    let replies = futures::future::join_all(sign_ups).await;
    for reply in &replies {
        match reply.status.as_u16() {
            303 => assert_eq!(reply.location(), "/login?notice=registered"),
            503 => assert!(reply.header("retry-after").is_some()),
            other => panic!("{other}: {}", reply.body),
        }
    }
    let load = deployed.app.sessions().hashing().load();
    assert_eq!(load.peak_running, 1, "{load:?}");
    let refused = replies.iter().filter(|r| r.status.as_u16() == 503).count();
    assert_eq!(load.refused, refused as u64, "{load:?}");
}
