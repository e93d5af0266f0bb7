//! Two records under one key, on every store and Redis topology: `create` draws a new ID
//! for the newcomer and never touches the record already there, and so does the whole
//! session stack (a new cookie ID, no record left behind under the key it gave up);
//! `create_if_absent` and `create_all_if_absent` (how `sessions_migrate` copies) never draw
//! another key: they write under the record's own key, replacing only an expired record,
//! or report the key taken.

use std::collections::HashMap;

use serde_json::{json, Value};
use serial_test::serial;
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

use crate::support::{
    record_count,
    redis::RedisServer,
    redis_topology::{RedisCluster, RedisSentinel},
    Database, Settings, TestApp,
};

/// An app whose sessions (sealed) are in the store `sessions` names.
async fn app_on(sessions: Value, database: Database) -> TestApp {
    let mut sessions = sessions;
    sessions["encrypt"] = true.into();
    TestApp::with(Settings {
        sessions,
        database,
        ..Settings::default()
    })
    .await
}

fn on_redis(url: &str) -> Value {
    json!({"store": "redis", "redis": {"url": url}})
}

fn record(payload: &str, lifetime: time::Duration) -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([("payload".to_string(), json!(payload))]),
        expiry_date: OffsetDateTime::now_utc() + lifetime,
    }
}

fn live(payload: &str) -> Record {
    record(payload, time::Duration::hours(1))
}

/// The `payload` of the record under `id` in `store`, `None` when there is none.
async fn payload(store: &impl SessionStore, id: &Id) -> Option<Value> {
    store
        .load(id)
        .await
        .expect("the store answers")
        .map(|record| record.data["payload"].clone())
}

/// Every collision check, on the store `app`'s sessions are in.
async fn collisions_are_resolved(app: &TestApp) {
    let backend = app.sessions().backend().clone();

    // The store on its own: the newcomer draws a new ID.
    let mut first = live("first");
    backend.create(&mut first).await.expect("create");
    let mut second = live("second");
    second.id = first.id;
    backend
        .create(&mut second)
        .await
        .expect("a collision is not an error");
    assert_ne!(second.id, first.id, "a colliding ID draws again");
    assert_eq!(payload(&backend, &first.id).await, Some(json!("first")));
    assert_eq!(payload(&backend, &second.id).await, Some(json!("second")));

    // The session stack: the key the next cookie ID maps to is taken already.
    let cookie_id = Id::default();
    let key = *app.sessions().hasher().store_key(&cookie_id).as_id();
    let mut squatter = live("squatter");
    squatter.id = key;
    backend.create(&mut squatter).await.expect("create");
    assert_eq!(squatter.id, key, "a fresh key is free");
    let before = record_count(&backend).await;

    let stack = app.sessions().store();
    let mut session = live("session");
    session.id = cookie_id;
    stack
        .create(&mut session)
        .await
        .expect("a collision is not an error");
    assert_ne!(session.id, cookie_id, "a new cookie ID");
    assert_eq!(
        payload(&backend, &key).await,
        Some(json!("squatter")),
        "the record under the taken key is left alone"
    );
    assert_eq!(payload(&*stack, &session.id).await, Some(json!("session")));
    assert_eq!(
        record_count(&backend).await,
        before + 1,
        "one record more, none left under a key no cookie maps to"
    );

    // Create-if-absent: the record's own key, or nothing.
    let before = record_count(&backend).await;
    let mut copy = live("copy");
    copy.id = first.id;
    assert!(
        !backend.create_if_absent(&copy).await.expect("answers"),
        "a live record holds the key"
    );
    assert_eq!(
        payload(&backend, &first.id).await,
        Some(json!("first")),
        "and is left alone"
    );
    let fresh = live("fresh");
    assert!(backend.create_if_absent(&fresh).await.expect("answers"));
    assert_eq!(payload(&backend, &fresh.id).await, Some(json!("fresh")));
    // An expired record still under a key is no session: it gives way.
    let expired = record("expired", -time::Duration::minutes(1));
    assert!(backend.create_if_absent(&expired).await.expect("answers"));
    let revived = Record {
        id: expired.id,
        ..live("revived")
    };
    assert!(
        backend.create_if_absent(&revived).await.expect("answers"),
        "an expired record does not hold its key"
    );
    assert_eq!(payload(&backend, &expired.id).await, Some(json!("revived")));
    assert_eq!(
        record_count(&backend).await,
        before + 2,
        "written under their own keys only"
    );

    // Many at once (how `sessions_migrate` writes a batch): the same rule for each.
    let before = record_count(&backend).await;
    let taken = Record {
        id: first.id,
        ..live("taken")
    };
    let gone = record("gone", -time::Duration::minutes(1));
    assert!(backend.create_if_absent(&gone).await.expect("answers"));
    let after_gone = Record {
        id: gone.id,
        ..live("after gone")
    };
    let new = live("new");
    let written = backend
        .create_all_if_absent(&[taken, after_gone, new.clone()])
        .await
        .expect("answers");
    assert_eq!(written, vec![false, true, true]);
    assert_eq!(payload(&backend, &first.id).await, Some(json!("first")));
    assert_eq!(payload(&backend, &gone.id).await, Some(json!("after gone")));
    assert_eq!(payload(&backend, &new.id).await, Some(json!("new")));
    assert_eq!(record_count(&backend).await, before + 2);
}

#[tokio::test]
async fn collisions_memory() {
    let app = app_on(json!({"store": "memory"}), Database::Sqlite).await;
    collisions_are_resolved(&app).await;
}

#[tokio::test]
async fn collisions_file() {
    let app = app_on(json!({"store": "file"}), Database::Sqlite).await;
    collisions_are_resolved(&app).await;
}

#[tokio::test]
async fn collisions_database() {
    let app = app_on(json!({"store": "database"}), Database::Sqlite).await;
    collisions_are_resolved(&app).await;
}

#[tokio::test]
async fn collisions_database_postgres() {
    let app = app_on(json!({"store": "database"}), Database::Postgres).await;
    collisions_are_resolved(&app).await;
}

#[tokio::test]
async fn collisions_redis() {
    let server = RedisServer::start();
    let app = app_on(on_redis(&server.url()), Database::Sqlite).await;
    collisions_are_resolved(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn collisions_redis_cluster() {
    let cluster = RedisCluster::start();
    let app = app_on(on_redis(&cluster.url()), Database::Sqlite).await;
    collisions_are_resolved(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn collisions_redis_sentinel() {
    let sentinel = RedisSentinel::start();
    let app = app_on(on_redis(&sentinel.url()), Database::Sqlite).await;
    collisions_are_resolved(&app).await;
}
