//! The file store on its own: atomic writes, expiry, corrupt files, the sweep, file modes,
//! no resurrection by a late save, and sessions that outlive the app process.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::PermissionsExt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde_json::{json, Value};
use tempfile::TempDir;
use tessera::sessions::stores::file::{FileStore, SweepReport};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

use crate::support::{location, parse_id, session_id_set, Settings, TestApp};

fn record(lifetime: time::Duration, payload: Value) -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([("payload".to_string(), payload)]),
        expiry_date: OffsetDateTime::now_utc() + lifetime,
    }
}

fn live(payload: Value) -> Record {
    record(time::Duration::hours(1), payload)
}

fn open() -> (TempDir, FileStore) {
    let dir = TempDir::new().expect("temp dir");
    let store = FileStore::open(dir.path().join("sessions")).expect("store opens");
    (dir, store)
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn records_round_trip_in_private_files() {
    let (_dir, store) = open();
    let mut record = live(json!("hello"));
    store.create(&mut record).await.expect("create");
    let loaded = store.load(&record.id).await.expect("load").expect("found");
    assert_eq!(loaded.data, record.data);

    assert_eq!(mode(store.dir()), 0o700);
    let file = store.dir().join(record.id.to_string());
    assert_eq!(mode(&file), 0o600);

    record.data.insert("payload".into(), json!("changed"));
    store.save(&record).await.expect("save");
    assert_eq!(mode(&file), 0o600, "a rewrite keeps the mode");
    let loaded = store.load(&record.id).await.expect("load").expect("found");
    assert_eq!(loaded.data["payload"], "changed");
}

#[tokio::test]
async fn create_never_overwrites_another_session() {
    let (_dir, store) = open();
    let mut first = live(json!("first"));
    store.create(&mut first).await.expect("create");
    let mut colliding = live(json!("second"));
    colliding.id = first.id;
    store.create(&mut colliding).await.expect("create");
    assert_ne!(colliding.id, first.id, "a colliding ID draws again");
    let kept = store.load(&first.id).await.expect("load").expect("found");
    assert_eq!(kept.data["payload"], "first");
}

#[tokio::test]
async fn expired_files_are_no_session_corrupt_ones_a_decode_error_and_the_sweep_removes_them() {
    let (_dir, store) = open();
    let mut alive = live(json!("alive"));
    store.create(&mut alive).await.expect("create");
    let mut expired = live(json!("soon gone"));
    store.create(&mut expired).await.expect("create");
    // Its time comes: the expiry written into the past, as a later save would.
    expired.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.save(&expired).await.expect("save");

    let corrupt: Vec<Id> = (0..3).map(|_| Id::default()).collect();
    let contents: [&[u8]; 3] = [b"", b"{\"id\": 12, \"data\": {", b"\x00\xff garbage"];
    for (id, bytes) in corrupt.iter().zip(contents) {
        fs::write(store.dir().join(id.to_string()), bytes).expect("write");
    }
    let foreign = store.dir().join("README");
    fs::write(&foreign, "not a session").expect("write");
    let stale_temp = store.dir().join(".abc.0000000000000000.tmp");
    fs::write(&stale_temp, "half").expect("write");
    fs::File::options()
        .write(true)
        .open(&stale_temp)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
        .expect("age the temp file");

    assert!(
        store.load(&expired.id).await.expect("load").is_none(),
        "expired reads as none"
    );
    for id in &corrupt {
        // Reported as tower-sessions reports an undecodable record: the session layer
        // turns it into "no session" and removes it (tests/requests/unreadable.rs).
        assert!(
            matches!(
                store.load(id).await,
                Err(tower_sessions::session_store::Error::Decode(_))
            ),
            "corrupt reads as a decode error"
        );
    }

    let report = store.sweep_expired().await.expect("sweep");
    assert_eq!(
        report,
        SweepReport {
            examined: 5,
            expired: 1,
            unreadable: 3,
            stale_temp: 1,
            failed: 0
        }
    );
    assert!(
        store.load(&alive.id).await.expect("load").is_some(),
        "live sessions stay"
    );
    assert!(
        foreign.exists(),
        "files that are not sessions are left alone"
    );
    let left: Vec<_> = fs::read_dir(store.dir())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "the live session and README remain: {left:?}"
    );
    assert_eq!(
        store.sweep_expired().await.expect("sweep").expired,
        0,
        "a second sweep finds nothing"
    );
}

#[tokio::test]
async fn a_reader_never_sees_a_partial_record() {
    let (_dir, store) = open();
    let big_a = json!("a".repeat(256 * 1024));
    let big_b = json!("b".repeat(256 * 1024));
    let mut record = live(big_a.clone());
    store.create(&mut record).await.expect("create");

    let writer = {
        let store = store.clone();
        let mut record = record.clone();
        let (a, b) = (big_a.clone(), big_b.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                record.data.insert(
                    "payload".into(),
                    if i % 2 == 0 { b.clone() } else { a.clone() },
                );
                store.save(&record).await.expect("save");
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let loaded = store
            .load(&record.id)
            .await
            .expect("load")
            .expect("always a whole record");
        let payload = &loaded.data["payload"];
        assert!(
            payload == &big_a || payload == &big_b,
            "a torn record was read"
        );
        reads += 1;
    }
    writer.await.expect("writer");
    assert!(reads > 0);
}

#[tokio::test]
async fn a_late_save_does_not_bring_a_deleted_session_back() {
    let (_dir, store) = open();
    let mut record = live(json!("v"));
    store.create(&mut record).await.expect("create");
    store.delete(&record.id).await.expect("delete");
    store
        .save(&record)
        .await
        .expect("a late save is not an error");
    assert!(store.load(&record.id).await.expect("load").is_none());
    assert!(!store.dir().join(record.id.to_string()).exists());

    // Racing: many saves around one delete. Whatever the order, once the delete is done
    // no save may recreate the file.
    let mut record = live(json!("v"));
    store.create(&mut record).await.expect("create");
    let store = Arc::new(store);
    let mut saves = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let mut record = record.clone();
        saves.push(tokio::spawn(async move {
            record.data.insert("n".into(), json!(i));
            store.save(&record).await.expect("save");
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.delete(&record.id).await.expect("delete");
    for save in saves {
        save.await.expect("save task");
    }
    assert!(
        store.load(&record.id).await.expect("load").is_none(),
        "the logout stands"
    );
}

#[tokio::test]
async fn a_session_survives_an_app_restart_on_the_same_directory() {
    let settings = || Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    };
    let first = TestApp::with(settings()).await;
    let browser = first.browser();
    first
        .register(&browser, "Nat", "nat@example.com", "correct horse battery")
        .await;
    let login = first
        .log_in(&browser, "nat@example.com", "correct horse battery", false)
        .await;
    let id = session_id_set(&login, "session").expect("logged in");
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["store"], "file");
    let file = first.session_dir().join(
        first
            .sessions()
            .hasher()
            .store_key(&parse_id(&id))
            .to_string(),
    );
    assert!(
        file.exists(),
        "the session is a file named by the ID's hash"
    );
    let scratch = first.scratch();
    drop(browser);
    drop(first);

    let second = TestApp::with(Settings {
        share_with: Some(scratch),
        ..settings()
    })
    .await;
    let response = second
        .browser()
        .get("/dashboard")
        .add_header("cookie", format!("session={id}"))
        .await;
    assert_eq!(
        response.status_code(),
        200,
        "still logged in after the restart"
    );
    let anonymous = second.browser().get("/dashboard").await;
    assert_eq!(location(&anonymous), "/login");
}

#[tokio::test]
async fn oversized_records_are_refused_whole() {
    use tessera::sessions::stores::limited::SizeLimited;
    let (_dir, store) = open();
    let limited = SizeLimited::new(store.clone(), 1024);
    let mut small = live(json!("fits"));
    limited
        .create(&mut small)
        .await
        .expect("a small record is written");
    let mut big = live(json!("x".repeat(2000)));
    let refused = limited.create(&mut big).await;
    assert!(refused.is_err(), "refused");
    assert!(
        store.load(&big.id).await.expect("load").is_none(),
        "nothing written"
    );
    let mut grown = small.clone();
    grown.data.insert("payload".into(), json!("y".repeat(2000)));
    assert!(limited.save(&grown).await.is_err());
    let kept = store
        .load(&small.id)
        .await
        .expect("load")
        .expect("still there");
    assert_eq!(
        kept.data["payload"], "fits",
        "the old record is untouched, not half-written"
    );
}
