//! [`AppSession`]: the one typed door to the session. Controllers ask it who is logged
//! in, for the CSRF token, to log in or out, to rotate the ID or switch platform; they
//! never touch record keys, the registry or the audit trail directly.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use time::OffsetDateTime;
use tower_sessions::{Expiry, Session};

use super::{
    audit::Actor,
    csrf,
    data::{ClientInfo, SessionData},
    error::SessionError,
    events::EndReason,
    layer::RequestSession,
    policy::Verdict,
    stores::hashed::SessionRef,
    time::{now, UnixTime},
    Sessions,
};

/// The current request's session, already checked against the policy: an expired session
/// has been deleted and reads as anonymous, a live one had its activity recorded if the
/// touch interval had passed.
///
/// ```ignore
/// async fn dashboard(session: AppSession) -> Result<Response, AppError> {
///     let user_id = session.user_id().ok_or(AppError::LoginRequired)?;
///     ...
/// }
/// ```
#[derive(Debug, Clone)]
pub struct AppSession {
    pub(super) session: Session,
    pub(super) sessions: Arc<Sessions>,
    pub(super) data: Option<SessionData>,
    /// The client of the request at hand, which the trail compares with the session's.
    pub(super) request_client: ClientInfo,
}

/// The session as it stands, for the pages that show it (`crate::views::session` shapes
/// it): plain values, so the library knows nothing of pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// `None` for a session without a login (one that holds only a CSRF token).
    pub user_id: Option<i64>,
    pub active_platform_id: Option<i64>,
    pub created_at: UnixTime,
    pub last_activity: UnixTime,
    /// When the policy ends it, unless it is used again (idle timeout) first.
    pub expires_at: UnixTime,
    /// Whether "remember me" was ticked.
    pub persistent: bool,
    /// The store's name: memory, file, redis or database.
    pub store: &'static str,
}

/// Whether reading the session is the user's activity. An open tab's background status
/// check is not: if it touched the session, a forgotten tab would keep it alive forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    User,
    Background,
}

/// How long a store keeps a record past the moment the policy ends it. Within this
/// window the app itself finds the session expired, so it can say why (idle or absolute)
/// in the registry and the audit trail; after it the store drops the record by itself.
pub const STORE_GRACE_SECS: i64 = 60;

impl AppSession {
    /// Loads the session behind `session` and applies the policy to it, for a request
    /// from `client`; only [`Activity::User`] counts towards the idle timeout.
    ///
    /// # Errors
    /// [`SessionError::StoreUnavailable`] when the store does not answer.
    pub async fn load(
        session: Session,
        sessions: Arc<Sessions>,
        client: &ClientInfo,
        activity: Activity,
    ) -> Result<Self, SessionError> {
        use tower_sessions::{session::Error, session_store::Error as StoreError};
        let read = session.get::<SessionData>(SessionData::KEY).await;
        let mut this = Self {
            session,
            sessions,
            data: None,
            request_client: client.clone(),
        };
        let stored = match read {
            Ok(data) => data,
            // A record that cannot be decoded or opened is no session, never an error page.
            Err(Error::SerdeJson(e)) => {
                this.discard_unreadable(&e.to_string()).await?;
                return Ok(this);
            }
            Err(Error::Store(StoreError::Decode(reason))) => {
                this.discard_unreadable(&reason).await?;
                return Ok(this);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(mut data) = stored else {
            return Ok(this);
        };
        if !this.confirm_migrated(&data).await? {
            return Ok(this);
        }
        if !this.is_same_browser(&data, client) {
            // The ID is being used from another browser than the one that logged in: a
            // stolen cookie, most likely. End the session for both.
            this.data = Some(data);
            this.end(EndReason::FingerprintMismatch).await?;
            return Ok(this);
        }
        let now = now();
        let verdict = this
            .sessions
            .config()
            .policy
            .judge(data.created_at, data.last_activity, now);
        match verdict {
            Verdict::Live { touch } => {
                if touch && activity == Activity::User {
                    data.last_activity = now;
                    this.write(&data).await?;
                    if !this.record_touch(&data).await {
                        this.forget_ended().await?;
                        return Ok(this);
                    }
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

    /// Whether `client` is the browser that logged in. The record was sealed with the user
    /// agent and address of that browser beside their fingerprint, so the same user agent
    /// (from the same address, when the fingerprint binds it) is the same fingerprint, and
    /// the keyed hash is computed only when they differ.
    fn is_same_browser(&self, data: &SessionData, client: &ClientInfo) -> bool {
        if data.fingerprint.is_empty() {
            return true;
        }
        let same_network =
            !self.sessions.config().fingerprint.bind_ip_prefix || data.ip == client.ip;
        (same_network && data.user_agent == client.user_agent)
            || self.sessions.fingerprint_matches(&data.fingerprint, client)
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

    /// How logs, SQL and URLs name this session; `None` before it has a record.
    #[must_use]
    pub fn session_ref(&self) -> Option<SessionRef> {
        self.session.id().map(|id| self.sessions.session_ref(&id))
    }

    /// The configured store's name: memory, file or redis.
    #[must_use]
    pub fn store_name(&self) -> &'static str {
        self.sessions.store_kind().name()
    }

    /// The account's credential generation this session was opened with (or carried over
    /// from the last password change); `None` without a logged-in session.
    #[must_use]
    pub fn credential_generation(&self) -> Option<i64> {
        self.data
            .as_ref()
            .filter(|d| d.user_id.is_some())
            .map(|d| d.credential_generation)
    }

    /// The logged-in user acting from this request's client (for the trail of what they
    /// do to sessions); `None` without a logged-in session.
    #[must_use]
    pub fn actor(&self) -> Option<Actor> {
        self.user_id().map(|user_id| Actor {
            user_id,
            client: self.request_client.clone(),
        })
    }

    /// The browser this session was started from.
    #[must_use]
    pub fn client(&self) -> ClientInfo {
        self.data
            .as_ref()
            .map(|d| ClientInfo::new(&d.user_agent, d.ip.clone()))
            .unwrap_or_default()
    }

    /// The session's CSRF token; `None` without a session. Anonymous forms (login,
    /// register) use a signed double-submit token instead ([`super::csrf::form_token`]):
    /// a visitor who is not logged in gets no record in the store.
    #[must_use]
    pub fn csrf_token(&self) -> Option<&str> {
        self.data.as_ref().map(|d| d.csrf_token.as_str())
    }

    /// Whether `submitted` is this session's CSRF token.
    #[must_use]
    pub fn verify_csrf(&self, submitted: &str) -> bool {
        self.data
            .as_ref()
            .is_some_and(|d| csrf::tokens_match(&d.csrf_token, submitted))
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
        if data.active_platform_id == platform_id {
            return Ok(());
        }
        data.active_platform_id = platform_id;
        self.write(&data).await?;
        self.audit_platform_switch(platform_id);
        self.data = Some(data);
        Ok(())
    }

    /// Leaves `text` for the next page this session is shown ("flash"), e.g. after a
    /// redirect. Only for logged-in sessions; a later message replaces an unseen one.
    ///
    /// # Errors
    /// When the session cannot be written.
    pub async fn flash(&mut self, text: impl Into<String>) -> Result<(), SessionError> {
        let Some(mut data) = self.data.clone().filter(|d| d.user_id.is_some()) else {
            return Ok(());
        };
        data.flash = Some(text.into());
        self.write(&data).await?;
        self.data = Some(data);
        Ok(())
    }

    /// The flash message left for this page, if any, removed so that it shows once.
    ///
    /// # Errors
    /// When the session cannot be written.
    pub async fn take_flash(&mut self) -> Result<Option<String>, SessionError> {
        let Some(mut data) = self.data.clone().filter(|d| d.flash.is_some()) else {
            return Ok(None);
        };
        let flash = data.flash.take();
        self.write(&data).await?;
        self.data = Some(data);
        Ok(flash)
    }

    /// What a page says about the session; `None` for a visitor without a session.
    #[must_use]
    pub fn summary(&self) -> Option<SessionSummary> {
        let data = self.data.as_ref()?;
        Some(SessionSummary {
            user_id: data.user_id,
            active_platform_id: data.active_platform_id,
            created_at: data.created_at,
            last_activity: data.last_activity,
            expires_at: self.expires_at(data),
            persistent: data.remember,
            store: self.store_name(),
        })
    }

    pub(super) fn expires_at(&self, data: &SessionData) -> UnixTime {
        self.sessions
            .config()
            .policy
            .expires_at(data.created_at, data.last_activity)
    }

    /// Writes `data` and the record's server-side expiry. The expiry is not part of the
    /// record tower-sessions loads, so it is set again on every write, here and only here.
    pub(super) async fn write(&self, data: &SessionData) -> Result<(), SessionError> {
        let store_expiry = self.expires_at(data).saturating_add(STORE_GRACE_SECS);
        let expires_at = OffsetDateTime::from_unix_timestamp(store_expiry)
            .map_err(|e| SessionError::Corrupt(e.to_string()))?;
        self.session
            .set_expiry(Some(Expiry::AtDateTime(expires_at)));
        self.session.insert(SessionData::KEY, data).await?;
        Ok(())
    }
}

impl AppSession {
    async fn from_parts(parts: &mut Parts, activity: Activity) -> Result<Self, SessionError> {
        let RequestSession {
            session,
            sessions,
            served_to_user,
        } = parts
            .extensions
            .get::<RequestSession>()
            .cloned()
            .ok_or(SessionError::NotInstalled)?;
        let client = sessions.client(parts);
        let this = Self::load(session, sessions, &client, activity).await?;
        if this.user_id().is_some() {
            served_to_user.set();
        }
        Ok(this)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AppSession {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts, Activity::User).await
    }
}

/// The session read by an open page's background status check: the policy still applies
/// (an expired session reads as ended) but the read is not activity.
#[derive(Debug, Clone)]
pub struct BackgroundCheck(pub AppSession);

impl<S: Send + Sync> FromRequestParts<S> for BackgroundCheck {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        AppSession::from_parts(parts, Activity::Background)
            .await
            .map(Self)
    }
}
