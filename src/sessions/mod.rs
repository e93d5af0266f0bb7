//! Server-side sessions, as a small library inside the app.
//!
//! The browser holds one opaque ID (128 bits from a CSPRNG) in an HttpOnly cookie;
//! everything else lives on the server.
//!
//! # Layers
//!
//! The files read bottom-up in layers. A file imports only files of lower layers, or of
//! its own layer without forming a cycle, and nothing here imports `crate::views` or
//! `crate::controllers`. `scripts/check-layers` (run by `scripts/test`, so by CI) reads
//! this list and enforces it; every file of the library is in exactly one layer:
//!
//! - Layer 1 (foundations): `clock.rs`, `keys.rs`, `events.rs`, `policy.rs`,
//!   `client_address.rs`, `data.rs`, `csrf.rs`, `cookies.rs`, `recount.rs`, `hashing.rs`,
//!   `error.rs`, `metrics.rs`, `stores/ops.rs`
//! - Layer 2 (stores): `stores/mod.rs`, `stores/cluster.rs`, `stores/database.rs`,
//!   `stores/encrypted.rs`, `stores/file.rs`, `stores/hashed.rs`, `stores/limited.rs`,
//!   `stores/memory.rs`, `stores/redis.rs`
//! - Layer 3 (configuration): `settings.rs`
//! - Layer 4 (components): `registry.rs`, `audit.rs`, `jobs.rs`, `device.rs`, `throttle.rs`
//! - Layer 5 (service): `mod.rs`
//! - Layer 6 (lifecycle): `layer.rs`, `lifecycle.rs`
//! - Layer 7 (operations): `login.rs`, `signup.rs`, `maintenance.rs`, `monitoring.rs`
//!
//! **Foundations** import nothing of the library but each other:
//! - [`clock`]: the one clock ([`clock::now`]) and the one representation of time inside
//!   the library, Unix seconds, with the conversions at its edges (tower-sessions'
//!   `OffsetDateTime`, SeaORM's `chrono`);
//! - [`keys`]: the [`SessionSecret`](keys::SessionSecret), and the two names an
//!   [`IdHasher`] derives from a cookie's ID: the
//!   [`StoreKey`](keys::StoreKey) the record is filed under (a type of its own, never
//!   confusable with the ID) and the [`SessionRef`] logs, SQL and URLs use;
//! - [`events`]: what happens to sessions ([`events::EventKind`]), why they end
//!   ([`events::EndReason`]) and which event each end is, in one place;
//! - [`policy`]: idle timeout, absolute lifetime and touch interval, as pure functions;
//! - [`client_address`]: the client's address, from the TCP peer or, behind a trusted
//!   proxy, from `X-Forwarded-For` (Rails' `RemoteIp` algorithm), and the one notion of a
//!   client's [`network`](client_address::network);
//! - [`data`]: what a record holds ([`data::SessionData`]) and who sent a request
//!   ([`ClientInfo`], with [`client_address`]);
//! - [`csrf`]: synchronizer tokens, and signed double-submit tokens for anonymous forms;
//! - [`cookies`]: reading a request's cookies by name;
//! - [`recount`]: figures too costly to compute per request, served as last computed and
//!   computed again in the background;
//! - [`hashing`]: Argon2 password hashing behind a bounded, prioritised queue;
//!   [`error`]: [`SessionError`];
//! - [`metrics`]: every Prometheus series name: counters driven by the audit trail, the
//!   store wrapper and the HTTP stack, and the rendering of scrape-time readings;
//! - [`stores::ops`]: store kinds, store errors and [`stores::ops::StoreOps`], what every
//!   store offers beyond tower-sessions' `SessionStore` (kind, create-if-absent, keys,
//!   sweep, usage, ping), [`stores::ops::is_live`], the one expiry check of a record, and
//!   [`stores::ops::create_unique`], every store's `create`.
//!
//! **Stores**: [`stores`], one file per store (memory, file, Redis, database), each
//! implementing `SessionStore` and `StoreOps`, and the wrappers composed around them:
//! keyed by [`StoreKey`](keys::StoreKey) ([`stores::hashed`]), sealed
//! ([`stores::encrypted`]), size-limited ([`stores::limited`]), counted
//! ([`stores::Instrumented`]). They take their settings as plain values
//! ([`stores::StoreConfig`]); [`stores::Backend::open`] is the one place that turns them
//! into a store.
//!
//! **Configuration**: [`settings`] checks `settings.sessions` once into a
//! [`SessionConfig`], one function per settings block; it builds the stores' config, and
//! the stores never read it.
//!
//! **Components**, on the stores and their configuration:
//! - [`registry`]: one SQL row per session, for "my sessions", limits and revocation;
//! - [`audit`]: the lifecycle events, written to SQL off the request path (or with the
//!   change they record, in its transaction: [`audit::insert_events`]);
//! - [`jobs`]: background jobs over sessions and their progress, in SQL;
//! - [`device`]: the signed device cookies of browsers that logged in before;
//! - [`throttle`]: password-guess counters per device cookie, account and IP, and sign-ups
//!   per IP, each attempt reserved before it is judged (one Redis script, or one SQL
//!   upsert).
//!
//! **The service**: [`Sessions`] composes the store stack, the registry, the audit trail
//! and the login throttle ([`throttle`]) for one running app. It is built once from the
//! Loco context and shared by the middleware, the extractors, health checks and tasks.
//!
//! **Lifecycle**:
//! - [`lifecycle`]: [`AppSession`](lifecycle::AppSession), the typed extractor
//!   controllers use, and every way a session starts, rotates and ends (login, logout,
//!   expiry, revocation of one, a user's or everyone's, password change, disabling), each
//!   writing store, registry and audit trail in one order that leaves no half state; and
//!   the query functions controllers read the registry through (why one file: its doc);
//! - [`layer`]: the middleware that reads the cookie and saves what changed.
//!
//! **Operations**:
//! - [`login`]: logging in and checking a current password as domain operations
//!   (throttle, authentication, audit, outcome); [`signup`]: registering, the same way;
//! - [`maintenance`]: operator jobs (cleanup, statistics, moving sessions between stores);
//! - [`monitoring`]: what `/metrics` reads at scrape time (the store's ping, Redis's
//!   memory, the audit queue, the last cleanup runs), rendered by [`metrics`].

pub mod audit;
pub mod client_address;
pub mod clock;
pub mod cookies;
pub mod csrf;
pub mod data;
pub mod device;
pub mod error;
pub mod events;
pub mod hashing;
pub mod jobs;
pub mod keys;
pub mod layer;
pub mod lifecycle;
pub mod login;
pub mod maintenance;
pub mod metrics;
pub mod monitoring;
pub mod policy;
pub mod recount;
pub mod registry;
pub mod settings;
pub mod signup;
pub mod stores;
pub mod throttle;

use std::sync::Arc;

use loco_rs::app::AppContext;
use sea_orm::DatabaseConnection;
use tower_sessions::session::Id;

use self::{
    audit::AuditLog,
    data::ClientInfo,
    device::DeviceCookies,
    error::SessionError,
    hashing::PasswordHashing,
    jobs::SessionJobs,
    keys::{IdHasher, SessionRef},
    recount::{Counted, Recounted},
    registry::SessionRegistry,
    settings::SessionConfig,
    stores::{
        encrypted::Encrypted,
        hashed::HashedIds,
        limited::SizeLimited,
        ops::{StoreError, StoreKind},
        Backend, Instrumented, StoreCounts, StoreHealth,
    },
    throttle::LoginThrottle,
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
    Store(#[from] StoreError),
}

/// The session layer of one running app.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    store: Arc<SessionStack>,
    registry: SessionRegistry,
    audit: AuditLog,
    jobs: SessionJobs,
    throttle: LoginThrottle,
    devices: DeviceCookies,
    hashing: PasswordHashing,
    usage: Recounted<Vec<(&'static str, u64)>>,
}

/// How old the store's usage figures on the admin page get before they are read again (a
/// file store lists its directory for them).
const USAGE_RECOUNT_AGE: std::time::Duration = std::time::Duration::from_secs(60);

impl Sessions {
    /// Opens the store, the registry and the audit writer (which needs a Tokio runtime).
    ///
    /// # Errors
    /// One line naming the setting that stops the start.
    pub fn open(config: SessionConfig, db: DatabaseConnection) -> Result<Self, StartError> {
        let backend = Backend::open(&config.store, &db)?;
        let hasher = IdHasher::new(&config.secret);
        let throttle = LoginThrottle::new(
            &backend,
            db.clone(),
            hasher.clone(),
            config.throttle.clone(),
        );
        let audit = AuditLog::start(db.clone());
        let devices = DeviceCookies::new(
            &config.secret,
            config.cookie.secure,
            config.throttle.device_cookie_lifetime(),
        );
        let hashing = PasswordHashing::new(
            config.password_hashing.concurrency(),
            config.password_hashing.queue,
        );
        let sealed = Encrypted::new(backend, config.encryption.clone());
        let limited = SizeLimited::new(HashedIds::new(sealed, hasher), config.max_record_bytes);
        Ok(Self {
            config,
            store: Arc::new(Instrumented::new(limited)),
            jobs: SessionJobs::new(db.clone()),
            registry: SessionRegistry::new(db),
            audit,
            throttle,
            devices,
            hashing,
            usage: Recounted::new(USAGE_RECOUNT_AGE),
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
                .and_then(|ip| ip.parse().ok())
                .map(|ip| client_address::network(ip, 24, 64).to_string())
                .unwrap_or_default()
        } else {
            String::new()
        }
    }

    /// Who sent the request: its user agent and its address, resolved through the
    /// configured trusted proxies ([`client_address`]).
    #[must_use]
    pub fn client(&self, parts: &axum::http::request::Parts) -> ClientInfo {
        ClientInfo::from_parts(parts, &self.config.trusted_proxies)
    }

    /// The signed double-submit tokens of the anonymous forms (login, register).
    #[must_use]
    pub fn form_tokens(&self) -> csrf::FormTokens<'_> {
        csrf::FormTokens::new(
            self.config.secret.expose(),
            self.config.form_token_lifetime.as_secs(),
            self.config.cookie.secure,
        )
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

    /// Background jobs over sessions, and their progress.
    #[must_use]
    pub const fn jobs(&self) -> &SessionJobs {
        &self.jobs
    }

    #[must_use]
    pub const fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// The device cookies logins issue and the throttle recognises.
    #[must_use]
    pub const fn devices(&self) -> &DeviceCookies {
        &self.devices
    }

    /// The app's bounded password hasher.
    #[must_use]
    pub const fn hashing(&self) -> &PasswordHashing {
        &self.hashing
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

    /// The store's usage figures (records, bytes, Redis's memory), as last read: read
    /// again in the background once a minute old, since a file or database store reads
    /// every record for them.
    pub async fn store_usage(&self) -> Counted<Vec<(&'static str, u64)>> {
        let backend = self.backend().clone();
        let usage = async move { Ok::<_, std::convert::Infallible>(backend.usage().await) };
        match self.usage.get(usage).await {
            Ok(counted) => counted,
            Err(never) => match never {},
        }
    }
}

impl From<tower_sessions::session_store::Error> for SessionError {
    fn from(error: tower_sessions::session_store::Error) -> Self {
        tower_sessions::session::Error::Store(error).into()
    }
}
