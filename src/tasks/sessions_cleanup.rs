//! `cargo loco task sessions_cleanup`: removes expired and unreadable records from the
//! store, audits sessions that expired unseen, prunes stale registry rows, audit events
//! past `events_retention_days` and ended throttle windows. The scheduler runs it hourly;
//! each run is recorded in `task_runs`.

use indicatif::ProgressBar;
use loco_rs::{
    app::AppContext,
    task::{Task, TaskInfo, Vars},
    Error, Result,
};

use super::args;
use crate::{models::task_runs, sessions::maintenance};

const NAME: &str = maintenance::CLEANUP_TASK;

pub struct SessionsCleanup;

#[async_trait::async_trait]
impl Task for SessionsCleanup {
    fn task(&self) -> TaskInfo {
        TaskInfo {
            name: NAME.to_string(),
            detail: "Remove expired and unreadable session records; prune the registry, old audit events and throttle windows".to_string(),
        }
    }

    async fn run(&self, ctx: &AppContext, vars: &Vars) -> Result<()> {
        args::only(vars, NAME, "", &[])?;
        // Before the run is recorded: a migration creates the table it is recorded in.
        args::migrate_if_configured(ctx).await?;
        let bar = args::progress_bar(
            ProgressBar::new(0),
            "{spinner} sweeping {pos}/{len} files {wide_bar} {eta}",
        );
        let progress = bar.clone();
        let run = async {
            let sessions = args::sessions(ctx).await.map_err(|e| e.to_string())?;
            maintenance::cleanup(&sessions, &ctx.db, move |done, total| {
                progress.set_length(total);
                progress.set_position(done);
            })
            .await
            .map_err(|e| e.to_string())
        };
        // Recorded in the database, failures too (a store that cannot be opened or swept):
        // the web process exports the last run on `/metrics`, where an alert sees a cleanup
        // that fails or stops running.
        let report = task_runs::record(&ctx.db, NAME, run)
            .await
            .map_err(|e| Error::Message(format!("{NAME}: {e}")))?;
        bar.finish_and_clear();
        println!("{report}");
        Ok(())
    }
}
