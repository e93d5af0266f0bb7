//! The audit trail's rows, and the questions the admin page asks of them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Timelike, Utc};
use sea_orm::{
    entity::prelude::*, sea_query::Expr, DatabaseBackend, FromQueryResult, QueryOrder, QuerySelect,
};

pub use super::_entities::session_events::{self, ActiveModel, Entity, Model};
use super::_entities::users;

impl ActiveModelBehavior for ActiveModel {}

/// Hours the admin charts cover, the last one being the current hour.
pub const CHART_HOURS: usize = 24;

/// Events per kind and hour over the last [`CHART_HOURS`] hours.
#[derive(Debug, Clone)]
pub struct HourlyCounts {
    /// The first hour's start (UTC); the last bucket is the current hour.
    pub start: DateTime<Utc>,
    by_kind: HashMap<String, Vec<u64>>,
}

impl HourlyCounts {
    /// The hourly counts of the events of any of `kinds`, oldest first.
    #[must_use]
    pub fn of(&self, kinds: &[&str]) -> Vec<u64> {
        let mut sum = vec![0; CHART_HOURS];
        for counts in kinds.iter().filter_map(|k| self.by_kind.get(*k)) {
            for (total, n) in sum.iter_mut().zip(counts) {
                *total += n;
            }
        }
        sum
    }
}

/// Events of `kinds` counted per kind and hour over the last [`CHART_HOURS`] hours. One
/// aggregate query: the database counts, nothing loads the events themselves.
///
/// # Errors
/// A database error.
pub async fn hourly_counts(db: &DatabaseConnection, kinds: &[&str]) -> Result<HourlyCounts, DbErr> {
    let now = Utc::now();
    let current_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let start = current_hour - chrono::Duration::hours(23);
    // Whole hours since `start`, in integers (no float rounding at an hour's edge).
    // sea-query passes `$1` through to PostgreSQL and `?` to SQLite.
    let bucket = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            "(FLOOR((EXTRACT(EPOCH FROM created_at) - $1) / 3600))::BIGINT"
        }
        _ => "((CAST(strftime('%s', created_at) AS INTEGER) - ?) / 3600)",
    };
    #[derive(FromQueryResult)]
    struct Count {
        event: String,
        bucket: i64,
        count: i64,
    }
    let counts = Entity::find()
        .select_only()
        .column(session_events::Column::Event)
        .column_as(
            Expr::cust_with_values(bucket, [start.timestamp()]),
            "bucket",
        )
        .column_as(session_events::Column::Id.count(), "count")
        .filter(session_events::Column::Event.is_in(kinds.iter().copied()))
        .filter(session_events::Column::CreatedAt.gte(start.fixed_offset()))
        .group_by(session_events::Column::Event)
        .group_by(Expr::cust("bucket"))
        .into_model::<Count>()
        .all(db)
        .await?;
    let mut by_kind: HashMap<String, Vec<u64>> = HashMap::new();
    for Count {
        event,
        bucket,
        count,
    } in counts
    {
        let slot = usize::try_from(bucket).ok().filter(|b| *b < CHART_HOURS);
        if let Some(slot) = slot {
            by_kind.entry(event).or_insert_with(|| vec![0; CHART_HOURS])[slot] +=
                count.unsigned_abs();
        }
    }
    Ok(HourlyCounts { start, by_kind })
}

/// One row of the admin page's event table: the event with its user and actor named.
#[derive(Debug, Clone)]
pub struct NamedEvent {
    pub event: Model,
    /// The email of the session's user, when the account still exists.
    pub user_email: Option<String>,
    /// The email of who acted (an admin), when someone else did.
    pub actor_email: Option<String>,
}

/// A page of events, newest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<NamedEvent>,
    /// 1-based.
    pub page: u64,
    pub has_older: bool,
}

/// Page `page` (1-based) of the trail, `per_page` events each, newest first, with the
/// users and actors named by email.
///
/// # Errors
/// A database error.
pub async fn page(db: &DatabaseConnection, page: u64, per_page: u64) -> Result<EventPage, DbErr> {
    let page = page.max(1);
    let mut rows = Entity::find()
        .order_by_desc(session_events::Column::CreatedAt)
        .order_by_desc(session_events::Column::Id)
        .offset((page - 1).saturating_mul(per_page))
        .limit(per_page + 1)
        .all(db)
        .await?;
    let has_older = rows.len() as u64 > per_page;
    rows.truncate(usize::try_from(per_page).unwrap_or(usize::MAX));
    let ids: HashSet<i64> = rows
        .iter()
        .flat_map(|e| [e.user_id, e.actor_user_id])
        .flatten()
        .collect();
    let emails: HashMap<i64, String> = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::Email)
        .filter(users::Column::Id.is_in(ids))
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let email = |id: Option<i64>| id.and_then(|id| emails.get(&id).cloned());
    let events = rows
        .into_iter()
        .map(|event| NamedEvent {
            user_email: email(event.user_id),
            actor_email: email(event.actor_user_id),
            event,
        })
        .collect();
    Ok(EventPage {
        events,
        page,
        has_older,
    })
}
