//! Operator jobs over the whole session layer: statistics, cleanup, moving sessions
//! between stores. The `cargo loco task` commands are thin wrappers that print these
//! reports; tests call them directly.

use std::{fmt, time::Duration};

use chrono::Utc;
use futures::TryStreamExt;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use super::{
    audit::delete_older_than,
    data::MIGRATED,
    error::SessionError,
    keys::StoreKey,
    registry::{PruneReport, SessionRegistry},
    settings::MaintenanceConfig,
    stores::{
        ops::{StoreError, StoreSweep},
        Backend, StoreHealth,
    },
    Sessions,
};
use crate::models::_entities::session_events;

/// The task that runs [`cleanup`], as `cargo loco task` and the `task_runs` table name it.
pub const CLEANUP_TASK: &str = "sessions_cleanup";

/// What `sessions_cleanup` did. Kept with its run in `task_runs` (as JSON: a field
/// missing from an older run's report reads as 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CleanupReport {
    pub store: StoreSweep,
    /// Sessions that ran out while their user was away, audited as expired now.
    pub expired_unseen: u64,
    pub registry_gone: u64,
    /// Of `registry_gone`, sessions the store lost before they expired: the registry and
    /// the store disagreed (exported on `/metrics` for alerting).
    pub registry_vanished: u64,
    pub registry_ended: u64,
    /// Audit events older than the retention, deleted.
    pub events_pruned: u64,
    /// Throttle counters whose window ended, deleted (SQL counters only).
    pub throttle_counters: u64,
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions_cleanup: removed {} expired and {} unreadable records, {} stale temp files ({} failed); pruned {} registry rows of gone sessions ({} lost by the store before they expired) and {} of sessions ended over a day ago; audited {} sessions that expired unseen; deleted {} audit events past the retention and {} ended throttle windows",
            self.store.expired,
            self.store.unreadable,
            self.store.stale_temp,
            self.store.failed,
            self.registry_gone,
            self.registry_vanished,
            self.registry_ended,
            self.expired_unseen,
            self.events_pruned,
            self.throttle_counters
        )
    }
}

/// Why a cleanup stopped.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the database failed during cleanup: {0}")]
    Database(#[from] DbErr),
    #[error("the throttle counters could not be swept: {0}")]
    Throttle(#[from] SessionError),
}

/// Removes expired and unreadable records from the store, audits the sessions that
/// expired while their user was away, prunes the registry, and deletes audit events past
/// the retention and ended throttle windows.
///
/// Every step over the database works in batches of `maintenance.batch_size` rows (no
/// statement binds more than [`crate::models::MAX_BOUND_PARAMETERS`]), each a short
/// transaction, with a rest between them so requests are served meanwhile, and logs a
/// line per batch with the count so far.
///
/// # Errors
/// When the store cannot be listed or the database fails.
pub async fn cleanup(
    sessions: &Sessions,
    db: &DatabaseConnection,
    progress: impl Fn(u64, u64) + Send + Sync + 'static,
) -> Result<CleanupReport, CleanupError> {
    let limit = sessions.config().maintenance.limit();
    let store = sessions.backend().sweep(progress).await?;
    // Before the prune: the row is the last trace of why they ended, and each leaves
    // with its event.
    let batches = sessions.config().maintenance;
    let expired_unseen = in_batches(
        &batches,
        CLEANUP_TASK,
        "sessions that expired unseen, audited and removed",
        |limit| sessions.end_expired_unseen(limit),
    )
    .await?;
    let PruneReport {
        gone,
        vanished,
        ended,
    } = sessions
        .registry()
        .prune(sessions.backend(), limit, |done| async move {
            tracing::info!(done, "{CLEANUP_TASK}: registry rows checked");
            batches.rest().await;
        })
        .await?;
    let events_pruned = prune_events(sessions, db, sessions.config().events_retention).await?;
    let throttle_counters = in_batches(
        &batches,
        CLEANUP_TASK,
        "ended throttle windows deleted",
        |limit| sessions.throttle().sweep_expired(limit),
    )
    .await?;
    // A task process ends right after: the trail must be written before it does.
    sessions.audit().flush().await;
    Ok(CleanupReport {
        store,
        expired_unseen,
        registry_gone: expired_unseen + gone,
        registry_vanished: vanished,
        registry_ended: ended,
        events_pruned,
        throttle_counters,
    })
}

/// Deletes audit events older than `retention`, a batch at a time, oldest first; how many.
async fn prune_events(
    sessions: &Sessions,
    db: &DatabaseConnection,
    retention: Duration,
) -> Result<u64, DbErr> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
        .fixed_offset();
    let deleted = in_batches(
        &sessions.config().maintenance,
        CLEANUP_TASK,
        "audit events past the retention deleted",
        |limit| delete_older_than(db, cutoff, limit),
    )
    .await?;
    // The charts' hourly counts go with the events they counted.
    super::audit::prune_counts(db, cutoff).await?;
    Ok(deleted)
}

/// Runs `batch` (given the batch size, it handles up to that many rows and says how
/// many) until a batch comes back short, resting between batches so requests are served
/// meanwhile and logging the count so far after each batch that did something; the total.
async fn in_batches<F, Fut, E>(
    config: &MaintenanceConfig,
    task: &str,
    what: &str,
    mut batch: F,
) -> Result<u64, E>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
{
    let limit = config.limit();
    let mut done = 0;
    loop {
        let handled = batch(limit).await?;
        done += handled;
        if handled > 0 {
            tracing::info!(done, "{task}: {what}");
        }
        if handled < limit {
            return Ok(done);
        }
        config.rest().await;
    }
}

/// Counts of lifecycle events over one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub created: u64,
    pub expired: u64,
    pub revoked: u64,
}

/// What `sessions_stats` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub live_total: u64,
    pub per_store: Vec<(String, u64)>,
    pub top_users: Vec<(String, u64)>,
    pub last_hour: EventCounts,
    pub last_day: EventCounts,
    pub health: StoreHealth,
    pub usage: Vec<(&'static str, u64)>,
}

impl fmt::Display for StatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "live sessions: {}", self.live_total)?;
        for (store, count) in &self.per_store {
            writeln!(f, "  in {store}: {count}")?;
        }
        writeln!(f, "top users:")?;
        for (email, count) in &self.top_users {
            writeln!(f, "  {email}: {count}")?;
        }
        for (label, counts) in [("last hour", self.last_hour), ("last day", self.last_day)] {
            writeln!(
                f,
                "{label}: {} created, {} expired, {} revoked",
                counts.created, counts.expired, counts.revoked
            )?;
        }
        write!(
            f,
            "store {}: {} ({:.1} ms)",
            self.health.store,
            if self.health.ok { "up" } else { "DOWN" },
            self.health.latency_ms
        )?;
        for (label, value) in &self.usage {
            write!(f, ", {label} {value}")?;
        }
        Ok(())
    }
}

/// Lifecycle events since `hours` ago: one grouped count down the `created_at` index,
/// whose cost follows the events of that period, not the whole trail.
async fn event_counts(db: &DatabaseConnection, hours: i64) -> Result<EventCounts, DbErr> {
    const KINDS: [&str; 4] = ["created", "idle_expired", "absolute_expired", "revoked"];
    let rows: Vec<(String, i64)> = session_events::Entity::find()
        .select_only()
        .column(session_events::Column::Event)
        .column_as(session_events::Column::Id.count(), "count")
        .filter(
            session_events::Column::CreatedAt
                .gte((Utc::now() - chrono::Duration::hours(hours)).fixed_offset()),
        )
        .filter(session_events::Column::Event.is_in(KINDS))
        .group_by(session_events::Column::Event)
        .into_tuple()
        .all(db)
        .await?;
    let mut counts = EventCounts::default();
    for (event, n) in rows {
        let n = n.unsigned_abs();
        match event.as_str() {
            "created" => counts.created += n,
            "revoked" => counts.revoked += n,
            _ => counts.expired += n,
        }
    }
    Ok(counts)
}

/// Gathers `sessions_stats`.
///
/// # Errors
/// A database error.
pub async fn stats(sessions: &Sessions, db: &DatabaseConnection) -> Result<StatsReport, DbErr> {
    let per_store = sessions.registry().live_counts_by_store().await?;
    let top_users = sessions.registry().top_live_users(10).await?;
    Ok(StatsReport {
        live_total: per_store.iter().map(|(_, n)| n).sum(),
        per_store,
        top_users,
        last_hour: event_counts(db, 1).await?,
        last_day: event_counts(db, 24).await?,
        health: sessions.health().await,
        usage: sessions.backend().usage().await,
    })
}

/// What `sessions_migrate` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    pub copied: u64,
    /// Records the target already held, at least as recent as the source's (an earlier
    /// run's copy, or the session went on in the target): left alone.
    pub already_there: u64,
    pub skipped_expired: u64,
    pub failed: u64,
    /// Records of sessions the registry marks ended, left behind (and removed from the
    /// target if an earlier run had copied them).
    pub skipped_ended: u64,
    /// Records the source cannot read, left behind.
    pub skipped_unreadable: u64,
}

impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions_migrate: {} copied, {} already there, {} skipped (expired), {} failed; {} ended and {} unreadable left behind",
            self.copied,
            self.already_there,
            self.skipped_expired,
            self.failed,
            self.skipped_ended,
            self.skipped_unreadable
        )
    }
}

/// Copies every live record of `from` into `to`, under the same key and with the same
/// expiry, so every cookie keeps working after the switch and nobody is logged out.
/// Records are copied as stored (still sealed, when encryption is on), marked
/// [`MIGRATED`] so that the app asks the registry once, on first use, whether the session
/// ended in the old store after the copy.
///
/// The source is listed a page of `maintenance.batch_size` keys at a time
/// ([`Backend::key_pages`]), so memory stays bounded whatever its size; each batch asks
/// the registry in one query which of its sessions ended, copies the rest, logs the
/// counts so far, hands them to `progress` and rests.
///
/// A session the registry marks ended is never copied, and a copy an earlier run made of
/// it is deleted from `to`: running it again (as the README's procedure does after the
/// switch) never revives a session that ended in either store in between.
///
/// A batch's records are written with [`Backend::create_all_if_absent`] (on the database
/// store, one transaction per batch), which never draws another key. When `to` holds a
/// live record under the key already, that one is left alone and
/// counted `already_there` if it is at least as recent as the source's (its expiry is
/// as late); an older one (an earlier run's copy of a session that went on in `from`)
/// is replaced, and counted `copied`. A key the source lists twice (Redis' `SCAN` may)
/// is counted `already_there` the second time.
///
/// # Errors
/// When `from` cannot be listed; the batches before stay copied, and a second run
/// finds them there.
pub async fn migrate(
    registry: &SessionRegistry,
    from: &Backend,
    to: &Backend,
    batches: &MaintenanceConfig,
    progress: impl Fn(&MigrateReport) + Send + Sync,
) -> Result<MigrateReport, StoreError> {
    let mut report = MigrateReport::default();
    let mut pages = from.key_pages(batches.batch_size);
    while let Some(page) = pages.try_next().await? {
        // A store may hand over a few more keys than asked (Redis' SCAN): each batch
        // binds at most `batch_size` of them.
        for keys in page.chunks(batches.batch_size) {
            migrate_batch(registry, from, to, keys, &mut report).await;
            tracing::info!(%report, "sessions_migrate: batch done");
            progress(&report);
            batches.rest().await;
        }
    }
    Ok(report)
}

/// Copies one batch of `from`'s records, counting each in `report`.
async fn migrate_batch(
    registry: &SessionRegistry,
    from: &Backend,
    to: &Backend,
    keys: &[Id],
    report: &mut MigrateReport,
) {
    let refs: Vec<_> = keys
        .iter()
        .map(|&key| StoreKey::listed(key).session_ref())
        .collect();
    let ended = match registry.ended_among(&refs).await {
        Ok(ended) => ended,
        Err(error) => {
            tracing::warn!(%error, "sessions_migrate: the registry could not be read");
            report.failed += keys.len() as u64;
            return;
        }
    };
    let mut copies = Vec::with_capacity(keys.len());
    for (key, session_ref) in keys.iter().zip(&refs) {
        let read = if ended.contains(session_ref) {
            Err(remove_copy(to, key).await)
        } else {
            read_for_copy(from, key).await
        };
        match read {
            Ok(record) => copies.push(record),
            Err(moved) => report.count(moved),
        }
    }
    // Written together: on the database store, one transaction for the batch.
    let written = match to.create_all_if_absent(&copies).await {
        Ok(written) => written,
        Err(error) => {
            tracing::warn!(%error, "sessions_migrate: a batch could not be written");
            report.failed += copies.len() as u64;
            return;
        }
    };
    for (record, written) in copies.iter().zip(written) {
        let moved = if written {
            Moved::Copied
        } else {
            copy_over_taken_key(to, record).await
        };
        if moved == Moved::Failed {
            tracing::warn!("sessions_migrate: a record could not be written");
        }
        report.count(moved);
    }
}

/// How one record of the source fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    Copied,
    AlreadyThere,
    Expired,
    Ended,
    Unreadable,
    Failed,
}

impl MigrateReport {
    /// Records of the source gone through so far.
    #[must_use]
    pub const fn handled(&self) -> u64 {
        self.copied
            + self.already_there
            + self.skipped_expired
            + self.failed
            + self.skipped_ended
            + self.skipped_unreadable
    }

    fn count(&mut self, moved: Moved) {
        let counter = match moved {
            Moved::Copied => &mut self.copied,
            Moved::AlreadyThere => &mut self.already_there,
            Moved::Expired => &mut self.skipped_expired,
            Moved::Ended => &mut self.skipped_ended,
            Moved::Unreadable => &mut self.skipped_unreadable,
            Moved::Failed => &mut self.failed,
        };
        *counter += 1;
    }
}

/// A session the registry marks ended: no copy of it may stay in the target.
async fn remove_copy(to: &Backend, key: &Id) -> Moved {
    if to.delete(key).await.is_ok() {
        Moved::Ended
    } else {
        tracing::warn!("sessions_migrate: an ended session's copy could not be removed");
        Moved::Failed
    }
}

/// The record under `key` in `from`, marked [`MIGRATED`], ready to copy; or how it fared
/// when there is nothing to copy.
async fn read_for_copy(from: &Backend, key: &Id) -> Result<Record, Moved> {
    let mut record = match from.load(key).await {
        Ok(Some(record)) => record,
        // Gone or expired since it was listed.
        Ok(None) => return Err(Moved::Expired),
        Err(session_store::Error::Decode(reason)) => {
            tracing::warn!(%reason, "sessions_migrate: an unreadable record was left behind");
            return Err(Moved::Unreadable);
        }
        Err(error) => {
            tracing::warn!(%error, "sessions_migrate: a record could not be read");
            return Err(Moved::Failed);
        }
    };
    if record.expiry_date <= OffsetDateTime::now_utc() {
        return Err(Moved::Expired);
    }
    record
        .data
        .insert(MIGRATED.to_string(), serde_json::Value::Bool(true));
    Ok(record)
}

/// Re-labels the registry rows of sessions that moved from store `from` to `to`, a batch
/// at a time; how many.
///
/// # Errors
/// A database error; the batches done stay done, and running it again does the rest.
pub async fn relabel_store(sessions: &Sessions, from: &str, to: &str) -> Result<u64, DbErr> {
    let batches = sessions.config().maintenance;
    let (mut relabelled, mut after) = (0, 0);
    loop {
        let (moved, next) = sessions
            .registry()
            .move_store_batch(from, to, after, batches.limit())
            .await?;
        relabelled += moved;
        let Some(next) = next else {
            return Ok(relabelled);
        };
        tracing::info!(
            done = relabelled,
            "sessions_migrate: registry rows re-labelled"
        );
        after = next;
        batches.rest().await;
    }
}

/// `record` could not be created in `to`: a live record holds its key. Never a `create`
/// instead, which would draw another key, which no cookie maps to.
async fn copy_over_taken_key(to: &Backend, record: &Record) -> Moved {
    match to.load(&record.id).await {
        // The target's copy was written at least as late (every write moves the expiry
        // forward): after the switch the target is where the session lives, and an
        // older copy must not overwrite it.
        Ok(Some(existing)) if existing.expiry_date >= record.expiry_date => Moved::AlreadyThere,
        // An earlier run's copy of a session that went on in the source since, or a
        // target record that cannot be read: the source's replaces it.
        Ok(Some(_)) | Err(session_store::Error::Decode(_)) => {
            if to.save(record).await.is_ok() {
                Moved::Copied
            } else {
                Moved::Failed
            }
        }
        // It ended in the target since the collision: it stays ended.
        Ok(None) => Moved::AlreadyThere,
        Err(_) => Moved::Failed,
    }
}
