//! [`AppSession`]: the one typed door to the session. Controllers ask it who is logged
//! in, for the CSRF token, to log in or out, to rotate the ID or switch platform; they
//! never touch record keys, the registry or the audit trail directly.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use time::OffsetDateTime;
use tower_sessions::{Expiry, Session};

use super::{
    audit::{AuditEvent, EventKind},
    csrf,
    data::{ClientInfo, SessionData, MIGRATED},
    error::SessionError,
    layer::ServedToUser,
    policy::{UnixTime, Verdict},
    registry::{EndReason, NewEntry},
    stores::hashed::SessionRef,
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
    session: Session,
    sessions: Arc<Sessions>,
    data: Option<SessionData>,
}

/// Whether reading the session is the user's activity. An open tab's background status
/// check is not: if it touched the session, a forgotten tab would keep it alive forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    User,
    Background,
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

/// How long a store keeps a record past the moment the policy ends it. Within this
/// window the app itself finds the session expired, so it can say why (idle or absolute)
/// in the registry and the audit trail; after it the store drops the record by itself.
pub const STORE_GRACE_SECS: i64 = 60;

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

fn chrono_time(t: UnixTime) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .fixed_offset()
}

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
        if !data.fingerprint.is_empty() && data.fingerprint != this.sessions.fingerprint(client) {
            // The ID is being used from another browser than the one that logged in: a
            // stolen cookie, most likely. End the session for both.
            this.data = Some(data);
            this.end(
                EventKind::FingerprintMismatch,
                EndReason::FingerprintMismatch,
            )
            .await?;
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
                    this.record_touch(&data).await;
                }
                this.data = Some(data);
            }
            Verdict::IdleExpired => {
                this.data = Some(data);
                this.end(EventKind::IdleExpired, EndReason::IdleExpired)
                    .await?;
            }
            Verdict::AbsoluteExpired => {
                this.data = Some(data);
                this.end(EventKind::AbsoluteExpired, EndReason::AbsoluteExpired)
                    .await?;
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

    /// The browser this session was started from.
    #[must_use]
    pub fn client(&self) -> ClientInfo {
        self.data
            .as_ref()
            .map(|d| ClientInfo::new(&d.user_agent, d.ip.clone()))
            .unwrap_or_default()
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
            fingerprint: String::new(),
            flash: None,
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
    /// a fixated ID is worthless), fresh timestamps and a fresh CSRF token. The session is
    /// registered; past the per-user limit the least recently used sessions end.
    ///
    /// # Errors
    /// When the store or the registry fails.
    pub async fn log_in(
        &mut self,
        user_id: i64,
        remember: bool,
        client: ClientInfo,
    ) -> Result<(), SessionError> {
        if self.user_id().is_some() {
            // Logging in over a logged-in session ends that one.
            self.end_registration(self.session_ref().as_ref(), EndReason::Logout)
                .await;
        }
        self.session.cycle_id().await?;
        let now = now();
        let data = SessionData {
            user_id: Some(user_id),
            created_at: now,
            last_activity: now,
            remember,
            user_agent: client.user_agent.clone(),
            ip: client.ip.clone(),
            csrf_token: csrf::new_token(),
            active_platform_id: None,
            fingerprint: self.sessions.fingerprint(&client),
            flash: None,
        };
        self.write(&data).await?;
        // Saved now, not by the middleware: the registry needs the new ID.
        self.session.save().await?;
        let id = self.session.id().ok_or(SessionError::NotInstalled)?;
        let session_ref = self.sessions.session_ref(&id);
        let evicted = self
            .sessions
            .registry()
            .register(
                NewEntry {
                    user_id,
                    session_ref: session_ref.clone(),
                    store_key: self.sessions.hasher().store_key(&id),
                    store: self.store_name(),
                    expires_at: chrono_time(self.expires_at(&data)),
                    user_agent: client.user_agent.clone(),
                    ip: client.ip.clone(),
                },
                self.sessions.config().max_per_user,
            )
            .await?;
        for row in &evicted {
            // The registry already marked them ended; take them out of the store.
            self.sessions.revoke(row, EndReason::RevokedByLimit).await?;
        }
        let audit = self.sessions.audit();
        for kind in [EventKind::Created, EventKind::Login] {
            audit.record(
                AuditEvent::new(kind)
                    .user(Some(user_id))
                    .session(Some(session_ref.clone()))
                    .client(client.clone()),
            );
        }
        self.data = Some(data);
        Ok(())
    }

    /// Logs out: deletes the record now; the response clears the cookie.
    ///
    /// # Errors
    /// When the store cannot delete the record.
    pub async fn log_out(&mut self) -> Result<(), SessionError> {
        self.end(EventKind::Logout, EndReason::Logout).await
    }

    /// Ends the session because its user may no longer use it (deleted or disabled).
    ///
    /// # Errors
    /// When the store cannot delete the record.
    pub async fn end_for(&mut self, reason: EndReason) -> Result<(), SessionError> {
        self.end(EventKind::Revoked, reason).await
    }

    /// Gives the session a new ID (the old one dies at once) and a new CSRF token, keeping
    /// who is logged in. Used after a privilege change such as a new password.
    ///
    /// # Errors
    /// When the store or the registry fails.
    pub async fn rotate(&mut self, reason: &str) -> Result<(), SessionError> {
        let Some(mut data) = self.data.clone() else {
            return Ok(());
        };
        let old_ref = self.session_ref();
        self.session.cycle_id().await?;
        data.csrf_token = csrf::new_token();
        data.last_activity = now();
        self.write(&data).await?;
        self.session.save().await?;
        let id = self.session.id().ok_or(SessionError::NotInstalled)?;
        let new_ref = self.sessions.session_ref(&id);
        if let Some(old_ref) = &old_ref {
            self.sessions
                .registry()
                .rotate(old_ref, &new_ref, self.sessions.hasher().store_key(&id))
                .await?;
        }
        self.sessions.audit().record(
            AuditEvent::new(EventKind::Rotated)
                .user(data.user_id)
                .session(Some(new_ref))
                .client(self.client())
                .reason(reason),
        );
        self.data = Some(data);
        Ok(())
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
        self.sessions.audit().record(
            AuditEvent::new(EventKind::PlatformSwitched)
                .user(data.user_id)
                .session(self.session_ref())
                .client(self.client())
                .reason(
                    platform_id.map_or_else(|| "none".to_string(), |id| format!("platform {id}")),
                ),
        );
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

    /// The session as pages show it; `None` for a visitor without a session.
    #[must_use]
    pub fn view(&self) -> Option<SessionView> {
        let data = self.data.as_ref()?;
        Some(SessionView {
            authenticated: data.user_id.is_some(),
            user_id: data.user_id,
            active_platform_id: data.active_platform_id,
            created_at: rfc3339(data.created_at),
            last_activity: rfc3339(data.last_activity),
            expires_at: rfc3339(self.expires_at(data)),
            persistent: data.remember,
            store: self.store_name(),
        })
    }

    fn expires_at(&self, data: &SessionData) -> UnixTime {
        self.sessions
            .config()
            .policy
            .expires_at(data.created_at, data.last_activity)
    }

    /// Writes `data` and the record's server-side expiry. The expiry is not part of the
    /// record tower-sessions loads, so it is set again on every write, here and only here.
    async fn write(&self, data: &SessionData) -> Result<(), SessionError> {
        let store_expiry = self.expires_at(data).saturating_add(STORE_GRACE_SECS);
        let expires_at = OffsetDateTime::from_unix_timestamp(store_expiry)
            .map_err(|e| SessionError::Corrupt(e.to_string()))?;
        self.session
            .set_expiry(Some(Expiry::AtDateTime(expires_at)));
        self.session.insert(SessionData::KEY, data).await?;
        Ok(())
    }

    /// Keeps the registry's "last seen" in step with the touch (once per interval). A
    /// registry failure is logged, never the user's problem.
    async fn record_touch(&self, data: &SessionData) {
        let (Some(_), Some(session_ref)) = (data.user_id, self.session_ref()) else {
            return;
        };
        let expires_at = chrono_time(self.expires_at(data));
        if let Err(error) = self
            .sessions
            .registry()
            .touch(&session_ref, expires_at)
            .await
        {
            tracing::warn!(%error, session = %session_ref, "registry touch failed");
        }
    }

    /// Marks the registry row ended; a failure is logged (the cleanup prunes the row).
    async fn end_registration(&self, session_ref: Option<&SessionRef>, reason: EndReason) {
        if let Some(session_ref) = session_ref {
            if let Err(error) = self.sessions.registry().end(session_ref, reason).await {
                tracing::warn!(%error, session = %session_ref, "registry end failed");
            }
        }
    }

    /// Removes a record that cannot be read (garbage, truncated, sealed with an unknown
    /// key, another format) and audits it; the request goes on as anonymous. The cookie's
    /// ID is not reused: a session started on this request gets a fresh one.
    async fn discard_unreadable(&mut self, reason: &str) -> Result<(), SessionError> {
        let session_ref = self.session_ref();
        tracing::warn!(session = ?session_ref, %reason, "unreadable session record removed; treated as no session");
        // `clear` gives the session an empty record without loading the bad one, so
        // `cycle_id` can delete the stored record and draw a new ID.
        self.session.clear().await;
        self.session.cycle_id().await?;
        self.sessions.audit().record(
            AuditEvent::new(EventKind::StoreError)
                .session(session_ref)
                .reason(format!("unreadable record removed: {reason}")),
        );
        self.data = None;
        Ok(())
    }

    /// For a record copied by `sessions_migrate`: whether its session is still live in the
    /// registry. The copy may have been made before the session ended in the old store
    /// (logout, revocation, rotation), and an ended session must stay ended: such a record
    /// is deleted here. A live one loses the mark, so the registry is asked once.
    async fn confirm_migrated(&mut self, data: &SessionData) -> Result<bool, SessionError> {
        let marked = self
            .session
            .get::<serde_json::Value>(MIGRATED)
            .await?
            .is_some();
        if !marked {
            return Ok(true);
        }
        let live = match (data.user_id, self.session_ref()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(session_ref)) => self.sessions.registry().is_live(&session_ref).await?,
        };
        if live {
            self.session.remove::<serde_json::Value>(MIGRATED).await?;
            // Saving needs the record's expiry set again (see `write`).
            self.write(data).await?;
        } else {
            tracing::info!(session = ?self.session_ref(), "a migrated copy of an ended session was removed");
            self.session.flush().await?;
            self.data = None;
        }
        Ok(live)
    }

    async fn end(&mut self, kind: EventKind, reason: EndReason) -> Result<(), SessionError> {
        let user_id = self.user_id();
        let session_ref = self.session_ref();
        self.session.flush().await?;
        if user_id.is_some() {
            self.end_registration(session_ref.as_ref(), reason).await;
            self.sessions.audit().record(
                AuditEvent::new(kind)
                    .user(user_id)
                    .session(session_ref)
                    .client(self.client())
                    .reason(reason.as_str()),
            );
        }
        self.data = None;
        Ok(())
    }
}

impl AppSession {
    async fn from_parts(parts: &Parts, activity: Activity) -> Result<Self, SessionError> {
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
        let this = Self::load(session, sessions, &ClientInfo::from_parts(parts), activity).await?;
        if this.user_id().is_some() {
            if let Some(marker) = parts.extensions.get::<ServedToUser>() {
                marker.set();
            }
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
