//! Signing up, as one domain operation: the throttle counts the attempt per client
//! network first (every attempt: a taken email and a form with mistakes too), then the
//! form is checked and the password hashed on the bounded hasher, behind logins. A taken
//! email gets the same answer as a free one, so the form tells a stranger nothing about who
//! has an account.

use std::time::Duration;

use loco_rs::model::ModelError;
use sea_orm::DatabaseConnection;

use super::{
    data::ClientInfo,
    hashing::{HashingError, RETRY_AFTER},
    login::LoginError,
    throttle::Reservation,
    Sessions,
};
use crate::models::users::{self, AccountError, NewUser, RegistrationErrors};

/// What the registration form asks.
#[derive(Debug, Clone, Copy)]
pub struct SignUpAttempt<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub password: &'a str,
}

/// How a sign-up ended.
#[derive(Debug)]
pub enum SignUpOutcome {
    /// The account exists now, made by this attempt or before it: the same answer.
    Done,
    /// The form has mistakes, field by field.
    Invalid(RegistrationErrors),
    /// Too many sign-ups from this network: nothing was checked.
    Throttled { retry_after: Duration },
    /// Password hashing is at capacity: nothing was done, and the attempt does not count.
    Busy { retry_after: Duration },
}

/// Registers `attempt` from `client`, within the sign-up throttle.
///
/// # Errors
/// When the throttle's counters, the hasher or the account table fail.
pub async fn sign_up(
    db: &DatabaseConnection,
    sessions: &Sessions,
    attempt: SignUpAttempt<'_>,
    client: &ClientInfo,
) -> Result<SignUpOutcome, LoginError> {
    let throttle = sessions.throttle();
    let reserved = match throttle.reserve_registration(client.ip.as_deref()).await? {
        Reservation::Allowed(reserved) => reserved,
        Reservation::Refused { retry_after, .. } => {
            tracing::info!(
                ip = client.ip.as_deref(),
                "sign-up refused: too many from this network"
            );
            return Ok(SignUpOutcome::Throttled { retry_after });
        }
    };
    let new_user = match NewUser::parse(attempt.name, attempt.email, attempt.password) {
        Ok(new_user) => new_user,
        Err(errors) => return Ok(SignUpOutcome::Invalid(errors)),
    };
    match users::Model::create_with_password(db, sessions.hashing(), &new_user, false).await {
        Ok(user) => sessions.registered(user.id, client.clone()),
        Err(AccountError::Model(ModelError::EntityAlreadyExists)) => {
            tracing::info!("registration for an email that has an account");
        }
        Err(AccountError::Hashing(HashingError::Busy { .. })) => {
            throttle.give_back(reserved).await?;
            return Ok(SignUpOutcome::Busy {
                retry_after: RETRY_AFTER,
            });
        }
        Err(AccountError::Hashing(error)) => return Err(error.into()),
        Err(AccountError::Model(error)) => return Err(error.into()),
    }
    Ok(SignUpOutcome::Done)
}
