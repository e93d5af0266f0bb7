//! Keys every store by a keyed hash of the session ID ([`crate::sessions::keys::StoreKey`])
//! instead of the ID itself: the stores below this wrapper never see a cookie's ID.

use async_trait::async_trait;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use crate::sessions::keys::IdHasher;

/// A store wrapper that files each record under [`IdHasher::store_key`] of its ID.
#[derive(Debug, Clone)]
pub struct HashedIds<S> {
    inner: S,
    hasher: IdHasher,
}

impl<S> HashedIds<S> {
    pub const fn new(inner: S, hasher: IdHasher) -> Self {
        Self { inner, hasher }
    }

    #[must_use]
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    #[must_use]
    pub const fn hasher(&self) -> &IdHasher {
        &self.hasher
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for HashedIds<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let key = *self.hasher.store_key(&record.id).as_id();
            let mut stored = Record {
                id: key,
                ..record.clone()
            };
            self.inner.create(&mut stored).await?;
            if stored.id == key {
                return Ok(());
            }
            // The inner store met a colliding key and drew a new one, which no cookie ID
            // maps to. Drop it and draw a new cookie ID instead.
            self.inner.delete(&stored.id).await?;
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let stored = Record {
            id: *self.hasher.store_key(&record.id).as_id(),
            ..record.clone()
        };
        self.inner.save(&stored).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let loaded = self
            .inner
            .load(self.hasher.store_key(session_id).as_id())
            .await?;
        Ok(loaded.map(|record| Record {
            id: *session_id,
            ..record
        }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.inner
            .delete(self.hasher.store_key(session_id).as_id())
            .await
    }
}
