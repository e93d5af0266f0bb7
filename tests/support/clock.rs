//! Time passing without waiting for it. Sessions and throttle windows keep their time
//! in the store, the registry and the throttle's counters, so a test moves those
//! timestamps into the past, through the app's own store stack and tables, instead of
//! sleeping until a short timeout has passed. Timeouts in tests can then be hours long,
//! and a slow or loaded machine changes nothing.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use tessera::{
    models::_entities::user_sessions,
    sessions::{data::SessionData, stores::ops::StoreKind},
    views::time::relative,
};
use tower_sessions::session_store::SessionStore;

use super::{parse_id, redis::redis_cli_url, TestApp};

/// How long a test waits for something asynchronous (a reconnect, a browser tab noticing
/// a change, a process starting) before it fails. Long, because a loaded machine may be
/// slow; never part of what a test asserts.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `condition` every 50 ms until it holds or `within` has passed; whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestApp {
    /// Makes the session with cookie ID `id` `secs` seconds older, as if that long had
    /// passed since it was last written: the creation and last activity inside its record
    /// (the timestamps the policy judges), and the creation, last sight and expiry of its
    /// registry row, all move `secs` into the past.
    ///
    /// The store's own expiry of the record stays: it lies a grace period past the
    /// policy's deadline, so the app finds an aged session expired (and says why) rather
    /// than missing. A test that needs the record gone from the store writes that expiry
    /// itself.
    pub async fn age_session(&self, id: &str, secs: i64) {
        let sessions = self.sessions();
        let cookie_id = parse_id(id);
        let key = sessions.hasher().store_key(&cookie_id);
        // Under the counting wrapper: ageing is no request's store traffic.
        let store = sessions.keyed_store();
        let mut record = store
            .load(key.as_id())
            .await
            .expect("store answers")
            .unwrap_or_else(|| panic!("session {id} has no record to age"));
        let stored = record
            .data
            .get_mut(SessionData::KEY)
            .expect("a Tessera session record");
        let mut data: SessionData =
            serde_json::from_value(stored.clone()).expect("a readable session");
        data.created_at -= secs;
        data.last_activity -= secs;
        *stored = serde_json::to_value(&data).expect("session data serializes");
        store.save(&record).await.expect("aged record saved");

        let shift = chrono::Duration::seconds(secs);
        let session_ref = sessions.session_ref(&cookie_id);
        let row = user_sessions::Entity::find()
            .filter(user_sessions::Column::SessionRef.eq(session_ref.as_str()))
            .one(&self.ctx.db)
            .await
            .expect("registry answers");
        // Anonymous sessions have no row.
        if let Some(row) = row {
            let mut aged: user_sessions::ActiveModel = row.clone().into();
            aged.created_at = ActiveValue::Set(row.created_at - shift);
            aged.last_seen_at = ActiveValue::Set(row.last_seen_at - shift);
            aged.expires_at = ActiveValue::Set(row.expires_at - shift);
            aged.update(&self.ctx.db).await.expect("aged row saved");
        }
    }

    /// Ends every login-throttle window, as if its time were up: SQL counters get a
    /// window end in the past (the epoch; the next attempt restarts them), Redis counters
    /// `PEXPIRE 0`, which expires a key at once.
    pub async fn end_throttle_windows(&self) {
        let sessions = self.sessions();
        if sessions.store_kind() == StoreKind::Redis {
            let url = &sessions.config().store.redis.url;
            let keys = redis_cli_url(url, &["--scan", "--pattern", "tessera:throttle:*"])
                .expect("redis-cli lists the throttle counters");
            for key in keys.lines().filter(|k| !k.is_empty()) {
                assert_eq!(
                    redis_cli_url(url, &["PEXPIRE", key, "0"]).as_deref(),
                    Some("1"),
                    "counter {key} expired"
                );
            }
        } else {
            self.ctx
                .db
                .execute_unprepared("UPDATE throttle_counters SET window_ends_at = 0")
                .await
                .expect("throttle windows ended");
        }
    }
}

/// The words a page rendered at some moment of `during` may show for the time `at` (RFC
/// 3339, from a `<time datetime>`): what the app's wording gives at each second of it.
/// Pages word times relative to the moment they render, which a test knows only to
/// within the span of its request.
pub fn words_during(at: &str, during: (DateTime<Utc>, DateTime<Utc>)) -> Vec<String> {
    let at = DateTime::parse_from_rfc3339(at)
        .unwrap_or_else(|e| panic!("{at:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc);
    let (from, to) = during;
    let mut words = Vec::new();
    let mut moment = from;
    loop {
        let said = relative(at, moment.min(to));
        if !words.contains(&said) {
            words.push(said);
        }
        if moment >= to {
            return words;
        }
        moment += chrono::Duration::seconds(1);
    }
}
