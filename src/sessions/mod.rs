//! Server-side sessions, as a small library inside the app.
//!
//! The browser holds one opaque ID (128 bits from a CSPRNG) in an HttpOnly cookie;
//! everything else lives on the server. The pieces, each in its own file:
//!
//! - [`settings`]: `settings.sessions`, checked once at start into a [`SessionConfig`];
//! - [`stores`]: memory, file and Redis stores behind one [`stores::Backend`], keyed by a
//!   keyed hash of the ID ([`stores::hashed`]) and counted ([`stores::Instrumented`]);
//! - [`policy`]: idle timeout, absolute lifetime and the touch interval, as pure functions;
//! - [`data`]: what a record holds ([`data::SessionData`]);
//! - [`session`]: [`AppSession`], the typed extractor controllers use;
//! - [`layer`]: the middleware that reads the cookie and saves what changed;
//! - [`registry`]: one SQL row per session, for "my sessions", limits and revocation;
//! - [`audit`]: the lifecycle events, written to SQL off the request path;
//! - [`csrf`]: synchronizer tokens.
//!
//! [`Sessions`] ties them together for one running app: it is built once from the Loco
//! context and shared by the middleware, the extractors, health checks and tasks.

pub mod audit;
pub mod csrf;
pub mod data;
pub mod error;
pub mod layer;
pub mod policy;
pub mod registry;
pub mod session;
pub mod settings;
pub mod stores;

use std::sync::Arc;

use loco_rs::app::AppContext;
use sea_orm::DatabaseConnection;
use tower_sessions::{session::Id, session_store::SessionStore};

use self::{
    audit::{AuditEvent, AuditLog, EventKind},
    registry::{store_key_of, EndReason, SessionRegistry},
    stores::{
        hashed::{HashedIds, IdHasher},
        Backend, Instrumented, StoreCounts, StoreHealth,
    },
};
pub use self::{
    data::ClientInfo,
    error::SessionError,
    session::{AppSession, SessionView},
    settings::{SessionConfig, StoreKind},
    stores::hashed::SessionRef,
};
use crate::models::_entities::user_sessions;

/// The store stack every request goes through: counted, then keyed by hashed IDs.
pub type SessionStack = Instrumented<HashedIds<Backend>>;

/// The session layer of one running app.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    store: Arc<SessionStack>,
    registry: SessionRegistry,
    audit: AuditLog,
}

impl Sessions {
    /// Opens the store, the registry and the audit writer (which needs a Tokio runtime).
    ///
    /// # Errors
    /// One line naming the setting that stops the start.
    pub fn open(config: SessionConfig, db: DatabaseConnection) -> Result<Self, String> {
        let backend = Backend::open(&config)?;
        let hasher = IdHasher::new(&config.secret);
        Ok(Self {
            config,
            store: Arc::new(Instrumented::new(HashedIds::new(backend, hasher))),
            registry: SessionRegistry::new(db.clone()),
            audit: AuditLog::start(db),
        })
    }

    /// The app's session layer, opened on first use and kept in the context's shared
    /// store, so the web server, tasks and health checks share one store and one pool.
    ///
    /// # Errors
    /// One line naming the setting that stops the start.
    pub fn from_context(ctx: &AppContext) -> Result<Arc<Self>, String> {
        if let Some(sessions) = ctx.shared_store.get::<Arc<Self>>() {
            return Ok(sessions);
        }
        let config =
            SessionConfig::from_loco_settings(ctx.config.settings.as_ref(), &ctx.environment)
                .map_err(|e| e.to_string())?;
        let sessions = Arc::new(Self::open(config, ctx.db.clone())?);
        ctx.shared_store.insert(sessions.clone());
        Ok(sessions)
    }

    #[must_use]
    pub const fn config(&self) -> &SessionConfig {
        &self.config
    }

    #[must_use]
    pub fn store_kind(&self) -> StoreKind {
        self.backend().kind()
    }

    /// The store, as tower-sessions' `Session` wants it.
    #[must_use]
    pub fn store(&self) -> Arc<SessionStack> {
        self.store.clone()
    }

    /// The opened backend, keyed by store keys (not cookie IDs).
    #[must_use]
    pub fn backend(&self) -> &Backend {
        self.store.inner().inner()
    }

    #[must_use]
    pub fn hasher(&self) -> &IdHasher {
        self.store.inner().hasher()
    }

    /// The name logs, SQL and URLs use for the session with cookie ID `id`.
    #[must_use]
    pub fn session_ref(&self, id: &Id) -> SessionRef {
        self.hasher().session_ref(id)
    }

    #[must_use]
    pub const fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    #[must_use]
    pub const fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Operation counts since start.
    #[must_use]
    pub fn store_counts(&self) -> StoreCounts {
        self.store.counters().snapshot()
    }

    /// Whether the store answers, and how fast.
    pub async fn health(&self) -> StoreHealth {
        self.backend().health().await
    }

    /// Ends the session of registry row `row` now: its record leaves the store (its next
    /// request is anonymous), its row is marked ended, and the trail says why.
    ///
    /// # Errors
    /// When the store or the registry fails; the session then still exists.
    pub async fn revoke(
        &self,
        row: &user_sessions::Model,
        reason: EndReason,
    ) -> Result<(), SessionError> {
        if let Some(key) = store_key_of(row) {
            self.backend().delete(&key).await?;
        }
        let session_ref = SessionRef::parse(&row.session_ref);
        if let Some(session_ref) = &session_ref {
            self.registry.end(session_ref, reason).await?;
        }
        self.audit.record(
            AuditEvent::new(EventKind::Revoked)
                .user(Some(row.user_id))
                .session(session_ref)
                .reason(reason.as_str()),
        );
        Ok(())
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
    ) -> Result<usize, SessionError> {
        let rows = self.registry.live_for_user(user_id).await?;
        let mut ended = 0;
        for row in rows
            .iter()
            .filter(|r| keep.is_none_or(|k| k.as_str() != r.session_ref))
        {
            self.revoke(row, reason).await?;
            ended += 1;
        }
        Ok(ended)
    }

    /// Ends every live session of every user; how many ended.
    ///
    /// # Errors
    /// When the store or the registry fails part way.
    pub async fn revoke_everyone(&self, reason: EndReason) -> Result<usize, SessionError> {
        let rows = self.registry.live().await?;
        for row in &rows {
            self.revoke(row, reason).await?;
        }
        Ok(rows.len())
    }
}

impl From<tower_sessions::session_store::Error> for SessionError {
    fn from(error: tower_sessions::session_store::Error) -> Self {
        tower_sessions::session::Error::Store(error).into()
    }
}
