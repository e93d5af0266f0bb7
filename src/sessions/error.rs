//! What can go wrong in the session layer. The app maps each variant to a response once
//! (`crate::errors`).

/// A session operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store did not answer (Redis down, file system error): the user gets a 503
    /// page, and nothing is lost.
    #[error("session store unavailable: {0}")]
    StoreUnavailable(String),
    /// A record could not be decoded or encoded.
    #[error("session record unusable: {0}")]
    Corrupt(String),
    /// The session registry (SQL) failed.
    #[error("session registry: {0}")]
    Registry(#[from] sea_orm::DbErr),
    /// A login whose credentials changed while it ran (a password change or a disable
    /// committed after the password was checked): nothing was registered, no session
    /// started. Answered like a wrong password.
    #[error("the account's credentials changed during the login")]
    CredentialsChanged,
    /// The session ended while the request ran (revoked during a rotation): the request
    /// gets the login page, and the session's record is gone.
    #[error("the session ended while the request ran")]
    Ended,
    /// The session layer is not installed on this route (a wiring bug).
    #[error("the session layer is not installed")]
    NotInstalled,
}

impl From<tower_sessions::session::Error> for SessionError {
    fn from(error: tower_sessions::session::Error) -> Self {
        use tower_sessions::{session::Error, session_store::Error as StoreError};
        match error {
            Error::Store(StoreError::Backend(e)) => Self::StoreUnavailable(e),
            Error::Store(StoreError::Decode(e) | StoreError::Encode(e)) => Self::Corrupt(e),
            Error::SerdeJson(e) => Self::Corrupt(e.to_string()),
        }
    }
}
