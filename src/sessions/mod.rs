//! Server-side sessions, as a small library inside the app.
//!
//! The browser holds one opaque ID (128 bits from a CSPRNG) in an HttpOnly cookie;
//! everything else lives on the server. The files read top-down in layers, and no file
//! imports one above it (`module_cycles.py` finds no cycle):
//!
//! **Leaves** import no other part of the layer:
//! - [`time`]: Unix seconds, the unit of every session timestamp, and their text forms;
//! - [`keys`]: the [`SessionSecret`](keys::SessionSecret), and the two names an
//!   [`IdHasher`] derives from a cookie's ID: the
//!   [`StoreKey`](keys::StoreKey) the record is filed under (a type of its own, never
//!   confusable with the ID) and the [`SessionRef`] logs, SQL and URLs use;
//! - [`events`]: what happens to sessions ([`events::EventKind`]), why they end
//!   ([`events::EndReason`]) and which event each end is, in one place;
//! - [`policy`]: idle timeout, absolute lifetime and touch interval, as pure functions;
//! - [`data`]: what a record holds ([`data::SessionData`]);
//! - [`csrf`]: synchronizer tokens, and signed double-submit tokens for anonymous forms;
//!   [`error`]: [`SessionError`];
//! - [`stores::ops`]: store kinds, store errors and [`stores::ops::StoreOps`], what every
//!   store offers beyond tower-sessions' `SessionStore` (kind, keys, sweep, usage, ping).
//!
//! **Components** import only leaves:
//! - [`stores`]: one file per store (memory, file, Redis, database), each implementing
//!   `SessionStore` and `StoreOps`, and the wrappers composed around them: keyed by
//!   [`StoreKey`](keys::StoreKey) ([`stores::hashed`]), sealed ([`stores::encrypted`]),
//!   size-limited ([`stores::limited`]), counted ([`stores::Instrumented`]);
//! - [`registry`]: one SQL row per session, for "my sessions", limits and revocation;
//! - [`audit`]: the lifecycle events, written to SQL off the request path;
//! - [`metrics`]: every Prometheus series name: counters driven by the audit trail, the
//!   store wrapper and the HTTP stack, and the rendering of scrape-time readings.
//! - [`throttle`]: password-guess counters per account and per IP, each attempt reserved
//!   before the password is checked (one Redis script, or one SQL upsert).
//!
//! [`settings`] checks `settings.sessions` once into a [`SessionConfig`], and
//! [`stores::Backend::open`] is the one place that turns it into a store.
//!
//! **The service**: [`Sessions`] composes the store stack, the registry, the audit trail
//! and the login throttle ([`throttle`]) for one running app. It is built once from the
//! Loco context and shared by the middleware, the extractors, health checks and tasks.
//!
//! **On top**:
//! - [`lifecycle`]: every way a session starts, rotates and ends (login, logout, expiry,
//!   revocation of one, a user's or everyone's, password change, disabling), each writing
//!   store, registry and audit trail in one order that leaves no half state; and the
//!   query functions controllers read the registry through;
//! - [`login`]: logging in and checking a current password as domain operations
//!   (throttle, authentication, audit, outcome);
//! - [`session`]: [`AppSession`], the typed extractor controllers use;
//! - [`layer`]: the middleware that reads the cookie and saves what changed;
//! - [`maintenance`]: operator jobs (cleanup, statistics, moving sessions between stores);
//! - [`monitoring`]: what `/metrics` reads at scrape time (the store's ping, Redis's
//!   memory, the audit queue, the last cleanup runs), rendered by [`metrics`].

pub mod audit;
pub mod csrf;
pub mod data;
pub mod error;
pub mod events;
pub mod keys;
pub mod layer;
pub mod lifecycle;
pub mod login;
pub mod maintenance;
pub mod metrics;
pub mod monitoring;
pub mod policy;
pub mod registry;
pub mod session;
pub mod settings;
pub mod stores;
pub mod throttle;
pub mod time;

use std::sync::Arc;

use loco_rs::app::AppContext;
use sea_orm::DatabaseConnection;
use tower_sessions::session::Id;

use self::{
    audit::AuditLog,
    registry::SessionRegistry,
    stores::{
        encrypted::Encrypted,
        hashed::{HashedIds, IdHasher},
        limited::SizeLimited,
        Backend, Instrumented, StoreCounts, StoreHealth,
    },
    throttle::LoginThrottle,
};
pub use self::{
    data::ClientInfo,
    error::SessionError,
    keys::SessionRef,
    session::AppSession,
    settings::{SessionConfig, StoreKind},
};

/// The store stack every request goes through, outside in: counted, size-limited, keyed
/// by hashed IDs, sealed (when `encrypt` is on), stored.
pub type SessionStack = Instrumented<SizeLimited<HashedIds<Encrypted<Backend>>>>;

/// Why the session layer cannot start: one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    Store(#[from] stores::StoreError),
}

/// The session layer of one running app.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    store: Arc<SessionStack>,
    registry: SessionRegistry,
    audit: AuditLog,
    throttle: LoginThrottle,
}

impl Sessions {
    /// Opens the store, the registry and the audit writer (which needs a Tokio runtime).
    ///
    /// # Errors
    /// One line naming the setting that stops the start.
    pub fn open(config: SessionConfig, db: DatabaseConnection) -> Result<Self, StartError> {
        let backend = Backend::open(&config, &db)?;
        let hasher = IdHasher::new(&config.secret);
        let throttle = LoginThrottle::new(
            &backend,
            db.clone(),
            hasher.clone(),
            config.throttle.clone(),
        );
        let audit = AuditLog::start(db.clone());
        let sealed = Encrypted::new(backend, config.encryption.clone());
        let limited = SizeLimited::new(HashedIds::new(sealed, hasher), config.max_record_bytes);
        Ok(Self {
            config,
            store: Arc::new(Instrumented::new(limited)),
            registry: SessionRegistry::new(db),
            audit,
            throttle,
        })
    }

    /// The app's session layer, opened on first use and kept in the context's shared
    /// store, so the web server, tasks and health checks share one store and one pool.
    ///
    /// # Errors
    /// One line naming the setting that stops the start.
    pub fn from_context(ctx: &AppContext) -> Result<Arc<Self>, StartError> {
        if let Some(sessions) = ctx.shared_store.get::<Arc<Self>>() {
            return Ok(sessions);
        }
        let config =
            SessionConfig::from_loco_settings(ctx.config.settings.as_ref(), &ctx.environment)?;
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

    fn hashed(&self) -> &HashedIds<Encrypted<Backend>> {
        self.store.inner().inner()
    }

    /// The store under the ID hashing: keyed by store keys (not cookie IDs), records
    /// sealed when encryption is on. Revocation and cleanup work at this level.
    #[must_use]
    pub fn keyed_store(&self) -> &Encrypted<Backend> {
        self.hashed().inner()
    }

    /// The opened backend, keyed by store keys, holding records as stored.
    #[must_use]
    pub fn backend(&self) -> &Backend {
        self.keyed_store().inner()
    }

    #[must_use]
    pub fn hasher(&self) -> &IdHasher {
        self.hashed().hasher()
    }

    /// The fingerprint a session started by `client` carries: a keyed hash of its user
    /// agent and, when configured, of its network (IPv4 /24, IPv6 /64).
    #[must_use]
    pub fn fingerprint(&self, client: &ClientInfo) -> String {
        self.hasher()
            .fingerprint(&client.user_agent, &self.fingerprint_network(client))
    }

    /// Whether a session's stored fingerprint is that of `client`.
    #[must_use]
    pub fn fingerprint_matches(&self, stored: &str, client: &ClientInfo) -> bool {
        self.hasher().fingerprint_matches(
            stored,
            &client.user_agent,
            &self.fingerprint_network(client),
        )
    }

    fn fingerprint_network(&self, client: &ClientInfo) -> String {
        if self.config.fingerprint.bind_ip_prefix {
            client
                .ip
                .as_deref()
                .and_then(network_prefix)
                .unwrap_or_default()
        } else {
            String::new()
        }
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

    #[must_use]
    pub const fn throttle(&self) -> &LoginThrottle {
        &self.throttle
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

/// The network an address belongs to, for fingerprints: its IPv4 /24 or IPv6 /64.
fn network_prefix(ip: &str) -> Option<String> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0/24"))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
        }
    }
}

impl From<tower_sessions::session_store::Error> for SessionError {
    fn from(error: tower_sessions::session_store::Error) -> Self {
        tower_sessions::session::Error::Store(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::network_prefix;

    #[test]
    fn networks_are_the_ipv4_24_and_ipv6_64() {
        assert_eq!(
            network_prefix("203.0.113.77").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network_prefix("2001:db8:1:2:3:4:5:6").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(network_prefix("not an ip"), None);
    }
}
