//! What Tessera asks of a store beyond tower-sessions' [`SessionStore`]: its kind, a write
//! that never takes another key (one record or many), the keys it holds (a page at a
//! time), a sweep of expired records, its usage and a ping. Each store implements
//! [`StoreOps`] in its own file; [`super::Backend`] holds the one configured. Every store's
//! `create` is [`create_unique`], over its own [`StoreOps::create_if_absent`].
//!
//! A foundation: it imports only the clock.

use std::{fmt, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Deserialize;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use crate::sessions::clock;

/// Where session records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In the process: lost at exit. For tests.
    Memory,
    /// One file per session under `dir`: survives restarts. For development.
    File,
    /// Redis at `redis.url`, shared by every app instance. For production.
    Redis,
    /// A table in the app's SQL database. For deployments without Redis.
    Database,
}

impl StoreKind {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::File => "file",
            Self::Redis => "redis",
            Self::Database => "database",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A store operation beyond loading and saving records that failed, naming the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file store's directory cannot be used.
    #[error("settings.sessions.dir: cannot use {} for sessions: {source}", dir.display())]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `REDIS_URL` names no usable Redis deployment.
    #[error("settings.sessions.redis.url: {reason}")]
    RedisUrl { reason: String },
    /// The memory store lives inside one process: nothing outside it can list it.
    #[error("the memory store cannot be listed from outside its process")]
    NotListable,
    /// The store did not do what it was asked.
    #[error("the {store} store could not {operation}: {reason}")]
    Failed {
        store: StoreKind,
        operation: &'static str,
        reason: String,
    },
}

impl StoreError {
    #[must_use]
    pub fn failed(store: StoreKind, operation: &'static str, reason: impl ToString) -> Self {
        Self::Failed {
            store,
            operation,
            reason: reason.to_string(),
        }
    }
}

/// What a cleanup of a store removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSweep {
    pub expired: u64,
    pub unreadable: u64,
    pub stale_temp: u64,
    pub failed: u64,
}
/// `progress(done, total)` while a sweep goes through a store's records.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The keys of a store's records, a page at a time ([`StoreOps::key_pages`]).
pub type KeyPages<'a> = BoxStream<'a, Result<Vec<Id>, StoreError>>;

/// The operations every store offers beyond loading and saving records.
///
/// ```
/// # async fn demo() -> Result<(), tessera::sessions::stores::ops::StoreError> {
/// use tessera::sessions::stores::ops::{StoreKind, StoreOps};
/// let store = tessera::sessions::stores::memory::MemoryStore::default();
/// assert_eq!(store.kind(), StoreKind::Memory);
/// assert!(store.ping().await.is_ok());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StoreOps: SessionStore {
    /// Which store this is.
    fn kind(&self) -> StoreKind;

    /// Writes `record` under its own key unless a live record holds that key; whether it
    /// was written. It never takes another key (`sessions_migrate` copies records under
    /// the keys their cookies map to) and never touches the record already there. An
    /// expired record still lying under the key (until the file or database store's
    /// sweep) is no session: it is replaced.
    ///
    /// # Errors
    /// When the store fails.
    async fn create_if_absent(&self, record: &Record) -> session_store::Result<bool>;

    /// [`Self::create_if_absent`] for each of `records`, in one go where the store can (the
    /// database store: one transaction, one commit); whether each was written, in order.
    /// On an error, any of them may have been written or not.
    ///
    /// # Errors
    /// When the store fails.
    async fn create_all_if_absent(&self, records: &[Record]) -> session_store::Result<Vec<bool>> {
        let mut written = Vec::with_capacity(records.len());
        for record in records {
            written.push(self.create_if_absent(record).await?);
        }
        Ok(written)
    }

    /// The keys of the records the store holds, to copy them, in pages of about
    /// `page_size` keys. The store is listed as the pages are read, so a store of any size
    /// is gone through in bounded memory; dropping the stream stops the listing. A key
    /// written or removed meanwhile may or may not be listed, and Redis may list a key
    /// twice (`SCAN`): whoever reads the pages must not mind either. A listing that
    /// fails yields its error and ends.
    fn key_pages(&self, page_size: usize) -> KeyPages<'_>;

    /// Removes expired (and unreadable) records. A store that expires records by itself
    /// (Redis, memory) has nothing to do.
    ///
    /// # Errors
    /// When the store cannot be listed.
    async fn sweep(&self, progress: Progress) -> Result<StoreSweep, StoreError>;

    /// What the store holds, as label and value pairs for monitoring.
    ///
    /// # Errors
    /// When the store does not answer.
    async fn usage(&self) -> Result<Vec<(&'static str, u64)>, StoreError>;

    /// Whether the store answers; on success, a line saying what answered.
    ///
    /// # Errors
    /// When it does not.
    async fn ping(&self) -> Result<String, StoreError>;
}

/// Whether `record` has not reached its expiry: the one check of the stores that keep
/// records past it (memory, file) and of the cleanup.
#[must_use]
pub fn is_live(record: &Record) -> bool {
    record.expiry_date.unix_timestamp() > clock::now()
}

/// What `create` is on every store: `record` is written under its own key, or, while a
/// live record holds that key, under a new ID drawn into `record.id`. A collision (one in
/// 2^128 per ID) never overwrites the other session.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(async {
/// use tessera::sessions::stores::{memory::MemoryStore, ops::create_unique};
/// use tower_sessions::session::Record;
/// let store = MemoryStore::default();
/// let expiry_date = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
/// let mut first = Record { id: Default::default(), data: Default::default(), expiry_date };
/// create_unique(&store, &mut first).await.expect("create");
/// let mut second = Record { id: first.id, ..first.clone() };
/// create_unique(&store, &mut second).await.expect("create");
/// assert_ne!(second.id, first.id, "a new ID, the first record left alone");
/// # });
/// ```
///
/// # Errors
/// When the store fails.
pub async fn create_unique<S: StoreOps + ?Sized>(
    store: &S,
    record: &mut Record,
) -> session_store::Result<()> {
    while !store.create_if_absent(record).await? {
        record.id = Id::default();
    }
    Ok(())
}
