//! [`MemoryStore`], for tests: records in the process, lost at exit.
//!
//! It keeps the rule every Tessera store keeps and tower-sessions' own memory store does
//! not: a session that was deleted stays deleted. `save` replaces a record that still
//! exists and never recreates one, so a response saved after another request ended the
//! session (a logout, a revocation, a login past the per-user limit) cannot bring it back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use futures::stream;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use super::ops::{
    create_unique, is_live, KeyPages, Progress, StoreError, StoreKind, StoreOps, StoreSweep,
};

/// Records in a map shared by clones.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(async {
/// use tessera::sessions::stores::memory::MemoryStore;
/// use tower_sessions::{session::Record, SessionStore};
/// let store = MemoryStore::default();
/// let mut record = Record {
///     id: Default::default(),
///     data: Default::default(),
///     expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
/// };
/// store.create(&mut record).await.expect("create");
/// store.delete(&record.id).await.expect("delete");
/// store.save(&record).await.expect("a late save");
/// assert!(store.load(&record.id).await.expect("load").is_none(), "deleted stays deleted");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<Id, Record>>>,
}

impl MemoryStore {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Record>> {
        // A panic while holding the lock cannot leave a map half-written: every
        // operation below is one insert, replace or remove.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        create_unique(self, record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if let Some(stored) = self.records().get_mut(&record.id) {
            *stored = record.clone();
        } else {
            tracing::debug!("session ended while the request ran; the late save is dropped");
        }
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let mut records = self.records();
        match records.get(session_id) {
            Some(record) if is_live(record) => Ok(Some(record.clone())),
            Some(_) => {
                records.remove(session_id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.records().remove(session_id);
        Ok(())
    }
}

#[async_trait]
impl StoreOps for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    async fn create_if_absent(&self, record: &Record) -> session_store::Result<bool> {
        let mut records = self.records();
        if records.get(&record.id).is_some_and(is_live) {
            return Ok(false);
        }
        records.insert(record.id, record.clone());
        Ok(true)
    }

    /// The map lives inside one process: a task in another cannot list it.
    fn key_pages(&self, _page_size: usize) -> KeyPages<'_> {
        Box::pin(stream::once(async { Err(StoreError::NotListable) }))
    }

    /// Expired records are dropped when loaded.
    async fn sweep(&self, _progress: Progress) -> Result<StoreSweep, StoreError> {
        Ok(StoreSweep::default())
    }

    async fn usage(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        Ok(vec![("records", self.records().len() as u64)])
    }

    async fn ping(&self) -> Result<String, StoreError> {
        Ok("in process".to_string())
    }
}
