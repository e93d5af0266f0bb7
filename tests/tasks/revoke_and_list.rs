//! `sessions_revoke` and `sessions_list`: what they print and what they really end.

use serde_json::json;

use crate::support::{location, Settings, TestApp};

fn file_store() -> Settings {
    Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    }
}

#[tokio::test]
async fn revoke_one_user_then_everyone() {
    let app = TestApp::with(file_store()).await;
    app.create_user("ann@example.com", false).await;
    app.create_user("ben@example.com", false).await;
    let (ann1, ann1_id) = app.browser_logged_in_as("ann@example.com").await;
    let (_ann2, ann2_id) = app.browser_logged_in_as("ann@example.com").await;
    let (ben, ben_id) = app.browser_logged_in_as("ben@example.com").await;

    let (ok, out, _) = app
        .cli(&["task", "sessions_list", "user:ann@example.com"])
        .await;
    assert!(ok);
    let ann_ref = app
        .sessions()
        .session_ref(&crate::support::parse_id(&ann1_id));
    assert!(out.contains(ann_ref.as_str()), "{out}");
    assert!(
        out.contains("sessions_list: 2 live sessions for ann@example.com"),
        "{out}"
    );
    assert!(!out.contains(&ann1_id), "refs, never IDs: {out}");

    let (ok, out, err) = app
        .cli(&["task", "sessions_revoke", "user:ann@example.com"])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("sessions_revoke: ended 2 sessions of ann@example.com"),
        "{out}"
    );
    assert!(
        !app.store_has(&ann1_id).await && !app.store_has(&ann2_id).await,
        "gone from the store"
    );
    assert_eq!(location(&ann1.get("/dashboard").await), "/login");
    assert!(app.store_has(&ben_id).await, "Ben untouched");

    let (ok, out, _) = app
        .cli(&["task", "sessions_revoke", "user:ann@example.com"])
        .await;
    assert!(ok && out.contains("ended 0 sessions"), "idempotent: {out}");

    let (ok, out, _) = app.cli(&["task", "sessions_revoke", "all:true"]).await;
    assert!(
        ok && out.contains("sessions_revoke: ended 1 sessions of all users"),
        "{out}"
    );
    assert_eq!(location(&ben.get("/dashboard").await), "/login");

    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let audited = tessera::models::_entities::session_events::Entity::find()
        .filter(tessera::models::_entities::session_events::Column::Event.eq("revoked"))
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(audited, 3, "each revocation is audited");
}

#[tokio::test]
async fn bad_arguments_fail_with_one_line() {
    let app = TestApp::with(file_store()).await;
    for args in [
        vec!["task", "sessions_revoke"],
        vec!["task", "sessions_revoke", "user:nobody@example.com"],
        vec!["task", "sessions_list"],
        vec!["task", "sessions_list", "user:not-an-email"],
        vec!["task", "sessions_migrate", "from:file", "to:memory"],
        vec!["task", "sessions_migrate", "from:file"],
        vec!["task", "sessions_stats", "typo:1"],
        vec!["task", "users_create", "email:x@example.com"],
        vec![
            "task",
            "users_create",
            "email:x@example.com",
            "name:X",
            "password:long enough",
            "admin:maybe",
        ],
    ] {
        let (ok, _, err) = app.cli(&args).await;
        assert!(!ok, "{args:?} should fail");
        let err = err.trim();
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.starts_with("tessera: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
