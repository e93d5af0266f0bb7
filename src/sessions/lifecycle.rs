//! The session lifecycle: every way a session starts, changes its ID or ends, in one place.
//!
//! Each operation writes the store, the registry and the audit trail in one order, chosen
//! so that a step that fails leaves no half state behind:
//!
//! - **start** ([`AppSession::log_in`]): store, then registry, then audit. When the
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

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbErr};
use tower_sessions::session_store::SessionStore;

use super::{
    audit::{self, Actor, AuditCounts, AuditEvent},
    csrf,
    data::{ClientInfo, SessionData, MIGRATED},
    error::SessionError,
    events::{EndReason, EventKind},
    jobs::JobKind,
    keys::{SessionRef, StoreKey},
    registry::{store_key_of, NewEntry, Registration, SessionRegistry},
    time::{chrono_time, now},
    AppSession, Sessions,
};
use crate::models::_entities::user_sessions;

impl AppSession {
    /// Logs `user_id` in: the session gets a new ID (the old record is deleted at once, so
    /// a fixated ID is worthless), fresh timestamps and a fresh CSRF token. The session is
    /// registered under `credential_generation`, the account's generation read with the
    /// password hash that was checked; past the per-user limit the least recently used
    /// sessions end.
    ///
    /// # Errors
    /// When the store or the registry fails, or [`SessionError::CredentialsChanged`] when
    /// the account's generation moved on or it was disabled since it was read; the user is
    /// then not logged in, the browser gets no cookie for the session and the store keeps
    /// no record of it.
    pub async fn log_in(
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
                    expires_at: chrono_time(self.expires_at(&data)),
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
    pub(super) fn audit_platform_switch(&self, platform_id: Option<i64>) {
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
    pub(super) async fn record_touch(&self, data: &SessionData) -> bool {
        let (Some(_), Some(session_ref)) = (data.user_id, self.session_ref()) else {
            return true;
        };
        let expires_at = chrono_time(self.expires_at(data));
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
    pub(super) async fn forget_ended(&mut self) -> Result<(), SessionError> {
        tracing::info!(session = ?self.session_ref(), "the registry says this session has ended; its record is removed");
        self.session.flush().await?;
        self.data = None;
        Ok(())
    }

    /// Removes a record that cannot be read (garbage, truncated, sealed with an unknown
    /// key, another format) and audits it; the request goes on as anonymous. The cookie's
    /// ID is not reused: a session started on this request gets a fresh one.
    pub(super) async fn discard_unreadable(&mut self, reason: &str) -> Result<(), SessionError> {
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
    pub(super) async fn confirm_migrated(
        &mut self,
        data: &SessionData,
    ) -> Result<bool, SessionError> {
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
    pub(super) async fn end(&mut self, reason: EndReason) -> Result<(), SessionError> {
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

    /// Live sessions per store (for the admin page, `/metrics` and `sessions_stats`).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_counts_by_store(&self) -> Result<Vec<(String, u64)>, SessionError> {
        Ok(self.registry().live_counts_by_store().await?)
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
    let at = chrono::Utc::now().fixed_offset();
    audit::insert_events(
        conn,
        events.iter().cloned().map(|e| e.into_row(at)).collect(),
    )
    .await
}

/// Logs and counts events written with their change, once it committed.
fn observe(events: &[AuditEvent]) {
    for event in events {
        event.observe();
    }
}
