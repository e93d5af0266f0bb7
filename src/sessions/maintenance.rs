//! Operator jobs over the whole session layer: statistics, cleanup, moving sessions
//! between stores. The `cargo loco task` commands are thin wrappers that print these
//! reports; tests call them directly.

use std::{fmt, time::Duration};

use chrono::Utc;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::{
    session::Record,
    session_store::{self, SessionStore},
};

use super::{
    audit::AuditEvent,
    data::{ClientInfo, MIGRATED},
    error::SessionError,
    events::EventKind,
    keys::{SessionRef, StoreKey},
    registry::{PruneReport, SessionRegistry},
    stores::{
        ops::{StoreError, StoreSweep},
        Backend, StoreHealth,
    },
    Sessions,
};
use crate::models::_entities::{session_events, user_sessions, users};

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
/// # Errors
/// When the store cannot be listed or the database fails.
pub async fn cleanup(
    sessions: &Sessions,
    db: &DatabaseConnection,
    progress: impl Fn(u64, u64) + Send + Sync + 'static,
) -> Result<CleanupReport, CleanupError> {
    let store = sessions.backend().sweep(progress).await?;
    // Before the prune deletes their rows: the row is the last trace of why they ended.
    let expired_unseen = audit_expired_unseen(sessions, db).await?;
    let PruneReport {
        gone,
        vanished,
        ended,
    } = sessions.registry().prune(sessions.backend()).await?;
    let events_pruned = prune_events(db, sessions.config().events_retention).await?;
    let throttle_counters = sessions.throttle().sweep_expired().await?;
    // A task process ends right after: the trail must be written before it does.
    sessions.audit().flush().await;
    Ok(CleanupReport {
        store,
        expired_unseen,
        registry_gone: gone,
        registry_vanished: vanished,
        registry_ended: ended,
        events_pruned,
        throttle_counters,
    })
}

/// Records `idle_expired` or `absolute_expired` for every registry row of a session that
/// passed its deadline without its user coming back (the app ends a session it finds
/// expired itself, and marks its row ended). Which deadline it was follows from the row:
/// a session whose expiry is its absolute deadline ran out of lifetime.
async fn audit_expired_unseen(sessions: &Sessions, db: &DatabaseConnection) -> Result<u64, DbErr> {
    let now = Utc::now().fixed_offset();
    let rows = user_sessions::Entity::find()
        .filter(user_sessions::Column::EndedAt.is_null())
        .filter(user_sessions::Column::ExpiresAt.lte(now))
        .all(db)
        .await?;
    let policy = &sessions.config().policy;
    for row in &rows {
        // The row is created up to a second after the session's own timestamp: allow it.
        let absolute = row.expires_at.timestamp().saturating_add(1)
            >= policy.absolute_deadline(row.created_at.timestamp());
        let kind = if absolute {
            EventKind::AbsoluteExpired
        } else {
            EventKind::IdleExpired
        };
        sessions.audit().record(
            AuditEvent::new(kind)
                .user(Some(row.user_id))
                .session(SessionRef::parse(&row.session_ref))
                .client(ClientInfo::new(&row.user_agent, row.ip.clone()))
                .reason("found by cleanup"),
        );
    }
    Ok(rows.len() as u64)
}

/// Deletes audit events older than `retention`; how many.
async fn prune_events(db: &DatabaseConnection, retention: Duration) -> Result<u64, DbErr> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let pruned = session_events::Entity::delete_many()
        .filter(session_events::Column::CreatedAt.lt(cutoff.fixed_offset()))
        .exec(db)
        .await?
        .rows_affected;
    super::audit::prune_counts(db, cutoff.fixed_offset()).await?;
    Ok(pruned)
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

async fn count_events(db: &DatabaseConnection, kinds: &[&str], hours: i64) -> Result<u64, DbErr> {
    session_events::Entity::find()
        .filter(session_events::Column::Event.is_in(kinds.iter().copied()))
        .filter(
            session_events::Column::CreatedAt
                .gte((Utc::now() - chrono::Duration::hours(hours)).fixed_offset()),
        )
        .count(db)
        .await
}

async fn event_counts(db: &DatabaseConnection, hours: i64) -> Result<EventCounts, DbErr> {
    Ok(EventCounts {
        created: count_events(db, &["created"], hours).await?,
        expired: count_events(db, &["idle_expired", "absolute_expired"], hours).await?,
        revoked: count_events(db, &["revoked"], hours).await?,
    })
}

/// Gathers `sessions_stats`.
///
/// # Errors
/// A database error.
pub async fn stats(sessions: &Sessions, db: &DatabaseConnection) -> Result<StatsReport, DbErr> {
    let per_store = sessions.registry().live_counts_by_store().await?;
    let top: Vec<(String, i64)> = user_sessions::Entity::find()
        .select_only()
        .column(users::Column::Email)
        .column_as(user_sessions::Column::Id.count(), "count")
        .inner_join(users::Entity)
        .filter(user_sessions::Column::EndedAt.is_null())
        .filter(user_sessions::Column::ExpiresAt.gt(Utc::now().fixed_offset()))
        .group_by(users::Column::Email)
        .order_by_desc(user_sessions::Column::Id.count())
        .order_by_asc(users::Column::Email)
        .limit(10)
        .into_tuple()
        .all(db)
        .await?;
    Ok(StatsReport {
        live_total: per_store.iter().map(|(_, n)| n).sum(),
        per_store,
        top_users: top
            .into_iter()
            .map(|(email, n)| (email, n.unsigned_abs()))
            .collect(),
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
/// A session the registry marks ended is never copied, and a copy an earlier run made of
/// it is deleted from `to`: running it again (as the README's procedure does after the
/// switch) never revives a session that ended in either store in between.
///
/// Each record is written with [`Backend::create_if_absent`], which never draws another
/// key. When `to` holds a live record under the key already, that one is left alone and
/// counted `already_there` if it is at least as recent as the source's (its expiry is
/// as late); an older one (an earlier run's copy of a session that went on in `from`)
/// is replaced, and counted `copied`.
///
/// # Errors
/// When `from` cannot be listed.
pub async fn migrate(
    registry: &SessionRegistry,
    from: &Backend,
    to: &Backend,
) -> Result<MigrateReport, StoreError> {
    let mut report = MigrateReport::default();
    for key in from.keys().await? {
        match registry
            .is_ended(&StoreKey::listed(key).session_ref())
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                if to.delete(&key).await.is_ok() {
                    report.skipped_ended += 1;
                } else {
                    tracing::warn!(
                        "sessions_migrate: an ended session's copy could not be removed"
                    );
                    report.failed += 1;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "sessions_migrate: the registry could not be read");
                report.failed += 1;
                continue;
            }
        }
        let mut record = match from.load(&key).await {
            Ok(Some(record)) => record,
            // Gone or expired since it was listed.
            Ok(None) => {
                report.skipped_expired += 1;
                continue;
            }
            Err(session_store::Error::Decode(reason)) => {
                tracing::warn!(%reason, "sessions_migrate: an unreadable record was left behind");
                report.skipped_unreadable += 1;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "sessions_migrate: a record could not be read");
                report.failed += 1;
                continue;
            }
        };
        if record.expiry_date <= OffsetDateTime::now_utc() {
            report.skipped_expired += 1;
            continue;
        }
        record
            .data
            .insert(MIGRATED.to_string(), serde_json::Value::Bool(true));
        match copy_record(to, &record).await {
            Copied::Written => report.copied += 1,
            Copied::AlreadyThere => report.already_there += 1,
            Copied::Failed => {
                tracing::warn!("sessions_migrate: a record could not be written");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// How one record reached the target.
enum Copied {
    Written,
    AlreadyThere,
    Failed,
}

/// Writes `record` to `to` under its own key. Never a `create`: on a collision that
/// draws another key, which no cookie maps to.
async fn copy_record(to: &Backend, record: &Record) -> Copied {
    match to.create_if_absent(record).await {
        Ok(true) => return Copied::Written,
        Ok(false) => {}
        Err(_) => return Copied::Failed,
    }
    match to.load(&record.id).await {
        // The target's copy was written at least as late (every write moves the expiry
        // forward): after the switch the target is where the session lives, and an
        // older copy must not overwrite it.
        Ok(Some(existing)) if existing.expiry_date >= record.expiry_date => Copied::AlreadyThere,
        // An earlier run's copy of a session that went on in the source since, or a
        // target record that cannot be read: the source's replaces it.
        Ok(Some(_)) | Err(session_store::Error::Decode(_)) => {
            if to.save(record).await.is_ok() {
                Copied::Written
            } else {
                Copied::Failed
            }
        }
        // It ended in the target since the collision: it stays ended.
        Ok(None) => Copied::AlreadyThere,
        Err(_) => Copied::Failed,
    }
}
