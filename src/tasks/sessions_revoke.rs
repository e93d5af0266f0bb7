//! `cargo loco task sessions_revoke user:EMAIL` or `all:true`: ends sessions now, audited.
//! `all:true` works in batches (`settings.sessions.maintenance`), logging a line per batch,
//! and is recorded as a job the admin page shows.

use loco_rs::{
    app::AppContext,
    task::{Task, TaskInfo, Vars},
    Result,
};

use super::args;
use crate::sessions::events::EndReason;

const USAGE: &str = "user:EMAIL | all:true";

pub struct SessionsRevoke;

#[async_trait::async_trait]
impl Task for SessionsRevoke {
    fn task(&self) -> TaskInfo {
        TaskInfo {
            name: "sessions_revoke".to_string(),
            detail: "End sessions: user:EMAIL or all:true".to_string(),
        }
    }

    async fn run(&self, ctx: &AppContext, vars: &Vars) -> Result<()> {
        args::only(vars, "sessions_revoke", USAGE, &["user", "all"])?;
        let sessions = args::sessions(ctx).await?;
        let all = vars.cli.get("all").map(String::as_str);
        match (vars.cli.get("user"), all) {
            (Some(email), None) => {
                let user = args::user_by_email(ctx, "sessions_revoke", USAGE, email).await?;
                let ended = sessions
                    .revoke_user(user.id, None, EndReason::RevokedByAdmin, None)
                    .await;
                let ended =
                    ended.map_err(|e| loco_rs::Error::Message(format!("sessions_revoke: {e}")))?;
                println!("sessions_revoke: ended {ended} sessions of {}", user.email);
            }
            (None, Some("true")) => {
                let ended = sessions
                    .revoke_everyone(None, EndReason::RevokedByAdmin, None)
                    .await;
                let ended =
                    ended.map_err(|e| loco_rs::Error::Message(format!("sessions_revoke: {e}")))?;
                let Some(ended) = ended else {
                    return Err(loco_rs::Error::Message(
                        "sessions_revoke: ending everyone's sessions is already under way (see /admin/sessions); not started twice".to_string(),
                    ));
                };
                println!("sessions_revoke: ended {ended} sessions of all users");
            }
            _ => {
                return Err(args::usage_error(
                    "sessions_revoke",
                    USAGE,
                    "give either user:EMAIL or all:true",
                ))
            }
        }
        sessions.audit().flush().await;
        Ok(())
    }
}
