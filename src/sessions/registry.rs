//! The session registry: one SQL row per session, so a user can list and end their
//! sessions and an admin can count them, without scanning the store.
//!
//! Rows name a session by its ref and store key (keyed hashes), never by the cookie's ID.
//! The registry cleans itself: rows of ended sessions are kept for a day (recent history
//! for the admin page), rows whose session has expired or is gone from the store are
//! pruned by [`SessionRegistry::prune`]. Nothing here grows forever.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, FixedOffset, Utc};
use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement},
    ActiveValue, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    SelectTwo, TransactionTrait,
};
use tower_sessions::session_store::SessionStore;

use super::{
    clock::{now, sql_time},
    events::EndReason,
    keys::{SessionRef, StoreKey},
    recount::Recounted,
};
use crate::models::{
    _entities::{user_sessions, users},
    users::EmailPrefix,
};

/// How long rows of ended sessions stay for the record.
const ENDED_RETENTION_HOURS: i64 = 24;

/// Live sessions a request counts, at most: a walk of that many entries of the open rows'
/// expiry index (a few milliseconds). Past it, the count is a full one made in the
/// background ([`LIVE_RECOUNT_AGE`]), so a page or a scrape costs the same at a million
/// rows as at a thousand, and says when it was counted.
pub const EXACT_LIVE_COUNT: u64 = 10_000;
/// How old the background count of live sessions gets before it is made again.
pub const LIVE_RECOUNT_AGE: Duration = Duration::from_secs(60);
/// Accounts an email filter of the admin's live sessions table looks at, at most (the
/// first in email order): their live sessions are a bounded number of index lookups.
pub const FILTER_ACCOUNTS: u64 = 500;

/// A session as the registry records it at login.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub user_id: i64,
    pub session_ref: SessionRef,
    pub store_key: StoreKey,
    pub store: &'static str,
    pub expires_at: DateTime<FixedOffset>,
    pub user_agent: String,
    pub ip: Option<String>,
    /// The account's credential generation the login read with the password hash.
    pub credential_generation: i64,
}

/// What [`SessionRegistry::register`] did.
#[derive(Debug)]
pub enum Registration {
    /// The session is recorded; the user's live sessions beyond the limit, least recently
    /// used first, are the caller's to end.
    Registered {
        over_limit: Vec<user_sessions::Model>,
    },
    /// Nothing was recorded: since the login read the credentials, the account's
    /// generation moved on (a password change) or the account was disabled.
    CredentialsChanged,
}

/// What [`SessionRegistry::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Rows of sessions gone from the store (the same as [`PruneReport::vanished`] since
    /// rows of expired sessions leave with their audit event, not here).
    pub gone: u64,
    /// Of [`PruneReport::gone`], rows whose session had not expired yet the store no longer
    /// held (or held unreadable): where the registry and the store disagreed (an evicted
    /// or flushed key, lost writes, a half-ended session).
    pub vanished: u64,
    /// Rows of sessions ended more than a day ago.
    pub ended: u64,
}

/// Live sessions per store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCounts {
    /// Per store, in the order of their names.
    pub per_store: Vec<(String, u64)>,
    /// `None` when counted for this request; past [`EXACT_LIVE_COUNT`] live sessions,
    /// when the background count was made.
    pub counted_at: Option<DateTime<Utc>>,
}

impl LiveCounts {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.per_store.iter().map(|(_, n)| n).sum()
    }
}

/// A live session with the account it belongs to.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub session: user_sessions::Model,
    pub user: users::Model,
}

/// The admin's live sessions table: the most recently used first.
#[derive(Debug, Clone)]
pub struct LiveTable {
    pub sessions: Vec<LiveSession>,
    /// More live sessions match than the table shows.
    pub more: bool,
    /// More than [`FILTER_ACCOUNTS`] accounts match the email filter: the table shows the
    /// sessions of the first of them in email order.
    pub accounts_capped: bool,
}

/// The registry over one database.
#[derive(Debug, Clone)]
pub struct SessionRegistry {
    db: DatabaseConnection,
    full_counts: Recounted<Vec<(String, u64)>>,
}

/// Live sessions per store ([`SessionRegistry::live_count_query`]).
async fn count_by_store<C: ConnectionTrait>(
    db: &C,
    cap: Option<u64>,
) -> Result<Vec<(String, u64)>, DbErr> {
    db.query_all(&SessionRegistry::live_count_query(cap))
        .await?
        .into_iter()
        .map(|row| {
            let store: String = row.try_get("", "store")?;
            let count: i64 = row.try_get("", "count")?;
            Ok((store, count.unsigned_abs()))
        })
        .collect()
}

/// Parses a row's stored key back into a [`StoreKey`].
#[must_use]
pub fn store_key_of(row: &user_sessions::Model) -> Option<StoreKey> {
    row.store_key.parse().ok()
}

impl SessionRegistry {
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            full_counts: Recounted::new(LIVE_RECOUNT_AGE),
        }
    }

    /// The one definition of a live session: not ended, not expired. Every query of live
    /// rows goes through it.
    fn live_rows() -> Select<user_sessions::Entity> {
        user_sessions::Entity::find().filter(
            Condition::all()
                .add(user_sessions::Column::EndedAt.is_null())
                .add(user_sessions::Column::ExpiresAt.gt(sql_time(now()))),
        )
    }

    /// A transaction on the registry's database, for work that changes rows and writes
    /// what it did (their audit events) at once.
    ///
    /// # Errors
    /// A database error.
    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db.begin().await
    }

    /// Records a new session and returns the user's live sessions beyond `limit`, least
    /// recently used, for the caller to end (record first, then row: see
    /// [`crate::sessions::lifecycle`]). Concurrent logins of one user are serialized by a
    /// lock on the user's row, and every login sees the same order, so a burst of
    /// simultaneous logins ends exactly the oldest sessions beyond the limit.
    ///
    /// Only while the account still has the credential generation the login read and is
    /// not disabled: a password change or a disable commits its bump before it lists the
    /// sessions to end, so a login racing it is either registered first (and listed) or
    /// refused here ([`Registration::CredentialsChanged`]).
    ///
    /// # Errors
    /// A database error; nothing is recorded then.
    pub async fn register(&self, entry: NewEntry, limit: usize) -> Result<Registration, DbErr> {
        let txn = self.db.begin().await?;
        // Taking the write lock first: PostgreSQL locks the user's row, SQLite the database.
        // A change of credentials holds the same lock while it bumps the generation, so the
        // condition is read after it committed, never before.
        let locked = users::Entity::update_many()
            .col_expr(users::Column::Admin, Expr::col(users::Column::Admin))
            .filter(users::Column::Id.eq(entry.user_id))
            .filter(users::Column::CredentialGeneration.eq(entry.credential_generation))
            .filter(users::Column::Disabled.eq(false))
            .exec(&txn)
            .await?
            .rows_affected;
        if locked == 0 {
            txn.rollback().await?;
            return Ok(Registration::CredentialsChanged);
        }
        let now = sql_time(now());
        user_sessions::Entity::insert(user_sessions::ActiveModel {
            created_at: ActiveValue::Set(now),
            updated_at: ActiveValue::Set(now),
            user_id: ActiveValue::Set(entry.user_id),
            session_ref: ActiveValue::Set(entry.session_ref.to_string()),
            store_key: ActiveValue::Set(entry.store_key.to_string()),
            store: ActiveValue::Set(entry.store.to_string()),
            last_seen_at: ActiveValue::Set(now),
            expires_at: ActiveValue::Set(entry.expires_at),
            user_agent: ActiveValue::Set(entry.user_agent),
            ip: ActiveValue::Set(entry.ip),
            credential_generation: ActiveValue::Set(entry.credential_generation),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let live = Self::live_query(entry.user_id)
            .order_by_desc(user_sessions::Column::LastSeenAt)
            .order_by_desc(user_sessions::Column::Id)
            .all(&txn)
            .await?;
        let over_limit: Vec<_> = live.into_iter().skip(limit).collect();
        txn.commit().await?;
        Ok(Registration::Registered { over_limit })
    }

    fn live_query(user_id: i64) -> Select<user_sessions::Entity> {
        Self::live_rows().filter(user_sessions::Column::UserId.eq(user_id))
    }

    /// Records activity (called at most once per touch interval per session); whether the
    /// session's row is still there and not ended (`false`: the session has ended, and its
    /// record must go too).
    ///
    /// # Errors
    /// A database error.
    pub async fn touch(
        &self,
        session_ref: &SessionRef,
        expires_at: DateTime<FixedOffset>,
    ) -> Result<bool, DbErr> {
        let now = sql_time(now());
        let touched = user_sessions::Entity::update_many()
            .col_expr(user_sessions::Column::LastSeenAt, Expr::value(now))
            .col_expr(user_sessions::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(user_sessions::Column::UpdatedAt, Expr::value(now))
            .filter(user_sessions::Column::SessionRef.eq(session_ref.as_str()))
            .filter(user_sessions::Column::EndedAt.is_null())
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(touched > 0)
    }

    /// Moves a row to the session's new ID after a rotation, with the credential
    /// generation the session now carries; whether it did. Only a row not ended is moved:
    /// `false` means the session ended meanwhile (a revoke that raced the rotation), and
    /// the rotated session must end too, or it would live on behind an ended row, unlisted
    /// and unrevocable.
    ///
    /// # Errors
    /// A database error.
    pub async fn rotate(
        &self,
        old: &SessionRef,
        new: &SessionRef,
        new_key: StoreKey,
        credential_generation: i64,
    ) -> Result<bool, DbErr> {
        let now = sql_time(now());
        let moved = user_sessions::Entity::update_many()
            .col_expr(user_sessions::Column::SessionRef, Expr::value(new.as_str()))
            .col_expr(
                user_sessions::Column::StoreKey,
                Expr::value(new_key.to_string()),
            )
            .col_expr(
                user_sessions::Column::CredentialGeneration,
                Expr::value(credential_generation),
            )
            .col_expr(user_sessions::Column::LastSeenAt, Expr::value(now))
            .col_expr(user_sessions::Column::UpdatedAt, Expr::value(now))
            .filter(user_sessions::Column::SessionRef.eq(old.as_str()))
            .filter(user_sessions::Column::EndedAt.is_null())
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(moved > 0)
    }

    /// Marks one session ended; whether this call ended it (`false` when it had ended
    /// already, e.g. two logins past the limit ending the same session at once). One
    /// conditional UPDATE, so of two concurrent calls exactly one sees `true`.
    ///
    /// # Errors
    /// A database error.
    pub async fn end(&self, session_ref: &SessionRef, reason: EndReason) -> Result<bool, DbErr> {
        let now = sql_time(now());
        let ended = user_sessions::Entity::update_many()
            .col_expr(user_sessions::Column::EndedAt, Expr::value(now))
            .col_expr(
                user_sessions::Column::EndReason,
                Expr::value(reason.as_str()),
            )
            .col_expr(user_sessions::Column::UpdatedAt, Expr::value(now))
            .filter(user_sessions::Column::SessionRef.eq(session_ref.as_str()))
            .filter(user_sessions::Column::EndedAt.is_null())
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(ended > 0)
    }

    /// Whether `session_ref` names a session the registry knows and has not ended.
    ///
    /// # Errors
    /// A database error.
    pub async fn is_live(&self, session_ref: &SessionRef) -> Result<bool, DbErr> {
        Ok(self.live_by_ref(session_ref).await?.is_some())
    }

    /// The live session named `session_ref`, if there is one.
    ///
    /// # Errors
    /// A database error.
    pub async fn live_by_ref(
        &self,
        session_ref: &SessionRef,
    ) -> Result<Option<user_sessions::Model>, DbErr> {
        Self::live_by_ref_query(session_ref).one(&self.db).await
    }

    /// The query of [`Self::live_by_ref`] (public for the query-plan tests).
    #[must_use]
    pub fn live_by_ref_query(session_ref: &SessionRef) -> Select<user_sessions::Entity> {
        Self::live_rows().filter(user_sessions::Column::SessionRef.eq(session_ref.as_str()))
    }

    /// Which of `session_refs` the registry holds as ended (rows of ended sessions are
    /// kept for a day after the end), in one query: they are bound one parameter each,
    /// so pass at most [`crate::models::MAX_BOUND_PARAMETERS`].
    ///
    /// # Errors
    /// A database error.
    pub async fn ended_among(
        &self,
        session_refs: &[SessionRef],
    ) -> Result<HashSet<SessionRef>, DbErr> {
        let ended: Vec<String> = user_sessions::Entity::find()
            .select_only()
            .column(user_sessions::Column::SessionRef)
            .filter(
                user_sessions::Column::SessionRef
                    .is_in(session_refs.iter().map(SessionRef::as_str)),
            )
            .filter(user_sessions::Column::EndedAt.is_not_null())
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ended.iter().filter_map(|r| SessionRef::parse(r)).collect())
    }

    /// A user's live sessions, most recently used first.
    ///
    /// # Errors
    /// A database error.
    pub async fn live_for_user(&self, user_id: i64) -> Result<Vec<user_sessions::Model>, DbErr> {
        Self::live_query(user_id)
            .order_by_desc(user_sessions::Column::LastSeenAt)
            .order_by_desc(user_sessions::Column::Id)
            .all(&self.db)
            .await
    }

    /// Every live session. Unbounded: for tests and small tables; work over all sessions
    /// goes through [`Self::live_batch`].
    ///
    /// # Errors
    /// A database error.
    pub async fn live(&self) -> Result<Vec<user_sessions::Model>, DbErr> {
        Self::live_rows().all(&self.db).await
    }

    /// Up to `limit` live sessions with ids above `after`, by id: one batch of a walk over
    /// every live session that rows ended or added meanwhile do not disturb.
    ///
    /// # Errors
    /// A database error.
    pub async fn live_batch(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<user_sessions::Model>, DbErr> {
        Self::live_rows()
            .filter(user_sessions::Column::Id.gt(after))
            .order_by_asc(user_sessions::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Up to `limit` rows with ids above `after`, by id, of sessions ended for `reason`
    /// since `since`.
    ///
    /// # Errors
    /// A database error.
    pub async fn ended_batch(
        &self,
        reason: EndReason,
        since: DateTime<FixedOffset>,
        after: i64,
        limit: u64,
    ) -> Result<Vec<user_sessions::Model>, DbErr> {
        user_sessions::Entity::find()
            .filter(user_sessions::Column::EndedAt.gte(since))
            .filter(user_sessions::Column::EndReason.eq(reason.as_str()))
            .filter(user_sessions::Column::Id.gt(after))
            .order_by_asc(user_sessions::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// How many sessions are live.
    ///
    /// # Errors
    /// A database error.
    pub async fn live_count(&self) -> Result<u64, DbErr> {
        Self::live_rows().count(&self.db).await
    }

    /// Marks the rows `ids` ended for `reason`, on `conn` (the transaction that audits
    /// them); the rows this call ended. A row ended already (by a concurrent revoke, or an
    /// earlier run of the same batch) is left as it is and not returned, so its end is
    /// audited once. `ids` holds at most a batch.
    ///
    /// # Errors
    /// A database error.
    pub async fn end_rows<C: ConnectionTrait>(
        conn: &C,
        ids: &[i64],
        reason: EndReason,
    ) -> Result<Vec<user_sessions::Model>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = sql_time(now());
        user_sessions::Entity::update_many()
            .col_expr(user_sessions::Column::EndedAt, Expr::value(now))
            .col_expr(
                user_sessions::Column::EndReason,
                Expr::value(reason.as_str()),
            )
            .col_expr(user_sessions::Column::UpdatedAt, Expr::value(now))
            .filter(user_sessions::Column::Id.is_in(ids.iter().copied()))
            .filter(user_sessions::Column::EndedAt.is_null())
            .exec_with_returning(conn)
            .await
    }

    /// Removes up to `limit` rows of sessions that expired without being ended (their
    /// user never came back), on `conn` (the transaction that audits them); the rows
    /// removed. Of two runs at once, each row goes to one.
    ///
    /// # Errors
    /// A database error.
    pub async fn take_expired<C: ConnectionTrait>(
        conn: &C,
        limit: u64,
    ) -> Result<Vec<user_sessions::Model>, DbErr> {
        let expired = Query::select()
            .column(user_sessions::Column::Id)
            .from(user_sessions::Entity)
            .and_where(user_sessions::Column::EndedAt.is_null())
            .and_where(user_sessions::Column::ExpiresAt.lte(sql_time(now())))
            .order_by(user_sessions::Column::Id, Order::Asc)
            .limit(limit)
            .to_owned();
        user_sessions::Entity::delete_many()
            .filter(user_sessions::Column::Id.in_subquery(expired))
            // Re-checked on the row itself: a session touched since the subquery read it
            // is live again.
            .filter(user_sessions::Column::EndedAt.is_null())
            .filter(user_sessions::Column::ExpiresAt.lte(sql_time(now())))
            .exec_with_returning(conn)
            .await
    }

    /// The `limit` users with the most live sessions, by email, most first.
    ///
    /// # Errors
    /// A database error.
    pub async fn top_live_users(&self, limit: u64) -> Result<Vec<(String, u64)>, DbErr> {
        let top: Vec<(String, i64)> = Self::live_rows()
            .select_only()
            .column(users::Column::Email)
            .column_as(user_sessions::Column::Id.count(), "count")
            .inner_join(users::Entity)
            .group_by(users::Column::Email)
            .order_by_desc(user_sessions::Column::Id.count())
            .order_by_asc(users::Column::Email)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(top
            .into_iter()
            .map(|(email, n)| (email, n.unsigned_abs()))
            .collect())
    }

    /// Live sessions per store, every one counted (for `sessions_stats`; a page or a
    /// scrape asks [`Self::live_counts`]).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_counts_by_store(&self) -> Result<Vec<(String, u64)>, DbErr> {
        count_by_store(&self.db, None).await
    }

    /// Live sessions per store, at a bounded cost: counted now up to [`EXACT_LIVE_COUNT`],
    /// past it as last counted in the background (at most [`LIVE_RECOUNT_AGE`] ago, or
    /// now by the first request of the process).
    ///
    /// # Errors
    /// A database error.
    pub async fn live_counts(&self) -> Result<LiveCounts, DbErr> {
        let per_store = count_by_store(&self.db, Some(EXACT_LIVE_COUNT + 1)).await?;
        if per_store.iter().map(|(_, n)| n).sum::<u64>() <= EXACT_LIVE_COUNT {
            return Ok(LiveCounts {
                per_store,
                counted_at: None,
            });
        }
        let db = self.db.clone();
        let counted = self
            .full_counts
            .get(async move { count_by_store(&db, None).await })
            .await?;
        Ok(LiveCounts {
            per_store: counted.value,
            counted_at: Some(counted.at),
        })
    }

    /// The query of [`Self::live_table`]: the first `limit` live sessions, the most
    /// recently used first, of `accounts` (every account for `None`). Public for the
    /// query-plan tests.
    #[must_use]
    pub fn live_table_query(
        accounts: Option<Vec<i64>>,
        limit: u64,
    ) -> SelectTwo<user_sessions::Entity, users::Entity> {
        let mut query = Self::live_rows();
        if let Some(ids) = accounts {
            query = query.filter(user_sessions::Column::UserId.is_in(ids));
        }
        query
            .find_also_related(users::Entity)
            .order_by_desc(user_sessions::Column::LastSeenAt)
            .order_by_desc(user_sessions::Column::Id)
            .limit(limit)
    }

    /// The query that counts live sessions per store; with `cap`, of the first `cap` live
    /// rows of the open rows' expiry index only (a bounded walk, counted in the database).
    /// Public for the query-plan tests.
    #[must_use]
    pub fn live_count_query(cap: Option<u64>) -> SelectStatement {
        let store = Alias::new("store");
        let mut live = Self::live_rows()
            .select_only()
            .column(user_sessions::Column::Store);
        if let Some(cap) = cap {
            live = live.limit(cap);
        }
        Query::select()
            .column(store.clone())
            .expr_as(Expr::col(store.clone()).count(), Alias::new("count"))
            .from_subquery(live.into_query(), Alias::new("live"))
            .group_by_col(store.clone())
            .order_by(store, Order::Asc)
            .to_owned()
    }

    /// The live sessions table of the admin page: at most `limit` live sessions with their
    /// accounts, the most recently used first, of the accounts whose email starts with
    /// `email_prefix` (any case; every account when it is blank). Two bounded queries:
    /// the matching accounts down the email index (at most [`FILTER_ACCOUNTS`]), then
    /// their live sessions down the user index, or, unfiltered, the first `limit` entries
    /// of the open rows' last-seen index.
    ///
    /// # Errors
    /// A database error.
    pub async fn live_table(&self, email_prefix: &str, limit: u64) -> Result<LiveTable, DbErr> {
        let mut accounts = None;
        let mut accounts_capped = false;
        if let Some(prefix) = EmailPrefix::parse(email_prefix) {
            let mut ids = prefix.matching_ids(&self.db, FILTER_ACCOUNTS + 1).await?;
            accounts_capped = ids.len() as u64 > FILTER_ACCOUNTS;
            ids.truncate(usize::try_from(FILTER_ACCOUNTS).unwrap_or(usize::MAX));
            if ids.is_empty() {
                return Ok(LiveTable {
                    sessions: Vec::new(),
                    more: false,
                    accounts_capped,
                });
            }
            accounts = Some(ids);
        }
        let rows = Self::live_table_query(accounts, limit + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        let sessions = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .filter_map(|(session, user)| user.map(|user| LiveSession { session, user }))
            .collect();
        Ok(LiveTable {
            sessions,
            more,
            accounts_capped,
        })
    }

    /// Re-labels the next rows not ended, by id above `after`, of sessions that moved
    /// from store `from` to `to`: up to `limit` rows looked at. How many were re-labelled,
    /// and the id to go on after (`None`: the table is done). A walk by id reads each row
    /// once, however many batches before it re-labelled.
    ///
    /// # Errors
    /// A database error.
    pub async fn move_store_batch(
        &self,
        from: &str,
        to: &str,
        after: i64,
        limit: u64,
    ) -> Result<(u64, Option<i64>), DbErr> {
        let ids: Vec<i64> = user_sessions::Entity::find()
            .select_only()
            .column(user_sessions::Column::Id)
            .filter(user_sessions::Column::Id.gt(after))
            .filter(user_sessions::Column::Store.eq(from))
            .filter(user_sessions::Column::EndedAt.is_null())
            .order_by_asc(user_sessions::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let Some(&last) = ids.last() else {
            return Ok((0, None));
        };
        let moved = user_sessions::Entity::update_many()
            .col_expr(user_sessions::Column::Store, Expr::value(to))
            .filter(user_sessions::Column::Id.is_in(ids.iter().copied()))
            // Ended or moved by someone else since it was read: left as it is.
            .filter(user_sessions::Column::Store.eq(from))
            .filter(user_sessions::Column::EndedAt.is_null())
            .exec(&self.db)
            .await?
            .rows_affected;
        let more = ids.len() as u64 == limit;
        Ok((moved, more.then_some(last)))
    }

    /// Rows in the table, ended or not.
    ///
    /// # Errors
    /// A database error.
    pub async fn row_count(&self) -> Result<u64, DbErr> {
        user_sessions::Entity::find().count(&self.db).await
    }

    /// Removes, `limit` rows at a time, rows of sessions gone from `store` (not expired,
    /// not ended, yet the store has no readable record: see [`PruneReport::vanished`]) and
    /// rows of sessions ended more than a day ago. Rows of sessions that expired unseen are
    /// not touched: their end is audited as it removes them
    /// ([`Self::take_expired`], through the lifecycle). `rest` runs between batches
    /// (a pause that lets requests at the database) with how many rows it has looked at.
    ///
    /// # Errors
    /// A database error.
    pub async fn prune<S, R, F>(&self, store: &S, limit: u64, rest: R) -> Result<PruneReport, DbErr>
    where
        S: SessionStore,
        R: Fn(u64) -> F,
        F: std::future::Future<Output = ()>,
    {
        let mut report = PruneReport::default();
        let mut after = 0;
        let mut seen = 0;
        loop {
            let open = Self::live_rows()
                .filter(user_sessions::Column::Id.gt(after))
                .order_by_asc(user_sessions::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            let Some(last) = open.last() else { break };
            after = last.id;
            seen += open.len() as u64;
            let mut vanished = Vec::new();
            for row in &open {
                let gone = match store_key_of(row) {
                    None => true,
                    // A store that does not answer proves nothing: keep the row. A record it
                    // cannot read is no session.
                    Some(key) => matches!(
                        store.load(key.as_id()).await,
                        Ok(None) | Err(tower_sessions::session_store::Error::Decode(_))
                    ),
                };
                if gone {
                    vanished.push(row.id);
                }
            }
            if !vanished.is_empty() {
                // Still not ended: a row ended meanwhile was audited by whoever ended it,
                // and stays its day.
                report.vanished += user_sessions::Entity::delete_many()
                    .filter(user_sessions::Column::Id.is_in(vanished))
                    .filter(user_sessions::Column::EndedAt.is_null())
                    .exec(&self.db)
                    .await?
                    .rows_affected;
            }
            if (open.len() as u64) < limit {
                break;
            }
            rest(seen).await;
        }
        report.gone = report.vanished;
        let cutoff = sql_time(now()) - chrono::Duration::hours(ENDED_RETENTION_HOURS);
        loop {
            let batch = Query::select()
                .column(user_sessions::Column::Id)
                .from(user_sessions::Entity)
                .and_where(user_sessions::Column::EndedAt.lt(cutoff))
                .limit(limit)
                .to_owned();
            let deleted = user_sessions::Entity::delete_many()
                .filter(user_sessions::Column::Id.in_subquery(batch))
                .exec(&self.db)
                .await?
                .rows_affected;
            report.ended += deleted;
            if deleted < limit {
                break;
            }
            rest(report.ended).await;
        }
        Ok(report)
    }
}
