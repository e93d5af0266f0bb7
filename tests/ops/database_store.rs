//! The `database` store on SQLite and PostgreSQL.

use std::collections::HashMap;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};
use tessera::{models::_entities::session_records, sessions::stores::database::DatabaseStore};
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

use crate::support::{csrf_token_of, location, parse_id, Database, Settings, TestApp};

async fn sessions_live_in_a_table(database: Database) {
    let app = TestApp::with(Settings {
        database,
        sessions: json!({"store": "database", "idle_timeout_secs": 3600, "absolute_lifetime_secs": 86400}),
        ..Settings::default()
    })
    .await;
    app.create_user("jo@example.com", false).await;
    let (browser, id) = app.browser_logged_in_as("jo@example.com").await;
    let api: Value = browser.get("/api/session").await.json();
    assert_eq!(api["store"], "database");
    let row = session_records::Entity::find_by_id(
        app.sessions()
            .hasher()
            .store_key(&parse_id(&id))
            .to_string(),
    )
    .one(&app.ctx.db)
    .await
    .expect("query");
    assert!(row.is_some(), "one row, under the hashed key");

    let token = csrf_token_of(&browser, "/dashboard").await;
    browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    let rows = session_records::Entity::find()
        .count(&app.ctx.db)
        .await
        .expect("count");
    assert_eq!(rows, 0, "logout deleted the row");

    let (browser, id) = app.browser_logged_in_as("jo@example.com").await;
    app.age_session(&id, 3600).await;
    assert_eq!(
        location(&browser.get("/dashboard").await),
        "/login",
        "idle expiry on load"
    );
}

#[tokio::test]
async fn sessions_live_in_a_table_sqlite() {
    sessions_live_in_a_table(Database::Sqlite).await;
}

#[tokio::test]
async fn sessions_live_in_a_table_postgres() {
    sessions_live_in_a_table(Database::Postgres).await;
}

#[tokio::test]
async fn expired_rows_read_as_none_are_swept_and_late_saves_do_not_resurrect() {
    let app = TestApp::start().await;
    let store = DatabaseStore::new(app.ctx.db.clone());
    let record = |lifetime: time::Duration| Record {
        id: Id::default(),
        data: HashMap::from([("k".to_string(), json!("v"))]),
        expiry_date: time::OffsetDateTime::now_utc() + lifetime,
    };
    let mut live = record(time::Duration::hours(1));
    store.create(&mut live).await.expect("create");
    let mut expired = record(time::Duration::seconds(-5));
    store.create(&mut expired).await.expect("create");
    assert!(store.load(&live.id).await.expect("load").is_some());
    assert!(
        store.load(&expired.id).await.expect("load").is_none(),
        "expiry checked on load"
    );
    assert_eq!(store.sweep_expired().await.expect("sweep"), 1);

    store.delete(&live.id).await.expect("delete");
    store
        .save(&live)
        .await
        .expect("a late save is not an error");
    assert!(
        store.load(&live.id).await.expect("load").is_none(),
        "not brought back"
    );
}
