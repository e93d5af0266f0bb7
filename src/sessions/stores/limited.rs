//! Refuses records larger than a configured size. A session that grows without bound is a
//! bug or an attack (memory exhaustion of the store); it is refused whole, with a logged
//! error, never written in part.

use async_trait::async_trait;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

/// A store wrapper that refuses records whose data serializes to more than `max_bytes`.
#[derive(Debug, Clone)]
pub struct SizeLimited<S> {
    inner: S,
    max_bytes: usize,
}

impl<S> SizeLimited<S> {
    pub const fn new(inner: S, max_bytes: usize) -> Self {
        Self { inner, max_bytes }
    }

    #[must_use]
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    fn check(&self, record: &Record) -> session_store::Result<()> {
        let size = serde_json::to_vec(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?
            .len();
        if size > self.max_bytes {
            tracing::error!(
                size,
                limit = self.max_bytes,
                "session record too large; not written"
            );
            return Err(session_store::Error::Encode(format!(
                "session record of {size} bytes exceeds the limit of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for SizeLimited<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.check(record)?;
        self.inner.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.check(record)?;
        self.inner.save(record).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.inner.load(session_id).await
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.inner.delete(session_id).await
    }
}
