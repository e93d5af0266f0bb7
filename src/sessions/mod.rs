//! Server-side sessions, as a small library inside the app.
//!
//! The browser holds one opaque ID (128 bits from a CSPRNG) in an HttpOnly cookie;
//! everything else lives in a store on the server. The pieces, each in its own file:
//!
//! - [`settings`]: `settings.sessions`, checked once at start into a [`SessionConfig`];
//! - [`stores`]: memory, file and Redis stores behind one [`stores::Backend`], wrapped in a
//!   counting [`stores::Instrumented`] layer;
//! - [`policy`]: idle timeout, absolute lifetime and the touch interval, as pure functions;
//! - [`data`]: what a record holds ([`data::SessionData`]);
//! - [`session`]: [`AppSession`], the typed extractor controllers use;
//! - [`layer`]: the middleware that reads the cookie and saves what changed;
//! - [`csrf`]: synchronizer tokens.
//!
//! [`Sessions`] ties them together for one running app: it is built once from the Loco
//! context and shared by the middleware, the extractors, health checks and tasks.

pub mod csrf;
pub mod data;
pub mod error;
pub mod layer;
pub mod policy;
pub mod session;
pub mod settings;
pub mod stores;

use std::sync::Arc;

use loco_rs::app::AppContext;

use self::stores::{Backend, Instrumented, StoreCounts, StoreHealth};
pub use self::{
    data::ClientInfo,
    error::SessionError,
    session::{AppSession, SessionView},
    settings::{SessionConfig, StoreKind},
};

/// The session layer of one running app: checked settings and the opened store.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    store: Arc<Instrumented<Backend>>,
}

impl Sessions {
    /// Checks the settings and opens the store.
    ///
    /// # Errors
    /// One line naming the setting that stops the start.
    pub fn open(config: SessionConfig) -> Result<Self, String> {
        let backend = Backend::open(&config)?;
        Ok(Self {
            config,
            store: Arc::new(Instrumented::new(backend)),
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
        let sessions = Arc::new(Self::open(config)?);
        ctx.shared_store.insert(sessions.clone());
        Ok(sessions)
    }

    #[must_use]
    pub const fn config(&self) -> &SessionConfig {
        &self.config
    }

    #[must_use]
    pub fn store_kind(&self) -> StoreKind {
        self.store.inner().kind()
    }

    /// The store, as tower-sessions' `Session` wants it.
    #[must_use]
    pub fn store(&self) -> Arc<Instrumented<Backend>> {
        self.store.clone()
    }

    /// The opened backend, for health checks, monitoring and maintenance.
    #[must_use]
    pub fn backend(&self) -> &Backend {
        self.store.inner()
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
}
