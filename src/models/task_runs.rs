//! Runs of operator tasks, one row each. Tasks run in their own process (`cargo loco task`,
//! the scheduler), so the web process cannot see them: it reads the newest rows at scrape
//! time and exports them on `/metrics`, where an alert sees a cleanup that fails or stops
//! running.

use std::{fmt::Display, future::Future, panic::AssertUnwindSafe};

use chrono::Utc;
use futures::FutureExt;
use sea_orm::{entity::prelude::*, ActiveValue, QueryOrder};
use serde::{de::DeserializeOwned, Serialize};

pub use super::_entities::task_runs::{self, ActiveModel, Entity, Model};

impl ActiveModelBehavior for ActiveModel {}

/// Days a run's row is kept: a few hundred rows for an hourly task.
const KEPT_DAYS: i64 = 30;

/// How a run ended, or that it has not: a run whose process died stays `Running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Running,
    Ok,
    Failed,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::Running, Self::Ok, Self::Failed];

    /// The name stored in `task_runs.outcome` and used as a metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

impl Model {
    /// How the run is doing (`None` for a name this version does not know).
    #[must_use]
    pub fn outcome(&self) -> Option<Outcome> {
        Outcome::parse(&self.outcome)
    }

    /// The report the run ended with, read as `R`; `None` when it has none or it does not
    /// read as `R`.
    #[must_use]
    pub fn report_as<R: DeserializeOwned>(&self) -> Option<R> {
        serde_json::from_str(self.report.as_deref()?).ok()
    }
}

/// Runs `job` as one recorded run of `task`: a `running` row when it starts, then `ok`
/// with its report (as JSON), or `failed` with the error's text, when it returns or
/// panics. Recording never stops the job: when the database cannot take the row, that is
/// logged, and the missing success is what an alert sees.
///
/// ```no_run
/// # async fn demo(db: &sea_orm::DatabaseConnection) {
/// use tessera::models::task_runs;
/// let swept = task_runs::record(db, "demo", async { Ok::<u64, String>(3) }).await;
/// assert_eq!(swept, Ok(3));
/// # }
/// ```
///
/// # Errors
/// The job's own error.
pub async fn record<T, E>(
    db: &DatabaseConnection,
    task: &str,
    job: impl Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    T: Serialize,
    E: Display,
{
    let run = match start(db, task).await {
        Ok(id) => Some(id),
        Err(error) => {
            tracing::error!(%error, task, "the task's run could not be recorded");
            None
        }
    };
    let result = AssertUnwindSafe(job).catch_unwind().await;
    if let Some(id) = run {
        let (outcome, error, report) = match &result {
            Ok(Ok(report)) => (Outcome::Ok, None, serde_json::to_string(report).ok()),
            Ok(Err(error)) => (Outcome::Failed, Some(error.to_string()), None),
            Err(panic) => (Outcome::Failed, Some(panic_text(panic.as_ref())), None),
        };
        if let Err(db_error) = finish(db, id, outcome, error, report).await {
            tracing::error!(error = %db_error, task, "the task's outcome could not be recorded");
        }
    }
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Inserts a `running` row for `task` (deleting its rows past [`KEPT_DAYS`]); its id.
async fn start(db: &DatabaseConnection, task: &str) -> Result<i64, DbErr> {
    let now = Utc::now();
    Entity::delete_many()
        .filter(task_runs::Column::Task.eq(task))
        .filter(
            task_runs::Column::StartedAt
                .lt((now - chrono::Duration::days(KEPT_DAYS)).fixed_offset()),
        )
        .exec(db)
        .await?;
    let row = ActiveModel {
        task: ActiveValue::Set(task.to_string()),
        started_at: ActiveValue::Set(now.fixed_offset()),
        outcome: ActiveValue::Set(Outcome::Running.as_str().to_string()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(row.id)
}

async fn finish(
    db: &DatabaseConnection,
    id: i64,
    outcome: Outcome,
    error: Option<String>,
    report: Option<String>,
) -> Result<(), DbErr> {
    ActiveModel {
        id: ActiveValue::Unchanged(id),
        finished_at: ActiveValue::Set(Some(Utc::now().fixed_offset())),
        outcome: ActiveValue::Set(outcome.as_str().to_string()),
        error: ActiveValue::Set(error),
        report: ActiveValue::Set(report),
        ..Default::default()
    }
    .update(db)
    .await?;
    Ok(())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    format!("panicked: {message}")
}

/// A task's newest run and its newest successful one.
#[derive(Debug, Clone, Default)]
pub struct LastRuns {
    pub last: Option<Model>,
    pub last_success: Option<Model>,
}

/// The newest run of `task` and its newest successful run: one or two lookups down the
/// `(task, id)` index.
///
/// # Errors
/// A database error.
pub async fn last_runs(db: &DatabaseConnection, task: &str) -> Result<LastRuns, DbErr> {
    let newest = || {
        Entity::find()
            .filter(task_runs::Column::Task.eq(task))
            .order_by_desc(task_runs::Column::Id)
    };
    let last = newest().one(db).await?;
    let last_success = match &last {
        Some(run) if run.outcome() == Some(Outcome::Ok) => last.clone(),
        Some(_) => {
            newest()
                .filter(task_runs::Column::Outcome.eq(Outcome::Ok.as_str()))
                .one(db)
                .await?
        }
        None => None,
    };
    Ok(LastRuns { last, last_success })
}

#[cfg(test)]
mod tests {
    use migration::MigratorTrait;

    use super::*;

    async fn database() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("runs.sqlite").display()
        );
        let db = sea_orm::Database::connect(&url).await.expect("sqlite");
        migration::Migrator::up(&db, None).await.expect("migrated");
        (dir, db)
    }

    #[tokio::test]
    async fn runs_are_recorded_ok_failed_or_panicked_and_the_newest_are_found() {
        let (_dir, db) = database().await;
        assert!(last_runs(&db, "demo").await.expect("runs").last.is_none());

        let ok = record(&db, "demo", async { Ok::<_, String>(vec![1, 2]) }).await;
        assert_eq!(ok, Ok(vec![1, 2]));
        let runs = last_runs(&db, "demo").await.expect("runs");
        let last = runs.last.expect("a run");
        assert_eq!(last.outcome(), Some(Outcome::Ok));
        assert_eq!(last.report_as::<Vec<u32>>(), Some(vec![1, 2]));
        assert!(last.finished_at.is_some_and(|at| at >= last.started_at));
        assert_eq!(runs.last_success.map(|run| run.id), Some(last.id));

        let failed = record(&db, "demo", async { Err::<u8, _>("store gone") }).await;
        assert_eq!(failed, Err("store gone"));
        // Another task's run does not count as this one's.
        record(&db, "other", async { Ok::<_, String>(()) })
            .await
            .expect("ok");
        let runs = last_runs(&db, "demo").await.expect("runs");
        let newest = runs.last.expect("a run");
        assert_eq!(newest.outcome(), Some(Outcome::Failed));
        assert_eq!(newest.error.as_deref(), Some("store gone"));
        assert_eq!(newest.report, None);
        assert_eq!(runs.last_success.map(|run| run.id), Some(last.id));

        let panicked = AssertUnwindSafe(record(&db, "demo", async {
            if newest.id > 0 {
                panic!("swept into a wall");
            }
            Ok::<u8, String>(0)
        }))
        .catch_unwind()
        .await;
        assert!(panicked.is_err(), "the panic goes on to the caller");
        let newest = last_runs(&db, "demo")
            .await
            .expect("runs")
            .last
            .expect("a run");
        assert_eq!(newest.outcome(), Some(Outcome::Failed));
        assert_eq!(newest.error.as_deref(), Some("panicked: swept into a wall"));
    }

    #[tokio::test]
    async fn a_run_that_never_finishes_stays_running_and_old_runs_are_deleted() {
        let (_dir, db) = database().await;
        let month_ago = (Utc::now() - chrono::Duration::days(KEPT_DAYS + 1)).fixed_offset();
        ActiveModel {
            task: ActiveValue::Set("demo".to_string()),
            started_at: ActiveValue::Set(month_ago),
            finished_at: ActiveValue::Set(Some(month_ago)),
            outcome: ActiveValue::Set("ok".to_string()),
            ..Default::default()
        }
        .insert(&db)
        .await
        .expect("insert");
        // A process killed mid-run: its row was started and never finished.
        let id = start(&db, "demo").await.expect("started");
        let runs = last_runs(&db, "demo").await.expect("runs");
        let last = runs.last.expect("a run");
        assert_eq!((last.id, last.outcome()), (id, Some(Outcome::Running)));
        assert_eq!(last.finished_at, None);
        assert!(
            runs.last_success.is_none(),
            "the month-old success was deleted when the new run started"
        );
        assert_eq!(Entity::find().count(&db).await.expect("count"), 1);
    }
}
