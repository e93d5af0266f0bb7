//! Sessions in a SQL table through SeaORM, on SQLite or PostgreSQL: for deployments
//! without Redis, and the classic starting point of a move to Redis (`sessions_migrate`).
//!
//! It is an explicit choice (`SESSION_STORE=database`), never a fallback when Redis is
//! down: a silent fallback would split sessions between instances. Expiry is checked on
//! every load; expired rows are deleted by [`DatabaseStore::sweep_expired`] (the cleanup).
//! `save` updates only an existing row, so a late save never brings back a deleted session.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset};
use futures::stream;
use sea_orm::{
    sea_query::{Expr, OnConflict, Query},
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use super::ops::{create_unique, KeyPages, Progress, StoreError, StoreKind, StoreOps, StoreSweep};
use crate::{
    models::_entities::session_records,
    sessions::clock::{now, rest, sql_time},
};

/// The SQL-backed session store.
#[derive(Debug, Clone)]
pub struct DatabaseStore {
    db: DatabaseConnection,
    /// Expired rows deleted per statement by the sweep, and the rest between two.
    sweep_batch: u64,
    sweep_rest: Duration,
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(format!("database store: {e}"))
}

fn expiry(record: &Record) -> session_store::Result<DateTime<FixedOffset>> {
    DateTime::from_timestamp(record.expiry_date.unix_timestamp(), 0)
        .map(|t| t.fixed_offset())
        .ok_or_else(|| session_store::Error::Encode("expiry out of range".into()))
}

fn encode(record: &Record) -> session_store::Result<String> {
    serde_json::to_string(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

/// One statement: the row is inserted, or an expired row under the key is replaced
/// (`ON CONFLICT .. DO UPDATE .. WHERE` it expired); a live row makes it write nothing.
/// Whether it was written.
async fn insert_unless_live<C: ConnectionTrait>(
    db: &C,
    record: &Record,
) -> session_store::Result<bool> {
    let row = session_records::ActiveModel {
        id: ActiveValue::Set(record.id.to_string()),
        record: ActiveValue::Set(encode(record)?),
        expires_at: ActiveValue::Set(expiry(record)?),
    };
    let replace_expired = OnConflict::column(session_records::Column::Id)
        .update_columns([
            session_records::Column::Record,
            session_records::Column::ExpiresAt,
        ])
        .action_and_where(session_records::Column::ExpiresAt.lte(sql_time(now())))
        .to_owned();
    let written = session_records::Entity::insert(row)
        .on_conflict(replace_expired)
        .exec_without_returning(db)
        .await
        .map_err(backend)?;
    Ok(written > 0)
}

impl DatabaseStore {
    /// The store over `db`, sweeping 500 expired rows per statement.
    #[must_use]
    pub const fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            sweep_batch: 500,
            sweep_rest: Duration::ZERO,
        }
    }

    /// Sweeps `batch` expired rows per statement, resting `rest` in between
    /// (`settings.sessions.maintenance`).
    #[must_use]
    pub const fn sweeping_in_batches(mut self, batch: u64, rest: Duration) -> Self {
        self.sweep_batch = batch;
        self.sweep_rest = rest;
        self
    }

    /// Deletes expired rows, a batch per statement (down the `expires_at` index), so the
    /// write lock is never held long; how many.
    ///
    /// # Errors
    /// A database error; the batches before it stay deleted.
    pub async fn sweep_expired(&self) -> Result<u64, sea_orm::DbErr> {
        let mut deleted = 0;
        loop {
            let expired = Query::select()
                .column(session_records::Column::Id)
                .from(session_records::Entity)
                .and_where(session_records::Column::ExpiresAt.lte(sql_time(now())))
                .limit(self.sweep_batch)
                .to_owned();
            let batch = session_records::Entity::delete_many()
                .filter(session_records::Column::Id.in_subquery(expired))
                .exec(&self.db)
                .await?
                .rows_affected;
            deleted += batch;
            if batch < self.sweep_batch {
                return Ok(deleted);
            }
            tracing::info!(done = deleted, "expired database-store records deleted");
            rest(self.sweep_rest).await;
        }
    }
}

#[async_trait]
impl StoreOps for DatabaseStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Database
    }

    async fn create_if_absent(&self, record: &Record) -> session_store::Result<bool> {
        insert_unless_live(&self.db, record).await
    }

    /// One transaction: one commit (PostgreSQL's is a disk flush) for the whole batch
    /// instead of one per record. The batch holds SQLite's write lock for its inserts
    /// only: milliseconds for `sessions_migrate`'s batches.
    async fn create_all_if_absent(&self, records: &[Record]) -> session_store::Result<Vec<bool>> {
        let txn = self.db.begin().await.map_err(backend)?;
        let mut written = Vec::with_capacity(records.len());
        for record in records {
            written.push(insert_unless_live(&txn, record).await?);
        }
        txn.commit().await.map_err(backend)?;
        Ok(written)
    }

    /// Live records' keys in key order, a page per query from the last key on (the
    /// primary key's index), so no query skips rows another already read.
    fn key_pages(&self, page_size: usize) -> KeyPages<'_> {
        let limit = page_size.max(1) as u64;
        Box::pin(stream::try_unfold(
            Some(String::new()),
            move |after| async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                let ids: Vec<String> = session_records::Entity::find()
                    .select_only()
                    .column(session_records::Column::Id)
                    .filter(session_records::Column::Id.gt(after))
                    .filter(session_records::Column::ExpiresAt.gt(sql_time(now())))
                    .order_by_asc(session_records::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(&self.db)
                    .await
                    .map_err(|e| StoreError::failed(StoreKind::Database, "list keys", e))?;
                let Some(last) = ids.last().cloned() else {
                    return Ok(None);
                };
                let more = ids.len() as u64 == limit;
                let page = ids.iter().filter_map(|id| id.parse().ok()).collect();
                Ok(Some((page, more.then_some(last))))
            },
        ))
    }

    async fn sweep(&self, _progress: Progress) -> Result<StoreSweep, StoreError> {
        let expired = self
            .sweep_expired()
            .await
            .map_err(|e| StoreError::failed(StoreKind::Database, "sweep", e))?;
        Ok(StoreSweep {
            expired,
            ..StoreSweep::default()
        })
    }

    /// Live records and the bytes they take.
    async fn usage(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        // Summed by the database: the records themselves never leave it.
        let bytes = match self.db.get_database_backend() {
            DbBackend::Postgres => "OCTET_LENGTH(record)",
            _ => "LENGTH(CAST(record AS BLOB))",
        };
        let (rows, bytes): (i64, i64) = session_records::Entity::find()
            .select_only()
            .column_as(Expr::cust("COUNT(*)"), "rows")
            .column_as(Expr::cust(format!("COALESCE(SUM({bytes}), 0)")), "bytes")
            .filter(session_records::Column::ExpiresAt.gt(sql_time(now())))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(|e| StoreError::failed(StoreKind::Database, "count rows", e))?
            .unwrap_or_default();
        Ok(vec![
            ("rows", u64::try_from(rows).unwrap_or_default()),
            ("bytes", u64::try_from(bytes).unwrap_or_default()),
        ])
    }

    /// A round trip of a trivial query.
    async fn ping(&self) -> Result<String, StoreError> {
        self.db
            .ping()
            .await
            .map(|()| "database answered".to_string())
            .map_err(|e| StoreError::failed(StoreKind::Database, "answer a ping", e))
    }
}

#[async_trait]
impl SessionStore for DatabaseStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        create_unique(self, record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let updated = session_records::Entity::update_many()
            .col_expr(
                session_records::Column::Record,
                Expr::value(encode(record)?),
            )
            .col_expr(
                session_records::Column::ExpiresAt,
                Expr::value(expiry(record)?),
            )
            .filter(session_records::Column::Id.eq(record.id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if updated.rows_affected == 0 {
            tracing::debug!("session ended while the request ran; the late save is dropped");
        }
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let row = session_records::Entity::find_by_id(session_id.to_string())
            .filter(session_records::Column::ExpiresAt.gt(sql_time(now())))
            .one(&self.db)
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        match serde_json::from_str::<Record>(&row.record) {
            Ok(record) if record.id == *session_id => Ok(Some(record)),
            // Reported, not hidden: the session layer removes and audits it.
            Ok(_) => Err(session_store::Error::Decode(format!(
                "database store: row {session_id} holds another session's record"
            ))),
            Err(error) => Err(session_store::Error::Decode(format!(
                "database store: row {session_id} is not a session record: {error}"
            ))),
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        session_records::Entity::delete_by_id(session_id.to_string())
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
