//! A record the store cannot decode or open (garbage, truncated, another format, sealed
//! with a key nobody has) is "no session": removed, audited as `store_error` with its ref,
//! and the request is served as anonymous. No page answers 5xx for it.

use loco_rs::environment::Environment;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use tessera::models::_entities::session_events;

use crate::support::{location, parse_id, redis::RedisServer, session_id_set, Settings, TestApp};

/// Visits `/dashboard` and `/login` with the cookie `cookie=id` after the record was
/// spoiled, and checks what a user sees and what the trail says.
async fn spoiled_record_is_no_session(app: &TestApp, cookie: &str, id: &str) {
    let session_ref = app.sessions().session_ref(&parse_id(id));
    let browser = app.browser();
    let dashboard = browser
        .get("/dashboard")
        .add_header("cookie", format!("{cookie}={id}"))
        .await;
    assert_eq!(dashboard.status_code(), 303, "{}", dashboard.text());
    assert_eq!(location(&dashboard), "/login");
    assert!(!app.store_has(id).await, "the unreadable record is removed");

    // The login page with the same cookie: a page, served as to any visitor (who gets no
    // session record), and never the old ID again.
    let login = browser
        .get("/login")
        .add_header("cookie", format!("{cookie}={id}"))
        .await;
    assert_eq!(login.status_code(), 200, "{}", login.text());
    assert_ne!(session_id_set(&login, cookie).as_deref(), Some(id));
    assert!(
        !app.store_has(id).await,
        "nothing was written under the old ID"
    );

    app.flush_audit().await;
    let events = session_events::Entity::find()
        .filter(session_events::Column::Event.eq("store_error"))
        .filter(session_events::Column::SessionRef.eq(session_ref.as_str()))
        .all(&app.ctx.db)
        .await
        .expect("events");
    assert_eq!(events.len(), 1, "audited once, with its ref");
}

#[tokio::test]
async fn a_redis_value_overwritten_with_garbage_is_no_session() {
    let server = RedisServer::start();
    let app = TestApp::with(Settings {
        environment: Environment::Production,
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..Settings::default()
    })
    .await;
    app.create_user("lea@example.com", false).await;
    let (_, id) = app.browser_logged_in_as("lea@example.com").await;
    let key = app
        .sessions()
        .hasher()
        .store_key(&parse_id(&id))
        .to_string();
    assert_eq!(
        server.cli(&["SET", &key, "x", "KEEPTTL"]).as_deref(),
        Some("OK")
    );
    spoiled_record_is_no_session(&app, "__Host-session", &id).await;
    assert!(
        server.keys().iter().all(|k| k != &key),
        "the key is deleted"
    );
}

#[tokio::test]
async fn garbage_and_truncated_files_are_no_session() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    for (email, spoil) in [
        ("max@example.com", 0_usize),
        ("ned@example.com", 1),
        ("ola@example.com", 2),
    ] {
        app.create_user(email, false).await;
        let (_, id) = app.browser_logged_in_as(email).await;
        let file = app.session_dir().join(
            app.sessions()
                .hasher()
                .store_key(&parse_id(&id))
                .to_string(),
        );
        let record = std::fs::read(&file).expect("the record is a file");
        let spoiled = match spoil {
            0 => b"\x00\xff garbage".to_vec(),
            1 => record[..record.len() / 2].to_vec(),
            // Another format: the record as MessagePack where JSON is expected.
            _ => rmp_serde::to_vec(
                &serde_json::from_slice::<serde_json::Value>(&record).expect("json"),
            )
            .expect("msgpack"),
        };
        std::fs::write(&file, spoiled).expect("write");
        spoiled_record_is_no_session(&app, "session", &id).await;
        assert!(!file.exists(), "the file is removed");
    }
}

#[tokio::test]
async fn a_database_row_of_another_format_is_no_session() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "database"}),
        ..Settings::default()
    })
    .await;
    app.create_user("pia@example.com", false).await;
    let (_, id) = app.browser_logged_in_as("pia@example.com").await;
    let key = app
        .sessions()
        .hasher()
        .store_key(&parse_id(&id))
        .to_string();
    use sea_orm::sea_query::Expr;
    tessera::models::_entities::session_records::Entity::update_many()
        .col_expr(
            tessera::models::_entities::session_records::Column::Record,
            Expr::value("{\"truncated"),
        )
        .filter(tessera::models::_entities::session_records::Column::Id.eq(key))
        .exec(&app.ctx.db)
        .await
        .expect("spoil the row");
    spoiled_record_is_no_session(&app, "session", &id).await;
}

#[tokio::test]
async fn a_record_sealed_with_an_unknown_key_is_no_session() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let sealed = |byte: u8, share| Settings {
        sessions: json!({
            "store": "file",
            "encrypt": true,
            "encryption_keys": STANDARD.encode([byte; 32]),
            "encryption_keep_derived_key": false,
        }),
        share_with: share,
        ..Settings::default()
    };
    let first = TestApp::with(sealed(1, None)).await;
    first.create_user("quy@example.com", false).await;
    let (_, id) = first.browser_logged_in_as("quy@example.com").await;
    let other_key = TestApp::with(sealed(2, Some(first.scratch()))).await;
    spoiled_record_is_no_session(&other_key, "session", &id).await;
}
