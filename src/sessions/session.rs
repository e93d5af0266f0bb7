//! [`AppSession`]: the one typed door to the session. Controllers ask it who is logged
//! in, for the CSRF token, to log in or out; they never touch record keys.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use time::OffsetDateTime;
use tower_sessions::{Expiry, Session};

use super::{
    csrf,
    data::{ClientInfo, SessionData},
    error::SessionError,
    policy::{UnixTime, Verdict},
    Sessions,
};

/// The current request's session, already checked against the policy: an expired session
/// has been deleted and reads as anonymous, a live one had its activity recorded if the
/// touch interval had passed.
///
/// ```ignore
/// async fn dashboard(session: AppSession) -> Result<Response> {
///     let Some(user_id) = session.user_id() else { return Err(AppError::LoginRequired) };
///     ...
/// }
/// ```
#[derive(Debug, Clone)]
pub struct AppSession {
    session: Session,
    sessions: Arc<Sessions>,
    data: Option<SessionData>,
}

/// The session as the dashboard and `/api/session` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    pub authenticated: bool,
    pub user_id: Option<i64>,
    pub active_platform_id: Option<i64>,
    pub created_at: String,
    pub last_activity: String,
    pub expires_at: String,
    pub persistent: bool,
    pub store: &'static str,
}

/// Why a session ended, for logs and (later) the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    IdleExpired,
    AbsoluteExpired,
    Logout,
}

impl EndReason {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::Logout => "logout",
        }
    }
}

pub(crate) fn now() -> UnixTime {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl AppSession {
    /// Loads the session behind `session` and applies the policy to it.
    ///
    /// # Errors
    /// [`SessionError::StoreUnavailable`] when the store does not answer.
    pub async fn load(session: Session, sessions: Arc<Sessions>) -> Result<Self, SessionError> {
        let stored = match session.get::<SessionData>(SessionData::KEY).await {
            Ok(data) => data,
            // A record we cannot decode is no session, never an error page.
            Err(tower_sessions::session::Error::SerdeJson(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut this = Self {
            session,
            sessions,
            data: None,
        };
        let Some(mut data) = stored else {
            return Ok(this);
        };
        let now = now();
        match this
            .sessions
            .config()
            .policy
            .judge(data.created_at, data.last_activity, now)
        {
            Verdict::Live { touch } => {
                if touch {
                    data.last_activity = now;
                    this.write(&data).await?;
                }
                this.data = Some(data);
            }
            Verdict::IdleExpired => {
                this.data = Some(data);
                this.end(EndReason::IdleExpired).await?;
            }
            Verdict::AbsoluteExpired => {
                this.data = Some(data);
                this.end(EndReason::AbsoluteExpired).await?;
            }
        }
        Ok(this)
    }

    /// The logged-in user, if any.
    #[must_use]
    pub fn user_id(&self) -> Option<i64> {
        self.data.as_ref().and_then(|d| d.user_id)
    }

    /// The active platform connection, if any.
    #[must_use]
    pub fn active_platform_id(&self) -> Option<i64> {
        self.data.as_ref().and_then(|d| d.active_platform_id)
    }

    /// The session's CSRF token, starting an anonymous session to hold one if needed
    /// (the login and register forms need a token before anyone is logged in).
    ///
    /// # Errors
    /// When the session cannot be written.
    pub async fn csrf_token(&mut self) -> Result<String, SessionError> {
        if let Some(data) = &self.data {
            return Ok(data.csrf_token.clone());
        }
        let now = now();
        let data = SessionData {
            user_id: None,
            created_at: now,
            last_activity: now,
            remember: false,
            user_agent: String::new(),
            ip: None,
            csrf_token: csrf::new_token(),
            active_platform_id: None,
        };
        self.write(&data).await?;
        let token = data.csrf_token.clone();
        self.data = Some(data);
        Ok(token)
    }

    /// Whether `submitted` is this session's CSRF token.
    #[must_use]
    pub fn verify_csrf(&self, submitted: &str) -> bool {
        self.data
            .as_ref()
            .is_some_and(|d| csrf::tokens_match(&d.csrf_token, submitted))
    }

    /// Logs `user_id` in: the session gets a new ID (the old record is deleted at once, so
    /// a fixated ID is worthless), fresh timestamps and a fresh CSRF token.
    ///
    /// # Errors
    /// When the store cannot delete the old record or write the new one.
    pub async fn log_in(
        &mut self,
        user_id: i64,
        remember: bool,
        client: ClientInfo,
    ) -> Result<(), SessionError> {
        self.session.cycle_id().await?;
        let now = now();
        let data = SessionData {
            user_id: Some(user_id),
            created_at: now,
            last_activity: now,
            remember,
            user_agent: client.user_agent,
            ip: client.ip,
            csrf_token: csrf::new_token(),
            active_platform_id: None,
        };
        self.write(&data).await?;
        self.data = Some(data);
        Ok(())
    }

    /// Logs out: deletes the record now; the response clears the cookie.
    ///
    /// # Errors
    /// When the store cannot delete the record.
    pub async fn log_out(&mut self) -> Result<(), SessionError> {
        self.end(EndReason::Logout).await
    }

    /// Makes `platform_id` the session's active platform connection.
    ///
    /// # Errors
    /// When the session cannot be written.
    pub async fn set_active_platform(
        &mut self,
        platform_id: Option<i64>,
    ) -> Result<(), SessionError> {
        let Some(mut data) = self.data.clone() else {
            return Ok(());
        };
        data.active_platform_id = platform_id;
        self.write(&data).await?;
        self.data = Some(data);
        Ok(())
    }

    /// The configured store's name: memory, file or redis.
    #[must_use]
    pub fn store_name(&self) -> &'static str {
        self.sessions.store_kind().name()
    }

    /// The session as pages show it; `None` for a visitor without a session.
    #[must_use]
    pub fn view(&self) -> Option<SessionView> {
        let data = self.data.as_ref()?;
        let policy = &self.sessions.config().policy;
        Some(SessionView {
            authenticated: data.user_id.is_some(),
            user_id: data.user_id,
            active_platform_id: data.active_platform_id,
            created_at: rfc3339(data.created_at),
            last_activity: rfc3339(data.last_activity),
            expires_at: rfc3339(policy.expires_at(data.created_at, data.last_activity)),
            persistent: data.remember,
            store: self.sessions.store_kind().name(),
        })
    }

    /// Writes `data` and the record's server-side expiry. The expiry is not part of the
    /// record tower-sessions loads, so it is set again on every write, here and only here.
    async fn write(&self, data: &SessionData) -> Result<(), SessionError> {
        let policy = &self.sessions.config().policy;
        let expires_at = OffsetDateTime::from_unix_timestamp(
            policy.expires_at(data.created_at, data.last_activity),
        )
        .map_err(|e| SessionError::Corrupt(e.to_string()))?;
        self.session
            .set_expiry(Some(Expiry::AtDateTime(expires_at)));
        self.session.insert(SessionData::KEY, data).await?;
        Ok(())
    }

    async fn end(&mut self, reason: EndReason) -> Result<(), SessionError> {
        let user_id = self.data.as_ref().and_then(|d| d.user_id);
        tracing::info!(reason = reason.as_str(), user_id, "session ended");
        self.session.flush().await?;
        self.data = None;
        Ok(())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AppSession {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionError::NotInstalled)?;
        let sessions = parts
            .extensions
            .get::<Arc<Sessions>>()
            .cloned()
            .ok_or(SessionError::NotInstalled)?;
        Self::load(session, sessions).await
    }
}
