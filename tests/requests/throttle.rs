//! Password guesses are counted before they are judged, on every store: a burst of
//! simultaneous guesses gets at most the limit of answers, windows end and counting
//! restarts, the Redis counter always expires, and the password form is throttled too.

use serde_json::{json, Value};

use crate::support::{
    csrf_token_of, location, redis::RedisServer, texts, Database, Settings, TestApp,
};

/// The stores whose throttle is checked, and the settings that select them.
enum Store {
    Memory,
    File,
    Database(Database),
    Redis(RedisServer),
}

impl Store {
    fn settings(&self, throttle: Value) -> Settings {
        let (sessions, database) = match self {
            Self::Memory => (json!({"store": "memory"}), Database::Sqlite),
            Self::File => (json!({"store": "file"}), Database::Sqlite),
            Self::Database(database) => (json!({"store": "database"}), *database),
            Self::Redis(server) => (
                json!({"store": "redis", "redis": {"url": server.url()}}),
                Database::Sqlite,
            ),
        };
        let mut sessions = sessions;
        sessions["throttle"] = throttle;
        Settings {
            sessions,
            database,
            ..Settings::default()
        }
    }
}

/// One login through a fresh browser; its status.
async fn attempt(app: &TestApp, email: &str, password: &str) -> u16 {
    app.log_in(&app.browser(), email, password, false)
        .await
        .status_code()
        .as_u16()
}

/// `4 × limit` wrong passwords sent at once: exactly `limit` are judged (422), the rest are
/// refused unjudged (429), and then the right password waits too.
async fn simultaneous_guesses_are_judged_at_most_the_limit(store: Store) {
    const LIMIT: usize = 3;
    let app = TestApp::with(
        store.settings(json!({"account_failures": LIMIT, "ip_failures": 1000, "window_secs": 60})),
    )
    .await;
    app.create_user("gia@example.com", false).await;
    let browsers: Vec<_> = (0..4 * LIMIT).map(|_| app.browser()).collect();
    let mut tokens = Vec::new();
    for browser in &browsers {
        tokens.push(csrf_token_of(browser, "/login").await);
    }
    let guesses = browsers
        .iter()
        .zip(&tokens)
        .map(|(browser, token)| async move {
            browser
                .post("/login")
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("email", "gia@example.com"),
                    ("password", "a wrong guess"),
                ])
                .await
        });
    let responses = futures::future::join_all(guesses).await;
    let judged = responses.iter().filter(|r| r.status_code() == 422).count();
    let refused: Vec<_> = responses
        .iter()
        .filter(|r| r.status_code() == 429)
        .collect();
    assert_eq!(judged, LIMIT, "exactly the limit of guesses were judged");
    assert_eq!(judged + refused.len(), 4 * LIMIT, "the rest were refused");
    assert!(refused
        .iter()
        .all(|r| r.maybe_header("retry-after").is_some()));

    let right = app
        .log_in(
            &app.browser(),
            "gia@example.com",
            "correct horse battery",
            false,
        )
        .await;
    assert_eq!(right.status_code(), 429, "even the right password waits");
    assert_eq!(
        texts(&right.text(), "#login-error"),
        vec!["Too many attempts. Try again in 1 minute."]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_judged_at_most_the_limit_memory() {
    simultaneous_guesses_are_judged_at_most_the_limit(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_judged_at_most_the_limit_file() {
    simultaneous_guesses_are_judged_at_most_the_limit(Store::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_judged_at_most_the_limit_database() {
    simultaneous_guesses_are_judged_at_most_the_limit(Store::Database(Database::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_judged_at_most_the_limit_database_postgres() {
    simultaneous_guesses_are_judged_at_most_the_limit(Store::Database(Database::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_judged_at_most_the_limit_redis() {
    simultaneous_guesses_are_judged_at_most_the_limit(Store::Redis(RedisServer::start())).await;
}

/// A window ends and counting restarts, twice in a row: the second window throttles
/// again, so the counter was not left behind by the first.
async fn windows_end_and_counting_restarts(store: Store) {
    // An hour: the window ends when the test ends it, never while logins run.
    let app = TestApp::with(
        store.settings(json!({"account_failures": 2, "ip_failures": 1000, "window_secs": 3600})),
    )
    .await;
    app.create_user("hal@example.com", false).await;
    for window in 0..2 {
        assert_eq!(
            attempt(&app, "hal@example.com", "wrong").await,
            422,
            "{window}"
        );
        assert_eq!(
            attempt(&app, "hal@example.com", "wrong").await,
            422,
            "{window}"
        );
        assert_eq!(
            attempt(&app, "hal@example.com", "correct horse battery").await,
            429,
            "window {window} is used up"
        );
        app.end_throttle_windows().await;
    }
    assert_eq!(
        attempt(&app, "hal@example.com", "correct horse battery").await,
        303,
        "a new window"
    );
}

#[tokio::test]
async fn windows_end_and_counting_restarts_memory() {
    windows_end_and_counting_restarts(Store::Memory).await;
}

#[tokio::test]
async fn windows_end_and_counting_restarts_file() {
    windows_end_and_counting_restarts(Store::File).await;
}

#[tokio::test]
async fn windows_end_and_counting_restarts_database() {
    windows_end_and_counting_restarts(Store::Database(Database::Sqlite)).await;
}

#[tokio::test]
async fn windows_end_and_counting_restarts_database_postgres() {
    windows_end_and_counting_restarts(Store::Database(Database::Postgres)).await;
}

#[tokio::test]
async fn windows_end_and_counting_restarts_redis() {
    windows_end_and_counting_restarts(Store::Redis(RedisServer::start())).await;
}

/// The remaining lifetimes (PTTL, ms) of every throttle counter in `server`.
fn throttle_ttls(server: &RedisServer) -> Vec<i64> {
    server
        .keys()
        .iter()
        .filter(|k| k.starts_with("tessera:throttle:"))
        .map(|k| {
            server
                .cli(&["PTTL", k])
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(-3)
        })
        .collect()
}

#[tokio::test]
async fn the_redis_counter_always_carries_an_expiry() {
    let server = RedisServer::start();
    let app = TestApp::with(Settings {
        sessions: json!({"store": "redis", "redis": {"url": server.url()}, "throttle": {"window_secs": 600}}),
        ..Settings::default()
    })
    .await;
    app.create_user("ida@example.com", false).await;
    assert_eq!(attempt(&app, "ida@example.com", "wrong").await, 422);
    let ttls = throttle_ttls(&server);
    assert_eq!(ttls.len(), 2, "one counter for the account, one for the IP");
    assert!(
        ttls.iter().all(|t| *t > 0 && *t <= 600_000),
        "every counter expires within the window: {ttls:?}"
    );
    // A counter that lost its expiry (written by an old version, restored from a dump
    // without TTLs) gets one back from the next attempt, never stays forever.
    for key in server.keys() {
        if key.starts_with("tessera:throttle:") {
            server.cli(&["PERSIST", &key]);
        }
    }
    assert!(throttle_ttls(&server).iter().all(|t| *t == -1));
    assert_eq!(attempt(&app, "ida@example.com", "wrong").await, 422);
    let ttls = throttle_ttls(&server);
    assert!(ttls.iter().all(|t| *t > 0), "{ttls:?}");
    // A success gives its own attempt back and clears nothing: the failures before it
    // stay counted (a success must not hand a guesser a fresh budget), with their expiry.
    assert_eq!(
        attempt(&app, "ida@example.com", "correct horse battery").await,
        303
    );
    let ttls = throttle_ttls(&server);
    assert_eq!(ttls.len(), 2, "both counters stay: {ttls:?}");
    assert!(ttls.iter().all(|t| *t > 0), "{ttls:?}");
}

/// Posts the password form; its status, the current-password error and `Retry-After`.
async fn change_password(
    browser: &axum_test::TestServer,
    current: &str,
) -> (u16, String, Option<String>) {
    let token = csrf_token_of(browser, "/account").await;
    let response = browser
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", current),
            ("new_password", "a brand new password"),
        ])
        .await;
    (
        response.status_code().as_u16(),
        texts(&response.text(), "#current-error").concat(),
        response
            .maybe_header("retry-after")
            .and_then(|v| v.to_str().ok().map(str::to_string)),
    )
}

#[tokio::test]
async fn the_password_form_throttles_guesses_of_the_current_password() {
    let app = TestApp::with(
        Store::Memory
            .settings(json!({"account_failures": 3, "ip_failures": 1000, "window_secs": 60})),
    )
    .await;
    app.create_user("jan@example.com", false).await;
    let (browser, _) = app.browser_logged_in_as("jan@example.com").await;
    for _ in 0..3 {
        let (status, error, _) = change_password(&browser, "a wrong guess").await;
        assert_eq!(status, 422);
        assert_eq!(error, "That is not your current password.");
    }
    let (status, error, retry_after) = change_password(&browser, "correct horse battery").await;
    assert_eq!(status, 429, "even the right password waits: {error}");
    let retry_after: u64 = retry_after
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Nothing changed: the old password still logs in elsewhere.
    assert_eq!(
        location(
            &app.log_in(
                &app.browser(),
                "jan@example.com",
                "correct horse battery",
                false
            )
            .await
        ),
        "/dashboard"
    );
    app.flush_audit().await;
    let events = crate::requests::throttle::events(&app).await;
    assert!(
        events
            .iter()
            .any(|(event, reason)| event == "login_throttled"
                && reason.starts_with("current password checks")),
        "{events:?}"
    );
}

/// Every audit event so far: (event, reason).
pub async fn events(app: &TestApp) -> Vec<(String, String)> {
    use sea_orm::{EntityTrait, QueryOrder};
    use tessera::models::_entities::session_events;
    session_events::Entity::find()
        .order_by_asc(session_events::Column::Id)
        .all(&app.ctx.db)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.event, e.reason.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn login_failed_names_the_account_when_it_exists() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    use tessera::models::_entities::session_events;
    let app = TestApp::start().await;
    let user = app.create_user("kai@example.com", false).await;
    assert_eq!(attempt(&app, "kai@example.com", "wrong").await, 422);
    assert_eq!(attempt(&app, "nobody@example.com", "wrong").await, 422);
    app.flush_audit().await;
    let users: Vec<Option<i64>> = session_events::Entity::find()
        .filter(session_events::Column::Event.eq("login_failed"))
        .order_by_asc(session_events::Column::Id)
        .all(&app.ctx.db)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.user_id)
        .collect();
    assert_eq!(users, vec![Some(user.id), None]);
}
