//! The audit trail: session lifecycle events, written to SQL off the request path.
//!
//! [`AuditLog::record`] never waits for the database: events go into a bounded queue that
//! one background task drains in batches. A slow or failing database fills the queue, and
//! past its capacity events are dropped; every drop and failed write is logged and counted
//! ([`AuditLog::counts`]), so the loss is visible, while the user's request carries on.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use sea_orm::{ActiveValue, DatabaseConnection, EntityTrait};
use tokio::sync::{mpsc, oneshot};

use super::{data::ClientInfo, keys::SessionRef};
use crate::models::_entities::session_events;

/// Events waiting for the database before new ones are dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Rows per INSERT.
const BATCH: usize = 200;

pub use super::events::EventKind;

/// One entry of the trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: EventKind,
    pub user_id: Option<i64>,
    pub session_ref: Option<SessionRef>,
    pub client: ClientInfo,
    pub reason: Option<String>,
    /// Who did it, when it was not the session's own user acting on it (an admin).
    pub actor_user_id: Option<i64>,
}

impl AuditEvent {
    #[must_use]
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            user_id: None,
            session_ref: None,
            client: ClientInfo::default(),
            reason: None,
            actor_user_id: None,
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

    #[must_use]
    pub const fn actor(mut self, actor_user_id: Option<i64>) -> Self {
        self.actor_user_id = actor_user_id;
        self
    }

    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

enum Message {
    Event(AuditEvent, chrono::DateTime<chrono::FixedOffset>),
    Flush(oneshot::Sender<()>),
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
}

impl AuditLog {
    /// Starts the background writer on the current Tokio runtime.
    #[must_use]
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        tokio::spawn(write_events(db, receiver, counters.clone()));
        Self { queue, counters }
    }

    /// Queues `event`; never waits. Logs it too, naming the session only by its ref.
    pub fn record(&self, event: AuditEvent) {
        tracing::info!(
            event = event.kind.as_str(),
            user_id = event.user_id,
            session = event.session_ref.as_ref().map(SessionRef::as_str),
            ip = event.client.ip.as_deref(),
            reason = event.reason.as_deref(),
            actor_user_id = event.actor_user_id,
            "session event"
        );
        super::metrics::record_event(event.kind, event.reason.as_deref());
        let now = chrono::Utc::now().fixed_offset();
        if self.queue.try_send(Message::Event(event, now)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            super::metrics::record_audit_loss(super::metrics::AUDIT_LOSS_QUEUE_FULL, 1);
            tracing::error!("audit queue full or closed: event dropped");
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
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event, at) => batch.push(row(event, at)),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let count = batch.len() as u64;
            match session_events::Entity::insert_many(std::mem::take(&mut batch))
                .exec(&db)
                .await
            {
                Ok(_) => {
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

fn row(
    event: AuditEvent,
    at: chrono::DateTime<chrono::FixedOffset>,
) -> session_events::ActiveModel {
    session_events::ActiveModel {
        created_at: ActiveValue::Set(at),
        updated_at: ActiveValue::Set(at),
        event: ActiveValue::Set(event.kind.as_str().to_string()),
        user_id: ActiveValue::Set(event.user_id),
        session_ref: ActiveValue::Set(event.session_ref.map(|r| r.as_str().to_string())),
        ip: ActiveValue::Set(event.client.ip),
        user_agent: ActiveValue::Set(Some(event.client.user_agent).filter(|ua| !ua.is_empty())),
        reason: ActiveValue::Set(event.reason),
        actor_user_id: ActiveValue::Set(event.actor_user_id),
        ..Default::default()
    }
}
