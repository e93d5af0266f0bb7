//! The Redis store on its own, against a private redis-server.

use std::{collections::HashMap, time::Duration};

use serde_json::json;
use tessera::sessions::stores::redis::{RedisConfig, RedisSessionStore};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

use crate::support::{clock::PATIENCE, redis::RedisServer};

fn store_for(server: &RedisServer) -> RedisSessionStore {
    RedisSessionStore::connect(&RedisConfig {
        url: server.url(),
        pool_size: 2,
        command_timeout: Duration::from_secs(1),
        reconnect_max_delay: Duration::from_secs(1),
    })
    .expect("pool builds")
}

fn record() -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([("k".to_string(), json!("v"))]),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(10),
    }
}

#[tokio::test]
async fn a_save_after_the_key_vanished_ends_the_session_instead_of_failing() {
    let server = RedisServer::start();
    let store = store_for(&server);
    let mut record = record();
    store.create(&mut record).await.expect("create");
    assert_eq!(server.keys(), vec![record.id.to_string()]);

    // Logout (or expiry) in another request while this one still holds the record.
    server.cli(&["DEL", &record.id.to_string()]).expect("DEL");
    store
        .save(&record)
        .await
        .expect("the late save is not an error");
    assert!(
        server.keys().is_empty(),
        "the ended session was not brought back"
    );
    assert!(store.load(&record.id).await.expect("load").is_none());
}

#[tokio::test]
async fn records_carry_a_ttl_from_their_expiry() {
    let server = RedisServer::start();
    let store = store_for(&server);
    let mut record = record();
    store.create(&mut record).await.expect("create");
    let expires: i64 = server
        .cli(&["EXPIRETIME", &record.id.to_string()])
        .and_then(|t| t.parse().ok())
        .expect("EXPIRETIME");
    assert_eq!(
        expires,
        record.expiry_date.unix_timestamp(),
        "Redis expires the key when the record does"
    );
    store.delete(&record.id).await.expect("delete");
    assert!(server.keys().is_empty());
}

#[tokio::test]
async fn a_down_redis_is_an_error_not_a_hang_and_a_restart_heals_the_pool() {
    let mut server = RedisServer::start();
    let store = store_for(&server);
    let mut record = record();
    store.create(&mut record).await.expect("create");

    server.kill();
    let outcome = tokio::time::timeout(PATIENCE, store.load(&record.id)).await;
    assert!(
        matches!(outcome, Ok(Err(_))),
        "an error, not a hang: {outcome:?}"
    );

    server.restart();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match store.load(&record.id).await {
            Ok(Some(found)) => {
                assert_eq!(found.data, record.data, "the session survived the outage");
                break;
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "no recovery: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
