//! `sessions_cleanup` removes exactly the expired and corrupt records, and prunes the
//! registry rows of sessions that are gone.

use std::time::Duration;

use serde_json::json;
use tower_sessions::{session::Id, session_store::SessionStore};

use crate::support::{Settings, TestApp};

#[tokio::test]
async fn cleanup_removes_exactly_the_expired_and_corrupt_ones() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file", "idle_timeout_secs": 3, "absolute_lifetime_secs": 3600}),
        ..Settings::default()
    })
    .await;
    app.create_user("eve@example.com", false).await;
    app.browser_logged_in_as("eve@example.com").await;
    app.browser_logged_in_as("eve@example.com").await;
    let corrupt = app.session_dir().join(Id::default().to_string());
    std::fs::write(&corrupt, b"{ not json").expect("write");
    // The store keeps records a grace period past the policy's deadline; age these two
    // past it by writing their expiry into the past.
    let backend = app.sessions().backend().clone();
    for key in backend.keys().await.expect("keys") {
        if let Ok(Some(mut record)) = backend.load(&key).await {
            record.expiry_date = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
            backend.save(&record).await.expect("save");
        }
    }
    // Past the registry deadline of the first two (3 s idle), with margin for 1 s timestamps.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // A live session, created after the others expired.
    app.create_user("fin@example.com", false).await;
    let (_live, live_id) = app.browser_logged_in_as("fin@example.com").await;

    let (ok, out, err) = app.cli(&["task", "sessions_cleanup"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("removed 2 expired and 1 unreadable records")
            && out.contains("pruned 2 registry rows of gone sessions"),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no progress bar drawn into a pipe: {out:?}"
    );
    assert!(app.store_has(&live_id).await, "the live session stays");
    let left = std::fs::read_dir(app.session_dir()).expect("dir").count();
    assert_eq!(left, 1);
    assert_eq!(
        app.sessions().registry().row_count().await.expect("rows"),
        1
    );

    let (ok, out, _) = app.cli(&["task", "sessions_cleanup"]);
    assert!(
        ok && out.contains("removed 0 expired and 0 unreadable"),
        "idempotent: {out}"
    );
}
