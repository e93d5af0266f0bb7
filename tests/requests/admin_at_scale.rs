//! The admin page at any size: events paged by ID (`before=`), an email filter that is a
//! case-insensitive prefix, charts from hourly counts kept as events are written, and
//! query plans that walk indexes, never whole tables. Timing is the benchmark's job
//! (`bench/scale`); what keeps the cost flat is that every query of the page is served
//! by an index and bounded, which the plans show on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use sea_orm::{
    ActiveValue, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryOrder,
    QueryTrait, Statement, TransactionTrait,
};
use tessera::{
    models::{
        _entities::{session_event_counts, session_events, user_sessions, users},
        session_events as events_model,
        users::EmailPrefix,
    },
    sessions::{
        audit::{self, AuditEvent, ThrottleWindow},
        events::EventKind,
        keys::SessionRef,
        registry::{SessionRegistry, EXACT_LIVE_COUNT},
    },
};

use crate::support::{attrs, texts, Database, Settings, TestApp};

async fn app_on(database: Database) -> TestApp {
    TestApp::with(Settings {
        database,
        ..Settings::default()
    })
    .await
}

fn event(kind: &str, at: DateTime<FixedOffset>) -> session_events::ActiveModel {
    session_events::ActiveModel {
        created_at: ActiveValue::Set(at),
        updated_at: ActiveValue::Set(at),
        event: ActiveValue::Set(kind.to_string()),
        ..Default::default()
    }
}

/// Refused attempts of throttle counter `key`, as the audit writer folds them.
fn refused(key: &str, attempts: i64, at: DateTime<FixedOffset>) -> session_events::ActiveModel {
    session_events::ActiveModel {
        attempts: ActiveValue::Set(Some(attempts)),
        throttle_key: ActiveValue::Set(Some(key.to_string())),
        window_ends_at: ActiveValue::Set(Some(at + Duration::hours(2))),
        ..event("login_throttled", at)
    }
}

/// Writes `rows` as the audit writer does: in one transaction.
async fn write(db: &DatabaseConnection, rows: &[session_events::ActiveModel]) {
    let txn = db.begin().await.expect("begin");
    audit::insert_events(&txn, rows).await.expect("insert");
    txn.commit().await.expect("commit");
}

/// The hourly counts table, as (hour, kind) → count.
async fn counts(db: &DatabaseConnection) -> BTreeMap<(DateTime<Utc>, String), i64> {
    session_event_counts::Entity::find()
        .all(db)
        .await
        .expect("counts")
        .into_iter()
        .map(|c| ((c.hour.with_timezone(&Utc), c.kind), c.count))
        .collect()
}

/// The IDs of the event rows of a page, top to bottom.
fn event_ids(html: &str) -> Vec<i64> {
    attrs(html, "#recent-events tbody tr", "data-event-id")
        .iter()
        .map(|id| id.parse().expect("an event ID"))
        .collect()
}

#[tokio::test]
async fn events_page_by_id_newest_first_without_repeats_or_gaps() {
    let app = TestApp::start().await;
    app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let at = Utc::now().fixed_offset();
    let seeded: Vec<_> = (0..60).map(|_| event("rotated", at)).collect();
    write(&app.ctx.db, &seeded).await;
    app.flush_audit().await;

    let first = admin.get("/admin/sessions").await.text();
    let mut shown = event_ids(&first);
    assert_eq!(shown.len(), 25);
    assert!(
        attrs(&first, ".pager a[rel=first]", "href").is_empty(),
        "the newest page links to no newer one"
    );
    // Every event there was when the first page was drawn, newest first.
    let expected: Vec<i64> = session_events::Entity::find()
        .all(&app.ctx.db)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.id)
        .filter(|id| *id <= shown[0])
        .rev()
        .collect();
    assert!(expected.len() > 60, "{}", expected.len());

    // Events that arrive while the admin pages back move nothing.
    write(&app.ctx.db, &[event("rotated", at), event("rotated", at)]).await;
    let mut next = attrs(&first, ".pager a[rel=next]", "href");
    let mut pages = 1;
    while let Some(href) = next.pop() {
        let last = shown.last().copied().expect("a row");
        assert_eq!(href, format!("/admin/sessions?before={last}"));
        let html = admin.get(&href).await.text();
        assert_eq!(
            attrs(&html, ".pager a[rel=first]", "href"),
            vec!["/admin/sessions"]
        );
        let ids = event_ids(&html);
        assert!(ids.first().is_some_and(|id| *id < last), "{ids:?}");
        shown.extend(ids);
        next = attrs(&html, ".pager a[rel=next]", "href");
        pages += 1;
    }
    assert_eq!(
        shown, expected,
        "each event once, none skipped, newest first"
    );
    assert_eq!(pages, expected.len().div_ceil(25));

    // Past the oldest event: an empty page that says so.
    let oldest = expected.last().copied().expect("events");
    let empty = admin
        .get(&format!("/admin/sessions?before={oldest}"))
        .await
        .text();
    assert!(event_ids(&empty).is_empty());
    assert_eq!(texts(&empty, "#no-events"), vec!["No older events."]);
    assert!(attrs(&empty, ".pager a[rel=next]", "href").is_empty());
}

#[tokio::test]
async fn a_bad_before_is_a_400_that_says_so_and_page_is_gone() {
    let app = TestApp::start().await;
    app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    for bad in ["abc", "-3", "0", "12.5", "99999999999999999999"] {
        let response = admin.get(&format!("/admin/sessions?before={bad}")).await;
        assert_eq!(response.status_code(), 400, "before={bad}");
        assert!(
            response.text().contains("Older events"),
            "the page says what the link should hold: {bad}"
        );
    }
    // The filter is kept by the pager, and `page=` of old links is the newest page.
    app.flush_audit().await;
    let newest = admin.get("/admin/sessions").await.text();
    let old_link = admin.get("/admin/sessions?page=2").await;
    assert_eq!(old_link.status_code(), 200);
    assert_eq!(
        event_ids(&old_link.text()).first(),
        event_ids(&newest).first()
    );
    let filtered = admin
        .get(&format!(
            "/admin/sessions?before={}&email=ro",
            i64::from(i32::MAX)
        ))
        .await
        .text();
    assert_eq!(
        attrs(&filtered, ".pager a[rel=first]", "href"),
        vec!["/admin/sessions?email=ro"]
    );
}

#[tokio::test]
async fn the_email_filter_is_a_case_insensitive_prefix() {
    the_email_filter_is_a_case_insensitive_prefix_on(Database::Sqlite).await;
}

#[tokio::test]
async fn the_email_filter_is_a_case_insensitive_prefix_postgres() {
    the_email_filter_is_a_case_insensitive_prefix_on(Database::Postgres).await;
}

async fn the_email_filter_is_a_case_insensitive_prefix_on(database: Database) {
    let app = app_on(database).await;
    app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    for email in [
        "alice@example.com",
        "albert@example.com",
        "malice@example.com",
        "al_x@example.com",
    ] {
        app.create_user(email, false).await;
        app.browser_logged_in_as(email).await;
    }
    let shown = |html: String| {
        let mut emails = attrs(&html, "#live-sessions tbody tr", "data-email");
        emails.sort();
        emails
    };
    for (filter, expected) in [
        ("ALI", vec!["alice@example.com"]),
        ("  Alice@EXAMPLE.com ", vec!["alice@example.com"]),
        (
            "al",
            vec![
                "al_x@example.com",
                "albert@example.com",
                "alice@example.com",
            ],
        ),
        ("lice", vec![]),
        // Not a pattern: `_` and `%` are characters like any other.
        ("al_", vec!["al_x@example.com"]),
        ("a%", vec![]),
    ] {
        let query: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let html = admin
            .get(&format!("/admin/sessions?email={query}"))
            .await
            .text();
        assert_eq!(shown(html.clone()), expected, "filter {filter:?}");
        if expected.is_empty() {
            assert!(texts(&html, "#no-sessions")
                .concat()
                .contains("whose email starts with"));
        }
    }
    assert_eq!(
        shown(admin.get("/admin/sessions").await.text()).len(),
        5,
        "no filter: everyone's"
    );
}

#[test]
fn a_prefix_range_ends_at_the_next_string_past_it() {
    let range = |p: &str| {
        let prefix = EmailPrefix::parse(p).expect("a prefix");
        let (lower, upper) = prefix.range();
        (lower.to_string(), upper)
    };
    assert_eq!(range("Ab"), ("ab".into(), Some("ac".into())));
    assert_eq!(
        range("a\u{10FFFF}"),
        ("a\u{10FFFF}".into(), Some("b".into()))
    );
    assert_eq!(
        range("\u{D7FF}"),
        ("\u{D7FF}".into(), Some("\u{E000}".into()))
    );
    assert_eq!(range("\u{10FFFF}"), ("\u{10FFFF}".into(), None));
    assert!(EmailPrefix::parse(" ").is_none());
}

#[tokio::test]
async fn hourly_counts_are_the_events_written() {
    hourly_counts_are_the_events_written_on(Database::Sqlite).await;
}

#[tokio::test]
async fn hourly_counts_are_the_events_written_postgres() {
    hourly_counts_are_the_events_written_on(Database::Postgres).await;
}

async fn hourly_counts_are_the_events_written_on(database: Database) {
    let app = app_on(database).await;
    let db = &app.ctx.db;
    let now = audit::hour_of(Utc::now().fixed_offset());
    let hour = |back: i64| now - Duration::hours(back);
    // More rows than one INSERT takes, over three hours and three kinds; refused attempts
    // of one counter in two batches (an upsert of one row) count every attempt.
    let mut rows: Vec<_> = (0..150)
        .map(|i| event("login", hour(2) + Duration::seconds(i)))
        .collect();
    rows.push(event("login_failed", hour(1) + Duration::minutes(59)));
    rows.push(refused("counter-a", 5, hour(1) + Duration::minutes(50)));
    write(db, &rows).await;
    write(
        db,
        &[
            refused("counter-a", 7, hour(0) + Duration::minutes(1)),
            event("login", hour(0)),
        ],
    )
    .await;
    // A transaction that rolls back leaves neither events nor counts.
    let txn = db.begin().await.expect("begin");
    audit::insert_events(&txn, &[event("login", hour(0))])
        .await
        .expect("insert");
    txn.rollback().await.expect("rollback");

    let expected: BTreeMap<_, _> = [
        ((hour(2), "login"), 150),
        ((hour(1), "login_failed"), 1),
        ((hour(1), "login_throttled"), 5),
        ((hour(0), "login_throttled"), 7),
        ((hour(0), "login"), 1),
    ]
    .into_iter()
    .map(|((h, k), n)| ((h.with_timezone(&Utc), k.to_string()), n))
    .collect();
    assert_eq!(counts(db).await, expected);
    let trail = session_events::Entity::find()
        .all(db)
        .await
        .expect("events");
    assert_eq!(trail.len(), 153, "one row for the counter's 12 attempts");
    let throttled: Vec<_> = trail.iter().filter_map(|e| e.attempts).collect();
    assert_eq!(throttled, vec![12]);

    // The charts read them, each hour in its bar.
    let charts = events_model::hourly_counts(db, &["login", "login_failed"])
        .await
        .expect("charts");
    let bar = |back: i64| {
        usize::try_from((hour(back).with_timezone(&Utc) - charts.start).num_hours())
            .expect("within the charts")
    };
    let logins = charts.of(&["login"]);
    assert_eq!((logins[bar(2)], logins[bar(0)]), (150, 1));
    assert_eq!(charts.of(&["login_failed"]).iter().sum::<u64>(), 1);

    // Through the app's own writer: refused attempts queued one by one count one each.
    let ends_at = std::time::SystemTime::now() + std::time::Duration::from_secs(600);
    for _ in 0..9 {
        app.sessions().audit().record(
            AuditEvent::new(EventKind::LoginThrottled)
                .throttled(ThrottleWindow::new("counter-b".into(), ends_at)),
        );
    }
    app.flush_audit().await;
    let total = |kind: &'static str| {
        let db = db.clone();
        async move {
            counts(&db)
                .await
                .into_iter()
                .filter(|((_, k), _)| k == kind)
                .map(|(_, n)| n)
                .sum::<i64>()
        }
    };
    assert_eq!(total("login_throttled").await, 5 + 7 + 9);
    let attempts: i64 = session_events::Entity::find()
        .all(db)
        .await
        .expect("events")
        .iter()
        .filter_map(|e| e.attempts)
        .sum();
    assert_eq!(attempts, 5 + 7 + 9, "the counts are the trail's attempts");
}

/// Enough rows that a plan which reads them all would show it: 2,000 users, 10,000
/// registry rows (half live, a quarter expired, a quarter ended), 10,000 events.
async fn seed(db: &DatabaseConnection) {
    let now = Utc::now().fixed_offset();
    let users: Vec<_> = (0..2_000)
        .map(|i| users::ActiveModel {
            created_at: ActiveValue::Set(now),
            updated_at: ActiveValue::Set(now),
            pid: ActiveValue::Set(uuid::Uuid::new_v4()),
            email: ActiveValue::Set(format!("user{i:05}@example.com")),
            password: ActiveValue::Set("x".into()),
            name: ActiveValue::Set("Some Body".into()),
            admin: ActiveValue::Set(false),
            disabled: ActiveValue::Set(false),
            credential_generation: ActiveValue::Set(0),
            ..Default::default()
        })
        .collect();
    let txn = db.begin().await.expect("begin");
    for chunk in users.chunks(100) {
        users::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await
            .expect("users");
    }
    let first_user = users::Entity::find()
        .order_by_asc(users::Column::Id)
        .one(&txn)
        .await
        .expect("users")
        .map_or(1, |u| u.id);
    let sessions: Vec<_> = (0..10_000_i64)
        .map(|i| {
            let seen = now - Duration::minutes(i % 600);
            let (expires_at, ended_at) = match i % 4 {
                0 | 1 => (now + Duration::hours(1), None),
                2 => (now - Duration::hours(1), None),
                _ => (now + Duration::hours(1), Some(now - Duration::hours(2))),
            };
            user_sessions::ActiveModel {
                created_at: ActiveValue::Set(seen),
                updated_at: ActiveValue::Set(seen),
                session_ref: ActiveValue::Set(format!("r{i:011}")),
                store_key: ActiveValue::Set(format!("key{i}")),
                store: ActiveValue::Set(if i % 3 == 0 { "redis" } else { "file" }.into()),
                last_seen_at: ActiveValue::Set(seen),
                expires_at: ActiveValue::Set(expires_at),
                user_agent: ActiveValue::Set("curl/8.0".into()),
                ip: ActiveValue::Set(None),
                ended_at: ActiveValue::Set(ended_at),
                end_reason: ActiveValue::Set(None),
                user_id: ActiveValue::Set(first_user + i % 2_000),
                credential_generation: ActiveValue::Set(0),
                ..Default::default()
            }
        })
        .collect();
    for chunk in sessions.chunks(60) {
        user_sessions::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await
            .expect("sessions");
    }
    let events: Vec<_> = (0..10_000)
        .map(|i| event("login", now - Duration::minutes(i % 2_000)))
        .collect();
    audit::insert_events(&txn, &events).await.expect("events");
    txn.commit().await.expect("commit");
}

/// The plan `backend` chooses for `statement`, one line per step.
async fn plan(db: &DatabaseConnection, statement: Statement) -> String {
    let backend = db.get_database_backend();
    let txn = db.begin().await.expect("begin");
    let explain = match backend {
        DatabaseBackend::Postgres => {
            // Only an index, if any serves: a plan that still reads the whole table is
            // one no index can serve.
            txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await
                .expect("set");
            "EXPLAIN"
        }
        _ => "EXPLAIN QUERY PLAN",
    };
    let column = match backend {
        DatabaseBackend::Postgres => "QUERY PLAN",
        _ => "detail",
    };
    let rows = txn
        .query_all_raw(Statement {
            sql: format!("{explain} {}", statement.sql),
            ..statement
        })
        .await
        .expect("explain");
    txn.rollback().await.expect("rollback");
    rows.iter()
        .map(|row| row.try_get::<String>("", column).expect("a plan line"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_admin_pages_queries_walk_indexes_on_sqlite() {
    the_admin_pages_queries_walk_indexes_on(Database::Sqlite).await;
}

#[tokio::test]
async fn the_admin_pages_queries_walk_indexes_on_postgres() {
    the_admin_pages_queries_walk_indexes_on(Database::Postgres).await;
}

async fn the_admin_pages_queries_walk_indexes_on(database: Database) {
    let app = app_on(database).await;
    let db = &app.ctx.db;
    seed(db).await;
    let backend = db.get_database_backend();
    let postgres = backend == DatabaseBackend::Postgres;
    if postgres {
        db.execute_unprepared("ANALYZE").await.expect("analyze");
    }
    let prefix = EmailPrefix::parse("USER0001").expect("a prefix");
    let accounts = prefix.matching_ids(db, 501).await.expect("accounts");
    assert_eq!(accounts.len(), 10, "user00010 to user00019");
    let session_ref = SessionRef::parse("r00000000004").expect("a ref");
    let start = Utc::now() - Duration::hours(23);
    // (what, statement, the index it must use on SQLite, on PostgreSQL)
    let queries = [
        (
            "live sessions, most recently used first",
            SessionRegistry::live_table_query(None, 201).build(backend),
            "idx-user_sessions-open-last_seen_at",
            "idx-user_sessions-open-last_seen_at",
        ),
        (
            "accounts by email prefix",
            prefix.matching_ids_query(backend, 501).build(backend),
            "sqlite_autoindex_users_1",
            "idx-users-email-bytes",
        ),
        (
            "live sessions of the filtered accounts",
            SessionRegistry::live_table_query(Some(accounts), 201).build(backend),
            "idx-user_sessions-user_id-ended_at",
            "idx-user_sessions-user_id-ended_at",
        ),
        (
            "live sessions per store, counted up to the cap",
            backend.build(&SessionRegistry::live_count_query(Some(
                EXACT_LIVE_COUNT + 1,
            ))),
            "idx-user_sessions-open-expires_at",
            "idx-user_sessions-open-expires_at",
        ),
        (
            "a live session by its ref",
            SessionRegistry::live_by_ref_query(&session_ref).build(backend),
            "sqlite_autoindex_user_sessions_1",
            "user_sessions_session_ref_key",
        ),
        (
            "the newest events",
            events_model::page_query(None, 26).build(backend),
            "INTEGER PRIMARY KEY",
            "session_events_pkey",
        ),
        (
            "the events before one",
            events_model::page_query(Some(5_000), 26).build(backend),
            "INTEGER PRIMARY KEY",
            "session_events_pkey",
        ),
        (
            "the charts' hourly counts",
            events_model::hourly_counts_query(start, &["login", "revoked"]).build(backend),
            "sqlite_autoindex_session_event_counts_1",
            "session_event_counts_pkey",
        ),
    ];
    // The control: the old filter (`email` anywhere in the address) is a scan, and the
    // checks below see it.
    let contains = plan(
        db,
        Statement::from_string(
            backend,
            "SELECT id FROM users WHERE email LIKE '%lice%'".to_string(),
        ),
    )
    .await;
    assert!(
        contains.contains("Seq Scan on users") || contains.contains("SCAN users"),
        "{contains}"
    );
    for (what, statement, sqlite_index, postgres_index) in queries {
        let plan = plan(db, statement).await;
        let index = if postgres {
            postgres_index
        } else {
            sqlite_index
        };
        assert!(plan.contains(index), "{what}: uses {index}:\n{plan}");
        for line in plan.lines() {
            if postgres {
                assert!(
                    !line.contains("Seq Scan"),
                    "{what}: reads a whole table:\n{plan}"
                );
            } else {
                // `SCAN t` alone reads the table; `SCAN t USING INDEX i` walks an index in
                // order, which the LIMIT stops (`SCAN live` reads the capped subquery).
                let step = line.trim();
                for table in [
                    "users",
                    "user_sessions",
                    "session_events",
                    "session_event_counts",
                ] {
                    assert!(
                        step != format!("SCAN {table}"),
                        "{what}: reads a whole table:\n{plan}"
                    );
                }
            }
        }
        if !postgres && what != "live sessions of the filtered accounts" {
            // Pages come in index order, never by sorting what matched (only the few
            // sessions of the filtered accounts are).
            assert!(
                !plan.contains("FOR ORDER BY"),
                "{what}: sorts rows:\n{plan}"
            );
        }
    }
}

#[tokio::test]
async fn the_retention_sweep_takes_the_counts_of_the_events_it_deletes() {
    let app = TestApp::start().await;
    let now = Utc::now().fixed_offset();
    let old = now - Duration::days(91);
    write(&app.ctx.db, &[event("logout", old), event("logout", now)]).await;
    app.task("sessions_cleanup", &[]).await.expect("cleanup");
    let left: Vec<_> = counts(&app.ctx.db).await.into_iter().collect();
    assert_eq!(
        left,
        vec![(
            (
                audit::hour_of(now).with_timezone(&Utc),
                "logout".to_string()
            ),
            1
        )]
    );
}

/// `n` live registry rows of `user_id` in the `file` store.
async fn live_rows(db: &DatabaseConnection, user_id: i64, n: i64) {
    let now = Utc::now().fixed_offset();
    let rows: Vec<_> = (0..n)
        .map(|i| user_sessions::ActiveModel {
            created_at: ActiveValue::Set(now),
            updated_at: ActiveValue::Set(now),
            session_ref: ActiveValue::Set(format!("L{i:011}")),
            store_key: ActiveValue::Set(format!("key{i}")),
            store: ActiveValue::Set("file".into()),
            last_seen_at: ActiveValue::Set(now - Duration::hours(1)),
            expires_at: ActiveValue::Set(now + Duration::hours(1)),
            user_agent: ActiveValue::Set("curl/8.0".into()),
            user_id: ActiveValue::Set(user_id),
            credential_generation: ActiveValue::Set(0),
            ..Default::default()
        })
        .collect();
    let txn = db.begin().await.expect("begin");
    for chunk in rows.chunks(60) {
        user_sessions::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await
            .expect("rows");
    }
    txn.commit().await.expect("commit");
}

#[tokio::test]
async fn past_ten_thousand_live_sessions_the_count_says_when_it_was_made() {
    let app = TestApp::with_sessions(
        serde_json::json!({"metrics_token": crate::support::metrics::TOKEN}),
    )
    .await;
    let admin_user = app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let html = admin.get("/admin/sessions").await.text();
    assert_eq!(texts(&html, "#live-total"), vec!["1"]);
    assert!(
        texts(&html, "#live-counted-at").is_empty(),
        "counted for the page"
    );

    let seeded = i64::try_from(EXACT_LIVE_COUNT).expect("a count") + 5;
    live_rows(&app.ctx.db, admin_user.id, seeded).await;
    let html = admin.get("/admin/sessions").await.text();
    assert_eq!(
        texts(&html, "#live-total"),
        vec![(seeded + 1).to_string()],
        "every one counted, in the background"
    );
    assert_eq!(texts(&html, "[data-store=file]"), vec![seeded.to_string()]);
    let note = texts(&html, "#live-counted-at").concat();
    assert!(
        note.contains("over 10000") && note.contains("counted"),
        "{note}"
    );
    // The table stays a page, and says there is more.
    assert_eq!(
        attrs(&html, "#live-sessions tbody tr", "data-email").len(),
        200
    );
    assert!(texts(&html, "#sessions-more")
        .concat()
        .contains("200 most recently used"));
    let metrics = crate::support::metrics::scrape(&app).await;
    #[allow(clippy::cast_precision_loss)]
    let expected = seeded as f64;
    assert_eq!(
        crate::support::metrics::value(&metrics, r#"tessera_sessions_live{store="file"}"#),
        Some(expected),
        "/metrics counts the same way"
    );
}

/// Migration 000019 counts the events a deployment already has (the last 25 hours), in the
/// hours and the text the app writes them in: the charts do not start empty, and the
/// app's own counts add to the same rows.
async fn the_migration_counts_the_events_already_there_on(database: Database) {
    use migration::{Migrator, MigratorTrait};
    let app = app_on(database).await;
    let db = &app.ctx.db;
    // Back to just before 000019, whatever migrations came after it.
    let migrations = Migrator::migrations();
    let at = migrations
        .iter()
        .position(|m| m.name().contains("000019"))
        .expect("migration 000019");
    let steps = u32::try_from(migrations.len() - at).expect("a few migrations");
    Migrator::down(db, Some(steps)).await.expect("down");
    let now = Utc::now().fixed_offset();
    let hour = audit::hour_of(now);
    let rows = [
        event("login", now),
        event("login", hour),
        event("login", hour - Duration::minutes(30)),
        session_events::ActiveModel {
            attempts: ActiveValue::Set(Some(4)),
            ..event("login_throttled", hour - Duration::minutes(30))
        },
        event("login", now - Duration::days(3)),
    ];
    for row in rows {
        session_events::Entity::insert(row)
            .exec_without_returning(db)
            .await
            .expect("an event");
    }
    Migrator::up(db, None).await.expect("up");
    write(db, &[event("login", now)]).await;
    let expected: BTreeMap<_, _> = [
        ((hour, "login"), 3),
        ((hour - Duration::hours(1), "login"), 1),
        ((hour - Duration::hours(1), "login_throttled"), 4),
    ]
    .into_iter()
    .map(|((h, k), n)| ((h.with_timezone(&Utc), k.to_string()), n))
    .collect();
    assert_eq!(counts(db).await, expected);
}

#[tokio::test]
async fn the_migration_counts_the_events_already_there() {
    the_migration_counts_the_events_already_there_on(Database::Sqlite).await;
}

#[tokio::test]
async fn the_migration_counts_the_events_already_there_postgres() {
    the_migration_counts_the_events_already_there_on(Database::Postgres).await;
}
