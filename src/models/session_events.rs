//! The audit trail's rows, and the questions the admin page asks of them. Rows are
//! written by `crate::sessions::audit::insert_events` only, which keeps the hourly counts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Timelike, Utc};
use sea_orm::{entity::prelude::*, QueryOrder, QuerySelect};

pub use super::_entities::session_events::{self, ActiveModel, Entity, Model};
use super::_entities::{session_event_counts, users};

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

/// Events of `kinds` counted per kind and hour over the last [`CHART_HOURS`] hours, from
/// the hourly counts the audit writer keeps (`session_event_counts`): at most
/// [`CHART_HOURS`] rows per kind, down its primary key, however long the trail.
///
/// # Errors
/// A database error.
pub async fn hourly_counts<C: ConnectionTrait>(
    db: &C,
    kinds: &[&str],
) -> Result<HourlyCounts, DbErr> {
    let now = Utc::now();
    let current_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let start = current_hour - chrono::Duration::hours(23);
    let rows = hourly_counts_query(start, kinds).all(db).await?;
    let mut by_kind: HashMap<String, Vec<u64>> = HashMap::new();
    for row in rows {
        let slot = usize::try_from((row.hour.with_timezone(&Utc) - start).num_hours())
            .ok()
            .filter(|b| *b < CHART_HOURS);
        if let Some(slot) = slot {
            by_kind
                .entry(row.kind)
                .or_insert_with(|| vec![0; CHART_HOURS])[slot] += row.count.unsigned_abs();
        }
    }
    Ok(HourlyCounts { start, by_kind })
}

/// The query of [`hourly_counts`]: the counts of `kinds` from the hour starting at `start`
/// (public for the query-plan tests).
#[must_use]
pub fn hourly_counts_query(
    start: DateTime<Utc>,
    kinds: &[&str],
) -> Select<session_event_counts::Entity> {
    session_event_counts::Entity::find()
        .filter(session_event_counts::Column::Hour.gte(start.fixed_offset()))
        .filter(session_event_counts::Column::Kind.is_in(kinds.iter().copied()))
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
    /// The last (oldest) event shown, when older ones follow: the next page is the one
    /// before it.
    pub older_than: Option<i64>,
}

/// The query of [`page_before`]: `limit` events before event `before`, newest first (public
/// for the query-plan tests). The first page asks for the events before the largest ID
/// there can be: a range of the primary key like every other page, not a walk of the table.
#[must_use]
pub fn page_query(before: Option<i64>, limit: u64) -> Select<Entity> {
    Entity::find()
        .filter(session_events::Column::Id.lt(before.unwrap_or(i64::MAX)))
        .order_by_desc(session_events::Column::Id)
        .limit(limit)
}

/// The `per_page` events before event `before` (the newest ones without it), newest
/// first, with the users and actors named by email. Keyset paging down the primary key:
/// any page costs the same, however deep, and a page never repeats or skips an event
/// when new ones arrive meanwhile.
///
/// # Errors
/// A database error.
pub async fn page_before<C: ConnectionTrait>(
    db: &C,
    before: Option<i64>,
    per_page: u64,
) -> Result<EventPage, DbErr> {
    let mut rows = page_query(before, per_page + 1).all(db).await?;
    let has_older = rows.len() as u64 > per_page;
    rows.truncate(usize::try_from(per_page).unwrap_or(usize::MAX));
    let older_than = rows.last().map(|e| e.id).filter(|_| has_older);
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
    Ok(EventPage { events, older_than })
}
