//! `cargo loco task sessions_stats`: live sessions per store and per user, recent
//! lifecycle counts, store health.

use loco_rs::{
    app::AppContext,
    task::{Task, TaskInfo, Vars},
    Result,
};

use super::args;
use crate::sessions::maintenance;

pub struct SessionsStats;

#[async_trait::async_trait]
impl Task for SessionsStats {
    fn task(&self) -> TaskInfo {
        TaskInfo {
            name: "sessions_stats".to_string(),
            detail: "Live sessions per store and user, created/expired/revoked, store health"
                .to_string(),
        }
    }

    async fn run(&self, ctx: &AppContext, vars: &Vars) -> Result<()> {
        args::only(vars, "sessions_stats", "", &[])?;
        let sessions = args::sessions(ctx).await?;
        println!("{}", maintenance::stats(&sessions, &ctx.db).await?);
        Ok(())
    }
}
