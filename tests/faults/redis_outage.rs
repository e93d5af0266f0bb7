//! Redis dies under load and comes back: no panic, no empty 500, a 503 page while it is
//! down, service again once it is back (without a restart of the app), and no session
//! lost.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use axum_test::TestServer;
use loco_rs::environment::Environment;
use serde_json::{json, Value};

use crate::support::{
    clock::{eventually, PATIENCE},
    csrf_token_of, location,
    redis::RedisServer,
    Settings, TestApp,
};

const USERS: usize = 12;
const WORKERS: usize = 4;

fn production(server: &RedisServer, share: Option<Arc<crate::support::Scratch>>) -> Settings {
    Settings {
        environment: Environment::Production,
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        share_with: share,
        ..Settings::default()
    }
}

async fn authenticated(browser: &TestServer) -> bool {
    let response = browser.get("/api/session").await;
    response.status_code() == 200 && response.json::<Value>()["authenticated"] == true
}

/// Statuses seen by the load, and any response that broke the rules.
#[derive(Default)]
struct Observed {
    statuses: Vec<u16>,
    violations: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_then_restarted_loses_nothing() {
    let mut server = RedisServer::start();
    let app = TestApp::with(production(&server, None)).await;
    let mut browsers = Vec::new();
    for i in 0..USERS {
        let email = format!("load{i}@example.com");
        app.create_user(&email, false).await;
        browsers.push(Arc::new(app.browser_logged_in_as(&email).await.0));
    }
    let keys_before = server.keys().len();
    assert_eq!(keys_before, USERS);

    let running = Arc::new(AtomicBool::new(true));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (running, observed) = (running.clone(), observed.clone());
        let mine: Vec<_> = browsers
            .iter()
            .skip(worker)
            .step_by(WORKERS)
            .cloned()
            .collect();
        workers.push(async move {
            while running.load(Ordering::Relaxed) {
                for browser in &mine {
                    let response = tokio::time::timeout(PATIENCE, browser.get("/dashboard")).await;
                    let mut seen = observed.lock().expect("observed");
                    match response {
                        Err(_) => seen
                            .violations
                            .push(format!("a request hung for {PATIENCE:?}")),
                        Ok(response) => {
                            let status = response.status_code().as_u16();
                            let body = response.text();
                            seen.statuses.push(status);
                            match status {
                                200 => {}
                                503 if body.contains("Sessions are unavailable") => {}
                                other => seen.violations.push(format!(
                                    "{other} with body {:?}",
                                    body.chars().take(80).collect::<String>()
                                )),
                            }
                        }
                    }
                }
                // Let the outage's own steps run between rounds.
                tokio::task::yield_now().await;
            }
        });
    }

    // The load runs in this task (test requests are not `Send`), next to the outage. Each
    // step waits for what the load sees, not for a time: Redis dies once pages are being
    // served, comes back once the load has met the outage, and the load stops once it is
    // served pages again.
    let probe = browsers[0].clone();
    let seen_since = |from: usize, status: u16| {
        let observed = observed.clone();
        move || {
            let observed = observed.clone();
            async move { observed.lock().expect("observed").statuses[from..].contains(&status) }
        }
    };
    let seen_so_far = || observed.lock().expect("observed").statuses.len();
    let outage = async {
        assert!(
            eventually(PATIENCE, seen_since(0, 200)).await,
            "the load was never served"
        );
        let killed_at = seen_so_far();
        server.kill();
        assert!(
            eventually(PATIENCE, seen_since(killed_at, 503)).await,
            "the load never met the outage"
        );
        server.restart();
        assert!(
            eventually(PATIENCE, || authenticated(&probe)).await,
            "not served again after Redis returned"
        );
        let back_at = seen_so_far();
        assert!(
            eventually(PATIENCE, seen_since(back_at, 200)).await,
            "the load was not served again"
        );
        running.store(false, Ordering::Relaxed);
    };
    tokio::join!(futures::future::join_all(workers), outage);

    {
        let observed = observed.lock().expect("observed");
        assert!(observed.violations.is_empty(), "{:?}", observed.violations);
        assert!(
            observed.statuses.contains(&503),
            "the outage was seen as 503 pages"
        );
        assert!(observed.statuses.contains(&200));
    }
    assert_eq!(
        server.keys().len(),
        keys_before,
        "every session Redis kept is still there"
    );
    for browser in &browsers {
        assert!(authenticated(browser).await, "and still valid");
    }
}

#[tokio::test]
async fn login_on_a_use_on_b_revoke_on_b_refused_on_a() {
    let server = RedisServer::start();
    let a = TestApp::with(production(&server, None)).await;
    let b = TestApp::with(production(&server, Some(a.scratch()))).await;
    a.create_user("ada@example.com", false).await;

    let (on_a, id) = a.browser_logged_in_as("ada@example.com").await;
    let on_b = b.browser();
    let cookie = format!("__Host-session={id}");
    let used = on_b
        .get("/dashboard")
        .add_header("cookie", cookie.clone())
        .await;
    assert_eq!(used.status_code(), 200, "B serves the session A created");

    // From another device, on instance B, Ada ends the session she started on A.
    let (phone_on_b, _) = b.browser_logged_in_as("ada@example.com").await;
    let session_ref = b.sessions().session_ref(&crate::support::parse_id(&id));
    let token = csrf_token_of(&phone_on_b, "/sessions").await;
    let revoke = phone_on_b
        .post(&format!("/sessions/{session_ref}/revoke"))
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(revoke.status_code(), 303);

    assert_eq!(
        location(&on_a.get("/dashboard").await),
        "/login",
        "A refuses it at once"
    );
}
