//! Background jobs over sessions (an admin ending everyone's sessions), kept in SQL: one
//! `session_jobs` row each, with its progress written after every batch, so the admin page
//! of any instance shows how far it got, and one job of a kind runs at a time.
//!
//! A job whose process died (a restart mid-job) cannot say so: its heartbeat stops. A job
//! not finished whose heartbeat is older than [`STALE_AFTER`] reads as
//! [`JobState::Interrupted`], and the next start of its kind closes its row.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ActiveValue, ColumnTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, SqlErr,
};

use super::clock::{self, sql_time};
use crate::models::_entities::session_jobs;

/// How long a running job may go without writing progress before it counts as
/// interrupted: far longer than a batch and its rest take.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Ending every session but the starter's.
    EndEveryone,
}

impl JobKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EndEveryone => "end_everyone",
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Finished,
    Failed,
    /// Stopped without finishing: its process died, or it stopped writing progress.
    Interrupted,
}

/// A job as the admin page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    pub done: u64,
    pub total: Option<u64>,
    pub started_at: DateTime<FixedOffset>,
    pub finished_at: Option<DateTime<FixedOffset>>,
    pub error: Option<String>,
}

/// A job just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartedJob {
    pub id: i64,
    /// When the previous job of the kind had started, if it failed or was interrupted:
    /// what it did after its last commit may be unfinished (see
    /// [`crate::sessions::Sessions::end_batch`]).
    pub unfinished_since: Option<DateTime<FixedOffset>>,
}

/// The text an interrupted job's row is closed with.
const INTERRUPTED: &str = "interrupted";

impl JobStatus {
    fn of(row: session_jobs::Model, now: DateTime<FixedOffset>) -> Self {
        let state = match (&row.finished_at, row.error.as_deref()) {
            (Some(_), None) => JobState::Finished,
            (Some(_), Some(INTERRUPTED)) => JobState::Interrupted,
            (Some(_), Some(_)) => JobState::Failed,
            (None, _) if is_stale(row.heartbeat_at, now) => JobState::Interrupted,
            (None, _) => JobState::Running,
        };
        Self {
            id: row.id,
            kind: row.kind,
            state,
            done: row.done.unsigned_abs(),
            total: row.total.map(i64::unsigned_abs),
            started_at: row.started_at,
            finished_at: row.finished_at,
            error: row.error,
        }
    }
}

fn is_stale(heartbeat: DateTime<FixedOffset>, now: DateTime<FixedOffset>) -> bool {
    chrono::Duration::from_std(STALE_AFTER).is_ok_and(|stale| heartbeat < now - stale)
}

/// The library's clock, as the SQL timestamps of the job rows (whole seconds, like the
/// registry's `ended_at` that a job's start is compared with).
fn now() -> DateTime<FixedOffset> {
    sql_time(clock::now())
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `session_jobs` table.
#[derive(Debug, Clone)]
pub struct SessionJobs {
    db: DatabaseConnection,
}

impl SessionJobs {
    #[must_use]
    pub const fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Starts a job of `kind` for `actor_user_id` over `total` rows, or `None` when one
    /// of its kind is running already (its row holds the kind's `running` key: the unique
    /// index refuses a second, however many start at once). A job of the kind that stopped
    /// writing progress is closed as interrupted first; the new job is told when the
    /// previous one had started if it did not finish cleanly ([`StartedJob::unfinished_since`]).
    ///
    /// # Errors
    /// A database error.
    pub async fn start(
        &self,
        kind: JobKind,
        actor_user_id: Option<i64>,
        total: Option<u64>,
    ) -> Result<Option<StartedJob>, DbErr> {
        let now = now();
        let stale_before = chrono::Duration::from_std(STALE_AFTER).map_or(now, |stale| now - stale);
        let unfinished_since = session_jobs::Entity::find()
            .filter(session_jobs::Column::Kind.eq(kind.as_str()))
            .order_by_desc(session_jobs::Column::Id)
            .one(&self.db)
            .await?
            .filter(|job| {
                job.error.is_some()
                    || (job.finished_at.is_none() && job.heartbeat_at < stale_before)
            })
            .map(|job| job.started_at);
        session_jobs::Entity::update_many()
            .col_expr(
                session_jobs::Column::Running,
                Expr::value(Option::<String>::None),
            )
            .col_expr(session_jobs::Column::FinishedAt, Expr::value(now))
            .col_expr(session_jobs::Column::Error, Expr::value(INTERRUPTED))
            .filter(session_jobs::Column::Running.eq(kind.as_str()))
            .filter(session_jobs::Column::HeartbeatAt.lt(stale_before))
            .exec(&self.db)
            .await?;
        let inserted = session_jobs::ActiveModel {
            kind: ActiveValue::Set(kind.as_str().to_string()),
            actor_user_id: ActiveValue::Set(actor_user_id),
            started_at: ActiveValue::Set(now),
            heartbeat_at: ActiveValue::Set(now),
            done: ActiveValue::Set(0),
            total: ActiveValue::Set(total.map(count)),
            running: ActiveValue::Set(Some(kind.as_str().to_string())),
            ..Default::default()
        }
        .insert(&self.db)
        .await;
        match inserted {
            Ok(row) => Ok(Some(StartedJob {
                id: row.id,
                unfinished_since,
            })),
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Writes that job `id` has done `done` rows (and is alive).
    ///
    /// # Errors
    /// A database error.
    pub async fn progress(&self, id: i64, done: u64) -> Result<(), DbErr> {
        session_jobs::Entity::update_many()
            .col_expr(session_jobs::Column::Done, Expr::value(count(done)))
            .col_expr(session_jobs::Column::HeartbeatAt, Expr::value(now()))
            .filter(session_jobs::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Closes job `id` after `done` rows, with `error` when it failed; its kind may run
    /// again.
    ///
    /// # Errors
    /// A database error.
    pub async fn finish(&self, id: i64, done: u64, error: Option<String>) -> Result<(), DbErr> {
        let now = now();
        session_jobs::Entity::update_many()
            .col_expr(session_jobs::Column::Done, Expr::value(count(done)))
            .col_expr(session_jobs::Column::HeartbeatAt, Expr::value(now))
            .col_expr(session_jobs::Column::FinishedAt, Expr::value(now))
            .col_expr(session_jobs::Column::Error, Expr::value(error))
            .col_expr(
                session_jobs::Column::Running,
                Expr::value(Option::<String>::None),
            )
            .filter(session_jobs::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The newest job of `kind`, if any ever ran.
    ///
    /// # Errors
    /// A database error.
    pub async fn latest(&self, kind: JobKind) -> Result<Option<JobStatus>, DbErr> {
        Ok(session_jobs::Entity::find()
            .filter(session_jobs::Column::Kind.eq(kind.as_str()))
            .order_by_desc(session_jobs::Column::Id)
            .one(&self.db)
            .await?
            .map(|row| JobStatus::of(row, now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(heartbeat_secs_ago: i64, finished: bool, error: Option<&str>) -> session_jobs::Model {
        let now = now();
        session_jobs::Model {
            id: 1,
            kind: JobKind::EndEveryone.as_str().to_string(),
            actor_user_id: None,
            started_at: now,
            heartbeat_at: now - chrono::Duration::seconds(heartbeat_secs_ago),
            finished_at: finished.then_some(now),
            done: 3,
            total: Some(10),
            error: error.map(str::to_string),
            running: None,
        }
    }

    #[test]
    fn a_job_is_running_until_its_heartbeat_is_old() {
        let now = now();
        assert_eq!(
            JobStatus::of(row(1, false, None), now).state,
            JobState::Running
        );
        assert_eq!(
            JobStatus::of(row(61, false, None), now).state,
            JobState::Interrupted
        );
        assert_eq!(
            JobStatus::of(row(61, true, None), now).state,
            JobState::Finished
        );
        assert_eq!(
            JobStatus::of(row(1, true, Some("disk full")), now).state,
            JobState::Failed
        );
        assert_eq!(
            JobStatus::of(row(1, true, Some(INTERRUPTED)), now).state,
            JobState::Interrupted
        );
    }
}
