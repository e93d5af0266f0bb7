//! What happens to sessions, by name: the audit trail's [`EventKind`]s and the registry's
//! [`EndReason`]s, and the one place that says which event an end is.
//!
//! A leaf: it imports no other part of the session layer.

use std::fmt;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Login,
    LoginFailed,
    Rotated,
    Logout,
    IdleExpired,
    AbsoluteExpired,
    Revoked,
    PasswordChanged,
    PlatformSwitched,
    StoreError,
    FingerprintMismatch,
    LoginThrottled,
    /// An account was created through the registration form.
    Registered,
    /// An admin disabled an account (whether or not it had sessions to end).
    AccountDisabled,
}

impl EventKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Rotated => "rotated",
            Self::Logout => "logout",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::Revoked => "revoked",
            Self::PasswordChanged => "password_changed",
            Self::PlatformSwitched => "platform_switched",
            Self::StoreError => "store_error",
            Self::FingerprintMismatch => "fingerprint_mismatch",
            Self::LoginThrottled => "login_throttled",
            Self::Registered => "registered",
            Self::AccountDisabled => "account_disabled",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended, as the registry and the audit trail write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    IdleExpired,
    AbsoluteExpired,
    RevokedByUser,
    RevokedByAdmin,
    RevokedByLimit,
    PasswordChanged,
    UserDisabled,
    /// Opened under credentials that no longer hold: the account's credential generation
    /// moved on (a password change from elsewhere) since the session was opened.
    CredentialsChanged,
    /// Used from another browser than the one that logged in.
    FingerprintMismatch,
    /// Found expired or missing from the store by the cleanup.
    Gone,
}

impl EndReason {
    /// Every reason, for series that must exist before the first session ends.
    pub const ALL: [Self; 10] = [
        Self::Logout,
        Self::IdleExpired,
        Self::AbsoluteExpired,
        Self::RevokedByUser,
        Self::RevokedByAdmin,
        Self::RevokedByLimit,
        Self::PasswordChanged,
        Self::UserDisabled,
        Self::FingerprintMismatch,
        Self::Gone,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::RevokedByUser => "revoked_by_user",
            Self::RevokedByAdmin => "revoked_by_admin",
            Self::RevokedByLimit => "revoked_by_limit",
            Self::PasswordChanged => "password_changed",
            Self::UserDisabled => "user_disabled",
            Self::CredentialsChanged => "credentials_changed",
            Self::FingerprintMismatch => "fingerprint_mismatch",
            Self::Gone => "gone",
        }
    }
}

impl EndReason {
    /// The event the audit trail writes when a session ends for this reason: the user's
    /// own logout, an expiry and a stolen cookie have events of their own; every other
    /// end is a revocation, with the reason beside it.
    #[must_use]
    pub const fn event(self) -> EventKind {
        match self {
            Self::Logout => EventKind::Logout,
            Self::IdleExpired => EventKind::IdleExpired,
            Self::AbsoluteExpired => EventKind::AbsoluteExpired,
            Self::FingerprintMismatch => EventKind::FingerprintMismatch,
            Self::RevokedByUser
            | Self::RevokedByAdmin
            | Self::RevokedByLimit
            | Self::PasswordChanged
            | Self::UserDisabled
            | Self::CredentialsChanged
            | Self::Gone => EventKind::Revoked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{EndReason, EventKind};

    #[test]
    fn ends_by_the_user_or_the_clock_have_their_own_event_and_the_rest_are_revocations() {
        assert_eq!(EndReason::Logout.event(), EventKind::Logout);
        assert_eq!(EndReason::IdleExpired.event(), EventKind::IdleExpired);
        assert_eq!(
            EndReason::AbsoluteExpired.event(),
            EventKind::AbsoluteExpired
        );
        assert_eq!(
            EndReason::FingerprintMismatch.event(),
            EventKind::FingerprintMismatch
        );
        for reason in [
            EndReason::RevokedByUser,
            EndReason::RevokedByAdmin,
            EndReason::RevokedByLimit,
            EndReason::PasswordChanged,
            EndReason::UserDisabled,
            EndReason::CredentialsChanged,
            EndReason::Gone,
        ] {
            assert_eq!(reason.event(), EventKind::Revoked, "{}", reason.as_str());
        }
    }
}
