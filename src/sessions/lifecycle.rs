//! The session lifecycle: every way a session starts, changes its ID or ends, in one place.
//!
//! Each operation writes the store, the registry and the audit trail in one order, chosen
//! so that a step that fails leaves no half state behind:
//!
//! - **start** ([`AppSession::establish`]): store, then registry, then audit. When the
//!   registry refuses the new session its record is deleted again and no cookie is issued:
//!   a session the registry does not know could never be listed or revoked.
//! - **rotate** ([`AppSession::rotate`]): store, then registry; a registry failure ends the
//!   session rather than leaving a record under a key no row points to, and so does a row
//!   that ended meanwhile (a revoke racing the rotation is never undone).
//! - **end** (logout, expiry, stolen cookie, disabled user) and **revoke** (one, a user's,
//!   everyone's, on a password change, on disabling): store first, then registry, then
//!   audit. A record is gone before any row says "ended"; a registry failure after that
//!   leaves a row whose record is gone, which the cleanup prunes. So a record the registry
//!   marks ended is never left in the store.
//!
//! Sessions carry the account's credential generation they were opened with: a login
//! registers only under the generation it read with the password hash, and a password
//! change or a disable bumps it before listing the sessions it ends, so no login racing
//! them outlives them.
//!
//! Controllers call these and the query functions at the end ([`Sessions::live_sessions_of`]
//! and friends); they never reach the registry or the audit trail directly.
//!
//! # Why [`AppSession`] lives here, whole
//!
//! [`AppSession`] is the one typed door to the request's session: controllers ask it who
//! is logged in, for the CSRF token, to log in or out, to rotate the ID or switch
//! platform, and never touch record keys, the registry or the audit trail. Its struct and
//! every method are in this file, reading and lifecycle alike, because they cannot be
//! told apart: reading the session ([`AppSession::load`]) is where expiry, a stolen
//! cookie, an unreadable or a revoked record are found, and each of those ends the
//! session, writing store, registry and trail in the order above. Split over two files,
//! the reading half would have to call the ending half and the ending half would need the
//! struct, one file importing the other both ways; or the reading half would write
//! lifecycle events itself, and this file would no longer be their only writer. The
//! revocations that need no request (`impl Sessions` at the end) sit beside it for the
//! same reason: one file writes every lifecycle event.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use sea_orm::{ConnectionTrait, DbErr};
use tower_sessions::{session_store::SessionStore, Expiry, Session};

use super::{
    audit::{self, Actor, AuditCounts, AuditEvent},
    clock::{now, offset_time, sql_time, UnixTime},
    csrf,
    data::{ClientInfo, SessionData, MIGRATED},
    error::SessionError,
    events::{EndReason, EventKind},
    jobs::JobKind,
    keys::{SessionRef, StoreKey},
    layer::RequestSession,
    policy::Verdict,
    registry::{store_key_of, LiveCounts, LiveTable, NewEntry, Registration, SessionRegistry},
    Sessions,
};
use crate::models::_entities::user_sessions;

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
    /// The client of the request at hand, which the trail compares with the session's.
    request_client: ClientInfo,
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
        let expires_at = offset_time(store_expiry).ok_or_else(|| {
            SessionError::Corrupt(format!("expiry {store_expiry} is out of range"))
        })?;
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

impl AppSession {
    /// Establishes the session of `user_id`, whose password [`super::login::log_in`] just
    /// checked: the session gets a new ID (the old record is deleted at once, so a fixated
    /// ID is worthless), fresh timestamps and a fresh CSRF token. The session is
    /// registered under `credential_generation`, the account's generation read with the
    /// password hash that was checked; past the per-user limit the least recently used
    /// sessions end.
    ///
    /// # Errors
    /// When the store or the registry fails, or [`SessionError::CredentialsChanged`] when
    /// the account's generation moved on or it was disabled since it was read; the user is
    /// then not logged in, the browser gets no cookie for the session and the store keeps
    /// no record of it.
    pub async fn establish(
        &mut self,
        user_id: i64,
        credential_generation: i64,
        remember: bool,
        client: ClientInfo,
    ) -> Result<(), SessionError> {
        // Logging in over a logged-in session ends that one: its record goes with the new
        // ID (`cycle_id` deletes it), then its row.
        let replaced = self.user_id().and(self.session_ref());
        self.session.cycle_id().await?;
        if let Some(old_ref) = &replaced {
            if let Err(error) = self
                .sessions
                .registry()
                .end(old_ref, EndReason::Logout)
                .await
            {
                tracing::warn!(%error, session = %old_ref, "registry end failed");
            }
        }
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
            credential_generation,
        };
        self.write(&data).await?;
        let key = self.save_under_new_id().await?;
        let session_ref = key.session_ref();
        let registered = self
            .sessions
            .registry()
            .register(
                NewEntry {
                    user_id,
                    session_ref: session_ref.clone(),
                    store_key: key,
                    store: self.store_name(),
                    expires_at: sql_time(self.expires_at(&data)),
                    user_agent: client.user_agent.clone(),
                    ip: client.ip.clone(),
                    credential_generation,
                },
                self.sessions.config().max_per_user,
            )
            .await;
        let over_limit = match registered {
            Ok(Registration::Registered { over_limit }) => over_limit,
            Ok(Registration::CredentialsChanged) => {
                self.abandon().await;
                return Err(SessionError::CredentialsChanged);
            }
            Err(error) => {
                self.abandon().await;
                return Err(error.into());
            }
        };
        let audit = self.sessions.audit();
        for kind in [EventKind::Created, EventKind::Login] {
            audit.record(
                AuditEvent::new(kind)
                    .user(Some(user_id))
                    .session(Some(session_ref.clone()))
                    .client(client.clone()),
            );
        }
        // The user's own login ends them, from this login's client.
        let actor = Actor { user_id, client };
        for row in &over_limit {
            // The new session is complete; an older one that cannot be ended now stays
            // live and consistent (record and row), one over the limit until it ends.
            if let Err(error) = self
                .sessions
                .revoke(row, EndReason::RevokedByLimit, Some(&actor))
                .await
            {
                tracing::warn!(%error, session = %row.session_ref, "a session over the limit could not be ended");
            }
        }
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

    /// Ends the session because its user may no longer use it (deleted or disabled).
    ///
    /// # Errors
    /// When the store cannot delete the record.
    pub async fn end_for(&mut self, reason: EndReason) -> Result<(), SessionError> {
        self.end(reason).await
    }

    /// Gives the session a new ID (the old one dies at once) and a new CSRF token, keeping
    /// who is logged in. Used after a privilege change such as a new password.
    ///
    /// # Errors
    /// When the store or the registry fails; the session has then ended (a rotated session
    /// the registry does not know could not be revoked). [`SessionError::Ended`] when its
    /// registry row ended meanwhile (revoked while this request ran): the new record is
    /// removed and the session stays ended.
    pub async fn rotate(&mut self, reason: EndReason) -> Result<(), SessionError> {
        let Some(mut data) = self.data.clone() else {
            return Ok(());
        };
        let old_ref = self.session_ref();
        self.session.cycle_id().await?;
        data.csrf_token = csrf::new_token();
        data.last_activity = now();
        self.write(&data).await?;
        let key = self.save_under_new_id().await?;
        let new_ref = key.session_ref();
        if let Some(old_ref) = &old_ref {
            match self
                .sessions
                .registry()
                .rotate(old_ref, &new_ref, key, data.credential_generation)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    // Whoever ended the row wrote the trail.
                    tracing::info!(session = %old_ref, "a session ended while it rotated; the rotation is undone");
                    self.abandon().await;
                    return Err(SessionError::Ended);
                }
                Err(error) => {
                    self.abandon().await;
                    // Best effort: the old ID is dead already; say so if the database lets us.
                    if let Err(error) = self.sessions.registry().end(old_ref, reason).await {
                        tracing::warn!(%error, session = %old_ref, "registry end failed");
                    }
                    return Err(error.into());
                }
            }
        }
        self.data = Some(data);
        self.sessions
            .audit()
            .record(self.audit_event(EventKind::Rotated).reason(reason.as_str()));
        Ok(())
    }

    /// After the user changed their password from this session (the account's credential
    /// generation is now `credential_generation`): every other session of theirs ends,
    /// this one gets a new ID and carries the new generation, and the trail says so. How
    /// many others ended.
    ///
    /// # Errors
    /// When the store or the registry fails part way; sessions ended so far stay ended.
    /// [`SessionError::Ended`] when this session was revoked meanwhile.
    pub async fn password_changed(
        &mut self,
        credential_generation: i64,
    ) -> Result<usize, SessionError> {
        let Some(user_id) = self.user_id() else {
            return Ok(0);
        };
        let keep = self.session_ref();
        let ended = self
            .sessions
            .revoke_user(
                user_id,
                keep.as_ref(),
                EndReason::PasswordChanged,
                self.actor().as_ref(),
            )
            .await?;
        // The password changed whatever becomes of this session.
        let mut event = self
            .audit_event(EventKind::PasswordChanged)
            .reason(format!("{ended} other sessions ended"));
        if let Some(data) = &mut self.data {
            data.credential_generation = credential_generation;
        }
        let rotated = self.rotate(EndReason::PasswordChanged).await;
        if rotated.is_ok() {
            event = event.session(self.session_ref());
        }
        self.sessions.audit().record(event);
        rotated?;
        Ok(ended)
    }

    /// Records a platform switch in the trail.
    fn audit_platform_switch(&self, platform_id: Option<i64>) {
        self.sessions.audit().record(
            self.audit_event(EventKind::PlatformSwitched).reason(
                platform_id.map_or_else(|| "none".to_string(), |id| format!("platform {id}")),
            ),
        );
    }

    /// An event about this session: its user, its ref, the client that logged in and,
    /// where it differs, the client of this request.
    pub(super) fn audit_event(&self, kind: EventKind) -> AuditEvent {
        AuditEvent::new(kind)
            .user(self.user_id())
            .session(self.session_ref())
            .client(self.client())
            .request(self.request_client.clone())
    }

    /// Keeps the registry's "last seen" in step with the touch (once per interval);
    /// whether the session is still live there. A row that is gone or ended means the
    /// session has ended: the caller ends it too. A registry failure is logged, never the
    /// user's problem.
    async fn record_touch(&self, data: &SessionData) -> bool {
        let (Some(_), Some(session_ref)) = (data.user_id, self.session_ref()) else {
            return true;
        };
        let expires_at = sql_time(self.expires_at(data));
        match self
            .sessions
            .registry()
            .touch(&session_ref, expires_at)
            .await
        {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!(%error, session = %session_ref, "registry touch failed");
                true
            }
        }
    }

    /// Removes the record of a session the registry says has ended (revoked elsewhere,
    /// whose revoker wrote the trail); the request goes on as anonymous.
    async fn forget_ended(&mut self) -> Result<(), SessionError> {
        tracing::info!(session = ?self.session_ref(), "the registry says this session has ended; its record is removed");
        self.session.flush().await?;
        self.data = None;
        Ok(())
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

    /// Ends the session for `reason`: the record first, then the registry row, then the
    /// trail (see the module doc for why in this order).
    async fn end(&mut self, reason: EndReason) -> Result<(), SessionError> {
        let user_id = self.user_id();
        let session_ref = self.session_ref();
        self.session.flush().await?;
        if user_id.is_some() {
            if let Some(session_ref) = &session_ref {
                // A failure leaves a live row whose record is gone; the cleanup prunes it.
                if let Err(error) = self.sessions.registry().end(session_ref, reason).await {
                    tracing::warn!(%error, session = %session_ref, "registry end failed");
                }
            }
            self.sessions.audit().record(
                AuditEvent::new(reason.event())
                    .user(user_id)
                    .session(session_ref)
                    .client(self.client())
                    .request(self.request_client.clone())
                    .reason(reason.as_str()),
            );
        }
        self.data = None;
        Ok(())
    }

    /// Saves the record under its new ID now, not at the end of the request: the registry
    /// needs the ID's key. When the save fails, nothing is left behind.
    async fn save_under_new_id(&mut self) -> Result<StoreKey, SessionError> {
        if let Err(error) = self.session.save().await {
            self.abandon().await;
            return Err(error.into());
        }
        let id = self.session.id().ok_or(SessionError::NotInstalled)?;
        Ok(self.sessions.hasher().store_key(&id))
    }

    /// Undoes a start or rotation that could not be completed: the new record is deleted
    /// and the session emptied, so the middleware clears the cookie instead of setting one.
    async fn abandon(&mut self) {
        if let Err(error) = self.session.flush().await {
            // The record stays under an ID no cookie will carry; the store's expiry or the
            // cleanup removes it.
            tracing::warn!(%error, "an unfinished session's record could not be deleted");
        }
        self.data = None;
    }
}

impl Sessions {
    /// Ends the session of registry row `row` now: its record leaves the store (its next
    /// request is anonymous), its row is marked ended, and the trail says why, the
    /// session's client, and who did it from where (`actor`: the trail names them when
    /// they are not the session's owner, and their client where it differs).
    ///
    /// # Errors
    /// When the store fails (the session then still exists), or the registry fails after
    /// the record is gone (the session has ended; the cleanup prunes the row).
    pub async fn revoke(
        &self,
        row: &user_sessions::Model,
        reason: EndReason,
        actor: Option<&Actor>,
    ) -> Result<(), SessionError> {
        if let Some(key) = store_key_of(row) {
            self.backend().delete(key.as_id()).await?;
        }
        if let Some(session_ref) = &SessionRef::parse(&row.session_ref) {
            if !self.registry().end(session_ref, reason).await? {
                // Ended meanwhile by someone else (two logins past the limit at once),
                // who wrote the trail.
                return Ok(());
            }
        }
        self.audit().record(end_event(row, reason, actor));
        Ok(())
    }

    /// Ends the live sessions among `rows` (at most a batch) for `reason`: their rows are
    /// marked ended and their events written in ONE transaction, then their records are
    /// deleted; how many this call ended. A row ended already (by anyone, or by an earlier
    /// run of an interrupted job) is neither ended nor audited again, so running a batch
    /// twice audits each end once, and a batch that fails writes neither.
    ///
    /// Unlike [`Self::revoke`] (record first), the records go after the commit. Deleting
    /// them first, a failure or a crash before the commit would leave live rows whose
    /// sessions are gone and no event saying so: the cleanup would prune those rows as
    /// "vanished", unaudited, and raise the registry-and-store alert. After the commit, a
    /// crash before the deletes leaves records of rows marked ended: the session is
    /// refused at its next touch, where the registry says it ended, and the next job,
    /// finding this one failed or interrupted, deletes the records of the rows it ended
    /// first;
    /// deleting a record twice is harmless.
    ///
    /// # Errors
    /// A database error (nothing of the batch happened), or the store failing to delete a
    /// record after the commit (every other record of the batch is still deleted).
    pub async fn end_batch(
        &self,
        rows: &[user_sessions::Model],
        reason: EndReason,
        actor: Option<&Actor>,
    ) -> Result<usize, SessionError> {
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let txn = self.registry().begin().await?;
        let ended = SessionRegistry::end_rows(&txn, &ids, reason).await?;
        let events: Vec<AuditEvent> = ended
            .iter()
            .map(|row| end_event(row, reason, actor))
            .collect();
        write_events(&txn, &events).await?;
        txn.commit().await?;
        observe(&events);
        let mut failed = None;
        for row in &ended {
            if let Some(key) = store_key_of(row) {
                if let Err(error) = self.backend().delete(key.as_id()).await {
                    tracing::warn!(%error, session = %row.session_ref, "an ended session's record could not be deleted");
                    failed = Some(error);
                }
            }
        }
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(ended.len()),
        }
    }

    /// Removes up to `limit` registry rows of sessions that expired while their user was
    /// away and writes their end (`idle_expired` or `absolute_expired`, "found by cleanup")
    /// in the same transaction: a run interrupted and run again audits each once, and
    /// none is lost. How many. (The app ends a session it finds expired itself, and marks
    /// its row ended: those are not here.)
    ///
    /// # Errors
    /// A database error; nothing of the batch happened then.
    pub async fn end_expired_unseen(&self, limit: u64) -> Result<u64, DbErr> {
        let txn = self.registry().begin().await?;
        let rows = SessionRegistry::take_expired(&txn, limit).await?;
        let policy = &self.config().policy;
        let events: Vec<AuditEvent> = rows
            .iter()
            .map(|row| {
                // Which deadline it was follows from the row: a session whose expiry is
                // its absolute deadline ran out of lifetime. The row is created up to a
                // second after the session's own timestamp: allow it.
                let absolute = row.expires_at.timestamp().saturating_add(1)
                    >= policy.absolute_deadline(row.created_at.timestamp());
                let kind = if absolute {
                    EventKind::AbsoluteExpired
                } else {
                    EventKind::IdleExpired
                };
                row_event(row, kind).reason("found by cleanup")
            })
            .collect();
        write_events(&txn, &events).await?;
        txn.commit().await?;
        observe(&events);
        Ok(rows.len() as u64)
    }

    /// Ends the live session named `session_ref` of `owner`, who asks from their own
    /// request; `false` when they have no such session (another user's ref is not theirs
    /// to end).
    ///
    /// # Errors
    /// When the store or the registry fails.
    pub async fn revoke_own(
        &self,
        owner: &Actor,
        session_ref: &SessionRef,
        reason: EndReason,
    ) -> Result<bool, SessionError> {
        let rows = self.registry().live_for_user(owner.user_id).await?;
        let Some(row) = rows.iter().find(|r| r.session_ref == session_ref.as_str()) else {
            return Ok(false);
        };
        self.revoke(row, reason, Some(owner)).await?;
        Ok(true)
    }

    /// Ends every live session of `user_id` but `keep`; how many ended.
    ///
    /// # Errors
    /// When the store or the registry fails part way; sessions ended so far stay ended.
    pub async fn revoke_user(
        &self,
        user_id: i64,
        keep: Option<&SessionRef>,
        reason: EndReason,
        actor: Option<&Actor>,
    ) -> Result<usize, SessionError> {
        let rows = self.registry().live_for_user(user_id).await?;
        self.revoke_rows(&rows, keep, reason, actor).await
    }

    /// Ends every session of a user whom `actor` (an admin) just disabled (which bumped
    /// the account's credential generation first, so no login racing the disable outlives
    /// it), and writes the disable to the trail, sessions or not; how many ended.
    ///
    /// # Errors
    /// When the store or the registry fails part way; sessions ended so far stay ended.
    pub async fn end_on_disable(
        &self,
        user_id: i64,
        actor: Option<&Actor>,
    ) -> Result<usize, SessionError> {
        let ended = self
            .revoke_user(user_id, None, EndReason::UserDisabled, actor)
            .await;
        let mut event = AuditEvent::new(EventKind::AccountDisabled)
            .user(Some(user_id))
            .acted_by(actor);
        // The admin's client is the one that acted: it is the event's client.
        if let Some(actor) = actor {
            event = event.client(actor.client.clone());
        }
        self.audit().record(event.reason(match &ended {
            Ok(n) => format!("sessions ended: {n}"),
            Err(_) => "ending its sessions failed part way".to_string(),
        }));
        ended
    }

    /// Writes a new account to the trail: who registered, from where.
    pub fn registered(&self, user_id: i64, client: ClientInfo) {
        self.audit().record(
            AuditEvent::new(EventKind::Registered)
                .user(Some(user_id))
                .client(client),
        );
    }

    /// Ends every live session of every user but `keep`, here and now, in batches (as
    /// `sessions_revoke all:true` does); how many ended, or `None` when a job ending
    /// everyone's sessions is running already (it is not started twice). Recorded as a
    /// job, so the admin page shows it.
    ///
    /// # Errors
    /// When the store or the registry fails part way; the batches done stay done, and
    /// running it again ends the rest.
    pub async fn revoke_everyone(
        &self,
        keep: Option<&SessionRef>,
        reason: EndReason,
        actor: Option<&Actor>,
    ) -> Result<Option<u64>, SessionError> {
        let Some((job, total)) = self.start_job(actor).await? else {
            return Ok(None);
        };
        self.run_end_everyone(job, total, keep, reason, actor)
            .await
            .map(Some)
    }

    /// Starts ending every live session but `keep` in the background, in batches, and
    /// returns at once: the job's id, or `None` when one is running already (it is not
    /// started twice). Its progress is in [`Self::jobs`].
    ///
    /// # Errors
    /// A database error before the job started.
    pub async fn start_ending_everyone(
        self: &Arc<Self>,
        keep: Option<SessionRef>,
        actor: Option<Actor>,
    ) -> Result<Option<i64>, SessionError> {
        let Some((job, total)) = self.start_job(actor.as_ref()).await? else {
            return Ok(None);
        };
        let sessions = self.clone();
        tokio::spawn(async move {
            // Failures are in the job's row (and logged): nobody waits for this task.
            let _ = sessions
                .run_end_everyone(
                    job,
                    total,
                    keep.as_ref(),
                    EndReason::RevokedByAdmin,
                    actor.as_ref(),
                )
                .await;
        });
        Ok(Some(job))
    }

    /// The job's id and the live sessions it starts from. When the previous job failed or
    /// was interrupted, the records of the sessions that one ended go first: it may have
    /// stopped between a batch's commit and the deletes (see [`Self::end_batch`]).
    async fn start_job(&self, actor: Option<&Actor>) -> Result<Option<(i64, u64)>, SessionError> {
        let total = self.registry().live_count().await?;
        let Some(job) = self
            .jobs()
            .start(JobKind::EndEveryone, actor.map(|a| a.user_id), Some(total))
            .await?
        else {
            return Ok(None);
        };
        if let Some(since) = job.unfinished_since {
            if let Err(error) = self.delete_records_ended_since(since).await {
                if let Err(db_error) = self.jobs().finish(job.id, 0, Some(error.to_string())).await
                {
                    tracing::error!(error = %db_error, job = job.id, "the job's end could not be written");
                }
                return Err(error);
            }
        }
        Ok(Some((job.id, total)))
    }

    /// Deletes the records of the sessions ended by an admin since `since`, a batch at a
    /// time: their rows and events are committed, their records may not be gone (deleting
    /// one twice is harmless).
    async fn delete_records_ended_since(
        &self,
        since: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<(), SessionError> {
        let limit = self.config().maintenance.limit();
        // Registry times are whole seconds: a row ended in the job's first second counts.
        let since = sql_time(since.timestamp());
        let mut after = 0;
        let mut deleted = 0;
        loop {
            let rows = self
                .registry()
                .ended_batch(EndReason::RevokedByAdmin, since, after, limit)
                .await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.id;
            for row in &rows {
                if let Some(key) = store_key_of(row) {
                    self.backend().delete(key.as_id()).await?;
                }
            }
            deleted += rows.len();
            tracing::info!(
                deleted,
                "records of sessions an interrupted job ended, deleted"
            );
            if (rows.len() as u64) < limit {
                return Ok(());
            }
            self.config().maintenance.rest().await;
        }
    }

    /// Job `job`'s batches: each ends up to a batch of live sessions (by id, so rows that
    /// end or start meanwhile do not disturb the walk) and writes the progress; then the
    /// job is closed with the outcome.
    async fn run_end_everyone(
        &self,
        job: i64,
        total: u64,
        keep: Option<&SessionRef>,
        reason: EndReason,
        actor: Option<&Actor>,
    ) -> Result<u64, SessionError> {
        let limit = self.config().maintenance.limit();
        let mut ended = 0;
        let mut after = 0;
        let outcome = loop {
            let rows = match self.registry().live_batch(after, limit).await {
                Ok(rows) => rows,
                Err(error) => break Err(SessionError::from(error)),
            };
            let Some(last) = rows.last() else {
                break Ok(ended);
            };
            after = last.id;
            let batch: Vec<_> = rows
                .iter()
                .filter(|r| keep.is_none_or(|k| k.as_str() != r.session_ref))
                .cloned()
                .collect();
            match self.end_batch(&batch, reason, actor).await {
                Ok(n) => ended += n as u64,
                Err(error) => break Err(error),
            }
            tracing::info!(job, ended, total, "ending everyone's sessions");
            if let Err(error) = self.jobs().progress(job, ended).await {
                tracing::warn!(%error, job, "the job's progress could not be written");
            }
            if (rows.len() as u64) < limit {
                break Ok(ended);
            }
            self.config().maintenance.rest().await;
        };
        let error = outcome.as_ref().err().map(ToString::to_string);
        if let Some(error) = &error {
            tracing::error!(job, ended, %error, "ending everyone's sessions failed");
        } else {
            tracing::info!(job, ended, "ended everyone's sessions");
        }
        if let Err(db_error) = self.jobs().finish(job, ended, error).await {
            tracing::error!(error = %db_error, job, "the job's end could not be written");
        }
        outcome
    }

    async fn revoke_rows(
        &self,
        rows: &[user_sessions::Model],
        keep: Option<&SessionRef>,
        reason: EndReason,
        actor: Option<&Actor>,
    ) -> Result<usize, SessionError> {
        let mut ended = 0;
        for row in rows
            .iter()
            .filter(|r| keep.is_none_or(|k| k.as_str() != r.session_ref))
        {
            self.revoke(row, reason, actor).await?;
            ended += 1;
        }
        Ok(ended)
    }

    /// A user's live sessions, most recently used first (for "my sessions").
    ///
    /// # Errors
    /// A database error.
    pub async fn live_sessions_of(
        &self,
        user_id: i64,
    ) -> Result<Vec<user_sessions::Model>, SessionError> {
        Ok(self.registry().live_for_user(user_id).await?)
    }

    /// Live sessions per store, every one counted (for `sessions_stats`).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_counts_by_store(&self) -> Result<Vec<(String, u64)>, SessionError> {
        Ok(self.registry().live_counts_by_store().await?)
    }

    /// Live sessions per store at a bounded cost, for the admin page and `/metrics`
    /// ([`SessionRegistry::live_counts`](super::registry::SessionRegistry::live_counts)).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_counts(&self) -> Result<LiveCounts, SessionError> {
        Ok(self.registry().live_counts().await?)
    }

    /// The admin's live sessions table: at most `limit` rows, the most recently used
    /// first, of the accounts whose email starts with `email_prefix` (any case).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_table(
        &self,
        email_prefix: &str,
        limit: u64,
    ) -> Result<LiveTable, SessionError> {
        Ok(self.registry().live_table(email_prefix, limit).await?)
    }

    /// The live session named `session_ref`, whoever's it is (for an admin to end it).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_session(
        &self,
        session_ref: &SessionRef,
    ) -> Result<Option<user_sessions::Model>, SessionError> {
        Ok(self.registry().live_by_ref(session_ref).await?)
    }

    /// How writing the audit trail went since start.
    #[must_use]
    pub fn audit_counts(&self) -> AuditCounts {
        self.audit().counts()
    }
}

/// An event about the session of registry row `row`: its user, its ref, the client that
/// logged in.
fn row_event(row: &user_sessions::Model, kind: EventKind) -> AuditEvent {
    AuditEvent::new(kind)
        .user(Some(row.user_id))
        .session(SessionRef::parse(&row.session_ref))
        .client(ClientInfo::new(&row.user_agent, row.ip.clone()))
}

/// The end of `row`'s session for `reason`, by `actor`.
fn end_event(row: &user_sessions::Model, reason: EndReason, actor: Option<&Actor>) -> AuditEvent {
    row_event(row, reason.event())
        .reason(reason.as_str())
        .acted_by(actor)
}

/// Writes `events` on `conn`, the transaction of the change they record.
async fn write_events<C: ConnectionTrait>(conn: &C, events: &[AuditEvent]) -> Result<(), DbErr> {
    let at = sql_time(now());
    let rows: Vec<_> = events.iter().cloned().map(|e| e.into_row(at)).collect();
    audit::insert_events(conn, &rows).await
}

/// Logs and counts events written with their change, once it committed.
fn observe(events: &[AuditEvent]) {
    for event in events {
        event.observe();
    }
}
