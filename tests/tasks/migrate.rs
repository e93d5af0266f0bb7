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
                    .load(&key)
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
        assert!(
            still_logged_in(&redis_app, "session", id).await,
            "same cookie, new store"
        );
        let key = redis_app
            .sessions()
            .hasher()
            .store_key(&crate::support::parse_id(id))
            .to_string();
        let ttl: i64 = server
            .cli(&["TTL", &key])
            .and_then(|t| t.parse().ok())
            .expect("ttl");
        let remaining = (file_expiry - time::OffsetDateTime::now_utc()).whole_seconds();
        assert!(
            (remaining - ttl).abs() <= 2,
            "remaining lifetime kept: ttl {ttl}, expected {remaining}"
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
    let memory = Backend::Memory(tower_sessions::MemoryStore::default());
    let report = maintenance::migrate(&file, &memory).await.expect("migrate");
    assert_eq!((report.copied, report.failed), (2, 0));
    for id in &ids {
        let key = app
            .sessions()
            .hasher()
            .store_key(&crate::support::parse_id(id));
        assert!(memory.load(&key).await.expect("load").is_some());
    }
    assert!(
        maintenance::migrate(&memory, &file).await.is_err(),
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
