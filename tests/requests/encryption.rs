//! Encryption at rest: records are sealed, a key rotation logs nobody out, and a record
//! that does not open is "no session".

use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};

use crate::support::{location, parse_id, session_id_set, Settings, TestApp};

fn key(byte: u8) -> String {
    STANDARD.encode([byte; 32])
}

fn with_keys(keys: &str, share: Option<std::sync::Arc<crate::support::Scratch>>) -> Settings {
    Settings {
        sessions: json!({"store": "file", "encrypt": true, "encryption_keys": keys}),
        share_with: share,
        ..Settings::default()
    }
}

#[tokio::test]
async fn records_are_sealed_and_survive_a_key_rotation() {
    let first = TestApp::with(with_keys(&key(1), None)).await;
    let browser = first.browser();
    first
        .register(&browser, "Yan", "yan@example.com", "correct horse battery")
        .await;
    let login = first
        .log_in(&browser, "yan@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, "session").expect("logged in");
    let file = first.session_dir().join(
        first
            .sessions()
            .hasher()
            .store_key(&parse_id(&id))
            .to_string(),
    );
    let raw = std::fs::read_to_string(&file).expect("the record is a file");
    assert!(raw.contains("sealed"), "{raw}");
    for clear in ["\"t\"", "\"u\"", "\"ua\"", "127.0.0.1"] {
        assert!(!raw.contains(clear), "{clear} readable at rest: {raw}");
    }
    let scratch = first.scratch();
    drop(browser);
    drop(first);

    // Rotation: a new first key, the old one still listed. Nobody is logged out.
    let rotated = TestApp::with(with_keys(
        &format!("{},{}", key(2), key(1)),
        Some(scratch.clone()),
    ))
    .await;
    let browser = rotated.browser();
    let api: Value = browser
        .get("/api/session")
        .add_header("cookie", format!("session={id}"))
        .await
        .json();
    assert_eq!(
        api["authenticated"], true,
        "the old key still opens the record"
    );
    drop(browser);
    drop(rotated);

    // The old key retired before the record was re-sealed: the record no longer opens.
    let retired = TestApp::with(with_keys(&key(3), Some(scratch))).await;
    let response = retired
        .browser()
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    assert_eq!(
        location(&response),
        "/login",
        "no session, not an error page"
    );
    retired.flush_audit().await;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let audited = tessera::models::_entities::session_events::Entity::find()
        .filter(tessera::models::_entities::session_events::Column::Event.eq("store_error"))
        .count(&retired.ctx.db)
        .await
        .expect("count");
    assert!(audited >= 1, "the failure is audited");
}

#[tokio::test]
async fn a_tampered_record_is_no_session() {
    let app = TestApp::with(with_keys(&key(7), None)).await;
    let browser = app.browser();
    app.register(&browser, "Zed", "zed@example.com", "correct horse battery")
        .await;
    let login = app
        .log_in(&browser, "zed@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, "session").expect("logged in");
    let file = app.session_dir().join(
        app.sessions()
            .hasher()
            .store_key(&parse_id(&id))
            .to_string(),
    );
    let raw = std::fs::read_to_string(&file).expect("record");
    // Flip one character inside the sealed value.
    let at = raw.find("sealed\":\"").expect("sealed field") + 20;
    let mut bytes = raw.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&file, bytes).expect("write");
    let response = browser.get("/dashboard").await;
    assert_eq!(location(&response), "/login");
}

#[tokio::test]
async fn bad_keys_stop_the_start_naming_the_setting() {
    let error = TestApp::try_with(with_keys("not-base64!", None))
        .await
        .err()
        .map(|e| e.to_string());
    let error = error.unwrap_or_default();
    assert!(
        error.contains("settings.sessions.encryption_keys") && error.contains("not base64"),
        "{error}"
    );
}

/// Moving from the key derived from `SESSION_SECRET` to `SESSION_ENCRYPTION_KEYS`: the
/// derived key keeps opening records (it never seals) until the operator drops it with
/// `encryption_keep_derived_key: false`, so the switch logs nobody out.
#[tokio::test]
async fn switching_from_the_derived_key_to_a_key_list_logs_nobody_out() {
    let derived = TestApp::with(Settings {
        sessions: json!({"store": "file", "encrypt": true}),
        ..Settings::default()
    })
    .await;
    derived.create_user("rae@example.com", false).await;
    let (_, id) = derived.browser_logged_in_as("rae@example.com").await;
    let scratch = derived.scratch();
    drop(derived);

    let listed = TestApp::with(with_keys(&key(4), Some(scratch.clone()))).await;
    // `/api/session` reads without writing, so the record stays sealed with the derived key.
    let api: Value = listed
        .browser()
        .get("/api/session")
        .add_header("cookie", format!("session={id}"))
        .await
        .json();
    assert_eq!(
        api["authenticated"], true,
        "still logged in after the switch"
    );
    drop(listed);

    // What kept the session was the derived key: once dropped, the record (still sealed
    // with it) no longer opens, and is no session rather than an error page.
    let dropped = TestApp::with(Settings {
        sessions: json!({
            "store": "file",
            "encrypt": true,
            "encryption_keys": key(4),
            "encryption_keep_derived_key": false,
        }),
        share_with: Some(scratch),
        ..Settings::default()
    })
    .await;
    let page = dropped
        .browser()
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    assert_eq!(page.status_code(), 303);
    assert_eq!(location(&page), "/login");
}
