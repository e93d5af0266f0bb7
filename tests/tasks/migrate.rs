//! `sessions_migrate`: every live session keeps working, with the same ID and expiry,
//! after a deployment switches stores.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};
use serial_test::serial;
use tessera::sessions::{
    data::MIGRATED,
    events::EndReason,
    maintenance::{self, MigrateReport},
    registry::SessionRegistry,
    stores::{
        file::FileStore,
        ops::StoreError,
        redis::{RedisConfig, RedisSessionStore},
        Backend,
    },
};
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

use crate::support::{
    counted, parse_id, record_count,
    redis::RedisServer,
    redis_topology::{RedisCluster, RedisSentinel},
    Database, Settings, TestApp,
};

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

/// `sessions_migrate` from `from` to `to` in-process, with `app`'s registry and batches.
async fn migrate(app: &TestApp, from: &Backend, to: &Backend) -> Result<MigrateReport, StoreError> {
    let sessions = app.sessions();
    maintenance::migrate(
        sessions.registry(),
        from,
        to,
        &sessions.config().maintenance,
        |_| {},
    )
    .await
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

    // The second run finds both copies there, as recent as the source's.
    for expected in ["2 copied, 0 already there", "0 copied, 2 already there"] {
        let (ok, out, err) = app
            .cli(&["task", "sessions_migrate", "from:file", "to:redis"])
            .await;
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!(
                "sessions_migrate: {expected}, 0 skipped (expired), 0 failed"
            )),
            "{out}"
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
    let report = migrate(&app, &file, &memory).await.expect("migrate");
    assert_eq!((report.copied, report.failed), (2, 0));
    for id in &ids {
        let key = app
            .sessions()
            .hasher()
            .store_key(&crate::support::parse_id(id));
        assert!(memory.load(key.as_id()).await.expect("load").is_some());
    }
    assert!(
        migrate(&app, &memory, &file).await.is_err(),
        "memory cannot be listed"
    );

    let (ok, out, err) = app
        .cli(&["task", "sessions_migrate", "from:file", "to:database"])
        .await;
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

/// An app whose sessions are in the file store, with three users logged in; the store keys
/// of their sessions.
async fn file_app_with_three_sessions(database: Database) -> (TestApp, Vec<Id>) {
    let app = TestApp::with(Settings {
        database,
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let mut keys = Vec::new();
    for email in ["lea@example.com", "max@example.com", "nia@example.com"] {
        app.create_user(email, false).await;
        let (_, id) = app.browser_logged_in_as(email).await;
        keys.push(*app.sessions().hasher().store_key(&parse_id(&id)).as_id());
    }
    (app, keys)
}

/// `sessions_migrate` into `to`, which holds one session's key already with a newer
/// record (the session went on in the target) and another's with an older copy (an
/// earlier run's): the newer one is left alone and reported as already there, the older
/// one replaced, the third session copied; every copy under its own key, and nothing
/// else written. A second run finds everything there.
async fn copies_keep_their_keys_and_newer_records_are_left_alone(to: Backend, database: Database) {
    let (app, keys) = file_app_with_three_sessions(database).await;
    let from = app.sessions().backend().clone();
    let mut sources = Vec::new();
    for key in &keys {
        sources.push(from.load(key).await.expect("load").expect("a live session"));
    }
    let newer = Record {
        id: keys[0],
        data: HashMap::from([("payload".to_string(), json!("written in the target"))]),
        expiry_date: sources[0].expiry_date + time::Duration::hours(1),
    };
    let older = Record {
        data: HashMap::from([("payload".to_string(), json!("an earlier copy"))]),
        expiry_date: sources[1].expiry_date - time::Duration::minutes(1),
        ..sources[1].clone()
    };
    for record in [&newer, &older] {
        assert!(to
            .create_if_absent(record)
            .await
            .expect("the target answers"));
    }

    let report = migrate(&app, &from, &to).await.expect("migrate");
    assert_eq!(
        (report.copied, report.already_there, report.failed),
        (2, 1, 0),
        "{report}"
    );
    assert!(
        report.to_string().contains("2 copied, 1 already there"),
        "{report}"
    );
    let kept = to.load(&keys[0]).await.expect("load").expect("kept");
    assert_eq!(kept.data, newer.data, "the newer record is left alone");
    for (key, source) in keys.iter().zip(&sources).skip(1) {
        let mut copy = to.load(key).await.expect("load").expect("copied");
        assert_eq!(copy.id, *key, "under its own key");
        assert_eq!(copy.expiry_date, source.expiry_date);
        assert_eq!(copy.data.remove(MIGRATED), Some(json!(true)));
        assert_eq!(copy.data, source.data);
    }
    assert_eq!(
        record_count(&to).await,
        3,
        "nothing written under another key"
    );

    let again = migrate(&app, &from, &to).await.expect("migrate");
    assert_eq!(
        (again.copied, again.already_there, again.failed),
        (0, 3, 0),
        "{again}"
    );
    assert_eq!(record_count(&to).await, 3);
}

fn redis_target(url: &str) -> Backend {
    Backend::Redis(
        RedisSessionStore::connect(&RedisConfig {
            url: url.to_string(),
            pool_size: 2,
            command_timeout: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_secs(1),
        })
        .expect("pool builds"),
    )
}

#[tokio::test]
async fn into_memory_copies_keep_their_keys() {
    let to = Backend::Memory(tessera::sessions::stores::memory::MemoryStore::default());
    copies_keep_their_keys_and_newer_records_are_left_alone(to, Database::Sqlite).await;
}

#[tokio::test]
async fn into_file_copies_keep_their_keys() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let to = Backend::File(FileStore::open(dir.path().join("sessions")).expect("store opens"));
    copies_keep_their_keys_and_newer_records_are_left_alone(to, Database::Sqlite).await;
}

#[tokio::test]
async fn into_database_copies_keep_their_keys() {
    into_database(Database::Sqlite).await;
}

#[tokio::test]
async fn into_database_postgres_copies_keep_their_keys() {
    into_database(Database::Postgres).await;
}

/// The target is the database store in a database of its own (the source app's would do
/// too; its own proves nothing leaks between them).
async fn into_database(database: Database) {
    let target = TestApp::with(Settings {
        database,
        sessions: json!({"store": "database"}),
        ..Settings::default()
    })
    .await;
    let to = target.sessions().backend().clone();
    copies_keep_their_keys_and_newer_records_are_left_alone(to, database).await;
}

#[tokio::test]
async fn into_redis_copies_keep_their_keys() {
    let server = RedisServer::start();
    copies_keep_their_keys_and_newer_records_are_left_alone(
        redis_target(&server.url()),
        Database::Sqlite,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn into_redis_cluster_copies_keep_their_keys() {
    let cluster = RedisCluster::start();
    copies_keep_their_keys_and_newer_records_are_left_alone(
        redis_target(&cluster.url()),
        Database::Sqlite,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn into_redis_sentinel_copies_keep_their_keys() {
    let sentinel = RedisSentinel::start();
    copies_keep_their_keys_and_newer_records_are_left_alone(
        redis_target(&sentinel.url()),
        Database::Sqlite,
    )
    .await;
}

/// A live record written straight into `store`, as no login wrote it: no registry row
/// names it, so nothing marks it ended.
async fn stray_record(store: &Backend) -> Id {
    let record = Record {
        id: Id::default(),
        data: HashMap::from([("payload".to_string(), json!("stray"))]),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    assert!(store.create_if_absent(&record).await.expect("written"));
    record.id
}

/// With 3 records per batch: the migration is stopped after its first batch (as a killed
/// task is, mid-way) and run again. The second run copies what the first did not, finds
/// the first run's copies there, and never copies the session the registry marks ended;
/// at the end the target holds every live session once.
#[tokio::test]
async fn a_migration_stopped_after_one_batch_and_run_again_copies_every_live_session_once() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file", "maintenance": {"batch_size": 3, "batch_rest_ms": 0}}),
        ..Settings::default()
    })
    .await;
    let from = app.sessions().backend().clone();
    let mut live = Vec::new();
    let mut ended = None;
    for email in ["oli@example.com", "pam@example.com", "quin@example.com"] {
        app.create_user(email, false).await;
        let (_, id) = app.browser_logged_in_as(email).await;
        let key = app.sessions().hasher().store_key(&parse_id(&id));
        if ended.is_none() {
            // Ended in the registry (by another instance, say) while its record stays.
            assert!(app
                .sessions()
                .registry()
                .end(&key.session_ref(), EndReason::RevokedByAdmin)
                .await
                .expect("registry"));
            ended = Some(*key.as_id());
        } else {
            live.push(*key.as_id());
        }
    }
    for _ in 0..7 {
        live.push(stray_record(&from).await);
    }
    let target = TestApp::with(Settings {
        sessions: json!({"store": "database"}),
        ..Settings::default()
    })
    .await;
    let to = target.sessions().backend().clone();
    let registry = app.sessions().registry().clone();
    let batches = app.sessions().config().maintenance;

    let (first_batch_done, stop) = tokio::sync::oneshot::channel();
    let first_batch_done = std::sync::Mutex::new(Some(first_batch_done));
    let handled_at_stop = std::sync::Mutex::new(0);
    tokio::select! {
        biased;
        _ = stop => {}
        finished = maintenance::migrate(&registry, &from, &to, &batches, |report| {
            *handled_at_stop.lock().expect("lock") = report.handled();
            if let Some(done) = first_batch_done.lock().expect("lock").take() {
                let _ = done.send(());
            }
        }) => panic!("not stopped after its first batch: {finished:?}"),
    }
    assert_eq!(*handled_at_stop.lock().expect("lock"), 3, "one batch of 3");
    let copied_before = record_count(&to).await;
    assert!(
        (1..live.len()).contains(&copied_before),
        "stopped part-way: {copied_before} copied"
    );

    let report = migrate(&app, &from, &to).await.expect("migrate");
    assert_eq!(report.handled(), 10, "{report}");
    assert_eq!(
        (
            report.copied + report.already_there,
            report.skipped_ended,
            report.failed
        ),
        (9, 1, 0),
        "{report}"
    );
    assert_eq!(
        report.copied,
        (9 - copied_before) as u64,
        "the first run's copies are found there: {report}"
    );
    for key in &live {
        assert!(to.load(key).await.expect("load").is_some(), "copied");
    }
    let ended = ended.expect("one ended");
    assert!(
        to.load(&ended).await.expect("load").is_none(),
        "never copied"
    );
    assert_eq!(record_count(&to).await, 9, "each live session once");

    let again = migrate(&app, &from, &to).await.expect("migrate");
    assert_eq!((again.copied, again.already_there), (0, 9), "{again}");
}

/// 1,200 records at the default batch size (500): the registry is asked once per batch,
/// not once per record, and no statement binds more than 1,000 parameters.
#[tokio::test]
async fn a_migration_asks_the_registry_once_per_batch() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file", "maintenance": {"batch_rest_ms": 0}}),
        ..Settings::default()
    })
    .await;
    let from = app.sessions().backend().clone();
    for _ in 0..1_200 {
        stray_record(&from).await;
    }
    let (db, counts) = counted(&app.ctx.db);
    let registry = SessionRegistry::new(db);
    let to = Backend::Memory(tessera::sessions::stores::memory::MemoryStore::default());
    let report = maintenance::migrate(
        &registry,
        &from,
        &to,
        &app.sessions().config().maintenance,
        |_| {},
    )
    .await
    .expect("migrate");
    assert_eq!(report.copied, 1_200, "{report}");
    assert_eq!(
        counts.statements(),
        3,
        "one registry query per batch of 500"
    );
    let most = counts.most_bound();
    assert!(most <= 1_000, "a statement bound {most} parameters");
}

/// From a Redis Cluster (sessions on every master) into the database store, 3 records per
/// batch: every session logged in on the cluster is still logged in on the database store.
#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn from_a_redis_cluster_every_master_s_sessions_are_copied() {
    let cluster = RedisCluster::start();
    let app = TestApp::with(Settings {
        sessions: json!({
            "store": "redis",
            "redis": {"url": cluster.url()},
            "maintenance": {"batch_size": 3, "batch_rest_ms": 0},
        }),
        ..Settings::default()
    })
    .await;
    let mut ids = Vec::new();
    for email in [
        "ray@example.com",
        "sue@example.com",
        "tom@example.com",
        "uma@example.com",
    ] {
        app.create_user(email, false).await;
        ids.push(app.browser_logged_in_as(email).await.1);
    }
    let (ok, out, err) = app
        .cli(&["task", "sessions_migrate", "from:redis", "to:database"])
        .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("sessions_migrate: 4 copied, 0 already there"),
        "{out}"
    );
    let switched = database_app(&app).await;
    for id in &ids {
        assert!(still_logged_in(&switched, "session", id).await);
    }
}
