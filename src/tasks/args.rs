//! What every task needs: its arguments checked, the session layer opened, failures as
//! one line naming the task, and progress shown on a terminal.

use std::{io::IsTerminal, sync::Arc};

use indicatif::{ProgressBar, ProgressStyle};
use loco_rs::{app::AppContext, task::Vars, Error};

use crate::{
    models::users::{self, EmailAddress},
    sessions::Sessions,
};

/// A failure of task `task`, with its usage.
pub fn usage_error(task: &str, usage: &str, reason: impl std::fmt::Display) -> Error {
    Error::Message(format!(
        "{task}: {reason} (usage: cargo loco task {task} {usage})"
    ))
}

/// Refuses arguments the task does not know (a typo must not be ignored silently).
///
/// # Errors
/// The first unknown argument.
pub fn only(vars: &Vars, task: &str, usage: &str, known: &[&str]) -> Result<(), Error> {
    match vars.cli.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(usage_error(
            task,
            usage,
            format!("unknown argument `{key}`"),
        )),
        None => Ok(()),
    }
}

/// Brings the schema up to date when the config asks for it (`database.auto_migrate`), as
/// the server does at start: an operator's first command may well be a task.
///
/// # Errors
/// When a migration fails.
pub async fn migrate_if_configured(ctx: &AppContext) -> Result<(), Error> {
    use migration::MigratorTrait;
    if ctx.config.database.auto_migrate {
        migration::Migrator::up(&ctx.db, None).await?;
    }
    Ok(())
}

/// The app's session layer, over an up-to-date schema.
///
/// # Errors
/// When the settings are unusable or a migration fails.
pub async fn sessions(ctx: &AppContext) -> Result<Arc<Sessions>, Error> {
    migrate_if_configured(ctx).await?;
    Sessions::from_context(ctx).map_err(|e| Error::Message(e.to_string()))
}

/// The account `email` names.
///
/// # Errors
/// A one-line reason when the email is malformed or unknown.
pub async fn user_by_email(
    ctx: &AppContext,
    task: &str,
    usage: &str,
    email: &str,
) -> Result<users::Model, Error> {
    let parsed = EmailAddress::parse(email).map_err(|reason| usage_error(task, usage, reason))?;
    match users::Model::find_by_email(&ctx.db, &parsed).await {
        Ok(user) => Ok(user),
        Err(loco_rs::model::ModelError::EntityNotFound) => Err(Error::Message(format!(
            "{task}: no user with email {}",
            parsed.as_str()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `bar` drawn with `template` when the task runs on a terminal; in a log (the scheduler,
/// CI) a hidden bar instead, and only the task's summary line is printed.
#[must_use]
pub fn progress_bar(bar: ProgressBar, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
