//! The session stores, and the one type the session layer holds whatever the backend.
//!
//! - `memory`: [`memory::MemoryStore`], for tests;
//! - `file`: [`file::FileStore`], for development: sessions survive restarts;
//! - `redis`: [`redis::RedisSessionStore`], for production;
//! - `database`: [`database::DatabaseStore`], a SQL table, for deployments without Redis.
//!
//! [`Backend`] picks one at start; [`Instrumented`] wraps it to count what the layer asks
//! of the store (touch throttling is proven by these counts).

pub mod cluster;
pub mod database;
pub mod encrypted;
pub mod file;
pub mod hashed;
pub mod limited;
pub mod memory;
pub mod ops;
pub mod redis;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use self::{
    database::DatabaseStore,
    file::FileStore,
    memory::MemoryStore,
    ops::{KeyPages, StoreError, StoreKind, StoreOps, StoreSweep},
    redis::{RedisConfig, RedisSessionStore},
};

/// The configured store.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory(MemoryStore),
    File(FileStore),
    Redis(RedisSessionStore),
    Database(DatabaseStore),
}

/// Which store the app uses and where each kind keeps its records, checked (the
/// `store`, `dir` and `redis` settings).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// The file store's directory.
    pub dir: PathBuf,
    pub redis: RedisConfig,
    /// The database store's sweep: rows per statement, and the rest between two.
    pub sweep_batch: u64,
    pub sweep_rest: std::time::Duration,
}

/// How a store is doing, for `/_health`, `cargo loco doctor` and the admin page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreHealth {
    pub store: StoreKind,
    pub ok: bool,
    pub latency_ms: f64,
    pub detail: String,
}

impl Backend {
    /// Opens the store `config` names (`db` serves the `database` store).
    ///
    /// # Errors
    /// A reason naming the setting, when the store cannot be opened.
    pub fn open(
        config: &StoreConfig,
        db: &sea_orm::DatabaseConnection,
    ) -> Result<Self, StoreError> {
        Self::open_kind(config.kind, config, db)
    }

    /// Opens a store of `kind` where `config` says that kind keeps its records (for
    /// moving sessions between stores). The one place that turns a store kind into a store.
    ///
    /// # Errors
    /// A reason naming the setting, when the store cannot be opened.
    pub fn open_kind(
        kind: StoreKind,
        config: &StoreConfig,
        db: &sea_orm::DatabaseConnection,
    ) -> Result<Self, StoreError> {
        Ok(match kind {
            StoreKind::Memory => Self::Memory(MemoryStore::default()),
            StoreKind::File => Self::File(FileStore::open(&config.dir).map_err(|source| {
                StoreError::Directory {
                    dir: config.dir.clone(),
                    source,
                }
            })?),
            StoreKind::Redis => Self::Redis(RedisSessionStore::connect(&config.redis)?),
            StoreKind::Database => Self::Database(
                DatabaseStore::new(db.clone())
                    .sweeping_in_batches(config.sweep_batch, config.sweep_rest),
            ),
        })
    }

    /// Checks at start what only the store can tell: that `REDIS_URL`'s topology (plain,
    /// cluster) is the deployment's.
    ///
    /// # Errors
    /// One line naming the setting when it is not.
    pub async fn check_at_start(&self) -> Result<(), StoreError> {
        if let Self::Redis(redis) = self {
            redis.check_topology().await?;
            tracing::info!(topology = redis.topology().name(), "Redis sessions");
        }
        Ok(())
    }

    /// The Redis store, when sessions are in Redis: other Redis users (the login throttle)
    /// share its connections and topology.
    #[must_use]
    pub const fn redis(&self) -> Option<&RedisSessionStore> {
        match self {
            Self::Redis(store) => Some(store),
            _ => None,
        }
    }

    /// The opened store, as every store offers itself.
    fn ops(&self) -> &dyn StoreOps {
        match self {
            Self::Memory(store) => store,
            Self::File(store) => store,
            Self::Redis(store) => store,
            Self::Database(store) => store,
        }
    }

    #[must_use]
    pub fn kind(&self) -> StoreKind {
        self.ops().kind()
    }

    /// Writes `record` under its own key unless a live record holds it; whether it was
    /// written (see [`StoreOps::create_if_absent`]): how `sessions_migrate` copies.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn create_if_absent(&self, record: &Record) -> session_store::Result<bool> {
        self.ops().create_if_absent(record).await
    }

    /// [`Self::create_if_absent`] for each of `records`, in one transaction on the database
    /// store: see [`StoreOps::create_all_if_absent`].
    ///
    /// # Errors
    /// When the store fails.
    pub async fn create_all_if_absent(
        &self,
        records: &[Record],
    ) -> session_store::Result<Vec<bool>> {
        self.ops().create_all_if_absent(records).await
    }

    /// The keys of the records in the store, in pages of about `page_size`: see
    /// [`StoreOps::key_pages`]. The memory store yields [`StoreError::NotListable`]: it lives in one process.
    #[must_use]
    pub fn key_pages(&self, page_size: usize) -> KeyPages<'_> {
        self.ops().key_pages(page_size)
    }

    /// Removes expired (and, for files, unreadable) records, calling `progress(done, total)`
    /// as it goes through a directory.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub async fn sweep(
        &self,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<StoreSweep, StoreError> {
        self.ops().sweep(Arc::new(progress)).await
    }

    /// What the store holds, as label and value pairs for monitoring: Redis memory and
    /// keys, or the file store's files and bytes. Empty when the store does not answer.
    pub async fn usage(&self) -> Vec<(&'static str, u64)> {
        self.ops().usage().await.unwrap_or_default()
    }

    /// Asks the store whether it answers, and how fast.
    pub async fn health(&self) -> StoreHealth {
        let start = std::time::Instant::now();
        let (ok, detail) = match self.ops().ping().await {
            Ok(detail) => (true, detail),
            Err(error) => (false, error.to_string()),
        };
        StoreHealth {
            store: self.kind(),
            ok,
            latency_ms: duration_ms(start.elapsed()),
            detail,
        }
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[async_trait]
impl SessionStore for Backend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.ops().create(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.ops().save(record).await
    }
    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.ops().load(session_id).await
    }
    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.ops().delete(session_id).await
    }
}

/// How many times each store operation ran, and failed, since start.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub loads: AtomicU64,
    pub creates: AtomicU64,
    pub saves: AtomicU64,
    pub deletes: AtomicU64,
    pub errors: AtomicU64,
}

/// A snapshot of [`StoreCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StoreCounts {
    pub loads: u64,
    pub creates: u64,
    pub saves: u64,
    pub deletes: u64,
    pub errors: u64,
}

impl StoreCounts {
    /// Creates plus saves: every operation that writes a record.
    #[must_use]
    pub const fn writes(&self) -> u64 {
        self.creates + self.saves
    }
}

impl StoreCounters {
    #[must_use]
    pub fn snapshot(&self) -> StoreCounts {
        StoreCounts {
            loads: self.loads.load(Ordering::Relaxed),
            creates: self.creates.load(Ordering::Relaxed),
            saves: self.saves.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// A store wrapper that counts every operation and failure.
#[derive(Debug, Clone)]
pub struct Instrumented<S> {
    inner: S,
    counters: Arc<StoreCounters>,
}

impl<S> Instrumented<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counters: Arc::default(),
        }
    }

    #[must_use]
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    #[must_use]
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    fn count<T>(
        &self,
        op: &AtomicU64,
        name: &'static str,
        started: std::time::Instant,
        result: session_store::Result<T>,
    ) -> session_store::Result<T> {
        op.fetch_add(1, Ordering::Relaxed);
        super::metrics::record_store_op(name, started.elapsed(), result.is_err());
        if let Err(e) = &result {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "session store operation failed");
        }
        result
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for Instrumented<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let started = std::time::Instant::now();
        let result = self.inner.create(record).await;
        self.count(&self.counters.creates, "create", started, result)
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let started = std::time::Instant::now();
        let result = self.inner.save(record).await;
        self.count(&self.counters.saves, "save", started, result)
    }
    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let started = std::time::Instant::now();
        let result = self.inner.load(session_id).await;
        self.count(&self.counters.loads, "load", started, result)
    }
    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let started = std::time::Instant::now();
        let result = self.inner.delete(session_id).await;
        self.count(&self.counters.deletes, "delete", started, result)
    }
}
