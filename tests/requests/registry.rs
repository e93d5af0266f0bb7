//! The registry and the per-user limit, on SQLite and PostgreSQL.

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};
use tessera::models::_entities::{session_events, user_sessions};

use crate::support::{location, Database, Settings, TestApp};

async fn limit_holds_under_simultaneous_logins(database: Database) {
    let app = TestApp::with(Settings {
        database,
        // Eight logins at once all reach the password check only under a throttle that
        // lets eight attempts be in flight.
        sessions: json!({"max_per_user": 3, "throttle": {"account_failures": 8}}),
        ..Settings::default()
    })
    .await;
    let user = app.create_user("fay@example.com", false).await;
    let browsers: Vec<_> = (0..8).map(|_| app.browser()).collect();
    // Each browser fetches its login form first, then all log in at once.
    let mut tokens = Vec::new();
    for browser in &browsers {
        tokens.push(crate::support::csrf_token_of(browser, "/login").await);
    }
    let logins = browsers
        .iter()
        .zip(&tokens)
        .map(|(browser, token)| async move {
            browser
                .post("/login")
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("email", "fay@example.com"),
                    ("password", "correct horse battery"),
                ])
                .await
        });
    for response in futures::future::join_all(logins).await {
        assert_eq!(location(&response), "/dashboard");
    }

    let mut alive = 0;
    for browser in &browsers {
        let api: Value = browser.get("/api/session").await.json();
        if api["authenticated"] == true {
            alive += 1;
        }
    }
    assert_eq!(alive, 3, "exactly the limit of sessions still work");
    let live_rows = user_sessions::Entity::find()
        .filter(user_sessions::Column::UserId.eq(user.id))
        .filter(user_sessions::Column::EndedAt.is_null())
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(live_rows, 3, "and the registry agrees");
    app.flush_audit().await;
    let evictions = session_events::Entity::find()
        .filter(session_events::Column::Event.eq("revoked"))
        .filter(session_events::Column::Reason.eq("revoked_by_limit"))
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(evictions, 5, "each eviction is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_holds_under_simultaneous_logins_sqlite() {
    limit_holds_under_simultaneous_logins(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_holds_under_simultaneous_logins_postgres() {
    limit_holds_under_simultaneous_logins(Database::Postgres).await;
}

async fn rows_disappear_after_expiry_and_cleanup(database: Database) {
    let app = TestApp::with(Settings {
        database,
        sessions: json!({"idle_timeout_secs": 3600, "absolute_lifetime_secs": 86400}),
        ..Settings::default()
    })
    .await;
    app.create_user("gil@example.com", false).await;
    let (browser, id) = app.browser_logged_in_as("gil@example.com").await;
    let (_other, other_id) = app.browser_logged_in_as("gil@example.com").await;
    let registry = app.sessions().registry().clone();
    assert_eq!(registry.row_count().await.expect("count"), 2);

    // An idle timeout later, for both.
    app.age_session(&id, 3600).await;
    app.age_session(&other_id, 3600).await;
    // One of them comes back and finds its session expired: the row says why.
    assert_eq!(location(&browser.get("/dashboard").await), "/login");
    let ended = user_sessions::Entity::find()
        .filter(user_sessions::Column::EndReason.eq("idle_expired"))
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(ended, 1);

    let report = tessera::sessions::maintenance::cleanup(&app.sessions(), &app.ctx.db, |_, _| {})
        .await
        .expect("cleanup");
    assert_eq!(
        (report.expired_unseen, report.registry_gone, report.registry_vanished),
        (1, 1, 0),
        "the never-revisited session's row is pruned with its expiry audited: it expired, the store lost nothing"
    );
    assert_eq!(
        registry.row_count().await.expect("count"),
        1,
        "the ended row stays for a day"
    );
    assert!(registry.live().await.expect("live").is_empty());
}

#[tokio::test]
async fn rows_disappear_after_expiry_and_cleanup_sqlite() {
    rows_disappear_after_expiry_and_cleanup(Database::Sqlite).await;
}

#[tokio::test]
async fn rows_disappear_after_expiry_and_cleanup_postgres() {
    rows_disappear_after_expiry_and_cleanup(Database::Postgres).await;
}

#[tokio::test]
async fn rows_of_sessions_gone_from_the_store_are_pruned() {
    let app = TestApp::start().await;
    app.create_user("hal@example.com", false).await;
    let (_browser, id) = app.browser_logged_in_as("hal@example.com").await;
    // The record vanishes behind the registry's back (store flushed, key evicted...).
    let key = app
        .sessions()
        .hasher()
        .store_key(&crate::support::parse_id(&id));
    tower_sessions::session_store::SessionStore::delete(app.sessions().backend(), key.as_id())
        .await
        .expect("delete");
    let report = app
        .sessions()
        .registry()
        .prune(app.sessions().backend(), 500, |_| async {})
        .await
        .expect("prune");
    assert_eq!(
        (report.gone, report.vanished),
        (1, 1),
        "live in the registry, gone from the store"
    );
    assert_eq!(
        app.sessions().registry().row_count().await.expect("count"),
        0
    );
}
