//! `cargo loco task sessions_list user:EMAIL`: that user's live sessions.

use loco_rs::{
    app::AppContext,
    task::{Task, TaskInfo, Vars},
    Result,
};

use super::args;

const USAGE: &str = "user:EMAIL";

pub struct SessionsList;

#[async_trait::async_trait]
impl Task for SessionsList {
    fn task(&self) -> TaskInfo {
        TaskInfo {
            name: "sessions_list".to_string(),
            detail: "A user's live sessions: user:EMAIL".to_string(),
        }
    }

    async fn run(&self, ctx: &AppContext, vars: &Vars) -> Result<()> {
        args::only(vars, "sessions_list", USAGE, &["user"])?;
        let email = vars
            .cli_arg("user")
            .map_err(|_| args::usage_error("sessions_list", USAGE, "missing user:"))?;
        let sessions = args::sessions(ctx).await?;
        let user = args::user_by_email(ctx, "sessions_list", USAGE, email).await?;
        let rows = sessions.registry().live_for_user(user.id).await?;
        for row in &rows {
            println!(
                "{}  created {}  last seen {}  ip {}  {}",
                row.session_ref,
                row.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                row.last_seen_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                row.ip.as_deref().unwrap_or("-"),
                row.user_agent
            );
        }
        println!(
            "sessions_list: {} live sessions for {}",
            rows.len(),
            user.email
        );
        Ok(())
    }
}
