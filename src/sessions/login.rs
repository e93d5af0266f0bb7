//! Checking a password, as one domain operation: the throttle counts the attempt first,
//! then the password is verified, the outcome audited, and on success the session logged
//! in. Controllers render the outcome; they never sequence these steps themselves.
//!
//! ```ignore
//! match login::log_in(&ctx.db, &sessions, &mut session, attempt, client).await? {
//!     LoginOutcome::LoggedIn { .. } => Redirect::to("/dashboard"),
//!     LoginOutcome::Refused => /* 422, "Email or password is incorrect." */,
//!     LoginOutcome::Throttled { retry_after } => /* 429 with Retry-After */,
//! }
//! ```

use std::time::Duration;

use loco_rs::model::ModelError;
use sea_orm::DatabaseConnection;

use super::{
    audit::{AuditEvent, EventKind, ThrottleWindow},
    data::ClientInfo,
    error::SessionError,
    throttle::Reservation,
    AppSession, Sessions,
};
use crate::models::users::{self, Credentials, EmailAddress};

/// What a login form asks.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// "Remember me" was ticked.
    pub remember: bool,
}

/// How a login ended.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The session now belongs to `user`, under a new ID.
    LoggedIn { user: users::Model },
    /// Wrong email or password (or a disabled account): one answer for all of them.
    Refused,
    /// Too many attempts for this account or network: nothing was checked.
    Throttled { retry_after: Duration },
}

/// How a check of a logged-in user's current password ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Correct,
    Wrong,
    Throttled { retry_after: Duration },
}

/// A login that could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("looking up the account: {0}")]
    Account(#[from] ModelError),
}

/// Logs `session` in if `attempt` names an account and its password, within the throttle.
///
/// # Errors
/// When the throttle's counters, the account table, the store or the registry fail.
pub async fn log_in(
    db: &DatabaseConnection,
    sessions: &Sessions,
    session: &mut AppSession,
    attempt: LoginAttempt<'_>,
    client: ClientInfo,
) -> Result<LoginOutcome, LoginError> {
    let email = EmailAddress::parse(attempt.email);
    // Counted by what was typed, account or not: the throttle must not reveal accounts.
    let account = email.as_ref().map_or_else(
        |_| attempt.email.trim().to_lowercase(),
        |e| e.as_str().to_string(),
    );
    let throttle = sessions.throttle();
    let counted = match throttle.reserve(&account, client.ip.as_deref()).await? {
        Reservation::Allowed(counted) => counted,
        Reservation::Refused {
            retry_after,
            counter,
            window_ends_at,
        } => {
            sessions.audit().record(
                AuditEvent::new(EventKind::LoginThrottled)
                    .client(client)
                    .reason("login attempts over the limit")
                    .throttled(ThrottleWindow::new(counter, window_ends_at)),
            );
            return Ok(LoginOutcome::Throttled { retry_after });
        }
    };
    let credentials = match &email {
        Ok(email) => users::Model::check_credentials(db, email, attempt.password).await?,
        Err(_) => Credentials::Invalid { user_id: None },
    };
    let user = match credentials {
        Credentials::Valid(user) => user,
        Credentials::Invalid { user_id } => {
            // The attempt stays counted: that is the failure's record in the throttle.
            sessions.audit().record(
                AuditEvent::new(EventKind::LoginFailed)
                    .user(user_id)
                    .client(client)
                    .reason("wrong email or password"),
            );
            return Ok(LoginOutcome::Refused);
        }
    };
    throttle.succeeded(counted).await?;
    let started = session
        .log_in(
            user.id,
            user.credential_generation,
            attempt.remember,
            client.clone(),
        )
        .await;
    if let Err(SessionError::CredentialsChanged) = started {
        // A password change or a disable committed after the password was checked: the
        // password that was right is no longer, and the answer is the same as for a wrong
        // one.
        sessions.audit().record(
            AuditEvent::new(EventKind::LoginFailed)
                .user(Some(user.id))
                .client(client)
                .reason("credentials changed during the login"),
        );
        return Ok(LoginOutcome::Refused);
    }
    started?;
    session
        .flash(format!("Welcome back, {}.", user.name))
        .await?;
    Ok(LoginOutcome::LoggedIn { user })
}

/// Checks the current password `user` typed on a form of their own session (the password
/// form), within the throttle: a stolen cookie must not open an online guessing game.
///
/// # Errors
/// When the throttle's counters fail or the check cannot run.
pub async fn check_current_password(
    sessions: &Sessions,
    session: &AppSession,
    user: &users::Model,
    password: &str,
) -> Result<PasswordCheck, LoginError> {
    let throttle = sessions.throttle();
    let counted = match throttle.reserve_password_check(user.id).await? {
        Reservation::Allowed(counted) => counted,
        Reservation::Refused {
            retry_after,
            counter,
            window_ends_at,
        } => {
            sessions.audit().record(
                session
                    .audit_event(EventKind::LoginThrottled)
                    .reason("current password checks over the limit")
                    .throttled(ThrottleWindow::new(counter, window_ends_at)),
            );
            return Ok(PasswordCheck::Throttled { retry_after });
        }
    };
    if user.verify_password(password).await? {
        throttle.succeeded(counted).await?;
        return Ok(PasswordCheck::Correct);
    }
    sessions.audit().record(
        session
            .audit_event(EventKind::LoginFailed)
            .reason("wrong current password"),
    );
    Ok(PasswordCheck::Wrong)
}
