//! `sessions_cleanup` removes exactly the expired and corrupt records, prunes the
//! registry rows of sessions that are gone, and records each run for `/metrics`.

use serde_json::json;
use tower_sessions::{session::Id, session_store::SessionStore};

use crate::support::{listed_keys, metrics, parse_id, Settings, TestApp};

#[tokio::test]
async fn cleanup_removes_exactly_the_expired_and_corrupt_ones() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file", "idle_timeout_secs": 3600, "absolute_lifetime_secs": 86400}),
        ..Settings::default()
    })
    .await;
    app.create_user("eve@example.com", false).await;
    for _ in 0..2 {
        let (_, id) = app.browser_logged_in_as("eve@example.com").await;
        // An idle timeout later: past the registry's deadline.
        app.age_session(&id, 3600).await;
    }
    let corrupt = app.session_dir().join(Id::default().to_string());
    std::fs::write(&corrupt, b"{ not json").expect("write");
    // The store keeps records a grace period past the policy's deadline; age these two
    // past it by writing their expiry into the past.
    let backend = app.sessions().backend().clone();
    for key in listed_keys(&backend).await.expect("keys") {
        if let Ok(Some(mut record)) = backend.load(&key).await {
            record.expiry_date = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
            backend.save(&record).await.expect("save");
        }
    }
    // A live session, created after the others expired.
    app.create_user("fin@example.com", false).await;
    let (_live, live_id) = app.browser_logged_in_as("fin@example.com").await;

    let (ok, out, err) = app.cli(&["task", "sessions_cleanup"]).await;
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

    let (ok, out, _) = app.cli(&["task", "sessions_cleanup"]).await;
    assert!(
        ok && out.contains("removed 0 expired and 0 unreadable"),
        "idempotent: {out}"
    );
}

/// The audit trail's rows: (event, user, session ref, reason).
async fn trail(app: &TestApp) -> Vec<(String, Option<i64>, Option<String>, Option<String>)> {
    use sea_orm::{EntityTrait, QueryOrder};
    use tessera::models::_entities::session_events;
    app.flush_audit().await;
    session_events::Entity::find()
        .order_by_asc(session_events::Column::Id)
        .all(&app.ctx.db)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.event, e.user_id, e.session_ref, e.reason))
        .collect()
}

/// Sessions whose user never came back get their expiry in the trail from the cleanup,
/// named by user and session, before their registry rows go; idle or absolute as it was.
async fn unseen_expiries_are_audited(idle: i64, absolute: i64, expected: &str) {
    let app = TestApp::with(Settings {
        sessions: json!({"idle_timeout_secs": idle, "absolute_lifetime_secs": absolute}),
        ..Settings::default()
    })
    .await;
    let user = app.create_user("gwen@example.com", false).await;
    let (_, id) = app.browser_logged_in_as("gwen@example.com").await;
    let refs: Vec<String> = app
        .sessions()
        .registry()
        .live_for_user(user.id)
        .await
        .expect("rows")
        .into_iter()
        .map(|r| r.session_ref)
        .collect();
    assert_eq!(refs.len(), 1);
    // The first deadline passes while the user is away.
    app.age_session(&id, absolute.min(idle)).await;
    app.task("sessions_cleanup", &[]).await.expect("cleanup");
    let expired: Vec<_> = trail(&app)
        .await
        .into_iter()
        .filter(|(event, ..)| event.ends_with("_expired"))
        .collect();
    assert_eq!(
        expired,
        vec![(
            expected.to_string(),
            Some(user.id),
            Some(refs[0].clone()),
            Some("found by cleanup".to_string())
        )]
    );
    assert_eq!(
        app.sessions().registry().row_count().await.expect("rows"),
        0
    );
    // Run again: the row is gone, nothing is audited twice.
    app.task("sessions_cleanup", &[]).await.expect("cleanup");
    let again = trail(&app)
        .await
        .into_iter()
        .filter(|(event, ..)| event.ends_with("_expired"))
        .count();
    assert_eq!(again, 1);
}

#[tokio::test]
async fn cleanup_audits_sessions_that_went_idle_unseen() {
    unseen_expiries_are_audited(3600, 86400, "idle_expired").await;
}

#[tokio::test]
async fn cleanup_audits_sessions_that_reached_their_lifetime_unseen() {
    unseen_expiries_are_audited(3600, 3600, "absolute_expired").await;
}

/// `session_events` keeps `events_retention_days` (default 90) and no more.
async fn events_are_kept_for(retention_days: Option<u32>, kept_days: i64) {
    use sea_orm::{ActiveModelTrait, ActiveValue};
    use tessera::models::_entities::session_events;
    let sessions = match retention_days {
        Some(days) => json!({"events_retention_days": days}),
        None => json!({}),
    };
    let app = TestApp::with(Settings {
        sessions,
        ..Settings::default()
    })
    .await;
    let age = |days: i64| (chrono::Utc::now() - chrono::Duration::days(days)).fixed_offset();
    for (reason, days) in [("old", kept_days + 1), ("recent", kept_days - 1)] {
        session_events::ActiveModel {
            created_at: ActiveValue::Set(age(days)),
            updated_at: ActiveValue::Set(age(days)),
            event: ActiveValue::Set("logout".to_string()),
            reason: ActiveValue::Set(Some(reason.to_string())),
            ..Default::default()
        }
        .insert(&app.ctx.db)
        .await
        .expect("insert");
    }
    app.task("sessions_cleanup", &[]).await.expect("cleanup");
    let reasons: Vec<_> = trail(&app).await.into_iter().filter_map(|e| e.3).collect();
    assert_eq!(reasons, vec!["recent".to_string()]);
}

#[tokio::test]
async fn audit_events_are_kept_90_days_by_default() {
    events_are_kept_for(None, 90).await;
}

#[tokio::test]
async fn audit_events_are_kept_as_long_as_configured() {
    events_are_kept_for(Some(7), 7).await;
}

/// The newest row of `task_runs`.
async fn last_run(app: &TestApp) -> tessera::models::task_runs::Model {
    use sea_orm::{EntityTrait, QueryOrder};
    use tessera::models::_entities::task_runs;
    task_runs::Entity::find()
        .order_by_desc(task_runs::Column::Id)
        .one(&app.ctx.db)
        .await
        .expect("task_runs")
        .expect("a recorded run")
}

#[allow(clippy::cast_precision_loss)]
fn unix_seconds(at: chrono::DateTime<chrono::FixedOffset>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// Each run is kept in the database (the scheduler runs the task in a process of its
/// own), and the web app exports the last one: how it ended, when, the last success, and
/// the sessions the store lost. A run that fails part way is recorded as failed, with why.
#[tokio::test]
async fn cleanup_runs_are_recorded_and_exported_failed_ones_too() {
    use tessera::{models::task_runs::Outcome, sessions::maintenance::CleanupReport};

    let app = TestApp::with(Settings {
        sessions: json!({"store": "file", "metrics_token": metrics::TOKEN}),
        ..Settings::default()
    })
    .await;
    let before = metrics::scrape(&app).await;
    assert!(
        !before.contains("tessera_task_last_run") && !before.contains("tessera_task_last_success"),
        "no run, nothing to say: {before}"
    );
    app.create_user("kim@example.com", false).await;
    let (_browser, id) = app.browser_logged_in_as("kim@example.com").await;
    // The store loses the session behind the registry's back (an evicted key, a flush).
    let key = app.sessions().hasher().store_key(&parse_id(&id));
    SessionStore::delete(app.sessions().backend(), key.as_id())
        .await
        .expect("delete");

    let (ok, out, err) = app.cli(&["task", "sessions_cleanup"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "pruned 1 registry rows of gone sessions (1 lost by the store before they expired)"
        ),
        "{out}"
    );
    let success = last_run(&app).await;
    assert_eq!(
        (
            success.task.as_str(),
            success.outcome(),
            success.error.as_deref()
        ),
        ("sessions_cleanup", Some(Outcome::Ok), None)
    );
    let finished = success.finished_at.expect("finished");
    assert!(finished >= success.started_at);
    let report: CleanupReport = success.report_as().expect("the report, as JSON");
    assert_eq!((report.registry_gone, report.registry_vanished), (1, 1));

    let text = metrics::scrape(&app).await;
    let outcome = |text: &str, outcome: &str| {
        metrics::value(
            text,
            &format!(
                r#"tessera_task_last_run_outcome{{task="sessions_cleanup",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(
        (
            outcome(&text, "ok"),
            outcome(&text, "failed"),
            outcome(&text, "running")
        ),
        (Some(1.0), Some(0.0), Some(0.0)),
        "{text}"
    );
    let task_gauge = |text: &str, name: &str| {
        metrics::value(text, &format!(r#"{name}{{task="sessions_cleanup"}}"#))
    };
    assert_eq!(
        task_gauge(&text, "tessera_task_last_success_timestamp_seconds"),
        Some(unix_seconds(finished))
    );
    assert_eq!(
        task_gauge(&text, "tessera_task_last_run_started_timestamp_seconds"),
        Some(unix_seconds(success.started_at))
    );
    assert_eq!(
        metrics::value(&text, "tessera_cleanup_vanished_sessions"),
        Some(1.0)
    );

    // The store breaks: a file where its directory was. The sweep fails part way into
    // the run, which is recorded as failed, with the reason.
    let dir = app.session_dir();
    std::fs::remove_dir_all(&dir).expect("remove the directory");
    std::fs::write(&dir, b"not a directory").expect("a file in its place");
    let failed = app.task("sessions_cleanup", &[]).await;
    assert!(failed.is_err(), "the task fails");
    let run = last_run(&app).await;
    assert_ne!(run.id, success.id);
    assert_eq!(run.outcome(), Some(Outcome::Failed));
    assert!(
        run.error.as_deref().is_some_and(|e| e.contains("sweep")),
        "{:?}",
        run.error
    );
    assert!(run.finished_at.is_some() && run.report.is_none());

    let text = metrics::scrape(&app).await;
    assert_eq!(
        (outcome(&text, "ok"), outcome(&text, "failed")),
        (Some(0.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(
        task_gauge(&text, "tessera_task_last_run_started_timestamp_seconds"),
        Some(unix_seconds(run.started_at))
    );
    assert_eq!(
        task_gauge(&text, "tessera_task_last_success_timestamp_seconds"),
        Some(unix_seconds(finished)),
        "the last success is still the earlier run"
    );
    assert_eq!(
        metrics::value(&text, "tessera_cleanup_vanished_sessions"),
        Some(1.0),
        "from the last successful run"
    );
}
