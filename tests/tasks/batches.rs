//! Every task over many rows works in batches: `sessions_cleanup` (expiry audit, registry
//! prune, retention), `sessions_revoke all:true`, the admin's "end everyone's sessions"
//! (in the background, its progress on the page) and the re-labelling after
//! `sessions_migrate`. With a batch size of 3 they cross batch boundaries; run twice or
//! after an interruption they audit nothing twice and lose nothing; and at tens of
//! thousands of rows no statement binds more than 1,000 parameters.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter,
};
use serde_json::json;
use tessera::{
    models::_entities::{session_events, session_jobs, user_sessions},
    sessions::{
        audit::{self, AuditEvent},
        events::{EndReason, EventKind},
        maintenance,
        registry::SessionRegistry,
        settings::SessionConfig,
        Sessions,
    },
};
use tower_sessions::session::Id;

use crate::support::{
    clock::{eventually, PATIENCE},
    counted, csrf_token_of, location, texts, Database, Settings, StatementCounts, TestApp,
};

/// An app whose maintenance works 3 rows at a time, without resting.
async fn small_batches(database: Database) -> TestApp {
    TestApp::with(Settings {
        database,
        sessions: json!({"maintenance": {"batch_size": 3, "batch_rest_ms": 0}}),
        ..Settings::default()
    })
    .await
}

/// Adds `count` registry rows of `user_id`, shaped as a login writes them, expiring
/// `expires_in_secs` from now (negative: expired): one row through SeaORM, the rest
/// copied from it by one `INSERT .. SELECT` (a recursive CTE on SQLite,
/// `generate_series` on PostgreSQL), so tens of thousands cost one statement.
async fn seed_rows(app: &TestApp, user_id: i64, count: u64, expires_in_secs: i64, tag: char) {
    let now = Utc::now().fixed_offset();
    let template = user_sessions::ActiveModel {
        created_at: ActiveValue::Set(now - chrono::Duration::hours(2)),
        updated_at: ActiveValue::Set(now),
        user_id: ActiveValue::Set(user_id),
        session_ref: ActiveValue::Set(format!("{tag}{:011}", 1)),
        store_key: ActiveValue::Set(Id::default().to_string()),
        store: ActiveValue::Set("memory".to_string()),
        last_seen_at: ActiveValue::Set(now - chrono::Duration::hours(1)),
        expires_at: ActiveValue::Set(now + chrono::Duration::seconds(expires_in_secs)),
        user_agent: ActiveValue::Set("seeded".to_string()),
        ip: ActiveValue::Set(Some("192.0.2.7".to_string())),
        credential_generation: ActiveValue::Set(0),
        ..Default::default()
    }
    .insert(&app.ctx.db)
    .await
    .expect("template row");
    if count < 2 {
        return;
    }
    let columns = "created_at, updated_at, user_id, session_ref, store_key, store, last_seen_at, expires_at, user_agent, ip, credential_generation";
    let copied = "t.created_at, t.updated_at, t.user_id, {ref}, t.store_key, t.store, t.last_seen_at, t.expires_at, t.user_agent, t.ip, t.credential_generation";
    let db = &app.ctx.db;
    let sql = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => format!(
            "INSERT INTO user_sessions ({columns}) SELECT {} FROM user_sessions t, generate_series(2, {count}) AS n WHERE t.id = {}",
            copied.replace("{ref}", &format!("'{tag}' || lpad(n::text, 11, '0')")),
            template.id
        ),
        _ => format!(
            "WITH RECURSIVE seq(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM seq WHERE n < {count}) INSERT INTO user_sessions ({columns}) SELECT {} FROM user_sessions t, seq WHERE t.id = {}",
            copied.replace("{ref}", &format!("printf('{tag}%011d', n)")),
            template.id
        ),
    };
    db.execute_unprepared(&sql).await.expect("seeded");
}

/// How many events of `kind` the trail holds per session ref.
async fn events_per_session(db: &DatabaseConnection, kinds: &[&str]) -> HashMap<String, usize> {
    let mut per_ref = HashMap::new();
    for event in session_events::Entity::find()
        .filter(session_events::Column::Event.is_in(kinds.iter().copied()))
        .all(db)
        .await
        .expect("events")
    {
        *per_ref
            .entry(event.session_ref.unwrap_or_default())
            .or_insert(0) += 1;
    }
    per_ref
}

async fn rows(db: &DatabaseConnection) -> Vec<user_sessions::Model> {
    user_sessions::Entity::find().all(db).await.expect("rows")
}

/// Writes `count` events `days` old.
async fn old_events(db: &DatabaseConnection, count: usize, days: i64) {
    let at = (Utc::now() - chrono::Duration::days(days)).fixed_offset();
    let events: Vec<_> = (0..count)
        .map(|_| AuditEvent::new(EventKind::Login).into_row(at))
        .collect();
    audit::insert_events(db, &events).await.expect("old events");
}

const EXPIRED: [&str; 2] = ["idle_expired", "absolute_expired"];

#[tokio::test]
async fn cleanup_works_across_batch_boundaries_and_a_second_run_audits_nothing() {
    let app = small_batches(Database::Sqlite).await;
    let user = app.create_user("ivy@example.com", false).await;
    seed_rows(&app, user.id, 10, -60, 'x').await;
    // Ended two days ago: past the day ended rows are kept.
    let two_days_ago = (Utc::now() - chrono::Duration::days(2)).fixed_offset();
    seed_rows(&app, user.id, 4, 3600, 'e').await;
    user_sessions::Entity::update_many()
        .col_expr(
            user_sessions::Column::EndedAt,
            sea_orm::sea_query::Expr::value(two_days_ago),
        )
        .filter(user_sessions::Column::SessionRef.like("e%"))
        .exec(&app.ctx.db)
        .await
        .expect("ended");
    old_events(&app.ctx.db, 7, 100).await;
    old_events(&app.ctx.db, 2, 1).await;

    let report = maintenance::cleanup(&app.sessions(), &app.ctx.db, |_, _| {})
        .await
        .expect("cleanup");
    assert_eq!(
        (
            report.expired_unseen,
            report.registry_gone,
            report.registry_vanished,
            report.registry_ended,
            report.events_pruned
        ),
        (10, 10, 0, 4, 7),
        "{report}"
    );
    let audited = events_per_session(&app.ctx.db, &EXPIRED).await;
    assert_eq!(
        audited.len(),
        10,
        "one event per expired session: {audited:?}"
    );
    assert!(audited.values().all(|n| *n == 1), "{audited:?}");
    assert!(rows(&app.ctx.db).await.is_empty(), "every due row is gone");
    assert_eq!(
        session_events::Entity::find()
            .filter(session_events::Column::Event.eq("login"))
            .count(&app.ctx.db)
            .await
            .expect("count"),
        2,
        "events inside the retention stay"
    );

    let again = maintenance::cleanup(&app.sessions(), &app.ctx.db, |_, _| {})
        .await
        .expect("cleanup");
    assert_eq!((again.expired_unseen, again.events_pruned), (0, 0));
    assert_eq!(events_per_session(&app.ctx.db, &EXPIRED).await, audited);
}

#[tokio::test]
async fn a_cleanup_interrupted_after_one_batch_and_run_again_loses_and_repeats_nothing() {
    let app = small_batches(Database::Sqlite).await;
    let user = app.create_user("jo@example.com", false).await;
    seed_rows(&app, user.id, 10, -60, 'x').await;
    // The first batch commits, then the process dies.
    assert_eq!(
        app.sessions().end_expired_unseen(3).await.expect("batch"),
        3
    );
    assert_eq!(rows(&app.ctx.db).await.len(), 7);
    let report = maintenance::cleanup(&app.sessions(), &app.ctx.db, |_, _| {})
        .await
        .expect("cleanup");
    assert_eq!(report.expired_unseen, 7);
    let audited = events_per_session(&app.ctx.db, &EXPIRED).await;
    assert_eq!(audited.len(), 10, "{audited:?}");
    assert!(audited.values().all(|n| *n == 1), "{audited:?}");
}

#[tokio::test]
async fn revoking_everyone_ends_every_session_once_even_when_run_again_after_an_interruption() {
    let app = small_batches(Database::Sqlite).await;
    let user = app.create_user("kit@example.com", false).await;
    let (browser, id) = app.browser_logged_in_as("kit@example.com").await;
    seed_rows(&app, user.id, 9, 3600, 'r').await;
    let sessions = app.sessions();
    // An earlier run ended the first batch, then stopped.
    let first: Vec<_> = rows(&app.ctx.db).await.into_iter().take(3).collect();
    assert_eq!(
        sessions
            .end_batch(&first, EndReason::RevokedByAdmin, None)
            .await
            .expect("batch"),
        3
    );
    // Ending the same rows again ends and audits nothing.
    assert_eq!(
        sessions
            .end_batch(&first, EndReason::RevokedByAdmin, None)
            .await
            .expect("batch"),
        0
    );
    // What `sessions_revoke all:true` runs (in this process: with batches of 3).
    let ended = sessions
        .revoke_everyone(None, EndReason::RevokedByAdmin, None)
        .await
        .expect("revoke");
    assert_eq!(ended, Some(7));
    assert!(rows(&app.ctx.db).await.iter().all(|r| r.ended_at.is_some()));
    let audited = events_per_session(&app.ctx.db, &["revoked"]).await;
    assert_eq!(audited.len(), 10, "{audited:?}");
    assert!(audited.values().all(|n| *n == 1), "{audited:?}");
    assert!(!app.store_has(&id).await, "the record is gone");
    assert_eq!(location(&browser.get("/dashboard").await), "/login");
    let job = session_jobs::Entity::find()
        .one(&app.ctx.db)
        .await
        .expect("job")
        .expect("the task ran as a job");
    assert_eq!(
        (job.done, job.total, job.running.clone()),
        (7, Some(7), None)
    );
    assert!(job.finished_at.is_some() && job.error.is_none(), "{job:?}");
}

async fn post_end_everyone(admin: &axum_test::TestServer) -> axum_test::TestResponse {
    let token = csrf_token_of(admin, "/admin/sessions").await;
    admin
        .post("/admin/sessions/revoke-all")
        .form(&[("csrf_token", token.as_str())])
        .await
}

async fn job_line(admin: &axum_test::TestServer) -> Vec<String> {
    texts(
        &admin.get("/admin/sessions").await.text(),
        "#end-everyone-job",
    )
}

#[tokio::test]
async fn the_admin_ends_everyone_in_the_background_and_the_page_follows_the_job() {
    the_admin_ends_everyone_in_the_background(Database::Sqlite).await;
}

#[tokio::test]
async fn the_admin_ends_everyone_in_the_background_and_the_page_follows_the_job_postgres() {
    the_admin_ends_everyone_in_the_background(Database::Postgres).await;
}

async fn the_admin_ends_everyone_in_the_background(database: Database) {
    let app = small_batches(database).await;
    let admin_user = app.create_user("root@example.com", true).await;
    let user = app.create_user("lou@example.com", false).await;
    let (admin, admin_id) = app.browser_logged_in_as("root@example.com").await;
    let (lou, _) = app.browser_logged_in_as("lou@example.com").await;
    seed_rows(&app, user.id, 10, 3600, 'a').await;

    let response = post_end_everyone(&admin).await;
    assert_eq!(response.status_code(), 303);
    assert_eq!(location(&response), "/admin/sessions?job=started");
    let finished = eventually(PATIENCE, || async {
        job_line(&admin).await == ["Ending all sessions: finished, 11 ended"]
    })
    .await;
    assert!(finished, "{:?}", job_line(&admin).await);

    let job = session_jobs::Entity::find()
        .one(&app.ctx.db)
        .await
        .expect("job")
        .expect("a job row");
    assert_eq!(
        (job.done, job.total, job.actor_user_id, job.running),
        (11, Some(12), Some(admin_user.id), None),
        "the admin's own session was counted live, and kept"
    );
    assert_eq!(location(&lou.get("/dashboard").await), "/login");
    assert!(app.store_has(&admin_id).await, "the admin's session stays");
    assert_eq!(admin.get("/admin/sessions").await.status_code(), 200);
    let live: Vec<_> = rows(&app.ctx.db)
        .await
        .into_iter()
        .filter(|r| r.ended_at.is_none())
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].user_id, admin_user.id);
    let audited = events_per_session(&app.ctx.db, &["revoked"]).await;
    assert_eq!(audited.len(), 11, "{audited:?}");
    assert!(audited.values().all(|n| *n == 1), "{audited:?}");
    let by_admin = session_events::Entity::find()
        .filter(session_events::Column::Event.eq("revoked"))
        .filter(session_events::Column::ActorUserId.eq(admin_user.id))
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(by_admin, 11, "the trail names who ended them");
}

#[tokio::test]
async fn a_second_request_starts_no_second_job_and_a_dead_job_reads_interrupted() {
    let app = small_batches(Database::Sqlite).await;
    let admin_user = app.create_user("root@example.com", true).await;
    let user = app.create_user("mo@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    seed_rows(&app, user.id, 5, 3600, 'b').await;
    // A job of another instance, running: it wrote progress a moment ago.
    let now = Utc::now().fixed_offset();
    let running = session_jobs::ActiveModel {
        kind: ActiveValue::Set("end_everyone".to_string()),
        actor_user_id: ActiveValue::Set(Some(admin_user.id)),
        started_at: ActiveValue::Set(now),
        heartbeat_at: ActiveValue::Set(now),
        done: ActiveValue::Set(1_500),
        total: ActiveValue::Set(Some(4_000)),
        running: ActiveValue::Set(Some("end_everyone".to_string())),
        ..Default::default()
    }
    .insert(&app.ctx.db)
    .await
    .expect("job");
    assert_eq!(
        job_line(&admin).await,
        ["Ending all sessions: 1,500 of 4,000"]
    );

    let response = post_end_everyone(&admin).await;
    assert_eq!(location(&response), "/admin/sessions?job=running");
    let page = admin.get("/admin/sessions?job=running").await.text();
    assert_eq!(
        texts(&page, "#admin-notice"),
        ["Ending everyone's sessions is already under way; it was not started again."]
    );
    assert_eq!(
        session_jobs::Entity::find()
            .count(&app.ctx.db)
            .await
            .expect("count"),
        1,
        "no second job"
    );
    assert!(rows(&app.ctx.db).await.iter().all(|r| r.ended_at.is_none()));

    // Its process died (a restart) between a batch's commit and the deletes of that
    // batch's records: a row ended, its record still in the store.
    let (dead_browser, dead_id) = app.browser_logged_in_as("mo@example.com").await;
    let dead_ref = app
        .sessions()
        .session_ref(&crate::support::parse_id(&dead_id));
    let dead_row = rows(&app.ctx.db)
        .await
        .into_iter()
        .find(|r| r.session_ref == dead_ref.as_str())
        .expect("its row");
    let txn = app.sessions().registry().begin().await.expect("txn");
    SessionRegistry::end_rows(&txn, &[dead_row.id], EndReason::RevokedByAdmin)
        .await
        .expect("ended");
    txn.commit().await.expect("commit");
    assert!(
        app.store_has(&dead_id).await,
        "the record outlived the crash"
    );
    // No progress for two minutes.
    session_jobs::Entity::update_many()
        .col_expr(
            session_jobs::Column::HeartbeatAt,
            sea_orm::sea_query::Expr::value(now - chrono::Duration::minutes(2)),
        )
        .filter(session_jobs::Column::Id.eq(running.id))
        .exec(&app.ctx.db)
        .await
        .expect("aged");
    assert_eq!(
        job_line(&admin).await,
        ["Ending all sessions: interrupted after 1,500 ended; start it again to end the rest"]
    );
    let response = post_end_everyone(&admin).await;
    assert_eq!(location(&response), "/admin/sessions?job=started");
    let finished = eventually(PATIENCE, || async {
        job_line(&admin).await == ["Ending all sessions: finished, 5 ended"]
    })
    .await;
    assert!(finished, "{:?}", job_line(&admin).await);
    assert!(
        !app.store_has(&dead_id).await,
        "the next job deleted the records the interrupted one left"
    );
    assert_eq!(location(&dead_browser.get("/dashboard").await), "/login");
    assert!(
        !events_per_session(&app.ctx.db, &["revoked"])
            .await
            .contains_key(dead_ref.as_str()),
        "ended by the interrupted job, not audited again"
    );
    let dead = session_jobs::Entity::find_by_id(running.id)
        .one(&app.ctx.db)
        .await
        .expect("job")
        .expect("kept");
    assert_eq!(
        (
            dead.error.as_deref(),
            dead.running.clone(),
            dead.finished_at.is_some()
        ),
        (Some("interrupted"), None, true),
        "closed as interrupted when the next one started"
    );
}

#[tokio::test]
async fn the_migration_relabels_rows_across_batch_boundaries() {
    let app = small_batches(Database::Sqlite).await;
    let user = app.create_user("ned@example.com", false).await;
    seed_rows(&app, user.id, 10, 3600, 'm').await;
    let moved = maintenance::relabel_store(&app.sessions(), "memory", "redis")
        .await
        .expect("relabel");
    assert_eq!(moved, 10);
    assert!(rows(&app.ctx.db).await.iter().all(|r| r.store == "redis"));
    assert_eq!(
        maintenance::relabel_store(&app.sessions(), "memory", "redis")
            .await
            .expect("relabel"),
        0
    );
}

/// The session layer over a connection that counts its statements and the parameters
/// they bind.
fn counting(app: &TestApp) -> (Arc<Sessions>, StatementCounts) {
    let (db, counts) = counted(&app.ctx.db);
    let config =
        SessionConfig::from_loco_settings(app.ctx.config.settings.as_ref(), &app.ctx.environment)
            .expect("config");
    (
        Arc::new(Sessions::open(config, db).expect("sessions")),
        counts,
    )
}

/// Tens of thousands of due rows, the default batch size: the cleanup that used to fail
/// (`too many SQL variables`, `encountered unexpected or invalid data`) audits and removes
/// every one, and no statement binds more than 1,000 parameters.
async fn cleanup_at_scale(database: Database, due: u64) {
    let app = TestApp::with(Settings {
        database,
        sessions: json!({"maintenance": {"batch_rest_ms": 0}}),
        ..Settings::default()
    })
    .await;
    let user = app.create_user("oz@example.com", false).await;
    seed_rows(&app, user.id, due, -60, 'z').await;
    seed_rows(&app, user.id, 2_500, 3600, 'l').await;
    let (sessions, counts) = counting(&app);
    let report = maintenance::cleanup(&sessions, &app.ctx.db, |_, _| {})
        .await
        .expect("cleanup");
    assert_eq!(report.expired_unseen, due, "{report}");
    let audited = session_events::Entity::find()
        .filter(session_events::Column::Event.is_in(EXPIRED))
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(audited, due, "one event per expired session, none dropped");
    // The live rows, whose records the store does not hold, ended in batches too.
    let ended = sessions
        .revoke_everyone(None, EndReason::RevokedByAdmin, None)
        .await
        .expect("revoke");
    // Seeded live rows name no record the store holds: the prune found them vanished.
    assert_eq!(
        (report.registry_vanished, ended),
        (2_500, Some(0)),
        "{report}"
    );
    assert!(counts.statements() > 0, "the callback saw the statements");
    let most = counts.most_bound();
    assert!(most <= 1_000, "a statement bound {most} parameters");
}

#[tokio::test]
async fn cleanup_of_40000_due_rows_binds_at_most_1000_parameters_sqlite() {
    cleanup_at_scale(Database::Sqlite, 40_000).await;
}

#[tokio::test]
async fn cleanup_of_70000_due_rows_binds_at_most_1000_parameters_postgres() {
    cleanup_at_scale(Database::Postgres, 70_000).await;
}

/// Ending many live sessions binds at most 1,000 parameters per statement too.
#[tokio::test]
async fn revoking_2500_sessions_binds_at_most_1000_parameters() {
    let app = TestApp::with(Settings {
        sessions: json!({"maintenance": {"batch_rest_ms": 0}}),
        ..Settings::default()
    })
    .await;
    let user = app.create_user("pia@example.com", false).await;
    seed_rows(&app, user.id, 2_500, 3600, 'v').await;
    let (sessions, counts) = counting(&app);
    let ended = sessions
        .revoke_everyone(None, EndReason::RevokedByAdmin, None)
        .await
        .expect("revoke");
    assert_eq!(ended, Some(2_500));
    assert_eq!(
        events_per_session(&app.ctx.db, &["revoked"]).await.len(),
        2_500
    );
    let most = counts.most_bound();
    assert!(most <= 1_000, "a statement bound {most} parameters");
}

/// The database store's expired records and the SQL throttle's ended windows go in
/// batches too.
#[tokio::test]
async fn the_database_store_and_throttle_sweeps_cross_batch_boundaries() {
    use tessera::models::_entities::session_records;
    let app = TestApp::with(Settings {
        sessions: json!({"store": "database", "maintenance": {"batch_size": 3, "batch_rest_ms": 0}}),
        ..Settings::default()
    })
    .await;
    let past = (Utc::now() - chrono::Duration::minutes(5)).fixed_offset();
    let future = (Utc::now() + chrono::Duration::hours(1)).fixed_offset();
    let records = (0..12).map(|n| session_records::ActiveModel {
        id: ActiveValue::Set(format!("seeded-{n}")),
        record: ActiveValue::Set("{}".to_string()),
        expires_at: ActiveValue::Set(if n < 10 { past } else { future }),
    });
    session_records::Entity::insert_many(records)
        .exec(&app.ctx.db)
        .await
        .expect("records");
    let now_ms = Utc::now().timestamp_millis();
    for n in 0..11 {
        let ends = if n < 10 {
            now_ms - 60_000
        } else {
            now_ms + 600_000
        };
        app.ctx
            .db
            .execute_unprepared(&format!(
                "INSERT INTO throttle_counters (counter_key, attempts, window_ends_at) VALUES ('k{n}', 1, {ends})"
            ))
            .await
            .expect("counter");
    }
    let report = maintenance::cleanup(&app.sessions(), &app.ctx.db, |_, _| {})
        .await
        .expect("cleanup");
    assert_eq!(
        (report.store.expired, report.throttle_counters),
        (10, 10),
        "{report}"
    );
    assert_eq!(
        session_records::Entity::find()
            .count(&app.ctx.db)
            .await
            .expect("count"),
        2
    );
}
