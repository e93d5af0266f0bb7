//! Bounded cost under a burst: sign-ups are throttled per client network, password hashing
//! runs a bounded number of hashes with a bounded queue (503 with `Retry-After` beyond it,
//! the attempt given back to the throttle), and a database with no free connection
//! answers the 503 page, never a 500.

use std::{sync::Arc, time::Duration};

use axum_test::{TestResponse, TestServer};
use serde_json::json;
use tessera::sessions::hashing::Priority;
use tokio::sync::Notify;

use crate::support::{csrf_token_of, location, texts, Settings, TestApp};

async fn register(browser: &TestServer, email: &str, password: &str) -> TestResponse {
    let token = csrf_token_of(browser, "/register").await;
    browser
        .post("/register")
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "Some Body"),
            ("email", email),
            ("password", password),
        ])
        .await
}

/// Polls `condition` until it holds; fails only after a generous deadline.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Holds every slot of the app's hasher until the returned `Notify` is notified once per
/// slot.
async fn occupy_hasher(app: &TestApp, slots: usize) -> Arc<Notify> {
    let release = Arc::new(Notify::new());
    let hashing = app.sessions().hashing().clone();
    for _ in 0..slots {
        let (hashing, release) = (hashing.clone(), release.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::spawn(async move {
            hashing
                .run(Priority::Login, move || {
                    handle.block_on(release.notified());
                })
                .await
        });
    }
    until("the hasher is full", || hashing.load().running == slots).await;
    release
}

#[tokio::test]
async fn sign_ups_are_throttled_per_client_network_whatever_their_outcome() {
    let app = TestApp::with_sessions(json!({"throttle": {"registration_attempts": 3}})).await;
    app.create_user("taken@example.com", false).await;
    let browser = app.browser();
    // A form with mistakes, a taken email, a new account: three attempts.
    assert_eq!(
        register(&browser, "not an email", "short")
            .await
            .status_code(),
        422
    );
    let taken = register(&browser, "taken@example.com", "correct horse battery").await;
    assert_eq!(location(&taken), "/login?notice=registered");
    let new = register(&browser, "new@example.com", "correct horse battery").await;
    assert_eq!(location(&new), "/login?notice=registered");
    // The fourth, even from a fresh browser on the same network, waits.
    let refused = register(&app.browser(), "late@example.com", "correct horse battery").await;
    assert_eq!(refused.status_code(), 429);
    let wait: u64 = refused
        .maybe_header("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    assert!(wait > 0 && wait <= 3600, "{wait}");
    assert_eq!(
        texts(&refused.text(), "#register-error"),
        vec!["Too many sign-ups from your network. Try again in 60 minutes."]
    );
    let late = tessera::models::users::EmailAddress::parse("late@example.com").expect("email");
    assert!(
        tessera::models::users::Model::find_by_email(&app.ctx.db, &late)
            .await
            .is_err(),
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_answers_503_and_gives_the_sign_up_back() {
    let app = TestApp::with_sessions(json!({
        "password_hashing": {"concurrency": 1, "queue": 1},
        "throttle": {"registration_attempts": 2},
    }))
    .await;
    let release = occupy_hasher(&app, 1).await;
    let hashing = app.sessions().hashing().clone();
    // The first sign-up waits in the queue; the next one finds the queue full.
    let turned_away = app.browser();
    let queued_browser = app.browser();
    let first = register(
        &queued_browser,
        "first@example.com",
        "correct horse battery",
    );
    let second = async {
        until("a sign-up waits for a hash", || hashing.load().queued == 1).await;
        let busy = register(&turned_away, "second@example.com", "correct horse battery").await;
        release.notify_one();
        busy
    };
    let (first, busy) = tokio::join!(first, second);
    assert_eq!(busy.status_code(), 503);
    assert!(busy.maybe_header("retry-after").is_some());
    assert_eq!(
        texts(&busy.text(), "#register-error"),
        vec!["Too many people are signing in right now. Try again in a few seconds."]
    );
    assert_eq!(location(&first), "/login?notice=registered");
    // The turned-away attempt was given back: one more sign-up fits the limit of two...
    let again = register(&turned_away, "second@example.com", "correct horse battery").await;
    assert_eq!(location(&again), "/login?notice=registered");
    // ...and then the limit holds.
    let third = register(&app.browser(), "third@example.com", "correct horse battery").await;
    assert_eq!(third.status_code(), 429);
    let load = hashing.load();
    assert_eq!((load.peak_running, load.refused), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_turned_away_by_the_hasher_is_not_counted_as_a_guess() {
    let app = TestApp::with_sessions(json!({
        "password_hashing": {"concurrency": 1, "queue": 0},
        "throttle": {"account_failures": 1},
    }))
    .await;
    app.create_user("zoe@example.com", false).await;
    let release = occupy_hasher(&app, 1).await;
    let busy = app
        .log_in(&app.browser(), "zoe@example.com", "a guess", false)
        .await;
    assert_eq!(busy.status_code(), 503);
    assert!(busy.maybe_header("retry-after").is_some());
    assert_eq!(
        texts(&busy.text(), "#login-error"),
        vec!["Too many people are signing in right now. Try again in a few seconds."]
    );
    release.notify_one();
    until("the slot is free", || {
        app.sessions().hashing().load().running == 0
    })
    .await;
    // One failure allowed: the busy attempt did not use it up.
    let wrong = app
        .log_in(&app.browser(), "zoe@example.com", "a guess", false)
        .await;
    assert_eq!(wrong.status_code(), 422);
    let then = app
        .log_in(&app.browser(), "zoe@example.com", "a guess", false)
        .await;
    assert_eq!(then.status_code(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ups_runs_at_most_the_concurrency_and_answers_only_known_statuses() {
    const BURST: usize = 24;
    let app = TestApp::with_sessions(json!({
        "password_hashing": {"concurrency": 2, "queue": 4},
        "throttle": {"registration_attempts": 1000},
    }))
    .await;
    let browsers: Vec<_> = (0..BURST).map(|_| app.browser()).collect();
    let mut tokens = Vec::new();
    for browser in &browsers {
        tokens.push(csrf_token_of(browser, "/register").await);
    }
    let sign_ups =
        browsers
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(n, (browser, token))| async move {
                let email = format!("burst{n}@example.com");
                browser
                    .post("/register")
                    .form(&[
                        ("csrf_token", token.as_str()),
                        ("name", "Some Body"),
                        ("email", email.as_str()),
                        ("password", "correct horse battery"),
                    ])
                    .await
            });
    let responses = futures::future::join_all(sign_ups).await;
    let created = responses.iter().filter(|r| r.status_code() == 303).count();
    for response in &responses {
        let status = response.status_code().as_u16();
        assert!([303, 503].contains(&status), "{status}");
        if status == 503 {
            assert!(response.maybe_header("retry-after").is_some());
        }
    }
    let load = app.sessions().hashing().load();
    assert!(load.peak_running <= 2, "{load:?}");
    assert_eq!(load.refused, (BURST - created) as u64, "{load:?}");
    use sea_orm::{EntityTrait, PaginatorTrait};
    let accounts = tessera::models::_entities::users::Entity::find()
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(
        accounts, created as u64,
        "one account per 303, none per 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_database_connection_answers_the_503_page() {
    let app = TestApp::with(Settings {
        pool: Some((1, 300)),
        ..Settings::default()
    })
    .await;
    app.create_user("pat@example.com", false).await;
    let (browser, _) = app.browser_logged_in_as("pat@example.com").await;
    app.flush_audit().await;
    // Someone else holds the only connection for as long as the request waits for it.
    let held = sea_orm::TransactionTrait::begin(&app.ctx.db)
        .await
        .expect("the only connection");
    let page = browser.get("/dashboard").await;
    drop(held);
    assert_eq!(page.status_code(), 503, "{}", page.text());
    assert!(page.maybe_header("retry-after").is_some());
    assert!(
        page.text().contains("Too busy right now"),
        "{}",
        page.text()
    );
    // Served again once the connection is back in the pool.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while browser.get("/dashboard").await.status_code() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
