//! Listing a store's keys a page at a time (`sessions_migrate` goes through a store of any
//! size this way): every store lists each live record's key across page boundaries, in
//! pages of the size asked (Redis' `SCAN` takes the size as a hint), and the memory store
//! says it cannot be listed. A Redis Cluster's listing visits every master:
//! `tests/scaling/cluster.rs` and `sessions_migrate` from a cluster (`tests/tasks/migrate.rs`).

use std::collections::{BTreeSet, HashMap};

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tessera::sessions::stores::{ops::StoreError, Backend};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};

use crate::support::{redis::RedisServer, Database, Settings, TestApp};

const RECORDS: usize = 10;
const PAGE: usize = 3;

async fn app_on(sessions: Value, database: Database) -> TestApp {
    TestApp::with(Settings {
        sessions,
        database,
        ..Settings::default()
    })
    .await
}

fn record(lifetime: time::Duration) -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([("payload".to_string(), json!("listed"))]),
        expiry_date: OffsetDateTime::now_utc() + lifetime,
    }
}

/// Writes `RECORDS` live records (and, where the store keeps them, an expired one), then
/// lists the store `PAGE` keys at a time. Returns the pages.
async fn every_live_key_is_listed(backend: &Backend) -> Vec<Vec<Id>> {
    let mut written = BTreeSet::new();
    for _ in 0..RECORDS {
        let live = record(time::Duration::hours(1));
        assert!(backend.create_if_absent(&live).await.expect("written"));
        written.insert(live.id.to_string());
    }
    let expired = record(-time::Duration::minutes(1));
    assert!(backend.create_if_absent(&expired).await.expect("written"));

    let pages: Vec<Vec<Id>> = backend
        .key_pages(PAGE)
        .try_collect()
        .await
        .expect("the store is listed");
    let listed: BTreeSet<String> = pages.iter().flatten().map(Id::to_string).collect();
    let without_expired: BTreeSet<String> = listed
        .iter()
        .filter(|key| **key != expired.id.to_string())
        .cloned()
        .collect();
    assert_eq!(
        without_expired,
        written,
        "every live key, over {} pages",
        pages.len()
    );
    assert!(pages.iter().all(|page| !page.is_empty()), "no empty page");
    pages
}

/// The file and database stores list each key once, in pages of exactly the size asked
/// but the last.
fn pages_are_exact(pages: &[Vec<Id>], total: usize) {
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        total,
        "each key once: {sizes:?}"
    );
    let (last, full) = sizes.split_last().expect("pages");
    assert!(
        full.iter().all(|&n| n == PAGE) && *last <= PAGE,
        "{sizes:?}"
    );
}

#[tokio::test]
async fn the_file_store_lists_every_file_a_page_at_a_time() {
    let app = app_on(json!({"store": "file"}), Database::Sqlite).await;
    let pages = every_live_key_is_listed(app.sessions().backend()).await;
    // The file store lists the expired record's file too, until the cleanup removes it.
    pages_are_exact(&pages, RECORDS + 1);
}

#[tokio::test]
async fn the_file_store_stops_listing_when_the_reader_stops() {
    let app = app_on(json!({"store": "file"}), Database::Sqlite).await;
    let sessions = app.sessions();
    let backend = sessions.backend();
    for _ in 0..RECORDS {
        assert!(backend
            .create_if_absent(&record(time::Duration::hours(1)))
            .await
            .expect("written"));
    }
    let mut pages = backend.key_pages(PAGE);
    let first = pages.next().await.expect("a page").expect("listed");
    assert_eq!(first.len(), PAGE);
    drop(pages);
    // The listing thread gives up at its next page: a new listing still sees everything.
    let again: Vec<Vec<Id>> = backend.key_pages(PAGE).try_collect().await.expect("listed");
    assert_eq!(again.iter().map(Vec::len).sum::<usize>(), RECORDS);
}

#[tokio::test]
async fn the_file_store_reports_a_missing_directory() {
    let app = app_on(json!({"store": "file"}), Database::Sqlite).await;
    std::fs::remove_dir_all(app.session_dir()).expect("remove the directory");
    let listed: Result<Vec<Vec<Id>>, _> =
        app.sessions().backend().key_pages(PAGE).try_collect().await;
    let error = listed.expect_err("no directory, no listing");
    assert!(error.to_string().contains("list keys"), "{error}");
}

#[tokio::test]
async fn the_database_store_lists_live_rows_a_page_at_a_time() {
    let app = app_on(json!({"store": "database"}), Database::Sqlite).await;
    let pages = every_live_key_is_listed(app.sessions().backend()).await;
    pages_are_exact(&pages, RECORDS);
}

#[tokio::test]
async fn the_database_store_lists_live_rows_a_page_at_a_time_postgres() {
    let app = app_on(json!({"store": "database"}), Database::Postgres).await;
    let pages = every_live_key_is_listed(app.sessions().backend()).await;
    pages_are_exact(&pages, RECORDS);
}

#[tokio::test]
async fn redis_lists_every_key() {
    let server = RedisServer::start();
    let app = app_on(
        json!({"store": "redis", "redis": {"url": server.url()}}),
        Database::Sqlite,
    )
    .await;
    // A key of the app's own that is no session is not listed.
    server.cli(&["SET", "throttle:not-a-session-key", "1"]);
    every_live_key_is_listed(app.sessions().backend()).await;
}

#[tokio::test]
async fn the_memory_store_cannot_be_listed() {
    let app = app_on(json!({"store": "memory"}), Database::Sqlite).await;
    let listed: Result<Vec<Vec<Id>>, _> =
        app.sessions().backend().key_pages(PAGE).try_collect().await;
    assert!(matches!(listed, Err(StoreError::NotListable)), "{listed:?}");
}
