//! The audit trail: session lifecycle events, written to SQL off the request path.
//!
//! [`AuditLog::record`] never waits for the database: events go into a bounded queue that
//! one background task drains in batches. A slow or failing database fills the queue, and
//! past its capacity events are dropped; every drop and failed write is logged and counted
//! ([`AuditLog::counts`]), so the loss is visible, while the user's request carries on.
//!
//! Each event names who and from where: the session's client (the browser that logged
//! in), the request's client where it differs (a replayed cookie names the replayer), and
//! the actor when it is not the session's owner ([`Actor`]).
//!
//! Refused (throttled) attempts are not one row each: an attacker could fill the trail,
//! and the queue, at will. They are aggregated per throttle counter and window
//! ([`ThrottleWindow`]): while one is waiting for the writer, more refusals of its
//! counter only add to it, in memory, without a queue message; the writer folds it into
//! one row per counter and window (an upsert) holding the count and the first and latest
//! client. The trail grows with counters and windows, not with requests.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use chrono::{DateTime, DurationRound, FixedOffset, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict, Order, Query},
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Iterable,
    QueryFilter, TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::{data::ClientInfo, keys::SessionRef};
use crate::models::{
    _entities::{session_event_counts, session_events},
    MAX_BOUND_PARAMETERS,
};

/// Events waiting for the database before new ones are dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Events the writer takes from the queue at a time.
const BATCH: usize = 200;

use super::events::EventKind;

/// Who acts on sessions, and from where: a user, and the client of their request.
///
/// ```ignore
/// let actor = admin.session.actor();
/// sessions.revoke(&row, EndReason::RevokedByAdmin, actor.as_ref()).await?;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    pub client: ClientInfo,
}

/// The throttle counter and window a refused attempt counts under: the trail keeps one
/// row per counter and window, however many attempts are refused in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleWindow {
    /// The counter's key: a keyed hash, never an email or an address.
    pub key: String,
    pub ends_at: DateTime<FixedOffset>,
}

impl ThrottleWindow {
    /// The window of throttle counter `key` that ends at `ends_at`.
    #[must_use]
    pub fn new(key: String, ends_at: std::time::SystemTime) -> Self {
        Self {
            key,
            ends_at: DateTime::<chrono::Utc>::from(ends_at).fixed_offset(),
        }
    }
}

/// One entry of the trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: EventKind,
    pub user_id: Option<i64>,
    pub session_ref: Option<SessionRef>,
    /// The session's client: the browser that logged in (for events without a session,
    /// the request's).
    pub client: ClientInfo,
    /// The client of the request that caused the event, written where it differs from
    /// [`Self::client`]: a replayed cookie, someone else acting on the session.
    pub request_client: Option<ClientInfo>,
    pub reason: Option<String>,
    /// Who did it, when it was not the session's own user acting on it (an admin).
    pub actor_user_id: Option<i64>,
    /// For a refused attempt: the counter and window it is aggregated under.
    pub throttled: Option<ThrottleWindow>,
}

impl AuditEvent {
    #[must_use]
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            user_id: None,
            session_ref: None,
            client: ClientInfo::default(),
            request_client: None,
            reason: None,
            actor_user_id: None,
            throttled: None,
        }
    }

    #[must_use]
    pub const fn user(mut self, user_id: Option<i64>) -> Self {
        self.user_id = user_id;
        self
    }

    #[must_use]
    pub fn session(mut self, session_ref: Option<SessionRef>) -> Self {
        self.session_ref = session_ref;
        self
    }

    #[must_use]
    pub fn client(mut self, client: ClientInfo) -> Self {
        self.client = client;
        self
    }

    /// The client of the request behind the event (see [`Self::request_client`]).
    #[must_use]
    pub fn request(mut self, client: ClientInfo) -> Self {
        self.request_client = Some(client);
        self
    }

    #[must_use]
    pub const fn actor(mut self, actor_user_id: Option<i64>) -> Self {
        self.actor_user_id = actor_user_id;
        self
    }

    /// Who did it and from where: the actor (written when not the session's owner) and
    /// their request's client.
    #[must_use]
    pub fn acted_by(mut self, actor: Option<&Actor>) -> Self {
        if let Some(actor) = actor {
            self.actor_user_id = Some(actor.user_id);
            self.request_client = Some(actor.client.clone());
        }
        self
    }

    /// A refused attempt, aggregated with the others of its counter and window.
    #[must_use]
    pub fn throttled(mut self, window: ThrottleWindow) -> Self {
        self.throttled = Some(window);
        self
    }

    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Logs the event (naming the session only by its ref) and counts it on `/metrics`:
    /// what every event gets, whichever way it reaches the table.
    pub fn observe(&self) {
        tracing::info!(
            event = self.kind.as_str(),
            user_id = self.user_id,
            session = self.session_ref.as_ref().map(SessionRef::as_str),
            ip = self.client.ip.as_deref(),
            request_ip = self.request_client.as_ref().and_then(|c| c.ip.as_deref()),
            reason = self.reason.as_deref(),
            actor_user_id = self.actor_user_id,
            "session event"
        );
        super::metrics::record_event(self.kind, self.reason.as_deref());
    }

    /// The event's row in `session_events`, as happened at `at`.
    #[must_use]
    pub fn into_row(self, at: DateTime<FixedOffset>) -> session_events::ActiveModel {
        // The request's client only where it says something the session's does not.
        let request = self.request_client.filter(|r| *r != self.client);
        // An owner acting on their own session is no one else.
        let actor = self.actor_user_id.filter(|a| Some(*a) != self.user_id);
        session_events::ActiveModel {
            created_at: ActiveValue::Set(at),
            updated_at: ActiveValue::Set(at),
            event: ActiveValue::Set(self.kind.as_str().to_string()),
            user_id: ActiveValue::Set(self.user_id),
            session_ref: ActiveValue::Set(self.session_ref.map(|r| r.as_str().to_string())),
            ip: ActiveValue::Set(self.client.ip),
            user_agent: ActiveValue::Set(user_agent(self.client.user_agent)),
            reason: ActiveValue::Set(self.reason),
            actor_user_id: ActiveValue::Set(actor),
            request_ip: ActiveValue::Set(request.as_ref().and_then(|r| r.ip.clone())),
            request_user_agent: ActiveValue::Set(request.and_then(|r| user_agent(r.user_agent))),
            ..Default::default()
        }
    }
}

/// Deletes up to `limit` events older than `cutoff`, oldest first (down the `created_at`
/// index); how many. One short statement: the retention sweep calls it until it returns
/// less than `limit`, resting in between.
///
/// # Errors
/// A database error.
pub async fn delete_older_than(
    db: &DatabaseConnection,
    cutoff: DateTime<FixedOffset>,
    limit: u64,
) -> Result<u64, DbErr> {
    let oldest = Query::select()
        .column(session_events::Column::Id)
        .from(session_events::Entity)
        .and_where(session_events::Column::CreatedAt.lt(cutoff))
        .order_by(session_events::Column::CreatedAt, Order::Asc)
        .limit(limit)
        .to_owned();
    Ok(session_events::Entity::delete_many()
        .filter(session_events::Column::Id.in_subquery(oldest))
        .exec(db)
        .await?
        .rows_affected)
}

enum Message {
    Event(Box<AuditEvent>, DateTime<FixedOffset>),
    /// Refused attempts of this throttle counter wait in [`Pending`].
    Refused(String),
    Flush(oneshot::Sender<()>),
}

/// Refused attempts of one throttle counter and window, as one row.
#[derive(Debug, Clone)]
struct Refusals {
    window: ThrottleWindow,
    /// The first attempt, as recorded.
    first: AuditEvent,
    first_at: DateTime<FixedOffset>,
    last_client: ClientInfo,
    last_at: DateTime<FixedOffset>,
    attempts: u64,
}

impl Refusals {
    fn new(first: AuditEvent, window: ThrottleWindow, at: DateTime<FixedOffset>) -> Self {
        Self {
            last_client: first.client.clone(),
            window,
            first,
            first_at: at,
            last_at: at,
            attempts: 1,
        }
    }

    /// Whether `later` belongs to this row: the same counter, and this window had not
    /// ended when it came.
    fn holds(&self, later: &Self) -> bool {
        later.window.key == self.window.key && later.first_at < self.window.ends_at
    }

    /// Counts `later`, which [`Self::holds`].
    fn absorb(&mut self, later: Self) {
        self.attempts += later.attempts;
        self.last_client = later.last_client;
        self.last_at = later.last_at;
    }
}

/// Adds `refusals` to `rows`, into the latest row of its counter when that row holds it.
fn add_refusals(rows: &mut Vec<Refusals>, refusals: Refusals) {
    match rows
        .iter_mut()
        .rev()
        .find(|r| r.window.key == refusals.window.key)
    {
        Some(latest) if latest.holds(&refusals) => latest.absorb(refusals),
        _ => rows.push(refusals),
    }
}

/// Refused attempts waiting for the writer, per throttle counter. While a counter has an
/// entry here, a queue message for it is on its way, and more refusals only add to it.
#[derive(Debug, Default)]
struct Pending(Mutex<HashMap<String, Vec<Refusals>>>);

impl Pending {
    /// Adds `refusals`; whether the counter is new here (and needs a queue message).
    fn add(&self, refusals: Refusals) -> bool {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.get_mut(&refusals.window.key) {
            Some(windows) => {
                add_refusals(windows, refusals);
                false
            }
            None => {
                pending.insert(refusals.window.key.clone(), vec![refusals]);
                true
            }
        }
    }

    /// Everything waiting for counter `key`.
    fn take(&self, key: &str) -> Vec<Refusals> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// How the trail's writing went since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditCounts {
    pub written: u64,
    /// Lost to database errors.
    pub failed: u64,
    /// Lost because the queue was full.
    pub dropped: u64,
}

/// The audit trail's writer.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    pending: Arc<Pending>,
}

impl AuditLog {
    /// Starts the background writer on the current Tokio runtime.
    #[must_use]
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let pending = Arc::new(Pending::default());
        tokio::spawn(write_events(
            db,
            receiver,
            counters.clone(),
            pending.clone(),
        ));
        Self {
            queue,
            counters,
            pending,
        }
    }

    /// Queues `event`; never waits. Logs it too, naming the session only by its ref. A
    /// refused attempt joins the others of its throttle counter and window.
    pub fn record(&self, mut event: AuditEvent) {
        event.observe();
        let now = chrono::Utc::now().fixed_offset();
        let (message, key) = match event.throttled.take() {
            Some(window) => {
                let key = window.key.clone();
                if !self.pending.add(Refusals::new(event, window, now)) {
                    // Counted in the entry already on its way to the writer.
                    return;
                }
                (Message::Refused(key.clone()), Some(key))
            }
            None => (Message::Event(Box::new(event), now), None),
        };
        if self.queue.try_send(message).is_err() {
            let lost = key.map_or(1, |key| {
                self.pending.take(&key).iter().map(|r| r.attempts).sum()
            });
            self.counters.dropped.fetch_add(lost, Ordering::Relaxed);
            super::metrics::record_audit_loss(super::metrics::AUDIT_LOSS_QUEUE_FULL, lost);
            tracing::error!(lost, "audit queue full or closed: event dropped");
        }
    }

    /// Waits until every event queued so far has been written (or has failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Events (and flush requests) waiting for the writer, and how many the queue holds
    /// before [`AuditLog::record`] drops events.
    #[must_use]
    pub fn queue_depth(&self) -> (usize, usize) {
        let capacity = self.queue.max_capacity();
        (capacity.saturating_sub(self.queue.capacity()), capacity)
    }

    #[must_use]
    pub fn counts(&self) -> AuditCounts {
        AuditCounts {
            written: self.counters.written.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

async fn write_events(
    db: DatabaseConnection,
    mut receiver: mpsc::Receiver<Message>,
    counters: Arc<Counters>,
    pending: Arc<Pending>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut refused: Vec<Refusals> = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event, at) => batch.push(event.into_row(at)),
                Message::Refused(key) => {
                    for refusals in pending.take(&key) {
                        add_refusals(&mut refused, refusals);
                    }
                }
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() + refused.len() < BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() || !refused.is_empty() {
            let count = batch.len() as u64 + refused.iter().map(|r| r.attempts).sum::<u64>();
            let mut rows = std::mem::take(&mut batch);
            rows.extend(refused.drain(..).map(refused_row));
            match write_batch(&db, &rows).await {
                Ok(()) => {
                    counters.written.fetch_add(count, Ordering::Relaxed);
                }
                Err(error) => {
                    counters.failed.fetch_add(count, Ordering::Relaxed);
                    super::metrics::record_audit_loss(
                        super::metrics::AUDIT_LOSS_WRITE_FAILED,
                        count,
                    );
                    tracing::error!(%error, count, "audit events could not be written");
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes one batch of the queue in one transaction: the events and their hourly counts
/// commit together or not at all.
async fn write_batch(
    db: &DatabaseConnection,
    rows: &[session_events::ActiveModel],
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    insert_events(&txn, rows).await?;
    txn.commit().await
}

/// Writes `rows` to the trail and adds them to the hourly counts the admin charts read
/// (`session_event_counts`). The only code that inserts into `session_events`: whatever
/// writes an event, the background writer or a task ending sessions in batches, calls it,
/// in the transaction that should hold the events (the counts are then written, or rolled
/// back, with them: a chart never counts an event the trail lacks, and shows one the
/// moment it commits).
///
/// A row with a `throttle_key` is refused attempts (see [`ThrottleWindow`]): it is added
/// to the open row of its counter and window (an upsert; the counter's row of an ended
/// window first leaves the unique key, staying in the trail), and counts its `attempts`,
/// in the hour of its `created_at`. Any other row counts one. A row without `created_at`
/// is written as of now.
///
/// No statement binds more than [`MAX_BOUND_PARAMETERS`] values.
///
/// # Errors
/// A database error; run it in a transaction and nothing of `rows` is written then.
pub async fn insert_events<C: ConnectionTrait>(
    conn: &C,
    rows: &[session_events::ActiveModel],
) -> Result<(), DbErr> {
    let now = Utc::now().fixed_offset();
    let mut plain = Vec::with_capacity(rows.len());
    let mut throttled = Vec::new();
    let mut counts: std::collections::BTreeMap<(DateTime<FixedOffset>, String), i64> =
        std::collections::BTreeMap::new();
    for row in rows {
        let mut row = row.clone();
        let at = match &row.created_at {
            ActiveValue::Set(at) | ActiveValue::Unchanged(at) => *at,
            ActiveValue::NotSet => {
                row.created_at = ActiveValue::Set(now);
                now
            }
        };
        if row.updated_at.is_not_set() {
            row.updated_at = ActiveValue::Set(at);
        }
        let kind = match &row.event {
            ActiveValue::Set(kind) | ActiveValue::Unchanged(kind) => kind.clone(),
            ActiveValue::NotSet => {
                return Err(DbErr::Custom("an audit event without its kind".into()));
            }
        };
        let attempts = match &row.attempts {
            ActiveValue::Set(Some(n)) | ActiveValue::Unchanged(Some(n)) => *n,
            _ => 1,
        };
        *counts.entry((hour_of(at), kind)).or_default() += attempts;
        match &row.throttle_key {
            ActiveValue::Set(Some(key)) | ActiveValue::Unchanged(Some(key)) => {
                throttled.push((key.clone(), at, row));
            }
            _ => plain.push(row),
        }
    }
    let per_row = session_events::Column::iter().count();
    for chunk in plain.chunks((MAX_BOUND_PARAMETERS / per_row).max(1)) {
        session_events::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    for (key, first_at, row) in throttled {
        upsert_refused(conn, &key, first_at, row).await?;
    }
    let counts: Vec<_> = counts
        .into_iter()
        .map(|((hour, kind), count)| session_event_counts::ActiveModel {
            hour: ActiveValue::Set(hour),
            kind: ActiveValue::Set(kind),
            count: ActiveValue::Set(count),
        })
        .collect();
    // The counts of one statement are of distinct hours and kinds: PostgreSQL updates a
    // row at most once per statement.
    for chunk in counts.chunks(MAX_BOUND_PARAMETERS / 3) {
        session_event_counts::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    session_event_counts::Column::Hour,
                    session_event_counts::Column::Kind,
                ])
                .value(
                    session_event_counts::Column::Count,
                    Expr::col((
                        session_event_counts::Entity,
                        session_event_counts::Column::Count,
                    ))
                    .add(Expr::cust("excluded.count")),
                )
                .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Deletes the hourly counts of the hours that ended by `cutoff` (their events are past
/// the trail's retention, and the charts' window); how many rows. The retention sweep
/// calls it with the cutoff it deletes events by, so the counts never outlive them.
///
/// # Errors
/// A database error.
pub async fn prune_counts<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<FixedOffset>,
) -> Result<u64, DbErr> {
    Ok(session_event_counts::Entity::delete_many()
        .filter(session_event_counts::Column::Hour.lt(hour_of(cutoff)))
        .exec(conn)
        .await?
        .rows_affected)
}

/// The start of the UTC hour `at` falls in: the key of the hourly counts.
#[must_use]
pub fn hour_of(at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let at = at.with_timezone(&Utc);
    at.duration_trunc(chrono::Duration::hours(1))
        .unwrap_or(at)
        .fixed_offset()
}

/// Adds a row of refused attempts to the open row of its counter and window: the row of
/// the counter's ended window first leaves the unique key (it stays in the trail), then
/// the open window's row is inserted or added to.
async fn upsert_refused<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    first_at: DateTime<FixedOffset>,
    row: session_events::ActiveModel,
) -> Result<(), DbErr> {
    session_events::Entity::update_many()
        .col_expr(
            session_events::Column::ThrottleKey,
            Expr::value(Option::<String>::None),
        )
        .filter(session_events::Column::ThrottleKey.eq(key))
        .filter(session_events::Column::WindowEndsAt.lte(first_at))
        .exec(conn)
        .await?;
    session_events::Entity::insert(row)
        .on_conflict(
            OnConflict::column(session_events::Column::ThrottleKey)
                .value(
                    session_events::Column::Attempts,
                    Expr::col((session_events::Entity, session_events::Column::Attempts))
                        .add(Expr::cust("excluded.attempts")),
                )
                .update_columns([
                    session_events::Column::RequestIp,
                    session_events::Column::RequestUserAgent,
                    session_events::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The row of refused attempts of one counter and window: the first attempt's client,
/// the latest one's as the request's.
fn refused_row(refusals: Refusals) -> session_events::ActiveModel {
    let attempts = i64::try_from(refusals.attempts).unwrap_or(i64::MAX);
    let mut upsert = refusals.first.into_row(refusals.first_at);
    upsert.updated_at = ActiveValue::Set(refusals.last_at);
    // The latest client, even when it is the first: the row shows both.
    upsert.request_ip = ActiveValue::Set(refusals.last_client.ip);
    upsert.request_user_agent = ActiveValue::Set(user_agent(refusals.last_client.user_agent));
    upsert.attempts = ActiveValue::Set(Some(attempts));
    upsert.throttle_key = ActiveValue::Set(Some(refusals.window.key));
    upsert.window_ends_at = ActiveValue::Set(Some(refusals.window.ends_at));
    upsert
}

fn user_agent(user_agent: String) -> Option<String> {
    Some(user_agent).filter(|ua| !ua.is_empty())
}
