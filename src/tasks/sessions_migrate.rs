//! `cargo loco task sessions_migrate from:file to:redis`: copies every live session to
//! another store, with its remaining lifetime, so a deployment can switch stores without
//! logging anybody out. It goes through the source `maintenance.batch_size` records at a
//! time, in bounded memory. Safe to run twice, and to run again after an interruption.

use indicatif::ProgressBar;
use loco_rs::{
    app::AppContext,
    task::{Task, TaskInfo, Vars},
    Error, Result,
};

use super::args;
use crate::sessions::{
    maintenance,
    stores::{ops::StoreKind, Backend},
};

const USAGE: &str = "from:STORE to:STORE (file, redis or database)";

pub struct SessionsMigrate;

fn persistent_store(vars: &Vars, key: &str) -> Result<StoreKind> {
    let value = vars
        .cli_arg(key)
        .map_err(|_| args::usage_error("sessions_migrate", USAGE, format!("missing {key}:")))?;
    match value {
        "file" => Ok(StoreKind::File),
        "redis" => Ok(StoreKind::Redis),
        "database" => Ok(StoreKind::Database),
        "memory" => Err(args::usage_error(
            "sessions_migrate",
            USAGE,
            "the memory store lives inside one process; it cannot be migrated",
        )),
        other => Err(args::usage_error(
            "sessions_migrate",
            USAGE,
            format!("unknown store `{other}`"),
        )),
    }
}

#[async_trait::async_trait]
impl Task for SessionsMigrate {
    fn task(&self) -> TaskInfo {
        TaskInfo {
            name: "sessions_migrate".to_string(),
            detail: "Copy live sessions between stores: from:file to:redis".to_string(),
        }
    }

    async fn run(&self, ctx: &AppContext, vars: &Vars) -> Result<()> {
        args::only(vars, "sessions_migrate", USAGE, &["from", "to"])?;
        let (from, to) = (
            persistent_store(vars, "from")?,
            persistent_store(vars, "to")?,
        );
        if from == to {
            return Err(args::usage_error(
                "sessions_migrate",
                USAGE,
                "from: and to: are the same store",
            ));
        }
        let sessions = args::sessions(ctx).await?;
        let open = |kind| {
            Backend::open_kind(kind, &sessions.config().store, &ctx.db)
                .map_err(|e| Error::Message(e.to_string()))
        };
        let (source, target) = (open(from)?, open(to)?);
        // Beside the app's log line per batch.
        let bar = args::progress_bar(ProgressBar::new_spinner(), "{spinner} {pos} records {msg}");
        let progress = bar.clone();
        let report = maintenance::migrate(
            sessions.registry(),
            &source,
            &target,
            &sessions.config().maintenance,
            move |report| {
                progress.set_position(report.handled());
                progress.set_message(format!("({} copied)", report.copied));
            },
        )
        .await
        .map_err(|e| Error::Message(format!("sessions_migrate: {e}")))?;
        bar.finish_and_clear();
        let relabelled = maintenance::relabel_store(&sessions, from.name(), to.name()).await?;
        println!("{report}; {relabelled} registry rows now say {to}");
        if report.failed > 0 {
            return Err(Error::Message(format!(
                "sessions_migrate: {} records failed; run it again",
                report.failed
            )));
        }
        Ok(())
    }
}
