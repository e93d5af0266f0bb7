//! `sessions_migrate`: every live session keeps working, with the same ID and expiry,
//! after a deployment switches stores.

use serde_json::{json, Value};
use tessera::sessions::{maintenance, stores::Backend};
use tower_sessions::session_store::SessionStore;

use crate::support::{redis::RedisServer, Database, Settings, TestApp};

async fn logged_in_file_app(server: &RedisServer, database: Database) -> (TestApp, Vec<String>) {
    let app = TestApp::with(Settings {
        database,
        sessions: json!({"store": "file", "redis": {"url": server.url()}}),
        ..Settings::default()
    })
    .await;
    let mut ids = Vec::new();
    for email in ["gia@example.com", "hugo@example.com"] {
        app.create_user(email, false).await;
        ids.push(app.browser_logged_in_as(email).await.1);
    }
    (app, ids)
}

async fn still_logged_in(app: &TestApp, cookie: &str, id: &str) -> bool {
    let response = app
        .browser()
        .get("/api/session")
        .add_header("cookie", format!("{cookie}={id}"))
        .await;
    response.json::<Value>()["authenticated"] == true
}

#[tokio::test]
async fn file_to_redis_keeps_every_session_and_its_expiry() {
    let server = RedisServer::start();
    let (app, ids) = logged_in_file_app(&server, Database::Sqlite).await;
    let file_expiries: Vec<_> = {
        let backend = app.sessions().backend().clone();
        let mut out = Vec::new();
        for id in &ids {
            let key = app
                .sessions()
                .hasher()
                .store_key(&crate::support::parse_id(id));
            out.push(
                backend
                    .load(key.as_id())
                    .await
                    .expect("load")
                    .expect("record")
                    .expiry_date,
            );
        }
        out
    };

    for run in 0..2 {
        let (ok, out, err) = app.cli(&["task", "sessions_migrate", "from:file", "to:redis"]);
        assert!(ok, "{err}");
        assert!(
            out.contains("sessions_migrate: 2 copied, 0 skipped (expired), 0 failed"),
            "run {run}: {out}"
        );
    }
    let keys = server.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");

    let redis_app = TestApp::with(Settings {
        share_with: Some(app.scratch()),
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..Settings::default()
    })
    .await;
    for (id, file_expiry) in ids.iter().zip(file_expiries) {
        let key = redis_app
            .sessions()
            .hasher()
            .store_key(&crate::support::parse_id(id))
            .to_string();
        let expires = || -> i64 {
            server
                .cli(&["EXPIRETIME", &key])
                .and_then(|t| t.parse().ok())
                .expect("EXPIRETIME")
        };
        // As copied, before a request reads (and rewrites) the record.
        assert_eq!(
            expires(),
            file_expiry.unix_timestamp(),
            "the copy expires when the record did in the file store"
        );
        assert!(
            still_logged_in(&redis_app, "session", id).await,
            "same cookie, new store"
        );
        assert_eq!(
            expires(),
            file_expiry.unix_timestamp(),
            "and still does once read"
        );
    }
    let api: Value = redis_app
        .browser()
        .get("/api/session")
        .add_header("cookie", format!("session={}", ids[0]))
        .await
        .json();
    assert_eq!(api["store"], "redis");
}

#[tokio::test]
async fn file_to_memory_and_database_keep_every_session() {
    let server = RedisServer::start();
    let (app, ids) = logged_in_file_app(&server, Database::Sqlite).await;
    let file = app.sessions().backend().clone();
    let memory = Backend::Memory(tessera::sessions::stores::memory::MemoryStore::default());
    let registry = app.sessions().registry().clone();
    let report = maintenance::migrate(&registry, &file, &memory)
        .await
        .expect("migrate");
    assert_eq!((report.copied, report.failed), (2, 0));
    for id in &ids {
        let key = app
            .sessions()
            .hasher()
            .store_key(&crate::support::parse_id(id));
        assert!(memory.load(key.as_id()).await.expect("load").is_some());
    }
    assert!(
        maintenance::migrate(&registry, &memory, &file)
            .await
            .is_err(),
        "memory cannot be listed"
    );

    let (ok, out, err) = app.cli(&["task", "sessions_migrate", "from:file", "to:database"]);
    assert!(ok && out.contains("2 copied"), "{out}{err}");
    let db_app = TestApp::with(Settings {
        share_with: Some(app.scratch()),
        sessions: json!({"store": "database"}),
        ..Settings::default()
    })
    .await;
    for id in &ids {
        assert!(still_logged_in(&db_app, "session", id).await);
    }
}

/// Logs out the browser `browser` (its session ends in the store it lives in).
async fn log_out(browser: &axum_test::TestServer) {
    let token = crate::support::csrf_token_of(browser, "/dashboard").await;
    let response = browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(crate::support::location(&response), "/login");
}

async fn dashboard_status(app: &TestApp, id: &str) -> String {
    let response = app
        .browser()
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    if response.status_code() == 200 {
        "open".to_string()
    } else {
        crate::support::location(&response)
    }
}

async fn database_app(app: &TestApp) -> TestApp {
    TestApp::with(Settings {
        share_with: Some(app.scratch()),
        sessions: json!({"store": "database"}),
        ..Settings::default()
    })
    .await
}

async fn migrate_file_to_database(app: &TestApp) {
    app.task("sessions_migrate", &[("from", "file"), ("to", "database")])
        .await
        .expect("sessions_migrate");
}

/// The README's procedure: migrate, switch, restart, migrate again. A session that ends in
/// the old store after the first run is not brought back by the switch, nor by the second run.
#[tokio::test]
async fn a_logout_after_the_first_run_is_not_undone_by_the_switch() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let mut sessions = Vec::new();
    for email in ["ida@example.com", "jon@example.com"] {
        app.create_user(email, false).await;
        sessions.push(app.browser_logged_in_as(email).await);
    }
    migrate_file_to_database(&app).await;
    log_out(&sessions[0].0).await;

    let switched = database_app(&app).await;
    assert_eq!(
        dashboard_status(&switched, &sessions[0].1).await,
        "/login",
        "logged out before the switch: stays logged out"
    );
    assert_eq!(dashboard_status(&switched, &sessions[1].1).await, "open");

    migrate_file_to_database(&switched).await;
    assert_eq!(dashboard_status(&switched, &sessions[0].1).await, "/login");
    assert_eq!(
        dashboard_status(&switched, &sessions[1].1).await,
        "open",
        "nobody logged out"
    );
    let rows = switched
        .sessions()
        .registry()
        .live_counts_by_store()
        .await
        .expect("registry");
    assert_eq!(rows, vec![("database".to_string(), 1)]);
}

/// A session ended in the new store between the two runs is not copied back from the old one.
#[tokio::test]
async fn a_logout_in_the_new_store_survives_the_second_run() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    app.create_user("kim@example.com", false).await;
    let (_, id) = app.browser_logged_in_as("kim@example.com").await;
    migrate_file_to_database(&app).await;

    let switched = database_app(&app).await;
    let browser = switched.browser();
    let page = browser
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    assert_eq!(page.status_code(), 200, "migrated: still logged in");
    let token = crate::support::hidden_field(&page.text(), "csrf_token").expect("a token");
    let logout = browser
        .post("/logout")
        .add_header("cookie", format!("session={id}"))
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(crate::support::location(&logout), "/login");

    migrate_file_to_database(&switched).await;
    assert_eq!(
        dashboard_status(&switched, &id).await,
        "/login",
        "the second run does not revive it"
    );
    assert!(
        !switched.store_has(&id).await,
        "no record left in the new store"
    );
}
