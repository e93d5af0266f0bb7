//! The cookie's ID is a credential: it must not appear in a session file name, a Redis
//! key, an SQL row or a log line.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::support::{csrf_token_of, logs, redis::RedisServer, session_id_set, Settings, TestApp};

async fn sql_dump(app: &TestApp) -> String {
    let mut dump = String::new();
    for table in ["users", "platforms", "user_sessions", "session_events"] {
        let rows = app
            .ctx
            .db
            .query_all_raw(Statement::from_string(
                app.ctx.db.get_database_backend(),
                format!("SELECT * FROM {table}"),
            ))
            .await
            .expect("select");
        dump.push_str(&format!("{rows:?}"));
    }
    dump
}

/// Logs in, uses the session, logs out; returns the IDs the browser held.
async fn live_a_session(app: &TestApp, cookie: &str) -> Vec<String> {
    let browser = app.browser();
    app.register(&browser, "Rae", "rae@example.com", "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, "rae@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, cookie).expect("logged in");
    browser.get("/dashboard").await;
    browser.get("/sessions").await;
    let token = csrf_token_of(&browser, "/dashboard").await;
    browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    let again = app
        .log_in(&browser, "rae@example.com", "correct horse battery", false)
        .await;
    let second = session_id_set(&again, cookie).expect("logged in again");
    app.flush_audit().await;
    vec![id, second]
}

#[tokio::test]
async fn no_raw_id_in_files_sql_or_logs() {
    let logs = logs::captured();

    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let ids = live_a_session(&app, "session").await;
    let names: Vec<String> = std::fs::read_dir(app.session_dir())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(!names.is_empty(), "the live session is a file");
    let dump = sql_dump(&app).await;
    let log_text = logs.text();
    for id in &ids {
        let session_ref = app.sessions().session_ref(&crate::support::parse_id(id));
        assert!(
            log_text.contains(&format!("session=\"{}\"", session_ref.as_str()))
                || log_text.contains(&format!("session={}", session_ref.as_str())),
            "this test's session events were captured (by ref)"
        );
    }
    for id in &ids {
        assert!(names.iter().all(|n| !n.contains(id.as_str())), "file names");
        let contents: String = names
            .iter()
            .map(|n| std::fs::read_to_string(app.session_dir().join(n)).unwrap_or_default())
            .collect();
        assert!(!contents.contains(id.as_str()), "file contents");
        assert!(!dump.contains(id.as_str()), "SQL rows");
        assert!(!log_text.contains(id.as_str()), "log lines");
    }
}

#[tokio::test]
async fn no_raw_id_in_redis() {
    let server = RedisServer::start();
    let app = TestApp::with(Settings {
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..Settings::default()
    })
    .await;
    let ids = live_a_session(&app, "session").await;
    let keys = server.session_keys();
    assert_eq!(keys.len(), 1, "one live session: {keys:?}");
    let value = server.cli(&["GET", &keys[0]]).unwrap_or_default();
    for id in &ids {
        assert!(keys.iter().all(|k| !k.contains(id.as_str())), "keys");
        assert!(!value.contains(id.as_str()), "values");
    }
}
