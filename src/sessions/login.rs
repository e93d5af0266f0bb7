//! Checking a password, as one domain operation: the throttle counts the attempt first
//! (per device cookie for a browser that logged in to the account before, else per account
//! and client network), then the password is verified on the bounded hasher, the outcome
//! audited, and on success the session logged in and the browser given a fresh device
//! cookie. Controllers render the outcome; they never sequence these steps themselves.
//!
//! ```ignore
//! match login::log_in(&ctx.db, &sessions, &mut session, attempt, client, device).await? {
//!     LoginOutcome::LoggedIn { device_cookie } => /* set it, 303 to /dashboard */,
//!     LoginOutcome::Refused => /* 422, "Email or password is incorrect." */,
//!     LoginOutcome::Throttled { retry_after } => /* 429 with Retry-After */,
//!     LoginOutcome::Busy { retry_after } => /* 503 with Retry-After */,
//! }
//! ```

use std::time::Duration;

use cookie::Cookie;
use loco_rs::model::ModelError;
use sea_orm::DatabaseConnection;

use super::{
    audit::{AuditEvent, ThrottleWindow},
    clock::now,
    data::ClientInfo,
    device::DeviceToken,
    error::SessionError,
    events::EventKind,
    hashing::{HashingError, RETRY_AFTER},
    lifecycle::AppSession,
    throttle::{Attempt, Claimant, Reservation},
    Sessions,
};
use crate::models::users::{self, EmailAddress};

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
    /// The session now belongs to the account, under a new ID; the browser is to keep
    /// `device_cookie` (a fresh one on every login).
    LoggedIn { device_cookie: Box<Cookie<'static>> },
    /// Wrong email or password (or a disabled account): one answer for all of them.
    Refused,
    /// Too many attempts for this device, account or network: nothing was checked.
    Throttled { retry_after: Duration },
    /// Password hashing is at capacity: nothing was checked, and the attempt does not
    /// count.
    Busy { retry_after: Duration },
}

/// How a check of a logged-in user's current password ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Correct,
    Wrong,
    Throttled { retry_after: Duration },
    Busy { retry_after: Duration },
}

/// A login that could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("looking up the account: {0}")]
    Account(#[from] ModelError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
}

/// What the throttle makes of a request's device cookie for `account`: a known device only
/// when the cookie was issued to a browser that logged in to this account at its current
/// credential generation.
fn claimant<'a>(
    sessions: &Sessions,
    account: Option<&users::Model>,
    device: Option<&'a DeviceToken>,
    client: &'a ClientInfo,
) -> Claimant<'a> {
    match (account, device) {
        (Some(user), Some(device))
            if sessions
                .devices()
                .recognises(device, user.id, user.credential_generation) =>
        {
            Claimant::KnownDevice(device)
        }
        _ => Claimant::Unknown {
            ip: client.ip.as_deref(),
        },
    }
}

/// The throttle's attempt to go on with, or, when it refused, how long the client must
/// wait; the refusal is audited as `refused` (built only then) with the counter and
/// window that refused, one row per counter and window.
fn admitted(
    sessions: &Sessions,
    reservation: Reservation,
    refused: impl FnOnce() -> AuditEvent,
) -> Result<Attempt, Duration> {
    match reservation {
        Reservation::Allowed(attempt) => Ok(attempt),
        Reservation::Refused {
            retry_after,
            counter,
            window_ends_at,
        } => {
            sessions
                .audit()
                .record(refused().throttled(ThrottleWindow::new(counter, window_ends_at)));
            Err(retry_after)
        }
    }
}

/// The password was checked, or hashing was at capacity: in that case the attempt is given
/// back to the throttle (it was never judged) and the caller answers 503.
async fn judged(
    sessions: &Sessions,
    attempt: Attempt,
    verified: Result<bool, HashingError>,
) -> Result<Option<(bool, Attempt)>, LoginError> {
    match verified {
        Ok(verified) => Ok(Some((verified, attempt))),
        Err(HashingError::Busy { .. }) => {
            sessions.throttle().give_back(attempt).await?;
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Logs `session` in if `attempt` names an account and its password, within the throttle.
/// `client` is the request's browser and `device` the device cookie it carries, if valid.
///
/// # Errors
/// When the throttle's counters, the account table, the hasher, the store or the registry
/// fail.
pub async fn log_in(
    db: &DatabaseConnection,
    sessions: &Sessions,
    session: &mut AppSession,
    attempt: LoginAttempt<'_>,
    client: ClientInfo,
    device: Option<DeviceToken>,
) -> Result<LoginOutcome, LoginError> {
    let email = EmailAddress::parse(attempt.email);
    // Counted by what was typed, account or not: the throttle must not reveal accounts.
    let account_name = email.as_ref().map_or_else(
        |_| attempt.email.trim().to_lowercase(),
        |e| e.as_str().to_string(),
    );
    let account = match &email {
        Ok(email) => match users::Model::find_by_email(db, email).await {
            Ok(user) => Some(user),
            Err(ModelError::EntityNotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    let claimant = claimant(sessions, account.as_ref(), device.as_ref(), &client);
    let throttle = sessions.throttle();
    let reservation = throttle.reserve_login(&account_name, claimant).await?;
    let reserved = match admitted(sessions, reservation, || {
        AuditEvent::new(EventKind::LoginThrottled)
            .client(client.clone())
            .reason("login attempts over the limit")
    }) {
        Ok(reserved) => reserved,
        Err(retry_after) => return Ok(LoginOutcome::Throttled { retry_after }),
    };
    let hashing = sessions.hashing();
    let verified = match &account {
        Some(user) => user.verify_password(hashing, attempt.password).await,
        None => hashing.verify_nobody(attempt.password).await,
    };
    let Some((verified, reserved)) = judged(sessions, reserved, verified).await? else {
        return Ok(LoginOutcome::Busy {
            retry_after: RETRY_AFTER,
        });
    };
    let user = match account {
        Some(user) if verified && !user.disabled => user,
        account => {
            // The attempt stays counted: that is the failure's record in the throttle.
            sessions.audit().record(
                AuditEvent::new(EventKind::LoginFailed)
                    .user(account.map(|u| u.id))
                    .client(client)
                    .reason("wrong email or password"),
            );
            return Ok(LoginOutcome::Refused);
        }
    };
    let started = session
        .establish(
            user.id,
            user.credential_generation,
            attempt.remember,
            client.clone(),
        )
        .await;
    match started {
        Ok(()) => throttle.give_back(reserved).await?,
        Err(SessionError::CredentialsChanged) => {
            // A password change or a disable committed after the password was checked: the
            // password that was right is no longer, the answer is the same as for a wrong
            // one, and the attempt stays counted as one.
            sessions.audit().record(
                AuditEvent::new(EventKind::LoginFailed)
                    .user(Some(user.id))
                    .client(client)
                    .reason("credentials changed during the login"),
            );
            return Ok(LoginOutcome::Refused);
        }
        Err(error) => {
            // Not judged after all (the store or the registry failed): not a guess.
            throttle.give_back(reserved).await?;
            return Err(error.into());
        }
    }
    session
        .flash(format!("Welcome back, {}.", user.name))
        .await?;
    let device_cookie = sessions
        .devices()
        .issue(user.id, user.credential_generation, now());
    Ok(LoginOutcome::LoggedIn {
        device_cookie: Box::new(device_cookie),
    })
}

/// Checks the current password `user` typed on a form of their own session (the password
/// form), within the throttle and by the same rules as a login: a stolen cookie must not
/// open a guessing game, and nobody can lock the user's known browser out of it.
///
/// # Errors
/// When the throttle's counters fail or the check cannot run.
pub async fn check_current_password(
    sessions: &Sessions,
    session: &AppSession,
    user: &users::Model,
    password: &str,
    client: &ClientInfo,
    device: Option<&DeviceToken>,
) -> Result<PasswordCheck, LoginError> {
    let throttle = sessions.throttle();
    let claimant = claimant(sessions, Some(user), device, client);
    let reservation = throttle.reserve_password_check(user.id, claimant).await?;
    let reserved = match admitted(sessions, reservation, || {
        session
            .audit_event(EventKind::LoginThrottled)
            .reason("current password checks over the limit")
    }) {
        Ok(reserved) => reserved,
        Err(retry_after) => return Ok(PasswordCheck::Throttled { retry_after }),
    };
    let verified = user.verify_password(sessions.hashing(), password).await;
    let Some((verified, reserved)) = judged(sessions, reserved, verified).await? else {
        return Ok(PasswordCheck::Busy {
            retry_after: RETRY_AFTER,
        });
    };
    if verified {
        throttle.give_back(reserved).await?;
        return Ok(PasswordCheck::Correct);
    }
    sessions.audit().record(
        session
            .audit_event(EventKind::LoginFailed)
            .reason("wrong current password"),
    );
    Ok(PasswordCheck::Wrong)
}
